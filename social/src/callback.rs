//! The provider's redirect back to the server, and the checks made on it before any request
//! goes upstream: the provider, the age, `state`, an `error`, RFC 9207's `iss`.

use std::collections::HashMap;
use std::fmt;

use subtle::ConstantTimeEq as _;
use time::OffsetDateTime;

use crate::error::upstream_text;
use crate::{PENDING_TTL, Pending, SocialError};

/// How far in the future a pending record's `created_at` may be (servers' clocks differ).
pub const PENDING_CLOCK_SKEW: time::Duration = time::Duration::minutes(1);

/// The callback's query parameters that matter here. Its `Debug` hides the code and the state
/// (the server must not log the callback's raw query string either).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Callback {
    /// The authorization code.
    pub code: Option<String>,
    /// The `state` sent back.
    pub state: Option<String>,
    /// An error instead of a code (RFC 6749 §4.1.2.1).
    pub error: Option<String>,
    /// Its human-readable description.
    pub error_description: Option<String>,
    /// The issuer that answered (RFC 9207), when the provider says.
    pub iss: Option<String>,
}

impl fmt::Debug for Callback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Callback")
            .field("code", &self.code.as_ref().map(|_| ".."))
            .field("state", &self.state.as_ref().map(|_| ".."))
            .field("error", &self.error)
            .field("error_description", &self.error_description)
            .field("iss", &self.iss)
            .finish()
    }
}

impl Callback {
    /// The callback from its query parameters (e.g. axum's `Query<Vec<(String, String)>>`).
    /// A parameter given twice is refused (`malformed_callback`): which one would count is
    /// exactly what an attacker would like to choose.
    pub fn from_pairs<I, K, V>(pairs: I) -> Result<Self, SocialError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Into<String>,
    {
        let mut seen: HashMap<String, String> = HashMap::new();
        for (key, value) in pairs {
            let key = key.as_ref();
            if seen.insert(key.to_owned(), value.into()).is_some() {
                return Err(SocialError::MalformedCallback(key.to_owned()));
            }
        }
        Ok(Self {
            code: seen.remove("code"),
            state: seen.remove("state"),
            error: seen.remove("error"),
            error_description: seen.remove("error_description"),
            iss: seen.remove("iss"),
        })
    }

    /// The callback from a raw query string (without the `?`).
    pub fn from_query(query: &str) -> Result<Self, SocialError> {
        Self::from_pairs(url::form_urlencoded::parse(query.as_bytes()))
    }
}

/// Checks a callback against the pending sign-in, in this order: the provider is the one it
/// was started with, it is younger than [`PENDING_TTL`], `state` matches (compared in constant
/// time), the provider sent no `error`, `iss` (when sent and `issuer` is known) is `issuer`,
/// and is there when `iss_required` (the provider advertises RFC 9207's
/// `authorization_response_iss_parameter_supported`); then returns the code to exchange.
///
/// `state` comes before `error`: an error response with another state is not an answer to
/// this sign-in, and must not be shown as if it were.
pub fn check_callback<'c>(
    pending: &Pending,
    provider: &str,
    issuer: Option<&str>,
    iss_required: bool,
    callback: &'c Callback,
    now: OffsetDateTime,
) -> Result<&'c str, SocialError> {
    if pending.provider != provider {
        return Err(SocialError::ProviderMismatch {
            started: pending.provider.clone(),
            finishing: provider.to_owned(),
        });
    }
    if now - pending.created_at > PENDING_TTL {
        return Err(SocialError::Expired);
    }
    // A record from the future was not made by this server's clock (or it jumped): refuse it
    // rather than let it live longer than the TTL.
    if pending.created_at - now > PENDING_CLOCK_SKEW {
        return Err(SocialError::PendingFromTheFuture);
    }
    let state_matches = callback
        .state
        .as_deref()
        .is_some_and(|state| bool::from(state.as_bytes().ct_eq(pending.state.as_bytes())));
    if !state_matches {
        return Err(SocialError::StateMismatch);
    }
    if let Some(error) = &callback.error {
        let description = callback.error_description.as_deref().map(upstream_text);
        return Err(if error == "access_denied" {
            SocialError::AccessDenied { description }
        } else {
            SocialError::UpstreamError {
                error: upstream_text(error),
                description,
            }
        });
    }
    match (issuer, &callback.iss) {
        (Some(expected), Some(got)) if got != expected => {
            return Err(SocialError::IssuerMismatch {
                expected: expected.to_owned(),
                got: got.clone(),
            });
        }
        (Some(expected), None) if iss_required => {
            return Err(SocialError::IssuerMissing {
                expected: expected.to_owned(),
            });
        }
        _ => {}
    }
    callback
        .code
        .as_deref()
        .filter(|code| !code.is_empty())
        .ok_or(SocialError::MissingCode)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use time::Duration;

    use super::*;

    const ISSUER: &str = "https://id.example.com";

    fn started() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn pending() -> Pending {
        Pending {
            provider: "corp".into(),
            state: "state-0123456789".into(),
            pkce_verifier: "verifier".into(),
            nonce: Some("nonce".into()),
            redirect_uri: "https://auth.example.com/oauth2/social/corp/callback".into(),
            created_at: started(),
        }
    }

    fn callback(query: &str) -> Callback {
        Callback::from_query(query).unwrap()
    }

    fn check(callback: &Callback) -> Result<&str, SocialError> {
        check_callback(
            &pending(),
            "corp",
            Some(ISSUER),
            false,
            callback,
            started() + Duration::minutes(1),
        )
    }

    fn refusal(query: &str) -> &'static str {
        check(&callback(query)).expect_err("refused").code()
    }

    #[test]
    fn matching_state_gives_the_code() {
        let callback = callback("code=abc&state=state-0123456789&iss=https%3A%2F%2Fid.example.com");
        assert_eq!(check(&callback).unwrap(), "abc");
    }

    #[test]
    fn callback_without_iss_is_accepted() {
        assert_eq!(
            check(&callback("code=abc&state=state-0123456789")).unwrap(),
            "abc"
        );
    }

    #[test]
    fn callback_without_iss_is_refused_when_the_provider_advertises_it() {
        let callback = callback("code=abc&state=state-0123456789");
        let error = check_callback(&pending(), "corp", Some(ISSUER), true, &callback, started())
            .expect_err("refused");
        assert_eq!(error.code(), "issuer_missing");
        let with_iss = Callback {
            iss: Some(ISSUER.into()),
            ..callback
        };
        let code = check_callback(&pending(), "corp", Some(ISSUER), true, &with_iss, started());
        assert_eq!(code.unwrap(), "abc");
    }

    #[test]
    fn tampered_state_is_refused() {
        assert_eq!(refusal("code=abc&state=state-0123456788"), "state_mismatch");
    }

    #[test]
    fn state_prefix_is_refused() {
        assert_eq!(refusal("code=abc&state=state-012345678"), "state_mismatch");
    }

    #[test]
    fn missing_state_is_refused() {
        assert_eq!(refusal("code=abc"), "state_mismatch");
    }

    #[test]
    fn access_denied_is_mapped_to_its_own_error() {
        let error = check(&callback(
            "error=access_denied&error_description=User+said+no&state=state-0123456789",
        ))
        .expect_err("refused");
        assert!(
            matches!(&error, SocialError::AccessDenied { description: Some(d) } if d == "User said no"),
            "{error:?}"
        );
    }

    #[test]
    fn other_upstream_errors_keep_the_provider_code() {
        let error =
            check(&callback("error=server_error&state=state-0123456789")).expect_err("refused");
        assert!(
            matches!(&error, SocialError::UpstreamError { error, description: None } if error == "server_error"),
            "{error:?}"
        );
    }

    #[test]
    fn upstream_error_text_is_cleaned_of_control_characters() {
        let error = check(&callback(
            "error=server%0Aerror&error_description=a%0D%0Ab&state=state-0123456789",
        ))
        .expect_err("refused");
        assert!(
            matches!(&error, SocialError::UpstreamError { error, description: Some(d) } if error == "servererror" && d == "ab"),
            "{error:?}"
        );
    }

    #[test]
    fn upstream_error_with_another_state_is_a_state_mismatch() {
        assert_eq!(
            refusal("error=access_denied&state=forged"),
            "state_mismatch"
        );
    }

    #[test]
    fn iss_of_another_issuer_is_refused() {
        assert_eq!(
            refusal("code=abc&state=state-0123456789&iss=https%3A%2F%2Fevil.example"),
            "issuer_mismatch"
        );
    }

    #[test]
    fn iss_is_not_checked_without_a_known_issuer() {
        let callback = callback("code=abc&state=state-0123456789&iss=whatever");
        let code = check_callback(&pending(), "corp", None, false, &callback, started()).unwrap();
        assert_eq!(code, "abc");
    }

    #[test]
    fn missing_or_empty_code_is_refused() {
        assert_eq!(refusal("state=state-0123456789"), "missing_code");
        assert_eq!(refusal("code=&state=state-0123456789"), "missing_code");
    }

    #[test]
    fn another_provider_cannot_finish_the_sign_in() {
        let callback = callback("code=abc&state=state-0123456789");
        let error = check_callback(
            &pending(),
            "github",
            Some(ISSUER),
            false,
            &callback,
            started(),
        )
        .expect_err("refused");
        assert_eq!(error.code(), "provider_mismatch");
    }

    #[test]
    fn sign_in_older_than_the_ttl_is_refused() {
        let callback = callback("code=abc&state=state-0123456789");
        let at_limit = started() + PENDING_TTL;
        assert!(
            check_callback(&pending(), "corp", Some(ISSUER), false, &callback, at_limit).is_ok()
        );
        let late = at_limit + Duration::seconds(1);
        let error = check_callback(&pending(), "corp", Some(ISSUER), false, &callback, late)
            .expect_err("refused");
        assert_eq!(error.code(), "expired");
    }

    #[test]
    fn sign_in_started_in_the_future_is_refused() {
        let callback = callback("code=abc&state=state-0123456789");
        let skewed = started() - PENDING_CLOCK_SKEW;
        assert!(check_callback(&pending(), "corp", Some(ISSUER), false, &callback, skewed).is_ok());
        let before = skewed - Duration::seconds(1);
        let error = check_callback(&pending(), "corp", Some(ISSUER), false, &callback, before)
            .expect_err("refused");
        assert_eq!(error.code(), "pending_from_the_future");
    }

    #[test]
    fn callback_debug_hides_the_code_and_the_state() {
        let shown = format!(
            "{:?}",
            callback("code=the-code&state=the-state&iss=https%3A%2F%2Fid.example.com")
        );
        assert!(
            !shown.contains("the-code") && !shown.contains("the-state"),
            "{shown}"
        );
        assert!(shown.contains("id.example.com"), "{shown}");
    }

    #[test]
    fn repeated_parameter_is_refused() {
        let error = Callback::from_query("code=a&state=s&state=t").expect_err("refused");
        assert!(
            matches!(&error, SocialError::MalformedCallback(p) if p == "state"),
            "{error:?}"
        );
    }
}
