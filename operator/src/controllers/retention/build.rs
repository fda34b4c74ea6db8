//! Build: the one-off Job a new `portcullis.dev/run-now` value asks for (pure).

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use portcullis_crds::{AuthRealm, RealmSettings, RetentionPolicy};

use crate::resources::meta::annotations::RUN_NOW;
use crate::resources::{BuildError, Capabilities, Inputs, KeyMaterial, Sources, retention};

/// Annotation recording the last `run-now` value a Job was started for.
pub const RUN_NOW_HANDLED: &str = "portcullis.dev/run-now-handled";

/// The `run-now` value still waiting for its Job, if any.
pub fn pending_run_now(policy: &RetentionPolicy) -> Option<String> {
    let annotations = policy.annotations();
    let wanted = annotations.get(RUN_NOW).filter(|v| !v.is_empty())?;
    (annotations.get(RUN_NOW_HANDLED) != Some(wanted)).then(|| wanted.clone())
}

/// The Job for `run_now`.
pub fn run_now_job(
    policy: &RetentionPolicy,
    realm: &AuthRealm,
    settings: &RealmSettings,
    keys: &KeyMaterial,
    run_now: &str,
) -> Result<Option<Job>, BuildError> {
    let inputs = Inputs::new(Sources {
        realm,
        rate_limit_policies: &[],
        retention_policies: std::slice::from_ref(policy),
        clients: &[],
        settings,
        keys,
        referenced_digest: String::new(),
        tls: None,
        capabilities: Capabilities {
            cert_manager: false,
            prometheus_operator: false,
        },
    })?;
    let owner = crate::resources::Owner {
        reference: crate::resources::meta::controller_reference(policy),
        ..inputs.owner.clone()
    };
    Ok(retention::run_now_job(
        &inputs,
        &owner,
        &policy.name_any(),
        run_now,
    ))
}
