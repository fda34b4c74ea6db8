//! The operator chart's RBAC is exactly what the code uses, in both directions.
//!
//! What the code uses is not written down here: it is read off the requests the code makes.
//! A tour runs every controller path against the mocked API server (the controllers' watches,
//! a realm with every optional kind and stale children to prune, its deletion, a retention
//! run-now and deletion, a rate-limit policy, both leader-election writes, a repeated Event),
//! and each request becomes the permission the API server checks for it: the verb from the
//! method and query, a server-side apply also as `create` (an apply that creates an object is
//! authorised as `create`), and an owner reference with `blockOwnerDeletion` as `update` on
//! the owner's `finalizers` subresource (OwnerReferencesPermissionEnforcement). The chart is
//! rendered by Helm's engine (`scripts/render_chart.py`) with default and full values; every
//! used permission must be granted, and every granted verb must be used.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::collections::BTreeSet;
use std::io::Write;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use crate::controllers::metrics::Metrics;
use crate::controllers::mock::{Call, Mock, World};
use crate::controllers::realm::tests::{ACME_PATH, acme_world, now, realm};
use crate::controllers::{Context, leader, rate_limit, realm as realm_controller, retention};
use crate::resources::tests::{RATE_LIMIT, REALM_FULL};

/// One permission as the API server's authorizer sees it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Permission {
    group: String,
    /// Plural, with `/subresource` when there is one.
    resource: String,
    verb: String,
    /// The object's name, for verbs that have one.
    name: Option<String>,
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        write!(f, "{} {group}/{}", self.verb, self.resource)?;
        if let Some(name) = &self.name {
            write!(f, " ({name})")?;
        }
        Ok(())
    }
}

/// The permissions the API server checks for one request.
fn permissions_of(call: &Call) -> Vec<Permission> {
    let segments: Vec<&str> = call.path.trim_matches('/').split('/').collect();
    let (group, rest) = match segments.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => panic!("not an API path: {}", call.path),
    };
    let rest = match rest {
        ["namespaces", _namespace, rest @ ..] if !rest.is_empty() => rest,
        rest => rest,
    };
    let (resource, name, subresource) = match rest {
        [resource] => (*resource, None, None),
        [resource, name] => (*resource, Some(*name), None),
        [resource, name, sub] => (*resource, Some(*name), Some(*sub)),
        _ => panic!("unexpected API path: {}", call.path),
    };
    let resource = match subresource {
        Some(sub) => format!("{resource}/{sub}"),
        None => resource.to_owned(),
    };
    let watch = call.query.split('&').any(|p| p == "watch=true");
    let verbs: &[&str] = match (call.method.as_str(), name) {
        ("GET", Some(_)) => &["get"],
        ("GET", None) if watch => &["watch"],
        ("GET", None) => &["list"],
        ("POST", _) => &["create"],
        ("PUT", _) => &["update"],
        // An apply that creates is authorised as create; a subresource (status) is never
        // created by one.
        ("PATCH", _)
            if call.content_type == "application/apply-patch+yaml" && subresource.is_none() =>
        {
            &["patch", "create"]
        }
        ("PATCH", _) => &["patch"],
        ("DELETE", Some(_)) => &["delete"],
        ("DELETE", None) => &["deletecollection"],
        (method, _) => panic!("unexpected method {method}"),
    };
    let mut permissions: Vec<Permission> = verbs
        .iter()
        .map(|verb| Permission {
            group: group.to_owned(),
            resource: resource.clone(),
            verb: (*verb).to_owned(),
            // create has no name to restrict on; the others do.
            name: name.filter(|_| *verb != "create").map(str::to_owned),
        })
        .collect();
    if matches!(call.method.as_str(), "POST" | "PUT" | "PATCH") {
        let owners = call
            .body
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for owner in owners.iter().filter(|o| o["blockOwnerDeletion"] == true) {
            let api_version = owner["apiVersion"].as_str().unwrap();
            let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
            let kind = owner["kind"].as_str().unwrap();
            let plural = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind)).plural;
            permissions.push(Permission {
                group: group.to_owned(),
                resource: format!("{plural}/finalizers"),
                verb: "update".to_owned(),
                name: owner["name"].as_str().map(str::to_owned),
            });
        }
    }
    permissions
}

fn context(mock: &Mock) -> Arc<Context> {
    Arc::new(Context::with_clock(
        mock.client.clone(),
        Arc::new(Metrics::default()),
        Arc::new(now),
    ))
}

fn parse<K: serde::de::DeserializeOwned>(value: &Value) -> Arc<K> {
    Arc::new(serde_json::from_value(value.clone()).unwrap())
}

/// Every request of every controller path, against the mocked API server; `scope` is the
/// one namespace the operator watches, if any.
async fn tour(scope: Option<&str>) -> Vec<Call> {
    let mut calls = Vec::new();
    let timeout = Duration::from_secs(10);

    // The controllers' watches: each kind is listed, then watched (the mock cannot stream,
    // so the watches fail and retry; the requests are what counts).
    let mut world = World::default();
    for plural in [
        "authrealms",
        "ratelimitpolicies",
        "retentionpolicies",
        "authclients",
        "secrets",
    ] {
        world.lists.insert(plural.into(), vec![]);
    }
    world.crds = [
        "certificates.cert-manager.io",
        "servicemonitors.monitoring.coreos.com",
        "prometheusrules.monitoring.coreos.com",
    ]
    .map(String::from)
    .into();
    let mock = Mock::start(world);
    let capabilities = crate::controllers::realm::fetch::installed_capabilities(&mock.client)
        .await
        .unwrap();
    assert_eq!(capabilities, crate::resources::Capabilities::ALL);
    let controllers =
        crate::controllers::run::controllers(&mock.client, context(&mock), None, capabilities);
    let _ = tokio::time::timeout(Duration::from_secs(3), controllers).await;
    calls.extend(mock.calls());

    // A new realm gets the finalizer.
    let fresh = realm(REALM_FULL, false);
    let mock = Mock::start(acme_world(&fresh));
    let _ = tokio::time::timeout(
        timeout,
        realm_controller::reconcile(parse(&fresh), context(&mock)),
    )
    .await
    .unwrap()
    .unwrap();
    calls.extend(mock.calls());

    // The full realm with cert-manager, prometheus-operator, its retention policy and a
    // stale child of every prunable kind; reconciled twice so an Event repeats (a patch).
    let full = realm(REALM_FULL, true);
    let mut world = acme_world(&full);
    world.crds.insert("certificates.cert-manager.io".into());
    let policy = retention::tests::policy("acme-gdpr", "2027-01-01T00:00:00Z", json!({}));
    world
        .lists
        .insert("retentionpolicies".into(), vec![policy.clone()]);
    for resource in
        crate::controllers::realm::apply::prunable_kinds(crate::resources::Capabilities::ALL)
    {
        world.labelled.insert(resource.plural, vec!["stale".into()]);
    }
    let mock = Mock::start(world);
    let ctx = context(&mock);
    for _ in 0..2 {
        tokio::time::timeout(
            timeout,
            realm_controller::reconcile(parse(&full), ctx.clone()),
        )
        .await
        .unwrap()
        .unwrap();
    }
    calls.extend(mock.calls());

    // Its deletion: client Secrets in other namespaces, then the finalizer.
    let mut deleted = full.clone();
    deleted["metadata"]["deletionTimestamp"] = "2027-01-15T08:00:00Z".into();
    let mut world = acme_world(&deleted);
    world.objects.insert(ACME_PATH.into(), deleted.clone());
    let mock = Mock::start(world);
    tokio::time::timeout(
        timeout,
        realm_controller::reconcile(parse(&deleted), context(&mock)),
    )
    .await
    .unwrap()
    .unwrap();
    calls.extend(mock.calls());

    // A retention run-now, with an earlier run whose pod reports the summary.
    let run_now = retention::tests::policy(
        "acme-gdpr",
        "2027-01-01T00:00:00Z",
        json!({"portcullis.dev/run-now": "2027-01-15T08:00"}),
    );
    let mut world = retention::tests::world(&[&run_now]);
    world.lists.insert(
        "jobs".into(),
        vec![
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "acme-gdpr-run-0"},
            "spec": {"template": {}}, "status": {"startTime": "2027-01-14T02:30:00Z"}}),
        ],
    );
    world.lists.insert("pods".into(), vec![]);
    let mock = Mock::start(world);
    tokio::time::timeout(
        timeout,
        retention::reconcile(parse(&run_now), context(&mock)),
    )
    .await
    .unwrap()
    .unwrap();
    calls.extend(mock.calls());

    // The policy's deletion: its CronJob and Jobs, then the finalizer.
    let mut gone = policy.clone();
    gone["metadata"]["deletionTimestamp"] = "2027-01-15T08:00:00Z".into();
    let mut world = retention::tests::world(&[&gone]);
    world.lists.insert(
        "jobs".into(),
        vec![json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "acme-gdpr-run-1", "ownerReferences": [
                {"apiVersion": "portcullis.dev/v1alpha1", "kind": "RetentionPolicy", "name": "acme-gdpr", "uid": "uid-acme-gdpr"}]},
            "spec": {"template": {}}})],
    );
    let mock = Mock::start(world);
    tokio::time::timeout(timeout, retention::reconcile(parse(&gone), context(&mock)))
        .await
        .unwrap()
        .unwrap();
    calls.extend(mock.calls());

    // AuthClients: an admitted one gets its Secret; one whose id is taken loses its own;
    // a realm admitting other namespaces lists them.
    use crate::controllers::client::tests as clients;
    let web = clients::client("auth", "web", "Confidential", json!({}));
    let (result, mock) = clients::reconcile_in(clients::world(&[&web]), &web).await;
    result.unwrap();
    calls.extend(mock.calls());
    let mut younger = clients::client(
        "auth",
        "young",
        "Confidential",
        json!({"clientId": "auth-web"}),
    );
    younger["metadata"]["creationTimestamp"] = "2027-01-02T00:00:00Z".into();
    let mut world = clients::world(&[&web, &younger]);
    world.secrets.insert(
        "auth/young-oidc".into(),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "young-oidc",
            "ownerReferences": [{"apiVersion": "portcullis.dev/v1alpha1", "kind": "AuthClient",
                "name": "young", "uid": "uid-young", "controller": true}]}}),
    );
    let (result, mock) = clients::reconcile_in(world, &younger).await;
    result.unwrap();
    calls.extend(mock.calls());
    let mut selecting = realm(REALM_FULL, false);
    selecting["spec"]["clientNamespaces"] = json!({"matchLabels": {"team": "shop"}});
    let mut world = acme_world(&selecting);
    let mut shop = clients::client("shop", "web", "Public", json!({}));
    shop["spec"]["realmRef"] = json!({"name": "acme", "namespace": "identity"});
    world.lists.insert("authclients".into(), vec![shop]);
    world.lists.insert("namespaces".into(), vec![]);
    let mock = Mock::start(world);
    let scoped = Arc::new(
        Context::with_clock(
            mock.client.clone(),
            Arc::new(Metrics::default()),
            Arc::new(now),
        )
        .within(scope.map(str::to_owned)),
    );
    tokio::time::timeout(
        timeout,
        realm_controller::reconcile(parse(&selecting), scoped),
    )
    .await
    .unwrap()
    .unwrap();
    calls.extend(mock.calls());

    // A rate-limit policy.
    let mut limits = serde_json::to_value(
        portcullis_crds::parse_manifests(RATE_LIMIT)
            .unwrap()
            .rate_limit_policies
            .remove(0),
    )
    .unwrap();
    limits["metadata"]["generation"] = 1.into();
    let mut world = acme_world(&full);
    world.objects.insert(
        "/apis/portcullis.dev/v1alpha1/namespaces/identity/ratelimitpolicies/acme-login".into(),
        limits.clone(),
    );
    let mock = Mock::start(world);
    tokio::time::timeout(
        timeout,
        rate_limit::reconcile(parse(&limits), context(&mock)),
    )
    .await
    .unwrap()
    .unwrap();
    calls.extend(mock.calls());

    // Leader election under the chart's defaults: a missing Lease is created, an expired
    // one is taken over.
    let lease_path =
        "/apis/coordination.k8s.io/v1/namespaces/portcullis-system/leases/portcullis-operator";
    let mock = Mock::start(World::default());
    let api = kube::Api::namespaced(mock.client.clone(), "portcullis-system");
    assert!(
        leader::round(&api, "portcullis-operator", "a", now())
            .await
            .unwrap()
    );
    calls.extend(mock.calls());
    let mut world = World::default();
    world.objects.insert(
        lease_path.into(),
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "portcullis-operator", "resourceVersion": "5"},
            "spec": {"holderIdentity": "b", "leaseDurationSeconds": 15, "renewTime": "2027-01-01T00:00:00.000000Z"}}),
    );
    let mock = Mock::start(world);
    let api = kube::Api::namespaced(mock.client.clone(), "portcullis-system");
    assert!(
        leader::round(
            &api,
            "portcullis-operator",
            "a",
            Timestamp::from_second(1_800_000_000).unwrap()
        )
        .await
        .unwrap()
    );
    calls.extend(mock.calls());
    calls
}

/// One RBAC rule of the rendered chart.
#[derive(Debug)]
struct Rule {
    groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
    names: Vec<String>,
}

impl Rule {
    fn grants(&self, p: &Permission) -> bool {
        self.groups.contains(&p.group)
            && self.resources.contains(&p.resource)
            && self.verbs.contains(&p.verb)
            && (self.names.is_empty() || p.name.as_ref().is_some_and(|n| self.names.contains(n)))
    }
}

/// The rules of every Role and ClusterRole the operator chart renders with `values` (a file
/// under the chart); `None` when Helm's engine is not installed here.
fn chart_rules(values: Option<&str>) -> Option<Vec<Rule>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut command = Command::new("python3");
    command
        .current_dir(&root)
        .args(["scripts/render_chart.py", "charts/portcullis-operator"]);
    if let Some(values) = values {
        command.args(["--values", &format!("charts/portcullis-operator/{values}")]);
    }
    let out = command.output().ok()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("No module named") {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED the RBAC comparison: Helm's engine is missing ({}); scripts/test.sh installs it",
            stderr.trim()
        );
        return None;
    }
    assert!(out.status.success(), "render_chart.py: {stderr}");
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(&String::from_utf8_lossy(&out.stdout)).unwrap();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    Some(
        documents
            .iter()
            .filter(|d| matches!(d["kind"].as_str(), Some("Role" | "ClusterRole")))
            .flat_map(|d| d["rules"].as_array().cloned().unwrap_or_default())
            .map(|r| Rule {
                groups: strings(&r["apiGroups"]),
                resources: strings(&r["resources"]),
                verbs: strings(&r["verbs"]),
                names: strings(&r["resourceNames"]),
            })
            .collect(),
    )
}

fn used_permissions(calls: &[Call]) -> BTreeSet<Permission> {
    calls.iter().flat_map(permissions_of).collect()
}

async fn check_chart(values: Option<&str>, scope: Option<&str>) {
    let Some(rules) = chart_rules(values) else {
        return;
    };
    let used = used_permissions(&Box::pin(tour(scope)).await);
    let case = values.unwrap_or("default values");

    let missing: Vec<String> = used
        .iter()
        .filter(|p| !rules.iter().any(|r| r.grants(p)))
        .map(ToString::to_string)
        .collect();
    assert!(
        missing.is_empty(),
        "{case}: the chart does not grant what the code uses: {missing:#?}"
    );

    let mut unused = Vec::new();
    for rule in &rules {
        for group in &rule.groups {
            for resource in &rule.resources {
                for verb in &rule.verbs {
                    let names: Vec<Option<&String>> = if rule.names.is_empty() {
                        vec![None]
                    } else {
                        rule.names.iter().map(Some).collect()
                    };
                    for name in names {
                        let is_used = used.iter().any(|p| {
                            &p.group == group
                                && &p.resource == resource
                                && &p.verb == verb
                                && name.is_none_or(|n| p.name.as_ref() == Some(n))
                        });
                        if !is_used {
                            let grant = Permission {
                                group: group.clone(),
                                resource: resource.clone(),
                                verb: verb.clone(),
                                name: name.cloned(),
                            };
                            unused.push(grant.to_string());
                        }
                    }
                }
            }
        }
    }
    assert!(
        unused.is_empty(),
        "{case}: the chart grants what the code never uses: {unused:#?}"
    );
}

#[tokio::test]
async fn the_chart_grants_exactly_what_the_code_uses() {
    check_chart(None, None).await;
}

#[tokio::test]
async fn the_chart_for_one_namespace_grants_exactly_what_the_code_uses() {
    check_chart(Some("ci/full-values.yaml"), Some("identity")).await;
}

#[test]
fn requests_map_to_the_permissions_the_api_server_checks() {
    let call = |method: &str, path: &str, query: &str, content_type: &str, body: Value| Call {
        method: method.into(),
        path: path.into(),
        query: query.into(),
        content_type: content_type.into(),
        body,
    };
    let lines =
        |c: Call| -> Vec<String> { permissions_of(&c).iter().map(ToString::to_string).collect() };
    assert_eq!(
        lines(call(
            "PATCH",
            "/apis/apps/v1/namespaces/auth/deployments/demo",
            "fieldManager=portcullis-operator&force=true",
            "application/apply-patch+yaml",
            json!({"metadata": {"ownerReferences": [{"apiVersion": "portcullis.dev/v1alpha1",
                "kind": "AuthRealm", "name": "demo", "uid": "u", "blockOwnerDeletion": true}]}}),
        )),
        [
            "patch apps/deployments (demo)",
            "create apps/deployments",
            "update portcullis.dev/authrealms/finalizers (demo)"
        ]
    );
    assert_eq!(
        lines(call(
            "GET",
            "/api/v1/secrets",
            "watch=true&resourceVersion=1",
            "",
            Value::Null
        )),
        ["watch core/secrets"]
    );
    assert_eq!(
        lines(call(
            "GET",
            "/api/v1/namespaces/auth/secrets",
            "labelSelector=a",
            "",
            Value::Null
        )),
        ["list core/secrets"]
    );
    assert_eq!(
        lines(call(
            "PATCH",
            "/apis/portcullis.dev/v1alpha1/namespaces/auth/authrealms/demo/status",
            "",
            "application/merge-patch+json",
            json!({})
        )),
        ["patch portcullis.dev/authrealms/status (demo)"]
    );
}
