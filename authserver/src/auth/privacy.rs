//! Privacy (issue 13), over the crate `portcullis-privacy`: the realm's policy and its
//! acceptance (registration, the re-consent step of a sign-in, the consent page), per-purpose
//! grants and withdrawals, the data export, erasure and the key-value side of it.
//!
//! A realm "has a policy" when its `privacy` section names a `policyUrl` or any purpose; a
//! realm with neither asks for no acceptance at registration and never for re-consent (its
//! users keep no accepted version). The features need PostgreSQL: on the in-memory database
//! they answer `not_supported` and the re-consent gate is off.

use std::collections::BTreeMap;
use std::sync::Arc;

use portcullis_audit::{AuditLog, Details, Ident, PgAuditLog};
use portcullis_privacy::PrivacyError;
use portcullis_privacy::consent::{self, Consent, IpPrefix, Policy, Purpose, Source};
use portcullis_privacy::erasure::{
    self, ErasedAccount, ErasureRequest, FinishHook, HookFuture, KvFuture, KvSubject, RequestedBy,
};
use portcullis_privacy::export::{self, ExportDocument, ExportExtras, ExportedSession};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use super::core::Core;
use super::limits::Limiter;
use super::login::{LoginSuccess, finish};
use super::principal::{Principal, RequestMeta};
use super::{AuthError, Violation};
use crate::audit::{Actor, Event};
use crate::notify::outbox::Durable;
use crate::notify::{Notice, Recipient};
use crate::store::UserRecord;
use crate::store::kv::{Kv, PendingKind};

/// How long a sign-in waits for the user to accept the policy.
pub const CONSENT_LOGIN_TTL: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// The realm's privacy policy, as shown (`GET /api/v1/privacy-policy`).
#[derive(Clone, Debug, Serialize)]
pub struct PolicyView {
    /// The current version.
    pub version: String,
    /// Where the policy text is.
    pub url: Option<String>,
    /// The purposes users consent to.
    pub purposes: Vec<PurposeView>,
}

/// A purpose as shown.
#[derive(Clone, Debug, Serialize)]
pub struct PurposeView {
    /// Machine name.
    pub name: String,
    /// Whether the account needs it.
    pub required: bool,
    /// Text shown to users.
    pub description: String,
}

/// The realm's policy as shown to users.
pub fn policy_view(core: &Core) -> PolicyView {
    let spec = &core.spec().privacy;
    PolicyView {
        version: spec.policy_version.clone(),
        url: spec.policy_url.clone(),
        purposes: spec
            .purposes
            .iter()
            .map(|p| PurposeView {
                name: p.name.clone(),
                required: p.required,
                description: p.description.clone(),
            })
            .collect(),
    }
}

/// The realm's policy, when it has one (see the module doc).
pub fn policy(core: &Core) -> Option<Policy> {
    let spec = &core.spec().privacy;
    if spec.policy_url.is_none() && spec.purposes.is_empty() {
        return None;
    }
    Some(Policy {
        version: spec.policy_version.clone(),
        purposes: spec
            .purposes
            .iter()
            .map(|p| Purpose {
                name: p.name.clone(),
                required: p.required,
            })
            .collect(),
    })
}

/// The PostgreSQL pool and audit trail the crate works on.
fn pg(core: &Core) -> Result<(&PgPool, &PgAuditLog), AuthError> {
    match (core.db.postgres(), &core.audit) {
        (Some(pg), AuditLog::Postgres(audit)) => Ok((pg.pool(), audit)),
        _ => Err(AuthError::Unsupported("privacy on the in-memory database")),
    }
}

/// The client's network as the consent history keeps it.
fn ip_prefix(meta: &RequestMeta) -> Option<IpPrefix> {
    meta.ip.parse().ok().map(IpPrefix::of)
}

/// The domain's error for a crate error.
pub(super) fn privacy_error(error: PrivacyError) -> AuthError {
    match error {
        PrivacyError::UnknownPurpose { purpose } => AuthError::Validation(vec![Violation::new(
            "consents",
            "unknown_purpose",
            format!("no purpose {purpose:?} in the privacy policy"),
        )]),
        PrivacyError::PolicyVersionMismatch { current, .. } => {
            AuthError::Validation(vec![Violation::new(
                "policy_version",
                "policy_version_mismatch",
                format!("the current privacy policy is version {current}"),
            )])
        }
        PrivacyError::ConsentRequired { purpose } => AuthError::ConsentRequired { purpose },
        PrivacyError::UnknownUser(_) | PrivacyError::UnknownErasure(_) => AuthError::NotFound,
        PrivacyError::Invalid { .. } | PrivacyError::Malformed { .. } => {
            AuthError::Internal(error.to_string())
        }
        other => {
            tracing::error!(reason = other.reason(), error = %other, "privacy store failed");
            AuthError::Unavailable("database")
        }
    }
}

/// An acceptance's error: a required purpose not granted is a bad input (400), not a
/// refused withdrawal.
fn acceptance_error(error: PrivacyError) -> AuthError {
    match error {
        PrivacyError::ConsentRequired { purpose } => AuthError::Validation(vec![Violation::new(
            "consents",
            "consent_required",
            format!("consent to {purpose:?} is required"),
        )]),
        other => privacy_error(other),
    }
}

/// What a user accepts: the policy version they saw (the current one when not given) and
/// each purpose's choice.
#[derive(Clone, Debug, Default)]
pub struct Acceptance {
    /// The version shown.
    pub policy_version: Option<String>,
    /// Grant (`true`) or refusal per purpose.
    pub consents: BTreeMap<String, bool>,
}

/// Records a new account's acceptance (registration): the version, each choice and their
/// history. The choices were checked before the account was made.
pub(super) async fn accept_at_registration(
    core: &Core,
    user: Uuid,
    version: Option<&str>,
    consents: &BTreeMap<String, bool>,
    meta: &RequestMeta,
) -> Result<(), AuthError> {
    let (Some(policy), Some(pg)) = (policy(core), core.db.postgres()) else {
        return Ok(());
    };
    let version = version.unwrap_or(&policy.version);
    consent::accept_policy(
        pg.pool(),
        &policy,
        user,
        version,
        consents,
        Source::Registration,
        ip_prefix(meta),
        core.clock.now(),
    )
    .await
    .map_err(acceptance_error)
}

/// Whether `user` must accept the current policy before any token is issued.
pub(super) async fn consent_needed(core: &Core, user: Uuid) -> Result<bool, AuthError> {
    let (Some(policy), Some(pg)) = (policy(core), core.db.postgres()) else {
        return Ok(false);
    };
    let accepted = consent::accepted_version(pg.pool(), user)
        .await
        .map_err(privacy_error)?;
    Ok(consent::reconsent_needed(
        accepted.as_deref(),
        &policy.version,
    ))
}

/// A sign-in waiting for the policy's acceptance: what completing it issues.
#[derive(Debug, Serialize, Deserialize)]
struct PendingConsent {
    #[serde(flatten)]
    parked: Parked,
    amr: Vec<String>,
}

/// Who a parked sign-in is for.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Parked {
    /// An existing account, as read when its factors were checked.
    SignIn {
        user_id: Uuid,
        credential_epoch: i64,
    },
    /// A social sign-up: the account is made only once the policy is accepted, so nobody
    /// gets an account (and no personal data is kept) without the required consents.
    SignUp { sign_up: SocialSignUp },
}

/// The account a social sign-up makes on acceptance.
#[derive(Debug, Serialize, Deserialize)]
struct SocialSignUp {
    identity: portcullis_social::UpstreamIdentity,
    email: String,
}

/// Whether sign-ins must pass the policy gate in this realm: it has a policy and the
/// database to record acceptances.
pub(super) fn acceptance_required(core: &Core) -> bool {
    policy(core).is_some() && core.db.postgres().is_some()
}

/// Parks `parked` with factors `amr` until the policy is accepted; returns its
/// `consent_token` (short-lived, single use; only its SHA-256 is stored).
async fn park(core: &Core, parked: Parked, amr: &[&str]) -> Result<String, AuthError> {
    let token = core.random.token(32);
    let pending = PendingConsent {
        parked,
        amr: amr.iter().map(|&m| m.to_owned()).collect(),
    };
    let json = serde_json::to_string(&pending).map_err(|e| AuthError::Internal(e.to_string()))?;
    core.kv
        .put_pending(
            PendingKind::ConsentLogin,
            &super::mfa_login::digest(&token),
            &json,
            CONSENT_LOGIN_TTL,
        )
        .await?;
    Ok(token)
}

/// Parks a sign-in of `user` with factors `amr` until the policy is accepted; returns the
/// `consent_token`.
pub(super) async fn begin_consent(
    core: &Core,
    user: &UserRecord,
    amr: &[&str],
) -> Result<String, AuthError> {
    let parked = Parked::SignIn {
        user_id: user.id,
        credential_epoch: user.credential_epoch,
    };
    park(core, parked, amr).await
}

/// Parks the social sign-up of `identity` under `email` (factors `amr`) until the policy is
/// accepted; the account is made by [`complete_consent`]. Returns the `consent_token`.
pub(super) async fn begin_sign_up(
    core: &Core,
    identity: &portcullis_social::UpstreamIdentity,
    email: &str,
    amr: &[&str],
) -> Result<String, AuthError> {
    let parked = Parked::SignUp {
        sign_up: SocialSignUp {
            identity: identity.clone(),
            email: email.to_owned(),
        },
    };
    park(core, parked, amr).await
}

/// Whether `token` names a sign-in waiting for consent (the hosted page checks before
/// showing the form).
pub async fn consent_pending(core: &Core, token: &str) -> Result<bool, AuthError> {
    Ok(core
        .kv
        .pending(PendingKind::ConsentLogin, &super::mfa_login::digest(token))
        .await?
        .is_some())
}

/// Completes a sign-in parked by [`begin_consent`]: records the acceptance and issues what
/// the sign-in would have (same factors, under the credential epoch it was checked with).
/// A bad acceptance leaves the token usable; a used, expired or outdated one is refused.
pub async fn complete_consent(
    core: &Core,
    token: &str,
    acceptance: &Acceptance,
    meta: &RequestMeta,
    previous_session: Option<&str>,
) -> Result<LoginSuccess, AuthError> {
    let (pool, _) = pg(core)?;
    let digest = super::mfa_login::digest(token);
    let pending: PendingConsent = core
        .kv
        .pending(PendingKind::ConsentLogin, &digest)
        .await?
        .and_then(|json| serde_json::from_str(&json).ok())
        .ok_or(AuthError::InvalidToken)?;
    let Some(policy) = policy(core) else {
        return Err(AuthError::InvalidToken);
    };
    let version = acceptance
        .policy_version
        .clone()
        .unwrap_or_else(|| policy.version.clone());
    consent::check_acceptance(&policy, &version, &acceptance.consents).map_err(acceptance_error)?;
    // Single use: of two completions at once, one goes on.
    if core
        .kv
        .take_pending(PendingKind::ConsentLogin, &digest)
        .await?
        .is_none()
    {
        return Err(AuthError::InvalidToken);
    }
    let (user, source) = match pending.parked {
        Parked::SignIn {
            user_id,
            credential_epoch,
        } => {
            let user = core
                .db
                .user_by_id(user_id)
                .await?
                .filter(|u| !u.disabled && u.credential_epoch == credential_epoch)
                .ok_or(AuthError::InvalidToken)?;
            (user, Source::ConsentPrompt)
        }
        Parked::SignUp { sign_up } => {
            let user =
                super::social::complete_sign_up(core, &sign_up.identity, &sign_up.email, meta)
                    .await?;
            (user, Source::Registration)
        }
    };
    let accepted = consent::accept_policy(
        pool,
        &policy,
        user.id,
        &version,
        &acceptance.consents,
        source,
        ip_prefix(meta),
        core.clock.now(),
    )
    .await;
    if let Err(error) = accepted {
        if source == Source::Registration {
            // No account without its acceptance.
            super::registration::undo_account(core, user.id, meta).await;
        }
        return Err(acceptance_error(error));
    }
    core.audit(
        Event::success("policy_accepted").by_user(user.id),
        Some(meta),
    )
    .await;
    let amr: Vec<&str> = pending.amr.iter().map(String::as_str).collect();
    finish(core, &user, meta, previous_session, &amr).await
}

/// The signed-in caller accepts the current policy (the hosted consent page an authorization
/// with an existing session is sent to).
pub async fn accept_for_session(
    core: &Core,
    principal: &Principal,
    acceptance: &Acceptance,
    meta: &RequestMeta,
) -> Result<(), AuthError> {
    let (pool, _) = pg(core)?;
    let user = core.active_user(principal).await?;
    let Some(policy) = policy(core) else {
        return Ok(());
    };
    let version = acceptance
        .policy_version
        .clone()
        .unwrap_or_else(|| policy.version.clone());
    consent::accept_policy(
        pool,
        &policy,
        user.id,
        &version,
        &acceptance.consents,
        Source::ConsentPrompt,
        ip_prefix(meta),
        core.clock.now(),
    )
    .await
    .map_err(acceptance_error)?;
    core.audit(
        Event::success("policy_accepted").by_user(user.id),
        Some(meta),
    )
    .await;
    Ok(())
}

/// Whether the signed-in caller must accept the current policy first.
pub async fn session_needs_consent(core: &Core, principal: &Principal) -> Result<bool, AuthError> {
    consent_needed(core, principal.user_id).await
}

/// The caller's current answers.
pub async fn my_consents(core: &Core, principal: &Principal) -> Result<Vec<Consent>, AuthError> {
    let (pool, _) = pg(core)?;
    let user = core.active_user(principal).await?;
    consent::current(pool, user.id).await.map_err(privacy_error)
}

/// The caller grants or withdraws `purpose` (a required one cannot be withdrawn: 409
/// `consent_required`); recorded with its history row and audited.
pub async fn change_consent(
    core: &Core,
    principal: &Principal,
    purpose: &str,
    granted: bool,
    policy_version: &str,
    source: Source,
    meta: &RequestMeta,
) -> Result<Consent, AuthError> {
    let (pool, _) = pg(core)?;
    let user = core.active_user(principal).await?;
    let policy = policy(core).ok_or_else(|| {
        AuthError::Validation(vec![Violation::new(
            "purpose",
            "unknown_purpose",
            "the realm's privacy policy has no purposes",
        )])
    })?;
    let change = consent::ConsentChange {
        user: user.id,
        purpose: purpose.to_owned(),
        granted,
        policy_version: policy_version.to_owned(),
        source,
        ip_prefix: ip_prefix(meta),
    };
    let result = consent::record_change(pool, &policy, &change, core.clock.now()).await;
    let mut details = Details::new().bool("granted", granted);
    if let Some(id) = Ident::parse(purpose) {
        details = details.id("purpose", id);
    }
    match result {
        Ok(consent) => {
            core.audit(
                Event::success("consent_changed")
                    .by_user(user.id)
                    .details(details),
                Some(meta),
            )
            .await;
            Ok(consent)
        }
        Err(error) => {
            if matches!(error, PrivacyError::ConsentRequired { .. }) {
                core.audit(
                    Event::failure("consent_changed")
                        .by_user(user.id)
                        .details(details.code("reason", "consent_required")),
                    Some(meta),
                )
                .await;
            }
            Err(privacy_error(error))
        }
    }
}

/// Every stored datum about the caller (the crate's document, with the live sessions from the
/// key-value store); audited.
pub async fn export(
    core: &Core,
    principal: &Principal,
    meta: &RequestMeta,
) -> Result<ExportDocument, AuthError> {
    let (pool, audit) = pg(core)?;
    let user = core.active_user(principal).await?;
    let mut sessions: Vec<ExportedSession> = core
        .kv
        .user_sessions(user.id)
        .await?
        .into_iter()
        .map(|(id, s)| ExportedSession {
            id,
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            expires_at: s.absolute_expires_at,
            ip: s.ip,
            user_agent: s.user_agent,
        })
        .collect();
    sessions.sort_by_key(|s| std::cmp::Reverse(s.created_at));
    // Audited first, so the export shows its own request too.
    core.audit(Event::success("data_exported").by_user(user.id), Some(meta))
        .await;
    export::export_user(
        pool,
        audit,
        user.id,
        ExportExtras { sessions },
        core.clock.now(),
    )
    .await
    .map_err(privacy_error)
}

/// The key-value side of an erasure, over the server's store and rate limiter.
pub struct ServerKvEraser {
    kv: Kv,
    limits: Arc<Limiter>,
}

impl ServerKvEraser {
    /// The eraser of `core`'s stores.
    pub fn of(core: &Core) -> Self {
        Self {
            kv: core.kv.clone(),
            limits: core.limits.clone(),
        }
    }
}

impl erasure::KvEraser for ServerKvEraser {
    fn erase<'a>(&'a self, subject: KvSubject<'a>) -> KvFuture<'a> {
        Box::pin(async move {
            self.kv
                .erase_user(subject.user_id, subject.email_canonical)
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            if let Some(email) = subject.email_canonical {
                self.limits
                    .forget_subject(email, subject.user_id)
                    .await
                    .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            }
            Ok(())
        })
    }
}

/// The key-value side of erasures outside the server (the CLI's retention run): the
/// account's keys in the realm's store, without the rate limiter (its buckets refill and
/// expire by themselves).
pub struct KvOnlyEraser {
    kv: Kv,
}

impl KvOnlyEraser {
    /// The eraser of `kv`.
    pub fn new(kv: Kv) -> Self {
        Self { kv }
    }
}

impl erasure::KvEraser for KvOnlyEraser {
    fn erase<'a>(&'a self, subject: KvSubject<'a>) -> KvFuture<'a> {
        Box::pin(async move {
            self.kv
                .erase_user(subject.user_id, subject.email_canonical)
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        })
    }
}

/// Enqueues the `account.erased` notice in the deletion's transaction.
pub struct ErasedNotice {
    sink: Option<NoticeSink>,
    enabled: bool,
}

/// Where the notice's rows go.
enum NoticeSink {
    /// The server's durable outbox (its worker is woken).
    Durable(Durable),
    /// The outbox table directly (the CLI's retention run: the server's worker delivers).
    Rows {
        webhook: bool,
        clock: crate::clock::Clock,
    },
}

impl ErasedNotice {
    /// The hook of `core`'s notifier (nothing is written without the durable outbox, or when
    /// the realm does not notify erasures).
    pub fn of(core: &Core) -> Self {
        Self {
            sink: core.notifier().durable().cloned().map(NoticeSink::Durable),
            enabled: core.notifier().notifies(&Notice::ErasureDone),
        }
    }

    /// The hook of a process without the server's notifier (the CLI's retention run): rows
    /// written to the outbox table for the server's worker, as the realm's `notifications`
    /// section asks.
    pub fn for_realm(
        spec: &portcullis_crds::realm::AuthRealmSpec,
        clock: crate::clock::Clock,
    ) -> Self {
        let events = spec.notifications.as_ref().map(|n| n.events.clone());
        Self {
            sink: Some(NoticeSink::Rows {
                webhook: spec
                    .notifications
                    .as_ref()
                    .is_some_and(|n| n.webhook.is_some()),
                clock,
            }),
            enabled: crate::notify::enabled(
                events.as_deref(),
                portcullis_crds::realm::NotificationEvent::Erasure,
            ),
        }
    }
}

impl FinishHook for ErasedNotice {
    fn run<'a>(&'a self, conn: &'a mut PgConnection, account: ErasedAccount<'a>) -> HookFuture<'a> {
        Box::pin(async move {
            let Some(sink) = self.sink.as_ref().filter(|_| self.enabled) else {
                return Ok(());
            };
            let to = Recipient {
                user_id: account.user_id,
                email: account.email.to_owned(),
            };
            match sink {
                NoticeSink::Durable(durable) => durable
                    .enqueue_in(conn, &to, &Notice::ErasureDone)
                    .await
                    .map_err(Box::<dyn std::error::Error + Send + Sync>::from),
                NoticeSink::Rows { webhook, clock } => {
                    let rows = crate::notify::outbox::rows(
                        &to,
                        &Notice::ErasureDone,
                        true,
                        *webhook,
                        clock.now(),
                    );
                    for row in rows {
                        let row = row
                            .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
                        portcullis_notify::Outbox::enqueue(&mut *conn, &row)
                            .await
                            .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
                    }
                    Ok(())
                }
            }
        })
    }
}

/// The caller asks for their erasure: password (for an account without one, a recent
/// sign-in) and a fresh second factor when TOTP is on (on the second factor's lockout)
/// checked, then as [`start_erasure`].
pub async fn erase_me(
    core: &Core,
    principal: &Principal,
    meta: &RequestMeta,
    password: &str,
    code: Option<&str>,
) -> Result<ErasureRequest, AuthError> {
    pg(core)?;
    let user = core.active_user(principal).await?;
    super::account::reauthenticate(core, principal, &user, meta, password).await?;
    if let Some(store) = core.mfa.as_ref()
        && store
            .status(user.id)
            .await
            .map_err(super::mfa::store_error)?
            .enrolled
    {
        let code = code.filter(|c| !c.trim().is_empty()).ok_or_else(|| {
            AuthError::Validation(vec![Violation::new(
                "code",
                "required",
                "a code from the authenticator (or a recovery code) is required",
            )])
        })?;
        super::mfa::fresh_second_factor(core, store, &user, meta, code).await?;
    }
    start_erasure(core, user.id, RequestedBy::User, meta).await
}

/// An administrator asks for the erasure of `user`; a request that fails (no such account, a
/// store down) is audited too.
pub async fn admin_erase(
    core: &Core,
    user: Uuid,
    meta: &RequestMeta,
) -> Result<ErasureRequest, AuthError> {
    pg(core)?;
    let requested = start_erasure(core, user, RequestedBy::Admin, meta).await;
    if let Err(error) = &requested {
        let reason = match error {
            AuthError::NotFound => "not_found",
            AuthError::Unavailable(_) | AuthError::Busy => "unavailable",
            _ => "failed",
        };
        // `about` the id even when it names no account: the erasure's pseudonymisation
        // reaches it there, never in the details.
        let event = Event::failure("erasure_requested")
            .by(Actor::Admin)
            .about(user)
            .details(
                Details::new()
                    .code("requested_by", RequestedBy::Admin.as_str())
                    .code("reason", reason),
            );
        core.audit(event, Some(meta)).await;
    }
    requested
}

/// Records the erasure request (the account disabled, its credential epoch raised, its
/// refresh families revoked), ends every session and outstanding access token at once, and
/// with no grace period executes it. Answers the request (pending) or the receipt.
async fn start_erasure(
    core: &Core,
    user: Uuid,
    by: RequestedBy,
    meta: &RequestMeta,
) -> Result<ErasureRequest, AuthError> {
    let (pool, audit) = pg(core)?;
    let now = core.clock.now();
    let grace = core.spec().privacy.erasure_grace_period.as_duration();
    // Sessions and tokens first: their ids are revoked while the families are still listed
    // as live, so access tokens already out stop at once too.
    core.end_sessions(user, None).await?;
    let requested = erasure::request(pool, user, by, grace, now)
        .await
        .map_err(privacy_error)?;
    core.end_sessions(user, None).await?;
    let event = Event::success("erasure_requested").about(user).details(
        Details::new()
            .code("requested_by", by.as_str())
            .bool("created", requested.created),
    );
    let event = match by {
        RequestedBy::User => event.by_user(user),
        RequestedBy::Admin => event.by(Actor::Admin),
    };
    core.audit(event, Some(meta)).await;
    if requested.request.effective_at > now {
        return Ok(requested.request);
    }
    execute(core, pool, audit, &requested.request, now).await
}

/// Executes a due erasure with the server's key-value eraser and `account.erased` hook.
async fn execute(
    core: &Core,
    pool: &PgPool,
    audit: &PgAuditLog,
    request: &ErasureRequest,
    now: OffsetDateTime,
) -> Result<ErasureRequest, AuthError> {
    let kv = ServerKvEraser::of(core);
    let hook = ErasedNotice::of(core);
    match erasure::execute(pool, audit, request, &kv, Some(&hook), now).await {
        Ok(receipt) => Ok(receipt),
        // The key-value step failed: done all the same when it was the second pass (the keys
        // left live until their TTL), else still pending for the next retention run.
        Err(PrivacyError::KvErase(error)) => {
            let stored = erasure::get(pool, request.id)
                .await
                .map_err(privacy_error)?;
            if stored.done {
                tracing::error!(erasure_id = %request.id, %error, "erasure done; its second key-value pass failed");
            } else {
                tracing::error!(erasure_id = %request.id, %error, "erasure not executed yet: its key-value step failed");
            }
            Ok(stored)
        }
        Err(error) => {
            // The request stays pending; the next retention run executes it.
            tracing::error!(erasure_id = %request.id, reason = error.reason(), %error, "erasure not executed yet");
            Ok(request.clone())
        }
    }
}

/// The crate's retention rules of the realm's RetentionPolicy.
pub fn retention_rules(
    rules: &portcullis_crds::retention::RetentionRules,
) -> portcullis_privacy::retention::Rules {
    use portcullis_crds::retention::AuditLogAction;
    use portcullis_privacy::retention::{AuditAction, Rules};
    Rules {
        audit_retain_for: rules.audit_logs.retain_for.as_duration(),
        audit_action: match rules.audit_logs.action {
            AuditLogAction::Delete => AuditAction::Delete,
            AuditLogAction::Pseudonymize => AuditAction::Pseudonymize,
        },
        withdrawn_consents_retain_for: rules.withdrawn_consents.retain_for.as_duration(),
    }
}
