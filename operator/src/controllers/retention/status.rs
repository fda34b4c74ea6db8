//! Status: the next status of a RetentionPolicy (pure): acceptance, schedule, last and next
//! run.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use portcullis_crds::conditions::{ConditionUpdate, set_condition, types};
use portcullis_crds::retention::{RetentionPolicyStatus, RetentionRun};

use super::validate::Verdict;

/// The counts of a run's JSON summary, which `portcullis-authserver retention run` writes
/// to its termination message: `{"counts": {"name": n, ...}}` or a flat object whose integer
/// fields are the counts.
pub fn summary_counts(pods: &[Pod]) -> BTreeMap<String, i64> {
    let message = pods
        .iter()
        .flat_map(|p| p.status.iter())
        .flat_map(|s| s.container_statuses.iter().flatten())
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.message.clone())
        .next();
    let Some(summary) = message.and_then(|m| serde_json::from_str::<serde_json::Value>(&m).ok())
    else {
        return BTreeMap::new();
    };
    let counts = summary.get("counts").unwrap_or(&summary);
    counts
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_i64()?)))
        .collect()
}

/// The most recent run among the Jobs, with the counts from its pods.
pub fn last_run(jobs: &[Job], pods: &[Pod]) -> Option<RetentionRun> {
    jobs.iter()
        .filter_map(|job| {
            let status = job.status.as_ref()?;
            let started = status.start_time.clone()?;
            let succeeded = status.succeeded.unwrap_or(0) > 0;
            Some(RetentionRun {
                started_at: Some(started),
                finished_at: status.completion_time.clone(),
                succeeded,
                counts: BTreeMap::new(),
            })
        })
        .max_by(|a, b| a.started_at.cmp(&b.started_at))
        .map(|run| RetentionRun {
            counts: summary_counts(pods),
            ..run
        })
}

/// The next status.
pub fn next_status(
    previous: Option<&RetentionPolicyStatus>,
    generation: Option<i64>,
    verdict: &Verdict,
    jobs: &[Job],
    pods: &[Pod],
    now: Timestamp,
) -> RetentionPolicyStatus {
    let mut status = previous.cloned().unwrap_or_default();
    let stamp = portcullis_crds::conditions::api_time(now);
    let mut set = |type_: &'static str, ok: bool, reason: &str, message: String| {
        set_condition(
            &mut status.conditions,
            ConditionUpdate {
                type_,
                status: ok,
                reason,
                message,
            },
            generation,
            &stamp,
        );
    };
    match verdict {
        Verdict::Accepted(settings) => {
            let schedule = settings.retention.as_ref().map(|r| &r.schedule);
            set(
                types::ACCEPTED,
                true,
                "Accepted",
                "in force for the realm".to_owned(),
            );
            set(
                types::SCHEDULED,
                true,
                "CronJobScheduled",
                "the realm's retention CronJob runs this policy".to_owned(),
            );
            status.next_run_at = schedule.and_then(|s| s.next_after(now)).map(Time);
        }
        Verdict::Rejected { reason, message } => {
            set(types::ACCEPTED, false, reason, message.clone());
            set(types::SCHEDULED, false, reason, "not scheduled".to_owned());
            status.next_run_at = None;
        }
    }
    if let Some(run) = last_run(jobs, pods) {
        status.last_run = Some(run);
    }
    status.observed_generation = generation;
    status
}
