//! Who the provider says signed in, and the provider's tokens when the server asks for them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The person the provider vouches for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamIdentity {
    /// The provider's name in the realm ([`crate::ProviderSettings::name`]).
    pub provider: String,
    /// The provider's stable id for them: the ID token's `sub`, or GitHub's numeric user id
    /// (never the login, which its owner can change and someone else can then take).
    pub subject: String,
    /// Their email, if the provider gave one.
    pub email: Option<String>,
    /// Whether the provider says it verified that email (`false` when it says nothing).
    pub email_verified: bool,
    /// Their display name, if any.
    pub name: Option<String>,
}

impl UpstreamIdentity {
    /// The domain of the email, lower case, if there is an email with an `@`.
    pub fn email_domain(&self) -> Option<String> {
        let email = self.email.as_deref()?;
        let (_, domain) = email.rsplit_once('@')?;
        (!domain.is_empty()).then(|| domain.to_ascii_lowercase())
    }
}

/// The provider's tokens, returned only by [`crate::Provider::finish_with_tokens`]: the
/// server keeps them (encrypted) only when a feature needs to call the provider later.
/// Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamTokens {
    /// The access token.
    pub access_token: String,
    /// The refresh token, if the provider issued one.
    pub refresh_token: Option<String>,
    /// The access token's lifetime from now, if the provider said.
    pub expires_in: Option<std::time::Duration>,
    /// The scopes granted, if the provider said.
    pub scopes: Option<Vec<String>>,
}

impl fmt::Debug for UpstreamTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamTokens")
            .field("expires_in", &self.expires_in)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_email(email: Option<&str>) -> UpstreamIdentity {
        UpstreamIdentity {
            provider: "corp".into(),
            subject: "1".into(),
            email: email.map(String::from),
            email_verified: true,
            name: None,
        }
    }

    #[test]
    fn email_domain_is_the_lower_cased_part_after_the_last_at() {
        assert_eq!(
            with_email(Some("\"a@b\"@Example.COM"))
                .email_domain()
                .as_deref(),
            Some("example.com")
        );
    }

    #[test]
    fn email_domain_is_none_without_a_usable_email() {
        assert_eq!(with_email(None).email_domain(), None);
        assert_eq!(with_email(Some("nobody")).email_domain(), None);
        assert_eq!(with_email(Some("nobody@")).email_domain(), None);
    }

    #[test]
    fn tokens_debug_hides_the_tokens() {
        let tokens = UpstreamTokens {
            access_token: "at-secret".into(),
            refresh_token: Some("rt-secret".into()),
            expires_in: None,
            scopes: None,
        };
        let shown = format!("{tokens:?}");
        assert!(
            !shown.contains("at-secret") && !shown.contains("rt-secret"),
            "{shown}"
        );
    }
}
