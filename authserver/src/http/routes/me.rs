//! The caller's own account: profile, password, sessions, CSRF token.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use time::format_description::well_known::Rfc3339;

use crate::http::error::ApiError;
use crate::http::extract::{ApiJson, ApiPath, Authenticated};
use crate::http::state::AppState;

/// The routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/me", get(me))
        .route("/api/v1/me/password", post(change_password))
        .route("/api/v1/me/sessions", get(sessions))
        .route("/api/v1/me/sessions/{id}", delete(revoke_session))
        .route("/api/v1/csrf", get(csrf))
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

async fn me(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<Response, ApiError> {
    let profile = state.service.profile(&principal).await?;
    let user = profile.user;
    Ok(Json(json!({
        "user_id": user.id,
        "email": user.email,
        "display_name": user.display_name,
        "email_verified": user.email_verified,
        "mfa": {"totp": false, "recovery_codes_left": 0},
        "created_at": rfc3339(user.created_at),
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    current_password: String,
    new_password: String,
}

async fn change_password(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiJson(body): ApiJson<PasswordBody>,
) -> Result<Response, ApiError> {
    state
        .service
        .change_password(&principal, &body.current_password, &body.new_password)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn sessions(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<Response, ApiError> {
    let list: Vec<serde_json::Value> = state
        .service
        .sessions(&principal)
        .await?
        .into_iter()
        .map(|s| {
            json!({
                "id": s.id,
                "created_at": rfc3339(s.record.created_at),
                "last_seen_at": rfc3339(s.record.last_seen_at),
                "ip": s.record.ip,
                "user_agent": s.record.user_agent,
                "current": s.current,
            })
        })
        .collect();
    Ok(Json(list).into_response())
}

async fn revoke_session(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    state.service.revoke_session(&principal, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The CSRF token of the caller's session (for browser apps that lost the login answer).
async fn csrf(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<Response, ApiError> {
    Ok(
        Json(json!({"csrf_token": state.service.csrf_token(&principal.session_id)}))
            .into_response(),
    )
}
