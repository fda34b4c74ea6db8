//! OAuth endpoints: the JWKS and the token endpoint.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::oidc::token as token_case;
use crate::auth::{AuthError, refresh};
use crate::http::client_auth;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::FormPairs;
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

/// A token request (RFC 6749 §4.1.3, §4.4.2, §6), form-encoded; each parameter at most once.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TokenForm {
    /// `authorization_code`, `refresh_token` or `client_credentials`.
    grant_type: Option<String>,
    /// The authorization code (`authorization_code`).
    code: Option<String>,
    /// The authorization request's redirect URI, identical (`authorization_code`).
    redirect_uri: Option<String>,
    /// The PKCE verifier (`authorization_code`, when the request had a challenge).
    code_verifier: Option<String>,
    /// The refresh token (`refresh_token`).
    refresh_token: Option<String>,
    /// Narrower scope (`refresh_token`) or the scope wanted (`client_credentials`).
    scope: Option<String>,
    /// The client (`client_secret_post` with `client_secret`, or a public client); without
    /// client authentication a refresh token is the realm's own API's.
    client_id: Option<String>,
    /// The client's secret (`client_secret_post`; or send HTTP Basic).
    client_secret: Option<String>,
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
    /// Refresh token (absent for client credentials and clients without the refresh grant).
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    /// ID token, when `openid` was granted.
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
    /// Granted scopes.
    scope: String,
}

/// The single value of `name` in the form; a repeated parameter is `invalid_request` (RFC
/// 6749 §3.2), an empty one absent.
fn single<'a>(form: &'a [(String, String)], name: &str) -> Result<Option<&'a str>, AuthError> {
    let mut values = form
        .iter()
        .filter(|(k, v)| k == name && !v.is_empty())
        .map(|(_, v)| v.as_str());
    let first = values.next();
    if values.next().is_some() {
        return Err(AuthError::InvalidOAuthRequest {
            code: "invalid_request",
            detail: format!("{name} is repeated"),
        });
    }
    Ok(first)
}

fn required<'a>(form: &'a [(String, String)], name: &str) -> Result<&'a str, AuthError> {
    single(form, name)?.ok_or_else(|| AuthError::InvalidOAuthRequest {
        code: "invalid_request",
        detail: format!("{name} is required"),
    })
}

/// Token endpoint: `authorization_code` (PKCE; a replayed code revokes what it issued),
/// `refresh_token` (rotating; a replayed token revokes its family) and `client_credentials`,
/// with `client_secret_basic`, `client_secret_post` or `none` (public clients). A refresh token
/// of the realm's own API is refreshed without client authentication. Errors are RFC 6749
/// §5.2 JSON (`error`, `error_description`).
#[utoipa::path(
    post,
    path = "/oauth2/token",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "New tokens (`Cache-Control: no-store`)", body = TokenResponse),
        (status = 400, description = "RFC 6749 error (`error` names it)", body = Problem, content_type = "application/json"),
        (status = 401, description = "Client authentication failed: `invalid_client` (`WWW-Authenticate: Basic`)", body = Problem, content_type = "application/json"),
    )
)]
async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    FormPairs(form): FormPairs,
) -> Result<Json<TokenResponse>, ApiError> {
    let core = &state.core;
    let grant_type = required(&form, "grant_type")?;
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or_default());
    let client_id = single(&form, "client_id")?;
    let client_secret = single(&form, "client_secret")?;
    if grant_type == "refresh_token" && authorization.is_none() && client_id.is_none() {
        let presented = required(&form, "refresh_token")?;
        let refreshed = refresh::refresh(core, presented, None).await?;
        return Ok(Json(TokenResponse {
            access_token: refreshed.access_token,
            token_type: "Bearer",
            expires_in: refreshed.expires_in,
            refresh_token: Some(refreshed.refresh_token),
            id_token: None,
            scope: refreshed.scope,
        }));
    }
    if !["authorization_code", "refresh_token", "client_credentials"].contains(&grant_type) {
        return Err(AuthError::InvalidOAuthRequest {
            code: "unsupported_grant_type",
            detail: "grant_type must be authorization_code, refresh_token or client_credentials"
                .into(),
        }
        .into());
    }
    let credentials = client_auth::client_credentials(authorization, client_id, client_secret)?;
    let client = core.clients().authenticate(&credentials)?;
    let issued = match grant_type {
        "authorization_code" => {
            token_case::exchange_code(
                core,
                client,
                required(&form, "code")?,
                single(&form, "redirect_uri")?,
                single(&form, "code_verifier")?,
            )
            .await?
        }
        "refresh_token" => {
            token_case::refresh(
                core,
                client,
                required(&form, "refresh_token")?,
                single(&form, "scope")?,
            )
            .await?
        }
        _ => token_case::client_credentials(core, client, single(&form, "scope")?)?,
    };
    Ok(Json(TokenResponse {
        access_token: issued.access_token,
        token_type: "Bearer",
        expires_in: issued.expires_in,
        refresh_token: issued.refresh_token,
        id_token: issued.id_token,
        scope: issued.scope,
    }))
}
