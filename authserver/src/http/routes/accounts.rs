//! Registration, email verification, password reset, login and logout.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::auth::principal::RequestMeta;
use crate::auth::registration::{self, Registered, Registration};
use crate::auth::{account, login as login_case, reset};
use crate::http::caller::{Authenticated, session_secret};
use crate::http::cookies;
use crate::http::error::ApiError;
use crate::http::extract::ApiJson;
use crate::http::state::AppState;

/// The routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/register", post(register))
        .route("/api/v1/verify-email", post(verify_email))
        .route("/api/v1/password-reset", post(password_reset))
        .route(
            "/api/v1/password-reset/confirm",
            post(password_reset_confirm),
        )
        .route("/api/v1/login", post(login))
        .route("/api/v1/logout", post(logout))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    email: String,
    password: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    consents: BTreeMap<String, bool>,
    #[serde(default)]
    policy_version: Option<String>,
}

async fn register(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<Response, ApiError> {
    let outcome = registration::register(
        &state.core,
        Registration {
            email: body.email,
            password: body.password,
            display_name: body.display_name,
            consents: body.consents,
            policy_version: body.policy_version,
        },
    )
    .await?;
    Ok(match outcome {
        Registered::VerificationPending => (
            StatusCode::ACCEPTED,
            Json(json!({"status": "verification_pending"})),
        )
            .into_response(),
        Registered::Created(user_id) => {
            (StatusCode::CREATED, Json(json!({"user_id": user_id}))).into_response()
        }
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    token: String,
}

async fn verify_email(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<TokenBody>,
) -> Result<Response, ApiError> {
    registration::verify_email(&state.core, &body.token).await?;
    Ok(Json(json!({"status": "verified"})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmailBody {
    email: String,
}

/// Answers at once and mails in the background, so the answer takes the same time whether or
/// not the account exists (no enumeration by timing).
async fn password_reset(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<EmailBody>,
) -> Result<Response, ApiError> {
    let core = state.core.clone();
    tokio::spawn(async move {
        if let Err(error) = reset::request_password_reset(&core, &body.email).await {
            tracing::error!(error = %error, "password reset request failed");
        }
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"status": "reset_requested"})),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetConfirmBody {
    token: String,
    new_password: String,
}

async fn password_reset_confirm(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ResetConfirmBody>,
) -> Result<Response, ApiError> {
    reset::confirm_password_reset(&state.core, &body.token, &body.new_password).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    email: String,
    password: String,
}

/// The cookie jar of a request, for the session-fixation defence.
struct PresentedSession(Option<String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PresentedSession {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PresentedSession(session_secret(parts)))
    }
}

async fn login(
    State(state): State<AppState>,
    meta: RequestMeta,
    PresentedSession(previous): PresentedSession,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<Response, ApiError> {
    let success = login_case::login(
        &state.core,
        &body.email,
        &body.password,
        &meta,
        previous.as_deref(),
    )
    .await?;
    let cookie = cookies::session_cookie(
        &success.session_secret,
        state.web.cookie_max_age,
        state.web.same_site,
    );
    let mut response = Json(json!({
        "user_id": success.user_id,
        "access_token": success.access_token,
        "refresh_token": success.refresh_token,
        "token_type": "Bearer",
        "expires_in": success.expires_in,
        "csrf_token": success.csrf_token,
    }))
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

async fn logout(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<Response, ApiError> {
    account::logout(&state.core, &principal).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(value) = HeaderValue::from_str(&cookies::clear_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}
