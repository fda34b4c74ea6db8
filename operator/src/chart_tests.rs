//! The operator chart agrees with the code: its values validate against its schema, and its
//! RBAC grants every kind the controllers touch. (Rendering needs `helm`; CI renders it.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use serde_json::Value;

use crate::controllers::realm::apply::prunable_kinds;
use crate::resources::Capabilities;

const SCHEMA: &str = include_str!("../../charts/portcullis-operator/values.schema.json");
const VALUES: &str = include_str!("../../charts/portcullis-operator/values.yaml");
const FULL_VALUES: &str = include_str!("../../charts/portcullis-operator/ci/full-values.yaml");
const RBAC: &str = include_str!("../../charts/portcullis-operator/templates/rbac.yaml");

fn errors(values: &str) -> Vec<String> {
    let schema: Value = serde_json::from_str(SCHEMA).unwrap();
    let values: Value = serde_saphyr::from_str(values).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    validator
        .iter_errors(&values)
        .map(|e| e.to_string())
        .collect()
}

#[test]
fn default_and_full_values_match_the_schema() {
    assert_eq!(errors(VALUES), Vec::<String>::new());
    assert_eq!(errors(FULL_VALUES), Vec::<String>::new());
}

#[test]
fn the_schema_refuses_unknown_and_mistyped_values() {
    assert!(!errors("replicaCount: 2\nimage: {repository: x, pullPolicy: Sometimes}\nmetrics: {port: 8080}\nserviceMonitor: {enabled: false}\nresources: {}\n").is_empty());
    assert!(!errors(&format!("{VALUES}\nreplicas: 3\n")).is_empty());
}

#[test]
fn rbac_grants_every_kind_the_controllers_write() {
    let mut plurals: Vec<String> = prunable_kinds(Capabilities::ALL)
        .into_iter()
        .map(|r| r.plural)
        .collect();
    plurals.extend(
        [
            "authrealms/status",
            "ratelimitpolicies/status",
            "retentionpolicies/status",
            "jobs",
            "pods",
            "events",
            "leases",
            "customresourcedefinitions",
        ]
        .map(String::from),
    );
    for plural in plurals {
        assert!(RBAC.contains(&plural), "the chart's RBAC lacks {plural}");
    }
}
