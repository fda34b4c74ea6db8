//! The email verification page. The mailed link opens a page whose button POSTs the token: a
//! GET never consumes it, since mail scanners open links. After verifying, the user signs in
//! and goes on to the pending authorization request the link carries, if it still waits.

use crate::auth::principal::RequestMeta;
use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Chrome, form_csrf_ok, html, notice, passing_failure, sign_in_link, with_form_csrf};
use crate::auth::{AuthError, registration};
use crate::http::error::ApiError;
use crate::http::extract::{ApiQuery, FormPairs, first_value};
use crate::http::state::AppState;

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(show, submit))
}

#[derive(Template)]
#[template(path = "verify_email.html")]
struct VerifyPage {
    chrome: Chrome,
    csrf: String,
    token: String,
    req: String,
    error: Option<&'static str>,
}

fn page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    token: &str,
    req: &str,
    error: Option<&'static str>,
) -> Response {
    with_form_csrf(state, headers, |csrf| {
        html(
            status,
            &VerifyPage {
                chrome: Chrome::of(state),
                csrf,
                token: token.to_owned(),
                req: req.to_owned(),
                error,
            },
        )
    })
}

/// The verification link's query.
#[derive(Deserialize, IntoParams)]
pub struct VerifyQuery {
    /// The mailed token (without it, the page asks for the code from the mail).
    token: Option<String>,
    /// The pending authorization request the registration was made in.
    req: Option<String>,
}

/// The page the mailed link opens: a button that confirms the address (nothing is consumed
/// here).
#[utoipa::path(
    get,
    path = "/verify-email",
    params(VerifyQuery),
    responses((status = 200, description = "A form whose button confirms the address", body = String, content_type = "text/html"))
)]
async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<VerifyQuery>,
) -> Response {
    page(
        &state,
        &headers,
        StatusCode::OK,
        query.token.as_deref().unwrap_or_default(),
        query.req.as_deref().unwrap_or_default(),
        None,
    )
}

/// The verification form.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct VerifyForm {
    /// The mailed token.
    token: Option<String>,
    /// The form's CSRF token.
    csrf: Option<String>,
    /// The pending authorization request, when there is one.
    req: Option<String>,
}

/// Confirms the address with the mailed token (single use).
#[utoipa::path(
    post,
    path = "/verify-email",
    request_body(content = VerifyForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Confirmed: on to sign in", body = String, content_type = "text/html"),
        (status = 400, description = "The token is unknown, used or expired", body = String, content_type = "text/html"),
        (status = 403, description = "CSRF check failed: the form again", body = String, content_type = "text/html"),
        (status = 503, description = "Too busy or a dependency is down: the form again", body = String, content_type = "text/html"),
    )
)]
async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    meta: RequestMeta,
    FormPairs(pairs): FormPairs,
) -> Result<Response, ApiError> {
    let token = first_value(&pairs, "token").trim();
    let req = first_value(&pairs, "req");
    if !form_csrf_ok(&state, &headers, first_value(&pairs, "csrf")) {
        return Ok(page(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            token,
            req,
            Some("This form expired. Please press the button again."),
        ));
    }
    match registration::verify_email(&state.core, token, &meta).await {
        Ok(()) => {
            let link = sign_in_link(&state, Some(req)).await?;
            Ok(notice(
                &state,
                StatusCode::OK,
                "Email address confirmed",
                &["Thank you. Sign in to continue."],
                Some((link, "Sign in")),
            ))
        }
        Err(AuthError::InvalidToken) => Ok(notice(
            &state,
            StatusCode::BAD_REQUEST,
            "This link cannot be used",
            &[
                "It has expired or was already used. If you have confirmed your address already, sign in; otherwise register again to get a new link.",
            ],
            Some(("/login".to_owned(), "Sign in")),
        )),
        Err(other) => {
            let (status, message) = passing_failure(&state, other)?;
            Ok(page(&state, &headers, status, token, req, Some(message)))
        }
    }
}
