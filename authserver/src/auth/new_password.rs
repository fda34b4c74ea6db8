//! The checks a new password passes (registration, reset, change): the realm's password policy
//! and, when that passes, the breach check with its failure policy.

use super::Violation;
use super::breach::{self, BreachChecker, BreachVerdict};
use super::core::Core;
use super::password;
use crate::metrics::{BreachContext, BreachResult};

/// Every rule `password` (normalised) breaks as the value of `field`; the breach check runs only
/// when the local rules pass, to spare the breach API, and is counted under `context`.
pub(super) async fn violations(
    core: &Core,
    context: BreachContext,
    field: &'static str,
    password: &str,
    email: &str,
    display_name: Option<&str>,
) -> Vec<Violation> {
    let mut inputs = vec![email];
    if let Some((local, _)) = email.split_once('@') {
        inputs.push(local);
    }
    if let Some(name) = display_name {
        inputs.push(name);
    }
    let policy = &core.spec().password_policy;
    let mut violations = password::check(field, password, policy, &inputs);
    if violations.is_empty() {
        let verdict = core.breach.check(password).await;
        // A disabled check answers `Clean` without looking: counting it would report checks
        // that never ran.
        if !matches!(core.breach, BreachChecker::Disabled) {
            let result = match &verdict {
                BreachVerdict::Clean => BreachResult::Clean,
                BreachVerdict::Breached { .. } => BreachResult::Breached,
                BreachVerdict::Unavailable(_) => BreachResult::Error,
            };
            core.metrics.breach_checked(context, result);
        }
        if let BreachVerdict::Unavailable(reason) = &verdict {
            tracing::warn!(reason = %reason, policy = ?policy.breach_check.failure_policy, "breach check unavailable");
        }
        violations.extend(breach::decide(
            field,
            &verdict,
            policy.breach_check.failure_policy,
        ));
    }
    violations
}
