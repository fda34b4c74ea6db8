//! The cluster suites: the operator's behaviour proven on a real API server, with real RBAC,
//! real server-side apply and a real garbage collector. `scripts/test.sh` (`make test`) starts
//! the test control plane (`e2e/cluster`) and points `KUBECONFIG` at it; a `KUBECONFIG` the
//! user set points the suites at that cluster instead (`make e2e` with kind). Without a
//! cluster every test says why it skipped.
//!
//! One test binary, one cluster: the scenarios run one at a time (a shared lock), each in its
//! own namespaces, which it removes at the end. The operator runs as a subprocess with a token
//! of the chart's ServiceAccount, so the chart's RBAC is what it gets.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

mod changes;
mod crash;
mod crds;
mod harness;
mod leader;
mod lifecycle;
mod samples;
mod tenants;

use std::io::Write;

use tokio::sync::{Mutex, MutexGuard};

static SERIAL: Mutex<()> = Mutex::const_new(());

/// Takes the cluster for one scenario, or says why the suite is skipped (`None`).
pub async fn take_cluster(scenario: &str) -> Option<(MutexGuard<'static, ()>, harness::Cluster)> {
    if let Some(reason) = portcullis_e2e::cluster_skip_reason() {
        // Written to stderr directly, not through `eprintln!`, so libtest's output capture
        // does not hide it in an ordinary `cargo test` run.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED cluster scenario {scenario}: {reason}"
        );
        return None;
    }
    let guard = SERIAL.lock().await;
    let started = std::time::Instant::now();
    let cluster = harness::Cluster::connect().await;
    let _ = writeln!(
        std::io::stderr(),
        "cluster scenario {scenario}: connected in {:?}",
        started.elapsed()
    );
    Some((guard, cluster))
}
