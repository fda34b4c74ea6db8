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
    /// When the user was warned of deletion for inactivity.
    #[serde(with = "time::serde::rfc3339::option")]
    pub inactivity_warned_at: Option<OffsetDateTime>,
    /// The privacy policy version last accepted.
    pub policy_version_accepted: Option<String>,
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
    updated_at, last_login_at, inactivity_warned_at, policy_version_accepted \
    FROM users WHERE id = $1";
const FAMILIES: &str = "SELECT f.client_id, f.scope, f.offline, f.created_at, \
    (SELECT max(t.used_at) FROM refresh_tokens t WHERE t.family_id = f.family_id), \
    f.expires_at, f.revoked_at \
    FROM refresh_families f WHERE f.user_id = $1 ORDER BY f.created_at, f.family_id";
const OAUTH_CONSENTS: &str = "SELECT client_id, scopes, granted_at, updated_at \
    FROM oauth_consents WHERE user_id = $1 ORDER BY client_id";
const DEVICES: &str = "SELECT kind, first_seen_at, last_seen_at FROM known_devices \
    WHERE user_id = $1 ORDER BY first_seen_at, kind";
const MFA: &str = "SELECT (SELECT confirmed_at FROM mfa_totp WHERE user_id = $1 \
       AND confirmed_at IS NOT NULL), \
    (SELECT count(*) FROM mfa_recovery_codes WHERE user_id = $1 AND used_at IS NULL)";
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
    let mfa = MfaStatus {
        enrolled: confirmed_at.is_some(),
        confirmed_at,
        recovery_codes_left: mfa.try_get(1)?,
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
        audit_events,
    })
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
