//! The `key_fingerprints` table: which keys protect the stored data, by fingerprint. Rows are
//! only ever added; what a fingerprint means, and whether a start may add to them, is the
//! domain's (`auth::key_fingerprints`, `startup::keys_check`).

use sqlx::Row;
use time::OffsetDateTime;

use super::db::Db;
use super::{StoreError, locked};

/// One recorded fingerprint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFingerprintRow {
    /// The kind of key (`pepper`, `fernet`).
    pub kind: String,
    /// The key's id within its kind.
    pub key_id: String,
    /// The fingerprint (32 bytes).
    pub fingerprint: Vec<u8>,
    /// When it was first recorded.
    pub recorded_at: OffsetDateTime,
}

const SELECT: &str =
    "SELECT kind, key_id, fingerprint, recorded_at FROM key_fingerprints ORDER BY kind, key_id";

fn row_of(r: &sqlx::postgres::PgRow) -> KeyFingerprintRow {
    KeyFingerprintRow {
        kind: r.get("kind"),
        key_id: r.get("key_id"),
        fingerprint: r.get("fingerprint"),
        recorded_at: r.get("recorded_at"),
    }
}

impl Db {
    /// Every recorded fingerprint, by kind and key id.
    pub async fn key_fingerprints(&self) -> Result<Vec<KeyFingerprintRow>, StoreError> {
        match self {
            Db::Postgres(pg) => Ok(sqlx::query(SELECT)
                .fetch_all(&pg.pool)
                .await?
                .iter()
                .map(row_of)
                .collect()),
            Db::Memory(m) => Ok(locked(m)?.key_fingerprints.values().cloned().collect()),
        }
    }

    /// Reads the recorded fingerprints, asks `decide` what to add to them, and adds it — or,
    /// when `decide` refuses, adds nothing and returns its refusal. One start at a time: the
    /// table is locked against other recorders from the read to the commit, so replicas
    /// starting together each decide on what the others recorded, and a refused start leaves
    /// no row behind. Plain reads are not blocked.
    pub async fn record_key_fingerprints<E>(
        &self,
        decide: impl FnOnce(Vec<KeyFingerprintRow>) -> Result<Vec<KeyFingerprintRow>, E>,
    ) -> Result<Result<(), E>, StoreError> {
        match self {
            Db::Postgres(pg) => {
                let mut tx = pg.pool.begin().await?;
                // SHARE ROW EXCLUSIVE conflicts with itself, not with SELECT.
                sqlx::query("LOCK TABLE key_fingerprints IN SHARE ROW EXCLUSIVE MODE")
                    .execute(&mut *tx)
                    .await?;
                let recorded = sqlx::query(SELECT)
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(row_of)
                    .collect();
                let new = match decide(recorded) {
                    Ok(new) => new,
                    Err(refused) => {
                        tx.rollback().await?;
                        return Ok(Err(refused));
                    }
                };
                for row in &new {
                    sqlx::query(
                        "INSERT INTO key_fingerprints (kind, key_id, fingerprint, recorded_at) \
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(&row.kind)
                    .bind(&row.key_id)
                    .bind(&row.fingerprint)
                    .bind(row.recorded_at)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(Ok(()))
            }
            Db::Memory(m) => {
                let mut tables = locked(m)?;
                let recorded = tables.key_fingerprints.values().cloned().collect();
                let new = match decide(recorded) {
                    Ok(new) => new,
                    Err(refused) => return Ok(Err(refused)),
                };
                for row in new {
                    tables
                        .key_fingerprints
                        .entry((row.kind.clone(), row.key_id.clone()))
                        .or_insert(row);
                }
                Ok(Ok(()))
            }
        }
    }
}
