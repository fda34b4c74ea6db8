//! The second step of a hosted sign-in: a TOTP code or a recovery code for the login waiting
//! in this browser's `__Host-portcullis_mfa` cookie (set by the login form; the pending login
//! itself stays server-side under the token's digest). With a pre-session CSRF token like the
//! other forms; on success it goes on as the login form would (the pending authorization
//! request, the account page, or the signed-in page).

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::account::ACCOUNT_PATH;
use super::{Chrome, form_csrf_ok, html, passing_failure, with_form_csrf, with_req};
use crate::auth::AuthError;
use crate::auth::login::LoginOutcome;
use crate::auth::mfa_login::{self, SecondFactor};
use crate::auth::principal::RequestMeta;
use crate::http::caller::PresentedSession;
use crate::http::cookies;
use crate::http::error::ApiError;
use crate::http::extract::{ApiQuery, FormPairs};

/// Where the page is served.
pub const PATH: &str = "/login/mfa";

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(show, submit))
}

use crate::http::state::AppState;

#[derive(Template)]
#[template(path = "login_mfa.html")]
struct MfaPage {
    chrome: Chrome,
    csrf: String,
    req: Option<String>,
    next: bool,
    error: Option<String>,
    restart: String,
}

/// The page's query.
#[derive(Deserialize, IntoParams)]
pub struct MfaQuery {
    /// The pending authorization request to continue after signing in.
    pub(super) req: Option<String>,
    /// `/account` to go there after signing in.
    pub(super) next: Option<String>,
}

/// The second-factor form, as the OpenAPI document describes it (the handler reads its pairs).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct MfaForm {
    /// A TOTP code.
    code: Option<String>,
    /// Or a recovery code.
    recovery_code: Option<String>,
    /// The form's CSRF token.
    csrf: Option<String>,
    /// The pending authorization request, when there is one.
    req: Option<String>,
    /// `/account` to go there after signing in.
    next: Option<String>,
}

fn page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    req: Option<String>,
    next: bool,
    error: Option<&str>,
) -> Response {
    let restart = if next {
        "/login?next=%2Faccount".to_owned()
    } else {
        with_req("/login", req.as_deref())
    };
    with_form_csrf(state, headers, |csrf| {
        html(
            status,
            &MfaPage {
                chrome: Chrome::of(state),
                csrf,
                req,
                next,
                error: error.map(str::to_owned),
                restart,
            },
        )
    })
}

/// The pending login's token this browser carries.
pub(super) fn mfa_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(cookies::mfa_token_from_cookie_header)
        .map(str::to_owned)
}

/// The second-factor page.
#[utoipa::path(
    get,
    path = "/login/mfa",
    params(MfaQuery),
    responses(
        (status = 200, description = "The code form", body = String, content_type = "text/html"),
        (status = 303, description = "No sign-in waits in this browser: to the login page"),
    )
)]
async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<MfaQuery>,
) -> Result<Response, ApiError> {
    let next = query.next.as_deref() == Some(ACCOUNT_PATH);
    let req = query.req.filter(|r| !r.is_empty());
    if mfa_token(&headers).is_none() {
        return Ok(crate::http::routes::oidc::see_other(&with_req(
            "/login",
            req.as_deref(),
        )));
    }
    Ok(page(&state, &headers, StatusCode::OK, req, next, None))
}

/// Completes the sign-in with the second factor.
#[utoipa::path(
    post,
    path = "/login/mfa",
    request_body(content = MfaForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Signed in (no pending request); `Set-Cookie` carries the session", body = String, content_type = "text/html"),
        (status = 303, description = "Signed in; on to the pending authorization request or the account page (`Location`)"),
        (status = 400, description = "A wrong or used code, or no code: the form again", body = String, content_type = "text/html"),
        (status = 403, description = "CSRF check failed: the form again", body = String, content_type = "text/html"),
        (status = 429, description = "Too many attempts or locked (`Retry-After`)", body = String, content_type = "text/html"),
        (status = 503, description = "A dependency is down; try again", body = String, content_type = "text/html"),
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
            .map(|(_, v)| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let req = field("req");
    let next = field("next").as_deref() == Some(ACCOUNT_PATH);
    let again = |status: StatusCode, error: &str| {
        page(&state, &headers, status, req.clone(), next, Some(error))
    };
    if !form_csrf_ok(&state, &headers, &field("csrf").unwrap_or_default()) {
        return Ok(again(
            StatusCode::FORBIDDEN,
            "This form expired. Please try again.",
        ));
    }
    let Some(token) = mfa_token(&headers) else {
        return Ok(again(
            StatusCode::BAD_REQUEST,
            "This sign-in has expired. Start again.",
        ));
    };
    let factor = match (field("code"), field("recovery_code")) {
        (Some(code), _) => SecondFactor::Code(code),
        (None, Some(code)) => SecondFactor::RecoveryCode(code),
        (None, None) => {
            return Ok(again(
                StatusCode::BAD_REQUEST,
                "Enter the code from your authenticator app, or a recovery code.",
            ));
        }
    };
    let outcome =
        mfa_login::complete(&state.core, &token, &factor, &meta, previous.as_deref()).await;
    let success = match outcome {
        Ok(LoginOutcome::Signed(success)) => success,
        Ok(LoginOutcome::ConsentRequired { consent_token }) => {
            let mut response =
                super::policy_consent::for_login(&state, &headers, consent_token, req, next);
            if let Ok(value) = HeaderValue::from_str(&cookies::clear_mfa_cookie()) {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
            return Ok(response);
        }
        Ok(LoginOutcome::MfaRequired { .. } | LoginOutcome::MfaEnrolmentRequired { .. }) => {
            return Ok(again(
                StatusCode::BAD_REQUEST,
                "This sign-in has expired. Start again.",
            ));
        }
        Err(AuthError::InvalidTotp) => {
            return Ok(again(
                StatusCode::BAD_REQUEST,
                "The code is wrong or was used already. After several wrong codes, start again.",
            ));
        }
        Err(AuthError::AccountLocked { retry_after, .. }) => {
            let seconds = retry_after.as_secs().max(1);
            let mut response = again(
                StatusCode::TOO_MANY_REQUESTS,
                &format!(
                    "Too many failed attempts. Try again in {} minute(s).",
                    seconds.div_ceil(60)
                ),
            );
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return Ok(response);
        }
        Err(AuthError::RateLimited(refusal)) => {
            let mut response = again(
                StatusCode::TOO_MANY_REQUESTS,
                &format!(
                    "Too many attempts. Try again in {} second(s).",
                    refusal.retry_after_secs
                ),
            );
            if let Ok(value) = HeaderValue::from_str(&refusal.retry_after_secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return Ok(response);
        }
        Err(other) => {
            let (status, message) = passing_failure(&state, other)?;
            return Ok(again(status, message));
        }
    };
    let mut response = super::login::signed_in(&state, success, req.as_deref(), next).await?;
    if let Ok(value) = HeaderValue::from_str(&cookies::clear_mfa_cookie()) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}
