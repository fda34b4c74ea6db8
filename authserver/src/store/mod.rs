//! Storage: every SQL statement and every Redis command, grouped by what they keep. The store
//! owns its records and knows nothing of the domain that uses them.
//!
//! - [`Db`]: accounts, one-time tokens, refresh-token families, consents (privacy purposes and
//!   OAuth clients) and key fingerprints
//!   — PostgreSQL, or process memory (single-replica `--dev`, and the domain's unit tests);
//! - [`kv::Kv`]: sessions, revoked session ids and lockout counters — Redis (shared by every
//!   replica, atomic through Lua scripts), or process memory on the injected clock.

mod consents;
mod db;
mod key_fingerprints;
mod known_devices;
pub mod kv;
mod oauth_consents;
mod one_time_tokens;
mod refresh_families;
pub mod retention;
mod users;

pub use db::{Db, MIGRATOR, Postgres};
pub use key_fingerprints::KeyFingerprintRow;
pub use known_devices::{DeviceKind, DeviceRow};
pub use oauth_consents::OAuthConsent;
pub use one_time_tokens::TokenPurpose;
pub use refresh_families::{FamilyGrant, NewFamily, RefreshStanding, RotateOutcome};
pub use users::{NewUser, UserRecord};

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database or Redis is unreachable or failing.
    #[error("{0} unavailable")]
    Unavailable(&'static str),
    /// A row violated a uniqueness rule.
    #[error("duplicate {0}")]
    Duplicate(&'static str),
    /// Stored data could not be decoded.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// An in-memory store reached its bound.
    #[error("{0} is full")]
    Full(&'static str),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Duplicate("row"),
            _ => {
                tracing::error!(error = %error, "database error");
                StoreError::Unavailable("database")
            }
        }
    }
}

impl From<redis::RedisError> for StoreError {
    fn from(error: redis::RedisError) -> Self {
        tracing::error!(error = %error, "redis error");
        StoreError::Unavailable("redis")
    }
}

/// Locks an in-memory store; a panic while it was held leaves data that cannot be trusted.
fn locked<T>(mutex: &std::sync::Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>, StoreError> {
    mutex
        .lock()
        .map_err(|_| StoreError::Corrupt("memory store poisoned".into()))
}
