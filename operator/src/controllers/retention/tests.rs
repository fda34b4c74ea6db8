//! The RetentionPolicy reconcile against a mocked API server.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::*;
use crate::controllers::metrics::Metrics;
use crate::controllers::mock::{Mock, World};
use crate::resources::tests::{REALM_FULL, RETENTION};

const NS: &str = "/apis/portcullis.dev/v1alpha1/namespaces/identity";
const EVENTS: &str = "POST /apis/events.k8s.io/v1/namespaces/identity/events";

pub(crate) fn policy(name: &str, created: &str, annotations: Value) -> Value {
    let mut p = serde_json::to_value(
        portcullis_crds::parse_manifests(RETENTION)
            .unwrap()
            .retention_policies
            .remove(0),
    )
    .unwrap();
    p["metadata"]["name"] = name.into();
    p["metadata"]["uid"] = format!("uid-{name}").into();
    p["metadata"]["generation"] = 1.into();
    p["metadata"]["creationTimestamp"] = created.into();
    p["metadata"]["finalizers"] = json!([FINALIZER]);
    p["metadata"]["annotations"] = annotations;
    p
}

pub(crate) fn world(policies: &[&Value]) -> World {
    let mut world = World::default();
    let realm = portcullis_crds::parse_manifests(REALM_FULL)
        .unwrap()
        .realms
        .remove(0);
    world.objects.insert(
        format!("{NS}/authrealms/acme"),
        serde_json::to_value(realm).unwrap(),
    );
    for p in policies {
        let name = p["metadata"]["name"].as_str().unwrap();
        world
            .objects
            .insert(format!("{NS}/retentionpolicies/{name}"), (*p).clone());
    }
    world.lists.insert(
        "retentionpolicies".into(),
        policies.iter().map(|p| (*p).clone()).collect(),
    );
    world.lists.insert("jobs".into(), vec![]);
    world.secrets.insert(
        "identity/acme-keys".into(),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "acme-keys"},
               "data": {"admin-token": "dG9rZW4="}}),
    );
    world
}

async fn run(world: World, policy: &Value) -> Mock {
    let mock = Mock::start(world);
    let ctx = Arc::new(Context::with_clock(
        mock.client.clone(),
        Arc::new(Metrics::default()),
        Arc::new(|| Timestamp::from_second(1_800_000_000).unwrap()),
    ));
    let policy: RetentionPolicy = serde_json::from_value(policy.clone()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), reconcile(Arc::new(policy), ctx))
        .await
        .unwrap()
        .unwrap();
    mock
}

fn status(mock: &Mock) -> Value {
    mock.calls()
        .into_iter()
        .find(|c| c.path.ends_with("/status"))
        .unwrap()
        .body["status"]
        .clone()
}

fn accepted(status: &Value) -> (String, String) {
    let c = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Accepted")
        .unwrap()
        .clone();
    (
        c["status"].as_str().unwrap().into(),
        c["reason"].as_str().unwrap().into(),
    )
}

const FETCH: [&str; 4] = [
    "GET /apis/portcullis.dev/v1alpha1/namespaces/identity/authrealms/acme",
    "GET /apis/portcullis.dev/v1alpha1/namespaces/identity/retentionpolicies",
    "GET /api/v1/namespaces/identity/secrets/acme-keys",
    "GET /apis/batch/v1/namespaces/identity/jobs",
];

#[tokio::test]
async fn a_policy_is_accepted_with_its_next_run() {
    let p = policy("acme-gdpr", "2027-01-01T00:00:00Z", json!({}));
    let mock = run(world(&[&p]), &p).await;
    let mut expected: Vec<String> = FETCH.iter().map(|s| (*s).to_owned()).collect();
    expected.push(format!("PATCH {NS}/retentionpolicies/acme-gdpr/status"));
    expected.push(EVENTS.to_owned());
    assert_eq!(mock.lines(), expected);
    let status = status(&mock);
    assert_eq!(accepted(&status), ("True".into(), "Accepted".into()));
    // 1_800_000_000 is 2027-01-15T08:00:00Z; the schedule is 02:30 daily.
    assert_eq!(status["nextRunAt"], "2027-01-16T02:30:00Z");
}

#[tokio::test]
async fn the_run_now_annotation_starts_a_job_once() {
    let p = policy(
        "acme-gdpr",
        "2027-01-01T00:00:00Z",
        json!({"portcullis.dev/run-now": "2027-01-15T08:00"}),
    );
    let mock = run(world(&[&p]), &p).await;
    let mut expected: Vec<String> = FETCH.iter().map(|s| (*s).to_owned()).collect();
    expected.extend([
        "POST /apis/batch/v1/namespaces/identity/jobs".to_owned(),
        format!("PATCH {NS}/retentionpolicies/acme-gdpr"),
        EVENTS.to_owned(),
        format!("PATCH {NS}/retentionpolicies/acme-gdpr/status"),
        EVENTS.to_owned(),
    ]);
    assert_eq!(mock.lines(), expected);
    let calls = mock.calls();
    let job = &calls[4].body;
    assert!(
        job["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("acme-gdpr-run-")
    );
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()[0..2],
        [json!("retention"), json!("run")]
    );
    assert_eq!(job["metadata"]["ownerReferences"][0]["name"], "acme-gdpr");
    assert_eq!(
        calls[5].body["metadata"]["annotations"]["portcullis.dev/run-now-handled"],
        "2027-01-15T08:00"
    );

    // Once handled, the same value starts nothing.
    let mut handled = p.clone();
    handled["metadata"]["annotations"]["portcullis.dev/run-now-handled"] =
        "2027-01-15T08:00".into();
    let again = run(world(&[&handled]), &handled).await;
    assert!(
        !again
            .lines()
            .iter()
            .any(|l| l.starts_with("POST /apis/batch"))
    );
}

#[tokio::test]
async fn a_second_policy_for_the_same_realm_is_not_accepted() {
    let first = policy("acme-gdpr", "2027-01-01T00:00:00Z", json!({}));
    let second = policy(
        "acme-other",
        "2027-01-02T00:00:00Z",
        json!({"portcullis.dev/run-now": "now"}),
    );
    let mock = run(world(&[&first, &second]), &second).await;
    let status = status(&mock);
    assert_eq!(
        accepted(&status),
        ("False".into(), "MultipleRetentionPolicies".into())
    );
    assert!(status.get("nextRunAt").is_none());
    assert!(
        !mock
            .lines()
            .iter()
            .any(|l| l.starts_with("POST /apis/batch")),
        "a rejected policy runs nothing"
    );
}

#[tokio::test]
async fn the_last_run_comes_from_the_newest_job() {
    let p = policy("acme-gdpr", "2027-01-01T00:00:00Z", json!({}));
    let mut world = world(&[&p]);
    let job = |name: &str, start: &str, done: Option<&str>, ok: i32| {
        let mut status = json!({"startTime": start, "succeeded": ok});
        if let Some(done) = done {
            status["completionTime"] = done.into();
        }
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
               "spec": {"template": {}}, "status": status})
    };
    world.lists.insert(
        "jobs".into(),
        vec![
            job(
                "old",
                "2027-01-13T02:30:00Z",
                Some("2027-01-13T02:31:00Z"),
                1,
            ),
            job(
                "new",
                "2027-01-14T02:30:00Z",
                Some("2027-01-14T02:32:00Z"),
                1,
            ),
        ],
    );
    world.lists.insert(
        "pods".into(),
        vec![json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "new-x"},
            "status": {"containerStatuses": [{"name": "retention", "image": "i", "imageID": "",
                "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0,
                    "message": "{\"dryRun\":false,\"counts\":{\"auditLogsPseudonymized\":12,\"unverifiedAccountsDeleted\":3}}"}}}]}})],
    );
    let mock = run(world, &p).await;
    let pods_call = mock
        .calls()
        .into_iter()
        .find(|c| c.path.ends_with("/pods"))
        .unwrap();
    assert!(
        pods_call.query.contains("job-name%3Dnew") || pods_call.query.contains("job-name=new"),
        "{}",
        pods_call.query
    );
    let last = &status(&mock)["lastRun"];
    assert_eq!(last["startedAt"], "2027-01-14T02:30:00Z");
    assert_eq!(last["finishedAt"], "2027-01-14T02:32:00Z");
    assert_eq!(last["succeeded"], true);
    assert_eq!(
        last["counts"],
        json!({"auditLogsPseudonymized": 12, "unverifiedAccountsDeleted": 3})
    );
}

#[tokio::test]
async fn deleting_a_policy_removes_its_cronjob_and_jobs_then_the_finalizer() {
    let mut p = policy("acme-gdpr", "2027-01-01T00:00:00Z", json!({}));
    p["metadata"]["deletionTimestamp"] = "2027-01-15T08:00:00Z".into();
    let mut world = world(&[&p]);
    world.lists.insert(
        "jobs".into(),
        vec![
            json!({"apiVersion": "batch/v1", "kind": "Job",
                   "metadata": {"name": "acme-gdpr-run-1", "ownerReferences": [
                       {"apiVersion": "portcullis.dev/v1alpha1", "kind": "RetentionPolicy", "name": "acme-gdpr", "uid": "uid-acme-gdpr"}]},
                   "spec": {"template": {}}}),
            json!({"apiVersion": "batch/v1", "kind": "Job",
                   "metadata": {"name": "unrelated"}, "spec": {"template": {}}}),
        ],
    );
    let mock = run(world, &p).await;
    assert_eq!(
        mock.lines(),
        [
            "DELETE /apis/batch/v1/namespaces/identity/cronjobs/acme-gdpr-retention".to_owned(),
            "GET /apis/batch/v1/namespaces/identity/jobs".to_owned(),
            "DELETE /apis/batch/v1/namespaces/identity/jobs/acme-gdpr-run-1".to_owned(),
            format!("PATCH {NS}/retentionpolicies/acme-gdpr"),
        ]
    );
}
