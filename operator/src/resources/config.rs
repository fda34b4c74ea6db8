//! The realm ConfigMap: the AuthRealm, its RateLimitPolicies, its RetentionPolicy and the
//! AuthClients it admitted as one multi-document YAML, exactly what
//! `portcullis_crds::parse_manifests` reads.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::meta::{Owner, names};
use super::{BuildError, Inputs};

/// Key of the realm manifests in the ConfigMap; the pod mounts it as
/// `/etc/portcullis/realm.yaml`.
pub const CONFIG_KEY: &str = "realm.yaml";

/// Serializes a manifest as the auth server reads it: apiVersion, kind, spec and only the
/// name and namespace of its metadata. Labels, annotations (GitOps tracking, `run-now`,
/// `kubectl` bookkeeping) and server-side fields describe the object, not the realm's
/// configuration; were they in the file, any of them would change the config checksum and
/// restart the auth server.
fn stripped<T: Serialize>(object: &T) -> Result<Value, BuildError> {
    let mut value = serde_json::to_value(object).map_err(|e| BuildError::Config(e.to_string()))?;
    if let Value::Object(map) = &mut value {
        map.remove("status");
        if let Some(Value::Object(meta)) = map.get_mut("metadata") {
            meta.retain(|key, _| key == "name" || key == "namespace");
        }
    }
    Ok(value)
}

/// The multi-document YAML of the realm's manifests: the AuthRealm first, then its
/// RateLimitPolicies by name, then its RetentionPolicy, then its admitted AuthClients by
/// client id.
pub fn realm_yaml(inputs: &Inputs<'_>) -> Result<String, BuildError> {
    let mut documents = vec![stripped(inputs.realm)?];
    let mut rate_limits: Vec<_> = inputs.rate_limit_policies.iter().collect();
    rate_limits.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    for policy in rate_limits {
        documents.push(stripped(policy)?);
    }
    for policy in inputs.retention_policies {
        documents.push(stripped(policy)?);
    }
    let mut clients: Vec<_> = inputs.clients.iter().collect();
    clients.sort_by_key(|c| c.client_id());
    for client in clients {
        documents.push(stripped(client)?);
    }
    let mut yaml = String::new();
    for document in &documents {
        let text =
            serde_saphyr::to_string(document).map_err(|e| BuildError::Config(e.to_string()))?;
        yaml.push_str("---\n");
        yaml.push_str(&text);
    }
    Ok(yaml)
}

/// Hex SHA-256 of some bytes: the checksum annotations.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The realm ConfigMap holding `realm.yaml`.
pub fn config_map(owner: &Owner, yaml: &str) -> ConfigMap {
    ConfigMap {
        metadata: owner.meta(names::config(&owner.realm), "config"),
        data: Some(BTreeMap::from([(CONFIG_KEY.to_owned(), yaml.to_owned())])),
        ..Default::default()
    }
}
