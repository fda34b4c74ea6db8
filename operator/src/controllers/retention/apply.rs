//! Apply: start a one-off Job and record that it was started; on deletion, remove what the
//! policy created.

use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use portcullis_crds::RetentionPolicy;

use super::build::RUN_NOW_HANDLED;
use super::fetch::jobs_selector;
use crate::controllers::{ReconcileError, is_not_found};
use crate::resources::retention::cron_job_name;

/// Creates the Job (an existing one of the same name is the same run) and marks the value
/// handled on the policy.
pub async fn start_job(
    client: &Client,
    policy: &RetentionPolicy,
    job: &Job,
    run_now: &str,
) -> Result<(), ReconcileError> {
    let namespace = policy.namespace().ok_or(ReconcileError::NoNamespace)?;
    let jobs: Api<Job> = Api::namespaced(client.clone(), &namespace);
    match jobs.create(&PostParams::default(), job).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(error) => return Err(ReconcileError::api("create retention Job")(error)),
    }
    let policies =
        crate::controllers::tolerant::dynamic_api::<RetentionPolicy>(client, Some(&namespace));
    let patch = serde_json::json!({"metadata": {"annotations": {RUN_NOW_HANDLED: run_now}}});
    policies
        .patch(
            &policy.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(ReconcileError::api("mark run-now handled"))?;
    Ok(())
}

/// Deletes the policy's CronJob and the realm's retention Jobs.
pub async fn cleanup(client: &Client, policy: &RetentionPolicy) -> Result<(), ReconcileError> {
    let namespace = policy.namespace().ok_or(ReconcileError::NoNamespace)?;
    let params = DeleteParams::background();
    let cron_jobs: Api<CronJob> = Api::namespaced(client.clone(), &namespace);
    match cron_jobs
        .delete(&cron_job_name(&policy.name_any()), &params)
        .await
    {
        Ok(_) => {}
        Err(error) if is_not_found(&error) => {}
        Err(error) => return Err(ReconcileError::api("delete retention CronJob")(error)),
    }
    let jobs: Api<Job> = Api::namespaced(client.clone(), &namespace);
    let owned = jobs
        .list(&ListParams::default().labels(&jobs_selector(&policy.spec.target_ref.name)))
        .await
        .map_err(ReconcileError::api("list retention Jobs"))?;
    for job in owned.items {
        let owned_by_policy = job
            .owner_references()
            .iter()
            .any(|r| r.kind == "RetentionPolicy" && r.name == policy.name_any())
            || job
                .owner_references()
                .iter()
                .any(|r| r.kind == "CronJob" && r.name == cron_job_name(&policy.name_any()));
        if !owned_by_policy {
            continue;
        }
        match jobs.delete(&job.name_any(), &params).await {
            Ok(_) => {}
            Err(error) if is_not_found(&error) => {}
            Err(error) => return Err(ReconcileError::api("delete retention Job")(error)),
        }
    }
    Ok(())
}
