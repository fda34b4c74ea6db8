//! The domain's error type; `crate::http::error` maps it to HTTP in one place.

use std::time::Duration;

/// One reason an input was refused, with the field it concerns.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Violation {
    /// Field name in the request body.
    pub field: &'static str,
    /// Stable snake_case code, e.g. `password_too_short`.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
}

impl Violation {
    /// A violation of `field`.
    pub fn new(field: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            code,
            message: message.into(),
        }
    }
}

/// Everything an account operation can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The input breaks one or more rules.
    #[error("invalid input")]
    Validation(Vec<Violation>),
    /// Wrong email or password (the same answer for unknown accounts).
    #[error("invalid credentials")]
    InvalidCredentials,
    /// Too many failures for this identifier: locked until `retry_after` has passed.
    #[error("account locked")]
    AccountLocked {
        /// Time until the lock ends.
        retry_after: Duration,
        /// Failures within `window` that lock (the `q` of the answer's `RateLimit-Policy`).
        max_failures: u32,
        /// The window failures count in (its `w`).
        window: Duration,
    },
    /// A rate limit refused the request.
    #[error("rate limited")]
    RateLimited(Box<super::limits::Refusal>),
    /// The rate-limit store cannot decide and the realm's failure mode is `Closed`.
    #[error("rate limiting unavailable")]
    RateLimitUnavailable,
    /// The account's email address is not verified yet.
    #[error("email not verified")]
    EmailNotVerified,
    /// The account is disabled by an administrator.
    #[error("account disabled")]
    AccountDisabled,
    /// Registration with a taken email (only when email verification is off).
    #[error("email taken")]
    EmailTaken,
    /// A verification or reset token is unknown, used or expired.
    #[error("invalid or expired token")]
    InvalidToken,
    /// No valid session or access token.
    #[error("authentication required")]
    Unauthenticated,
    /// No admin token, or another one, on the admin API.
    #[error("admin token required")]
    AdminUnauthenticated,
    /// A cookie-authenticated state change without a valid CSRF token or same-origin proof.
    #[error("CSRF check failed")]
    CsrfFailed,
    /// The thing asked for does not exist (or is not the caller's).
    #[error("not found")]
    NotFound,
    /// The admin asked for a retention run, and no RetentionPolicy targets this realm.
    #[error("no retention policy")]
    NoRetentionPolicy,
    /// The admin asked for a retention run while another (the CronJob's, or another admin's)
    /// holds the realm's retention lock.
    #[error("a retention run is in progress")]
    RetentionRunning,
    /// The operation needs something this server runs without (retention on an in-memory
    /// database in `--dev`).
    #[error("not supported: {0}")]
    Unsupported(&'static str),
    /// An OAuth grant was refused (RFC 6749 `invalid_grant`).
    #[error("invalid grant: {0}")]
    InvalidGrant(&'static str),
    /// A bearer access token at a resource (userinfo) is missing, invalid, expired or
    /// revoked (RFC 6750 `invalid_token`).
    #[error("invalid access token")]
    InvalidAccessToken,
    /// A bearer access token lacks the scope a resource needs (RFC 6750 `insufficient_scope`).
    #[error("insufficient scope: {0} needed")]
    InsufficientScope(&'static str),
    /// A client failed to authenticate (RFC 6749 `invalid_client`).
    #[error("invalid client: {0}")]
    InvalidClient(&'static str),
    /// An OAuth request was malformed (RFC 6749 `invalid_request` / `unsupported_grant_type`).
    #[error("{code}: {detail}")]
    InvalidOAuthRequest {
        /// RFC 6749 error code.
        code: &'static str,
        /// Explanation.
        detail: String,
    },
    /// A TOTP code is wrong or was used already (a replay answers the same).
    #[error("invalid TOTP code")]
    InvalidTotp,
    /// TOTP is set up already: removing it comes first.
    #[error("TOTP is already set up")]
    MfaAlreadyEnrolled,
    /// The account has no TOTP to remove or recovery codes to regenerate.
    #[error("TOTP is not set up")]
    MfaNotEnrolled,
    /// No TOTP enrolment of this session waits for its code (none begun, expired or replaced).
    #[error("no pending TOTP enrolment")]
    NoPendingEnrolment,
    /// A social sign-in refused (the crate's code says why).
    #[error("social sign-in refused: {}", .0.code())]
    Social(portcullis_social::SocialError),
    /// A social identity whose email belongs to an account with a second factor: its owner
    /// signs in as usual and links the provider from the account page.
    #[error("the account must sign in before linking")]
    SocialLinkNeedsSignIn,
    /// Linking a provider needs a recent sign-in ([`super::account::REAUTHENTICATION_WINDOW`]).
    #[error("linking needs a recent sign-in")]
    SocialLinkNeedsFreshSignIn,
    /// A social sign-up that waited for the privacy policy can no longer make its account:
    /// the identity was linked, the address registered, or the realm's rules changed
    /// meanwhile. Signing in again decides anew.
    #[error("the sign-up changed meanwhile")]
    SignUpOutdated,
    /// A password re-check for an account that has none (made by social sign-in): a
    /// password reset sets one.
    #[error("the account has no password")]
    PasswordNotSet,
    /// An account without a password confirms a sensitive change by a recent sign-in
    /// ([`super::account::REAUTHENTICATION_WINDOW`]); this session is older.
    #[error("the change needs a recent sign-in")]
    RecentSignInRequired,
    /// A realm that requires TOTP makes no account by social sign-in (it could not enrol
    /// without a password): register first, then connect the provider.
    #[error("sign up with a password first")]
    SocialSignUpNeedsPassword,
    /// The user has not accepted the realm's current privacy policy: no token is issued
    /// until they do (a sign-in answers a consent token instead).
    #[error("the current privacy policy must be accepted")]
    PolicyNotAccepted,
    /// A required purpose cannot be withdrawn; the way out is deleting the account.
    #[error("consent to {purpose:?} is required")]
    ConsentRequired {
        /// The required purpose.
        purpose: String,
    },
    /// Too much password hashing is queued: come back shortly.
    #[error("password hashing is saturated")]
    Busy,
    /// A dependency the request needs is down.
    #[error("{0} unavailable")]
    Unavailable(&'static str),
    /// A bug or an unexpected failure; logged, never shown.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AuthError {
    /// The store whose outage caused this error, for `portcullis_store_errors_total`; `None`
    /// for everything else, including a full in-memory store (a bound, not a failing server).
    pub fn failed_store(&self) -> Option<crate::metrics::StoreKind> {
        match self {
            AuthError::Unavailable(what) => crate::metrics::StoreKind::from_dependency(what),
            _ => None,
        }
    }
}

impl From<crate::store::StoreError> for AuthError {
    fn from(error: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match error {
            StoreError::Unavailable(what) | StoreError::Full(what) => AuthError::Unavailable(what),
            other => AuthError::Internal(other.to_string()),
        }
    }
}
