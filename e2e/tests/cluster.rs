//! Cluster suite: runs only when `KUBECONFIG` points at a reachable cluster and `kubectl` is
//! installed; otherwise every test says it skipped and why. Run with `make e2e`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::io::Write;
use std::process::Command;

use portcullis_e2e::{cluster_skip_reason, repo_root};

#[test]
fn the_api_server_accepts_the_crds_and_samples() {
    if let Some(reason) = cluster_skip_reason() {
        // Written to stderr directly, not through `eprintln!`, so libtest's output capture
        // does not hide it in an ordinary `cargo test` run.
        let _ = writeln!(std::io::stderr(), "SKIPPED cluster suite: {reason}");
        return;
    }
    let root = repo_root();
    let kubectl = |args: &[&str]| {
        let out = Command::new("kubectl")
            .args(args)
            .current_dir(&root)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // Server-side apply of the CRDs themselves: the API server checks the structural schema
    // and compiles every CEL rule.
    kubectl(&[
        "apply",
        "--server-side",
        "--field-manager=portcullis-e2e",
        "-f",
        "crds/yaml/",
    ]);
    kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/authrealms.portcullis.dev",
        "crd/ratelimitpolicies.portcullis.dev",
        "crd/retentionpolicies.portcullis.dev",
    ]);
    // The samples validate server-side without being stored.
    kubectl(&["apply", "--dry-run=server", "-f", "config/samples/"]);
}
