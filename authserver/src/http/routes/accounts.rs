//! Registration, email verification, password reset, login and logout.

use crate::notify::device;
use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::login::{LoginOutcome, LoginSuccess};
use crate::auth::mfa_login::{self, SecondFactor};
use crate::auth::principal::RequestMeta;
use crate::auth::registration::{self, Registered, Registration};
use crate::auth::{account, login as login_case, reset};
use crate::http::caller::{Authenticated, PresentedSession};
use crate::http::cookies;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::ApiJson;
use crate::http::state::AppState;

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(verify_email))
        .routes(routes!(password_reset))
        .routes(routes!(password_reset_confirm))
        .routes(routes!(login))
        .routes(routes!(login_mfa))
        .routes(routes!(login_mfa_enrol))
        .routes(routes!(login_mfa_enrol_confirm))
        .routes(routes!(logout))
}

/// A registration.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// Email address (a plain `local@domain`).
    #[schema(max_length = 254)]
    email: String,
    /// Password, as the realm's policy asks (length, character classes, strength).
    #[schema(min_length = 1)]
    password: String,
    /// Display name, at most 100 characters.
    #[serde(default)]
    display_name: Option<String>,
    /// Consent per purpose of the privacy policy; required purposes must be `true`.
    #[serde(default)]
    consents: BTreeMap<String, bool>,
    /// The privacy policy version the user accepted.
    #[serde(default)]
    policy_version: Option<String>,
}

/// The account created (email verification off).
#[derive(Serialize, ToSchema)]
pub struct Created {
    /// The new account.
    user_id: Uuid,
}

/// An outcome without other data.
#[derive(Serialize, ToSchema)]
pub struct Status {
    /// What happened.
    status: &'static str,
}

fn status(code: StatusCode, status: &'static str) -> Response {
    (code, Json(Status { status })).into_response()
}

/// Register an account.
#[utoipa::path(
    post,
    path = "/api/v1/register",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Created (email verification off)", body = Created),
        (status = 202, description = "Verification mailed (or a notice, when the email is taken)", body = Status),
        (status = 409, description = "Email taken (email verification off)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn register(
    State(state): State<AppState>,
    meta: RequestMeta,
    ApiJson(body): ApiJson<RegisterRequest>,
) -> Result<Response, ApiError> {
    let outcome = registration::register(
        &state.core,
        Registration {
            email: body.email,
            password: body.password,
            display_name: body.display_name,
            consents: body.consents,
            policy_version: body.policy_version,
            pending_request: None,
            meta,
        },
    )
    .await?;
    Ok(match outcome {
        Registered::VerificationPending => status(StatusCode::ACCEPTED, "verification_pending"),
        Registered::Created(user_id) => {
            (StatusCode::CREATED, Json(Created { user_id })).into_response()
        }
    })
}

/// A mailed token.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The token from the mail.
    token: String,
}

/// Verify an email address with the mailed token (single use, 24 hours).
#[utoipa::path(
    post,
    path = "/api/v1/verify-email",
    request_body = TokenRequest,
    responses((status = 200, description = "Verified", body = Status))
)]
async fn verify_email(
    State(state): State<AppState>,
    meta: RequestMeta,
    ApiJson(body): ApiJson<TokenRequest>,
) -> Result<Response, ApiError> {
    registration::verify_email(&state.core, &body.token, &meta).await?;
    Ok(status(StatusCode::OK, "verified"))
}

/// An email address.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailRequest {
    /// Email address.
    email: String,
}

/// Mail a password reset token; answers at once whether or not the account exists (the mail
/// goes out in the background), so the answer tells nothing, not even by its timing.
#[utoipa::path(
    post,
    path = "/api/v1/password-reset",
    request_body = EmailRequest,
    responses((status = 202, description = "A token is mailed if the account exists", body = Status))
)]
async fn password_reset(
    State(state): State<AppState>,
    meta: RequestMeta,
    ApiJson(body): ApiJson<EmailRequest>,
) -> Result<Response, ApiError> {
    reset::request_password_reset_detached(state.core.clone(), body.email, &meta).await?;
    Ok(status(StatusCode::ACCEPTED, "reset_requested"))
}

/// A new password with a reset token.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetConfirmRequest {
    /// The token from the mail.
    token: String,
    /// The new password.
    new_password: String,
}

/// Set a new password with a reset token; every session ends.
#[utoipa::path(
    post,
    path = "/api/v1/password-reset/confirm",
    request_body = ResetConfirmRequest,
    responses((status = 204, description = "Password set"))
)]
async fn password_reset_confirm(
    State(state): State<AppState>,
    meta: RequestMeta,
    ApiJson(body): ApiJson<ResetConfirmRequest>,
) -> Result<Response, ApiError> {
    reset::confirm_password_reset(&state.core, &body.token, &body.new_password, &meta).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Credentials.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Email address.
    email: String,
    /// Password.
    password: String,
}

/// A session and its tokens.
#[derive(Serialize, ToSchema)]
pub struct LoginResponse {
    /// The account.
    user_id: Uuid,
    /// JWT access token (`at+jwt`).
    access_token: String,
    /// Opaque refresh token, rotated at every use.
    refresh_token: String,
    /// Always `Bearer`.
    token_type: &'static str,
    /// Access token lifetime, seconds.
    expires_in: u64,
    /// CSRF token of the session, for cookie-authenticated state changes.
    csrf_token: String,
    /// Recovery codes, shown once: only when TOTP was enrolled as part of this login.
    #[serde(skip_serializing_if = "Option::is_none")]
    recovery_codes: Option<Vec<String>>,
}

/// A login waiting for its second factor: no cookie, no tokens.
#[derive(Serialize, ToSchema)]
pub struct MfaPending {
    /// `true` when the account's second factor is asked (`POST /api/v1/login/mfa`).
    #[serde(skip_serializing_if = "Option::is_none")]
    mfa_required: Option<bool>,
    /// `true` when the realm requires a second factor the account has not set up yet
    /// (`POST /api/v1/login/mfa/enrol`).
    #[serde(skip_serializing_if = "Option::is_none")]
    mfa_enrolment_required: Option<bool>,
    /// The pending login (5 minutes, single use).
    mfa_token: String,
}

/// What a right password answers.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum LoginAnswer {
    /// Signed in.
    Signed(LoginResponse),
    /// A second factor comes first.
    Pending(MfaPending),
    /// The privacy policy must be accepted first.
    Consent(ConsentPending),
}

/// A sign-in waiting for the acceptance of the realm's current privacy policy: no cookie, no
/// tokens (`POST /api/v1/consent`).
#[derive(Serialize, ToSchema)]
pub struct ConsentPending {
    /// Always `true`.
    consent_required: bool,
    /// The pending sign-in (10 minutes, single use).
    consent_token: String,
    /// Recovery codes, shown once: when TOTP was enrolled as part of this sign-in.
    #[serde(skip_serializing_if = "Option::is_none")]
    recovery_codes: Option<Vec<String>>,
}

/// The answer of any sign-in: signed in, or what comes first.
pub(crate) fn outcome_answer(
    state: &AppState,
    outcome: LoginOutcome,
    recovery_codes: Option<Vec<String>>,
) -> Response {
    match outcome {
        LoginOutcome::Signed(success) => signed_in(state, success, recovery_codes),
        LoginOutcome::MfaRequired { mfa_token } => Json(MfaPending {
            mfa_required: Some(true),
            mfa_enrolment_required: None,
            mfa_token,
        })
        .into_response(),
        LoginOutcome::MfaEnrolmentRequired { mfa_token } => Json(MfaPending {
            mfa_required: None,
            mfa_enrolment_required: Some(true),
            mfa_token,
        })
        .into_response(),
        LoginOutcome::ConsentRequired { consent_token } => Json(ConsentPending {
            consent_required: true,
            consent_token,
            recovery_codes,
        })
        .into_response(),
    }
}

/// The answer of a login that signed in: the tokens as JSON, the session and (for a new
/// device) the device cookie set; `recovery_codes` when an enrolment at login issued them.
pub(crate) fn signed_in(
    state: &AppState,
    success: LoginSuccess,
    recovery_codes: Option<Vec<String>>,
) -> Response {
    let device_cookie = success.device_cookie.clone();
    let cookie = cookies::session_cookie(
        &success.session_secret,
        state.web.cookie_max_age,
        state.web.same_site,
    );
    let mut response = Json(LoginResponse {
        user_id: success.user_id,
        access_token: success.access_token,
        refresh_token: success.refresh_token,
        token_type: "Bearer",
        expires_in: success.expires_in,
        csrf_token: success.csrf_token,
        recovery_codes,
    })
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    if let Some(device) = &device_cookie
        && let Ok(value) = HeaderValue::from_str(&device::set_cookie(device))
    {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// Log in; sets the session cookie, or answers a pending second factor.
#[utoipa::path(
    post,
    path = "/api/v1/login",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in (`Set-Cookie` carries the session), or `{mfa_required, mfa_token}` / `{mfa_enrolment_required, mfa_token}` without cookie or tokens", body = LoginAnswer),
        (status = 401, description = "Wrong email or password", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Email not verified, or account disabled", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Locked after failed attempts (`Retry-After`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "A store could not answer", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn login(
    State(state): State<AppState>,
    meta: RequestMeta,
    PresentedSession(previous): PresentedSession,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    let outcome = login_case::login(
        &state.core,
        &body.email,
        &body.password,
        &meta,
        previous.as_deref(),
    )
    .await?;
    Ok(outcome_answer(&state, outcome, None))
}

/// The second factor of a pending login: a TOTP code or a recovery code.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginMfaRequest {
    /// The token `POST /api/v1/login` answered.
    mfa_token: String,
    /// A TOTP code (or give `recovery_code`).
    #[serde(default)]
    code: Option<String>,
    /// An unused recovery code (or give `code`).
    #[serde(default)]
    recovery_code: Option<String>,
}

/// Complete a login with its second factor; answers as a successful login.
#[utoipa::path(
    post,
    path = "/api/v1/login/mfa",
    request_body = LoginMfaRequest,
    responses(
        (status = 200, description = "Logged in; `Set-Cookie` carries the session", body = LoginResponse),
        (status = 400, description = "Neither or both of `code` and `recovery_code`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`invalid_totp`: wrong or used code, or an unknown, expired or ended token", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many second-factor attempts, or locked (`Retry-After`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "A store could not answer: no session", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn login_mfa(
    State(state): State<AppState>,
    meta: RequestMeta,
    PresentedSession(previous): PresentedSession,
    ApiJson(body): ApiJson<LoginMfaRequest>,
) -> Result<Response, ApiError> {
    let factor = second_factor(body.code, body.recovery_code)?;
    let outcome = mfa_login::complete(
        &state.core,
        &body.mfa_token,
        &factor,
        &meta,
        previous.as_deref(),
    )
    .await?;
    Ok(outcome_answer(&state, outcome, None))
}

/// A pending login that must enrol TOTP first.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginMfaEnrolRequest {
    /// The token `POST /api/v1/login` answered with `mfa_enrolment_required`.
    mfa_token: String,
}

/// The secret of a TOTP enrolment, to set up the authenticator.
#[derive(Serialize, ToSchema)]
pub struct LoginMfaEnrolment {
    /// The secret in base32.
    secret: String,
    /// The `otpauth://` URI (the QR code's content).
    otpauth_uri: String,
}

/// Begin the TOTP enrolment a realm requires before a login (an extension of the contract:
/// `mfa.totp.required` and an account without TOTP).
#[utoipa::path(
    post,
    path = "/api/v1/login/mfa/enrol",
    request_body = LoginMfaEnrolRequest,
    responses(
        (status = 200, description = "The secret to set up (pending until confirmed)", body = LoginMfaEnrolment),
        (status = 401, description = "`invalid_totp`: unknown, expired or ended token", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many second-factor requests", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "A store could not answer", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn login_mfa_enrol(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<LoginMfaEnrolRequest>,
) -> Result<Json<LoginMfaEnrolment>, ApiError> {
    let shown = mfa_login::begin_enrolment(&state.core, &body.mfa_token).await?;
    Ok(Json(LoginMfaEnrolment {
        secret: shown.secret,
        otpauth_uri: shown.otpauth_uri,
    }))
}

/// The first code of the enrolment a login was shown.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginMfaEnrolConfirmRequest {
    /// The pending login's token.
    mfa_token: String,
    /// A code from the authenticator just set up.
    code: String,
}

/// Confirm the enrolment and complete the login: the login answer plus `recovery_codes`.
#[utoipa::path(
    post,
    path = "/api/v1/login/mfa/enrol/confirm",
    request_body = LoginMfaEnrolConfirmRequest,
    responses(
        (status = 200, description = "Enrolled and logged in; `recovery_codes` are shown once", body = LoginResponse),
        (status = 401, description = "`invalid_totp`: wrong code, or an unknown, expired or ended token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`no_pending_enrolment`: begin the enrolment first (or again)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many second-factor attempts, or locked", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "A store could not answer: no session", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn login_mfa_enrol_confirm(
    State(state): State<AppState>,
    meta: RequestMeta,
    PresentedSession(previous): PresentedSession,
    ApiJson(body): ApiJson<LoginMfaEnrolConfirmRequest>,
) -> Result<Response, ApiError> {
    let (outcome, codes) = mfa_login::confirm_enrolment(
        &state.core,
        &body.mfa_token,
        &body.code,
        &meta,
        previous.as_deref(),
    )
    .await?;
    let codes = codes.iter().map(|c| c.as_str().to_owned()).collect();
    Ok(outcome_answer(&state, outcome, Some(codes)))
}

/// Exactly one of a TOTP code and a recovery code.
pub(crate) fn second_factor(
    code: Option<String>,
    recovery_code: Option<String>,
) -> Result<SecondFactor, ApiError> {
    match (code, recovery_code) {
        (Some(code), None) => Ok(SecondFactor::Code(code)),
        (None, Some(code)) => Ok(SecondFactor::RecoveryCode(code)),
        _ => Err(
            crate::auth::AuthError::Validation(vec![crate::auth::Violation::new(
                "code",
                "one_factor_required",
                "give either code or recovery_code",
            )])
            .into(),
        ),
    }
}

/// End the session and its refresh-token family; clears the cookie.
#[utoipa::path(
    post,
    path = "/api/v1/logout",
    responses(
        (status = 204, description = "Logged out"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Cookie without CSRF proof", body = Problem, content_type = "application/problem+json"),
    ),
    security(("session" = []), ("bearer" = []))
)]
async fn logout(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    meta: RequestMeta,
) -> Result<Response, ApiError> {
    account::logout(&state.core, &principal, &meta).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(value) = HeaderValue::from_str(&cookies::clear_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}
