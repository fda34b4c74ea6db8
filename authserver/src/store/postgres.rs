//! Every SQL statement of the auth server. All parameterized; times come from the server clock.

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{FromRow, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use super::StoreError;

/// The embedded migrations (`authserver/migrations`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A user row.
#[derive(Clone, Debug, FromRow)]
pub struct UserRow {
    /// Id.
    pub id: Uuid,
    /// Email as entered.
    pub email: String,
    /// Canonical email: the address that is verified and that every mail goes to.
    pub email_canonical: String,
    /// Display name.
    pub display_name: Option<String>,
    /// bcrypt hash.
    pub password_hash: String,
    /// Pepper version of the hash.
    pub pepper_version: String,
    /// Whether the email is verified.
    pub email_verified: bool,
    /// Whether an admin disabled the account.
    pub disabled: bool,
    /// Registration time.
    pub created_at: OffsetDateTime,
}

/// A new account.
#[derive(Clone, Debug)]
pub struct NewUser<'a> {
    /// Id.
    pub id: Uuid,
    /// Email as entered.
    pub email: &'a str,
    /// Canonical email (unique).
    pub email_canonical: &'a str,
    /// Display name.
    pub display_name: Option<&'a str>,
    /// bcrypt hash.
    pub password_hash: &'a str,
    /// Pepper version.
    pub pepper_version: &'a str,
    /// Verified at creation (verification off).
    pub email_verified: bool,
    /// Now.
    pub now: OffsetDateTime,
}

/// A refresh token to store.
#[derive(Clone, Debug)]
pub struct NewRefreshToken<'a> {
    /// SHA-256 of the token.
    pub token_hash: &'a [u8],
    /// Family (one login).
    pub family_id: Uuid,
    /// Owner.
    pub user_id: Uuid,
    /// Session that started the family.
    pub session_id: &'a str,
    /// Client, when not the realm's own API.
    pub client_id: Option<&'a str>,
    /// Issue time.
    pub issued_at: OffsetDateTime,
    /// Idle expiry.
    pub expires_at: OffsetDateTime,
    /// Absolute expiry of the family.
    pub family_expires_at: OffsetDateTime,
}

/// What happened to a presented refresh token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RotateOutcome {
    /// It was valid and is now used; a successor was stored.
    Rotated {
        /// Owner.
        user_id: Uuid,
        /// Session of the family.
        session_id: String,
        /// Client of the family.
        client_id: Option<String>,
    },
    /// It had been used before: the whole family is now revoked.
    Reused {
        /// Session of the revoked family.
        session_id: String,
    },
    /// Unknown, expired or revoked.
    Invalid,
}

/// Purposes of one-time tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenPurpose {
    /// Email verification link.
    VerifyEmail,
    /// Password reset link.
    PasswordReset,
}

impl TokenPurpose {
    fn as_str(self) -> &'static str {
        match self {
            TokenPurpose::VerifyEmail => "verify_email",
            TokenPurpose::PasswordReset => "password_reset",
        }
    }
}

/// The PostgreSQL store.
#[derive(Clone, Debug)]
pub struct Db {
    pool: PgPool,
}

const USER_BY_ID: &str = "SELECT id, email, email_canonical, display_name, password_hash, pepper_version, email_verified, \
     disabled, created_at FROM users WHERE id = $1";
const USER_BY_EMAIL: &str = "SELECT id, email, email_canonical, display_name, password_hash, pepper_version, email_verified, \
     disabled, created_at FROM users WHERE email_canonical = $1";

impl Db {
    /// Connects with a bounded pool.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect(url)
            .await?;
        Ok(Self { pool })
    }

    /// Wraps an existing pool (tests).
    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Runs pending migrations under PostgreSQL's advisory lock (sqlx takes it), so replicas
    /// starting together apply each migration once.
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        MIGRATOR.run(&self.pool).await
    }

    /// Whether every embedded migration is applied successfully.
    pub async fn migrations_applied(&self) -> Result<bool, StoreError> {
        let applied: Vec<(i64, bool)> =
            match sqlx::query_as("SELECT version, success FROM _sqlx_migrations")
                .fetch_all(&self.pool)
                .await
            {
                Ok(rows) => rows,
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => {
                    return Ok(false);
                }
                Err(e) => return Err(e.into()),
            };
        Ok(MIGRATOR
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .all(|m| applied.iter().any(|(v, ok)| *v == m.version && *ok)))
    }

    /// Answers when the database is reachable.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Creates a user; `Duplicate` when the canonical email is taken.
    pub async fn insert_user(&self, user: &NewUser<'_>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO users (id, email, email_canonical, display_name, password_hash, pepper_version, \
             email_verified, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        )
        .bind(user.id)
        .bind(user.email)
        .bind(user.email_canonical)
        .bind(user.display_name)
        .bind(user.password_hash)
        .bind(user.pepper_version)
        .bind(user.email_verified)
        .bind(user.now)
        .execute(&self.pool)
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::Duplicate(_) => StoreError::Duplicate("email"),
            other => other,
        })?;
        Ok(())
    }

    /// A user by canonical email.
    pub async fn user_by_email(
        &self,
        email_canonical: &str,
    ) -> Result<Option<UserRow>, StoreError> {
        Ok(sqlx::query_as(USER_BY_EMAIL)
            .bind(email_canonical)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// A user by id.
    pub async fn user_by_id(&self, id: Uuid) -> Result<Option<UserRow>, StoreError> {
        Ok(sqlx::query_as(USER_BY_ID)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Replaces a password hash.
    pub async fn set_password(
        &self,
        id: Uuid,
        hash: &str,
        pepper_version: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET password_hash = $2, pepper_version = $3, updated_at = $4 WHERE id = $1")
            .bind(id)
            .bind(hash)
            .bind(pepper_version)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records a successful login.
    pub async fn record_login(&self, id: Uuid, now: OffsetDateTime) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET last_login_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Marks the email verified.
    pub async fn set_email_verified(
        &self,
        id: Uuid,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET email_verified = true, updated_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Disables or enables an account; returns whether it exists.
    pub async fn set_disabled(
        &self,
        id: Uuid,
        disabled: bool,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query("UPDATE users SET disabled = $2, updated_at = $3 WHERE id = $1")
            .bind(id)
            .bind(disabled)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Stores a one-time token hash.
    pub async fn insert_one_time_token(
        &self,
        hash: &[u8],
        user: Uuid,
        purpose: TokenPurpose,
        now: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO one_time_tokens (token_hash, user_id, purpose, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(hash)
        .bind(user)
        .bind(purpose.as_str())
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The user of a one-time token that is still unused and unexpired, without using it.
    pub async fn peek_one_time_token(
        &self,
        hash: &[u8],
        purpose: TokenPurpose,
        now: OffsetDateTime,
    ) -> Result<Option<Uuid>, StoreError> {
        let row = sqlx::query(
            "SELECT user_id FROM one_time_tokens WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3",
        )
        .bind(hash)
        .bind(purpose.as_str())
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.get("user_id")))
    }

    /// Uses a one-time token: returns its user when it was unused and unexpired. Single use is
    /// atomic: of two concurrent uses, one gets the user.
    pub async fn consume_one_time_token(
        &self,
        hash: &[u8],
        purpose: TokenPurpose,
        now: OffsetDateTime,
    ) -> Result<Option<Uuid>, StoreError> {
        let row = sqlx::query(
            "UPDATE one_time_tokens SET used_at = $3 WHERE token_hash = $1 AND purpose = $2 \
             AND used_at IS NULL AND expires_at > $3 RETURNING user_id",
        )
        .bind(hash)
        .bind(purpose.as_str())
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.get("user_id")))
    }

    /// Uses up every outstanding token of `purpose` of a user (a reset succeeded, or the
    /// password changed: older reset links must not set it again).
    pub async fn void_one_time_tokens(
        &self,
        user: Uuid,
        purpose: TokenPurpose,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE one_time_tokens SET used_at = $3 WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL",
        )
        .bind(user)
        .bind(purpose.as_str())
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Stores a refresh token.
    pub async fn insert_refresh_token(
        &self,
        token: &NewRefreshToken<'_>,
    ) -> Result<(), StoreError> {
        insert_refresh(&self.pool, token).await
    }

    /// Rotates a refresh token: marks it used and stores its successor in one transaction. A
    /// token presented again after use revokes its whole family. `successor` gets the family
    /// and its absolute expiry filled in.
    pub async fn rotate_refresh_token(
        &self,
        presented: &[u8],
        successor: &[u8],
        now: OffsetDateTime,
        idle_expiry: OffsetDateTime,
    ) -> Result<RotateOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL \
             AND revoked_at IS NULL AND expires_at > $2 AND family_expires_at > $2 \
             RETURNING family_id, user_id, session_id, client_id, family_expires_at",
        )
        .bind(presented)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = row {
            let family_expires_at: OffsetDateTime = row.get("family_expires_at");
            let session_id: String = row.get("session_id");
            let client_id: Option<String> = row.get("client_id");
            let user_id: Uuid = row.get("user_id");
            let token = NewRefreshToken {
                token_hash: successor,
                family_id: row.get("family_id"),
                user_id,
                session_id: &session_id,
                client_id: client_id.as_deref(),
                issued_at: now,
                expires_at: idle_expiry.min(family_expires_at),
                family_expires_at,
            };
            insert_refresh(&mut *tx, &token).await?;
            tx.commit().await?;
            return Ok(RotateOutcome::Rotated {
                user_id,
                session_id,
                client_id,
            });
        }
        // Not rotatable: find out whether it is a replay of a used token.
        let known = sqlx::query("SELECT family_id, session_id, used_at, revoked_at FROM refresh_tokens WHERE token_hash = $1")
            .bind(presented)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(known) = known else {
            return Ok(RotateOutcome::Invalid);
        };
        let used: Option<OffsetDateTime> = known.get("used_at");
        let revoked: Option<OffsetDateTime> = known.get("revoked_at");
        if used.is_none() || revoked.is_some() {
            return Ok(RotateOutcome::Invalid);
        }
        let family: Uuid = known.get("family_id");
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
        )
        .bind(family)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(RotateOutcome::Reused {
            session_id: known.get("session_id"),
        })
    }

    /// Revokes the refresh tokens started by a session.
    pub async fn revoke_refresh_by_session(
        &self,
        session_id: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE refresh_tokens SET revoked_at = $2 WHERE session_id = $1 AND revoked_at IS NULL")
            .bind(session_id)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Revokes every refresh token of a user except those of `keep_session`; returns the
    /// sessions whose families were revoked.
    pub async fn revoke_user_refresh_tokens(
        &self,
        user: Uuid,
        keep_session: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $3 WHERE user_id = $1 AND revoked_at IS NULL \
             AND ($2::text IS NULL OR session_id <> $2) RETURNING session_id",
        )
        .bind(user)
        .bind(keep_session)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let mut sessions: Vec<String> = rows.iter().map(|r| r.get("session_id")).collect();
        sessions.sort();
        sessions.dedup();
        Ok(sessions)
    }

    /// Records consents given at registration.
    pub async fn upsert_consents(
        &self,
        user: Uuid,
        consents: &[(String, bool)],
        policy_version: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        for (purpose, granted) in consents {
            sqlx::query(
                "INSERT INTO consents (user_id, purpose, granted, policy_version, updated_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (user_id, purpose) DO UPDATE SET granted = $3, policy_version = $4, updated_at = $5",
            )
            .bind(user)
            .bind(purpose)
            .bind(granted)
            .bind(policy_version)
            .bind(now)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }
}

async fn insert_refresh<'e, E: sqlx::PgExecutor<'e>>(
    executor: E,
    token: &NewRefreshToken<'_>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, family_id, user_id, session_id, client_id, issued_at, expires_at, \
         family_expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(token.token_hash)
    .bind(token.family_id)
    .bind(token.user_id)
    .bind(token.session_id)
    .bind(token.client_id)
    .bind(token.issued_at)
    .bind(token.expires_at)
    .bind(token.family_expires_at)
    .execute(executor)
    .await?;
    Ok(())
}

/// Retention statements: each rule as a count (dry run) and as the change it describes, with
/// the same predicate.
impl Db {
    /// Refresh tokens and one-time tokens that expired, or were used or revoked, before
    /// `cutoff`.
    pub async fn purge_expired_tokens(
        &self,
        cutoff: OffsetDateTime,
        dry_run: bool,
    ) -> Result<(i64, i64), StoreError> {
        let (refresh, one_time) = if dry_run {
            (
                "SELECT count(*) FROM refresh_tokens WHERE LEAST(expires_at, family_expires_at) < $1 \
                 OR used_at < $1 OR revoked_at < $1",
                "SELECT count(*) FROM one_time_tokens WHERE expires_at < $1 OR used_at < $1",
            )
        } else {
            (
                "WITH gone AS (DELETE FROM refresh_tokens WHERE LEAST(expires_at, family_expires_at) < $1 \
                 OR used_at < $1 OR revoked_at < $1 RETURNING 1) SELECT count(*) FROM gone",
                "WITH gone AS (DELETE FROM one_time_tokens WHERE expires_at < $1 OR used_at < $1 RETURNING 1) \
                 SELECT count(*) FROM gone",
            )
        };
        let (a,): (i64,) = sqlx::query_as(refresh)
            .bind(cutoff)
            .fetch_one(&self.pool)
            .await?;
        let (b,): (i64,) = sqlx::query_as(one_time)
            .bind(cutoff)
            .fetch_one(&self.pool)
            .await?;
        Ok((a, b))
    }

    /// Runs the counting statement (dry run) or the changing one; both take the cut-off as `$1`
    /// and answer one count.
    async fn count_or_apply(
        &self,
        dry_run: bool,
        count: &'static str,
        apply: &'static str,
        cutoff: OffsetDateTime,
    ) -> Result<i64, StoreError> {
        let sql = if dry_run { count } else { apply };
        let (n,): (i64,) = sqlx::query_as(sql)
            .bind(cutoff)
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }

    /// Accounts never verified and registered before `cutoff` (their rows cascade).
    pub async fn purge_unverified_accounts(
        &self,
        cutoff: OffsetDateTime,
        dry_run: bool,
    ) -> Result<i64, StoreError> {
        self.count_or_apply(dry_run, "SELECT count(*) FROM users WHERE NOT email_verified AND created_at < $1", "WITH gone AS (DELETE FROM users WHERE NOT email_verified AND created_at < $1 RETURNING 1) \
             SELECT count(*) FROM gone", cutoff).await
    }

    /// Records of withdrawn consents older than `cutoff`.
    pub async fn purge_withdrawn_consents(
        &self,
        cutoff: OffsetDateTime,
        dry_run: bool,
    ) -> Result<i64, StoreError> {
        self.count_or_apply(
            dry_run,
            "SELECT count(*) FROM consents WHERE NOT granted AND updated_at < $1",
            "WITH gone AS (DELETE FROM consents WHERE NOT granted AND updated_at < $1 RETURNING 1) \
             SELECT count(*) FROM gone",
            cutoff,
        )
        .await
    }

    /// Accounts inactive since before `warn` (but not yet past `act`) that were not warned.
    pub async fn inactive_accounts_to_warn(
        &self,
        warn: OffsetDateTime,
        act: OffsetDateTime,
    ) -> Result<Vec<(Uuid, String, OffsetDateTime)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, email_canonical, COALESCE(last_login_at, created_at) FROM users WHERE NOT disabled \
             AND inactivity_warned_at IS NULL AND COALESCE(last_login_at, created_at) < $1 \
             AND COALESCE(last_login_at, created_at) >= $2",
        )
        .bind(warn)
        .bind(act)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records that an account was warned.
    pub async fn mark_inactivity_warned(
        &self,
        id: Uuid,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET inactivity_warned_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes accounts inactive since before `cutoff`.
    pub async fn delete_inactive_accounts(
        &self,
        cutoff: OffsetDateTime,
        dry_run: bool,
    ) -> Result<i64, StoreError> {
        self.count_or_apply(dry_run, "SELECT count(*) FROM users WHERE COALESCE(last_login_at, created_at) < $1", "WITH gone AS (DELETE FROM users WHERE COALESCE(last_login_at, created_at) < $1 RETURNING 1) \
             SELECT count(*) FROM gone", cutoff).await
    }

    /// Disables accounts inactive since before `cutoff`.
    pub async fn disable_inactive_accounts(
        &self,
        cutoff: OffsetDateTime,
        now: OffsetDateTime,
        dry_run: bool,
    ) -> Result<i64, StoreError> {
        let query = if dry_run {
            sqlx::query_as("SELECT count(*) FROM users WHERE NOT disabled AND COALESCE(last_login_at, created_at) < $1")
                .bind(cutoff)
        } else {
            sqlx::query_as(
                "WITH changed AS (UPDATE users SET disabled = true, updated_at = $2 WHERE NOT disabled \
                 AND COALESCE(last_login_at, created_at) < $1 RETURNING 1) SELECT count(*) FROM changed",
            )
            .bind(cutoff)
            .bind(now)
        };
        let (n,): (i64,) = query.fetch_one(&self.pool).await?;
        Ok(n)
    }
}
