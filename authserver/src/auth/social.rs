//! Social sign-in (issue 12): the realm's `socialProviders` over the `portcullis-social`
//! crate. A browser starts at `/oauth2/social/{name}/start`, comes back to
//! `/oauth2/social/{name}/callback`, and either signs in (through the account's second factor
//! and every check a password sign-in has), gets a new account, or links the identity to the
//! account it signed in with.
//!
//! What the crate leaves to the server, done here:
//! - the pending sign-in is kept server-side under the SHA-256 of a random id that only the
//!   browser's `__Host-` cookie carries, and taken with one atomic get-and-delete *before* the
//!   code exchange, so a replayed callback finds nothing;
//! - the provider is chosen by the callback's path, never by the stored record (mix-up);
//! - links are looked up by (issuer, subject); an account by the identity's `link_email`,
//!   which must also be what the server's own canonicalisation makes of it;
//! - an account with a second factor is never linked by email: its owner signs in as usual and
//!   links the provider from the account page (the link is then bound to that session's user
//!   and the exact upstream identity that comes back);
//! - the upstream's tokens are not requested from the crate: no feature needs them.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_crds::realm::SocialProviderType;
use portcullis_social::pg::PgLinkStore;
use portcullis_social::{
    AccountWithEmail, Callback, HttpClient, Link, LinkDecision, PENDING_TTL, Pending, Provider,
    ProviderSettings, Random, SocialError, UpstreamIdentity, link_decision,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::AuthError;
use super::account::REAUTHENTICATION_WINDOW;
use super::core::Core;
use super::identifier::canonical_email;
use super::login::{LoginOutcome, conclude};
use super::mfa_login::{self, FirstFactor, Stage};
use super::principal::{Principal, RequestMeta};
use crate::audit::Event;
use crate::notify::Notice;
use crate::store::kv::PendingKind;
use crate::store::{NewUser, UserRecord};
use portcullis_audit::{Details, Ident};

/// The `amr` of a sign-in through a social provider (the value Entra ID and others use for a
/// federated assertion; RFC 8176 registers none).
pub const FEDERATED_AMR: &str = "fed";

/// How long a discovered provider (its endpoints and keys) is used before it is discovered
/// again: a provider's signing keys rotate, and the crate refetches them itself on an unknown
/// `kid` only within one discovery.
const REDISCOVER_AFTER_MS: u64 = 3_600_000;

/// The realm's social providers: settings from the realm, endpoints discovered on first use
/// (one provider that is down neither stops the server from starting nor the others).
pub struct Social {
    settings: Vec<ProviderSettings>,
    http: HttpClient,
    links: PgLinkStore,
    /// Discovered providers with when (the core clock's milliseconds).
    discovered: tokio::sync::RwLock<HashMap<String, (Provider, u64)>>,
}

impl std::fmt::Debug for Social {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.settings.iter().map(|s| s.name.as_str()).collect();
        f.debug_struct("Social").field("providers", &names).finish()
    }
}

/// A provider as the login and account pages offer it.
#[derive(Clone, Debug)]
pub struct ProviderChoice {
    /// The realm's name for it (in URLs).
    pub name: String,
    /// What the button says.
    pub label: String,
}

impl Social {
    /// The realm's providers, spoken to over `http`, their links in `links`.
    pub fn new(settings: Vec<ProviderSettings>, http: HttpClient, links: PgLinkStore) -> Self {
        Self {
            settings,
            http,
            links,
            discovered: tokio::sync::RwLock::new(HashMap::new()),
        }
    }

    /// The providers, in the realm's order.
    pub fn choices(&self) -> Vec<ProviderChoice> {
        self.settings
            .iter()
            .map(|s| ProviderChoice {
                name: s.name.clone(),
                label: label(s),
            })
            .collect()
    }

    /// The names of the realm's providers (a link to any other is no way in).
    pub fn names(&self) -> Vec<String> {
        self.settings.iter().map(|s| s.name.clone()).collect()
    }

    /// The link store.
    pub fn links(&self) -> &PgLinkStore {
        &self.links
    }

    /// Provider `name`, discovered now (`now_ms`) if it never was or long ago.
    async fn provider(&self, name: &str, now_ms: u64) -> Result<Provider, AuthError> {
        let Some(settings) = self.settings.iter().find(|s| s.name == name) else {
            return Err(AuthError::NotFound);
        };
        if let Some((provider, at)) = self.discovered.read().await.get(name)
            && now_ms.saturating_sub(*at) < REDISCOVER_AFTER_MS
        {
            return Ok(provider.clone());
        }
        let provider = Provider::discover(settings.clone(), self.http.clone())
            .await
            .map_err(|e| {
                tracing::warn!(
                    provider = name,
                    code = e.code(),
                    "social provider discovery failed"
                );
                AuthError::Social(e)
            })?;
        self.discovered
            .write()
            .await
            .insert(name.to_owned(), (provider.clone(), now_ms));
        Ok(provider)
    }
}

/// The button text of a provider.
fn label(settings: &ProviderSettings) -> String {
    use portcullis_crds::realm::SocialProviderType as T;
    match settings.preset {
        T::GitHub => "GitHub".to_owned(),
        T::Google => "Google".to_owned(),
        T::Oidc => settings.name.clone(),
    }
}

/// What a started social sign-in is for.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Purpose {
    /// Signing in (or up), then on to the pending authorization request `req` or, with
    /// `next`, the account page.
    SignIn {
        /// A pending authorization request.
        req: Option<String>,
        /// Whether to go to the account page after.
        next: bool,
    },
    /// Linking the provider to the signed-in `user` of session `session_id` (account page).
    Link {
        /// The user.
        user: Uuid,
        /// The public id of the session that asked.
        session_id: String,
    },
}

/// The pending record as stored.
#[derive(Serialize, Deserialize)]
struct Stored {
    pending: Pending,
    purpose: Purpose,
}

/// A started sign-in: where to send the browser, and the id its cookie carries.
pub struct Started {
    /// The provider's authorization URL.
    pub url: String,
    /// The value of the browser's social cookie.
    pub cookie: String,
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL carries the state and nonce; the cookie names the pending record.
        f.write_str("Started")
    }
}

/// Where a finished social sign-in leads.
#[derive(Debug)]
pub enum Finished {
    /// A sign-in: the login's outcome (signed in, or a second factor still due), and where
    /// the browser goes after.
    SignIn {
        /// The outcome.
        outcome: LoginOutcome,
        /// The pending authorization request.
        req: Option<String>,
        /// Whether to go to the account page.
        next: bool,
    },
    /// The provider was linked to the account page's user.
    Linked,
}

/// The key a pending social sign-in is stored under: the SHA-256 of the cookie's id.
fn digest(id: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(id.as_bytes()))
}

/// The realm's social providers, or `NotFound` when it has none.
fn social(core: &Core) -> Result<&Social, AuthError> {
    core.social.as_deref().ok_or(AuthError::NotFound)
}

/// The callback URL of provider `name`: built from the realm's issuer, never from the request.
pub fn redirect_uri(core: &Core, name: &str) -> String {
    format!(
        "{}/oauth2/social/{name}/callback",
        core.issuer().trim_end_matches('/')
    )
}

/// Starts a social sign-in with provider `name` for `purpose`: the pending record is stored
/// (for the crate's [`PENDING_TTL`]) under the digest of a fresh random id, which the caller
/// puts in the browser's cookie.
///
/// # Errors
/// `NotFound` for a provider the realm does not have; `Social` when its discovery fails.
pub async fn start(core: &Core, name: &str, purpose: Purpose) -> Result<Started, AuthError> {
    let provider = social(core)?.provider(name, core.clock.now_ms()).await?;
    // From the OS generator, whatever the core's random source is (tests seed that one).
    let random = Random::generate().map_err(AuthError::Social)?;
    let started = provider
        .start(&redirect_uri(core, name), &random, core.clock.now())
        .map_err(AuthError::Social)?;
    let mut url = started.url;
    if matches!(purpose, Purpose::Link { .. }) {
        // The identity about to be linked must be the person's own, not whichever account
        // the browser is signed in to at the provider (a login CSRF there would plant the
        // attacker's identity as a way into this account).
        url.query_pairs_mut()
            .append_pair("prompt", link_prompt(provider.settings().preset));
    }
    let id = core.random.token(32);
    let json = serde_json::to_string(&Stored {
        pending: started.pending,
        purpose,
    })
    .map_err(|e| AuthError::Internal(e.to_string()))?;
    core.kv
        .put_pending(
            PendingKind::SocialSignIn,
            &digest(&id),
            &json,
            PENDING_TTL.unsigned_abs(),
        )
        .await?;
    Ok(Started {
        url: url.to_string(),
        cookie: id,
    })
}

/// The `prompt` of a link's authorization request: a fresh sign-in at any OpenID Connect
/// provider (`login`, OpenID Connect Core §3.1.2.1), the account chooser where the provider
/// offers no such prompt (Google and GitHub take only `select_account`).
fn link_prompt(preset: SocialProviderType) -> &'static str {
    match preset {
        SocialProviderType::Google | SocialProviderType::GitHub => "select_account",
        SocialProviderType::Oidc => "login",
    }
}

/// Finishes the social sign-in of the browser whose cookie is `cookie`, with provider
/// `name`'s callback `query`.
///
/// # Errors
/// `Social(Expired)` when the browser has no pending sign-in (none, expired, or already
/// used); the crate's refusals (`state_mismatch`, `id_token_nonce`, `email_unverified`, ...);
/// `SocialLinkNeedsSignIn` when the email's account has a second factor; the sign-in's own
/// refusals (disabled account, unverified email).
pub async fn finish_callback(
    core: &Core,
    name: &str,
    cookie: Option<&str>,
    query: &str,
    meta: &RequestMeta,
    previous_session: Option<&str>,
) -> Result<Finished, AuthError> {
    let social = social(core)?;
    // Taken before anything else: whatever happens next, this record is never used again.
    let stored = match cookie {
        Some(id) => {
            core.kv
                .take_pending(PendingKind::SocialSignIn, &digest(id))
                .await?
        }
        None => None,
    };
    let Some(stored) = stored.and_then(|json| serde_json::from_str::<Stored>(&json).ok()) else {
        return Err(AuthError::Social(SocialError::Expired));
    };
    let provider = social.provider(name, core.clock.now_ms()).await?;
    let callback = Callback::from_query(query).map_err(AuthError::Social)?;
    let identity = match provider
        .finish(&stored.pending, &callback, core.clock.now())
        .await
    {
        Ok(identity) => identity,
        Err(error) => {
            refused(core, name, &error, meta).await;
            return Err(AuthError::Social(error));
        }
    };
    let linked = social
        .links
        .find(&identity.issuer, &identity.subject)
        .await
        .map_err(store_failed)?;
    match stored.purpose {
        Purpose::Link { user, session_id } => link_to_session(
            core,
            provider.settings(),
            &identity,
            linked,
            user,
            &session_id,
            meta,
        )
        .await
        .map(|()| Finished::Linked),
        Purpose::SignIn { req, next } => {
            let outcome = sign_in(
                core,
                provider.settings(),
                &identity,
                linked,
                meta,
                previous_session,
            )
            .await?;
            Ok(Finished::SignIn { outcome, req, next })
        }
    }
}

/// A refused callback: audited and logged by its code only (its text may come from the
/// provider).
async fn refused(core: &Core, name: &str, error: &SocialError, meta: &RequestMeta) {
    if error.is_upstream_fault() {
        tracing::warn!(
            provider = name,
            code = error.code(),
            "social sign-in refused"
        );
    }
    let mut details = Details::new().code("reason", error.code());
    if let Some(provider) = Ident::parse(name) {
        details = details.id("provider", provider);
    }
    core.audit(
        Event::failure("social_login_failed").details(details),
        Some(meta),
    )
    .await;
}

/// A link store failure: logged by its code, answered 503.
fn store_failed(error: SocialError) -> AuthError {
    match error {
        SocialError::Database(_) | SocialError::Contended | SocialError::Corrupt(_) => {
            tracing::error!(code = error.code(), "link store failed");
            AuthError::Unavailable("database")
        }
        other => AuthError::Social(other),
    }
}

/// The account that has the identity's link email, as the crate's decision needs it. The
/// email must be exactly what the server's own canonicalisation makes of it: otherwise the
/// identity is treated as having none.
async fn account_with_email(
    core: &Core,
    identity: &UpstreamIdentity,
) -> Result<Option<(UserRecord, AccountWithEmail)>, AuthError> {
    let Some(email) = identity.link_email() else {
        return Ok(None);
    };
    if canonical_email("email", &email).ok().as_deref() != Some(email.as_str()) {
        // The crate's and the server's rules disagree: refuse rather than create with it.
        return Err(AuthError::Social(SocialError::EmailUnusable));
    }
    let Some(user) = core.db.user_by_email(&email).await? else {
        return Ok(None);
    };
    // A realm that requires TOTP counts every account as having it: such an account is linked
    // only from its account page, after its owner signed in (and enrolled).
    let has_mfa = mfa_login::required(core, &user).await?.is_some();
    let account = AccountWithEmail {
        user: user.id,
        email_verified: user.email_verified,
        has_mfa,
    };
    Ok(Some((user, account)))
}

/// Signs in with `identity`: the crate's decision, then the sign-in of its user.
async fn sign_in(
    core: &Core,
    settings: &ProviderSettings,
    identity: &UpstreamIdentity,
    linked: Option<Link>,
    meta: &RequestMeta,
    previous_session: Option<&str>,
) -> Result<LoginOutcome, AuthError> {
    let account = account_with_email(core, identity).await?;
    let decision = link_decision(
        identity,
        settings,
        linked.as_ref().map(|l| l.user),
        account.as_ref().map(|(_, a)| a),
    );
    let decision = match decision {
        Ok(decision) => decision,
        Err(error) => {
            refused(core, &settings.name, &error, meta).await;
            return Err(AuthError::Social(error));
        }
    };
    let now = core.clock.now();
    let user = match decision {
        LinkDecision::SignIn { user } => {
            if let Some(link) = &linked {
                social(core)?
                    .links
                    .touch(link.id, now)
                    .await
                    .map_err(store_failed)?;
            }
            // Deleted since the lookup: a moment's race, not a missing provider.
            core.db
                .user_by_id(user)
                .await?
                .ok_or(AuthError::Social(SocialError::Contended))?
        }
        LinkDecision::Create { email } => {
            if core.spec().mfa.totp.required {
                // Its account could not enrol (that needs a password it does not have).
                refused(core, &settings.name, &SocialError::EmailRequired, meta).await;
                return Err(AuthError::SocialSignUpNeedsPassword);
            }
            if super::privacy::acceptance_required(core) {
                // No account before its owner accepts the policy and its required purposes.
                let consent_token =
                    super::privacy::begin_sign_up(core, identity, &email, &[FEDERATED_AMR]).await?;
                let mut details = Details::new();
                if let Some(provider) = Ident::parse(&settings.name) {
                    details = details.id("provider", provider);
                }
                core.audit(
                    Event::success("registration_consent_pending").details(details),
                    Some(meta),
                )
                .await;
                return Ok(LoginOutcome::ConsentRequired { consent_token });
            }
            create_account(core, identity, &email, meta).await?
        }
        LinkDecision::Link { user } => {
            let Some((record, _)) = account.filter(|(record, _)| record.id == user) else {
                return Err(AuthError::Social(SocialError::Contended));
            };
            // The address moved at this issuer (another subject holds it now, e.g. a reissued
            // corporate mailbox): the new holder is not the account's owner.
            let moved = social(core)?
                .links
                .list_for_user(record.id)
                .await
                .map_err(store_failed)?
                .iter()
                .any(|l| l.issuer == identity.issuer && l.subject != identity.subject);
            if moved {
                refused(core, &settings.name, &SocialError::AlreadyLinked, meta).await;
                return Err(AuthError::Social(SocialError::AlreadyLinked));
            }
            link(core, &record, identity, meta).await?;
            record
        }
        LinkDecision::LinkAfterMfa { .. } => {
            refused(core, &settings.name, &SocialError::AlreadyLinked, meta).await;
            return Err(AuthError::SocialLinkNeedsSignIn);
        }
    };
    sign_in_user(core, &user, meta, previous_session).await
}

/// The sign-in of `user` after a provider vouched for them: the checks of a password sign-in
/// after its password (disabled, unverified email), the second factor when the account has
/// one (or the realm requires one), the privacy policy's consent, then the session.
async fn sign_in_user(
    core: &Core,
    user: &UserRecord,
    meta: &RequestMeta,
    previous_session: Option<&str>,
) -> Result<LoginOutcome, AuthError> {
    if user.disabled {
        core.metrics.login_failed("disabled");
        return Err(AuthError::AccountDisabled);
    }
    if core.spec().email_verification.required && !user.email_verified {
        core.metrics.login_failed("email_not_verified");
        return Err(AuthError::EmailNotVerified);
    }
    if let Some(stage) = mfa_login::required(core, user).await? {
        let mfa_token = mfa_login::begin(core, user, stage, FirstFactor::Federated).await?;
        core.audit(
            Event::success("login_mfa_pending").by_user(user.id),
            Some(meta),
        )
        .await;
        return Ok(match stage {
            Stage::Verify => LoginOutcome::MfaRequired { mfa_token },
            Stage::Enrol => LoginOutcome::MfaEnrolmentRequired { mfa_token },
        });
    }
    // The realm's privacy policy too: an account made here has accepted none yet.
    conclude(core, user, meta, previous_session, &[FEDERATED_AMR]).await
}

/// A new account for `identity`, with its (provider-verified) email and no password, linked
/// to it. When the link cannot be written (the identity was linked meanwhile), the account
/// is removed again: no account is left without the identity that made it.
async fn create_account(
    core: &Core,
    identity: &UpstreamIdentity,
    email: &str,
    meta: &RequestMeta,
) -> Result<UserRecord, AuthError> {
    let id = core.random.uuid();
    let display_name =
        identity.name.as_deref().map(str::trim).filter(|n| {
            !n.is_empty() && n.chars().count() <= 100 && !n.chars().any(char::is_control)
        });
    core.db
        .insert_user(&NewUser {
            id,
            email,
            email_canonical: email,
            display_name,
            password_hash: None,
            pepper_version: core.hasher.current_pepper_version(),
            email_verified: true,
            now: core.clock.now(),
        })
        .await
        .map_err(|e| match e {
            // Registered a moment ago by someone else: the next attempt links or refuses.
            crate::store::StoreError::Duplicate(_) => AuthError::Social(SocialError::Contended),
            other => other.into(),
        })?;
    let user = core.db.user_by_id(id).await?.ok_or(AuthError::NotFound)?;
    if let Err(error) = link(core, &user, identity, meta).await {
        super::registration::undo_account(core, id, meta).await;
        return Err(error);
    }
    core.audit(
        Event::success("registered")
            .by_user(id)
            .details(Details::new().code("method", "social")),
        Some(meta),
    )
    .await;
    Ok(user)
}

/// Makes the account of a social sign-up that waited for the privacy policy, now accepted.
/// The callback's decision is taken again, as the identity may have been linked, the address
/// registered, or the realm's rules changed meanwhile: it must still be to create this
/// account (`SignUpOutdated` otherwise: sign in again).
pub(super) async fn complete_sign_up(
    core: &Core,
    identity: &UpstreamIdentity,
    email: &str,
    meta: &RequestMeta,
) -> Result<UserRecord, AuthError> {
    let social = social(core)?;
    let Some(settings) = social.settings.iter().find(|s| s.name == identity.provider) else {
        return Err(AuthError::SignUpOutdated);
    };
    if core.spec().mfa.totp.required {
        refused(core, &settings.name, &SocialError::EmailRequired, meta).await;
        return Err(AuthError::SocialSignUpNeedsPassword);
    }
    let linked = social
        .links
        .find(&identity.issuer, &identity.subject)
        .await
        .map_err(store_failed)?;
    let account = account_with_email(core, identity).await?;
    let decision = link_decision(
        identity,
        settings,
        linked.map(|l| l.user),
        account.as_ref().map(|(_, a)| a),
    );
    match decision {
        Ok(LinkDecision::Create { email: now }) if now == email => {
            create_account(core, identity, email, meta)
                .await
                .map_err(|error| match error {
                    AuthError::Social(SocialError::Contended | SocialError::AlreadyLinked) => {
                        AuthError::SignUpOutdated
                    }
                    other => other,
                })
        }
        Ok(_) => {
            refused(core, &settings.name, &SocialError::Contended, meta).await;
            Err(AuthError::SignUpOutdated)
        }
        Err(error) => {
            refused(core, &settings.name, &error, meta).await;
            Err(AuthError::SignUpOutdated)
        }
    }
}

/// Links `identity` to `user`, audited and told to the account's address.
async fn link(
    core: &Core,
    user: &UserRecord,
    identity: &UpstreamIdentity,
    meta: &RequestMeta,
) -> Result<(), AuthError> {
    let link = social(core)?
        .links
        .link(user.id, identity, core.clock.now())
        .await
        .map_err(store_failed)?;
    let mut details = Details::new();
    if let Some(provider) = Ident::parse(&link.provider) {
        details = details.id("provider", provider);
    }
    core.audit(
        Event::success("social_linked")
            .by_user(user.id)
            .details(details),
        Some(meta),
    )
    .await;
    // Provider names are DNS labels (the realm's schema and the crate check them).
    if let Ok(provider) = portcullis_webhook::ProviderName::new(&link.provider) {
        core.tell(user, Notice::IdentityLinked { provider }).await;
    }
    Ok(())
}

/// Links `identity` to the account page's user, whose session must still be live.
async fn link_to_session(
    core: &Core,
    settings: &ProviderSettings,
    identity: &UpstreamIdentity,
    linked: Option<Link>,
    user: Uuid,
    session_id: &str,
    meta: &RequestMeta,
) -> Result<(), AuthError> {
    let session = core
        .kv
        .session(session_id)
        .await?
        .filter(|session| session.user_id == user)
        .ok_or(AuthError::Unauthenticated)?;
    if !fresh(core, session.created_at) {
        return Err(AuthError::SocialLinkNeedsFreshSignIn);
    }
    let record = core
        .db
        .user_by_id(user)
        .await?
        .ok_or(AuthError::Unauthenticated)?;
    if !record.email_verified {
        // Linked under an address nobody proved, the link would outlive its proof: whoever
        // verifies the address later (by a reset) would share the account with this identity.
        refused(
            core,
            &settings.name,
            &SocialError::AccountEmailUnverified,
            meta,
        )
        .await;
        return Err(AuthError::Social(SocialError::AccountEmailUnverified));
    }
    // The realm's domain rule applies to linked identities too (as at every sign-in): the
    // crate checks it before answering "already linked to this user".
    if let Err(error) = link_decision(identity, settings, Some(user), None) {
        refused(core, &settings.name, &error, meta).await;
        return Err(AuthError::Social(error));
    }
    match linked {
        Some(link) if link.user == user => Ok(()),
        Some(_) => {
            refused(core, &settings.name, &SocialError::AlreadyLinked, meta).await;
            Err(AuthError::Social(SocialError::AlreadyLinked))
        }
        None => link(core, &record, identity, meta).await,
    }
}

/// Whether a session started at `signed_in_at` is fresh enough to link a provider.
fn fresh(core: &Core, signed_in_at: time::OffsetDateTime) -> bool {
    core.clock.now() - signed_in_at <= REAUTHENTICATION_WINDOW
}

/// Starts linking provider `name` to the signed-in `principal`: only from a session signed in
/// within [`REAUTHENTICATION_WINDOW`].
///
/// # Errors
/// `SocialLinkNeedsFreshSignIn` for an older session; as [`start`] otherwise.
pub async fn start_link(
    core: &Core,
    name: &str,
    principal: &Principal,
) -> Result<Started, AuthError> {
    if !super::account::signed_in_recently(core, principal).await? {
        return Err(AuthError::SocialLinkNeedsFreshSignIn);
    }
    let purpose = Purpose::Link {
        user: principal.user_id,
        session_id: principal.session_id.clone(),
    };
    start(core, name, purpose).await
}

/// Removes the links of `user` made while its email was unproven, now that a mail loop proved
/// it (a password reset): the address's owner gets an account no one else signs in to.
///
/// # Errors
/// `Unavailable` when the store fails.
pub async fn drop_unproven_links(
    core: &Core,
    user: uuid::Uuid,
    meta: &RequestMeta,
) -> Result<(), AuthError> {
    let Some(social) = core.social.as_deref() else {
        return Ok(());
    };
    let removed = social.links.unlink_all(user).await.map_err(store_failed)?;
    for link in removed {
        let mut details = Details::new().code("reason", "email_unproven_when_linked");
        if let Some(provider) = Ident::parse(&link.provider) {
            details = details.id("provider", provider);
        }
        core.audit(
            Event::success("social_unlinked")
                .by_user(user)
                .details(details),
            Some(meta),
        )
        .await;
    }
    Ok(())
}

/// A linked identity as `/api/v1/me` and the account page show it.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The link's id (what unlinking names).
    pub id: Uuid,
    /// The realm's name for the provider.
    pub provider: String,
    /// The email the provider gave when it was linked.
    pub email: Option<String>,
    /// When it was linked.
    pub linked_at: time::OffsetDateTime,
    /// When it last signed in.
    pub last_used_at: time::OffsetDateTime,
}

/// The caller's linked identities; none on a realm without social providers.
///
/// # Errors
/// `Unavailable` when the store fails.
pub async fn identities(core: &Core, principal: &Principal) -> Result<Vec<Identity>, AuthError> {
    let Some(social) = core.social.as_deref() else {
        return Ok(Vec::new());
    };
    let links = social
        .links
        .list_for_user(principal.user_id)
        .await
        .map_err(store_failed)?;
    Ok(links
        .into_iter()
        .map(|l| Identity {
            id: l.id,
            provider: l.provider,
            email: l.email,
            linked_at: l.created_at,
            last_used_at: l.last_used_at,
        })
        .collect())
}

/// Unlinks the caller's identity `link_id`, only while another working way in remains (a
/// password, or a link to a provider the realm still has).
///
/// # Errors
/// `NotFound` for an unknown link or another user's; `Social(LastSignInMethod)`.
pub async fn unlink(
    core: &Core,
    principal: &Principal,
    link_id: Uuid,
    meta: &RequestMeta,
) -> Result<(), AuthError> {
    let social = core.social.as_deref().ok_or(AuthError::NotFound)?;
    let user = core
        .db
        .user_by_id(principal.user_id)
        .await?
        .ok_or(AuthError::NotFound)?;
    let password_usable = user.password_hash.is_some();
    let removed = social
        .links
        .unlink(user.id, link_id, password_usable, &social.names())
        .await
        .map_err(|e| match e {
            SocialError::LinkNotFound => AuthError::NotFound,
            other => store_failed(other),
        })?;
    let mut details = Details::new();
    if let Some(provider) = Ident::parse(&removed.provider) {
        details = details.id("provider", provider);
    }
    core.audit(
        Event::success("social_unlinked")
            .by_user(user.id)
            .details(details),
        Some(meta),
    )
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_asks_the_provider_to_sign_in_afresh_or_to_choose_the_account() {
        assert_eq!(link_prompt(SocialProviderType::Oidc), "login");
        assert_eq!(link_prompt(SocialProviderType::Google), "select_account");
        assert_eq!(link_prompt(SocialProviderType::GitHub), "select_account");
    }

    #[test]
    fn the_pending_key_is_a_digest_not_the_cookie() {
        let key = digest("cookie-value");
        assert_ne!(key, "cookie-value");
        assert_eq!(key.len(), 43);
        assert_eq!(key, digest("cookie-value"));
        assert_ne!(key, digest("cookie-valuf"));
    }

    #[test]
    fn a_purpose_survives_the_store() {
        let purpose = Purpose::Link {
            user: Uuid::from_u128(7),
            session_id: "s1".into(),
        };
        let json = serde_json::to_string(&purpose).unwrap_or_default();
        let back: Purpose = serde_json::from_str(&json).unwrap_or(Purpose::SignIn {
            req: None,
            next: false,
        });
        assert_eq!(back, purpose);
    }
}
