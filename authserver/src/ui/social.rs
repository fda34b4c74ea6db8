//! Social sign-in pages: the start (off to the provider, the pending sign-in bound to this
//! browser by the `__Host-portcullis_social` cookie), the provider's callback, and the account
//! page's forms that link a provider to the signed-in account or unlink one. The decisions
//! are `auth::social`'s; these handlers turn them into redirects and pages. Nothing from the
//! provider (its error text, the callback's query) is shown or logged.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::account::{ACCOUNT_PATH, LOGIN_AND_BACK, Problems, form_caller, page};
use super::login::{signed_in, to_enrolment, to_second_factor};
use super::{error_page, notice};
use crate::auth::AuthError;
use crate::auth::login::LoginOutcome;
use crate::auth::principal::RequestMeta;
use crate::auth::social::{self, Finished, Purpose};
use crate::http::caller::PresentedSession;
use crate::http::cookies;
use crate::http::error::ApiError;
use crate::http::extract::{ApiPath, ApiQuery, FormPairs, first_value};
use crate::http::routes::oidc::see_other;
use crate::http::state::AppState;
use portcullis_social::{PENDING_TTL, SocialError};

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(start))
        .routes(routes!(callback))
        .routes(routes!(link))
        .routes(routes!(unlink))
}

/// Where a social sign-in goes after it.
#[derive(Deserialize, IntoParams)]
pub struct StartQuery {
    /// A pending authorization request to continue after signing in.
    req: Option<String>,
    /// A page of ours to go to after signing in: only `/account`.
    next: Option<String>,
}

/// The answer that sends the browser to the provider with the pending sign-in's cookie.
fn to_provider(started: &social::Started) -> Response {
    let mut response = see_other(&started.url);
    let cookie = cookies::social_cookie(&started.cookie, PENDING_TTL.unsigned_abs());
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// Starts a sign-in with provider `name`: off to it, back at its callback.
#[utoipa::path(
    get,
    path = "/oauth2/social/{name}/start",
    params(("name" = String, Path, description = "The realm's name for the provider"), StartQuery),
    responses(
        (status = 303, description = "To the provider's authorization page; `Set-Cookie` binds the sign-in to this browser"),
        (status = 404, description = "The realm has no such provider", body = String, content_type = "text/html"),
        (status = 502, description = "The provider cannot be reached or its discovery document is refused", body = String, content_type = "text/html"),
    )
)]
async fn start(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<StartQuery>,
) -> Result<Response, ApiError> {
    let purpose = Purpose::SignIn {
        req: query.req.filter(|r| !r.is_empty()),
        next: query.next.as_deref() == Some(ACCOUNT_PATH),
    };
    match social::start(&state.core, &name, purpose).await {
        Ok(started) => Ok(to_provider(&started)),
        Err(error) => refused_page(&state, error, &name),
    }
}

/// The provider's answer: signs in (or on to the second factor), creates the account, or
/// links the provider to the account that asked.
#[utoipa::path(
    get,
    path = "/oauth2/social/{name}/callback",
    params(("name" = String, Path, description = "The realm's name for the provider")),
    responses(
        (status = 200, description = "Signed in (no pending request)", body = String, content_type = "text/html"),
        (status = 303, description = "Signed in: on to the pending authorization request or the account page; or on to the second factor; or linked: back to the account page"),
        (status = 400, description = "No sign-in of this browser is under way (expired, already used) or the answer does not match it", body = String, content_type = "text/html"),
        (status = 403, description = "The identity may not sign in here (cancelled, domain not allowed, email not verified, account disabled)", body = String, content_type = "text/html"),
        (status = 404, description = "The realm has no such provider", body = String, content_type = "text/html"),
        (status = 409, description = "The identity is linked to another account, or its email's account must sign in before linking", body = String, content_type = "text/html"),
        (status = 502, description = "The provider's answer was refused (token, signature, issuer, nonce ...)", body = String, content_type = "text/html"),
        (status = 503, description = "A store is down, or another sign-in changed the account at the same moment; try again", body = String, content_type = "text/html"),
    )
)]
async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    meta: RequestMeta,
    PresentedSession(previous): PresentedSession,
    ApiPath(name): ApiPath<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(cookies::social_id_from_cookie_header)
        .map(str::to_owned);
    let finished = social::finish_callback(
        &state.core,
        &name,
        cookie.as_deref(),
        query.as_deref().unwrap_or(""),
        &meta,
        previous.as_deref(),
    )
    .await;
    let mut response = match finished {
        Ok(Finished::SignIn { outcome, req, next }) => match outcome {
            LoginOutcome::Signed(success) => {
                signed_in(&state, success, req.as_deref(), next).await?
            }
            LoginOutcome::MfaRequired { mfa_token } => {
                to_second_factor(&mfa_token, req.as_deref(), next)
            }
            LoginOutcome::MfaEnrolmentRequired { mfa_token } => {
                to_enrolment(&mfa_token, req.as_deref(), next)
            }
            // An account made here, or a policy changed since: its page, carrying the sign-in.
            LoginOutcome::ConsentRequired { consent_token } => {
                super::policy_consent::for_login(&state, &headers, consent_token, req, next)
            }
        },
        Ok(Finished::Linked) => see_other("/account?done=linked"),
        Err(error) => refused_page(&state, error, &name)?,
    };
    // The pending sign-in is spent whatever happened: its cookie goes too.
    if let Ok(value) = HeaderValue::from_str(&cookies::clear_social_cookie()) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// The page of a refused social sign-in: our words for it, never the provider's.
fn refused_page(state: &AppState, error: AuthError, name: &str) -> Result<Response, ApiError> {
    use SocialError as E;
    let (status, text): (StatusCode, String) = match &error {
        AuthError::NotFound => (StatusCode::NOT_FOUND, "There is no such sign-in provider here.".into()),
        AuthError::SocialLinkNeedsSignIn => {
            let text = format!(
                "An account with this email address already exists and is protected by two-step sign-in. Sign in to it with your password and code, then connect {name} on your account page."
            );
            return Ok(notice(
                state,
                StatusCode::CONFLICT,
                "Sign in to your account first",
                &[text.as_str()],
                Some((LOGIN_AND_BACK.to_owned(), "Sign in")),
            ));
        }
        AuthError::SocialLinkNeedsFreshSignIn => {
            return Ok(notice(
                state,
                StatusCode::FORBIDDEN,
                "Sign in again first",
                &["To connect another way to sign in, sign in again: it must be you, not someone at your unlocked computer."],
                Some((LOGIN_AND_BACK.to_owned(), "Sign in")),
            ));
        }
        AuthError::SocialSignUpNeedsPassword => (
            StatusCode::FORBIDDEN,
            "This service requires two-step sign-in. Create an account with a password first, then connect this provider on your account page.".into(),
        ),
        AuthError::InvalidCredentials => (
            StatusCode::BAD_REQUEST,
            "Your account changed while you were signing in. Please start again.".into(),
        ),
        AuthError::Unauthenticated => (
            StatusCode::FORBIDDEN,
            "Your session ended before the provider answered. Sign in again, then connect the provider once more.".into(),
        ),
        AuthError::AccountDisabled => (StatusCode::FORBIDDEN, "This account is disabled.".into()),
        AuthError::EmailNotVerified => (
            StatusCode::FORBIDDEN,
            "Confirm your email address first, with the link we mailed you.".into(),
        ),
        AuthError::Social(e) if e.is_upstream_fault() => (
            StatusCode::BAD_GATEWAY,
            format!("{name} did not complete the sign-in in a way we can accept. Please try again later."),
        ),
        AuthError::Social(e) => match e {
            E::Expired | E::StateMismatch | E::PendingFromTheFuture | E::MalformedCallback(_)
            | E::MissingCode | E::ProviderMismatch { .. } => (
                StatusCode::BAD_REQUEST,
                "This sign-in expired or was already used. Please start again.".into(),
            ),
            E::AccessDenied { .. } => (
                StatusCode::FORBIDDEN,
                "The sign-in was cancelled.".into(),
            ),
            E::DomainNotAllowed => (
                StatusCode::FORBIDDEN,
                format!("This service accepts {name} accounts of its own email domains only."),
            ),
            E::EmailRequired | E::EmailUnusable => (
                StatusCode::FORBIDDEN,
                format!("{name} did not give us an email address we can use."),
            ),
            E::EmailUnverified | E::UnverifiedEmailMatchesAccount => (
                StatusCode::FORBIDDEN,
                format!("{name} has not verified your email address. Verify it there, then try again."),
            ),
            E::AccountEmailUnverified => (
                StatusCode::FORBIDDEN,
                "An account with this email address exists but has not confirmed it. Sign in with its password first.".into(),
            ),
            E::AlreadyLinked => (
                StatusCode::CONFLICT,
                format!("This {name} account is already connected to another account."),
            ),
            E::Contended | E::UnknownUser => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Something changed at the same moment. Please try again.".into(),
            ),
            _ => return Err(crate::http::error::social_problem(e)),
        },
        // Not one this page words (a store down, too busy): answered as the API would.
        _ => return Err(error.into()),
    };
    if let Some(store) = error.failed_store() {
        state.metrics.store_failed(store);
    }
    Ok(error_page(state, status, &text))
}

/// The account page's link form.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct LinkForm {
    /// The provider's name.
    provider: Option<String>,
    /// The session's CSRF token.
    csrf: Option<String>,
}

/// Links a provider to the signed-in account: off to the provider; its callback links the
/// identity that comes back to this session's user.
#[utoipa::path(
    post,
    path = "/account/identities/link",
    request_body(content = LinkForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "To the provider; `Set-Cookie` binds the link to this browser"),
        (status = 403, description = "Not signed in, or the CSRF check failed", body = String, content_type = "text/html"),
        (status = 404, description = "The realm has no such provider", body = String, content_type = "text/html"),
    )
)]
async fn link(
    State(state): State<AppState>,
    PresentedSession(secret): PresentedSession,
    FormPairs(form): FormPairs,
) -> Result<Response, ApiError> {
    let field = |name: &str| first_value(&form, name);
    let principal = match form_caller(&state, secret.as_deref(), field("csrf")).await? {
        Ok(principal) => principal,
        Err(answer) => return Ok(answer),
    };
    let name = field("provider");
    match social::start_link(&state.core, name, &principal).await {
        Ok(started) => Ok(to_provider(&started)),
        Err(AuthError::NotFound) => {
            let problems = Problems::saying("There is no such sign-in provider here.");
            page(&state, &principal, StatusCode::NOT_FOUND, None, problems).await
        }
        Err(error) => refused_page(&state, error, name),
    }
}

/// The account page's unlink form.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UnlinkForm {
    /// The linked identity's id.
    id: Option<String>,
    /// The session's CSRF token.
    csrf: Option<String>,
}

/// Unlinks a provider from the signed-in account, while another way to sign in remains.
#[utoipa::path(
    post,
    path = "/account/identities/unlink",
    request_body(content = UnlinkForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Unlinked: back to the account page"),
        (status = 403, description = "Not signed in, or the CSRF check failed", body = String, content_type = "text/html"),
        (status = 404, description = "No such linked identity of the caller: the page again", body = String, content_type = "text/html"),
        (status = 409, description = "It is the last way to sign in: the page again", body = String, content_type = "text/html"),
    )
)]
async fn unlink(
    State(state): State<AppState>,
    PresentedSession(secret): PresentedSession,
    meta: RequestMeta,
    FormPairs(form): FormPairs,
) -> Result<Response, ApiError> {
    let field = |name: &str| first_value(&form, name);
    let principal = match form_caller(&state, secret.as_deref(), field("csrf")).await? {
        Ok(principal) => principal,
        Err(answer) => return Ok(answer),
    };
    let Ok(id) = uuid::Uuid::parse_str(field("id")) else {
        let problems = Problems::saying("That sign-in method is not connected.");
        return page(&state, &principal, StatusCode::NOT_FOUND, None, problems).await;
    };
    match social::unlink(&state.core, &principal, id, &meta).await {
        Ok(()) => Ok(see_other("/account?done=unlinked")),
        Err(AuthError::NotFound) => {
            let problems = Problems::saying("That sign-in method is not connected.");
            page(&state, &principal, StatusCode::NOT_FOUND, None, problems).await
        }
        Err(AuthError::Social(SocialError::LastSignInMethod)) => {
            let problems = Problems::saying(
                "This is your only way to sign in. Set a password (use “Forgot your password?” on the sign-in page) or connect another provider first.",
            );
            page(&state, &principal, StatusCode::CONFLICT, None, problems).await
        }
        Err(other) => Err(other.into()),
    }
}
