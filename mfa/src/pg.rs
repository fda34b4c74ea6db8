//! The PostgreSQL store of the second factor, over `authserver/migrations/0010_mfa.sql`: TOTP
//! enrolments (secret sealed at rest, their own params, the last used step) and recovery codes.
//!
//! Every decision that must hold across replicas is one conditional statement, so two replicas
//! racing on the same user cannot both win:
//! - a TOTP step is accepted by `UPDATE ... WHERE enrolment = $read AND last_used_step <
//!   $matched` (the [`accept`] rule, in SQL), one row affected or the code is a replay;
//! - a recovery code is spent by `UPDATE ... WHERE used_at IS NULL RETURNING`;
//! - a re-encrypted secret is written by `UPDATE ... WHERE secret = $old`, so a re-enrolment or
//!   a second re-encryption run meanwhile is never overwritten.
//!
//! What this does not stop: anyone who can write to the database can delete a user's rows
//! (switching MFA off) or restore older ones from a backup (a removed authenticator, or spent
//! recovery codes, work again); the sealing binds a secret to its user, not to a moment. After
//! a restore, users with MFA changes since the backup must re-enrol and regenerate codes; the
//! audit trail says who.
//!
//! Time is passed in; the store reads no clock of its own. With
//! [`PgMfaStore::with_max_clock_difference`], `verify` compares the time it is given with the
//! database's clock, which all replicas share, and refuses a replica whose clock is off.

use std::sync::Arc;

use portcullis_sealed::{Binding, KeyRing, Purpose, SealedError};
use sqlx::postgres::PgPool;
use sqlx::{Postgres, Row, Transaction};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::recovery::{RecoveryCode, RecoveryCodeHash, RecoveryKeyRing};
use crate::totp::{TimeStep, TotpParams, TotpSecret, accept, verify};

/// A new pending enrolment, replacing a pending one; a confirmed one is left alone (0 rows).
const BEGIN: &str = "INSERT INTO mfa_totp (user_id, secret, secret_key_id, params, created_at) \
    VALUES ($1, $2, $3, $4, $5) \
    ON CONFLICT (user_id) DO UPDATE SET secret = EXCLUDED.secret, \
      secret_key_id = EXCLUDED.secret_key_id, params = EXCLUDED.params, \
      created_at = EXCLUDED.created_at, last_used_step = NULL, \
      enrolment = nextval('mfa_totp_enrolment_seq') \
    WHERE mfa_totp.confirmed_at IS NULL \
    RETURNING enrolment";
/// `fresh`: created at or after `$2` (always true without a cut-off). `db_now`: the database's
/// clock, shared by every replica, in Unix seconds.
const READ_ENROLMENT: &str = "SELECT enrolment, secret, params, last_used_step, \
    confirmed_at IS NOT NULL AS confirmed, \
    ($2::timestamptz IS NULL OR created_at >= $2) AS fresh, \
    extract(epoch FROM statement_timestamp())::float8 AS db_now \
    FROM mfa_totp WHERE user_id = $1";
/// Confirms exactly the enrolment whose secret the code was checked against, and only while
/// it is younger than the cut-off `$5`: a pending enrolment replaced meanwhile is not
/// confirmed by a code of the old secret.
const CONFIRM: &str = "UPDATE mfa_totp SET confirmed_at = $3, last_used_step = $4 \
    WHERE user_id = $1 AND enrolment = $2 AND confirmed_at IS NULL AND created_at >= $5";
/// The replay guard: the step moves forward only, and only for the enrolment the code matched
/// (after a removal and a new enrolment meanwhile, the old secret's code is not accepted).
const ACCEPT_STEP: &str = "UPDATE mfa_totp SET last_used_step = $3 \
    WHERE user_id = $1 AND enrolment = $2 AND confirmed_at IS NOT NULL \
      AND last_used_step < $3";
// `enrolled` is `confirmed_at IS NOT NULL`, the very predicate of `READ_ENROLMENT`, `CONFIRM`
// and `ACCEPT_STEP`: status and verify never disagree on whether login needs the factor.
// `confirmed_at` is read as µs since the epoch, for display only: the timestamptz decoder
// panics on `infinity` and on years past 9999, which PostgreSQL stores happily (see
// portcullis-audit's store); such a value shows as no time, not as "not enrolled".
const STATUS: &str = "SELECT \
      EXISTS (SELECT 1 FROM mfa_totp WHERE user_id = $1 AND confirmed_at IS NOT NULL) \
        AS enrolled, \
      (SELECT CASE WHEN isfinite(confirmed_at) \
                   THEN (extract(epoch FROM confirmed_at) * 1000000)::bigint END \
         FROM mfa_totp WHERE user_id = $1 AND confirmed_at IS NOT NULL) AS confirmed_us, \
      EXISTS (SELECT 1 FROM mfa_totp WHERE user_id = $1 AND confirmed_at IS NULL) AS pending, \
      (SELECT count(*) FROM mfa_recovery_codes WHERE user_id = $1 AND used_at IS NULL) \
        AS remaining";
/// READ COMMITTED whatever the role's default: every compare-and-set that waits for a row lock
/// must re-check its condition against the committed row (under REPEATABLE READ or
/// SERIALIZABLE the loser of a race would fail with 40001 instead of being refused, or a newer
/// code would be refused), and after waiting for the enrolment's lock, the next statement
/// must see the set the previous holder committed. So every write runs in [`PgMfaStore::begin`].
const READ_COMMITTED: &str = "SET TRANSACTION ISOLATION LEVEL READ COMMITTED";
/// Serialises the recovery-code writers of one user on their enrolment row.
const LOCK_ENROLLED: &str =
    "SELECT 1 FROM mfa_totp WHERE user_id = $1 AND confirmed_at IS NOT NULL FOR UPDATE";
const DELETE_CODES: &str = "DELETE FROM mfa_recovery_codes WHERE user_id = $1";
const INSERT_CODES: &str = "INSERT INTO mfa_recovery_codes (user_id, key_version, digest, created_at) \
    SELECT $1, v, d, $4 FROM UNNEST($2::bigint[], $3::bytea[]) AS u(v, d)";
const UNSPENT_VERSIONS: &str = "SELECT DISTINCT key_version FROM mfa_recovery_codes \
    WHERE used_at IS NULL ORDER BY key_version";
const UNSPENT_CODES: &str = "SELECT key_version, digest FROM mfa_recovery_codes \
    WHERE user_id = $1 AND used_at IS NULL";
const SPEND_CODE: &str = "UPDATE mfa_recovery_codes SET used_at = $4 \
    WHERE user_id = $1 AND key_version = $2 AND digest = $3 AND used_at IS NULL RETURNING 1";
const DELETE_TOTP: &str = "DELETE FROM mfa_totp WHERE user_id = $1";
const NOT_UNDER_KEY: &str = "SELECT user_id, secret FROM mfa_totp \
    WHERE secret_key_id <> $1 AND ($2::uuid IS NULL OR user_id > $2) \
    ORDER BY user_id LIMIT $3";
/// Compare-and-swap on the ciphertext read (see `portcullis_sealed::Reencrypted`).
const SWAP_SECRET: &str = "UPDATE mfa_totp SET secret = $3, secret_key_id = $4 \
    WHERE user_id = $1 AND secret = $2";
/// A row already sealed under the newest key but labelled with another: fix the label only.
const RELABEL: &str = "UPDATE mfa_totp SET secret_key_id = $3 WHERE user_id = $1 AND secret = $2";

/// PostgreSQL's `foreign_key_violation`.
const FOREIGN_KEY_VIOLATION: &str = "23503";

/// Everything the MFA store can fail with. [`Self::reason`] gives a stable snake_case name for
/// logs and metric labels; the auth server maps [`Self::InvalidCode`] and [`Self::Replayed`]
/// alike to `invalid_totp`.
#[derive(Debug, thiserror::Error)]
pub enum MfaStoreError {
    /// No user with this id (a row of `users` is needed first).
    #[error("no such user")]
    UnknownUser,
    /// The user has a confirmed TOTP enrolment; a new one needs [`PgMfaStore::remove`] first,
    /// which the server allows only after a fresh second factor.
    #[error("TOTP is already enrolled for this user")]
    AlreadyEnrolled,
    /// The enrolment to confirm is not waiting for confirmation: never begun, replaced by a
    /// newer one (the code shown to the user is no longer the one to confirm), or removed.
    #[error("no TOTP enrolment is waiting for confirmation")]
    NoPendingEnrolment,
    /// The enrolment to confirm is older than the time allowed to confirm it: start again
    /// with a new secret (a pending secret shown long ago may have been seen by others).
    #[error("the pending TOTP enrolment has expired")]
    EnrolmentExpired,
    /// The time allowed to confirm an enrolment is not positive.
    #[error("the time allowed to confirm an enrolment must be positive")]
    InvalidEnrolmentTtl,
    /// The user has no confirmed TOTP enrolment (for recovery codes too).
    #[error("TOTP is not enrolled for this user")]
    NotEnrolled,
    /// The code matches no step of the window.
    #[error("the TOTP code does not match")]
    InvalidCode,
    /// The code matched, but its step is not later than the last step used: a replay, or an
    /// older code after a newer one.
    #[error("the TOTP code's time step has already been used")]
    Replayed,
    /// The text is no unspent recovery code of this user (wrong, spent, or from a voided set).
    #[error("no unspent recovery code matches")]
    InvalidRecoveryCode,
    /// A new recovery-code set holds the same code twice: one code would work twice.
    #[error("the recovery code set repeats a code")]
    DuplicateRecoveryCode,
    /// The user's unspent recovery codes include some hashed with a key version the store's
    /// ring lacks, and the presented text matched none of the others: the ring is
    /// misconfigured (a key removed, or versions renumbered). A server error, not the user's.
    #[error("recovery codes are stored under key version {0}, which the key ring lacks")]
    UnknownRecoveryKeyVersion(u32),
    /// A re-encryption batch of 0 rows would never advance.
    #[error("a re-encryption batch holds at least one row")]
    InvalidBatchSize,
    /// The time passed in is before 1970: TOTP steps and Fernet timestamps start there.
    #[error("the time is before the Unix epoch")]
    TimeBeforeEpoch,
    /// The stored secret does not open: no key of the ring decrypts it, or it was sealed for
    /// another user (a ciphertext moved between rows) or purpose.
    // Only the reason: the sealed error's text names user ids, which must not reach a
    // response through a careless `to_string()` (the source stays available for logs).
    #[error("the stored TOTP secret cannot be opened ({})", .0.reason())]
    Sealed(#[from] SealedError),
    /// A stored value this code never writes (checked by the schema, unless it was bypassed).
    #[error("corrupt MFA row: {0}")]
    Corrupt(&'static str),
    /// The time passed in differs from the database's clock by more than the store's
    /// tolerance ([`PgMfaStore::with_max_clock_difference`]): this replica's clock is off, and
    /// would accept codes of the wrong time. Nothing was checked or recorded; the server
    /// answers 503 (another replica may serve the login).
    #[error("the server's clock differs from the database's by {difference_secs:.1} s")]
    ClockSkew {
        /// `now` minus the database's clock, in seconds.
        difference_secs: f64,
    },
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl MfaStoreError {
    /// A stable snake_case name for logs and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnknownUser => "unknown_user",
            Self::AlreadyEnrolled => "already_enrolled",
            Self::NoPendingEnrolment => "no_pending_enrolment",
            Self::EnrolmentExpired => "enrolment_expired",
            Self::InvalidEnrolmentTtl => "invalid_enrolment_ttl",
            Self::NotEnrolled => "not_enrolled",
            Self::InvalidCode => "invalid_code",
            Self::Replayed => "replayed",
            Self::InvalidRecoveryCode => "invalid_recovery_code",
            Self::DuplicateRecoveryCode => "duplicate_recovery_code",
            Self::UnknownRecoveryKeyVersion(_) => "unknown_recovery_key_version",
            Self::InvalidBatchSize => "invalid_batch_size",
            Self::TimeBeforeEpoch => "time_before_epoch",
            Self::Sealed(e) => e.reason(),
            Self::Corrupt(_) => "corrupt_row",
            Self::ClockSkew { .. } => "clock_skew",
            Self::Database(_) => "database",
        }
    }
}

/// A user's second factor, as the account page and `/api/v1/me` show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MfaStatus {
    /// A confirmed TOTP enrolment exists: login needs the second factor.
    pub enrolled: bool,
    /// When it was confirmed; `None` when not enrolled, or when the stored time is not
    /// representable (only a write that bypassed the schema's checks makes one).
    pub confirmed_at: Option<OffsetDateTime>,
    /// An enrolment waits for its confirmation code (only when not enrolled).
    pub pending: bool,
    /// Recovery codes not yet spent.
    pub recovery_codes_remaining: u32,
}

/// Which enrolment of a user [`PgMfaStore::begin_enrolment`] started: the server keeps it with
/// the session (or the login's `mfa_token`) that showed the secret, and passes it back to
/// [`PgMfaStore::confirm`], so that only the enrolment the user was shown can be confirmed.
/// Not secret; every enrolment of every user gets a new number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EnrolmentId(pub i64);

/// What one [`PgMfaStore::reencrypt_batch`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReencryptReport {
    /// Rows read: labelled with a key other than the newest.
    pub examined: u32,
    /// Rows re-sealed under the newest key and written.
    pub reencrypted: u32,
    /// Rows whose ciphertext changed between the read and the write (a re-enrolment, or
    /// another run that re-sealed it first): left as they are, already current or to be
    /// picked up by the next run.
    pub raced: u32,
    /// Rows already sealed under the newest key whose key label was stale; the label is fixed.
    pub relabelled: u32,
    /// Rows that do not open, with the reason: left untouched, for an operator to look at.
    pub failed: Vec<(Uuid, &'static str)>,
    /// Where the next batch starts (`after`), `None` once the last row has been examined.
    pub next: Option<Uuid>,
}

/// The MFA store in PostgreSQL. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PgMfaStore {
    pool: PgPool,
    /// Seals and opens TOTP secrets: the secrets dir's `fernet-keys`.
    sealing: Arc<KeyRing>,
    /// Finds recovery codes among the stored hashes.
    recovery: Arc<RecoveryKeyRing>,
    /// The realm the recovery-code hashes are bound to.
    realm: Arc<str>,
    /// How far `verify`'s `now` may be from the database's clock; unbounded when `None`.
    max_clock_difference: Option<std::time::Duration>,
}

impl PgMfaStore {
    /// The store of `realm` in `pool`: TOTP secrets sealed with `sealing`, recovery codes hashed
    /// with `recovery` as `recovery.hash(realm, &user_id.to_string(), code)` (here, never by
    /// the caller). The versions of `recovery` must be the stable ones the stored hashes carry
    /// (see [`crate::RecoveryKey`]); check with [`Self::unknown_recovery_key_versions`].
    pub fn new(
        pool: PgPool,
        sealing: Arc<KeyRing>,
        recovery: Arc<RecoveryKeyRing>,
        realm: impl Into<Arc<str>>,
    ) -> Self {
        Self {
            pool,
            sealing,
            recovery,
            realm: realm.into(),
            max_clock_difference: None,
        }
    }

    /// The same store, whose [`Self::verify`] refuses to check a code (with
    /// [`MfaStoreError::ClockSkew`]) when the `now` it is given differs from the database's
    /// clock by more than `tolerance`. The database's clock is the one all replicas share, so a
    /// replica whose own clock lags (broken NTP, a paused VM) cannot accept a phished code
    /// long after its window. A few seconds is a sensible bound: more than the usual NTP error
    /// and the database round trip, far less than a TOTP step.
    pub fn with_max_clock_difference(mut self, tolerance: std::time::Duration) -> Self {
        self.max_clock_difference = Some(tolerance);
        self
    }

    /// Starts (or restarts) an enrolment: `secret` sealed for this user and the purpose TOTP
    /// secret, stored with its `params` and `now` as its creation time, pending until
    /// [`Self::confirm`] with the returned [`EnrolmentId`]. Replaces a pending enrolment (its
    /// secret and number no longer confirm).
    ///
    /// # Errors
    /// [`MfaStoreError::AlreadyEnrolled`] when a confirmed enrolment exists: it is never
    /// replaced here, or a stolen password alone could swap the victim's authenticator.
    /// [`MfaStoreError::UnknownUser`] without a `users` row.
    pub async fn begin_enrolment(
        &self,
        user_id: Uuid,
        secret: &TotpSecret,
        params: TotpParams,
        now: OffsetDateTime,
    ) -> Result<EnrolmentId, MfaStoreError> {
        let sealed = portcullis_sealed::seal(
            &self.sealing,
            binding(user_id),
            secret.as_bytes(),
            unix_seconds(now)?,
        );
        let mut tx = self.begin().await?;
        let started: Option<i64> = sqlx::query_scalar(BEGIN)
            .bind(user_id)
            .bind(&sealed)
            .bind(self.sealing.current_key_id().as_str())
            .bind(params.to_string())
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| {
                if foreign_key_violation(&e) {
                    MfaStoreError::UnknownUser
                } else {
                    MfaStoreError::Database(e)
                }
            })?;
        tx.commit().await?;
        // No row returned: the conflicting row is confirmed, and was left alone.
        started
            .map(EnrolmentId)
            .ok_or(MfaStoreError::AlreadyEnrolled)
    }

    /// Confirms the pending enrolment `enrolment` (as returned by [`Self::begin_enrolment`])
    /// with a code from the authenticator, if it was begun less than `ttl` before `now` (for
    /// example 15 minutes), and records the code's step as used, so the confirmation code
    /// cannot be replayed at login.
    ///
    /// # Errors
    /// [`MfaStoreError::NoPendingEnrolment`] when `enrolment` is not the user's pending
    /// enrolment (also when replaced or removed concurrently),
    /// [`MfaStoreError::EnrolmentExpired`] when it is older than `ttl` (checked before the
    /// code), [`MfaStoreError::AlreadyEnrolled`] when the user has a confirmed enrolment
    /// (which may not be the one shown to this user: never read it as success),
    /// [`MfaStoreError::InvalidCode`], [`MfaStoreError::Sealed`],
    /// [`MfaStoreError::InvalidEnrolmentTtl`] for a `ttl` that is not positive.
    pub async fn confirm(
        &self,
        user_id: Uuid,
        enrolment: EnrolmentId,
        code: &str,
        now: OffsetDateTime,
        ttl: Duration,
    ) -> Result<TimeStep, MfaStoreError> {
        let cutoff = now
            .checked_sub(ttl)
            .filter(|_| ttl.is_positive())
            .ok_or(MfaStoreError::InvalidEnrolmentTtl)?;
        let row = self
            .enrolment(user_id, Some(cutoff))
            .await?
            .ok_or(MfaStoreError::NoPendingEnrolment)?;
        if row.confirmed {
            return Err(MfaStoreError::AlreadyEnrolled);
        }
        if row.enrolment != enrolment.0 {
            return Err(MfaStoreError::NoPendingEnrolment);
        }
        if !row.fresh {
            return Err(MfaStoreError::EnrolmentExpired);
        }
        let matched = self.check(user_id, &row, code, now)?;
        let mut tx = self.begin().await?;
        let done = sqlx::query(CONFIRM)
            .bind(user_id)
            .bind(row.enrolment)
            .bind(now)
            .bind(step_to_db(matched)?)
            .bind(cutoff)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if done.rows_affected() == 0 {
            return Err(MfaStoreError::NoPendingEnrolment);
        }
        Ok(matched)
    }

    /// Checks a login's TOTP code against the user's confirmed enrolment and accepts its step
    /// once: the step is recorded by a compare-and-set that only moves forward, so of two
    /// replicas given the same code at once exactly one succeeds, and a code older than one
    /// already used is refused. Returns the accepted step.
    ///
    /// # Errors
    /// [`MfaStoreError::NotEnrolled`], [`MfaStoreError::InvalidCode`],
    /// [`MfaStoreError::Replayed`], [`MfaStoreError::Sealed`] (for example a ciphertext moved
    /// from another user's row), [`MfaStoreError::ClockSkew`] when the store has a clock
    /// bound and `now` is outside it (checked before the code).
    pub async fn verify(
        &self,
        user_id: Uuid,
        code: &str,
        now: OffsetDateTime,
    ) -> Result<TimeStep, MfaStoreError> {
        let row = self
            .enrolment(user_id, None)
            .await?
            .filter(|row| row.confirmed)
            .ok_or(MfaStoreError::NotEnrolled)?;
        if let Some(tolerance) = self.max_clock_difference {
            let difference_secs = now.unix_timestamp_nanos() as f64 / 1e9 - row.db_now;
            if difference_secs.abs() > tolerance.as_secs_f64() {
                return Err(MfaStoreError::ClockSkew { difference_secs });
            }
        }
        let matched = self.check(user_id, &row, code, now)?;
        // A cheap early answer; the UPDATE below is what decides.
        if !accept(row.last_used, matched) {
            return Err(MfaStoreError::Replayed);
        }
        let mut tx = self.begin().await?;
        let done = sqlx::query(ACCEPT_STEP)
            .bind(user_id)
            .bind(row.enrolment)
            .bind(step_to_db(matched)?)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if done.rows_affected() == 0 {
            // Another replica accepted this step or a later one first (or the enrolment was
            // removed and replaced meanwhile: the code was for a secret no longer in use).
            return Err(MfaStoreError::Replayed);
        }
        Ok(matched)
    }

    /// The user's second-factor status.
    pub async fn status(&self, user_id: Uuid) -> Result<MfaStatus, MfaStoreError> {
        let row = sqlx::query(STATUS)
            .bind(user_id)
            .fetch_one(&self.pool)
            .await?;
        let enrolled: bool = row.try_get("enrolled")?;
        let confirmed_us: Option<i64> = row.try_get("confirmed_us")?;
        let pending: bool = row.try_get("pending")?;
        let remaining: i64 = row.try_get("remaining")?;
        let confirmed_at = confirmed_us
            .map(|us| {
                OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
                    .map_err(|_| MfaStoreError::Corrupt("confirmed_at"))
            })
            .transpose()?;
        Ok(MfaStatus {
            enrolled,
            confirmed_at,
            pending,
            recovery_codes_remaining: u32::try_from(remaining)
                .map_err(|_| MfaStoreError::Corrupt("recovery code count"))?,
        })
    }

    /// Stores a new set of recovery codes, voiding every code of the old set, spent or not,
    /// in one transaction. `codes` are the plain codes the caller generated from its CSPRNG
    /// ([`crate::generate_recovery_codes`]) and shows the user once; only their hashes are
    /// stored, made here with the newest key of the store's ring, its realm and the user id,
    /// the very binding [`Self::spend_recovery_code`] checks. Concurrent replacements for one
    /// user queue on the enrolment row, so one set survives, never a mix.
    ///
    /// # Errors
    /// [`MfaStoreError::NotEnrolled`] without a confirmed TOTP enrolment (codes back up a
    /// second factor), [`MfaStoreError::DuplicateRecoveryCode`].
    pub async fn replace_recovery_codes(
        &self,
        user_id: Uuid,
        codes: &[RecoveryCode],
        now: OffsetDateTime,
    ) -> Result<(), MfaStoreError> {
        let owner = user_id.to_string();
        let hashes: Vec<RecoveryCodeHash> = codes
            .iter()
            .map(|code| self.recovery.hash(&self.realm, &owner, code))
            .collect();
        for (i, hash) in hashes.iter().enumerate() {
            if hashes[..i].contains(hash) {
                return Err(MfaStoreError::DuplicateRecoveryCode);
            }
        }
        let versions: Vec<i64> = hashes.iter().map(|h| i64::from(h.version())).collect();
        let digests: Vec<Vec<u8>> = hashes.iter().map(|h| h.digest().to_vec()).collect();
        let mut tx = self.begin().await?;
        sqlx::query(LOCK_ENROLLED)
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(MfaStoreError::NotEnrolled)?;
        sqlx::query(DELETE_CODES)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(INSERT_CODES)
            .bind(user_id)
            .bind(&versions)
            .bind(&digests)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Spends the recovery code the user typed, if it is one of their unspent codes: exactly
    /// once, however many requests present it at the same time.
    ///
    /// # Errors
    /// [`MfaStoreError::InvalidRecoveryCode`] for anything else: a wrong or malformed code, a
    /// spent one, one of a voided set, or one another request spent first.
    pub async fn spend_recovery_code(
        &self,
        user_id: Uuid,
        presented: &str,
        now: OffsetDateTime,
    ) -> Result<(), MfaStoreError> {
        let rows = sqlx::query(UNSPENT_CODES)
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?;
        let mut stored = Vec::with_capacity(rows.len());
        for row in rows {
            let version: i64 = row.try_get("key_version")?;
            let digest: Vec<u8> = row.try_get("digest")?;
            let version = u32::try_from(version)
                .map_err(|_| MfaStoreError::Corrupt("recovery code key version"))?;
            stored.push(
                RecoveryCodeHash::from_parts(version, &digest)
                    .ok_or(MfaStoreError::Corrupt("recovery code digest"))?,
            );
        }
        let Some(found) = self
            .recovery
            .find(&self.realm, &user_id.to_string(), presented, &stored)
        else {
            // Codes under a version the ring lacks can never match: say so, loudly, rather
            // than let a misconfigured ring pass for a wrong code.
            if let Some(unknown) = stored.iter().find(|h| !self.recovery.contains(h.version())) {
                return Err(MfaStoreError::UnknownRecoveryKeyVersion(unknown.version()));
            }
            return Err(MfaStoreError::InvalidRecoveryCode);
        };
        let mut tx = self.begin().await?;
        let spent = sqlx::query(SPEND_CODE)
            .bind(user_id)
            .bind(i64::from(found.version()))
            .bind(found.digest().as_slice())
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        spent.map(|_| ()).ok_or(MfaStoreError::InvalidRecoveryCode)
    }

    /// The key versions of unspent recovery codes (of any user) that the store's ring lacks,
    /// in ascending order: codes no request can spend. The server calls it at start and
    /// refuses to start unless it is empty, so a key removed too early or a renumbered ring
    /// is found before a user who lost their phone finds it.
    pub async fn unknown_recovery_key_versions(&self) -> Result<Vec<u32>, MfaStoreError> {
        let stored: Vec<i64> = sqlx::query_scalar(UNSPENT_VERSIONS)
            .fetch_all(&self.pool)
            .await?;
        let mut unknown = Vec::new();
        for version in stored {
            let version = u32::try_from(version)
                .map_err(|_| MfaStoreError::Corrupt("recovery code key version"))?;
            if !self.recovery.contains(version) {
                unknown.push(version);
            }
        }
        Ok(unknown)
    }

    /// Removes the user's TOTP enrolment (pending or confirmed) and recovery codes. Whether
    /// that is allowed (a fresh second factor) is the caller's decision. Returns whether there
    /// was anything to remove.
    pub async fn remove(&self, user_id: Uuid) -> Result<bool, MfaStoreError> {
        let mut tx = self.begin().await?;
        let totp = sqlx::query(DELETE_TOTP)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let codes = sqlx::query(DELETE_CODES)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(totp.rows_affected() + codes.rows_affected() > 0)
    }

    /// Re-seals under the newest key of the store's ring up to `batch_size` TOTP secrets that
    /// another key sealed, in user id order after `after`. Call it again with
    /// [`ReencryptReport::next`] until that is `None`: each call is bounded, and rows that
    /// fail to open are reported and passed over, not retried for ever.
    ///
    /// Each row is written by compare-and-swap on the ciphertext read, so a re-enrolment
    /// meanwhile is kept, and two runs side by side each write a row at most once between
    /// them; every row ends up opening under the newest key, provided no replica still seals
    /// new enrolments under an older one (a row it writes after the cursor passed needs
    /// another full pass: run until a pass from the start examines nothing). On a database
    /// error the batch stops and its counts are lost; the rows written are fine and a re-run
    /// from the same `after` is safe.
    ///
    /// # Errors
    /// [`MfaStoreError::InvalidBatchSize`] for 0; database errors.
    pub async fn reencrypt_batch(
        &self,
        after: Option<Uuid>,
        batch_size: u32,
        now: OffsetDateTime,
    ) -> Result<ReencryptReport, MfaStoreError> {
        if batch_size == 0 {
            return Err(MfaStoreError::InvalidBatchSize);
        }
        let now_unix = unix_seconds(now)?;
        let newest = self.sealing.current_key_id().as_str();
        let rows = sqlx::query(NOT_UNDER_KEY)
            .bind(newest)
            .bind(after)
            .bind(i64::from(batch_size))
            .fetch_all(&self.pool)
            .await?;
        let mut report = ReencryptReport::default();
        for row in &rows {
            let user_id: Uuid = row.try_get("user_id")?;
            let secret: String = row.try_get("secret")?;
            report.examined += 1;
            report.next = Some(user_id);
            let (query, new) = match portcullis_sealed::reencrypt(
                &self.sealing,
                binding(user_id),
                &secret,
                now_unix,
            ) {
                Ok(Some(swap)) => (SWAP_SECRET, Some(swap.new)),
                Ok(None) => (RELABEL, None),
                Err(e) => {
                    report.failed.push((user_id, e.reason()));
                    continue;
                }
            };
            let mut update = sqlx::query(query).bind(user_id).bind(&secret);
            if let Some(new) = &new {
                update = update.bind(new);
            }
            let mut tx = self.begin().await?;
            let done = update.bind(newest).execute(&mut *tx).await?;
            tx.commit().await?;
            match (done.rows_affected(), new.is_some()) {
                (0, _) => report.raced += 1,
                (_, true) => report.reencrypted += 1,
                (_, false) => report.relabelled += 1,
            }
        }
        if rows.len() < batch_size as usize {
            report.next = None;
        }
        Ok(report)
    }

    async fn begin(&self) -> Result<Transaction<'static, Postgres>, MfaStoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(READ_COMMITTED).execute(&mut *tx).await?;
        Ok(tx)
    }

    /// The user's enrolment; `fresh` tells whether it was created at or after `cutoff`.
    async fn enrolment(
        &self,
        user_id: Uuid,
        cutoff: Option<OffsetDateTime>,
    ) -> Result<Option<Enrolment>, MfaStoreError> {
        let Some(row) = sqlx::query(READ_ENROLMENT)
            .bind(user_id)
            .bind(cutoff)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let params: String = row.try_get("params")?;
        let last_used: Option<i64> = row.try_get("last_used_step")?;
        Ok(Some(Enrolment {
            enrolment: row.try_get("enrolment")?,
            secret: row.try_get("secret")?,
            params: params
                .parse()
                .map_err(|_| MfaStoreError::Corrupt("TOTP params"))?,
            last_used: last_used
                .map(|s| u64::try_from(s).map(TimeStep))
                .transpose()
                .map_err(|_| MfaStoreError::Corrupt("last used step"))?,
            confirmed: row.try_get("confirmed")?,
            fresh: row.try_get("fresh")?,
            db_now: row.try_get("db_now")?,
        }))
    }

    /// Opens the enrolment's secret for this user and checks `code` with its params.
    fn check(
        &self,
        user_id: Uuid,
        row: &Enrolment,
        code: &str,
        now: OffsetDateTime,
    ) -> Result<TimeStep, MfaStoreError> {
        let opened = portcullis_sealed::open(&self.sealing, binding(user_id), &row.secret)?;
        let secret = TotpSecret::from_bytes(&opened.plaintext)
            .map_err(|_| MfaStoreError::Corrupt("TOTP secret length"))?;
        verify(&row.params, &secret, code, unix_seconds(now)?).ok_or(MfaStoreError::InvalidCode)
    }
}

/// A TOTP row as read.
struct Enrolment {
    /// Which enrolment: the condition of the writes that follow a code check.
    enrolment: i64,
    /// The Fernet token.
    secret: String,
    params: TotpParams,
    last_used: Option<TimeStep>,
    confirmed: bool,
    /// Created at or after the cut-off the read was given.
    fresh: bool,
    /// The database's clock at the read, in Unix seconds.
    db_now: f64,
}

/// What a user's TOTP secret is sealed for: the purpose and the owning user, never the row.
fn binding(user_id: Uuid) -> Binding {
    Binding::new(Purpose::TotpSecret, user_id)
}

fn unix_seconds(now: OffsetDateTime) -> Result<u64, MfaStoreError> {
    u64::try_from(now.unix_timestamp()).map_err(|_| MfaStoreError::TimeBeforeEpoch)
}

fn step_to_db(step: TimeStep) -> Result<i64, MfaStoreError> {
    // Steps are Unix seconds divided by at least 15: always below i64::MAX.
    i64::try_from(step.value()).map_err(|_| MfaStoreError::Corrupt("time step beyond bigint"))
}

fn foreign_key_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|code| code == FOREIGN_KEY_VIOLATION)
}
