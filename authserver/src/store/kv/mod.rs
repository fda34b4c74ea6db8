//! Shared short-lived state: sessions, authorization codes, revoked session, grant and token
//! ids, and lockout counters. Redis when the
//! realm has it (shared by replicas, atomic through Lua scripts); process memory on the
//! injected clock otherwise.

mod codes;
mod erasure;
mod lockout;
mod memory;
mod mfa_logins;
mod pending;
mod revocations;
mod sessions;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::ConnectionManager;

pub use codes::{CodeRecord, REPLAY_WINDOW, Redeemed};
pub use lockout::{
    Attempt, CounterLimits, CounterState, Failure, LockState, STUFFING_WINDOW_MS, StuffingProbe,
};
pub use mfa_logins::MfaFailure;
pub use pending::PendingKind;
pub use sessions::SessionRecord;

use super::StoreError;
use crate::clock::Clock;
use memory::MemoryKv;

/// The store.
#[derive(Clone)]
pub enum Kv {
    /// Redis, shared by every replica.
    Redis {
        /// Connection with automatic reconnects.
        conn: ConnectionManager,
        /// Key prefix (one realm per Redis database, or tests side by side).
        prefix: String,
    },
    /// Process memory (single replica, `--dev`, unit tests).
    Memory(Arc<Mutex<MemoryKv>>),
}

impl std::fmt::Debug for Kv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Kv::Redis { prefix, .. } => write!(f, "Kv::Redis({prefix})"),
            Kv::Memory(_) => write!(f, "Kv::Memory"),
        }
    }
}

/// Milliseconds of a duration, saturating.
fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Kv {
    /// Connects to Redis.
    pub async fn redis(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(|e| {
            tracing::error!(error = %e, "invalid REDIS_URL");
            StoreError::Unavailable("redis")
        })?;
        let conn = ConnectionManager::new(client).await?;
        Ok(Kv::Redis {
            conn,
            prefix: prefix.to_owned(),
        })
    }

    /// An empty in-memory store whose entries expire on `clock`, at most
    /// `memory::DEFAULT_CAPACITY` of each kind.
    pub fn memory(clock: Clock) -> Self {
        Self::memory_with_capacity(clock, memory::DEFAULT_CAPACITY)
    }

    /// An empty in-memory store holding at most `capacity` entries of each kind.
    pub fn memory_with_capacity(clock: Clock, capacity: usize) -> Self {
        Kv::Memory(Arc::new(Mutex::new(MemoryKv::new(clock, capacity))))
    }

    /// Answers when the store is reachable.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Kv::Redis { conn, .. } => {
                let mut conn = conn.clone();
                let _: String = redis::cmd("PING").query_async(&mut conn).await?;
                Ok(())
            }
            Kv::Memory(_) => Ok(()),
        }
    }
}
