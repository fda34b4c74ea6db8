//! Fetch: the realm a RateLimitPolicy targets.

use kube::api::Api;
use kube::{Client, ResourceExt};
use portcullis_crds::{AuthRealm, RateLimitPolicy};

use crate::controllers::{ReconcileError, is_not_found};

/// The target realm, if it exists.
pub async fn fetch(
    client: &Client,
    policy: &RateLimitPolicy,
) -> Result<Option<AuthRealm>, ReconcileError> {
    let namespace = policy.namespace().ok_or(ReconcileError::NoNamespace)?;
    let api: Api<AuthRealm> = Api::namespaced(client.clone(), &namespace);
    match api.get(&policy.spec.target_ref.name).await {
        Ok(realm) => Ok(Some(realm)),
        Err(error) if is_not_found(&error) => Ok(None),
        Err(error) => Err(ReconcileError::api("get target AuthRealm")(error)),
    }
}
