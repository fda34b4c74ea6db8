//! The right to be forgotten (GDPR Art. 17).
//!
//! [`request`] records the request and, at once, disables the account, raises its credential
//! epoch (every session and token of an older epoch dies at its next use), revokes its
//! refresh-token families and drops its OAuth consents. After the grace period [`execute`]
//! erases, in steps that are each idempotent and run in order, so a crash after any of them
//! completes at the next call:
//!
//! 1. [`erase_kv`]: the user's keys outside PostgreSQL (the server's Redis: sessions, device,
//!    lockout and rate buckets), through the [`KvEraser`] the server implements (again after
//!    step 3, see [`execute`]);
//! 2. [`pseudonymize_audit`]: the audit trail's rows about or by the user are pseudonymised
//!    under the erasure id, batch by batch (the chain still verifies);
//! 3. [`finish`]: one transaction, holding the audit chain's head lock and checking that no
//!    event naming the user arrived since step 2 (else back to step 2), deletes the account row (its consents, consent history, MFA,
//!    devices, linked identities, tokens and pending notices go with it by cascade) and turns
//!    the request into the receipt: state `done`, `user_id` NULL, the categories erased. A
//!    [`FinishHook`] may write in that transaction (the `account.erased` notice), so its write
//!    commits or rolls back with the deletion.
//!
//! What stays, deliberately: the receipt (erasure id, times, who asked, categories; no
//! personal data), kept without a retention rule as the proof the erasure was done; and the
//! audit trail's pseudonymised rows, whose pseudonym is the erasure id. Whoever holds the
//! mapping user id → erasure id (an administrator's API answer) can link that history again:
//! this is pseudonymisation, not anonymisation. An `account.erased` mail enqueued by a
//! [`FinishHook`] holds the erased address until the outbox delivers it and clears it.
//!
//! Every step takes the request, reads it back and acts on the account *stored* in it, and
//! only once it is pending and due: a caller cannot point a step at another account or run it
//! early. Steps 1 and 2 need the account row, so once step 3 has run nothing is left for them.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use portcullis_audit::{PgAuditLog, RecordMeta};
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::PrivacyError;

/// What an erasure removes, as recorded in its receipt.
pub const CATEGORIES: &[&str] = &[
    "profile",
    "credentials",
    "sessions",
    "refresh_tokens",
    "one_time_tokens",
    "consents",
    "consent_history",
    "oauth_consents",
    "mfa",
    "known_devices",
    "linked_identities",
    "pending_notifications",
    "rate_limit_and_lockout_counters",
    "audit_personal_fields",
];

/// Who asked for the erasure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum RequestedBy {
    /// The user (`DELETE /api/v1/me`, the account page).
    #[serde(rename = "self")]
    User,
    /// An administrator (`POST /admin/v1/users/{id}/erase`).
    #[serde(rename = "admin")]
    Admin,
}

impl RequestedBy {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "self",
            Self::Admin => "admin",
        }
    }

    fn parse(s: &str) -> Result<Self, PrivacyError> {
        match s {
            "self" => Ok(Self::User),
            "admin" => Ok(Self::Admin),
            _ => Err(PrivacyError::Malformed {
                what: "requested_by",
            }),
        }
    }
}

/// An erasure request; once done, its receipt (no personal data: `user_id` is `None`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ErasureRequest {
    /// The erasure id: the pseudonym in the audit trail and the receipt's key.
    pub id: Uuid,
    /// The account, while pending.
    pub user_id: Option<Uuid>,
    /// When it was asked for.
    #[serde(with = "time::serde::rfc3339")]
    pub requested_at: OffsetDateTime,
    /// When the data goes (requested_at + the realm's grace period).
    #[serde(with = "time::serde::rfc3339")]
    pub effective_at: OffsetDateTime,
    /// Who asked.
    pub requested_by: RequestedBy,
    /// Whether it is done.
    pub done: bool,
    /// What was erased (empty while pending).
    pub categories: Vec<String>,
    /// When it was done.
    #[serde(with = "time::serde::rfc3339::option")]
    pub completed_at: Option<OffsetDateTime>,
}

/// Whom the key-value side must forget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvSubject<'a> {
    /// The account.
    pub user_id: Uuid,
    /// Its canonical email (lockout and rate buckets are keyed by a digest of it); `None` when
    /// the account row is already gone (deleted outside this crate during the grace period),
    /// so the keys named by the user id (sessions and their index, device cookies) still go.
    pub email_canonical: Option<&'a str>,
}

/// The future a [`KvEraser`] returns.
pub type KvFuture<'a> =
    Pin<Box<dyn Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>> + Send + 'a>>;

/// Erases a user's keys outside PostgreSQL. The server implements it over Redis (sessions and
/// their index, device cookies, lockout and rate buckets). Must be idempotent: a resumed
/// erasure calls it again.
pub trait KvEraser: Send + Sync {
    /// Deletes every key of `subject`.
    fn erase<'a>(&'a self, subject: KvSubject<'a>) -> KvFuture<'a>;
}

/// The account [`finish`] is about to delete, as a [`FinishHook`] sees it (read under the
/// account's row lock, in the deletion's transaction).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErasedAccount<'a> {
    /// The erasure id (the receipt's key).
    pub erasure_id: Uuid,
    /// The account being deleted.
    pub user_id: Uuid,
    /// Its email address as given (the `account.erased` mail goes there).
    pub email: &'a str,
    /// Who asked for the erasure.
    pub requested_by: RequestedBy,
}

/// The future a [`FinishHook`] returns.
pub type HookFuture<'a> =
    Pin<Box<dyn Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>> + Send + 'a>>;

/// A write that must commit exactly when the account's deletion does: the server enqueues
/// the `account.erased` notice (webhook and mail to the address being erased) in the outbox.
/// It runs in [`finish`]'s transaction, before the account row is deleted, so it must not
/// insert rows that reference the account (they would go with it by cascade). An error rolls
/// the whole step back and the erasure stays pending.
pub trait FinishHook: Send + Sync {
    /// Writes through `conn` (the open transaction).
    fn run<'a>(&'a self, conn: &'a mut PgConnection, account: ErasedAccount<'a>) -> HookFuture<'a>;
}

// Every statement reading requests selects these columns in this order (see `decode`).
const BY_ID: &str = "SELECT id, user_id, requested_at, effective_at, requested_by, state, \
    categories, completed_at FROM erasure_requests WHERE id = $1";
const PENDING_OF_USER: &str = "SELECT id, user_id, requested_at, effective_at, requested_by, \
    state, categories, completed_at FROM erasure_requests WHERE user_id = $1 AND state = 'pending'";
const LOCK_USER: &str = "SELECT id FROM users WHERE id = $1 FOR UPDATE";
const INSERT: &str = "INSERT INTO erasure_requests \
    (id, user_id, requested_at, effective_at, requested_by, state) \
    VALUES ($1, $2, $3, $4, $5, 'pending')";
const DISABLE: &str = "UPDATE users SET disabled = true, \
    credential_epoch = credential_epoch + 1, updated_at = $2 WHERE id = $1";
const REVOKE_FAMILIES: &str =
    "UPDATE refresh_families SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL";
const DROP_OAUTH_CONSENTS: &str = "DELETE FROM oauth_consents WHERE user_id = $1";
const EMAIL: &str = "SELECT email_canonical FROM users WHERE id = $1";
const LOCK_REQUEST: &str = "SELECT id, user_id, requested_at, effective_at, requested_by, \
    state, categories, completed_at FROM erasure_requests WHERE id = $1 FOR UPDATE";
const LOCK_ACCOUNT_EMAIL: &str = "SELECT email FROM users WHERE id = $1 FOR UPDATE";
const FINISH_TX: &str =
    "SET TRANSACTION ISOLATION LEVEL READ COMMITTED; SET LOCAL lock_timeout = '2s'";
// The audit crate's appenders serialise on this row (0006_audit.sql).
const LOCK_AUDIT_HEAD: &str = "SELECT seq FROM audit_chain_head WHERE id = 1 FOR UPDATE";
// The audit crate's own test for "rows naming the user" (its `pseudonymize_user`).
const AUDIT_NAMES_USER: &str = "SELECT EXISTS (SELECT 1 FROM audit_events \
    WHERE subject_id = $1 OR (actor_kind = 'user' AND actor_id = $1::text))";
const BRING_FORWARD: &str = "UPDATE erasure_requests SET effective_at = $2 \
    WHERE id = $1 AND state = 'pending'";
const DELETE_USER: &str = "DELETE FROM users WHERE id = $1";
const MARK_DONE: &str = "UPDATE erasure_requests SET state = 'done', user_id = NULL, \
    categories = $2, completed_at = $3 WHERE id = $1 AND state = 'pending' AND user_id = $4";

/// What [`request`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requested {
    /// The pending request (new, or the one already pending).
    pub request: ErasureRequest,
    /// Whether this call created it (else a request was already pending).
    pub created: bool,
}

/// Records an erasure request for `user`, effective after `grace`, and ends the account's
/// access at once (disabled, credential epoch raised, refresh families revoked, OAuth consents
/// dropped), in one transaction. Idempotent: while a request is pending, asking again returns
/// it (`created` false), brought forward when this call's grace ends earlier (an
/// administrator's immediate erasure of an account whose user asked with 30 days' grace), and
/// never postponed.
pub async fn request(
    pool: &PgPool,
    user: Uuid,
    requested_by: RequestedBy,
    grace: Duration,
    now: OffsetDateTime,
) -> Result<Requested, PrivacyError> {
    let effective_at = time::Duration::try_from(grace)
        .ok()
        .and_then(|g| now.checked_add(g))
        .ok_or(PrivacyError::Invalid {
            what: "grace period",
            why: "it reaches past the calendar",
        })?;
    let mut tx = pool.begin().await?;
    // The account's lock serialises two requests for it (two tabs, a user and an admin).
    sqlx::query(LOCK_USER)
        .bind(user)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(PrivacyError::UnknownUser(user))?;
    let pending = sqlx::query(PENDING_OF_USER)
        .bind(user)
        .fetch_optional(&mut *tx)
        .await?;
    if let Some(row) = pending {
        let mut existing = decode(&row)?;
        if effective_at < existing.effective_at {
            sqlx::query(BRING_FORWARD)
                .bind(existing.id)
                .bind(effective_at)
                .execute(&mut *tx)
                .await?;
            existing.effective_at = effective_at;
        }
        tx.commit().await?;
        return Ok(Requested {
            request: existing,
            created: false,
        });
    }
    let id = Uuid::new_v4();
    sqlx::query(INSERT)
        .bind(id)
        .bind(user)
        .bind(now)
        .bind(effective_at)
        .bind(requested_by.as_str())
        .execute(&mut *tx)
        .await?;
    sqlx::query(DISABLE)
        .bind(user)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    sqlx::query(REVOKE_FAMILIES)
        .bind(user)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    sqlx::query(DROP_OAUTH_CONSENTS)
        .bind(user)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Requested {
        request: ErasureRequest {
            id,
            user_id: Some(user),
            requested_at: now,
            effective_at,
            requested_by,
            done: false,
            categories: Vec::new(),
            completed_at: None,
        },
        created: true,
    })
}

/// The request (or receipt) `id`.
pub async fn get(pool: &PgPool, id: Uuid) -> Result<ErasureRequest, PrivacyError> {
    let row = sqlx::query(BY_ID)
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or(PrivacyError::UnknownErasure(id))?;
    decode(&row)
}

/// Pending requests whose grace period is over at `now`, oldest first, at most `limit`.
pub async fn due(
    pool: &PgPool,
    now: OffsetDateTime,
    limit: i64,
) -> Result<Vec<ErasureRequest>, PrivacyError> {
    let rows = sqlx::query(DUE)
        .bind(now)
        .bind(limit.max(1))
        .fetch_all(pool)
        .await?;
    rows.iter().map(decode).collect()
}

const DUE: &str = "SELECT id, user_id, requested_at, effective_at, requested_by, state, \
    categories, completed_at FROM erasure_requests \
    WHERE state = 'pending' AND effective_at <= $1 ORDER BY effective_at, id LIMIT $2";

/// Runs every remaining step of `request` (see the module doc) and returns its receipt. Once
/// done, calling it again returns the receipt. Refused before the request is due.
///
/// The key-value side is erased twice: before the audit step and again once the account is
/// gone, so a session a racing login stored in between (it had checked the password before the
/// request disabled the account) does not outlive the erasure. If that second pass fails the
/// erasure is done all the same (the receipt exists) and `KvErase` is returned, so the caller
/// reports it; the keys left then live until their TTL.
pub async fn execute(
    pool: &PgPool,
    audit: &PgAuditLog,
    request: &ErasureRequest,
    kv: &dyn KvEraser,
    hook: Option<&dyn FinishHook>,
    now: OffsetDateTime,
) -> Result<ErasureRequest, PrivacyError> {
    let Some((current, user)) = due_request(pool, request.id, now).await? else {
        return get(pool, request.id).await;
    };
    let email = erase_kv_of(pool, user, kv).await?;
    // An event about the user appended between steps 2 and 3 (a login attempt on the disabled
    // account) sends us back to step 2; a few rounds, then the next run tries again.
    for _ in 0..FINISH_ATTEMPTS {
        pseudonymize_of(audit, user, current.id, now).await?;
        if let Some(receipt) = finish(pool, &current, now, hook).await? {
            kv.erase(KvSubject {
                user_id: user,
                email_canonical: email.as_deref(),
            })
            .await
            .map_err(|e| PrivacyError::KvErase(e.to_string()))?;
            return Ok(receipt);
        }
    }
    Err(PrivacyError::Busy {
        what: "new audit events about the user keep arriving",
    })
}

/// Rounds of steps 2 and 3 in one [`execute`].
const FINISH_ATTEMPTS: usize = 3;

/// The stored request `id` and its account, when it is pending and due at `now`; `None` once
/// it is done. Refused while its grace period runs.
async fn due_request(
    pool: &PgPool,
    id: Uuid,
    now: OffsetDateTime,
) -> Result<Option<(ErasureRequest, Uuid)>, PrivacyError> {
    let stored = get(pool, id).await?;
    checked(stored, now)
}

/// Whether the stored request is one to act on (see [`due_request`]).
fn checked(
    stored: ErasureRequest,
    now: OffsetDateTime,
) -> Result<Option<(ErasureRequest, Uuid)>, PrivacyError> {
    let Some(user) = stored.user_id.filter(|_| !stored.done) else {
        return Ok(None);
    };
    if stored.effective_at > now {
        return Err(PrivacyError::Invalid {
            what: "erasure",
            why: "its grace period is not over",
        });
    }
    Ok(Some((stored, user)))
}

/// Step 1: the keys outside PostgreSQL of the account stored in `request`. Nothing to do once
/// the request is done (step 3 ran, so this one had); refused before it is due.
pub async fn erase_kv(
    pool: &PgPool,
    request: &ErasureRequest,
    kv: &dyn KvEraser,
    now: OffsetDateTime,
) -> Result<(), PrivacyError> {
    if let Some((_, user)) = due_request(pool, request.id, now).await? {
        erase_kv_of(pool, user, kv).await?;
    }
    Ok(())
}

/// Step 1 for `user`; returns the canonical email it erased by (`None`: no account row left,
/// and only the keys named by the id are erased).
async fn erase_kv_of(
    pool: &PgPool,
    user: Uuid,
    kv: &dyn KvEraser,
) -> Result<Option<String>, PrivacyError> {
    let email: Option<String> = sqlx::query_scalar(EMAIL)
        .bind(user)
        .fetch_optional(pool)
        .await?;
    kv.erase(KvSubject {
        user_id: user,
        email_canonical: email.as_deref(),
    })
    .await
    .map_err(|e| PrivacyError::KvErase(e.to_string()))?;
    Ok(email)
}

/// Step 2: pseudonymises every audit row naming the account stored in `request` under the
/// erasure id, batch by batch until none is left. Returns the rows changed (0 once done);
/// refused before the request is due.
pub async fn pseudonymize_audit(
    pool: &PgPool,
    audit: &PgAuditLog,
    request: &ErasureRequest,
    now: OffsetDateTime,
) -> Result<usize, PrivacyError> {
    match due_request(pool, request.id, now).await? {
        Some((stored, user)) => pseudonymize_of(audit, user, stored.id, now).await,
        None => Ok(0),
    }
}

async fn pseudonymize_of(
    audit: &PgAuditLog,
    user: Uuid,
    erasure_id: Uuid,
    now: OffsetDateTime,
) -> Result<usize, PrivacyError> {
    let mut changed = 0;
    loop {
        let meta = RecordMeta {
            event_id: Uuid::new_v4(),
            occurred_at: now,
        };
        let done = audit.pseudonymize_user(user, erasure_id, meta).await?;
        if done.seqs.is_empty() {
            return Ok(changed);
        }
        changed += done.seqs.len();
    }
}

/// Step 3: deletes the account stored in `request` (the rest goes by cascade) and turns the
/// request into its receipt, in one transaction, so there is no state between the two; `hook`
/// writes in that transaction. `None` (nothing changed) when an audit event naming the user
/// was appended after step 2: run it again. The request is read back under its row lock: a
/// done one returns its receipt and deletes nothing, one still in its grace period is refused.
///
/// The transaction holds the audit chain's head lock, on which every appender waits, so no
/// such event can land between the check and the deletion (with a lock timeout, as appenders
/// have: a stuck holder fails this run, not the realm).
pub async fn finish(
    pool: &PgPool,
    request: &ErasureRequest,
    now: OffsetDateTime,
    hook: Option<&dyn FinishHook>,
) -> Result<Option<ErasureRequest>, PrivacyError> {
    let categories = serde_json::Value::from(CATEGORIES.to_vec());
    let mut tx = pool.begin().await?;
    sqlx::raw_sql(FINISH_TX).execute(&mut *tx).await?;
    let row = sqlx::query(LOCK_REQUEST)
        .bind(request.id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(PrivacyError::UnknownErasure(request.id))?;
    let stored = decode(&row)?;
    let Some((stored, user)) = checked(stored, now)? else {
        tx.commit().await?;
        return get(pool, request.id).await.map(Some);
    };
    sqlx::query(LOCK_AUDIT_HEAD).execute(&mut *tx).await?;
    let named: bool = sqlx::query_scalar(AUDIT_NAMES_USER)
        .bind(user)
        .fetch_one(&mut *tx)
        .await?;
    if named {
        return Ok(None);
    }
    let email: Option<String> = sqlx::query_scalar(LOCK_ACCOUNT_EMAIL)
        .bind(user)
        .fetch_optional(&mut *tx)
        .await?;
    if let (Some(hook), Some(email)) = (hook, email.as_deref()) {
        let account = ErasedAccount {
            erasure_id: stored.id,
            user_id: user,
            email,
            requested_by: stored.requested_by,
        };
        hook.run(&mut tx, account)
            .await
            .map_err(|e| PrivacyError::Hook(e.to_string()))?;
    }
    sqlx::query(DELETE_USER)
        .bind(user)
        .execute(&mut *tx)
        .await?;
    sqlx::query(MARK_DONE)
        .bind(stored.id)
        .bind(categories)
        .bind(now)
        .bind(user)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    get(pool, request.id).await.map(Some)
}

fn decode(row: &PgRow) -> Result<ErasureRequest, PrivacyError> {
    let requested_by: String = row.try_get(4)?;
    let state: String = row.try_get(5)?;
    let categories: Option<serde_json::Value> = row.try_get(6)?;
    let categories = match categories {
        None => Vec::new(),
        Some(v) => {
            serde_json::from_value(v).map_err(|_| PrivacyError::Malformed { what: "categories" })?
        }
    };
    Ok(ErasureRequest {
        id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        requested_at: row.try_get(2)?,
        effective_at: row.try_get(3)?,
        requested_by: RequestedBy::parse(&requested_by)?,
        done: match state.as_str() {
            "pending" => false,
            "done" => true,
            _ => return Err(PrivacyError::Malformed { what: "state" }),
        },
        categories,
        completed_at: row.try_get(7)?,
    })
}
