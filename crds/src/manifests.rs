//! Reading a realm's manifests (one AuthRealm, its RateLimitPolicies and RetentionPolicy) from
//! a multi-document YAML: what the operator writes into the realm ConfigMap and what
//! `config/samples/` holds.

use kube::ResourceExt;
use serde_json::Value;

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
        "document {document}: kind {found:?} is not AuthRealm, RateLimitPolicy or RetentionPolicy"
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
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(yaml).map_err(|e| ManifestError::Yaml(e.to_string()))?;
    let mut manifests = RealmManifests::default();
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
        match kind.as_str() {
            "AuthRealm" => manifests
                .realms
                .push(decode(document_number, "AuthRealm", document)?),
            "RateLimitPolicy" => manifests.rate_limit_policies.push(decode(
                document_number,
                "RateLimitPolicy",
                document,
            )?),
            "RetentionPolicy" => manifests.retention_policies.push(decode(
                document_number,
                "RetentionPolicy",
                document,
            )?),
            _ => {
                return Err(ManifestError::UnknownKind {
                    document: document_number,
                    found: kind,
                });
            }
        }
    }
    Ok(manifests)
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
    fn requires_a_name() {
        let yaml = REALM.replace("metadata: {name: demo, namespace: auth}", "metadata: {}");
        assert!(matches!(
            parse_manifests(&yaml),
            Err(ManifestError::Invalid { .. })
        ));
    }
}
