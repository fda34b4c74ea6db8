//! The admin API (bearer admin token), on the admin listener.

use axum::extract::{FromRequestParts, State};
use axum::http::{StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::auth::{AuthError, admin};
use crate::http::error::ApiError;
use crate::http::extract::{ApiPath, ApiQuery};
use crate::http::state::AppState;

/// The routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/users", get(find_user))
        .route("/admin/v1/users/{id}/unlock", post(unlock))
        .route("/admin/v1/users/{id}/disable", post(disable))
}

/// A caller holding the admin token (compared in constant time).
struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        let expected = state.web.admin_token.as_bytes();
        if presented.is_empty() || !bool::from(presented.as_bytes().ct_eq(expected)) {
            return Err(AuthError::Unauthenticated.into());
        }
        Ok(Admin)
    }
}

fn user_id(text: &str) -> Result<Uuid, ApiError> {
    text.parse().map_err(|_| AuthError::NotFound.into())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserQuery {
    email: String,
}

async fn find_user(
    State(state): State<AppState>,
    _: Admin,
    ApiQuery(query): ApiQuery<UserQuery>,
) -> Result<Response, ApiError> {
    let user = admin::find_user(&state.core, &query.email)
        .await?
        .ok_or(AuthError::NotFound)?;
    Ok(Json(json!({
        "user_id": user.user_id,
        "email": user.email,
        "email_verified": user.email_verified,
        "disabled": user.disabled,
    }))
    .into_response())
}

async fn unlock(
    State(state): State<AppState>,
    _: Admin,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    admin::unlock(&state.core, user_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn disable(
    State(state): State<AppState>,
    _: Admin,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    admin::disable(&state.core, user_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
