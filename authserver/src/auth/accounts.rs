//! The account service: registration, verification, login with lockout, sessions, password
//! change and reset, refresh-token rotation, and the admin operations on accounts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use portcullis_crds::RealmSettings;
use time::OffsetDateTime;
use uuid::Uuid;

use super::breach::{self, BreachChecker, BreachVerdict};
use super::hashing::{PasswordHasher, StoredHash};
use super::identifier::canonical_email;
use super::lockout::{AttemptDecision, LockoutRules};
use super::sessions::{self, SessionRecord};
use super::tokens::{self, KeyRing};
use super::{AuthError, Violation, csrf, password};
use crate::clock::Clock;
use crate::mail::{Mail, Mailer};
use crate::metrics::Metrics;
use crate::store::StoreError;
use crate::store::kv::Kv;
use crate::store::postgres::{Db, NewRefreshToken, NewUser, RotateOutcome, TokenPurpose, UserRow};

/// Email verification tokens live 24 hours.
const VERIFY_TTL: Duration = Duration::from_secs(24 * 3_600);
/// Password reset tokens live 30 minutes.
const RESET_TTL: Duration = Duration::from_secs(30 * 60);
/// Sessions are written back at most this often when only `last_seen_at` changes.
const TOUCH_INTERVAL: Duration = Duration::from_secs(60);
/// Scope of tokens issued to the realm's own API.
const API_SCOPE: &str = "openid profile email";

/// Who is asking: the client address (after trusted-proxy handling) and user agent.
#[derive(Clone, Debug, Default)]
pub struct RequestMeta {
    /// Client IP.
    pub ip: String,
    /// User agent, truncated.
    pub user_agent: String,
}

/// How a request authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    /// The session cookie (state changes then need CSRF proof).
    Cookie,
    /// A bearer access token.
    Bearer,
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Principal {
    /// The user.
    pub user_id: Uuid,
    /// Public id of the session (cookie) or the token's `sid`.
    pub session_id: String,
    /// How they authenticated.
    pub method: AuthMethod,
}

/// A registration request.
#[derive(Clone, Debug, Default)]
pub struct Registration {
    /// Email.
    pub email: String,
    /// Password as typed.
    pub password: String,
    /// Optional display name.
    pub display_name: Option<String>,
    /// Consents by purpose.
    pub consents: BTreeMap<String, bool>,
    /// The privacy policy version the user saw.
    pub policy_version: Option<String>,
}

/// The outcome of a registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Registered {
    /// Verification mail sent (or a notice to the owner of a taken address).
    VerificationPending,
    /// Account created (verification off).
    Created(Uuid),
}

/// Tokens and session from a successful login.
#[derive(Clone, Debug)]
pub struct LoginSuccess {
    /// The user.
    pub user_id: Uuid,
    /// JWT access token.
    pub access_token: String,
    /// Opaque refresh token.
    pub refresh_token: String,
    /// Access token lifetime in seconds.
    pub expires_in: u64,
    /// The new session's secret (cookie value).
    pub session_secret: String,
    /// The new session's public id.
    pub session_id: String,
    /// CSRF token of the new session.
    pub csrf_token: String,
}

/// Tokens from a refresh grant.
#[derive(Clone, Debug)]
pub struct Refreshed {
    /// JWT access token.
    pub access_token: String,
    /// The successor refresh token.
    pub refresh_token: String,
    /// Lifetime in seconds.
    pub expires_in: u64,
    /// Granted scope.
    pub scope: String,
}

/// What `GET /api/v1/me` shows.
#[derive(Clone, Debug)]
pub struct Profile {
    /// The user row.
    pub user: UserRow,
}

/// One session in the session list.
#[derive(Clone, Debug)]
pub struct SessionView {
    /// Public id.
    pub id: String,
    /// The record.
    pub record: SessionRecord,
    /// Whether it is the caller's own.
    pub current: bool,
}

/// Everything the service needs, built once at start.
pub struct AuthService {
    /// The realm.
    pub settings: Arc<RealmSettings>,
    /// Database.
    pub db: Db,
    /// Sessions and counters.
    pub kv: Kv,
    /// Password hashing pool.
    pub hasher: Arc<PasswordHasher>,
    /// Breach source.
    pub breach: BreachChecker,
    /// Signing keys.
    pub keys: KeyRing,
    /// Mail.
    pub mailer: Mailer,
    /// Clock.
    pub clock: Clock,
    /// Key for CSRF tokens.
    pub cookie_key: Vec<u8>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

impl std::fmt::Debug for AuthService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthService")
            .field("realm", &self.settings.name)
            .finish_non_exhaustive()
    }
}

fn secs(d: Duration) -> u64 {
    d.as_secs()
}

fn now_ms(now: OffsetDateTime) -> u64 {
    u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

impl AuthService {
    fn lockout_rules(&self) -> LockoutRules {
        LockoutRules::from(&self.settings.spec.lockout)
    }

    fn issuer(&self) -> &str {
        &self.settings.spec.issuer
    }

    fn access_ttl(&self) -> Duration {
        self.settings.spec.tokens.access_token_ttl.as_duration()
    }

    /// Sends a mail without failing the request: delivery problems are logged and counted.
    async fn notify(&self, to: &str, mail: Mail) {
        if let Err(error) = self.mailer.send(to, &mail).await {
            self.metrics.mail_failures.inc();
            tracing::error!(error = %error, "mail delivery failed");
        }
    }

    /// Every rule a new password breaks, the breach check included (run only when the local
    /// rules pass, to spare the breach API).
    async fn check_new_password(
        &self,
        field: &'static str,
        password: &str,
        email: &str,
        display_name: Option<&str>,
    ) -> Vec<Violation> {
        let mut inputs = vec![email];
        if let Some((local, _)) = email.split_once('@') {
            inputs.push(local);
        }
        if let Some(name) = display_name {
            inputs.push(name);
        }
        let policy = &self.settings.spec.password_policy;
        let mut violations = password::check(field, password, policy, &inputs);
        if violations.is_empty() {
            let verdict = self.breach.check(password).await;
            if let BreachVerdict::Unavailable(reason) = &verdict {
                self.metrics.breach_check_failures.inc();
                tracing::warn!(reason = %reason, policy = ?policy.breach_check.failure_policy, "breach check unavailable");
            }
            violations.extend(breach::decide(
                field,
                &verdict,
                policy.breach_check.failure_policy,
            ));
        }
        violations
    }

    async fn hash_timed(&self, password: &str) -> Result<StoredHash, AuthError> {
        let started = std::time::Instant::now();
        let hash = self.hasher.hash(password).await;
        self.metrics
            .password_hash_seconds
            .observe(started.elapsed().as_secs_f64());
        hash
    }

    /// Registers an account. With email verification on, the answer is the same whether or not
    /// the address is taken (its owner gets a notice instead), and both paths hash once.
    pub async fn register(&self, input: Registration) -> Result<Registered, AuthError> {
        let mut violations = Vec::new();
        let email = canonical_email("email", &input.email)
            .map_err(|v| violations.push(v))
            .ok();
        let display_name = input
            .display_name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty());
        if display_name.is_some_and(|n| n.chars().count() > 100 || n.chars().any(char::is_control))
        {
            violations.push(Violation::new(
                "display_name",
                "invalid_display_name",
                "at most 100 characters, no control characters",
            ));
        }
        let privacy = &self.settings.spec.privacy;
        match input.policy_version.as_deref() {
            Some(v) if v == privacy.policy_version => {}
            Some(_) => violations.push(Violation::new(
                "policy_version",
                "policy_version_mismatch",
                format!(
                    "the current privacy policy is version {}",
                    privacy.policy_version
                ),
            )),
            None => violations.push(Violation::new(
                "policy_version",
                "required",
                "accept the privacy policy version",
            )),
        }
        for purpose in &privacy.purposes {
            if purpose.required && input.consents.get(&purpose.name) != Some(&true) {
                violations.push(Violation::new(
                    "consents",
                    "consent_required",
                    format!("consent to {:?} is required", purpose.name),
                ));
            }
        }
        for name in input.consents.keys() {
            if !privacy.purposes.iter().any(|p| &p.name == name) {
                violations.push(Violation::new(
                    "consents",
                    "unknown_purpose",
                    format!("no purpose {name:?}"),
                ));
            }
        }
        let password = password::normalize(&input.password);
        let email_for_check = email.clone().unwrap_or_default();
        if violations.is_empty() {
            violations = self
                .check_new_password("password", &password, &email_for_check, display_name)
                .await;
        } else {
            let policy = &self.settings.spec.password_policy;
            violations.extend(password::check(
                "password",
                &password,
                policy,
                &[&email_for_check],
            ));
        }
        let Some(email) = email.filter(|_| violations.is_empty()) else {
            return Err(AuthError::Validation(violations));
        };

        let hash = self.hash_timed(&password).await?;
        let now = self.clock.now();
        let verification = self.settings.spec.email_verification.required;
        let id = Uuid::new_v4();
        let inserted = self
            .db
            .insert_user(&NewUser {
                id,
                email: input.email.trim(),
                email_canonical: &email,
                display_name,
                password_hash: &hash.hash,
                pepper_version: &hash.pepper_version,
                email_verified: !verification,
                now,
            })
            .await;
        match inserted {
            Ok(()) => {}
            Err(StoreError::Duplicate(_)) if verification => {
                self.notify(&email, Mail::AlreadyRegistered).await;
                tracing::info!(target: "audit", event = "register_duplicate", "registration for a taken address");
                return Ok(Registered::VerificationPending);
            }
            Err(StoreError::Duplicate(_)) => return Err(AuthError::EmailTaken),
            Err(e) => return Err(e.into()),
        }
        let consents: Vec<(String, bool)> = input.consents.into_iter().collect();
        self.db
            .upsert_consents(id, &consents, &privacy.policy_version, now)
            .await?;
        tracing::info!(target: "audit", event = "register", user_id = %id, "account registered");
        if !verification {
            return Ok(Registered::Created(id));
        }
        let token = crate::secrets::random_token(32);
        self.db
            .insert_one_time_token(
                &tokens::hash_opaque(&token),
                id,
                TokenPurpose::VerifyEmail,
                now,
                now + VERIFY_TTL,
            )
            .await?;
        self.notify(&email, Mail::VerifyEmail { token }).await;
        Ok(Registered::VerificationPending)
    }

    /// Verifies an email address with a mailed token (single use, 24 hours).
    pub async fn verify_email(&self, token: &str) -> Result<(), AuthError> {
        let now = self.clock.now();
        let user = self
            .db
            .consume_one_time_token(&tokens::hash_opaque(token), TokenPurpose::VerifyEmail, now)
            .await?
            .ok_or(AuthError::InvalidToken)?;
        self.db.set_email_verified(user, now).await?;
        tracing::info!(target: "audit", event = "email_verified", user_id = %user, "email verified");
        Ok(())
    }

    /// Mails a reset token when the account exists; says nothing either way.
    pub async fn request_password_reset(&self, email: &str) -> Result<(), AuthError> {
        let Ok(email) = canonical_email("email", email) else {
            return Ok(());
        };
        let Some(user) = self.db.user_by_email(&email).await? else {
            return Ok(());
        };
        if user.disabled {
            return Ok(());
        }
        let now = self.clock.now();
        let token = crate::secrets::random_token(32);
        self.db
            .insert_one_time_token(
                &tokens::hash_opaque(&token),
                user.id,
                TokenPurpose::PasswordReset,
                now,
                now + RESET_TTL,
            )
            .await?;
        self.notify(&user.email_canonical, Mail::PasswordReset { token })
            .await;
        tracing::info!(target: "audit", event = "password_reset_requested", user_id = %user.id, "password reset mailed");
        Ok(())
    }

    /// Sets a new password with a reset token; every session and refresh token ends. A
    /// refused password leaves the token usable.
    pub async fn confirm_password_reset(
        &self,
        token: &str,
        new_password: &str,
    ) -> Result<(), AuthError> {
        let password = password::normalize(new_password);
        let now = self.clock.now();
        let hash = tokens::hash_opaque(token);
        let user_id = self
            .db
            .peek_one_time_token(&hash, TokenPurpose::PasswordReset, now)
            .await?
            .ok_or(AuthError::InvalidToken)?;
        let user = self
            .db
            .user_by_id(user_id)
            .await?
            .ok_or(AuthError::InvalidToken)?;
        let violations = self
            .check_new_password(
                "new_password",
                &password,
                &user.email,
                user.display_name.as_deref(),
            )
            .await;
        if !violations.is_empty() {
            return Err(AuthError::Validation(violations));
        }
        // Single use is decided here, atomically: of two concurrent resets one wins.
        if self
            .db
            .consume_one_time_token(&hash, TokenPurpose::PasswordReset, now)
            .await?
            != Some(user.id)
        {
            return Err(AuthError::InvalidToken);
        }
        let stored = self.hash_timed(&password).await?;
        self.db
            .set_password(user.id, &stored.hash, &stored.pepper_version, now)
            .await?;
        self.db.set_email_verified(user.id, now).await?;
        self.db
            .void_one_time_tokens(user.id, TokenPurpose::PasswordReset, now)
            .await?;
        self.end_sessions(user.id, None).await?;
        self.kv.clear_attempts(&user.email_canonical).await?;
        self.notify(&user.email_canonical, Mail::PasswordChanged)
            .await;
        tracing::info!(target: "audit", event = "password_reset", user_id = %user.id, "password reset");
        Ok(())
    }

    /// Ends every session and refresh-token family of a user except `keep` (a session id).
    async fn end_sessions(&self, user: Uuid, keep: Option<&str>) -> Result<(), AuthError> {
        let now = self.clock.now();
        let ttl = self.access_ttl();
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

    /// Logs in. Attempts are counted per canonical identifier whether or not the account
    /// exists, atomically, so parallel guesses get no more than `maxFailures` tries; unknown
    /// accounts cost one bcrypt run like known ones; the locked answer is the same for both.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        meta: &RequestMeta,
        previous_session: Option<&str>,
    ) -> Result<LoginSuccess, AuthError> {
        let identifier = canonical_email("email", email).map_err(|_| {
            self.metrics.login_failed("invalid_credentials");
            AuthError::InvalidCredentials
        })?;
        let rules = self.lockout_rules();
        let previous_failures = match self
            .kv
            .begin_attempt(&identifier, now_ms(self.clock.now()), &rules)
            .await?
        {
            AttemptDecision::Locked { retry_after } => {
                self.metrics.login_failed("locked");
                return Err(AuthError::AccountLocked { retry_after });
            }
            AttemptDecision::Allowed { attempt } => attempt.saturating_sub(1),
        };
        let delay = rules.delay(previous_failures);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let password = password::normalize(password);
        let user = self.db.user_by_email(&identifier).await?;
        let stored = user.as_ref().map(|u| StoredHash {
            hash: u.password_hash.clone(),
            pepper_version: u.pepper_version.clone(),
        });
        let started = std::time::Instant::now();
        let verified = self.hasher.verify(&password, stored.as_ref()).await?;
        self.metrics
            .password_hash_seconds
            .observe(started.elapsed().as_secs_f64());
        let user = match user {
            Some(user) if verified.ok => user,
            _ => {
                self.metrics.login_failed("invalid_credentials");
                tracing::info!(target: "audit", event = "login_failed", ip = %meta.ip, "login failed");
                if let Some(lock) = self
                    .kv
                    .fail_attempt(&identifier, now_ms(self.clock.now()), &rules)
                    .await?
                {
                    self.metrics.lockouts.inc();
                    tracing::warn!(target: "audit", event = "lockout", ip = %meta.ip, seconds = lock.as_secs(), "identifier locked");
                    if let Some(user) = self.db.user_by_email(&identifier).await?
                        && self.settings.spec.lockout.notify_user
                    {
                        self.notify(
                            &user.email_canonical,
                            Mail::AccountLocked {
                                minutes: lock.as_secs().div_ceil(60),
                            },
                        )
                        .await;
                    }
                }
                return Err(AuthError::InvalidCredentials);
            }
        };
        // The password was right: whatever else stops this login, it is not a guess and must
        // not count towards a lockout.
        let refusal = if user.disabled {
            Some(("disabled", AuthError::AccountDisabled))
        } else if self.settings.spec.email_verification.required && !user.email_verified {
            Some(("email_not_verified", AuthError::EmailNotVerified))
        } else {
            None
        };
        if let Some((reason, error)) = refusal {
            self.kv.clear_attempts(&identifier).await?;
            self.metrics.login_failed(reason);
            return Err(error);
        }
        let now = self.clock.now();
        if verified.needs_upgrade {
            let upgraded = self.hash_timed(&password).await?;
            self.db
                .set_password(user.id, &upgraded.hash, &upgraded.pepper_version, now)
                .await?;
            tracing::info!(target: "audit", event = "password_hash_upgraded", user_id = %user.id, "password hash upgraded");
        }
        // Session fixation: a session presented at login is replaced, never reused.
        if let Some(old) = previous_session {
            let old_id = sessions::public_id(old);
            if let Some(record) = self.kv.session(&old_id).await? {
                self.kv.delete_session(record.user_id, &old_id).await?;
            }
        }
        let (cleared, success) = tokio::join!(
            self.kv.clear_attempts(&identifier),
            self.start_session(&user, meta, now)
        );
        cleared?;
        let success = success?;
        self.metrics.login_successes.inc();
        tracing::info!(target: "audit", event = "login", user_id = %user.id, ip = %meta.ip, "login succeeded");
        Ok(success)
    }

    async fn start_session(
        &self,
        user: &UserRow,
        meta: &RequestMeta,
        now: OffsetDateTime,
    ) -> Result<LoginSuccess, AuthError> {
        let spec = &self.settings.spec;
        let idle = spec.sessions.idle_timeout.as_duration();
        let (secret, session_id) = sessions::new_session_secret();
        let record = SessionRecord {
            user_id: user.id,
            created_at: now,
            last_seen_at: now,
            absolute_expires_at: now + spec.sessions.absolute_timeout.as_duration(),
            ip: meta.ip.clone(),
            user_agent: meta.user_agent.chars().take(256).collect(),
        };
        self.kv
            .put_session(&session_id, &record, record.ttl(now, idle))
            .await?;
        let issuer = self.issuer();
        let claims = tokens::access_claims(
            issuer,
            issuer,
            user.id,
            &session_id,
            None,
            API_SCOPE,
            now,
            self.access_ttl(),
        );
        let access_token = self.keys.sign("at+jwt", &claims)?;
        let (refresh_token, refresh_hash) = tokens::new_refresh_token();
        self.db
            .insert_refresh_token(&NewRefreshToken {
                token_hash: &refresh_hash,
                family_id: Uuid::new_v4(),
                user_id: user.id,
                session_id: &session_id,
                client_id: None,
                issued_at: now,
                expires_at: now + spec.tokens.refresh_idle_ttl.as_duration(),
                family_expires_at: now + spec.tokens.refresh_token_ttl.as_duration(),
            })
            .await?;
        Ok(LoginSuccess {
            user_id: user.id,
            access_token,
            refresh_token,
            expires_in: secs(self.access_ttl()),
            csrf_token: csrf::token(&self.cookie_key, &session_id),
            session_secret: secret,
            session_id,
        })
    }

    /// Authenticates a session cookie: unknown or timed-out sessions fail; live ones are
    /// touched (at most once a minute).
    pub async fn authenticate_session(&self, secret: &str) -> Result<Principal, AuthError> {
        let id = sessions::public_id(secret);
        let mut record = self
            .kv
            .session(&id)
            .await?
            .ok_or(AuthError::Unauthenticated)?;
        let now = self.clock.now();
        let idle = self.settings.spec.sessions.idle_timeout.as_duration();
        if record.is_expired(now, idle) {
            self.kv.delete_session(record.user_id, &id).await?;
            return Err(AuthError::Unauthenticated);
        }
        if now - record.last_seen_at >= TOUCH_INTERVAL {
            record.last_seen_at = now;
            self.kv
                .put_session(&id, &record, record.ttl(now, idle))
                .await?;
        }
        Ok(Principal {
            user_id: record.user_id,
            session_id: id,
            method: AuthMethod::Cookie,
        })
    }

    /// Authenticates a bearer access token: signature, issuer, audience, expiry, and that its
    /// session was not revoked (logout, password change).
    pub async fn authenticate_bearer(&self, token: &str) -> Result<Principal, AuthError> {
        let issuer = self.issuer();
        let claims = self
            .keys
            .verify_access(token, issuer, issuer, self.clock.now())?;
        if self.kv.is_sid_revoked(&claims.sid).await? {
            return Err(AuthError::Unauthenticated);
        }
        let user_id = claims.sub.parse().map_err(|_| AuthError::Unauthenticated)?;
        Ok(Principal {
            user_id,
            session_id: claims.sid,
            method: AuthMethod::Bearer,
        })
    }

    /// The CSRF token of a session.
    pub fn csrf_token(&self, session_id: &str) -> String {
        csrf::token(&self.cookie_key, session_id)
    }

    /// Whether a CSRF token belongs to the session.
    pub fn verify_csrf(&self, session_id: &str, candidate: &str) -> bool {
        csrf::verify(&self.cookie_key, session_id, candidate)
    }

    async fn active_user(&self, principal: &Principal) -> Result<UserRow, AuthError> {
        match self.db.user_by_id(principal.user_id).await? {
            Some(user) if !user.disabled => Ok(user),
            _ => Err(AuthError::Unauthenticated),
        }
    }

    /// The caller's profile.
    pub async fn profile(&self, principal: &Principal) -> Result<Profile, AuthError> {
        Ok(Profile {
            user: self.active_user(principal).await?,
        })
    }

    /// Ends the caller's session and its refresh-token family.
    pub async fn logout(&self, principal: &Principal) -> Result<(), AuthError> {
        let now = self.clock.now();
        self.kv
            .delete_session(principal.user_id, &principal.session_id)
            .await?;
        self.kv
            .revoke_sid(&principal.session_id, self.access_ttl())
            .await?;
        self.db
            .revoke_refresh_by_session(&principal.session_id, now)
            .await?;
        tracing::info!(target: "audit", event = "logout", user_id = %principal.user_id, "logged out");
        Ok(())
    }

    /// Changes the password; every other session and refresh token ends.
    pub async fn change_password(
        &self,
        principal: &Principal,
        current: &str,
        new: &str,
    ) -> Result<(), AuthError> {
        let user = self.active_user(principal).await?;
        let identifier = user.email_canonical.clone();
        let rules = self.lockout_rules();
        if let AttemptDecision::Locked { retry_after } = self
            .kv
            .begin_attempt(&identifier, now_ms(self.clock.now()), &rules)
            .await?
        {
            return Err(AuthError::AccountLocked { retry_after });
        }
        let stored = StoredHash {
            hash: user.password_hash.clone(),
            pepper_version: user.pepper_version.clone(),
        };
        let current = password::normalize(current);
        if !self.hasher.verify(&current, Some(&stored)).await?.ok {
            if self
                .kv
                .fail_attempt(&identifier, now_ms(self.clock.now()), &rules)
                .await?
                .is_some()
            {
                self.metrics.lockouts.inc();
            }
            return Err(AuthError::InvalidCredentials);
        }
        self.kv.clear_attempts(&identifier).await?;
        let new = password::normalize(new);
        let mut violations = self
            .check_new_password(
                "new_password",
                &new,
                &user.email,
                user.display_name.as_deref(),
            )
            .await;
        if new == current {
            violations.push(Violation::new(
                "new_password",
                "password_unchanged",
                "choose a password different from the current one",
            ));
        }
        if !violations.is_empty() {
            return Err(AuthError::Validation(violations));
        }
        let now = self.clock.now();
        let hash = self.hash_timed(&new).await?;
        self.db
            .set_password(user.id, &hash.hash, &hash.pepper_version, now)
            .await?;
        self.db
            .void_one_time_tokens(user.id, TokenPurpose::PasswordReset, now)
            .await?;
        self.end_sessions(user.id, Some(&principal.session_id))
            .await?;
        self.notify(&user.email_canonical, Mail::PasswordChanged)
            .await;
        tracing::info!(target: "audit", event = "password_changed", user_id = %user.id, "password changed");
        Ok(())
    }

    /// The caller's live sessions, newest first.
    pub async fn sessions(&self, principal: &Principal) -> Result<Vec<SessionView>, AuthError> {
        let now = self.clock.now();
        let idle = self.settings.spec.sessions.idle_timeout.as_duration();
        let mut list: Vec<SessionView> = self
            .kv
            .user_sessions(principal.user_id)
            .await?
            .into_iter()
            .filter(|(_, record)| !record.is_expired(now, idle))
            .map(|(id, record)| SessionView {
                current: id == principal.session_id,
                id,
                record,
            })
            .collect();
        list.sort_by_key(|s| std::cmp::Reverse(s.record.created_at));
        Ok(list)
    }

    /// Revokes one of the caller's sessions.
    pub async fn revoke_session(&self, principal: &Principal, id: &str) -> Result<(), AuthError> {
        let owned = self
            .kv
            .session(id)
            .await?
            .is_some_and(|r| r.user_id == principal.user_id);
        if !owned {
            return Err(AuthError::NotFound);
        }
        let now = self.clock.now();
        self.kv.delete_session(principal.user_id, id).await?;
        self.kv.revoke_sid(id, self.access_ttl()).await?;
        self.db.revoke_refresh_by_session(id, now).await?;
        tracing::info!(target: "audit", event = "session_revoked", user_id = %principal.user_id, "session revoked");
        Ok(())
    }

    /// The refresh-token grant: rotates the token; a reused token revokes its family and the
    /// session that started it.
    pub async fn refresh(
        &self,
        presented: &str,
        client_id: Option<&str>,
    ) -> Result<Refreshed, AuthError> {
        let now = self.clock.now();
        let spec = &self.settings.spec;
        let (successor, successor_hash) = tokens::new_refresh_token();
        let outcome = self
            .db
            .rotate_refresh_token(
                &tokens::hash_opaque(presented),
                &successor_hash,
                now,
                now + spec.tokens.refresh_idle_ttl.as_duration(),
            )
            .await?;
        match outcome {
            RotateOutcome::Rotated {
                user_id,
                session_id,
                client_id: family_client,
            } => {
                if client_id.is_some() && client_id != family_client.as_deref() {
                    return Err(AuthError::InvalidGrant(
                        "the refresh token was not issued to this client",
                    ));
                }
                let user = self.db.user_by_id(user_id).await?.filter(|u| !u.disabled);
                if user.is_none() {
                    return Err(AuthError::InvalidGrant("the account is disabled or gone"));
                }
                let issuer = self.issuer();
                let claims = tokens::access_claims(
                    issuer,
                    issuer,
                    user_id,
                    &session_id,
                    family_client.as_deref(),
                    API_SCOPE,
                    now,
                    self.access_ttl(),
                );
                Ok(Refreshed {
                    access_token: self.keys.sign("at+jwt", &claims)?,
                    refresh_token: successor,
                    expires_in: secs(self.access_ttl()),
                    scope: API_SCOPE.to_owned(),
                })
            }
            RotateOutcome::Reused { session_id } => {
                self.metrics.refresh_reuse.inc();
                self.kv.revoke_sid(&session_id, self.access_ttl()).await?;
                if let Some(record) = self.kv.session(&session_id).await? {
                    self.kv.delete_session(record.user_id, &session_id).await?;
                }
                tracing::warn!(target: "audit", event = "refresh_token_reuse", "refresh token reused; family revoked");
                Err(AuthError::InvalidGrant(
                    "refresh token reuse detected; the token family is revoked",
                ))
            }
            RotateOutcome::Invalid => {
                Err(AuthError::InvalidGrant("invalid or expired refresh token"))
            }
        }
    }

    /// Admin: a user by email.
    pub async fn find_user(&self, email: &str) -> Result<Option<UserRow>, AuthError> {
        let Ok(email) = canonical_email("email", email) else {
            return Ok(None);
        };
        Ok(self.db.user_by_email(&email).await?)
    }

    /// Admin: clears a user's failures and lock.
    pub async fn unlock(&self, user: Uuid) -> Result<(), AuthError> {
        let user = self.db.user_by_id(user).await?.ok_or(AuthError::NotFound)?;
        let identifier = user.email_canonical.clone();
        self.kv.clear_attempts(&identifier).await?;
        tracing::info!(target: "audit", event = "admin_unlock", user_id = %user.id, "account unlocked by an admin");
        Ok(())
    }

    /// Admin: disables an account and ends its sessions.
    pub async fn disable(&self, user: Uuid) -> Result<(), AuthError> {
        if !self.db.set_disabled(user, true, self.clock.now()).await? {
            return Err(AuthError::NotFound);
        }
        self.end_sessions(user, None).await?;
        tracing::info!(target: "audit", event = "admin_disable", user_id = %user, "account disabled by an admin");
        Ok(())
    }
}
