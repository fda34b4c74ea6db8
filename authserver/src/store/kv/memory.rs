//! The in-memory twin of the Redis keys: entries with an expiry on the injected clock, checked
//! on read like Redis does.

use std::collections::HashMap;

use super::lockout::LockState;
use super::sessions::SessionRecord;
use crate::clock::Clock;

/// A value that lives until `expires_ms` (milliseconds since the epoch).
#[derive(Clone, Debug)]
pub(super) struct Expiring<T> {
    pub(super) value: T,
    pub(super) expires_ms: u64,
}

/// Sessions, revoked session ids and lockout counters.
#[derive(Debug)]
pub struct MemoryKv {
    pub(super) clock: Clock,
    pub(super) sessions: HashMap<String, Expiring<SessionRecord>>,
    pub(super) revoked: HashMap<String, Expiring<()>>,
    pub(super) locks: HashMap<String, Expiring<LockState>>,
}

impl MemoryKv {
    pub(super) fn new(clock: Clock) -> Self {
        Self {
            clock,
            sessions: HashMap::new(),
            revoked: HashMap::new(),
            locks: HashMap::new(),
        }
    }

    pub(super) fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }
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
