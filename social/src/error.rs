//! The one error type of social login, with a stable code for each case.

/// Why a social sign-in could not go on. [`SocialError::code`] is stable: the auth server maps
/// it to a problem+json type and an HTTP status, and tests match on it.
///
/// Three groups, by whose fault it is:
/// - the realm's settings: `invalid_settings`, `client_secret_unreadable`,
///   `http_client_failed`, `randomness_failed` (the machine's);
/// - the browser or user (a 4xx): `invalid_redirect_uri`, `malformed_callback`,
///   `provider_mismatch`, `expired`, `pending_from_the_future`, `state_mismatch`, `access_denied`, `missing_code`, and
///   the linking refusals `domain_not_allowed`, `email_required`, `email_unusable`,
///   `email_unverified`,
///   `unverified_email_matches_account`, `account_email_unverified`;
/// - the upstream provider (a 502, or a 4xx for a token it should not have sent):
///   `discovery_failed`, `issuer_mismatch`, `issuer_missing`, `upstream_error`, `token_exchange_failed`,
///   `missing_id_token`, the `id_token_*` codes, `userinfo_failed`, `subject_mismatch`;
/// - the link store ([`crate::pg`]): `already_linked`, `not_found`, `last_sign_in_method`
///   (the user's), `unknown_user`, `invalid_link`, `invalid_batch_size`, `time_before_epoch`
///   (the caller's), `sealed`, `corrupt_row`, `contended`, `database` (the server's).
#[derive(Debug, thiserror::Error)]
pub enum SocialError {
    /// The provider's settings cannot work (no issuer for OIDC, a bad URL, an empty secret).
    #[error("social provider {provider:?} is misconfigured: {reason}")]
    InvalidSettings {
        /// The provider's name.
        provider: String,
        /// What is wrong.
        reason: String,
    },
    /// The client secret file could not be read.
    #[error("cannot read the client secret of social provider {provider:?}: {reason}")]
    ClientSecretUnreadable {
        /// The provider's name.
        provider: String,
        /// The I/O error.
        reason: String,
    },
    /// The HTTP client for the providers could not be built (a bad CA bundle, no TLS provider).
    #[error("cannot build the HTTP client for social providers: {0}")]
    HttpClient(String),
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed: {0}")]
    Randomness(String),
    /// The OIDC discovery document or its JWKS could not be fetched or is invalid.
    #[error("discovery of {issuer} failed: {reason}")]
    Discovery {
        /// The issuer whose discovery failed.
        issuer: String,
        /// Why.
        reason: String,
    },
    /// The redirect URI given to `start` is not an absolute http(s) URL.
    #[error("the redirect URI {0:?} is not an absolute http(s) URL")]
    InvalidRedirectUri(String),
    /// The callback's query repeats a parameter (a response must carry each one once).
    #[error("the callback repeats the parameter {0:?}")]
    MalformedCallback(String),
    /// The pending sign-in was started with another provider than the one finishing it.
    #[error("the sign-in was started with provider {started:?}, not {finishing:?}")]
    ProviderMismatch {
        /// The provider of the pending record.
        started: String,
        /// The provider asked to finish it.
        finishing: String,
    },
    /// The pending sign-in is older than [`crate::PENDING_TTL`].
    #[error("the sign-in took too long; start again")]
    Expired,
    /// The pending sign-in says it was started in the future (beyond
    /// [`crate::PENDING_CLOCK_SKEW`]): not made by this server's clock.
    #[error("the sign-in record is from the future; start again")]
    PendingFromTheFuture,
    /// The callback's `state` is missing or not the pending sign-in's.
    #[error("the callback's state does not belong to the sign-in under way")]
    StateMismatch,
    /// The callback's `iss` (RFC 9207) names another issuer: a mix-up attack or a misrouted
    /// response.
    #[error("the callback comes from issuer {got:?}, not {expected:?}")]
    IssuerMismatch {
        /// The provider's issuer.
        expected: String,
        /// The callback's `iss`.
        got: String,
    },
    /// The callback has no `iss` although the provider advertises RFC 9207's
    /// `authorization_response_iss_parameter_supported` (RFC 9207 §2.4: refuse it).
    #[error("the callback has no iss, and {expected:?} always sends one")]
    IssuerMissing {
        /// The provider's issuer.
        expected: String,
    },
    /// The user declined at the provider (`error=access_denied`).
    #[error("the sign-in was declined at the provider")]
    AccessDenied {
        /// The provider's `error_description`, if any ([`upstream_text`]-cleaned).
        description: Option<String>,
    },
    /// The provider answered the authorization request with another `error`. The message
    /// names the error code only; the description stays in its field, for the logs.
    #[error("the provider refused the sign-in: {error}")]
    UpstreamError {
        /// The provider's `error` code ([`upstream_text`]-cleaned).
        error: String,
        /// Its `error_description`, if any ([`upstream_text`]-cleaned).
        description: Option<String>,
    },
    /// The callback has neither a `code` nor an `error`.
    #[error("the callback has no authorization code")]
    MissingCode,
    /// The token endpoint refused the code or could not be reached.
    #[error("the code exchange failed: {0}")]
    TokenExchange(String),
    /// An OIDC token response without an `id_token`.
    #[error("the provider's token response has no ID token")]
    MissingIdToken,
    /// The ID token is not a JWT this crate can read.
    #[error("the ID token is malformed: {0}")]
    IdTokenMalformed(String),
    /// The ID token's signature does not verify with the provider's keys.
    #[error("the ID token's signature does not verify: {0}")]
    IdTokenSignature(String),
    /// The ID token's `iss` is not the provider's issuer.
    #[error("the ID token has the wrong issuer: {0}")]
    IdTokenIssuer(String),
    /// The ID token's `aud` or `azp` is not this client.
    #[error("the ID token is for another audience: {0}")]
    IdTokenAudience(String),
    /// The ID token's `nonce` is missing or not the pending sign-in's.
    #[error("the ID token's nonce does not match the sign-in: {0}")]
    IdTokenNonce(String),
    /// The ID token has expired.
    #[error("the ID token has expired: {0}")]
    IdTokenExpired(String),
    /// The ID token fails another check (its subject, issue time, ...).
    #[error("the ID token is invalid: {0}")]
    IdTokenInvalid(String),
    /// The UserInfo endpoint or GitHub's user API failed.
    #[error("fetching the user from the provider failed: {0}")]
    UserInfo(String),
    /// UserInfo describes another subject than the ID token.
    #[error("the provider's UserInfo is about another subject than its ID token")]
    SubjectMismatch,
    /// `allowedDomains` is set and the identity has no verified email in one of them.
    #[error("only verified emails in the allowed domains may sign in with this provider")]
    DomainNotAllowed,
    /// A new account is needed and the provider gave no email.
    #[error("the provider gave no email address to create an account with")]
    EmailRequired,
    /// The provider's email is not a plain ASCII address that the server's canonical form
    /// leaves as it is (fullwidth or other compatibility characters, non-ASCII, spaces, a
    /// quoted local part): it could fold into another person's address.
    #[error("the provider's email address cannot be used to link or create an account")]
    EmailUnusable,
    /// A new account would be needed and the provider has not verified the email: the account
    /// would hold an address nobody proved (and squat it for its owner).
    #[error("the provider has not verified the email, and an account needs a verified one")]
    EmailUnverified,
    /// The provider does not vouch for an email that an existing account has: linking would
    /// hand that account to whoever typed the address upstream.
    #[error("an account with this email exists, and the provider has not verified the email")]
    UnverifiedEmailMatchesAccount,
    /// The existing account never proved its email: linking would keep whoever registered it
    /// (perhaps not the email's owner) in the account.
    #[error("an account with this email exists, and its email is not verified")]
    AccountEmailUnverified,
    /// The upstream identity is already linked to another user: a link is never moved.
    #[error("this sign-in is already linked to another account")]
    AlreadyLinked,
    /// No link with this id belongs to the user (unknown, or another user's).
    #[error("no such linked sign-in")]
    LinkNotFound,
    /// Unlinking would leave the user no working way to sign in (no usable password and no
    /// other link to a provider the realm still has).
    #[error("this is the account's last way to sign in")]
    LastSignInMethod,
    /// No user with this id (a row of `users` is needed first).
    #[error("no such user")]
    UnknownUser,
    /// A link needs a provider name, an issuer and a subject; this one lacks the field named.
    #[error("a linked identity needs a non-empty {0}")]
    InvalidLink(&'static str),
    /// A re-encryption batch of 0 rows would never advance.
    #[error("a re-encryption batch holds at least one row")]
    InvalidBatchSize,
    /// The time passed in is before 1970: Fernet timestamps start there.
    #[error("the time is before the Unix epoch")]
    TimeBeforeEpoch,
    /// Stored upstream tokens do not open: no key of the ring decrypts them, or they were
    /// sealed for another row (a ciphertext copied between rows) or purpose.
    // Only the reason: the sealed error's text names row ids (the source stays for logs).
    #[error("the stored upstream tokens cannot be opened ({})", .0.reason())]
    Sealed(#[from] portcullis_sealed::SealedError),
    /// A stored value this code never writes (checked by the schema, unless it was bypassed).
    #[error("corrupt linked identity row: {0}")]
    Corrupt(&'static str),
    /// The identity's link was inserted and removed concurrently again and again: try again.
    #[error("the link changed concurrently too often; try again")]
    Contended,
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// The longest upstream error text kept.
pub const MAX_UPSTREAM_TEXT: usize = 200;

/// Text from the provider (`error`, `error_description`), made safe to keep: only the
/// characters RFC 6749 allows there (printable ASCII without `"` and `\`), at most
/// [`MAX_UPSTREAM_TEXT`] of them. Control characters (log injection) and anything else are
/// dropped. The server still escapes it for HTML and shows a generic message to the browser.
pub fn upstream_text(text: &str) -> String {
    text.chars()
        .filter(|c| matches!(c, ' '..='~') && *c != '"' && *c != '\\')
        .take(MAX_UPSTREAM_TEXT)
        .collect()
}

impl SocialError {
    /// The stable code of this error (snake case), for problem+json types, logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidSettings { .. } => "invalid_settings",
            Self::ClientSecretUnreadable { .. } => "client_secret_unreadable",
            Self::HttpClient(_) => "http_client_failed",
            Self::Randomness(_) => "randomness_failed",
            Self::Discovery { .. } => "discovery_failed",
            Self::InvalidRedirectUri(_) => "invalid_redirect_uri",
            Self::MalformedCallback(_) => "malformed_callback",
            Self::ProviderMismatch { .. } => "provider_mismatch",
            Self::Expired => "expired",
            Self::PendingFromTheFuture => "pending_from_the_future",
            Self::StateMismatch => "state_mismatch",
            Self::IssuerMismatch { .. } => "issuer_mismatch",
            Self::IssuerMissing { .. } => "issuer_missing",
            Self::AccessDenied { .. } => "access_denied",
            Self::UpstreamError { .. } => "upstream_error",
            Self::MissingCode => "missing_code",
            Self::TokenExchange(_) => "token_exchange_failed",
            Self::MissingIdToken => "missing_id_token",
            Self::IdTokenMalformed(_) => "id_token_malformed",
            Self::IdTokenSignature(_) => "id_token_signature",
            Self::IdTokenIssuer(_) => "id_token_issuer",
            Self::IdTokenAudience(_) => "id_token_audience",
            Self::IdTokenNonce(_) => "id_token_nonce",
            Self::IdTokenExpired(_) => "id_token_expired",
            Self::IdTokenInvalid(_) => "id_token_invalid",
            Self::UserInfo(_) => "userinfo_failed",
            Self::SubjectMismatch => "subject_mismatch",
            Self::DomainNotAllowed => "domain_not_allowed",
            Self::EmailRequired => "email_required",
            Self::EmailUnverified => "email_unverified",
            Self::EmailUnusable => "email_unusable",
            Self::UnverifiedEmailMatchesAccount => "unverified_email_matches_account",
            Self::AccountEmailUnverified => "account_email_unverified",
            Self::AlreadyLinked => "already_linked",
            Self::LinkNotFound => "not_found",
            Self::LastSignInMethod => "last_sign_in_method",
            Self::UnknownUser => "unknown_user",
            Self::InvalidLink(_) => "invalid_link",
            Self::InvalidBatchSize => "invalid_batch_size",
            Self::TimeBeforeEpoch => "time_before_epoch",
            Self::Sealed(_) => "sealed",
            Self::Corrupt(_) => "corrupt_row",
            Self::Contended => "contended",
            Self::Database(_) => "database",
        }
    }

    /// Whether the upstream provider (or the way to it) is at fault rather than the browser or
    /// the realm's settings: the server answers these with 502 and logs them.
    pub fn is_upstream_fault(&self) -> bool {
        matches!(
            self,
            Self::Discovery { .. }
                | Self::IssuerMismatch { .. }
                | Self::IssuerMissing { .. }
                | Self::UpstreamError { .. }
                | Self::TokenExchange(_)
                | Self::MissingIdToken
                | Self::IdTokenMalformed(_)
                | Self::IdTokenSignature(_)
                | Self::IdTokenIssuer(_)
                | Self::IdTokenAudience(_)
                | Self::IdTokenNonce(_)
                | Self::IdTokenExpired(_)
                | Self::IdTokenInvalid(_)
                | Self::UserInfo(_)
                | Self::SubjectMismatch
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_snake_case() {
        let all = [
            SocialError::InvalidSettings {
                provider: "p".into(),
                reason: "r".into(),
            },
            SocialError::ClientSecretUnreadable {
                provider: "p".into(),
                reason: "r".into(),
            },
            SocialError::HttpClient("x".into()),
            SocialError::Randomness("x".into()),
            SocialError::Discovery {
                issuer: "i".into(),
                reason: "r".into(),
            },
            SocialError::InvalidRedirectUri("x".into()),
            SocialError::MalformedCallback("state".into()),
            SocialError::ProviderMismatch {
                started: "a".into(),
                finishing: "b".into(),
            },
            SocialError::Expired,
            SocialError::PendingFromTheFuture,
            SocialError::StateMismatch,
            SocialError::IssuerMismatch {
                expected: "a".into(),
                got: "b".into(),
            },
            SocialError::IssuerMissing {
                expected: "a".into(),
            },
            SocialError::AccessDenied { description: None },
            SocialError::UpstreamError {
                error: "e".into(),
                description: None,
            },
            SocialError::MissingCode,
            SocialError::TokenExchange("x".into()),
            SocialError::MissingIdToken,
            SocialError::IdTokenMalformed("x".into()),
            SocialError::IdTokenSignature("x".into()),
            SocialError::IdTokenIssuer("x".into()),
            SocialError::IdTokenAudience("x".into()),
            SocialError::IdTokenNonce("x".into()),
            SocialError::IdTokenExpired("x".into()),
            SocialError::IdTokenInvalid("x".into()),
            SocialError::UserInfo("x".into()),
            SocialError::SubjectMismatch,
            SocialError::DomainNotAllowed,
            SocialError::EmailRequired,
            SocialError::EmailUnverified,
            SocialError::EmailUnusable,
            SocialError::UnverifiedEmailMatchesAccount,
            SocialError::AccountEmailUnverified,
            SocialError::AlreadyLinked,
            SocialError::LinkNotFound,
            SocialError::LastSignInMethod,
            SocialError::UnknownUser,
            SocialError::InvalidLink("subject"),
            SocialError::InvalidBatchSize,
            SocialError::TimeBeforeEpoch,
            SocialError::Sealed(portcullis_sealed::SealedError::NoKeyDecrypts),
            SocialError::Corrupt("x"),
            SocialError::Contended,
            SocialError::Database(sqlx::Error::PoolTimedOut),
        ];
        let codes: std::collections::BTreeSet<_> = all.iter().map(SocialError::code).collect();
        assert_eq!(codes.len(), all.len(), "every error has its own code");
        for code in codes {
            assert!(
                code.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{code}"
            );
        }
    }

    #[test]
    fn upstream_error_message_names_the_code_but_not_the_description() {
        let error = SocialError::UpstreamError {
            error: "server_error".into(),
            description: Some("<script>alert(1)</script>".into()),
        };
        assert_eq!(
            error.to_string(),
            "the provider refused the sign-in: server_error"
        );
        assert!(error.is_upstream_fault());
        assert!(!SocialError::StateMismatch.is_upstream_fault());
    }

    #[test]
    fn upstream_text_drops_control_characters_and_is_capped() {
        assert_eq!(
            upstream_text("bad\r\nINFO forged log line\u{1b}[31m"),
            "badINFO forged log line[31m"
        );
        assert_eq!(upstream_text("say \"hi\" \\ caf\u{e9}"), "say hi  caf");
        assert_eq!(upstream_text(&"x".repeat(1000)).len(), MAX_UPSTREAM_TEXT);
    }
}
