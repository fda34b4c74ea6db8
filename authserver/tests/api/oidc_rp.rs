//! The whole authorization code flow with PKCE driven by a maintained relying-party library,
//! unmodified, against the server over TLS (as realms serve; the library also refuses to send
//! a revocation over plain HTTP, RFC 7009 §2): the `openidconnect` crate discovers the provider, builds the authorization URL,
//! exchanges the code, validates the ID token (signature against the JWKS, issuer, audience,
//! nonce, expiry) and at_hash, calls UserInfo, refreshes and revokes; the hosted login page is
//! filled in over HTTP as a browser without JavaScript would. Negative cases go through the
//! crate's own errors.

use std::time::Duration;

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreErrorResponseType, CoreGenderClaim, CoreIdTokenClaims,
    CoreProviderMetadata, CoreRevocableToken, CoreUserInfoClaims,
};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EmptyAdditionalClaims,
    IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl,
    RequestTokenError, RevocationUrl, Scope, TokenResponse, UserInfoClaims,
};
use sqlx::PgPool;

use portcullis_authserver::http::tls::PublicTls;

use crate::oidc::clients;
use crate::support::*;
use crate::tls::{self, SecretVolume, TestCa};

/// openidconnect's HTTP client: a closure over our reqwest that never follows redirects
/// (the crate's advice against SSRF).
async fn send(
    rq: reqwest::Client,
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, reqwest::Error> {
    let (parts, body) = request.into_parts();
    let response = rq
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

const REDIRECT: &str = "http://localhost:7777/cb";

struct Rp {
    server: TestServer,
    _volume: std::sync::Arc<SecretVolume>,
    ca_pem: String,
    /// The session cookie of the last login through the hosted page.
    last_session: std::sync::Mutex<String>,
    client: CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    >,
    http: reqwest::Client,
}

impl Rp {
    async fn new(
        server: TestServer,
        volume: std::sync::Arc<SecretVolume>,
        ca_pem: String,
        secret: Option<String>,
    ) -> Self {
        Self::for_client(server, volume, ca_pem, "web", secret).await
    }

    async fn for_client(
        server: TestServer,
        volume: std::sync::Arc<SecretVolume>,
        ca_pem: String,
        client_id: &str,
        secret: Option<String>,
    ) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .tls_backend_preconfigured(tls::client(
                &ca_pem,
                &[&rustls::version::TLS13, &rustls::version::TLS12],
            ))
            .build()
            .unwrap();
        let rq = http.clone();
        let metadata = CoreProviderMetadata::discover_async(
            IssuerUrl::new(server.base.clone()).unwrap(),
            &move |r| send(rq.clone(), r),
        )
        .await
        .unwrap();
        let secret = secret.unwrap_or_else(|| server.client_secret(client_id));
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(client_id.into()),
            Some(ClientSecret::new(secret)),
        )
        .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap())
        .set_revocation_url(RevocationUrl::new(format!("{}/oauth2/revoke", server.base)).unwrap());
        Self {
            server,
            _volume: volume,
            ca_pem,
            last_session: std::sync::Mutex::default(),
            client,
            http,
        }
    }

    fn http(
        &self,
    ) -> impl Fn(
        openidconnect::HttpRequest,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<openidconnect::HttpResponse, reqwest::Error>>
                + Send,
        >,
    > + '_ {
        move |r| Box::pin(send(self.http.clone(), r))
    }

    /// Follows the browser through the hosted login page; returns the final redirect's query.
    async fn browse(&self, authorize: &str, email: &str) -> Vec<(String, String)> {
        let get = |url: String, cookie: String| {
            let rq = self.http.get(url).header("cookie", cookie);
            async move { rq.send().await.unwrap() }
        };
        let to_login = get(authorize.to_owned(), String::new()).await;
        assert_eq!(to_login.status(), 303, "{:?}", to_login.text().await);
        let login_path = location(&to_login);
        let page = get(format!("{}{login_path}", self.server.base), String::new()).await;
        let csrf_cookie = cookie_pair(&page, "__Host-portcullis_csrf");
        let html = page.text().await.unwrap();
        let field = |name: &str| {
            let marker = format!("name=\"{name}\" value=\"");
            let start = html.find(&marker).unwrap() + marker.len();
            html[start..start + html[start..].find('"').unwrap()].to_owned()
        };
        let posted = self
            .http
            .post(format!("{}/login", self.server.base))
            .header("cookie", &csrf_cookie)
            .form(&[
                ("email", email),
                ("password", PASSWORD),
                ("csrf", &field("csrf")),
                ("req", &field("req")),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(posted.status(), 303);
        let session = cookie_pair(&posted, "__Host-portcullis_session");
        let resume = location(&posted);
        *self.last_session.lock().unwrap() = session.clone();
        let mut back = get(format!("{}{resume}", self.server.base), session.clone()).await;
        assert_eq!(back.status(), 303);
        if location(&back).starts_with("/consent?") {
            back = self.consent(&location(&back), &session, "allow").await;
        }
        let target = url::Url::parse(&location(&back)).unwrap();
        assert!(target.as_str().starts_with(REDIRECT), "{target}");
        target.query_pairs().into_owned().collect()
    }
}

impl Rp {
    /// Answers the consent page at `path` with `decision`, as the browser of `session`.
    async fn consent(&self, path: &str, session: &str, decision: &str) -> reqwest::Response {
        let page = self
            .http
            .get(format!("{}{path}", self.server.base))
            .header("cookie", session)
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200);
        let html = page.text().await.unwrap();
        assert!(html.contains("See your email address"), "{html}");
        let field = |name: &str| {
            let marker = format!("name=\"{name}\" value=\"");
            let start = html.find(&marker).unwrap() + marker.len();
            html[start..start + html[start..].find('"').unwrap()].to_owned()
        };
        let answer = self
            .http
            .post(format!("{}/consent", self.server.base))
            .header("cookie", session)
            .form(&[
                ("csrf", field("csrf")),
                ("req", field("req")),
                ("decision", decision.to_owned()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 303);
        answer
    }
}

fn location(response: &reqwest::Response) -> String {
    response.headers()["location"].to_str().unwrap().to_owned()
}

fn cookie_pair(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no {name} cookie"))
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

async fn rp(pool: PgPool, clock: Option<portcullis_authserver::clock::Clock>) -> Rp {
    let mut options = Options {
        clients: clients(),
        ..Options::default()
    };
    if let Some(clock) = clock {
        options.clock = clock;
    }
    let ca = TestCa::new();
    let volume = SecretVolume::new(&ca.issue());
    options.tls = Some(PublicTls::load(volume.files(), Duration::from_secs(10)).unwrap());
    let server = start(pool, options).await;
    assert!(server.base.starts_with("https://localhost:"));
    let rp = Rp::new(server, std::sync::Arc::new(volume), ca.pem, None).await;
    let registered = rp
        .http
        .post(format!("{}/api/v1/register", rp.server.base))
        .json(&serde_json::json!({"email": "alice@example.com", "password": PASSWORD, "policy_version": "1", "consents": {"account": true}}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);
    rp
}

/// An authorization URL with PKCE and the scopes of the happy path.
fn authorize(rp: &Rp) -> (String, CsrfToken, Nonce, PkceCodeVerifier) {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = rp
        .client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("offline_access".into()))
        .set_pkce_challenge(challenge)
        .url();
    (url.to_string(), state, nonce, verifier)
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_relying_party_library_signs_in_validates_the_id_token_refreshes_and_revokes(
    pool: PgPool,
) {
    let rp = rp(pool, None).await;
    let (url, state, nonce, verifier) = authorize(&rp);
    let query = rp.browse(&url, "alice@example.com").await;
    assert_eq!(param(&query, "state"), Some(state.secret().as_str()));
    assert_eq!(
        param(&query, "iss"),
        Some(rp.server.base.as_str()),
        "RFC 9207"
    );
    let code = AuthorizationCode::new(param(&query, "code").unwrap().to_owned());
    let tokens = rp
        .client
        .exchange_code(code)
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&rp.http())
        .await
        .unwrap();
    let id_token = tokens.id_token().expect("an ID token");
    let claims: &CoreIdTokenClaims = id_token
        .claims(&rp.client.id_token_verifier(), &nonce)
        .unwrap();
    assert_eq!(claims.issuer().as_str(), rp.server.base);
    assert!(claims.auth_time().is_some());
    let hash = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token
            .signing_key(&rp.client.id_token_verifier())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims.access_token_hash(), Some(&hash));
    assert_eq!(
        claims.auth_context_ref().map(|acr| acr.as_str()),
        Some("urn:portcullis:acr:pwd")
    );
    let amr: Vec<&str> = claims
        .auth_method_refs()
        .unwrap()
        .iter()
        .map(|m| m.as_str())
        .collect();
    assert_eq!(amr, ["pwd"]);

    let info: CoreUserInfoClaims = rp
        .client
        .user_info(
            tokens.access_token().clone(),
            Some(claims.subject().clone()),
        )
        .unwrap()
        .request_async(&rp.http())
        .await
        .unwrap();
    assert_eq!(info.email().map(|e| e.as_str()), Some("alice@example.com"));
    assert_eq!(info.email_verified(), Some(true));

    let refresh = tokens.refresh_token().expect("a refresh token");
    let refreshed = rp
        .client
        .exchange_refresh_token(refresh)
        .unwrap()
        .request_async(&rp.http())
        .await
        .unwrap();
    let refreshed_id = refreshed.id_token().expect("a new ID token");
    let refreshed_claims = refreshed_id
        .claims(&rp.client.id_token_verifier(), |_: Option<&Nonce>| Ok(()))
        .unwrap();
    assert_eq!(refreshed_claims.subject(), claims.subject());
    assert_eq!(refreshed_claims.auth_time(), claims.auth_time());
    assert!(refreshed_claims.nonce().is_none());
    assert!(
        rp.client
            .exchange_refresh_token(refresh)
            .unwrap()
            .request_async(&rp.http())
            .await
            .is_err(),
        "a rotated refresh token is spent"
    );

    let latest = refreshed.refresh_token().unwrap().clone();
    rp.client
        .revoke_token(CoreRevocableToken::from(latest.clone()))
        .unwrap()
        .request_async(&rp.http())
        .await
        .unwrap();
    assert!(
        rp.client
            .exchange_refresh_token(&latest)
            .unwrap()
            .request_async(&rp.http())
            .await
            .is_err(),
        "revoked"
    );
    let after: Result<UserInfoClaims<EmptyAdditionalClaims, CoreGenderClaim>, _> = rp
        .client
        .user_info(refreshed.access_token().clone(), None)
        .unwrap()
        .request_async(&rp.http())
        .await;
    assert!(
        after.is_err(),
        "revoking the refresh token ended its grant's access tokens"
    );
}

/// The server's error code for a failed token request.
fn token_error<T: std::fmt::Debug, RE: std::error::Error + 'static>(
    result: Result<
        T,
        RequestTokenError<RE, openidconnect::StandardErrorResponse<CoreErrorResponseType>>,
    >,
) -> CoreErrorResponseType {
    match result {
        Err(RequestTokenError::ServerResponse(error)) => error.error().clone(),
        other => panic!("expected an error response, got {other:?}"),
    }
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_wrong_or_missing_verifier_a_reused_code_and_a_wrong_secret_are_refused(pool: PgPool) {
    let rp = rp(pool, None).await;
    // Wrong verifier, then the right one: the failed attempt changed nothing (the code is
    // checked before it is spent), so the right one succeeds once and a reuse is refused.
    let (url, _, _, verifier) = authorize(&rp);
    let query = rp.browse(&url, "alice@example.com").await;
    let code = || AuthorizationCode::new(param(&query, "code").unwrap().to_owned());
    let wrong = rp
        .client
        .exchange_code(code())
        .unwrap()
        .set_pkce_verifier(PkceCodeVerifier::new("x".repeat(43)))
        .request_async(&rp.http())
        .await;
    assert_eq!(token_error(wrong), CoreErrorResponseType::InvalidGrant);
    let verifier = verifier.secret().clone();
    let right = rp
        .client
        .exchange_code(code())
        .unwrap()
        .set_pkce_verifier(PkceCodeVerifier::new(verifier.clone()))
        .request_async(&rp.http())
        .await;
    assert!(right.is_ok(), "{right:?}");
    let reused = rp
        .client
        .exchange_code(code())
        .unwrap()
        .set_pkce_verifier(PkceCodeVerifier::new(verifier))
        .request_async(&rp.http())
        .await;
    assert_eq!(token_error(reused), CoreErrorResponseType::InvalidGrant);

    let (url, _, _, _) = authorize(&rp);
    let query = rp.browse(&url, "alice@example.com").await;
    let missing = rp
        .client
        .exchange_code(AuthorizationCode::new(
            param(&query, "code").unwrap().to_owned(),
        ))
        .unwrap()
        .request_async(&rp.http())
        .await;
    assert_eq!(token_error(missing), CoreErrorResponseType::InvalidGrant);

    let (url, _, _, verifier) = authorize(&rp);
    let query = rp.browse(&url, "alice@example.com").await;
    let base = rp.server.base.clone();
    let impostor = Rp::new(
        rp.server,
        rp._volume,
        rp.ca_pem,
        Some("not-the-secret".into()),
    )
    .await;
    let wrong_secret = impostor
        .client
        .exchange_code(AuthorizationCode::new(
            param(&query, "code").unwrap().to_owned(),
        ))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&impostor.http())
        .await;
    assert_eq!(
        token_error(wrong_secret),
        CoreErrorResponseType::InvalidClient
    );
    assert!(base.starts_with("https://localhost:"));
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_code_exchanged_after_sixty_seconds_is_refused(pool: PgPool) {
    let clock = stopped_clock();
    let rp = rp(pool, Some(clock.clone())).await;
    let (url, _, _, verifier) = authorize(&rp);
    let query = rp.browse(&url, "alice@example.com").await;
    clock.advance(Duration::from_secs(61));
    let late = rp
        .client
        .exchange_code(AuthorizationCode::new(
            param(&query, "code").unwrap().to_owned(),
        ))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&rp.http())
        .await;
    assert_eq!(token_error(late), CoreErrorResponseType::InvalidGrant);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn prompt_none_without_a_session_and_a_wrong_redirect_uri_are_refused_as_the_specs_say(
    pool: PgPool,
) {
    let rp = rp(pool, None).await;
    let (challenge, _) = PkceCodeChallenge::new_random_sha256();
    let (url, state, _) = rp
        .client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_prompt(openidconnect::core::CoreAuthPrompt::None)
        .set_pkce_challenge(challenge)
        .url();
    let answer = rp.http.get(url.as_str()).send().await.unwrap();
    assert_eq!(answer.status(), 303);
    let target = url::Url::parse(&location(&answer)).unwrap();
    assert!(target.as_str().starts_with(REDIRECT));
    let query: Vec<(String, String)> = target.query_pairs().into_owned().collect();
    assert_eq!(param(&query, "error"), Some("login_required"));
    assert_eq!(param(&query, "state"), Some(state.secret().as_str()));

    let wrong = rp
        .client
        .clone()
        .set_redirect_uri(RedirectUrl::new("http://localhost:7777/cb/".into()).unwrap());
    let (url, _, _) = wrong
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .url();
    let answer = rp.http.get(url.as_str()).send().await.unwrap();
    assert_eq!(answer.status(), 400);
    assert!(
        answer.headers().get("location").is_none(),
        "never a redirect"
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_third_party_client_gets_a_code_only_after_consent_which_is_remembered(pool: PgPool) {
    let web = rp(pool, None).await;
    let partner = Rp::for_client(web.server, web._volume, web.ca_pem, "partner", None).await;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _, nonce) = partner
        .client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge)
        .url();
    let query = partner.browse(url.as_str(), "alice@example.com").await;
    let tokens = partner
        .client
        .exchange_code(AuthorizationCode::new(
            param(&query, "code").unwrap().to_owned(),
        ))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&partner.http())
        .await
        .unwrap();
    let claims = tokens
        .id_token()
        .unwrap()
        .claims(&partner.client.id_token_verifier(), &nonce)
        .unwrap();
    assert_eq!(claims.audiences()[0].as_str(), "partner");

    // Denied on a second request with prompt=consent: access_denied for the client.
    let login = partner
        .http
        .post(format!("{}/api/v1/login", partner.server.base))
        .json(&serde_json::json!({"email": "alice@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let session = cookie_pair(&login, "__Host-portcullis_session");
    let (url, state, _) = partner
        .client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .add_prompt(openidconnect::core::CoreAuthPrompt::Consent)
        .url();
    let first = partner
        .http
        .get(url.as_str())
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert!(
        location(&first).starts_with("/consent?"),
        "{}",
        location(&first)
    );
    let denied = partner.consent(&location(&first), &session, "deny").await;
    let target = url::Url::parse(&location(&denied)).unwrap();
    let query: Vec<(String, String)> = target.query_pairs().into_owned().collect();
    assert_eq!(param(&query, "error"), Some("access_denied"));
    assert_eq!(param(&query, "state"), Some(state.secret().as_str()));

    // Without prompt=consent the remembered consent suffices: a code at once.
    let (url, _, _) = partner
        .client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .url();
    let again = partner
        .http
        .get(url.as_str())
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert!(location(&again).contains("code="), "{}", location(&again));
}

/// Whether UserInfo answers for `token`.
async fn userinfo_ok(rp: &Rp, token: &openidconnect::AccessToken) -> bool {
    let claims: Result<CoreUserInfoClaims, _> = rp
        .client
        .user_info(token.clone(), None)
        .unwrap()
        .request_async(&rp.http())
        .await;
    claims.is_ok()
}

/// Whether `token` refreshes.
async fn refreshes(rp: &Rp, token: &openidconnect::RefreshToken) -> bool {
    rp.client
        .exchange_refresh_token(token)
        .unwrap()
        .request_async(&rp.http())
        .await
        .is_ok()
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn rp_initiated_logout_ends_the_sessions_grants_but_not_an_offline_access_grant(
    pool: PgPool,
) {
    let rp = rp(pool, None).await;
    let (url, _, nonce, verifier) = authorize(&rp);
    let query = rp.browse(&url, "alice@example.com").await;
    let tokens = rp
        .client
        .exchange_code(AuthorizationCode::new(
            param(&query, "code").unwrap().to_owned(),
        ))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&rp.http())
        .await
        .unwrap();
    let id_token = tokens.id_token().unwrap();
    id_token
        .claims(&rp.client.id_token_verifier(), &nonce)
        .unwrap();
    // A second grant of the same browser session, without offline_access: tied to the session.
    let (challenge, online_verifier) = PkceCodeChallenge::new_random_sha256();
    let (online_url, _, _) = rp
        .client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge)
        .url();
    let session = rp.last_session.lock().unwrap().clone();
    let answer = rp
        .http
        .get(online_url.as_str())
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    let target = url::Url::parse(&location(&answer)).unwrap();
    let query: Vec<(String, String)> = target.query_pairs().into_owned().collect();
    let online = rp
        .client
        .exchange_code(AuthorizationCode::new(
            param(&query, "code").unwrap().to_owned(),
        ))
        .unwrap()
        .set_pkce_verifier(online_verifier)
        .request_async(&rp.http())
        .await
        .unwrap();
    let metadata: serde_json::Value = rp
        .http
        .get(format!(
            "{}/.well-known/openid-configuration",
            rp.server.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let end_session = openidconnect::EndSessionUrl::new(
        metadata["end_session_endpoint"]
            .as_str()
            .unwrap()
            .to_owned(),
    )
    .unwrap();
    let logout = openidconnect::LogoutRequest::from(end_session)
        .set_id_token_hint(id_token)
        .set_client_id(ClientId::new("web".into()))
        .set_post_logout_redirect_uri(
            openidconnect::PostLogoutRedirectUrl::new("http://localhost:7777/bye".into()).unwrap(),
        )
        .set_state(CsrfToken::new("bye-state".into()))
        .http_get_url();
    let session = rp.last_session.lock().unwrap().clone();
    let answer = rp
        .http
        .get(logout.as_str())
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303);
    assert_eq!(
        location(&answer),
        "http://localhost:7777/bye?state=bye-state"
    );
    assert!(
        cookie_pair(&answer, "__Host-portcullis_session").ends_with('='),
        "the cookie is cleared"
    );
    assert!(
        !userinfo_ok(&rp, online.access_token()).await,
        "the session's access tokens end with it"
    );
    assert!(
        !refreshes(&rp, online.refresh_token().unwrap()).await,
        "and its refresh tokens"
    );
    assert!(
        userinfo_ok(&rp, tokens.access_token()).await,
        "an offline_access grant's access token is not the session's"
    );
    assert!(
        refreshes(&rp, tokens.refresh_token().unwrap()).await,
        "an offline_access grant outlives the session"
    );
    let wrong = rp
        .http
        .get(format!(
            "{}/oauth2/logout?client_id=web&post_logout_redirect_uri=https%3A%2F%2Fevil.example%2F",
            rp.server.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 400);
    assert!(wrong.headers().get("location").is_none());
}
