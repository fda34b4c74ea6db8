//! The committed CRD YAML (crds/yaml and the CRD chart) is exactly what the types generate.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::path::{Path, PathBuf};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use portcullis_operator::crdgen;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn committed_crds_match_the_types() {
    let files = crdgen::render(&portcullis_crds::crds()).unwrap();
    if let Err(error) = crdgen::check(&repo_root(), &files) {
        panic!("{error}");
    }
}

#[test]
fn one_file_per_kind_named_after_the_kind_in_each_directory() {
    let files = crdgen::render(&portcullis_crds::crds()).unwrap();
    for dir in [crdgen::YAML_DIR, crdgen::CHART_DIR] {
        let names: Vec<&str> = files
            .iter()
            .filter(|f| f.dir == dir)
            .map(|f| f.file_name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "authrealm.yaml",
                "ratelimitpolicy.yaml",
                "retentionpolicy.yaml",
                "authclient.yaml"
            ],
            "{dir}"
        );
    }
}

fn parse(file: &crdgen::GeneratedFile) -> CustomResourceDefinition {
    serde_saphyr::from_str(&file.contents).unwrap()
}

#[test]
fn generated_yaml_reads_back_as_the_same_crd() {
    let crds = portcullis_crds::crds();
    let files = crdgen::render(&crds).unwrap();
    let plain = files.iter().filter(|f| f.dir == crdgen::YAML_DIR);
    for (crd, file) in crds.iter().zip(plain) {
        assert_eq!(&parse(file), crd, "{}", file.file_name);
    }
}

#[test]
fn every_crd_of_the_chart_is_kept_on_uninstall_and_otherwise_the_same() {
    let crds = portcullis_crds::crds();
    let files = crdgen::render(&crds).unwrap();
    let chart: Vec<_> = files
        .iter()
        .filter(|f| f.dir == crdgen::CHART_DIR)
        .collect();
    assert_eq!(chart.len(), crds.len());
    for (crd, file) in crds.iter().zip(chart) {
        let mut parsed = parse(file);
        let annotations = parsed.metadata.annotations.take().unwrap_or_default();
        assert_eq!(
            annotations
                .get("helm.sh/resource-policy")
                .map(String::as_str),
            Some("keep"),
            "{}",
            file.file_name
        );
        assert_eq!(annotations.len(), 1, "{}", file.file_name);
        assert_eq!(&parsed, crd, "{}", file.file_name);
    }
}

#[test]
fn the_committed_chart_keeps_every_crd_on_uninstall() {
    // Read off the committed templates, whatever wrote them.
    let dir = repo_root().join(crdgen::CHART_DIR);
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let crd: CustomResourceDefinition = serde_saphyr::from_str(&text).unwrap();
        let keep = crd
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("helm.sh/resource-policy"));
        assert_eq!(keep.map(String::as_str), Some("keep"), "{}", path.display());
        checked += 1;
    }
    assert_eq!(checked, portcullis_crds::crds().len());
}

#[test]
fn generated_yaml_has_no_helm_template_delimiters() {
    // The same files are Helm templates in the CRD chart: `{{` would be evaluated by Helm.
    for file in crdgen::render(&portcullis_crds::crds()).unwrap() {
        assert!(!file.contents.contains("{{"), "{}", file.file_name);
    }
}

#[test]
fn a_stale_file_is_reported_by_path() {
    let dir = std::env::temp_dir().join(format!("portcullis-crdgen-{}", std::process::id()));
    let files = crdgen::render(&portcullis_crds::crds()).unwrap();
    crdgen::write(&dir, &files).unwrap();
    assert!(crdgen::check(&dir, &files).is_ok());
    let stale = dir.join(crdgen::YAML_DIR).join("authrealm.yaml");
    std::fs::write(&stale, "edited by hand\n").unwrap();
    let error = crdgen::check(&dir, &files).unwrap_err().to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(error.contains("crds/yaml/authrealm.yaml"), "{error}");
    assert!(!error.contains("templates/authrealm.yaml"), "{error}");
}
