//! The checks a new password passes (registration, reset, change): the realm's password policy
//! and, when that passes, the breach check with its failure policy.

use super::Violation;
use super::breach::{self, BreachVerdict};
use super::core::Core;
use super::password;

/// Every rule `password` (normalised) breaks as the value of `field`; the breach check runs only
/// when the local rules pass, to spare the breach API.
pub(super) async fn violations(
    core: &Core,
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
        if let BreachVerdict::Unavailable(reason) = &verdict {
            core.metrics.breach_check_failures.inc();
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
