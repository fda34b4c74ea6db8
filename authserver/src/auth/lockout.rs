//! Lockout and progressive delay rules (pure). The counters live in `crate::store::kv`, which
//! applies these rules atomically.

use std::time::Duration;

use portcullis_crds::realm::LockoutPolicy;

/// The realm's lockout policy as plain durations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockoutRules {
    /// Failures within `window` that lock.
    pub max_failures: u32,
    /// Window in which failures count.
    pub window: Duration,
    /// First lockout length.
    pub base_lockout: Duration,
    /// Longest lockout.
    pub max_lockout: Duration,
    /// Failures before delays start (0: no delay).
    pub delay_after: u32,
    /// First delay.
    pub delay_base: Duration,
    /// Longest delay.
    pub delay_max: Duration,
}

impl From<&LockoutPolicy> for LockoutRules {
    fn from(policy: &LockoutPolicy) -> Self {
        Self {
            max_failures: policy.max_failures,
            window: policy.window.as_duration(),
            base_lockout: policy.base_lockout.as_duration(),
            max_lockout: policy.max_lockout.as_duration(),
            delay_after: policy.progressive_delay.after_failures,
            delay_base: policy.progressive_delay.base.as_duration(),
            delay_max: policy.progressive_delay.max.as_duration(),
        }
    }
}

fn doubled(base: Duration, times: u32, max: Duration) -> Duration {
    let factor = 1u32.checked_shl(times.min(31)).unwrap_or(u32::MAX);
    base.checked_mul(factor).unwrap_or(max).min(max)
}

impl LockoutRules {
    /// Length of the lockout that starts after `previous_lockouts` earlier ones: `base`,
    /// doubling each time, at most `max`.
    pub fn lock_duration(&self, previous_lockouts: u32) -> Duration {
        doubled(self.base_lockout, previous_lockouts, self.max_lockout)
    }

    /// Delay before answering an attempt that follows `previous_failures` failures.
    pub fn delay(&self, previous_failures: u32) -> Duration {
        if self.delay_after == 0 || previous_failures < self.delay_after {
            return Duration::ZERO;
        }
        doubled(
            self.delay_base,
            previous_failures - self.delay_after,
            self.delay_max,
        )
    }

    /// How long the counters of an identifier are kept after its last failure: long enough
    /// that repeated lockouts keep doubling.
    pub fn memory(&self) -> Duration {
        self.window.max(self.max_lockout) + self.max_lockout
    }
}

/// The answer of the store when a login attempt begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptDecision {
    /// The attempt may proceed; it is the `attempt`-th (1-based) within the window, counted as
    /// a failure until it succeeds.
    Allowed {
        /// 1-based attempt number within the window.
        attempt: u32,
    },
    /// Locked: no attempt until `retry_after` has passed.
    Locked {
        /// Time left.
        retry_after: Duration,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> LockoutRules {
        LockoutRules::from(&LockoutPolicy::default())
    }

    #[test]
    fn lockouts_double_up_to_the_maximum() {
        let r = rules();
        let minutes: Vec<u64> = (0..8).map(|n| r.lock_duration(n).as_secs() / 60).collect();
        assert_eq!(minutes, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(r.lock_duration(200), r.max_lockout);
    }

    #[test]
    fn delays_start_after_the_configured_failures_and_double() {
        let r = rules();
        let secs: Vec<u64> = (0..10).map(|n| r.delay(n).as_secs()).collect();
        assert_eq!(secs, [0, 0, 0, 1, 2, 4, 8, 16, 30, 30]);
    }

    #[test]
    fn zero_after_failures_turns_delays_off() {
        let r = LockoutRules {
            delay_after: 0,
            ..rules()
        };
        assert_eq!(r.delay(50), Duration::ZERO);
    }
}
