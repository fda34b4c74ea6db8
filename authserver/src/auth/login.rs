//! Login with lockout and progressive delay, and the session and tokens it starts.

use crate::audit::Event;
use portcullis_audit::Details;
use uuid::Uuid;

use portcullis_crds::rate_limit::Route;

use super::breach::{self, BreachChecker, BreachVerdict};
use super::core::{API_SCOPE, Core, stored_hash};
use super::identifier::canonical_email;
use super::limits::{Subject, lockout_source};
use super::oidc::discovery::acr_for;
use super::principal::RequestMeta;
use super::tokens::{self, Grant};
use super::{AuthError, csrf, password, sessions};
use crate::metrics::GrantKind;
use crate::metrics::{BreachContext, BreachResult};
use crate::notify::device::{self, Novelty};
use crate::notify::{Notice, Recipient};
use crate::store::DeviceKind;
use crate::store::kv::StuffingProbe;
use crate::store::kv::{Attempt, SessionRecord};
use crate::store::{FamilyGrant, NewFamily, UserRecord};

/// The RFC 8176 authentication method of a password login.
pub const PASSWORD_AMR: &str = "pwd";

/// What a right password leads to.
pub enum LoginOutcome {
    /// Signed in: session and tokens.
    Signed(LoginSuccess),
    /// The account has a second factor: nothing is issued until
    /// [`complete`](super::mfa_login::complete) gets it with this token.
    MfaRequired {
        /// The pending login's token (short-lived, single use).
        mfa_token: String,
    },
    /// The realm requires a second factor the account does not have yet: nothing is issued
    /// until it is enrolled through the pending login this token names.
    MfaEnrolmentRequired {
        /// The pending login's token.
        mfa_token: String,
    },
    /// The realm's privacy policy changed since the user accepted it: nothing is issued until
    /// [`complete_consent`](super::privacy::complete_consent) gets the acceptance with this
    /// token.
    ConsentRequired {
        /// The pending sign-in's token (short-lived, single use).
        consent_token: String,
    },
}

/// Tokens and session from a successful login.
#[derive(Clone)]
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
    /// A new device cookie value to set (the request carried none).
    pub device_cookie: Option<String>,
}

impl std::fmt::Debug for LoginSuccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginSuccess")
            .field("user_id", &self.user_id)
            .field("session_id", &self.session_id)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for LoginOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The mfa token is a credential: never printed.
        match self {
            LoginOutcome::Signed(success) => f.debug_tuple("Signed").field(success).finish(),
            LoginOutcome::MfaRequired { .. } => f.write_str("MfaRequired"),
            LoginOutcome::MfaEnrolmentRequired { .. } => f.write_str("MfaEnrolmentRequired"),
            LoginOutcome::ConsentRequired { .. } => f.write_str("ConsentRequired"),
        }
    }
}

/// Logs in. Attempts are counted per canonical identifier whether or not the account exists,
/// atomically, so parallel guesses get no more than `maxFailures` tries; unknown accounts cost
/// one bcrypt run like known ones; the locked answer is the same for both. A session presented
/// at login is replaced, never reused (session fixation).
///
/// An account with a second factor (or one the realm requires) gets no session here: a
/// pending login waits for it, and the lockout count is kept until it is given, so wrong
/// codes after a right password still lock.
pub async fn login(
    core: &Core,
    email: &str,
    password: &str,
    meta: &RequestMeta,
    previous_session: Option<&str>,
) -> Result<LoginOutcome, AuthError> {
    let identifier = canonical_email("email", email).map_err(|_| {
        core.metrics.login_failed("invalid_credentials");
        AuthError::InvalidCredentials
    })?;
    // Before hashing and before counting the attempt: neither a rate-limit refusal nor one for
    // load may count towards a lockout. The identifier is limited whether or not it exists.
    core.limits
        .check_subject(
            Route::Login,
            Subject::Identifier(&identifier, meta.ip.parse().ok()),
        )
        .await?;
    let slot = core.reserve_hashing()?;
    let rules = core.lockout_rules();
    let limits = rules.limits();
    // The per-address lock counts the source the limits count (an IPv6 /56, the IPv4 a
    // mapped, 6to4 or NAT64 address carries): per raw address, rotating the low bits of a
    // prefix would buy a fresh `maxFailures`, and another lock notice, with every guess.
    let source = lockout_source(&meta.ip);
    let previous_failures = match core
        .kv
        .begin_attempt(&identifier, &source, core.clock.now_ms(), &limits)
        .await?
    {
        Attempt::Locked { retry_after_ms } => {
            core.metrics.login_failed("locked");
            return Err(core.locked(retry_after_ms));
        }
        Attempt::Allowed { number } => number.saturating_sub(1),
    };
    let delay = rules.delay(previous_failures);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let password = password::normalize(password);
    let user = core.db.user_by_email(&identifier).await?;
    let stored = user.as_ref().and_then(stored_hash);
    let watch = core.clock.stopwatch();
    let verified = core.hasher.verify(slot, &password, stored.as_ref()).await?;
    core.metrics.password_hash_seconds.observe(watch.seconds());
    let user = match user {
        // An account without a password (made by social sign-in) is verified against the
        // dummy hash for the timing, and never signed in by it: the dummy's input is no secret.
        Some(user) if verified.ok && user.password_hash.is_some() => user,
        _ => {
            core.metrics.login_failed("invalid_credentials");
            core.audit(
                Event::failure("login_failed")
                    .details(Details::new().code("reason", "invalid_credentials")),
                Some(meta),
            )
            .await;
            // The address as the rate limits key it (an IPv6 /64 is one source).
            let source_bucket = meta
                .ip
                .parse()
                .map_or_else(|_| meta.ip.clone(), portcullis_ratelimit::keys::ip_bucket);
            let probe = StuffingProbe {
                source_bucket: &source_bucket,
                threshold: core
                    .spec()
                    .monitoring
                    .alert_thresholds
                    .credential_stuffing_identifiers_per_ip,
            };
            let failure = core
                .kv
                .fail_login(
                    &identifier,
                    &source,
                    core.clock.now_ms(),
                    &limits,
                    Some(probe),
                )
                .await?;
            if failure.first_failure {
                core.metrics.login_failed_identifiers.inc();
            }
            if failure.stuffing_crossed {
                core.metrics.credential_stuffing_sources.inc();
                tracing::warn!(
                    threshold = probe.threshold,
                    "many distinct identifiers failing from one address"
                );
                core.audit(
                    Event::failure("credential_stuffing_source")
                        .details(Details::new().int("threshold", i64::from(probe.threshold))),
                    Some(meta),
                )
                .await;
            }
            if let Some(lock_ms) = failure.lock_ms {
                core.metrics.lockouts.inc();
                core.audit(
                    Event::failure("lockout").details(Details::new().int(
                        "seconds",
                        i64::try_from(lock_ms / 1_000).unwrap_or(i64::MAX),
                    )),
                    Some(meta),
                )
                .await;
                if let Some(user) = core.db.user_by_email(&identifier).await?
                    && core.spec().lockout.notify_user
                {
                    let minutes = lock_ms.div_ceil(60_000);
                    core.tell(&user, Notice::AccountLocked { minutes }).await;
                }
            }
            return Err(AuthError::InvalidCredentials);
        }
    };
    // The password was right: whatever else stops this login, it is not a guess and must not
    // count towards a lockout.
    let refusal = if user.disabled {
        Some(("disabled", AuthError::AccountDisabled))
    } else if core.spec().email_verification.required && !user.email_verified {
        Some(("email_not_verified", AuthError::EmailNotVerified))
    } else {
        None
    };
    if let Some((reason, error)) = refusal {
        core.kv.clear_attempts(&identifier).await?;
        core.metrics.login_failed(reason);
        return Err(error);
    }
    let now = core.clock.now();
    if verified.needs_upgrade {
        // Best effort: under load the upgrade waits for a later login.
        match core.hash_timed(&password).await {
            Ok(upgraded) => {
                core.db
                    .upgrade_password_hash(user.id, &upgraded.hash, &upgraded.pepper_version, now)
                    .await?;
                core.audit(
                    Event::success("password_hash_upgraded").by_user(user.id),
                    Some(meta),
                )
                .await;
            }
            Err(AuthError::Busy) => {}
            Err(other) => return Err(other),
        }
    }
    // Decided here, at password time, and failing closed: a store that cannot say whether
    // the account has a second factor issues nothing.
    if let Some(stage) = super::mfa_login::required(core, &user).await? {
        let mfa_token =
            super::mfa_login::begin(core, &user, stage, super::mfa_login::FirstFactor::Password)
                .await?;
        core.audit(
            Event::success("login_mfa_pending").by_user(user.id),
            Some(meta),
        )
        .await;
        check_breach_in_background(core, &user, &password, meta);
        return Ok(match stage {
            super::mfa_login::Stage::Verify => LoginOutcome::MfaRequired { mfa_token },
            super::mfa_login::Stage::Enrol => LoginOutcome::MfaEnrolmentRequired { mfa_token },
        });
    }
    let outcome = conclude(core, &user, meta, previous_session, &[PASSWORD_AMR]).await?;
    check_breach_in_background(core, &user, &password, meta);
    Ok(outcome)
}

/// The end of every sign-in whose factors are all checked (`amr`), whatever its kind: the
/// privacy-policy gate, then [`finish`]. A user who has not accepted the realm's current
/// policy gets no session and no token, but a `consent_token` that keeps this sign-in (its
/// factors and the credential epoch `user` was read with) until the acceptance arrives.
pub(crate) async fn conclude(
    core: &Core,
    user: &UserRecord,
    meta: &RequestMeta,
    previous_session: Option<&str>,
    amr: &[&str],
) -> Result<LoginOutcome, AuthError> {
    if super::privacy::consent_needed(core, user.id).await? {
        // The factors were right: the password's failure count goes now, as a session would.
        core.kv.clear_attempts(&user.email_canonical).await?;
        let consent_token = super::privacy::begin_consent(core, user, amr).await?;
        core.audit(
            Event::success("login_consent_pending").by_user(user.id),
            Some(meta),
        )
        .await;
        return Ok(LoginOutcome::ConsentRequired { consent_token });
    }
    Ok(LoginOutcome::Signed(
        finish(core, user, meta, previous_session, amr).await?,
    ))
}

/// The end of every successful sign-in, whatever its factors (`amr`): the presented session
/// replaced, the lockout count cleared, a session with tokens under the credential epoch
/// `user` was read with (refused when it moved meanwhile), the login recorded, audited and
/// its device recognised.
pub(super) async fn finish(
    core: &Core,
    user: &UserRecord,
    meta: &RequestMeta,
    previous_session: Option<&str>,
    amr: &[&str],
) -> Result<LoginSuccess, AuthError> {
    let now = core.clock.now();
    if let Some(old) = previous_session {
        let old_id = sessions::public_id(old);
        if let Some(record) = core.kv.session(&old_id).await? {
            core.kv.delete_session(record.user_id, &old_id).await?;
        }
    }
    let (cleared, success) = tokio::join!(
        core.kv.clear_attempts(&user.email_canonical),
        start_session(core, user, meta, now, amr)
    );
    cleared?;
    let Some(mut success) = success? else {
        // The password was reset or changed, or the account disabled, while this login was
        // checking the old credentials: it gets nothing.
        core.metrics.login_failed("credentials_changed");
        return Err(AuthError::InvalidCredentials);
    };
    core.db.record_login(user.id, now).await?;
    core.metrics.login_successes.inc();
    core.metrics.token_issued(GrantKind::Login);
    core.audit(Event::success("login").by_user(user.id), Some(meta))
        .await;
    success.device_cookie = recognise_device(core, user, meta, now).await;
    Ok(success)
}

/// Recognises the device of a successful sign-in (its device cookie, else its user agent and
/// network), remembers it, and tells the owner when the account had known devices and this
/// is not one of them; the first sign-in ever tells nothing. Best effort: a failure is logged
/// and the sign-in goes on. Returns a device cookie value to set when the request had none.
async fn recognise_device(
    core: &Core,
    user: &UserRecord,
    meta: &RequestMeta,
    now: time::OffsetDateTime,
) -> Option<String> {
    let key = &core.csrf_key;
    let presented = meta
        .device
        .as_deref()
        .map(|v| device::cookie_digest(key, user.id, v));
    let issued = meta.device.is_none().then(|| core.random.token(32));
    let cookie = presented.or_else(|| {
        issued
            .as_deref()
            .map(|v| device::cookie_digest(key, user.id, v))
    });
    let fingerprint = device::fingerprint_digest(key, user.id, &meta.user_agent, &meta.ip);
    let known = match core.db.known_devices(user.id).await {
        Ok(known) => known,
        Err(error) => {
            tracing::error!(%error, "known devices unreadable; no new-device check");
            return issued;
        }
    };
    let novelty = device::novelty(&known, presented.as_ref(), &fingerprint);
    if novelty == Novelty::New {
        core.audit(
            Event::success("login_new_device").by_user(user.id),
            Some(meta),
        )
        .await;
        core.tell(
            user,
            Notice::NewDeviceLogin {
                // An unknown cookie was presented (a browser), else the user agent and network
                // were new (an API client, or a browser without its cookie yet).
                device: if meta.device.is_some() {
                    portcullis_webhook::DeviceKind::Cookie
                } else {
                    portcullis_webhook::DeviceKind::Fingerprint
                },
                user_agent: meta.user_agent.clone(),
                ip: meta.ip.clone(),
                at: now,
            },
        )
        .await;
    }
    // Remembered only once told: a crash before this point reports the device again next
    // time rather than never.
    let mut seen = vec![(fingerprint, DeviceKind::Fingerprint)];
    seen.extend(cookie.map(|c| (c, DeviceKind::Cookie)));
    if let Err(error) = core
        .db
        .remember_devices(user.id, &seen, now, device::MAX_DEVICES)
        .await
    {
        tracing::error!(%error, "device not remembered");
    }
    issued
}

/// After a successful sign-in, looks the password up in the breach corpus in the background
/// (the sign-in never waits for it; only its SHA-1 leaves this function). A breached password
/// is audited (`password_breach_detected`) and its owner told, once per credential epoch.
/// At most [`BREACH_CHECKS_IN_FLIGHT`](crate::auth::core::BREACH_CHECKS_IN_FLIGHT) run at
/// once; a login beyond that is not checked (counted `skipped`).
fn check_breach_in_background(core: &Core, user: &UserRecord, password: &str, meta: &RequestMeta) {
    if matches!(core.breach, BreachChecker::Disabled) {
        return;
    }
    let Ok(slot) = core.breach_slots.clone().try_acquire_owned() else {
        core.metrics
            .breach_checked(BreachContext::Login, BreachResult::Skipped);
        return;
    };
    let hash = breach::sha1_hex(password);
    let watch = BreachWatch {
        breach: core.breach.clone(),
        db: core.db.clone(),
        metrics: core.metrics.clone(),
        audit: core.audit.clone(),
        notifier: core.notifier().clone(),
        clock: core.clock.clone(),
        random: core.random.clone(),
        recipient: Recipient::of(user),
        epoch: user.credential_epoch,
        meta: meta.clone(),
    };
    tokio::spawn(async move {
        watch.run(&hash).await;
        drop(slot);
    });
}

/// What a background breach check needs, owned.
struct BreachWatch {
    breach: BreachChecker,
    db: crate::store::Db,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    audit: portcullis_audit::AuditLog,
    notifier: crate::notify::Notifier,
    clock: crate::clock::Clock,
    random: crate::random::Random,
    recipient: Recipient,
    epoch: i64,
    meta: RequestMeta,
}

impl BreachWatch {
    async fn run(self, hash: &str) {
        let user = self.recipient.user_id;
        // Once told for this password, no answer can change anything: not looked up again.
        if self
            .db
            .breach_noticed(user, self.epoch)
            .await
            .unwrap_or(false)
        {
            self.metrics
                .breach_checked(BreachContext::Login, BreachResult::Skipped);
            return;
        }
        let verdict = self.breach.check_sha1(hash).await;
        let result = match &verdict {
            BreachVerdict::Clean => BreachResult::Clean,
            BreachVerdict::Breached { .. } => BreachResult::Breached,
            BreachVerdict::Unavailable(reason) => {
                tracing::warn!(%reason, "breach check at login unavailable");
                BreachResult::Error
            }
        };
        self.metrics.breach_checked(BreachContext::Login, result);
        if result != BreachResult::Breached {
            return;
        }
        // Told first, marked after: a crash or failed write in between tells twice rather
        // than never. (Two replicas checking one password at the same moment may both tell.)
        crate::audit::record(
            &self.audit,
            &self.metrics,
            self.random.uuid(),
            self.clock.now(),
            Event::failure("password_breach_detected")
                .by_user(user)
                .details(Details::new().code("context", "login")),
            Some(&self.meta),
        )
        .await;
        let told = self
            .notifier
            .enqueue(&self.recipient, Notice::PasswordBreached)
            .await;
        // A notice that could not be written is tried again at the next login.
        if !told && self.notifier.notifies(&Notice::PasswordBreached) {
            return;
        }
        if let Err(error) = self.db.mark_breach_noticed(user, self.epoch).await {
            tracing::error!(%error, "breach notice sent but not recorded; may be sent again");
        }
    }
}

/// A new session, access token and refresh-token family for `user`, all under the credential
/// epoch `user` was read with; `None` (and no session) when the epoch moved on meanwhile. The
/// session is stored before the family is started, so whatever ends sessions after the epoch
/// moved finds it.
async fn start_session(
    core: &Core,
    user: &UserRecord,
    meta: &RequestMeta,
    now: time::OffsetDateTime,
    amr: &[&str],
) -> Result<Option<LoginSuccess>, AuthError> {
    let acr = acr_for(amr);
    let amr: Vec<String> = amr.iter().map(|m| (*m).to_owned()).collect();
    let spec = core.spec();
    let idle = spec.sessions.idle_timeout.as_duration();
    let (secret, session_id) = sessions::new_session_secret(&core.random);
    let record = SessionRecord {
        user_id: user.id,
        created_at: now,
        last_seen_at: now,
        absolute_expires_at: core.later(now, spec.sessions.absolute_timeout.as_duration())?,
        ip: meta.ip.clone(),
        user_agent: meta.user_agent.chars().take(256).collect(),
        credential_epoch: user.credential_epoch,
        amr: amr.clone(),
        acr: Some(acr.to_owned()),
    };
    core.kv
        .put_session(&session_id, &record, sessions::ttl(&record, now, idle))
        .await?;
    let family_id = core.random.uuid();
    let gid = family_id.to_string();
    let grant = Grant {
        user: user.id,
        sid: &session_id,
        gid: Some(&gid),
        client_id: None,
        scope: API_SCOPE,
    };
    let mut claims = tokens::access_claims(
        core.issuer(),
        core.issuer(),
        &grant,
        now,
        core.access_ttl(),
        core.random.uuid(),
    );
    // RFC 9068 §2.2.3.1: how the user authenticated (`pwd`, and `otp` after a second factor).
    claims.amr.clone_from(&amr);
    let access_token = core.keys.sign("at+jwt", &claims)?;
    let (refresh_token, refresh_hash) = tokens::new_refresh_token(&core.random);
    let started = core
        .db
        .start_refresh_family(&NewFamily {
            family_id,
            user_id: user.id,
            session_id: &session_id,
            client_id: None,
            credential_epoch: user.credential_epoch,
            token_hash: &refresh_hash,
            issued_at: now,
            token_expires_at: core.later(now, spec.tokens.refresh_idle_ttl.as_duration())?,
            expires_at: core.later(now, spec.tokens.refresh_token_ttl.as_duration())?,
            grant: FamilyGrant {
                scope: API_SCOPE.to_owned(),
                auth_time: Some(now),
                amr,
                acr: Some(acr.to_owned()),
                offline: false,
            },
        })
        .await?;
    if !started {
        core.kv.delete_session(user.id, &session_id).await?;
        return Ok(None);
    }
    Ok(Some(LoginSuccess {
        user_id: user.id,
        access_token,
        refresh_token,
        expires_in: core.access_ttl().as_secs(),
        csrf_token: csrf::token(&core.csrf_key, &session_id),
        device_cookie: None,
        session_secret: secret,
        session_id,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::testing::{OTHER_PASSWORD, PASSWORD, fixture, login, meta, registered};
    use crate::mail::Mail;

    #[tokio::test]
    async fn the_right_password_starts_a_session_with_tokens() {
        let f = fixture(|_| {});
        let user = registered(&f, "alice@example.com").await;
        let success = login(&f.core, "Alice@Example.com", PASSWORD, &meta(), None)
            .await
            .unwrap();
        assert_eq!(success.user_id, user);
        assert_eq!(success.expires_in, 600);
        assert!(sessions::is_well_formed(&success.session_secret));
        assert_eq!(
            sessions::public_id(&success.session_secret),
            success.session_id
        );
        assert!(f.session_lives(&success.session_id).await);
    }

    #[tokio::test]
    async fn a_wrong_password_and_an_unknown_account_fail_alike_with_one_bcrypt_run_each() {
        let f = fixture(|_| {});
        registered(&f, "alice@example.com").await;
        for email in ["alice@example.com", "nobody@example.com"] {
            let before = f.core.hasher.verifications();
            let failed = login(&f.core, email, OTHER_PASSWORD, &meta(), None).await;
            assert!(
                matches!(failed, Err(AuthError::InvalidCredentials)),
                "{email}"
            );
            assert_eq!(f.core.hasher.verifications(), before + 1, "{email}");
        }
    }

    #[tokio::test]
    async fn five_failures_lock_even_the_right_password_until_the_lock_ends() {
        let f = fixture(|_| {});
        registered(&f, "alice@example.com").await;
        for _ in 0..5 {
            let _ = login(&f.core, "alice@example.com", OTHER_PASSWORD, &meta(), None).await;
        }
        let locked = login(&f.core, "alice@example.com", PASSWORD, &meta(), None).await;
        let Err(AuthError::AccountLocked { retry_after, .. }) = locked else {
            panic!("not locked: {locked:?}");
        };
        assert_eq!(retry_after.as_secs(), 60);
        assert!(
            f.mails()
                .iter()
                .any(|m| matches!(m.mail, Mail::AccountLocked { minutes: 1 }))
        );
        f.clock.advance(retry_after);
        assert!(
            login(&f.core, "alice@example.com", PASSWORD, &meta(), None)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn failures_from_another_address_leave_the_owner_in() {
        let f = fixture(|_| {});
        registered(&f, "alice@example.com").await;
        let attacker = RequestMeta {
            ip: "203.0.113.66".into(),
            ..meta()
        };
        for _ in 0..5 {
            let _ = login(
                &f.core,
                "alice@example.com",
                OTHER_PASSWORD,
                &attacker,
                None,
            )
            .await;
        }
        let locked = login(&f.core, "alice@example.com", PASSWORD, &attacker, None).await;
        assert!(matches!(locked, Err(AuthError::AccountLocked { .. })));
        assert!(
            login(&f.core, "alice@example.com", PASSWORD, &meta(), None)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn the_locked_answer_is_the_same_for_known_and_unknown_identifiers() {
        let f = fixture(|_| {});
        registered(&f, "alice@example.com").await;
        let mut answers = Vec::new();
        for email in ["alice@example.com", "nobody@example.com"] {
            for _ in 0..5 {
                let _ = login(&f.core, email, OTHER_PASSWORD, &meta(), None).await;
            }
            answers.push(format!(
                "{:?}",
                login(&f.core, email, PASSWORD, &meta(), None).await
            ));
        }
        assert_eq!(answers[0], answers[1]);
    }

    #[tokio::test]
    async fn a_login_records_when_it_happened() {
        let f = fixture(|_| {});
        let id = registered(&f, "alice@example.com").await;
        login(&f.core, "alice@example.com", PASSWORD, &meta(), None)
            .await
            .unwrap();
        let user = f.core.db.user_by_id(id).await.unwrap().unwrap();
        assert_eq!(user.last_login_at, Some(f.clock.now()));
    }

    #[tokio::test]
    async fn a_session_started_under_an_old_credential_epoch_is_not_kept() {
        let f = fixture(|_| {});
        let id = registered(&f, "alice@example.com").await;
        let stale = f.core.db.user_by_id(id).await.unwrap().unwrap();
        // What a reset does while this login is between reading the account and starting the
        // session.
        f.core
            .db
            .replace_password(
                id,
                stale.password_hash.as_deref().unwrap(),
                &stale.pepper_version,
                f.clock.now(),
            )
            .await
            .unwrap();
        let started = start_session(&f.core, &stale, &meta(), f.clock.now(), &[PASSWORD_AMR])
            .await
            .unwrap();
        assert!(started.is_none());
        assert!(f.core.kv.user_sessions(id).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_presented_session_is_replaced_not_reused() {
        let f = fixture(|_| {});
        registered(&f, "alice@example.com").await;
        let first = login(&f.core, "alice@example.com", PASSWORD, &meta(), None)
            .await
            .unwrap();
        let second = login(
            &f.core,
            "alice@example.com",
            PASSWORD,
            &meta(),
            Some(&first.session_secret),
        )
        .await
        .unwrap();
        assert_ne!(first.session_id, second.session_id);
        assert!(!f.session_lives(&first.session_id).await);
    }

    #[tokio::test]
    async fn an_unverified_or_disabled_account_is_refused_without_counting_a_failure() {
        let f = fixture(|s| s.email_verification.required = true);
        registered(&f, "alice@example.com").await;
        for _ in 0..6 {
            let refused = login(&f.core, "alice@example.com", PASSWORD, &meta(), None).await;
            assert!(
                matches!(refused, Err(AuthError::EmailNotVerified)),
                "{refused:?}"
            );
        }
    }
}
