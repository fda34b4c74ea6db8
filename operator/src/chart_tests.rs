//! The operator chart's values validate against its schema. (Its RBAC is compared with the
//! code in `rbac_tests`.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use serde_json::Value;

const SCHEMA: &str = include_str!("../../charts/portcullis-operator/values.schema.json");
const VALUES: &str = include_str!("../../charts/portcullis-operator/values.yaml");
const FULL_VALUES: &str = include_str!("../../charts/portcullis-operator/ci/full-values.yaml");

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
