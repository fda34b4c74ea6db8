//! The delivery loop: claim a batch → deliver each row on its channel → record the outcome.
//! One worker per replica; the claim's lease keeps replicas off each other's rows.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use tokio::sync::{Notify, watch};

use crate::clock::Clock;
use crate::decide::{Decision, decide, id_jitter};
use crate::deliver::{Deliver, Outcome};
use crate::notice::{Channel, Claimed};
use crate::store::{MAX_BATCH, Outbox, StoreError};

/// What was recorded for a row, for the `result` label of a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Recorded {
    /// Delivered.
    Delivered,
    /// Failed, due again later.
    Retry,
    /// Failed for good.
    Dead,
}

impl Recorded {
    /// `delivered`, `retry` or `dead`.
    pub fn as_str(self) -> &'static str {
        match self {
            Recorded::Delivered => "delivered",
            Recorded::Retry => "retry",
            Recorded::Dead => "dead",
        }
    }
}

/// Where the worker reports what it did, so the server can count it: by channel, event type
/// and result (all bounded label sets), and store failures by reason.
pub trait Observe: Send + Sync {
    /// An attempt on a row of `channel` and `event` was recorded as `result`.
    fn recorded(&self, channel: Channel, event: &str, result: Recorded);

    /// An outbox statement failed; the rows concerned come back when their lease ends.
    fn store_failed(&self, error: &StoreError) {
        tracing::warn!(reason = error.reason(), %error, "notification outbox statement failed");
    }
}

/// An observer that only logs.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogOnly;

impl Observe for LogOnly {
    fn recorded(&self, channel: Channel, event: &str, result: Recorded) {
        tracing::debug!(
            channel = channel.as_str(),
            event,
            result = result.as_str(),
            "notification attempt"
        );
    }
}

/// The worker's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerConfig {
    /// How long a claim holds its rows: longer than `attempt_timeout` plus the time to record,
    /// or another replica could send a row while this one still is.
    pub lease: Duration,
    /// Rows per claim; they are delivered concurrently.
    pub batch: u32,
    /// How often the worker looks for due rows when nobody wakes it (retries come due this
    /// way, and rows enqueued by other replicas).
    pub poll_interval: Duration,
    /// The longest one delivery may take before it is cancelled and retried.
    pub attempt_timeout: Duration,
}

impl Default for WorkerConfig {
    /// Plan §7.1: a 60 s lease, 20 rows per claim; a 5 s poll; a 30 s cap per attempt (the
    /// mailer's timeout; webhooks stop at 10 s).
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(60),
            batch: 20,
            poll_interval: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(30),
        }
    }
}

/// Why a [`WorkerConfig`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The lease does not outlast an attempt.
    #[error("the lease ({lease:?}) must be longer than the attempt timeout ({attempt_timeout:?})")]
    LeaseTooShort {
        /// The lease.
        lease: Duration,
        /// The attempt timeout.
        attempt_timeout: Duration,
    },
    /// The batch is 0 or above the store's maximum.
    #[error("the batch size {0} is not within 1..={MAX_BATCH}")]
    InvalidBatch(u32),
    /// A zero poll interval or attempt timeout.
    #[error("the poll interval and the attempt timeout must be above zero")]
    ZeroDuration,
}

impl WorkerConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.poll_interval.is_zero() || self.attempt_timeout.is_zero() {
            return Err(ConfigError::ZeroDuration);
        }
        if !(1..=MAX_BATCH).contains(&self.batch) {
            return Err(ConfigError::InvalidBatch(self.batch));
        }
        if self.lease <= self.attempt_timeout {
            return Err(ConfigError::LeaseTooShort {
                lease: self.lease,
                attempt_timeout: self.attempt_timeout,
            });
        }
        Ok(())
    }
}

/// The jitter for a row's backoff, in `[0, 1)`.
pub type Jitter = fn(&Claimed) -> f64;

/// The outbox worker of one replica.
pub struct Worker {
    outbox: Outbox,
    clock: Arc<dyn Clock>,
    config: WorkerConfig,
    email: Option<Arc<dyn Deliver>>,
    webhook: Option<Arc<dyn Deliver>>,
    observer: Arc<dyn Observe>,
    wake: Arc<Notify>,
    jitter: Jitter,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("config", &self.config)
            .field("email", &self.email.is_some())
            .field("webhook", &self.webhook.is_some())
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// A worker over `outbox` reading the time from `clock`, with no channel yet: a row of a
    /// channel without a [`Deliver`] is dead at once ("no … channel is configured").
    pub fn new(
        outbox: Outbox,
        clock: Arc<dyn Clock>,
        config: WorkerConfig,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            outbox,
            clock,
            config,
            email: None,
            webhook: None,
            observer: Arc::new(LogOnly),
            wake: Arc::new(Notify::new()),
            jitter: |row| id_jitter(row.id, row.attempts),
        })
    }

    /// Delivers email rows through `deliver` (the server's mailer).
    pub fn with_email(mut self, deliver: Arc<dyn Deliver>) -> Self {
        self.email = Some(deliver);
        self
    }

    /// Delivers webhook rows through `deliver` (usually a [`crate::WebhookChannel`]).
    pub fn with_webhook(mut self, deliver: Arc<dyn Deliver>) -> Self {
        self.webhook = Some(deliver);
        self
    }

    /// Reports outcomes to `observer` instead of only logging them.
    pub fn with_observer(mut self, observer: Arc<dyn Observe>) -> Self {
        self.observer = observer;
        self
    }

    /// Draws the backoff jitter with `jitter` (default: from the row id and attempt).
    pub fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The handle to wake the worker: call `notify_one()` after committing an enqueue so the
    /// row goes out now rather than at the next poll.
    pub fn waker(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    /// One round: claims up to a batch of due rows, delivers them concurrently and records each
    /// outcome. Returns how many rows it claimed. A failure to record one row is reported to
    /// the observer and leaves that row to come back after its lease.
    pub async fn tick(&self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let rows = self
            .outbox
            .claim(now, self.config.lease, self.config.batch)
            .await?;
        join_all(rows.iter().map(|row| self.attempt(row))).await;
        Ok(rows.len())
    }

    /// Runs rounds until `shutdown` holds `true` or its sender is gone: at once after a full
    /// batch, otherwise when woken or after the poll interval. A round in progress finishes
    /// first (bounded by the attempt timeout); a row cut off anyway is claimed again after
    /// its lease.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow_and_update() {
                return;
            }
            let full = match self.tick().await {
                Ok(n) => n >= self.config.batch as usize,
                Err(error) => {
                    self.observer.store_failed(&error);
                    false
                }
            };
            if full {
                continue;
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.config.poll_interval) => {}
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }

    fn channel(&self, channel: Channel) -> Option<&Arc<dyn Deliver>> {
        match channel {
            Channel::Email => self.email.as_ref(),
            Channel::Webhook => self.webhook.as_ref(),
        }
    }

    async fn attempt(&self, row: &Claimed) {
        let outcome = match self.channel(row.channel) {
            Some(deliver) => {
                match tokio::time::timeout(self.config.attempt_timeout, deliver.deliver(row)).await
                {
                    Ok(outcome) => outcome,
                    Err(_) => Outcome::Retry(format!(
                        "no answer within {:?}",
                        self.config.attempt_timeout
                    )),
                }
            }
            None => {
                Outcome::Permanent(format!("no {} channel is configured", row.channel.as_str()))
            }
        };
        let now = self.clock.now();
        let (recorded, result) = match decide(row.attempts, outcome, now, (self.jitter)(row)) {
            Decision::Delivered => (Recorded::Delivered, self.outbox.delivered(row, now).await),
            Decision::Retry { at, error } => {
                (Recorded::Retry, self.outbox.retry(row, at, &error).await)
            }
            Decision::Dead { error } => (Recorded::Dead, self.outbox.dead(row, now, &error).await),
        };
        match result {
            Ok(true) => self.observer.recorded(row.channel, &row.event, recorded),
            // Our lease ran out and the row was claimed again or finished: the newer attempt
            // speaks for it.
            Ok(false) => tracing::debug!(id = %row.id, "outbox row was claimed again meanwhile"),
            Err(error) => self.observer.store_failed(&error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_configuration_is_valid() {
        assert_eq!(WorkerConfig::default().validate(), Ok(()));
    }

    #[test]
    fn a_lease_must_outlast_an_attempt() {
        let config = WorkerConfig {
            lease: Duration::from_secs(30),
            ..WorkerConfig::default()
        };
        assert!(matches!(
            config.validate(),
            Err(ConfigError::LeaseTooShort { .. })
        ));
        for batch in [0, MAX_BATCH + 1] {
            let config = WorkerConfig {
                batch,
                ..WorkerConfig::default()
            };
            assert_eq!(config.validate(), Err(ConfigError::InvalidBatch(batch)));
        }
        let config = WorkerConfig {
            poll_interval: Duration::ZERO,
            ..WorkerConfig::default()
        };
        assert_eq!(config.validate(), Err(ConfigError::ZeroDuration));
    }

    #[test]
    fn results_have_their_label() {
        let labels: Vec<_> = [Recorded::Delivered, Recorded::Retry, Recorded::Dead]
            .iter()
            .map(|r| r.as_str())
            .collect();
        assert_eq!(labels, ["delivered", "retry", "dead"]);
    }
}
