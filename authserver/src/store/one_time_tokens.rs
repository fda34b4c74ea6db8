//! The `one_time_tokens` table: hashes of mailed email-verification and password-reset tokens.

use sqlx::Row;
use time::OffsetDateTime;
use uuid::Uuid;

use super::db::Db;
use super::{StoreError, locked};

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

/// A token row in memory.
#[derive(Clone, Debug)]
pub(super) struct OneTimeRow {
    user: Uuid,
    purpose: TokenPurpose,
    expires_at: OffsetDateTime,
    used_at: Option<OffsetDateTime>,
}

impl OneTimeRow {
    fn usable(&self, purpose: TokenPurpose, now: OffsetDateTime) -> bool {
        self.purpose == purpose && self.used_at.is_none() && self.expires_at > now
    }
}

/// Runs a statement over one token (`$1` hash, `$2` purpose, `$3` now) that answers its user.
async fn token_user(
    pg: &super::Postgres,
    sql: &'static str,
    hash: &[u8],
    purpose: TokenPurpose,
    now: OffsetDateTime,
) -> Result<Option<Uuid>, StoreError> {
    let row = sqlx::query(sql)
        .bind(hash)
        .bind(purpose.as_str())
        .bind(now)
        .fetch_optional(&pg.pool)
        .await?;
    Ok(row.map(|r| r.get("user_id")))
}

impl Db {
    /// Stores a one-time token hash.
    pub async fn insert_one_time_token(
        &self,
        hash: &[u8],
        user: Uuid,
        purpose: TokenPurpose,
        now: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        match self {
            Db::Postgres(pg) => {
                sqlx::query(
                    "INSERT INTO one_time_tokens (token_hash, user_id, purpose, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(hash)
                .bind(user)
                .bind(purpose.as_str())
                .bind(now)
                .bind(expires_at)
                .execute(&pg.pool)
                .await?;
            }
            Db::Memory(m) => {
                let row = OneTimeRow {
                    user,
                    purpose,
                    expires_at,
                    used_at: None,
                };
                let mut tables = locked(m)?;
                if tables.one_time.contains_key(hash) {
                    return Err(StoreError::Duplicate("token"));
                }
                tables.one_time.insert(hash.to_vec(), row);
            }
        }
        Ok(())
    }

    /// The user of a one-time token that is still unused and unexpired, without using it.
    pub async fn peek_one_time_token(
        &self,
        hash: &[u8],
        purpose: TokenPurpose,
        now: OffsetDateTime,
    ) -> Result<Option<Uuid>, StoreError> {
        match self {
            Db::Postgres(pg) => {
                let sql = "SELECT user_id FROM one_time_tokens WHERE token_hash = $1 AND purpose = $2 \
                           AND used_at IS NULL AND expires_at > $3";
                token_user(pg, sql, hash, purpose, now).await
            }
            Db::Memory(m) => Ok(locked(m)?
                .one_time
                .get(hash)
                .filter(|row| row.usable(purpose, now))
                .map(|row| row.user)),
        }
    }

    /// Uses a one-time token: returns its user when it was unused and unexpired. Single use is
    /// atomic: of two concurrent uses, one gets the user.
    pub async fn consume_one_time_token(
        &self,
        hash: &[u8],
        purpose: TokenPurpose,
        now: OffsetDateTime,
    ) -> Result<Option<Uuid>, StoreError> {
        match self {
            Db::Postgres(pg) => {
                let sql = "UPDATE one_time_tokens SET used_at = $3 WHERE token_hash = $1 AND purpose = $2 \
                           AND used_at IS NULL AND expires_at > $3 RETURNING user_id";
                token_user(pg, sql, hash, purpose, now).await
            }
            Db::Memory(m) => Ok(locked(m)?
                .one_time
                .get_mut(hash)
                .filter(|row| row.usable(purpose, now))
                .map(|row| {
                    row.used_at = Some(now);
                    row.user
                })),
        }
    }

    /// Uses up every outstanding token of `purpose` of a user (a reset succeeded, or the
    /// password changed: older reset links must not set it again).
    pub async fn void_one_time_tokens(
        &self,
        user: Uuid,
        purpose: TokenPurpose,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        match self {
            Db::Postgres(pg) => {
                sqlx::query(
                    "UPDATE one_time_tokens SET used_at = $3 WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL",
                )
                .bind(user)
                .bind(purpose.as_str())
                .bind(now)
                .execute(&pg.pool)
                .await?;
            }
            Db::Memory(m) => {
                for row in locked(m)?.one_time.values_mut() {
                    if row.user == user && row.purpose == purpose && row.used_at.is_none() {
                        row.used_at = Some(now);
                    }
                }
            }
        }
        Ok(())
    }
}
