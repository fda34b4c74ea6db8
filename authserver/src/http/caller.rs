//! The authenticated caller: a bearer access token, or the session cookie with CSRF proof
//! for state changes.

use axum::extract::FromRequestParts;
use axum::http::{Method, header, request::Parts};

use super::cookies;
use super::error::ApiError;
use super::state::AppState;
use crate::auth::limits::Subject;
use crate::auth::principal::Principal;
use crate::auth::{AuthError, session_auth};
use portcullis_crds::rate_limit::Route;

/// The session secret from the request's cookie, if any.
pub fn session_secret(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(cookies::secret_from_cookie_header)
        .map(str::to_owned)
}

/// The session secret a request presents, if any (not yet authenticated): for the
/// session-fixation defence of a login, and for pages that work with or without a session.
pub struct PresentedSession(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for PresentedSession {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PresentedSession(session_secret(parts)))
    }
}

/// The authenticated caller. Bearer tokens win over cookies. Cookie-authenticated state
/// changes need the session's `X-CSRF-Token` or a same-origin `Origin`/`Sec-Fetch-Site`.
pub struct Authenticated(pub Principal);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let core = &state.core;
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            });
        if let Some(token) = bearer {
            let principal = session_auth::authenticate_bearer(core, token.trim()).await?;
            limit_user(state, &principal).await?;
            return Ok(Authenticated(principal));
        }
        let secret = session_secret(parts).ok_or(AuthError::Unauthenticated)?;
        let principal = session_auth::authenticate_session(core, &secret).await?;
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe && !csrf_ok(parts, state, &principal.session_id) {
            return Err(AuthError::CsrfFailed.into());
        }
        limit_user(state, &principal).await?;
        Ok(Authenticated(principal))
    }
}

/// The per-account limit of authenticated routes: every one passes through here.
async fn limit_user(state: &AppState, principal: &Principal) -> Result<(), AuthError> {
    state
        .core
        .limits()
        .check_subject(Route::Api, Subject::User(principal.user_id))
        .await
}

fn csrf_ok(parts: &Parts, state: &AppState, session_id: &str) -> bool {
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(token) = header("x-csrf-token") {
        return session_auth::verify_csrf(&state.core, session_id, token);
    }
    if header("sec-fetch-site") == Some("same-origin") {
        return true;
    }
    header("origin").is_some_and(|origin| origin == state.web.issuer_origin)
}
