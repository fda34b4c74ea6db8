//! Storage: every SQL statement (PostgreSQL, `postgres`) and every Redis command (`kv`, with an
//! in-memory twin for `--dev` and single-replica realms behind the same interface).

pub mod kv;
pub mod lockout_state;
pub mod postgres;

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
