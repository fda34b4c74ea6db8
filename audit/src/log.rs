//! One handle over either store, as the auth server's `Db` is PostgreSQL or memory.

use time::OffsetDateTime;
use uuid::Uuid;

use crate::chain::{AuditRow, Hash, Head, NewEvent, RecordMeta};
use crate::details::Ident;
use crate::memory::MemoryAuditLog;
use crate::pg::PgAuditLog;
use crate::store::{PageQuery, Pruned, Pseudonymized, StoreError};
use crate::verify::Report;

/// The audit log, in PostgreSQL or in memory (`--dev`).
#[derive(Clone, Debug)]
pub enum AuditLog {
    /// PostgreSQL.
    Postgres(PgAuditLog),
    /// Process memory.
    Memory(MemoryAuditLog),
}

impl From<PgAuditLog> for AuditLog {
    fn from(log: PgAuditLog) -> Self {
        Self::Postgres(log)
    }
}

impl From<MemoryAuditLog> for AuditLog {
    fn from(log: MemoryAuditLog) -> Self {
        Self::Memory(log)
    }
}

impl AuditLog {
    /// Appends `event` as the next row, under a fresh random salt.
    pub async fn append(&self, event: &NewEvent) -> Result<AuditRow, StoreError> {
        match self {
            Self::Postgres(log) => log.append(event).await,
            Self::Memory(log) => log.append(event).await,
        }
    }

    /// The chain head.
    pub async fn head(&self) -> Result<Head, StoreError> {
        match self {
            Self::Postgres(log) => log.head().await,
            Self::Memory(log) => log.head().await,
        }
    }

    /// One page of events by ascending seq.
    pub async fn page(&self, query: &PageQuery) -> Result<Vec<AuditRow>, StoreError> {
        match self {
            Self::Postgres(log) => log.page(query).await,
            Self::Memory(log) => log.page(query).await,
        }
    }

    /// Pseudonymises every row about or by `user` under `erasure_id`, with its record.
    pub async fn pseudonymize_user(
        &self,
        user: Uuid,
        erasure_id: Uuid,
        meta: RecordMeta,
    ) -> Result<Pseudonymized, StoreError> {
        match self {
            Self::Postgres(log) => log.pseudonymize_user(user, erasure_id, meta).await,
            Self::Memory(log) => log.pseudonymize_user(user, erasure_id, meta).await,
        }
    }

    /// Retention's `Pseudonymize`: one bounded batch of the oldest rows before `cutoff`.
    pub async fn pseudonymize_before(
        &self,
        cutoff: OffsetDateTime,
        reference: Ident,
        limit: i64,
        meta: RecordMeta,
    ) -> Result<Pseudonymized, StoreError> {
        match self {
            Self::Postgres(log) => {
                log.pseudonymize_before(cutoff, reference, limit, meta)
                    .await
            }
            Self::Memory(log) => {
                log.pseudonymize_before(cutoff, reference, limit, meta)
                    .await
            }
        }
    }

    /// Deletes the longest prefix older than `cutoff`, with its anchor and record.
    pub async fn prune_prefix(
        &self,
        cutoff: OffsetDateTime,
        meta: RecordMeta,
    ) -> Result<Option<Pruned>, StoreError> {
        match self {
            Self::Postgres(log) => log.prune_prefix(cutoff, meta).await,
            Self::Memory(log) => log.prune_prefix(cutoff, meta).await,
        }
    }

    /// Verifies the whole log against its head (and a head recorded elsewhere, if given).
    pub async fn verify(&self, expect_head: Option<(i64, Hash)>) -> Result<Report, StoreError> {
        match self {
            Self::Postgres(log) => log.verify(expect_head).await,
            Self::Memory(log) => log.verify(expect_head).await,
        }
    }
}
