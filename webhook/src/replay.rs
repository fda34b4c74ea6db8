//! A bounded memory of accepted event ids, so a delivery replayed within the signature window
//! is refused (protection plan §7.2).
//!
//! [`crate::verify`] accepts a captured delivery again for as long as its `t` is within the
//! window; the guard refuses the second copy by id. Because the sender signs each retry
//! afresh over the same id, the same check also refuses a re-signed copy of an event already
//! taken. An id is kept for twice the window after it was accepted: a signature made at `t`
//! verifies until `t + window` and `t ≥ accepted − window`, so no copy of it can still verify
//! when the id is forgotten.
//!
//! Memory is bounded by `capacity`. When full of live ids the guard refuses new ones
//! ([`ReplayError::Full`]: answer 503, the sender retries later) rather than forgetting a live
//! id, which would let its replay through.
//!
//! Recording an id is not processing it. If the receiver cannot hand the event off (its queue
//! or database fails) after [`ReplayGuard::check`] accepted it, it must call
//! [`ReplayGuard::forget`] and answer 503: otherwise the sender's retry, carrying the same id,
//! would be answered "duplicate", marked delivered, and the event lost.
//!
//! The guard is per process and lasts minutes. Retries of a delivery whose 2xx got lost can
//! come hours later; deduplicating those is the receiver's own store of processed ids.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use uuid::Uuid;

/// Why the guard refused an id.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum ReplayError {
    /// The id was accepted before, within twice the window.
    #[error("event {0} was already received")]
    Replayed(Uuid),
    /// The guard holds `capacity` live ids; answer 503 so the sender retries later.
    #[error("the replay guard is full")]
    Full,
}

/// Remembers accepted event ids for twice the signature window, up to `capacity` of them.
#[derive(Debug)]
pub struct ReplayGuard {
    keep_secs: i64,
    capacity: usize,
    expiry: HashMap<Uuid, i64>,
    // Ordered by expiry, to forget the expired ids without scanning the map.
    by_expiry: BTreeSet<(i64, Uuid)>,
}

impl ReplayGuard {
    /// A guard for signatures checked with `window` (use [`crate::DEFAULT_WINDOW`]), holding at
    /// most `capacity` ids (about 100 bytes each).
    pub fn new(window: Duration, capacity: usize) -> Self {
        let keep_secs = i64::try_from(window.as_secs().saturating_mul(2)).unwrap_or(i64::MAX);
        Self {
            keep_secs,
            capacity,
            expiry: HashMap::new(),
            by_expiry: BTreeSet::new(),
        }
    }

    /// Records `id` as received at `now` (Unix seconds), or refuses it if it was received
    /// within the last twice-the-window. Call it after [`crate::verify`] succeeded, with the
    /// body's `id` (the header's copy is not signed).
    pub fn check(&mut self, id: Uuid, now: i64) -> Result<(), ReplayError> {
        self.forget_expired(now);
        if self.expiry.contains_key(&id) {
            return Err(ReplayError::Replayed(id));
        }
        if self.expiry.len() >= self.capacity {
            return Err(ReplayError::Full);
        }
        let until = now.saturating_add(self.keep_secs);
        self.expiry.insert(id, until);
        self.by_expiry.insert((until, id));
        Ok(())
    }

    /// Forgets `id`, so its next delivery is accepted again. Call it when the event that
    /// [`Self::check`] just accepted could not be handed off (queued or stored), before
    /// answering 503: the sender's retry then gets a second chance instead of being taken
    /// for a duplicate. Forgetting an unknown id does nothing.
    pub fn forget(&mut self, id: Uuid) {
        if let Some(until) = self.expiry.remove(&id) {
            self.by_expiry.remove(&(until, id));
        }
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.expiry.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.expiry.is_empty()
    }

    fn forget_expired(&mut self, now: i64) {
        while let Some(&(until, id)) = self.by_expiry.first() {
            if until >= now {
                break;
            }
            self.by_expiry.pop_first();
            self.expiry.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DEFAULT_WINDOW, sign, verify};

    const T: i64 = 1_767_225_600;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn an_exact_replay_within_the_window_is_refused() {
        let body = br#"{"id":"00000000-0000-0000-0000-000000000001"}"#;
        let header = sign("k", T, body).unwrap();
        let mut guard = ReplayGuard::new(DEFAULT_WINDOW, 10);
        assert_eq!(verify("k", &header, body, T, DEFAULT_WINDOW), Ok(()));
        assert_eq!(guard.check(id(1), T), Ok(()));
        // The same bytes 4 minutes later still verify: only the guard stops them.
        assert_eq!(verify("k", &header, body, T + 240, DEFAULT_WINDOW), Ok(()));
        assert_eq!(
            guard.check(id(1), T + 240),
            Err(ReplayError::Replayed(id(1)))
        );
    }

    #[test]
    fn a_re_signed_copy_of_the_same_id_is_refused() {
        let mut guard = ReplayGuard::new(DEFAULT_WINDOW, 10);
        assert_eq!(guard.check(id(1), T), Ok(()));
        assert_eq!(
            guard.check(id(1), T + 599),
            Err(ReplayError::Replayed(id(1)))
        );
        assert_eq!(guard.check(id(2), T + 1), Ok(()));
    }

    #[test]
    fn an_id_is_kept_until_no_copy_can_verify_then_forgotten() {
        let mut guard = ReplayGuard::new(DEFAULT_WINDOW, 10);
        // A signature made at T − 300 is accepted at T; it verifies up to T, and a copy made
        // at T + 300 verifies up to T + 600: the id is kept through T + 600.
        guard.check(id(1), T).unwrap();
        assert_eq!(
            guard.check(id(1), T + 600),
            Err(ReplayError::Replayed(id(1)))
        );
        assert_eq!(guard.check(id(1), T + 601), Ok(()));
    }

    #[test]
    fn memory_is_bounded_and_full_refuses_rather_than_forgetting_a_live_id() {
        let mut guard = ReplayGuard::new(DEFAULT_WINDOW, 3);
        for n in 1..=3 {
            guard.check(id(n), T).unwrap();
        }
        assert_eq!(guard.check(id(4), T + 1), Err(ReplayError::Full));
        assert_eq!(guard.len(), 3);
        assert_eq!(guard.check(id(1), T + 1), Err(ReplayError::Replayed(id(1))));
        // Once the first ids expire there is room again.
        assert_eq!(guard.check(id(4), T + 601), Ok(()));
        assert_eq!(guard.len(), 1);
    }

    #[test]
    fn a_forgotten_id_is_accepted_again_so_a_failed_hand_off_can_be_retried() {
        let mut guard = ReplayGuard::new(DEFAULT_WINDOW, 10);
        assert_eq!(guard.check(id(1), T), Ok(()));
        assert_eq!(guard.check(id(2), T), Ok(()));
        // The hand-off of id 1 failed: forget it, answer 503; the retry 30 s later is taken.
        guard.forget(id(1));
        assert_eq!(guard.len(), 1);
        assert_eq!(guard.check(id(1), T + 30), Ok(()));
        assert_eq!(
            guard.check(id(1), T + 31),
            Err(ReplayError::Replayed(id(1)))
        );
        // Other ids are untouched, and forgetting an unknown id is harmless.
        assert_eq!(
            guard.check(id(2), T + 31),
            Err(ReplayError::Replayed(id(2)))
        );
        guard.forget(id(99));
        assert_eq!(guard.len(), 2);
        // The ordered index was cleaned too: id 1's first expiry does not evict its second.
        assert_eq!(
            guard.check(id(1), T + 601),
            Err(ReplayError::Replayed(id(1)))
        );
    }

    #[test]
    fn many_ids_over_time_never_exceed_the_capacity() {
        let mut guard = ReplayGuard::new(Duration::from_secs(10), 50);
        for n in 0..10_000u32 {
            // Two ids a second for 20 s of memory: 40 live at most.
            let _ = guard.check(id(u128::from(n)), T + i64::from(n / 2));
            assert!(guard.len() <= 50);
        }
        assert!(!guard.is_empty());
    }
}
