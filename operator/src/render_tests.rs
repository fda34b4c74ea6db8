//! `render` output is strictly valid Kubernetes: every manifest deserializes into its
//! k8s-openapi type without losing a field, and validates against that type's JSON schema.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::*;
use crate::resources::monitoring::{RuleFile, ServiceMonitorSpec};
use crate::resources::tests::{RATE_LIMIT, REALM_FULL, REALM_MINIMAL, RETENTION};
use crate::resources::tls::CertificateSpec;

fn render(files: &[&str], include_secrets: bool) -> Vec<Value> {
    let texts: Vec<(String, String)> = files
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("file{i}"), (*t).to_owned()))
        .collect();
    let manifests = read_files(&texts).unwrap();
    let now = Timestamp::from_second(1_800_000_000).unwrap();
    render_values(
        &manifests,
        include_secrets,
        now,
        &mut StdRng::seed_from_u64(1),
    )
    .unwrap()
}

/// Deserializes into `T`, serializes again and demands the same JSON: an unknown or
/// misspelled field would be dropped on the way and fail the comparison. Then validates
/// against the type's JSON schema.
fn strictly<T: DeserializeOwned + Serialize + schemars::JsonSchema>(manifest: &Value) {
    let typed: T = serde_json::from_value(manifest.clone())
        .unwrap_or_else(|e| panic!("{}: {e}", manifest["kind"]));
    let again = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        &again, manifest,
        "{} lost or changed fields",
        manifest["kind"]
    );
    let errors = schema_errors::<T>(manifest);
    assert!(errors.is_empty(), "{}: {errors:?}", manifest["kind"]);
}

/// Violations of the type's JSON schema (from k8s-openapi's schemars implementation).
fn schema_errors<T: schemars::JsonSchema>(manifest: &Value) -> Vec<String> {
    let schema = serde_json::to_value(schemars::schema_for!(T)).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    validator
        .iter_errors(manifest)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

fn spec_strictly<T: DeserializeOwned + Serialize>(manifest: &Value) {
    let spec = &manifest["spec"];
    let typed: T = serde_json::from_value(spec.clone()).unwrap();
    assert_eq!(
        &serde_json::to_value(&typed).unwrap(),
        spec,
        "{}",
        manifest["kind"]
    );
}

fn check(manifests: &[Value]) {
    for manifest in manifests {
        let api_version = manifest["apiVersion"].as_str().unwrap();
        match (api_version, manifest["kind"].as_str().unwrap()) {
            ("v1", "ServiceAccount") => strictly::<ServiceAccount>(manifest),
            ("v1", "Secret") => strictly::<Secret>(manifest),
            ("v1", "ConfigMap") => strictly::<ConfigMap>(manifest),
            ("v1", "Service") => strictly::<Service>(manifest),
            ("networking.k8s.io/v1", "NetworkPolicy") => strictly::<NetworkPolicy>(manifest),
            ("networking.k8s.io/v1", "Ingress") => strictly::<Ingress>(manifest),
            ("policy/v1", "PodDisruptionBudget") => strictly::<PodDisruptionBudget>(manifest),
            ("apps/v1", "Deployment") => strictly::<Deployment>(manifest),
            ("batch/v1", "CronJob") => strictly::<CronJob>(manifest),
            ("cert-manager.io/v1", "Certificate") => spec_strictly::<CertificateSpec>(manifest),
            ("monitoring.coreos.com/v1", "ServiceMonitor") => {
                spec_strictly::<ServiceMonitorSpec>(manifest)
            }
            ("monitoring.coreos.com/v1", "PrometheusRule") => spec_strictly::<RuleFile>(manifest),
            (api_version, kind) => panic!("unexpected {api_version} {kind}"),
        }
    }
}

fn kinds(manifests: &[Value]) -> Vec<String> {
    manifests
        .iter()
        .map(|m| m["kind"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_minimal_sample_renders_valid_manifests() {
    check(&render(&[REALM_MINIMAL], true));
}

#[test]
fn the_full_sample_with_its_policies_renders_valid_manifests() {
    check(&render(&[REALM_FULL, RATE_LIMIT, RETENTION], true));
}

#[test]
fn a_self_signed_realm_renders_a_valid_tls_secret() {
    let realm = REALM_FULL.replace(
        "    issuerRef:\n      name: letsencrypt-prod\n      kind: ClusterIssuer\n",
        "    selfSigned: {}\n",
    );
    let manifests = render(&[&realm], true);
    check(&manifests);
    assert!(manifests.iter().any(|m| m["type"] == "kubernetes.io/tls"));
}

#[test]
fn secrets_appear_only_when_asked_for() {
    let without = render(&[REALM_FULL], false);
    assert!(!kinds(&without).contains(&"Secret".to_owned()));
    let with = render(&[REALM_FULL], true);
    assert_eq!(kinds(&with).iter().filter(|k| *k == "Secret").count(), 1);
}

#[test]
fn without_secrets_the_output_is_the_same_every_time() {
    let a = to_yaml(&render(&[REALM_FULL, RATE_LIMIT, RETENTION], false)).unwrap();
    let b = to_yaml(&render(&[REALM_FULL, RATE_LIMIT, RETENTION], false)).unwrap();
    assert_eq!(a, b);
}

#[test]
fn manifests_come_in_apply_order() {
    let order = kinds(&render(&[REALM_FULL, RATE_LIMIT, RETENTION], false));
    let position = |kind: &str| order.iter().position(|k| k == kind).unwrap();
    assert!(position("ServiceAccount") < position("ConfigMap"));
    assert!(position("NetworkPolicy") < position("Deployment"));
    assert!(position("Deployment") < position("Ingress"));
    assert_eq!(order.last().map(String::as_str), Some("CronJob"));
}

#[test]
fn an_invalid_realm_is_refused_with_every_reason() {
    let bad = REALM_MINIMAL.replace(
        "spec:\n",
        "spec:\n  replicas: 3\n  trustedProxies: [10.0.0.1/8]\n",
    );
    let manifests = read_files(&[("bad.yaml".into(), bad)]).unwrap();
    let err = render_values(
        &manifests,
        false,
        Timestamp::UNIX_EPOCH,
        &mut StdRng::seed_from_u64(1),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("replicas is 3"), "{err}");
    assert!(err.contains("10.0.0.1/8"), "{err}");
}

#[test]
fn a_policy_for_a_realm_not_given_is_refused() {
    let manifests = read_files(&[("p.yaml".into(), RATE_LIMIT.to_owned())]).unwrap();
    let err = render_values(
        &manifests,
        false,
        Timestamp::UNIX_EPOCH,
        &mut StdRng::seed_from_u64(1),
    );
    assert!(matches!(err, Err(RenderError::NoRealm)));
    let manifests = read_files(&[
        ("r.yaml".into(), REALM_MINIMAL.to_owned()),
        ("p.yaml".into(), RATE_LIMIT.to_owned()),
    ])
    .unwrap();
    let err = render_values(
        &manifests,
        false,
        Timestamp::UNIX_EPOCH,
        &mut StdRng::seed_from_u64(1),
    );
    assert!(
        matches!(err, Err(RenderError::OrphanPolicy { .. })),
        "{err:?}"
    );
}

#[test]
#[should_panic(expected = "lost or changed fields")]
fn the_strict_check_catches_a_misspelled_field() {
    let mut manifests = render(&[REALM_MINIMAL], false);
    let deployment = manifests
        .iter_mut()
        .find(|m| m["kind"] == "Deployment")
        .unwrap();
    deployment["spec"]["replica"] = Value::from(2);
    check(&manifests);
}

#[test]
fn the_schema_check_catches_a_wrong_type() {
    let mut manifests = render(&[REALM_MINIMAL], false);
    let deployment = manifests
        .iter_mut()
        .find(|m| m["kind"] == "Deployment")
        .unwrap();
    assert!(schema_errors::<Deployment>(deployment).is_empty());
    deployment["spec"]["replicas"] = Value::from("three");
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] =
        Value::from(true);
    let errors = schema_errors::<Deployment>(deployment);
    assert_eq!(errors.len(), 2, "{errors:?}");
}
