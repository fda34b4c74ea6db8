//! The admin API (bearer admin token), on the admin listener.

use axum::extract::{FromRequestParts, State};
use axum::http::{StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use portcullis_audit::PageQuery;

use crate::audit::Event;
use crate::auth::principal::RequestMeta;
use crate::auth::{AuthError, Violation, admin};
use crate::http::error::ApiError;
use crate::http::extract::{ApiPath, ApiQuery};
use crate::http::state::AppState;

/// Every admin route as (method, path with sample parameters): the token tests walk them all.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/admin/v1/users?email=a%40example.com"),
    (
        "GET",
        "/admin/v1/users/00000000-0000-0000-0000-000000000001",
    ),
    (
        "POST",
        "/admin/v1/users/00000000-0000-0000-0000-000000000001/unlock",
    ),
    (
        "POST",
        "/admin/v1/users/00000000-0000-0000-0000-000000000001/disable",
    ),
    ("GET", "/admin/v1/audit"),
    ("GET", "/admin/v1/audit/verify"),
    ("GET", "/admin/v1/keys"),
    ("POST", "/admin/v1/retention/run?dry_run=true"),
];

/// The routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/users", get(find_user))
        .route("/admin/v1/users/{id}", get(user_detail))
        .route("/admin/v1/users/{id}/unlock", post(unlock))
        .route("/admin/v1/users/{id}/disable", post(disable))
        .route("/admin/v1/users/{id}/erase", post(erase))
        .route("/admin/v1/audit", get(audit_export))
        .route("/admin/v1/audit/verify", get(audit_verify))
        .route("/admin/v1/keys", get(keys))
        .route("/admin/v1/retention/run", post(retention_run))
}

/// The token of an `Authorization: Bearer …` header, the scheme in any case (RFC 7235).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Whether `presented` is the admin token. SHA-256 digests are compared in constant time,
/// so neither the content nor the length of the token leaks through timing.
fn is_admin_token(presented: &str, expected: &str) -> bool {
    let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    let expected: [u8; 32] = Sha256::digest(expected.as_bytes()).into();
    bool::from(presented.ct_eq(&expected))
}

/// A caller holding the admin token (compared in constant time), and where it called from
/// (admin actions are audited with it).
struct Admin(RequestMeta);

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
            .and_then(bearer_token)
            .map(str::to_owned);
        let meta = RequestMeta::from_request_parts(parts, state)
            .await
            .unwrap_or_default();
        if presented.is_some_and(|t| is_admin_token(&t, &state.web.admin_token)) {
            return Ok(Admin(meta));
        }
        state.metrics.admin_auth_failures.inc();
        state
            .core
            .audit(Event::failure("admin_auth_failed"), Some(&meta))
            .await;
        Err(AuthError::AdminUnauthenticated.into())
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
    Admin(meta): Admin,
    ApiQuery(query): ApiQuery<UserQuery>,
) -> Result<Response, ApiError> {
    let user = admin::find_user(&state.core, &query.email, &meta)
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

/// An optional time as RFC 3339, or null.
fn rfc3339(time: Option<OffsetDateTime>) -> serde_json::Value {
    time.and_then(|t| t.format(&Rfc3339).ok())
        .map_or(serde_json::Value::Null, serde_json::Value::String)
}

async fn user_detail(
    State(state): State<AppState>,
    Admin(meta): Admin,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let user = admin::user_detail(&state.core, user_id(&id)?, &meta).await?;
    Ok(Json(json!({
        "user_id": user.summary.user_id,
        "email": user.summary.email,
        "email_verified": user.summary.email_verified,
        "disabled": user.summary.disabled,
        "created_at": rfc3339(Some(user.created_at)),
        "last_login_at": rfc3339(user.last_login_at),
        "last_active_at": rfc3339(user.last_active_at),
        "lock": user.lock,
        "sessions": user.sessions,
        "mfa_enrolled": user.mfa_enrolled,
    }))
    .into_response())
}

async fn unlock(
    State(state): State<AppState>,
    Admin(meta): Admin,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    admin::unlock(&state.core, user_id(&id)?, &meta).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn disable(
    State(state): State<AppState>,
    Admin(meta): Admin,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    admin::disable(&state.core, user_id(&id)?, &meta).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Erases the account (issue 13): its sessions end at once; the data goes at once, or after
/// the realm's grace period. Answers the request (its id is the erasure id), or the receipt.
async fn erase(
    State(state): State<AppState>,
    Admin(meta): Admin,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let request = crate::auth::privacy::admin_erase(&state.core, user_id(&id)?, &meta).await?;
    Ok((StatusCode::ACCEPTED, Json(request)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    since: Option<String>,
    after: Option<i64>,
    user_id: Option<Uuid>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    limit: Option<i64>,
}

/// Percent-encodes a query value (everything but RFC 3986's unreserved characters).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The audit trail as JSON lines for a SIEM, by ascending seq; a full page links the next.
async fn audit_export(
    State(state): State<AppState>,
    Admin(meta): Admin,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Response, ApiError> {
    let since = match query.since.as_deref() {
        Some(text) => Some(OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
            AuthError::Validation(vec![Violation::new(
                "since",
                "invalid_time",
                "since must be an RFC 3339 time",
            )])
        })?),
        None => None,
    };
    let page = PageQuery {
        since,
        after: query.after.unwrap_or(0).max(0),
        user_id: query.user_id,
        event_type: query.event_type.clone(),
        limit: query.limit.unwrap_or(PageQuery::default().limit),
    };
    let rows = admin::audit_page(&state.core, &page, &meta).await?;
    let mut body = String::new();
    for row in &rows {
        body.push_str(&row.export_json().to_string());
        body.push('\n');
    }
    let mut response = ([(header::CONTENT_TYPE, "application/jsonl")], body).into_response();
    let full = i64::try_from(rows.len()).unwrap_or(i64::MAX) >= page.clamped_limit();
    if let (true, Some(last)) = (full, rows.last()) {
        let mut params = vec![format!("limit={}", page.clamped_limit())];
        if let Some(since) = &query.since {
            params.push(format!("since={}", encode(since)));
        }
        if let Some(user) = query.user_id {
            params.push(format!("user_id={user}"));
        }
        if let Some(kind) = &query.event_type {
            params.push(format!("type={}", encode(kind)));
        }
        params.push(format!("after={}", last.seq));
        let link = format!("</admin/v1/audit?{}>; rel=\"next\"", params.join("&"));
        if let Ok(value) = header::HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    Ok(response)
}

/// The audit chain check: the verification report (200 whatever it found).
async fn audit_verify(
    State(state): State<AppState>,
    Admin(meta): Admin,
) -> Result<Response, ApiError> {
    let report = admin::audit_verify(&state.core, &meta).await?;
    Ok(Json(report).into_response())
}

/// Signing-key, pepper, Fernet and audit-key status; never key material.
async fn keys(State(state): State<AppState>, Admin(meta): Admin) -> Result<Response, ApiError> {
    let status = admin::keys(&state.core, &meta).await?;
    Ok(Json(status).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionQuery {
    dry_run: Option<bool>,
}

/// The realm's RetentionPolicy applied once, as `retention run` does: the same summary.
async fn retention_run(
    State(state): State<AppState>,
    Admin(meta): Admin,
    ApiQuery(query): ApiQuery<RetentionQuery>,
) -> Result<Response, ApiError> {
    let summary = admin::retention_run(&state.core, query.dry_run.unwrap_or(false), &meta).await?;
    Ok(Json(summary).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_read_in_any_case_and_other_schemes_are_not() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }

    #[test]
    fn only_the_exact_admin_token_is_accepted() {
        let token = "t".repeat(40);
        assert!(is_admin_token(&token, &token));
        assert!(!is_admin_token(&format!("{token}x"), &token));
        assert!(!is_admin_token(&token[1..], &token));
        assert!(!is_admin_token("", &token));
    }
}
