//! The AuthClient controller against the mocked API: the exact calls of each case.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::controllers::metrics::Metrics;
use crate::controllers::mock::{Mock, World};
use crate::controllers::realm::tests::{now, realm};
use crate::resources::tests::REALM_MINIMAL;

const REALM_PATH: &str = "/apis/portcullis.dev/v1alpha1/namespaces/auth/authrealms/demo";

/// An AuthClient `name` in `namespace` naming the minimal sample realm (`auth/demo`).
pub(crate) fn client(namespace: &str, name: &str, kind: &str, extra: Value) -> Value {
    let mut spec = json!({"realmRef": {"name": "demo", "namespace": "auth"}, "type": kind,
        "redirectUris": ["https://app.example.com/cb"]});
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    json!({"apiVersion": "portcullis.dev/v1alpha1", "kind": "AuthClient",
        "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{name}"),
            "generation": 1, "creationTimestamp": "2027-01-01T00:00:00Z"},
        "spec": spec})
}

/// The realm, its keys Secret (with the client secret of `shop-web`) and the clients.
pub(crate) fn world(clients: &[&Value]) -> World {
    let mut world = World::default();
    world
        .objects
        .insert(REALM_PATH.into(), realm(REALM_MINIMAL, false));
    world.lists.insert(
        "authclients".into(),
        clients.iter().map(|c| (*c).clone()).collect(),
    );
    for client in clients {
        world.objects.insert(
            format!(
                "/apis/portcullis.dev/v1alpha1/namespaces/{}/authclients/{}",
                client["metadata"]["namespace"].as_str().unwrap(),
                client["metadata"]["name"].as_str().unwrap()
            ),
            (*client).clone(),
        );
    }
    world.secrets.insert(
        "auth/demo-keys".into(),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "demo-keys"},
            "data": {"client-secret-auth-web": "c2VjcmV0"}}),
    );
    world
}

pub(crate) async fn reconcile_in(
    world: World,
    client: &Value,
) -> (Result<Action, ReconcileError>, Mock) {
    let mock = Mock::start(world);
    let ctx = Arc::new(Context::with_clock(
        mock.client.clone(),
        Arc::new(Metrics::default()),
        Arc::new(now),
    ));
    let client: AuthClient = serde_json::from_value(client.clone()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), reconcile(Arc::new(client), ctx))
        .await
        .expect("the reconcile finished");
    (result, mock)
}

fn status(mock: &Mock) -> Value {
    mock.calls()
        .into_iter()
        .find(|c| c.path.ends_with("/status"))
        .expect("a status apply")
        .body
}

fn condition(status: &Value, type_: &str) -> (String, String) {
    let c = status["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap();
    (
        c["status"].as_str().unwrap().into(),
        c["reason"].as_str().unwrap().into(),
    )
}

#[tokio::test]
async fn an_admitted_confidential_client_gets_its_secret_next_to_it() {
    let web = client("auth", "web", "Confidential", json!({}));
    let (result, mock) = reconcile_in(world(&[&web]), &web).await;
    result.unwrap();
    assert_eq!(
        mock.lines(),
        [
            format!("GET {REALM_PATH}"),
            "GET /apis/portcullis.dev/v1alpha1/authclients".to_owned(),
            "GET /api/v1/namespaces/auth/secrets/web-oidc".to_owned(),
            "GET /api/v1/namespaces/auth/secrets/demo-keys".to_owned(),
            "PATCH /api/v1/namespaces/auth/secrets/web-oidc".to_owned(),
            "PATCH /apis/portcullis.dev/v1alpha1/namespaces/auth/authclients/web/status".to_owned(),
            "POST /apis/events.k8s.io/v1/namespaces/auth/events".to_owned(),
            "POST /apis/events.k8s.io/v1/namespaces/auth/events".to_owned(),
        ]
    );
    let secret = &mock.calls()[4];
    assert!(secret.query.contains("fieldManager=portcullis-operator"));
    assert_eq!(secret.body["data"]["client_secret"], "c2VjcmV0");
    assert_eq!(
        secret.body["metadata"]["ownerReferences"][0]["uid"],
        "uid-web"
    );
    let status = status(&mock);
    assert_eq!(
        status["kind"], "AuthClient",
        "the status is applied server-side"
    );
    assert_eq!(
        condition(&status, "Accepted"),
        ("True".into(), "Admitted".into())
    );
    assert_eq!(
        condition(&status, "Ready"),
        ("True".into(), "SecretWritten".into())
    );
    assert_eq!(status["status"]["clientId"], "auth-web");
    assert_eq!(status["status"]["secretName"], "web-oidc");
}

#[tokio::test]
async fn a_secret_of_that_name_not_created_for_the_client_is_left_alone() {
    let web = client(
        "auth",
        "web",
        "Confidential",
        json!({"secretName": "demo-keys"}),
    );
    let (result, mock) = reconcile_in(world(&[&web]), &web).await;
    result.unwrap();
    assert!(
        mock.lines()
            .iter()
            .all(|l| !l.starts_with("PATCH /api/v1") && !l.starts_with("DELETE")),
        "{:?}",
        mock.lines()
    );
    assert_eq!(
        condition(&status(&mock), "Ready"),
        ("False".into(), "SecretNameTaken".into())
    );
}

#[tokio::test]
async fn a_younger_client_with_a_taken_id_gets_nothing_and_loses_what_it_had() {
    let older = client(
        "auth",
        "older",
        "Confidential",
        json!({"clientId": "auth-web"}),
    );
    let mut younger = client("auth", "web", "Confidential", json!({}));
    younger["metadata"]["creationTimestamp"] = "2027-01-02T00:00:00Z".into();
    let mut world = world(&[&younger, &older]);
    world.secrets.insert(
        "auth/web-oidc".into(),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "web-oidc", "uid": "secret-uid",
            "ownerReferences": [{"apiVersion": "portcullis.dev/v1alpha1", "kind": "AuthClient",
                "name": "web", "uid": "uid-web", "controller": true}]}}),
    );
    let (result, mock) = reconcile_in(world, &younger).await;
    result.unwrap();
    let writes: Vec<String> = mock
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("PATCH /api/v1") || l.starts_with("DELETE"))
        .collect();
    assert_eq!(writes, ["DELETE /api/v1/namespaces/auth/secrets/web-oidc"]);
    let delete = mock
        .calls()
        .into_iter()
        .find(|c| c.method == "DELETE")
        .unwrap();
    assert_eq!(delete.body["preconditions"]["uid"], "secret-uid");
    assert_eq!(
        condition(&status(&mock), "Accepted"),
        ("False".into(), "ClientIdTaken".into())
    );
}

#[tokio::test]
async fn a_missing_realm_is_reported() {
    let web = client(
        "auth",
        "web",
        "Public",
        json!({"realmRef": {"name": "nope"}}),
    );
    let (result, mock) = reconcile_in(world(&[&web]), &web).await;
    result.unwrap();
    assert_eq!(
        condition(&status(&mock), "Accepted"),
        ("False".into(), "RealmNotFound".into())
    );
}
