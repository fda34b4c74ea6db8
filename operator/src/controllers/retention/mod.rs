//! The RetentionPolicy controller: fetch -> validate -> build (run-now Job) -> apply ->
//! status; a finalizer removes the CronJob and Jobs. The CronJob itself is built and applied
//! with the realm's other children.

pub mod apply;
pub mod build;
pub mod fetch;
pub mod status;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use portcullis_crds::RetentionPolicy;
use portcullis_crds::conditions::types;

use super::skeleton::{announce, apply_status, finalized, observed};
use super::{Context, ReconcileError};
use validate::Verdict;

/// Finalizer of RetentionPolicies.
pub const FINALIZER: &str = "portcullis.dev/retention-cleanup";
/// Kind label of metrics.
pub const KIND: &str = "RetentionPolicy";

/// Reconciles one RetentionPolicy, recording metrics; its finalizer removes the CronJob and
/// Jobs when it is deleted.
pub async fn reconcile(
    policy: Arc<RetentionPolicy>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let ctx = ctx.as_ref();
    let run = finalized(
        ctx,
        policy.clone(),
        FINALIZER,
        |policy| async move { apply_policy(&policy, ctx).await },
        |policy| async move { apply::cleanup(&ctx.client, &policy).await },
    );
    observed(KIND, policy.as_ref(), ctx, run).await
}

async fn apply_policy(
    policy: &RetentionPolicy,
    ctx: &Context,
) -> Result<(Action, &'static str), ReconcileError> {
    let now = (ctx.clock)();
    let fetched = fetch::fetch(&ctx.client, policy).await?;
    let verdict = validate::validate(policy, fetched.realm.as_ref(), &fetched.policies);
    let reference = policy.object_ref(&());

    if let (Verdict::Accepted(settings), Some(realm), Some(run_now)) = (
        &verdict,
        fetched.realm.as_ref(),
        build::pending_run_now(policy),
    ) {
        match build::run_now_job(policy, realm, settings, &fetched.keys, &run_now) {
            Ok(Some(job)) => {
                apply::start_job(&ctx.client, policy, &job, &run_now).await?;
                ctx.event(
                    &reference,
                    false,
                    "RunStarted",
                    format!("started Job {} for run-now {run_now:?}", job.name_any()),
                )
                .await;
            }
            Ok(None) => {}
            Err(error) => {
                ctx.event(&reference, true, error.reason(), error.to_string())
                    .await;
            }
        }
    }

    let previous = policy.status.as_ref();
    let next = status::next_status(
        previous,
        policy.metadata.generation,
        &verdict,
        &fetched.jobs,
        &fetched.last_pods,
        now,
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
        &[types::ACCEPTED],
        &[],
    )
    .await;
    Ok(match verdict {
        // Follow running Jobs to report the last run.
        Verdict::Accepted(_) => (Action::requeue(Duration::from_secs(300)), "Reconciled"),
        Verdict::Rejected { reason, .. } => (Action::await_change(), reason),
    })
}

#[cfg(test)]
pub(crate) mod tests;
