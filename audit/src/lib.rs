//! The tamper-evident audit trail of Portcullis (issue 11).
//!
//! Every security event is one append-only row. Each row carries an HMAC-SHA256 over its
//! canonical encoding and the previous row's hash, keyed with a secret that lives outside the
//! database, so whoever can edit rows in SQL cannot recompute the chain. Personal fields enter
//! the MAC only through a salted digest: erasure destroys the salt and nulls the fields, and
//! the chain still verifies (issue 13). From then on a second MAC with the same key, the
//! pseudonym MAC, vouches for what pseudonymisation left in those fields.
//!
//! - [`chain`]: the pure core — row types, canonical encoding, the MAC, sealing a new row.
//! - [`details`]: typed event details that cannot hold free text, emails or tokens.
//! - [`keys`]: the `audit-key` secret (`VERSION:BASE64` per line).
//! - [`verify`](mod@verify): the walk over rows in seq order that names every finding.
//! - [`pg`]: the PostgreSQL store (`authserver/migrations/0006_audit.sql`); [`memory`] is its
//!   twin for `--dev`, and [`AuditLog`] is either.

pub mod chain;
pub mod details;
pub mod keys;
pub mod log;
pub mod memory;
pub mod pg;
pub mod store;
pub mod verify;

pub use chain::{ActorKind, AuditRow, Hash, Head, NewEvent, Outcome, RecordMeta, Salt};
pub use details::{Detail, Details, Ident};
pub use keys::{AuditKeys, KeyError};
pub use log::AuditLog;
pub use memory::MemoryAuditLog;
pub use pg::PgAuditLog;
pub use store::{PageQuery, Pruned, Pseudonymized, StoreError};
pub use verify::{Finding, MAX_FINDINGS, Report, Verifier, parse_expected_head, verify};
