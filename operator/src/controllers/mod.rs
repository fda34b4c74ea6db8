//! One controller per kind, each a pipeline of steps in its own modules: fetch (the API) ->
//! validate (pure) -> build (pure) -> apply (the API) -> status (pure computation, one patch).

pub mod apply;
pub mod client;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod rate_limit;
pub mod realm;
pub mod retention;
pub mod run;
pub mod shutdown;
pub mod skeleton;
pub mod tolerant;

#[cfg(test)]
pub(crate) mod mock;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use metrics::Metrics;

/// A source of the current time; tests pass a fixed one.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// What every reconcile gets.
#[derive(Clone)]
pub struct Context {
    /// API client.
    pub client: Client,
    /// Event recorder.
    pub recorder: Recorder,
    /// Reconcile metrics.
    pub metrics: Arc<Metrics>,
    /// The clock.
    pub clock: Clock,
    /// Consecutive failures per object (`kind/namespace/name`), for the backoff.
    pub failures: Arc<std::sync::Mutex<std::collections::HashMap<String, u32>>>,
    /// The one namespace the operator watches (`--namespace`), or `None` for every namespace:
    /// cluster-wide reads (AuthClients of a realm, namespaces) stay within it.
    pub namespace: Option<String>,
}

impl Context {
    /// A context with the wall clock.
    pub fn new(client: Client, metrics: Arc<Metrics>) -> Context {
        Context::with_clock(client, metrics, Arc::new(Timestamp::now))
    }

    /// A context with the given clock.
    pub fn with_clock(client: Client, metrics: Arc<Metrics>, clock: Clock) -> Context {
        let reporter = Reporter {
            controller: apply::FIELD_MANAGER.to_owned(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            clock,
            failures: Arc::default(),
            namespace: None,
        }
    }

    /// The same context, limited to one namespace.
    pub fn within(mut self, namespace: Option<String>) -> Context {
        self.namespace = namespace;
        self
    }

    /// Publishes an Event; a failure to publish is logged, never fatal.
    pub async fn event(
        &self,
        reference: &ObjectReference,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_owned(),
            note: Some(note),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, reference).await {
            tracing::warn!(%error, reason, "cannot publish event");
        }
    }
}

/// What a reconcile can fail with (transient: requeued with backoff).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// An API call failed.
    #[error("{action}: {source}")]
    Api {
        /// What was being done.
        action: String,
        /// The client error.
        #[source]
        source: Box<kube::Error>,
    },
    /// A finalizer step failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// A built object could not be turned into a manifest.
    #[error("manifest: {0}")]
    Manifest(String),
    /// The object has no namespace.
    #[error("object has no namespace")]
    NoNamespace,
    /// A child's name is taken by an object the operator did not create for this owner: it is
    /// neither adopted nor overwritten.
    #[error(
        "{kind} {name} exists and was not created by the operator for this realm: it is neither adopted nor overwritten (rename or remove it)"
    )]
    NameTaken {
        /// Kind of the object.
        kind: String,
        /// Its name.
        name: String,
    },
}

impl ReconcileError {
    /// Wraps a client error with what was being done.
    pub fn api(action: impl Into<String>) -> impl FnOnce(kube::Error) -> ReconcileError {
        let action = action.into();
        move |source| ReconcileError::Api {
            action,
            source: Box::new(source),
        }
    }

    /// Stable reason for conditions, Events and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Api { source, .. } => match source.as_ref() {
                kube::Error::Api(status) if status.code == 409 => "Conflict",
                kube::Error::Api(status) if status.code == 403 => "Forbidden",
                kube::Error::Api(_) => "ApiError",
                _ => "ClientError",
            },
            Self::Finalizer(_) => "FinalizerFailed",
            Self::Manifest(_) => "ManifestFailed",
            Self::NoNamespace => "NoNamespace",
            Self::NameTaken { .. } => "NameTaken",
        }
    }
}

/// Whether an API error is a 404.
pub fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

/// Reads one object by name: `None` when it does not exist, any other failure an error
/// naming what was read.
pub async fn get_opt<K>(api: &kube::Api<K>, name: &str) -> Result<Option<K>, ReconcileError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name)
        .await
        .map_err(ReconcileError::api(format!("get {name}")))
}

impl Context {
    /// Records a failed reconcile of `key` and returns the requeue: 5 s, doubling per
    /// consecutive failure, at most 5 minutes.
    pub fn failed(&self, key: String) -> Action {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let count = failures.entry(key).or_insert(0);
        let action = requeue_after_error(*count);
        *count = count.saturating_add(1);
        action
    }

    /// Forgets the failures of `key` after a successful reconcile.
    pub fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// The key of an object in the failure counts.
pub fn failure_key<K: kube::Resource<DynamicType = ()>>(object: &K) -> String {
    let meta = object.meta();
    format!(
        "{}/{}/{}",
        K::kind(&()),
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// Backoff for transient errors: 5 s doubling per consecutive failure, at most 5 minutes.
pub fn backoff(failures: u32) -> Duration {
    let secs = 5u64.saturating_mul(1u64 << failures.min(6));
    Duration::from_secs(secs.min(300))
}

/// The requeue for a transient failure.
pub fn requeue_after_error(failures: u32) -> Action {
    Action::requeue(backoff(failures))
}

#[cfg(test)]
mod backoff_tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn backoff_doubles_per_consecutive_failure_up_to_five_minutes() {
        let secs: Vec<u64> = (0..8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 80, 160, 300, 300]);
    }

    #[tokio::test]
    async fn a_success_resets_the_backoff() {
        let mock = mock::Mock::start(mock::World::default());
        let ctx = Context::new(mock.client.clone(), Arc::new(metrics::Metrics::default()));
        assert_eq!(
            ctx.failed("a".into()),
            Action::requeue(Duration::from_secs(5))
        );
        assert_eq!(
            ctx.failed("a".into()),
            Action::requeue(Duration::from_secs(10))
        );
        assert_eq!(
            ctx.failed("b".into()),
            Action::requeue(Duration::from_secs(5))
        );
        ctx.succeeded("a");
        assert_eq!(
            ctx.failed("a".into()),
            Action::requeue(Duration::from_secs(5))
        );
    }
}
