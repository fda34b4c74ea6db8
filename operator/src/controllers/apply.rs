//! Server-side apply with one field manager, and label-based pruning of what is no longer
//! wanted. One code path for every kind: manifests are applied as dynamic objects.

use std::collections::BTreeSet;

use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use kube::{Client, ResourceExt};
use serde_json::Value;

use super::{ReconcileError, is_not_found};
pub use crate::resources::meta::FIELD_MANAGER;

/// The API resource of a manifest, from its `apiVersion` and `kind`.
pub fn resource_of(manifest: &Value) -> Option<ApiResource> {
    let api_version = manifest.get("apiVersion")?.as_str()?;
    let kind = manifest.get("kind")?.as_str()?;
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    Some(ApiResource::from_gvk(&GroupVersionKind::gvk(
        group, version, kind,
    )))
}

fn api(client: &Client, resource: &ApiResource, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, resource)
}

/// Applies one manifest (server-side, forced: the operator owns these fields) and returns
/// what the API server stored.
pub async fn apply(
    client: &Client,
    default_namespace: &str,
    manifest: &Value,
) -> Result<DynamicObject, ReconcileError> {
    let resource = resource_of(manifest).ok_or(ReconcileError::Manifest(
        "manifest without apiVersion/kind".to_owned(),
    ))?;
    let name = manifest
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let namespace = manifest
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or(default_namespace);
    api(client, &resource, namespace)
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(manifest),
        )
        .await
        .map_err(ReconcileError::api(format!(
            "apply {} {name}",
            resource.kind
        )))
}

/// The names of the objects of `resource` in `namespace` matching `selector`; none when the
/// kind's API is gone.
pub async fn list_names(
    client: &Client,
    namespace: &str,
    resource: &ApiResource,
    selector: &str,
) -> Result<BTreeSet<String>, ReconcileError> {
    let api = api(client, resource, namespace);
    match api
        .list_metadata(&ListParams::default().labels(selector))
        .await
    {
        Ok(list) => Ok(list.items.iter().map(ResourceExt::name_any).collect()),
        Err(error) if is_not_found(&error) => Ok(BTreeSet::new()),
        Err(error) => Err(ReconcileError::api(format!("list {}", resource.kind))(
            error,
        )),
    }
}

/// Deletes every object of `existing` (names of `resource` in `namespace`) that is not in
/// `keep`; returns the deleted names.
pub async fn prune(
    client: &Client,
    namespace: &str,
    resource: &ApiResource,
    existing: &BTreeSet<String>,
    keep: &BTreeSet<String>,
) -> Result<Vec<String>, ReconcileError> {
    let api = api(client, resource, namespace);
    let mut deleted = Vec::new();
    for name in existing.difference(keep) {
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => deleted.push(name.clone()),
            Err(error) if is_not_found(&error) => {}
            Err(error) => {
                return Err(ReconcileError::api(format!(
                    "delete {} {name}",
                    resource.kind
                ))(error));
            }
        }
    }
    Ok(deleted)
}
