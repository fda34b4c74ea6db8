//! The OpenID Connect authorization endpoint (GET and POST, OpenID Connect Core §3.1.2.1), its
//! resumption after the login page, and the end-session endpoint (RP-initiated logout). Answers: an error page when the client or redirect URI
//! cannot be trusted, otherwise a 303 to the redirect URI (or a form_post page) carrying
//! `code` or `error`, `state` and `iss` (RFC 9207), or a 303 to the login page.

use crate::auth::principal::RequestMeta;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::oidc::authorize::ResponseMode;
use crate::auth::oidc::flow::{self, Outcome};
use crate::auth::oidc::logout::{self, LogoutOutcome};
use crate::http::caller::PresentedSession;
use crate::http::cookies;
use crate::http::error::ApiError;
use crate::http::extract::{ApiQuery, FormPairs, first_value, query_pairs};
use crate::http::state::AppState;
use crate::ui;

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(authorize_get, authorize_post))
        .routes(routes!(resume))
        .routes(routes!(logout_get, logout_post))
        .routes(routes!(logout_confirm))
}

/// RP-initiated logout parameters (OpenID Connect RP-Initiated Logout 1.0 §2).
#[derive(Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct LogoutParams {
    /// An ID token this realm issued to the client (may be expired).
    id_token_hint: Option<String>,
    /// The client, when there is no hint (or the hint's audience).
    client_id: Option<String>,
    /// One of the client's registered post-logout redirect URIs, byte for byte.
    post_logout_redirect_uri: Option<String>,
    /// Echoed on the redirect.
    state: Option<String>,
}

/// End-session endpoint (GET).
#[utoipa::path(
    get,
    path = "/oauth2/logout",
    params(LogoutParams),
    responses(
        (status = 303, description = "Signed out: to the registered post-logout redirect URI with `state`"),
        (status = 200, description = "A confirmation page, or the signed-out page", body = String, content_type = "text/html"),
        (status = 400, description = "An unknown client, a foreign ID token or an unregistered redirect URI: an error page", body = String, content_type = "text/html"),
    )
)]
async fn logout_get(
    State(state): State<AppState>,
    PresentedSession(session): PresentedSession,
    meta: RequestMeta,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let params = query_pairs(query.as_deref());
    let outcome = logout::begin(&state.core, &params, session.as_deref(), &meta).await?;
    Ok(logout_answer(&state, outcome))
}

/// End-session endpoint (POST, form-encoded).
#[utoipa::path(
    post,
    path = "/oauth2/logout",
    request_body(content = Option<LogoutParams>, content_type = "application/x-www-form-urlencoded", description = "Every parameter is optional: without any, the browser's session (if any) is asked to confirm"),
    responses(
        (status = 303, description = "Signed out: to the registered post-logout redirect URI with `state`"),
        (status = 200, description = "A confirmation page, or the signed-out page", body = String, content_type = "text/html"),
        (status = 400, description = "An unknown client, a foreign ID token or an unregistered redirect URI: an error page", body = String, content_type = "text/html"),
    )
)]
async fn logout_post(
    State(state): State<AppState>,
    PresentedSession(session): PresentedSession,
    meta: RequestMeta,
    FormPairs(params): FormPairs,
) -> Result<Response, ApiError> {
    let outcome = logout::begin(&state.core, &params, session.as_deref(), &meta).await?;
    Ok(logout_answer(&state, outcome))
}

/// The logout confirmation form.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct LogoutConfirmForm {
    /// The session's CSRF token.
    csrf: Option<String>,
    /// The pending logout.
    req: Option<String>,
}

/// Confirms a pending logout.
#[utoipa::path(
    post,
    path = "/oauth2/logout/confirm",
    request_body(content = LogoutConfirmForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Signed out: to the registered post-logout redirect URI with `state`"),
        (status = 200, description = "The signed-out page", body = String, content_type = "text/html"),
        (status = 400, description = "Expired, unknown or a failed CSRF check: an error page", body = String, content_type = "text/html"),
    )
)]
async fn logout_confirm(
    State(state): State<AppState>,
    PresentedSession(session): PresentedSession,
    meta: RequestMeta,
    FormPairs(form): FormPairs,
) -> Result<Response, ApiError> {
    let field = |name: &str| first_value(&form, name);
    let outcome = logout::confirm(
        &state.core,
        field("req"),
        session.as_deref(),
        field("csrf"),
        &meta,
    )
    .await?;
    Ok(logout_answer(&state, outcome))
}

fn logout_answer(state: &AppState, outcome: LogoutOutcome) -> Response {
    match outcome {
        LogoutOutcome::Page(description) => {
            ui::logout_error_page(state, StatusCode::BAD_REQUEST, &description)
        }
        LogoutOutcome::Confirm {
            pending_id,
            csrf,
            client,
        } => ui::logout_confirm(state, &pending_id, &csrf, client),
        LogoutOutcome::Done { redirect, ended } => {
            let mut response = match redirect {
                Some(uri) => see_other(&uri),
                None => ui::signed_out(state),
            };
            if ended && let Ok(value) = HeaderValue::from_str(&cookies::clear_cookie()) {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
            response
        }
    }
}

/// Authorization request parameters (OpenID Connect Core §3.1.2.1). Each at most once.
#[derive(Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct AuthorizeParams {
    /// The client.
    client_id: Option<String>,
    /// One of the client's registered redirect URIs, byte for byte.
    redirect_uri: Option<String>,
    /// `code`.
    response_type: Option<String>,
    /// Space-separated scopes, e.g. `openid email`.
    scope: Option<String>,
    /// Echoed to the client.
    state: Option<String>,
    /// Echoed in the ID token.
    nonce: Option<String>,
    /// PKCE challenge (required for public clients).
    code_challenge: Option<String>,
    /// `S256`.
    code_challenge_method: Option<String>,
    /// `query` (default) or `form_post`.
    response_mode: Option<String>,
    /// `none`, `login`, `consent` (space-separated).
    prompt: Option<String>,
    /// Maximum authentication age, seconds.
    max_age: Option<String>,
    /// Pre-fills the login form.
    login_hint: Option<String>,
}

/// Authorization endpoint (GET).
#[utoipa::path(
    get,
    path = "/oauth2/authorize",
    params(AuthorizeParams),
    responses(
        (status = 303, description = "To the client's redirect URI with `code` or `error`, `state` and `iss`; or to the login or consent page"),
        (status = 200, description = "form_post: a form that POSTs the response to the redirect URI", body = String, content_type = "text/html"),
        (status = 400, description = "Unknown client or unregistered redirect URI: an error page, never a redirect", body = String, content_type = "text/html"),
    )
)]
async fn authorize_get(
    State(state): State<AppState>,
    PresentedSession(session): PresentedSession,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let params = query_pairs(query.as_deref());
    let outcome = flow::begin(&state.core, &params, session.as_deref()).await?;
    Ok(answer(&state, outcome))
}

/// Authorization endpoint (POST, form-encoded).
#[utoipa::path(
    post,
    path = "/oauth2/authorize",
    request_body(content = AuthorizeParams, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "To the client's redirect URI with `code` or `error`, `state` and `iss`; or to the login or consent page"),
        (status = 200, description = "form_post: a form that POSTs the response to the redirect URI", body = String, content_type = "text/html"),
        (status = 400, description = "Unknown client or unregistered redirect URI: an error page, never a redirect", body = String, content_type = "text/html"),
    )
)]
async fn authorize_post(
    State(state): State<AppState>,
    PresentedSession(session): PresentedSession,
    FormPairs(params): FormPairs,
) -> Result<Response, ApiError> {
    let outcome = flow::begin(&state.core, &params, session.as_deref()).await?;
    Ok(answer(&state, outcome))
}

/// The pending request to resume.
#[derive(Deserialize, IntoParams)]
pub struct ResumeQuery {
    /// Id of the pending authorization request.
    req: Option<String>,
}

/// Continues a pending authorization request after the login page (once).
#[utoipa::path(
    get,
    path = "/oauth2/authorize/resume",
    params(ResumeQuery),
    responses(
        (status = 303, description = "To the client's redirect URI with `code` or `error`, `state` and `iss`; or back to the login page"),
        (status = 200, description = "form_post: a form that POSTs the response to the redirect URI", body = String, content_type = "text/html"),
        (status = 400, description = "The request expired, is unknown or was used", body = String, content_type = "text/html"),
    )
)]
async fn resume(
    State(state): State<AppState>,
    PresentedSession(session): PresentedSession,
    ApiQuery(query): ApiQuery<ResumeQuery>,
) -> Result<Response, ApiError> {
    let id = query.req.unwrap_or_default();
    let outcome = flow::resume(&state.core, &id, session.as_deref()).await?;
    Ok(answer(&state, outcome))
}

/// A 303 to `location`.
pub fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// A 303 to one of our pages (`/login`, `/consent`) for the pending request `pending_id`
/// (its `req` parameter).
fn to_pending_page(path: &str, pending_id: &str) -> Response {
    see_other(&ui::with_req(path, Some(pending_id)))
}

/// The browser's answer for an outcome.
pub fn answer(state: &AppState, outcome: Outcome) -> Response {
    match outcome {
        Outcome::Page(description) => ui::error_page(state, StatusCode::BAD_REQUEST, &description),
        Outcome::Login { pending_id } => to_pending_page("/login", &pending_id),
        Outcome::Consent { pending_id } => to_pending_page("/consent", &pending_id),
        Outcome::PolicyConsent { pending_id } => to_pending_page("/consent/policy", &pending_id),
        Outcome::Error(error) => {
            let mut fields = vec![
                ("error", error.error.to_owned()),
                ("error_description", error.description),
            ];
            fields.extend(error.state.map(|s| ("state", s)));
            reply(state, &error.redirect_uri, error.response_mode, fields)
        }
        Outcome::Code(code) => {
            let mut fields = vec![("code", code.code)];
            fields.extend(code.state.map(|s| ("state", s)));
            reply(state, &code.redirect_uri, code.response_mode, fields)
        }
    }
}

/// An authorization response to a validated redirect URI: its own query kept, our parameters
/// appended (RFC 6749 §3.1.2), `iss` always (RFC 9207).
fn reply(
    state: &AppState,
    redirect_uri: &str,
    mode: ResponseMode,
    mut fields: Vec<(&'static str, String)>,
) -> Response {
    fields.push(("iss", state.web.issuer.clone()));
    match mode {
        ResponseMode::FormPost => ui::form_post(state, redirect_uri, fields),
        ResponseMode::Query => match url::Url::parse(redirect_uri) {
            Ok(mut url) => {
                url.query_pairs_mut().extend_pairs(fields.iter());
                see_other(url.as_str())
            }
            Err(_) => ui::error_page(
                state,
                StatusCode::BAD_REQUEST,
                "The application's return address cannot be used.",
            ),
        },
    }
}
