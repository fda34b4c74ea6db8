//! Lockout and progressive delay rules (pure). Failures count per login identifier and client
//! address: `maxFailures` from one address lock that address out, and the identifier locks for
//! everyone only past a ceiling of twenty times that, at most 100 (NIST SP 800-63B 5.2.2), so
//! a few requests an hour cannot keep an owner out. The counters live in `crate::store::kv`,
//! which applies these limits atomically.

use std::time::Duration;

use portcullis_crds::realm::LockoutPolicy;

use crate::store::kv::CounterLimits;

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
    /// Failures from all addresses together that lock the identifier for everyone.
    pub fn max_failures_overall(&self) -> u32 {
        // Not `clamp`: a realm's own limit above 100 must win, not panic.
        self.max_failures
            .saturating_mul(20)
            .min(100)
            .max(self.max_failures)
    }

    /// The counters' limits in the store's units.
    pub fn limits(&self) -> CounterLimits {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        CounterLimits {
            window_ms: ms(self.window),
            max_failures: self.max_failures,
            max_failures_overall: self.max_failures_overall(),
            base_lock_ms: ms(self.base_lockout),
            max_lock_ms: ms(self.max_lockout),
            memory_ms: ms(self.memory()),
        }
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
        self.window
            .max(self.max_lockout)
            .saturating_add(self.max_lockout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> LockoutRules {
        LockoutRules::from(&LockoutPolicy::default())
    }

    #[test]
    fn the_default_policy_locks_after_five_failures_in_fifteen_minutes_for_a_minute() {
        let limits = rules().limits();
        assert_eq!(
            (limits.max_failures, limits.window_ms, limits.base_lock_ms),
            (5, 15 * 60_000, 60_000)
        );
        assert_eq!(limits.max_lock_ms, 3_600_000);
        assert!(limits.memory_ms >= limits.window_ms + limits.max_lock_ms);
    }

    #[test]
    fn the_identifier_ceiling_is_twenty_times_the_per_address_limit_at_most_100() {
        let with = |max_failures| LockoutRules {
            max_failures,
            ..rules()
        };
        assert_eq!(with(1).max_failures_overall(), 20);
        assert_eq!(with(5).max_failures_overall(), 100);
        assert_eq!(with(8).max_failures_overall(), 100);
        assert_eq!(
            with(200).max_failures_overall(),
            200,
            "never below one address' limit"
        );
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
