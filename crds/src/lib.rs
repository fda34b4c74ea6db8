//! Portcullis custom resources and the effective realm settings derived from them.
//!
//! This crate holds the CRD types only (serde, schemars and kube derive), the condition
//! helpers, and the pure function that turns a realm's manifests into the settings both the
//! operator and the auth server use. It makes no API calls and has no reconcile logic.

// kube's `printcolumn(...)` attributes repeat their keys by design.
#![allow(clippy::duplicated_attributes)]

pub mod client;
pub mod common;
pub mod conditions;
pub mod cron;
pub mod duration;
pub mod manifests;
pub mod rate_limit;
pub mod realm;
pub mod retention;
pub mod secrets_dir;
pub mod settings;

pub use client::{AuthClient, AuthClientSpec, EffectiveClient};
pub use common::{API_VERSION, GROUP, SecretKeyRef, TargetKind, TargetRef, UrlSecretRef, VERSION};
pub use duration::GoDuration;
pub use manifests::{
    Ignored, ManifestError, RealmManifests, TolerantManifests, parse_manifests,
    parse_manifests_tolerant,
};
pub use rate_limit::{RateLimitPolicy, RateLimitPolicySpec};
pub use realm::{AuthRealm, AuthRealmSpec};
pub use retention::{RetentionPolicy, RetentionPolicySpec};
pub use settings::{RealmSettings, SettingsError, SettingsErrors};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// Every CRD of Portcullis, in the order they are written and applied.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        AuthRealm::crd(),
        RateLimitPolicy::crd(),
        RetentionPolicy::crd(),
        AuthClient::crd(),
    ]
}
