//! The RateLimitPolicy controller: fetch the target realm -> validate -> status. The realm
//! controller watches these policies and re-renders the realm's configuration.

pub mod fetch;
pub mod status;
pub mod validate;

use std::sync::Arc;

use kube::runtime::controller::Action;
use portcullis_crds::RateLimitPolicy;
use portcullis_crds::conditions::types;

use super::skeleton::{announce, apply_status, observed};
use super::{Context, ReconcileError};

/// Kind label of metrics.
pub const KIND: &str = "RateLimitPolicy";

/// Reconciles one RateLimitPolicy, recording metrics.
pub async fn reconcile(
    policy: Arc<RateLimitPolicy>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    observed(KIND, policy.as_ref(), &ctx, reconcile_inner(&policy, &ctx)).await
}

async fn reconcile_inner(
    policy: &RateLimitPolicy,
    ctx: &Context,
) -> Result<(Action, &'static str), ReconcileError> {
    let realm = fetch::fetch(&ctx.client, policy).await?;
    let verdict = validate::validate(policy, realm.as_ref());
    let previous = policy.status.as_ref();
    let next = status::next_status(
        previous,
        policy.metadata.generation,
        &policy.spec.target_ref.name,
        &verdict,
        (ctx.clock)(),
    );
    apply_status(ctx, policy, previous, &next).await?;
    let before = previous
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    announce(
        ctx,
        policy,
        before,
        &next.conditions,
        &[types::ACCEPTED, types::ATTACHED],
        &[],
    )
    .await;
    let reason = match (&verdict.accepted, &verdict.attached) {
        (Err((reason, _)), _) | (Ok(()), Err((reason, _))) => reason,
        _ => "Reconciled",
    };
    // The realm is watched: a policy changes only when it or its realm does.
    Ok((Action::await_change(), reason))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use k8s_openapi::jiff::Timestamp;
    use serde_json::Value;

    use super::*;
    use crate::controllers::metrics::Metrics;
    use crate::controllers::mock::{Mock, World};
    use crate::resources::tests::{RATE_LIMIT, REALM_FULL};

    const POLICY_PATH: &str =
        "/apis/portcullis.dev/v1alpha1/namespaces/identity/ratelimitpolicies/acme-login";
    const REALM_PATH: &str = "/apis/portcullis.dev/v1alpha1/namespaces/identity/authrealms/acme";

    fn policy() -> Value {
        let mut p = serde_json::to_value(
            portcullis_crds::parse_manifests(RATE_LIMIT)
                .unwrap()
                .rate_limit_policies
                .remove(0),
        )
        .unwrap();
        p["metadata"]["generation"] = 1.into();
        p
    }

    async fn run(world: World, policy: &Value) -> Mock {
        let mock = Mock::start(world);
        let ctx = Arc::new(Context::with_clock(
            mock.client.clone(),
            Arc::new(Metrics::default()),
            Arc::new(|| Timestamp::from_second(1_800_000_000).unwrap()),
        ));
        let policy: RateLimitPolicy = serde_json::from_value(policy.clone()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), reconcile(Arc::new(policy), ctx))
            .await
            .unwrap()
            .unwrap();
        mock
    }

    fn conditions(mock: &Mock) -> Vec<(String, String, String)> {
        let status = mock
            .calls()
            .into_iter()
            .find(|c| c.path.ends_with("/status"))
            .unwrap()
            .body["status"]
            .clone();
        status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["type"].as_str().unwrap().to_owned(),
                    c["status"].as_str().unwrap().to_owned(),
                    c["reason"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    fn c(t: &str, s: &str, r: &str) -> (String, String, String) {
        (t.into(), s.into(), r.into())
    }

    #[tokio::test]
    async fn a_policy_for_an_existing_realm_is_accepted_and_attached() {
        let policy = policy();
        let mut world = World::default();
        world.objects.insert(POLICY_PATH.into(), policy.clone());
        let realm = portcullis_crds::parse_manifests(REALM_FULL)
            .unwrap()
            .realms
            .remove(0);
        world
            .objects
            .insert(REALM_PATH.into(), serde_json::to_value(realm).unwrap());
        let mock = run(world, &policy).await;
        assert_eq!(
            mock.lines(),
            [
                format!("GET {REALM_PATH}"),
                format!("PATCH {POLICY_PATH}/status"),
                "POST /apis/events.k8s.io/v1/namespaces/identity/events".to_owned(),
                "POST /apis/events.k8s.io/v1/namespaces/identity/events".to_owned(),
            ]
        );
        assert_eq!(
            conditions(&mock),
            [
                c("Accepted", "True", "Valid"),
                c("Attached", "True", "Attached")
            ]
        );
    }

    #[tokio::test]
    async fn a_policy_whose_realm_is_missing_is_not_attached() {
        let policy = policy();
        let mut world = World::default();
        world.objects.insert(POLICY_PATH.into(), policy.clone());
        let mock = run(world, &policy).await;
        assert_eq!(
            conditions(&mock),
            [
                c("Accepted", "True", "Valid"),
                c("Attached", "False", "TargetNotFound")
            ]
        );
    }

    #[tokio::test]
    async fn a_redis_policy_on_a_realm_without_redis_is_not_accepted() {
        let policy = policy();
        let mut world = World::default();
        world.objects.insert(POLICY_PATH.into(), policy.clone());
        let mut realm = serde_json::to_value(
            portcullis_crds::parse_manifests(REALM_FULL)
                .unwrap()
                .realms
                .remove(0),
        )
        .unwrap();
        realm["spec"]["replicas"] = 1.into();
        realm["spec"].as_object_mut().unwrap().remove("redis");
        world.objects.insert(REALM_PATH.into(), realm);
        let mock = run(world, &policy).await;
        assert_eq!(
            conditions(&mock),
            [
                c("Accepted", "False", "RedisBackendWithoutRedis"),
                c("Attached", "False", "NotAccepted")
            ]
        );
    }
}
