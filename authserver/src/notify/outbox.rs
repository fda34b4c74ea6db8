//! The durable side of the notification seam (protection plan §7.1–7.3): each notice becomes
//! one row per configured channel of the `notification_outbox` table (crate
//! `portcullis-notify`), and one supervised worker per replica delivers the rows: mail through
//! the server's [`Mailer`], webhooks signed by [`WebhookChannel`], retried with backoff.
//!
//! - [`Durable`]: what [`super::Notifier`] enqueues through (email row under the mail limits,
//!   webhook row with ids only), waking the worker after each write;
//! - [`MailPayload`]: the stored mail payload (what the template needs, never a token);
//! - [`EmailChannel`]: `Deliver` over the mailer;
//! - [`MetricsObserver`]: the worker's outcomes as `notifications{channel,event,result}`;
//! - [`Runner`]: the worker, its supervision, the backlog gauges and the pruning.

use std::sync::Arc;
use std::time::Duration;

use portcullis_notify::{
    Channel, Claimed, Clock as NotifyClock, Deliver, DeliverFuture, NewNotice, Observe, Outcome,
    Recorded, StoreError, Waker, WebhookChannel, Worker, WorkerConfig,
};
use portcullis_webhook::{
    AccountErased, AccountLocked, Event, IdentityLinked, MfaChanged, NewDeviceLogin,
    PasswordBreached, PasswordChanged,
};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::sync::watch;

use super::{Notice, Recipient};
use crate::mail::{Mail, Mailer};
use crate::metrics::{ChannelLabels, Metrics, NotificationLabels};

/// The worker's settings: a 40 s cap per attempt, so the mailer's own 30 s SMTP timeout ends
/// an attempt first; the lease covers two attempts and the margin (`WorkerConfig::validate`).
pub const WORKER_CONFIG: WorkerConfig = WorkerConfig {
    lease: Duration::from_secs(120),
    batch: 20,
    poll_interval: Duration::from_secs(5),
    attempt_timeout: Duration::from_secs(40),
    breaker_threshold: 10,
    breaker_cooldown: Duration::from_secs(60),
};

/// How long a supervised worker that ended without being asked to waits before it restarts.
pub const RESTART_DELAY: Duration = Duration::from_secs(5);

/// How often the backlog gauges are refreshed.
pub const BACKLOG_EVERY: Duration = Duration::from_secs(30);

/// How often delivered and dead rows are pruned, and how long they are kept.
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// See [`PRUNE_EVERY`].
pub const PRUNE_KEEP: Duration = Duration::from_secs(7 * 86_400);
/// Rows per prune statement.
pub const PRUNE_BATCH: u32 = 500;

/// The event type of `notice`, shared by its mail and webhook rows (the webhook's type names).
pub fn event_type(notice: &Notice) -> &'static str {
    match notice {
        Notice::AccountLocked { .. } => "account.locked",
        Notice::PasswordChanged { .. } => "password.changed",
        Notice::NewDeviceLogin { .. } => "login.new_device",
        Notice::PasswordBreached => "password.breached",
        Notice::MfaAdded { .. } => "mfa.added",
        Notice::MfaRemoved { .. } | Notice::RecoveryCodeUsed { .. } => "mfa.removed",
        Notice::ErasureDone => "account.erased",
        Notice::IdentityLinked { .. } => "identity.linked",
    }
}

/// The bounded `event` label of a stored event type: types this version does not know (rows
/// of a newer replica) are counted as `other`.
pub fn event_label(event: &str) -> &'static str {
    const KNOWN: [&str; 8] = [
        "account.locked",
        "password.changed",
        "login.new_device",
        "password.breached",
        "mfa.added",
        "mfa.removed",
        "account.erased",
        "identity.linked",
    ];
    KNOWN
        .into_iter()
        .find(|known| *known == event)
        .unwrap_or("other")
}

/// The webhook event of `notice` about `user_id`: ids and codes only, never the address.
pub fn webhook_event(notice: &Notice, user_id: uuid::Uuid) -> Event {
    match notice {
        Notice::AccountLocked { minutes } => Event::AccountLocked(AccountLocked {
            user_id,
            minutes: u32::try_from(*minutes).unwrap_or(u32::MAX),
        }),
        Notice::PasswordChanged { method } => Event::PasswordChanged(PasswordChanged {
            user_id,
            method: *method,
        }),
        Notice::NewDeviceLogin { device, .. } => Event::NewDeviceLogin(NewDeviceLogin {
            user_id,
            device: *device,
        }),
        Notice::PasswordBreached => Event::PasswordBreached(PasswordBreached { user_id }),
        Notice::MfaAdded { method } => Event::MfaAdded(MfaChanged {
            user_id,
            method: *method,
        }),
        Notice::MfaRemoved { method } => Event::MfaRemoved(MfaChanged {
            user_id,
            method: *method,
        }),
        Notice::RecoveryCodeUsed { .. } => Event::MfaRemoved(MfaChanged {
            user_id,
            method: portcullis_webhook::MfaMethod::RecoveryCodes,
        }),
        Notice::ErasureDone => Event::AccountErased(AccountErased { user_id }),
        Notice::IdentityLinked { provider } => Event::IdentityLinked(IdentityLinked {
            user_id,
            provider: provider.clone(),
        }),
    }
}

/// What an email row stores: the notice mail's template values, never a token (token mails
/// never go through the outbox). Times as Unix seconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mail", rename_all = "snake_case", deny_unknown_fields)]
pub enum MailPayload {
    /// [`Mail::AccountLocked`].
    AccountLocked {
        /// Lock length in minutes.
        minutes: u64,
    },
    /// [`Mail::PasswordChanged`].
    PasswordChanged,
    /// [`Mail::NewDeviceLogin`].
    NewDeviceLogin {
        /// The client's user agent.
        user_agent: String,
        /// The client's address.
        ip: String,
        /// When, in Unix seconds.
        at: i64,
    },
    /// [`Mail::PasswordBreached`].
    PasswordBreached,
    /// [`Mail::MfaChanged`].
    MfaChanged {
        /// Added (else removed).
        added: bool,
    },
    /// [`Mail::RecoveryCodeUsed`].
    RecoveryCodeUsed {
        /// Unspent codes left.
        remaining: u32,
    },
    /// [`Mail::ErasureDone`].
    ErasureDone,
    /// [`Mail::IdentityLinked`].
    IdentityLinked {
        /// The realm's name for the provider.
        provider: String,
    },
}

impl MailPayload {
    /// The payload of `notice`'s mail.
    pub fn of(notice: &Notice) -> Self {
        match notice {
            Notice::AccountLocked { minutes } => MailPayload::AccountLocked { minutes: *minutes },
            Notice::PasswordChanged { .. } => MailPayload::PasswordChanged,
            Notice::NewDeviceLogin {
                user_agent, ip, at, ..
            } => MailPayload::NewDeviceLogin {
                user_agent: user_agent.clone(),
                ip: ip.clone(),
                at: at.unix_timestamp(),
            },
            Notice::PasswordBreached => MailPayload::PasswordBreached,
            Notice::MfaAdded { .. } => MailPayload::MfaChanged { added: true },
            Notice::MfaRemoved { .. } => MailPayload::MfaChanged { added: false },
            Notice::RecoveryCodeUsed { remaining } => MailPayload::RecoveryCodeUsed {
                remaining: *remaining,
            },
            Notice::ErasureDone => MailPayload::ErasureDone,
            Notice::IdentityLinked { provider } => MailPayload::IdentityLinked {
                provider: provider.as_str().to_owned(),
            },
        }
    }

    /// The mail it renders as; `None` for a time out of range.
    pub fn mail(self) -> Option<Mail> {
        Some(match self {
            MailPayload::AccountLocked { minutes } => Mail::AccountLocked { minutes },
            MailPayload::PasswordChanged => Mail::PasswordChanged,
            MailPayload::NewDeviceLogin { user_agent, ip, at } => Mail::NewDeviceLogin {
                user_agent,
                ip,
                at: OffsetDateTime::from_unix_timestamp(at).ok()?,
            },
            MailPayload::PasswordBreached => Mail::PasswordBreached,
            MailPayload::MfaChanged { added } => Mail::MfaChanged { added },
            MailPayload::RecoveryCodeUsed { remaining } => Mail::RecoveryCodeUsed { remaining },
            MailPayload::ErasureDone => Mail::ErasureDone,
            MailPayload::IdentityLinked { provider } => Mail::IdentityLinked { provider },
        })
    }
}

/// The outbox rows of `notice` for `to`, none unless `allowed` (the notice's per-address limit
/// allowed it): a mail, and a webhook event when `webhook`. The limit bounds both channels, so
/// anyone locking an account with wrong passwords gets at most one `account.locked` event per
/// window to the tenant's receiver, as one mail to the owner. The erasure mail names no user
/// (its user row is gone, and the row is deleted once finished).
pub fn rows(
    to: &Recipient,
    notice: &Notice,
    allowed: bool,
    webhook: bool,
    now: OffsetDateTime,
) -> Vec<Result<NewNotice, portcullis_notify::NoticeError>> {
    let mut rows = Vec::new();
    if !allowed {
        return rows;
    }
    let user = (!matches!(notice, Notice::ErasureDone)).then_some(to.user_id);
    let payload = serde_json::to_value(MailPayload::of(notice))
        .map_err(|e| portcullis_notify::NoticeError::Serialise(e.to_string()));
    rows.push(
        payload.and_then(|payload| {
            NewNotice::email(event_type(notice), user, &to.email, payload, now)
        }),
    );
    if webhook {
        rows.push(NewNotice::webhook(&webhook_event(notice, to.user_id), now));
    }
    rows
}

/// Enqueues notices into the durable outbox. Cheap to clone.
#[derive(Clone)]
pub struct Durable {
    pool: PgPool,
    clock: Arc<dyn NotifyClock>,
    waker: Waker,
    webhook: bool,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durable")
            .field("webhook", &self.webhook)
            .finish_non_exhaustive()
    }
}

impl Durable {
    /// Writes the rows of `notice` for `to` through `conn` (an open transaction, so they
    /// commit with the caller's change), and wakes the worker. Unlike [`Durable::enqueue`] a
    /// failure is returned: the caller's transaction must roll back with it.
    pub async fn enqueue_in(
        &self,
        conn: &mut sqlx::PgConnection,
        to: &Recipient,
        notice: &Notice,
    ) -> Result<(), String> {
        for row in rows(to, notice, true, self.webhook, self.clock.now()) {
            let row = row.map_err(|e| e.to_string())?;
            portcullis_notify::Outbox::enqueue(&mut *conn, &row)
                .await
                .map_err(|e| e.to_string())?;
        }
        self.waker.wake();
        Ok(())
    }

    /// Writes the rows of `notice` for `to` (see [`rows`]; none unless `allowed`)
    /// and wakes the worker. A row that cannot be built or written is logged and counted in
    /// `notification_enqueue_failures`; the caller goes on either way. Returns whether a row
    /// was written.
    pub async fn enqueue(&self, to: &Recipient, notice: &Notice, allowed: bool) -> bool {
        let event = event_type(notice);
        let mut written = false;
        for row in rows(to, notice, allowed, self.webhook, self.clock.now()) {
            let result = match row {
                Ok(row) => portcullis_notify::Outbox::enqueue(&self.pool, &row)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Err(error) => Err(error.to_string()),
            };
            match result {
                Ok(()) => written = true,
                Err(error) => {
                    self.metrics.notification_enqueue_failures.inc();
                    tracing::error!(event, %error, "notification not enqueued");
                }
            }
        }
        if written {
            self.waker.wake();
        }
        written
    }
}

/// The email channel: renders a row's [`MailPayload`] and sends it through the mailer, within
/// the worker's attempt cap (the SMTP timeout is shorter). Successes and failures also count
/// in `mails_sent` and `mail_failures`, which the mail alert reads.
pub struct EmailChannel {
    mailer: Arc<Mailer>,
    metrics: Arc<Metrics>,
}

impl EmailChannel {
    /// The channel sending through `mailer`.
    pub fn new(mailer: Arc<Mailer>, metrics: Arc<Metrics>) -> Self {
        Self { mailer, metrics }
    }

    async fn send(&self, notice: &Claimed) -> Outcome {
        let Some(to) = notice.recipient.as_deref() else {
            return Outcome::Permanent("email row without recipient".into());
        };
        let mail = serde_json::from_value::<MailPayload>(notice.payload.clone())
            .ok()
            .and_then(MailPayload::mail);
        let Some(mail) = mail else {
            // A payload of a newer version, perhaps: retried, so a replica that knows it
            // may deliver it; dead after the usual attempts.
            return Outcome::Retry("unknown mail payload".into());
        };
        match self.mailer.send(to, &mail).await {
            Ok(()) => {
                self.metrics.mails_sent.inc();
                Outcome::Delivered
            }
            Err(error) => {
                self.metrics.mail_failures.inc();
                // The error is logged, not stored: a relay's reply may echo the address.
                tracing::warn!(id = %notice.id, %error, "notification mail not delivered");
                Outcome::Retry(mail_reason(&error).into())
            }
        }
    }
}

/// A stored reason for a mail failure, without the relay's text.
fn mail_reason(error: &crate::mail::MailError) -> &'static str {
    use crate::mail::MailError;
    match error {
        MailError::Build(_) => "mail could not be built",
        MailError::Smtp(_) => "smtp delivery failed",
        MailError::Cleartext => "smtp url refused",
        MailError::File { .. } => "mail file not written",
    }
}

impl Deliver for EmailChannel {
    fn deliver<'a>(&'a self, notice: &'a Claimed) -> DeliverFuture<'a> {
        Box::pin(self.send(notice))
    }
}

/// Reports the worker's outcomes into the server's metrics.
pub struct MetricsObserver(pub Arc<Metrics>);

impl Observe for MetricsObserver {
    fn recorded(&self, channel: Channel, event: &str, result: Recorded) {
        self.0
            .notifications
            .get_or_create(&NotificationLabels {
                channel: channel.as_str(),
                event: event_label(event),
                result: result.as_str(),
            })
            .inc();
    }

    fn store_failed(&self, error: &StoreError) {
        self.0.notification_store_failures.inc();
        tracing::warn!(reason = error.reason(), %error, "notification outbox statement failed");
    }
}

/// One replica's worker, not yet running: [`Runner::spawn`] starts it under supervision with
/// the backlog gauges and the pruning.
pub struct Runner {
    pool: PgPool,
    clock: Arc<dyn NotifyClock>,
    email: Arc<dyn Deliver>,
    webhook: Option<Arc<dyn Deliver>>,
    waker: Waker,
    metrics: Arc<Metrics>,
    config: WorkerConfig,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("webhook", &self.webhook.is_some())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Why the outbox could not be set up (a start-up error).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The webhook URL or secret cannot be used.
    #[error("notifications.webhook: {0}")]
    Webhook(#[from] portcullis_notify::WebhookError),
    /// The worker's settings are inconsistent.
    #[error("notification worker: {0}")]
    Config(#[from] portcullis_notify::ConfigError),
}

/// What the outbox needs at start.
pub struct Setup<'a> {
    /// The database.
    pub pool: PgPool,
    /// The server's clock.
    pub clock: crate::clock::Clock,
    /// The mailer of the email channel.
    pub mailer: Arc<Mailer>,
    /// The webhook URL and signing key lines, when the realm has a webhook.
    pub webhook: Option<(&'a str, &'a str)>,
    /// The realm's name (the webhook body's `realm`).
    pub realm: &'a str,
    /// Allow a loopback webhook receiver over http (`--dev` and tests only).
    pub allow_loopback: bool,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The worker's settings ([`WORKER_CONFIG`] in a deployment).
    pub config: WorkerConfig,
}

/// Builds the enqueue side and the worker: a bad webhook URL or secret, or bad worker
/// settings, stop the server here. Needs the rustls provider installed.
pub fn setup(setup: Setup<'_>) -> Result<(Durable, Runner), SetupError> {
    let server_clock = setup.clock;
    let clock: Arc<dyn NotifyClock> = Arc::new(move || server_clock.now());
    let webhook: Option<Arc<dyn Deliver>> = match setup.webhook {
        Some((url, secret)) => Some(Arc::new(WebhookChannel::with_options(
            url,
            secret,
            setup.realm,
            Arc::clone(&clock),
            portcullis_notify::WebhookOptions {
                allow_loopback: setup.allow_loopback,
            },
        )?)),
        None => None,
    };
    setup.config.validate()?;
    let waker = Waker::default();
    let durable = Durable {
        pool: setup.pool.clone(),
        clock: Arc::clone(&clock),
        waker: waker.clone(),
        webhook: webhook.is_some(),
        metrics: setup.metrics.clone(),
    };
    let runner = Runner {
        pool: setup.pool,
        clock,
        email: Arc::new(EmailChannel::new(setup.mailer, setup.metrics.clone())),
        webhook,
        waker,
        metrics: setup.metrics,
        config: setup.config,
    };
    Ok((durable, runner))
}

// Whether the server asked to stop (or is gone).
fn stopping(shutdown: &watch::Receiver<bool>) -> bool {
    *shutdown.borrow() || shutdown.has_changed().is_err()
}

// Sleeps `delay`, returning early (true) when asked to stop.
async fn sleep_or_stop(delay: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => stopping(shutdown),
        changed = shutdown.changed() => changed.is_err() || *shutdown.borrow(),
    }
}

impl Runner {
    fn worker(&self) -> Result<Worker, portcullis_notify::ConfigError> {
        let mut worker = Worker::new(
            portcullis_notify::Outbox::new(self.pool.clone()),
            Arc::clone(&self.clock),
            self.config,
        )?
        .with_email(Arc::clone(&self.email))
        .with_observer(Arc::new(MetricsObserver(self.metrics.clone())))
        .with_waker(self.waker.clone());
        if let Some(webhook) = &self.webhook {
            worker = worker.with_webhook(Arc::clone(webhook));
        }
        Ok(worker)
    }

    /// Starts the worker, the backlog gauges and the pruning until `shutdown` holds `true` (or
    /// its sender is dropped). A worker that ends otherwise (a panic) is logged, counted in
    /// `notification_worker_restarts` and restarted after [`RESTART_DELAY`]. The handle ends
    /// when the worker has stopped.
    pub fn spawn(self, shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let maintenance = {
            let (outbox, clock, metrics) = (
                portcullis_notify::Outbox::new(self.pool.clone()),
                Arc::clone(&self.clock),
                self.metrics.clone(),
            );
            maintain(outbox, clock, metrics, shutdown.clone())
        };
        tokio::spawn(maintenance);
        tokio::spawn(self.supervise(shutdown))
    }

    async fn supervise(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            let worker = match self.worker() {
                Ok(worker) => worker,
                Err(error) => {
                    // Checked at start: cannot happen later.
                    tracing::error!(%error, "notification worker not started");
                    return;
                }
            };
            let ended = tokio::spawn(worker.run(shutdown.clone())).await;
            if stopping(&shutdown) {
                return;
            }
            self.metrics.notification_worker_restarts.inc();
            match ended {
                Err(error) => tracing::error!(%error, "notification worker failed; restarting"),
                Ok(()) => tracing::error!("notification worker ended; restarting"),
            }
            if sleep_or_stop(RESTART_DELAY, &mut shutdown).await {
                return;
            }
        }
    }
}

/// Refreshes the backlog gauges every [`BACKLOG_EVERY`] and prunes every [`PRUNE_EVERY`].
async fn maintain(
    outbox: portcullis_notify::Outbox,
    clock: Arc<dyn NotifyClock>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Prune at the first round and then every PRUNE_EVERY, counted in backlog rounds.
    let prune_rounds = (PRUNE_EVERY.as_secs() / BACKLOG_EVERY.as_secs()).max(1);
    let mut round: u64 = 0;
    loop {
        let now = clock.now();
        match outbox.backlog(now).await {
            Ok(backlog) => {
                for channel in Channel::ALL {
                    let of = backlog.channel(channel);
                    let labels = ChannelLabels {
                        channel: channel.as_str(),
                    };
                    metrics
                        .notification_outbox_pending
                        .get_or_create(&labels)
                        .set(of.pending);
                    metrics
                        .notification_outbox_oldest_seconds
                        .get_or_create(&labels)
                        .set(i64::try_from(of.oldest_age(now).as_secs()).unwrap_or(i64::MAX));
                }
            }
            Err(error) => tracing::warn!(%error, "notification backlog unreadable"),
        }
        if round.is_multiple_of(prune_rounds) {
            match outbox.prune(now, PRUNE_KEEP, PRUNE_BATCH).await {
                Ok(pruned) => tracing::debug!(?pruned, "notification outbox pruned"),
                Err(error) => tracing::warn!(%error, "notification outbox not pruned"),
            }
        }
        round = round.wrapping_add(1);
        if sleep_or_stop(BACKLOG_EVERY, &mut shutdown).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_webhook::{DeviceKind, MfaMethod, PasswordChangeMethod};

    fn alice() -> Recipient {
        Recipient {
            user_id: uuid::Uuid::from_u128(7),
            email: "alice@example.com".into(),
        }
    }

    fn every_notice() -> Vec<Notice> {
        vec![
            Notice::AccountLocked { minutes: 15 },
            Notice::PasswordChanged {
                method: PasswordChangeMethod::Change,
            },
            Notice::NewDeviceLogin {
                device: DeviceKind::Cookie,
                user_agent: "browser/1".into(),
                ip: "192.0.2.1".into(),
                at: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
            },
            Notice::PasswordBreached,
            Notice::MfaAdded {
                method: MfaMethod::Totp,
            },
            Notice::MfaRemoved {
                method: MfaMethod::RecoveryCodes,
            },
            Notice::ErasureDone,
        ]
    }

    #[test]
    fn every_mail_payload_renders_the_mail_the_notice_would_send() {
        for notice in every_notice() {
            let stored = serde_json::to_value(MailPayload::of(&notice)).unwrap();
            let read: MailPayload = serde_json::from_value(stored).unwrap();
            assert_eq!(read.mail(), Some(notice.clone().mail()), "{notice:?}");
        }
    }

    #[test]
    fn the_webhook_event_has_the_notice_type_and_no_address() {
        for notice in every_notice() {
            let event = webhook_event(&notice, alice().user_id);
            assert_eq!(event.type_name(), event_type(&notice));
            let json = serde_json::to_string(&event).unwrap();
            assert!(!json.contains("alice@"), "{json}");
            assert!(!json.contains("192.0.2.1"), "{json}");
        }
    }

    #[test]
    fn a_notice_makes_a_row_per_channel() {
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let notice = Notice::AccountLocked { minutes: 15 };
        let both: Vec<_> = rows(&alice(), &notice, true, true, now)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(both.len(), 2);
        assert_eq!(both[0].channel(), Channel::Email);
        assert_eq!(both[0].recipient(), Some("alice@example.com"));
        assert_eq!(both[0].event(), "account.locked");
        assert_eq!(both[1].channel(), Channel::Webhook);
        assert_eq!(both[1].user_id(), Some(alice().user_id));
        let mail_only = rows(&alice(), &notice, true, false, now);
        assert_eq!(mail_only.len(), 1);
        assert_eq!(mail_only[0].as_ref().unwrap().channel(), Channel::Email);
    }

    #[test]
    fn a_notice_the_limit_refuses_makes_no_row_on_any_channel() {
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let notice = Notice::AccountLocked { minutes: 15 };
        assert!(rows(&alice(), &notice, false, true, now).is_empty());
        assert!(rows(&alice(), &notice, false, false, now).is_empty());
    }

    #[test]
    fn the_erasure_mail_names_no_user_and_others_name_theirs() {
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let erased = rows(&alice(), &Notice::ErasureDone, true, false, now);
        assert_eq!(erased[0].as_ref().unwrap().user_id(), None);
        let breached = rows(&alice(), &Notice::PasswordBreached, true, false, now);
        assert_eq!(
            breached[0].as_ref().unwrap().user_id(),
            Some(alice().user_id)
        );
    }

    #[test]
    fn unknown_event_types_share_one_label() {
        assert_eq!(event_label("account.locked"), "account.locked");
        assert_eq!(event_label("something.new"), "other");
    }

    #[test]
    fn an_unknown_mail_payload_is_refused() {
        let stored = serde_json::json!({"mail": "verify_email", "token": "x"});
        assert!(serde_json::from_value::<MailPayload>(stored).is_err());
    }

    #[test]
    fn the_worker_settings_are_valid_and_outlast_the_smtp_timeout() {
        assert_eq!(WORKER_CONFIG.validate(), Ok(()));
        assert!(WORKER_CONFIG.attempt_timeout > Duration::from_secs(30));
    }
}
