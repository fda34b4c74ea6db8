//! The consent page: a signed-in user allows or denies a client the scopes it asks for. The
//! form carries the session's CSRF token; the answer is remembered per user and client.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Chrome, error_page, html};
use crate::auth::oidc::flow;
use crate::auth::session_auth;
use crate::http::caller::PresentedSession;
use crate::http::error::ApiError;
use crate::http::extract::{ApiQuery, FormPairs, first_value};
use crate::http::routes::oidc::answer;
use crate::http::state::AppState;

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(show, submit))
}

#[derive(Template)]
#[template(path = "consent.html")]
struct ConsentPage {
    chrome: Chrome,
    client: String,
    email: String,
    items: Vec<String>,
    csrf: String,
    req: String,
}

/// What a scope lets the client do, for a person.
fn describe(scope: &str) -> String {
    match scope {
        "openid" => "Know who you are when you sign in".to_owned(),
        "profile" => "See your name".to_owned(),
        "email" => "See your email address".to_owned(),
        "offline_access" => "Stay connected while you are away".to_owned(),
        other => format!("Use {other}"),
    }
}

/// The consent page's query.
#[derive(Deserialize, IntoParams)]
pub struct ConsentQuery {
    /// The pending authorization request.
    req: Option<String>,
}

/// The consent page for a pending authorization request.
#[utoipa::path(
    get,
    path = "/consent",
    params(ConsentQuery),
    responses(
        (status = 200, description = "What the client asks for, with Allow and Deny", body = String, content_type = "text/html"),
        (status = 400, description = "Not signed in, or the request expired or is unknown", body = String, content_type = "text/html"),
    )
)]
async fn show(
    State(state): State<AppState>,
    PresentedSession(secret): PresentedSession,
    ApiQuery(query): ApiQuery<ConsentQuery>,
) -> Result<Response, ApiError> {
    let core = &state.core;
    let req = query.req.unwrap_or_default();
    let principal = session_auth::signed_in(core, secret.as_deref()).await?;
    let (Some(principal), Some(view)) = (principal, flow::pending_view(core, &req).await?) else {
        return Ok(error_page(
            &state,
            StatusCode::BAD_REQUEST,
            "This request has expired, or you are not signed in.",
        ));
    };
    let email = crate::auth::account::profile(core, &principal).await?.email;
    Ok(html(
        StatusCode::OK,
        &ConsentPage {
            chrome: Chrome::of(&state),
            client: view.client_id,
            email,
            items: view.scopes.iter().map(|s| describe(s)).collect(),
            csrf: session_auth::csrf_token(core, &principal.session_id),
            req,
        },
    ))
}

/// The consent form.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ConsentForm {
    /// The session's CSRF token.
    csrf: Option<String>,
    /// The pending authorization request.
    req: Option<String>,
    /// `allow` or `deny`.
    decision: Option<String>,
}

/// Allow or deny: on to the client with a code, or with `access_denied`.
#[utoipa::path(
    post,
    path = "/consent",
    request_body(content = ConsentForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "To the client's redirect URI with `code` or `error=access_denied`, `state` and `iss`"),
        (status = 200, description = "form_post: a form that POSTs the response to the redirect URI", body = String, content_type = "text/html"),
        (status = 400, description = "The request expired or is unknown", body = String, content_type = "text/html"),
        (status = 403, description = "Not signed in, or the CSRF check failed", body = String, content_type = "text/html"),
    )
)]
async fn submit(
    State(state): State<AppState>,
    PresentedSession(secret): PresentedSession,
    FormPairs(form): FormPairs,
) -> Result<Response, ApiError> {
    let core = &state.core;
    let field = |name: &str| first_value(&form, name);
    let principal = session_auth::signed_in(core, secret.as_deref()).await?;
    let csrf_ok = principal
        .as_ref()
        .is_some_and(|p| session_auth::verify_csrf(core, &p.session_id, field("csrf")));
    if !csrf_ok {
        return Ok(error_page(
            &state,
            StatusCode::FORBIDDEN,
            "This form expired or you are not signed in. Start again from the application.",
        ));
    }
    let allow = field("decision") == "allow";
    let outcome = flow::consent_answer(core, field("req"), secret.as_deref(), allow).await?;
    Ok(answer(&state, outcome))
}
