//! Fetch: the realm a RateLimitPolicy targets.

use kube::{Client, ResourceExt};
use portcullis_crds::{AuthRealm, RateLimitPolicy};

use crate::controllers::{ReconcileError, tolerant};

/// The target realm, if it exists.
pub async fn fetch(
    client: &Client,
    policy: &RateLimitPolicy,
) -> Result<Option<AuthRealm>, ReconcileError> {
    let namespace = policy.namespace().ok_or(ReconcileError::NoNamespace)?;
    tolerant::get_opt(client, &namespace, &policy.spec.target_ref.name).await
}
