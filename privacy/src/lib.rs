//! Privacy (GDPR) for Portcullis (issue 13), over the auth server's PostgreSQL database
//! (`authserver/migrations/0012_privacy.sql` and the tables before it).
//!
//! - [`consent`]: the policy a user accepted, per-purpose grants and withdrawals with their
//!   history; the decisions (re-consent needed, a change allowed) are pure functions.
//! - [`export`]: one typed JSON document with every stored datum about a user and, by
//!   construction, no hash, secret, token or ciphertext.
//! - [`erasure`]: the right to be forgotten — idempotent requests, and an execution in
//!   resumable steps that leaves only a receipt keyed by the erasure id.
//! - [`retention`]: audit trail, withdrawn consent history and due erasures, in bounded
//!   batches, with a dry run that reports the real run's counts.
//!
//! Every function takes the clock (`now`) from its caller. There is one error type,
//! [`PrivacyError`].

pub mod consent;
pub mod erasure;
pub mod error;
pub mod export;
pub mod retention;

pub use error::PrivacyError;
