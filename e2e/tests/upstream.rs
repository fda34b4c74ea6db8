//! The upstream identity providers of the social-login tests (src/upstream), proved with a
//! plain relying party, the `openidconnect` crate: discovery, an authorization request with
//! PKCE, state and nonce, the upstream login over HTTP ([`sign_in`]), the code exchange and
//! the ID token validated with the nonce.
//!
//! - Node's oidc-provider (e2e/node/upstream.mjs) gives a valid ID token with the account's
//!   `email` and `email_verified`, true or false as the account says, ES256 or RS256, and
//!   refuses a code without its PKCE verifier.
//! - The rogue provider's honest token is valid, so each misbehaving token is refused by
//!   openidconnect for the rule its misbehaviour names and nothing else.
//!
//! Without node or the npm packages (`npm ci` in e2e/node; scripts/test.sh runs it) the Node
//! tests print a loud SKIPPED line and pass, except in CI (`CI` set) or with
//! `PORTCULLIS_REQUIRE_NODE=1`, where they fail.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdTokenClaims, CoreProviderMetadata, CoreTokenResponse,
    CoreUserInfoClaims,
};
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};
use portcullis_e2e::upstream::{
    Account, Alg, Config, Misbehaviour, Tls, Upstream, node_or_skip, sign_in,
};

type Oidc = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Never contacted: [`sign_in`] stops at the redirect to it.
const REDIRECT: &str = "http://localhost:7777/social/callback";
const ADA: &str = "upstream-ada";
const MALLORY: &str = "upstream-mallory";

/// One confidential client; Ada's email is verified, Mallory's (claiming Ada's address) is not.
fn config() -> Config {
    Config::new("portcullis", "upstream-secret-0123456789", REDIRECT)
        .account(Account::verified(ADA, "ada@example.com"))
        .account(Account::unverified(MALLORY, "ada@example.com"))
}

/// openidconnect's HTTP client: a closure over our reqwest that never follows redirects.
async fn send(
    http: reqwest::Client,
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, reqwest::Error> {
    let (parts, body) = request.into_parts();
    let response = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await?;
    let mut builder = http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        builder = builder.header(name, value);
    }
    Ok(builder.body(response.bytes().await?.to_vec()).unwrap())
}

/// What the relying party holds after the code exchange.
struct Flow {
    http: reqwest::Client,
    oidc: Oidc,
    tokens: CoreTokenResponse,
    nonce: Nonce,
}

impl Flow {
    /// The ID token checked as a relying party must: signature, `iss`, `aud`, expiry, nonce.
    fn claims(&self) -> Result<&CoreIdTokenClaims, ClaimsVerificationError> {
        self.tokens
            .id_token()
            .expect("an ID token in the token response")
            .claims(&self.oidc.id_token_verifier(), &self.nonce)
    }

    async fn userinfo(&self) -> CoreUserInfoClaims {
        self.oidc
            .user_info(self.tokens.access_token().clone(), None)
            .unwrap()
            .request_async(&|r| send(self.http.clone(), r))
            .await
            .expect("UserInfo answers for the access token")
    }
}

/// The whole code flow with PKCE, signing in as `sub` at `upstream`.
async fn code_flow(upstream: &Upstream, sub: &str) -> Flow {
    let http = upstream.http();
    let send = |r| send(http.clone(), r);
    let metadata = CoreProviderMetadata::discover_async(
        IssuerUrl::new(upstream.issuer.clone()).unwrap(),
        &send,
    )
    .await
    .expect("discovery and JWKS");
    let config = &upstream.config;
    let oidc = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(config.client_id.clone()),
        Some(ClientSecret::new(config.client_secret.clone())),
    )
    .set_redirect_uri(RedirectUrl::new(REDIRECT.to_owned()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = oidc
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("profile".into()))
        .set_pkce_challenge(challenge)
        .url();
    let callback = sign_in(&http, url.as_str(), sub, REDIRECT).await;
    assert_eq!(
        callback.params.get("state"),
        Some(state.secret()),
        "{callback:?}"
    );
    assert_eq!(
        callback.params.get("iss"),
        Some(&upstream.issuer),
        "RFC 9207"
    );
    let code = callback.params.get("code").expect("a code in the callback");
    let tokens = oidc
        .exchange_code(AuthorizationCode::new(code.clone()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&send)
        .await
        .expect("the code exchange");
    Flow {
        http,
        oidc,
        tokens,
        nonce,
    }
}

/// The Node provider, or `None` (after a loud SKIPPED line) when it cannot run here; in CI a
/// missing provider fails the test instead.
fn node(config: &Config, what: &str) -> Option<Upstream> {
    node_or_skip(config, what)
}

#[tokio::test]
async fn node_provider_code_flow_with_pkce_gives_a_valid_id_token_with_a_verified_email() {
    let Some(upstream) = node(&config(), "Node upstream provider (oidc-provider)") else {
        return;
    };
    eprintln!("upstream: {}", upstream.about);
    assert_eq!(upstream.about["oidc_provider"], "9.13.3");
    let flow = code_flow(&upstream, ADA).await;
    let claims = flow.claims().expect("a valid ID token");
    assert_eq!(claims.issuer().as_str(), upstream.issuer);
    assert_eq!(claims.subject().as_str(), ADA);
    assert_eq!(claims.email().map(|e| e.as_str()), Some("ada@example.com"));
    assert_eq!(claims.email_verified(), Some(true));
    let header = flow.tokens.id_token().unwrap().signing_alg().unwrap();
    assert_eq!(format!("{header:?}"), "EcdsaP256Sha256");
    let info = flow.userinfo().await;
    assert_eq!(info.subject().as_str(), ADA);
    assert_eq!(info.email().map(|e| e.as_str()), Some("ada@example.com"));
    assert_eq!(info.email_verified(), Some(true));
}

#[tokio::test]
async fn node_provider_says_email_verified_false_for_an_unverified_account() {
    let Some(upstream) = node(&config(), "Node upstream provider (oidc-provider)") else {
        return;
    };
    let flow = code_flow(&upstream, MALLORY).await;
    let claims = flow.claims().expect("a valid ID token");
    assert_eq!(claims.subject().as_str(), MALLORY);
    assert_eq!(claims.email().map(|e| e.as_str()), Some("ada@example.com"));
    assert_eq!(claims.email_verified(), Some(false));
    assert_eq!(flow.userinfo().await.email_verified(), Some(false));
}

#[tokio::test]
async fn node_provider_signs_rs256_when_configured() {
    let config = config().alg(Alg::Rs256);
    let Some(upstream) = node(&config, "Node upstream provider (oidc-provider)") else {
        return;
    };
    let flow = code_flow(&upstream, ADA).await;
    let header = flow.tokens.id_token().unwrap().signing_alg().unwrap();
    assert_eq!(format!("{header:?}"), "RsaSsaPkcs1V15Sha256");
    assert_eq!(
        flow.claims().expect("a valid ID token").subject().as_str(),
        ADA
    );
}

/// Exchanges the code of a sign-in as Ada at `upstream` with a wrong PKCE verifier: the
/// provider's answer.
async fn exchange_with_wrong_verifier(upstream: &Upstream) -> (u16, serde_json::Value) {
    let http = upstream.http();
    let send = |r| send(http.clone(), r);
    let metadata = CoreProviderMetadata::discover_async(
        IssuerUrl::new(upstream.issuer.clone()).unwrap(),
        &send,
    )
    .await
    .unwrap();
    let token_endpoint = metadata.token_endpoint().unwrap().url().clone();
    let (challenge, _) = PkceCodeChallenge::new_random_sha256();
    let mut url = metadata.authorization_endpoint().url().clone();
    url.query_pairs_mut()
        .append_pair("client_id", &upstream.config.client_id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid email")
        .append_pair("state", "s")
        .append_pair("nonce", "n")
        .append_pair("code_challenge", challenge.as_str())
        .append_pair("code_challenge_method", "S256");
    let callback = sign_in(&http, url.as_str(), ADA, REDIRECT).await;
    let response = http
        .post(token_endpoint)
        .basic_auth(
            &upstream.config.client_id,
            Some(&upstream.config.client_secret),
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", "authorization_code")
                .append_pair("code", &callback.params["code"])
                .append_pair("redirect_uri", REDIRECT)
                .append_pair("code_verifier", &"x".repeat(43))
                .finish(),
        )
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn node_provider_serves_the_code_flow_over_https_when_given_a_certificate() {
    let Some(upstream) = node(
        &config().tls(Tls::generate()),
        "Node upstream provider (oidc-provider)",
    ) else {
        return;
    };
    assert!(
        upstream.issuer.starts_with("https://localhost:"),
        "{}",
        upstream.issuer
    );
    let flow = code_flow(&upstream, ADA).await;
    assert_eq!(
        flow.claims().expect("a valid ID token").issuer().as_str(),
        upstream.issuer
    );
}

#[tokio::test]
async fn node_provider_refuses_a_code_with_the_wrong_pkce_verifier() {
    let Some(upstream) = node(&config(), "Node upstream provider (oidc-provider)") else {
        return;
    };
    let (status, body) = exchange_with_wrong_verifier(&upstream).await;
    assert_eq!(
        (status, &body["error"]),
        (400, &"invalid_grant".into()),
        "{body}"
    );
}

#[tokio::test]
async fn rogue_provider_refuses_a_code_with_the_wrong_pkce_verifier() {
    let upstream = Upstream::start_rogue(&config(), Misbehaviour::Honest);
    let (status, body) = exchange_with_wrong_verifier(&upstream).await;
    assert_eq!(
        (status, &body["error"]),
        (400, &"invalid_grant".into()),
        "{body}"
    );
}

#[tokio::test]
async fn rogue_provider_without_misbehaviour_gives_a_valid_id_token() {
    let upstream = Upstream::start_rogue(&config(), Misbehaviour::Honest);
    let flow = code_flow(&upstream, ADA).await;
    let claims = flow.claims().expect("the honest rogue's ID token is valid");
    assert_eq!(claims.issuer().as_str(), upstream.issuer);
    assert_eq!(claims.subject().as_str(), ADA);
    assert_eq!(claims.email().map(|e| e.as_str()), Some("ada@example.com"));
    assert_eq!(claims.email_verified(), Some(true));
    assert_eq!(flow.userinfo().await.email_verified(), Some(true));
}

#[tokio::test]
async fn rogue_provider_serves_the_code_flow_over_https_when_given_a_certificate() {
    let upstream = Upstream::start_rogue(&config().tls(Tls::generate()), Misbehaviour::Honest);
    assert!(
        upstream.issuer.starts_with("https://localhost:"),
        "{}",
        upstream.issuer
    );
    let flow = code_flow(&upstream, ADA).await;
    assert_eq!(
        flow.claims().expect("a valid ID token").issuer().as_str(),
        upstream.issuer
    );
}

/// Signs in as Ada at a rogue provider misbehaving as `misbehaviour`: why openidconnect
/// refuses its ID token.
async fn rogue_refusal(misbehaviour: Misbehaviour) -> ClaimsVerificationError {
    let upstream = Upstream::start_rogue(&config(), misbehaviour);
    let flow = code_flow(&upstream, ADA).await;
    let refused = flow.claims().map(|c| format!("{c:?}"));
    refused.expect_err("the rogue's ID token is refused")
}

#[tokio::test]
async fn rogue_provider_wrong_nonce_is_refused_for_its_nonce() {
    let refusal = rogue_refusal(Misbehaviour::WrongNonce).await;
    assert!(
        matches!(refusal, ClaimsVerificationError::InvalidNonce(_)),
        "{refusal:?}"
    );
}

#[tokio::test]
async fn rogue_provider_wrong_issuer_is_refused_for_its_issuer() {
    let refusal = rogue_refusal(Misbehaviour::WrongIssuer).await;
    assert!(
        matches!(refusal, ClaimsVerificationError::InvalidIssuer(_)),
        "{refusal:?}"
    );
}

#[tokio::test]
async fn rogue_provider_wrong_audience_is_refused_for_its_audience() {
    let refusal = rogue_refusal(Misbehaviour::WrongAudience).await;
    assert!(
        matches!(refusal, ClaimsVerificationError::InvalidAudience(_)),
        "{refusal:?}"
    );
}

#[tokio::test]
async fn rogue_provider_bad_signature_is_refused_for_its_signature() {
    let refusal = rogue_refusal(Misbehaviour::BadSignature).await;
    assert!(
        matches!(refusal, ClaimsVerificationError::SignatureVerification(_)),
        "{refusal:?}"
    );
}

#[tokio::test]
async fn rogue_provider_unverified_email_says_email_verified_false_in_a_valid_token() {
    let upstream = Upstream::start_rogue(&config(), Misbehaviour::UnverifiedEmail);
    let flow = code_flow(&upstream, ADA).await;
    let claims = flow.claims().expect("a valid ID token");
    assert_eq!(claims.email().map(|e| e.as_str()), Some("ada@example.com"));
    assert_eq!(claims.email_verified(), Some(false));
    assert_eq!(flow.userinfo().await.email_verified(), Some(false));
}
