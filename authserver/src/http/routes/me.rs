//! The caller's own account: profile, password, sessions, CSRF token.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::principal::RequestMeta;
use crate::auth::{account, mfa, session_auth, social};
use crate::http::caller::Authenticated;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{ApiJson, ApiPath};
use crate::http::state::AppState;

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(me))
        .routes(routes!(change_password))
        .routes(routes!(sessions))
        .routes(routes!(revoke_session))
        .routes(routes!(csrf))
        .routes(routes!(begin_totp, remove_totp))
        .routes(routes!(confirm_totp))
        .routes(routes!(regenerate_recovery_codes))
        .routes(routes!(unlink_identity))
}

/// A social provider's identity linked to the account (never its tokens).
#[derive(Serialize, ToSchema)]
pub struct LinkedIdentity {
    /// The link's id (what unlinking names).
    id: Uuid,
    /// The realm's name for the provider.
    provider: String,
    /// The email the provider gave when it was linked.
    email: Option<String>,
    /// When it was linked.
    #[serde(with = "time::serde::rfc3339")]
    linked_at: OffsetDateTime,
    /// When it last signed in.
    #[serde(with = "time::serde::rfc3339")]
    last_used_at: OffsetDateTime,
}

/// Multi-factor authentication state.
#[derive(Serialize, ToSchema)]
pub struct Mfa {
    /// Whether TOTP is set up.
    totp: bool,
    /// Unused recovery codes.
    recovery_codes_left: u32,
}

/// The caller's profile.
#[derive(Serialize, ToSchema)]
pub struct Me {
    /// The account.
    user_id: Uuid,
    /// Email as entered.
    email: String,
    /// Display name.
    display_name: Option<String>,
    /// Whether the email is verified.
    email_verified: bool,
    /// MFA state.
    mfa: Mfa,
    /// Social providers' identities linked to the account.
    identities: Vec<LinkedIdentity>,
    /// Registration time.
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

/// The caller's profile.
#[utoipa::path(
    get,
    path = "/api/v1/me",
    responses(
        (status = 200, description = "The profile", body = Me),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session" = []), ("bearer" = []))
)]
async fn me(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<Json<Me>, ApiError> {
    let user = account::profile(&state.core, &principal).await?;
    let status = mfa::status(&state.core, &principal).await?;
    let identities = social::identities(&state.core, &principal)
        .await?
        .into_iter()
        .map(|i| LinkedIdentity {
            id: i.id,
            provider: i.provider,
            email: i.email,
            linked_at: i.linked_at,
            last_used_at: i.last_used_at,
        })
        .collect();
    Ok(Json(Me {
        user_id: user.user_id,
        email: user.email,
        display_name: user.display_name,
        email_verified: user.email_verified,
        mfa: Mfa {
            totp: status.totp,
            recovery_codes_left: status.recovery_codes_left,
        },
        identities,
        created_at: user.created_at,
    }))
}

/// A password change.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChangeRequest {
    /// The current password.
    current_password: String,
    /// The new password.
    new_password: String,
}

/// Change the password; every other session ends.
#[utoipa::path(
    post,
    path = "/api/v1/me/password",
    request_body = PasswordChangeRequest,
    responses(
        (status = 204, description = "Changed"),
        (status = 401, description = "Not signed in, or the current password is wrong", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Cookie without CSRF proof", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`password_not_set`: the account has none (made by social sign-in); a password reset sets one", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Locked after failed attempts", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session" = []), ("bearer" = []))
)]
async fn change_password(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    meta: RequestMeta,
    ApiJson(body): ApiJson<PasswordChangeRequest>,
) -> Result<Response, ApiError> {
    account::change_password(
        &state.core,
        &principal,
        &meta,
        &body.current_password,
        &body.new_password,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// One of the caller's sessions.
#[derive(Serialize, ToSchema)]
pub struct SessionItem {
    /// Public id (revocation names it).
    id: String,
    /// Login time.
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    /// Last request seen.
    #[serde(with = "time::serde::rfc3339")]
    last_seen_at: OffsetDateTime,
    /// Client address at login.
    ip: String,
    /// User agent at login.
    user_agent: String,
    /// Whether it is the session of this request.
    current: bool,
}

/// The caller's sessions, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/me/sessions",
    responses(
        (status = 200, description = "The sessions", body = Vec<SessionItem>),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session" = []), ("bearer" = []))
)]
async fn sessions(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<Json<Vec<SessionItem>>, ApiError> {
    let list = account::sessions(&state.core, &principal)
        .await?
        .into_iter()
        .map(|s| SessionItem {
            id: s.id,
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            ip: s.ip,
            user_agent: s.user_agent,
            current: s.current,
        })
        .collect();
    Ok(Json(list))
}

/// Revoke one of the caller's sessions.
#[utoipa::path(
    delete,
    path = "/api/v1/me/sessions/{id}",
    params(("id" = String, Path, description = "Public id of the session")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "The id is not a readable path segment", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Cookie without CSRF proof", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session of the caller", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session" = []), ("bearer" = []))
)]
async fn revoke_session(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    meta: RequestMeta,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    account::revoke_session(&state.core, &principal, &id, &meta).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Unlink a social provider's identity from the account, while another way to sign in remains
/// (a password, or another linked provider the realm still has).
#[utoipa::path(
    delete,
    path = "/api/v1/me/identities/{id}",
    params(("id" = Uuid, Path, description = "The linked identity's id")),
    responses(
        (status = 204, description = "Unlinked"),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Cookie without CSRF proof", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such linked identity of the caller", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`last_sign_in_method`: nothing else would let the caller in", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session" = []), ("bearer" = []))
)]
async fn unlink_identity(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    meta: RequestMeta,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    social::unlink(&state.core, &principal, id, &meta).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A session's CSRF token.
#[derive(Serialize, ToSchema)]
pub struct CsrfToken {
    /// Send it as `X-CSRF-Token` with cookie-authenticated state changes.
    csrf_token: String,
}

/// The CSRF token of the caller's session (for browser apps that lost the login answer).
#[utoipa::path(
    get,
    path = "/api/v1/csrf",
    responses(
        (status = 200, description = "The token", body = CsrfToken),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session" = []), ("bearer" = []))
)]
async fn csrf(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
) -> Json<CsrfToken> {
    Json(CsrfToken {
        csrf_token: session_auth::csrf_token(&state.core, &principal.session_id),
    })
}

/// The password re-check that starts a TOTP enrolment.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpBeginRequest {
    /// The current password.
    password: String,
}

/// A TOTP enrolment waiting for its first code.
#[derive(Serialize, ToSchema)]
pub struct TotpEnrolment {
    /// The secret in base32.
    secret: String,
    /// The `otpauth://` URI for the authenticator app (the QR code's content).
    otpauth_uri: String,
}

/// Begin setting up TOTP (replaces an enrolment not yet confirmed); confirm within 15 minutes
/// from this session.
#[utoipa::path(
    post,
    path = "/api/v1/me/mfa/totp",
    request_body = TotpBeginRequest,
    responses(
        (status = 200, description = "The secret to set up, pending confirmation", body = TotpEnrolment),
        (status = 401, description = "Not signed in, or the password is wrong", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Cookie without CSRF proof", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "TOTP is already set up, or (`password_not_set`) the account has no password to check", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Locked after failed attempts", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session" = []), ("bearer" = []))
)]
async fn begin_totp(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    meta: RequestMeta,
    ApiJson(body): ApiJson<TotpBeginRequest>,
) -> Result<Json<TotpEnrolment>, ApiError> {
    let enrolment = mfa::begin_totp(&state.core, &principal, &meta, &body.password).await?;
    Ok(Json(TotpEnrolment {
        secret: enrolment.secret,
        otpauth_uri: enrolment.otpauth_uri,
    }))
}

/// The first code of the authenticator being set up.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpConfirmRequest {
    /// The current code.
    code: String,
}

/// The recovery codes, shown once.
#[derive(Serialize, ToSchema)]
pub struct RecoveryCodes {
    /// Single-use codes, `xxxx-xxxx-xx`.
    recovery_codes: Vec<String>,
}

/// Confirm the TOTP enrolment this session began; TOTP is then on and recovery codes issued.
#[utoipa::path(
    post,
    path = "/api/v1/me/mfa/totp/confirm",
    request_body = TotpConfirmRequest,
    responses(
        (status = 200, description = "TOTP is on; the recovery codes, shown once", body = RecoveryCodes),
        (status = 401, description = "Not signed in, or the code is wrong", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Cookie without CSRF proof", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No enrolment of this session waits, or TOTP is already set up", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session" = []), ("bearer" = []))
)]
async fn confirm_totp(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    meta: RequestMeta,
    ApiJson(body): ApiJson<TotpConfirmRequest>,
) -> Result<Json<RecoveryCodes>, ApiError> {
    let codes = mfa::confirm_totp(&state.core, &principal, &meta, &body.code).await?;
    Ok(Json(RecoveryCodes {
        recovery_codes: codes.iter().map(|c| c.as_str().to_owned()).collect(),
    }))
}

/// The password and a fresh second factor.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FreshFactorsRequest {
    /// The current password.
    password: String,
    /// A current TOTP code, or an unused recovery code (`xxxx-xxxx-xx`), which is spent.
    code: String,
}

/// Turn TOTP off (and void the recovery codes); needs the password and a fresh second factor.
#[utoipa::path(
    delete,
    path = "/api/v1/me/mfa/totp",
    request_body = FreshFactorsRequest,
    responses(
        (status = 204, description = "TOTP is off"),
        (status = 401, description = "Not signed in, or the password or code is wrong", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Cookie without CSRF proof", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "TOTP is not set up", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Locked or rate limited", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session" = []), ("bearer" = []))
)]
async fn remove_totp(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    meta: RequestMeta,
    ApiJson(body): ApiJson<FreshFactorsRequest>,
) -> Result<StatusCode, ApiError> {
    mfa::remove_totp(&state.core, &principal, &meta, &body.password, &body.code).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// New recovery codes; the old ones are void. Needs the password AND a fresh second factor
/// (`code`: a TOTP code or a recovery code), stricter than API.md's `{password}`: a stolen
/// session and password alone must not mint codes that bypass the authenticator.
#[utoipa::path(
    post,
    path = "/api/v1/me/mfa/recovery-codes",
    request_body = FreshFactorsRequest,
    responses(
        (status = 200, description = "The new recovery codes, shown once", body = RecoveryCodes),
        (status = 401, description = "Not signed in, or the password or code is wrong", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Cookie without CSRF proof", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "TOTP is not set up", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Locked or rate limited", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session" = []), ("bearer" = []))
)]
async fn regenerate_recovery_codes(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    meta: RequestMeta,
    ApiJson(body): ApiJson<FreshFactorsRequest>,
) -> Result<Json<RecoveryCodes>, ApiError> {
    let codes =
        mfa::regenerate_recovery_codes(&state.core, &principal, &meta, &body.password, &body.code)
            .await?;
    Ok(Json(RecoveryCodes {
        recovery_codes: codes.iter().map(|c| c.as_str().to_owned()).collect(),
    }))
}
