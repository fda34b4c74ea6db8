//! Scenario 1: the CRDs install (the generated YAML and the CRD chart's rendering), every
//! sample is created with server-side apply, and every invalid fixture is refused by the API
//! server itself (OpenAPI schema and CEL) with the message its `# api-server-error:` header
//! names.

use std::collections::BTreeSet;
use std::time::Instant;

use portcullis_e2e::repo_root;
use serde_json::Value;

use crate::harness::{documents, in_namespace, read_documents, render_chart};
use crate::take_cluster;

const NAMESPACE: &str = "e2e-crds";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s1_crds_install_samples_apply_and_the_api_server_refuses_every_invalid_fixture() {
    let Some((_guard, cluster)) = take_cluster("1 (CRDs, samples, invalid fixtures)").await else {
        return;
    };
    let started = Instant::now();

    // The generated YAML: apiextensions accepts the structural schemas and compiles every
    // CEL rule, and each CRD becomes Established.
    cluster.install_crds(false).await;

    // The CRD chart, rendered by Helm's engine, holds the same objects and applies too.
    let mut generated = Vec::new();
    for file in [
        "authclient",
        "authrealm",
        "ratelimitpolicy",
        "retentionpolicy",
    ] {
        generated.extend(read_documents(&format!("crds/yaml/{file}.yaml")));
    }
    let chart = render_chart("portcullis-crds", "portcullis-system");
    assert_eq!(chart, generated, "the CRD chart renders the generated CRDs");
    for crd in &chart {
        cluster.apply_as("helm", crd).await.unwrap();
        cluster
            .established(crd["metadata"]["name"].as_str().unwrap())
            .await;
    }

    // Every sample, server-side applied (strict field validation) and stored as written.
    cluster.namespace(NAMESPACE).await;
    let mut samples: Vec<_> = std::fs::read_dir(repo_root().join("config/samples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    samples.sort();
    assert_eq!(samples.len(), 5, "{samples:?}");
    for path in &samples {
        for document in documents(&std::fs::read_to_string(path).unwrap()) {
            let document = in_namespace(document, NAMESPACE);
            let stored = cluster.apply(&document).await;
            let stored = serde_json::to_value(stored).unwrap();
            assert_spec_contains(
                &stored["spec"],
                &document["spec"],
                &path.display().to_string(),
            );
        }
    }

    // Every invalid fixture is refused by the API server, with the fixture's message.
    let dir = repo_root().join("crds/tests/fixtures/invalid");
    let mut fixtures: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    fixtures.sort();
    assert!(!fixtures.is_empty());
    let mut checked = BTreeSet::new();
    let mut wrong = Vec::new();
    for path in &fixtures {
        let text = std::fs::read_to_string(path).unwrap();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let expected = text
            .lines()
            .find_map(|l| l.strip_prefix("# api-server-error: "));
        let document = in_namespace(documents(&text).remove(0), NAMESPACE);
        match cluster.apply_as(crate::harness::MANAGER, &document).await {
            Ok(_) => wrong.push(format!("{file}: the API server accepted it")),
            Err(kube::Error::Api(status)) => {
                // One cause only (besides the note that CEL rules were skipped on an object
                // the schema already refused): a fixture broken twice proves nothing.
                let causes = status
                    .details
                    .as_ref()
                    .map(|d| {
                        d.causes
                            .iter()
                            .filter(|c| {
                                !c.message.contains("some validation rules were not checked")
                            })
                            .count()
                    })
                    .unwrap_or(0);
                match expected {
                    Some(expected)
                        if status.code == 422 && causes == 1 && status.message.contains(expected) => {}
                    _ => wrong.push(format!(
                        "{file}: expected {expected:?} as the one cause, the API server answered {} with {causes} causes: {:?}",
                        status.code, status.message
                    )),
                }
            }
            Err(other) => wrong.push(format!("{file}: {other}")),
        }
        checked.insert(file);
    }
    assert!(wrong.is_empty(), "invalid fixtures: {wrong:#?}");
    assert_eq!(checked.len(), fixtures.len());

    cluster.remove_namespaces(&[NAMESPACE]).await;
    eprintln!("scenario 1 took {:?}", started.elapsed());
}

/// Every field the sample sets is stored with its value (defaults may add more).
fn assert_spec_contains(stored: &Value, written: &Value, what: &str) {
    match (stored, written) {
        (Value::Object(s), Value::Object(w)) => {
            for (key, value) in w {
                let Some(kept) = s.get(key) else {
                    panic!("{what}: {key} was dropped by the API server");
                };
                assert_spec_contains(kept, value, &format!("{what}.{key}"));
            }
        }
        (Value::Array(s), Value::Array(w)) => {
            assert_eq!(s.len(), w.len(), "{what}");
            for (i, (kept, value)) in s.iter().zip(w).enumerate() {
                assert_spec_contains(kept, value, &format!("{what}[{i}]"));
            }
        }
        (s, w) => assert_eq!(s, w, "{what}"),
    }
}
