//! The in-memory twin of the Redis keys: entries with an expiry on the injected clock, checked
//! on read like Redis does, and a bound on each map: when one is full, expired entries are
//! swept, and if it is still full the write is refused (`StoreError::Full`, a 503) rather than
//! memory growing without limit.

use std::collections::{HashMap, HashSet};

use super::codes::CodeEntry;
use super::lockout::LockState;
use super::sessions::SessionRecord;
use crate::clock::Clock;
use crate::store::StoreError;

/// Entries per map by default: a single replica's sessions, revocations and counters.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// A value that lives until `expires_ms` (milliseconds since the epoch).
#[derive(Clone, Debug)]
pub(super) struct Expiring<T> {
    pub(super) value: T,
    pub(super) expires_ms: u64,
}

/// Sessions, codes, revocations and lockout counters.
#[derive(Debug)]
pub struct MemoryKv {
    pub(super) clock: Clock,
    pub(super) capacity: usize,
    pub(super) sessions: HashMap<String, Expiring<SessionRecord>>,
    pub(super) revoked: HashMap<String, Expiring<()>>,
    pub(super) locks: HashMap<String, Expiring<LockState>>,
    pub(super) codes: HashMap<String, Expiring<CodeEntry>>,
    pub(super) pending: HashMap<String, Expiring<String>>,
    /// Logins waiting for their second factor: JSON and wrong codes so far.
    pub(super) mfa_logins: HashMap<String, Expiring<(String, u32)>>,
    /// Distinct failing identifiers per address and stuffing window (8-byte digests).
    pub(super) stuffing: HashMap<String, Expiring<HashSet<[u8; 8]>>>,
    /// Addresses already reported as stuffing sources in a window.
    pub(super) stuffed: HashMap<String, Expiring<()>>,
}

impl MemoryKv {
    pub(super) fn new(clock: Clock, capacity: usize) -> Self {
        Self {
            clock,
            capacity,
            sessions: HashMap::new(),
            revoked: HashMap::new(),
            locks: HashMap::new(),
            codes: HashMap::new(),
            pending: HashMap::new(),
            mfa_logins: HashMap::new(),
            stuffing: HashMap::new(),
            stuffed: HashMap::new(),
        }
    }

    pub(super) fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Where a write that lives `ttl_ms` from now stands against the bound.
    pub(super) fn bound(&self, ttl_ms: u64) -> Bound {
        let now_ms = self.now_ms();
        Bound {
            now_ms,
            expires_ms: now_ms.saturating_add(ttl_ms),
            capacity: self.capacity,
        }
    }
}

/// A write's time and the map's capacity.
#[derive(Clone, Copy, Debug)]
pub(super) struct Bound {
    pub(super) now_ms: u64,
    pub(super) expires_ms: u64,
    pub(super) capacity: usize,
}

/// The live value of `key`, dropping it when it expired.
pub(super) fn live<'a, T>(
    map: &'a mut HashMap<String, Expiring<T>>,
    key: &str,
    now_ms: u64,
) -> Option<&'a mut T> {
    if map.get(key).is_some_and(|e| e.expires_ms <= now_ms) {
        map.remove(key);
    }
    map.get_mut(key).map(|e| &mut e.value)
}

/// Inserts `value` under `key` until `bound.expires_ms`, sweeping expired entries when the map
/// is full; refuses a new key when it is still full.
pub(super) fn insert_bounded<T>(
    map: &mut HashMap<String, Expiring<T>>,
    key: &str,
    value: T,
    bound: Bound,
    what: &'static str,
) -> Result<(), StoreError> {
    if map.len() >= bound.capacity && !map.contains_key(key) {
        map.retain(|_, e| e.expires_ms > bound.now_ms);
        if map.len() >= bound.capacity {
            tracing::error!(
                store = what,
                capacity = bound.capacity,
                "in-memory store full"
            );
            return Err(StoreError::Full(what));
        }
    }
    let expires_ms = bound.expires_ms;
    map.insert(key.to_owned(), Expiring { value, expires_ms });
    Ok(())
}
