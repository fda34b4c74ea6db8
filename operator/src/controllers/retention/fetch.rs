//! Fetch: the target realm, every RetentionPolicy of the namespace, the realm's key
//! material and the retention Jobs.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use portcullis_crds::{AuthRealm, RetentionPolicy};

use crate::controllers::{ReconcileError, is_not_found};
use crate::resources::KeyMaterial;
use crate::resources::meta::{labels, names};
use crate::resources::retention::RETENTION;

/// What the retention reconcile read.
#[derive(Clone, Debug)]
pub struct Fetched {
    /// The target realm.
    pub realm: Option<AuthRealm>,
    /// Every RetentionPolicy in the namespace.
    pub policies: Vec<RetentionPolicy>,
    /// The realm's key material (for the Job's pod template).
    pub keys: KeyMaterial,
    /// The realm's retention Jobs (scheduled and one-off).
    pub jobs: Vec<Job>,
    /// The pods of the most recently started Job (their termination message is the run's
    /// JSON summary).
    pub last_pods: Vec<Pod>,
}

/// Selector of a realm's retention Jobs.
pub fn jobs_selector(realm: &str) -> String {
    format!(
        "{}={realm},{}={RETENTION}",
        labels::INSTANCE,
        labels::COMPONENT
    )
}

/// Reads what the retention reconcile needs.
pub async fn fetch(client: &Client, policy: &RetentionPolicy) -> Result<Fetched, ReconcileError> {
    let namespace = policy.namespace().ok_or(ReconcileError::NoNamespace)?;
    let target = &policy.spec.target_ref.name;
    let realm: Option<AuthRealm> =
        crate::controllers::tolerant::get_opt(client, &namespace, target).await?;
    let policies: Vec<RetentionPolicy> =
        crate::controllers::tolerant::list(client, Some(&namespace)).await?;
    if realm.is_none() {
        return Ok(Fetched {
            realm,
            policies,
            keys: KeyMaterial::default(),
            jobs: Vec::new(),
            last_pods: Vec::new(),
        });
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let keys = match secrets.get(&names::keys(target)).await {
        Ok(secret) => KeyMaterial::from_secret(secret),
        Err(error) if is_not_found(&error) => KeyMaterial::default(),
        Err(error) => return Err(ReconcileError::api("get keys Secret")(error)),
    };
    let jobs: Api<Job> = Api::namespaced(client.clone(), &namespace);
    let jobs = jobs
        .list(&ListParams::default().labels(&jobs_selector(target)))
        .await
        .map_err(ReconcileError::api("list retention Jobs"))?
        .items;
    let newest = jobs
        .iter()
        .filter(|j| j.status.as_ref().is_some_and(|s| s.start_time.is_some()))
        .max_by(|a, b| {
            let start = |j: &Job| j.status.as_ref().and_then(|s| s.start_time.clone());
            start(a).cmp(&start(b))
        });
    let last_pods = match newest {
        Some(job) => {
            let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
            pods.list(&ListParams::default().labels(&format!("job-name={}", job.name_any())))
                .await
                .map_err(ReconcileError::api("list retention Job pods"))?
                .items
        }
        None => Vec::new(),
    };
    Ok(Fetched {
        realm,
        policies,
        keys,
        jobs,
        last_pods,
    })
}
