//! Secret objects: the realm's keys Secret and each confidential client's Secret at its
//! `secretTarget`. The values come from [`crate::secrets`]; this module only shapes objects.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use portcullis_crds::realm::{ClientType, DeletionPolicy};

use super::Inputs;
use super::meta::{annotations, names};

/// Component label of the keys Secret.
const KEYS: &str = "keys";
/// Component label of client Secrets.
const CLIENT: &str = "client-secret";

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
                        annotations::CLIENT_SECRET_TARGETS,
                    ]
                    .contains(&k.as_str())
                })
                .collect(),
        }
    }
}

/// `namespace/name` of every client Secret the realm wants, sorted.
pub fn client_secret_targets(settings: &portcullis_crds::RealmSettings) -> Vec<String> {
    let mut targets: Vec<String> = settings
        .spec
        .clients
        .iter()
        .filter(|c| c.client_type == ClientType::Confidential)
        .filter_map(|c| c.secret_target.as_ref())
        .map(|t| {
            let namespace = t
                .namespace
                .clone()
                .or_else(|| settings.namespace.clone())
                .unwrap_or_default();
            format!("{namespace}/{}", t.name)
        })
        .collect();
    targets.sort();
    targets
}

/// The targets recorded on the keys Secret by the previous reconcile.
pub fn recorded_client_secret_targets(keys: &KeyMaterial) -> Vec<String> {
    keys.annotations
        .get(annotations::CLIENT_SECRET_TARGETS)
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default()
}

/// Secret key of a client's secret in the keys Secret.
pub fn client_secret_key(client_id: &str) -> String {
    format!("client-secret-{client_id}")
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

/// One Secret per confidential client with a `secretTarget`: `client-id`, `client-secret`
/// and `issuer`, what an OIDC client library needs. Clients whose secret is not generated
/// yet get none.
pub fn client_secrets(inputs: &Inputs<'_>) -> Vec<Secret> {
    let owner = &inputs.owner;
    let spec = &inputs.settings.spec;
    spec.clients
        .iter()
        .filter(|c| c.client_type == ClientType::Confidential)
        .filter_map(|client| {
            let target = client.secret_target.as_ref()?;
            let secret = inputs
                .keys
                .data
                .get(&client_secret_key(&client.client_id))?;
            let data = BTreeMap::from([
                ("client-id".to_owned(), client.client_id.clone()),
                ("client-secret".to_owned(), secret.clone()),
                ("issuer".to_owned(), spec.issuer.clone()),
            ]);
            Some(Secret {
                metadata: owner.foreign_meta(target.name.clone(), target.namespace.clone(), CLIENT),
                type_: Some("Opaque".to_owned()),
                data: Some(bytes(&data)),
                ..Default::default()
            })
        })
        .collect()
}
