//! The hosted pages: server-rendered HTML (askama templates in `templates/`, checked against
//! their structs at compile time and escaped), working without JavaScript, with one stylesheet
//! and no inline script or style, so the realm's CSP (`default-src 'self'`) needs no
//! `unsafe-inline`. Static files are served under names carrying their content hash and cached
//! for a year. Every form carries a CSRF token: before a session exists, one paired with the
//! random pre-session cookie `__Host-portcullis_csrf`.

pub mod account;
pub mod consent;
pub mod login;
pub mod login_enrol;
pub mod login_mfa;
mod policy_consent;
pub mod register;
pub mod reset;
pub mod social;
pub mod verify;

use std::sync::LazyLock;

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::oidc::flow;
use crate::auth::{AuthError, Violation, session_auth};
use crate::http::error::ApiError;
use crate::http::extract::ApiPath;
use crate::http::state::AppState;

const STYLESHEET: &str = include_str!("../../static/portcullis.css");
const FORM_POST_JS: &str = include_str!("../../static/form_post.js");

/// Name of the pre-session CSRF cookie.
pub const CSRF_COOKIE: &str = "__Host-portcullis_csrf";

/// The static files' paths, named by their content hash.
struct Assets {
    stylesheet: String,
    form_post_js: String,
}

fn hashed(stem: &str, extension: &str, body: &str) -> String {
    let digest = Sha256::digest(body.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("/static/{stem}-{hex}.{extension}")
}

static ASSETS: LazyLock<Assets> = LazyLock::new(|| Assets {
    stylesheet: hashed("portcullis", "css", STYLESHEET),
    form_post_js: hashed("form_post", "js", FORM_POST_JS),
});

/// What every page shows around its content.
#[derive(Clone, Debug)]
pub struct Chrome {
    /// The realm's name.
    pub realm: String,
    /// Path of the stylesheet.
    pub stylesheet: &'static str,
    /// Where the realm's privacy policy is (its `policyUrl`, else the policy's API answer).
    pub policy_url: String,
}

impl Chrome {
    /// The chrome of this realm's pages.
    pub fn of(state: &AppState) -> Self {
        Self {
            realm: state.web.realm_name.clone(),
            stylesheet: &ASSETS.stylesheet,
            policy_url: crate::auth::privacy::policy_view(&state.core)
                .url
                .unwrap_or_else(|| "/api/v1/privacy-policy".to_owned()),
        }
    }
}

/// Renders a page with `status`; a template that fails to render is a 500 (logged).
pub fn html(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => {
            let mut response = (status, body).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            response
        }
        Err(error) => {
            tracing::error!(error = %error, "page rendering failed");
            ApiError::from_status(StatusCode::INTERNAL_SERVER_ERROR, String::new()).into_response()
        }
    }
}

/// An error page.
#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    chrome: Chrome,
    heading: &'a str,
    description: &'a str,
}

/// An error page for the user (never a redirect).
pub fn error_page(state: &AppState, status: StatusCode, description: &str) -> Response {
    headed_error_page(
        state,
        status,
        "This sign-in request cannot continue",
        description,
    )
}

/// The page for a logout request that cannot go on (not a sign-in, so not headed as one).
pub fn logout_error_page(state: &AppState, status: StatusCode, description: &str) -> Response {
    headed_error_page(
        state,
        status,
        "This sign-out request cannot continue",
        description,
    )
}

fn headed_error_page(
    state: &AppState,
    status: StatusCode,
    heading: &'static str,
    description: &str,
) -> Response {
    html(
        status,
        &ErrorPage {
            chrome: Chrome::of(state),
            heading,
            description,
        },
    )
}

/// The pre-session CSRF cookie's value, if the request has one.
fn csrf_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|h| h.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == CSRF_COOKIE && value.len() == 43).then(|| value.to_owned())
        })
}

/// A page with a form for a browser that may have no session: `render` gets the form's CSRF
/// token, paired with the pre-session cookie, which is set when the browser has none yet.
pub fn with_form_csrf(
    state: &AppState,
    headers: &HeaderMap,
    render: impl FnOnce(String) -> Response,
) -> Response {
    let (cookie, new) = match csrf_cookie(headers) {
        Some(value) => (value, false),
        None => (state.random.token(32), true),
    };
    let mut response = render(session_auth::form_csrf_token(&state.core, &cookie));
    if new
        && let Ok(value) = HeaderValue::from_str(&format!(
            "{CSRF_COOKIE}={cookie}; Path=/; Secure; HttpOnly; SameSite=Lax"
        ))
    {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// Whether a pre-session form's CSRF field matches the browser's pre-session cookie.
pub fn form_csrf_ok(state: &AppState, headers: &HeaderMap, candidate: &str) -> bool {
    csrf_cookie(headers)
        .is_some_and(|cookie| session_auth::verify_form_csrf(&state.core, &cookie, candidate))
}

/// The messages of refused input, each by the form field it concerns.
#[derive(Clone, Debug, Default)]
pub struct FieldErrors(Vec<(String, String)>);

impl FieldErrors {
    /// The violations, with the API's field names mapped to the form's by `field`.
    pub fn of(violations: &[Violation], field: impl Fn(&str) -> String) -> Self {
        Self(
            violations
                .iter()
                .map(|v| (field(v.field), sentence(&v.message)))
                .collect(),
        )
    }

    /// The messages about `field`, joined, if any.
    pub fn get(&self, field: &str) -> Option<String> {
        let messages: Vec<&str> = self
            .0
            .iter()
            .filter(|(f, _)| f == field)
            .map(|(_, m)| m.as_str())
            .collect();
        (!messages.is_empty()).then(|| messages.join(" "))
    }

    /// Whether there is no message.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A violation's message as a sentence: capitalised, with a full stop.
fn sentence(message: &str) -> String {
    let mut chars = message.chars();
    let mut text: String = chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default();
    if !text.ends_with('.') {
        text.push('.');
    }
    text
}

/// What a page says when a use case failed for a reason that is not the user's input and
/// that may pass (busy, a dependency down): its status and message. Anything else is `Err`,
/// the error answer (a 500, logged, never shown). A store outage is counted here: the page
/// answering it is not an `ApiError`, which would carry it to `observe`.
pub fn passing_failure(
    state: &AppState,
    error: AuthError,
) -> Result<(StatusCode, &'static str), ApiError> {
    if let Some(store) = error.failed_store() {
        state.metrics.store_failed(store);
    }
    match error {
        AuthError::Busy | AuthError::Unavailable(_) => Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            "We cannot do this right now. Please try again in a moment.",
        )),
        other => Err(other.into()),
    }
}

/// A link to sign in, going on to the pending authorization request `req` when it still waits.
pub async fn sign_in_link(state: &AppState, req: Option<&str>) -> Result<String, AuthError> {
    let alive = match req.filter(|r| !r.is_empty()) {
        Some(req) => flow::pending_view(&state.core, req)
            .await?
            .is_some()
            .then_some(req),
        None => None,
    };
    Ok(with_req("/login", alive))
}

/// `path`, with `req` as its query when there is one.
pub fn with_req(path: &str, req: Option<&str>) -> String {
    match req.filter(|r| !r.is_empty()) {
        Some(req) => format!(
            "{path}?{}",
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("req", req)
                .finish()
        ),
        None => path.to_owned(),
    }
}

/// A page that tells the user something and offers one link on.
#[derive(Template)]
#[template(path = "notice.html")]
struct Notice<'a> {
    chrome: Chrome,
    heading: &'a str,
    paragraphs: &'a [&'a str],
    link: Option<(String, &'a str)>,
}

/// A message page: `heading`, `paragraphs` and optionally a link (`href`, text).
pub fn notice(
    state: &AppState,
    status: StatusCode,
    heading: &str,
    paragraphs: &[&str],
    link: Option<(String, &str)>,
) -> Response {
    html(
        status,
        &Notice {
            chrome: Chrome::of(state),
            heading,
            paragraphs,
            link,
        },
    )
}

/// The form_post response (OAuth 2.0 Form Post Response Mode).
#[derive(Template)]
#[template(path = "form_post.html")]
struct FormPost {
    chrome: Chrome,
    action: String,
    fields: Vec<(&'static str, String)>,
    script: &'static str,
}

/// A page whose form POSTs `fields` to `action` (a validated redirect URI) at once, by the
/// static script, or by its button without JavaScript.
pub fn form_post(state: &AppState, action: &str, fields: Vec<(&'static str, String)>) -> Response {
    html(
        StatusCode::OK,
        &FormPost {
            chrome: Chrome::of(state),
            action: action.to_owned(),
            fields,
            script: &ASSETS.form_post_js,
        },
    )
}

/// The logout confirmation page.
#[derive(Template)]
#[template(path = "logout.html")]
struct LogoutPage {
    chrome: Chrome,
    client: Option<String>,
    csrf: String,
    req: String,
}

/// A page asking the user to confirm a logout (a form POSTing the session's CSRF token).
pub fn logout_confirm(state: &AppState, req: &str, csrf: &str, client: Option<String>) -> Response {
    html(
        StatusCode::OK,
        &LogoutPage {
            chrome: Chrome::of(state),
            client,
            csrf: csrf.to_owned(),
            req: req.to_owned(),
        },
    )
}

/// The signed-out page.
#[derive(Template)]
#[template(path = "signed_out.html")]
struct SignedOut {
    chrome: Chrome,
}

/// The page after a logout without a return address.
pub fn signed_out(state: &AppState) -> Response {
    html(
        StatusCode::OK,
        &SignedOut {
            chrome: Chrome::of(state),
        },
    )
}

/// The routes of the hosted pages.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(static_file))
        .merge(login::router())
        .merge(login_mfa::router())
        .merge(login_enrol::router())
        .merge(consent::router())
        .merge(policy_consent::router())
        .merge(register::router())
        .merge(verify::router())
        .merge(reset::router())
        .merge(account::router())
        .merge(social::router())
}

/// A static file of the hosted pages (its name carries its content hash).
#[utoipa::path(
    get,
    path = "/static/{file}",
    params(("file" = String, Path, description = "File name with its content hash")),
    responses(
        (status = 200, description = "The stylesheet or the form_post script, cached for a year", content((String = "text/css"), (String = "text/javascript"))),
        (status = 404, description = "No such file", body = crate::http::error::Problem, content_type = "application/problem+json"),
    )
)]
async fn static_file(State(_): State<AppState>, ApiPath(file): ApiPath<String>) -> Response {
    let path = format!("/static/{file}");
    let (body, content_type) = if path == ASSETS.stylesheet {
        (STYLESHEET, "text/css; charset=utf-8")
    } else if path == ASSETS.form_post_js {
        (FORM_POST_JS, "text/javascript; charset=utf-8")
    } else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "Not found",
            "no such static file",
        )
        .into_response();
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every template, as the compiler embeds them.
    const TEMPLATES: [(&str, &str); 14] = [
        ("base.html", include_str!("../../templates/base.html")),
        ("consent.html", include_str!("../../templates/consent.html")),
        ("error.html", include_str!("../../templates/error.html")),
        (
            "form_post.html",
            include_str!("../../templates/form_post.html"),
        ),
        ("login.html", include_str!("../../templates/login.html")),
        ("logout.html", include_str!("../../templates/logout.html")),
        (
            "signed_in.html",
            include_str!("../../templates/signed_in.html"),
        ),
        (
            "signed_out.html",
            include_str!("../../templates/signed_out.html"),
        ),
        ("notice.html", include_str!("../../templates/notice.html")),
        (
            "register.html",
            include_str!("../../templates/register.html"),
        ),
        (
            "verify_email.html",
            include_str!("../../templates/verify_email.html"),
        ),
        (
            "reset_request.html",
            include_str!("../../templates/reset_request.html"),
        ),
        (
            "reset_password.html",
            include_str!("../../templates/reset_password.html"),
        ),
        ("account.html", include_str!("../../templates/account.html")),
    ];

    #[test]
    fn no_template_has_inline_script_style_or_event_handlers() {
        for (name, text) in TEMPLATES {
            let lower = text.to_lowercase();
            assert!(!lower.contains("<style"), "{name}: <style>");
            assert!(!lower.contains("style="), "{name}: style attribute");
            assert!(!lower.contains("javascript:"), "{name}: javascript: URL");
            for (i, _) in lower.match_indices("<script") {
                let tag = &lower[i..lower[i..].find('>').map_or(lower.len(), |e| i + e)];
                assert!(tag.contains(" src="), "{name}: inline script {tag}");
            }
            let handler = lower
                .split(|c: char| c.is_whitespace())
                .find(|word| word.starts_with("on") && word.contains('='));
            assert_eq!(handler, None, "{name}: event handler attribute");
        }
    }

    #[test]
    fn every_input_but_hidden_ones_has_a_label() {
        for (name, text) in TEMPLATES {
            for (i, _) in text.match_indices("<input") {
                let tag = &text[i..i + text[i..].find('>').unwrap_or(0)];
                if tag.contains("type=\"hidden\"") {
                    continue;
                }
                let id = tag
                    .split("id=\"")
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .unwrap_or_else(|| panic!("{name}: input without id: {tag}"));
                assert!(
                    text.contains(&format!("<label for=\"{id}\"")),
                    "{name}: no label for {id}"
                );
            }
        }
    }

    #[test]
    fn static_files_are_named_by_their_content() {
        assert!(ASSETS.stylesheet.starts_with("/static/portcullis-"));
        assert!(ASSETS.stylesheet.ends_with(".css"));
        assert_eq!(ASSETS.stylesheet, hashed("portcullis", "css", STYLESHEET));
        assert_ne!(
            hashed("portcullis", "css", "a"),
            hashed("portcullis", "css", "b")
        );
    }
}
