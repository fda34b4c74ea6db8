//! The delivery loop: claim → deliver each row on its channel → record the outcome.
//! One worker per replica; the claim's lease keeps replicas off each other's rows.
//!
//! - Each configured channel has its own loop and claims only its own rows, so a replica
//!   never touches a channel it cannot deliver, and a slow webhook receiver never holds up mail.
//! - Within a channel, up to `batch` attempts run at once; each is recorded as it finishes and
//!   its slot is refilled by a new claim, so one slow row does not idle the others.
//! - Each attempt runs in its own task: a panic there is a retry ("panic"), not a dead loop.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::join_all;
use futures::stream::FuturesUnordered;
use tokio::sync::{Notify, watch};

use crate::breaker::Breaker;
use crate::clock::Clock;
use crate::decide::{Decision, decide, id_jitter};
use crate::deliver::{Deliver, Outcome};
use crate::notice::{Channel, Claimed, ERASURE_DELAY};
use crate::store::{MAX_BATCH, Outbox, StoreError};

/// What was recorded for a row, for the `result` label of a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Recorded {
    /// Delivered.
    Delivered,
    /// Failed, due again later.
    Retried,
    /// Failed for good.
    Dead,
}

impl Recorded {
    /// `delivered`, `retried` or `dead`: the `result` label of the server's `notifications`
    /// counter (authserver/src/metrics.rs).
    pub fn as_str(self) -> &'static str {
        match self {
            Recorded::Delivered => "delivered",
            Recorded::Retried => "retried",
            Recorded::Dead => "dead",
        }
    }
}

/// Where the worker reports what it did, so the server can count it: by channel, event type
/// and result (all bounded label sets), and store failures by reason.
pub trait Observe: Send + Sync {
    /// An attempt on a row of `channel` and `event` was recorded as `result`.
    fn recorded(&self, channel: Channel, event: &str, result: Recorded);

    /// A claim of `channel` took `rows` rows (0 included): for a claims counter, and so a test
    /// can tell a loop has gone idle.
    fn claimed(&self, channel: Channel, rows: usize) {
        let _ = (channel, rows);
    }

    /// The receiver answered `410 Gone`, which kills the row at once: counted apart (and worth
    /// an alert), since whoever holds the endpoint can silence any event this way, and a
    /// retired endpoint keeps getting one request per event.
    fn gone(&self, channel: Channel, event: &str) {
        tracing::warn!(
            channel = channel.as_str(),
            event,
            "the receiver answered 410 Gone"
        );
    }

    /// `channel` failed too often in a row and claims nothing until `until` (then one probe).
    fn paused(&self, channel: Channel, until: time::OffsetDateTime) {
        tracing::warn!(channel = channel.as_str(), %until, "notification channel failing: paused");
    }

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
    /// How long a claim holds its rows: at least twice `attempt_timeout` plus 30 s (the attempt,
    /// then recording with a busy pool), or another replica could send a row while this one
    /// still is. Replicas' clocks must agree to well within the margin.
    pub lease: Duration,
    /// Rows per claim; they are delivered concurrently.
    pub batch: u32,
    /// How often the worker looks for due rows when nobody wakes it (retries come due this
    /// way, and rows enqueued by other replicas).
    pub poll_interval: Duration,
    /// The longest one delivery may take before it is cancelled and retried.
    pub attempt_timeout: Duration,
    /// Consecutive failed attempts (network errors, timeouts, non-2xx other than 410) after
    /// which a channel stops claiming for `breaker_cooldown`, so an outage does not burn every
    /// row's attempts; 0 turns it off.
    pub breaker_threshold: u32,
    /// How long an open breaker waits before one row probes the channel again.
    pub breaker_cooldown: Duration,
}

impl Default for WorkerConfig {
    /// A 120 s lease (plan §7.1 said 60 s: too short for a 30 s attempt and its recording),
    /// 20 rows at once per channel; a 5 s poll; a 30 s cap per attempt (the mailer's timeout;
    /// webhooks stop at 10 s).
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(120),
            batch: 20,
            poll_interval: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(30),
            breaker_threshold: 10,
            breaker_cooldown: Duration::from_secs(60),
        }
    }
}

/// Why a [`WorkerConfig`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The lease does not outlast an attempt and its recording.
    #[error(
        "the lease ({lease:?}) must be at least twice the attempt timeout ({attempt_timeout:?}) plus 30 s"
    )]
    LeaseTooShort {
        /// The lease.
        lease: Duration,
        /// The attempt timeout.
        attempt_timeout: Duration,
    },
    /// The lease outlasts [`ERASURE_DELAY`]: an erasure notice could overtake a notice about
    /// the same user still being sent.
    #[error("the lease ({0:?}) must not exceed the erasure notices' delay ({ERASURE_DELAY:?})")]
    LeaseTooLong(Duration),
    /// The batch is 0 or above the store's maximum.
    #[error("the batch size {0} is not within 1..={MAX_BATCH}")]
    InvalidBatch(u32),
    /// A zero poll interval or attempt timeout.
    #[error("the poll interval and the attempt timeout must be above zero")]
    ZeroDuration,
}

/// The margin a lease keeps beyond two attempt timeouts: recording waits for a pooled
/// connection (sqlx's acquire timeout is 30 s by default).
pub const LEASE_MARGIN: Duration = Duration::from_secs(30);

impl WorkerConfig {
    /// The shortest lease allowed: twice the attempt timeout plus [`LEASE_MARGIN`].
    pub fn min_lease(&self) -> Duration {
        self.attempt_timeout
            .saturating_mul(2)
            .saturating_add(LEASE_MARGIN)
    }

    // How long recording an outcome may take: what the lease leaves after the attempt.
    fn record_budget(&self) -> Duration {
        self.lease.saturating_sub(self.attempt_timeout)
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.poll_interval.is_zero() || self.attempt_timeout.is_zero() {
            return Err(ConfigError::ZeroDuration);
        }
        if !(1..=MAX_BATCH).contains(&self.batch) {
            return Err(ConfigError::InvalidBatch(self.batch));
        }
        if self.lease > ERASURE_DELAY {
            return Err(ConfigError::LeaseTooLong(self.lease));
        }
        if self.lease < self.min_lease() {
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

/// Wakes every channel loop of a [`Worker`]: call [`Waker::wake`] after committing an enqueue,
/// so the row goes out now rather than at the next poll. A wake while a loop is busy is kept
/// and seen when it next waits.
#[derive(Debug, Clone, Default)]
pub struct Waker {
    email: Arc<Notify>,
    webhook: Arc<Notify>,
}

impl Waker {
    /// Wakes all channel loops.
    pub fn wake(&self) {
        self.email.notify_one();
        self.webhook.notify_one();
    }

    fn of(&self, channel: Channel) -> &Notify {
        match channel {
            Channel::Email => &self.email,
            Channel::Webhook => &self.webhook,
        }
    }
}

/// The outbox worker of one replica.
pub struct Worker {
    outbox: Outbox,
    clock: Arc<dyn Clock>,
    config: WorkerConfig,
    email: Option<Arc<dyn Deliver>>,
    webhook: Option<Arc<dyn Deliver>>,
    observer: Arc<dyn Observe>,
    wake: Waker,
    jitter: Jitter,
}

// What an attempt needs, owned, so it runs as a task of its own: an attempt that is not polled
// while holding a pooled connection would starve the claim waiting for one.
#[derive(Clone)]
struct Attempts {
    outbox: Outbox,
    clock: Arc<dyn Clock>,
    config: WorkerConfig,
    observer: Arc<dyn Observe>,
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
    /// A worker over `outbox` reading the time from `clock`, with no channel yet. It claims
    /// only rows of the channels it is given: rows of another channel wait for a replica that
    /// has it.
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
            wake: Waker::default(),
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

    /// Shares `waker` with an earlier worker, so that a server restarting its worker keeps
    /// the waker its requests already hold.
    pub fn with_waker(mut self, waker: Waker) -> Self {
        self.wake = waker;
        self
    }

    /// Draws the backoff jitter with `jitter` (default: from the row id and attempt).
    pub fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The handle to wake the worker after committing an enqueue.
    pub fn waker(&self) -> Waker {
        self.wake.clone()
    }

    /// The channels this worker delivers, and so claims.
    pub fn channels(&self) -> Vec<(Channel, Arc<dyn Deliver>)> {
        Channel::ALL
            .into_iter()
            .filter_map(|c| self.channel(c).map(|d| (c, Arc::clone(d))))
            .collect()
    }

    /// One round: claims up to a batch of due rows of each configured channel, delivers them
    /// all concurrently and records each outcome. Returns how many rows it claimed. A failure
    /// to record one row is reported to the observer and leaves that row to come back after
    /// its lease. The circuit breaker applies to [`Worker::run`] only.
    pub async fn tick(&self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let mut attempts = Vec::new();
        for (channel, deliver) in self.channels() {
            self.give_up_overclaimed(channel).await?;
            let rows = self
                .outbox
                .claim(now, self.config.lease, self.config.batch, channel)
                .await?;
            self.observer.claimed(channel, rows.len());
            let context = self.attempts();
            attempts.extend(
                rows.into_iter()
                    .map(|row| context.clone().run(Arc::clone(&deliver), row)),
            );
        }
        let claimed = attempts.len();
        join_all(attempts).await;
        Ok(claimed)
    }

    /// Runs until `shutdown` holds `true` or its sender is gone: one loop per configured
    /// channel, each keeping up to `batch` attempts in flight, claiming again whenever one
    /// finishes, when woken, or after the poll interval. On shutdown the attempts in flight
    /// finish first (bounded by the attempt timeout); a row cut off anyway is claimed again
    /// after its lease. With no channel configured it returns at once.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let loops = self
            .channels()
            .into_iter()
            .map(|(channel, deliver)| self.channel_loop(channel, deliver, shutdown.clone()));
        join_all(loops).await;
    }

    async fn channel_loop(
        &self,
        channel: Channel,
        deliver: Arc<dyn Deliver>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let batch = self.config.batch as usize;
        let wake = self.wake.of(channel);
        let context = self.attempts();
        let mut breaker = Breaker::new(self.config.breaker_threshold, self.config.breaker_cooldown);
        let mut in_flight = FuturesUnordered::new();
        loop {
            if *shutdown.borrow_and_update() {
                break;
            }
            let free = breaker.allowance(
                self.clock.now(),
                batch.saturating_sub(in_flight.len()),
                in_flight.len(),
            );
            if free > 0 {
                if let Err(error) = self.give_up_overclaimed(channel).await {
                    self.observer.store_failed(&error);
                }
                let limit = u32::try_from(free).unwrap_or(self.config.batch);
                match self
                    .outbox
                    .claim(self.clock.now(), self.config.lease, limit, channel)
                    .await
                {
                    Ok(rows) => {
                        self.observer.claimed(channel, rows.len());
                        for row in rows {
                            let attempt = context.clone().run(Arc::clone(&deliver), row);
                            in_flight.push(tokio::spawn(attempt));
                        }
                    }
                    Err(error) => self.observer.store_failed(&error),
                }
            }
            tokio::select! {
                // A slot is free again: claim at once.
                Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                    if let Some(failed) = log_join(done)
                        && let Some(until) = breaker.record(failed, self.clock.now())
                    {
                        self.observer.paused(channel, until);
                    }
                }
                () = wake.notified() => {}
                () = tokio::time::sleep(self.config.poll_interval) => {}
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
            }
        }
        while let Some(done) = in_flight.next().await {
            let _ = log_join(done);
        }
    }

    fn channel(&self, channel: Channel) -> Option<&Arc<dyn Deliver>> {
        match channel {
            Channel::Email => self.email.as_ref(),
            Channel::Webhook => self.webhook.as_ref(),
        }
    }

    async fn give_up_overclaimed(&self, channel: Channel) -> Result<(), StoreError> {
        let events = self
            .outbox
            .give_up_overclaimed(self.clock.now(), channel)
            .await?;
        for event in events {
            tracing::warn!(
                channel = channel.as_str(),
                event,
                "gave up a notification claimed too often"
            );
            self.observer.recorded(channel, &event, Recorded::Dead);
        }
        Ok(())
    }

    fn attempts(&self) -> Attempts {
        Attempts {
            outbox: self.outbox.clone(),
            clock: Arc::clone(&self.clock),
            config: self.config,
            observer: Arc::clone(&self.observer),
            jitter: self.jitter,
        }
    }
}

// An attempt task that did not finish normally: the observer panicked (the delivery itself runs
// in a task of its own), or the runtime is shutting down. Its row comes back after the lease.
fn log_join(done: Result<bool, tokio::task::JoinError>) -> Option<bool> {
    match done {
        Ok(failed) => Some(failed),
        Err(error) => {
            tracing::error!(%error, "a notification attempt task failed");
            None
        }
    }
}

// Reasons that are this replica's failing, not the channel's: they do not trip the breaker.
const SENDER_SIDE: [&str; 2] = [crate::webhook::UNSUPPORTED_EVENT, PANIC];

// The reason recorded for a panicking channel.
const PANIC: &str = "panic";

impl Attempts {
    /// Delivers `row` in a task of its own (so a panic stays there), bounded by the attempt
    /// timeout, then records the outcome within what the lease leaves. Returns whether the
    /// channel failed (for the breaker).
    async fn run(self, deliver: Arc<dyn Deliver>, row: Claimed) -> bool {
        let task = tokio::spawn({
            let row = row.clone();
            async move { deliver.deliver(&row).await }
        });
        let abort = task.abort_handle();
        let outcome = match tokio::time::timeout(self.config.attempt_timeout, task).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(error)) if error.is_panic() => {
                tracing::error!(id = %row.id, channel = row.channel.as_str(), "a notification channel panicked");
                Outcome::Retry(PANIC.to_owned())
            }
            Ok(Err(_)) => Outcome::Retry("cancelled".to_owned()),
            Err(_) => {
                abort.abort();
                Outcome::Retry("timeout".to_owned())
            }
        };
        let failed =
            matches!(&outcome, Outcome::Retry(reason) if !SENDER_SIDE.contains(&reason.as_str()));
        if matches!(&outcome, Outcome::Permanent(reason) if reason == crate::webhook::GONE) {
            self.observer.gone(row.channel, &row.event);
        }
        let recorded =
            tokio::time::timeout(self.config.record_budget(), self.record(&row, outcome)).await;
        match recorded {
            Ok(Ok(Some(recorded))) => self.observer.recorded(row.channel, &row.event, recorded),
            // Our lease ran out and the row was claimed again or finished: the newer attempt
            // speaks for it.
            Ok(Ok(None)) => tracing::debug!(id = %row.id, "outbox row was claimed again meanwhile"),
            Ok(Err(error)) => self.observer.store_failed(&error),
            Err(_) => self.observer.store_failed(&StoreError::Timeout),
        }
        failed
    }

    async fn record(
        &self,
        row: &Claimed,
        outcome: Outcome,
    ) -> Result<Option<Recorded>, StoreError> {
        let now = self.clock.now();
        let (recorded, done) = match decide(row.attempts, outcome, now, (self.jitter)(row)) {
            Decision::Delivered => (Recorded::Delivered, self.outbox.delivered(row, now).await?),
            Decision::Retry { at, error } => {
                (Recorded::Retried, self.outbox.retry(row, at, &error).await?)
            }
            Decision::Dead { error } => (Recorded::Dead, self.outbox.dead(row, now, &error).await?),
        };
        Ok(done.then_some(recorded))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_must_cover_two_attempts_and_a_margin() {
        let with = |lease: u64, attempt: u64| WorkerConfig {
            lease: Duration::from_secs(lease),
            attempt_timeout: Duration::from_secs(attempt),
            ..WorkerConfig::default()
        };
        assert_eq!(with(90, 30).validate(), Ok(()));
        assert_eq!(WorkerConfig::default().min_lease(), Duration::from_secs(90));
        assert!(WorkerConfig::default().lease >= WorkerConfig::default().min_lease());
        // 60 s (the old default) for a 30 s attempt leaves nothing for recording.
        for (lease, attempt) in [(60, 30), (89, 30), (30, 30), (49, 10)] {
            assert_eq!(
                with(lease, attempt).validate(),
                Err(ConfigError::LeaseTooShort {
                    lease: Duration::from_secs(lease),
                    attempt_timeout: Duration::from_secs(attempt),
                }),
                "{lease} s for {attempt} s"
            );
        }
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
        assert_eq!(
            with(301, 30).validate(),
            Err(ConfigError::LeaseTooLong(Duration::from_secs(301)))
        );
    }

    #[test]
    fn results_are_labelled_as_the_server_metrics_document() {
        let documented = include_str!("../../authserver/src/metrics.rs");
        assert!(documented.contains("by channel, event and result: delivered, retried or dead"));
        let labels = [Recorded::Delivered, Recorded::Retried, Recorded::Dead].map(Recorded::as_str);
        assert_eq!(labels, ["delivered", "retried", "dead"]);
    }
}
