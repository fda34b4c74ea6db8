//! A provider's settings, from the realm's `socialProviders` entry and its client secret file.

use std::fmt;
use std::path::Path;

use portcullis_crds::realm::{SocialProvider, SocialProviderType};
use portcullis_crds::secrets_dir::social_client_secret;
use url::Url;

use crate::SocialError;

/// Google's OpenID Connect issuer (discovery at `{issuer}/.well-known/openid-configuration`).
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";

/// The scopes an OpenID Connect provider is asked for when `scopes` is empty.
pub const OIDC_DEFAULT_SCOPES: [&str; 3] = ["openid", "email", "profile"];

/// The scopes GitHub is asked for when `scopes` is empty: the profile and the email list.
pub const GITHUB_DEFAULT_SCOPES: [&str; 2] = ["read:user", "user:email"];

/// GitHub's endpoints: the real ones by default, a stand-in's in tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitHubEndpoints {
    /// The authorization endpoint.
    pub authorize: Url,
    /// The token endpoint.
    pub token: Url,
    /// The REST API base: `{api}/user` and `{api}/user/emails` are read.
    pub api: Url,
}

impl GitHubEndpoints {
    /// Endpoints under other bases (a GitHub Enterprise server, or a test double):
    /// `{web}/login/oauth/authorize`, `{web}/login/oauth/access_token` and the API at `api`.
    pub fn at(web: &Url, api: &Url) -> Result<Self, url::ParseError> {
        Ok(Self {
            authorize: web.join("login/oauth/authorize")?,
            token: web.join("login/oauth/access_token")?,
            api: api.clone(),
        })
    }
}

impl Default for GitHubEndpoints {
    fn default() -> Self {
        let parse = |s: &str| Url::parse(s).unwrap_or_else(|_| unreachable!("a valid URL"));
        Self {
            authorize: parse("https://github.com/login/oauth/authorize"),
            token: parse("https://github.com/login/oauth/access_token"),
            api: parse("https://api.github.com/"),
        }
    }
}

/// How the provider is spoken to.
// One per provider, made at start: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// OpenID Connect: discovery, an ID token verified against the JWKS, `nonce`.
    Oidc {
        /// The issuer, exactly as the provider's `iss` says it (a URL, kept as a string: a
        /// parsed URL would gain a trailing slash that `iss` does not have).
        issuer: String,
    },
    /// GitHub's OAuth 2 apps: no ID token; the user comes from its REST API.
    GitHub(GitHubEndpoints),
}

/// The client secret: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecret(String);

impl ClientSecret {
    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(..)")
    }
}

/// One social login provider, ready for [`crate::Provider::discover`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderSettings {
    /// The name in URLs and on the login page; also [`crate::UpstreamIdentity::provider`].
    pub name: String,
    /// The preset it came from.
    pub preset: SocialProviderType,
    /// How it is spoken to.
    pub protocol: Protocol,
    /// Our client id at the provider.
    pub client_id: String,
    /// Our client secret there.
    pub client_secret: ClientSecret,
    /// The scopes asked for (the preset's when the realm gives none; `openid` always for OIDC,
    /// `user:email` always for GitHub).
    pub scopes: Vec<String>,
    /// Email domains allowed to sign in, lower case; empty allows all. For Google the account
    /// must also be managed by that Workspace domain (`hd`). Note that a provider's verified
    /// email stays verified after its owner loses the mailbox (GitHub never re-checks; a
    /// Google consumer account keeps it): this restricts by address, not by employment.
    pub allowed_domains: Vec<String>,
}

impl ProviderSettings {
    /// The settings of a realm's `socialProviders` entry, with its client secret (what
    /// [`read_client_secret`] read from the secrets dir).
    pub fn from_crd(provider: &SocialProvider, client_secret: &str) -> Result<Self, SocialError> {
        let invalid = |reason: String| SocialError::InvalidSettings {
            provider: provider.name.clone(),
            reason,
        };
        // The CRD schema checks these too; repeated here for any other path in (a name goes
        // into a file name and URLs).
        if !is_dns_label(&provider.name) {
            return Err(invalid(format!(
                "name {:?} is not a DNS label",
                provider.name
            )));
        }
        if provider.client_id.trim().is_empty() {
            return Err(invalid("clientId is empty".into()));
        }
        // The file's trailing newline is not part of the secret.
        let client_secret = client_secret.trim();
        if client_secret.is_empty() {
            return Err(invalid("the client secret is empty".into()));
        }
        let protocol = match (provider.provider_type, &provider.issuer_url) {
            (SocialProviderType::Oidc, Some(issuer)) => Protocol::Oidc {
                issuer: issuer_url(issuer).map_err(invalid)?,
            },
            (SocialProviderType::Oidc, None) => {
                return Err(invalid("an Oidc provider needs issuerUrl".into()));
            }
            (SocialProviderType::Google, None) => Protocol::Oidc {
                issuer: issuer_url(GOOGLE_ISSUER).map_err(invalid)?,
            },
            (SocialProviderType::GitHub, None) => Protocol::GitHub(GitHubEndpoints::default()),
            (SocialProviderType::GitHub | SocialProviderType::Google, Some(_)) => {
                return Err(invalid("issuerUrl is only for Oidc providers".into()));
            }
        };
        if let Some(bad) = provider
            .scopes
            .iter()
            .find(|s| s.is_empty() || s.chars().any(|c| c.is_whitespace() || c == '"'))
        {
            return Err(invalid(format!(
                "scope {bad:?} is not a single scope token"
            )));
        }
        let scopes = match (&protocol, provider.scopes.is_empty()) {
            (Protocol::GitHub(_), true) => GITHUB_DEFAULT_SCOPES.map(String::from).to_vec(),
            (Protocol::GitHub(_), false) => {
                // Without `user:email` GitHub's /user/emails answers 404 and every sign-in
                // fails. (A GitHub App ignores scopes: it needs the "Email addresses" user
                // permission instead.)
                let mut scopes = provider.scopes.clone();
                if !scopes.iter().any(|s| s == "user:email") {
                    scopes.push("user:email".into());
                }
                scopes
            }
            (Protocol::Oidc { .. }, true) => OIDC_DEFAULT_SCOPES.map(String::from).to_vec(),
            (Protocol::Oidc { .. }, false) => {
                // Without `openid` the provider answers with plain OAuth: no ID token.
                let mut scopes = provider.scopes.clone();
                if !scopes.iter().any(|s| s == "openid") {
                    scopes.insert(0, "openid".into());
                }
                scopes
            }
        };
        let allowed_domains = provider
            .allowed_domains
            .iter()
            .map(|d| d.trim().to_ascii_lowercase())
            .collect::<Vec<_>>();
        if let Some(bad) = allowed_domains.iter().find(|d| !is_dns_subdomain(d)) {
            return Err(invalid(format!(
                "allowedDomains entry {bad:?} is not a domain name"
            )));
        }
        Ok(Self {
            name: provider.name.clone(),
            preset: provider.provider_type,
            protocol,
            client_id: provider.client_id.clone(),
            client_secret: ClientSecret(client_secret.to_owned()),
            scopes,
            allowed_domains,
        })
    }

    /// The same settings with GitHub's endpoints elsewhere (GitHub Enterprise, a test double).
    /// An OIDC provider is returned unchanged: its endpoints come from discovery.
    pub fn with_github_endpoints(mut self, endpoints: GitHubEndpoints) -> Self {
        if let Protocol::GitHub(current) = &mut self.protocol {
            *current = endpoints;
        }
        self
    }
}

/// A DNS label (RFC 1123): 1 to 63 lower-case letters, digits and inner hyphens.
fn is_dns_label(label: &str) -> bool {
    (1..=63).contains(&label.len())
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A DNS subdomain (RFC 1123): dot-separated labels, at most 253 characters.
fn is_dns_subdomain(domain: &str) -> bool {
    domain.len() <= 253 && domain.split('.').all(is_dns_label)
}

/// Reads the client secret of provider `name` from the auth server's secrets dir (the file
/// `social-{name}-client-secret`), trimmed of surrounding whitespace.
pub fn read_client_secret(secrets_dir: &Path, name: &str) -> Result<String, SocialError> {
    let path = secrets_dir.join(social_client_secret(name));
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_owned())
        .map_err(|e| SocialError::ClientSecretUnreadable {
            provider: name.to_owned(),
            reason: format!("{}: {e}", path.display()),
        })
}

/// An issuer: HTTPS, or plain HTTP to a loopback address (a provider on the same machine, in
/// tests); no query or fragment (OpenID Connect Discovery §2).
fn issuer_url(issuer: &str) -> Result<String, String> {
    let url = Url::parse(issuer).map_err(|e| format!("issuerUrl {issuer:?}: {e}"))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return Err(format!("issuerUrl {issuer:?} must be https")),
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "issuerUrl {issuer:?} must have no query or fragment"
        ));
    }
    Ok(issuer.to_owned())
}

/// A realm's `socialProviders` entry for the crate's unit tests, its secret ref named for it.
#[cfg(test)]
pub(crate) fn test_crd(
    name: &str,
    provider_type: SocialProviderType,
    client_id: &str,
    issuer_url: Option<&str>,
    allowed_domains: &[&str],
) -> SocialProvider {
    SocialProvider {
        name: name.into(),
        provider_type,
        client_id: client_id.into(),
        client_secret_ref: portcullis_crds::SecretKeyRef {
            name: "social".into(),
            key: name.into(),
        },
        issuer_url: issuer_url.map(String::from),
        scopes: Vec::new(),
        allowed_domains: allowed_domains.iter().map(|d| d.to_string()).collect(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use portcullis_crds::SecretKeyRef;

    use super::*;

    fn crd(provider_type: SocialProviderType, issuer_url: Option<&str>) -> SocialProvider {
        SocialProvider {
            name: "corp".into(),
            provider_type,
            client_id: "portcullis".into(),
            client_secret_ref: SecretKeyRef {
                name: "social".into(),
                key: "secret".into(),
            },
            issuer_url: issuer_url.map(String::from),
            scopes: Vec::new(),
            allowed_domains: Vec::new(),
        }
    }

    fn code(result: Result<ProviderSettings, SocialError>) -> &'static str {
        result.expect_err("refused").code()
    }

    #[test]
    fn oidc_provider_takes_its_issuer_and_the_default_scopes() {
        let settings = ProviderSettings::from_crd(
            &crd(
                SocialProviderType::Oidc,
                Some("https://id.example.com/realm"),
            ),
            "s3cret\n",
        )
        .unwrap();
        assert_eq!(
            settings.protocol,
            Protocol::Oidc {
                issuer: "https://id.example.com/realm".into()
            }
        );
        assert_eq!(settings.scopes, ["openid", "email", "profile"]);
        assert_eq!(settings.client_secret.expose(), "s3cret");
    }

    #[test]
    fn google_preset_is_oidc_at_accounts_google_com() {
        let settings =
            ProviderSettings::from_crd(&crd(SocialProviderType::Google, None), "s").unwrap();
        assert_eq!(
            settings.protocol,
            Protocol::Oidc {
                issuer: "https://accounts.google.com".into()
            }
        );
        assert_eq!(settings.scopes, ["openid", "email", "profile"]);
    }

    #[test]
    fn github_preset_uses_github_endpoints_and_asks_for_the_email_list() {
        let settings =
            ProviderSettings::from_crd(&crd(SocialProviderType::GitHub, None), "s").unwrap();
        let Protocol::GitHub(endpoints) = &settings.protocol else {
            panic!("{:?}", settings.protocol)
        };
        assert_eq!(
            endpoints.authorize.as_str(),
            "https://github.com/login/oauth/authorize"
        );
        assert_eq!(
            endpoints.token.as_str(),
            "https://github.com/login/oauth/access_token"
        );
        assert_eq!(endpoints.api.as_str(), "https://api.github.com/");
        assert_eq!(settings.scopes, ["read:user", "user:email"]);
    }

    #[test]
    fn github_endpoints_can_be_moved_for_a_test_double() {
        let web = Url::parse("http://127.0.0.1:9000/").unwrap();
        let api = Url::parse("http://127.0.0.1:9000/api/").unwrap();
        let endpoints = GitHubEndpoints::at(&web, &api).unwrap();
        let settings = ProviderSettings::from_crd(&crd(SocialProviderType::GitHub, None), "s")
            .unwrap()
            .with_github_endpoints(endpoints.clone());
        assert_eq!(settings.protocol, Protocol::GitHub(endpoints));
    }

    #[test]
    fn configured_oidc_scopes_always_include_openid() {
        let mut provider = crd(SocialProviderType::Oidc, Some("https://id.example.com"));
        provider.scopes = vec!["email".into(), "groups".into()];
        let settings = ProviderSettings::from_crd(&provider, "s").unwrap();
        assert_eq!(settings.scopes, ["openid", "email", "groups"]);
    }

    #[test]
    fn configured_github_scopes_always_include_user_email() {
        let mut provider = crd(SocialProviderType::GitHub, None);
        provider.scopes = vec!["read:org".into()];
        let settings = ProviderSettings::from_crd(&provider, "s").unwrap();
        assert_eq!(settings.scopes, ["read:org", "user:email"]);
        provider.scopes = vec!["user:email".into()];
        let settings = ProviderSettings::from_crd(&provider, "s").unwrap();
        assert_eq!(settings.scopes, ["user:email"]);
    }

    #[test]
    fn allowed_domains_are_lower_cased() {
        let mut provider = crd(SocialProviderType::Google, None);
        provider.allowed_domains = vec!["Example.COM".into()];
        let settings = ProviderSettings::from_crd(&provider, "s").unwrap();
        assert_eq!(settings.allowed_domains, ["example.com"]);
    }

    #[test]
    fn name_that_is_not_a_dns_label_is_refused() {
        for bad in ["", "Corp", "../x", "a b", "-corp", "corp-", &"a".repeat(64)] {
            let mut provider = crd(SocialProviderType::Google, None);
            provider.name = bad.to_string();
            assert_eq!(
                code(ProviderSettings::from_crd(&provider, "s")),
                "invalid_settings",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn allowed_domain_that_is_not_a_domain_name_is_refused() {
        for bad in [
            "",
            "@example.com",
            "example..com",
            "*.example.com",
            "ex ample.com",
            "b\u{fc}cher.de",
        ] {
            let mut provider = crd(SocialProviderType::Google, None);
            provider.allowed_domains = vec![bad.into()];
            assert_eq!(
                code(ProviderSettings::from_crd(&provider, "s")),
                "invalid_settings",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn oidc_without_issuer_is_refused() {
        assert_eq!(
            code(ProviderSettings::from_crd(
                &crd(SocialProviderType::Oidc, None),
                "s"
            )),
            "invalid_settings"
        );
    }

    #[test]
    fn presets_with_an_issuer_are_refused() {
        for preset in [SocialProviderType::GitHub, SocialProviderType::Google] {
            let provider = crd(preset, Some("https://id.example.com"));
            assert_eq!(
                code(ProviderSettings::from_crd(&provider, "s")),
                "invalid_settings"
            );
        }
    }

    #[test]
    fn plain_http_issuer_is_refused_unless_loopback() {
        let remote = crd(SocialProviderType::Oidc, Some("http://id.example.com"));
        assert_eq!(
            code(ProviderSettings::from_crd(&remote, "s")),
            "invalid_settings"
        );
        for local in [
            "http://127.0.0.1:8080",
            "http://localhost:8080",
            "http://[::1]:1",
        ] {
            let provider = crd(SocialProviderType::Oidc, Some(local));
            assert!(
                ProviderSettings::from_crd(&provider, "s").is_ok(),
                "{local}"
            );
        }
    }

    #[test]
    fn issuer_with_a_query_is_refused() {
        let provider = crd(
            SocialProviderType::Oidc,
            Some("https://id.example.com/?x=1"),
        );
        assert_eq!(
            code(ProviderSettings::from_crd(&provider, "s")),
            "invalid_settings"
        );
    }

    #[test]
    fn empty_client_secret_is_refused() {
        let provider = crd(SocialProviderType::Google, None);
        assert_eq!(
            code(ProviderSettings::from_crd(&provider, " \n")),
            "invalid_settings"
        );
    }

    #[test]
    fn scope_with_a_space_is_refused() {
        let mut provider = crd(SocialProviderType::Google, None);
        provider.scopes = vec!["openid email".into()];
        assert_eq!(
            code(ProviderSettings::from_crd(&provider, "s")),
            "invalid_settings"
        );
    }

    #[test]
    fn client_secret_debug_does_not_show_the_secret() {
        let settings =
            ProviderSettings::from_crd(&crd(SocialProviderType::Google, None), "hunter2").unwrap();
        assert!(!format!("{settings:?}").contains("hunter2"));
    }

    #[test]
    fn client_secret_is_read_from_the_secrets_dir_and_trimmed() {
        let dir = std::env::temp_dir().join(format!("social-secret-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("social-github-client-secret"), "abc123\n").unwrap();
        assert_eq!(read_client_secret(&dir, "github").unwrap(), "abc123");
        let missing = read_client_secret(&dir, "google").expect_err("no file");
        assert_eq!(missing.code(), "client_secret_unreadable");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
