//! What to record after an attempt: pure, with the time and the jitter passed in. The backoff
//! itself is `portcullis_webhook::backoff` (plan §7.1), the same for both channels.

use portcullis_webhook::{MAX_ATTEMPTS, next_attempt};
use time::OffsetDateTime;

use crate::deliver::Outcome;

/// What the worker records for a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Delivered now.
    Delivered,
    /// Pending again, due at `at`.
    Retry {
        /// When it is next due.
        at: OffsetDateTime,
        /// The reason the attempt failed.
        error: String,
    },
    /// Never tried again.
    Dead {
        /// The reason it failed for the last time.
        error: String,
    },
}

/// The decision after the `attempts`-th attempt (1 for the first) ended with `outcome` at
/// `now`. A retryable failure waits `next_attempt(attempts, jitter)` (30 s, 1 min, … 1 h, ±20 %)
/// and is dead once [`MAX_ATTEMPTS`] attempts have failed; a permanent failure is dead at once.
pub fn decide(attempts: u32, outcome: Outcome, now: OffsetDateTime, jitter: f64) -> Decision {
    match outcome {
        Outcome::Delivered => Decision::Delivered,
        Outcome::Permanent(error) => Decision::Dead { error },
        Outcome::Retry(error) if attempts >= MAX_ATTEMPTS => Decision::Dead {
            error: format!("gave up after {attempts} attempts: {error}"),
        },
        Outcome::Retry(error) => {
            let wait = time::Duration::try_from(next_attempt(attempts, jitter))
                .unwrap_or(time::Duration::HOUR);
            // Past year 9999 the row is simply due again at once.
            let at = now.checked_add(wait).unwrap_or(now);
            Decision::Retry { at, error }
        }
    }
}

/// A jitter in `[0, 1)` drawn from the row id and the attempt: ids are random (v4), so a burst
/// of rows failing together spreads out, and the same attempt always waits the same.
pub fn id_jitter(id: uuid::Uuid, attempts: u32) -> f64 {
    // splitmix64 over the id's low bits mixed with the attempt.
    let mut x = (id.as_u128() as u64) ^ u64::from(attempts).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    // The top 53 bits as a fraction: exact in f64, always below 1.
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-30 12:00:00 UTC);

    fn retry() -> Outcome {
        Outcome::Retry("HTTP 500".into())
    }

    #[test]
    fn retries_wait_by_the_backoff_table_and_die_on_the_twelfth_attempt() {
        // (attempt, jitter, wait in seconds; None = dead)
        let table: [(u32, f64, Option<i64>); 13] = [
            (1, 0.5, Some(30)),
            (1, 0.0, Some(24)),
            (1, 0.999_999, Some(36)),
            (2, 0.5, Some(60)),
            (3, 0.5, Some(120)),
            (4, 0.5, Some(240)),
            (5, 0.5, Some(480)),
            (6, 0.5, Some(960)),
            (7, 0.5, Some(1920)),
            (8, 0.5, Some(3600)),
            (11, 0.5, Some(3600)),
            (12, 0.5, None),
            (13, 0.0, None),
        ];
        for (attempts, jitter, wait) in table {
            let got = decide(attempts, retry(), NOW, jitter);
            let want = match wait {
                Some(s) => Decision::Retry {
                    at: NOW + time::Duration::seconds(s),
                    error: "HTTP 500".into(),
                },
                None => Decision::Dead {
                    error: format!("gave up after {attempts} attempts: HTTP 500"),
                },
            };
            assert_eq!(got, want, "attempt {attempts}, jitter {jitter}");
        }
    }

    #[test]
    fn delivered_and_permanent_ignore_the_attempt_count() {
        for attempts in [1, 11, 12, 40] {
            assert_eq!(
                decide(attempts, Outcome::Delivered, NOW, 0.3),
                Decision::Delivered
            );
            assert_eq!(
                decide(attempts, Outcome::Permanent("HTTP 410".into()), NOW, 0.3),
                Decision::Dead {
                    error: "HTTP 410".into()
                }
            );
        }
    }

    #[test]
    fn id_jitter_is_in_range_stable_and_spread() {
        let values: Vec<f64> = (0..1000u128)
            .map(|n| id_jitter(uuid::Uuid::from_u128(n * 7919), 1))
            .collect();
        assert!(values.iter().all(|j| (0.0..1.0).contains(j)));
        let low = values.iter().filter(|j| **j < 0.5).count();
        assert!((400..600).contains(&low), "{low} of 1000 below 0.5");
        let id = uuid::Uuid::from_u128(42);
        assert_eq!(id_jitter(id, 3), id_jitter(id, 3));
        assert_ne!(id_jitter(id, 3), id_jitter(id, 4));
    }
}
