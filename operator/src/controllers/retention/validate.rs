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

/// What is wrong with `policy` itself, judged with its realm alone (errors of the realm are
/// the realm's to report): `None` when it could be in force.
pub fn own_errors(policy: &RetentionPolicy, realm: &AuthRealm) -> Option<(&'static str, String)> {
    let errors = RealmSettings::derive(realm, &[], std::slice::from_ref(policy), &[]).err()?;
    let own: Vec<_> = errors
        .0
        .iter()
        .filter(|e| POLICY_REASONS.contains(&e.reason()) || e.reason() == "InvalidName")
        .collect();
    let first = own.first()?;
    Some((
        first.reason(),
        own.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "),
    ))
}

/// The RetentionPolicy in force for `realm` among `all`: the oldest one that is acceptable
/// on its own (a bad or deleted policy never keeps a good one out). The realm and the
/// policy controllers both decide with this.
pub fn in_force<'a>(realm: &AuthRealm, all: &'a [RetentionPolicy]) -> Option<&'a RetentionPolicy> {
    let name = realm.name_any();
    let key = |p: &RetentionPolicy| (p.metadata.creation_timestamp.clone(), p.name_any());
    all.iter()
        .filter(|p| p.spec.target_ref.name == name && p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.namespace() == realm.namespace() || p.namespace().is_none())
        .filter(|p| own_errors(p, realm).is_none())
        .min_by_key(|p| key(p))
}

/// Judges `policy` given its realm and every policy of the namespace: one RetentionPolicy per
/// realm, the oldest acceptable one is in force. A policy that is wrong in itself is refused
/// with its own reason and never keeps another out.
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
    if let Some((reason, message)) = own_errors(policy, realm) {
        return Verdict::Rejected { reason, message };
    }
    if let Some(first) = in_force(realm, all)
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
        Err(errors) => Verdict::Rejected {
            reason: "RealmInvalid",
            message: errors.to_string(),
        },
    }
}
