//! The `refresh_tokens` table: hashes of opaque refresh tokens, in families (one per login)
//! that rotate on every use and die together when a used token comes back.

use sqlx::Row;
use time::OffsetDateTime;
use uuid::Uuid;

use super::db::Db;
use super::{StoreError, locked};

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

/// A token row in memory.
#[derive(Clone, Debug)]
pub(super) struct RefreshRow {
    family_id: Uuid,
    user_id: Uuid,
    session_id: String,
    client_id: Option<String>,
    expires_at: OffsetDateTime,
    family_expires_at: OffsetDateTime,
    used_at: Option<OffsetDateTime>,
    revoked_at: Option<OffsetDateTime>,
}

impl From<&NewRefreshToken<'_>> for RefreshRow {
    fn from(token: &NewRefreshToken<'_>) -> Self {
        Self {
            family_id: token.family_id,
            user_id: token.user_id,
            session_id: token.session_id.to_owned(),
            client_id: token.client_id.map(str::to_owned),
            expires_at: token.expires_at,
            family_expires_at: token.family_expires_at,
            used_at: None,
            revoked_at: None,
        }
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

impl Db {
    /// Stores a refresh token.
    pub async fn insert_refresh_token(
        &self,
        token: &NewRefreshToken<'_>,
    ) -> Result<(), StoreError> {
        match self {
            Db::Postgres(pg) => insert_refresh(&pg.pool, token).await,
            Db::Memory(m) => {
                locked(m)?
                    .refresh
                    .insert(token.token_hash.to_vec(), RefreshRow::from(token));
                Ok(())
            }
        }
    }

    /// Rotates a refresh token: marks it used and stores its successor (same family and
    /// absolute expiry, idle expiry `idle_expiry` at most) in one transaction. A token
    /// presented again after use revokes its whole family.
    pub async fn rotate_refresh_token(
        &self,
        presented: &[u8],
        successor: &[u8],
        now: OffsetDateTime,
        idle_expiry: OffsetDateTime,
    ) -> Result<RotateOutcome, StoreError> {
        match self {
            Db::Postgres(pg) => {
                rotate_in_postgres(pg, presented, successor, now, idle_expiry).await
            }
            Db::Memory(m) => {
                let mut tables = locked(m)?;
                let Some(row) = tables.refresh.get(presented).cloned() else {
                    return Ok(RotateOutcome::Invalid);
                };
                let valid = row.used_at.is_none()
                    && row.revoked_at.is_none()
                    && row.expires_at > now
                    && row.family_expires_at > now;
                if valid {
                    let mut used = row.clone();
                    used.used_at = Some(now);
                    tables.refresh.insert(presented.to_vec(), used);
                    let next = RefreshRow {
                        expires_at: idle_expiry.min(row.family_expires_at),
                        ..row.clone()
                    };
                    tables.refresh.insert(successor.to_vec(), next);
                    return Ok(RotateOutcome::Rotated {
                        user_id: row.user_id,
                        session_id: row.session_id,
                        client_id: row.client_id,
                    });
                }
                if row.used_at.is_none() || row.revoked_at.is_some() {
                    return Ok(RotateOutcome::Invalid);
                }
                for other in tables.refresh.values_mut() {
                    if other.family_id == row.family_id && other.revoked_at.is_none() {
                        other.revoked_at = Some(now);
                    }
                }
                Ok(RotateOutcome::Reused {
                    session_id: row.session_id,
                })
            }
        }
    }

    /// Revokes the refresh tokens started by a session.
    pub async fn revoke_refresh_by_session(
        &self,
        session_id: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        match self {
            Db::Postgres(pg) => {
                sqlx::query(
                    "UPDATE refresh_tokens SET revoked_at = $2 WHERE session_id = $1 AND revoked_at IS NULL",
                )
                .bind(session_id)
                .bind(now)
                .execute(&pg.pool)
                .await?;
            }
            Db::Memory(m) => {
                for row in locked(m)?.refresh.values_mut() {
                    if row.session_id == session_id && row.revoked_at.is_none() {
                        row.revoked_at = Some(now);
                    }
                }
            }
        }
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
        let mut sessions: Vec<String> = match self {
            Db::Postgres(pg) => {
                let rows = sqlx::query(
                    "UPDATE refresh_tokens SET revoked_at = $3 WHERE user_id = $1 AND revoked_at IS NULL \
                     AND ($2::text IS NULL OR session_id <> $2) RETURNING session_id",
                )
                .bind(user)
                .bind(keep_session)
                .bind(now)
                .fetch_all(&pg.pool)
                .await?;
                rows.iter().map(|r| r.get("session_id")).collect()
            }
            Db::Memory(m) => {
                let mut revoked = Vec::new();
                for row in locked(m)?.refresh.values_mut() {
                    if row.user_id == user
                        && row.revoked_at.is_none()
                        && Some(row.session_id.as_str()) != keep_session
                    {
                        row.revoked_at = Some(now);
                        revoked.push(row.session_id.clone());
                    }
                }
                revoked
            }
        };
        sessions.sort();
        sessions.dedup();
        Ok(sessions)
    }
}

async fn rotate_in_postgres(
    pg: &super::Postgres,
    presented: &[u8],
    successor: &[u8],
    now: OffsetDateTime,
    idle_expiry: OffsetDateTime,
) -> Result<RotateOutcome, StoreError> {
    let mut tx = pg.pool.begin().await?;
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
    let known = sqlx::query(
        "SELECT family_id, session_id, used_at, revoked_at FROM refresh_tokens WHERE token_hash = $1",
    )
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
