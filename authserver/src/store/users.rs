//! The `users` table: accounts, their password hash and their state.

use sqlx::FromRow;
use time::OffsetDateTime;
use uuid::Uuid;

use super::db::Db;
use super::{StoreError, locked};

/// An account.
#[derive(Clone, FromRow)]
pub struct UserRecord {
    /// Id.
    pub id: Uuid,
    /// Email as entered.
    pub email: String,
    /// Canonical email: unique, verified, and where every mail goes.
    pub email_canonical: String,
    /// Display name.
    pub display_name: Option<String>,
    /// bcrypt hash; `None` for an account created by social sign-in that has not set a
    /// password (no password signs in to it).
    pub password_hash: Option<String>,
    /// Pepper version of the hash.
    pub pepper_version: String,
    /// Whether the email is verified.
    pub email_verified: bool,
    /// Whether an admin (or retention) disabled the account.
    pub disabled: bool,
    /// Registration time.
    pub created_at: OffsetDateTime,
    /// Last successful login.
    pub last_login_at: Option<OffsetDateTime>,
    /// Last granted refresh (written at most once an hour; the inactive-accounts rule).
    pub last_active_at: Option<OffsetDateTime>,
    /// Raised when the password is reset or changed and when the account is disabled; what
    /// was started under an older epoch is no longer valid.
    pub credential_epoch: i64,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .field("email_verified", &self.email_verified)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

/// A new account.
#[derive(Clone)]
pub struct NewUser<'a> {
    /// Id.
    pub id: Uuid,
    /// Email as entered.
    pub email: &'a str,
    /// Canonical email (unique).
    pub email_canonical: &'a str,
    /// Display name.
    pub display_name: Option<&'a str>,
    /// bcrypt hash; `None` for an account made by social sign-in.
    pub password_hash: Option<&'a str>,
    /// Pepper version.
    pub pepper_version: &'a str,
    /// Verified at creation (verification off).
    pub email_verified: bool,
    /// Now.
    pub now: OffsetDateTime,
}

impl std::fmt::Debug for NewUser<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The columns of a [`UserRecord`], for `concat!` into constant statements.
macro_rules! user_columns {
    () => {
        "id, email, email_canonical, display_name, password_hash, pepper_version, \
         email_verified, disabled, created_at, last_login_at, last_active_at, credential_epoch"
    };
}

impl Db {
    /// Creates a user; `Duplicate("email")` when the canonical email is taken.
    pub async fn insert_user(&self, user: &NewUser<'_>) -> Result<(), StoreError> {
        match self {
            Db::Postgres(pg) => {
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
                .execute(&pg.pool)
                .await
                .map_err(|e| match StoreError::from(e) {
                    StoreError::Duplicate(_) => StoreError::Duplicate("email"),
                    other => other,
                })?;
                Ok(())
            }
            Db::Memory(m) => {
                let mut tables = locked(m)?;
                if tables
                    .users
                    .values()
                    .any(|u| u.email_canonical == user.email_canonical)
                {
                    return Err(StoreError::Duplicate("email"));
                }
                tables.users.insert(
                    user.id,
                    UserRecord {
                        id: user.id,
                        email: user.email.to_owned(),
                        email_canonical: user.email_canonical.to_owned(),
                        display_name: user.display_name.map(str::to_owned),
                        password_hash: user.password_hash.map(str::to_owned),
                        pepper_version: user.pepper_version.to_owned(),
                        email_verified: user.email_verified,
                        disabled: false,
                        created_at: user.now,
                        last_login_at: None,
                        last_active_at: None,
                        credential_epoch: 0,
                    },
                );
                Ok(())
            }
        }
    }

    /// A user by canonical email.
    pub async fn user_by_email(
        &self,
        email_canonical: &str,
    ) -> Result<Option<UserRecord>, StoreError> {
        match self {
            Db::Postgres(pg) => Ok(sqlx::query_as(concat!(
                "SELECT ",
                user_columns!(),
                " FROM users WHERE email_canonical = $1"
            ))
            .bind(email_canonical)
            .fetch_optional(&pg.pool)
            .await?),
            Db::Memory(m) => Ok(locked(m)?
                .users
                .values()
                .find(|u| u.email_canonical == email_canonical)
                .cloned()),
        }
    }

    /// A user by id.
    pub async fn user_by_id(&self, id: Uuid) -> Result<Option<UserRecord>, StoreError> {
        match self {
            Db::Postgres(pg) => Ok(sqlx::query_as(concat!(
                "SELECT ",
                user_columns!(),
                " FROM users WHERE id = $1"
            ))
            .bind(id)
            .fetch_optional(&pg.pool)
            .await?),
            Db::Memory(m) => Ok(locked(m)?.users.get(&id).cloned()),
        }
    }

    /// Sets a new password and raises the credential epoch; returns the new epoch.
    pub async fn replace_password(
        &self,
        id: Uuid,
        hash: &str,
        pepper_version: &str,
        now: OffsetDateTime,
    ) -> Result<i64, StoreError> {
        self.write_hash(id, (hash, pepper_version), now, 1).await
    }

    /// Re-hashes the same password (a higher cost or a newer pepper): the credential epoch
    /// stays, since the credentials did not change.
    pub async fn upgrade_password_hash(
        &self,
        id: Uuid,
        hash: &str,
        pepper_version: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.write_hash(id, (hash, pepper_version), now, 0)
            .await
            .map(drop)
    }

    /// Writes a password hash and raises the credential epoch by `epoch_step`; returns it.
    async fn write_hash(
        &self,
        id: Uuid,
        (hash, pepper_version): (&str, &str),
        now: OffsetDateTime,
        epoch_step: i64,
    ) -> Result<i64, StoreError> {
        match self {
            Db::Postgres(pg) => {
                let (epoch,): (i64,) = sqlx::query_as(
                    "UPDATE users SET password_hash = $2, pepper_version = $3, updated_at = $4, \
                     credential_epoch = credential_epoch + $5 WHERE id = $1 RETURNING credential_epoch",
                )
                .bind(id)
                .bind(hash)
                .bind(pepper_version)
                .bind(now)
                .bind(epoch_step)
                .fetch_one(&pg.pool)
                .await?;
                Ok(epoch)
            }
            Db::Memory(m) => {
                let mut tables = locked(m)?;
                let user = tables
                    .users
                    .get_mut(&id)
                    .ok_or_else(|| StoreError::Corrupt(format!("no user {id}")))?;
                user.password_hash = Some(hash.to_owned());
                user.pepper_version = pepper_version.to_owned();
                user.credential_epoch += epoch_step;
                Ok(user.credential_epoch)
            }
        }
    }

    /// Raises the credential epoch without touching the password (a second factor was added:
    /// every session and refresh family from before it ends); returns the new epoch.
    pub async fn raise_credential_epoch(
        &self,
        id: Uuid,
        now: OffsetDateTime,
    ) -> Result<i64, StoreError> {
        match self {
            Db::Postgres(pg) => {
                let (epoch,): (i64,) = sqlx::query_as(
                    "UPDATE users SET updated_at = $2, credential_epoch = credential_epoch + 1 \
                     WHERE id = $1 RETURNING credential_epoch",
                )
                .bind(id)
                .bind(now)
                .fetch_one(&pg.pool)
                .await?;
                Ok(epoch)
            }
            Db::Memory(m) => {
                let mut tables = locked(m)?;
                let user = tables
                    .users
                    .get_mut(&id)
                    .ok_or_else(|| StoreError::Corrupt(format!("no user {id}")))?;
                user.credential_epoch += 1;
                Ok(user.credential_epoch)
            }
        }
    }

    /// Records a successful login (retention measures inactivity from it) and forgets an
    /// inactivity warning.
    pub async fn record_login(&self, id: Uuid, now: OffsetDateTime) -> Result<(), StoreError> {
        match self {
            Db::Postgres(pg) => {
                sqlx::query(
                    "UPDATE users SET last_login_at = $2, inactivity_warned_at = NULL WHERE id = $1",
                )
                .bind(id)
                .bind(now)
                .execute(&pg.pool)
                .await?;
            }
            Db::Memory(m) => {
                if let Some(user) = locked(m)?.users.get_mut(&id) {
                    user.last_login_at = Some(now);
                }
            }
        }
        Ok(())
    }

    /// Deletes an account that was just made and could not be finished (a social sign-up
    /// whose link or policy acceptance failed, a registration whose acceptance failed); its
    /// rows in other tables go with it. Only while nobody has used it: an account that was
    /// signed in to, refreshed or accepted the policy meanwhile stays. Whether it was deleted.
    pub async fn delete_new_user(&self, id: Uuid) -> Result<bool, StoreError> {
        match self {
            Db::Postgres(pg) => Ok(sqlx::query(
                "DELETE FROM users WHERE id = $1 AND last_login_at IS NULL \
                 AND last_active_at IS NULL AND policy_version_accepted IS NULL",
            )
            .bind(id)
            .execute(&pg.pool)
            .await?
            .rows_affected()
                > 0),
            Db::Memory(m) => {
                let mut tables = locked(m)?;
                let unused = tables
                    .users
                    .get(&id)
                    .is_some_and(|u| u.last_login_at.is_none());
                if unused {
                    tables.users.remove(&id);
                }
                Ok(unused)
            }
        }
    }

    /// Records that `id` used the account without signing in (a refresh grant), for the
    /// inactive-accounts rule: at most once an hour, and a pending inactivity warning no longer
    /// stands. The in-memory database keeps no retention state.
    pub async fn record_activity(&self, id: Uuid, now: OffsetDateTime) -> Result<(), StoreError> {
        if let Db::Postgres(pg) = self {
            sqlx::query(
                "UPDATE users SET last_active_at = $2, inactivity_warned_at = NULL WHERE id = $1 \
                 AND NOT disabled AND (last_active_at IS NULL OR last_active_at < $2 - interval '1 hour')",
            )
            .bind(id)
            .bind(now)
            .execute(&pg.pool)
            .await?;
        }
        Ok(())
    }

    /// Marks the email verified.
    pub async fn set_email_verified(
        &self,
        id: Uuid,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        match self {
            Db::Postgres(pg) => {
                sqlx::query(
                    "UPDATE users SET email_verified = true, updated_at = $2 WHERE id = $1",
                )
                .bind(id)
                .bind(now)
                .execute(&pg.pool)
                .await?;
            }
            Db::Memory(m) => {
                if let Some(user) = locked(m)?.users.get_mut(&id) {
                    user.email_verified = true;
                }
            }
        }
        Ok(())
    }

    /// Whether the account has a confirmed TOTP enrolment (`mfa_totp`, migration 0010). The
    /// in-memory database stores no enrolments.
    pub async fn mfa_enrolled(&self, id: Uuid) -> Result<bool, StoreError> {
        match self {
            Db::Postgres(pg) => {
                let (enrolled,): (bool,) = sqlx::query_as(
                    "SELECT EXISTS (SELECT 1 FROM mfa_totp WHERE user_id = $1 AND confirmed_at IS NOT NULL)",
                )
                .bind(id)
                .fetch_one(&pg.pool)
                .await?;
                Ok(enrolled)
            }
            Db::Memory(_) => Ok(false),
        }
    }

    /// Disables an account and raises its credential epoch; returns whether it exists.
    pub async fn disable_user(&self, id: Uuid, now: OffsetDateTime) -> Result<bool, StoreError> {
        match self {
            Db::Postgres(pg) => {
                let result = sqlx::query(
                    "UPDATE users SET disabled = true, updated_at = $2, \
                     credential_epoch = credential_epoch + 1 WHERE id = $1",
                )
                .bind(id)
                .bind(now)
                .execute(&pg.pool)
                .await?;
                Ok(result.rows_affected() == 1)
            }
            Db::Memory(m) => Ok(locked(m)?
                .users
                .get_mut(&id)
                .map(|user| {
                    user.disabled = true;
                    user.credential_epoch += 1;
                })
                .is_some()),
        }
    }
}
