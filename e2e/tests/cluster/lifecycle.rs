//! Scenario 6: a RetentionPolicy's run-now annotation starts a Job whose pod the test node
//! runs with the real auth server against a real PostgreSQL database, and the run's summary
//! reaches the policy's status; deleting the realm (foreground) completes its finalizer and
//! the real garbage collector removes every owned child, the retained keys Secret stays and a
//! re-created realm serves with the same key material (byte-identical);
//! deleting the policy removes its CronJob and Jobs.

use std::time::{Duration, Instant};

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

use crate::harness::{
    eventually, forbidden, leading_operator, minimal_realm, operator_setup, read_documents,
    ready_realm, rendered_children, resource, sample,
};
use crate::take_cluster;

const NS: &str = "e2e-lifecycle";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s6_a_retention_run_reports_its_summary_and_realm_deletion_lets_the_gc_remove_the_children()
{
    let Some((_guard, cluster)) = take_cluster("6 (retention run, deletion)").await else {
        return;
    };
    let started = Instant::now();
    let account = operator_setup(&cluster).await;
    let database = cluster.database("e2e_lifecycle").await;
    let operator = leading_operator(&cluster, &account, "lifecycle").await;
    minimal_realm(&cluster, NS, &database).await;
    let mut policy = read_documents("config/samples/retentionpolicy.yaml").remove(0);
    policy["metadata"] = json!({"name": "demo-gdpr", "namespace": NS});
    policy["spec"]["targetRef"]["name"] = "demo".into();
    cluster.apply(&policy).await;
    let ready = ready_realm(&cluster, NS, "demo", Duration::from_secs(180)).await;
    assert_eq!(
        ready["status"]["attachedPolicies"]["retention"],
        "demo-gdpr"
    );
    let cron_job = eventually("the retention CronJob", Duration::from_secs(60), || async {
        cluster
            .get("batch/v1", "CronJob", Some(NS), "demo-gdpr-retention")
            .await
            .ok_or_else(|| "missing".to_owned())
    })
    .await;
    assert_eq!(
        cron_job["metadata"]["ownerReferences"][0]["kind"],
        "RetentionPolicy"
    );

    // Run now: the operator starts a Job, the node runs `portcullis-authserver retention run`
    // with the pod's arguments, mounted configuration and environment, and the summary in the
    // termination message reaches the policy's status.
    let run_started = Instant::now();
    let policies: Api<DynamicObject> = Api::namespaced_with(
        cluster.client.clone(),
        NS,
        &resource("portcullis.dev/v1alpha1", "RetentionPolicy"),
    );
    policies
        .patch(
            "demo-gdpr",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"portcullis.dev/run-now": "e2e-1"}}}),
            ),
        )
        .await
        .unwrap();
    let last_run = eventually(
        "the run's summary in the policy status",
        Duration::from_secs(180),
        || async {
            let policy = cluster
                .get(
                    "portcullis.dev/v1alpha1",
                    "RetentionPolicy",
                    Some(NS),
                    "demo-gdpr",
                )
                .await
                .ok_or("no policy")?;
            let last = &policy["status"]["lastRun"];
            if last["succeeded"] == true && last["counts"].is_object() {
                Ok(last.clone())
            } else {
                Err(format!("status {}", policy["status"]))
            }
        },
    )
    .await;
    let run_took = run_started.elapsed();
    assert!(last_run["finishedAt"].is_string(), "{last_run}");
    let jobs = cluster
        .list(
            "batch/v1",
            "Job",
            NS,
            "app.kubernetes.io/component=retention",
        )
        .await;
    assert_eq!(jobs.len(), 1, "one Job for one run-now value");
    assert_eq!(jobs[0]["status"]["succeeded"], 1, "{}", jobs[0]["status"]);
    // The real server ran against the realm's database: its migrations are there.
    let pool = sqlx::PgPool::connect(&database).await.unwrap();
    let (migrations,): (i64,) = sqlx::query_as("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert!(migrations > 0);

    let keys_before = cluster
        .get("v1", "Secret", Some(NS), "demo-keys")
        .await
        .unwrap()["data"]
        .clone();

    // Realm deletion, foreground: the garbage collector removes every owned child before the
    // realm goes.
    let children = rendered_children(&[sample("realm-minimal.yaml")]);
    let realms: Api<DynamicObject> = Api::namespaced_with(
        cluster.client.clone(),
        NS,
        &resource("portcullis.dev/v1alpha1", "AuthRealm"),
    );
    realms
        .delete("demo", &DeleteParams::foreground())
        .await
        .unwrap();
    let deleting = Instant::now();
    eventually("the realm gone", Duration::from_secs(120), || async {
        match cluster
            .get("portcullis.dev/v1alpha1", "AuthRealm", Some(NS), "demo")
            .await
        {
            None => Ok(()),
            Some(r) => Err(format!("finalizers {}", r["metadata"]["finalizers"])),
        }
    })
    .await;
    // A reconcile that was under way when the deletion began may still write a child with an
    // owner reference to the deleted realm; the garbage collector removes such an orphan too.
    eventually(
        "every owned child gone, the retained keys Secret kept",
        Duration::from_secs(60),
        || async {
            for child in &children {
                let keys = child.kind == "Secret" && child.name == "demo-keys";
                let object = cluster
                    .get(&child.api_version, &child.kind, Some(NS), &child.name)
                    .await;
                if keys {
                    // deletionPolicy Retain (the default): the key material outlives the realm.
                    assert!(object.is_some(), "the retained keys Secret was deleted");
                } else if object.is_some() {
                    return Err(format!("{} {} outlived its realm", child.kind, child.name));
                }
            }
            Ok(())
        },
    )
    .await;
    let pods: Vec<Value> = cluster
        .list("v1", "Pod", NS, "app.kubernetes.io/component=server")
        .await;
    assert!(
        pods.is_empty(),
        "server pods outlived the realm: {}",
        pods.len()
    );
    let gc_took = deleting.elapsed();

    // The realm comes back: it finds its retained keys Secret and serves with the very same
    // pepper, Fernet ring and signing keys, so every password hash and TOTP secret in the
    // database stays usable.
    minimal_realm(&cluster, NS, &database).await;
    ready_realm(&cluster, NS, "demo", Duration::from_secs(120)).await;
    let keys_after = cluster
        .get("v1", "Secret", Some(NS), "demo-keys")
        .await
        .unwrap()["data"]
        .clone();
    for key in [
        "pepper",
        "fernet-keys",
        "signing-keys.json",
        "cookie-key",
        "admin-token",
    ] {
        assert!(keys_before[key].is_string(), "{key} missing before");
        assert_eq!(
            keys_after[key], keys_before[key],
            "{key} changed when the realm was re-created"
        );
    }

    // The policy's deletion: its finalizer removes the CronJob and the Jobs.
    policies
        .delete("demo-gdpr", &DeleteParams::background())
        .await
        .unwrap();
    eventually(
        "the policy and its CronJob and Jobs gone",
        Duration::from_secs(120),
        || async {
            let left = [
                cluster
                    .get(
                        "portcullis.dev/v1alpha1",
                        "RetentionPolicy",
                        Some(NS),
                        "demo-gdpr",
                    )
                    .await
                    .is_some(),
                cluster
                    .get("batch/v1", "CronJob", Some(NS), "demo-gdpr-retention")
                    .await
                    .is_some(),
                !cluster
                    .list(
                        "batch/v1",
                        "Job",
                        NS,
                        "app.kubernetes.io/component=retention",
                    )
                    .await
                    .is_empty(),
            ];
            if left.iter().any(|l| *l) {
                Err(format!("{left:?}"))
            } else {
                Ok(())
            }
        },
    )
    .await;

    let refused = forbidden(&operator.proxy);
    assert!(refused.is_empty(), "the operator was refused: {refused:?}");
    cluster.remove_namespaces(&[NS]).await;
    drop(operator);
    eprintln!(
        "scenario 6 took {:?}; run-now to summary {run_took:?}; realm deletion {gc_took:?}",
        started.elapsed()
    );
}
