//! The password reset pages: asking for a link (the answer is the same whether or not the
//! account exists, and comes at once: the mail goes out in the background), and the page the
//! mailed link opens, where a new password is set (a GET never consumes the token). Policy
//! errors are shown next to the password field.

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{
    Chrome, FieldErrors, form_csrf_ok, html, notice, passing_failure, sign_in_link, with_form_csrf,
    with_req,
};
use crate::auth::principal::RequestMeta;
use crate::auth::{AuthError, reset};
use crate::http::error::ApiError;
use crate::http::extract::{ApiQuery, FormPairs, first_value};
use crate::http::state::AppState;

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(show, request))
        .routes(routes!(confirm))
}

#[derive(Template)]
#[template(path = "reset_request.html")]
struct RequestPage {
    chrome: Chrome,
    csrf: String,
    req: String,
    email: String,
    error: Option<&'static str>,
    login: String,
}

#[derive(Template)]
#[template(path = "reset_password.html")]
struct NewPasswordPage {
    chrome: Chrome,
    csrf: String,
    token: String,
    req: String,
    errors: FieldErrors,
    summary: Option<&'static str>,
}

fn request_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    req: &str,
    email: &str,
    error: Option<&'static str>,
) -> Response {
    with_form_csrf(state, headers, |csrf| {
        html(
            status,
            &RequestPage {
                chrome: Chrome::of(state),
                csrf,
                req: req.to_owned(),
                email: email.to_owned(),
                error,
                login: with_req("/login", Some(req)),
            },
        )
    })
}

fn new_password_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    token: &str,
    req: &str,
    errors: FieldErrors,
    summary: Option<&'static str>,
) -> Response {
    with_form_csrf(state, headers, |csrf| {
        html(
            status,
            &NewPasswordPage {
                chrome: Chrome::of(state),
                csrf,
                token: token.to_owned(),
                req: req.to_owned(),
                errors,
                summary,
            },
        )
    })
}

/// The reset pages' query.
#[derive(Deserialize, IntoParams)]
pub struct ResetQuery {
    /// The mailed token: with it, the page sets a new password; without, it asks for a link.
    token: Option<String>,
    /// A pending authorization request to continue afterwards.
    req: Option<String>,
}

/// Asks for a reset link, or (with the mailed `token`) for the new password.
#[utoipa::path(
    get,
    path = "/reset-password",
    params(ResetQuery),
    responses((status = 200, description = "The form asking for the email address, or for the new password", body = String, content_type = "text/html"))
)]
async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<ResetQuery>,
) -> Response {
    let req = query.req.as_deref().unwrap_or_default();
    match query.token.as_deref().filter(|t| !t.is_empty()) {
        Some(token) => new_password_page(
            &state,
            &headers,
            StatusCode::OK,
            token,
            req,
            FieldErrors::default(),
            None,
        ),
        None => request_page(&state, &headers, StatusCode::OK, req, "", None),
    }
}

/// The reset request form.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ResetRequestForm {
    /// Email address.
    email: Option<String>,
    /// The form's CSRF token.
    csrf: Option<String>,
    /// The pending authorization request, when there is one.
    req: Option<String>,
}

/// Mails a reset link if the account exists; the page is the same either way.
#[utoipa::path(
    post,
    path = "/reset-password",
    request_body(content = ResetRequestForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The same page whether or not the account exists: check the mail", body = String, content_type = "text/html"),
        (status = 400, description = "No address given: the form again", body = String, content_type = "text/html"),
        (status = 403, description = "CSRF check failed: the form again", body = String, content_type = "text/html"),
    )
)]
async fn request(
    State(state): State<AppState>,
    headers: HeaderMap,
    meta: RequestMeta,
    FormPairs(pairs): FormPairs,
) -> Response {
    let email = first_value(&pairs, "email").trim();
    let req = first_value(&pairs, "req");
    if !form_csrf_ok(&state, &headers, first_value(&pairs, "csrf")) {
        return request_page(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            req,
            email,
            Some("This form expired. Please send it again."),
        );
    }
    if email.is_empty() {
        return request_page(
            &state,
            &headers,
            StatusCode::BAD_REQUEST,
            req,
            email,
            Some("Enter the email address of your account."),
        );
    }
    if let Err(error) =
        reset::request_password_reset_detached(state.core.clone(), email.to_owned(), &meta).await
    {
        return axum::response::IntoResponse::into_response(ApiError::from(error));
    }
    notice(
        &state,
        StatusCode::OK,
        "Check your email",
        &[
            "If there is an account for this address, we have sent it a link to choose a new password. The link works for 30 minutes.",
        ],
        Some((with_req("/login", Some(req)), "Back to sign in")),
    )
}

/// The new password form.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct NewPasswordForm {
    /// The mailed token.
    token: Option<String>,
    /// The new password.
    new_password: Option<String>,
    /// The form's CSRF token.
    csrf: Option<String>,
    /// The pending authorization request, when there is one.
    req: Option<String>,
}

/// Sets the new password with the mailed token; every session ends.
#[utoipa::path(
    post,
    path = "/reset-password/confirm",
    request_body(content = NewPasswordForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Password set: on to sign in", body = String, content_type = "text/html"),
        (status = 400, description = "The password breaks a rule (the form again, the message next to the field), or the token is unknown, used or expired", body = String, content_type = "text/html"),
        (status = 403, description = "CSRF check failed: the form again", body = String, content_type = "text/html"),
        (status = 503, description = "Too busy or a dependency is down: the form again", body = String, content_type = "text/html"),
    )
)]
async fn confirm(
    State(state): State<AppState>,
    headers: HeaderMap,
    meta: RequestMeta,
    FormPairs(pairs): FormPairs,
) -> Result<Response, ApiError> {
    let token = first_value(&pairs, "token").trim();
    let req = first_value(&pairs, "req");
    let again = |status, errors, summary| {
        new_password_page(&state, &headers, status, token, req, errors, summary)
    };
    if !form_csrf_ok(&state, &headers, first_value(&pairs, "csrf")) {
        return Ok(again(
            StatusCode::FORBIDDEN,
            FieldErrors::default(),
            Some("This form expired. Please send it again."),
        ));
    }
    let password = first_value(&pairs, "new_password");
    match reset::confirm_password_reset(&state.core, token, password, &meta).await {
        Ok(()) => {
            let link = sign_in_link(&state, Some(req)).await?;
            Ok(notice(
                &state,
                StatusCode::OK,
                "Password changed",
                &["Every session of your account was signed out. Sign in with your new password."],
                Some((link, "Sign in")),
            ))
        }
        Err(AuthError::Validation(violations)) => Ok(again(
            StatusCode::BAD_REQUEST,
            FieldErrors::of(&violations, str::to_owned),
            Some("Please choose another password."),
        )),
        Err(AuthError::InvalidToken) => Ok(notice(
            &state,
            StatusCode::BAD_REQUEST,
            "This link cannot be used",
            &["It has expired or was already used. Ask for a new one."],
            Some((with_req("/reset-password", Some(req)), "Ask for a new link")),
        )),
        Err(other) => {
            let (status, message) = passing_failure(&state, other)?;
            Ok(again(status, FieldErrors::default(), Some(message)))
        }
    }
}
