//! Portcullis notifications outbox: a durable PostgreSQL queue of notices (protection plan
//! §7.1), the worker that delivers them, and the signed webhook channel (§7.2).
//!
//! - [`notice`]: [`NewNotice`] (what to enqueue: channel, event type, user, recipient, JSON
//!   payload without credentials) and [`Claimed`] (a row a worker holds);
//! - [`store`]: [`Outbox`], the `notification_outbox` table: enqueue inside the caller's
//!   transaction, claim with a lease, record delivered / retry / dead, prune;
//! - [`deliver`]: the [`Deliver`] trait a channel implements, returning an [`Outcome`];
//! - [`decide`]: the pure step from an outcome to what is recorded, with the backoff of
//!   `portcullis_webhook::backoff` (30 s doubling to 1 h, ±20 % jitter; dead after 12
//!   attempts);
//! - [`webhook`]: [`WebhookChannel`], the signed POST (`Portcullis-Signature`, re-signed at
//!   each attempt), no redirects, 10 s timeout, https except loopback;
//! - [`worker`]: [`Worker`], claim → deliver → record, woken by a `Notify` or a poll, stopped
//!   by a `watch`, reporting each outcome to an [`Observe`];
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
//!   `portcullis_webhook::Verifier` does.
//! - **Bounded retries:** a failed attempt is retried with backoff until the 12th attempt
//!   (about 5 h), then the row is dead; a webhook answered `410 Gone` is dead at once. Dead
//!   rows are kept for inspection until pruned.
//! - **No ordering** between notices: each row goes its own way.
//! - **Erasure:** deleting a user deletes their pending notices (`ON DELETE CASCADE`);
//!   `account.erased` notices carry no `user_id` so they survive it, and are deleted as soon
//!   as they are delivered.

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
pub use notice::{Channel, Claimed, DELETE_ON_DELIVERY, NewNotice, NoticeError};
pub use store::{Backlog, Outbox, Pruned, StoreError};
pub use webhook::{WebhookChannel, WebhookError, WebhookUrl, classify};
pub use worker::{ConfigError, Jitter, LogOnly, Observe, Recorded, Worker, WorkerConfig};
