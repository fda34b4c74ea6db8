//! The realm's keys Secret. The values come from [`crate::secrets`]; this module only shapes
//! the object.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use portcullis_crds::realm::DeletionPolicy;

use super::Inputs;
use super::meta::{annotations, names};

/// Component label of the keys Secret.
const KEYS: &str = "keys";

/// The generated key material of a realm: the keys Secret's data (file name to contents) and
/// its annotations (signing key creation times).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyMaterial {
    /// File name in the secrets dir to contents.
    pub data: BTreeMap<String, String>,
    /// Annotations of the keys Secret.
    pub annotations: BTreeMap<String, String>,
}

impl KeyMaterial {
    /// Reads the key material back from the keys Secret: its UTF-8 data and the operator's
    /// key-creation annotations.
    pub fn from_secret(secret: Secret) -> KeyMaterial {
        KeyMaterial {
            data: secret
                .data
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(k, v)| Some((k, String::from_utf8(v.0).ok()?)))
                .collect(),
            annotations: secret
                .metadata
                .annotations
                .unwrap_or_default()
                .into_iter()
                .filter(|(k, _)| {
                    [
                        annotations::SIGNING_KEYS_CREATED,
                        annotations::FERNET_KEYS_CREATED,
                    ]
                    .contains(&k.as_str())
                })
                .collect(),
        }
    }
}

/// Secret key of a client's secret in the keys Secret.
pub fn client_secret_key(client_id: &str) -> String {
    portcullis_crds::secrets_dir::client_secret(client_id)
}

fn bytes(data: &BTreeMap<String, String>) -> BTreeMap<String, ByteString> {
    data.iter()
        .map(|(k, v)| (k.clone(), ByteString(v.as_bytes().to_vec())))
        .collect()
}

/// The `<realm>-keys` Secret mounted as the secrets dir; owned by the realm only under
/// `deletionPolicy: Delete`.
pub fn keys_secret(inputs: &Inputs<'_>) -> Secret {
    let owner = &inputs.owner;
    let mut metadata = owner.meta(names::keys(&owner.realm), KEYS);
    if inputs.settings.spec.deletion_policy == DeletionPolicy::Retain {
        // Not owned: the garbage collector must not delete the key material with the realm.
        metadata.owner_references = None;
    }
    if !inputs.keys.annotations.is_empty() {
        metadata.annotations = Some(inputs.keys.annotations.clone());
    }
    Secret {
        metadata,
        type_: Some("Opaque".to_owned()),
        data: Some(bytes(&inputs.keys.data)),
        ..Default::default()
    }
}
