//! Status: the next status of a RetentionPolicy (pure): acceptance, schedule, last and next
//! run.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use portcullis_crds::conditions::{ConditionUpdate, set_condition, types};
use portcullis_crds::retention::{RetentionPolicyStatus, RetentionRun};

use super::validate::Verdict;

/// The most recent run among the Jobs.
pub fn last_run(jobs: &[Job]) -> Option<RetentionRun> {
    jobs.iter()
        .filter_map(|job| {
            let status = job.status.as_ref()?;
            let started = status.start_time.clone()?;
            let succeeded = status.succeeded.unwrap_or(0) > 0;
            Some(RetentionRun {
                started_at: Some(started),
                finished_at: status.completion_time.clone(),
                succeeded,
                counts: Default::default(),
            })
        })
        .max_by(|a, b| a.started_at.cmp(&b.started_at))
}

/// The next status.
pub fn next_status(
    previous: Option<&RetentionPolicyStatus>,
    generation: Option<i64>,
    verdict: &Verdict,
    jobs: &[Job],
    now: Timestamp,
) -> RetentionPolicyStatus {
    let mut status = previous.cloned().unwrap_or_default();
    let stamp = Time(now);
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
    if let Some(run) = last_run(jobs) {
        status.last_run = Some(run);
    }
    status.observed_generation = generation;
    status
}
