//! Apply: every child of the realm, server-side, in order; then prune what is no longer
//! wanted, by label.

use std::collections::{BTreeMap, BTreeSet};

use kube::Client;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::Value;

use crate::controllers::ReconcileError;
use crate::controllers::apply::{apply, prune, resource_of};
use crate::resources::Capabilities;
use crate::resources::meta::Owner;

/// What applying stored.
#[derive(Clone, Debug, Default)]
pub struct ApplyReport {
    /// Ready replicas the Deployment reports.
    pub ready_replicas: i32,
    /// `kind/name` of pruned children.
    pub pruned: Vec<String>,
}

/// Kinds the realm controller prunes (those whose API exists).
pub fn prunable_kinds(capabilities: Capabilities) -> Vec<ApiResource> {
    let gvk = |g: &str, v: &str, k: &str| ApiResource::from_gvk(&GroupVersionKind::gvk(g, v, k));
    let mut kinds = vec![
        gvk("", "v1", "ServiceAccount"),
        gvk("", "v1", "Secret"),
        gvk("", "v1", "ConfigMap"),
        gvk("", "v1", "Service"),
        gvk("networking.k8s.io", "v1", "NetworkPolicy"),
        gvk("policy", "v1", "PodDisruptionBudget"),
        gvk("apps", "v1", "Deployment"),
        gvk("networking.k8s.io", "v1", "Ingress"),
        gvk("batch", "v1", "CronJob"),
    ];
    if capabilities.cert_manager {
        kinds.push(crate::resources::tls::certificate_resource());
    }
    if capabilities.prometheus_operator {
        kinds.push(crate::resources::monitoring::service_monitor_resource());
        kinds.push(crate::resources::monitoring::prometheus_rule_resource());
    }
    kinds
}

fn ready_replicas(deployment: &DynamicObject) -> i32 {
    deployment
        .data
        .pointer("/status/readyReplicas")
        .and_then(Value::as_i64)
        .and_then(|n| i32::try_from(n).ok())
        .unwrap_or(0)
}

/// Applies the manifests in order, then prunes every prunable kind in the realm namespace.
pub async fn apply_children(
    client: &Client,
    owner: &Owner,
    manifests: &[Value],
    capabilities: Capabilities,
) -> Result<ApplyReport, ReconcileError> {
    let namespace = owner.namespace.clone().ok_or(ReconcileError::NoNamespace)?;
    let mut report = ApplyReport::default();
    let mut wanted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for manifest in manifests {
        let stored = apply(client, &namespace, manifest).await?;
        let kind = manifest["kind"].as_str().unwrap_or_default().to_owned();
        if kind == "Deployment" {
            report.ready_replicas = ready_replicas(&stored);
        }
        let in_namespace = manifest
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .is_none_or(|ns| ns == namespace);
        if in_namespace && let Some(resource) = resource_of(manifest) {
            let name = manifest
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            wanted.entry(resource.kind).or_default().insert(name);
        }
    }
    let selector = owner.prune_selector();
    for resource in prunable_kinds(capabilities) {
        let keep = wanted.get(&resource.kind).cloned().unwrap_or_default();
        for name in prune(client, &namespace, &resource, &selector, &keep).await? {
            report.pruned.push(format!("{}/{name}", resource.kind));
        }
    }
    Ok(report)
}
