//! Cluster suite for the operator: applies the CRDs and the minimal sample realm, runs the
//! built operator against the cluster `KUBECONFIG` points at, and waits for the realm to be
//! Ready. Skips (saying why) when no cluster is reachable. See the README for a kind setup:
//! the image `ghcr.io/portcullis-dev/portcullis:0.1.0` must be loadable by the cluster
//! (`kind load docker-image ...`) and a PostgreSQL URL must be given in
//! `PORTCULLIS_E2E_DATABASE_URL` (default: a `postgres` Service in the `auth` namespace).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_e2e::{binary, cluster_skip_reason, repo_root};

fn kubectl(args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new("kubectl")
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Stops the operator when the test ends, passed or not.
struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_operator_brings_the_minimal_sample_to_ready() {
    if let Some(reason) = cluster_skip_reason() {
        let _ = writeln!(std::io::stderr(), "SKIPPED cluster realm suite: {reason}");
        return;
    }
    kubectl(&["apply", "--server-side", "-f", "crds/yaml/"], None);
    kubectl(
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/authrealms.portcullis.dev",
        ],
        None,
    );
    kubectl(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: Namespace\nmetadata: {name: auth}\n"),
    );
    let database = std::env::var("PORTCULLIS_E2E_DATABASE_URL").unwrap_or_else(|_| {
        "postgres://portcullis:portcullis@postgres.auth.svc:5432/portcullis".to_owned()
    });
    let secret = kubectl(
        &[
            "-n",
            "auth",
            "create",
            "secret",
            "generic",
            "demo-postgres",
            "--from-literal",
            &format!("url={database}"),
            "--dry-run=client",
            "-o",
            "yaml",
        ],
        None,
    );
    kubectl(&["apply", "-f", "-"], Some(&secret));
    kubectl(&["apply", "-f", "config/samples/realm-minimal.yaml"], None);

    let _operator = Operator(
        Command::new(binary("portcullis-operator").unwrap())
            .args([
                "run",
                "--namespace",
                "auth",
                "--listen",
                "127.0.0.1:18080",
                "--lease-namespace",
                "auth",
                "--identity",
                "e2e",
            ])
            .spawn()
            .unwrap(),
    );

    let deadline = Instant::now() + Duration::from_secs(300);
    let mut last = String::new();
    while Instant::now() < deadline {
        last = kubectl(
            &[
                "-n",
                "auth",
                "get",
                "authrealm",
                "demo",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}/{.status.conditions[?(@.type==\"SecretsReady\")].status}",
            ],
            None,
        );
        if last == "True/True" {
            break;
        }
        std::thread::sleep(Duration::from_secs(3));
    }
    assert_eq!(last, "True/True", "Ready/SecretsReady of realm demo");
    // The children exist and carry the operator's labels.
    let children = kubectl(
        &[
            "-n",
            "auth",
            "get",
            "deploy,svc,cm,secret,networkpolicy,pdb",
            "-l",
            "app.kubernetes.io/instance=demo",
            "-o",
            "name",
        ],
        None,
    );
    for child in [
        "deployment.apps/demo",
        "service/demo",
        "configmap/demo-config",
        "secret/demo-keys",
        "networkpolicy.networking.k8s.io/demo-default-deny",
        "poddisruptionbudget.policy/demo",
    ] {
        assert!(children.contains(child), "{child} missing in {children}");
    }
}
