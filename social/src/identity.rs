//! Who the provider says signed in, and the provider's tokens when the server asks for them.

use std::fmt;

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization as _;

/// The person the provider vouches for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamIdentity {
    /// The provider's name in the realm ([`crate::ProviderSettings::name`]).
    pub provider: String,
    /// Who issued `subject`: the verified ID token's `iss` for OpenID Connect, the API base
    /// URL for GitHub (github.com's or an Enterprise server's). A subject is unique only per
    /// issuer, so the server MUST key links by (realm, issuer, subject), never by the
    /// provider's name: repointing a provider at another issuer (or GitHub at an Enterprise
    /// server, whose small numeric ids collide with github.com's) must not sign anyone in as
    /// the user linked to the same subject at the old one.
    pub issuer: String,
    /// The provider's stable id for them: the ID token's `sub`, or GitHub's numeric user id
    /// (never the login, which its owner can change and someone else can then take).
    pub subject: String,
    /// Their email, if the provider gave one.
    pub email: Option<String>,
    /// Whether the provider says it verified that email (`false` when it says nothing).
    pub email_verified: bool,
    /// Their display name, if any.
    pub name: Option<String>,
    /// Google only: the Workspace domain managing the account (the ID token's `hd`), `None`
    /// for consumer accounts and other providers. With `allowedDomains` set, a Google identity
    /// is allowed by this domain, not by its email's (see [`crate::link_decision`]).
    pub hosted_domain: Option<String>,
}

impl UpstreamIdentity {
    /// The email as the auth server canonicalises it at registration
    /// (`authserver/src/auth/identifier.rs`: trimmed, NFKC-normalised, lower-cased, a plain
    /// dot-atom `local@host.name`), or `None` when the server would refuse it.
    ///
    /// Not what linking uses: NFKC folds compatibility characters into ASCII (`ａda`, with a
    /// fullwidth `ａ`, becomes `ada`), so two different mailboxes can share this form. See
    /// [`UpstreamIdentity::link_email`].
    pub fn canonical_email(&self) -> Option<String> {
        let canonical: String = self
            .email
            .as_deref()?
            .trim()
            .nfkc()
            .collect::<String>()
            .to_lowercase();
        is_plain_address(&canonical).then_some(canonical)
    }

    /// The email that linking and account creation use, and the one the server looks the
    /// account up by: [`UpstreamIdentity::canonical_email`], but only when the provider's raw
    /// address already is that form up to ASCII case (ASCII, no surrounding spaces, a plain
    /// dot-atom address). Anything else (fullwidth or other compatibility characters, a Kelvin
    /// sign, a long s, non-ASCII local parts or domains, a quoted local part) is `None`: it
    /// could name another mailbox than the account's, so it links nothing and creates nothing
    /// (`email_unusable` in [`crate::link_decision`]).
    pub fn link_email(&self) -> Option<String> {
        let raw = self.email.as_deref()?;
        let canonical = self.canonical_email()?;
        (raw.is_ascii() && raw.to_ascii_lowercase() == canonical).then_some(canonical)
    }

    /// The domain of [`UpstreamIdentity::link_email`] (lower case), if there is one.
    pub fn email_domain(&self) -> Option<String> {
        let email = self.link_email()?;
        let (_, domain) = email.rsplit_once('@')?;
        Some(domain.to_owned())
    }
}

/// The server's rule for an address: at most 254 bytes, a dot-atom local part of at most 64,
/// and a DNS host name of two labels or more whose last is not all digits.
fn is_plain_address(email: &str) -> bool {
    const ATEXT_SYMBOLS: &str = "!#$%&'*+-/=?^_`{|}~";
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    let dot_atom = local.split('.').all(|atom| {
        !atom.is_empty()
            && atom
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ATEXT_SYMBOLS.contains(c))
    });
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |label: &&str| {
        (1..=63).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    email.len() <= 254
        && local.len() <= 64
        && dot_atom
        && labels.len() >= 2
        && labels.iter().all(label_ok)
        && labels
            .last()
            .is_some_and(|tld| !tld.chars().all(|c| c.is_ascii_digit()))
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
            issuer: "https://id.example.com".into(),
            subject: "1".into(),
            email: email.map(String::from),
            email_verified: true,
            name: None,
            hosted_domain: None,
        }
    }

    #[test]
    fn email_domain_is_the_lower_cased_domain_of_the_link_email() {
        assert_eq!(
            with_email(Some("Ada@Example.COM"))
                .email_domain()
                .as_deref(),
            Some("example.com")
        );
    }

    #[test]
    fn email_domain_is_none_without_a_usable_email() {
        for email in [
            None,
            Some("nobody"),
            Some("nobody@"),
            Some("\"a@b\"@example.com"),
        ] {
            assert_eq!(with_email(email).email_domain(), None, "{email:?}");
        }
    }

    #[test]
    fn canonical_email_is_the_servers_form() {
        // The server's own examples (authserver/src/auth/identifier.rs).
        for (raw, canonical) in [
            ("  Alice@Example.COM ", Some("alice@example.com")),
            ("\u{ff41}lice@example.com", Some("alice@example.com")),
            (
                "o'brien+tag@sub.example.co.uk",
                Some("o'brien+tag@sub.example.co.uk"),
            ),
            ("a@b@example.com", None),
            ("ada@localhost", None),
            ("ada@1.2.3.4", None),
            ("\"ada\"@example.com", None),
        ] {
            assert_eq!(
                with_email(Some(raw)).canonical_email().as_deref(),
                canonical,
                "{raw:?}"
            );
        }
    }

    /// Addresses that the server's NFKC folding would turn into `ada@example.com`-like ASCII
    /// (or that are not plain ASCII at all): none of them may link or create.
    #[test]
    fn link_email_refuses_what_nfkc_or_trimming_would_change() {
        for (raw, why) in [
            ("\u{ff41}da@example.com", "fullwidth a"),
            ("\u{212a}elvin@example.com", "Kelvin sign"),
            ("\u{17f}am@example.com", "long s"),
            ("\u{fb01}le@example.com", "fi ligature"),
            ("ada\u{ff20}example.com", "fullwidth at sign"),
            ("ada@example\u{ff0e}com", "fullwidth full stop"),
            ("ada@ex\u{e4}mple.com", "non-ASCII domain"),
            ("a\u{301}da@example.com", "combining accent"),
            ("\u{1d41a}da@example.com", "mathematical bold a"),
            (" ada@example.com", "leading space"),
            ("ada@example.com\n", "trailing newline"),
            ("\"ada\"@example.com", "quoted local part"),
        ] {
            assert_eq!(with_email(Some(raw)).link_email(), None, "{why}: {raw:?}");
        }
    }

    #[test]
    fn link_email_of_a_plain_address_is_its_lower_case() {
        assert_eq!(
            with_email(Some("Ada.Lovelace+x@Example.com"))
                .link_email()
                .as_deref(),
            Some("ada.lovelace+x@example.com")
        );
        assert_eq!(with_email(None).link_email(), None);
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
