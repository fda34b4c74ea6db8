//! Enrolment at sign-in (a realm with `mfa.totp.required`, an account without TOTP): the
//! sign-in waiting in this browser's `__Host-portcullis_mfa` cookie shows a new TOTP secret as
//! a QR code and as text, and the first code turns TOTP on and completes the sign-in. The
//! recovery codes are shown once, before the browser goes on. Nothing is issued before the
//! code: the same pending login as the API's `/api/v1/login/mfa/enrol`.

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::account::ACCOUNT_PATH;
use super::login_mfa::{MfaQuery, mfa_token};
use super::{Chrome, error_page, form_csrf_ok, html, with_form_csrf, with_req};
use crate::auth::AuthError;
use crate::auth::login::LoginOutcome;
use crate::auth::mfa_login;
use crate::auth::oidc::flow;
use crate::auth::principal::RequestMeta;
use crate::http::caller::PresentedSession;
use crate::http::cookies;
use crate::http::error::ApiError;
use crate::http::extract::{ApiQuery, FormPairs};
use crate::http::routes::oidc::see_other;
use crate::http::state::AppState;

/// Where the page is served.
pub const PATH: &str = "/login/mfa/enrol";

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(show, submit))
}

#[derive(Template)]
#[template(path = "login_enrol.html")]
struct EnrolPage {
    chrome: Chrome,
    csrf: String,
    svg: String,
    secret: String,
    req: Option<String>,
    next: bool,
    error: Option<String>,
    restart: String,
}

#[derive(Template)]
#[template(path = "login_enrolled.html")]
struct EnrolledPage {
    chrome: Chrome,
    recovery_codes: Vec<String>,
    continue_to: String,
}

/// The enrolment form, as the OpenAPI document describes it (the handler reads its pairs).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct EnrolForm {
    /// The first code of the authenticator app.
    code: Option<String>,
    /// The form's CSRF token.
    csrf: Option<String>,
    /// The pending authorization request, when there is one.
    req: Option<String>,
    /// `/account` to go there after signing in.
    next: Option<String>,
}

/// The login page to start again from.
fn restart(req: Option<&str>, next: bool) -> String {
    if next {
        "/login?next=%2Faccount".to_owned()
    } else {
        with_req("/login", req)
    }
}

/// A new enrolment for the sign-in of `token`, shown with `error` when there is one; `None`
/// when no such sign-in waits (expired, ended by wrong codes, another stage).
async fn page(
    state: &AppState,
    headers: &HeaderMap,
    token: &str,
    status: StatusCode,
    (req, next): (Option<String>, bool),
    error: Option<&str>,
) -> Result<Option<Response>, ApiError> {
    let shown = match mfa_login::begin_enrolment(&state.core, token).await {
        Ok(shown) => shown,
        Err(AuthError::InvalidTotp) => return Ok(None),
        Err(other) => return Err(other.into()),
    };
    let svg = portcullis_mfa::qr_svg(
        &shown.otpauth_uri,
        "Scan this code with your authenticator app",
    )
    .map_err(|e| AuthError::Internal(format!("QR code: {e}")))?
    .replacen("<svg ", "<svg id=\"totp-qr\" ", 1);
    let restart = restart(req.as_deref(), next);
    Ok(Some(with_form_csrf(state, headers, |csrf| {
        html(
            status,
            &EnrolPage {
                chrome: Chrome::of(state),
                csrf,
                svg,
                secret: shown.secret,
                req,
                next,
                error: error.map(str::to_owned),
                restart,
            },
        )
    })))
}

/// Too many attempts for the account: a page saying so, with `Retry-After`.
fn too_many(state: &AppState, retry_after_secs: u64) -> Response {
    let mut response = error_page(
        state,
        StatusCode::TOO_MANY_REQUESTS,
        "Too many attempts. Start again in a few minutes.",
    );
    if let Ok(value) = HeaderValue::from_str(&retry_after_secs.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// The login page again: no sign-in waits for enrolment in this browser.
fn start_again(req: Option<&str>, next: bool) -> Response {
    see_other(&restart(req, next))
}

/// The enrolment page: a new secret each time it is shown (the previous one is void).
#[utoipa::path(
    get,
    path = "/login/mfa/enrol",
    params(MfaQuery),
    responses(
        (status = 200, description = "The QR code (`#totp-qr`), the key as text and the code form", body = String, content_type = "text/html"),
        (status = 303, description = "No sign-in waits for enrolment in this browser: to the login page"),
        (status = 429, description = "Too many attempts for this account", body = String, content_type = "application/problem+json"),
    )
)]
async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<MfaQuery>,
) -> Result<Response, ApiError> {
    let next = query.next.as_deref() == Some(ACCOUNT_PATH);
    let req = query.req.filter(|r| !r.is_empty());
    let Some(token) = mfa_token(&headers) else {
        return Ok(start_again(req.as_deref(), next));
    };
    let shown = page(
        &state,
        &headers,
        &token,
        StatusCode::OK,
        (req.clone(), next),
        None,
    )
    .await?;
    Ok(shown.unwrap_or_else(|| start_again(req.as_deref(), next)))
}

/// Turns TOTP on with its first code and completes the sign-in.
#[utoipa::path(
    post,
    path = "/login/mfa/enrol",
    request_body(content = EnrolForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "On and signed in: the recovery codes (`#recovery-codes`, shown once) and a link on; `Set-Cookie` carries the session. Or the privacy policy page, with the codes, when the policy waits", body = String, content_type = "text/html"),
        (status = 303, description = "No sign-in waits for enrolment in this browser: to the login page"),
        (status = 400, description = "A wrong or missing code: a new secret to scan, with the message", body = String, content_type = "text/html"),
        (status = 403, description = "CSRF check failed", body = String, content_type = "text/html"),
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
    let csrf_ok = form_csrf_ok(&state, &headers, &field("csrf").unwrap_or_default());
    let Some(token) = mfa_token(&headers) else {
        if !csrf_ok {
            return Ok(error_page(
                &state,
                StatusCode::FORBIDDEN,
                "This form expired. Please sign in again.",
            ));
        }
        return Ok(start_again(req.as_deref(), next));
    };
    // A refusal shows a new secret (the store replaced the one the user scanned).
    let again = |status: StatusCode, message: &'static str| {
        let (state, headers, token, req) = (&state, &headers, &token, req.clone());
        async move {
            let shown = page(
                state,
                headers,
                token,
                status,
                (req.clone(), next),
                Some(message),
            )
            .await?;
            Ok::<_, ApiError>(shown.unwrap_or_else(|| start_again(req.as_deref(), next)))
        }
    };
    if !csrf_ok {
        return again(
            StatusCode::FORBIDDEN,
            "This form expired. Scan the new code and try again.",
        )
        .await;
    }
    let Some(code) = field("code") else {
        return again(
            StatusCode::BAD_REQUEST,
            "Enter the code from your authenticator app. Scan this new code first.",
        )
        .await;
    };
    let confirmed =
        mfa_login::confirm_enrolment(&state.core, &token, &code, &meta, previous.as_deref()).await;
    let (outcome, codes) = match confirmed {
        Ok(done) => done,
        Err(AuthError::InvalidTotp) => {
            return again(
                StatusCode::BAD_REQUEST,
                "The code did not match. Scan this new code, then enter the code your app shows.",
            )
            .await;
        }
        Err(AuthError::NoPendingEnrolment) => {
            return again(
                StatusCode::BAD_REQUEST,
                "That set-up expired. Scan this new code.",
            )
            .await;
        }
        Err(AuthError::AccountLocked { retry_after, .. }) => {
            return Ok(too_many(&state, retry_after.as_secs().max(1)));
        }
        Err(AuthError::RateLimited(refusal)) => {
            return Ok(too_many(&state, refusal.retry_after_secs));
        }
        Err(other) => return Err(other.into()),
    };
    let codes: Vec<String> = codes.iter().map(|c| c.as_str().to_owned()).collect();
    let mut response = match outcome {
        LoginOutcome::Signed(success) => {
            let continue_to = match req.as_deref() {
                Some(req) if flow::logged_in(&state.core, req, &success.session_id).await? => {
                    with_req("/oauth2/authorize/resume", Some(req))
                }
                Some(_) => {
                    return Ok(error_page(
                        &state,
                        StatusCode::BAD_REQUEST,
                        "Two-step sign-in is on, but this sign-in request has expired. Sign in again from the app.",
                    ));
                }
                None => ACCOUNT_PATH.to_owned(),
            };
            let mut response = html(
                StatusCode::OK,
                &EnrolledPage {
                    chrome: Chrome::of(&state),
                    recovery_codes: codes,
                    continue_to,
                },
            );
            let cookie = cookies::session_cookie(
                &success.session_secret,
                state.web.cookie_max_age,
                state.web.same_site,
            );
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
            if let Some(device) = &success.device_cookie
                && let Ok(value) = HeaderValue::from_str(&crate::notify::device::set_cookie(device))
            {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
            response
        }
        LoginOutcome::ConsentRequired { consent_token } => {
            super::policy_consent::for_login_showing(
                &state,
                &headers,
                consent_token,
                req,
                next,
                codes,
            )
        }
        LoginOutcome::MfaRequired { .. } | LoginOutcome::MfaEnrolmentRequired { .. } => {
            start_again(req.as_deref(), next)
        }
    };
    if let Ok(value) = HeaderValue::from_str(&cookies::clear_mfa_cookie()) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}
