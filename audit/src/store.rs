//! What the stores have in common: errors, page queries, results of maintenance.

use time::OffsetDateTime;
use uuid::Uuid;

use crate::chain::{
    AuditRow, NewEvent, RecordMeta, Rewrite, pseudonymize_row, pseudonymized_record,
};
use crate::details::Ident;
use crate::keys::AuditKeys;
use crate::verify::Finding;

/// Largest page: bounds memory and the time a page query holds a connection.
pub const MAX_PAGE: i64 = 5000;

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// PostgreSQL failed or refused the statement.
    #[error("audit store: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored value cannot be read back as a row (a column of the wrong shape).
    #[error("audit row {seq}: {what} is malformed")]
    Malformed {
        /// The row (0 for the head).
        seq: i64,
        /// The column.
        what: &'static str,
    },
    /// The rows a prune would delete do not verify; nothing was deleted, since that would
    /// destroy the evidence. Raise the chain-broken alarm.
    #[error("audit chain does not verify where it would be pruned: {finding:?}")]
    Unverified {
        /// The first finding among those rows.
        finding: Finding,
    },
    /// The reference of a pseudonymisation is not an identifier.
    #[error("the pseudonymisation reference is not an identifier")]
    BadReference,
}

/// A page of events: keyset paging by seq, ascending, with filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageQuery {
    /// Only events at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Only events with a greater seq (the last seq of the previous page).
    pub after: i64,
    /// Only events whose subject, or whose user actor, is this account.
    pub user_id: Option<Uuid>,
    /// Only events of this type.
    pub event_type: Option<String>,
    /// At most this many rows, clamped to `1..=MAX_PAGE`.
    pub limit: i64,
}

impl Default for PageQuery {
    fn default() -> Self {
        Self {
            since: None,
            after: 0,
            user_id: None,
            event_type: None,
            limit: 500,
        }
    }
}

impl PageQuery {
    /// Whether `row` passes the filters (the in-memory twin's WHERE clause).
    pub fn matches(&self, row: &AuditRow) -> bool {
        row.seq > self.after
            && self.since.is_none_or(|t| row.occurred_at >= t)
            && self
                .event_type
                .as_deref()
                .is_none_or(|t| row.event_type == t)
            && self.user_id.is_none_or(|u| {
                row.subject_id == Some(u)
                    || (row.actor_kind == crate::chain::ActorKind::User
                        && row.actor_id.as_deref() == Some(u.hyphenated().to_string().as_str()))
            })
    }

    /// The limit as applied.
    pub fn clamped_limit(&self) -> i64 {
        self.limit.clamp(1, MAX_PAGE)
    }
}

/// What a pseudonymisation did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pseudonymized {
    /// The rows changed, ascending: those newly pseudonymised, and those pseudonymised before
    /// in which an id was still replaced (they keep their earlier group).
    pub seqs: Vec<i64>,
    /// The `audit_pseudonymized` record vouching for them; `None` when no row matched.
    pub record: Option<AuditRow>,
    /// Rows among `seqs` that did not verify before the change (edited in SQL): they are
    /// erased all the same, but not vouched for, so verify keeps naming them. Non-empty means
    /// tampering: raise the chain-broken alarm.
    pub unverified: Vec<i64>,
}

/// The reference of an erasure's pseudonymisation.
pub(crate) fn erasure_reference(erasure_id: Uuid) -> Result<Ident, StoreError> {
    Ident::parse(&format!("erasure:{}", erasure_id.hyphenated())).ok_or(StoreError::BadReference)
}

/// A pseudonymisation being planned, shared by both stores: the rewritten rows, and which of
/// them the record counts.
#[derive(Default)]
pub(crate) struct Plan {
    /// Every row to write, ascending.
    pub(crate) changed: Vec<AuditRow>,
    /// The rows newly pseudonymised: the record's group.
    newly: Vec<i64>,
    unverified: Vec<i64>,
}

impl Plan {
    /// Plans `row`'s rewrite, if it needs one.
    pub(crate) fn add(
        &mut self,
        row: &AuditRow,
        rewrite: Rewrite,
        reference: &Ident,
        record_seq: i64,
        keys: &AuditKeys,
    ) {
        let Some((new, verified)) =
            pseudonymize_row(row, rewrite, reference.as_str(), record_seq, keys)
        else {
            return;
        };
        if row.salt.is_some() {
            self.newly.push(row.seq);
        }
        if !verified {
            self.unverified.push(row.seq);
        }
        self.changed.push(new);
    }

    /// The `audit_pseudonymized` record for this plan.
    pub(crate) fn record(&self, meta: RecordMeta, reference: Ident) -> NewEvent {
        pseudonymized_record(meta, reference, &self.newly, self.unverified.len())
    }

    /// The result, once `record` is appended.
    pub(crate) fn done(self, record: AuditRow) -> Pseudonymized {
        Pseudonymized {
            seqs: self.changed.iter().map(|r| r.seq).collect(),
            record: Some(record),
            unverified: self.unverified,
        }
    }
}

/// What a prune did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pruned {
    /// Rows up to this seq are gone; it is the new anchor.
    pub through_seq: i64,
    /// Rows deleted.
    pub rows: i64,
    /// The `audit_pruned` record.
    pub record: AuditRow,
}
