//! What the auth server pods report about themselves: a server that refuses to start says
//! why in its container's termination message, as JSON `{"reason": ..., "message": ...}`.
//! The realm turns the reasons it knows into conditions (a pure function of the pods).

use k8s_openapi::api::core::v1::{ContainerState, Pod};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde::Deserialize;

use crate::controllers::ReconcileError;
use crate::resources::meta::labels;
use crate::resources::workload::SERVER;

/// The reason an auth server reports when the key material in its secrets dir does not
/// match the fingerprint it recorded in the database at first start: it refuses to serve,
/// because with another pepper or Fernet ring every password and TOTP secret is unusable.
pub const KEYS_MISMATCH: &str = "KeysMismatch";

/// A termination message of the auth server.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ServerReport {
    /// Stable CamelCase reason, e.g. [`KEYS_MISMATCH`].
    pub reason: String,
    /// What the server said.
    #[serde(default)]
    pub message: String,
}

fn report_of(state: Option<&ContainerState>) -> Option<ServerReport> {
    let message = state?.terminated.as_ref()?.message.as_deref()?;
    serde_json::from_str(message.trim()).ok()
}

/// The first report with `reason` among the server containers of `pods` (their current or
/// last termination), with the pod it came from.
pub fn find_report(pods: &[Pod], reason: &str) -> Option<(String, ServerReport)> {
    pods.iter().find_map(|pod| {
        let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
        statuses
            .iter()
            .filter(|s| s.name == SERVER)
            .flat_map(|s| {
                [
                    report_of(s.state.as_ref()),
                    report_of(s.last_state.as_ref()),
                ]
            })
            .flatten()
            .find(|r| r.reason == reason)
            .map(|r| (pod.name_any(), r))
    })
}

/// The realm's server pods.
pub async fn server_pods(
    client: &Client,
    namespace: &str,
    realm: &str,
) -> Result<Vec<Pod>, ReconcileError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = format!(
        "{}={realm},{}={SERVER}",
        labels::INSTANCE,
        labels::COMPONENT
    );
    Ok(api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(ReconcileError::api("list server Pods"))?
        .items)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn pod(last: Option<&str>) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "demo-abc"},
            "status": {"containerStatuses": [{
                "name": "server", "image": "x", "imageID": "", "ready": false, "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 78, "message": last}}
            }]}
        }))
        .unwrap()
    }

    #[test]
    fn a_server_that_refused_its_keys_is_found_by_its_termination_message() {
        let message = r#"{"reason":"KeysMismatch","message":"pepper fingerprint differs"}"#;
        let (name, report) = find_report(&[pod(None), pod(Some(message))], KEYS_MISMATCH).unwrap();
        assert_eq!(name, "demo-abc");
        assert_eq!(report.message, "pepper fingerprint differs");
        assert!(find_report(&[pod(Some("panic: oops"))], KEYS_MISMATCH).is_none());
        assert!(
            find_report(
                &[pod(Some(r#"{"reason":"Other","message":"x"}"#))],
                KEYS_MISMATCH
            )
            .is_none()
        );
    }
}
