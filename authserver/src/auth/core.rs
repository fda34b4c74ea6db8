//! The small core every use case works over: the realm's policy, the stores, the password
//! hasher, the signing keys, the OAuth clients, the outbox, the clock and the random source,
//! and the few steps several use cases share (ending sessions, hashing with a metric, date
//! arithmetic).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use portcullis_audit::AuditLog;
use portcullis_crds::RealmSettings;
use portcullis_crds::realm::AuthRealmSpec;
use portcullis_mfa::PgMfaStore;
use time::OffsetDateTime;
use uuid::Uuid;

use super::AuthError;
use super::breach::BreachChecker;
use super::hashing::{PasswordHasher, Slot, StoredHash};
use super::key_fingerprints::KeyFingerprint;
use super::limits::Limiter;
use super::lockout::LockoutRules;
use super::oidc::clients::ClientRegistry;
use super::principal::{Principal, RequestMeta};
use super::tokens::KeyRing;
use crate::audit::Event;
use crate::clock::Clock;
use crate::mail::{Mail, Outbox};
use crate::metrics::Metrics;
use crate::notify::{Notice, Notifier, Recipient};
use crate::random::Random;
use crate::store::kv::Kv;
use crate::store::{Db, UserRecord};

/// Scope of tokens issued to the realm's own API.
pub(super) const API_SCOPE: &str = "openid profile email";

/// Everything [`Core::new`] takes.
pub struct CoreParts {
    /// The realm.
    pub settings: Arc<RealmSettings>,
    /// Accounts and tokens.
    pub db: Db,
    /// Sessions, revocations and lockout counters.
    pub kv: Kv,
    /// Password hashing pool.
    pub hasher: Arc<PasswordHasher>,
    /// Breach source.
    pub breach: BreachChecker,
    /// Signing keys.
    pub keys: Arc<KeyRing>,
    /// Where mail goes.
    pub outbox: Outbox,
    /// The clock.
    pub clock: Clock,
    /// The random source.
    pub random: Random,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Key of CSRF tokens.
    pub csrf_key: Vec<u8>,
    /// The realm's OAuth clients.
    pub clients: ClientRegistry,
    /// The realm's rate limits.
    pub limits: Arc<Limiter>,
    /// The tamper-evident audit trail.
    pub audit: AuditLog,
    /// Fingerprints of the loaded peppers, Fernet keys and audit keys (the key status).
    pub key_fingerprints: Vec<KeyFingerprint>,
}

/// The core. Its parts are private to the use cases (`crate::auth`).
pub struct Core {
    pub(super) settings: Arc<RealmSettings>,
    pub(super) db: Db,
    pub(super) kv: Kv,
    pub(super) hasher: Arc<PasswordHasher>,
    pub(super) breach: BreachChecker,
    pub(super) keys: Arc<KeyRing>,
    pub(super) outbox: Outbox,
    pub(super) clock: Clock,
    pub(super) random: Random,
    pub(super) metrics: Arc<Metrics>,
    pub(super) csrf_key: Vec<u8>,
    pub(super) clients: ClientRegistry,
    pub(super) limits: Arc<Limiter>,
    pub(super) audit: AuditLog,
    pub(super) key_fingerprints: Vec<KeyFingerprint>,
    pub(super) notifier: Notifier,
    /// The second factor's store (PostgreSQL only; `None` on the in-memory database).
    pub(super) mfa: Option<PgMfaStore>,
    /// The realm's social providers (PostgreSQL only; `None` without any).
    pub(super) social: Option<Arc<super::social::Social>>,
    /// Slots for background breach checks at login: a slow corpus cannot pile up tasks.
    pub(super) breach_slots: Arc<tokio::sync::Semaphore>,
}

/// Background breach checks at login one replica runs at once; more are skipped.
pub const BREACH_CHECKS_IN_FLIGHT: usize = 8;

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("realm", &self.settings.name)
            .finish_non_exhaustive()
    }
}

impl Core {
    /// Assembles the core.
    pub fn new(parts: CoreParts) -> Self {
        let events = parts
            .settings
            .spec
            .notifications
            .as_ref()
            .map(|n| n.events.clone());
        let notifier = Notifier::new(parts.outbox.clone(), parts.limits.clone(), events);
        Self {
            notifier,
            mfa: None,
            social: None,
            breach_slots: Arc::new(tokio::sync::Semaphore::new(BREACH_CHECKS_IN_FLIGHT)),
            settings: parts.settings,
            db: parts.db,
            kv: parts.kv,
            hasher: parts.hasher,
            breach: parts.breach,
            keys: parts.keys,
            outbox: parts.outbox,
            clock: parts.clock,
            random: parts.random,
            metrics: parts.metrics,
            csrf_key: parts.csrf_key,
            clients: parts.clients,
            limits: parts.limits,
            audit: parts.audit,
            key_fingerprints: parts.key_fingerprints,
        }
    }

    /// The same core telling notices through the durable outbox `durable` (PostgreSQL).
    pub fn with_durable_notices(mut self, durable: crate::notify::outbox::Durable) -> Self {
        self.notifier = self.notifier.with_durable(durable);
        self
    }

    /// The same core with the second factor's store.
    pub fn with_mfa(mut self, mfa: PgMfaStore) -> Self {
        self.mfa = Some(mfa);
        self
    }

    /// The same core with the realm's social providers.
    pub fn with_social(mut self, social: super::social::Social) -> Self {
        self.social = Some(Arc::new(social));
        self
    }

    /// The realm's social providers, if it has any.
    pub fn social(&self) -> Option<&super::social::Social> {
        self.social.as_deref()
    }

    /// The second factor's store, when the database is PostgreSQL.
    pub fn mfa(&self) -> Option<&PgMfaStore> {
        self.mfa.as_ref()
    }

    /// The audit trail (verify and export for the admin API and the CLI).
    pub fn audit_log(&self) -> &AuditLog {
        &self.audit
    }

    /// Records a security event now (`crate::audit::record`): never fails the request.
    pub async fn audit(&self, event: Event, meta: Option<&RequestMeta>) {
        let _ = crate::audit::record(
            &self.audit,
            &self.metrics,
            self.random.uuid(),
            self.clock.now(),
            event,
            meta,
        )
        .await;
    }

    /// The password hashing pool's load now (for the gauges set at scrape).
    pub fn hashing_load(&self) -> crate::metrics::HashingLoad {
        self.hasher.load()
    }

    /// The realm's OAuth clients.
    pub fn clients(&self) -> &ClientRegistry {
        &self.clients
    }

    /// The realm's rate limiter.
    pub fn limits(&self) -> &Limiter {
        &self.limits
    }

    /// The per-client limit of a token-endpoint request, charged only once a confidential
    /// client has proven its secret: charged before, anyone who knows a client id (they are in
    /// every authorization URL) could hold the client's bucket at zero and stop every real user
    /// of the app. A public client proves nothing, so only the per-IP limits apply to it.
    pub async fn limit_client(
        &self,
        client: &super::oidc::clients::Client,
    ) -> Result<(), AuthError> {
        if !client.is_confidential() {
            return Ok(());
        }
        self.limits
            .check_subject(
                portcullis_crds::rate_limit::Route::Token,
                super::limits::Subject::Client(client.id()),
            )
            .await
    }

    pub(super) fn spec(&self) -> &AuthRealmSpec {
        &self.settings.spec
    }

    pub(super) fn issuer(&self) -> &str {
        &self.settings.spec.issuer
    }

    pub(super) fn access_ttl(&self) -> Duration {
        self.settings.spec.tokens.access_token_ttl.as_duration()
    }

    pub(super) fn lockout_rules(&self) -> LockoutRules {
        LockoutRules::from(&self.settings.spec.lockout)
    }

    /// The refusal of a locked identifier, naming the lockout policy for its headers.
    pub(super) fn locked(&self, retry_after_ms: u64) -> AuthError {
        let rules = self.lockout_rules();
        AuthError::AccountLocked {
            retry_after: Duration::from_millis(retry_after_ms),
            max_failures: rules.max_failures,
            window: rules.window,
        }
    }

    /// `now + duration`; an error instead of a panic past the end of the calendar.
    pub(super) fn later(
        &self,
        now: OffsetDateTime,
        duration: Duration,
    ) -> Result<OffsetDateTime, AuthError> {
        crate::clock::later(now, duration)
            .ok_or_else(|| AuthError::Internal(format!("{now} + {duration:?} is past year 9999")))
    }

    /// A place in the hashing pool; a refusal is counted.
    pub(super) fn reserve_hashing(&self) -> Result<Slot<'_>, AuthError> {
        self.hasher.reserve().inspect_err(|_| {
            self.metrics.hashing_refused.inc();
        })
    }

    /// Hashes a new password, timing it for the metric.
    pub(super) async fn hash_timed(&self, password: &str) -> Result<StoredHash, AuthError> {
        let slot = self.reserve_hashing()?;
        let watch = self.clock.stopwatch();
        let hash = self.hasher.hash(slot, password).await;
        self.metrics.password_hash_seconds.observe(watch.seconds());
        hash
    }

    /// Hands a mail to the outbox (delivered in the background), unless the address has had
    /// its share of mail (the limiter counts it): the mail is then dropped without a word, so
    /// no answer tells, and nobody can mail-bomb an address through reset or registration.
    /// Security notices (password changed, account locked) are never limited: a bucket that
    /// anonymous callers can drain must not let them silence the notice of a takeover.
    pub(super) async fn notify(&self, to: &str, mail: Mail) {
        self.notify_from(to, mail, None).await;
    }

    /// [`Self::notify`] for a mail a request from `source` asked for (the recovery limit is
    /// kept per requester).
    pub(super) async fn notify_from(&self, to: &str, mail: Mail, source: Option<IpAddr>) {
        if self.limits.allow_mail(to, mail.limit(), source).await {
            self.outbox.send(to, mail);
        }
    }

    /// Tells `user` a security notice through the notification seam (never waits for it).
    pub(super) async fn tell(&self, user: &UserRecord, notice: Notice) {
        self.notifier.enqueue(&Recipient::of(user), notice).await;
    }

    /// The notification seam (background tasks clone it).
    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    /// The caller's account, if it exists and is not disabled.
    pub(super) async fn active_user(&self, principal: &Principal) -> Result<UserRecord, AuthError> {
        match self.db.user_by_id(principal.user_id).await? {
            Some(user) if !user.disabled => Ok(user),
            _ => Err(AuthError::Unauthenticated),
        }
    }

    /// Ends every session and refresh-token family of a user except `keep` (a session id) and
    /// its families, and revokes their session ids so outstanding access tokens stop working.
    /// `offline_access` families end too, `keep`'s included (they outlive a logout, not a
    /// change of credentials), and their grants' access tokens with them.
    pub(super) async fn end_sessions(
        &self,
        user: Uuid,
        keep: Option<&str>,
    ) -> Result<(), AuthError> {
        let now = self.clock.now();
        let ttl = self.access_ttl();
        for family in self.db.revoke_offline_families(user, now).await? {
            self.kv.revoke_gid(&family.to_string(), ttl).await?;
        }
        for (id, _) in self.kv.user_sessions(user).await? {
            if Some(id.as_str()) != keep {
                self.kv.delete_session(user, &id).await?;
                self.kv.revoke_sid(&id, ttl).await?;
            }
        }
        for sid in self.db.revoke_user_refresh_tokens(user, keep, now).await? {
            self.kv.revoke_sid(&sid, ttl).await?;
        }
        Ok(())
    }
}

/// The stored hash of an account; `None` when it has no password (made by social sign-in).
pub(super) fn stored_hash(user: &UserRecord) -> Option<StoredHash> {
    user.password_hash.as_ref().map(|hash| StoredHash {
        hash: hash.clone(),
        pepper_version: user.pepper_version.clone(),
    })
}
