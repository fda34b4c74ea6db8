//! The login page: a form with a pre-session CSRF token that signs in with the same rules as
//! `POST /api/v1/login` (lockout, same answer for unknown accounts) and, when it was opened
//! for a pending authorization request, goes on to that request.

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::account::ACCOUNT_PATH;
use super::{Chrome, error_page, form_csrf_ok, html, with_form_csrf, with_req};
use crate::auth::login::LoginOutcome;
use crate::auth::oidc::flow;
use crate::auth::principal::RequestMeta;
use crate::auth::{AuthError, login as login_case};
use crate::http::caller::PresentedSession;
use crate::http::cookies;
use crate::http::error::ApiError;
use crate::http::extract::{ApiQuery, FormPairs};
use crate::http::routes::oidc::see_other;
use crate::http::state::AppState;

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(show, submit))
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    chrome: Chrome,
    csrf: String,
    req: Option<String>,
    client: Option<String>,
    email: String,
    error: Option<String>,
    register: String,
    reset: String,
    next: bool,
    /// The realm's social providers: (start link, button text).
    providers: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "signed_in.html")]
struct SignedIn {
    chrome: Chrome,
}

/// The login page's query.
#[derive(Deserialize, IntoParams)]
pub struct LoginQuery {
    /// A pending authorization request to continue after signing in.
    req: Option<String>,
    /// A page of ours to go to after signing in: only `/account`.
    next: Option<String>,
}

/// The login form, as the OpenAPI document describes it (the handler reads its pairs).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct LoginForm {
    /// Email address.
    email: Option<String>,
    /// Password.
    password: Option<String>,
    /// The form's CSRF token.
    csrf: Option<String>,
    /// The pending authorization request, when there is one.
    req: Option<String>,
    /// `/account` to go there after signing in.
    next: Option<String>,
}

/// The page's form, with the CSRF cookie to set when the browser has none yet.
fn page(state: &AppState, headers: &HeaderMap, status: StatusCode, form: LoginFields) -> Response {
    let register = with_req("/register", form.req.as_deref());
    let reset = with_req("/reset-password", form.req.as_deref());
    let providers = social_links(state, form.req.as_deref(), form.next);
    with_form_csrf(state, headers, |csrf| {
        html(
            status,
            &LoginPage {
                chrome: Chrome::of(state),
                csrf,
                req: form.req,
                client: form.client,
                email: form.email,
                error: form.error,
                register,
                reset,
                next: form.next,
                providers,
            },
        )
    })
}

/// The start link and button text of each of the realm's social providers, carrying on to
/// the pending request `req` or (with `next`) the account page.
fn social_links(state: &AppState, req: Option<&str>, next: bool) -> Vec<(String, String)> {
    let Some(social) = state.core.social() else {
        return Vec::new();
    };
    social
        .choices()
        .into_iter()
        .map(|choice| {
            let start = format!("/oauth2/social/{}/start", choice.name);
            let href = match (req, next) {
                (Some(_), _) => with_req(&start, req),
                (None, true) => format!("{start}?next=%2Faccount"),
                (None, false) => start,
            };
            (href, format!("Sign in with {}", choice.label))
        })
        .collect()
}

#[derive(Default)]
struct LoginFields {
    req: Option<String>,
    /// Whether to go on to the account page.
    next: bool,
    client: Option<String>,
    email: String,
    error: Option<String>,
}

/// The login page; with `req`, for a pending authorization request.
#[utoipa::path(
    get,
    path = "/login",
    params(LoginQuery),
    responses(
        (status = 200, description = "The login form", body = String, content_type = "text/html"),
        (status = 400, description = "The authorization request expired or is unknown", body = String, content_type = "text/html"),
    )
)]
async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<LoginQuery>,
) -> Result<Response, ApiError> {
    let mut fields = LoginFields::default();
    if let Some(req) = query.req.filter(|r| !r.is_empty()) {
        let Some(view) = flow::pending_view(&state.core, &req).await? else {
            return Ok(expired(&state));
        };
        fields.email = view.login_hint.unwrap_or_default();
        fields.client = Some(view.client_id);
        fields.req = Some(req);
    }
    fields.next = query.next.as_deref() == Some(ACCOUNT_PATH);
    Ok(page(&state, &headers, StatusCode::OK, fields))
}

fn expired(state: &AppState) -> Response {
    error_page(
        state,
        StatusCode::BAD_REQUEST,
        "This sign-in request has expired or is unknown.",
    )
}

/// Signs in; goes on to the pending authorization request, if any.
#[utoipa::path(
    post,
    path = "/login",
    request_body(content = LoginForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Signed in (no pending request); `Set-Cookie` carries the session", body = String, content_type = "text/html"),
        (status = 303, description = "Signed in; on to the pending authorization request (`Location`)"),
        (status = 400, description = "Wrong email or password, or an expired request: the form again", body = String, content_type = "text/html"),
        (status = 403, description = "CSRF check failed, email not verified or account disabled: the form again", body = String, content_type = "text/html"),
        (status = 429, description = "Locked after failed attempts (`Retry-After`)", body = String, content_type = "text/html"),
        (status = 503, description = "Too busy or a dependency is down; try again", body = String, content_type = "text/html"),
    )
)]
async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    meta: RequestMeta,
    PresentedSession(previous): PresentedSession,
    FormPairs(pairs): FormPairs,
) -> Result<Response, ApiError> {
    let field = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    let req = field("req");
    let next = field("next").as_deref() == Some(ACCOUNT_PATH);
    let email = field("email").unwrap_or_default();
    let again = |status: StatusCode, error: &str| {
        page(
            &state,
            &headers,
            status,
            LoginFields {
                req: req.clone(),
                next,
                client: None,
                email: email.clone(),
                error: Some(error.to_owned()),
            },
        )
    };
    if !form_csrf_ok(&state, &headers, &field("csrf").unwrap_or_default()) {
        return Ok(again(
            StatusCode::FORBIDDEN,
            "This form expired. Please sign in again.",
        ));
    }
    let password = field("password").unwrap_or_default();
    let success =
        match login_case::login(&state.core, &email, &password, &meta, previous.as_deref()).await {
            Ok(LoginOutcome::Signed(success)) => success,
            // No session before the second factor: on to its page, the pending login bound to
            // this browser by its cookie.
            Ok(LoginOutcome::MfaRequired { mfa_token }) => {
                return Ok(to_second_factor(&mfa_token, req.as_deref(), next));
            }
            // The privacy policy changed since the user accepted it: its page, carrying the
            // pending sign-in.
            Ok(LoginOutcome::ConsentRequired { consent_token }) => {
                return Ok(super::policy_consent::for_login(
                    &state,
                    &headers,
                    consent_token,
                    req.clone(),
                    next,
                ));
            }
            // The realm requires a second factor the account has not set up: that first.
            Ok(LoginOutcome::MfaEnrolmentRequired { mfa_token }) => {
                return Ok(to_enrolment(&mfa_token, req.as_deref(), next));
            }
            Err(error) => {
                // The page below is not an `ApiError`: count a store outage here.
                if let Some(store) = error.failed_store() {
                    state.metrics.store_failed(store);
                }
                let (status, message, retry) = refusal(&error);
                let mut response = again(status, &message);
                if let Some(seconds) = retry
                    && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
                {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
                return Ok(response);
            }
        };
    signed_in(&state, success, req.as_deref(), next).await
}

/// On to the second factor's page, the pending login `mfa_token` bound to this browser by its
/// cookie (no session before the second factor).
pub(super) fn to_second_factor(mfa_token: &str, req: Option<&str>, next: bool) -> Response {
    to_pending_step(super::login_mfa::PATH, mfa_token, req, next)
}

/// On to enrolling the second factor the realm requires, the pending login `mfa_token` bound
/// to this browser by its cookie.
pub(super) fn to_enrolment(mfa_token: &str, req: Option<&str>, next: bool) -> Response {
    to_pending_step(super::login_enrol::PATH, mfa_token, req, next)
}

/// On to `path`, a step of the pending login `mfa_token`, carrying on to `req` or `next`.
fn to_pending_step(path: &str, mfa_token: &str, req: Option<&str>, next: bool) -> Response {
    let target = match (req, next) {
        (Some(req), _) => with_req(path, Some(req)),
        (None, true) => format!("{path}?next=%2Faccount"),
        (None, false) => path.to_owned(),
    };
    let mut response = see_other(&target);
    if let Ok(value) = HeaderValue::from_str(&cookies::mfa_cookie(
        mfa_token,
        crate::auth::mfa_login::MFA_LOGIN_TTL,
    )) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// The answer of a hosted sign-in that started a session: on to the pending authorization
/// request `req` (or an expired-request page), to the account page when `next`, else the
/// signed-in page; with the session cookie and, for a new device, the device cookie.
pub(super) async fn signed_in(
    state: &AppState,
    success: crate::auth::login::LoginSuccess,
    req: Option<&str>,
    next: bool,
) -> Result<Response, ApiError> {
    let device_cookie = success.device_cookie.clone();
    let cookie = cookies::session_cookie(
        &success.session_secret,
        state.web.cookie_max_age,
        state.web.same_site,
    );
    let mut response = match req {
        Some(req) if flow::logged_in(&state.core, req, &success.session_id).await? => {
            see_other(&with_req("/oauth2/authorize/resume", Some(req)))
        }
        Some(_) => expired(state),
        None if next => see_other(ACCOUNT_PATH),
        None => html(
            StatusCode::OK,
            &SignedIn {
                chrome: Chrome::of(state),
            },
        ),
    };
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    if let Some(device) = &device_cookie
        && let Ok(value) = HeaderValue::from_str(&crate::notify::device::set_cookie(device))
    {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// The status, message and `Retry-After` of a refused login. The message for a wrong email and
/// a wrong password is the same, and so is the lock, whether or not the account exists.
fn refusal(error: &AuthError) -> (StatusCode, String, Option<u64>) {
    match error {
        AuthError::InvalidCredentials => (
            StatusCode::BAD_REQUEST,
            "The email address or password is wrong.".to_owned(),
            None,
        ),
        AuthError::AccountLocked { retry_after, .. } => {
            let seconds = retry_after.as_secs().max(1);
            (
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "Too many failed attempts. Try again in {} minute(s).",
                    seconds.div_ceil(60)
                ),
                Some(seconds),
            )
        }
        AuthError::RateLimited(refusal) => (
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Too many sign-in attempts. Try again in {} second(s).",
                refusal.retry_after_secs
            ),
            Some(refusal.retry_after_secs),
        ),
        AuthError::RateLimitUnavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "We cannot sign you in right now. Please try again in a moment.".to_owned(),
            Some(5),
        ),
        AuthError::EmailNotVerified => (
            StatusCode::FORBIDDEN,
            "Confirm your email address first, with the link we mailed you.".to_owned(),
            None,
        ),
        AuthError::AccountDisabled => (
            StatusCode::FORBIDDEN,
            "This account is disabled.".to_owned(),
            None,
        ),
        AuthError::Busy | AuthError::Unavailable(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "We cannot sign you in right now. Please try again in a moment.".to_owned(),
            Some(1),
        ),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Something went wrong on our side. Please try again.".to_owned(),
            None,
        ),
    }
}
