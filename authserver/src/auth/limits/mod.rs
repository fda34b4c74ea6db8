//! The realm's rate limits, enforced with `portcullis-ratelimit`: which buckets a request or a
//! subject counts against (from the merged RateLimitPolicies), one store decision per check
//! bounded by [`STORE_TIMEOUT`], and the failure mode when the store cannot decide.
//!
//! Two decisions per request at most: the HTTP middleware's (route class and `All`, per IP and
//! global, before any body is read) and a use case's subject check (per identifier, account or
//! client, before any hashing, breach lookup or mail).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use portcullis_crds::rate_limit::{LimitKey, RateLimitBackend, RateLimitFailureMode, Route};
use portcullis_crds::settings::{EffectiveLimit, EffectiveRateLimits};
use portcullis_ratelimit::headers::{self, PolicyItem};
use portcullis_ratelimit::{Bucket, Check, Store, gcra, keys};
use uuid::Uuid;

use super::AuthError;
use crate::clock::Clock;
use crate::mail::MailLimit;
use crate::metrics::{BackendLabels, Metrics, ModeLabels, RateLimitLabels, StoreKind};

/// The longest a decision may take. `ConnectionManager` waits up to 500 ms for a response and
/// a reconnect far longer; a limiter that stalls every request is worse than its failure mode.
pub const STORE_TIMEOUT: Duration = Duration::from_millis(200);

/// Buckets the in-process store holds at most (about 40 MB at worst); past it the store evicts
/// the buckets closest to expiry (they hold the least state), so a flood of addresses can
/// neither grow the process without bound nor stop new clients from being decided.
pub const LOCAL_CAPACITY: usize = 250_000;

/// At most one log line per this many ms when the store fails (each request would log).
const LOG_EVERY_MS: u64 = 10_000;

/// The built-in per-address mail limit: 5 an hour, 4 of them at once. Registration mail counts
/// per mailbox; recovery mail per (mailbox, requester source) with [`RECOVERY_CEILING_FACTOR`]
/// times it per mailbox.
const MAIL_LIMIT: (u64, Duration, u64) = (5, Duration::from_secs(3_600), 4);

/// How many times [`MAIL_LIMIT`] one mailbox may receive recovery mail from all requesters
/// together: bounds a distributed reset mail-bomb, while a single source, however busy, cannot
/// use up the owner's own requests.
const RECOVERY_CEILING_FACTOR: u64 = 3;

/// One account-locked notice per address per this window: a failure run from many addresses
/// locks per address many times, and each lock would otherwise send a mail.
const LOCK_NOTICE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// The rule name of the mail limit in metrics.
const MAIL_RULE: &str = "builtin/mail-per-address";

/// How many times the configured `(route, User)` limit one identifier may use across all
/// sources together. Equal to the lockout's overall multiple (`maxFailures` ×20), so the
/// ceiling does not lock an account out more cheaply than the lockout already would.
pub const IDENTIFIER_CEILING_FACTOR: u64 = 20;

/// The source a per-identifier bucket and the lockout's per-address counter are keyed by: the
/// address (IPv4, or the IPv4 a 6to4 or NAT64 address embeds), or an IPv6 address's /56 (what
/// an ISP gives a household), so that rotating the low bits of a /64 or /56 buys no new budget.
pub fn source_key(ip: IpAddr) -> String {
    let mut prefixes = keys::ip_prefix_buckets(ip);
    // [address] for IPv4, [/64, /56, /48] for IPv6.
    if prefixes.len() > 1 {
        prefixes.swap_remove(1)
    } else {
        prefixes.pop().unwrap_or_else(|| ip.to_string())
    }
}

/// The lockout's per-address source for a request address as `RequestMeta` carries it:
/// [`source_key`] when it parses, else the text itself.
pub fn lockout_source(ip: &str) -> String {
    ip.parse().map_or_else(|_| ip.to_owned(), source_key)
}

/// Who a subject limit counts: the `User` key holds an identifier's digest or an account id,
/// the `Client` key a client id.
#[derive(Clone, Copy, Debug)]
pub enum Subject<'a> {
    /// A canonical login identifier, whether or not an account has it, typed from `source`
    /// (the client address, when known).
    Identifier(&'a str, Option<IpAddr>),
    /// An account.
    User(Uuid),
    /// An OAuth client id, already reduced to a registered id or [`keys::UNKNOWN_CLIENT`].
    Client(&'a str),
}

/// A refusal: the answer's `Retry-After`, `RateLimit-Policy` and `RateLimit` values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Whole seconds until the refusing bucket lets one request through (at least 1).
    pub retry_after_secs: u64,
    /// `RateLimit-Policy`: every limit this decision checked.
    pub policy: String,
    /// `RateLimit`: the bucket that refused.
    pub limit: String,
}

/// One bucket of a decision, with what the headers and metrics name it by.
#[derive(Debug)]
struct Planned {
    route: &'static str,
    key: &'static str,
    requests: u64,
    period: Duration,
    burst: u64,
    rule: String,
    bucket_key: String,
}

/// The route class as labels and keys name it.
pub fn route_label(route: Route) -> &'static str {
    match route {
        Route::Login => "login",
        Route::Register => "register",
        Route::Mfa => "mfa",
        Route::PasswordReset => "password_reset",
        Route::Token => "token",
        Route::Api => "api",
        Route::All => "all",
    }
}

/// The key kind as labels and keys name it.
pub fn key_label(key: LimitKey) -> &'static str {
    match key {
        LimitKey::Ip => "ip",
        LimitKey::User => "user",
        LimitKey::Client => "client",
        LimitKey::Global => "global",
    }
}

/// When a store failure was logged last (ms on the realm clock) and how many went unlogged
/// since.
#[derive(Debug, Default)]
struct FailureLog {
    last_ms: Mutex<Option<u64>>,
    suppressed: AtomicU64,
}

impl FailureLog {
    /// Whether to log at `now_ms`; if so, how many failures were not logged before this one.
    fn due(&self, now_ms: u64) -> Option<u64> {
        let mut last = self.last_ms.lock().ok()?;
        match *last {
            Some(at) if now_ms.saturating_sub(at) < LOG_EVERY_MS => {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                None
            }
            _ => {
                *last = Some(now_ms);
                Some(self.suppressed.swap(0, Ordering::Relaxed))
            }
        }
    }
}

/// Everything [`Limiter::new`] takes.
pub struct LimiterParts {
    /// The merged limits of the realm.
    pub limits: EffectiveRateLimits,
    /// Whether limits are enforced at all (tests and benchmarks opt in).
    pub enabled: bool,
    /// The Redis connection when the realm's Redis is configured (the `Redis` backend needs
    /// it; without it the limiter keeps its buckets in this process).
    pub redis: Option<redis::aio::ConnectionManager>,
    /// Key prefix, `portcullis:<realm>:`.
    pub prefix: String,
    /// The clock the buckets run on.
    pub clock: Clock,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

/// The rate limiter of a realm.
pub struct Limiter {
    enabled: bool,
    store: Store,
    backend: &'static str,
    failure_mode: RateLimitFailureMode,
    limits: BTreeMap<(Route, LimitKey), EffectiveLimit>,
    prefix: String,
    clock: Clock,
    metrics: Arc<Metrics>,
    log: FailureLog,
    /// Subjects whose buckets an admin cleared, with how many times, on the local backend:
    /// the count is part of their bucket keys, so the old buckets are left to expire (the
    /// in-process store has no delete). Only admin unlocks add to it, so it stays small.
    generations: Mutex<HashMap<String, u64>>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("enabled", &self.enabled)
            .field("backend", &self.backend)
            .field("failure_mode", &self.failure_mode)
            .finish_non_exhaustive()
    }
}

impl Limiter {
    /// A limiter on the realm's Redis when its backend is `Redis` and a connection is given,
    /// else on a bounded map in this process.
    pub fn new(parts: LimiterParts) -> Self {
        let (store, backend) = match (parts.limits.backend, parts.redis) {
            (RateLimitBackend::Redis, Some(connection)) => (Store::redis(connection), "redis"),
            _ => (Store::memory(LOCAL_CAPACITY), "local"),
        };
        Self {
            enabled: parts.enabled,
            store,
            backend,
            failure_mode: parts.limits.failure_mode,
            limits: parts.limits.limits,
            prefix: parts.prefix,
            clock: parts.clock,
            metrics: parts.metrics,
            log: FailureLog::default(),
            generations: Mutex::new(HashMap::new()),
        }
    }

    /// A subject's bucket value as keyed now: `value` itself, or after an admin cleared the
    /// subject's buckets on the local backend, `value~<times cleared>` (fresh buckets).
    fn keyed(&self, value: String) -> String {
        let generation = self
            .generations
            .lock()
            .ok()
            .and_then(|g| g.get(&value).copied())
            .unwrap_or(0);
        if generation == 0 {
            value
        } else {
            format!("{value}~{generation}")
        }
    }

    /// Forgets the subject buckets of a login identifier (from every source, and its ceiling)
    /// and of an account, on every route: an admin unlock lets its owner in at once rather
    /// than after the limits refill. On Redis the keys are found with `SCAN` (an admin action,
    /// rare) and deleted; locally the subject's buckets are replaced by fresh ones.
    pub async fn forget_subject(&self, identifier: &str, user: Uuid) -> Result<(), AuthError> {
        let digest = keys::identifier_digest(identifier);
        let account = user.to_string();
        match &self.store {
            Store::Redis(connection) => {
                let mut connection = connection.clone();
                let prefix = glob_escape(&self.prefix);
                // `<digest>` alone (the ceiling) and `<digest>@<source>`; the account's id.
                let patterns = [
                    format!("{prefix}rl:*:user:{digest}"),
                    format!("{prefix}rl:*:user:{digest}@*"),
                    format!("{prefix}rl:*:user:{account}"),
                ];
                let forget = async {
                    for pattern in &patterns {
                        let found: Vec<String> = {
                            let mut iter: redis::AsyncIter<'_, String> =
                                redis::AsyncCommands::scan_match(&mut connection, pattern).await?;
                            let mut found = Vec::new();
                            while let Some(key) = iter.next_item().await {
                                found.push(key?);
                            }
                            found
                        };
                        if !found.is_empty() {
                            let _: u64 = redis::AsyncCommands::del(&mut connection, found).await?;
                        }
                    }
                    Ok::<_, redis::RedisError>(())
                };
                forget.await.map_err(|error| {
                    tracing::error!(target: "rate_limit", %error, "cannot clear a subject's rate-limit buckets");
                    AuthError::Unavailable("redis")
                })
            }
            Store::Memory(_) => {
                let mut generations = self
                    .generations
                    .lock()
                    .map_err(|_| AuthError::Internal("rate-limit generations poisoned".into()))?;
                for value in [digest, account] {
                    *generations.entry(value).or_insert(0) += 1;
                }
                Ok(())
            }
        }
    }

    /// Whether limits are enforced.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// `redis` or `local`: where the buckets live.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    fn plan(&self, route: Route, key: LimitKey, value: &str) -> Option<Planned> {
        let limit = self.limits.get(&(route, key))?;
        let (route, key) = (route_label(route), key_label(key));
        Some(Planned {
            route,
            key,
            requests: u64::from(limit.requests),
            period: limit.period,
            burst: u64::from(limit.burst),
            rule: limit.source.clone(),
            bucket_key: keys::bucket_key(&self.prefix, route, key, value),
        })
    }

    /// The per-IP buckets of `route` for an address: the address (IPv4, or the IPv4 a 6to4 or
    /// NAT64 address embeds) at the configured limit; for IPv6 its /64 at the configured limit
    /// and its /56 and /48 at 4 and 16 times it. A /48 is free from a tunnel broker: keyed by
    /// /64 alone, one holder would get 65,536 independent budgets.
    fn plan_ip(&self, route: Route, prefixes: &[String]) -> Vec<Planned> {
        const WIDER: [(&str, u64); 3] = [("ip", 1), ("ip56", 4), ("ip48", 16)];
        let Some(base) = self.plan(route, LimitKey::Ip, "") else {
            return Vec::new();
        };
        prefixes
            .iter()
            .zip(WIDER)
            .map(|(value, (key, factor))| Planned {
                route: base.route,
                key,
                requests: base.requests.saturating_mul(factor),
                period: base.period,
                burst: base.burst.saturating_mul(factor),
                rule: base.rule.clone(),
                bucket_key: keys::bucket_key(&self.prefix, base.route, "ip", value),
            })
            .collect()
    }

    /// The request-level decision: `(class, Ip)`, `(class, Global)`, `(All, Ip)` and
    /// `(All, Global)`, those the realm limits, the IP ones per prefix for IPv6 (`plan_ip`).
    /// Without a known address the IP buckets are skipped (only in-process callers have none).
    pub async fn check_request(
        &self,
        class: Option<Route>,
        ip: Option<IpAddr>,
    ) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        let prefixes = ip.map(keys::ip_prefix_buckets).unwrap_or_default();
        let mut planned = Vec::with_capacity(8);
        for route in class.into_iter().chain([Route::All]) {
            planned.extend(self.plan_ip(route, &prefixes));
            planned.extend(self.plan(route, LimitKey::Global, keys::GLOBAL));
        }
        self.decide(planned).await
    }

    /// A subject's decision: `(route, key)` and `(All, key)` for the subject's key.
    ///
    /// An identifier typed from a known address is limited per (identifier, source) at the
    /// configured rate, plus a ceiling per identifier across all sources at
    /// [`IDENTIFIER_CEILING_FACTOR`] times it. Keyed by the identifier alone, anyone could hold
    /// a chosen user's logins at 429 with one request every few seconds (the limit would undo
    /// the lockout's per-address design); keyed per source, a flood from one address stops only
    /// that address, while a guessing run spread over many addresses still meets the ceiling
    /// and, before it, the lockout's overall counter, which stays the per-account brake.
    pub async fn check_subject(&self, route: Route, subject: Subject<'_>) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        let (key, value) = match subject {
            Subject::Identifier(identifier, Some(ip)) => {
                let digest = self.keyed(keys::identifier_digest(identifier));
                let from_source = format!("{digest}@{}", source_key(ip));
                let mut planned = Vec::with_capacity(4);
                for route in [route, Route::All] {
                    let Some(ceiling) = self.plan(route, LimitKey::User, &digest) else {
                        continue;
                    };
                    planned.push(Planned {
                        bucket_key: keys::bucket_key(
                            &self.prefix,
                            ceiling.route,
                            "user",
                            &from_source,
                        ),
                        rule: ceiling.rule.clone(),
                        ..ceiling
                    });
                    planned.push(Planned {
                        key: "user_all",
                        requests: ceiling.requests.saturating_mul(IDENTIFIER_CEILING_FACTOR),
                        burst: ceiling.burst.saturating_mul(IDENTIFIER_CEILING_FACTOR),
                        ..ceiling
                    });
                }
                return self.decide(planned).await;
            }
            // In-process callers without an address: the identifier alone.
            Subject::Identifier(identifier, None) => (
                LimitKey::User,
                self.keyed(keys::identifier_digest(identifier)),
            ),
            Subject::User(id) => (LimitKey::User, self.keyed(id.to_string())),
            Subject::Client(id) => (LimitKey::Client, id.to_owned()),
        };
        let mut planned = Vec::with_capacity(2);
        for route in [route, Route::All] {
            planned.extend(self.plan(route, key, &value));
        }
        self.decide(planned).await
    }

    /// Whether a mail to `address` (canonical) of the `limit` kind may go: the built-in
    /// per-address limits, one bucket family per kind ([`MailLimit`]), a `+tag` or Gmail
    /// spelling sharing its mailbox's buckets. `source` is the requester's address (recovery
    /// mail is counted per requester). A refused mail is counted here; the caller drops it
    /// without telling anyone.
    pub async fn allow_mail(
        &self,
        address: &str,
        limit: MailLimit,
        source: Option<IpAddr>,
    ) -> bool {
        if !self.enabled {
            return true;
        }
        let (requests, period, burst) = MAIL_LIMIT;
        let bucket = |key: &'static str, requests, period, burst, value: &str| Planned {
            route: "mail",
            key,
            requests,
            period,
            burst,
            rule: MAIL_RULE.to_owned(),
            bucket_key: keys::bucket_key(&self.prefix, "mail", key, value),
        };
        let mailbox = keys::mail_address_digest(address);
        let planned = match limit {
            MailLimit::Unlimited => return true,
            // The key registration mail always had, so buckets survive an upgrade.
            MailLimit::Signup => vec![Planned {
                bucket_key: keys::mail_key(&self.prefix, address),
                ..bucket("addr", requests, period, burst, "")
            }],
            MailLimit::Recovery => {
                let mut planned = vec![bucket(
                    "recovery_all",
                    requests.saturating_mul(RECOVERY_CEILING_FACTOR),
                    period,
                    burst.saturating_mul(RECOVERY_CEILING_FACTOR),
                    &mailbox,
                )];
                if let Some(ip) = source {
                    let value = format!("{mailbox}@{}", source_key(ip));
                    planned.push(bucket("recovery", requests, period, burst, &value));
                }
                planned
            }
            MailLimit::LockNotice => {
                vec![bucket("lock_notice", 1, LOCK_NOTICE_WINDOW, 0, &mailbox)]
            }
        };
        match self.decide(planned).await {
            Ok(()) => true,
            Err(AuthError::RateLimited(_)) => {
                self.metrics
                    .mails_suppressed
                    .get_or_create(&crate::metrics::ReasonLabels {
                        reason: "address_limit".to_owned(),
                    })
                    .inc();
                tracing::info!(target: "rate_limit", "mail dropped: the address's mail limit is reached");
                false
            }
            Err(_) => false,
        }
    }

    /// One store decision over `planned`; counts it and applies the failure mode.
    async fn decide(&self, planned: Vec<Planned>) -> Result<(), AuthError> {
        if planned.is_empty() {
            return Ok(());
        }
        let buckets: Vec<Bucket> = planned
            .iter()
            .map(|p| Bucket::new(p.requests, p.period, p.burst))
            .collect();
        let checks: Vec<Check<'_>> = planned
            .iter()
            .zip(&buckets)
            .map(|(p, &bucket)| Check {
                key: &p.bucket_key,
                bucket,
            })
            .collect();
        let now_us = self.clock.now_us();
        let watch = self.clock.stopwatch();
        let decided = tokio::time::timeout(STORE_TIMEOUT, self.store.decide(now_us, &checks)).await;
        self.metrics
            .rate_limit_decision_seconds
            .get_or_create(&BackendLabels {
                backend: self.backend,
            })
            .observe(watch.seconds());
        let outcome = match decided {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(error)) => return self.store_failed(&error.to_string()),
            Err(_) => return self.store_failed("no decision within 200 ms"),
        };
        if outcome.allowed {
            for p in &planned {
                self.count(p, "allowed");
            }
            return Ok(());
        }
        // `refusing` can find no bucket over its tolerance when the store clamped a limit the
        // caller did not (a period of decades): name the longest wait then, never let it pass.
        let refusing = outcome.refusing(now_us, &buckets).unwrap_or_else(|| {
            (0..buckets.len())
                .max_by_key(|&i| {
                    let tat = outcome.tats_us.get(i).copied().unwrap_or(now_us);
                    gcra::retry_after_us(now_us, &buckets[i], tat)
                })
                .unwrap_or(0)
        });
        let (p, bucket) = (&planned[refusing], &buckets[refusing]);
        let tat = outcome.tats_us.get(refusing).copied().unwrap_or(now_us);
        self.count(p, "limited");
        let retry_after_secs = gcra::retry_after_secs(now_us, bucket, tat).max(1);
        let items: Vec<PolicyItem<'_>> = planned
            .iter()
            .map(|p| PolicyItem {
                route: p.route,
                key: p.key,
                requests: p.requests,
                period: p.period,
                burst: p.burst,
                rule: &p.rule,
            })
            .collect();
        Err(AuthError::RateLimited(Box::new(Refusal {
            retry_after_secs,
            policy: headers::rate_limit_policy(&items),
            limit: headers::rate_limit(
                p.route,
                p.key,
                gcra::remaining(now_us, bucket, tat),
                retry_after_secs,
            ),
        })))
    }

    fn count(&self, p: &Planned, result: &'static str) {
        self.metrics
            .rate_limit_decisions
            .get_or_create(&RateLimitLabels {
                route: p.route.to_owned(),
                key: p.key.to_owned(),
                rule: p.rule.clone(),
                result,
            })
            .inc();
    }

    /// The store could not decide: `Open` lets the request through, `Closed` refuses it; both
    /// count, and at most one line per [`LOG_EVERY_MS`] is logged.
    fn store_failed(&self, error: &str) -> Result<(), AuthError> {
        let (mode, verdict) = match self.failure_mode {
            RateLimitFailureMode::Open => ("open", "requests are let through"),
            RateLimitFailureMode::Closed => ("closed", "requests are refused"),
        };
        self.metrics
            .rate_limit_store_failures
            .get_or_create(&ModeLabels { mode })
            .inc();
        if self.backend == "redis" {
            self.metrics.store_failed(StoreKind::Redis);
        }
        if let Some(suppressed) = self.log.due(self.clock.now_ms()) {
            tracing::error!(
                target: "rate_limit",
                backend = self.backend,
                mode,
                error,
                suppressed,
                "rate-limit store unavailable; {verdict}"
            );
        }
        match self.failure_mode {
            RateLimitFailureMode::Open => Ok(()),
            RateLimitFailureMode::Closed => Err(AuthError::RateLimitUnavailable),
        }
    }
}

/// `text` with the glob characters of Redis `MATCH` patterns escaped.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(failure_mode: RateLimitFailureMode, capacity: usize) -> Limiter {
        let yaml = "apiVersion: portcullis.dev/v1alpha1
kind: AuthRealm
metadata: {name: unit}
spec:
  issuer: https://auth.example.com
  database: {secretRef: {name: db}}
  emailVerification: {required: false}
";
        let manifests = portcullis_crds::parse_manifests(yaml).unwrap();
        let settings = portcullis_crds::RealmSettings::from_manifests(&manifests).unwrap();
        let clock = Clock::manual(time::macros::datetime!(2030-01-01 0:00 UTC));
        let mut limits = Limiter::new(LimiterParts {
            limits: settings.rate_limits,
            enabled: true,
            redis: None,
            prefix: "unit:".into(),
            clock,
            metrics: Arc::new(Metrics::default()),
        });
        limits.failure_mode = failure_mode;
        limits.store = Store::memory(capacity);
        limits
    }

    #[test]
    fn the_source_of_an_ipv6_address_is_its_56_and_of_an_ipv4_address_itself() {
        let source = |text: &str| source_key(text.parse().unwrap());
        assert_eq!(source("2001:db8:aa:bb12::1"), "2001:db8:aa:bb00::/56");
        assert_eq!(
            source("2001:db8:aa:bbff:1:2:3:4"),
            source("2001:db8:aa:bb00::9")
        );
        assert_eq!(source("192.0.2.7"), "192.0.2.7");
        assert_eq!(source("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(source("64:ff9b::c000:207"), "192.0.2.7");
        assert_eq!(lockout_source("not an address"), "not an address");
    }

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([192, 0, 2, last]))
    }

    #[tokio::test]
    async fn a_refusal_names_the_refusing_bucket_and_every_limit_checked() {
        let limits = limiter(RateLimitFailureMode::Closed, 100);
        // The built-in (Login, Ip) 30/min burst 10 and (All, Ip) 600/min burst 200.
        for _ in 0..11 {
            limits
                .check_request(Some(Route::Login), ip(1))
                .await
                .unwrap();
        }
        let Err(AuthError::RateLimited(refusal)) =
            limits.check_request(Some(Route::Login), ip(1)).await
        else {
            panic!("the twelfth login at once is refused");
        };
        assert_eq!(refusal.retry_after_secs, 2);
        assert_eq!(refusal.limit, "\"login.ip\";r=0;t=2");
        assert_eq!(
            refusal.policy,
            "\"login.ip\";q=30;w=60;portcullis-burst=10;portcullis-rule=\"default/login\", \
             \"all.ip\";q=600;w=60;portcullis-burst=200;portcullis-rule=\"default/all\""
        );
        // Another address, and a route class without limits of its own, pass.
        limits
            .check_request(Some(Route::Login), ip(2))
            .await
            .unwrap();
        limits.check_request(Some(Route::Api), ip(1)).await.unwrap();
    }

    #[tokio::test]
    async fn a_store_that_cannot_decide_refuses_when_closed_and_lets_through_when_open() {
        for (mode, refused) in [
            (RateLimitFailureMode::Closed, true),
            (RateLimitFailureMode::Open, false),
        ] {
            // Room for one bucket, and a login decision needs two ((Login, Ip) and (All, Ip)):
            // the store cannot decide it (a full map evicts, so only this fails).
            let limits = limiter(mode, 1);
            let answer = limits.check_request(Some(Route::Login), ip(1)).await;
            assert_eq!(
                matches!(answer, Err(AuthError::RateLimitUnavailable)),
                refused,
                "{mode:?}: {answer:?}"
            );
            assert!(
                refused || answer.is_ok(),
                "{mode:?} lets the request through: {answer:?}"
            );
            let label = if refused { "closed" } else { "open" };
            let failures = limits
                .metrics
                .rate_limit_store_failures
                .get_or_create(&ModeLabels { mode: label })
                .get();
            assert_eq!(failures, 1, "{mode:?}");
        }
    }

    /// How many of `addresses`' login decisions at one instant pass.
    async fn logins_passing(limits: &Limiter, addresses: impl Iterator<Item = IpAddr>) -> usize {
        let mut passed = 0;
        for address in addresses {
            if limits
                .check_request(Some(Route::Login), Some(address))
                .await
                .is_ok()
            {
                passed += 1;
            }
        }
        passed
    }

    #[tokio::test]
    async fn an_ipv6_holder_changing_its_64_is_limited_by_its_56_and_48() {
        // The built-in (Login, Ip) is 30/min burst 10: 11 at once per /64, 41 per /56, 161 per
        // /48 (4 and 16 times the allowance).
        let limits = limiter(RateLimitFailureMode::Closed, 10_000);
        let in_one_56 = (0..100u16).map(|i| IpAddr::from([0x2001, 0xdb8, 1, i, 0, 0, 0, 1]));
        assert_eq!(logins_passing(&limits, in_one_56).await, 41);
        let limits = limiter(RateLimitFailureMode::Closed, 10_000);
        let in_one_48 = (0..400u16)
            .map(|i| IpAddr::from([0x2001, 0xdb8, 2, (i % 100) | ((i / 100) << 8), 0, 0, 0, 1]));
        assert_eq!(logins_passing(&limits, in_one_48).await, 161);
        let limits = limiter(RateLimitFailureMode::Closed, 10_000);
        let one_64 = (0..20u16).map(|i| IpAddr::from([0x2001, 0xdb8, 3, 4, 0, 0, 0, i]));
        assert_eq!(logins_passing(&limits, one_64).await, 11);
    }

    #[tokio::test]
    async fn six_to_four_addresses_of_one_ipv4_share_its_bucket() {
        let limits = limiter(RateLimitFailureMode::Closed, 10_000);
        // 2002:c000:0201::/48 is 6to4 for 192.0.2.1: each /64 of it is that one IPv4 client.
        let six_to_four = (0..20u16).map(|i| IpAddr::from([0x2002, 0xc000, 0x0201, i, 0, 0, 0, 1]));
        assert_eq!(logins_passing(&limits, six_to_four).await, 11);
        assert!(
            limits
                .check_request(Some(Route::Login), ip(1))
                .await
                .is_err(),
            "192.0.2.1 itself has used its allowance through 6to4"
        );
    }

    #[tokio::test]
    async fn limits_that_are_off_decide_nothing() {
        let mut limits = limiter(RateLimitFailureMode::Closed, 1);
        limits.enabled = false;
        for last in 0..50 {
            limits
                .check_request(Some(Route::Login), ip(last))
                .await
                .unwrap();
        }
        assert!(
            limits
                .allow_mail("a@example.com", MailLimit::Signup, None)
                .await
        );
    }
}
