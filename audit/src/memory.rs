//! The in-memory twin of [`crate::PgAuditLog`], for the auth server's `--dev` mode (one
//! replica, no PostgreSQL) and for domain unit tests. Same methods, same results.

use std::sync::{Arc, Mutex, MutexGuard};

use time::OffsetDateTime;
use uuid::Uuid;

use crate::chain::{
    ActorKind, AuditRow, Hash, Head, NewEvent, PRUNED, PSEUDONYMIZED, RecordMeta, Rewrite,
    fresh_salt, genesis, pruned_record, seal,
};
use crate::details::Ident;
use crate::keys::AuditKeys;
use crate::pg::{ERASE_BATCH, PRUNE_BATCH, next_seq};
use crate::store::{
    MAX_PAGE, PageQuery, Plan, Pruned, Pseudonymized, StoreError, erasure_reference,
};
use crate::verify::{Report, Verifier};

/// The rows and the head, under one mutex as the head row's lock serialises PostgreSQL appends.
#[derive(Debug, Default)]
struct Table {
    rows: Vec<AuditRow>,
    head: Head,
}

/// The audit log in process memory. Clones share the log.
#[derive(Clone, Debug)]
pub struct MemoryAuditLog {
    table: Arc<Mutex<Table>>,
    keys: Arc<AuditKeys>,
    realm: String,
}

impl MemoryAuditLog {
    /// An empty log of `realm`, signing with `keys`.
    pub fn new(keys: Arc<AuditKeys>, realm: impl Into<String>) -> Self {
        Self {
            table: Arc::default(),
            keys,
            realm: realm.into(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // Nothing panics while the lock is held between two consistent states, so a poisoned
        // table is still consistent.
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn append_locked(&self, table: &mut Table, event: &NewEvent) -> Result<AuditRow, StoreError> {
        let prev = table.head.hash.unwrap_or_else(|| genesis(&self.realm));
        let row = seal(
            event,
            next_seq(table.head.seq)?,
            prev,
            fresh_salt(),
            &self.keys,
        );
        table.head.seq = row.seq;
        table.head.hash = Some(row.hash);
        table.rows.push(row.clone());
        Ok(row)
    }

    /// Appends `event` as the next row, under a fresh random salt.
    pub async fn append(&self, event: &NewEvent) -> Result<AuditRow, StoreError> {
        let mut table = self.lock();
        self.append_locked(&mut table, event)
    }

    /// The chain head.
    pub async fn head(&self) -> Result<Head, StoreError> {
        Ok(self.lock().head)
    }

    /// One page of events by ascending seq.
    pub async fn page(&self, query: &PageQuery) -> Result<Vec<AuditRow>, StoreError> {
        let limit = usize::try_from(query.clamped_limit()).unwrap_or(usize::MAX);
        Ok(self
            .lock()
            .rows
            .iter()
            .filter(|row| query.matches(row))
            .take(limit)
            .cloned()
            .collect())
    }

    /// Pseudonymises every row about or by `user` under `erasure_id` and appends the
    /// `audit_pseudonymized` record, as [`crate::PgAuditLog::pseudonymize_user`].
    pub async fn pseudonymize_user(
        &self,
        user: Uuid,
        erasure_id: Uuid,
        meta: RecordMeta,
    ) -> Result<Pseudonymized, StoreError> {
        let reference = erasure_reference(erasure_id)?;
        let user_text = user.hyphenated().to_string();
        let mut table = self.lock();
        let seqs: Vec<i64> = table
            .rows
            .iter()
            .filter(|row| {
                row.subject_id == Some(user)
                    || (row.actor_kind == ActorKind::User
                        && row.actor_id.as_deref() == Some(&user_text))
            })
            .take(usize::try_from(ERASE_BATCH).unwrap_or(usize::MAX))
            .map(|row| row.seq)
            .collect();
        let rewrite = Rewrite::User {
            user,
            pseudonym: erasure_id,
        };
        self.pseudonymize_locked(&mut table, &seqs, rewrite, reference, meta)
    }

    /// Retention's `Pseudonymize` batch, as [`crate::PgAuditLog::pseudonymize_before`].
    pub async fn pseudonymize_before(
        &self,
        cutoff: OffsetDateTime,
        reference: Ident,
        limit: i64,
        meta: RecordMeta,
    ) -> Result<Pseudonymized, StoreError> {
        let limit = usize::try_from(limit.clamp(1, MAX_PAGE)).unwrap_or(1);
        let mut table = self.lock();
        let seqs: Vec<i64> = table
            .rows
            .iter()
            .filter(|r| {
                r.occurred_at < cutoff
                    && r.event_type != PSEUDONYMIZED
                    && r.event_type != PRUNED
                    && (r.salt.is_some()
                        || r.subject_id.is_some()
                        || (r.actor_kind == ActorKind::User && r.actor_id.is_some()))
            })
            .take(limit)
            .map(|r| r.seq)
            .collect();
        self.pseudonymize_locked(&mut table, &seqs, Rewrite::All, reference, meta)
    }

    /// Rewrites the rows `seqs` and appends their record, as PostgreSQL's twin does.
    fn pseudonymize_locked(
        &self,
        table: &mut Table,
        seqs: &[i64],
        rewrite: Rewrite,
        reference: Ident,
        meta: RecordMeta,
    ) -> Result<Pseudonymized, StoreError> {
        let record_seq = next_seq(table.head.seq)?;
        let mut plan = Plan::default();
        for row in table.rows.iter().filter(|r| seqs.contains(&r.seq)) {
            plan.add(row, rewrite, &reference, record_seq, &self.keys);
        }
        if plan.changed.is_empty() {
            return Ok(Pseudonymized::default());
        }
        for new in &plan.changed {
            if let Some(row) = table.rows.iter_mut().find(|r| r.seq == new.seq) {
                *row = new.clone();
            }
        }
        let event = plan.record(meta, reference);
        let record = self.append_locked(table, &event)?;
        Ok(plan.done(record))
    }

    /// Deletes the longest prefix older than `cutoff`, anchors and appends the `audit_pruned`
    /// record, as [`crate::PgAuditLog::prune_prefix`].
    pub async fn prune_prefix(
        &self,
        cutoff: OffsetDateTime,
        meta: RecordMeta,
    ) -> Result<Option<Pruned>, StoreError> {
        let mut table = self.lock();
        let newer = table
            .rows
            .iter()
            .filter(|r| r.occurred_at >= cutoff)
            .map(|r| r.seq - 1)
            .min();
        let through = newer.or_else(|| table.rows.iter().map(|r| r.seq).max());
        let through = match through {
            Some(through) if through > table.head.base_seq => {
                through.min(table.head.base_seq.saturating_add(PRUNE_BATCH))
            }
            _ => return Ok(None),
        };
        let mut verifier = Verifier::new(table.head, &self.keys, &self.realm);
        for row in table.rows.iter().filter(|r| r.seq <= through) {
            verifier.push(row);
        }
        if let Some(finding) = verifier.findings().first() {
            return Err(StoreError::Unverified {
                finding: finding.clone(),
            });
        }
        let Some(through_hash) = table.rows.iter().find(|r| r.seq == through).map(|r| r.hash)
        else {
            // PostgreSQL's twin fails the same way: the anchor row must exist.
            return Err(StoreError::Malformed {
                seq: through,
                what: "hash",
            });
        };
        let before = table.rows.len();
        table.rows.retain(|r| r.seq > through);
        let rows = i64::try_from(before - table.rows.len()).unwrap_or(i64::MAX);
        table.head.base_seq = through;
        table.head.base_hash = Some(through_hash);
        let event = pruned_record(meta, through, &through_hash, rows);
        let record = self.append_locked(&mut table, &event)?;
        Ok(Some(Pruned {
            through_seq: through,
            rows,
            record,
        }))
    }

    /// Verifies the whole log against its head.
    pub async fn verify(&self, expect_head: Option<(i64, Hash)>) -> Result<Report, StoreError> {
        let table = self.lock();
        let mut verifier = Verifier::new(table.head, &self.keys, &self.realm);
        if let Some((seq, hash)) = expect_head {
            verifier = verifier.expect_head(seq, hash);
        }
        for row in &table.rows {
            verifier.push(row);
        }
        Ok(verifier.finish())
    }
}
