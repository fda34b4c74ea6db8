//! Scenario 2: the operator chart's objects apply, the operator runs as the chart's
//! ServiceAccount; a replica does not take a Lease renewed on time by a leader whose clock
//! lags; one replica takes the Lease and the other stays a follower (reading the Lease,
//! writing nothing) until the first stops and releases it.

use std::time::{Duration, Instant};

use crate::harness::{
    LEASE, OPERATOR_NAMESPACE, Operator, eventually, forbidden, lease_holder, operator_setup,
};
use crate::take_cluster;

/// How soon an operator replica exits after SIGTERM: well below its drain deadline (15 s), so
/// no stop in this scenario is cut short by the deadline rather than finished.
const STOP_BOUND: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_the_operator_runs_as_the_charts_service_account_and_one_replica_leads() {
    let Some((_guard, cluster)) = take_cluster("2 (chart RBAC, leader election)").await else {
        return;
    };
    let started = Instant::now();
    let account = operator_setup(&cluster).await;

    // A leader whose clock runs an hour behind ours renews the Lease on time: its renewTime
    // is an hour old by our clock, yet the Lease changes every few seconds, so a replica
    // must not take it. (Comparing the holder's renewTime with one's own clock would take it
    // at once.) The test is that leader, then it lets the Lease go.
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(cluster.client.clone(), OPERATOR_NAMESPACE);
    let lagging = |holder: Option<&str>| {
        let renew = k8s_openapi::jiff::Timestamp::now()
            - k8s_openapi::jiff::SignedDuration::from_secs(3_600);
        serde_json::json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": LEASE, "namespace": OPERATOR_NAMESPACE},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                "renewTime": renew.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()}})
    };
    let renew = |holder: Option<&'static str>| {
        let leases = leases.clone();
        let lease = lagging(holder);
        async move {
            leases
                .patch(
                    LEASE,
                    &kube::api::PatchParams::apply("lagging-leader").force(),
                    &kube::api::Patch::Apply(&lease),
                )
                .await
                .unwrap();
        }
    };
    renew(Some("lagging-leader")).await;
    let mut first = Operator::start(&cluster, &account, "replica-a").await;
    let until = Instant::now() + Duration::from_secs(17);
    while Instant::now() < until {
        renew(Some("lagging-leader")).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            lease_holder(&cluster).await.as_deref(),
            Some("lagging-leader"),
            "replica-a took a Lease renewed on time by a leader with a lagging clock:\n{}",
            first.log()
        );
    }
    renew(None).await;
    eventually("replica-a leads", Duration::from_secs(30), || async {
        match lease_holder(&cluster).await {
            Some(h) if h == "replica-a" => Ok(()),
            other => Err(format!("holder {other:?}")),
        }
    })
    .await;
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

    // Someone narrows the operator's ClusterRole: it may no longer watch pods, nor list
    // AuthClients. The next leader's pod watch fails; it must say so rather than run blind.
    // Its AuthClient cache can never be filled, which is also how every cache of a replica
    // stopped right after taking the lead looks: such a replica must still stop at once.
    let role = crate::harness::render_chart("portcullis-operator", OPERATOR_NAMESPACE)
        .into_iter()
        .find(|o| o["kind"] == "ClusterRole")
        .unwrap();
    let mut narrowed = role.clone();
    for rule in narrowed["rules"].as_array_mut().unwrap() {
        if rule["resources"] == serde_json::json!(["pods"]) {
            rule["verbs"] = serde_json::json!(["list"]);
        }
    }
    narrowed["rules"]
        .as_array_mut()
        .unwrap()
        .retain(|rule| rule["resources"] != serde_json::json!(["authclients"]));
    cluster.apply(&narrowed).await;

    // The leader stops (SIGTERM, as at a rollout): the follower takes over.
    let first_stop = first.terminate();
    assert!(
        first_stop < STOP_BOUND,
        "replica-a took {first_stop:?} to stop:\n{}",
        first.log()
    );
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
    eventually(
        "replica-b reports its failed pod watch",
        Duration::from_secs(30),
        || async {
            let log = second.log();
            if log.contains("watch failed") && log.contains("pods") {
                Ok(())
            } else {
                Err("no log line yet".to_owned())
            }
        },
    )
    .await;
    eventually(
        "replica-b reports its failed AuthClient list",
        Duration::from_secs(30),
        || async {
            let log = second.log();
            if log
                .lines()
                .any(|l| l.contains("watch failed") && l.contains("authclients"))
            {
                Ok(())
            } else {
                Err("no log line yet".to_owned())
            }
        },
    )
    .await;
    // Stopped now, with a cache that cannot be filled: the replica finishes at once, releases
    // the Lease and exits (kube-runtime's own graceful shutdown waited forever here).
    let second_stop = second.terminate();
    let log = second.log();
    assert!(
        second_stop < STOP_BOUND && log.contains("controllers stopped, Lease released"),
        "replica-b took {second_stop:?} to stop:\n{log}"
    );
    assert!(!log.contains("drain deadline"), "{log}");
    cluster.apply(&role).await;
    for operator in [&first, &second] {
        let refused: Vec<String> = forbidden(&operator.proxy)
            .into_iter()
            .filter(|r| !r.contains("/pods") && !r.contains("/authclients"))
            .collect();
        assert!(
            refused.is_empty(),
            "{} was refused: {refused:?}",
            operator.identity
        );
    }
    eprintln!(
        "scenario 2 took {:?}; takeover after the leader stopped: {takeover:?}; stops: \
         replica-a {first_stop:?}, replica-b {second_stop:?}",
        started.elapsed()
    );
}
