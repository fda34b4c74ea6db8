//! The wall clock, passed in so lockout windows, token expiry and session timeouts are tested
//! exactly.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use time::OffsetDateTime;

/// A source of the current time.
#[derive(Clone, Debug)]
pub enum Clock {
    /// The system clock.
    System,
    /// A clock tests set and advance (nanoseconds since the Unix epoch).
    Manual(Arc<AtomicI64>),
}

impl Clock {
    /// A manual clock starting at `start`.
    pub fn manual(start: OffsetDateTime) -> Self {
        let nanos = i64::try_from(start.unix_timestamp_nanos()).unwrap_or(i64::MAX);
        Clock::Manual(Arc::new(AtomicI64::new(nanos)))
    }

    /// The current time, truncated to microseconds (what PostgreSQL stores).
    pub fn now(&self) -> OffsetDateTime {
        let now = match self {
            Clock::System => OffsetDateTime::now_utc(),
            Clock::Manual(nanos) => {
                OffsetDateTime::from_unix_timestamp_nanos(nanos.load(Ordering::SeqCst).into())
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH)
            }
        };
        let micros = now.microsecond();
        now.replace_microsecond(micros).unwrap_or(now)
    }

    /// Moves a manual clock forward; does nothing to the system clock.
    pub fn advance(&self, by: std::time::Duration) {
        if let Clock::Manual(nanos) = self {
            let by = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
            nanos.fetch_add(by, Ordering::SeqCst);
        }
    }
}
