//! Middleware: security headers on every answer, request ids, the body limit by
//! `Content-Length`, deadlines for reading a body and for answering, the access log with request
//! metrics, and problem+json for every error.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use portcullis_crds::realm::{FrameOptions, SecurityHeadersSpec};

use super::error::ApiError;
use super::extract::BODY_LIMIT;
use super::state::AppState;
use crate::metrics::StoreFailure;

/// The security headers of a realm, rendered once.
#[derive(Debug, Clone)]
pub struct SecurityHeaders(Vec<(HeaderName, HeaderValue)>);

impl SecurityHeaders {
    /// Renders the realm's header settings (DESIGN.md's list).
    pub fn from_spec(spec: &SecurityHeadersSpec) -> Self {
        let mut hsts = format!("max-age={}; includeSubDomains", spec.hsts_max_age);
        if spec.hsts_preload {
            hsts.push_str("; preload");
        }
        let frame = match spec.frame_options {
            FrameOptions::Deny => "DENY",
            FrameOptions::SameOrigin => "SAMEORIGIN",
        };
        let pairs = [
            ("strict-transport-security", hsts.as_str()),
            (
                "content-security-policy",
                spec.content_security_policy.as_str(),
            ),
            ("x-frame-options", frame),
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "strict-origin-when-cross-origin"),
            ("x-xss-protection", "0"),
            (
                "permissions-policy",
                "camera=(), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()",
            ),
            ("cross-origin-opener-policy", "same-origin"),
            ("cross-origin-resource-policy", "same-origin"),
        ];
        Self(
            pairs
                .iter()
                .filter_map(|(name, value)| {
                    Some((
                        HeaderName::from_static(name),
                        HeaderValue::from_str(value).ok()?,
                    ))
                })
                .collect(),
        )
    }
}

/// Adds the security headers, and `Cache-Control: no-store` unless the handler chose caching.
pub async fn security_headers(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in &state.web.headers.0 {
        headers.insert(name.clone(), value.clone());
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    }
    response
}

/// A request id: the caller's `X-Request-Id` when it is short and plain, a new UUID otherwise.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// Assigns the request id, logs the request (never bodies or credentials; successes at
/// `debug`), counts it and its latency under its route template, and counts the store failure
/// its answer carries.
pub async fn observe(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let watch = state.clock.stopwatch();
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
        .map_or_else(|| state.random.uuid().to_string(), str::to_owned);
    request.extensions_mut().insert(RequestId(id.clone()));
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = request.method().clone();
    let span = tracing::info_span!("request", request_id = %id);
    let mut response = {
        let _enter = span.enter();
        next.run(request).await
    };
    let status = response.status().as_u16();
    let seconds = watch.seconds();
    state.metrics.http_answered(&route, status, seconds);
    // Handlers that failed on PostgreSQL or Redis mark their answer instead of reaching for
    // the metrics; counted here, once per request.
    if let Some(StoreFailure(store)) = response.extensions_mut().remove::<StoreFailure>() {
        state.metrics.store_failed(store);
    }
    let latency_ms = seconds * 1000.0;
    // One line per request would cost every grant a formatted write at the default `info`
    // level: successes are `debug`, refusals `info`, failures `warn` (the metrics count all).
    macro_rules! request_line {
        ($level:expr) => {
            tracing::event!(
                $level,
                request_id = %id,
                method = %method,
                route = %route,
                status,
                latency_ms,
                "request"
            )
        };
    }
    match status {
        500.. => request_line!(tracing::Level::WARN),
        // A flood refused with 429 would write a line per request; the metrics count them.
        429 => request_line!(tracing::Level::DEBUG),
        400..=499 => request_line!(tracing::Level::INFO),
        _ => request_line!(tracing::Level::DEBUG),
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-request-id"), value);
    }
    response
}

/// Refuses bodies whose `Content-Length` exceeds the limit before reading them; bodies without
/// a length are cut at the limit by the extractors.
pub async fn body_limit(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > BODY_LIMIT as u64) {
        return ApiError::payload_too_large(BODY_LIMIT).into_response();
    }
    next.run(request).await
}

/// Turns any error answer that is not JSON (a rejection of an extractor added
/// without its problem wrapper, a framework default) into one, so every error a client sees
/// has the same shape. Bodies of 4xx answers are short texts written for clients; 5xx bodies
/// are replaced, never shown.
pub async fn problem_for_every_error(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    // Structured answers stay: problem+json, JSON a handler chose (e.g. readiness checks), and
    // the hosted pages' HTML error pages.
    let is_structured = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| {
            v.as_bytes() == super::error::PROBLEM_JSON.as_bytes()
                || v.as_bytes() == b"application/json"
                || v.as_bytes().starts_with(b"text/html")
        });
    if !(status.is_client_error() || status.is_server_error()) || is_structured {
        return response;
    }
    let (parts, body) = response.into_parts();
    let detail = if status.is_client_error() {
        match axum::body::to_bytes(body, 4 * 1024).await {
            Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
            Err(_) => String::new(),
        }
    } else {
        String::new()
    };
    let mut problem = ApiError::from_status(status, detail).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            problem.headers_mut().insert(name.clone(), value.clone());
        }
    }
    problem
}

/// How long a request may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestLimits {
    /// From handing the request to the app to its answer; longer than the longest progressive
    /// login delay plus a full hashing queue.
    pub request_timeout: std::time::Duration,
    /// To receive a whole body once its reading starts (64 KiB: a client slower than about
    /// 6 KB/s is cut off at the default).
    pub body_timeout: std::time::Duration,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            request_timeout: std::time::Duration::from_secs(60),
            body_timeout: std::time::Duration::from_secs(10),
        }
    }
}

/// The body deadline, for the extractors that read bodies.
#[derive(Clone, Copy, Debug)]
pub struct BodyTimeout(pub std::time::Duration);

/// Puts the body deadline on the request and answers 503 `server_timeout` when the whole
/// request takes longer than `limits.request_timeout`.
pub async fn deadlines(limits: RequestLimits, mut request: Request, next: Next) -> Response {
    request
        .extensions_mut()
        .insert(BodyTimeout(limits.body_timeout));
    match tokio::time::timeout(limits.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::server_timeout().into_response(),
    }
}
