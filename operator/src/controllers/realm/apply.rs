//! Apply: every child of the realm, server-side, in order; then prune what is no longer
//! wanted, by label.

use std::collections::{BTreeMap, BTreeSet};

use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::core::PartialObjectMeta;
use serde_json::Value;

use crate::controllers::apply::{apply, list_names, prune, resource_of};
use crate::controllers::{ReconcileError, is_not_found};
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

/// The children of the realm that exist now, by kind: those carrying its labels.
async fn existing_children(
    client: &Client,
    namespace: &str,
    selector: &str,
    capabilities: Capabilities,
) -> Result<BTreeMap<String, (ApiResource, BTreeSet<String>)>, ReconcileError> {
    let mut existing = BTreeMap::new();
    for resource in prunable_kinds(capabilities) {
        let names = list_names(client, namespace, &resource, selector).await?;
        existing.insert(resource.kind.clone(), (resource, names));
    }
    Ok(existing)
}

/// Applies the manifests in order, then prunes every prunable kind in the realm namespace.
/// A child is applied only if it is the realm's (it carries the realm's labels) or does not
/// exist: an object someone else created under a child's name is never adopted or
/// overwritten ([`ReconcileError::NameTaken`]), and nothing is applied after it.
pub async fn apply_children(
    client: &Client,
    owner: &Owner,
    manifests: &[Value],
    capabilities: Capabilities,
) -> Result<ApplyReport, ReconcileError> {
    let namespace = owner.namespace.clone().ok_or(ReconcileError::NoNamespace)?;
    let selector = owner.prune_selector();
    let existing = existing_children(client, &namespace, &selector, capabilities).await?;
    let mut report = ApplyReport::default();
    let mut wanted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for manifest in manifests {
        let kind = manifest["kind"].as_str().unwrap_or_default().to_owned();
        let name = manifest
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let ours = existing
            .get(&kind)
            .is_some_and(|(_, names)| names.contains(&name));
        if !ours && let Some(resource) = resource_of(manifest) {
            let api: Api<PartialObjectMeta<DynamicObject>> =
                Api::namespaced_with(client.clone(), &namespace, &resource);
            match api.get_metadata(&name).await {
                Ok(_) => return Err(ReconcileError::NameTaken { kind, name }),
                Err(error) if is_not_found(&error) => {}
                Err(error) => {
                    return Err(ReconcileError::api(format!("get {kind} {name}"))(error));
                }
            }
        }
        let stored = apply(client, &namespace, manifest).await?;
        if kind == "Deployment" {
            report.ready_replicas = ready_replicas(&stored);
        }
        wanted.entry(kind).or_default().insert(name);
    }
    for (kind, (resource, names)) in &existing {
        let keep = wanted.get(kind).cloned().unwrap_or_default();
        for name in prune(client, &namespace, resource, names, &keep).await? {
            report.pruned.push(format!("{kind}/{name}"));
        }
    }
    Ok(report)
}
