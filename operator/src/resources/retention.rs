//! The retention CronJob of a RetentionPolicy and the one-off Job its `run-now` annotation
//! starts: the realm's hardened pod running `portcullis-authserver retention run`.

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec, JobTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::Inputs;
use super::config::sha256_hex;
use super::meta::Owner;
use super::workload::{TERMINATION_LOG, config_args, pod_template};

/// Component label of retention pods, CronJobs and Jobs.
pub const RETENTION: &str = "retention";

/// Name of a policy's CronJob.
pub fn cron_job_name(policy: &str) -> String {
    format!("{policy}-retention")
}

/// Name of the Job a `run-now` value starts: one per distinct value.
pub fn run_now_job_name(policy: &str, run_now: &str) -> String {
    let hash = sha256_hex(run_now.as_bytes());
    format!("{policy}-run-{}", &hash[..10])
}

fn job_spec(inputs: &Inputs<'_>) -> JobSpec {
    let mut args = vec!["retention".to_owned(), "run".to_owned()];
    args.extend(config_args());
    // The run's JSON summary goes to the termination message only where the path is given
    // and exists; the operator reads it from the pod's status.
    args.extend(["--termination-log".to_owned(), TERMINATION_LOG.to_owned()]);
    if inputs
        .settings
        .retention
        .as_ref()
        .is_some_and(|r| r.dry_run)
    {
        args.push("--dry-run".to_owned());
    }
    JobSpec {
        backoff_limit: Some(2),
        active_deadline_seconds: Some(3_600),
        ttl_seconds_after_finished: Some(7 * 86_400),
        template: pod_template(inputs, RETENTION, args, Some("Never")),
        ..Default::default()
    }
}

fn job_meta(policy_owner: &Owner, name: String) -> ObjectMeta {
    policy_owner.meta(name, RETENTION)
}

/// The CronJob of the realm's RetentionPolicy, owned by the policy (`policy_owner`).
pub fn cron_job(inputs: &Inputs<'_>, policy_owner: &Owner, policy: &str) -> Option<CronJob> {
    let retention = inputs.settings.retention.as_ref()?;
    Some(CronJob {
        metadata: job_meta(policy_owner, cron_job_name(policy)),
        spec: Some(CronJobSpec {
            schedule: retention.schedule_text.clone(),
            time_zone: Some("Etc/UTC".to_owned()),
            concurrency_policy: Some("Forbid".to_owned()),
            starting_deadline_seconds: Some(3_600),
            successful_jobs_history_limit: Some(3),
            failed_jobs_history_limit: Some(3),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(policy_owner.labels(RETENTION)),
                    ..Default::default()
                }),
                spec: Some(job_spec(inputs)),
            },
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The one-off Job for a `run-now` annotation value.
pub fn run_now_job(
    inputs: &Inputs<'_>,
    policy_owner: &Owner,
    policy: &str,
    run_now: &str,
) -> Option<Job> {
    inputs.settings.retention.as_ref()?;
    Some(Job {
        metadata: job_meta(policy_owner, run_now_job_name(policy, run_now)),
        spec: Some(job_spec(inputs)),
        ..Default::default()
    })
}
