//! Status: the next status of a RateLimitPolicy (pure).

use k8s_openapi::jiff::Timestamp;
use portcullis_crds::conditions::{ConditionUpdate, set_condition, types};
use portcullis_crds::rate_limit::RateLimitPolicyStatus;

use super::validate::Verdict;

/// The next status from the verdict.
pub fn next_status(
    previous: Option<&RateLimitPolicyStatus>,
    generation: Option<i64>,
    target: &str,
    verdict: &Verdict,
    now: Timestamp,
) -> RateLimitPolicyStatus {
    let mut status = previous.cloned().unwrap_or_default();
    let now = portcullis_crds::conditions::api_time(now);
    for (type_, result, ok_reason, ok_message) in [
        (
            types::ACCEPTED,
            &verdict.accepted,
            "Valid",
            "the rules are valid",
        ),
        (
            types::ATTACHED,
            &verdict.attached,
            "Attached",
            "merged into the realm's configuration",
        ),
    ] {
        let update = match result {
            Ok(()) => ConditionUpdate {
                type_,
                status: true,
                reason: ok_reason,
                message: ok_message.to_owned(),
            },
            Err((reason, message)) => ConditionUpdate {
                type_,
                status: false,
                reason,
                message: message.clone(),
            },
        };
        set_condition(&mut status.conditions, update, generation, &now);
    }
    status.observed_generation = generation;
    status.target_realm = Some(target.to_owned());
    status
}
