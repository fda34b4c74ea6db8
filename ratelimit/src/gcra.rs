//! The generic cell rate algorithm, pure: no I/O and no clock, time is passed in as µs.
//!
//! A limit reads "`requests` per `period`, with `burst` extra at once" (the NGINX meaning): the
//! emission interval is `T = period / requests` and the tolerance `τ = burst·T`, so `burst + 1`
//! requests pass at once, then one every `T`. A bucket's whole state is its theoretical arrival
//! time (TAT). All arithmetic saturates, so no input can panic or wrap.

use std::time::Duration;

use crate::store::MAX_INTERVAL_US;

/// The most buckets one decision may check (the Redis script takes them all in one call).
pub const MAX_BUCKETS: usize = 8;

/// One bucket: its stored TAT (if any) and its limit, all in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// The theoretical arrival time; `None` when the bucket has no state (new or expired).
    pub tat_us: Option<u64>,
    /// The emission interval `T`, at least 1 µs.
    pub t_us: u64,
    /// The tolerance `τ = burst·T`.
    pub tau_us: u64,
}

impl Bucket {
    /// A bucket with no state for "`requests` per `period`, `burst` extra at once".
    ///
    /// `T_us = max(1, period_us / requests)`; `requests = 0` is read as 1 rather than dividing
    /// by zero (a policy never asks for it: the CRD requires at least one request).
    pub fn new(requests: u64, period: Duration, burst: u64) -> Self {
        let period_us = u64::try_from(period.as_micros()).unwrap_or(u64::MAX);
        let t_us = (period_us / requests.max(1)).max(1);
        Self {
            tat_us: None,
            t_us,
            tau_us: burst.saturating_mul(t_us),
        }
    }

    /// The limit as both stores apply it: `T` within `1..=`[`MAX_INTERVAL_US`] and `τ` at most
    /// [`MAX_INTERVAL_US`] (about 35.7 years), the TAT kept. [`retry_after_us`],
    /// [`remaining`] and [`Outcome::refusing`] apply it too, so they agree with the store.
    pub fn clamped(self) -> Self {
        Self {
            t_us: self.t_us.clamp(1, MAX_INTERVAL_US),
            tau_us: self.tau_us.min(MAX_INTERVAL_US),
            ..self
        }
    }

    /// The same limit with the given stored TAT.
    pub fn with_tat(self, tat_us: Option<u64>) -> Self {
        Self { tat_us, ..self }
    }
}

/// The result of [`decide`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Whether every bucket had room.
    pub allowed: bool,
    /// Per bucket, in order: the new TAT when allowed, else the current TAT (at least `now`).
    pub tats_us: Vec<u64>,
}

impl Outcome {
    /// For a refusal, the bucket to name in the `RateLimit` header and `Retry-After`: the one
    /// with the longest wait, so a client waiting that long finds every bucket open. `None` when
    /// allowed, and a refusal always names one bucket (unless `buckets` is empty). `buckets` are
    /// the limits the outcome was decided with, in the same order; they are read as the store
    /// applies them ([`Bucket::clamped`]).
    pub fn refusing(&self, now_us: u64, buckets: &[Bucket]) -> Option<usize> {
        if self.allowed {
            return None;
        }
        let waiting = buckets
            .iter()
            .zip(&self.tats_us)
            .enumerate()
            .map(|(i, (b, &tat))| (i, retry_after_us(now_us, b, tat)))
            .filter(|&(_, wait)| wait > 0)
            .max_by_key(|&(_, wait)| wait)
            .map(|(i, _)| i);
        // Only buckets other than the ones decided with can leave no bucket waiting: name the
        // one furthest ahead rather than nothing, so the caller always has a bucket to report.
        waiting.or_else(|| {
            self.tats_us
                .iter()
                .take(buckets.len())
                .enumerate()
                .max_by_key(|&(_, tat)| tat.saturating_sub(now_us))
                .map(|(i, _)| i)
        })
    }
}

/// Decides one request against `buckets`, all or nothing: a refusal by any bucket changes none,
/// so a flood refused per IP does not drain the per-user or global buckets.
pub fn decide(now_us: u64, buckets: &[Bucket]) -> Outcome {
    // A missing or past TAT means an idle bucket: it starts from now with its full burst.
    let mut tats_us: Vec<u64> = buckets
        .iter()
        .map(|b| b.tat_us.unwrap_or(now_us).max(now_us))
        .collect();
    let allowed = buckets
        .iter()
        .zip(&tats_us)
        .all(|(b, &tat)| tat - now_us <= b.tau_us);
    if allowed {
        for (tat, b) in tats_us.iter_mut().zip(buckets) {
            *tat = tat.saturating_add(b.t_us);
        }
    }
    Outcome { allowed, tats_us }
}

/// How long until `b` (whose TAT is `tat_us`) lets one request through: `tat − now − τ`,
/// clamped at 0, with `τ` as the store applies it ([`Bucket::clamped`]).
pub fn retry_after_us(now_us: u64, b: &Bucket, tat_us: u64) -> u64 {
    let b = b.clamped();
    tat_us.saturating_sub(now_us).saturating_sub(b.tau_us)
}

/// How many requests `b` would let through right now: `⌊(τ + T − (tat − now)) / T⌋`, with `T`
/// and `τ` as the store applies them ([`Bucket::clamped`]).
pub fn remaining(now_us: u64, b: &Bucket, tat_us: u64) -> u64 {
    let b = b.clamped();
    let room = b
        .tau_us
        .saturating_add(b.t_us)
        .saturating_sub(tat_us.saturating_sub(now_us));
    room / b.t_us.max(1)
}

/// Whole seconds until the bucket is back to its full burst: `⌈(tat − now) / 1e6⌉`.
pub fn reset_secs(now_us: u64, tat_us: u64) -> u64 {
    tat_us.saturating_sub(now_us).div_ceil(1_000_000)
}

/// Whole seconds to put in `Retry-After` (rounded up, so a client waiting that long passes).
pub fn retry_after_secs(now_us: u64, b: &Bucket, tat_us: u64) -> u64 {
    retry_after_us(now_us, b, tat_us).div_ceil(1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);
    const HOUR: Duration = Duration::from_secs(3600);
    const NOW: u64 = 1_780_000_000_000_000;

    /// Feeds `n` requests at `now` through `buckets`, storing the TATs back; returns how many passed.
    fn run(now: u64, buckets: &mut [Bucket], n: usize) -> usize {
        let mut passed = 0;
        for _ in 0..n {
            let out = decide(now, buckets);
            if out.allowed {
                passed += 1;
            }
            for (b, tat) in buckets.iter_mut().zip(out.tats_us) {
                b.tat_us = Some(tat);
            }
        }
        passed
    }

    #[test]
    fn thirty_a_minute_with_burst_ten_passes_eleven_at_once_then_the_twelfth_waits_two_seconds() {
        let mut b = [Bucket::new(30, MIN, 10)];
        assert_eq!(b[0].t_us, 2_000_000);
        assert_eq!(b[0].tau_us, 20_000_000);
        assert_eq!(run(NOW, &mut b, 11), 11);
        let out = decide(NOW, &b);
        assert!(!out.allowed);
        assert_eq!(
            out.tats_us,
            vec![NOW + 22_000_000],
            "a refusal changes nothing"
        );
        assert_eq!(retry_after_us(NOW, &b[0], out.tats_us[0]), 2_000_000);
        assert_eq!(retry_after_secs(NOW, &b[0], out.tats_us[0]), 2);
        assert_eq!(remaining(NOW, &b[0], out.tats_us[0]), 0);
        assert_eq!(reset_secs(NOW, out.tats_us[0]), 22);
        // One µs early is still refused; on time passes.
        assert!(!decide(NOW + 1_999_999, &b).allowed);
        assert!(decide(NOW + 2_000_000, &b).allowed);
    }

    #[test]
    fn one_an_hour_without_burst_passes_a_single_request() {
        let mut b = [Bucket::new(1, HOUR, 0)];
        assert_eq!(run(NOW, &mut b, 5), 1);
        let tat = b[0].tat_us.unwrap_or_default();
        assert_eq!(retry_after_us(NOW + 1, &b[0], tat), 3_600_000_000 - 1);
        assert_eq!(run(NOW + 3_600_000_000, &mut b, 5), 1);
    }

    #[test]
    fn a_million_a_second_has_an_emission_interval_of_one_microsecond() {
        let b = Bucket::new(1_000_000, Duration::from_secs(1), 0);
        assert_eq!(b.t_us, 1);
        let mut bs = [b];
        assert_eq!(run(NOW, &mut bs, 3), 1);
        assert_eq!(run(NOW + 1, &mut bs, 3), 1);
        // More requests than µs in the period still gives the 1 µs floor, never zero.
        assert_eq!(Bucket::new(10_000_000, Duration::from_secs(1), 0).t_us, 1);
        assert_eq!(Bucket::new(0, Duration::from_secs(1), 0).t_us, 1_000_000);
    }

    #[test]
    fn restarting_after_a_long_idle_gives_a_full_burst() {
        let mut b = [Bucket::new(30, MIN, 10)];
        assert_eq!(run(NOW, &mut b, 20), 11);
        let later = NOW + 10 * 3_600_000_000;
        let tat = b[0].tat_us.unwrap_or_default();
        assert_eq!(remaining(later, &b[0], tat), 11);
        assert_eq!(reset_secs(later, tat), 0);
        assert_eq!(run(later, &mut b, 20), 11);
    }

    #[test]
    fn remaining_counts_down_the_burst() {
        let mut b = [Bucket::new(30, MIN, 10)];
        for left in (0..11).rev() {
            assert_eq!(run(NOW, &mut b, 1), 1);
            assert_eq!(remaining(NOW, &b[0], b[0].tat_us.unwrap_or_default()), left);
        }
    }

    #[test]
    fn a_refusal_by_one_of_three_buckets_changes_none() {
        let ip = Bucket::new(1, MIN, 0);
        let user = Bucket::new(10, MIN, 4);
        let global = Bucket::new(600, MIN, 200);
        let mut b = [ip, user, global];
        assert_eq!(run(NOW, &mut b, 1), 1);
        let before: Vec<_> = b.iter().map(|b| b.tat_us).collect();
        let out = decide(NOW, &b);
        assert!(!out.allowed);
        assert_eq!(
            out.tats_us.iter().map(|&t| Some(t)).collect::<Vec<_>>(),
            before
        );
        // The user and global buckets still have their room: 4 more for the user alone.
        let mut rest = [b[1], b[2]];
        assert_eq!(run(NOW, &mut rest, 10), 4);
    }

    #[test]
    fn the_refusing_bucket_is_the_one_with_the_longest_wait() {
        let ip = Bucket::new(1, MIN, 0);
        let user = Bucket::new(1, HOUR, 0);
        let global = Bucket::new(600, MIN, 200);
        let mut b = [ip, user, global];
        assert_eq!(run(NOW, &mut b, 1), 1);
        let out = decide(NOW, &b);
        assert_eq!(
            out.refusing(NOW, &b),
            Some(1),
            "the hour-long user wait, not the IP's minute"
        );
        let ip_only = [b[0], b[2]];
        assert_eq!(decide(NOW, &ip_only).refusing(NOW, &ip_only), Some(0));
        assert_eq!(
            decide(NOW + 3_600_000_000, &b).refusing(NOW + 3_600_000_000, &b),
            None
        );
    }

    #[test]
    fn a_refusal_always_names_a_bucket_even_beyond_the_store_clamp() {
        // 1 a year with a burst of 40: τ is 40 years, which the store clamps to 2^50 µs.
        let yearly = Bucket::new(1, Duration::from_secs(365 * 24 * 3600), 40);
        assert!(yearly.tau_us > MAX_INTERVAL_US);
        let mut store_view = [yearly.clamped()];
        assert_eq!(store_view[0].tau_us, MAX_INTERVAL_US);
        assert_eq!(
            run(NOW, &mut store_view, 100),
            36,
            "⌊2^50 / 1 year⌋ + 1 at once"
        );
        let out = decide(NOW, &store_view);
        assert!(!out.allowed);
        // The caller passes its own, unclamped bucket: still named, with a real wait.
        assert_eq!(out.refusing(NOW, &[yearly]), Some(0));
        let tat = out.tats_us[0];
        assert_eq!(
            retry_after_us(NOW, &yearly, tat),
            tat - NOW - MAX_INTERVAL_US
        );
        assert!(retry_after_secs(NOW, &yearly, tat) >= 1);
        assert_eq!(remaining(NOW, &yearly, tat), 0);
        // Buckets that do not match the outcome still give a name, never None.
        let lax = Bucket::new(1, MIN, 1_000);
        assert_eq!(out.refusing(NOW, &[lax]), Some(0));
        let two = Outcome {
            allowed: false,
            tats_us: vec![NOW + 5, NOW + 9],
        };
        assert_eq!(two.refusing(NOW, &[lax, lax]), Some(1));
        assert_eq!(two.refusing(NOW, &[]), None);
    }

    #[test]
    fn no_buckets_allows() {
        assert_eq!(
            decide(NOW, &[]),
            Outcome {
                allowed: true,
                tats_us: vec![]
            }
        );
    }

    #[test]
    fn arithmetic_saturates_near_u64_max() {
        let huge = Bucket::new(1, Duration::MAX, u64::MAX);
        assert_eq!(huge.t_us, u64::MAX);
        assert_eq!(huge.tau_us, u64::MAX);
        let out = decide(u64::MAX - 1, &[huge]);
        assert!(out.allowed);
        assert_eq!(out.tats_us, vec![u64::MAX]);
        let b = Bucket::new(1, MIN, 0).with_tat(Some(u64::MAX));
        let out = decide(u64::MAX - 5, &[b]);
        assert!(!out.allowed);
        assert_eq!(retry_after_us(u64::MAX - 5, &b, u64::MAX), 5);
        // As the store clamps it, T = τ = 2^50 µs: a burst of 1, so 2 at once.
        assert_eq!(remaining(u64::MAX, &huge, u64::MAX), 2);
        assert_eq!(reset_secs(0, u64::MAX), u64::MAX.div_ceil(1_000_000));
        assert_eq!(
            retry_after_us(10, &b, 5),
            0,
            "a TAT in the past means no wait"
        );
    }
}
