//! Scenarios 3 and 4: `config/samples/` applied in file order (a policy before its realm)
//! ends with both realms `Ready=True`, every child present and owned, both policies attached,
//! the status URLs set; then, for 60 s, the operator changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use portcullis_e2e::repo_root;
use serde_json::{Value, json};

use crate::harness::{
    Child, Cluster, OPERATOR_MANAGER, condition, documents, eventually, forbidden,
    leading_operator, operator_marks, operator_setup, ready_realm, rendered_children, sample,
};
use crate::take_cluster;

const NAMESPACES: [&str; 2] = ["identity", "auth"];
/// The app namespaces of `authclients.yaml`, labelled as the full realm's clientNamespaces
/// selects them.
const APP_NAMESPACES: [&str; 2] = ["shop", "billing"];

/// The Secrets the samples refer to, as a platform team would create them.
async fn referenced_secrets(cluster: &Cluster) {
    let database = cluster.database("e2e_samples").await;
    let acme: [(&str, &[(&str, &str)]); 5] = [
        ("acme-postgres", &[("url", &database)]),
        ("acme-redis", &[("url", "redis://redis.redis.svc:6379/0")]),
        (
            "acme-social",
            &[
                ("github-client-secret", "gh-secret"),
                ("google-client-secret", "google-secret"),
                ("corp-sso-client-secret", "sso-secret"),
            ],
        ),
        (
            "acme-smtp",
            &[("url", "smtp://mailer:secret@smtp.acme.example:587")],
        ),
        (
            "acme-security-webhook",
            &[("url", "https://hooks.acme.example/security")],
        ),
    ];
    for (name, data) in acme {
        cluster.secret("identity", name, data).await;
    }
    cluster
        .secret("auth", "demo-postgres", &[("url", &database)])
        .await;
    cluster
        .secret(
            "auth",
            "demo-smtp",
            &[("url", "smtp://mailer:secret@smtp.demo.example:587")],
        )
        .await;
}

/// Checks every rendered child exists and who owns it; returns the objects the operator owns
/// or reports on, by `kind/namespace/name`.
async fn check_children(
    cluster: &Cluster,
    realm: &Value,
    children: &[Child],
) -> BTreeMap<String, Value> {
    let realm_name = realm["metadata"]["name"].as_str().unwrap();
    let namespace = realm["metadata"]["namespace"].as_str().unwrap();
    let retain = realm["spec"]["deletionPolicy"].as_str().unwrap_or("Retain") == "Retain";
    let mut seen = BTreeMap::new();
    for child in children {
        let child_namespace = child.namespace.as_deref().unwrap_or(namespace);
        let what = format!("{}/{child_namespace}/{}", child.kind, child.name);
        let object = cluster
            .get(
                &child.api_version,
                &child.kind,
                Some(child_namespace),
                &child.name,
            )
            .await
            .unwrap_or_else(|| panic!("{what} is missing"));
        let labels = &object["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/instance"], realm_name, "{what}");
        assert_eq!(
            labels["app.kubernetes.io/managed-by"], OPERATOR_MANAGER,
            "{what}"
        );
        let owners = object["metadata"]["ownerReferences"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let keys = child.kind == "Secret" && child.name == format!("{realm_name}-keys");
        if child_namespace != namespace || (keys && retain) {
            // Owner references cannot cross namespaces; the retained keys Secret outlives
            // the realm on purpose.
            assert!(owners.is_empty(), "{what} is owned: {owners:?}");
        } else {
            assert_eq!(owners.len(), 1, "{what}: {owners:?}");
            let owner = &owners[0];
            let expected_kind = if child.kind == "CronJob" {
                "RetentionPolicy"
            } else {
                "AuthRealm"
            };
            assert_eq!(owner["kind"], expected_kind, "{what}");
            assert_eq!(owner["controller"], true, "{what}");
            assert_eq!(owner["blockOwnerDeletion"], true, "{what}");
            if expected_kind == "AuthRealm" {
                assert_eq!(owner["uid"], realm["metadata"]["uid"], "{what}");
            }
            let owner_object = cluster
                .get(
                    "portcullis.dev/v1alpha1",
                    expected_kind,
                    Some(namespace),
                    owner["name"].as_str().unwrap(),
                )
                .await
                .unwrap_or_else(|| panic!("{what}: owner missing"));
            assert_eq!(owner["uid"], owner_object["metadata"]["uid"], "{what}");
        }
        assert_named_managers(&object, &what);
        seen.insert(what, object);
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_s4_samples_in_file_order_become_ready_then_the_operator_writes_nothing_for_60s() {
    let Some((_guard, cluster)) = take_cluster("3+4 (samples Ready, steady state)").await else {
        return;
    };
    let started = Instant::now();
    let account = operator_setup(&cluster).await;
    for namespace in NAMESPACES {
        cluster.namespace(namespace).await;
    }
    for namespace in APP_NAMESPACES {
        cluster
            .apply(
                &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace,
                "labels": {"portcullis.dev/realm": "acme", "environment": "production"}}}),
            )
            .await;
    }
    // The full sample's certificate comes from cert-manager (`tls.issuerRef`), which does
    // not run here: its Secret is made as cert-manager would, so the pods can mount it.
    cluster
        .apply(&json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": "acme-tls", "namespace": "identity"},
            "stringData": {"tls.crt": "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n",
                "tls.key": "-----BEGIN PRIVATE KEY-----\nMA==\n-----END PRIVATE KEY-----\n"}}))
        .await;
    // A prerequisite the full sample names (its pods' priority class), as the platform team
    // that wrote it would have it.
    cluster
        .apply(
            &json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": "identity-critical"}, "value": 1000000}),
        )
        .await;
    referenced_secrets(&cluster).await;

    // The operator runs first; the samples arrive in file order.
    let operator = leading_operator(&cluster, &account, "samples").await;
    let mut files: Vec<_> = std::fs::read_dir(repo_root().join("config/samples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for file in &files {
        for document in documents(&std::fs::read_to_string(file).unwrap()) {
            cluster.apply(&document).await;
        }
    }

    let acme = ready_realm(&cluster, "identity", "acme", Duration::from_secs(240)).await;
    let demo = ready_realm(&cluster, "auth", "demo", Duration::from_secs(120)).await;
    let ready_after = started.elapsed();
    for realm in [&acme, &demo] {
        let status = &realm["status"];
        let issuer = realm["spec"]["issuer"].as_str().unwrap();
        assert_eq!(status["endpoint"], issuer, "{status}");
        assert_eq!(
            status["discoveryUrl"],
            format!("{issuer}/.well-known/openid-configuration")
        );
        assert_eq!(status["jwksUrl"], format!("{issuer}/.well-known/jwks.json"));
        assert_eq!(
            status["readyReplicas"],
            realm["spec"]["replicas"].as_i64().unwrap_or(1)
        );
        assert!(
            !status["signingKeyIds"].as_array().unwrap().is_empty(),
            "{status}"
        );
    }
    assert_eq!(
        acme["status"]["attachedPolicies"]["rateLimit"],
        json!(["acme-login"])
    );
    assert_eq!(acme["status"]["attachedPolicies"]["retention"], "acme-gdpr");
    let policies = eventually(
        "both policies attached",
        Duration::from_secs(60),
        || async {
            let rate = cluster
                .get(
                    "portcullis.dev/v1alpha1",
                    "RateLimitPolicy",
                    Some("identity"),
                    "acme-login",
                )
                .await
                .ok_or("no RateLimitPolicy")?;
            let retention = cluster
                .get(
                    "portcullis.dev/v1alpha1",
                    "RetentionPolicy",
                    Some("identity"),
                    "acme-gdpr",
                )
                .await
                .ok_or("no RetentionPolicy")?;
            let want = [
                (&rate, "Accepted"),
                (&rate, "Attached"),
                (&retention, "Accepted"),
                (&retention, "Scheduled"),
            ];
            for (policy, type_) in want {
                match condition(policy, type_) {
                    Some((s, _, _)) if s == "True" => {}
                    other => return Err(format!("{} {type_}: {other:?}", policy["kind"])),
                }
            }
            Ok([rate, retention])
        },
    )
    .await;
    assert!(
        policies[1]["status"]["nextRunAt"].is_string(),
        "{}",
        policies[1]["status"]
    );
    for object in [&acme, &demo, &policies[0], &policies[1]] {
        let what = format!("{} {}", object["kind"], object["metadata"]["name"]);
        assert_named_managers(object, &what);
        let status_manager = object["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["subresource"] == "status")
            .map(|m| m["manager"].clone());
        assert_eq!(status_manager, Some(json!(OPERATOR_MANAGER)), "{what}");
    }

    // Every child the operator's renderer names exists, labelled and owned; nothing else
    // carrying the realms' labels exists.
    let acme_children = rendered_children(&[
        sample("realm-full.yaml"),
        sample("ratelimitpolicy.yaml"),
        sample("retentionpolicy.yaml"),
    ]);
    let demo_children = rendered_children(&[sample("realm-minimal.yaml")]);
    let mut owned = check_children(&cluster, &acme, &acme_children).await;
    owned.extend(check_children(&cluster, &demo, &demo_children).await);
    for (realm, children) in [(&acme, &acme_children), (&demo, &demo_children)] {
        let name = realm["metadata"]["name"].as_str().unwrap();
        let kinds: BTreeSet<(String, String)> = children
            .iter()
            .map(|c| (c.api_version.clone(), c.kind.clone()))
            .collect();
        let wanted: BTreeSet<String> = children
            .iter()
            .map(|c| format!("{}/{}", c.kind, c.name))
            .collect();
        let namespace = realm["metadata"]["namespace"].as_str().unwrap();
        for (api_version, kind) in kinds {
            for object in cluster
                .list(
                    &api_version,
                    &kind,
                    namespace,
                    &format!("app.kubernetes.io/instance={name}"),
                )
                .await
            {
                let id = format!("{kind}/{}", object["metadata"]["name"].as_str().unwrap());
                assert!(
                    wanted.contains(&id),
                    "{id} is not one of the realm's children"
                );
            }
        }
    }
    // The full realm serves TLS from its certificate (mounted, not copied: a renewal reaches
    // the pod), NGINX talks HTTPS to it; Prometheus scrapes the metrics port, which is the
    // only port its namespace reaches; the admin port is for the realm's own namespace.
    let deployment = &owned["Deployment/identity/acme"];
    let pod = &deployment["spec"]["template"]["spec"];
    let args = pod["containers"][0]["args"].as_array().unwrap();
    let at = args.iter().position(|a| a == "--tls-cert").unwrap();
    assert_eq!(args[at + 1], "/var/run/portcullis/tls/tls.crt");
    assert_eq!(args[at + 3], "/var/run/portcullis/tls/tls.key");
    assert!(
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["secret"]["secretName"] == "acme-tls"),
        "{pod}"
    );
    let ingress = &owned["Ingress/identity/acme"];
    assert_eq!(
        ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"],
        "HTTPS"
    );
    let service_ports: Vec<(Value, Value)> = owned["Service/identity/acme"]["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].clone(), p["port"].clone()))
        .collect();
    assert!(
        service_ports.contains(&(json!("metrics"), json!(9091))),
        "{service_ports:?}"
    );
    assert_eq!(
        owned["ServiceMonitor/identity/acme"]["spec"]["endpoints"][0]["port"],
        "metrics"
    );
    let rules = owned["NetworkPolicy/identity/acme-ingress"]["spec"]["ingress"]
        .as_array()
        .unwrap()
        .clone();
    let from_monitoring: Vec<&Value> = rules
        .iter()
        .filter(|r| {
            r["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                == "monitoring"
        })
        .collect();
    assert_eq!(from_monitoring.len(), 1);
    assert_eq!(
        from_monitoring[0]["ports"],
        json!([{"port": 9091, "protocol": "TCP"}])
    );
    let admin: Vec<&Value> = rules
        .iter()
        .filter(|r| r["ports"][0]["port"] == 9090)
        .collect();
    assert_eq!(admin.len(), 1);
    assert_eq!(
        admin[0]["from"],
        json!([{"podSelector": {}}]),
        "admin port: own namespace only"
    );

    // The app teams' clients in the namespaces the full realm admits have their credentials.
    for (namespace, name, secret) in [
        ("shop", "shop-web", "shop-web-oidc"),
        ("shop", "shop-spa", "shop-spa-oidc"),
        ("billing", "billing-worker", "billing-worker-oidc"),
    ] {
        eventually(
            &format!("AuthClient {namespace}/{name} Ready"),
            Duration::from_secs(60),
            || async {
                let client = cluster
                    .get(
                        "portcullis.dev/v1alpha1",
                        "AuthClient",
                        Some(namespace),
                        name,
                    )
                    .await
                    .ok_or("no client")?;
                match condition(&client, "Ready") {
                    Some((s, _, _)) if s == "True" => Ok(()),
                    other => Err(format!("Ready {other:?}")),
                }
            },
        )
        .await;
        let credentials = cluster
            .get("v1", "Secret", Some(namespace), secret)
            .await
            .unwrap_or_else(|| panic!("no Secret {namespace}/{secret}"));
        assert_eq!(
            credentials["data"].get("client_secret").is_some(),
            name != "shop-spa",
            "{namespace}/{secret}: a client secret for Confidential clients only"
        );
    }

    let refused = forbidden(&operator.proxy);
    assert!(refused.is_empty(), "the operator was refused: {refused:?}");

    // Scenario 4: steady state. Once the Deployments are rolled out and available (their
    // controller stops updating the status the operator watches) and the operator has answered
    // the last change (no request but the Lease for 5 s; a hot loop never gets there), for 60 s
    // nothing the operator owns or reports on changes: no object's resourceVersion and no
    // managedFields time of the operator's field manager moves (status included); and the
    // operator sends no write request but Lease renewals.
    let settled = Instant::now();
    eventually("the realms settled", Duration::from_secs(120), || async {
        for (namespace, name) in [("identity", "acme"), ("auth", "demo")] {
            let deployment = cluster
                .get("apps/v1", "Deployment", Some(namespace), name)
                .await
                .ok_or("no Deployment")?;
            let (spec, status) = (&deployment["spec"], &deployment["status"]);
            if status["observedGeneration"] != deployment["metadata"]["generation"]
                || status["availableReplicas"] != spec["replicas"]
                || status["updatedReplicas"] != spec["replicas"]
            {
                return Err(format!("{namespace}/{name} rolling out: {status}"));
            }
        }
        let last = operator
            .proxy
            .requests()
            .iter()
            .rev()
            .find(|r| !r.is_lease())
            .map_or(Duration::ZERO, |r| r.at);
        let quiet = operator.proxy.elapsed().saturating_sub(last);
        if quiet < Duration::from_secs(5) {
            return Err(format!("the operator's last request was {quiet:?} ago"));
        }
        Ok(())
    })
    .await;
    let settled = settled.elapsed();
    let mut watched = owned;
    watched.insert("AuthRealm/identity/acme".into(), acme.clone());
    watched.insert("AuthRealm/auth/demo".into(), demo.clone());
    watched.insert(
        "RateLimitPolicy/identity/acme-login".into(),
        policies[0].clone(),
    );
    watched.insert(
        "RetentionPolicy/identity/acme-gdpr".into(),
        policies[1].clone(),
    );
    let before: BTreeMap<String, Vec<String>> = refresh(&cluster, &watched)
        .await
        .iter()
        .map(|(k, v)| (k.clone(), operator_marks(v)))
        .collect();
    let quiet_from = operator.proxy.requests().len();
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let after = refresh(&cluster, &watched).await;
    let mut moved = Vec::new();
    for (key, object) in &after {
        let now = operator_marks(object);
        if before[key] != now {
            moved.push(format!("{key}: {:?} -> {now:?}", before[key]));
        }
    }
    let writes: Vec<String> = operator.proxy.requests()[quiet_from..]
        .iter()
        .filter(|r| r.is_write() && !r.is_lease())
        .map(ToString::to_string)
        .collect();
    assert!(
        moved.is_empty(),
        "the operator changed objects in steady state: {moved:#?}"
    );
    assert!(
        writes.is_empty(),
        "the operator wrote in steady state: {writes:#?}"
    );
    let window = window.elapsed();

    cluster.remove_namespaces(&NAMESPACES).await;
    cluster.remove_namespaces(&APP_NAMESPACES).await;
    drop(operator);
    cluster
        .delete(
            "scheduling.k8s.io/v1",
            "PriorityClass",
            None,
            "identity-critical",
        )
        .await;
    eprintln!(
        "scenarios 3+4 took {:?}: both realms Ready after {ready_after:?}, settled {settled:?} later, steady-state window {window:?}",
        started.elapsed()
    );
}

/// Every write is attributed to a named field manager (the operator's writes without an
/// explicit one are named after its User-Agent), none to "unknown".
fn assert_named_managers(object: &Value, what: &str) {
    let managers: Vec<&str> = object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(
        !managers.contains(&"unknown"),
        "{what}: managers {managers:?}"
    );
}

/// The current version of every watched object.
async fn refresh(cluster: &Cluster, watched: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (key, object) in watched {
        let namespace = object["metadata"]["namespace"].as_str();
        let fresh = cluster
            .get(
                object["apiVersion"].as_str().unwrap(),
                object["kind"].as_str().unwrap(),
                namespace,
                object["metadata"]["name"].as_str().unwrap(),
            )
            .await
            .unwrap_or_else(|| panic!("{key} disappeared"));
        out.insert(key.clone(), fresh);
    }
    out
}
