//! The `refresh_families` and `refresh_tokens` tables: one family per login, with the account's
//! credential epoch at its start, and the hashes of its opaque tokens, which rotate on every
//! use. The family row is the one place its state lives: rotation locks it, revocation updates
//! it, and a token is valid only while its family is neither revoked nor expired, so a
//! revocation racing a rotation also ends the token the rotation issued.

use sqlx::Row;
use time::OffsetDateTime;
use uuid::Uuid;

use super::db::{Db, Postgres, Tables};
use super::{StoreError, locked};

/// What a family grants, and how its user authenticated (the ID tokens a refresh issues
/// repeat it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FamilyGrant {
    /// Granted scopes, space-separated.
    pub scope: String,
    /// When the user authenticated (`None` for families started before this was recorded).
    pub auth_time: Option<OffsetDateTime>,
    /// Authentication methods (RFC 8176), e.g. `pwd`.
    pub amr: Vec<String>,
    /// Authentication context class, when one was asserted.
    pub acr: Option<String>,
    /// An `offline_access` grant: it outlives the session that started it.
    pub offline: bool,
}

/// A family to start, with its first token.
#[derive(Clone, Debug)]
pub struct NewFamily<'a> {
    /// Family id.
    pub family_id: Uuid,
    /// Owner.
    pub user_id: Uuid,
    /// Public id of the session that started it.
    pub session_id: &'a str,
    /// Client, when not the realm's own API.
    pub client_id: Option<&'a str>,
    /// The owner's credential epoch when the login checked the password.
    pub credential_epoch: i64,
    /// SHA-256 of the first token.
    pub token_hash: &'a [u8],
    /// Now.
    pub issued_at: OffsetDateTime,
    /// Idle expiry of the first token.
    pub token_expires_at: OffsetDateTime,
    /// Absolute expiry of the family.
    pub expires_at: OffsetDateTime,
    /// What it grants.
    pub grant: FamilyGrant,
}

/// What happened to a presented refresh token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RotateOutcome {
    /// It was valid and is now used; a successor was stored.
    Rotated {
        /// The family (the grant id).
        family_id: Uuid,
        /// Owner.
        user_id: Uuid,
        /// Session of the family.
        session_id: String,
        /// Client of the family.
        client_id: Option<String>,
        /// What the family grants.
        grant: FamilyGrant,
    },
    /// It had been used before: the whole family is now revoked.
    Reused {
        /// Session of the revoked family.
        session_id: String,
        /// The revoked family (the grant id).
        family_id: Uuid,
        /// Client of the revoked family (`None`: the realm's own API).
        client_id: Option<String>,
    },
    /// Unknown, expired, revoked, or of an account that changed its credentials or was
    /// disabled since the family started (the family is then revoked).
    Invalid,
}

/// Where a refresh token stands, read without using it (revocation, introspection).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshStanding {
    /// Its family (grant id).
    pub family_id: Uuid,
    /// Owner.
    pub user_id: Uuid,
    /// Client of the family.
    pub client_id: Option<String>,
    /// What the family grants.
    pub scope: String,
    /// When it stops working (its idle expiry, at most the family's).
    pub expires_at: OffsetDateTime,
    /// When it was issued.
    pub issued_at: OffsetDateTime,
    /// Whether it would be accepted now: unused, unexpired, its family live and its account
    /// enabled at the family's credential epoch.
    pub active: bool,
}

/// A family in memory.
#[derive(Clone, Debug)]
pub(super) struct FamilyRow {
    created_at: OffsetDateTime,
    user_id: Uuid,
    session_id: String,
    client_id: Option<String>,
    credential_epoch: i64,
    expires_at: OffsetDateTime,
    revoked_at: Option<OffsetDateTime>,
    grant: FamilyGrant,
}

/// Revokes the live families in memory that `which` picks; returns their ids, oldest first.
fn revoke_live_where(
    tables: &mut Tables,
    now: OffsetDateTime,
    which: impl Fn(&FamilyRow) -> bool,
) -> Vec<Uuid> {
    let mut revoked: Vec<(OffsetDateTime, Uuid)> = Vec::new();
    for (id, family) in &mut tables.families {
        if family.revoked_at.is_none() && which(family) {
            family.revoked_at = Some(now);
            revoked.push((family.created_at, *id));
        }
    }
    revoked.sort();
    revoked.into_iter().map(|(_, id)| id).collect()
}

/// A token in memory.
#[derive(Clone, Debug)]
pub(super) struct TokenRow {
    family_id: Uuid,
    issued_at: OffsetDateTime,
    expires_at: OffsetDateTime,
    used_at: Option<OffsetDateTime>,
}

/// Where a presented token stands, once its family is locked.
enum Standing {
    /// Rotate it.
    Usable,
    /// Used before: a replay.
    Replayed,
    /// Revoke the family (credentials changed or account disabled) and refuse.
    Stale,
    /// Refuse.
    Dead,
}

/// The one decision rotation makes, for both stores.
fn standing(
    token_expires_at: OffsetDateTime,
    token_used: bool,
    family: &FamilyRow,
    account: Option<(i64, bool)>,
    now: OffsetDateTime,
) -> Standing {
    if family.revoked_at.is_some() || family.expires_at <= now {
        return Standing::Dead;
    }
    match account {
        Some((epoch, disabled)) if epoch == family.credential_epoch && !disabled => {}
        _ => return Standing::Stale,
    }
    if token_used {
        Standing::Replayed
    } else if token_expires_at <= now {
        Standing::Dead
    } else {
        Standing::Usable
    }
}

impl Db {
    /// Starts a family with its first token, only if the account is enabled and still at the
    /// family's credential epoch. Returns whether it was started.
    pub async fn start_refresh_family(&self, family: &NewFamily<'_>) -> Result<bool, StoreError> {
        match self {
            Db::Postgres(pg) => start_in_postgres(pg, family).await,
            Db::Memory(m) => {
                let mut tables = locked(m)?;
                let current = tables
                    .users
                    .get(&family.user_id)
                    .is_some_and(|u| u.credential_epoch == family.credential_epoch && !u.disabled);
                if !current {
                    return Ok(false);
                }
                tables.families.insert(
                    family.family_id,
                    FamilyRow {
                        created_at: family.issued_at,
                        user_id: family.user_id,
                        session_id: family.session_id.to_owned(),
                        client_id: family.client_id.map(str::to_owned),
                        credential_epoch: family.credential_epoch,
                        expires_at: family.expires_at,
                        revoked_at: None,
                        grant: family.grant.clone(),
                    },
                );
                tables.refresh.insert(
                    family.token_hash.to_vec(),
                    TokenRow {
                        family_id: family.family_id,
                        issued_at: family.issued_at,
                        expires_at: family.token_expires_at,
                        used_at: None,
                    },
                );
                Ok(true)
            }
        }
    }

    /// Rotates a refresh token: marks it used and stores its successor (idle expiry
    /// `idle_expiry`, at most the family's), with the family locked. A token presented again
    /// after use revokes its family.
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
                rotate_in_memory(&mut tables, presented, successor, now, idle_expiry)
            }
        }
    }

    /// Revokes the families tied to a session (signed out): every one it started but the
    /// `offline_access` grants, which outlive it.
    pub async fn revoke_refresh_by_session(
        &self,
        session_id: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        match self {
            Db::Postgres(pg) => {
                sqlx::query(
                    "UPDATE refresh_families SET revoked_at = $2 WHERE session_id = $1 AND revoked_at IS NULL \
                     AND NOT offline",
                )
                .bind(session_id)
                .bind(now)
                .execute(&pg.pool)
                .await?;
            }
            Db::Memory(m) => {
                for family in locked(m)?.families.values_mut() {
                    if family.session_id == session_id
                        && family.revoked_at.is_none()
                        && !family.grant.offline
                    {
                        family.revoked_at = Some(now);
                    }
                }
            }
        }
        Ok(())
    }

    /// Revokes a user's live `offline_access` families (the password changed); returns their
    /// ids, oldest first.
    pub async fn revoke_offline_families(
        &self,
        user: Uuid,
        now: OffsetDateTime,
    ) -> Result<Vec<Uuid>, StoreError> {
        match self {
            Db::Postgres(pg) => {
                let rows = sqlx::query(
                    "WITH revoked AS (UPDATE refresh_families SET revoked_at = $2 \
                     WHERE user_id = $1 AND offline AND revoked_at IS NULL \
                     RETURNING family_id, created_at) SELECT family_id FROM revoked ORDER BY created_at, family_id",
                )
                .bind(user)
                .bind(now)
                .fetch_all(&pg.pool)
                .await?;
                Ok(rows.iter().map(|r| r.get("family_id")).collect())
            }
            Db::Memory(m) => Ok(revoke_live_where(&mut *locked(m)?, now, |f| {
                f.user_id == user && f.grant.offline
            })),
        }
    }

    /// Revokes every family of a user except those of `keep_session`; returns the sessions
    /// whose families were revoked.
    pub async fn revoke_user_refresh_tokens(
        &self,
        user: Uuid,
        keep_session: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Vec<String>, StoreError> {
        let mut sessions: Vec<String> = match self {
            Db::Postgres(pg) => {
                let rows = sqlx::query(
                    "UPDATE refresh_families SET revoked_at = $3 WHERE user_id = $1 AND revoked_at IS NULL \
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
                for family in locked(m)?.families.values_mut() {
                    if family.user_id == user
                        && family.revoked_at.is_none()
                        && Some(family.session_id.as_str()) != keep_session
                    {
                        family.revoked_at = Some(now);
                        revoked.push(family.session_id.clone());
                    }
                }
                revoked
            }
        };
        sessions.sort();
        sessions.dedup();
        Ok(sessions)
    }

    /// Revokes one family (a grant: what a replayed authorization code issued, a revoked
    /// refresh token's grant); returns its session id when it was live until now.
    pub async fn revoke_family(
        &self,
        family_id: Uuid,
        now: OffsetDateTime,
    ) -> Result<Option<String>, StoreError> {
        match self {
            Db::Postgres(pg) => {
                let row = sqlx::query(
                    "UPDATE refresh_families SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL \
                     RETURNING session_id",
                )
                .bind(family_id)
                .bind(now)
                .fetch_optional(&pg.pool)
                .await?;
                Ok(row.map(|r| r.get("session_id")))
            }
            Db::Memory(m) => {
                let mut tables = locked(m)?;
                Ok(tables
                    .families
                    .get_mut(&family_id)
                    .filter(|f| f.revoked_at.is_none())
                    .map(|f| {
                        f.revoked_at = Some(now);
                        f.session_id.clone()
                    }))
            }
        }
    }

    /// Revokes a user's live families of one client (the user revoked the app); returns their
    /// ids, oldest first.
    pub async fn revoke_client_families(
        &self,
        user: Uuid,
        client_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<Uuid>, StoreError> {
        match self {
            Db::Postgres(pg) => {
                let rows = sqlx::query(
                    "WITH revoked AS (UPDATE refresh_families SET revoked_at = $3 \
                     WHERE user_id = $1 AND client_id = $2 AND revoked_at IS NULL \
                     RETURNING family_id, created_at) SELECT family_id FROM revoked ORDER BY created_at, family_id",
                )
                .bind(user)
                .bind(client_id)
                .bind(now)
                .fetch_all(&pg.pool)
                .await?;
                Ok(rows.iter().map(|r| r.get("family_id")).collect())
            }
            Db::Memory(m) => Ok(revoke_live_where(&mut *locked(m)?, now, |f| {
                f.user_id == user && f.client_id.as_deref() == Some(client_id)
            })),
        }
    }

    /// Where the refresh token with hash `presented` stands at `now`, if it exists.
    pub async fn refresh_standing(
        &self,
        presented: &[u8],
        now: OffsetDateTime,
    ) -> Result<Option<RefreshStanding>, StoreError> {
        match self {
            Db::Postgres(pg) => {
                let Some(row) = sqlx::query(
                    "SELECT t.family_id, t.issued_at, t.expires_at AS token_expires_at, t.used_at, \
                     f.created_at, f.user_id, f.session_id, f.client_id, f.credential_epoch, f.expires_at, \
                     f.revoked_at, f.scope, f.auth_time, f.amr, f.acr, f.offline, \
                     u.credential_epoch AS account_epoch, u.disabled \
                     FROM refresh_tokens t JOIN refresh_families f USING (family_id) \
                     LEFT JOIN users u ON u.id = f.user_id WHERE t.token_hash = $1",
                )
                .bind(presented)
                .fetch_optional(&pg.pool)
                .await?
                else {
                    return Ok(None);
                };
                let family = FamilyRow {
                    created_at: row.get("created_at"),
                    user_id: row.get("user_id"),
                    session_id: row.get("session_id"),
                    client_id: row.get("client_id"),
                    credential_epoch: row.get("credential_epoch"),
                    expires_at: row.get("expires_at"),
                    revoked_at: row.get("revoked_at"),
                    grant: FamilyGrant {
                        scope: row.get("scope"),
                        auth_time: row.get("auth_time"),
                        amr: row.get("amr"),
                        acr: row.get("acr"),
                        offline: row.get("offline"),
                    },
                };
                let account_epoch: Option<i64> = row.get("account_epoch");
                let disabled: Option<bool> = row.get("disabled");
                let used: Option<OffsetDateTime> = row.get("used_at");
                let token_expires_at: OffsetDateTime = row.get("token_expires_at");
                Ok(Some(standing_of(
                    row.get("family_id"),
                    row.get("issued_at"),
                    token_expires_at,
                    used.is_some(),
                    &family,
                    account_epoch.zip(disabled),
                    now,
                )))
            }
            Db::Memory(m) => {
                let tables = locked(m)?;
                let Some(token) = tables.refresh.get(presented) else {
                    return Ok(None);
                };
                let Some(family) = tables.families.get(&token.family_id) else {
                    return Ok(None);
                };
                let account = tables
                    .users
                    .get(&family.user_id)
                    .map(|u| (u.credential_epoch, u.disabled));
                Ok(Some(standing_of(
                    token.family_id,
                    token.issued_at,
                    token.expires_at,
                    token.used_at.is_some(),
                    family,
                    account,
                    now,
                )))
            }
        }
    }

    /// Moves the live families of a session to `credential_epoch` (the session that changed
    /// the password keeps its tokens).
    pub async fn restamp_session_families(
        &self,
        session_id: &str,
        credential_epoch: i64,
    ) -> Result<(), StoreError> {
        match self {
            Db::Postgres(pg) => {
                sqlx::query(
                    "UPDATE refresh_families SET credential_epoch = $2 WHERE session_id = $1 AND revoked_at IS NULL",
                )
                .bind(session_id)
                .bind(credential_epoch)
                .execute(&pg.pool)
                .await?;
            }
            Db::Memory(m) => {
                for family in locked(m)?.families.values_mut() {
                    if family.session_id == session_id && family.revoked_at.is_none() {
                        family.credential_epoch = credential_epoch;
                    }
                }
            }
        }
        Ok(())
    }
}

fn standing_of(
    family_id: Uuid,
    issued_at: OffsetDateTime,
    token_expires_at: OffsetDateTime,
    used: bool,
    family: &FamilyRow,
    account: Option<(i64, bool)>,
    now: OffsetDateTime,
) -> RefreshStanding {
    RefreshStanding {
        family_id,
        user_id: family.user_id,
        client_id: family.client_id.clone(),
        scope: family.grant.scope.clone(),
        expires_at: token_expires_at.min(family.expires_at),
        issued_at,
        active: matches!(
            standing(token_expires_at, used, family, account, now),
            Standing::Usable
        ),
    }
}

async fn start_in_postgres(pg: &Postgres, family: &NewFamily<'_>) -> Result<bool, StoreError> {
    let mut tx = pg.pool.begin().await?;
    let started = sqlx::query(
        "INSERT INTO refresh_families (family_id, user_id, session_id, client_id, credential_epoch, \
         created_at, expires_at, scope, auth_time, amr, acr, offline) \
         SELECT $1, id, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12 FROM users \
         WHERE id = $2 AND credential_epoch = $5 AND NOT disabled",
    )
    .bind(family.family_id)
    .bind(family.user_id)
    .bind(family.session_id)
    .bind(family.client_id)
    .bind(family.credential_epoch)
    .bind(family.issued_at)
    .bind(family.expires_at)
    .bind(&family.grant.scope)
    .bind(family.grant.auth_time)
    .bind(&family.grant.amr)
    .bind(family.grant.acr.as_deref())
    .bind(family.grant.offline)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !started {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, family_id, issued_at, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(family.token_hash)
    .bind(family.family_id)
    .bind(family.issued_at)
    .bind(family.token_expires_at)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

async fn rotate_in_postgres(
    pg: &Postgres,
    presented: &[u8],
    successor: &[u8],
    now: OffsetDateTime,
    idle_expiry: OffsetDateTime,
) -> Result<RotateOutcome, StoreError> {
    let mut tx = pg.pool.begin().await?;
    let Some(token) = sqlx::query("SELECT family_id FROM refresh_tokens WHERE token_hash = $1")
        .bind(presented)
        .fetch_optional(&mut *tx)
        .await?
    else {
        return Ok(RotateOutcome::Invalid);
    };
    let family_id: Uuid = token.get("family_id");
    // The family row is locked before anything else: a revocation waits for this rotation and
    // then covers the successor; a second rotation of the same token sees it used.
    let Some(row) = sqlx::query(
        "SELECT f.created_at, f.user_id, f.session_id, f.client_id, f.credential_epoch, f.expires_at, f.revoked_at, \
         f.scope, f.auth_time, f.amr, f.acr, f.offline, u.credential_epoch AS account_epoch, u.disabled FROM refresh_families f \
         LEFT JOIN users u ON u.id = f.user_id WHERE f.family_id = $1 FOR UPDATE OF f",
    )
    .bind(family_id)
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(RotateOutcome::Invalid);
    };
    let family = FamilyRow {
        created_at: row.get("created_at"),
        user_id: row.get("user_id"),
        session_id: row.get("session_id"),
        client_id: row.get("client_id"),
        credential_epoch: row.get("credential_epoch"),
        expires_at: row.get("expires_at"),
        revoked_at: row.get("revoked_at"),
        grant: FamilyGrant {
            scope: row.get("scope"),
            auth_time: row.get("auth_time"),
            amr: row.get("amr"),
            acr: row.get("acr"),
            offline: row.get("offline"),
        },
    };
    let account_epoch: Option<i64> = row.get("account_epoch");
    let disabled: Option<bool> = row.get("disabled");
    let account = account_epoch.zip(disabled);
    let token = sqlx::query("SELECT expires_at, used_at FROM refresh_tokens WHERE token_hash = $1")
        .bind(presented)
        .fetch_one(&mut *tx)
        .await?;
    let used: Option<OffsetDateTime> = token.get("used_at");
    let outcome = match standing(
        token.get("expires_at"),
        used.is_some(),
        &family,
        account,
        now,
    ) {
        Standing::Dead => RotateOutcome::Invalid,
        Standing::Stale => {
            revoke_family(&mut tx, family_id, now).await?;
            RotateOutcome::Invalid
        }
        Standing::Replayed => {
            revoke_family(&mut tx, family_id, now).await?;
            RotateOutcome::Reused {
                session_id: family.session_id,
                family_id,
                client_id: family.client_id,
            }
        }
        Standing::Usable => {
            sqlx::query("UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1")
                .bind(presented)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO refresh_tokens (token_hash, family_id, issued_at, expires_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(successor)
            .bind(family_id)
            .bind(now)
            .bind(idle_expiry.min(family.expires_at))
            .execute(&mut *tx)
            .await?;
            RotateOutcome::Rotated {
                family_id,
                user_id: family.user_id,
                session_id: family.session_id,
                client_id: family.client_id,
                grant: family.grant,
            }
        }
    };
    tx.commit().await?;
    Ok(outcome)
}

async fn revoke_family(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    family_id: Uuid,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE refresh_families SET revoked_at = $2 WHERE family_id = $1")
        .bind(family_id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn rotate_in_memory(
    tables: &mut Tables,
    presented: &[u8],
    successor: &[u8],
    now: OffsetDateTime,
    idle_expiry: OffsetDateTime,
) -> Result<RotateOutcome, StoreError> {
    let Some(token) = tables.refresh.get(presented).cloned() else {
        return Ok(RotateOutcome::Invalid);
    };
    let Some(family) = tables.families.get(&token.family_id).cloned() else {
        return Ok(RotateOutcome::Invalid);
    };
    let account = tables
        .users
        .get(&family.user_id)
        .map(|u| (u.credential_epoch, u.disabled));
    let revoke = |tables: &mut Tables| {
        if let Some(f) = tables.families.get_mut(&token.family_id) {
            f.revoked_at = Some(now);
        }
    };
    Ok(
        match standing(
            token.expires_at,
            token.used_at.is_some(),
            &family,
            account,
            now,
        ) {
            Standing::Dead => RotateOutcome::Invalid,
            Standing::Stale => {
                revoke(tables);
                RotateOutcome::Invalid
            }
            Standing::Replayed => {
                revoke(tables);
                RotateOutcome::Reused {
                    session_id: family.session_id,
                    family_id: token.family_id,
                    client_id: family.client_id,
                }
            }
            Standing::Usable => {
                if let Some(t) = tables.refresh.get_mut(presented) {
                    t.used_at = Some(now);
                }
                tables.refresh.insert(
                    successor.to_vec(),
                    TokenRow {
                        family_id: token.family_id,
                        issued_at: now,
                        expires_at: idle_expiry.min(family.expires_at),
                        used_at: None,
                    },
                );
                RotateOutcome::Rotated {
                    family_id: token.family_id,
                    user_id: family.user_id,
                    session_id: family.session_id,
                    client_id: family.client_id,
                    grant: family.grant,
                }
            }
        },
    )
}
