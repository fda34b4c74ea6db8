//! The one place errors become HTTP answers: RFC 9457 `application/problem+json` with a stable
//! `code`, `violations` for validation errors, `WWW-Authenticate` on 401, `Retry-After` and
//! `RateLimit` headers on 429. 5xx bodies never carry internal detail.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::auth::{AuthError, Violation};
use crate::metrics::{StoreFailure, StoreKind};

/// `Content-Type` of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error answer (boxed: it travels in every handler's `Result`).
#[derive(Debug)]
pub struct ApiError(Box<Inner>);

#[derive(Debug)]
struct Inner {
    status: StatusCode,
    code: &'static str,
    title: &'static str,
    detail: String,
    violations: Vec<Violation>,
    /// OAuth `error` member for token-endpoint errors (RFC 6749 §5.2).
    oauth_error: Option<&'static str>,
    headers: HeaderMap,
    /// The store whose failure caused this answer, for `observe` to count.
    store_failure: Option<StoreKind>,
}

/// An error answer's body (RFC 9457).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem<'a> {
    /// URI naming the problem type.
    #[serde(rename = "type")]
    type_: String,
    /// Short summary of the problem type.
    title: &'a str,
    /// The HTTP status.
    status: u16,
    /// What happened, for a person.
    detail: &'a str,
    /// Stable snake_case machine name (`invalid_credentials`, `password_too_short`, ...).
    code: &'a str,
    /// For validation errors: every rule broken, by field.
    #[serde(skip_serializing_if = "<[Violation]>::is_empty")]
    violations: &'a [Violation],
    /// RFC 6749 error code (token endpoint).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    /// RFC 6749 error description (token endpoint).
    #[serde(skip_serializing_if = "Option::is_none")]
    error_description: Option<&'a str>,
}

impl ApiError {
    /// An error with a status, code, title and detail.
    pub fn new(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self(Box::new(Inner {
            status,
            code,
            title,
            detail: detail.into(),
            violations: Vec::new(),
            oauth_error: None,
            headers: HeaderMap::new(),
            store_failure: None,
        }))
    }

    /// 404 for unknown routes.
    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "Not found",
            "no such resource",
        )
    }

    /// 405 for known routes with another method.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "Method not allowed",
            "this route does not accept that method",
        )
    }

    /// 413 for bodies over the limit.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "Payload too large",
            format!("request bodies are limited to {limit} bytes"),
        )
    }

    /// An answer for a bare status (see `middleware::problem_for_every_error`): the code is
    /// the status' reason in snake_case; 5xx details are never passed on.
    pub fn from_status(status: StatusCode, detail: String) -> Self {
        let reason = status.canonical_reason().unwrap_or("Error");
        let code = match status.as_u16() {
            400 => "bad_request",
            401 => "unauthenticated",
            403 => "forbidden",
            404 => "not_found",
            405 => "method_not_allowed",
            408 => "request_timeout",
            411 => "length_required",
            413 => "payload_too_large",
            415 => "unsupported_media_type",
            422 => "unprocessable_content",
            429 => "rate_limited",
            503 => "service_unavailable",
            s if s >= 500 => "internal_error",
            _ => "client_error",
        };
        let detail = if status.is_server_error() || detail.is_empty() {
            reason.to_lowercase()
        } else {
            detail
        };
        let title = if status.is_server_error() {
            "Server error"
        } else {
            "Request refused"
        };
        Self::new(status, code, title, detail)
    }

    /// 408 for a body that did not arrive in time.
    pub fn body_timeout() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "Request timeout",
            "the request body did not arrive in time",
        )
    }

    /// 503 for a request that took too long to answer.
    pub fn server_timeout() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_timeout",
            "Server timeout",
            "the request took too long to answer; try again",
        )
        .header(header::RETRY_AFTER, "1")
    }

    /// 400 for a malformed request.
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, "Bad request", detail)
    }

    fn header(mut self, name: header::HeaderName, value: &str) -> Self {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.0.headers.insert(name, value);
        }
        self
    }

    /// The status of this answer.
    pub fn status(&self) -> StatusCode {
        self.0.status
    }
}

/// A refused social sign-in: its stable code, and a text of ours (never the provider's: an
/// upstream fault is 502 whatever the provider said).
pub(crate) fn social_problem(error: &portcullis_social::SocialError) -> ApiError {
    use StatusCode as S;
    use portcullis_social::SocialError as E;
    if error.is_upstream_fault() {
        return ApiError::new(
            S::BAD_GATEWAY,
            error.code(),
            "The provider could not complete the sign-in",
            "the sign-in provider answered in a way we cannot accept; try again later",
        );
    }
    let (status, title, detail) = match error {
        E::Expired | E::StateMismatch | E::PendingFromTheFuture => (
            S::BAD_REQUEST,
            "Sign-in expired",
            "this sign-in expired or was already used; start again",
        ),
        E::MalformedCallback(_) | E::MissingCode | E::ProviderMismatch { .. } => (
            S::BAD_REQUEST,
            "Invalid callback",
            "the provider's answer does not belong to a sign-in of this browser",
        ),
        E::AccessDenied { .. } => (
            S::FORBIDDEN,
            "Sign-in cancelled",
            "the sign-in was cancelled at the provider",
        ),
        E::DomainNotAllowed => (
            S::FORBIDDEN,
            "Domain not allowed",
            "this realm accepts only verified addresses of its allowed domains from that provider",
        ),
        E::EmailRequired | E::EmailUnusable => (
            S::FORBIDDEN,
            "No usable email",
            "the provider gave no plain email address we can use",
        ),
        E::EmailUnverified | E::UnverifiedEmailMatchesAccount => (
            S::FORBIDDEN,
            "Email not verified",
            "the provider has not verified this email address",
        ),
        E::AccountEmailUnverified => (
            S::FORBIDDEN,
            "Email not verified",
            "the account with this email has not verified it; sign in with its password first",
        ),
        E::AlreadyLinked => (
            S::CONFLICT,
            "Already linked",
            "this identity is linked to another account",
        ),
        E::LastSignInMethod => (
            S::CONFLICT,
            "Last way to sign in",
            "set a password or link another provider before removing this one",
        ),
        E::LinkNotFound => (S::NOT_FOUND, "Not found", "no such linked identity"),
        E::Contended => (
            S::SERVICE_UNAVAILABLE,
            "Try again",
            "another sign-in changed this account at the same moment; try again",
        ),
        _ => (S::INTERNAL_SERVER_ERROR, "Server error", "internal error"),
    };
    ApiError::new(status, error.code(), title, detail)
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        use StatusCode as S;
        match error {
            AuthError::Validation(violations) => {
                let code = violations.first().map_or("validation_failed", |v| v.code);
                let mut e = ApiError::new(
                    S::BAD_REQUEST,
                    code,
                    "Invalid request",
                    "the request breaks one or more rules; see violations",
                );
                e.0.violations = violations;
                e
            }
            AuthError::InvalidCredentials => ApiError::new(
                S::UNAUTHORIZED,
                "invalid_credentials",
                "Invalid credentials",
                "the email or password is wrong",
            )
            .header(header::WWW_AUTHENTICATE, "Bearer realm=\"portcullis\""),
            AuthError::AccountLocked {
                retry_after,
                max_failures,
                window,
            } => {
                let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
                // draft-ietf-httpapi-ratelimit-headers-11 §3.1: `q` is required; `w` rounds up.
                let window = window.as_secs() + u64::from(window.subsec_nanos() > 0);
                ApiError::new(
                    S::TOO_MANY_REQUESTS,
                    "account_locked",
                    "Too many failed attempts",
                    format!("try again in {secs} seconds"),
                )
                .header(header::RETRY_AFTER, &secs.to_string())
                .header(
                    header::HeaderName::from_static("ratelimit-policy"),
                    &format!("\"lockout\";q={max_failures};w={}", window.max(1)),
                )
                .header(
                    header::HeaderName::from_static("ratelimit"),
                    &format!("\"lockout\";r=0;t={secs}"),
                )
            }
            AuthError::RateLimited(refusal) => {
                let secs = refusal.retry_after_secs;
                ApiError::new(
                    S::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "Too many requests",
                    format!("retry after {secs} seconds"),
                )
                .header(header::RETRY_AFTER, &secs.to_string())
                .header(
                    header::HeaderName::from_static("ratelimit-policy"),
                    &refusal.policy,
                )
                .header(header::HeaderName::from_static("ratelimit"), &refusal.limit)
            }
            // The server's fault, not the client's: 503, and the limiter has counted it.
            AuthError::RateLimitUnavailable => ApiError::new(
                S::SERVICE_UNAVAILABLE,
                "rate_limit_unavailable",
                "Service unavailable",
                "rate limits cannot be checked right now; try again shortly",
            )
            .header(header::RETRY_AFTER, "5"),
            AuthError::EmailNotVerified => ApiError::new(
                S::FORBIDDEN,
                "email_not_verified",
                "Email not verified",
                "confirm your email address with the link that was mailed to you",
            ),
            AuthError::AccountDisabled => ApiError::new(
                S::FORBIDDEN,
                "account_disabled",
                "Account disabled",
                "this account is disabled",
            ),
            AuthError::EmailTaken => ApiError::new(
                S::CONFLICT,
                "email_taken",
                "Email taken",
                "an account with this email exists",
            ),
            AuthError::InvalidToken => ApiError::new(
                S::BAD_REQUEST,
                "invalid_token",
                "Invalid token",
                "the token is unknown, used or expired",
            ),
            AuthError::Unauthenticated => ApiError::new(
                S::UNAUTHORIZED,
                "unauthenticated",
                "Authentication required",
                "sign in or present a valid access token",
            )
            .header(header::WWW_AUTHENTICATE, "Bearer realm=\"portcullis\""),
            AuthError::AdminUnauthenticated => ApiError::new(
                S::UNAUTHORIZED,
                "unauthenticated",
                "Admin token required",
                "present the realm's admin token as a Bearer token",
            )
            .header(
                header::WWW_AUTHENTICATE,
                "Bearer realm=\"portcullis-admin\"",
            ),
            AuthError::CsrfFailed => ApiError::new(
                S::FORBIDDEN,
                "csrf_failed",
                "CSRF check failed",
                "send the X-CSRF-Token header of your session",
            ),
            AuthError::NotFound => ApiError::not_found(),
            AuthError::Social(error) => social_problem(&error),
            AuthError::SocialLinkNeedsSignIn => ApiError::new(
                S::CONFLICT,
                "link_requires_sign_in",
                "Sign in first",
                "an account with this email has two-step sign-in: sign in to it, then link the provider from the account page",
            ),
            AuthError::SocialLinkNeedsFreshSignIn => ApiError::new(
                S::FORBIDDEN,
                "reauthentication_required",
                "Sign in again",
                "adding a way to sign in needs a sign-in from the last 10 minutes",
            ),
            AuthError::SignUpOutdated => ApiError::new(
                S::CONFLICT,
                "sign_up_outdated",
                "Sign in again",
                "the identity was linked, its email registered or the realm's rules changed since this sign-up began: sign in again",
            ),
            AuthError::PasswordNotSet => ApiError::new(
                S::CONFLICT,
                "password_not_set",
                "No password",
                "this account has no password (it signs in with a provider): set one with a password reset",
            ),
            AuthError::RecentSignInRequired => ApiError::new(
                S::FORBIDDEN,
                "reauthentication_required",
                "Sign in again",
                "an account without a password confirms this with a sign-in from the last 10 minutes",
            ),
            AuthError::SocialSignUpNeedsPassword => ApiError::new(
                S::FORBIDDEN,
                "registration_required",
                "Register first",
                "this realm requires two-step sign-in: register with a password, then connect the provider",
            ),
            AuthError::InvalidTotp => ApiError::new(
                S::UNAUTHORIZED,
                "invalid_totp",
                "Invalid code",
                "the code is wrong or was used already",
            )
            .header(header::WWW_AUTHENTICATE, "Bearer realm=\"portcullis\""),
            AuthError::MfaAlreadyEnrolled => ApiError::new(
                S::CONFLICT,
                "mfa_already_enrolled",
                "TOTP already set up",
                "remove the current authenticator before setting up another",
            ),
            AuthError::MfaNotEnrolled => ApiError::new(
                S::CONFLICT,
                "mfa_not_enrolled",
                "TOTP is not set up",
                "set up TOTP first",
            ),
            AuthError::NoPendingEnrolment => ApiError::new(
                S::CONFLICT,
                "no_pending_enrolment",
                "No enrolment to confirm",
                "begin the TOTP enrolment again: none is waiting for this session, or it expired",
            ),
            AuthError::PolicyNotAccepted => {
                let mut e = ApiError::new(
                    S::FORBIDDEN,
                    "consent_required",
                    "Privacy policy not accepted",
                    "the realm's privacy policy changed: sign in again and accept it before any token is issued",
                );
                e.0.oauth_error = Some("consent_required");
                e
            }
            AuthError::ConsentRequired { purpose } => ApiError::new(
                S::CONFLICT,
                "consent_required",
                "Consent required",
                format!(
                    "consent to {purpose:?} is required to use the account; to withdraw it, delete the account"
                ),
            ),
            AuthError::NoRetentionPolicy => ApiError::new(
                S::NOT_FOUND,
                "no_retention_policy",
                "No retention policy",
                "no RetentionPolicy targets this realm",
            ),
            AuthError::RetentionRunning => ApiError::new(
                S::CONFLICT,
                "retention_running",
                "Retention run in progress",
                "another retention run holds the lock; try again when it has finished",
            ),
            AuthError::Unsupported(what) => ApiError::new(
                S::NOT_IMPLEMENTED,
                "not_supported",
                "Not supported",
                format!("{what} is not supported by this server"),
            ),
            AuthError::InvalidGrant(detail) => {
                let mut e = ApiError::new(S::BAD_REQUEST, "invalid_grant", "Invalid grant", detail);
                e.0.oauth_error = Some("invalid_grant");
                e
            }
            AuthError::InvalidAccessToken => ApiError::new(
                S::UNAUTHORIZED,
                "invalid_token",
                "Invalid access token",
                "the access token is missing, invalid, expired or revoked",
            )
            .header(
                header::WWW_AUTHENTICATE,
                "Bearer realm=\"portcullis\", error=\"invalid_token\"",
            ),
            AuthError::InsufficientScope(scope) => ApiError::new(
                S::FORBIDDEN,
                "insufficient_scope",
                "Insufficient scope",
                format!("the access token lacks the {scope} scope"),
            )
            .header(
                header::WWW_AUTHENTICATE,
                &format!(
                    "Bearer realm=\"portcullis\", error=\"insufficient_scope\", scope=\"{scope}\""
                ),
            ),
            AuthError::InvalidClient(detail) => {
                let mut e = ApiError::new(
                    S::UNAUTHORIZED,
                    "invalid_client",
                    "Client authentication failed",
                    detail,
                )
                .header(header::WWW_AUTHENTICATE, "Basic realm=\"portcullis\"");
                e.0.oauth_error = Some("invalid_client");
                e
            }
            AuthError::InvalidOAuthRequest { code, detail } => {
                let mut e = ApiError::new(S::BAD_REQUEST, code, "Invalid OAuth request", detail);
                e.0.oauth_error = Some(code);
                e
            }
            AuthError::Busy => ApiError::new(
                S::SERVICE_UNAVAILABLE,
                "server_busy",
                "Server busy",
                "too many sign-ins are being checked right now; try again in a second",
            )
            .header(header::RETRY_AFTER, "1"),
            AuthError::Unavailable(what) => {
                tracing::error!(dependency = what, "dependency unavailable");
                let store = error.failed_store();
                let mut e = ApiError::new(
                    S::SERVICE_UNAVAILABLE,
                    "service_unavailable",
                    "Service unavailable",
                    "a dependency is unavailable; try again shortly",
                )
                .header(header::RETRY_AFTER, "5");
                e.0.store_failure = store;
                e
            }
            AuthError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                ApiError::new(
                    S::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "Internal error",
                    "an unexpected error occurred",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let this = *self.0;
        let problem = Problem {
            type_: format!(
                "https://portcullis.dev/problems/{}",
                this.code.replace('_', "-")
            ),
            title: this.title,
            status: this.status.as_u16(),
            detail: &this.detail,
            code: this.code,
            violations: &this.violations,
            error: this.oauth_error,
            error_description: this.oauth_error.map(|_| this.detail.as_str()),
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (this.status, body).into_response();
        // OAuth endpoints answer RFC 6749 §5.2 JSON (the problem members ride along).
        let content_type = if this.oauth_error.is_some() {
            "application/json"
        } else {
            PROBLEM_JSON
        };
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        response.headers_mut().extend(this.headers);
        if let Some(store) = this.store_failure {
            response.extensions_mut().insert(StoreFailure(store));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_failure(error: AuthError) -> Option<StoreFailure> {
        ApiError::from(error)
            .into_response()
            .extensions()
            .get::<StoreFailure>()
            .copied()
    }

    #[test]
    fn an_answer_caused_by_postgres_or_redis_carries_the_store_for_the_metrics() {
        assert_eq!(
            store_failure(AuthError::Unavailable("database")),
            Some(StoreFailure(StoreKind::Postgres))
        );
        assert_eq!(
            store_failure(AuthError::Unavailable("redis")),
            Some(StoreFailure(StoreKind::Redis))
        );
        assert_eq!(store_failure(AuthError::Busy), None);
        // A full in-memory store is a bound reached, not a failing server.
        assert_eq!(
            store_failure(crate::store::StoreError::Full("sessions").into()),
            None
        );
        assert_eq!(store_failure(AuthError::InvalidCredentials), None);
    }

    #[test]
    fn the_lockout_answer_names_its_policy_with_q_and_w() {
        let response = ApiError::from(AuthError::AccountLocked {
            retry_after: std::time::Duration::from_millis(61_500),
            max_failures: 5,
            window: std::time::Duration::from_secs(900),
        })
        .into_response();
        let header = |name: &str| response.headers().get(name).unwrap().to_str().unwrap();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(header("retry-after"), "62");
        assert_eq!(header("ratelimit-policy"), "\"lockout\";q=5;w=900");
        assert_eq!(header("ratelimit"), "\"lockout\";r=0;t=62");
    }

    #[test]
    fn a_closed_limiter_without_its_store_answers_503_with_retry_after() {
        let response = ApiError::from(AuthError::RateLimitUnavailable).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["retry-after"], "5");
        // The limiter counted the store failure itself: no second count by `observe`.
        assert!(response.extensions().get::<StoreFailure>().is_none());
    }
}
