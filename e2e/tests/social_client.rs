//! The social-login client (`portcullis-social`) against real upstream providers
//! (src/upstream): `start` gives the authorization URL, [`sign_in`] plays the browser at the
//! provider, `finish` exchanges the code and verifies what comes back.
//!
//! - Node's oidc-provider (certified): the identity from a verified ID token, ES256 or RS256,
//!   over HTTP or HTTPS; an unverified upstream email is reported as such and cannot take over
//!   an account; a tampered `state` or `iss`, a replayed code, a late callback and a wrong
//!   client secret are refused with their codes.
//! - The rogue provider: its honest token passes, and each broken rule (nonce, issuer,
//!   audience, signature) is refused with the error code naming that rule.
//! - A GitHub stand-in (below): the preset's token exchange with PKCE and its user API.
//!
//! Without node or the npm packages (`npm ci` in e2e/node; scripts/test.sh runs it) the Node
//! tests print a loud SKIPPED line and pass, except in CI (`CI` set) or with
//! `PORTCULLIS_REQUIRE_NODE=1`, where they fail: the certified provider is the requirement's
//! "real OIDC provider", and a green run without it would prove nothing (the sealed crate's
//! Python interop test has the same rule).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Form, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_crds::SecretKeyRef;
use portcullis_crds::realm::{SocialProvider, SocialProviderType};
use portcullis_e2e::upstream::{
    Account, Alg, Config, Misbehaviour, Tls, Upstream, node_or_skip, node_required, sign_in,
};
use portcullis_social::{
    AccountWithEmail, Callback, GitHubEndpoints, HttpClient, LinkDecision, PENDING_TTL, Provider,
    ProviderSettings, Random, SocialError, Started, UpstreamIdentity, link_decision,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use url::Url;
use uuid::Uuid;

/// Never contacted: [`sign_in`] stops at the redirect to it.
const REDIRECT: &str = "http://localhost:7777/oauth2/social/corp/callback";
const CLIENT_ID: &str = "portcullis";
const CLIENT_SECRET: &str = "upstream-secret-0123456789";
const ADA: &str = "upstream-ada";
const MALLORY: &str = "upstream-mallory";

/// One confidential client; Ada's email is verified, Mallory's (claiming Ada's address) is not.
fn config() -> Config {
    Config::new(CLIENT_ID, CLIENT_SECRET, REDIRECT)
        .account(Account::verified(ADA, "ada@example.com"))
        .account(Account::unverified(MALLORY, "ada@example.com"))
}

/// The realm's `socialProviders` entry for `upstream` as a generic OIDC provider.
fn crd(upstream: &Upstream) -> SocialProvider {
    SocialProvider {
        name: "corp".into(),
        provider_type: SocialProviderType::Oidc,
        client_id: CLIENT_ID.into(),
        client_secret_ref: SecretKeyRef {
            name: "social".into(),
            key: "corp".into(),
        },
        issuer_url: Some(upstream.issuer.clone()),
        scopes: Vec::new(),
        allowed_domains: Vec::new(),
    }
}

/// The settings of `corp` at `upstream` with `allowed_domains`, as `link_decision` takes them.
fn corp(upstream: &Upstream, allowed_domains: &[&str]) -> ProviderSettings {
    let mut crd = crd(upstream);
    crd.allowed_domains = allowed_domains.iter().map(|d| d.to_string()).collect();
    ProviderSettings::from_crd(&crd, CLIENT_SECRET).unwrap()
}

/// The crate's own HTTP client, trusting `upstream`'s CA when it serves HTTPS.
fn client(upstream: &Upstream) -> HttpClient {
    let _ = rustls::crypto::ring::default_provider().install_default();
    match &upstream.config.tls {
        Some(tls) => HttpClient::trusting(&tls.ca_pem).unwrap(),
        None => HttpClient::new().unwrap(),
    }
}

/// The provider under test, discovered over `upstream`'s HTTP client (trusting its CA).
async fn provider_with_secret(upstream: &Upstream, secret: &str) -> Provider {
    let settings = ProviderSettings::from_crd(&crd(upstream), secret).unwrap();
    Provider::discover(settings, client(upstream))
        .await
        .expect("discovery of the upstream provider")
}

async fn provider(upstream: &Upstream) -> Provider {
    provider_with_secret(upstream, CLIENT_SECRET).await
}

/// Fresh randomness from the OS CSPRNG, as the server takes it.
fn random() -> Random {
    Random::generate().unwrap()
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Starts a sign-in and walks the browser through the upstream login as `sub`: the pending
/// record and the callback's query parameters.
async fn start_and_sign_in(
    provider: &Provider,
    upstream: &Upstream,
    sub: &str,
) -> (Started, HashMap<String, String>) {
    let started = provider.start(REDIRECT, &random(), now()).unwrap();
    let callback = sign_in(&upstream.http(), started.url.as_str(), sub, REDIRECT).await;
    (started, callback.params)
}

fn callback(params: &HashMap<String, String>) -> Callback {
    Callback::from_pairs(params.iter().map(|(k, v)| (k.as_str(), v.clone()))).unwrap()
}

/// The whole sign-in as `sub`: what `finish` says.
async fn sign_in_as(upstream: &Upstream, sub: &str) -> Result<UpstreamIdentity, SocialError> {
    let provider = provider(upstream).await;
    let (started, params) = start_and_sign_in(&provider, upstream, sub).await;
    provider
        .finish(&started.pending, &callback(&params), now())
        .await
}

/// The Node provider, or `None` (after a loud SKIPPED line) when it cannot run here; a panic
/// instead when it is required (`node_required`).
fn node(config: &Config) -> Option<Upstream> {
    node_or_skip(config, "social client against the Node upstream provider")
}

#[test]
fn node_is_required_in_ci_or_when_asked_and_optional_elsewhere() {
    assert!(node_required(Some("true"), None));
    assert!(node_required(None, Some("1")));
    assert!(!node_required(None, None));
    assert!(!node_required(None, Some("0")));
}

/// Ada as the provider `corp` at `upstream` reports her.
fn ada(upstream: &Upstream) -> UpstreamIdentity {
    UpstreamIdentity {
        provider: "corp".into(),
        issuer: upstream.issuer.clone(),
        subject: ADA.into(),
        email: Some("ada@example.com".into()),
        email_verified: true,
        name: Some(format!("Upstream {ADA}")),
        hosted_domain: None,
    }
}

/// Ada's existing local account: verified email, no MFA.
fn adas_account() -> AccountWithEmail {
    AccountWithEmail {
        user: Uuid::from_u128(7),
        email_verified: true,
        has_mfa: false,
    }
}

#[tokio::test]
async fn node_provider_sign_in_gives_the_identity_from_a_verified_id_token() {
    let Some(upstream) = node(&config()) else {
        return;
    };
    let identity = sign_in_as(&upstream, ADA).await.expect("signed in");
    assert_eq!(identity, ada(&upstream));
    assert_eq!(
        link_decision(
            &identity,
            &corp(&upstream, &[]),
            None,
            Some(&adas_account())
        )
        .unwrap(),
        LinkDecision::Link {
            user: adas_account().user
        }
    );
}

#[tokio::test]
async fn node_provider_authorization_request_carries_state_pkce_and_nonce() {
    let Some(upstream) = node(&config()) else {
        return;
    };
    let provider = provider(&upstream).await;
    let started = provider.start(REDIRECT, &random(), now()).unwrap();
    assert!(
        started
            .url
            .as_str()
            .starts_with(&format!("{}/", upstream.issuer)),
        "{}",
        started.url
    );
    let q: HashMap<_, _> = started.url.query_pairs().into_owned().collect();
    assert_eq!(q["state"], started.pending.state);
    assert_eq!(q.get("nonce"), started.pending.nonce.as_ref());
    assert_eq!(q["code_challenge_method"], "S256");
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(&started.pending.pkce_verifier));
    assert_eq!(q["code_challenge"], challenge);
    assert_eq!(q["scope"], "openid email profile");
}

#[tokio::test]
async fn node_provider_rs256_id_token_is_verified() {
    let Some(upstream) = node(&config().alg(Alg::Rs256)) else {
        return;
    };
    assert_eq!(sign_in_as(&upstream, ADA).await.unwrap(), ada(&upstream));
}

#[tokio::test]
async fn node_provider_over_https_is_verified() {
    let Some(upstream) = node(&config().tls(Tls::generate())) else {
        return;
    };
    assert!(
        upstream.issuer.starts_with("https://"),
        "{}",
        upstream.issuer
    );
    assert_eq!(sign_in_as(&upstream, ADA).await.unwrap(), ada(&upstream));
}

#[tokio::test]
async fn node_provider_unverified_email_cannot_take_over_the_account_with_that_email() {
    let Some(upstream) = node(&config()) else {
        return;
    };
    let identity = sign_in_as(&upstream, MALLORY).await.expect("signed in");
    assert_eq!(identity.subject, MALLORY);
    assert_eq!(identity.email.as_deref(), Some("ada@example.com"));
    assert!(!identity.email_verified);
    let refused = link_decision(
        &identity,
        &corp(&upstream, &[]),
        None,
        Some(&adas_account()),
    )
    .expect_err("no takeover of Ada's account");
    assert_eq!(refused.code(), "unverified_email_matches_account");
    // Nor can it create an account that holds Ada's address before she registers.
    let refused =
        link_decision(&identity, &corp(&upstream, &[]), None, None).expect_err("no squatting");
    assert_eq!(refused.code(), "email_unverified");
}

#[tokio::test]
async fn node_provider_tampered_state_is_refused_before_the_code_is_spent() {
    let Some(upstream) = node(&config()) else {
        return;
    };
    let provider = provider(&upstream).await;
    let (started, mut params) = start_and_sign_in(&provider, &upstream, ADA).await;
    let honest = callback(&params);
    let state = params.get_mut("state").unwrap();
    let last = state.pop().unwrap();
    state.push(if last == 'A' { 'B' } else { 'A' });
    let refused = provider
        .finish(&started.pending, &callback(&params), now())
        .await
        .expect_err("a tampered state is refused");
    assert_eq!(refused.code(), "state_mismatch");
    // Refused before the exchange: the code still works with the honest callback.
    let identity = provider
        .finish(&started.pending, &honest, now())
        .await
        .unwrap();
    assert_eq!(identity, ada(&upstream));
}

#[tokio::test]
async fn node_provider_callback_for_another_sign_in_is_refused() {
    let Some(upstream) = node(&config()) else {
        return;
    };
    let provider = provider(&upstream).await;
    let (_, params) = start_and_sign_in(&provider, &upstream, ADA).await;
    let other = provider.start(REDIRECT, &random(), now()).unwrap();
    let refused = provider
        .finish(&other.pending, &callback(&params), now())
        .await
        .expect_err("another sign-in's callback is refused");
    assert_eq!(refused.code(), "state_mismatch");
}

#[tokio::test]
async fn node_provider_callback_naming_another_issuer_is_refused() {
    let Some(upstream) = node(&config()) else {
        return;
    };
    let provider = provider(&upstream).await;
    let (started, mut params) = start_and_sign_in(&provider, &upstream, ADA).await;
    assert_eq!(
        params["iss"], upstream.issuer,
        "the provider sends RFC 9207 iss"
    );
    params.insert("iss".into(), "https://evil.example".into());
    let refused = provider
        .finish(&started.pending, &callback(&params), now())
        .await
        .expect_err("a mixed-up response is refused");
    assert_eq!(refused.code(), "issuer_mismatch");
}

#[tokio::test]
async fn node_provider_code_used_twice_is_refused_the_second_time() {
    let Some(upstream) = node(&config()) else {
        return;
    };
    let provider = provider(&upstream).await;
    let (started, params) = start_and_sign_in(&provider, &upstream, ADA).await;
    let callback = callback(&params);
    provider
        .finish(&started.pending, &callback, now())
        .await
        .unwrap();
    let refused = provider
        .finish(&started.pending, &callback, now())
        .await
        .expect_err("a code is single-use");
    assert_eq!(refused.code(), "token_exchange_failed");
    assert!(refused.to_string().contains("invalid_grant"), "{refused}");
}

#[tokio::test]
async fn node_provider_late_callback_is_refused() {
    let Some(upstream) = node(&config()) else {
        return;
    };
    let provider = provider(&upstream).await;
    let (started, params) = start_and_sign_in(&provider, &upstream, ADA).await;
    let late = started.pending.created_at + PENDING_TTL + time::Duration::seconds(1);
    let refused = provider
        .finish(&started.pending, &callback(&params), late)
        .await
        .expect_err("too late");
    assert_eq!(refused.code(), "expired");
}

#[tokio::test]
async fn node_provider_refuses_the_exchange_with_a_wrong_client_secret() {
    let Some(upstream) = node(&config()) else {
        return;
    };
    let provider = provider_with_secret(&upstream, "not-the-secret").await;
    let (started, params) = start_and_sign_in(&provider, &upstream, ADA).await;
    let refused = provider
        .finish(&started.pending, &callback(&params), now())
        .await
        .expect_err("wrong secret");
    assert_eq!(refused.code(), "token_exchange_failed");
    assert!(refused.to_string().contains("invalid_client"), "{refused}");
}

#[tokio::test]
async fn node_provider_without_the_email_scope_gives_no_email_even_from_userinfo() {
    let Some(upstream) = node(&config()) else {
        return;
    };
    let mut crd = crd(&upstream);
    crd.scopes = vec!["openid".into()];
    let settings = ProviderSettings::from_crd(&crd, CLIENT_SECRET).unwrap();
    let provider = Provider::discover(settings, client(&upstream))
        .await
        .unwrap();
    let (started, params) = start_and_sign_in(&provider, &upstream, ADA).await;
    // No email in the ID token: UserInfo is asked (for the same subject) and has none either.
    let identity = provider
        .finish(&started.pending, &callback(&params), now())
        .await
        .expect("signed in");
    assert_eq!(
        identity,
        UpstreamIdentity {
            provider: "corp".into(),
            issuer: upstream.issuer.clone(),
            subject: ADA.into(),
            email: None,
            email_verified: false,
            name: None,
            hosted_domain: None,
        }
    );
    let refused =
        link_decision(&identity, &corp(&upstream, &[]), None, None).expect_err("no email");
    assert_eq!(refused.code(), "email_required");
}

#[tokio::test]
async fn node_provider_tokens_are_returned_only_when_asked() {
    let Some(upstream) = node(&config()) else {
        return;
    };
    let provider = provider(&upstream).await;
    let (started, params) = start_and_sign_in(&provider, &upstream, ADA).await;
    let (identity, tokens) = provider
        .finish_with_tokens(&started.pending, &callback(&params), now())
        .await
        .unwrap();
    assert_eq!(identity, ada(&upstream));
    assert!(!tokens.access_token.is_empty());
    // The access token is the provider's: its UserInfo answers for it.
    let userinfo = upstream
        .http()
        .get(format!("{}/me", upstream.issuer))
        .bearer_auth(&tokens.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(userinfo.status(), 200);
    assert_eq!(userinfo.json::<Value>().await.unwrap()["sub"], ADA);
}

/// Signs in as Ada at a rogue provider misbehaving as `misbehaviour`: what `finish` says.
async fn rogue(misbehaviour: Misbehaviour) -> Result<UpstreamIdentity, SocialError> {
    let upstream = Upstream::start_rogue(&config(), misbehaviour);
    sign_in_as(&upstream, ADA).await
}

async fn rogue_refusal(misbehaviour: Misbehaviour) -> &'static str {
    rogue(misbehaviour)
        .await
        .expect_err("the rogue's ID token is refused")
        .code()
}

#[tokio::test]
async fn rogue_provider_without_misbehaviour_is_accepted() {
    let upstream = Upstream::start_rogue(&config(), Misbehaviour::Honest);
    assert_eq!(sign_in_as(&upstream, ADA).await.unwrap(), ada(&upstream));
}

#[tokio::test]
async fn rogue_provider_wrong_nonce_is_refused_for_its_nonce() {
    assert_eq!(
        rogue_refusal(Misbehaviour::WrongNonce).await,
        "id_token_nonce"
    );
}

#[tokio::test]
async fn rogue_provider_wrong_issuer_is_refused_for_its_issuer() {
    assert_eq!(
        rogue_refusal(Misbehaviour::WrongIssuer).await,
        "id_token_issuer"
    );
}

#[tokio::test]
async fn rogue_provider_wrong_audience_is_refused_for_its_audience() {
    assert_eq!(
        rogue_refusal(Misbehaviour::WrongAudience).await,
        "id_token_audience"
    );
}

#[tokio::test]
async fn rogue_provider_bad_signature_is_refused_for_its_signature() {
    assert_eq!(
        rogue_refusal(Misbehaviour::BadSignature).await,
        "id_token_signature"
    );
}

#[tokio::test]
async fn rogue_provider_expired_id_token_is_refused_as_expired() {
    assert_eq!(
        rogue_refusal(Misbehaviour::Expired).await,
        "id_token_expired"
    );
}

#[tokio::test]
async fn rogue_provider_id_token_issued_in_the_future_is_refused() {
    assert_eq!(
        rogue_refusal(Misbehaviour::IssuedInFuture).await,
        "id_token_invalid"
    );
}

#[tokio::test]
async fn rogue_provider_foreign_authorized_party_is_refused_for_its_audience() {
    assert_eq!(
        rogue_refusal(Misbehaviour::ForeignAzp).await,
        "id_token_audience"
    );
}

#[tokio::test]
async fn rogue_provider_second_audience_is_refused_even_with_our_azp() {
    assert_eq!(
        rogue_refusal(Misbehaviour::MultipleAudiences).await,
        "id_token_audience"
    );
}

#[tokio::test]
async fn rogue_provider_hs256_keyed_with_the_client_secret_is_refused() {
    assert_eq!(
        rogue_refusal(Misbehaviour::Hs256Secret).await,
        "id_token_signature"
    );
}

#[tokio::test]
async fn rogue_provider_unsigned_alg_none_token_is_refused() {
    assert_eq!(
        rogue_refusal(Misbehaviour::AlgNone).await,
        "id_token_signature"
    );
}

#[tokio::test]
async fn rogue_provider_unknown_kid_is_refused_after_one_jwks_refetch() {
    assert_eq!(
        rogue_refusal(Misbehaviour::UnknownKid).await,
        "id_token_signature"
    );
}

#[tokio::test]
async fn rogue_provider_key_rotated_after_discovery_is_found_by_a_jwks_refetch_and_kept() {
    let upstream = Upstream::start_rogue(&config(), Misbehaviour::RotatedKey);
    let provider = provider(&upstream).await;
    for _ in 0..2 {
        let (started, params) = start_and_sign_in(&provider, &upstream, ADA).await;
        let identity = provider
            .finish(&started.pending, &callback(&params), now())
            .await
            .unwrap();
        assert_eq!(identity, ada(&upstream));
    }
    // Discovery's fetch, and one refetch kept for the second sign-in.
    assert_eq!(upstream.jwks_fetches(), Some(2));
}

#[tokio::test]
async fn rogue_provider_unknown_kid_refetches_the_jwks_at_most_once_a_minute() {
    let upstream = Upstream::start_rogue(&config(), Misbehaviour::UnknownKid);
    let provider = provider(&upstream).await;
    for _ in 0..3 {
        let (started, params) = start_and_sign_in(&provider, &upstream, ADA).await;
        let refused = provider
            .finish(&started.pending, &callback(&params), now())
            .await
            .expect_err("no key has that kid");
        assert_eq!(refused.code(), "id_token_signature");
    }
    assert_eq!(upstream.jwks_fetches(), Some(2));
}

#[tokio::test]
async fn rogue_provider_discovery_naming_another_issuer_is_refused() {
    let upstream = Upstream::start_rogue(&config(), Misbehaviour::DiscoveryIssuerMismatch);
    let settings = ProviderSettings::from_crd(&crd(&upstream), CLIENT_SECRET).unwrap();
    let refused = Provider::discover(settings, client(&upstream))
        .await
        .expect_err("the document's issuer is not the configured one");
    assert_eq!(refused.code(), "discovery_failed");
}

#[tokio::test]
async fn rogue_provider_callback_without_the_advertised_iss_is_refused() {
    assert_eq!(
        rogue_refusal(Misbehaviour::MissingIss).await,
        "issuer_missing"
    );
}

#[tokio::test]
async fn rogue_provider_email_verified_as_the_string_true_is_read_as_verified() {
    let upstream = Upstream::start_rogue(&config(), Misbehaviour::EmailVerifiedString);
    assert_eq!(sign_in_as(&upstream, ADA).await.unwrap(), ada(&upstream));
}

#[tokio::test]
async fn rogue_provider_userinfo_about_another_subject_is_refused() {
    assert_eq!(
        rogue_refusal(Misbehaviour::UserInfoOtherSubject).await,
        "subject_mismatch"
    );
}

#[tokio::test]
async fn rogue_provider_unverified_email_cannot_take_over_the_account() {
    let upstream = Upstream::start_rogue(&config(), Misbehaviour::UnverifiedEmail);
    let identity = sign_in_as(&upstream, ADA).await.unwrap();
    assert_eq!(identity.email.as_deref(), Some("ada@example.com"));
    assert!(!identity.email_verified);
    let refused = link_decision(
        &identity,
        &corp(&upstream, &[]),
        None,
        Some(&adas_account()),
    )
    .expect_err("no takeover");
    assert_eq!(refused.code(), "unverified_email_matches_account");
    let refused =
        link_decision(&identity, &corp(&upstream, &[]), None, None).expect_err("no squatting");
    assert_eq!(refused.code(), "email_unverified");
    let refused = link_decision(&identity, &corp(&upstream, &["example.com"]), None, None)
        .expect_err("not verified");
    assert_eq!(refused.code(), "domain_not_allowed");
}

#[tokio::test]
async fn rogue_provider_https_issuer_naming_a_plain_http_token_endpoint_is_refused() {
    let upstream = Upstream::start_rogue(
        &config().tls(Tls::generate()),
        Misbehaviour::PlainHttpTokenEndpoint,
    );
    let settings = ProviderSettings::from_crd(&crd(&upstream), CLIENT_SECRET).unwrap();
    let refused = Provider::discover(settings, client(&upstream))
        .await
        .expect_err("an http token endpoint is refused");
    assert_eq!(refused.code(), "discovery_failed");
    assert!(refused.to_string().contains("token_endpoint"), "{refused}");
}

#[tokio::test]
async fn rogue_provider_over_https_is_accepted() {
    let upstream = Upstream::start_rogue(&config().tls(Tls::generate()), Misbehaviour::Honest);
    assert_eq!(sign_in_as(&upstream, ADA).await.unwrap(), ada(&upstream));
}

/// A stand-in for GitHub: the OAuth token endpoint (checking the client, the code, the
/// redirect URI and the PKCE verifier against the challenge the test registers) and the REST
/// API's `/user` and `/user/emails`, answering as GitHub does (errors of the token endpoint
/// are a 200 with an `error` field).
#[derive(Default)]
struct GitHub {
    /// code → (redirect_uri, code_challenge)
    codes: Mutex<HashMap<String, (String, String)>>,
    primary_verified: bool,
    /// The token endpoint answers 307 to `/stolen` instead.
    redirect_token: bool,
    /// The bodies POSTed to `/stolen`: what a redirect-following client would re-send.
    stolen: Mutex<Vec<String>>,
    /// `/user` answers with a 2 MiB name.
    huge_user: bool,
}

const GH_TOKEN: &str = "gho_0123456789";

async fn gh_token(
    State(gh): State<Arc<GitHub>>,
    Form(form): Form<HashMap<String, String>>,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    if gh.redirect_token {
        return axum::response::Redirect::temporary("/stolen").into_response();
    }
    gh_exchange(&gh, &form).into_response()
}

/// Everything a 307 would have re-sent here is kept.
async fn gh_stolen(State(gh): State<Arc<GitHub>>, body: String) -> Json<Value> {
    gh.stolen.lock().unwrap().push(body);
    Json(json!({"access_token": GH_TOKEN, "token_type": "bearer"}))
}

fn gh_exchange(gh: &GitHub, form: &HashMap<String, String>) -> Json<Value> {
    let field = |name: &str| form.get(name).cloned().unwrap_or_default();
    if field("client_id") != CLIENT_ID || field("client_secret") != CLIENT_SECRET {
        return Json(json!({"error": "incorrect_client_credentials"}));
    }
    let Some((redirect_uri, challenge)) = gh.codes.lock().unwrap().remove(&field("code")) else {
        return Json(json!({"error": "bad_verification_code"}));
    };
    let verified = URL_SAFE_NO_PAD.encode(Sha256::digest(field("code_verifier"))) == challenge;
    if field("redirect_uri") != redirect_uri || !verified {
        return Json(json!({"error": "bad_verification_code"}));
    }
    Json(json!({"access_token": GH_TOKEN, "token_type": "bearer", "scope": "read:user,user:email"}))
}

fn gh_authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|h| h.to_str().ok())
        == Some(format!("Bearer {GH_TOKEN}").as_str())
        && headers.contains_key("user-agent")
}

async fn gh_user(
    State(gh): State<Arc<GitHub>>,
    headers: HeaderMap,
) -> (axum::http::StatusCode, Json<Value>) {
    if !gh_authorized(&headers) {
        return (axum::http::StatusCode::UNAUTHORIZED, Json(json!({})));
    }
    let name = if gh.huge_user {
        "x".repeat(2 << 20)
    } else {
        "The Octocat".to_owned()
    };
    let user = json!({"id": 583231, "login": "octocat", "name": name, "email": null});
    (axum::http::StatusCode::OK, Json(user))
}

async fn gh_emails(
    State(gh): State<Arc<GitHub>>,
    headers: HeaderMap,
) -> (axum::http::StatusCode, Json<Value>) {
    if !gh_authorized(&headers) {
        return (axum::http::StatusCode::UNAUTHORIZED, Json(json!([])));
    }
    let emails = json!([
        {"email": "octo@users.noreply.example.com", "primary": false, "verified": true, "visibility": null},
        {"email": "octocat@example.com", "primary": true, "verified": gh.primary_verified, "visibility": "public"},
    ]);
    (axum::http::StatusCode::OK, Json(emails))
}

/// Serves the stand-in on a free port of this test's runtime; its base URL.
async fn serve_github(gh: Arc<GitHub>) -> Url {
    let app = Router::new()
        .route("/login/oauth/access_token", post(gh_token))
        .route("/stolen", post(gh_stolen))
        .route("/api/user", get(gh_user))
        .route("/api/user/emails", get(gh_emails))
        .with_state(gh);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap()
}

/// The GitHub preset with its endpoints at the stand-in's `base`.
fn github_settings(base: &Url) -> ProviderSettings {
    let crd = SocialProvider {
        name: "github".into(),
        provider_type: SocialProviderType::GitHub,
        client_id: CLIENT_ID.into(),
        client_secret_ref: SecretKeyRef {
            name: "social".into(),
            key: "github".into(),
        },
        issuer_url: None,
        scopes: Vec::new(),
        allowed_domains: Vec::new(),
    };
    let endpoints = GitHubEndpoints::at(base, &base.join("api").unwrap()).unwrap();
    ProviderSettings::from_crd(&crd, CLIENT_SECRET)
        .unwrap()
        .with_github_endpoints(endpoints)
}

/// The GitHub provider over the crate's client (which follows no redirects).
async fn github_provider(base: &Url) -> Provider {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = HttpClient::new().unwrap();
    Provider::discover(github_settings(base), http)
        .await
        .unwrap()
}

/// A GitHub sign-in against the stand-in: GitHub's consent is not played; the test registers
/// the code the stand-in would have issued for the authorization request `start` built.
/// The stand-in's base URL and what `finish` says.
async fn github_sign_in(primary_verified: bool) -> (Url, Result<UpstreamIdentity, SocialError>) {
    github_sign_in_at(Arc::new(GitHub {
        primary_verified,
        ..GitHub::default()
    }))
    .await
}

async fn github_sign_in_at(gh: Arc<GitHub>) -> (Url, Result<UpstreamIdentity, SocialError>) {
    let base = serve_github(gh.clone()).await;
    let provider = github_provider(&base).await;
    let started = provider.start(REDIRECT, &random(), now()).unwrap();
    assert_eq!(
        started.url.as_str().split('?').next(),
        Some(format!("{base}login/oauth/authorize").as_str())
    );
    let q: HashMap<_, _> = started.url.query_pairs().into_owned().collect();
    assert!(!q.contains_key("nonce"), "GitHub is not OpenID Connect");
    gh.codes.lock().unwrap().insert(
        "gh-code".into(),
        (q["redirect_uri"].clone(), q["code_challenge"].clone()),
    );
    let callback =
        Callback::from_pairs([("code", "gh-code"), ("state", q["state"].as_str())]).unwrap();
    (
        base,
        provider.finish(&started.pending, &callback, now()).await,
    )
}

#[tokio::test]
async fn github_preset_reads_the_user_and_the_verified_primary_email() {
    let (base, identity) = github_sign_in(true).await;
    let identity = identity.expect("signed in");
    assert_eq!(
        identity,
        UpstreamIdentity {
            provider: "github".into(),
            issuer: format!("{base}api"),
            subject: "583231".into(),
            email: Some("octocat@example.com".into()),
            email_verified: true,
            name: Some("The Octocat".into()),
            hosted_domain: None,
        }
    );
}

#[tokio::test]
async fn github_preset_reports_an_unverified_primary_email_as_unverified() {
    let (_, identity) = github_sign_in(false).await;
    let identity = identity.expect("signed in");
    assert_eq!(identity.email.as_deref(), Some("octocat@example.com"));
    assert!(!identity.email_verified);
}

#[tokio::test]
async fn github_preset_error_in_a_200_token_response_is_a_failed_exchange() {
    let base = serve_github(Arc::new(GitHub::default())).await;
    let provider = github_provider(&base).await;
    let started = provider.start(REDIRECT, &random(), now()).unwrap();
    let callback = Callback::from_pairs([
        ("code", "never-issued"),
        ("state", started.pending.state.as_str()),
    ])
    .unwrap();
    let refused = provider
        .finish(&started.pending, &callback, now())
        .await
        .expect_err("an unknown code is refused");
    assert_eq!(refused.code(), "token_exchange_failed");
}

#[tokio::test]
async fn github_preset_token_endpoint_redirect_is_not_followed_and_the_code_not_re_sent() {
    let gh = Arc::new(GitHub {
        redirect_token: true,
        ..GitHub::default()
    });
    let base = serve_github(gh.clone()).await;
    let provider = github_provider(&base).await;
    let started = provider.start(REDIRECT, &random(), now()).unwrap();
    let callback = Callback::from_pairs([
        ("code", "gh-code"),
        ("state", started.pending.state.as_str()),
    ])
    .unwrap();
    let refused = provider
        .finish(&started.pending, &callback, now())
        .await
        .expect_err("a redirecting token endpoint is refused");
    assert_eq!(refused.code(), "token_exchange_failed");
    assert!(refused.to_string().contains("307"), "{refused}");
    assert_eq!(
        gh.stolen.lock().unwrap().len(),
        0,
        "the code, verifier and secret were re-posted: {:?}",
        gh.stolen.lock().unwrap()
    );
}

#[tokio::test]
async fn github_preset_with_plain_http_endpoints_off_loopback_is_refused() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let web = Url::parse("http://github.example.com/").unwrap();
    let api = Url::parse("https://api.github.example.com/").unwrap();
    let settings =
        github_settings(&web).with_github_endpoints(GitHubEndpoints::at(&web, &api).unwrap());
    let refused = Provider::discover(settings, HttpClient::new().unwrap())
        .await
        .expect_err("plain HTTP token endpoint");
    assert_eq!(refused.code(), "invalid_settings");
}

#[tokio::test]
async fn github_preset_response_over_the_size_limit_is_refused() {
    let (_, refused) = github_sign_in_at(Arc::new(GitHub {
        huge_user: true,
        ..GitHub::default()
    }))
    .await;
    let refused = refused.expect_err("a 2 MiB /user is refused");
    assert_eq!(refused.code(), "userinfo_failed");
    assert!(refused.to_string().contains("larger than"), "{refused}");
}
