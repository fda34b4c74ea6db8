//! Consent: which policy version a user accepted, each purpose's grant or withdrawal, and the
//! history of every change (when, under which version, from where).
//!
//! The decisions are pure ([`reconsent_needed`], [`check_change`]); the writes check them
//! before they touch the database, so no caller can skip them.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;
use sqlx::{PgExecutor, PgPool, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{PrivacyError, is_foreign_key_violation};

/// A processing purpose of the realm's privacy policy (the `AuthRealm`'s `privacy.purposes`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Purpose {
    /// Machine name, e.g. `analytics`.
    pub name: String,
    /// The account cannot be used without it.
    pub required: bool,
}

/// The realm's current privacy policy, as far as consent needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The current version (`privacy.policyVersion`).
    pub version: String,
    /// Its purposes.
    pub purposes: Vec<Purpose>,
}

/// Where a consent change came from (the `consent_events.source` column).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The registration form or API.
    Registration,
    /// The hosted account page.
    Account,
    /// `PUT /api/v1/me/consents/{purpose}`.
    Api,
    /// The re-consent step of a login after a policy change.
    ConsentPrompt,
    /// An administrator.
    Admin,
}

impl Source {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registration => "registration",
            Self::Account => "account",
            Self::Api => "api",
            Self::ConsentPrompt => "consent_prompt",
            Self::Admin => "admin",
        }
    }

    fn parse(s: &str) -> Result<Self, PrivacyError> {
        Ok(match s {
            "registration" => Self::Registration,
            "account" => Self::Account,
            "api" => Self::Api,
            "consent_prompt" => Self::ConsentPrompt,
            "admin" => Self::Admin,
            _ => return Err(PrivacyError::Malformed { what: "source" }),
        })
    }
}

/// The network a client address belongs to: IPv4 cut to /24, IPv6 to /48. The history keeps
/// this, never the address itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct IpPrefix(String);

impl IpPrefix {
    /// The prefix of `ip` (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn of(ip: IpAddr) -> Self {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match ip {
            IpAddr::V4(v4) => {
                let [a, b, c, _] = v4.octets();
                Self(format!("{a}.{b}.{c}.0/24"))
            }
            IpAddr::V6(v6) => {
                let s = v6.segments();
                Self(format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2]))
            }
        }
    }

    /// The stored form, e.g. `192.0.2.0/24`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A purpose's current answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Consent {
    /// The purpose.
    pub purpose: String,
    /// Granted (true) or withdrawn / refused (false).
    pub granted: bool,
    /// The policy version it was given under.
    pub policy_version: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// One change in the history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConsentEvent {
    /// The purpose.
    pub purpose: String,
    /// Granted or withdrawn.
    pub granted: bool,
    /// The policy version in force.
    pub policy_version: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// From where.
    pub source: Source,
    /// The client's network, when known.
    pub ip_prefix: Option<IpPrefix>,
}

/// One purpose granted or withdrawn by a user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentChange {
    /// The account.
    pub user: Uuid,
    /// The purpose.
    pub purpose: String,
    /// Grant (true) or withdraw (false).
    pub granted: bool,
    /// The policy version the user was shown; must be the current one.
    pub policy_version: String,
    /// From where.
    pub source: Source,
    /// The client's network, when known.
    pub ip_prefix: Option<IpPrefix>,
}

/// Whether a user who accepted `accepted` (`None`: no acceptance on record) must accept the
/// policy again before any token is issued.
pub fn reconsent_needed(accepted: Option<&str>, current: &str) -> bool {
    accepted != Some(current)
}

/// Whether `purpose` may be set to `granted` under `purposes`: it must exist, and a required
/// purpose cannot be withdrawn (the user's way out is deleting the account).
pub fn check_change(
    purposes: &[Purpose],
    purpose: &str,
    granted: bool,
) -> Result<(), PrivacyError> {
    let Some(p) = purposes.iter().find(|p| p.name == purpose) else {
        return Err(PrivacyError::UnknownPurpose {
            purpose: purpose.to_owned(),
        });
    };
    if p.required && !granted {
        return Err(PrivacyError::ConsentRequired {
            purpose: purpose.to_owned(),
        });
    }
    Ok(())
}

/// Whether `choices` may be recorded as the acceptance of `policy` at `version`: the version
/// is the current one, every choice names a purpose, and every required purpose is granted.
/// Optional purposes left out keep their earlier answer.
pub fn check_acceptance(
    policy: &Policy,
    version: &str,
    choices: &BTreeMap<String, bool>,
) -> Result<(), PrivacyError> {
    check_version(policy, version)?;
    for (purpose, granted) in choices {
        check_change(&policy.purposes, purpose, *granted)?;
    }
    if let Some(missing) = policy
        .purposes
        .iter()
        .find(|p| p.required && choices.get(&p.name) != Some(&true))
    {
        return Err(PrivacyError::ConsentRequired {
            purpose: missing.name.clone(),
        });
    }
    Ok(())
}

fn check_version(policy: &Policy, version: &str) -> Result<(), PrivacyError> {
    if version != policy.version {
        return Err(PrivacyError::PolicyVersionMismatch {
            current: policy.version.clone(),
            given: version.to_owned(),
        });
    }
    Ok(())
}

const UPSERT: &str = "INSERT INTO consents (user_id, purpose, granted, policy_version, updated_at) \
    VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, purpose) \
    DO UPDATE SET granted = $3, policy_version = $4, updated_at = $5";
const INSERT_EVENT: &str = "INSERT INTO consent_events \
    (user_id, purpose, granted, policy_version, at, source, ip_prefix) \
    VALUES ($1, $2, $3, $4, $5, $6, $7)";
const SET_ACCEPTED: &str =
    "UPDATE users SET policy_version_accepted = $2, updated_at = $3 WHERE id = $1";
const CURRENT: &str = "SELECT purpose, granted, policy_version, updated_at FROM consents \
    WHERE user_id = $1 ORDER BY purpose";
const HISTORY: &str = "SELECT purpose, granted, policy_version, at, source, ip_prefix \
    FROM consent_events WHERE user_id = $1 ORDER BY at, id";
// Locks the answer too, so two withdrawals of one purpose write in turn.
const STORED_ANSWER: &str =
    "SELECT granted FROM consents WHERE user_id = $1 AND purpose = $2 FOR UPDATE";
const ACCEPTED: &str = "SELECT policy_version_accepted FROM users WHERE id = $1";

/// Records one grant or withdrawal: the current answer and its history row, in one
/// transaction. A grant needs the current policy version and a purpose of it
/// ([`check_change`]). A withdrawal must be as easy as the grant was (GDPR Art. 7(3)): it is
/// never refused for naming an older version (it is recorded under the version in force) nor
/// for a purpose the policy has since dropped, as long as the user has an answer stored for it
/// ([`check_withdrawal`]); only a required purpose of the current policy cannot be withdrawn.
pub async fn record_change(
    pool: &PgPool,
    policy: &Policy,
    change: &ConsentChange,
    now: OffsetDateTime,
) -> Result<Consent, PrivacyError> {
    let mut tx = pool.begin().await?;
    let change = if change.granted {
        check_version(policy, &change.policy_version)?;
        check_change(&policy.purposes, &change.purpose, true)?;
        change.clone()
    } else {
        let stored: Option<bool> = sqlx::query_scalar(STORED_ANSWER)
            .bind(change.user)
            .bind(&change.purpose)
            .fetch_optional(&mut *tx)
            .await?;
        check_withdrawal(&policy.purposes, &change.purpose, stored.is_some())?;
        ConsentChange {
            policy_version: policy.version.clone(),
            ..change.clone()
        }
    };
    write_change(&mut tx, &change, now).await?;
    tx.commit().await?;
    Ok(Consent {
        purpose: change.purpose,
        granted: change.granted,
        policy_version: change.policy_version,
        updated_at: now,
    })
}

/// Whether `purpose` may be withdrawn under `purposes`, `stored` saying whether the user has an
/// answer on record for it: an optional purpose of the policy always, a purpose the policy no
/// longer has when an answer is stored (else it is unknown), a required one never.
pub fn check_withdrawal(
    purposes: &[Purpose],
    purpose: &str,
    stored: bool,
) -> Result<(), PrivacyError> {
    match purposes.iter().find(|p| p.name == purpose) {
        Some(p) if p.required => Err(PrivacyError::ConsentRequired {
            purpose: purpose.to_owned(),
        }),
        Some(_) => Ok(()),
        None if stored => Ok(()),
        None => Err(PrivacyError::UnknownPurpose {
            purpose: purpose.to_owned(),
        }),
    }
}

async fn write_change(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    change: &ConsentChange,
    now: OffsetDateTime,
) -> Result<(), PrivacyError> {
    let unknown_user = |e: sqlx::Error| {
        if is_foreign_key_violation(&e) {
            PrivacyError::UnknownUser(change.user)
        } else {
            e.into()
        }
    };
    sqlx::query(UPSERT)
        .bind(change.user)
        .bind(&change.purpose)
        .bind(change.granted)
        .bind(&change.policy_version)
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(unknown_user)?;
    sqlx::query(INSERT_EVENT)
        .bind(change.user)
        .bind(&change.purpose)
        .bind(change.granted)
        .bind(&change.policy_version)
        .bind(now)
        .bind(change.source.as_str())
        .bind(change.ip_prefix.as_ref().map(IpPrefix::as_str))
        .execute(&mut **tx)
        .await
        .map_err(unknown_user)?;
    Ok(())
}

/// Records the user's acceptance of the current policy (registration, the re-consent step):
/// each choice as a change with its history row, and `version` as the accepted version, in
/// one transaction, after [`check_acceptance`].
#[allow(clippy::too_many_arguments)]
pub async fn accept_policy(
    pool: &PgPool,
    policy: &Policy,
    user: Uuid,
    version: &str,
    choices: &BTreeMap<String, bool>,
    source: Source,
    ip_prefix: Option<IpPrefix>,
    now: OffsetDateTime,
) -> Result<(), PrivacyError> {
    check_acceptance(policy, version, choices)?;
    let mut tx = pool.begin().await?;
    let updated = sqlx::query(SET_ACCEPTED)
        .bind(user)
        .bind(version)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if updated == 0 {
        return Err(PrivacyError::UnknownUser(user));
    }
    for (purpose, granted) in choices {
        let change = ConsentChange {
            user,
            purpose: purpose.clone(),
            granted: *granted,
            policy_version: version.to_owned(),
            source,
            ip_prefix: ip_prefix.clone(),
        };
        write_change(&mut tx, &change, now).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The policy version the user last accepted; `None` when none is on record.
pub async fn accepted_version(pool: &PgPool, user: Uuid) -> Result<Option<String>, PrivacyError> {
    let row = sqlx::query(ACCEPTED)
        .bind(user)
        .fetch_optional(pool)
        .await?
        .ok_or(PrivacyError::UnknownUser(user))?;
    Ok(row.try_get(0)?)
}

/// The user's current answers, by purpose. Reads through `db`: the pool, or a transaction
/// (the export's snapshot).
pub async fn current<'e>(
    db: impl PgExecutor<'e>,
    user: Uuid,
) -> Result<Vec<Consent>, PrivacyError> {
    let rows = sqlx::query(CURRENT).bind(user).fetch_all(db).await?;
    rows.iter()
        .map(|r| {
            Ok(Consent {
                purpose: r.try_get(0)?,
                granted: r.try_get(1)?,
                policy_version: r.try_get(2)?,
                updated_at: r.try_get(3)?,
            })
        })
        .collect()
}

/// Every change the user made, oldest first. Reads through `db`, as [`current`].
pub async fn history<'e>(
    db: impl PgExecutor<'e>,
    user: Uuid,
) -> Result<Vec<ConsentEvent>, PrivacyError> {
    let rows = sqlx::query(HISTORY).bind(user).fetch_all(db).await?;
    rows.iter()
        .map(|r| {
            let source: String = r.try_get(4)?;
            Ok(ConsentEvent {
                purpose: r.try_get(0)?,
                granted: r.try_get(1)?,
                policy_version: r.try_get(2)?,
                at: r.try_get(3)?,
                source: Source::parse(&source)?,
                ip_prefix: r.try_get::<Option<String>, _>(5)?.map(IpPrefix),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn purposes() -> Vec<Purpose> {
        vec![
            Purpose {
                name: "terms".into(),
                required: true,
            },
            Purpose {
                name: "analytics".into(),
                required: false,
            },
        ]
    }

    fn policy() -> Policy {
        Policy {
            version: "2".into(),
            purposes: purposes(),
        }
    }

    #[test]
    fn reconsent_is_needed_when_the_accepted_version_differs_or_is_missing() {
        assert!(!reconsent_needed(Some("2"), "2"));
        assert!(reconsent_needed(Some("1"), "2"));
        assert!(reconsent_needed(None, "2"));
    }

    #[test]
    fn an_optional_purpose_can_be_granted_and_withdrawn() {
        assert!(check_change(&purposes(), "analytics", true).is_ok());
        assert!(check_change(&purposes(), "analytics", false).is_ok());
    }

    #[test]
    fn withdrawing_a_required_purpose_is_refused_with_the_reason() {
        let e = check_change(&purposes(), "terms", false).unwrap_err();
        assert_eq!(e.reason(), "consent_required");
        assert!(e.to_string().contains("delete the account"), "{e}");
        assert!(check_change(&purposes(), "terms", true).is_ok());
    }

    #[test]
    fn a_purpose_dropped_from_the_policy_can_be_withdrawn_when_an_answer_is_stored() {
        assert!(check_withdrawal(&purposes(), "newsletter", true).is_ok());
        let e = check_withdrawal(&purposes(), "newsletter", false).unwrap_err();
        assert_eq!(e.reason(), "unknown_purpose");
    }

    #[test]
    fn a_withdrawal_of_an_optional_purpose_is_allowed_and_of_a_required_one_refused() {
        assert!(check_withdrawal(&purposes(), "analytics", false).is_ok());
        let e = check_withdrawal(&purposes(), "terms", true).unwrap_err();
        assert_eq!(e.reason(), "consent_required");
    }

    #[test]
    fn an_unknown_purpose_is_refused() {
        let e = check_change(&purposes(), "marketing", true).unwrap_err();
        assert!(
            matches!(e, PrivacyError::UnknownPurpose { ref purpose } if purpose == "marketing")
        );
    }

    #[test]
    fn acceptance_needs_every_required_purpose_granted() {
        let only_optional = BTreeMap::from([("analytics".to_string(), true)]);
        let e = check_acceptance(&policy(), "2", &only_optional).unwrap_err();
        assert!(matches!(e, PrivacyError::ConsentRequired { ref purpose } if purpose == "terms"));
        let both = BTreeMap::from([
            ("terms".to_string(), true),
            ("analytics".to_string(), false),
        ]);
        assert!(check_acceptance(&policy(), "2", &both).is_ok());
    }

    #[test]
    fn acceptance_of_another_version_is_refused() {
        let both = BTreeMap::from([("terms".to_string(), true)]);
        let e = check_acceptance(&policy(), "1", &both).unwrap_err();
        assert_eq!(e.reason(), "policy_version_mismatch");
    }

    #[test]
    fn ip_prefixes_keep_only_the_network() {
        let v4: IpAddr = "203.0.113.77".parse().unwrap();
        assert_eq!(IpPrefix::of(v4).as_str(), "203.0.113.0/24");
        let v6: IpAddr = "2001:db8:abcd:12::1".parse().unwrap();
        assert_eq!(IpPrefix::of(v6).as_str(), "2001:db8:abcd::/48");
        let mapped: IpAddr = "::ffff:198.51.100.9".parse().unwrap();
        assert_eq!(IpPrefix::of(mapped).as_str(), "198.51.100.0/24");
    }
}
