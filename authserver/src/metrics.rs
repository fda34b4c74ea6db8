//! Prometheus metrics, served on the metrics listener's `/metrics`. Names are shared with the
//! alert rules in `config/prometheus/alerts.yaml` and fixed by the protection plan (§5); labels
//! are closed sets or come from config, never user ids, addresses or raw paths.
//!
//! Some families are registered before anything counts them (rate limiting, audit,
//! notifications, MFA): their help text says what they will count, they read zero until the
//! feature exists, and the alert rules that join on them parse and stay quiet meanwhile.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of HTTP request metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// Matched route template, e.g. `/api/v1/login` (never a raw path with ids).
    pub route: String,
    /// Status code.
    pub status: u16,
}

/// Labels with a single `route` (a matched route template or `unmatched`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Matched route template.
    pub route: String,
}

/// Labels with a single `reason`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Why.
    pub reason: String,
}

/// Labels with a single `result`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `ok` or `error`.
    pub result: String,
}

/// Labels with a single `outcome` from a closed set.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// The outcome.
    pub outcome: &'static str,
}

/// Labels of second-factor attempts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MfaLabels {
    /// `totp` or `recovery`.
    pub method: &'static str,
    /// `success`, `failure` or `replay`.
    pub result: &'static str,
}

/// The second factor an attempt presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MfaMethod {
    /// A TOTP code.
    Totp,
    /// A recovery code.
    Recovery,
}

/// What a second-factor attempt came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MfaResult {
    /// Accepted.
    Success,
    /// Wrong (or a spent recovery code).
    Failure,
    /// A TOTP step used already (here or on another replica).
    Replay,
}

/// Labels of breach checks.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BreachLabels {
    /// Where the password came from.
    pub context: &'static str,
    /// What the check said.
    pub result: &'static str,
}

/// Labels with a single `grant`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrantLabels {
    /// The grant that issued the tokens.
    pub grant: &'static str,
}

/// Labels with a single `store`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    /// `postgres` or `redis`.
    pub store: &'static str,
}

/// Labels of rate-limit decisions (filled in by the rate limiter).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RateLimitLabels {
    /// The route class limited.
    pub route: String,
    /// What the limit is keyed by (ip, user, client, global).
    pub key: String,
    /// The rule, `policy/rule`, from config.
    pub rule: String,
    /// `allowed` or `limited`.
    pub result: &'static str,
}

/// Labels with a single `backend`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    /// `redis` or `local`.
    pub backend: &'static str,
}

/// Labels with a single `mode`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModeLabels {
    /// The failure mode applied: `open` or `closed`.
    pub mode: &'static str,
}

/// Labels with a single `channel`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabels {
    /// `email` or `webhook`.
    pub channel: &'static str,
}

/// Labels of notification deliveries.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotificationLabels {
    /// `email` or `webhook`.
    pub channel: &'static str,
    /// The event notified (a closed enum).
    pub event: &'static str,
    /// `delivered`, `retried` or `dead`.
    pub result: &'static str,
}

/// Labels with a single audit event `type`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuditTypeLabels {
    /// The event type.
    pub r#type: &'static str,
}

/// How a registration ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegistrationOutcome {
    /// An account was created and may sign in.
    Created,
    /// An account was created and waits for its address to be confirmed.
    VerificationPending,
    /// The address was taken (answered as pending when verification is on).
    Duplicate,
    /// The input broke a rule.
    Invalid,
}

impl RegistrationOutcome {
    const ALL: [Self; 4] = [
        Self::Created,
        Self::VerificationPending,
        Self::Duplicate,
        Self::Invalid,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::VerificationPending => "verification_pending",
            Self::Duplicate => "duplicate",
            Self::Invalid => "invalid",
        }
    }
}

/// Where a password checked against breaches came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreachContext {
    /// A registration.
    Register,
    /// A signed-in password change.
    PasswordChange,
    /// A password reset.
    PasswordReset,
    /// A login (checked in the background).
    Login,
}

impl BreachContext {
    const ALL: [Self; 4] = [
        Self::Register,
        Self::PasswordChange,
        Self::PasswordReset,
        Self::Login,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::PasswordChange => "password_change",
            Self::PasswordReset => "password_reset",
            Self::Login => "login",
        }
    }
}

/// What a breach check said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreachResult {
    /// Not in the corpus.
    Clean,
    /// Seen in breaches.
    Breached,
    /// The source could not answer.
    Error,
    /// Not looked up: the owner was already told for this password, or too many checks were
    /// in flight (login only).
    Skipped,
}

impl BreachResult {
    const ALL: [Self; 4] = [Self::Clean, Self::Breached, Self::Error, Self::Skipped];

    fn label(self) -> &'static str {
        match self {
            Self::Clean => "clean",
            Self::Breached => "breached",
            Self::Error => "error",
            Self::Skipped => "skipped",
        }
    }
}

/// The grant that issued tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantKind {
    /// The realm's own login (session, access and refresh token).
    Login,
    /// OAuth `authorization_code`.
    AuthorizationCode,
    /// OAuth `refresh_token`, or the realm's own refresh.
    RefreshToken,
    /// OAuth `client_credentials`.
    ClientCredentials,
}

impl GrantKind {
    const ALL: [Self; 4] = [
        Self::Login,
        Self::AuthorizationCode,
        Self::RefreshToken,
        Self::ClientCredentials,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
        }
    }
}

/// A store whose failures are counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// PostgreSQL.
    Postgres,
    /// Redis.
    Redis,
}

impl StoreKind {
    const ALL: [Self; 2] = [Self::Postgres, Self::Redis];

    fn label(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Redis => "redis",
        }
    }

    /// The store a `StoreError::Unavailable` names (`database` or `redis`); `None` for the
    /// in-memory stores, whose "unavailable" is a full bound, not a failing server.
    pub fn from_dependency(what: &str) -> Option<Self> {
        match what {
            "database" => Some(Self::Postgres),
            "redis" => Some(Self::Redis),
            _ => None,
        }
    }
}

/// A response extension: this answer failed because a store was unavailable. `observe` counts
/// it once per request, so a handler needs no access to the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreFailure(pub StoreKind);

/// The hashing pool's load at one moment, for the gauges set at scrape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashingLoad {
    /// Callers holding a place (running or waiting).
    pub in_flight: usize,
    /// Callers waiting for a run.
    pub queue_depth: usize,
    /// Callers that may wait beyond the runs.
    pub queue_capacity: usize,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn http_duration_histogram() -> Histogram {
    // 5 ms to about 10 s: a cheap route answers in milliseconds, a login waits for bcrypt and
    // possibly the hashing queue.
    Histogram::new(exponential_buckets(0.005, 2.0, 12))
}

fn rate_limit_histogram() -> Histogram {
    // 50 µs to about 100 ms: a local decision is microseconds, a Redis round trip about a
    // millisecond, and the limiter's own timeout is 200 ms.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 12))
}

/// Every metric of the auth server.
pub struct Metrics {
    registry: Registry,
    /// HTTP answers by route and status.
    pub http_requests: Family<HttpLabels, Counter>,
    /// HTTP answer latency by route, seconds.
    pub http_request_duration: HistogramFamily<RouteLabels>,
    /// Successful logins.
    pub login_successes: Counter,
    /// Failed logins by reason (invalid_credentials, locked, ...).
    pub login_failures: Family<ReasonLabels, Counter>,
    /// Identifiers failing for the first time in the lockout window (counted by the lockout
    /// script's signal, a later step).
    pub login_failed_identifiers: Counter,
    /// Client addresses that failed with many distinct identifiers (a later step).
    pub credential_stuffing_sources: Counter,
    /// Lockouts started.
    pub lockouts: Counter,
    /// Registrations by outcome.
    registrations: Family<OutcomeLabels, Counter>,
    /// Second-factor attempts by method and result.
    mfa_attempts: Family<MfaLabels, Counter>,
    /// Breach checks by context and result.
    breach_checks: Family<BreachLabels, Counter>,
    /// Breach checks that could not answer (the failure policy decided); kept beside
    /// `breach_checks{result="error"}` for the dashboards that read it.
    pub breach_check_failures: Counter,
    /// Tokens issued by grant.
    tokens_issued: Family<GrantLabels, Counter>,
    /// Refresh-token reuse detections (families revoked).
    pub refresh_reuse: Counter,
    /// Rate-limit decisions by route, key, rule and result (the rate limiter, a later step).
    pub rate_limit_decisions: Family<RateLimitLabels, Counter>,
    /// Time a rate-limit decision took, by backend.
    pub rate_limit_decision_seconds: HistogramFamily<BackendLabels>,
    /// Rate-limit decisions the store could not make, by the failure mode applied.
    pub rate_limit_store_failures: Family<ModeLabels, Counter>,
    /// `X-Forwarded-For` headers ignored because the peer is not a trusted proxy.
    pub forwarded_for_ignored: Counter,
    /// Time spent in bcrypt, seconds.
    pub password_hash_seconds: Histogram,
    /// Requests refused because the hashing pool and its queue were full.
    pub hashing_refused: Counter,
    /// Hashing places taken (running or waiting), set at scrape.
    hashing_in_flight: Gauge,
    /// Callers waiting for a bcrypt run, set at scrape.
    hashing_queue_depth: Gauge,
    /// Callers that may wait for a bcrypt run, set at scrape.
    hashing_queue_capacity: Gauge,
    /// Store failures by store.
    store_errors: Family<StoreLabels, Counter>,
    /// Mails delivered (to the SMTP server or the mail directory).
    pub mails_sent: Counter,
    /// Mails that could not be delivered.
    pub mail_failures: Counter,
    /// Mails not sent, by reason (the per-address mail limit, a later step).
    pub mails_suppressed: Family<ReasonLabels, Counter>,
    /// Notification deliveries by channel, event and result (the durable outbox, a later step).
    pub notifications: Family<NotificationLabels, Counter>,
    /// Notifications waiting in the outbox, by channel.
    pub notification_outbox_pending: Family<ChannelLabels, Gauge>,
    /// Notices that could not be written to the outbox (logged; the request went on).
    pub notification_enqueue_failures: Counter,
    /// Outbox statements of the worker that failed (their rows come back after the lease).
    pub notification_store_failures: Counter,
    /// Restarts of a notification worker that ended unasked.
    pub notification_worker_restarts: Counter,
    /// Age of the oldest waiting notification, by channel, seconds.
    pub notification_outbox_oldest_seconds: Family<ChannelLabels, Gauge>,
    /// Logins from a device not seen before for the account (a later step).
    pub new_device_logins: Counter,
    /// Audit events written, by type.
    pub audit_events: Family<AuditTypeLabels, Counter>,
    /// Audit events that could not be written.
    pub audit_write_failures: Counter,
    /// 1 when the last verification found the audit chain broken.
    pub audit_chain_broken: Gauge,
    /// The last audit sequence number verified.
    pub audit_chain_verified_seq: Gauge,
    /// Admin API requests refused for a wrong or missing token.
    pub admin_auth_failures: Counter,
    /// Age of the active signing key, set at each scrape (only when the key records `iat`).
    pub signing_key_age_seconds: Option<Gauge>,
    /// Changed TLS certificate files read by the public listener, by result (`ok`: serving
    /// the new pair; `error`: refused, the previous pair still serving).
    pub tls_reloads: Family<ResultLabels, Counter>,
    /// TLS handshakes on the public listener that did not complete, by reason (`timeout`,
    /// `error`).
    pub tls_handshake_failures: Family<ReasonLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(false)
    }
}

/// Registers `metric` as `name` with `help` and hands it back.
fn register<M>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M
where
    M: prometheus_client::registry::Metric + Clone,
{
    registry.register(name, help, metric.clone());
    metric
}

impl Metrics {
    /// Registers every metric under the `portcullis` prefix; the signing-key age only when
    /// the key's creation time is known (a made-up age would silence or fire the alert).
    /// Families whose labels are a closed set start with every child at zero, so a rate over
    /// them exists before the first event and the scrape lists every series it can have.
    pub fn new(with_signing_key_age: bool) -> Self {
        let mut r = Registry::with_prefix("portcullis");
        let reg = &mut r;
        let metrics = Self {
            http_requests: register(
                reg,
                "http_requests",
                "HTTP answers by route template and status",
                Family::default(),
            ),
            http_request_duration: register(
                reg,
                "http_request_duration_seconds",
                "Time to answer an HTTP request by route template, in seconds",
                Family::new_with_constructor(http_duration_histogram as fn() -> Histogram),
            ),
            login_successes: register(
                reg,
                "login_successes",
                "Successful logins",
                Counter::default(),
            ),
            login_failures: register(
                reg,
                "login_failures",
                "Failed logins by reason",
                Family::default(),
            ),
            login_failed_identifiers: register(
                reg,
                "login_failed_identifiers",
                "Identifiers failing a login for the first time in the lockout window (password spraying: many, each at a low rate)",
                Counter::default(),
            ),
            credential_stuffing_sources: register(
                reg,
                "credential_stuffing_sources",
                "Client addresses failing logins with alertThresholds.credentialStuffingIdentifiersPerIp distinct identifiers in a 10-minute window, once per address and window",
                Counter::default(),
            ),
            lockouts: register(reg, "lockouts", "Lockouts started", Counter::default()),
            registrations: register(
                reg,
                "registrations",
                "Registrations by outcome: created, verification_pending, duplicate or invalid",
                Family::default(),
            ),
            mfa_attempts: register(
                reg,
                "mfa_attempts",
                "Second-factor attempts (login step, account changes) by method (totp, recovery) and result (success, failure, replay)",
                Family::default(),
            ),
            breach_checks: register(
                reg,
                "breach_checks",
                "Breached-password checks by context and result: clean, breached or error (none when the check is disabled)",
                Family::default(),
            ),
            breach_check_failures: register(
                reg,
                "breach_check_failures",
                "Breach checks that could not answer; same as breach_checks with result error",
                Counter::default(),
            ),
            tokens_issued: register(
                reg,
                "tokens_issued",
                "Access tokens issued by grant",
                Family::default(),
            ),
            refresh_reuse: register(
                reg,
                "refresh_token_reuse",
                "Refresh tokens presented twice (family revoked)",
                Counter::default(),
            ),
            rate_limit_decisions: register(
                reg,
                "rate_limit_decisions",
                "Rate-limit decisions by route class, key, rule and result: allowed or limited (a refused decision counts only the bucket that refused)",
                Family::default(),
            ),
            rate_limit_decision_seconds: register(
                reg,
                "rate_limit_decision_seconds",
                "Time a rate-limit decision took by backend: redis or local, in seconds",
                Family::new_with_constructor(rate_limit_histogram as fn() -> Histogram),
            ),
            rate_limit_store_failures: register(
                reg,
                "rate_limit_store_failures",
                "Rate-limit decisions the store could not make, by the failure mode applied: open or closed",
                Family::default(),
            ),
            forwarded_for_ignored: register(
                reg,
                "forwarded_for_ignored",
                "X-Forwarded-For headers ignored because the peer is not a trusted proxy",
                Counter::default(),
            ),
            password_hash_seconds: register(
                reg,
                "password_hash_seconds",
                "Time spent in bcrypt",
                Histogram::new(exponential_buckets(0.01, 2.0, 10)),
            ),
            hashing_refused: register(
                reg,
                "password_hashing_refused",
                "Requests refused because password hashing was saturated",
                Counter::default(),
            ),
            hashing_in_flight: register(
                reg,
                "password_hashing_in_flight",
                "Callers holding a place in the password hashing pool, running or waiting, at scrape",
                Gauge::default(),
            ),
            hashing_queue_depth: register(
                reg,
                "password_hashing_queue_depth",
                "Callers waiting for a bcrypt run at scrape",
                Gauge::default(),
            ),
            hashing_queue_capacity: register(
                reg,
                "password_hashing_queue_capacity",
                "Callers that may wait for a bcrypt run before more are refused",
                Gauge::default(),
            ),
            store_errors: register(
                reg,
                "store_errors",
                "Failures of PostgreSQL or Redis, by store",
                Family::default(),
            ),
            mails_sent: register(
                reg,
                "mails_sent",
                "Mails delivered to the SMTP server or the mail directory",
                Counter::default(),
            ),
            mail_failures: register(
                reg,
                "mail_failures",
                "Mails that could not be delivered",
                Counter::default(),
            ),
            mails_suppressed: register(
                reg,
                "mails_suppressed",
                "Mails not sent, by reason: address_limit (the per-address mail limit, 5 an hour)",
                Family::default(),
            ),
            notifications: register(
                reg,
                "notifications",
                "Notification delivery attempts by channel, event and result: delivered, retried or dead",
                Family::default(),
            ),
            notification_outbox_pending: register(
                reg,
                "notification_outbox_pending",
                "Notifications waiting in the outbox, by channel",
                Family::default(),
            ),
            notification_enqueue_failures: register(
                reg,
                "notification_enqueue_failures",
                "Notices that could not be written to the notification outbox",
                Counter::default(),
            ),
            notification_store_failures: register(
                reg,
                "notification_store_failures",
                "Failed statements of the notification worker on the outbox table",
                Counter::default(),
            ),
            notification_worker_restarts: register(
                reg,
                "notification_worker_restarts",
                "Restarts of the notification worker after it ended unasked",
                Counter::default(),
            ),
            notification_outbox_oldest_seconds: register(
                reg,
                "notification_outbox_oldest_seconds",
                "Age of the oldest waiting notification by channel, in seconds",
                Family::default(),
            ),
            new_device_logins: register(
                reg,
                "new_device_logins",
                "Logins from a device not seen before for the account (not counted yet)",
                Counter::default(),
            ),
            audit_events: register(
                reg,
                "audit_events",
                "Audit events written, by type",
                Family::default(),
            ),
            audit_write_failures: register(
                reg,
                "audit_write_failures",
                "Audit events that could not be written (each is logged in full at error level)",
                Counter::default(),
            ),
            audit_chain_broken: register(
                reg,
                "audit_chain_broken",
                "1 when the last audit chain verification found a changed, inserted or deleted row",
                Gauge::default(),
            ),
            audit_chain_verified_seq: register(
                reg,
                "audit_chain_verified_seq",
                "Head audit sequence number at the last verification",
                Gauge::default(),
            ),
            admin_auth_failures: register(
                reg,
                "admin_auth_failures",
                "Admin API requests refused for a wrong or missing token",
                Counter::default(),
            ),
            tls_reloads: register(
                reg,
                "tls_certificate_reloads",
                "Changed TLS certificate files read by the public listener, by result",
                Family::default(),
            ),
            tls_handshake_failures: register(
                reg,
                "tls_handshake_failures",
                "TLS handshakes on the public listener that did not complete, by reason",
                Family::default(),
            ),
            signing_key_age_seconds: with_signing_key_age.then(|| {
                register(
                    reg,
                    "signing_key_age_seconds",
                    "Age of the active token signing key",
                    Gauge::default(),
                )
            }),
            // The real registry is borrowed by every `register` above; it moves in below.
            registry: Registry::default(),
        };
        for outcome in RegistrationOutcome::ALL {
            drop(metrics.registrations.get_or_create(&OutcomeLabels {
                outcome: outcome.label(),
            }));
        }
        for context in BreachContext::ALL {
            for result in BreachResult::ALL {
                drop(metrics.breach_checks.get_or_create(&BreachLabels {
                    context: context.label(),
                    result: result.label(),
                }));
            }
        }
        for grant in GrantKind::ALL {
            drop(metrics.tokens_issued.get_or_create(&GrantLabels {
                grant: grant.label(),
            }));
        }
        for store in StoreKind::ALL {
            drop(metrics.store_errors.get_or_create(&StoreLabels {
                store: store.label(),
            }));
        }
        for method in ["totp", "recovery"] {
            for result in ["success", "failure", "replay"] {
                if method == "recovery" && result == "replay" {
                    continue;
                }
                drop(
                    metrics
                        .mfa_attempts
                        .get_or_create(&MfaLabels { method, result }),
                );
            }
        }
        for mode in ["open", "closed"] {
            drop(
                metrics
                    .rate_limit_store_failures
                    .get_or_create(&ModeLabels { mode }),
            );
        }
        drop(metrics.mails_suppressed.get_or_create(&ReasonLabels {
            reason: "address_limit".to_owned(),
        }));
        for channel in ["email", "webhook"] {
            drop(
                metrics
                    .notification_outbox_pending
                    .get_or_create(&ChannelLabels { channel }),
            );
            drop(
                metrics
                    .notification_outbox_oldest_seconds
                    .get_or_create(&ChannelLabels { channel }),
            );
        }
        for result in ["ok", "error"] {
            drop(metrics.tls_reloads.get_or_create(&ResultLabels {
                result: result.to_owned(),
            }));
        }
        Self {
            registry: r,
            ..metrics
        }
    }

    /// Counts a look at changed TLS certificate files: `ok` or `error`.
    pub fn tls_reloaded(&self, result: &str) {
        self.tls_reloads
            .get_or_create(&ResultLabels {
                result: result.to_owned(),
            })
            .inc();
    }

    /// Counts a TLS handshake that did not complete: `timeout` or `error`.
    pub fn tls_handshake_failed(&self, reason: &str) {
        self.tls_handshake_failures
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts a second-factor attempt.
    pub fn mfa_attempt(&self, method: MfaMethod, result: MfaResult) {
        self.mfa_attempts
            .get_or_create(&MfaLabels {
                method: match method {
                    MfaMethod::Totp => "totp",
                    MfaMethod::Recovery => "recovery",
                },
                result: match result {
                    MfaResult::Success => "success",
                    MfaResult::Failure => "failure",
                    MfaResult::Replay => "replay",
                },
            })
            .inc();
    }

    /// Counts a failed login by reason.
    pub fn login_failed(&self, reason: &str) {
        self.login_failures
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts an answered HTTP request and its latency under its route template.
    pub fn http_answered(&self, route: &str, status: u16, seconds: f64) {
        self.http_requests
            .get_or_create(&HttpLabels {
                route: route.to_owned(),
                status,
            })
            .inc();
        self.http_request_duration
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    /// Counts a registration's outcome.
    pub fn registered(&self, outcome: RegistrationOutcome) {
        self.registrations
            .get_or_create(&OutcomeLabels {
                outcome: outcome.label(),
            })
            .inc();
    }

    /// Counts a breach check's result; an error also counts in the older failures counter.
    pub fn breach_checked(&self, context: BreachContext, result: BreachResult) {
        self.breach_checks
            .get_or_create(&BreachLabels {
                context: context.label(),
                result: result.label(),
            })
            .inc();
        if result == BreachResult::Error {
            self.breach_check_failures.inc();
        }
    }

    /// Counts an access token issued by `grant`.
    pub fn token_issued(&self, grant: GrantKind) {
        self.tokens_issued
            .get_or_create(&GrantLabels {
                grant: grant.label(),
            })
            .inc();
    }

    /// Counts a failure of `store`.
    pub fn store_failed(&self, store: StoreKind) {
        self.store_errors
            .get_or_create(&StoreLabels {
                store: store.label(),
            })
            .inc();
    }

    /// Sets the hashing-pool gauges (at scrape: the pool keeps its own counts).
    pub fn set_hashing_load(&self, load: HashingLoad) {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.hashing_in_flight.set(gauge(load.in_flight));
        self.hashing_queue_depth.set(gauge(load.queue_depth));
        self.hashing_queue_capacity.set(gauge(load.queue_capacity));
    }

    /// The OpenMetrics text exposition (what Prometheus asks for).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            tracing::error!("metrics encoding failed");
        }
        out
    }
}

/// Rewrites OpenMetrics text as the Prometheus text format 0.0.4, for every reader that does
/// not ask for OpenMetrics (promtool, curl, older scrapers). OpenMetrics names a counter's
/// family without `_total` and its samples with it; 0.0.4 names both with it, and readers
/// of 0.0.4 find no help or type for the samples otherwise (promtool refuses them). `# UNIT`
/// and `# EOF` do not exist in 0.0.4, and `unknown` is called `untyped` there.
pub fn to_text_004(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let descriptor = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|prefix| Some((prefix, line.strip_prefix(prefix)?)));
        match descriptor {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(prefix);
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                out.push(' ');
                out.push_str(if prefix == "# TYPE " && tail == "unknown" {
                    "untyped"
                } else {
                    tail
                });
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_appear_in_the_exposition_with_the_prefix() {
        let m = Metrics::new(true);
        m.signing_key_age_seconds.as_ref().unwrap().set(86_400);
        m.login_failed("invalid_credentials");
        m.lockouts.inc();
        m.http_answered("/api/v1/login", 401, 0.02);
        let text = m.encode();
        assert!(
            text.contains("portcullis_login_failures_total{reason=\"invalid_credentials\"} 1"),
            "{text}"
        );
        assert!(text.contains("portcullis_lockouts_total 1"), "{text}");
        assert!(
            text.contains(
                "portcullis_http_requests_total{route=\"/api/v1/login\",status=\"401\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "portcullis_http_request_duration_seconds_bucket{le=\"0.04\",route=\"/api/v1/login\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("portcullis_signing_key_age_seconds 86400"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn closed_label_sets_are_listed_at_zero_before_anything_happens() {
        let text = Metrics::default().encode();
        for series in [
            "portcullis_registrations_total{outcome=\"verification_pending\"} 0",
            "portcullis_breach_checks_total{context=\"password_reset\",result=\"error\"} 0",
            "portcullis_tokens_issued_total{grant=\"client_credentials\"} 0",
            "portcullis_store_errors_total{store=\"postgres\"} 0",
            "portcullis_store_errors_total{store=\"redis\"} 0",
        ] {
            assert!(text.contains(series), "{series} missing from\n{text}");
        }
    }

    #[test]
    fn a_failed_breach_check_counts_as_an_error_and_in_the_old_failures_counter() {
        let m = Metrics::default();
        m.breach_checked(BreachContext::Register, BreachResult::Error);
        m.breach_checked(BreachContext::Register, BreachResult::Breached);
        let text = m.encode();
        assert!(
            text.contains(
                "portcullis_breach_checks_total{context=\"register\",result=\"error\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "portcullis_breach_checks_total{context=\"register\",result=\"breached\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("portcullis_breach_check_failures_total 1"),
            "{text}"
        );
    }

    #[test]
    fn the_hashing_load_is_exported_as_three_gauges() {
        let m = Metrics::default();
        m.set_hashing_load(HashingLoad {
            in_flight: 5,
            queue_depth: 3,
            queue_capacity: 16,
        });
        let text = m.encode();
        for series in [
            "portcullis_password_hashing_in_flight 5",
            "portcullis_password_hashing_queue_depth 3",
            "portcullis_password_hashing_queue_capacity 16",
        ] {
            assert!(text.contains(series), "{series} missing from\n{text}");
        }
    }

    #[test]
    fn only_postgres_and_redis_outages_name_a_store() {
        assert_eq!(
            StoreKind::from_dependency("database"),
            Some(StoreKind::Postgres)
        );
        assert_eq!(StoreKind::from_dependency("redis"), Some(StoreKind::Redis));
        assert_eq!(StoreKind::from_dependency("sessions"), None);
    }

    const OPENMETRICS: &str = "\
# HELP portcullis_login_failures Failed logins by reason.
# TYPE portcullis_login_failures counter
portcullis_login_failures_total{reason=\"locked\"} 2
# HELP portcullis_hash_seconds Time spent in bcrypt.
# TYPE portcullis_hash_seconds histogram
# UNIT portcullis_hash_seconds seconds
portcullis_hash_seconds_sum 0.5
portcullis_hash_seconds_count 1
portcullis_hash_seconds_bucket{le=\"+Inf\"} 1
# HELP portcullis_queue_depth Waiting callers.
# TYPE portcullis_queue_depth gauge
portcullis_queue_depth 3
# HELP portcullis_thing Something.
# TYPE portcullis_thing unknown
portcullis_thing 1
# EOF
";

    const TEXT_004: &str = "\
# HELP portcullis_login_failures_total Failed logins by reason.
# TYPE portcullis_login_failures_total counter
portcullis_login_failures_total{reason=\"locked\"} 2
# HELP portcullis_hash_seconds Time spent in bcrypt.
# TYPE portcullis_hash_seconds histogram
portcullis_hash_seconds_sum 0.5
portcullis_hash_seconds_count 1
portcullis_hash_seconds_bucket{le=\"+Inf\"} 1
# HELP portcullis_queue_depth Waiting callers.
# TYPE portcullis_queue_depth gauge
portcullis_queue_depth 3
# HELP portcullis_thing Something.
# TYPE portcullis_thing untyped
portcullis_thing 1
";

    #[test]
    fn text_004_names_counter_descriptors_like_their_samples_and_drops_openmetrics_only_lines() {
        assert_eq!(to_text_004(OPENMETRICS), TEXT_004);
    }

    #[test]
    fn in_text_004_every_sample_has_a_help_and_type_of_its_family() {
        let m = Metrics::new(true);
        m.login_failed("locked");
        m.registered(RegistrationOutcome::Created);
        m.http_answered("/healthz", 200, 0.001);
        let text = to_text_004(&m.encode());
        let typed: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        for sample in text.lines().filter(|l| !l.starts_with('#')) {
            let name = sample.split(['{', ' ']).next().unwrap_or_default();
            let family = typed.iter().any(|t| {
                name == *t
                    || ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|suffix| name.strip_suffix(suffix) == Some(t))
            });
            assert!(family, "{name} has no # TYPE line in\n{text}");
        }
        assert!(!text.contains("# EOF"), "{text}");
    }
}
