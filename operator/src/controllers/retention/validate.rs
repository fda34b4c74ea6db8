//! Validate: whether this RetentionPolicy is the one in force for its realm (pure).

use kube::ResourceExt;
use portcullis_crds::{AuthRealm, RealmSettings, RetentionPolicy};

/// Reasons that concern the policy itself.
const POLICY_REASONS: [&str; 4] = [
    "InvalidSchedule",
    "ScheduleNeverFires",
    "DurationOrder",
    "WrongNamespace",
];

/// The verdict on one policy.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// In force: the realm's settings with this policy.
    Accepted(Box<RealmSettings>),
    /// Not in force.
    Rejected {
        /// Stable reason.
        reason: &'static str,
        /// Why.
        message: String,
    },
}

/// Judges `policy` given its realm and every policy of the namespace: one RetentionPolicy per
/// realm, the oldest wins.
pub fn validate(
    policy: &RetentionPolicy,
    realm: Option<&AuthRealm>,
    all: &[RetentionPolicy],
) -> Verdict {
    let target = &policy.spec.target_ref.name;
    let Some(realm) = realm else {
        return Verdict::Rejected {
            reason: "TargetNotFound",
            message: format!("AuthRealm {target:?} does not exist"),
        };
    };
    let key = |p: &RetentionPolicy| (p.metadata.creation_timestamp.clone(), p.name_any());
    let first = all
        .iter()
        .filter(|p| &p.spec.target_ref.name == target && p.metadata.deletion_timestamp.is_none())
        .min_by_key(|p| key(p));
    if let Some(first) = first
        && first.name_any() != policy.name_any()
    {
        return Verdict::Rejected {
            reason: "MultipleRetentionPolicies",
            message: format!(
                "RetentionPolicy {:?} already governs realm {target:?}; a realm has one",
                first.name_any()
            ),
        };
    }
    match RealmSettings::derive(realm, &[], std::slice::from_ref(policy), &[]) {
        Ok(settings) => Verdict::Accepted(Box::new(settings)),
        Err(errors) => {
            let own = errors
                .0
                .iter()
                .find(|e| POLICY_REASONS.contains(&e.reason()));
            Verdict::Rejected {
                reason: own.map_or("RealmInvalid", |e| e.reason()),
                message: errors.to_string(),
            }
        }
    }
}
