//! OAuth and OpenID Connect endpoints beside the authorization endpoint: discovery, the JWKS,
//! the token endpoint, UserInfo, revocation and introspection.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::oidc::token as token_case;
use crate::auth::oidc::{Repeated, discovery, resource, single_param};
use crate::auth::{AuthError, refresh};
use crate::http::client_auth;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::FormPairs;
use crate::http::state::AppState;

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(discovery))
        .routes(routes!(jwks))
        .routes(routes!(token))
        .routes(routes!(userinfo_get, userinfo_post))
        .routes(routes!(revoke))
        .routes(routes!(introspect))
}

/// OpenID Provider metadata (OpenID Connect Discovery 1.0).
#[derive(Serialize, ToSchema)]
pub struct ProviderMetadata {
    /// The issuer, byte-identical to every token's `iss`.
    issuer: String,
    /// Endpoints, supported values and unsupported features.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    rest: serde_json::Value,
}

/// Discovery: the provider's metadata.
#[utoipa::path(
    get,
    path = "/.well-known/openid-configuration",
    responses((status = 200, description = "The metadata (`Cache-Control: public, max-age=300`)", body = ProviderMetadata))
)]
async fn discovery(State(state): State<AppState>) -> Response {
    let mut response = Json(discovery::metadata(&state.web.issuer)).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

/// The bearer token of a resource request: the `Authorization: Bearer` header, or (POST) the
/// form's `access_token` (RFC 6750 §2.1, §2.2); never the query. Both at once is refused.
fn bearer(headers: &HeaderMap, form: &[(String, String)]) -> Result<String, AuthError> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        });
    let body = single(form, "access_token")?.map(str::to_owned);
    match (header, body) {
        (Some(token), None) | (None, Some(token)) => Ok(token),
        _ => Err(AuthError::InvalidAccessToken),
    }
}

/// Claims about the user.
#[derive(Serialize, ToSchema)]
pub struct UserInfo {
    /// The user id, as the ID token's `sub`.
    sub: String,
    /// `profile` scope: display name, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// `email` scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    /// `email` scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    email_verified: Option<bool>,
}

/// UserInfo (GET): claims the access token's scopes allow.
#[utoipa::path(
    get,
    path = "/oauth2/userinfo",
    responses(
        (status = 200, description = "The user's claims", body = UserInfo),
        (status = 401, description = "Invalid token (`WWW-Authenticate: Bearer error=\"invalid_token\"`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token lacks `openid` (`insufficient_scope`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn userinfo_get(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let token = bearer(&headers, &[])?;
    Ok(Json(resource::userinfo(&state.core, &token).await?))
}

/// The access token in a form body (RFC 6750 §2.2).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UserInfoForm {
    /// The access token (or send `Authorization: Bearer`).
    access_token: Option<String>,
}

/// UserInfo (POST): the token in the header or the form body.
#[utoipa::path(
    post,
    path = "/oauth2/userinfo",
    request_body(content = UserInfoForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The user's claims", body = UserInfo),
        (status = 400, description = "A repeated parameter", body = Problem, content_type = "application/json"),
        (status = 401, description = "Invalid token (`WWW-Authenticate: Bearer error=\"invalid_token\"`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token lacks `openid` (`insufficient_scope`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn userinfo_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    FormPairs(form): FormPairs,
) -> Result<Json<serde_json::Value>, ApiError> {
    let token = bearer(&headers, &form)?;
    Ok(Json(resource::userinfo(&state.core, &token).await?))
}

/// A revocation or introspection request, form-encoded.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TokenHintForm {
    /// The token.
    token: Option<String>,
    /// `access_token` or `refresh_token` (a hint only).
    token_type_hint: Option<String>,
    /// The client (`client_secret_post`, or a public client at revocation).
    client_id: Option<String>,
    /// The client's secret (`client_secret_post`; or send HTTP Basic).
    client_secret: Option<String>,
}

/// The `Authorization` header as client authentication reads it: absent, or its value (empty
/// when it is not visible ASCII).
fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or_default())
}

/// The authenticated client of a form request.
async fn client_of<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
    form: &[(String, String)],
) -> Result<&'a crate::auth::oidc::clients::Client, AuthError> {
    let authorization = authorization(headers);
    let credentials = client_auth::client_credentials(
        authorization,
        single(form, "client_id")?,
        single(form, "client_secret")?,
    )?;
    let client = state.core.clients().authenticate(&credentials)?;
    state.core.limit_client(client).await?;
    Ok(client)
}

/// Token revocation (RFC 7009): 200 whether or not the token was known (another client's
/// token is left alone).
#[utoipa::path(
    post,
    path = "/oauth2/revoke",
    request_body(content = TokenHintForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Revoked, or nothing to revoke"),
        (status = 400, description = "RFC 6749 error (`invalid_request`)", body = Problem, content_type = "application/json"),
        (status = 401, description = "Client authentication failed: `invalid_client`", body = Problem, content_type = "application/json"),
    )
)]
async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    FormPairs(form): FormPairs,
) -> Result<Response, ApiError> {
    let client = client_of(&state, &headers, &form).await?;
    let token = required(&form, "token")?;
    resource::revoke(
        &state.core,
        client,
        token,
        single(&form, "token_type_hint")?,
    )
    .await?;
    Ok(axum::http::StatusCode::OK.into_response())
}

/// Token introspection (RFC 7662), for confidential clients.
#[utoipa::path(
    post,
    path = "/oauth2/introspect",
    request_body(content = TokenHintForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "`{\"active\": false}`, or the active token's claims", body = Object),
        (status = 400, description = "RFC 6749 error (`invalid_request`)", body = Problem, content_type = "application/json"),
        (status = 401, description = "Client authentication failed, or a public client: `invalid_client`", body = Problem, content_type = "application/json"),
    )
)]
async fn introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    FormPairs(form): FormPairs,
) -> Result<Json<serde_json::Value>, ApiError> {
    let client = client_of(&state, &headers, &form).await?;
    let token = required(&form, "token")?;
    Ok(Json(
        resource::introspect(&state.core, client, token).await?,
    ))
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
    single_param(form, name).map_err(|Repeated| AuthError::InvalidOAuthRequest {
        code: "invalid_request",
        detail: format!("{name} is repeated"),
    })
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
    let authorization = authorization(&headers);
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
    core.limit_client(client).await?;
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
