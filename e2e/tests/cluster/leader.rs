//! Scenario 2: the operator chart's objects apply, the operator runs as the chart's
//! ServiceAccount, one replica takes the Lease and the other stays a follower (reading the
//! Lease, writing nothing) until the first stops and releases it.

use std::time::{Duration, Instant};

use crate::harness::{
    Operator, eventually, forbidden, leading_operator, lease_holder, operator_setup,
};
use crate::take_cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_the_operator_runs_as_the_charts_service_account_and_one_replica_leads() {
    let Some((_guard, cluster)) = take_cluster("2 (chart RBAC, leader election)").await else {
        return;
    };
    let started = Instant::now();
    let account = operator_setup(&cluster).await;

    let mut first = leading_operator(&cluster, &account, "replica-a").await;
    eventually(
        "replica-a starts its controllers",
        Duration::from_secs(30),
        || async {
            if first.log().contains("leading: starting controllers") {
                Ok(())
            } else {
                Err("not yet".to_owned())
            }
        },
    )
    .await;

    let mut second = Operator::start(&cluster, &account, "replica-b").await;
    // Three renewal periods: the Lease stays with the first replica; the second keeps reading
    // it and writes nothing.
    let until = Instant::now() + Duration::from_secs(16);
    while Instant::now() < until {
        assert_eq!(lease_holder(&cluster).await.as_deref(), Some("replica-a"));
        assert!(!second.exited(), "replica-b exited:\n{}", second.log());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        second.log().contains("waiting for leadership"),
        "{}",
        second.log()
    );
    assert!(!second.log().contains("leading: starting controllers"));
    let lease_reads = second
        .proxy
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.is_lease())
        .count();
    assert!(
        lease_reads >= 3,
        "the follower retries the election: {lease_reads} reads"
    );
    let writes: Vec<String> = second
        .proxy
        .requests()
        .iter()
        .filter(|r| r.is_write())
        .map(ToString::to_string)
        .collect();
    assert!(writes.is_empty(), "the follower wrote: {writes:?}");

    // The leader stops (SIGTERM, as at a rollout): the follower takes over.
    first.terminate();
    let stopped = Instant::now();
    eventually(
        "replica-b takes the Lease",
        Duration::from_secs(40),
        || async {
            match lease_holder(&cluster).await {
                Some(h) if h == "replica-b" => Ok(()),
                other => Err(format!("holder {other:?}")),
            }
        },
    )
    .await;
    let takeover = stopped.elapsed();
    // The stopping leader gave the Lease up: the follower took it at its next round (every
    // 5 s), without waiting for the 15 s Lease to expire.
    assert!(first.log().contains("Lease released"), "{}", first.log());
    assert!(
        takeover < Duration::from_secs(10),
        "takeover took {takeover:?}"
    );
    eventually(
        "replica-b starts its controllers",
        Duration::from_secs(30),
        || async {
            if second.log().contains("leading: starting controllers") {
                Ok(())
            } else {
                Err("not yet".to_owned())
            }
        },
    )
    .await;
    // The new leader's watches are authorised: it lists and watches the realms.
    eventually(
        "replica-b watches AuthRealms",
        Duration::from_secs(30),
        || async {
            let watching = second.proxy.requests().iter().any(|r| {
                r.path.ends_with("/authrealms") && r.query.contains("watch=true") && r.status == 200
            });
            if watching {
                Ok(())
            } else {
                Err("no watch yet".to_owned())
            }
        },
    )
    .await;
    for operator in [&first, &second] {
        let refused = forbidden(&operator.proxy);
        assert!(
            refused.is_empty(),
            "{} was refused: {refused:?}",
            operator.identity
        );
    }
    second.terminate();
    eprintln!(
        "scenario 2 took {:?}; takeover after the leader stopped: {takeover:?}",
        started.elapsed()
    );
}
