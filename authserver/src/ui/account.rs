//! The account page: the signed-in user's profile, password change, sessions (each revocable;
//! the current one marked) and connected apps (remembered consents, each revocable), with a
//! sign-out link. Every form carries the session's CSRF token; without a session the page
//! sends the browser to sign in and come back here. The forms answer with a 303 back to the
//! page (`done` names what happened), or the page again with the errors next to their fields.

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Chrome, FieldErrors, html, notice, passing_failure};
use crate::auth::oidc::consent;
use crate::auth::principal::{Principal, RequestMeta};
use crate::auth::{AuthError, account, mfa, privacy, session_auth};
use crate::http::caller::PresentedSession;
use crate::http::cookies;
use crate::http::error::ApiError;
use crate::http::extract::{ApiQuery, FormPairs, first_value};
use crate::http::routes::oidc::see_other;
use crate::http::state::AppState;

/// Where the login page sends a browser that came from the account page.
pub const ACCOUNT_PATH: &str = "/account";

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(show))
        .routes(routes!(change_password))
        .routes(routes!(revoke_session))
        .routes(routes!(revoke_app))
        .routes(routes!(begin_totp))
        .routes(routes!(confirm_totp))
        .routes(routes!(regenerate_codes))
        .routes(routes!(remove_totp))
        .routes(routes!(change_consent))
        .routes(routes!(delete_account))
}

/// A purpose of the realm's policy with the user's answer.
struct ConsentRow {
    name: String,
    description: String,
    required: bool,
    granted: bool,
}

/// A TOTP enrolment shown on the page: the QR code (inline SVG, `id="totp-qr"`) and the key.
struct EnrolmentView {
    svg: String,
    secret: String,
}

/// What the MFA section shows once, besides the status.
#[derive(Default)]
struct MfaShown {
    enrolment: Option<EnrolmentView>,
    recovery_codes: Vec<String>,
}

struct SessionRow {
    id: String,
    created: String,
    last_seen: String,
    ip: String,
    user_agent: String,
    current: bool,
}

struct IdentityRow {
    id: String,
    provider: String,
    email: String,
    linked: String,
    last_used: String,
}

struct AppRow {
    client_id: String,
    scopes: String,
    granted: String,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    chrome: Chrome,
    csrf: String,
    email: String,
    display_name: Option<String>,
    email_verified: bool,
    created: String,
    sessions: Vec<SessionRow>,
    apps: Vec<AppRow>,
    identities: Vec<IdentityRow>,
    /// The realm's providers not linked yet: (name, button text).
    providers: Vec<(String, String)>,
    done: Option<&'static str>,
    errors: FieldErrors,
    summary: Option<String>,
    mfa_totp: bool,
    /// Whether the account has a password (one made by social sign-in has none).
    has_password: bool,
    recovery_left: u32,
    enrolment: Option<EnrolmentView>,
    recovery_codes: Vec<String>,
    consents: Vec<ConsentRow>,
    policy_version: String,
}

/// A time as the page shows it (UTC, to the minute).
fn shown(at: OffsetDateTime) -> String {
    format!("{} {:02}:{:02} UTC", at.date(), at.hour(), at.minute())
}

/// What a `done` value says.
fn done_message(done: &str) -> Option<&'static str> {
    match done {
        "password" => Some("Your password was changed. Every other session was signed out."),
        "session" => Some("The session was signed out."),
        "app" => Some("The app was disconnected: it must ask you again."),
        "mfa_removed" => Some("Two-step sign-in is off. Your recovery codes no longer work."),
        "linked" => Some("The account was connected: you can sign in with it now."),
        "unlinked" => Some("The account was disconnected: it no longer signs you in."),
        "consent" => Some("Your choice was saved."),
        _ => None,
    }
}

/// The errors the page shows besides its data.
#[derive(Default)]
pub(super) struct Problems {
    errors: FieldErrors,
    summary: Option<String>,
}

impl Problems {
    /// Only a summary, `text`.
    pub(super) fn saying(text: &str) -> Self {
        Self {
            summary: Some(text.to_owned()),
            ..Self::default()
        }
    }
}

pub(super) async fn page(
    state: &AppState,
    principal: &Principal,
    status: StatusCode,
    done: Option<&'static str>,
    problems: Problems,
) -> Result<Response, ApiError> {
    page_with(
        state,
        principal,
        status,
        done,
        problems,
        MfaShown::default(),
    )
    .await
}

async fn page_with(
    state: &AppState,
    principal: &Principal,
    status: StatusCode,
    done: Option<&'static str>,
    problems: Problems,
    shown_once: MfaShown,
) -> Result<Response, ApiError> {
    let core = &state.core;
    let mfa_status = mfa::status(core, principal).await?;
    let profile = account::profile(core, principal).await?;
    let sessions = account::sessions(core, principal)
        .await?
        .into_iter()
        .map(|s| SessionRow {
            id: s.id,
            created: shown(s.created_at),
            last_seen: shown(s.last_seen_at),
            ip: s.ip,
            user_agent: s.user_agent,
            current: s.current,
        })
        .collect();
    let apps = consent::connected_apps(core, principal)
        .await?
        .into_iter()
        .map(|a| AppRow {
            client_id: a.client_id,
            scopes: a.scopes.join(" "),
            granted: shown(a.granted_at),
        })
        .collect();
    let linked = crate::auth::social::identities(core, principal).await?;
    let providers = core
        .social()
        .map(|social| {
            social
                .choices()
                .into_iter()
                .filter(|c| !linked.iter().any(|l| l.provider == c.name))
                .map(|c| (c.name, c.label))
                .collect()
        })
        .unwrap_or_default();
    let identities = linked
        .into_iter()
        .map(|i| IdentityRow {
            id: i.id.to_string(),
            provider: i.provider,
            email: i.email.unwrap_or_default(),
            linked: shown(i.linked_at),
            last_used: shown(i.last_used_at),
        })
        .collect();
    // Without PostgreSQL (`--dev` in memory) there are no consents to show.
    let answers = match privacy::my_consents(core, principal).await {
        Ok(answers) => answers,
        Err(AuthError::Unsupported(_)) => Vec::new(),
        Err(other) => return Err(other.into()),
    };
    let policy = privacy::policy_view(core);
    let consents = policy
        .purposes
        .into_iter()
        .map(|p| ConsentRow {
            granted: answers.iter().any(|a| a.purpose == p.name && a.granted),
            name: p.name,
            description: p.description,
            required: p.required,
        })
        .collect();
    Ok(html(
        status,
        &AccountPage {
            consents,
            policy_version: policy.version,
            chrome: Chrome::of(state),
            csrf: session_auth::csrf_token(core, &principal.session_id),
            email: profile.email,
            display_name: profile.display_name,
            email_verified: profile.email_verified,
            created: shown(profile.created_at),
            sessions,
            apps,
            identities,
            providers,
            done,
            errors: problems.errors,
            summary: problems.summary,
            mfa_totp: mfa_status.totp,
            has_password: profile.has_password,
            recovery_left: mfa_status.recovery_codes_left,
            enrolment: shown_once.enrolment,
            recovery_codes: shown_once.recovery_codes,
        },
    ))
}

/// The login page, coming back here.
pub(super) const LOGIN_AND_BACK: &str = "/login?next=%2Faccount";

/// To the login page, coming back here.
fn to_login() -> Response {
    see_other(LOGIN_AND_BACK)
}

/// The account page's query.
#[derive(Deserialize, IntoParams)]
pub struct AccountQuery {
    /// What the last form did: `password`, `session` or `app`.
    done: Option<String>,
}

/// The account page.
#[utoipa::path(
    get,
    path = "/account",
    params(AccountQuery),
    responses(
        (status = 200, description = "Profile, password change, sessions and connected apps", body = String, content_type = "text/html"),
        (status = 303, description = "Not signed in: to the login page, which comes back here"),
    )
)]
async fn show(
    State(state): State<AppState>,
    PresentedSession(secret): PresentedSession,
    ApiQuery(query): ApiQuery<AccountQuery>,
) -> Result<Response, ApiError> {
    let Some(principal) = session_auth::signed_in(&state.core, secret.as_deref()).await? else {
        return Ok(to_login());
    };
    let done = query.done.as_deref().and_then(done_message);
    page(
        &state,
        &principal,
        StatusCode::OK,
        done,
        Problems::default(),
    )
    .await
}

/// The signed-in principal of a form POST whose CSRF token is the session's: `Err` is the
/// answer to give instead (a 403: a page asking to sign in again, or this page).
pub(super) async fn form_caller(
    state: &AppState,
    secret: Option<&str>,
    csrf: &str,
) -> Result<Result<Principal, Response>, ApiError> {
    let Some(principal) = session_auth::signed_in(&state.core, secret).await? else {
        return Ok(Err(notice(
            state,
            StatusCode::FORBIDDEN,
            "You are signed out",
            &["Your session has ended. Sign in again to manage your account."],
            Some((LOGIN_AND_BACK.to_owned(), "Sign in")),
        )));
    };
    if session_auth::verify_csrf(&state.core, &principal.session_id, csrf) {
        return Ok(Ok(principal));
    }
    let problems = Problems::saying("This form expired. Please try again.");
    Ok(Err(page(
        state,
        &principal,
        StatusCode::FORBIDDEN,
        None,
        problems,
    )
    .await?))
}

/// The password change form.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct PasswordForm {
    /// The current password.
    current_password: Option<String>,
    /// The new password.
    new_password: Option<String>,
    /// The session's CSRF token.
    csrf: Option<String>,
}

/// Changes the password (the current one checked); every other session ends.
#[utoipa::path(
    post,
    path = "/account/password",
    request_body(content = PasswordForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Changed: back to the account page"),
        (status = 400, description = "The current password is wrong or the new one breaks a rule: the page, the message next to the field", body = String, content_type = "text/html"),
        (status = 403, description = "Not signed in (a page linking to the login page), or the CSRF check failed (the page again)", body = String, content_type = "text/html"),
        (status = 429, description = "Locked after failed attempts (`Retry-After`)", body = String, content_type = "text/html"),
        (status = 503, description = "Too busy or a dependency is down", body = String, content_type = "text/html"),
    )
)]
async fn change_password(
    State(state): State<AppState>,
    PresentedSession(secret): PresentedSession,
    meta: RequestMeta,
    FormPairs(form): FormPairs,
) -> Result<Response, ApiError> {
    let field = |name: &str| first_value(&form, name);
    let principal = match form_caller(&state, secret.as_deref(), field("csrf")).await? {
        Ok(principal) => principal,
        Err(answer) => return Ok(answer),
    };
    let outcome = account::change_password(
        &state.core,
        &principal,
        &meta,
        field("current_password"),
        field("new_password"),
    )
    .await;
    let (status, problems, retry) = match outcome {
        Ok(()) => return Ok(see_other("/account?done=password")),
        Err(AuthError::InvalidCredentials) => (
            StatusCode::BAD_REQUEST,
            Problems {
                errors: FieldErrors::of(
                    &[crate::auth::Violation::new(
                        "current_password",
                        "invalid_credentials",
                        "the current password is wrong",
                    )],
                    str::to_owned,
                ),
                summary: None,
            },
            None,
        ),
        Err(AuthError::Validation(violations)) => (
            StatusCode::BAD_REQUEST,
            Problems {
                errors: FieldErrors::of(&violations, str::to_owned),
                summary: None,
            },
            None,
        ),
        Err(AuthError::PasswordNotSet) => (
            StatusCode::BAD_REQUEST,
            Problems::saying("This account has no password yet: set one by a password reset."),
            None,
        ),
        Err(AuthError::AccountLocked { retry_after, .. }) => {
            let seconds = retry_after.as_secs().max(1);
            (
                StatusCode::TOO_MANY_REQUESTS,
                Problems {
                    summary: Some(format!(
                        "Too many wrong passwords. Try again in {} minute(s).",
                        seconds.div_ceil(60)
                    )),
                    ..Problems::default()
                },
                Some(seconds),
            )
        }
        Err(AuthError::Unauthenticated) => return Ok(to_login()),
        Err(other) => {
            let (status, message) = passing_failure(&state, other)?;
            (status, Problems::saying(message), None)
        }
    };
    let mut response = page(&state, &principal, status, None, problems).await?;
    if let Some(seconds) = retry
        && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    Ok(response)
}

/// A form naming one thing to revoke.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RevokeForm {
    /// The session's public id, or the client id.
    id: Option<String>,
    /// The session's CSRF token.
    csrf: Option<String>,
}

/// Signs one of the caller's sessions out (its refresh and access tokens end with it); the
/// current one signs this browser out.
#[utoipa::path(
    post,
    path = "/account/sessions/revoke",
    request_body(content = RevokeForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Revoked: back to the account page (or, for the current session, to the login page)"),
        (status = 403, description = "Not signed in (a page linking to the login page), or the CSRF check failed (the page again)", body = String, content_type = "text/html"),
        (status = 404, description = "No such session of the caller: the page again", body = String, content_type = "text/html"),
    )
)]
async fn revoke_session(
    State(state): State<AppState>,
    PresentedSession(secret): PresentedSession,
    meta: RequestMeta,
    FormPairs(form): FormPairs,
) -> Result<Response, ApiError> {
    let field = |name: &str| first_value(&form, name);
    let principal = match form_caller(&state, secret.as_deref(), field("csrf")).await? {
        Ok(principal) => principal,
        Err(answer) => return Ok(answer),
    };
    let id = field("id");
    match account::revoke_session(&state.core, &principal, id, &meta).await {
        Ok(()) if id == principal.session_id => {
            let mut response = to_login();
            if let Ok(value) = HeaderValue::from_str(&cookies::clear_cookie()) {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
            Ok(response)
        }
        Ok(()) => Ok(see_other("/account?done=session")),
        Err(AuthError::NotFound) => {
            let problems = Problems::saying("That session has already ended.");
            page(&state, &principal, StatusCode::NOT_FOUND, None, problems).await
        }
        Err(other) => Err(other.into()),
    }
}

/// Disconnects an app: its consent is withdrawn and its refresh and access tokens for the
/// caller end.
#[utoipa::path(
    post,
    path = "/account/apps/revoke",
    request_body(content = RevokeForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Disconnected: back to the account page"),
        (status = 403, description = "Not signed in (a page linking to the login page), or the CSRF check failed (the page again)", body = String, content_type = "text/html"),
        (status = 404, description = "The app was not connected: the page again", body = String, content_type = "text/html"),
    )
)]
async fn revoke_app(
    State(state): State<AppState>,
    PresentedSession(secret): PresentedSession,
    meta: RequestMeta,
    FormPairs(form): FormPairs,
) -> Result<Response, ApiError> {
    let field = |name: &str| first_value(&form, name);
    let principal = match form_caller(&state, secret.as_deref(), field("csrf")).await? {
        Ok(principal) => principal,
        Err(answer) => return Ok(answer),
    };
    match consent::revoke_app(&state.core, &principal, field("id"), &meta).await {
        Ok(()) => Ok(see_other("/account?done=app")),
        Err(AuthError::NotFound) => {
            let problems = Problems::saying("That app is not connected.");
            page(&state, &principal, StatusCode::NOT_FOUND, None, problems).await
        }
        Err(other) => Err(other.into()),
    }
}

/// A form of the MFA section: the password, a code, or both.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct MfaAccountForm {
    /// The current password.
    password: Option<String>,
    /// A TOTP code, or (to regenerate or remove) a recovery code.
    code: Option<String>,
    /// The session's CSRF token.
    csrf: Option<String>,
}

/// The page again after a refused MFA form: the message in the summary.
async fn mfa_refused(
    state: &AppState,
    principal: &Principal,
    error: AuthError,
) -> Result<Response, ApiError> {
    let (status, text, retry) = match error {
        AuthError::InvalidCredentials => (
            StatusCode::BAD_REQUEST,
            "The password is wrong.".to_owned(),
            None,
        ),
        AuthError::InvalidTotp => (
            StatusCode::BAD_REQUEST,
            "The code is wrong or was used already.".to_owned(),
            None,
        ),
        AuthError::PasswordNotSet => (
            StatusCode::CONFLICT,
            "This account has no password: you sign in with another account. Set a password with “Forgot your password?” on the sign-in page first.".to_owned(),
            None,
        ),
        AuthError::RecentSignInRequired => (
            StatusCode::FORBIDDEN,
            "Sign out and sign in again first: without a password, this needs a sign-in from the last 10 minutes.".to_owned(),
            None,
        ),
        AuthError::NoPendingEnrolment => (
            StatusCode::CONFLICT,
            "The set-up expired. Start it again.".to_owned(),
            None,
        ),
        AuthError::MfaAlreadyEnrolled => (
            StatusCode::CONFLICT,
            "Two-step sign-in is already on.".to_owned(),
            None,
        ),
        AuthError::MfaNotEnrolled => (
            StatusCode::CONFLICT,
            "Two-step sign-in is not on.".to_owned(),
            None,
        ),
        AuthError::AccountLocked { retry_after, .. } => {
            let seconds = retry_after.as_secs().max(1);
            (
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "Too many failed attempts. Try again in {} minute(s).",
                    seconds.div_ceil(60)
                ),
                Some(seconds),
            )
        }
        AuthError::RateLimited(refusal) => (
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Too many attempts. Try again in {} second(s).",
                refusal.retry_after_secs
            ),
            Some(refusal.retry_after_secs),
        ),
        AuthError::Unauthenticated => return Ok(to_login()),
        other => {
            let (status, message) = passing_failure(state, other)?;
            (status, message.to_owned(), None)
        }
    };
    let mut response = page(state, principal, status, None, Problems::saying(&text)).await?;
    if let Some(seconds) = retry
        && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    Ok(response)
}

/// Begins setting up TOTP (the password checked): the page with the QR code and the key.
#[utoipa::path(
    post,
    path = "/account/mfa/totp",
    request_body(content = MfaAccountForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The page with the QR code (`#totp-qr`), the key (`#totp-secret`) and the confirmation form", body = String, content_type = "text/html"),
        (status = 400, description = "The password is wrong: the page again", body = String, content_type = "text/html"),
        (status = 403, description = "Not signed in, or the CSRF check failed", body = String, content_type = "text/html"),
        (status = 409, description = "Already on, or the account has no password: the page again", body = String, content_type = "text/html"),
        (status = 429, description = "Locked or rate limited (`Retry-After`)", body = String, content_type = "text/html"),
    )
)]
async fn begin_totp(
    State(state): State<AppState>,
    PresentedSession(secret): PresentedSession,
    meta: RequestMeta,
    FormPairs(form): FormPairs,
) -> Result<Response, ApiError> {
    let field = |name: &str| first_value(&form, name);
    let principal = match form_caller(&state, secret.as_deref(), field("csrf")).await? {
        Ok(principal) => principal,
        Err(answer) => return Ok(answer),
    };
    let shown = match mfa::begin_totp(&state.core, &principal, &meta, field("password")).await {
        Ok(shown) => shown,
        Err(error) => return mfa_refused(&state, &principal, error).await,
    };
    let svg = portcullis_mfa::qr_svg(
        &shown.otpauth_uri,
        "Scan this code with your authenticator app",
    )
    .map_err(|e| AuthError::Internal(format!("QR code: {e}")))?
    // The browser test finds the code by its id.
    .replacen("<svg ", "<svg id=\"totp-qr\" ", 1);
    let enrolment = EnrolmentView {
        svg,
        secret: shown.secret,
    };
    page_with(
        &state,
        &principal,
        StatusCode::OK,
        None,
        Problems::default(),
        MfaShown {
            enrolment: Some(enrolment),
            recovery_codes: Vec::new(),
        },
    )
    .await
}

/// Confirms the set-up with a first code: the page with the recovery codes, shown once.
#[utoipa::path(
    post,
    path = "/account/mfa/totp/confirm",
    request_body(content = MfaAccountForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "On; the page with the recovery codes (`#recovery-codes`), shown once", body = String, content_type = "text/html"),
        (status = 400, description = "The code is wrong: the page again", body = String, content_type = "text/html"),
        (status = 403, description = "Not signed in, or the CSRF check failed", body = String, content_type = "text/html"),
        (status = 409, description = "No set-up waits (expired or from another session)", body = String, content_type = "text/html"),
    )
)]
async fn confirm_totp(
    State(state): State<AppState>,
    PresentedSession(secret): PresentedSession,
    meta: RequestMeta,
    FormPairs(form): FormPairs,
) -> Result<Response, ApiError> {
    let field = |name: &str| first_value(&form, name);
    let principal = match form_caller(&state, secret.as_deref(), field("csrf")).await? {
        Ok(principal) => principal,
        Err(answer) => return Ok(answer),
    };
    match mfa::confirm_totp(&state.core, &principal, &meta, field("code")).await {
        Ok(codes) => shown_codes(&state, &principal, &codes).await,
        Err(error) => mfa_refused(&state, &principal, error).await,
    }
}

/// The page with new recovery codes, shown once.
async fn shown_codes(
    state: &AppState,
    principal: &Principal,
    codes: &[portcullis_mfa::RecoveryCode],
) -> Result<Response, ApiError> {
    page_with(
        state,
        principal,
        StatusCode::OK,
        None,
        Problems::default(),
        MfaShown {
            enrolment: None,
            recovery_codes: codes.iter().map(|c| c.as_str().to_owned()).collect(),
        },
    )
    .await
}

/// New recovery codes (the old set void), after the password and a fresh second factor.
#[utoipa::path(
    post,
    path = "/account/mfa/recovery-codes",
    request_body(content = MfaAccountForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The page with the new recovery codes, shown once", body = String, content_type = "text/html"),
        (status = 400, description = "The password or code is wrong: the page again", body = String, content_type = "text/html"),
        (status = 403, description = "Not signed in, or the CSRF check failed", body = String, content_type = "text/html"),
        (status = 409, description = "Two-step sign-in is not on", body = String, content_type = "text/html"),
        (status = 429, description = "Locked or rate limited (`Retry-After`)", body = String, content_type = "text/html"),
    )
)]
async fn regenerate_codes(
    State(state): State<AppState>,
    PresentedSession(secret): PresentedSession,
    meta: RequestMeta,
    FormPairs(form): FormPairs,
) -> Result<Response, ApiError> {
    let field = |name: &str| first_value(&form, name);
    let principal = match form_caller(&state, secret.as_deref(), field("csrf")).await? {
        Ok(principal) => principal,
        Err(answer) => return Ok(answer),
    };
    match mfa::regenerate_recovery_codes(
        &state.core,
        &principal,
        &meta,
        field("password"),
        field("code"),
    )
    .await
    {
        Ok(codes) => shown_codes(&state, &principal, &codes).await,
        Err(error) => mfa_refused(&state, &principal, error).await,
    }
}

/// Turns TOTP off, after the password and a fresh second factor.
#[utoipa::path(
    post,
    path = "/account/mfa/totp/remove",
    request_body(content = MfaAccountForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Off: back to the account page"),
        (status = 400, description = "The password or code is wrong: the page again", body = String, content_type = "text/html"),
        (status = 403, description = "Not signed in, or the CSRF check failed", body = String, content_type = "text/html"),
        (status = 409, description = "Two-step sign-in is not on", body = String, content_type = "text/html"),
        (status = 429, description = "Locked or rate limited (`Retry-After`)", body = String, content_type = "text/html"),
    )
)]
async fn remove_totp(
    State(state): State<AppState>,
    PresentedSession(secret): PresentedSession,
    meta: RequestMeta,
    FormPairs(form): FormPairs,
) -> Result<Response, ApiError> {
    let field = |name: &str| first_value(&form, name);
    let principal = match form_caller(&state, secret.as_deref(), field("csrf")).await? {
        Ok(principal) => principal,
        Err(answer) => return Ok(answer),
    };
    match mfa::remove_totp(
        &state.core,
        &principal,
        &meta,
        field("password"),
        field("code"),
    )
    .await
    {
        Ok(()) => Ok(see_other("/account?done=mfa_removed")),
        Err(error) => mfa_refused(&state, &principal, error).await,
    }
}

/// A grant or withdrawal from the account page.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ConsentForm {
    /// The purpose.
    purpose: Option<String>,
    /// `true` to grant, `false` to withdraw.
    granted: Option<String>,
    /// The policy version shown.
    policy_version: Option<String>,
    /// The session's CSRF token.
    csrf: Option<String>,
}

/// Grants or withdraws a purpose (source `account`); a required one cannot be withdrawn.
#[utoipa::path(
    post,
    path = "/account/consents",
    request_body(content = ConsentForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Saved: back to the account page"),
        (status = 400, description = "Unknown purpose: the page again", body = String, content_type = "text/html"),
        (status = 403, description = "Not signed in, or the CSRF check failed", body = String, content_type = "text/html"),
        (status = 409, description = "A required purpose cannot be withdrawn: the page again", body = String, content_type = "text/html"),
    )
)]
async fn change_consent(
    State(state): State<AppState>,
    PresentedSession(secret): PresentedSession,
    meta: RequestMeta,
    FormPairs(form): FormPairs,
) -> Result<Response, ApiError> {
    let field = |name: &str| first_value(&form, name);
    let principal = match form_caller(&state, secret.as_deref(), field("csrf")).await? {
        Ok(principal) => principal,
        Err(answer) => return Ok(answer),
    };
    match privacy::change_consent(
        &state.core,
        &principal,
        field("purpose"),
        field("granted") == "true",
        field("policy_version"),
        portcullis_privacy::consent::Source::Account,
        &meta,
    )
    .await
    {
        Ok(_) => Ok(see_other("/account?done=consent")),
        Err(AuthError::ConsentRequired { .. }) => {
            let problems = Problems::saying(
                "This purpose is required to use your account. To withdraw it, delete your account.",
            );
            page(&state, &principal, StatusCode::CONFLICT, None, problems).await
        }
        Err(AuthError::Validation(_)) => {
            let problems =
                Problems::saying("The privacy policy changed meanwhile. Please try again.");
            page(&state, &principal, StatusCode::BAD_REQUEST, None, problems).await
        }
        Err(other) => Err(other.into()),
    }
}

/// Deletes the account (the password, and a code when two-step sign-in is on): signed out at
/// once; the data goes at once or after the realm's grace period.
#[utoipa::path(
    post,
    path = "/account/delete",
    request_body(content = MfaAccountForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Deleted (or scheduled): a page saying so, the session cookie cleared", body = String, content_type = "text/html"),
        (status = 400, description = "The password or code is wrong: the page again", body = String, content_type = "text/html"),
        (status = 403, description = "Not signed in, the CSRF check failed, or an account without a password signed in more than 10 minutes ago (the page again)", body = String, content_type = "text/html"),
        (status = 429, description = "Locked or rate limited (`Retry-After`)", body = String, content_type = "text/html"),
    )
)]
async fn delete_account(
    State(state): State<AppState>,
    PresentedSession(secret): PresentedSession,
    meta: RequestMeta,
    FormPairs(form): FormPairs,
) -> Result<Response, ApiError> {
    let field = |name: &str| first_value(&form, name);
    let principal = match form_caller(&state, secret.as_deref(), field("csrf")).await? {
        Ok(principal) => principal,
        Err(answer) => return Ok(answer),
    };
    let code = Some(field("code")).filter(|c| !c.is_empty());
    match privacy::erase_me(&state.core, &principal, &meta, field("password"), code).await {
        Ok(request) => {
            let when = if request.done {
                "Your account and its data were deleted.".to_owned()
            } else {
                format!(
                    "You are signed out everywhere. Your data will be deleted on {}.",
                    shown(request.effective_at)
                )
            };
            let mut response = notice(
                &state,
                StatusCode::OK,
                "Your account is deleted",
                &[when.as_str()],
                None,
            );
            if let Ok(value) = HeaderValue::from_str(&cookies::clear_cookie()) {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
            Ok(response)
        }
        Err(AuthError::Validation(_)) => {
            let problems = Problems::saying(
                "Two-step sign-in is on: enter a code from your app, or a recovery code.",
            );
            page(&state, &principal, StatusCode::BAD_REQUEST, None, problems).await
        }
        Err(error) => mfa_refused(&state, &principal, error).await,
    }
}
