//! Data export (GDPR Art. 15 and 20): one JSON document with every stored datum about a user.
//!
//! The document is typed: each struct below lists the columns it carries, and none of them is
//! a hash, digest, salt, secret, token or ciphertext (password hash, pepper version, token
//! hashes, device digests, recovery-code digests, the sealed TOTP secret, sealed upstream
//! tokens, audit salts and MACs are never selected). Adding such a field means changing a type
//! here, in review, not slipping a column into a query.

use portcullis_audit::{ActorKind, PageQuery, PgAuditLog};
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::consent::{self, Consent, ConsentEvent};
use crate::error::PrivacyError;

/// The export format's version; raised when a field changes meaning or disappears.
pub const SCHEMA_VERSION: u32 = 1;

/// The tables holding a `user_id` column (and `users` itself), each exported or left out for a
/// stated reason. The tests compare it with the database's catalogue, so a new table about
/// users fails them until someone decides what of it the export carries.
pub const COVERED_TABLES: &[(&str, &str)] = &[
    (
        "users",
        "profile (no password hash, pepper version or credential epoch)",
    ),
    ("consents", "consents"),
    ("consent_events", "consent_history"),
    (
        "refresh_families",
        "refresh_families (refresh_tokens: last use only, never a hash)",
    ),
    ("oauth_consents", "oauth_consents"),
    ("known_devices", "known_devices (never the device digest)"),
    ("mfa_totp", "mfa.totp (never the sealed secret)"),
    ("mfa_recovery_codes", "mfa.recovery_codes (never a digest)"),
    (
        "linked_identities",
        "linked_identities (never the sealed upstream tokens)",
    ),
    ("one_time_tokens", "one_time_tokens (never the token hash)"),
    (
        "notification_outbox",
        "notifications (mail payloads only; never a delivery error)",
    ),
    (
        "erasure_requests",
        "erasure_request (the pending one; a done one holds no user id)",
    ),
];

/// Audit events read per page while exporting.
const AUDIT_PAGE: i64 = 1000;

/// What the export needs from outside PostgreSQL: the sessions the server keeps in Redis.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportExtras {
    /// The user's live sessions.
    pub sessions: Vec<ExportedSession>,
}

/// A live session (from Redis). Its secret is never stored, so it cannot be here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExportedSession {
    /// The session's public id (the one the account page shows and revokes by).
    pub id: String,
    /// Login time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last request seen.
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen_at: OffsetDateTime,
    /// When it ends however active it is.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// Client IP at login.
    pub ip: String,
    /// User agent at login.
    pub user_agent: String,
}

/// Everything stored about one user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExportDocument {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// When the export was made.
    #[serde(with = "time::serde::rfc3339")]
    pub exported_at: OffsetDateTime,
    /// The account.
    pub profile: Profile,
    /// Live sessions.
    pub sessions: Vec<ExportedSession>,
    /// Current answer per purpose.
    pub consents: Vec<Consent>,
    /// Every consent change.
    pub consent_history: Vec<ConsentEvent>,
    /// Refresh-token families (API and OAuth sign-ins), without their tokens.
    pub refresh_families: Vec<RefreshFamily>,
    /// What the user allowed each OAuth client.
    pub oauth_consents: Vec<OAuthConsent>,
    /// Devices the user signed in from: when, never their digests.
    pub known_devices: Vec<KnownDevice>,
    /// The second factor's state.
    pub mfa: MfaStatus,
    /// Identities at upstream providers linked to the account.
    pub linked_identities: Vec<LinkedIdentity>,
    /// Email-verification and password-reset requests, never their tokens.
    pub one_time_tokens: Vec<OneTimeToken>,
    /// Notices about the account (mails to the user, webhook events naming them).
    pub notifications: Vec<Notification>,
    /// The erasure the user (or an administrator) asked for, while pending.
    pub erasure_request: Option<PendingErasure>,
    /// Audit events about the user or by them, oldest first.
    pub audit_events: Vec<AuditEvent>,
}

/// The account row, without its credentials.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Profile {
    /// Account id.
    pub id: Uuid,
    /// Email address as given.
    pub email: String,
    /// Display name.
    pub display_name: Option<String>,
    /// Whether the address was verified.
    pub email_verified: bool,
    /// Whether the account is disabled.
    pub disabled: bool,
    /// Registration time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Last login.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_login_at: Option<OffsetDateTime>,
    /// Last use without a login (a granted refresh), written at most once an hour.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_active_at: Option<OffsetDateTime>,
    /// When the user was warned of deletion for inactivity.
    #[serde(with = "time::serde::rfc3339::option")]
    pub inactivity_warned_at: Option<OffsetDateTime>,
    /// The privacy policy version last accepted.
    pub policy_version_accepted: Option<String>,
    /// Whether the user was told their current password appeared in a known breach.
    pub password_breach_noticed: bool,
}

/// A refresh-token family: who it was for and when it was used, never a token or its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RefreshFamily {
    /// The OAuth client, or none for the realm's own API.
    pub client_id: Option<String>,
    /// What it grants.
    pub scope: String,
    /// Whether it is an `offline_access` grant.
    pub offline: bool,
    /// Sign-in time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last time one of its tokens was exchanged.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    /// Absolute expiry.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// When it was revoked, if it was.
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    /// The sign-in's public session id.
    pub session_id: String,
    /// When the user authenticated for it.
    #[serde(with = "time::serde::rfc3339::option")]
    pub auth_time: Option<OffsetDateTime>,
    /// How (`pwd`, `otp`...).
    pub amr: Vec<String>,
    /// The authentication context class, if any.
    pub acr: Option<String>,
}

/// Scopes allowed to an OAuth client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OAuthConsent {
    /// The client.
    pub client_id: String,
    /// The scopes.
    pub scopes: Vec<String>,
    /// First granted.
    #[serde(with = "time::serde::rfc3339")]
    pub granted_at: OffsetDateTime,
    /// Last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// A device the user signed in from. Its keyed digest identifies it to the server only and is
/// left out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KnownDevice {
    /// `cookie` (a browser) or `fingerprint` (an API client).
    pub kind: String,
    /// First sign-in.
    #[serde(with = "time::serde::rfc3339")]
    pub first_seen_at: OffsetDateTime,
    /// Latest sign-in.
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen_at: OffsetDateTime,
}

/// The TOTP second factor's state, never its secret or the recovery codes' digests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MfaStatus {
    /// A confirmed TOTP enrolment exists.
    pub enrolled: bool,
    /// When it was confirmed.
    #[serde(with = "time::serde::rfc3339::option")]
    pub confirmed_at: Option<OffsetDateTime>,
    /// Recovery codes not yet used.
    pub recovery_codes_left: i64,
    /// The TOTP enrolment, confirmed or still pending.
    pub totp: Option<TotpEnrolment>,
    /// Every recovery code: when made and when used.
    pub recovery_codes: Vec<RecoveryCode>,
}

/// A TOTP enrolment, never its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TotpEnrolment {
    /// Whether it was confirmed (else it is a pending enrolment).
    pub confirmed: bool,
    /// When enrolment started.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it was confirmed.
    #[serde(with = "time::serde::rfc3339::option")]
    pub confirmed_at: Option<OffsetDateTime>,
    /// The start of the last time step a code was accepted for (a sign-in's date).
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
}

/// A recovery code, never its digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecoveryCode {
    /// When it was made.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it was used, if it was.
    #[serde(with = "time::serde::rfc3339::option")]
    pub used_at: Option<OffsetDateTime>,
}

/// An email-verification or password-reset request, never its token or hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OneTimeToken {
    /// `verify_email` or `password_reset`.
    pub purpose: String,
    /// When asked for.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it stops working.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// When it was used, if it was.
    #[serde(with = "time::serde::rfc3339::option")]
    pub used_at: Option<OffsetDateTime>,
}

/// A notice about the account in the outbox. The payload is shown for mails to the user (their
/// own data; the outbox refuses credential keys in payloads); a webhook's body goes to the
/// realm, not to the user, and carries ids only. Delivery errors (the receiver's text) are
/// left out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Notification {
    /// The event (`login.new_device`...).
    pub event: String,
    /// `email` or `webhook`.
    pub channel: String,
    /// The mail's address (cleared once delivered).
    pub recipient: Option<String>,
    /// When enqueued.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// `pending`, `delivered` or `dead` (given up).
    pub state: String,
    /// The mail's data (cleared once delivered); none for a webhook.
    pub payload: Option<serde_json::Value>,
}

/// A pending erasure request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PendingErasure {
    /// Its id.
    pub id: Uuid,
    /// When asked for.
    #[serde(with = "time::serde::rfc3339")]
    pub requested_at: OffsetDateTime,
    /// When the data goes.
    #[serde(with = "time::serde::rfc3339")]
    pub effective_at: OffsetDateTime,
    /// `self` or `admin`.
    pub requested_by: String,
}

/// An upstream identity, never its sealed tokens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LinkedIdentity {
    /// The realm's name for the provider.
    pub provider: String,
    /// The provider's issuer.
    pub issuer: String,
    /// The user's id there.
    pub subject: String,
    /// The upstream email when linked.
    pub email: Option<String>,
    /// When linked.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last sign-in through it.
    #[serde(with = "time::serde::rfc3339")]
    pub last_used_at: OffsetDateTime,
}

/// An audit event about or by the user: what the trail stores in the clear, not its salts,
/// digests or MACs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditEvent {
    /// The event's id.
    pub event_id: Uuid,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    /// What (`login`, `password_changed`...).
    pub event_type: String,
    /// `success` or `failure`.
    pub outcome: String,
    /// Who acted: `user`, `admin`, `client`, `system`, `anonymous`.
    pub actor_kind: String,
    /// The OAuth client involved.
    pub client_id: Option<String>,
    /// Client IP, when the user acted (another actor's address is theirs, not the user's).
    pub ip: Option<String>,
    /// User agent, likewise only when the user acted.
    pub user_agent: Option<String>,
    /// Typed details (codes, counts, flags, identifiers; no free text, no secret).
    pub details: serde_json::Value,
}

const PROFILE: &str = "SELECT id, email, display_name, email_verified, disabled, created_at, \
    updated_at, last_login_at, inactivity_warned_at, policy_version_accepted, last_active_at, \
    breach_noticed_epoch IS NOT NULL AND breach_noticed_epoch = credential_epoch \
    FROM users WHERE id = $1";
const FAMILIES: &str = "SELECT f.client_id, f.scope, f.offline, f.created_at, \
    (SELECT max(t.used_at) FROM refresh_tokens t WHERE t.family_id = f.family_id), \
    f.expires_at, f.revoked_at, f.session_id, f.auth_time, f.amr, f.acr \
    FROM refresh_families f WHERE f.user_id = $1 ORDER BY f.created_at, f.family_id";
const OAUTH_CONSENTS: &str = "SELECT client_id, scopes, granted_at, updated_at \
    FROM oauth_consents WHERE user_id = $1 ORDER BY client_id";
const DEVICES: &str = "SELECT kind, first_seen_at, last_seen_at FROM known_devices \
    WHERE user_id = $1 ORDER BY first_seen_at, kind";
const MFA: &str = "SELECT (SELECT confirmed_at FROM mfa_totp WHERE user_id = $1 \
       AND confirmed_at IS NOT NULL), \
    (SELECT count(*) FROM mfa_recovery_codes WHERE user_id = $1 AND used_at IS NULL)";
const TOTP: &str = "SELECT created_at, confirmed_at, last_used_step, params FROM mfa_totp \
    WHERE user_id = $1";
const RECOVERY_CODES: &str = "SELECT created_at, used_at FROM mfa_recovery_codes \
    WHERE user_id = $1 ORDER BY created_at, used_at NULLS LAST";
const ONE_TIME_TOKENS: &str = "SELECT purpose, created_at, expires_at, used_at \
    FROM one_time_tokens WHERE user_id = $1 ORDER BY created_at, purpose";
const NOTIFICATIONS: &str = "SELECT event, channel, recipient, created_at, \
    CASE WHEN delivered_at IS NOT NULL THEN 'delivered' WHEN dead_at IS NOT NULL THEN 'dead' \
         ELSE 'pending' END, \
    CASE WHEN channel = 'email' THEN payload END \
    FROM notification_outbox WHERE user_id = $1 ORDER BY created_at, id";
const PENDING_ERASURE: &str = "SELECT id, requested_at, effective_at, requested_by \
    FROM erasure_requests WHERE user_id = $1 AND state = 'pending'";
const IDENTITIES: &str = "SELECT provider, issuer, subject, email, created_at, last_used_at \
    FROM linked_identities WHERE user_id = $1 ORDER BY created_at, id";

/// The export of `user` at `now`, with the Redis side in `extras`. Read on one repeatable-read
/// snapshot, so the parts agree with each other.
pub async fn export_user(
    pool: &PgPool,
    audit: &PgAuditLog,
    user: Uuid,
    extras: ExportExtras,
    now: OffsetDateTime,
) -> Result<ExportDocument, PrivacyError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let profile = sqlx::query(PROFILE)
        .bind(user)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(PrivacyError::UnknownUser(user))
        .and_then(|r| profile(&r))?;
    let refresh_families = sqlx::query(FAMILIES)
        .bind(user)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| {
            Ok(RefreshFamily {
                client_id: r.try_get(0)?,
                scope: r.try_get(1)?,
                offline: r.try_get(2)?,
                created_at: r.try_get(3)?,
                last_used_at: r.try_get(4)?,
                expires_at: r.try_get(5)?,
                revoked_at: r.try_get(6)?,
                session_id: r.try_get(7)?,
                auth_time: r.try_get(8)?,
                amr: r.try_get(9)?,
                acr: r.try_get(10)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    let oauth_consents = sqlx::query(OAUTH_CONSENTS)
        .bind(user)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| {
            Ok(OAuthConsent {
                client_id: r.try_get(0)?,
                scopes: r.try_get(1)?,
                granted_at: r.try_get(2)?,
                updated_at: r.try_get(3)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    let known_devices = sqlx::query(DEVICES)
        .bind(user)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| {
            Ok(KnownDevice {
                kind: r.try_get(0)?,
                first_seen_at: r.try_get(1)?,
                last_seen_at: r.try_get(2)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    let mfa = sqlx::query(MFA).bind(user).fetch_one(&mut *tx).await?;
    let confirmed_at: Option<OffsetDateTime> = mfa.try_get(0)?;
    let totp = match sqlx::query(TOTP)
        .bind(user)
        .fetch_optional(&mut *tx)
        .await?
    {
        None => None,
        Some(r) => {
            let confirmed_at: Option<OffsetDateTime> = r.try_get(1)?;
            let step: Option<i64> = r.try_get(2)?;
            let params: String = r.try_get(3)?;
            Some(TotpEnrolment {
                confirmed: confirmed_at.is_some(),
                created_at: r.try_get(0)?,
                confirmed_at,
                last_used_at: step.map(|s| step_start(s, &params)).transpose()?,
            })
        }
    };
    let recovery_codes = sqlx::query(RECOVERY_CODES)
        .bind(user)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| {
            Ok(RecoveryCode {
                created_at: r.try_get(0)?,
                used_at: r.try_get(1)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    let mfa = MfaStatus {
        enrolled: confirmed_at.is_some(),
        confirmed_at,
        recovery_codes_left: mfa.try_get(1)?,
        totp,
        recovery_codes,
    };
    let one_time_tokens = sqlx::query(ONE_TIME_TOKENS)
        .bind(user)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| {
            Ok(OneTimeToken {
                purpose: r.try_get(0)?,
                created_at: r.try_get(1)?,
                expires_at: r.try_get(2)?,
                used_at: r.try_get(3)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    let notifications = sqlx::query(NOTIFICATIONS)
        .bind(user)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| {
            Ok(Notification {
                event: r.try_get(0)?,
                channel: r.try_get(1)?,
                recipient: r.try_get(2)?,
                created_at: r.try_get(3)?,
                state: r.try_get(4)?,
                payload: r.try_get(5)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    let erasure_request = match sqlx::query(PENDING_ERASURE)
        .bind(user)
        .fetch_optional(&mut *tx)
        .await?
    {
        None => None,
        Some(r) => Some(PendingErasure {
            id: r.try_get(0)?,
            requested_at: r.try_get(1)?,
            effective_at: r.try_get(2)?,
            requested_by: r.try_get(3)?,
        }),
    };
    let linked_identities = sqlx::query(IDENTITIES)
        .bind(user)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| {
            Ok(LinkedIdentity {
                provider: r.try_get(0)?,
                issuer: r.try_get(1)?,
                subject: r.try_get(2)?,
                email: r.try_get(3)?,
                created_at: r.try_get(4)?,
                last_used_at: r.try_get(5)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    let consents = consent::current(&mut *tx, user).await?;
    let consent_history = consent::history(&mut *tx, user).await?;
    tx.commit().await?;
    // The audit trail through its own reader, which decodes rows defensively; it is
    // append-only, so reading it after the snapshot only adds events.
    let audit_events = audit_events(audit, user).await?;
    Ok(ExportDocument {
        schema_version: SCHEMA_VERSION,
        exported_at: now,
        profile,
        sessions: extras.sessions,
        consents,
        consent_history,
        refresh_families,
        oauth_consents,
        known_devices,
        mfa,
        linked_identities,
        one_time_tokens,
        notifications,
        erasure_request,
        audit_events,
    })
}

/// The start of TOTP time step `step` under the enrolment's stored parameters
/// (`algorithm:digits:period:skew`, period in seconds).
fn step_start(step: i64, params: &str) -> Result<OffsetDateTime, PrivacyError> {
    let period: i64 = params
        .split(':')
        .nth(2)
        .and_then(|p| p.parse().ok())
        .filter(|p| *p > 0)
        .ok_or(PrivacyError::Malformed { what: "mfa_totp" })?;
    step.checked_mul(period)
        .and_then(|unix| OffsetDateTime::from_unix_timestamp(unix).ok())
        .ok_or(PrivacyError::Malformed { what: "mfa_totp" })
}

fn profile(r: &PgRow) -> Result<Profile, PrivacyError> {
    Ok(Profile {
        id: r.try_get(0)?,
        email: r.try_get(1)?,
        display_name: r.try_get(2)?,
        email_verified: r.try_get(3)?,
        disabled: r.try_get(4)?,
        created_at: r.try_get(5)?,
        updated_at: r.try_get(6)?,
        last_login_at: r.try_get(7)?,
        inactivity_warned_at: r.try_get(8)?,
        policy_version_accepted: r.try_get(9)?,
        last_active_at: r.try_get(10)?,
        password_breach_noticed: r.try_get(11)?,
    })
}

/// Every audit event whose subject, or whose user actor, is `user`, page by page.
async fn audit_events(audit: &PgAuditLog, user: Uuid) -> Result<Vec<AuditEvent>, PrivacyError> {
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let page = audit
            .page(&PageQuery {
                after,
                user_id: Some(user),
                limit: AUDIT_PAGE,
                ..PageQuery::default()
            })
            .await?;
        let Some(last) = page.last() else {
            return Ok(events);
        };
        after = last.seq;
        for row in page {
            // The address and browser are the actor's: the user's own when they acted, an
            // administrator's or another person's otherwise, and those are not theirs to get.
            let own = row.actor_kind == ActorKind::User
                && row.actor_id.as_deref() == Some(user.hyphenated().to_string().as_str());
            let (ip, user_agent) = if own {
                (row.ip, row.user_agent)
            } else {
                (None, None)
            };
            let details =
                serde_json::from_str(&row.details).map_err(|_| PrivacyError::Malformed {
                    what: "audit details",
                })?;
            events.push(AuditEvent {
                event_id: row.event_id,
                occurred_at: row.occurred_at,
                event_type: row.event_type,
                outcome: row.outcome.as_str().to_owned(),
                actor_kind: row.actor_kind.as_str().to_owned(),
                client_id: row.client_id.map(|c| c.as_str().to_owned()),
                ip,
                user_agent,
                details,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_totp_step_is_dated_by_its_enrolments_period() {
        let at = step_start(59_000_000, "SHA1:6:30:1").unwrap();
        assert_eq!(at.unix_timestamp(), 1_770_000_000);
        assert_eq!(
            step_start(5, "SHA256:8:60:0").unwrap().unix_timestamp(),
            300
        );
    }

    #[test]
    fn a_totp_period_that_is_missing_zero_or_not_a_number_is_malformed() {
        for params in ["SHA1:6", "SHA1:6:0:1", "SHA1:6:x:1", ""] {
            let e = step_start(5, params).unwrap_err();
            assert_eq!(e.reason(), "malformed", "{params}");
        }
    }
}
