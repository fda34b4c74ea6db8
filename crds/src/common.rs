//! Small types shared by the three custom resources.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of every Portcullis resource.
pub const GROUP: &str = "portcullis.dev";
/// The API version of every Portcullis resource.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as written in manifests.
pub const API_VERSION: &str = "portcullis.dev/v1alpha1";

/// An RFC 1123 DNS label: what Kubernetes accepts as most object names.
pub const DNS_LABEL_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// An RFC 1123 DNS subdomain: what Kubernetes accepts as Secret and ConfigMap names.
pub const DNS_SUBDOMAIN_PATTERN: &str =
    "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A key in a Secret or ConfigMap.
pub const CONFIG_KEY_PATTERN: &str = "^[-._a-zA-Z0-9]+$";

/// A key of a Secret in the realm's namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    /// Name of the Secret, in the namespace of the resource that refers to it.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// Key within the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = CONFIG_KEY_PATTERN))]
    pub key: String,
}

/// A Secret key whose key defaults to `url`: connection strings for PostgreSQL, Redis, SMTP.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UrlSecretRef {
    /// Name of the Secret, in the realm's namespace.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// Key within the Secret that holds the URL.
    #[serde(default = "default_url_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = CONFIG_KEY_PATTERN))]
    pub key: String,
}

fn default_url_key() -> String {
    "url".to_owned()
}

/// The kinds a policy can attach to.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TargetKind {
    /// An `AuthRealm` in the policy's namespace.
    #[default]
    AuthRealm,
}

/// The realm a policy applies to, in the policy's own namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetRef {
    /// Kind of the target; only `AuthRealm`.
    #[serde(default)]
    pub kind: TargetKind,
    /// Name of the target realm.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub name: String,
}
