//! A tiny relying party, as an app team would write one: an axum app on
//! `http://localhost:{port}` that sends the browser to the realm with PKCE, state and nonce,
//! receives the code at `/cb`, exchanges it and validates the ID token with the `openidconnect`
//! crate, keeps the tokens, and signs out through the realm's end-session endpoint.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreProviderMetadata, CoreUserInfoClaims,
};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, RefreshToken, Scope, TokenResponse,
};
use portcullis_e2e::realm::Realm;

type Oidc = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// What the app remembers of a signed-in person.
#[derive(Clone, Debug)]
pub struct SignedIn {
    /// The `email` claim from UserInfo, for the subject of the validated ID token.
    pub email: String,
    /// The refresh token, when `offline_access` was granted.
    pub refresh_token: Option<String>,
    /// How the person authenticated: the validated ID token's `amr` (RFC 8176).
    pub amr: Vec<String>,
}

struct Shared {
    base: String,
    issuer: String,
    client_id: String,
    end_session: String,
    oidc: Oidc,
    http: reqwest::Client,
    /// Authorization requests under way, by state: (nonce, PKCE verifier).
    pending: Mutex<HashMap<String, (Nonce, PkceCodeVerifier)>>,
    logout_state: Mutex<Option<String>>,
    signed_in: Mutex<Option<SignedIn>>,
}

/// The running app.
pub struct Rp {
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Rp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The AuthClient of the app listening on `port`: confidential, not first-party (so the
/// realm asks for consent), its callback and post-logout URIs registered exactly.
pub fn registration(client_id: &str, port: u16) -> String {
    format!(
        "apiVersion: portcullis.dev/v1alpha1
kind: AuthClient
metadata: {{name: {client_id}}}
spec:
  realmRef: {{name: REALM}}
  clientId: {client_id}
  type: Confidential
  firstParty: false
  redirectUris: [\"http://localhost:{port}/cb\"]
  postLogoutRedirectUris: [\"http://localhost:{port}/bye\"]
  grantTypes: [authorization_code, refresh_token]
  scopes: [openid, profile, email, offline_access]
"
    )
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

impl Rp {
    /// Discovers `realm` and serves the app for the client `client_id` on `listener` (bound
    /// before the realm started, as its port is in the registration).
    pub async fn start(realm: &Realm, client_id: &str, listener: tokio::net::TcpListener) -> Self {
        let port = listener.local_addr().unwrap().port();
        let base = format!("http://localhost:{port}");
        let http = realm.http();
        let rq = http.clone();
        let metadata = CoreProviderMetadata::discover_async(
            IssuerUrl::new(realm.issuer.clone()).unwrap(),
            &move |r| send(rq.clone(), r),
        )
        .await
        .unwrap();
        // CoreProviderMetadata has no end_session_endpoint: read it from the same document.
        let discovery: serde_json::Value = http
            .get(format!("{}/.well-known/openid-configuration", realm.issuer))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let end_session = discovery["end_session_endpoint"]
            .as_str()
            .expect("end_session_endpoint in discovery")
            .to_owned();
        let oidc = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(client_id.to_owned()),
            Some(ClientSecret::new(realm.client_secret(client_id))),
        )
        .set_redirect_uri(RedirectUrl::new(format!("{base}/cb")).unwrap());
        let shared = Arc::new(Shared {
            base,
            issuer: realm.issuer.clone(),
            client_id: client_id.to_owned(),
            end_session,
            oidc,
            http,
            pending: Mutex::default(),
            logout_state: Mutex::default(),
            signed_in: Mutex::default(),
        });
        let app = Router::new()
            .route("/login", get(login))
            .route("/cb", get(callback))
            .route("/logout", get(logout))
            .route("/bye", get(bye))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { shared, server }
    }

    /// Where a person starts signing in.
    pub fn login_url(&self) -> String {
        format!("{}/login", self.shared.base)
    }

    /// Where a person starts signing out.
    pub fn logout_url(&self) -> String {
        format!("{}/logout", self.shared.base)
    }

    /// The app's own origin.
    pub fn base(&self) -> &str {
        &self.shared.base
    }

    /// Who the app holds tokens for.
    pub fn signed_in(&self) -> Option<SignedIn> {
        self.shared.signed_in.lock().unwrap().clone()
    }

    /// Refreshes with the refresh token the app holds (keeping the new one): `Err` with the
    /// realm's answer when the realm refuses.
    pub async fn refresh(&self) -> Result<(), String> {
        let token = self
            .signed_in()
            .and_then(|s| s.refresh_token)
            .expect("the app holds a refresh token");
        let http = |r| send(self.shared.http.clone(), r);
        let answer = self
            .shared
            .oidc
            .exchange_refresh_token(&RefreshToken::new(token))
            .unwrap()
            .request_async(&http)
            .await
            .map_err(|e| match e {
                openidconnect::RequestTokenError::ServerResponse(r) => r.error().to_string(),
                other => format!("{other:?}"),
            })?;
        if let Some(signed_in) = self.shared.signed_in.lock().unwrap().as_mut() {
            signed_in.refresh_token = answer.refresh_token().map(|t| t.secret().clone());
        }
        Ok(())
    }
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title} – Printshop</title></head><body><h1>{title}</h1>{body}</body></html>"
    );
    (status, Html(html)).into_response()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response()
}

async fn login(State(app): State<Arc<Shared>>) -> Response {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = app
        .oidc
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
    app.pending
        .lock()
        .unwrap()
        .insert(state.secret().clone(), (nonce, verifier));
    redirect(url.as_str())
}

async fn callback(
    State(app): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    match signed_in(&app, &query).await {
        Ok(who) => {
            let body = format!(
                "<p>Welcome, <span id=\"user\">{}</span>.</p>",
                escape(&who.email)
            );
            *app.signed_in.lock().unwrap() = Some(who);
            page(StatusCode::OK, "Signed in", &body)
        }
        Err(error) => page(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            &format!("<p id=\"error\">{}</p>", escape(&error)),
        ),
    }
}

/// The callback's work: the realm's answer checked (state, RFC 9207 `iss`), the code
/// exchanged with the PKCE verifier, and the ID token validated with the nonce.
async fn signed_in(app: &Shared, query: &HashMap<String, String>) -> Result<SignedIn, String> {
    if let Some(error) = query.get("error") {
        return Err(error.clone());
    }
    let state = query.get("state").ok_or("no state")?;
    let (nonce, verifier) = app
        .pending
        .lock()
        .unwrap()
        .remove(state)
        .ok_or("an unknown state")?;
    if query.get("iss") != Some(&app.issuer) {
        return Err(format!("iss {:?} is not the issuer", query.get("iss")));
    }
    let code = query.get("code").ok_or("no code")?;
    let http = |r| send(app.http.clone(), r);
    let tokens = app
        .oidc
        .exchange_code(AuthorizationCode::new(code.clone()))
        .map_err(|e| e.to_string())?
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .map_err(|e| format!("token exchange: {e:?}"))?;
    let id_token = tokens.id_token().ok_or("no ID token")?;
    let claims = id_token
        .claims(&app.oidc.id_token_verifier(), &nonce)
        .map_err(|e| format!("ID token: {e}"))?;
    // Claims asked for by scope come from UserInfo (OIDC Core §5.4), for the ID token's sub.
    let info: CoreUserInfoClaims = app
        .oidc
        .user_info(
            tokens.access_token().clone(),
            Some(claims.subject().clone()),
        )
        .map_err(|e| e.to_string())?
        .request_async(&http)
        .await
        .map_err(|e| format!("userinfo: {e:?}"))?;
    let email = info
        .email()
        .ok_or("no email in userinfo")?
        .as_str()
        .to_owned();
    let amr = claims
        .auth_method_refs()
        .map(|methods| methods.iter().map(|m| m.as_str().to_owned()).collect())
        .unwrap_or_default();
    Ok(SignedIn {
        email,
        refresh_token: tokens.refresh_token().map(|t| t.secret().clone()),
        amr,
    })
}

/// RP-initiated logout without an ID token hint: the realm asks the person to confirm.
async fn logout(State(app): State<Arc<Shared>>) -> Response {
    let state = CsrfToken::new_random().secret().clone();
    *app.logout_state.lock().unwrap() = Some(state.clone());
    let mut url = url::Url::parse(&app.end_session).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", &app.client_id)
        .append_pair("post_logout_redirect_uri", &format!("{}/bye", app.base))
        .append_pair("state", &state);
    redirect(url.as_str())
}

async fn bye(
    State(app): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let expected = app.logout_state.lock().unwrap().take();
    if expected.is_none() || query.get("state") != expected.as_ref() {
        return page(
            StatusCode::BAD_REQUEST,
            "Unexpected sign-out",
            "<p id=\"error\">state mismatch</p>",
        );
    }
    // The tokens stay: an app granted offline_access keeps working for the person while they
    // are away (the realm decides whether the grant outlives the sign-out).
    page(StatusCode::OK, "Signed out", "<p>You left Printshop.</p>")
}
