//! A provider ready to use: its endpoints known (discovered for OpenID Connect), it builds the
//! authorization URL ([`Provider::start`]) and turns the callback into an identity
//! ([`Provider::finish`]). The code exchange is oauth2's, over [`crate::http`].

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, CsrfToken, EndpointNotSet, EndpointSet,
    ExtraTokenFields, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope,
    StandardRevocableToken, StandardTokenResponse, TokenResponse as _, TokenUrl,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use url::Url;

use crate::callback::{Callback, check_callback};
use crate::error::upstream_text;
use crate::http::{HttpClient, endpoint_allowed, send};
use crate::oidc::{self, Discovered, error_chain};
use crate::pending::{Pending, Random, encode};
use crate::settings::{GitHubEndpoints, Protocol, ProviderSettings};
use crate::{SocialError, UpstreamIdentity, UpstreamTokens, github};
use portcullis_crds::realm::SocialProviderType;

/// The token response's `id_token`, kept as text: a malformed one is then reported as such
/// (`id_token_malformed`) rather than as a failed exchange.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
struct IdTokenField {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
}

impl ExtraTokenFields for IdTokenField {}

type TokenResponse = StandardTokenResponse<IdTokenField, BasicTokenType>;

type OAuthClient = oauth2::Client<
    BasicErrorResponse,
    TokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

// One per provider, made at start: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
enum Kind {
    Oidc(Discovered),
    GitHub(GitHubEndpoints),
}

/// What [`Provider::start`] gives: where to send the browser, and what to keep until it
/// comes back.
#[derive(Debug)]
pub struct Started {
    /// The provider's authorization URL with `client_id`, `redirect_uri`, `scope`, `state`,
    /// the PKCE S256 challenge and (OpenID Connect) `nonce`.
    pub url: Url,
    /// The pending sign-in for the server to keep, bound to the browser.
    pub pending: Pending,
}

/// A social login provider with its endpoints resolved. Build one per provider at start
/// (and again when the settings change) with [`Provider::discover`]; it is cheap to share.
#[derive(Clone, Debug)]
pub struct Provider {
    settings: ProviderSettings,
    http: HttpClient,
    kind: Kind,
}

impl Provider {
    /// Resolves the provider's endpoints: OpenID Connect discovery and its JWKS for OIDC and
    /// Google, nothing to fetch for GitHub. Every endpoint must be HTTPS (plain HTTP only on
    /// loopback, for a provider on the same machine). All requests go through `http`.
    pub async fn discover(
        settings: ProviderSettings,
        http: HttpClient,
    ) -> Result<Self, SocialError> {
        let kind = match &settings.protocol {
            Protocol::Oidc { issuer } => Kind::Oidc(oidc::discover(issuer, &http).await?),
            Protocol::GitHub(endpoints) => {
                let api = &endpoints.api;
                if let Some(bad) = [&endpoints.authorize, &endpoints.token, api]
                    .into_iter()
                    .find(|url| !endpoint_allowed(api, url))
                {
                    return Err(SocialError::InvalidSettings {
                        provider: settings.name.clone(),
                        reason: format!("the GitHub endpoint {bad} is not https"),
                    });
                }
                Kind::GitHub(endpoints.clone())
            }
        };
        Ok(Self {
            settings,
            http,
            kind,
        })
    }

    /// The settings it was built from.
    pub fn settings(&self) -> &ProviderSettings {
        &self.settings
    }

    /// The issuer, for OpenID Connect providers.
    pub fn issuer(&self) -> Option<&str> {
        match &self.kind {
            Kind::Oidc(discovered) => Some(discovered.issuer.as_str()),
            Kind::GitHub(_) => None,
        }
    }

    /// Whether the provider's callbacks must carry RFC 9207's `iss` (it advertises them).
    pub fn iss_required(&self) -> bool {
        match &self.kind {
            Kind::Oidc(discovered) => discovered.iss_required,
            Kind::GitHub(_) => false,
        }
    }

    /// Starts a sign-in that will come back to `redirect_uri` (the server's callback for this
    /// provider): the authorization URL, and the pending record made from `random` at `now`.
    pub fn start(
        &self,
        redirect_uri: &str,
        random: &Random,
        now: OffsetDateTime,
    ) -> Result<Started, SocialError> {
        let client = self.oauth_client(redirect_url(redirect_uri)?);
        let state = encode(&random.state);
        let pkce_verifier = encode(&random.pkce_verifier);
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(
            pkce_verifier.clone(),
        ));
        let nonce = matches!(self.kind, Kind::Oidc(_)).then(|| encode(&random.nonce));
        let mut request = client
            .authorize_url(|| CsrfToken::new(state.clone()))
            .add_scopes(self.settings.scopes.iter().cloned().map(Scope::new))
            .set_pkce_challenge(challenge);
        if let Some(nonce) = &nonce {
            request = request.add_extra_param("nonce", nonce.clone());
        }
        let (url, _) = request.url();
        Ok(Started {
            url,
            pending: Pending {
                provider: self.settings.name.clone(),
                state,
                pkce_verifier,
                nonce,
                redirect_uri: redirect_uri.to_owned(),
                created_at: now,
            },
        })
    }

    /// Finishes the sign-in `pending` with the provider's `callback` at `now`: checks the
    /// callback ([`check_callback`]), exchanges the code with the PKCE verifier, and returns
    /// who signed in (for OpenID Connect, from the verified ID token). The provider's tokens
    /// are dropped.
    pub async fn finish(
        &self,
        pending: &Pending,
        callback: &Callback,
        now: OffsetDateTime,
    ) -> Result<UpstreamIdentity, SocialError> {
        self.finish_with_tokens(pending, callback, now)
            .await
            .map(|(identity, _)| identity)
    }

    /// As [`Provider::finish`], also returning the provider's tokens, for a server that must
    /// call the provider later (it stores them encrypted).
    pub async fn finish_with_tokens(
        &self,
        pending: &Pending,
        callback: &Callback,
        now: OffsetDateTime,
    ) -> Result<(UpstreamIdentity, UpstreamTokens), SocialError> {
        let code = check_callback(
            pending,
            &self.settings.name,
            self.issuer(),
            self.iss_required(),
            callback,
            now,
        )?;
        let client = self.oauth_client(redirect_url(&pending.redirect_uri)?);
        let http = {
            let http = self.http.clone();
            move |request| send(http.clone(), request)
        };
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()))
            .request_async(&http)
            .await
            .map_err(|e| SocialError::TokenExchange(exchange_error(&e)))?;
        let access_token = response.access_token().secret();
        let identity = match &self.kind {
            Kind::Oidc(discovered) => {
                let tokens = oidc::Tokens {
                    id_token: response.extra_fields().id_token.as_deref(),
                    access_token,
                };
                oidc::identity(
                    discovered,
                    &self.settings.name,
                    self.settings.preset == SocialProviderType::Google,
                    &self.settings.client_id,
                    &self.http,
                    tokens,
                    pending.nonce.as_deref(),
                    now,
                )
                .await?
            }
            Kind::GitHub(endpoints) => {
                github::identity(endpoints, &self.settings.name, &self.http, access_token).await?
            }
        };
        let tokens = UpstreamTokens {
            access_token: access_token.clone(),
            refresh_token: response.refresh_token().map(|t| t.secret().clone()),
            expires_in: response.expires_in(),
            scopes: response
                .scopes()
                .map(|scopes| scopes.iter().map(|s| s.to_string()).collect()),
        };
        Ok((identity, tokens))
    }

    fn oauth_client(&self, redirect: RedirectUrl) -> OAuthClient {
        let (authorize, token, auth_type) = match &self.kind {
            Kind::Oidc(discovered) => (
                discovered.authorize.clone(),
                discovered.token.clone(),
                discovered.auth_type.clone(),
            ),
            // GitHub documents the secret in the form body.
            Kind::GitHub(endpoints) => (
                AuthUrl::from_url(endpoints.authorize.clone()),
                TokenUrl::from_url(endpoints.token.clone()),
                AuthType::RequestBody,
            ),
        };
        oauth2::Client::new(ClientId::new(self.settings.client_id.clone()))
            .set_client_secret(oauth2::ClientSecret::new(
                self.settings.client_secret.expose().to_owned(),
            ))
            .set_auth_uri(authorize)
            .set_token_uri(token)
            .set_redirect_uri(redirect)
            .set_auth_type(auth_type)
    }
}

/// The redirect URI: an absolute http(s) URL without a fragment (RFC 6749 §3.1.2).
fn redirect_url(redirect_uri: &str) -> Result<RedirectUrl, SocialError> {
    let invalid = || SocialError::InvalidRedirectUri(redirect_uri.to_owned());
    let url = Url::parse(redirect_uri).map_err(|_| invalid())?;
    if !matches!(url.scheme(), "https" | "http") || url.fragment().is_some() {
        return Err(invalid());
    }
    RedirectUrl::new(redirect_uri.to_owned()).map_err(|_| invalid())
}

/// The token endpoint's refusal, or why it could not be asked, as text: the provider's error
/// code (cleaned, [`upstream_text`]) without its free-text description.
fn exchange_error<E: std::error::Error + 'static>(
    error: &RequestTokenError<E, BasicErrorResponse>,
) -> String {
    match error {
        RequestTokenError::ServerResponse(response) => upstream_text(response.error().as_ref()),
        RequestTokenError::Parse(e, _) => format!("unreadable token response: {e}"),
        other => error_chain(other),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::HashMap;

    use portcullis_crds::realm::SocialProviderType;

    use super::*;
    use crate::settings::test_crd;

    const REDIRECT: &str = "https://auth.example.com/oauth2/social/github/callback";

    fn github() -> Provider {
        let crd = test_crd(
            "github",
            SocialProviderType::GitHub,
            "Iv1.portcullis",
            None,
            &[],
        );
        // reqwest is built without a TLS provider: ring, as the server installs it.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Provider {
            settings: ProviderSettings::from_crd(&crd, "secret").unwrap(),
            http: HttpClient::new().unwrap(),
            kind: Kind::GitHub(GitHubEndpoints::default()),
        }
    }

    /// An OpenID provider as discovery would describe it (no request is made by `start`).
    fn oidc() -> Provider {
        let crd = test_crd(
            "corp",
            SocialProviderType::Oidc,
            "portcullis",
            Some("https://id.example.com"),
            &[],
        );
        let _ = rustls::crypto::ring::default_provider().install_default();
        let discovered = Discovered {
            issuer: openidconnect::IssuerUrl::new("https://id.example.com".into()).unwrap(),
            authorize: AuthUrl::new("https://id.example.com/authorize".into()).unwrap(),
            token: TokenUrl::new("https://id.example.com/token".into()).unwrap(),
            auth_type: AuthType::BasicAuth,
            userinfo: None,
            jwks_uri: openidconnect::JsonWebKeySetUrl::new("https://id.example.com/jwks".into())
                .unwrap(),
            jwks: oidc::Keys::new(openidconnect::core::CoreJsonWebKeySet::new(Vec::new())),
            algs: vec![openidconnect::core::CoreJwsSigningAlgorithm::EcdsaP256Sha256],
            iss_required: true,
        };
        Provider {
            settings: ProviderSettings::from_crd(&crd, "secret").unwrap(),
            http: HttpClient::new().unwrap(),
            kind: Kind::Oidc(discovered),
        }
    }

    fn random() -> Random {
        Random {
            state: [1; 32],
            pkce_verifier: [2; 32],
            nonce: [3; 32],
        }
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn query(url: &Url) -> HashMap<String, String> {
        url.query_pairs().into_owned().collect()
    }

    #[test]
    fn github_authorization_url_has_state_pkce_and_scopes_but_no_nonce() {
        let started = github().start(REDIRECT, &random(), now()).unwrap();
        assert_eq!(
            started.url.as_str().split('?').next(),
            Some("https://github.com/login/oauth/authorize")
        );
        let q = query(&started.url);
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["client_id"], "Iv1.portcullis");
        assert_eq!(q["redirect_uri"], REDIRECT);
        assert_eq!(q["scope"], "read:user user:email");
        assert_eq!(q["state"], encode(&[1; 32]));
        assert_eq!(q["code_challenge_method"], "S256");
        assert!(!q.contains_key("nonce"), "{q:?}");
        assert!(
            !started.url.as_str().contains("secret"),
            "the client secret never goes to the browser"
        );
    }

    #[test]
    fn oidc_authorization_url_has_the_discovered_endpoint_openid_scope_and_nonce() {
        let started = oidc().start(REDIRECT, &random(), now()).unwrap();
        assert_eq!(
            started.url.as_str().split('?').next(),
            Some("https://id.example.com/authorize")
        );
        let q = query(&started.url);
        assert_eq!(q["scope"], "openid email profile");
        assert_eq!(q["nonce"], encode(&[3; 32]));
        assert_eq!(q["state"], encode(&[1; 32]));
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(started.pending.nonce.as_deref(), Some(q["nonce"].as_str()));
        assert_ne!(q["nonce"], q["state"]);
    }

    #[test]
    fn code_challenge_is_the_s256_of_the_kept_verifier() {
        let started = github().start(REDIRECT, &random(), now()).unwrap();
        // RFC 7636 Appendix B's computation, by hand: base64url(SHA-256(verifier)).
        let verifier = PkceCodeVerifier::new(started.pending.pkce_verifier.clone());
        let expected = PkceCodeChallenge::from_code_verifier_sha256(&verifier);
        assert_eq!(query(&started.url)["code_challenge"], expected.as_str());
        assert_ne!(
            query(&started.url)["code_challenge"],
            started.pending.pkce_verifier,
            "the verifier itself never goes to the browser"
        );
    }

    #[test]
    fn pending_record_keeps_what_the_callback_needs() {
        let started = github().start(REDIRECT, &random(), now()).unwrap();
        assert_eq!(
            started.pending,
            Pending {
                provider: "github".into(),
                state: encode(&[1; 32]),
                pkce_verifier: encode(&[2; 32]),
                nonce: None,
                redirect_uri: REDIRECT.into(),
                created_at: now(),
            }
        );
    }

    #[test]
    fn different_randomness_gives_a_different_state_and_verifier() {
        let provider = github();
        let a = provider.start(REDIRECT, &random(), now()).unwrap();
        let other = Random {
            state: [9; 32],
            pkce_verifier: [8; 32],
            nonce: [7; 32],
        };
        let b = provider.start(REDIRECT, &other, now()).unwrap();
        assert_ne!(a.pending.state, b.pending.state);
        assert_ne!(a.pending.pkce_verifier, b.pending.pkce_verifier);
    }

    #[test]
    fn relative_or_odd_redirect_uris_are_refused() {
        for bad in [
            "/callback",
            "javascript:alert(1)",
            "https://a.example/cb#frag",
            "",
        ] {
            let error = github().start(bad, &random(), now()).expect_err("refused");
            assert_eq!(error.code(), "invalid_redirect_uri", "{bad}");
        }
    }

    #[test]
    fn server_refusal_of_the_code_is_reported_with_its_error_code_only() {
        let response = BasicErrorResponse::new(
            oauth2::basic::BasicErrorResponseType::InvalidGrant,
            Some("code expired".into()),
            None,
        );
        let error: RequestTokenError<std::io::Error, _> =
            RequestTokenError::ServerResponse(response);
        assert_eq!(exchange_error(&error), "invalid_grant");
    }
}
