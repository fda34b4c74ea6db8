//! The clock, passed in so lockout windows, token expiry, session timeouts and the in-memory
//! stores' expiry are tested exactly. The wall clock is wired in one place
//! (`crate::wiring`); everything else asks a `Clock`.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use time::OffsetDateTime;

/// A source of the current time.
#[derive(Clone)]
pub struct Clock(Source);

#[derive(Clone)]
enum Source {
    /// A function reading a real clock (the wall clock, wired by `crate::wiring`).
    Reading(fn() -> OffsetDateTime),
    /// A clock tests set and advance (nanoseconds since the Unix epoch).
    Manual(Arc<AtomicI64>),
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Source::Reading(_) => f.write_str("Clock::Reading"),
            Source::Manual(_) => write!(f, "Clock::Manual({})", self.precise()),
        }
    }
}

impl Clock {
    /// A clock reading `now` at every call.
    pub fn reading(now: fn() -> OffsetDateTime) -> Self {
        Clock(Source::Reading(now))
    }

    /// A manual clock starting at `start`; it moves only with [`Clock::advance`].
    pub fn manual(start: OffsetDateTime) -> Self {
        let nanos = i64::try_from(start.unix_timestamp_nanos()).unwrap_or(i64::MAX);
        Clock(Source::Manual(Arc::new(AtomicI64::new(nanos))))
    }

    fn precise(&self) -> OffsetDateTime {
        match &self.0 {
            Source::Reading(now) => now(),
            Source::Manual(nanos) => {
                OffsetDateTime::from_unix_timestamp_nanos(nanos.load(Ordering::SeqCst).into())
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH)
            }
        }
    }

    /// The current time, truncated to microseconds (what PostgreSQL stores).
    pub fn now(&self) -> OffsetDateTime {
        let now = self.precise();
        now.replace_microsecond(now.microsecond()).unwrap_or(now)
    }

    /// Milliseconds since the Unix epoch (0 before it), the unit of the lockout counters.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.precise().unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
    }

    /// Microseconds since the Unix epoch (0 before it), the unit of the rate-limit buckets.
    pub fn now_us(&self) -> u64 {
        u64::try_from(self.precise().unix_timestamp_nanos() / 1_000).unwrap_or(0)
    }

    /// Moves a manual clock forward; does nothing to a real one.
    pub fn advance(&self, by: Duration) {
        if let Source::Manual(nanos) = &self.0 {
            let by = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
            nanos.fetch_add(by, Ordering::SeqCst);
        }
    }

    /// Starts measuring how long something takes (for latency metrics).
    pub fn stopwatch(&self) -> Stopwatch {
        Stopwatch {
            clock: self.clone(),
            started: self.precise(),
        }
    }
}

/// Time since it was started on a clock.
#[derive(Debug)]
pub struct Stopwatch {
    clock: Clock,
    started: OffsetDateTime,
}

impl Stopwatch {
    /// Seconds elapsed; zero if the clock was set back meanwhile.
    pub fn seconds(&self) -> f64 {
        (self.clock.precise() - self.started)
            .as_seconds_f64()
            .max(0.0)
    }
}

/// `now + duration`, or `None` past the end of the calendar. Durations come from settings that
/// are capped at start (`startup::settings_check`), so this fails only on a broken clock.
pub fn later(now: OffsetDateTime, duration: Duration) -> Option<OffsetDateTime> {
    now.checked_add(time::Duration::try_from(duration).ok()?)
}

/// `now - duration`, or `None` before the start of the calendar.
pub fn earlier(now: OffsetDateTime, duration: Duration) -> Option<OffsetDateTime> {
    now.checked_sub(time::Duration::try_from(duration).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_manual_clock_moves_only_when_advanced() {
        let clock = Clock::manual(datetime!(2030-01-01 0:00 UTC));
        assert_eq!(clock.now(), datetime!(2030-01-01 0:00 UTC));
        let watch = clock.stopwatch();
        clock.advance(Duration::from_millis(1_500));
        assert_eq!(clock.now(), datetime!(2030-01-01 0:00:01.5 UTC));
        assert_eq!(clock.now_ms(), 1_893_456_001_500);
        assert!((watch.seconds() - 1.5).abs() < 1e-9);
    }

    #[test]
    fn date_arithmetic_past_the_calendar_is_none_not_a_panic() {
        let now = datetime!(2030-01-01 0:00 UTC);
        let huge = Duration::from_secs(400_000_000 * 86_400);
        assert_eq!(later(now, huge), None);
        assert_eq!(earlier(now, huge), None);
        assert_eq!(later(now, Duration::MAX), None);
        assert_eq!(
            later(now, Duration::from_secs(86_400)),
            Some(datetime!(2030-01-02 0:00 UTC))
        );
    }
}
