//! When the outbox worker tries a delivery again, and when it gives up (protection plan §7.1).
//!
//! `next_attempt(n, jitter) = min(30 s · 2^(n−1), 1 h) · (0.8 + 0.4 · jitter)`: 30 s, 1, 2, 4,
//! 8, 16 and 32 min, then hourly; dead after [`MAX_ATTEMPTS`] attempts (about 5 h), or at once
//! when the receiver answers 410 Gone. Jitter spreads a burst of failures (a receiver that was
//! down) so the retries do not all arrive together.

use std::time::Duration;

/// Attempts after which a failed delivery is dead: the 11 waits between them add up to about
/// 5 h (30 s … 32 min, then 4 × 1 h), enough to ride out a receiver's outage or a redeploy.
pub const MAX_ATTEMPTS: u32 = 12;

const BASE_MS: u64 = 30_000;
const CAP_MS: u64 = 3_600_000;

/// The wait before the next attempt, after `attempts` attempts have failed (1 after the
/// first; 0 is treated as 1). `jitter` is uniform in `[0, 1)`; values outside are clamped and
/// NaN counts as 0, so the result is always between 0.8 and 1.2 times the base.
pub fn next_attempt(attempts: u32, jitter: f64) -> Duration {
    let n = attempts.max(1);
    // 2^(n−1) overflows past n = 64; the cap is reached at n = 8 anyway.
    let base_ms = 1u64
        .checked_shl(n - 1)
        .and_then(|m| m.checked_mul(BASE_MS))
        .map_or(CAP_MS, |ms| ms.min(CAP_MS));
    let jitter = if jitter.is_nan() {
        0.0
    } else {
        jitter.clamp(0.0, 1.0)
    };
    let factor = 0.8 + 0.4 * jitter;
    // base_ms ≤ 3.6e6 and factor ≤ 1.2: exact enough in f64, and the cast cannot saturate.
    Duration::from_millis((base_ms as f64 * factor).round() as u64)
}

/// Whether a delivery is dead (never tried again) after `attempts` attempts, the last of which
/// got `status` (`None`: a network error or timeout). A 2xx is delivered, never dead; a 410
/// is dead at once (the receiver asks us to stop); anything else is dead only once
/// [`MAX_ATTEMPTS`] attempts have been made.
pub fn is_dead(attempts: u32, status: Option<u16>) -> bool {
    match status {
        Some(200..=299) => false,
        Some(410) => true,
        _ => attempts >= MAX_ATTEMPTS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(d: Duration) -> f64 {
        d.as_secs_f64()
    }

    #[test]
    fn the_base_delay_doubles_from_30_seconds_up_to_one_hour() {
        let table: [(u32, u64); 14] = [
            (0, 30),
            (1, 30),
            (2, 60),
            (3, 120),
            (4, 240),
            (5, 480),
            (6, 960),
            (7, 1920),
            (8, 3600),
            (9, 3600),
            (11, 3600),
            (12, 3600),
            (64, 3600),
            (u32::MAX, 3600),
        ];
        for (n, base) in table {
            // jitter 0.5 is the middle of the band: factor exactly 1.
            assert_eq!(next_attempt(n, 0.5), Duration::from_secs(base), "n={n}");
        }
    }

    #[test]
    fn jitter_spreads_the_delay_from_80_to_120_percent() {
        assert_eq!(secs(next_attempt(1, 0.0)), 24.0);
        assert_eq!(secs(next_attempt(1, 0.25)), 27.0);
        assert_eq!(secs(next_attempt(1, 0.999_999)), 36.0);
        assert_eq!(secs(next_attempt(8, 0.0)), 2880.0);
        assert_eq!(next_attempt(8, 0.999_999), Duration::from_millis(4_319_999));
        // The top of the band is approached, never passed.
        for n in 1..=MAX_ATTEMPTS {
            let base = next_attempt(n, 0.5);
            assert!(next_attempt(n, 0.999_999_9) <= base.mul_f64(1.2), "n={n}");
            assert!(next_attempt(n, 0.0) >= base.mul_f64(0.8), "n={n}");
        }
    }

    #[test]
    fn jitter_out_of_range_is_clamped() {
        assert_eq!(next_attempt(2, -3.0), next_attempt(2, 0.0));
        assert_eq!(next_attempt(2, f64::NAN), next_attempt(2, 0.0));
        assert_eq!(next_attempt(2, 7.0), next_attempt(2, 1.0));
        assert_eq!(next_attempt(2, f64::INFINITY), next_attempt(2, 1.0));
    }

    #[test]
    fn the_waits_before_death_add_up_to_about_five_hours() {
        let total: u64 = (1..MAX_ATTEMPTS)
            .map(|n| next_attempt(n, 0.5).as_secs())
            .sum();
        assert_eq!(total, 30 + 60 + 120 + 240 + 480 + 960 + 1920 + 4 * 3600);
        assert!((5 * 3600..5 * 3600 + 600).contains(&total), "{total}");
    }

    #[test]
    fn dead_after_twelve_failed_attempts_or_at_once_on_410() {
        let table: [(u32, Option<u16>, bool); 12] = [
            (1, Some(500), false),
            (1, None, false),
            (11, Some(503), false),
            (11, None, false),
            (12, Some(500), true),
            (12, None, true),
            (13, Some(404), true),
            (1, Some(410), true),
            (1, Some(200), false),
            (12, Some(204), false),
            (40, Some(299), false),
            (11, Some(301), false),
        ];
        for (attempts, status, dead) in table {
            assert_eq!(is_dead(attempts, status), dead, "{attempts} {status:?}");
        }
    }
}
