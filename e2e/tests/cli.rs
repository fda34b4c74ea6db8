//! Black-box tests of the built binaries: what a platform engineer or CI job sees when they
//! run them. The cluster suite (`cluster.rs`) needs a real cluster; these need nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::path::PathBuf;
use std::process::{Command, Output};

use portcullis_e2e::{binary, repo_root};

fn run(name: &str, args: &[&str]) -> Output {
    let path = binary(name).unwrap_or_else(|e| panic!("{e}"));
    Command::new(path)
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap()
}

fn operator(args: &[&str]) -> Output {
    run("portcullis-operator", args)
}

fn authserver(args: &[&str]) -> Output {
    run("portcullis-authserver", args)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn sample(name: &str) -> String {
    repo_root()
        .join("config/samples")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn crdgen_check_passes_on_the_committed_files() {
    let output = operator(&["crdgen", "--check"]);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn crdgen_check_fails_and_names_the_files_in_an_empty_tree() {
    let empty = tempdir("crdgen-empty");
    let output = operator(&["crdgen", "--check", "--root", empty.to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("make generate"),
        "{}",
        stderr(&output)
    );
    assert!(
        stderr(&output).contains("retentionpolicy.yaml"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn crdgen_writes_files_that_then_check_clean() {
    let root = tempdir("crdgen-write");
    let root = root.to_str().unwrap();
    assert!(operator(&["crdgen", "--root", root]).status.success());
    let output = operator(&["crdgen", "--check", "--root", root]);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn check_config_prints_the_effective_settings_of_the_full_sample() {
    let config = [
        sample("realm-full.yaml"),
        sample("ratelimitpolicy.yaml"),
        sample("retentionpolicy.yaml"),
    ]
    .join(",");
    let output = authserver(&["check-config", "--config", &config]);
    assert!(output.status.success(), "{}", stderr(&output));
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["realm"], "acme");
    assert_eq!(summary["rateLimits"]["backend"], "Redis");
    assert_eq!(summary["retention"]["schedule"], "30 2 * * *");
    let login_ip = summary["rateLimits"]["limits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["route"] == "Login" && l["key"] == "Ip")
        .unwrap();
    assert_eq!(login_ip["requests"], 20);
    assert_eq!(login_ip["source"], "acme-login/credential-stuffing");
}

#[test]
fn serve_refuses_a_realm_that_asks_for_what_is_not_built_yet() {
    // The full sample with the one setting this version does not implement: RS256 tokens.
    let dir = tempfile::tempdir().unwrap();
    let realm = dir.path().join("realm-rs256.yaml");
    let text = std::fs::read_to_string(sample("realm-full.yaml")).unwrap();
    assert!(text.contains("signingAlgorithm: ES256"));
    std::fs::write(
        &realm,
        text.replace("signingAlgorithm: ES256", "signingAlgorithm: RS256"),
    )
    .unwrap();
    let config = [realm.display().to_string(), sample("authclients.yaml")].join(",");
    let output = authserver(&["serve", "--config", &config]);
    assert_eq!(output.status.code(), Some(1));
    for field in ["spec.tokens.signingAlgorithm", "not implemented"] {
        assert!(
            stderr(&output).contains(field),
            "{field}: {}",
            stderr(&output)
        );
    }
    // Every AuthClient is served by the OpenID Connect provider now.
    assert!(
        !stderr(&output).contains("AuthClient"),
        "{}",
        stderr(&output)
    );
    let check = authserver(&["check-config", "--config", &config]);
    assert!(
        check.status.success(),
        "check-config reports, serve refuses: {}",
        stderr(&check)
    );
    assert!(
        stderr(&check).contains("`serve` refuses this realm"),
        "{}",
        stderr(&check)
    );
    let summary: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    let clients: Vec<(&str, &str, &str)> = summary["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["clientId"].as_str().unwrap(),
                c["authClient"].as_str().unwrap(),
                c["type"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        clients,
        [
            ("billing-worker", "billing/billing-worker", "Confidential"),
            ("shop-shop-spa", "shop/shop-spa", "Public"),
            ("shop-web", "shop/shop-web", "Confidential"),
        ]
    );
    assert_eq!(
        summary["clients"][2]["redirectUris"][0],
        "https://shop.acme.example/oidc/callback"
    );
}

#[test]
fn check_config_fails_with_the_reason_for_a_broken_file() {
    let path = repo_root().join("crds/tests/fixtures/invalid/bcrypt-cost-20.yaml");
    let output = authserver(&["check-config", "--config", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("passwordPolicy.bcryptCost is 20, allowed 10..=16"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn check_config_fails_when_the_file_is_missing() {
    let output = authserver(&["check-config", "--config", "/nonexistent/realm.yaml"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("cannot read /nonexistent/realm.yaml"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn check_config_refuses_a_policy_for_another_realm() {
    let config = [sample("realm-minimal.yaml"), sample("ratelimitpolicy.yaml")].join(",");
    let output = authserver(&["check-config", "--config", &config]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("targets realm \"acme\", not \"demo\""),
        "{}",
        stderr(&output)
    );
}

#[test]
fn check_config_refuses_an_authclient_of_another_realm_naming_each() {
    let config = [sample("realm-minimal.yaml"), sample("authclients.yaml")].join(",");
    let output = authserver(&["check-config", "--config", &config]);
    assert_eq!(output.status.code(), Some(1));
    for client in ["shop-web", "shop-spa", "billing-worker"] {
        assert!(
            stderr(&output).contains(&format!(
                "AuthClient \"{client}\" targets realm \"acme\", not \"demo\""
            )),
            "{client}: {}",
            stderr(&output)
        );
    }
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("portcullis-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn serve_refuses_half_a_tls_pair_and_a_certificate_it_cannot_read_saying_why() {
    let dev_realm = repo_root().join("config/dev/realm.yaml");
    let dev_realm = dev_realm.to_str().unwrap();
    let dir = tempdir("tls-refusals");
    let missing = dir.join("tls.crt");
    let missing = missing.to_str().unwrap();

    let half = authserver(&["serve", "--config", dev_realm, "--tls-cert", missing]);
    assert_eq!(half.status.code(), Some(1));
    assert!(
        stderr(&half).contains("--tls-cert was given without --tls-key"),
        "{}",
        stderr(&half)
    );
    let half = authserver(&["serve", "--config", dev_realm, "--tls-key", missing]);
    assert!(
        stderr(&half).contains("--tls-key was given without --tls-cert"),
        "{}",
        stderr(&half)
    );

    // Kubernetes creates the termination log; the server fills it with why it stopped.
    let termination = dir.join("termination-log");
    std::fs::write(&termination, "").unwrap();
    let unreadable = authserver(&[
        "serve",
        "--config",
        dev_realm,
        "--tls-cert",
        missing,
        "--tls-key",
        missing,
        "--termination-log",
        termination.to_str().unwrap(),
    ]);
    assert_eq!(unreadable.status.code(), Some(1));
    assert!(
        stderr(&unreadable).contains(&format!("cannot read {missing}")),
        "{}",
        stderr(&unreadable)
    );
    let message: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&termination).unwrap()).unwrap();
    assert_eq!(message["reason"], "InvalidTls", "{message}");
    assert!(
        message["message"].as_str().unwrap().contains("cannot read"),
        "{message}"
    );
}
