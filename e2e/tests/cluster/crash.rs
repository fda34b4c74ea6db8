//! Scenario 7: the operator is killed (SIGKILL) in the middle of its first reconcile of a
//! realm — some children applied, the Deployment's apply in flight — and a new replica
//! converges: every child exactly once, owned by the realm, nothing orphaned, no second set
//! of keys, one ReplicaSet.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{
    OPERATOR_MANAGER, Operator, eventually, forbidden, lease_holder, minimal_realm, operator_setup,
    ready_realm, rendered_children, sample,
};
use crate::take_cluster;

const NS: &str = "e2e-crash";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s7_an_operator_killed_mid_reconcile_restarts_and_converges_without_duplicates_or_orphans()
{
    let Some((_guard, cluster)) = take_cluster("7 (killed mid-reconcile)").await else {
        return;
    };
    let started = Instant::now();
    let account = operator_setup(&cluster).await;
    let database = cluster.database("e2e_crash").await;

    let mut first = Operator::start(&cluster, &account, "crash-1").await;
    let deployment_apply = first
        .proxy
        .hold("PATCH", &format!("/namespaces/{NS}/deployments/demo"));
    minimal_realm(&cluster, NS, &database).await;
    tokio::time::timeout(Duration::from_secs(120), deployment_apply.notified())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the operator never applied the Deployment:\n{}",
                first.log()
            )
        });
    first.kill();
    // Mid-reconcile indeed: the children before the Deployment exist, it does not.
    assert!(
        cluster
            .get("v1", "ConfigMap", Some(NS), "demo-config")
            .await
            .is_some(),
        "the first replica applied nothing before the Deployment"
    );
    assert!(
        cluster
            .get("apps/v1", "Deployment", Some(NS), "demo")
            .await
            .is_none()
    );
    let keys_before = cluster
        .get("v1", "Secret", Some(NS), "demo-keys")
        .await
        .expect("the keys Secret was applied before the Deployment");

    // A new replica takes over once the dead one's Lease expires, and converges.
    let second = Operator::start(&cluster, &account, "crash-2").await;
    eventually("crash-2 leads", Duration::from_secs(60), || async {
        match lease_holder(&cluster).await {
            Some(h) if h == "crash-2" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let realm = ready_realm(&cluster, NS, "demo", Duration::from_secs(180)).await;
    let converged = started.elapsed();

    // Every child exactly once, owned by this realm; nothing else labelled as the operator's.
    let children = rendered_children(&[sample("realm-minimal.yaml")]);
    let wanted: BTreeSet<String> = children
        .iter()
        .map(|c| format!("{}/{}", c.kind, c.name))
        .collect();
    let uid = &realm["metadata"]["uid"];
    for child in &children {
        let object = cluster
            .get(&child.api_version, &child.kind, Some(NS), &child.name)
            .await
            .unwrap_or_else(|| panic!("{} {} missing", child.kind, child.name));
        let managers: Vec<&Value> = object["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["manager"] == OPERATOR_MANAGER && m["operation"] == "Apply")
            .collect();
        assert_eq!(
            managers.len(),
            1,
            "{} {}: {managers:?}",
            child.kind,
            child.name
        );
        let owners = object["metadata"]["ownerReferences"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if child.kind == "Secret" && child.name == "demo-keys" {
            assert!(owners.is_empty());
        } else {
            assert_eq!(owners.len(), 1, "{} {}: {owners:?}", child.kind, child.name);
            assert_eq!(&owners[0]["uid"], uid);
        }
    }
    for child in &children {
        for object in cluster
            .list(
                &child.api_version,
                &child.kind,
                NS,
                "app.kubernetes.io/managed-by=portcullis-operator",
            )
            .await
        {
            let id = format!(
                "{}/{}",
                child.kind,
                object["metadata"]["name"].as_str().unwrap()
            );
            assert!(wanted.contains(&id), "orphan {id}");
        }
    }
    // The keys written before the crash are the keys in use: no second generation.
    let keys_after = cluster
        .get("v1", "Secret", Some(NS), "demo-keys")
        .await
        .unwrap();
    assert_eq!(
        keys_after["data"], keys_before["data"],
        "the keys were regenerated"
    );
    assert_eq!(
        realm["status"]["signingKeyIds"].as_array().unwrap().len(),
        1
    );
    // One rollout: one ReplicaSet, the realm's replicas in pods.
    let replica_sets = cluster
        .list(
            "apps/v1",
            "ReplicaSet",
            NS,
            "app.kubernetes.io/instance=demo",
        )
        .await;
    assert_eq!(replica_sets.len(), 1, "ReplicaSets: {}", replica_sets.len());
    let pods: Vec<Value> = cluster
        .list("v1", "Pod", NS, "app.kubernetes.io/instance=demo")
        .await
        .into_iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect();
    assert_eq!(pods.len(), 1, "pods: {}", pods.len());

    let refused = forbidden(&second.proxy);
    assert!(refused.is_empty(), "the operator was refused: {refused:?}");
    cluster.remove_namespaces(&[NS]).await;
    drop(second);
    eprintln!(
        "scenario 7 took {:?}; converged {converged:?} after the start",
        started.elapsed()
    );
}
