//! Standard `metav1.Condition` helpers shared by the operator's status steps.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// A time as the API server stores it in a status (`metav1.Time`: whole seconds). A status
/// written with sub-second times comes back truncated, so it would never equal the next one
/// computed and every reconcile would write it again.
pub fn api_time(time: Timestamp) -> Time {
    Time(Timestamp::from_second(time.as_second()).unwrap_or(time))
}

/// Condition types used across the three kinds.
pub mod types {
    /// The resource is fully reconciled and serving.
    pub const READY: &str = "Ready";
    /// A rollout or change is in progress.
    pub const PROGRESSING: &str = "Progressing";
    /// Something is wrong but the previous state keeps running.
    pub const DEGRADED: &str = "Degraded";
    /// Referenced and generated Secrets are present.
    pub const SECRETS_READY: &str = "SecretsReady";
    /// The serving certificate is issued and valid.
    pub const CERTIFICATE_READY: &str = "CertificateReady";
    /// ServiceMonitor, PrometheusRule and dashboard are in place (or not wanted).
    pub const MONITORING_READY: &str = "MonitoringReady";
    /// Reconciliation is paused by `spec.paused`.
    pub const PAUSED: &str = "Paused";
    /// A policy's spec is valid.
    pub const ACCEPTED: &str = "Accepted";
    /// A policy is attached to an existing realm.
    pub const ATTACHED: &str = "Attached";
    /// A retention policy's CronJob is in place.
    pub const SCHEDULED: &str = "Scheduled";
}

/// The desired state of one condition, before timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionUpdate<'a> {
    /// Condition type, e.g. [`types::READY`].
    pub type_: &'a str,
    /// Whether the condition holds.
    pub status: bool,
    /// Stable CamelCase reason, also used as Event reason and metric label.
    pub reason: &'a str,
    /// Human-readable detail.
    pub message: String,
}

/// Sets a condition in `conditions`, keeping `lastTransitionTime` when the status did not
/// change (reason and message may still be updated). Returns whether anything changed.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    update: ConditionUpdate<'_>,
    observed_generation: Option<i64>,
    now: &Time,
) -> bool {
    let status = if update.status { "True" } else { "False" };
    let next = |last_transition_time: Time| Condition {
        type_: update.type_.to_owned(),
        status: status.to_owned(),
        reason: update.reason.to_owned(),
        message: update.message.clone(),
        observed_generation,
        last_transition_time,
    };
    match conditions.iter_mut().find(|c| c.type_ == update.type_) {
        Some(existing) => {
            let transition = if existing.status == status {
                existing.last_transition_time.clone()
            } else {
                now.clone()
            };
            let updated = next(transition);
            if *existing == updated {
                return false;
            }
            *existing = updated;
            true
        }
        None => {
            conditions.push(next(now.clone()));
            true
        }
    }
}

/// Finds a condition by type.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of this type is present and `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    fn ready(status: bool, reason: &str) -> ConditionUpdate<'_> {
        ConditionUpdate {
            type_: types::READY,
            status,
            reason,
            message: format!("{reason} happened"),
        }
    }

    #[test]
    fn adds_a_missing_condition_stamped_now() {
        let mut conditions = Vec::new();
        assert!(set_condition(
            &mut conditions,
            ready(false, "Reconciling"),
            Some(1),
            &at(10)
        ));
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].status, "False");
        assert_eq!(conditions[0].last_transition_time, at(10));
        assert_eq!(conditions[0].observed_generation, Some(1));
    }

    #[test]
    fn keeps_transition_time_when_status_is_unchanged() {
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            ready(false, "Reconciling"),
            Some(1),
            &at(10),
        );
        assert!(set_condition(
            &mut conditions,
            ready(false, "SecretMissing"),
            Some(2),
            &at(20)
        ));
        assert_eq!(conditions[0].last_transition_time, at(10));
        assert_eq!(conditions[0].reason, "SecretMissing");
        assert_eq!(conditions[0].observed_generation, Some(2));
    }

    #[test]
    fn stamps_transition_time_when_status_flips() {
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            ready(false, "Reconciling"),
            Some(1),
            &at(10),
        );
        set_condition(&mut conditions, ready(true, "Available"), Some(1), &at(30));
        assert_eq!(conditions[0].last_transition_time, at(30));
        assert!(is_true(&conditions, types::READY));
    }

    #[test]
    fn reports_no_change_for_an_identical_update() {
        let mut conditions = Vec::new();
        set_condition(&mut conditions, ready(true, "Available"), Some(1), &at(10));
        assert!(!set_condition(
            &mut conditions,
            ready(true, "Available"),
            Some(1),
            &at(99)
        ));
        assert_eq!(conditions[0].last_transition_time, at(10));
    }
}
