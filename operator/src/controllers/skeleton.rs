//! What every controller does around its own steps, written once: metrics and backoff
//! bookkeeping of a reconcile, the status written with server-side apply (so a field the
//! operator stops setting is removed, not left behind as a merge patch leaves it), Events for
//! condition transitions, and deleting an object only if it is there and is ours.

use std::fmt::Debug;
use std::future::Future;
use std::time::Instant;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Context, ReconcileError, failure_key, is_not_found};
use crate::resources::meta::FIELD_MANAGER;

/// Runs one reconcile of `object` (`run` returns the action and the outcome reason) and
/// records its duration, outcome and failures; a success resets the object's backoff.
pub async fn observed<K, F>(
    kind: &str,
    object: &K,
    ctx: &Context,
    run: F,
) -> Result<Action, ReconcileError>
where
    K: Resource<DynamicType = ()>,
    F: Future<Output = Result<(Action, &'static str), ReconcileError>>,
{
    let started = Instant::now();
    let key = failure_key(object);
    let result = run.await;
    let (reason, failed) = match &result {
        Ok((_, reason)) => (*reason, false),
        Err(error) => (error.reason(), true),
    };
    ctx.metrics.observe(kind, reason, started.elapsed(), failed);
    if !failed {
        ctx.succeeded(&key);
    }
    result.map(|(action, _)| action)
}

/// The body of a status apply: the object's kind and the whole status this manager owns.
pub fn status_apply_body<K, S>(status: &S) -> serde_json::Value
where
    K: Resource<DynamicType = ()>,
    S: Serialize,
{
    serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    })
}

/// Writes `next` as the object's status with server-side apply, when it differs from
/// `previous`: every field of the status belongs to the operator's one field manager, so a
/// field left out of `next` (an empty list, a cleared time) is removed by the API server.
pub async fn apply_status<K, S>(
    ctx: &Context,
    object: &K,
    previous: Option<&S>,
    next: &S,
) -> Result<bool, ReconcileError>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
    S: Serialize + PartialEq,
{
    if previous == Some(next) {
        return Ok(false);
    }
    let namespace = object.namespace().ok_or(ReconcileError::NoNamespace)?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    api.patch_status(
        &object.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(status_apply_body::<K, S>(next)),
    )
    .await
    .map_err(ReconcileError::api(format!(
        "apply {} status",
        K::kind(&())
    )))?;
    Ok(true)
}

/// `(status, reason)` of a condition, to tell transitions apart.
fn state<'a>(conditions: &'a [Condition], type_: &str) -> Option<(&'a str, &'a str)> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.as_str(), c.reason.as_str()))
}

/// The transitions worth an Event: each condition of `types` whose status or reason differs
/// between `before` and `after`, as `(warning, reason, message)`. A condition is good when it
/// is `True`, except those in `bad_when_true` (like `Degraded`), whose first appearance as
/// `False` is no news.
pub fn transitions<'a>(
    before: &[Condition],
    after: &'a [Condition],
    types: &[&str],
    bad_when_true: &[&str],
) -> Vec<(bool, &'a str, &'a str)> {
    types
        .iter()
        .filter_map(|type_| {
            let now = after.iter().find(|c| c.type_ == *type_)?;
            let was = state(before, type_);
            if was == Some((now.status.as_str(), now.reason.as_str())) {
                return None;
            }
            if was.is_none() && now.status == "False" && bad_when_true.contains(type_) {
                return None;
            }
            let warning = (now.status == "True") == bad_when_true.contains(type_);
            Some((warning, now.reason.as_str(), now.message.as_str()))
        })
        .collect()
}

/// Publishes an Event for each transition of [`transitions`].
pub async fn announce<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    object: &K,
    before: &[Condition],
    after: &[Condition],
    types: &[&str],
    bad_when_true: &[&str],
) {
    let reference = object.object_ref(&());
    for (warning, reason, message) in transitions(before, after, types, bad_when_true) {
        ctx.event(&reference, warning, reason, message.to_owned())
            .await;
    }
}

/// Deletes `name` when it exists and carries the uid `uid` (the object the caller owns, not
/// one someone created since under the same name). Returns whether it deleted something.
pub async fn delete_if_present<K>(
    api: &Api<K>,
    name: &str,
    uid: Option<String>,
) -> Result<bool, ReconcileError>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let params = DeleteParams {
        preconditions: uid.map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(true),
        Err(error) if is_not_found(&error) => Ok(false),
        // The uid precondition failed: the object is somebody else's now.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(error) => Err(ReconcileError::api(format!("delete {name}"))(error)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn condition(type_: &str, status: &str, reason: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: format!("{reason}!"),
            observed_generation: None,
            last_transition_time: Time(Timestamp::UNIX_EPOCH),
        }
    }

    #[test]
    fn only_changed_conditions_are_announced_with_their_severity() {
        let before = [
            condition("Ready", "True", "Available"),
            condition("Degraded", "False", "AsExpected"),
        ];
        let after = [
            condition("Ready", "True", "Available"),
            condition("Degraded", "True", "CertManagerMissing"),
            condition("Accepted", "False", "ClientIdTaken"),
        ];
        assert_eq!(
            transitions(
                &before,
                &after,
                &["Ready", "Degraded", "Accepted"],
                &["Degraded"]
            ),
            [
                (true, "CertManagerMissing", "CertManagerMissing!"),
                (true, "ClientIdTaken", "ClientIdTaken!")
            ]
        );
        assert!(
            transitions(&[], &recovered_only(), &["Degraded"], &["Degraded"]).is_empty(),
            "a first Degraded=False is no news"
        );
        let recovered = recovered_only();
        assert_eq!(
            transitions(&after, &recovered, &["Degraded"], &["Degraded"]),
            [(false, "AsExpected", "AsExpected!")]
        );
    }

    fn recovered_only() -> [Condition; 1] {
        [condition("Degraded", "False", "AsExpected")]
    }

    #[test]
    fn a_status_apply_names_the_kind_and_carries_the_whole_status() {
        let status = portcullis_crds::client::AuthClientStatus {
            client_id: Some("shop-web".into()),
            ..Default::default()
        };
        let body = status_apply_body::<portcullis_crds::AuthClient, _>(&status);
        assert_eq!(body["apiVersion"], "portcullis.dev/v1alpha1");
        assert_eq!(body["kind"], "AuthClient");
        assert_eq!(body["status"]["clientId"], "shop-web");
        assert!(body["status"].get("secretName").is_none());
    }
}
