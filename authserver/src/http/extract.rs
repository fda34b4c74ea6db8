//! Extractors: JSON and form bodies with rejections in the problem format, the client's
//! address and user agent, and the authenticated caller.

use std::net::{IpAddr, SocketAddr};

use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::{Method, StatusCode, header, request::Parts};
use portcullis_crds::settings::Cidr;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::state::AppState;
use crate::auth::accounts::{AuthMethod, Principal, RequestMeta};
use crate::auth::{AuthError, sessions};

/// The request body limit.
pub const BODY_LIMIT: usize = 64 * 1024;

/// `axum::Json` whose rejections use the problem format, and which takes a JSON object only:
/// serde would also fill a struct from an array of its fields in order.
pub struct ApiJson<T>(pub T);

/// A body that must be a JSON object; forwards the object to `T`.
struct ObjectBody<T>(T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for ObjectBody<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectOnly<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for ObjectOnly<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        deserializer
            .deserialize_map(ObjectOnly(std::marker::PhantomData))
            .map(ObjectBody)
    }
}

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
        axum::Json::<ObjectBody<T>>::from_request(req, state)
            .await
            .map(|j| ApiJson(j.0.0))
            .map_err(json_rejection)
    }
}

/// `axum::extract::Path` whose rejections (a segment that is not UTF-8 or not of the type
/// asked for) use the problem format.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|rejection| ApiError::bad_request("invalid_path", rejection.body_text()))
    }
}

/// `axum::extract::Query` whose rejections (a missing, repeated or malformed parameter) use the
/// problem format.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|rejection| ApiError::bad_request("invalid_query", rejection.body_text()))
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

/// The client address. `X-Forwarded-For` (every header, in order) is believed only when the
/// peer is a trusted proxy; it is read from the right, each trusted proxy vouching for the
/// entry to its left, and the first address that is not a trusted proxy is the client. An
/// entry that is not an address stops the walk at the proxy that wrote it, so nothing a client
/// put further left can win.
pub fn client_ip(peer: Option<IpAddr>, forwarded_for: &[&str], trusted: &[Cidr]) -> String {
    let Some(peer) = peer else {
        return "unknown".to_owned();
    };
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    let mut client = peer;
    if !is_trusted(peer) {
        return peer.to_string();
    }
    let entries: Vec<&str> = forwarded_for
        .iter()
        .flat_map(|header| header.split(','))
        .collect();
    for entry in entries.iter().rev() {
        let Some(ip) = forwarded_address(entry.trim()) else {
            break;
        };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    client.to_string()
}

/// An `X-Forwarded-For` entry as an address: `ip`, `ipv4:port`, `[ipv6]` or `[ipv6]:port`.
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse() {
        return Some(ip);
    }
    if let Some(rest) = entry.strip_prefix('[') {
        let (ip, port) = rest.split_once(']')?;
        return (port.is_empty() || port.strip_prefix(':').is_some_and(is_port))
            .then(|| ip.parse().ok())
            .flatten();
    }
    let (ip, port) = entry.split_once(':')?;
    let ip: std::net::Ipv4Addr = ip.parse().ok()?;
    is_port(port).then_some(IpAddr::V4(ip))
}

fn is_port(text: &str) -> bool {
    text.parse::<u16>().is_ok()
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
        let forwarded: Vec<&str> = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .chars()
            .take(256)
            .collect();
        Ok(RequestMeta {
            ip: client_ip(peer, &forwarded, &state.service.settings.trusted_proxies),
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
            &["1.2.3.4"],
            &cidrs(&["10.0.0.0/8"]),
        );
        assert_eq!(ip, "203.0.113.9");
    }

    #[test]
    fn the_rightmost_untrusted_address_is_the_client() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        let ip = client_ip(
            Some("10.0.0.2".parse().unwrap()),
            &["6.6.6.6, 198.51.100.7, 10.0.0.5"],
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
            &[],
            &cidrs(&["10.0.0.0/8"]),
        );
        assert_eq!(ip, "10.0.0.2");
    }

    #[test]
    fn an_unreadable_entry_stops_the_walk_at_the_proxy_that_wrote_it() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        let peer = Some("10.0.0.2".parse().unwrap());
        for forwarded in ["6.6.6.6, garbage", "6.6.6.6, , 10.0.0.5", "6.6.6.6,"] {
            let ip = client_ip(peer, &[forwarded], &trusted);
            assert!(ip.starts_with("10.0.0."), "{forwarded}: {ip}");
        }
    }

    #[test]
    fn every_forwarded_header_is_read_in_order() {
        let ip = client_ip(
            Some("10.0.0.2".parse().unwrap()),
            &["6.6.6.6", "198.51.100.7"],
            &cidrs(&["10.0.0.0/8"]),
        );
        assert_eq!(ip, "198.51.100.7");
    }

    #[test]
    fn addresses_with_ports_are_read() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        let peer = Some("10.0.0.2".parse().unwrap());
        assert_eq!(
            client_ip(peer, &["198.51.100.7:5555"], &trusted),
            "198.51.100.7"
        );
        assert_eq!(
            client_ip(peer, &["[2001:db8::1]:443"], &trusted),
            "2001:db8::1"
        );
        assert_eq!(client_ip(peer, &["[2001:db8::1]"], &trusted), "2001:db8::1");
    }
}
