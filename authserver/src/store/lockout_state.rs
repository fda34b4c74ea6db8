//! The lockout counter state machine. The in-memory store runs it directly; the Redis store
//! runs the same steps in a Lua script (`kv::BEGIN_SCRIPT`, `kv::FAIL_SCRIPT`) so they are
//! atomic across replicas. Times are milliseconds since the epoch.

use std::time::Duration;

use crate::auth::lockout::{AttemptDecision, LockoutRules};

/// Counters of one identifier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockState {
    /// Attempts counted in the current window (each counts until it succeeds).
    pub failures: u32,
    /// Start of the current window.
    pub window_start: u64,
    /// End of the current lock (0: none).
    pub locked_until: u64,
    /// Lockouts so far (doubles the next one).
    pub lockouts: u32,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl LockState {
    fn lock(&mut self, now: u64, rules: &LockoutRules) -> Duration {
        let duration = rules.lock_duration(self.lockouts);
        self.locked_until = now + ms(duration);
        self.lockouts += 1;
        self.failures = 0;
        self.window_start = now;
        duration
    }

    /// Begins an attempt: refuses while locked, counts the attempt otherwise. An attempt past
    /// `max_failures` (others are still in flight) locks at once.
    pub fn begin(&mut self, now: u64, rules: &LockoutRules) -> AttemptDecision {
        if self.locked_until > now {
            return AttemptDecision::Locked {
                retry_after: Duration::from_millis(self.locked_until - now),
            };
        }
        if self.failures == 0 || now.saturating_sub(self.window_start) >= ms(rules.window) {
            self.failures = 0;
            self.window_start = now;
        }
        if self.failures >= rules.max_failures {
            let retry_after = self.lock(now, rules);
            return AttemptDecision::Locked { retry_after };
        }
        self.failures += 1;
        AttemptDecision::Allowed {
            attempt: self.failures,
        }
    }

    /// Records that an attempt failed; locks when the window's failures reach the maximum.
    /// Returns the lock length when this failure started a lock.
    pub fn fail(&mut self, now: u64, rules: &LockoutRules) -> Option<Duration> {
        if self.locked_until > now {
            return None;
        }
        (self.failures >= rules.max_failures).then(|| self.lock(now, rules))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_crds::realm::LockoutPolicy;

    fn rules() -> LockoutRules {
        LockoutRules::from(&LockoutPolicy::default())
    }

    #[test]
    fn the_fifth_failure_locks_for_the_base_lockout() {
        let (r, mut s) = (rules(), LockState::default());
        for n in 1..=5 {
            assert_eq!(s.begin(1_000, &r), AttemptDecision::Allowed { attempt: n });
            let lock = s.fail(1_000, &r);
            assert_eq!(lock.is_some(), n == 5, "attempt {n}");
        }
        assert_eq!(
            s.begin(1_000, &r),
            AttemptDecision::Locked {
                retry_after: Duration::from_secs(60)
            }
        );
        assert!(matches!(
            s.begin(60_999, &r),
            AttemptDecision::Locked { .. }
        ));
        assert_eq!(s.begin(61_000, &r), AttemptDecision::Allowed { attempt: 1 });
    }

    #[test]
    fn concurrent_attempts_beyond_the_maximum_are_refused() {
        let (r, mut s) = (rules(), LockState::default());
        let decisions: Vec<AttemptDecision> = (0..20).map(|_| s.begin(0, &r)).collect();
        let allowed = decisions
            .iter()
            .filter(|d| matches!(d, AttemptDecision::Allowed { .. }))
            .count();
        assert_eq!(allowed, 5);
    }

    #[test]
    fn failures_outside_the_window_are_forgotten() {
        let (r, mut s) = (rules(), LockState::default());
        for _ in 0..4 {
            s.begin(0, &r);
            s.fail(0, &r);
        }
        let after_window = ms(r.window);
        assert_eq!(
            s.begin(after_window, &r),
            AttemptDecision::Allowed { attempt: 1 }
        );
    }

    #[test]
    fn each_further_lockout_doubles() {
        let (r, mut s) = (rules(), LockState::default());
        let mut now = 0;
        let mut locks = Vec::new();
        for _ in 0..3 {
            for _ in 0..5 {
                s.begin(now, &r);
                if let Some(d) = s.fail(now, &r) {
                    locks.push(d.as_secs());
                    now += ms(d);
                }
            }
        }
        assert_eq!(locks, [60, 120, 240]);
    }
}
