//! Scenario 8: a tenant who may write AuthRealms and AuthClients in one namespace only cannot
//! make the operator read, write or delete anything outside what those objects own. The
//! tenant is a ServiceAccount with a Role in its namespace; it tries what `secretTarget` used
//! to allow and more: a client Secret named like an existing unlabelled Secret or like the
//! realm's `<realm>-keys`, a realm whose child name is taken by someone else's object, a
//! client of a realm whose `clientNamespaces` does not admit it, and a client id another
//! client already uses. Then an admitted namespace gets its credentials, and deleting the
//! tenant's objects removes only what they own.

use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

use crate::harness::{
    condition, eventually, forbidden, leading_operator, minimal_realm, operator_setup, ready_realm,
    resource,
};
use crate::take_cluster;

const PLATFORM: &str = "e2e-t-platform";
const TENANT: &str = "e2e-t-tenant";
const APP: &str = "e2e-t-app";
const TENANT_MANAGER: &str = "tenant";
const CLIENTS: &str = "portcullis.dev/v1alpha1";

fn auth_client(namespace: &str, name: &str, realm: Value, extra: Value) -> Value {
    let mut spec = json!({"realmRef": realm, "type": "Confidential",
        "redirectUris": ["https://app.example.com/cb"]});
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    json!({"apiVersion": CLIENTS, "kind": "AuthClient",
        "metadata": {"name": name, "namespace": namespace}, "spec": spec})
}

/// Waits until the AuthClient reports `type_` with `status` and `reason`.
async fn client_condition(
    cluster: &crate::harness::Cluster,
    namespace: &str,
    name: &str,
    type_: &str,
    expected: (&str, &str),
) -> Value {
    eventually(
        &format!("AuthClient {namespace}/{name} {type_}={expected:?}"),
        Duration::from_secs(60),
        || async {
            let client = cluster
                .get(CLIENTS, "AuthClient", Some(namespace), name)
                .await
                .ok_or("no client")?;
            match condition(&client, type_) {
                Some((s, r, _)) if (s.as_str(), r.as_str()) == expected => Ok(client),
                other => Err(format!("{type_} {other:?}")),
            }
        },
    )
    .await
}

async fn secret_data(cluster: &crate::harness::Cluster, namespace: &str, name: &str) -> Value {
    cluster
        .get("v1", "Secret", Some(namespace), name)
        .await
        .map(|s| s["data"].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_a_tenant_cannot_make_the_operator_touch_anything_its_objects_do_not_own() {
    let Some((_guard, cluster)) = take_cluster("8 (tenants)").await else {
        return;
    };
    let started = Instant::now();
    let account = operator_setup(&cluster).await;
    let operator = leading_operator(&cluster, &account, "tenants").await;

    // The platform's realm admits clients from namespaces labelled for it.
    let mut central = minimal_realm(&cluster, PLATFORM, "postgres://unused/central").await;
    central["spec"]["clientNamespaces"] =
        json!({"matchLabels": {"e2e.portcullis.dev/clients": "central"}});
    cluster.apply(&central).await;
    cluster
        .apply(
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": APP,
            "labels": {"e2e.portcullis.dev/clients": "central"}}}),
        )
        .await;

    // The tenant: a ServiceAccount that may write AuthRealms and AuthClients in its namespace.
    cluster.namespace(TENANT).await;
    for object in [
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "tenant", "namespace": TENANT}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "realm-author", "namespace": TENANT},
            "rules": [{"apiGroups": ["portcullis.dev"], "resources": ["authrealms", "authclients"],
                "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "realm-author", "namespace": TENANT},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "realm-author"},
            "subjects": [{"kind": "ServiceAccount", "name": "tenant", "namespace": TENANT}]}),
    ] {
        cluster.apply(&object).await;
    }
    // What the tenant must not reach: an unlabelled Secret and a ConfigMap in its own
    // namespace, created by someone else (an app team, the namespace admin).
    cluster
        .secret(TENANT, "precious", &[("password", "hunter2")])
        .await;
    cluster
        .apply(&json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "clash-config", "namespace": TENANT}, "data": {"owner": "app"}}))
        .await;
    // The Secrets the tenant's realm references (made by the namespace admin).
    cluster
        .secret(
            TENANT,
            "demo-postgres",
            &[("url", "postgres://unused/mine")],
        )
        .await;
    cluster
        .secret(TENANT, "demo-smtp", &[("url", "smtp://127.0.0.1:2525")])
        .await;
    let token = cluster.token(TENANT, "tenant").await;
    let tenant = cluster.client_with_token(&token);
    let as_tenant = |manifest: Value| {
        let tenant = tenant.clone();
        async move {
            let namespace = manifest["metadata"]["namespace"]
                .as_str()
                .unwrap()
                .to_owned();
            let api: Api<DynamicObject> = Api::namespaced_with(
                tenant,
                &namespace,
                &resource(CLIENTS, manifest["kind"].as_str().unwrap()),
            );
            api.patch(
                manifest["metadata"]["name"].as_str().unwrap(),
                &PatchParams::apply(TENANT_MANAGER).force(),
                &Patch::Apply(&manifest),
            )
            .await
        }
    };
    // The tenant may not write a Secret itself: the operator must not do it for them.
    let secrets: Api<DynamicObject> =
        Api::namespaced_with(tenant.clone(), PLATFORM, &resource("v1", "Secret"));
    assert!(
        secrets.get("demo-keys").await.is_err(),
        "the tenant reads no Secret"
    );

    // The tenant's own realm `demo` (the minimal sample) and one whose ConfigMap name is
    // taken by someone else's ConfigMap.
    let mut mine = crate::harness::read_documents("config/samples/realm-minimal.yaml").remove(0);
    mine["metadata"]["namespace"] = TENANT.into();
    as_tenant(mine.clone()).await.unwrap();
    let mut clash = mine.clone();
    clash["metadata"]["name"] = "clash".into();
    as_tenant(clash).await.unwrap();
    ready_realm(&cluster, PLATFORM, "demo", Duration::from_secs(120)).await;
    ready_realm(&cluster, TENANT, "demo", Duration::from_secs(120)).await;
    let tenant_keys = secret_data(&cluster, TENANT, "demo-keys").await;
    let central_keys = secret_data(&cluster, PLATFORM, "demo-keys").await;

    let own = json!({"name": "demo"});
    let central_ref = json!({"name": "demo", "namespace": PLATFORM});
    for client in [
        // A client Secret named like someone else's Secret, and like the realm's keys.
        auth_client(
            TENANT,
            "overwrite",
            own.clone(),
            json!({"secretName": "precious"}),
        ),
        auth_client(
            TENANT,
            "keys",
            own.clone(),
            json!({"secretName": "demo-keys"}),
        ),
        // A client of a realm whose clientNamespaces does not admit the tenant's namespace.
        auth_client(
            TENANT,
            "steal",
            central_ref.clone(),
            json!({"clientId": "steal"}),
        ),
        // Two clients claiming one id: the older keeps it.
        auth_client(TENANT, "first", own.clone(), json!({"clientId": "dup"})),
    ] {
        as_tenant(client).await.unwrap();
    }
    client_condition(
        &cluster,
        TENANT,
        "first",
        "Ready",
        ("True", "SecretWritten"),
    )
    .await;
    as_tenant(auth_client(
        TENANT,
        "second",
        own.clone(),
        json!({"clientId": "dup"}),
    ))
    .await
    .unwrap();
    client_condition(
        &cluster,
        TENANT,
        "overwrite",
        "Ready",
        ("False", "SecretNameTaken"),
    )
    .await;
    client_condition(
        &cluster,
        TENANT,
        "keys",
        "Ready",
        ("False", "SecretNameTaken"),
    )
    .await;
    client_condition(
        &cluster,
        TENANT,
        "steal",
        "Accepted",
        ("False", "NamespaceNotAdmitted"),
    )
    .await;
    client_condition(
        &cluster,
        TENANT,
        "second",
        "Accepted",
        ("False", "ClientIdTaken"),
    )
    .await;
    let clash_realm = eventually("realm clash refused", Duration::from_secs(60), || async {
        let realm = cluster
            .get(CLIENTS, "AuthRealm", Some(TENANT), "clash")
            .await
            .ok_or("no realm")?;
        match condition(&realm, "Ready") {
            Some((s, r, m)) if s == "False" && r == "NameTaken" => Ok(m),
            other => Err(format!("Ready {other:?}")),
        }
    })
    .await;
    assert!(clash_realm.contains("clash-config"), "{clash_realm}");

    // The app namespace the platform admits gets its client's credentials.
    cluster
        .apply(&auth_client(APP, "shop", central_ref.clone(), json!({})))
        .await;
    client_condition(&cluster, APP, "shop", "Ready", ("True", "SecretWritten")).await;
    let shop = secret_data(&cluster, APP, "shop-oidc").await;
    let central_keys_now = secret_data(&cluster, PLATFORM, "demo-keys").await;
    assert_eq!(
        shop["client_secret"],
        central_keys_now[format!("client-secret-{APP}-shop")],
        "the client's Secret holds the secret the realm serves"
    );
    let central_config = cluster
        .get("v1", "ConfigMap", Some(PLATFORM), "demo-config")
        .await
        .unwrap();
    let config = central_config["data"]["realm.yaml"].as_str().unwrap();
    assert!(
        config.contains(&format!(
            "kind: AuthClient\nmetadata:\n  name: shop\n  namespace: {APP}"
        )),
        "{config}"
    );
    assert!(
        !config.contains("steal"),
        "a client of a namespace not admitted reached the realm"
    );

    // Nothing outside what the tenant's objects own was touched.
    assert_eq!(
        secret_data(&cluster, TENANT, "precious").await,
        json!({"password": "aHVudGVyMg=="}),
        "precious was overwritten"
    );
    let clash_config = cluster
        .get("v1", "ConfigMap", Some(TENANT), "clash-config")
        .await
        .unwrap();
    assert_eq!(clash_config["data"], json!({"owner": "app"}));
    assert!(clash_config["metadata"]["ownerReferences"].is_null());
    let keys_now = secret_data(&cluster, TENANT, "demo-keys").await;
    for key in [
        "pepper",
        "fernet-keys",
        "signing-keys.json",
        "admin-token",
        "cookie-key",
    ] {
        assert_eq!(
            keys_now[key], tenant_keys[key],
            "{key} of the tenant realm's keys changed"
        );
    }
    for key in ["pepper", "fernet-keys", "signing-keys.json"] {
        assert_eq!(
            central_keys_now[key], central_keys[key],
            "{key} of the platform realm changed"
        );
    }
    assert!(
        central_keys_now.get("client-secret-steal").is_none(),
        "a client of a namespace not admitted got a secret"
    );
    let first = secret_data(&cluster, TENANT, "first-oidc").await;
    assert_eq!(first["client_secret"], keys_now["client-secret-dup"]);
    assert!(
        cluster
            .get("v1", "Secret", Some(TENANT), "second-oidc")
            .await
            .is_none(),
        "the client whose id is taken got credentials"
    );
    // Every write the operator made to a named object in the tenant's namespace was to an
    // object the tenant's realm or clients own.
    let allowed = [
        "demo",
        "demo-keys",
        "demo-config",
        "demo-dashboard",
        "demo-default-deny",
        "demo-ingress",
        "demo-egress",
        "first-oidc",
        "overwrite",
        "keys",
        "steal",
        "first",
        "second",
        "clash",
        "clash-keys",
    ];
    for request in operator.proxy.requests().iter().filter(|r| r.is_write()) {
        let Some(rest) = request.path.split(&format!("/namespaces/{TENANT}/")).nth(1) else {
            continue;
        };
        let mut segments = rest.split('/');
        let (kind, name) = (segments.next().unwrap_or_default(), segments.next());
        if kind == "events" {
            continue;
        }
        assert!(
            name.is_none_or(|n| allowed.contains(&n)),
            "the operator wrote {request}"
        );
    }

    // The tenant deletes everything it wrote: only what its objects own goes (the retained
    // keys Secret stays), the foreign objects stay.
    for (kind, name) in [
        ("AuthClient", "first"),
        ("AuthClient", "second"),
        ("AuthClient", "overwrite"),
        ("AuthClient", "keys"),
        ("AuthClient", "steal"),
        ("AuthRealm", "demo"),
        ("AuthRealm", "clash"),
    ] {
        let api: Api<DynamicObject> =
            Api::namespaced_with(tenant.clone(), TENANT, &resource(CLIENTS, kind));
        api.delete(name, &Default::default()).await.unwrap();
    }
    eventually(
        "the tenant's owned objects gone",
        Duration::from_secs(60),
        || async {
            let left = [
                cluster
                    .get("v1", "Secret", Some(TENANT), "first-oidc")
                    .await
                    .is_some(),
                cluster
                    .get("apps/v1", "Deployment", Some(TENANT), "demo")
                    .await
                    .is_some(),
            ];
            if left.iter().any(|l| *l) {
                Err(format!("{left:?}"))
            } else {
                Ok(())
            }
        },
    )
    .await;
    assert!(
        cluster
            .get("v1", "Secret", Some(TENANT), "precious")
            .await
            .is_some()
    );
    assert!(
        cluster
            .get("v1", "ConfigMap", Some(TENANT), "clash-config")
            .await
            .is_some()
    );
    assert!(
        cluster
            .get("v1", "Secret", Some(TENANT), "demo-keys")
            .await
            .is_some(),
        "Retain"
    );

    let refused = forbidden(&operator.proxy);
    assert!(refused.is_empty(), "the operator was refused: {refused:?}");
    cluster.remove_namespaces(&[TENANT, APP, PLATFORM]).await;
    drop(operator);
    eprintln!("scenario 8 took {:?}", started.elapsed());
}
