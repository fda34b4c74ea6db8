//! The `known_devices` table (the devices an account signed in from, as digests) and the
//! once-per-credential-epoch marker of breached-password notices.

use time::OffsetDateTime;
use uuid::Uuid;

use super::db::Db;
use super::{StoreError, locked};

/// How a device was recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// By its device cookie.
    Cookie,
    /// By its user agent and address prefix (clients that keep no cookie).
    Fingerprint,
}

impl DeviceKind {
    fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Cookie => "cookie",
            DeviceKind::Fingerprint => "fingerprint",
        }
    }
}

/// One known device in memory (the `--dev` and unit-test twin of a row).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRow {
    /// The digest.
    pub hash: [u8; 32],
    /// How it was recognised.
    pub kind: DeviceKind,
    /// Last sign-in from it.
    pub last_seen_at: OffsetDateTime,
}

impl Db {
    /// The digests of the devices `user` signed in from.
    pub async fn known_devices(&self, user: Uuid) -> Result<Vec<[u8; 32]>, StoreError> {
        match self {
            Db::Postgres(pg) => {
                let rows: Vec<(Vec<u8>,)> =
                    sqlx::query_as("SELECT device_hash FROM known_devices WHERE user_id = $1")
                        .bind(user)
                        .fetch_all(&pg.pool)
                        .await?;
                Ok(rows
                    .into_iter()
                    .filter_map(|(hash,)| <[u8; 32]>::try_from(hash.as_slice()).ok())
                    .collect())
            }
            Db::Memory(m) => Ok(locked(m)?
                .known_devices
                .get(&user)
                .map(|rows| rows.iter().map(|r| r.hash).collect())
                .unwrap_or_default()),
        }
    }

    /// Records sign-ins from `devices` at `now` and keeps the `cap` most recently seen.
    pub async fn remember_devices(
        &self,
        user: Uuid,
        devices: &[([u8; 32], DeviceKind)],
        now: OffsetDateTime,
        cap: usize,
    ) -> Result<(), StoreError> {
        match self {
            Db::Postgres(pg) => {
                let mut tx = pg.pool.begin().await?;
                for (hash, kind) in devices {
                    sqlx::query(
                        "INSERT INTO known_devices (user_id, device_hash, kind, first_seen_at, last_seen_at) \
                         VALUES ($1, $2, $3, $4, $4) \
                         ON CONFLICT (user_id, device_hash) DO UPDATE SET last_seen_at = EXCLUDED.last_seen_at",
                    )
                    .bind(user)
                    .bind(hash.as_slice())
                    .bind(kind.as_str())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query(
                    "DELETE FROM known_devices WHERE user_id = $1 AND device_hash NOT IN \
                     (SELECT device_hash FROM known_devices WHERE user_id = $1 \
                      ORDER BY last_seen_at DESC, first_seen_at DESC LIMIT $2)",
                )
                .bind(user)
                .bind(i64::try_from(cap).unwrap_or(i64::MAX))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }
            Db::Memory(m) => {
                let mut tables = locked(m)?;
                let rows = tables.known_devices.entry(user).or_default();
                for (hash, kind) in devices {
                    match rows.iter_mut().find(|r| r.hash == *hash) {
                        Some(row) => row.last_seen_at = now,
                        None => rows.push(DeviceRow {
                            hash: *hash,
                            kind: *kind,
                            last_seen_at: now,
                        }),
                    }
                }
                rows.sort_by_key(|r| std::cmp::Reverse(r.last_seen_at));
                rows.truncate(cap);
                Ok(())
            }
        }
    }

    /// Whether the breached-password notice of `user`'s credential `epoch` was already sent
    /// (or the account moved on to another epoch, so nothing is left to tell).
    pub async fn breach_noticed(&self, user: Uuid, epoch: i64) -> Result<bool, StoreError> {
        match self {
            Db::Postgres(pg) => {
                let row: Option<(i64, Option<i64>)> = sqlx::query_as(
                    "SELECT credential_epoch, breach_noticed_epoch FROM users WHERE id = $1",
                )
                .bind(user)
                .fetch_optional(&pg.pool)
                .await?;
                Ok(row.is_none_or(|(current, noticed)| current != epoch || noticed == Some(epoch)))
            }
            Db::Memory(m) => {
                let tables = locked(m)?;
                let current = tables.users.get(&user).map(|u| u.credential_epoch);
                Ok(current != Some(epoch) || tables.breach_noticed.get(&user) == Some(&epoch))
            }
        }
    }

    /// Marks the breached-password notice of `user`'s credential `epoch` as sent; false when it
    /// already was (so replicas checking one password at once notify once).
    pub async fn mark_breach_noticed(&self, user: Uuid, epoch: i64) -> Result<bool, StoreError> {
        match self {
            Db::Postgres(pg) => {
                let result = sqlx::query(
                    "UPDATE users SET breach_noticed_epoch = $2 WHERE id = $1 \
                     AND credential_epoch = $2 AND breach_noticed_epoch IS DISTINCT FROM $2",
                )
                .bind(user)
                .bind(epoch)
                .execute(&pg.pool)
                .await?;
                Ok(result.rows_affected() == 1)
            }
            Db::Memory(m) => {
                let mut tables = locked(m)?;
                let current = tables.users.get(&user).map(|u| u.credential_epoch);
                if current != Some(epoch) || tables.breach_noticed.get(&user) == Some(&epoch) {
                    return Ok(false);
                }
                tables.breach_noticed.insert(user, epoch);
                Ok(true)
            }
        }
    }
}
