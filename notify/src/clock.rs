//! The time source, injectable so tests (and the server's manual clock) control it.

use time::OffsetDateTime;

/// Where the worker and the webhook channel read the time.
pub trait Clock: Send + Sync {
    /// Now, UTC.
    fn now(&self) -> OffsetDateTime;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// Any `Fn() -> OffsetDateTime` is a clock: the server passes `move || clock.now()`.
impl<F> Clock for F
where
    F: Fn() -> OffsetDateTime + Send + Sync,
{
    fn now(&self) -> OffsetDateTime {
        self()
    }
}
