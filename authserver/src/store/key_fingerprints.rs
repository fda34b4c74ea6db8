//! The `key_fingerprints` table: which keys protect the stored data, by fingerprint. Rows are
//! only ever added; what a fingerprint means is the domain's (`auth::key_fingerprints`).

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

impl Db {
    /// Every recorded fingerprint, by kind and key id.
    pub async fn key_fingerprints(&self) -> Result<Vec<KeyFingerprintRow>, StoreError> {
        match self {
            Db::Postgres(pg) => {
                let rows = sqlx::query(
                    "SELECT kind, key_id, fingerprint, recorded_at FROM key_fingerprints ORDER BY kind, key_id",
                )
                .fetch_all(&pg.pool)
                .await?;
                Ok(rows
                    .iter()
                    .map(|r| KeyFingerprintRow {
                        kind: r.get("kind"),
                        key_id: r.get("key_id"),
                        fingerprint: r.get("fingerprint"),
                        recorded_at: r.get("recorded_at"),
                    })
                    .collect())
            }
            Db::Memory(m) => Ok(locked(m)?.key_fingerprints.values().cloned().collect()),
        }
    }

    /// Records fingerprints not recorded yet; a (kind, key id) already recorded keeps its row
    /// (replicas starting together record each key once; the caller reads back and compares).
    /// Rows are inserted in (kind, key id) order, so replicas that list the same keys in
    /// another order wait for each other instead of deadlocking.
    pub async fn add_key_fingerprints(&self, rows: &[KeyFingerprintRow]) -> Result<(), StoreError> {
        let mut rows: Vec<&KeyFingerprintRow> = rows.iter().collect();
        rows.sort_by(|a, b| (&a.kind, &a.key_id).cmp(&(&b.kind, &b.key_id)));
        match self {
            Db::Postgres(pg) => {
                let mut tx = pg.pool.begin().await?;
                for row in &rows {
                    sqlx::query(
                        "INSERT INTO key_fingerprints (kind, key_id, fingerprint, recorded_at) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (kind, key_id) DO NOTHING",
                    )
                    .bind(&row.kind)
                    .bind(&row.key_id)
                    .bind(&row.fingerprint)
                    .bind(row.recorded_at)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
            }
            Db::Memory(m) => {
                let mut tables = locked(m)?;
                for row in rows {
                    tables
                        .key_fingerprints
                        .entry((row.kind.clone(), row.key_id.clone()))
                        .or_insert_with(|| row.clone());
                }
            }
        }
        Ok(())
    }
}
