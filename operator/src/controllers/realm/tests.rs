//! The AuthRealm reconcile against a mocked API server: the exact calls of each scenario.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use portcullis_crds::AuthRealm;
use serde_json::{Value, json};

use super::*;
use crate::controllers::metrics::Metrics;
use crate::controllers::mock::{Mock, World};
use crate::resources::tests::{AUTH_CLIENTS, REALM_FULL, REALM_MINIMAL};

const REALM_PATH: &str = "/apis/portcullis.dev/v1alpha1/namespaces/auth/authrealms/demo";
pub(crate) const ACME_PATH: &str =
    "/apis/portcullis.dev/v1alpha1/namespaces/identity/authrealms/acme";
const MONITORING_CRDS: [&str; 2] = [
    "servicemonitors.monitoring.coreos.com",
    "prometheusrules.monitoring.coreos.com",
];

pub(crate) fn realm(yaml: &str, finalizer: bool) -> Value {
    let mut realm: AuthRealm = portcullis_crds::parse_manifests(yaml)
        .unwrap()
        .realms
        .remove(0);
    realm.metadata.uid = Some("uid-1".into());
    realm.metadata.generation = Some(1);
    realm.metadata.resource_version = Some("10".into());
    if finalizer {
        realm.metadata.finalizers = Some(vec![LEGACY_FINALIZER.into()]);
    }
    serde_json::to_value(realm).unwrap()
}

pub(crate) fn secret(name: &str, keys: &[&str]) -> Value {
    let data: serde_json::Map<String, Value> = keys
        .iter()
        .map(|k| ((*k).to_owned(), Value::from("c2VjcmV0")))
        .collect();
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": data})
}

pub(crate) fn world(realm_path: &str, realm: &Value) -> World {
    let mut world = World::default();
    world.objects.insert(realm_path.to_owned(), realm.clone());
    world.lists.insert("ratelimitpolicies".into(), vec![]);
    world.lists.insert("retentionpolicies".into(), vec![]);
    world.lists.insert("authclients".into(), vec![]);
    world.crds = MONITORING_CRDS.iter().map(|s| (*s).to_owned()).collect();
    world.ready_replicas = 1;
    world
}

fn demo_world(realm: &Value) -> World {
    let mut world = world(REALM_PATH, realm);
    world.secrets.insert(
        "auth/demo-postgres".into(),
        secret("demo-postgres", &["url"]),
    );
    world
        .secrets
        .insert("auth/demo-smtp".into(), secret("demo-smtp", &["url"]));
    world
}

pub(crate) fn acme_world(realm: &Value) -> World {
    let mut world = world(ACME_PATH, realm);
    for (name, keys) in [
        ("acme-postgres", vec!["url"]),
        ("acme-redis", vec!["url"]),
        (
            "acme-social",
            vec![
                "github-client-secret",
                "google-client-secret",
                "corp-sso-client-secret",
            ],
        ),
        ("acme-smtp", vec!["url"]),
        ("acme-security-webhook", vec!["url"]),
    ] {
        world
            .secrets
            .insert(format!("identity/{name}"), secret(name, &keys));
    }
    world
}

pub(crate) fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

async fn reconcile_in(world: World, realm: &Value) -> (Result<Action, ReconcileError>, Mock) {
    let mock = Mock::start(world);
    let ctx = Arc::new(Context::with_clock(
        mock.client.clone(),
        Arc::new(Metrics::default()),
        Arc::new(now),
    ));
    let realm: AuthRealm = serde_json::from_value(realm.clone()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), reconcile(Arc::new(realm), ctx))
        .await
        .expect("the reconcile finished");
    (result, mock)
}

const DEMO_FETCH: [&str; 9] = [
    "GET /apis/portcullis.dev/v1alpha1/namespaces/auth/ratelimitpolicies",
    "GET /apis/portcullis.dev/v1alpha1/namespaces/auth/retentionpolicies",
    "GET /apis/portcullis.dev/v1alpha1/authclients",
    "GET /api/v1/namespaces/auth/secrets/demo-postgres",
    "GET /api/v1/namespaces/auth/secrets/demo-smtp",
    "GET /api/v1/namespaces/auth/secrets/demo-keys",
    "GET /apis/apiextensions.k8s.io/v1/customresourcedefinitions/certificates.cert-manager.io",
    "GET /apis/apiextensions.k8s.io/v1/customresourcedefinitions/servicemonitors.monitoring.coreos.com",
    "GET /apis/apiextensions.k8s.io/v1/customresourcedefinitions/prometheusrules.monitoring.coreos.com",
];

const DEMO_APPLY: [&str; 12] = [
    "PATCH /api/v1/namespaces/auth/serviceaccounts/demo",
    "PATCH /api/v1/namespaces/auth/secrets/demo-keys",
    "PATCH /api/v1/namespaces/auth/configmaps/demo-config",
    "PATCH /api/v1/namespaces/auth/configmaps/demo-dashboard",
    "PATCH /api/v1/namespaces/auth/services/demo",
    "PATCH /apis/networking.k8s.io/v1/namespaces/auth/networkpolicies/demo-default-deny",
    "PATCH /apis/networking.k8s.io/v1/namespaces/auth/networkpolicies/demo-ingress",
    "PATCH /apis/networking.k8s.io/v1/namespaces/auth/networkpolicies/demo-egress",
    "PATCH /apis/policy/v1/namespaces/auth/poddisruptionbudgets/demo",
    "PATCH /apis/apps/v1/namespaces/auth/deployments/demo",
    "PATCH /apis/monitoring.coreos.com/v1/namespaces/auth/servicemonitors/demo",
    "PATCH /apis/monitoring.coreos.com/v1/namespaces/auth/prometheusrules/demo",
];

const DEMO_PRUNE: [&str; 11] = [
    "GET /api/v1/namespaces/auth/serviceaccounts",
    "GET /api/v1/namespaces/auth/secrets",
    "GET /api/v1/namespaces/auth/configmaps",
    "GET /api/v1/namespaces/auth/services",
    "GET /apis/networking.k8s.io/v1/namespaces/auth/networkpolicies",
    "GET /apis/policy/v1/namespaces/auth/poddisruptionbudgets",
    "GET /apis/apps/v1/namespaces/auth/deployments",
    "GET /apis/networking.k8s.io/v1/namespaces/auth/ingresses",
    "GET /apis/batch/v1/namespaces/auth/cronjobs",
    "GET /apis/monitoring.coreos.com/v1/namespaces/auth/servicemonitors",
    "GET /apis/monitoring.coreos.com/v1/namespaces/auth/prometheusrules",
];

/// The first apply of every child: nothing of that name exists yet (a GET finds none), so
/// it is created.
fn demo_create() -> Vec<String> {
    DEMO_APPLY
        .iter()
        .flat_map(|patch| [patch.replacen("PATCH", "GET", 1), (*patch).to_owned()])
        .collect()
}

/// The mock's label-selected lists answer with every child `mock` applied, as the API server
/// lists a realm's children by its labels.
fn own_children(world: &mut World, mock: &Mock) {
    for call in mock.calls() {
        if call.method != "PATCH"
            || call.path.ends_with("/status")
            || call.path.contains("/authrealms/")
        {
            continue;
        }
        let segments: Vec<&str> = call.path.rsplitn(3, '/').collect();
        world
            .labelled
            .entry(segments[1].to_owned())
            .or_default()
            .push(segments[0].to_owned());
    }
}

const PODS: &str = "GET /api/v1/namespaces/auth/pods";
const EVENTS: &str = "POST /apis/events.k8s.io/v1/namespaces/auth/events";
const STATUS: &str = "PATCH /apis/portcullis.dev/v1alpha1/namespaces/auth/authrealms/demo/status";

fn concat(parts: &[&[&str]]) -> Vec<String> {
    parts
        .iter()
        .flat_map(|p| p.iter().map(|s| (*s).to_owned()))
        .collect()
}

fn status_patch(mock: &Mock) -> Option<Value> {
    mock.calls()
        .into_iter()
        .find(|c| c.path.ends_with("/status"))
        .map(|c| c.body["status"].clone())
}

fn condition(status: &Value, type_: &str) -> (String, String) {
    let c = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} in {status}"));
    (
        c["status"].as_str().unwrap().to_owned(),
        c["reason"].as_str().unwrap().to_owned(),
    )
}

fn event_reasons(mock: &Mock) -> Vec<String> {
    mock.calls()
        .into_iter()
        .filter(|c| c.method == "POST" && c.path.ends_with("/events"))
        .map(|c| c.body["reason"].as_str().unwrap().to_owned())
        .collect()
}

fn applied(mock: &Mock, path_end: &str) -> Value {
    mock.calls()
        .into_iter()
        .find(|c| c.method == "PATCH" && c.path.ends_with(path_end))
        .unwrap_or_else(|| panic!("nothing applied at {path_end}"))
        .body
}

#[tokio::test]
async fn a_legacy_finalizer_is_removed_before_anything_else() {
    let realm = realm(REALM_MINIMAL, true);
    let (result, mock) = reconcile_in(demo_world(&realm), &realm).await;
    result.unwrap();
    assert_eq!(mock.lines()[0], format!("PATCH {REALM_PATH}"));
    let patch = &mock.calls()[0].body;
    assert_eq!(
        patch,
        &json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": LEGACY_FINALIZER},
            {"op": "remove", "path": "/metadata/finalizers/0"}
        ])
    );
    assert_eq!(mock.lines()[1], DEMO_FETCH[0], "then the usual reconcile");
}

#[tokio::test]
async fn the_first_reconcile_fetches_applies_prunes_and_reports_in_order() {
    let realm = realm(REALM_MINIMAL, false);
    let (result, mock) = reconcile_in(demo_world(&realm), &realm).await;
    result.unwrap();
    assert_eq!(
        mock.lines(),
        concat(&[
            &DEMO_FETCH,
            &DEMO_PRUNE,
            &demo_create().iter().map(String::as_str).collect::<Vec<_>>(),
            &[EVENTS, PODS, STATUS, EVENTS]
        ])
    );
    for call in mock
        .calls()
        .iter()
        .filter(|c| c.method == "PATCH" && !c.path.ends_with("/status"))
    {
        assert!(
            call.query.contains("fieldManager=portcullis-operator"),
            "{}",
            call.query
        );
        assert!(call.query.contains("force=true"), "{}", call.query);
    }
    assert_eq!(event_reasons(&mock), ["SecretsGenerated", "Available"]);
    let status = status_patch(&mock).unwrap();
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(status["endpoint"], "https://auth.demo.example.com");
    assert_eq!(
        status["jwksUrl"],
        "https://auth.demo.example.com/.well-known/jwks.json"
    );
    assert_eq!(
        status["discoveryUrl"],
        "https://auth.demo.example.com/.well-known/openid-configuration"
    );
    assert_eq!(status["readyReplicas"], 1);
    assert_eq!(status["signingKeyIds"].as_array().unwrap().len(), 1);
    assert_eq!(
        condition(&status, "Ready"),
        ("True".into(), "Available".into())
    );
    assert_eq!(
        condition(&status, "SecretsReady"),
        ("True".into(), "KeysPresent".into())
    );
    assert_eq!(
        condition(&status, "MonitoringReady"),
        ("True".into(), "Configured".into())
    );
    assert_eq!(
        condition(&status, "Degraded"),
        ("False".into(), "AsExpected".into())
    );
    assert_eq!(
        condition(&status, "Paused"),
        ("False".into(), "Reconciling".into())
    );
}

/// The world after a first reconcile: the keys Secret exists and the status is written.
async fn settled(realm_yaml: &str) -> (Value, World, Mock) {
    let realm = realm(realm_yaml, false);
    let (result, first) = reconcile_in(demo_world(&realm), &realm).await;
    result.unwrap();
    let mut keys = applied(&first, "/secrets/demo-keys");
    keys["metadata"]["resourceVersion"] = "11".into();
    let mut realm = realm;
    realm["status"] = status_patch(&first).unwrap();
    let mut world = demo_world(&realm);
    world.secrets.insert("auth/demo-keys".into(), keys);
    own_children(&mut world, &first);
    (realm, world, first)
}

#[tokio::test]
async fn a_second_reconcile_with_nothing_changed_writes_no_status_and_no_event() {
    let (realm, world, first) = settled(REALM_MINIMAL).await;
    let (result, mock) = reconcile_in(world, &realm).await;
    result.unwrap();
    assert_eq!(
        mock.lines(),
        concat(&[&DEMO_FETCH, &DEMO_PRUNE, &DEMO_APPLY, &[PODS]])
    );
    for path in [
        "/secrets/demo-keys",
        "/deployments/demo",
        "/configmaps/demo-config",
    ] {
        assert_eq!(
            applied(&mock, path),
            applied(&first, path),
            "{path} is applied unchanged"
        );
    }
}

#[tokio::test]
async fn an_ingress_without_trusted_proxies_is_warned_about_once_and_the_realm_stays_ready() {
    let yaml = format!("{REALM_MINIMAL}  ingress: {{enabled: true}}\n");
    let (realm, world, first) = settled(&yaml).await;
    assert!(
        event_reasons(&first).contains(&"IngressProxyNotTrusted".to_owned()),
        "{:?}",
        event_reasons(&first)
    );
    let status = status_patch(&first).unwrap();
    assert_eq!(
        condition(&status, "Ready"),
        ("True".into(), "Available".into())
    );
    let ready = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(ready.contains("spec.trustedProxies is empty"), "{ready}");
    // Reconciled again with the warning on the realm: no second Event.
    let (result, again) = reconcile_in(world, &realm).await;
    result.unwrap();
    assert!(
        !event_reasons(&again).contains(&"IngressProxyNotTrusted".to_owned()),
        "{:?}",
        event_reasons(&again)
    );
}

#[tokio::test]
async fn a_realm_without_an_ingress_or_with_trusted_proxies_gets_no_proxy_warning() {
    for yaml in [
        REALM_MINIMAL.to_owned(),
        format!("{REALM_MINIMAL}  ingress: {{enabled: true}}\n  trustedProxies: [10.0.0.0/8]\n"),
    ] {
        let realm = realm(&yaml, false);
        let (result, mock) = reconcile_in(demo_world(&realm), &realm).await;
        result.unwrap();
        assert!(
            !event_reasons(&mock).contains(&"IngressProxyNotTrusted".to_owned()),
            "{yaml}"
        );
    }
}

#[tokio::test]
async fn a_spec_change_rolls_the_pods_and_reports_the_new_generation() {
    let (mut realm, _, first) = settled(REALM_MINIMAL).await;
    realm["spec"]["lockout"]["maxFailures"] = 7.into();
    realm["metadata"]["generation"] = 2.into();
    let mut world = demo_world(&realm);
    world.secrets.insert(
        "auth/demo-keys".into(),
        applied(&first, "/secrets/demo-keys"),
    );
    own_children(&mut world, &first);
    let (result, mock) = reconcile_in(world, &realm).await;
    result.unwrap();
    assert_eq!(
        mock.lines(),
        concat(&[&DEMO_FETCH, &DEMO_PRUNE, &DEMO_APPLY, &[PODS, STATUS]])
    );
    let checksum = |m: &Mock| {
        applied(m, "/deployments/demo")["spec"]["template"]["metadata"]["annotations"]
            ["portcullis.dev/config-checksum"]
            .clone()
    };
    assert_ne!(checksum(&mock), checksum(&first));
    assert_eq!(
        applied(&mock, "/secrets/demo-keys")["data"],
        applied(&first, "/secrets/demo-keys")["data"],
        "existing keys are kept"
    );
    assert_eq!(status_patch(&mock).unwrap()["observedGeneration"], 2);
    assert!(event_reasons(&mock).is_empty(), "Ready did not change");
}

#[tokio::test]
async fn children_no_longer_wanted_are_pruned() {
    let (mut realm, mut world, _) = settled(REALM_MINIMAL).await;
    realm["spec"]["networkPolicy"] = json!({"enabled": false});
    world.objects.insert(REALM_PATH.into(), realm.clone());
    let (result, mock) = reconcile_in(world, &realm).await;
    result.unwrap();
    let deletes: Vec<String> = mock
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("DELETE"))
        .collect();
    assert_eq!(
        deletes,
        [
            "DELETE /apis/networking.k8s.io/v1/namespaces/auth/networkpolicies/demo-default-deny",
            "DELETE /apis/networking.k8s.io/v1/namespaces/auth/networkpolicies/demo-egress",
            "DELETE /apis/networking.k8s.io/v1/namespaces/auth/networkpolicies/demo-ingress",
        ]
    );
    assert_eq!(event_reasons(&mock), ["Pruned"]);
}

#[tokio::test]
async fn a_missing_secret_stops_before_anything_is_applied() {
    let realm = realm(REALM_MINIMAL, false);
    let mut world = demo_world(&realm);
    world.secrets.clear();
    let (result, mock) = reconcile_in(world, &realm).await;
    result.unwrap();
    assert_eq!(mock.lines(), concat(&[&DEMO_FETCH, &[STATUS, EVENTS]]));
    let status = status_patch(&mock).unwrap();
    assert_eq!(
        condition(&status, "Ready"),
        ("False".into(), "SecretMissing".into())
    );
    assert_eq!(
        condition(&status, "SecretsReady"),
        ("False".into(), "SecretMissing".into())
    );
    let ready = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert!(
        ready["message"].as_str().unwrap().contains("demo-postgres"),
        "{ready}"
    );
    assert_eq!(event_reasons(&mock), ["SecretMissing"]);
}

#[tokio::test]
async fn an_invalid_spec_is_reported_and_nothing_is_applied() {
    let mut realm = realm(REALM_MINIMAL, false);
    realm["spec"]["replicas"] = 3.into();
    let (result, mock) = reconcile_in(demo_world(&realm), &realm).await;
    assert!(matches!(result.unwrap(), a if a == Action::await_change()));
    assert!(
        !mock
            .lines()
            .iter()
            .any(|l| l.starts_with("PATCH") && !l.ends_with("/status"))
    );
    let status = status_patch(&mock).unwrap();
    assert_eq!(
        condition(&status, "Ready"),
        ("False".into(), "ReplicasWithoutRedis".into())
    );
    assert_eq!(event_reasons(&mock), ["ReplicasWithoutRedis"]);
}

#[tokio::test]
async fn without_cert_manager_the_realm_runs_and_says_the_certificate_cannot_be_made() {
    let realm = realm(REALM_FULL, false);
    let (result, mock) = reconcile_in(acme_world(&realm), &realm).await;
    result.unwrap();
    let lines = mock.lines();
    assert!(lines.contains(
        &"GET /apis/apiextensions.k8s.io/v1/customresourcedefinitions/certificates.cert-manager.io".to_owned()
    ));
    assert!(
        !lines.iter().any(|l| l.contains("cert-manager.io/v1")),
        "no Certificate call: {lines:#?}"
    );
    let applies: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("PATCH") && !l.ends_with("/status"))
        .map(|l| l.rsplit('/').next().unwrap())
        .collect();
    assert_eq!(
        applies,
        [
            "acme",
            "acme-keys",
            "acme-config",
            "acme-dashboard",
            "acme",
            "acme-default-deny",
            "acme-ingress",
            "acme-egress",
            "acme",
            "acme",
            "acme",
            "acme",
            "acme"
        ]
    );
    let status = status_patch(&mock).unwrap();
    assert_eq!(
        condition(&status, "CertificateReady"),
        ("False".into(), "CertManagerMissing".into())
    );
    assert_eq!(
        condition(&status, "Degraded"),
        ("True".into(), "CertManagerMissing".into())
    );
    assert_eq!(
        condition(&status, "Ready"),
        ("True".into(), "Available".into())
    );
}

#[tokio::test]
async fn with_cert_manager_a_certificate_is_applied() {
    let realm = realm(REALM_FULL, false);
    let mut world = acme_world(&realm);
    world.crds.insert("certificates.cert-manager.io".into());
    let (result, mock) = reconcile_in(world, &realm).await;
    result.unwrap();
    let certificate = applied(&mock, "/certificates/acme-tls");
    assert_eq!(certificate["spec"]["issuerRef"]["name"], "letsencrypt-prod");
    let status = status_patch(&mock).unwrap();
    assert_eq!(
        condition(&status, "CertificateReady"),
        ("True".into(), "Requested".into())
    );
}

#[tokio::test]
async fn a_paused_realm_is_left_alone_and_says_so() {
    let mut realm = realm(REALM_MINIMAL, false);
    realm["spec"]["paused"] = true.into();
    let (result, mock) = reconcile_in(demo_world(&realm), &realm).await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert_eq!(mock.lines(), [STATUS, EVENTS]);
    let status = status_patch(&mock).unwrap();
    assert_eq!(
        condition(&status, "Paused"),
        ("True".into(), "Paused".into())
    );
    assert_eq!(event_reasons(&mock), ["Paused"]);
}

#[tokio::test]
async fn a_deleted_realm_is_left_to_the_garbage_collector() {
    let mut realm = realm(REALM_FULL, false);
    realm["metadata"]["deletionTimestamp"] = "2027-01-15T08:00:00Z".into();
    let (result, mock) = reconcile_in(acme_world(&realm), &realm).await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert!(mock.lines().is_empty(), "{:?}", mock.lines());
}

#[tokio::test]
async fn a_failed_api_call_is_an_error_to_retry() {
    let realm = realm(REALM_MINIMAL, false);
    let mut world = demo_world(&realm);
    world.lists.remove("ratelimitpolicies");
    let (result, mock) = reconcile_in(world, &realm).await;
    let error = result.unwrap_err();
    assert_eq!(error.reason(), "ApiError");
    assert_eq!(mock.lines(), [DEMO_FETCH[0]]);
}

#[tokio::test]
async fn admitted_clients_reach_the_config_and_the_keys_and_others_do_not() {
    let realm = realm(REALM_FULL, false);
    let mut world = acme_world(&realm);
    let mut clients: Vec<Value> = portcullis_crds::parse_manifests(AUTH_CLIENTS)
        .unwrap()
        .clients
        .into_iter()
        .map(|c| serde_json::to_value(c).unwrap())
        .collect();
    // A client from a namespace the realm's clientNamespaces does not select.
    let mut stranger = clients[0].clone();
    stranger["metadata"]["namespace"] = "elsewhere".into();
    stranger["metadata"]["name"] = "stranger".into();
    stranger["spec"]["clientId"] = "stranger".into();
    clients.push(stranger);
    world.lists.insert("authclients".into(), clients);
    world.lists.insert(
        "namespaces".into(),
        vec![
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "billing"}}),
        ],
    );
    let (result, mock) = reconcile_in(world, &realm).await;
    result.unwrap();
    let namespaces = mock
        .calls()
        .into_iter()
        .find(|c| c.path == "/api/v1/namespaces")
        .expect("the admitted namespaces are listed");
    assert!(
        namespaces.query.contains("labelSelector="),
        "{}",
        namespaces.query
    );
    let config = applied(&mock, "/configmaps/acme-config");
    let yaml = config["data"]["realm.yaml"].as_str().unwrap();
    let read = portcullis_crds::parse_manifests(yaml).unwrap();
    let ids: Vec<String> = read.clients.iter().map(|c| c.client_id()).collect();
    assert_eq!(ids, ["billing-worker", "shop-shop-spa", "shop-web"]);
    let keys = applied(&mock, "/secrets/acme-keys");
    let names: Vec<&String> = keys["data"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("client-secret-"))
        .collect();
    assert_eq!(
        names,
        ["client-secret-billing-worker", "client-secret-shop-web"],
        "confidential admitted clients only"
    );
}
