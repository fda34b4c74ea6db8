//! The per-channel circuit breaker: after a run of consecutive failed attempts a channel stops
//! claiming for a cool-down, so an outage of the receiver does not burn every row's 12
//! attempts; then one row probes, and a success closes it again. Pure: the time is passed in.

use std::time::Duration;

use time::OffsetDateTime;

/// The state of one channel's breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    failures: u32,
    open_until: Option<OffsetDateTime>,
}

impl Breaker {
    /// A closed breaker that opens after `threshold` consecutive failures (0: never) for
    /// `cooldown`.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold,
            cooldown,
            failures: 0,
            open_until: None,
        }
    }

    /// How many rows may be claimed at `now` with `free` slots and `in_flight` attempts
    /// running: none while open; one probe (when nothing is in flight) once the cool-down is
    /// over; all free slots while closed.
    pub fn allowance(&self, now: OffsetDateTime, free: usize, in_flight: usize) -> usize {
        match self.open_until {
            None => free,
            Some(until) if now < until => 0,
            Some(_) if in_flight == 0 => free.min(1),
            Some(_) => 0,
        }
    }

    /// Records an attempt's result at `now`; returns the end of the cool-down when this
    /// failure opened (or re-opened) the breaker.
    pub fn record(&mut self, failed: bool, now: OffsetDateTime) -> Option<OffsetDateTime> {
        if !failed {
            self.failures = 0;
            self.open_until = None;
            return None;
        }
        self.failures = self.failures.saturating_add(1);
        if self.threshold == 0 || self.failures < self.threshold {
            return None;
        }
        let until = time::Duration::try_from(self.cooldown)
            .ok()
            .and_then(|d| now.checked_add(d))
            .unwrap_or(now);
        self.open_until = Some(until);
        Some(until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-30 12:00:00 UTC);

    fn at(secs: i64) -> OffsetDateTime {
        NOW + time::Duration::seconds(secs)
    }

    #[test]
    fn it_opens_after_the_threshold_and_probes_after_the_cooldown() {
        let mut b = Breaker::new(3, Duration::from_secs(60));
        assert_eq!(b.record(true, at(0)), None);
        assert_eq!(b.record(true, at(1)), None);
        assert_eq!(b.allowance(at(1), 5, 0), 5);
        assert_eq!(b.record(true, at(2)), Some(at(62)));
        assert_eq!(b.allowance(at(61), 5, 0), 0, "open");
        assert_eq!(b.allowance(at(62), 5, 0), 1, "one probe");
        assert_eq!(b.allowance(at(62), 4, 1), 0, "the probe is running");
        // The probe fails: open again at once.
        assert_eq!(b.record(true, at(63)), Some(at(123)));
        assert_eq!(b.allowance(at(100), 5, 0), 0);
        // The next probe succeeds: closed, full slots.
        assert_eq!(b.record(false, at(130)), None);
        assert_eq!(b.allowance(at(130), 5, 0), 5);
    }

    #[test]
    fn a_success_resets_the_run_and_zero_disables_it() {
        let mut b = Breaker::new(2, Duration::from_secs(60));
        b.record(true, at(0));
        b.record(false, at(1));
        assert_eq!(b.record(true, at(2)), None, "the run was broken");
        let mut off = Breaker::new(0, Duration::from_secs(60));
        for n in 0..100 {
            assert_eq!(off.record(true, at(n)), None);
        }
        assert_eq!(off.allowance(at(100), 5, 0), 5);
    }
}
