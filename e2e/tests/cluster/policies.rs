//! Scenario 9: policies never freeze a realm. A RateLimitPolicy applied before its realm
//! attaches when the realm comes; a semantically bad policy is `Accepted=False` and its realm
//! keeps running without it; of two RetentionPolicies the older is in force and the second
//! takes over when the first is deleted.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{
    Cluster, condition, eventually, forbidden, leading_operator, minimal_realm, operator_setup,
    read_documents, ready_realm,
};
use crate::take_cluster;

const NS: &str = "e2e-policies";
const GROUP: &str = "portcullis.dev/v1alpha1";

async fn wait_condition(
    cluster: &Cluster,
    kind: &str,
    name: &str,
    type_: &str,
    expected: (&str, &str),
) -> Value {
    eventually(
        &format!("{kind} {name} {type_}={expected:?}"),
        Duration::from_secs(60),
        || async {
            let object = cluster
                .get(GROUP, kind, Some(NS), name)
                .await
                .ok_or("missing")?;
            match condition(&object, type_) {
                Some((s, r, _)) if (s.as_str(), r.as_str()) == expected => Ok(object),
                other => Err(format!("{type_} {other:?}")),
            }
        },
    )
    .await
}

fn rate_limit(name: &str, extra: Value) -> Value {
    let mut policy = json!({"apiVersion": GROUP, "kind": "RateLimitPolicy",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"targetRef": {"name": "demo"},
            "rules": [{"name": "login", "routes": ["Login"],
                "limits": [{"key": "Ip", "requests": 5, "period": "1m"}]}]}});
    for (k, v) in extra.as_object().unwrap() {
        policy["spec"][k] = v.clone();
    }
    policy
}

fn retention(name: &str) -> Value {
    let mut policy = read_documents("config/samples/retentionpolicy.yaml").remove(0);
    policy["metadata"] = json!({"name": name, "namespace": NS});
    policy["spec"]["targetRef"]["name"] = "demo".into();
    policy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_policies_follow_their_realm_and_a_bad_one_never_stops_it() {
    let Some((_guard, cluster)) = take_cluster("9 (policy attachment)").await else {
        return;
    };
    let started = Instant::now();
    let account = operator_setup(&cluster).await;
    let operator = leading_operator(&cluster, &account, "policies").await;
    cluster.namespace(NS).await;

    // Before the realm exists: not attached; nothing else will touch the policy.
    cluster.apply(&rate_limit("early", json!({}))).await;
    wait_condition(
        &cluster,
        "RateLimitPolicy",
        "early",
        "Attached",
        ("False", "TargetNotFound"),
    )
    .await;
    cluster.apply(&retention("first")).await;
    wait_condition(
        &cluster,
        "RetentionPolicy",
        "first",
        "Accepted",
        ("False", "TargetNotFound"),
    )
    .await;

    // The realm comes: the policy attaches without being touched.
    minimal_realm(&cluster, NS, "postgres://unused/policies").await;
    wait_condition(
        &cluster,
        "RateLimitPolicy",
        "early",
        "Attached",
        ("True", "Attached"),
    )
    .await;
    wait_condition(
        &cluster,
        "RetentionPolicy",
        "first",
        "Accepted",
        ("True", "Accepted"),
    )
    .await;

    // A policy that is wrong in itself (the Redis backend on a realm without Redis) is not
    // accepted, and the realm keeps running without it.
    cluster
        .apply(&rate_limit("redis-less", json!({"backend": "Redis"})))
        .await;
    wait_condition(
        &cluster,
        "RateLimitPolicy",
        "redis-less",
        "Accepted",
        ("False", "RedisBackendWithoutRedis"),
    )
    .await;
    // A second RetentionPolicy is refused while the first is in force.
    cluster.apply(&retention("second")).await;
    wait_condition(
        &cluster,
        "RetentionPolicy",
        "second",
        "Accepted",
        ("False", "MultipleRetentionPolicies"),
    )
    .await;
    let realm = ready_realm(&cluster, NS, "demo", Duration::from_secs(120)).await;
    assert_eq!(
        realm["status"]["attachedPolicies"],
        json!({"rateLimit": ["early"], "retention": "first"}),
        "the bad policy is left out, the realm is not Invalid"
    );

    // The first RetentionPolicy goes: the second takes over, the realm follows.
    cluster
        .delete(GROUP, "RetentionPolicy", Some(NS), "first")
        .await;
    wait_condition(
        &cluster,
        "RetentionPolicy",
        "second",
        "Accepted",
        ("True", "Accepted"),
    )
    .await;
    eventually(
        "the realm attached the second",
        Duration::from_secs(60),
        || async {
            let realm = cluster
                .get(GROUP, "AuthRealm", Some(NS), "demo")
                .await
                .ok_or("no realm")?;
            let attached = &realm["status"]["attachedPolicies"]["retention"];
            if attached == "second" {
                Ok(())
            } else {
                Err(format!("attached {attached}"))
            }
        },
    )
    .await;

    // The last RateLimitPolicy goes: the realm's status no longer lists any (a status
    // written as a merge patch that skips empty fields could never clear the list).
    cluster
        .delete(GROUP, "RateLimitPolicy", Some(NS), "early")
        .await;
    cluster
        .delete(GROUP, "RateLimitPolicy", Some(NS), "redis-less")
        .await;
    eventually(
        "attachedPolicies.rateLimit cleared",
        Duration::from_secs(60),
        || async {
            let realm = cluster
                .get(GROUP, "AuthRealm", Some(NS), "demo")
                .await
                .ok_or("no realm")?;
            let attached = &realm["status"]["attachedPolicies"];
            if attached.get("rateLimit").is_none() && attached["retention"] == "second" {
                Ok(())
            } else {
                Err(format!("attached {attached}"))
            }
        },
    )
    .await;

    let refused = forbidden(&operator.proxy);
    assert!(refused.is_empty(), "the operator was refused: {refused:?}");
    cluster.remove_namespaces(&[NS]).await;
    drop(operator);
    eprintln!("scenario 9 took {:?}", started.elapsed());
}
