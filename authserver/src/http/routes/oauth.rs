//! OAuth endpoints of this issue: the JWKS and the token endpoint's refresh-token grant.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{AuthError, refresh};
use crate::http::error::ApiError;
use crate::http::extract::ApiForm;
use crate::http::state::AppState;

/// The routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route("/oauth2/token", post(token))
}

async fn jwks(State(state): State<AppState>) -> Response {
    let mut response = Json(state.keys.jwks().clone()).into_response();
    // Keys change at most once per access-token lifetime; relying parties may cache briefly.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    refresh_token: Option<String>,
    client_id: Option<String>,
}

async fn token(
    State(state): State<AppState>,
    ApiForm(form): ApiForm<TokenForm>,
) -> Result<Response, ApiError> {
    match form.grant_type.as_deref() {
        Some("refresh_token") => {}
        Some(_) => {
            return Err(AuthError::InvalidOAuthRequest {
                code: "unsupported_grant_type",
                detail: "this endpoint supports grant_type=refresh_token".into(),
            }
            .into());
        }
        None => {
            return Err(AuthError::InvalidOAuthRequest {
                code: "invalid_request",
                detail: "grant_type is required".into(),
            }
            .into());
        }
    }
    let presented =
        form.refresh_token
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::InvalidOAuthRequest {
                code: "invalid_request",
                detail: "refresh_token is required".into(),
            })?;
    let refreshed = refresh::refresh(&state.core, &presented, form.client_id.as_deref()).await?;
    Ok(Json(json!({
        "access_token": refreshed.access_token,
        "token_type": "Bearer",
        "expires_in": refreshed.expires_in,
        "refresh_token": refreshed.refresh_token,
        "scope": refreshed.scope,
    }))
    .into_response())
}
