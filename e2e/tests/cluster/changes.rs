//! Scenario 5: a spec change rolls the pods (the config checksum in the pod template), every
//! deleted child comes back, and a missing referenced Secret gives `Ready=False` with a reason
//! and an Event, leaves what runs alone, and fixing it recovers.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{
    Cluster, condition, eventually, forbidden, leading_operator, minimal_realm, operator_marks,
    operator_setup, ready_realm, rendered_children, sample,
};
use crate::take_cluster;

const NS: &str = "e2e-changes";
const CHECKSUM: &str = "portcullis.dev/config-checksum";

async fn deployment(cluster: &Cluster) -> Value {
    cluster
        .get("apps/v1", "Deployment", Some(NS), "demo")
        .await
        .unwrap()
}

fn checksum(deployment: &Value) -> String {
    deployment["spec"]["template"]["metadata"]["annotations"][CHECKSUM]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s5_a_spec_change_rolls_the_pods_deleted_children_return_and_a_missing_secret_is_reported()
{
    let Some((_guard, cluster)) = take_cluster("5 (rollout, deleted child, missing Secret)").await
    else {
        return;
    };
    let started = Instant::now();
    let account = operator_setup(&cluster).await;
    let database = cluster.database("e2e_changes").await;
    let operator = leading_operator(&cluster, &account, "changes").await;
    let mut realm = minimal_realm(&cluster, NS, &database).await;
    let before = ready_realm(&cluster, NS, "demo", Duration::from_secs(180)).await;
    let first = checksum(&deployment(&cluster).await);

    // A GitOps tool labels and annotates the realm: metadata is not configuration, so the
    // pods do not restart (the config checksum stays; the ConfigMap is rewritten as it was).
    let mut tracked = realm.clone();
    tracked["metadata"]["labels"] = json!({"argocd.argoproj.io/instance": "auth"});
    tracked["metadata"]["annotations"] =
        json!({"example.com/tracking-id": "auth:portcullis.dev/AuthRealm:e2e-changes/demo"});
    cluster.apply(&tracked).await;
    // The operator reconciles a changed realm within a second; watch the pod template for
    // a few seconds more than that.
    let watching = Instant::now();
    while watching.elapsed() < Duration::from_secs(6) {
        assert_eq!(
            checksum(&deployment(&cluster).await),
            first,
            "labelling the realm restarted the auth server"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    realm = tracked;

    // A spec change: a new configuration checksum in the pod template, a new ReplicaSet, and
    // every pod replaced by one carrying the new checksum.
    realm["spec"]["lockout"] = json!({"maxFailures": 7});
    cluster.apply(&realm).await;
    let changed = ready_realm(&cluster, NS, "demo", Duration::from_secs(120)).await;
    assert!(
        changed["metadata"]["generation"].as_i64() > before["metadata"]["generation"].as_i64(),
        "the spec change made a new generation"
    );
    let second = eventually("the pods rolled", Duration::from_secs(120), || async {
        let deployment = deployment(&cluster).await;
        let now = checksum(&deployment);
        if now == first {
            return Err("the checksum did not change".to_owned());
        }
        let status = &deployment["status"];
        if status["observedGeneration"] != deployment["metadata"]["generation"]
            || status["updatedReplicas"] != status["replicas"]
            || status["readyReplicas"] != deployment["spec"]["replicas"]
            || status["replicas"] != deployment["spec"]["replicas"]
        {
            return Err(format!("rollout in progress: {status}"));
        }
        let pods = cluster
            .list("v1", "Pod", NS, "app.kubernetes.io/instance=demo")
            .await;
        let live: Vec<&Value> = pods
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .collect();
        if live.is_empty()
            || live
                .iter()
                .any(|p| p["metadata"]["annotations"][CHECKSUM] != now.as_str())
        {
            return Err(format!(
                "{} pods, not all with the new checksum",
                live.len()
            ));
        }
        Ok(now)
    })
    .await;
    let replica_sets = cluster
        .list(
            "apps/v1",
            "ReplicaSet",
            NS,
            "app.kubernetes.io/instance=demo",
        )
        .await;
    let templates: Vec<&str> = replica_sets
        .iter()
        .map(|rs| {
            rs["spec"]["template"]["metadata"]["annotations"][CHECKSUM]
                .as_str()
                .unwrap()
        })
        .collect();
    assert!(
        templates.contains(&first.as_str()) && templates.contains(&second.as_str()),
        "{templates:?}"
    );

    // Every child (but the keys Secret, whose loss would mean new keys), deleted on its own,
    // comes back: the operator notices each deletion, it does not wait for a resync.
    let children = rendered_children(&[sample("realm-minimal.yaml")]);
    let deleted = Instant::now();
    let mut slowest = (Duration::ZERO, String::new());
    for child in children
        .iter()
        .filter(|c| !(c.kind == "Secret" && c.name == "demo-keys"))
    {
        let object = cluster
            .get(&child.api_version, &child.kind, Some(NS), &child.name)
            .await
            .unwrap_or_else(|| panic!("{child:?} missing"));
        let uid = object["metadata"]["uid"].clone();
        cluster
            .delete(&child.api_version, &child.kind, Some(NS), &child.name)
            .await;
        let one = Instant::now();
        eventually(
            &format!("{} {} back", child.kind, child.name),
            Duration::from_secs(60),
            || async {
                match cluster
                    .get(&child.api_version, &child.kind, Some(NS), &child.name)
                    .await
                {
                    Some(o) if o["metadata"]["uid"] != uid => Ok(()),
                    Some(_) => Err("not deleted yet".to_owned()),
                    None => Err("missing".to_owned()),
                }
            },
        )
        .await;
        if one.elapsed() > slowest.0 {
            slowest = (one.elapsed(), format!("{} {}", child.kind, child.name));
        }
    }
    let recreated_after = deleted.elapsed();
    ready_realm(&cluster, NS, "demo", Duration::from_secs(120)).await;

    // A referenced Secret goes missing: Ready=False with a reason, an Event, and the running
    // Deployment is left as it is.
    let running = operator_marks(&deployment(&cluster).await);
    cluster
        .delete("v1", "Secret", Some(NS), "demo-postgres")
        .await;
    let broken = eventually(
        "Ready=False for the missing Secret",
        Duration::from_secs(60),
        || async {
            let realm = cluster
                .get("portcullis.dev/v1alpha1", "AuthRealm", Some(NS), "demo")
                .await
                .ok_or("no realm")?;
            match condition(&realm, "Ready") {
                Some((s, reason, message)) if s == "False" => Ok((reason, message)),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    assert_eq!(broken.0, "SecretMissing", "{broken:?}");
    assert!(broken.1.contains("demo-postgres"), "{broken:?}");
    eventually("a SecretMissing Event", Duration::from_secs(30), || async {
        let reasons = cluster.event_reasons(NS, "AuthRealm", "demo").await;
        if reasons.iter().any(|r| r == "SecretMissing") {
            Ok(())
        } else {
            Err(format!("{reasons:?}"))
        }
    })
    .await;
    assert_eq!(
        operator_marks(&deployment(&cluster).await),
        running,
        "the Deployment was touched"
    );

    // Fixing it recovers.
    cluster
        .secret(NS, "demo-postgres", &[("url", &database)])
        .await;
    ready_realm(&cluster, NS, "demo", Duration::from_secs(60)).await;

    // An auth server whose keys do not match its database refuses to start and says so in
    // its termination message (what the kubelet reports is written here, as the simulated
    // node runs no server): the realm says KeysMismatch instead of waiting silently.
    let pod = cluster
        .list("v1", "Pod", NS, "app.kubernetes.io/component=server")
        .await
        .into_iter()
        .find(|p| p["metadata"]["deletionTimestamp"].is_null())
        .unwrap();
    let mut status = pod["status"].clone();
    status["containerStatuses"][0]["ready"] = false.into();
    status["containerStatuses"][0]["lastState"] = json!({"terminated": {"exitCode": 78,
        "reason": "Error", "startedAt": "2027-01-01T00:00:00Z", "finishedAt": "2027-01-01T00:00:01Z",
        "message": "{\"reason\":\"KeysMismatch\",\"message\":\"the pepper does not match the fingerprint recorded in the database\"}"}});
    let pods: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
        cluster.client.clone(),
        NS,
        &crate::harness::resource("v1", "Pod"),
    );
    pods.patch_status(
        pod["metadata"]["name"].as_str().unwrap(),
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"status": status})),
    )
    .await
    .unwrap();
    eventually(
        "the realm reports KeysMismatch",
        Duration::from_secs(30),
        || async {
            let realm = cluster
                .get("portcullis.dev/v1alpha1", "AuthRealm", Some(NS), "demo")
                .await
                .ok_or("no realm")?;
            match (
                condition(&realm, "SecretsReady"),
                condition(&realm, "Ready"),
            ) {
                (Some((s, r, m)), Some((ready, ready_reason, _)))
                    if s == "False"
                        && r == "KeysMismatch"
                        && ready == "False"
                        && ready_reason == "KeysMismatch" =>
                {
                    assert!(m.contains("fingerprint"), "{m}");
                    Ok(())
                }
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;

    let refused = forbidden(&operator.proxy);
    assert!(refused.is_empty(), "the operator was refused: {refused:?}");
    cluster.remove_namespaces(&[NS]).await;
    drop(operator);
    eprintln!(
        "scenario 5 took {:?}; deleted children back one by one in {recreated_after:?}, slowest {slowest:?}",
        started.elapsed()
    );
}
