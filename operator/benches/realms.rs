//! Figures for the operator's hot path and footprint, printed (no harness):
//! - validate + key generation + build + render time per realm (the full sample with its
//!   policies, the most children a realm has);
//! - resident memory of 1,000 realms held in a reflector cache, filled from a mocked list
//!   response as the watcher would receive it.
//!
//! Run with `cargo bench -p portcullis-operator --bench realms`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is a failed run

use std::time::Instant;

use k8s_openapi::jiff::Timestamp;
use kube::api::ObjectList;
use kube::runtime::reflector;
use kube::runtime::watcher::Event;
use portcullis_crds::AuthRealm;
use portcullis_operator::render;

const REALM_FULL: &str = include_str!("../../config/samples/realm-full.yaml");
const RATE_LIMIT: &str = include_str!("../../config/samples/ratelimitpolicy.yaml");
const RETENTION: &str = include_str!("../../config/samples/retentionpolicy.yaml");
const REALMS: usize = 1_000;

fn rss_kib() -> u64 {
    status_kib("VmRSS:")
}

/// A `/proc/self/status` figure in KiB (Linux), 0 elsewhere.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let files = [
        ("realm.yaml".to_owned(), REALM_FULL.to_owned()),
        ("rlp.yaml".to_owned(), RATE_LIMIT.to_owned()),
        ("rtp.yaml".to_owned(), RETENTION.to_owned()),
    ];
    let manifests = render::read_files(&files).unwrap();
    let now = Timestamp::now();
    let mut rng = rand::rng();

    let before = rss_kib();
    // A mocked list response of REALMS realms, decoded and held in a reflector store.
    let template: serde_json::Value = serde_json::to_value(&manifests.realms[0]).unwrap();
    let items: Vec<serde_json::Value> = (0..REALMS)
        .map(|i| {
            let mut realm = template.clone();
            realm["metadata"]["name"] = format!("realm-{i}").into();
            realm["metadata"]["uid"] = format!("00000000-0000-0000-0000-{i:012}").into();
            realm["metadata"]["resourceVersion"] = (1000 + i).to_string().into();
            realm
        })
        .collect();
    let body = serde_json::to_vec(&serde_json::json!({
        "apiVersion": "portcullis.dev/v1alpha1", "kind": "AuthRealmList",
        "metadata": {"resourceVersion": "5000"}, "items": items
    }))
    .unwrap();
    drop(items);
    let list: ObjectList<AuthRealm> = serde_json::from_slice(&body).unwrap();
    drop(body);
    let (reader, mut writer) = reflector::store::<AuthRealm>();
    for realm in list.items {
        writer.apply_watcher_event(&Event::Apply(realm));
    }
    let after = rss_kib();
    println!(
        "reflector cache with {} realms (decoded from one list response): RSS {} KiB -> {} KiB, \
         growth {} KiB ({} KiB per realm, includes the list body the decoding held), peak {} KiB",
        reader.state().len(),
        before,
        after,
        after.saturating_sub(before),
        after.saturating_sub(before) / REALMS as u64,
        status_kib("VmHWM:")
    );
    // Warm up, then time REALMS renders: with and without generating key material.
    for include_secrets in [false, true] {
        render::render_values(&manifests, include_secrets, now, &mut rng).unwrap();
        let started = Instant::now();
        let mut bytes = 0;
        for _ in 0..REALMS {
            let values = render::render_values(&manifests, include_secrets, now, &mut rng).unwrap();
            bytes += render::to_yaml(&values).unwrap().len();
        }
        let per_realm = started.elapsed() / REALMS as u32;
        println!(
            "validate+build+render per realm (full sample{}): {per_realm:?}  ({} KiB of YAML each)",
            if include_secrets {
                ", generating keys and secrets"
            } else {
                ""
            },
            bytes / REALMS / 1024
        );
    }
}
