//! Validate: whether a RateLimitPolicy is acceptable on its own and attached to its realm
//! (pure).

use portcullis_crds::{AuthRealm, RateLimitPolicy, RealmSettings};

/// Reasons that concern the policy itself (not its realm).
const POLICY_REASONS: [&str; 5] = [
    "DuplicateRuleName",
    "DuplicateLimitKey",
    "RedisBackendWithoutRedis",
    "ZeroDuration",
    "WrongNamespace",
];

/// The verdict on one policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// `Ok` or the reason and message it is not accepted.
    pub accepted: Result<(), (&'static str, String)>,
    /// `Ok` or the reason and message it is not attached.
    pub attached: Result<(), (&'static str, String)>,
}

/// Judges the policy against its target realm (absent when it does not exist).
pub fn validate(policy: &RateLimitPolicy, realm: Option<&AuthRealm>) -> Verdict {
    let Some(realm) = realm else {
        return Verdict {
            accepted: Ok(()),
            attached: Err((
                "TargetNotFound",
                format!("AuthRealm {:?} does not exist", policy.spec.target_ref.name),
            )),
        };
    };
    let errors = match RealmSettings::derive(realm, std::slice::from_ref(policy), &[], &[]) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.0,
    };
    let own: Vec<_> = errors
        .iter()
        .filter(|e| POLICY_REASONS.contains(&e.reason()))
        .collect();
    let accepted = match own.first() {
        Some(first) => Err((
            first.reason(),
            own.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )),
        None => Ok(()),
    };
    let attached = if accepted.is_err() {
        Err(("NotAccepted", "the policy is not accepted".to_owned()))
    } else if realm.spec.paused {
        Err(("RealmPaused", "the realm is paused".to_owned()))
    } else {
        Ok(())
    };
    Verdict { accepted, attached }
}
