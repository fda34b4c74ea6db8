//! Portcullis notifications outbox: a durable PostgreSQL queue of notices (protection plan
//! §7.1), the worker that delivers them, and the signed webhook channel (§7.2).
//!
//! - [`notice`]: [`NewNotice`] (what to enqueue: channel, event type, user, recipient, JSON
//!   payload without credentials) and [`Claimed`] (a row a worker holds);
//! - [`store`]: [`Outbox`], the `notification_outbox` table: enqueue inside the caller's
//!   transaction, claim with a lease, record delivered / retry / dead, prune;
//! - [`deliver`]: the [`Deliver`] trait a channel implements, returning an [`Outcome`];
//! - [`mod@decide`]: the pure step from an outcome to what is recorded, with the backoff of
//!   `portcullis_webhook::backoff` (30 s doubling to 1 h, ±20 % jitter; dead after 12
//!   attempts);
//! - [`webhook`]: [`WebhookChannel`], the signed POST (`Portcullis-Signature`, re-signed at
//!   each attempt), no redirects, no proxy, 10 s timeout, https to public addresses only
//!   (checked on the URL and on every DNS answer);
//! - [`worker`]: [`Worker`], one claim loop per configured channel (claiming only that
//!   channel's rows), up to a batch of attempts in flight each, woken by a [`Waker`] or a
//!   poll, stopped by a `watch`, reporting each outcome to an [`Observe`];
//! - [`breaker`]: the per-channel circuit breaker (stop claiming after a run of failures);
//! - [`clock`]: the injectable [`Clock`].
//!
//! # Delivery guarantees
//!
//! - **Durable:** a notice is a row written in the transaction of the change it reports, so it
//!   exists exactly when that change committed, and survives restarts. The request never
//!   waits for delivery.
//! - **At least once, not exactly once:** a row is delivered until one attempt is recorded as
//!   delivered. A claim leases its rows (`FOR UPDATE SKIP LOCKED`), so two replicas never
//!   deliver the same row at the same time; but a worker that crashes, or whose lease runs out,
//!   after the receiver got the request and before the row was marked delivered leaves the
//!   row to be claimed and sent again. **Receivers must dedupe by event id**
//!   (`Portcullis-Event-Id`, the same as the body's `id`, stable across retries);
//!   `portcullis_webhook::Verifier` does so for twice its window (600 s): a retry later than
//!   that, after a 2xx that was lost, is accepted again, so a receiver's own store of handled
//!   ids must outlive the retry schedule (about 5 h). Leases are computed from each
//!   replica's clock: replicas' clocks must agree to well within the lease margin
//!   ([`LEASE_MARGIN`]).
//! - **Rolling upgrades and partial configuration lose nothing:** a worker claims only the
//!   channels it has, and a row it cannot build (an event type or value from a newer version)
//!   is retried, not killed; it is dead only after the usual 12 attempts.
//! - **Bounded retries:** a failed attempt is retried with backoff until the 12th attempt
//!   (about 5 h), then the row is dead; a webhook answered `410 Gone` is dead at once. Dead
//!   rows are kept for inspection until pruned.
//! - **No ordering** between notices: each row goes its own way.
//! - **Erasure:** deleting a user deletes their pending notices (`ON DELETE CASCADE`);
//!   `account.erased` notices carry no `user_id` so they survive it, are first due
//!   [`ERASURE_DELAY`] (5 min, more than any lease) later, so that no notice about the user
//!   still in flight reaches a receiver after it, and are deleted as soon as they are
//!   delivered or dead. Receivers should still drop an event for an erased `user_id` whose
//!   `time` is not later than the erasure's.

//!
//! # Wiring (what the server does)
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use portcullis_notify::*;
//! use portcullis_webhook::{AccountLocked, Event};
//! # async fn wire(pool: sqlx::PgPool, secrets: &str) -> Result<(), Box<dyn std::error::Error>> {
//! // At start (after installing the rustls ring provider): refuse a bad URL or secret there.
//! let clock: Arc<dyn Clock> = Arc::new(SystemClock);
//! let hook = WebhookChannel::new("https://hooks.example.org/portcullis", secrets, "acme",
//!     Arc::clone(&clock))?;
//! let worker = Worker::new(Outbox::new(pool.clone()), Arc::clone(&clock), WorkerConfig::default())?
//!     .with_webhook(Arc::new(hook)); // .with_email(mailer), .with_observer(metrics)
//! let wake = worker.waker();
//! // Supervise it in the server: keep the JoinHandle and restart the loop if it ever ends.
//! let (stop, stopped) = tokio::sync::watch::channel(false);
//! tokio::spawn(worker.run(stopped));
//!
//! // In a request: the change and its notice commit together; then wake the worker.
//! let user_id = uuid::Uuid::new_v4();
//! let mut tx = pool.begin().await?;
//! // ... the change itself, on &mut *tx ...
//! let event = Event::AccountLocked(AccountLocked { user_id, minutes: 15 });
//! Outbox::enqueue(&mut *tx, &NewNotice::webhook(&event, clock.now())?).await?;
//! tx.commit().await?;
//! wake.wake();
//!
//! // Retention, e.g. hourly: finished rows older than 7 days, 500 per statement.
//! Outbox::new(pool).prune(clock.now(), Duration::from_secs(7 * 86_400), 500).await?;
//! stop.send(true)?;
//! # Ok(())
//! # }
//! ```

pub mod breaker;
pub mod clock;
pub mod decide;
pub mod deliver;
pub mod notice;
pub mod store;
pub mod webhook;
pub mod worker;

pub use clock::{Clock, SystemClock};
pub use decide::{Decision, decide, id_jitter};
pub use deliver::{Deliver, DeliverFuture, Outcome};
pub use notice::{Channel, Claimed, DELETE_WHEN_FINISHED, ERASURE_DELAY, NewNotice, NoticeError};
pub use store::{Backlog, ChannelBacklog, Outbox, Pruned, StoreError};
pub use webhook::{WebhookChannel, WebhookError, WebhookOptions, WebhookUrl, classify, describe};
pub use worker::{
    ConfigError, Jitter, LEASE_MARGIN, LogOnly, Observe, Recorded, Waker, Worker, WorkerConfig,
};
