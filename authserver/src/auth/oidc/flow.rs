//! The authorization code flow up to the code: a request is validated, then either answered
//! at once (a code for the browser's session, or an error for the client) or kept pending,
//! under a random id the login and consent pages carry, while the user signs in or decides;
//! the login marks the pending request with the session it made, the consent page with the
//! session that allowed it, and resuming it issues the code. Codes are 32
//! random bytes (RFC 6749 §10.10), kept by their SHA-256 and redeemable for [`CODE_TTL`].

use crate::audit::Event;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::authorize::{
    self, AuthorizationRequest, ConsentFacts, Decision, ErrorRedirect, Refusal, ResponseMode,
};
use crate::auth::core::Core;
use crate::auth::{AuthError, session_auth, sessions};
use crate::store::kv::{CodeRecord, PendingKind, SessionRecord};

/// How long an authorization code can be exchanged.
pub const CODE_TTL: Duration = Duration::from_secs(60);

/// How long a request waits for the user to sign in.
pub const PENDING_TTL: Duration = Duration::from_secs(600);

/// What the browser gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An error page: the client or its redirect URI cannot be trusted with a redirect.
    Page(String),
    /// An error for the client, on its redirect URI.
    Error(ErrorRedirect),
    /// A code for the client, on its redirect URI.
    Code(CodeReply),
    /// The login page, for the pending request `pending_id`.
    Login {
        /// Id of the pending request.
        pending_id: String,
    },
    /// The consent page, for the pending request `pending_id`.
    Consent {
        /// Id of the pending request.
        pending_id: String,
    },
    /// The privacy-policy page: the signed-in user has not accepted the realm's current
    /// policy, so no code is issued until they do; then the pending request resumes.
    PolicyConsent {
        /// Id of the pending request.
        pending_id: String,
    },
}

/// A successful authorization response.
#[derive(Clone, PartialEq, Eq)]
pub struct CodeReply {
    /// Where to.
    pub redirect_uri: String,
    /// How.
    pub response_mode: ResponseMode,
    /// The request's `state`.
    pub state: Option<String>,
    /// The authorization code.
    pub code: String,
}

impl std::fmt::Debug for CodeReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeReply")
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

/// A request waiting for a login.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Pending {
    request: AuthorizationRequest,
    /// The session a login made for this request.
    login_sid: Option<String>,
    /// The session whose user allowed this request on the consent page.
    #[serde(default)]
    consent_sid: Option<String>,
}

/// What the login and consent pages show for a pending request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingView {
    /// The client asking.
    pub client_id: String,
    /// `login_hint`, to pre-fill the email.
    pub login_hint: Option<String>,
    /// The scopes asked for.
    pub scopes: Vec<String>,
}

/// The key a code is stored under: its hex SHA-256.
pub fn code_key(code: &str) -> String {
    sessions::public_id(code)
}

/// The browser's live session, with its public id.
pub(super) async fn current_session(
    core: &Core,
    secret: Option<&str>,
) -> Result<Option<(String, SessionRecord)>, AuthError> {
    let Some(principal) = session_auth::signed_in(core, secret).await? else {
        return Ok(None);
    };
    Ok(core
        .kv
        .session(&principal.session_id)
        .await?
        .map(|record| (principal.session_id, record)))
}

/// Handles an authorization request's parameters (query or form, in order) for a browser
/// presenting `session_secret`.
pub async fn begin(
    core: &Core,
    params: &[(String, String)],
    session_secret: Option<&str>,
) -> Result<Outcome, AuthError> {
    match authorize::validate(params, core.clients()) {
        Ok(request) => {
            let session = current_session(core, session_secret).await?;
            let pending = Pending {
                request,
                login_sid: None,
                consent_sid: None,
            };
            proceed(core, pending, session).await
        }
        Err(Refusal::Page { description }) => Ok(Outcome::Page(description)),
        Err(Refusal::Redirect(error)) => Ok(Outcome::Error(error)),
    }
}

/// The pending request `id` as the login page shows it (`None`: unknown or expired).
pub async fn pending_view(core: &Core, id: &str) -> Result<Option<PendingView>, AuthError> {
    Ok(
        load(core.kv.pending(PendingKind::Authorization, id).await?).map(|p| PendingView {
            client_id: p.request.client_id,
            login_hint: p.request.login_hint,
            scopes: p.request.scopes,
        }),
    )
}

/// Records that the session `session_id` was just made by a login for the pending request
/// `id`; returns whether the request still waits.
pub async fn logged_in(core: &Core, id: &str, session_id: &str) -> Result<bool, AuthError> {
    let Some(mut pending) = load(core.kv.pending(PendingKind::Authorization, id).await?) else {
        return Ok(false);
    };
    pending.login_sid = Some(session_id.to_owned());
    // Only while it still waits, and without renewing its deadline: a request resumed (taken)
    // meanwhile is not written back to yield a second code.
    Ok(core
        .kv
        .replace_pending(PendingKind::Authorization, id, &encode(&pending)?)
        .await?)
}

/// Resumes the pending request `id` (once) for a browser presenting `session_secret`.
pub async fn resume(
    core: &Core,
    id: &str,
    session_secret: Option<&str>,
) -> Result<Outcome, AuthError> {
    let Some(pending) = load(core.kv.take_pending(PendingKind::Authorization, id).await?) else {
        return Ok(Outcome::Page(
            "This sign-in request has expired or was already used.".to_owned(),
        ));
    };
    let session = current_session(core, session_secret).await?;
    proceed(core, pending, session).await
}

/// The user of the browser presenting `session_secret` answered the consent page of the
/// pending request `id` (once): allowing it remembers the scopes for the client and continues
/// the request; denying it answers the client `access_denied`. Without the session the page
/// was shown to, nothing is recorded.
pub async fn consent_answer(
    core: &Core,
    id: &str,
    session_secret: Option<&str>,
    allow: bool,
) -> Result<Outcome, AuthError> {
    let Some(mut pending) = load(core.kv.take_pending(PendingKind::Authorization, id).await?)
    else {
        return Ok(Outcome::Page(
            "This sign-in request has expired or was already used.".to_owned(),
        ));
    };
    let Some((sid, record)) = current_session(core, session_secret).await? else {
        return proceed(core, pending, None).await;
    };
    let request = &pending.request;
    if !allow {
        core.audit(
            Event::failure("oauth_consent_denied")
                .by_user(record.user_id)
                .client(&request.client_id),
            None,
        )
        .await;
        return Ok(Outcome::Error(ErrorRedirect {
            redirect_uri: request.redirect_uri.clone(),
            response_mode: request.response_mode,
            state: request.state.clone(),
            error: "access_denied",
            description: "the user did not allow the request".to_owned(),
        }));
    }
    let scopes: Vec<&str> = request.scopes.iter().map(String::as_str).collect();
    core.db
        .grant_oauth_consent(
            record.user_id,
            &request.client_id,
            &scopes,
            core.clock.now(),
        )
        .await?;
    core.audit(
        Event::success("oauth_consent_granted")
            .by_user(record.user_id)
            .client(&request.client_id),
        None,
    )
    .await;
    pending.consent_sid = Some(sid.clone());
    proceed(core, pending, Some((sid, record))).await
}

fn load(json: Option<String>) -> Option<Pending> {
    json.and_then(|j| serde_json::from_str(&j).ok())
}

fn encode(pending: &Pending) -> Result<String, AuthError> {
    serde_json::to_string(pending).map_err(|e| AuthError::Internal(e.to_string()))
}

async fn proceed(
    core: &Core,
    pending: Pending,
    session: Option<(String, SessionRecord)>,
) -> Result<Outcome, AuthError> {
    let now = core.clock.now();
    // A session from before the realm required TOTP counts as none: the user signs in again
    // (and enrols) before any code is issued.
    let session = session.filter(|(_, record)| {
        !crate::auth::mfa_login::lacks_required_second_factor(core, &record.amr)
    });
    let sid = session.as_ref().map(|(sid, _)| sid.as_str());
    let fresh = sid.is_some() && sid == pending.login_sid.as_deref();
    let auth_time = session.as_ref().map(|(_, record)| record.created_at);
    let granted = match &session {
        Some((_, record)) => core
            .db
            .oauth_consent(record.user_id, &pending.request.client_id)
            .await?
            .map(|c| c.scopes),
        None => None,
    };
    let consent = ConsentFacts {
        first_party: core
            .clients()
            .get(&pending.request.client_id)
            .is_some_and(|c| c.spec.first_party),
        granted,
        just_given: sid.is_some() && sid == pending.consent_sid.as_deref(),
    };
    let decision = authorize::decide(&pending.request, auth_time, fresh, &consent, now);
    // The privacy policy comes before any code (issue 13): a signed-in user who has not
    // accepted its current version is sent to accept it, and the request waits.
    if let (Decision::Issue | Decision::Consent, Some((_, record))) = (&decision, &session)
        && crate::auth::privacy::consent_needed(core, record.user_id).await?
    {
        if pending.request.prompt_none {
            let request = pending.request;
            return Ok(Outcome::Error(ErrorRedirect {
                redirect_uri: request.redirect_uri,
                response_mode: request.response_mode,
                state: request.state,
                error: "consent_required",
                description:
                    "the user must accept the privacy policy, and prompt=none forbids asking"
                        .to_owned(),
            }));
        }
        let pending_id = core.random.token(24);
        core.kv
            .put_pending(
                PendingKind::Authorization,
                &pending_id,
                &encode(&pending)?,
                PENDING_TTL,
            )
            .await?;
        return Ok(Outcome::PolicyConsent { pending_id });
    }
    match (decision, session) {
        (Decision::Issue, Some((sid, record))) => {
            issue_code(core, pending.request, &sid, &record).await
        }
        (Decision::Consent, Some(_)) => {
            let pending_id = core.random.token(24);
            core.kv
                .put_pending(
                    PendingKind::Authorization,
                    &pending_id,
                    &encode(&pending)?,
                    PENDING_TTL,
                )
                .await?;
            Ok(Outcome::Consent { pending_id })
        }
        (Decision::Issue | Decision::Login | Decision::Consent, _) => {
            let pending_id = core.random.token(24);
            let pending = Pending {
                request: pending.request,
                login_sid: None,
                consent_sid: None,
            };
            core.kv
                .put_pending(
                    PendingKind::Authorization,
                    &pending_id,
                    &encode(&pending)?,
                    PENDING_TTL,
                )
                .await?;
            Ok(Outcome::Login { pending_id })
        }
        (Decision::Refuse(error), _) => {
            let request = pending.request;
            Ok(Outcome::Error(ErrorRedirect {
                redirect_uri: request.redirect_uri,
                response_mode: request.response_mode,
                state: request.state,
                error,
                description: match error {
                    "login_required" => "the user must sign in, and prompt=none forbids asking",
                    "consent_required" => {
                        "the user must allow this client, and prompt=none forbids asking"
                    }
                    _ => "the request was refused",
                }
                .to_owned(),
            }))
        }
    }
}

async fn issue_code(
    core: &Core,
    request: AuthorizationRequest,
    sid: &str,
    session: &SessionRecord,
) -> Result<Outcome, AuthError> {
    let code = core.random.token(32);
    let now_ms = core.clock.now_ms();
    let record = CodeRecord {
        client_id: request.client_id.clone(),
        redirect_uri: request.redirect_uri.clone(),
        user_id: session.user_id,
        sid: sid.to_owned(),
        scope: request.scope(),
        nonce: request.nonce,
        code_challenge: request.code_challenge,
        auth_time: session.created_at.unix_timestamp(),
        amr: session.amr.clone(),
        acr: session.acr.clone(),
        credential_epoch: session.credential_epoch,
    };
    let ttl = u64::try_from(CODE_TTL.as_millis()).unwrap_or(u64::MAX);
    core.kv
        .put_code(
            &code_key(&code),
            &record,
            now_ms,
            now_ms.saturating_add(ttl),
        )
        .await?;
    core.audit(
        Event::success("oauth_code_issued")
            .by_user(session.user_id)
            .client(&request.client_id),
        None,
    )
    .await;
    Ok(Outcome::Code(CodeReply {
        redirect_uri: request.redirect_uri,
        response_mode: request.response_mode,
        state: request.state,
        code,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::testing::{fixture_with_clients, signed_in};
    use crate::store::kv::Redeemed;

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn params(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut pairs = vec![
            ("client_id", "spa"),
            ("redirect_uri", "https://app.example.com/cb"),
            ("response_type", "code"),
            ("scope", "openid email"),
            ("state", "st"),
            ("nonce", "nn"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ];
        pairs.extend_from_slice(extra);
        pairs
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[tokio::test]
    async fn without_a_session_the_request_waits_for_a_login_then_issues_one_code() {
        let f = fixture_with_clients();
        let Outcome::Login { pending_id } = begin(&f.core, &params(&[]), None).await.unwrap()
        else {
            panic!("expected the login page");
        };
        let view = pending_view(&f.core, &pending_id).await.unwrap().unwrap();
        assert_eq!(view.client_id, "spa");
        let login = signed_in(&f, "alice@example.com").await;
        assert!(
            logged_in(&f.core, &pending_id, &login.session_id)
                .await
                .unwrap()
        );
        let outcome = resume(&f.core, &pending_id, Some(&login.session_secret))
            .await
            .unwrap();
        let Outcome::Code(reply) = outcome else {
            panic!("expected a code, got {outcome:?}");
        };
        assert_eq!(reply.state.as_deref(), Some("st"));
        assert_eq!(reply.redirect_uri, "https://app.example.com/cb");
        let Redeemed::Fresh(record) = f
            .core
            .kv
            .redeem_code(&code_key(&reply.code), f.clock.now_ms())
            .await
            .unwrap()
        else {
            panic!("the code is stored");
        };
        assert_eq!(record.user_id, login.user_id);
        assert_eq!(record.sid, login.session_id);
        assert_eq!(record.scope, "openid email");
        assert_eq!(record.nonce.as_deref(), Some("nn"));
        assert_eq!(record.code_challenge.as_deref(), Some(CHALLENGE));
        assert_eq!(record.amr, ["pwd"]);
        assert!(matches!(
            resume(&f.core, &pending_id, Some(&login.session_secret))
                .await
                .unwrap(),
            Outcome::Page(_)
        ));
    }

    #[tokio::test]
    async fn a_code_expires_after_sixty_seconds() {
        let f = fixture_with_clients();
        let login = signed_in(&f, "alice@example.com").await;
        let Outcome::Code(reply) = begin(&f.core, &params(&[]), Some(&login.session_secret))
            .await
            .unwrap()
        else {
            panic!("a session gets a code at once");
        };
        f.clock.advance(CODE_TTL);
        assert_eq!(
            f.core
                .kv
                .redeem_code(&code_key(&reply.code), f.clock.now_ms())
                .await
                .unwrap(),
            Redeemed::Expired
        );
    }

    #[tokio::test]
    async fn prompt_none_without_a_session_is_login_required_on_the_redirect_uri() {
        let f = fixture_with_clients();
        let outcome = begin(
            &f.core,
            &params(&[("prompt", "none")]),
            Some("not-a-session"),
        )
        .await
        .unwrap();
        let Outcome::Error(error) = outcome else {
            panic!("{outcome:?}");
        };
        assert_eq!(error.error, "login_required");
        assert_eq!(error.state.as_deref(), Some("st"));
    }

    #[tokio::test]
    async fn prompt_login_is_satisfied_only_by_the_login_made_for_the_request() {
        let f = fixture_with_clients();
        let old = signed_in(&f, "alice@example.com").await;
        let outcome = begin(
            &f.core,
            &params(&[("prompt", "login")]),
            Some(&old.session_secret),
        )
        .await
        .unwrap();
        let Outcome::Login { pending_id } = outcome else {
            panic!("{outcome:?}");
        };
        // Resumed with the old session, without logging in: asked again.
        let again = resume(&f.core, &pending_id, Some(&old.session_secret))
            .await
            .unwrap();
        let Outcome::Login { pending_id } = again else {
            panic!("{again:?}");
        };
        let fresh = signed_in(&f, "alice@example.com").await;
        logged_in(&f.core, &pending_id, &fresh.session_id)
            .await
            .unwrap();
        assert!(matches!(
            resume(&f.core, &pending_id, Some(&fresh.session_secret))
                .await
                .unwrap(),
            Outcome::Code(_)
        ));
    }

    #[tokio::test]
    async fn an_unknown_client_gets_a_page_and_nothing_is_stored() {
        let f = fixture_with_clients();
        let mut bad = params(&[]);
        bad[0].1 = "nobody".into();
        assert!(matches!(
            begin(&f.core, &bad, None).await.unwrap(),
            Outcome::Page(_)
        ));
    }

    fn partner(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut pairs = params(extra);
        pairs[0].1 = "partner".into();
        pairs
    }

    #[tokio::test]
    async fn a_third_party_client_asks_for_consent_once_and_then_remembers_it() {
        let f = fixture_with_clients();
        let login = signed_in(&f, "alice@example.com").await;
        let secret = Some(login.session_secret.as_str());
        let outcome = begin(&f.core, &partner(&[]), secret).await.unwrap();
        let Outcome::Consent { pending_id } = outcome else {
            panic!("{outcome:?}");
        };
        let view = pending_view(&f.core, &pending_id).await.unwrap().unwrap();
        assert_eq!(view.scopes, ["openid", "email"]);
        assert!(matches!(
            consent_answer(&f.core, &pending_id, secret, true)
                .await
                .unwrap(),
            Outcome::Code(_)
        ));
        let consent = f
            .core
            .db
            .oauth_consent(login.user_id, "partner")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(consent.scopes, ["email", "openid"]);
        assert!(
            matches!(
                begin(&f.core, &partner(&[]), secret).await.unwrap(),
                Outcome::Code(_)
            ),
            "remembered"
        );
        assert!(
            matches!(
                begin(&f.core, &partner(&[("prompt", "consent")]), secret)
                    .await
                    .unwrap(),
                Outcome::Consent { .. }
            ),
            "prompt=consent asks again"
        );
    }

    #[tokio::test]
    async fn denying_consent_answers_access_denied_and_remembers_nothing() {
        let f = fixture_with_clients();
        let login = signed_in(&f, "alice@example.com").await;
        let secret = Some(login.session_secret.as_str());
        let Outcome::Consent { pending_id } = begin(&f.core, &partner(&[]), secret).await.unwrap()
        else {
            panic!("consent expected");
        };
        let Outcome::Error(error) = consent_answer(&f.core, &pending_id, secret, false)
            .await
            .unwrap()
        else {
            panic!("an error for the client expected");
        };
        assert_eq!(
            (error.error, error.state.as_deref()),
            ("access_denied", Some("st"))
        );
        assert_eq!(
            f.core
                .db
                .oauth_consent(login.user_id, "partner")
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn prompt_none_needing_consent_is_consent_required() {
        let f = fixture_with_clients();
        let login = signed_in(&f, "alice@example.com").await;
        let outcome = begin(
            &f.core,
            &partner(&[("prompt", "none")]),
            Some(&login.session_secret),
        )
        .await
        .unwrap();
        let Outcome::Error(error) = outcome else {
            panic!("{outcome:?}");
        };
        assert_eq!(error.error, "consent_required");
    }
}
