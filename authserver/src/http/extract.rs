//! Extractors whose rejections use the problem format: JSON and form bodies, path segments,
//! query strings; and the request's origin (client address, user agent).

use std::net::SocketAddr;

use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::{StatusCode, header, request::Parts};
use serde::de::DeserializeOwned;

use super::client_ip::{client_ip, forwarded_for_ignored};
use super::error::ApiError;
use super::middleware::{BodyTimeout, RequestLimits};
use super::state::AppState;
use crate::auth::principal::RequestMeta;

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

/// How long reading the body of `req` may take.
fn body_timeout(req: &Request) -> std::time::Duration {
    req.extensions()
        .get::<BodyTimeout>()
        .map_or(RequestLimits::default().body_timeout, |t| t.0)
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let deadline = body_timeout(&req);
        tokio::time::timeout(
            deadline,
            axum::Json::<ObjectBody<T>>::from_request(req, state),
        )
        .await
        .map_err(|_| ApiError::body_timeout())?
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
        let deadline = body_timeout(&req);
        tokio::time::timeout(deadline, axum::Form::<T>::from_request(req, state))
            .await
            .map_err(|_| ApiError::body_timeout())?
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
        if forwarded_for_ignored(peer, &forwarded, &state.web.trusted_proxies) {
            state.metrics.forwarded_for_ignored.inc();
        }
        let device = parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(crate::notify::device::cookie_from_header)
            .map(str::to_owned);
        Ok(RequestMeta {
            ip: client_ip(peer, &forwarded, &state.web.trusted_proxies),
            user_agent,
            device,
        })
    }
}

/// A form body as its pairs, in order and with repeats (OAuth refuses repeated parameters, so
/// a map would hide them), whatever its `Content-Type` says; unreadable bytes are skipped by
/// the form decoding.
pub struct FormPairs(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequest<S> for FormPairs {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let deadline = body_timeout(&req);
        let bytes = tokio::time::timeout(deadline, axum::body::Bytes::from_request(req, state))
            .await
            .map_err(|_| ApiError::body_timeout())?
            .map_err(|_| ApiError::payload_too_large(BODY_LIMIT))?;
        Ok(FormPairs(
            url::form_urlencoded::parse(&bytes).into_owned().collect(),
        ))
    }
}

/// The query string as its pairs, in order and with repeats.
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

/// The first value of `name` among form or query pairs, or `""` when it is absent (for
/// browser forms, where a missing field and an empty one are refused alike).
pub fn first_value<'a>(pairs: &'a [(String, String)], name: &str) -> &'a str {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_default()
}
