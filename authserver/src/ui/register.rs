//! The registration page: the `POST /api/v1/register` use case behind a form with a
//! pre-session CSRF token. Its answers never tell whether the address already has an account:
//! a taken address gets exactly the page a new one gets. Opened for a pending authorization
//! request (`req`), it keeps the request, so the new user goes on to the application after
//! signing in.

use crate::auth::principal::RequestMeta;
use std::collections::BTreeMap;

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{
    Chrome, FieldErrors, form_csrf_ok, html, notice, passing_failure, sign_in_link, with_form_csrf,
    with_req,
};
use crate::auth::AuthError;
use crate::auth::oidc::flow;
use crate::auth::registration::{self, Registered, Registration};
use crate::http::error::ApiError;
use crate::http::extract::{ApiQuery, FormPairs, first_value};
use crate::http::state::AppState;

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(show, submit))
}

/// A processing purpose as the form shows it.
struct PurposeItem {
    name: String,
    description: String,
    required: bool,
    checked: bool,
}

#[derive(Template)]
#[template(path = "register.html")]
struct RegisterPage {
    chrome: Chrome,
    csrf: String,
    req: Option<String>,
    email: String,
    display_name: String,
    purposes: Vec<PurposeItem>,
    policy_version: String,
    policy_url: Option<String>,
    errors: FieldErrors,
    summary: Option<String>,
    login: String,
}

/// What the form shows besides the realm's fixed parts.
#[derive(Default)]
struct Filled {
    req: Option<String>,
    email: String,
    display_name: String,
    checked: Vec<String>,
    errors: FieldErrors,
    summary: Option<String>,
}

fn page(state: &AppState, headers: &HeaderMap, status: StatusCode, filled: Filled) -> Response {
    let privacy = registration::privacy_policy(&state.core);
    let purposes = privacy
        .purposes
        .iter()
        .map(|p| PurposeItem {
            name: p.name.clone(),
            description: p.description.clone(),
            required: p.required,
            checked: filled.checked.contains(&p.name),
        })
        .collect();
    let login = with_req("/login", filled.req.as_deref());
    with_form_csrf(state, headers, |csrf| {
        html(
            status,
            &RegisterPage {
                chrome: Chrome::of(state),
                csrf,
                req: filled.req,
                email: filled.email,
                display_name: filled.display_name,
                purposes,
                policy_version: privacy.policy_version.clone(),
                policy_url: privacy.policy_url.clone(),
                errors: filled.errors,
                summary: filled.summary,
                login,
            },
        )
    })
}

/// The registration page's query.
#[derive(Deserialize, IntoParams)]
pub struct RegisterQuery {
    /// A pending authorization request to continue after registering.
    req: Option<String>,
}

/// The registration form.
#[utoipa::path(
    get,
    path = "/register",
    params(RegisterQuery),
    responses((status = 200, description = "The registration form", body = String, content_type = "text/html"))
)]
async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<RegisterQuery>,
) -> Result<Response, ApiError> {
    let req = match query.req.filter(|r| !r.is_empty()) {
        Some(req) => flow::pending_view(&state.core, &req).await?.map(|_| req),
        None => None,
    };
    Ok(page(
        &state,
        &headers,
        StatusCode::OK,
        Filled {
            req,
            ..Filled::default()
        },
    ))
}

/// The registration form, as the OpenAPI document describes it (the handler reads its pairs).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RegisterForm {
    /// Email address.
    email: Option<String>,
    /// Password, as the realm's policy asks.
    password: Option<String>,
    /// Display name.
    display_name: Option<String>,
    /// A purpose consented to (repeated, one per ticked box).
    consent: Option<String>,
    /// The privacy policy version shown.
    policy_version: Option<String>,
    /// The form's CSRF token.
    csrf: Option<String>,
    /// The pending authorization request, when there is one.
    req: Option<String>,
}

/// Registers; the answer is the same whether or not the address already has an account.
#[utoipa::path(
    post,
    path = "/register",
    request_body(content = RegisterForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Registered, or the address was taken (the same page): check the mail, or sign in", body = String, content_type = "text/html"),
        (status = 400, description = "The input breaks a rule: the form again, each message next to its field", body = String, content_type = "text/html"),
        (status = 403, description = "CSRF check failed: the form again", body = String, content_type = "text/html"),
        (status = 503, description = "Too busy or a dependency is down: the form again", body = String, content_type = "text/html"),
    )
)]
async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    meta: RequestMeta,
    FormPairs(pairs): FormPairs,
) -> Result<Response, ApiError> {
    let field = |name: &str| first_value(&pairs, name).trim().to_owned();
    let checked: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "consent")
        .map(|(_, v)| v.clone())
        .collect();
    let req = Some(field("req")).filter(|r| !r.is_empty());
    let filled = |errors: FieldErrors, summary: Option<&str>| Filled {
        req: req.clone(),
        email: field("email"),
        display_name: field("display_name"),
        checked: checked.clone(),
        errors,
        summary: summary.map(str::to_owned),
    };
    if !form_csrf_ok(&state, &headers, &field("csrf")) {
        return Ok(page(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            filled(
                FieldErrors::default(),
                Some("This form expired. Please send it again."),
            ),
        ));
    }
    let consents: BTreeMap<String, bool> = registration::privacy_policy(&state.core)
        .purposes
        .iter()
        .map(|p| (p.name.clone(), checked.contains(&p.name)))
        .collect();
    let input = Registration {
        email: field("email"),
        password: first_value(&pairs, "password").to_owned(),
        display_name: Some(field("display_name")).filter(|n| !n.is_empty()),
        consents,
        policy_version: Some(field("policy_version")).filter(|v| !v.is_empty()),
        pending_request: req.clone(),
        meta,
    };
    let verification = match registration::register(&state.core, input).await {
        Ok(Registered::VerificationPending) => true,
        // A taken address must look exactly like a new one.
        Ok(Registered::Created(_)) | Err(AuthError::EmailTaken) => false,
        Err(AuthError::Validation(violations)) => {
            let errors = FieldErrors::of(&violations, str::to_owned);
            return Ok(page(
                &state,
                &headers,
                StatusCode::BAD_REQUEST,
                filled(errors, Some("Please correct the marked fields.")),
            ));
        }
        Err(other) => {
            let (status, message) = passing_failure(&state, other)?;
            return Ok(page(
                &state,
                &headers,
                status,
                filled(FieldErrors::default(), Some(message)),
            ));
        }
    };
    let link = sign_in_link(&state, req.as_deref()).await?;
    Ok(if verification {
        notice(
            &state,
            StatusCode::OK,
            "Check your email",
            &[
                "We have sent a message to the address you gave. Open the link in it within 24 hours to confirm your address.",
                "Once you have confirmed it, sign in to continue.",
            ],
            Some((link, "Sign in")),
        )
    } else {
        notice(
            &state,
            StatusCode::OK,
            "Registration received",
            &["Sign in with your email address and password to continue."],
            Some((link, "Sign in")),
        )
    })
}
