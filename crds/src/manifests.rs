//! Reading a realm's manifests (one AuthRealm, its RateLimitPolicies, RetentionPolicy and
//! admitted AuthClients) from a multi-document YAML: what the operator writes into the realm
//! ConfigMap and what `config/samples/` holds.

use kube::{CustomResourceExt, ResourceExt};
use serde_json::Value;

use crate::client::AuthClient;
use crate::common::API_VERSION;
use crate::rate_limit::RateLimitPolicy;
use crate::realm::AuthRealm;
use crate::retention::RetentionPolicy;

/// The manifests of one realm, as read, before any cross-object checks.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct RealmManifests {
    /// Every AuthRealm found (a valid set has exactly one).
    pub realms: Vec<AuthRealm>,
    /// Every RateLimitPolicy found.
    pub rate_limit_policies: Vec<RateLimitPolicy>,
    /// Every RetentionPolicy found.
    pub retention_policies: Vec<RetentionPolicy>,
    /// Every AuthClient found (in a realm ConfigMap: the clients the realm admitted).
    pub clients: Vec<AuthClient>,
}

/// Why a manifest document could not be read. `document` counts from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The text is not YAML.
    #[error("not valid YAML: {0}")]
    Yaml(String),
    /// A document is not a mapping with `apiVersion` and `kind`.
    #[error("document {document}: not a Kubernetes object (needs apiVersion and kind)")]
    NotAnObject {
        /// Position of the document.
        document: usize,
    },
    /// A document has another API version.
    #[error("document {document}: apiVersion {found:?} is not {API_VERSION}")]
    UnsupportedApiVersion {
        /// Position of the document.
        document: usize,
        /// The apiVersion found.
        found: String,
    },
    /// A document is of a kind Portcullis does not read.
    #[error(
        "document {document}: kind {found:?} is not AuthRealm, RateLimitPolicy, RetentionPolicy or AuthClient"
    )]
    UnknownKind {
        /// Position of the document.
        document: usize,
        /// The kind found.
        found: String,
    },
    /// A document of a known kind does not match its schema.
    #[error("document {document}: {kind} {name:?} is invalid: {message}")]
    Invalid {
        /// Position of the document.
        document: usize,
        /// Kind of the object.
        kind: &'static str,
        /// `metadata.name`, or empty when missing.
        name: String,
        /// What is wrong, from the deserializer (field path and expectation).
        message: String,
    },
}

impl ManifestError {
    /// A stable CamelCase reason for conditions, Events and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Yaml(_) => "InvalidYaml",
            Self::NotAnObject { .. } => "NotAnObject",
            Self::UnsupportedApiVersion { .. } => "UnsupportedApiVersion",
            Self::UnknownKind { .. } => "UnknownKind",
            Self::Invalid { .. } => "InvalidSpec",
        }
    }
}

/// Reads every document of a multi-document YAML. Empty documents are skipped. Objects must
/// carry `metadata.name`.
pub fn parse_manifests(yaml: &str) -> Result<RealmManifests, ManifestError> {
    let mut manifests = RealmManifests::default();
    for (document_number, kind, document) in documents(yaml)? {
        if !push_document(&mut manifests, document_number, &kind, document)? {
            return Err(ManifestError::UnknownKind {
                document: document_number,
                found: kind,
            });
        }
    }
    Ok(manifests)
}

/// The non-empty documents of a multi-document YAML as (position from 1, kind, object), each
/// checked to be an object of this API version.
fn documents(yaml: &str) -> Result<Vec<(usize, String, Value)>, ManifestError> {
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(yaml).map_err(|e| ManifestError::Yaml(e.to_string()))?;
    let mut out = Vec::with_capacity(documents.len());
    for (index, document) in documents.into_iter().enumerate() {
        let document_number = index + 1;
        if document.is_null() {
            continue;
        }
        let field = |name: &str| {
            document
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let (Some(api_version), Some(kind)) = (field("apiVersion"), field("kind")) else {
            return Err(ManifestError::NotAnObject {
                document: document_number,
            });
        };
        if api_version != API_VERSION {
            return Err(ManifestError::UnsupportedApiVersion {
                document: document_number,
                found: api_version,
            });
        }
        out.push((document_number, kind, document));
    }
    Ok(out)
}

/// Decodes one document of one of the four kinds into `manifests`; `false` (nothing decoded)
/// when `kind` is not one of them.
fn push_document(
    manifests: &mut RealmManifests,
    document_number: usize,
    kind: &str,
    document: Value,
) -> Result<bool, ManifestError> {
    match kind {
        "AuthRealm" => manifests
            .realms
            .push(decode(document_number, "AuthRealm", document)?),
        "RateLimitPolicy" => manifests.rate_limit_policies.push(decode(
            document_number,
            "RateLimitPolicy",
            document,
        )?),
        "RetentionPolicy" => {
            manifests
                .retention_policies
                .push(decode(document_number, "RetentionPolicy", document)?)
        }
        "AuthClient" => manifests
            .clients
            .push(decode(document_number, "AuthClient", document)?),
        _ => return Ok(false),
    }
    Ok(true)
}

/// A field or a document that [`parse_manifests_tolerant`] left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    /// Position of the document, from 1.
    pub document: usize,
    /// Kind of the document.
    pub kind: String,
    /// `metadata.name` of the document, or empty.
    pub name: String,
    /// Path of the field left out (`spec.lockout.newField`), or empty when the whole
    /// document was left out (a kind this version does not know).
    pub path: String,
}

impl std::fmt::Display for Ignored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(
                f,
                "document {}: kind {} {:?} is not known to this version and was ignored",
                self.document, self.kind, self.name
            )
        } else {
            write!(
                f,
                "document {}: {} {:?}: field {} is not known to this version and was ignored",
                self.document, self.kind, self.name, self.path
            )
        }
    }
}

/// Manifests read by [`parse_manifests_tolerant`], and what was left out of them.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct TolerantManifests {
    /// The manifests, without the fields and documents this version does not know.
    pub manifests: RealmManifests,
    /// What was left out, in document order: worth a warning, never an error.
    pub ignored: Vec<Ignored>,
}

/// Reads a realm's manifests as a running auth server must read what a newer operator wrote:
/// fields this version does not know are left out (as the API server prunes unknown fields,
/// against the same schema) and documents of kinds it does not know are skipped; both are
/// reported in [`TolerantManifests::ignored`]. Everything else is as strict as
/// [`parse_manifests`]: a field of a known name with a wrong value is still an error. Use
/// [`parse_manifests`] to check files a person wrote (`check-config`), where an unknown field
/// is a typo.
pub fn parse_manifests_tolerant(yaml: &str) -> Result<TolerantManifests, ManifestError> {
    let mut out = TolerantManifests::default();
    for (document_number, kind, mut document) in documents(yaml)? {
        let name = document
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        // The status is the cluster's, not configuration: dropped unread.
        if let Value::Object(map) = &mut document {
            map.remove("status");
        }
        let Some(removed) = prune_unknown_fields(&kind, &mut document) else {
            out.ignored.push(Ignored {
                document: document_number,
                kind,
                name,
                path: String::new(),
            });
            continue;
        };
        out.ignored.extend(removed.into_iter().map(|path| Ignored {
            document: document_number,
            kind: kind.clone(),
            name: name.clone(),
            path,
        }));
        // prune_unknown_fields knows the same four kinds, so this always decodes.
        push_document(&mut out.manifests, document_number, &kind, document)?;
    }
    Ok(out)
}

/// Removes from an object of one of the four kinds (as JSON, `kind` naming it) every field of
/// its spec and status, and every top-level field, that this version's schema does not
/// declare, as the API server prunes unknown fields; returns their paths (`spec.newField`).
/// `None` when `kind` is not one of the four. Metadata is Kubernetes' and kept as it is.
///
/// This is how a reader tolerates version skew: a newer CRD or a newer operator may add a
/// (defaulted) field, and the types here refuse unknown fields, which are typos in files a
/// person wrote.
pub fn prune_unknown_fields(kind: &str, object: &mut Value) -> Option<Vec<String>> {
    let crd = match kind {
        "AuthRealm" => AuthRealm::crd(),
        "RateLimitPolicy" => RateLimitPolicy::crd(),
        "RetentionPolicy" => RetentionPolicy::crd(),
        "AuthClient" => AuthClient::crd(),
        _ => return None,
    };
    let schema = crd
        .spec
        .versions
        .first()
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or(Value::Null);
    let mut removed = Vec::new();
    if let Value::Object(map) = object {
        for (key, value) in map.iter_mut() {
            if (key == "spec" || key == "status")
                && let Some(field_schema) = schema.pointer(&format!("/properties/{key}"))
            {
                prune(value, field_schema, key, &mut removed);
            }
        }
        map.retain(|key, _| {
            let known =
                ["apiVersion", "kind", "metadata", "spec", "status"].contains(&key.as_str());
            if !known {
                removed.push(key.clone());
            }
            known
        });
    }
    Some(removed)
}

/// Removes from `value` every field its structural `schema` does not declare, as the API
/// server prunes unknown fields, and records their paths.
fn prune(value: &mut Value, schema: &Value, path: &str, removed: &mut Vec<String>) {
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    match value {
        Value::Object(map) => {
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                map.retain(|key, _| {
                    let known = properties.contains_key(key);
                    if !known {
                        removed.push(format!("{path}.{key}"));
                    }
                    known
                });
                for (key, child) in map.iter_mut() {
                    if let Some(child_schema) = properties.get(key) {
                        prune(child, child_schema, &format!("{path}.{key}"), removed);
                    }
                }
            } else if let Some(values) = schema.get("additionalProperties")
                && values.is_object()
            {
                for (key, child) in map.iter_mut() {
                    prune(child, values, &format!("{path}.{key}"), removed);
                }
            } else if schema.get("type").and_then(Value::as_str) == Some("object") {
                // An object without properties (a marker like `selfSigned: {}`) keeps none.
                for (key, _) in std::mem::take(map) {
                    removed.push(format!("{path}.{key}"));
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune(item, item_schema, &format!("{path}[{i}]"), removed);
                }
            }
        }
        _ => {}
    }
}

fn decode<K>(document: usize, kind: &'static str, value: Value) -> Result<K, ManifestError>
where
    K: serde::de::DeserializeOwned + ResourceExt,
{
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let invalid = |message: String| ManifestError::Invalid {
        document,
        kind,
        name: name.clone(),
        message,
    };
    if name.is_empty() {
        return Err(invalid("metadata.name is required".to_owned()));
    }
    serde_json::from_value(value).map_err(|e| invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REALM: &str = "apiVersion: portcullis.dev/v1alpha1
kind: AuthRealm
metadata: {name: demo, namespace: auth}
spec:
  issuer: https://auth.example.com
  database: {secretRef: {name: db}}
";

    #[test]
    fn reads_each_kind_from_one_stream() {
        let yaml = format!(
            "{REALM}---
apiVersion: portcullis.dev/v1alpha1
kind: RateLimitPolicy
metadata: {{name: login}}
spec:
  targetRef: {{name: demo}}
  rules: [{{name: login, routes: [Login], limits: [{{key: Ip, requests: 5, period: 1m}}]}}]
---
apiVersion: portcullis.dev/v1alpha1
kind: RetentionPolicy
metadata: {{name: gdpr}}
spec:
  targetRef: {{name: demo}}
"
        );
        let manifests = parse_manifests(&yaml).unwrap();
        assert_eq!(manifests.realms.len(), 1);
        assert_eq!(manifests.realms[0].spec.issuer, "https://auth.example.com");
        assert_eq!(
            manifests.rate_limit_policies[0].spec.rules[0].limits[0].requests,
            5
        );
        assert_eq!(manifests.retention_policies[0].spec.schedule, "0 3 * * *");
    }

    #[test]
    fn skips_empty_documents() {
        let manifests = parse_manifests(&format!("---\n{REALM}---\n")).unwrap();
        assert_eq!(manifests.realms.len(), 1);
    }

    #[test]
    fn rejects_foreign_kinds_and_versions() {
        let err = parse_manifests("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n");
        assert!(matches!(
            err,
            Err(ManifestError::UnsupportedApiVersion { document: 1, .. })
        ));
        let err = parse_manifests(
            "apiVersion: portcullis.dev/v1alpha1\nkind: Realm\nmetadata: {name: x}\n",
        );
        assert!(matches!(
            err,
            Err(ManifestError::UnknownKind { document: 1, .. })
        ));
    }

    #[test]
    fn rejects_documents_that_are_not_objects() {
        assert_eq!(
            parse_manifests("- a\n- b\n"),
            Err(ManifestError::NotAnObject { document: 1 })
        );
    }

    #[test]
    fn rejects_malformed_yaml() {
        assert!(matches!(
            parse_manifests("a: [b\n"),
            Err(ManifestError::Yaml(_))
        ));
    }

    #[test]
    fn names_the_object_and_field_of_a_schema_error() {
        let yaml = REALM.replace("spec:\n", "spec:\n  lockout: {window: 15 minutes}\n");
        let err = parse_manifests(&yaml).unwrap_err();
        let ManifestError::Invalid {
            document,
            kind,
            name,
            message,
        } = err
        else {
            panic!("expected Invalid, got {err:?}");
        };
        assert_eq!((document, kind, name.as_str()), (1, "AuthRealm", "demo"));
        assert!(message.contains("15 minutes"), "{message}");
    }

    #[test]
    fn rejects_unknown_fields_instead_of_ignoring_them() {
        let yaml = REALM.replace("spec:\n", "spec:\n  replicass: 3\n");
        let err = parse_manifests(&yaml).unwrap_err();
        assert!(err.to_string().contains("replicass"), "{err}");
    }

    #[test]
    fn a_tolerant_read_leaves_out_and_reports_what_a_newer_operator_added() {
        let yaml = format!(
            "{}---\napiVersion: portcullis.dev/v1alpha1\nkind: FutureKind\nmetadata: {{name: f}}\nspec: {{a: 1}}\n",
            REALM.replace(
                "spec:\n",
                "spec:\n  futureField: 3\n  lockout: {window: 10m, newThing: {a: 1}}\n  podFuture: x\n  networkPolicy: {ingressFrom: [{podSelector: {matchLabels: {app: x}}, future: 1}]}\n"
            )
        );
        assert!(parse_manifests(&yaml).is_err(), "the strict read refuses");
        let read = parse_manifests_tolerant(&yaml).unwrap();
        let realm = &read.manifests.realms[0];
        assert_eq!(realm.spec.lockout.window.as_str(), "10m");
        assert_eq!(
            realm.spec.network_policy.ingress_from[0]
                .pod_selector
                .as_ref()
                .unwrap()
                .match_labels
                .as_ref()
                .unwrap()["app"],
            "x",
            "maps keep their keys"
        );
        let paths: Vec<&str> = read.ignored.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.futureField",
                "spec.podFuture",
                "spec.lockout.newThing",
                "spec.networkPolicy.ingressFrom[0].future",
                ""
            ]
        );
        assert_eq!(read.ignored[4].kind, "FutureKind");
        assert!(read.ignored[0].to_string().contains("spec.futureField"));
    }

    #[test]
    fn pruning_leaves_out_unknown_spec_and_status_fields_and_keeps_metadata() {
        let mut object = serde_json::json!({
            "apiVersion": "portcullis.dev/v1alpha1", "kind": "AuthRealm",
            "metadata": {"name": "demo", "labels": {"any": "label"}},
            "spec": {"issuer": "https://a.example.com", "futureField": "on"},
            "status": {"endpoint": "https://a.example.com", "futureStatus": 1},
            "extra": true
        });
        let removed = prune_unknown_fields("AuthRealm", &mut object).unwrap();
        assert_eq!(
            removed,
            ["spec.futureField", "status.futureStatus", "extra"]
        );
        assert_eq!(object["metadata"]["labels"]["any"], "label");
        assert_eq!(object["status"]["endpoint"], "https://a.example.com");
        assert!(prune_unknown_fields("FutureKind", &mut object).is_none());
    }

    #[test]
    fn a_tolerant_read_still_refuses_a_known_field_with_a_wrong_value() {
        let yaml = REALM.replace("spec:\n", "spec:\n  lockout: {window: soon}\n");
        assert!(matches!(
            parse_manifests_tolerant(&yaml),
            Err(ManifestError::Invalid { .. })
        ));
    }

    #[test]
    fn auth_clients_are_read_by_both_reads() {
        let yaml = format!(
            "{REALM}---\napiVersion: portcullis.dev/v1alpha1\nkind: AuthClient\nmetadata: {{name: web, namespace: auth}}\nspec: {{realmRef: {{name: demo}}, type: Public, redirectUris: [\"https://a.example.com/cb\"]}}\n"
        );
        assert_eq!(parse_manifests(&yaml).unwrap().clients.len(), 1);
        let tolerant = parse_manifests_tolerant(&yaml).unwrap();
        assert_eq!(tolerant.manifests.clients[0].client_id(), "auth-web");
        assert!(tolerant.ignored.is_empty());
    }

    #[test]
    fn requires_a_name() {
        let yaml = REALM.replace("metadata: {name: demo, namespace: auth}", "metadata: {}");
        assert!(matches!(
            parse_manifests(&yaml),
            Err(ManifestError::Invalid { .. })
        ));
    }
}
