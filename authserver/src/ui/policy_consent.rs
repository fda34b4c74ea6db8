//! The privacy-policy page (issue 13): a user who has not accepted the realm's current policy
//! accepts it here before anything is issued. Two ways in: a hosted sign-in answered
//! `ConsentRequired` (the page carries its `consent_token` and the pre-session CSRF token),
//! or an authorization request found a session whose user has not accepted it (the page
//! carries the request id and the session's CSRF token, and the request resumes after).

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Chrome, error_page, form_csrf_ok, html, passing_failure, with_form_csrf, with_req};
use crate::auth::AuthError;
use crate::auth::oidc::flow;
use crate::auth::principal::RequestMeta;
use crate::auth::privacy::{self, Acceptance, PurposeView};
use crate::auth::session_auth;
use crate::http::caller::PresentedSession;
use crate::http::error::ApiError;
use crate::http::extract::{ApiQuery, FormPairs};
use crate::http::routes::oidc::answer;
use crate::http::state::AppState;

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(show, submit))
}

#[derive(Template)]
#[template(path = "policy_consent.html")]
struct PolicyPage {
    chrome: Chrome,
    csrf: String,
    version: String,
    purposes: Vec<PurposeView>,
    consent_token: Option<String>,
    req: Option<String>,
    next: bool,
    error: Option<String>,
    /// Recovery codes of an enrolment that just finished (shown once).
    recovery_codes: Vec<String>,
}

/// The page for a hosted sign-in waiting for consent (rendered in answer to the sign-in).
pub(super) fn for_login(
    state: &AppState,
    headers: &HeaderMap,
    consent_token: String,
    req: Option<String>,
    next: bool,
) -> Response {
    for_login_showing(state, headers, consent_token, req, next, Vec::new())
}

/// As [`for_login`], after a TOTP enrolment at sign-in: its recovery codes are shown above.
pub(super) fn for_login_showing(
    state: &AppState,
    headers: &HeaderMap,
    consent_token: String,
    req: Option<String>,
    next: bool,
    recovery_codes: Vec<String>,
) -> Response {
    let policy = privacy::policy_view(&state.core);
    with_form_csrf(state, headers, |csrf| {
        html(
            StatusCode::OK,
            &PolicyPage {
                chrome: Chrome::of(state),
                csrf,
                version: policy.version,
                purposes: policy.purposes,
                consent_token: Some(consent_token),
                req,
                next,
                error: None,
                recovery_codes,
            },
        )
    })
}

/// The page's query.
#[derive(Deserialize, IntoParams)]
pub struct PolicyQuery {
    /// The pending authorization request to resume after accepting.
    req: Option<String>,
}

/// The policy page for a signed-in user an authorization request is waiting for.
#[utoipa::path(
    get,
    path = "/consent/policy",
    params(PolicyQuery),
    responses(
        (status = 200, description = "The policy's purposes, with Accept", body = String, content_type = "text/html"),
        (status = 400, description = "Not signed in, or the request expired or is unknown", body = String, content_type = "text/html"),
    )
)]
async fn show(
    State(state): State<AppState>,
    PresentedSession(secret): PresentedSession,
    ApiQuery(query): ApiQuery<PolicyQuery>,
) -> Result<Response, ApiError> {
    let core = &state.core;
    let req = query.req.unwrap_or_default();
    let principal = session_auth::signed_in(core, secret.as_deref()).await?;
    let (Some(principal), Some(_)) = (principal, flow::pending_view(core, &req).await?) else {
        return Ok(error_page(
            &state,
            StatusCode::BAD_REQUEST,
            "This request has expired, or you are not signed in.",
        ));
    };
    let policy = privacy::policy_view(core);
    Ok(html(
        StatusCode::OK,
        &PolicyPage {
            chrome: Chrome::of(&state),
            csrf: session_auth::csrf_token(core, &principal.session_id),
            version: policy.version,
            purposes: policy.purposes,
            consent_token: None,
            req: Some(req),
            next: false,
            error: None,
            recovery_codes: Vec::new(),
        },
    ))
}

/// The policy form, as the OpenAPI document describes it (the handler reads its pairs).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct PolicyForm {
    /// The CSRF token (pre-session with `consent_token`, else the session's).
    csrf: Option<String>,
    /// The version shown.
    policy_version: Option<String>,
    /// The sign-in waiting for consent.
    consent_token: Option<String>,
    /// The pending authorization request.
    req: Option<String>,
    /// `consent_<purpose>=on` for each purpose granted.
    #[schema(value_type = Option<String>)]
    consent_purpose: Option<String>,
}

/// Accept the policy: the sign-in completes (or the authorization request resumes).
#[utoipa::path(
    post,
    path = "/consent/policy",
    request_body(content = PolicyForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "On to the pending authorization request, the account page or the signed-in page"),
        (status = 200, description = "Signed in (no pending request)", body = String, content_type = "text/html"),
        (status = 400, description = "A required purpose was not granted, or the sign-in expired", body = String, content_type = "text/html"),
        (status = 403, description = "The CSRF check failed, not signed in, or a social sign-up in a realm that now requires TOTP", body = String, content_type = "text/html"),
        (status = 409, description = "A social sign-up whose identity was linked, email registered or rules changed meanwhile: sign in again", body = String, content_type = "text/html"),
    )
)]
async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    meta: RequestMeta,
    PresentedSession(secret): PresentedSession,
    FormPairs(form): FormPairs,
) -> Result<Response, ApiError> {
    let core = &state.core;
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    let policy = privacy::policy_view(core);
    let consents: BTreeMap<String, bool> = policy
        .purposes
        .iter()
        .map(|p| {
            let granted = field(&format!("consent_{}", p.name)).is_some();
            (p.name.clone(), granted)
        })
        .collect();
    let acceptance = Acceptance {
        policy_version: field("policy_version"),
        consents,
    };
    let req = field("req");
    let next = field("next").is_some();
    let csrf = field("csrf").unwrap_or_default();
    let token = field("consent_token");
    let again = |status: StatusCode, csrf: String, message: &str| {
        html(
            status,
            &PolicyPage {
                chrome: Chrome::of(&state),
                csrf,
                version: policy.version.clone(),
                purposes: policy.purposes.clone(),
                consent_token: token.clone(),
                req: req.clone(),
                next,
                error: Some(message.to_owned()),
                recovery_codes: Vec::new(),
            },
        )
    };
    if let Some(token) = &token {
        if !form_csrf_ok(&state, &headers, &csrf) {
            return Ok(error_page(
                &state,
                StatusCode::FORBIDDEN,
                "This form expired. Please sign in again.",
            ));
        }
        return match privacy::complete_consent(core, token, &acceptance, &meta, secret.as_deref())
            .await
        {
            Ok(success) => super::login::signed_in(&state, success, req.as_deref(), next).await,
            Err(AuthError::Validation(_)) => Ok(again(
                StatusCode::BAD_REQUEST,
                csrf,
                "Please agree to every required purpose to continue.",
            )),
            Err(AuthError::InvalidToken) => Ok(error_page(
                &state,
                StatusCode::BAD_REQUEST,
                "This sign-in has expired. Please sign in again.",
            )),
            Err(AuthError::SignUpOutdated) => Ok(error_page(
                &state,
                StatusCode::CONFLICT,
                "This sign-up cannot be finished any more: the account or the rules changed meanwhile. Please sign in again.",
            )),
            Err(AuthError::SocialSignUpNeedsPassword) => Ok(error_page(
                &state,
                StatusCode::FORBIDDEN,
                "This site now requires two-step sign-in: register with a password, then connect your other account.",
            )),
            Err(other) => {
                let (status, message) = passing_failure(&state, other)?;
                Ok(error_page(&state, status, message))
            }
        };
    }
    let principal = session_auth::signed_in(core, secret.as_deref()).await?;
    let Some(principal) =
        principal.filter(|p| session_auth::verify_csrf(core, &p.session_id, &csrf))
    else {
        return Ok(error_page(
            &state,
            StatusCode::FORBIDDEN,
            "This form expired or you are not signed in. Start again from the application.",
        ));
    };
    match privacy::accept_for_session(core, &principal, &acceptance, &meta).await {
        Ok(()) => {}
        Err(AuthError::Validation(_)) => {
            return Ok(again(
                StatusCode::BAD_REQUEST,
                csrf,
                "Please agree to every required purpose to continue.",
            ));
        }
        Err(other) => return Err(other.into()),
    }
    match req {
        Some(req) => {
            let outcome = flow::resume(core, &req, secret.as_deref()).await?;
            Ok(answer(&state, outcome))
        }
        None => Ok(crate::http::routes::oidc::see_other(&with_req(
            super::account::ACCOUNT_PATH,
            None,
        ))),
    }
}
