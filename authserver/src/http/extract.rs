//! Extractors: JSON and form bodies with rejections in the problem format, the client's
//! address and user agent, and the authenticated caller.

use std::net::{IpAddr, SocketAddr};

use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::{Method, StatusCode, header, request::Parts};
use portcullis_crds::settings::Cidr;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::state::AppState;
use crate::auth::accounts::{AuthMethod, Principal, RequestMeta};
use crate::auth::{AuthError, sessions};

/// The request body limit.
pub const BODY_LIMIT: usize = 64 * 1024;

/// `axum::Json` whose rejections use the problem format.
pub struct ApiJson<T>(pub T);

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Unsupported media type",
            "send the body as application/json",
        ),
        JsonRejection::BytesRejection(_) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::payload_too_large(BODY_LIMIT)
        }
        JsonRejection::JsonDataError(e) => ApiError::bad_request("invalid_body", e.body_text()),
        JsonRejection::JsonSyntaxError(_) => {
            ApiError::bad_request("invalid_json", "the body is not valid JSON")
        }
        other => ApiError::bad_request("invalid_body", other.body_text()),
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::Json::<T>::from_request(req, state)
            .await
            .map(|j| ApiJson(j.0))
            .map_err(json_rejection)
    }
}

/// `axum::Form` whose rejections use the problem format (OAuth endpoints take forms).
pub struct ApiForm<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiForm<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::Form::<T>::from_request(req, state)
            .await
            .map(|f| ApiForm(f.0))
            .map_err(|rejection| match rejection {
                FormRejection::BytesRejection(_)
                    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE =>
                {
                    ApiError::payload_too_large(BODY_LIMIT)
                }
                other => ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "Bad request",
                    other.body_text(),
                ),
            })
    }
}

/// The client address: `X-Forwarded-For` is believed only when the peer is a trusted proxy,
/// and then the rightmost address that is not itself a trusted proxy is the client.
pub fn client_ip(peer: Option<IpAddr>, forwarded_for: Option<&str>, trusted: &[Cidr]) -> String {
    let Some(peer) = peer else {
        return "unknown".to_owned();
    };
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer.to_string();
    }
    let chain: Vec<IpAddr> = forwarded_for
        .unwrap_or_default()
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    chain
        .iter()
        .rev()
        .find(|ip| !is_trusted(**ip))
        .or(chain.first())
        .copied()
        .unwrap_or(peer)
        .to_string()
}

impl FromRequestParts<AppState> for RequestMeta {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let forwarded = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok());
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .chars()
            .take(256)
            .collect();
        Ok(RequestMeta {
            ip: client_ip(peer, forwarded, &state.service.settings.trusted_proxies),
            user_agent,
        })
    }
}

/// The session secret from the request's cookie, if any.
pub fn session_secret(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(sessions::secret_from_cookie_header)
        .map(str::to_owned)
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
        let service = &state.service;
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            });
        if let Some(token) = bearer {
            return Ok(Authenticated(
                service.authenticate_bearer(token.trim()).await?,
            ));
        }
        let secret = session_secret(parts).ok_or(AuthError::Unauthenticated)?;
        let principal = service.authenticate_session(&secret).await?;
        debug_assert_eq!(principal.method, AuthMethod::Cookie);
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe && !csrf_ok(parts, state, &principal.session_id) {
            return Err(AuthError::CsrfFailed.into());
        }
        Ok(Authenticated(principal))
    }
}

fn csrf_ok(parts: &Parts, state: &AppState, session_id: &str) -> bool {
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(token) = header("x-csrf-token") {
        return state.service.verify_csrf(session_id, token);
    }
    if header("sec-fetch-site") == Some("same-origin") {
        return true;
    }
    header("origin").is_some_and(|origin| origin == state.issuer_origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|c| Cidr::parse(c).unwrap()).collect()
    }

    #[test]
    fn forwarded_for_is_ignored_from_untrusted_peers() {
        let ip = client_ip(
            Some("203.0.113.9".parse().unwrap()),
            Some("1.2.3.4"),
            &cidrs(&["10.0.0.0/8"]),
        );
        assert_eq!(ip, "203.0.113.9");
    }

    #[test]
    fn the_rightmost_untrusted_address_is_the_client() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        let ip = client_ip(
            Some("10.0.0.2".parse().unwrap()),
            Some("6.6.6.6, 198.51.100.7, 10.0.0.5"),
            &trusted,
        );
        assert_eq!(
            ip, "198.51.100.7",
            "a client-supplied leftmost entry must not win"
        );
    }

    #[test]
    fn a_trusted_peer_without_header_is_the_client() {
        let ip = client_ip(
            Some("10.0.0.2".parse().unwrap()),
            None,
            &cidrs(&["10.0.0.0/8"]),
        );
        assert_eq!(ip, "10.0.0.2");
    }
}
