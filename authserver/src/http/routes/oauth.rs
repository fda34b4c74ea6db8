//! OAuth endpoints of this version: the JWKS and the token endpoint's refresh-token grant.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AuthError, refresh};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::ApiForm;
use crate::http::state::AppState;

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(jwks))
        .routes(routes!(token))
}

/// A JWK set (RFC 7517).
#[derive(Serialize, ToSchema)]
pub struct Jwks {
    /// Public keys: the active one first, then the previous ones.
    #[schema(value_type = Vec<Object>)]
    keys: serde_json::Value,
}

/// Public signing keys (current and previous).
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    responses((status = 200, description = "The key set", body = Jwks))
)]
async fn jwks(State(state): State<AppState>) -> Response {
    let mut response = Json(state.keys.jwks().clone()).into_response();
    // Keys change at most once per access-token lifetime; relying parties may cache briefly.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

/// A token request (RFC 6749 section 6).
#[derive(Deserialize, ToSchema)]
pub struct TokenForm {
    /// `refresh_token` (the only grant of this version); 400 `invalid_request` when absent,
    /// `unsupported_grant_type` for another.
    grant_type: Option<String>,
    /// The refresh token; 400 `invalid_request` when absent or empty.
    refresh_token: Option<String>,
    /// The client the token was issued to, when not the realm's own API.
    client_id: Option<String>,
}

/// Tokens from a grant.
#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    /// JWT access token.
    access_token: String,
    /// Always `Bearer`.
    token_type: &'static str,
    /// Access token lifetime, seconds.
    expires_in: u64,
    /// The successor refresh token.
    refresh_token: String,
    /// Granted scopes.
    scope: String,
}

/// Token endpoint: `grant_type=refresh_token` (rotating; a replayed token revokes its family).
#[utoipa::path(
    post,
    path = "/oauth2/token",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "New tokens", body = TokenResponse),
        (status = 400, description = "RFC 6749 error (`error` names it)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn token(
    State(state): State<AppState>,
    ApiForm(form): ApiForm<TokenForm>,
) -> Result<Json<TokenResponse>, ApiError> {
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
    Ok(Json(TokenResponse {
        access_token: refreshed.access_token,
        token_type: "Bearer",
        expires_in: refreshed.expires_in,
        refresh_token: refreshed.refresh_token,
        scope: refreshed.scope,
    }))
}
