//! What the stores have in common: errors, page queries, results of maintenance.

use time::OffsetDateTime;
use uuid::Uuid;

use crate::chain::AuditRow;

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pseudonymized {
    /// The rows pseudonymised, ascending.
    pub seqs: Vec<i64>,
    /// The `audit_pseudonymized` record vouching for them; `None` when no row matched.
    pub record: Option<AuditRow>,
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
