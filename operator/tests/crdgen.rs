//! The committed CRD YAML (crds/yaml and the CRD chart) is exactly what the types generate.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::path::{Path, PathBuf};

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
fn one_file_per_kind_named_after_the_kind() {
    let files = crdgen::render(&portcullis_crds::crds()).unwrap();
    let names: Vec<&str> = files.iter().map(|f| f.file_name.as_str()).collect();
    assert_eq!(
        names,
        [
            "authrealm.yaml",
            "ratelimitpolicy.yaml",
            "retentionpolicy.yaml",
            "authclient.yaml"
        ]
    );
}

#[test]
fn generated_yaml_reads_back_as_the_same_crd() {
    let crds = portcullis_crds::crds();
    for (crd, file) in crds.iter().zip(crdgen::render(&crds).unwrap()) {
        let parsed: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
            serde_saphyr::from_str(&file.contents).unwrap();
        assert_eq!(&parsed, crd, "{}", file.file_name);
    }
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
