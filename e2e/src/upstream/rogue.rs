//! The rogue upstream: a minimal OpenID provider (discovery, JWKS, the code flow with PKCE,
//! UserInfo) that signs real ES256 ID tokens with a key generated at start, and breaks the one
//! rule its [`Misbehaviour`] names. Everything else is done right, so a relying party that
//! refuses its token refuses it for that rule. In-memory, one client, codes single-use; HTTPS
//! when the config has [`super::Tls`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use url::Url;

use super::Config;

/// Which rule the rogue provider's ID tokens break (UserInfo too, for `UnverifiedEmail`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Misbehaviour {
    /// None: a control, to show that a refusal is for the misbehaviour alone.
    #[default]
    Honest,
    /// `nonce` is not the one the authorization request sent.
    WrongNonce,
    /// `iss` is another issuer's (`https://evil.example`), not the one discovery names.
    WrongIssuer,
    /// `aud` is another client's (`someone-else`).
    WrongAudience,
    /// Signed by a second key under the published key's `kid`: the signature does not verify.
    BadSignature,
    /// `email_verified: false`, whatever the account says.
    UnverifiedEmail,
    /// Discovery names a plain-HTTP token endpoint (on the same host and port) whatever the
    /// issuer's scheme: the client secret would travel in clear.
    PlainHttpTokenEndpoint,
    /// Expired two minutes ago (beyond any clock skew a client allows).
    Expired,
    /// `iat` ten minutes in the future.
    IssuedInFuture,
    /// `azp` is another client's (`someone-else`), `aud` ours alone.
    ForeignAzp,
    /// `aud` is ours and another client's, `azp` ours.
    MultipleAudiences,
    /// HS256, keyed with the client secret (the classic relying-party bug), and discovery
    /// lists HS256 too.
    Hs256Secret,
    /// `alg: none`, no signature.
    AlgNone,
    /// Signed by a key it never publishes, under a `kid` its JWKS does not have.
    UnknownKid,
    /// Signed by a second key under `kid` `rotated`, which the JWKS publishes only from its
    /// second fetch on (a key rotation after the client's discovery).
    RotatedKey,
    /// The discovery document names the issuer with a trailing slash.
    DiscoveryIssuerMismatch,
    /// The callback carries no RFC 9207 `iss`, although discovery advertises it.
    MissingIss,
    /// `email_verified` is the string `"true"` (as some providers send it).
    EmailVerifiedString,
    /// The ID token has no email, and UserInfo describes another subject (`someone-else`).
    UserInfoOtherSubject,
}

/// The issuer its `WrongIssuer` tokens name.
pub const WRONG_ISSUER: &str = "https://evil.example";
/// The audience its `WrongAudience` tokens name.
pub const WRONG_AUDIENCE: &str = "someone-else";
/// The nonce its `WrongNonce` tokens carry.
pub const WRONG_NONCE: &str = "not-the-nonce-you-sent";
const KID: &str = "rogue-es256";
const ROTATED_KID: &str = "rotated";

/// An authorization request under way.
#[derive(Clone)]
struct Pending {
    redirect_uri: String,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: String,
    scope: String,
}

struct Provider {
    issuer: String,
    config: Config,
    misbehaviour: Misbehaviour,
    key: EncodingKey,
    /// The key `BadSignature` and `UnknownKid` sign with; published only by `RotatedKey`.
    other_key: EncodingKey,
    jwk: Value,
    /// `other_key`'s JWK, under `kid` `rotated`.
    rotated_jwk: Value,
    /// How many times the JWKS was fetched.
    jwks_fetches: std::sync::atomic::AtomicUsize,
    interactions: Mutex<HashMap<String, Pending>>,
    codes: Mutex<HashMap<String, (Pending, String)>>,
    access_tokens: Mutex<HashMap<String, String>>,
}

/// The running provider: a thread with its own runtime, so it answers whatever the test's
/// runtime is doing.
pub(super) struct Server {
    pub issuer: String,
    provider: Arc<Provider>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn start(config: Config, misbehaviour: Misbehaviour) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let acceptor = config.tls.as_ref().map(acceptor);
        let issuer = match acceptor {
            Some(_) => format!("https://localhost:{port}"),
            None => format!("http://127.0.0.1:{port}"),
        };
        let (key, raw) = key_pair();
        let (other_key, other_raw) = key_pair();
        // The uncompressed point: 0x04, x, y.
        let jwk_of = |raw: &[u8], kid: &str| {
            json!({
                "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
                "x": URL_SAFE_NO_PAD.encode(&raw[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&raw[33..65]),
            })
        };
        let jwk = jwk_of(&raw, KID);
        let rotated_jwk = jwk_of(&other_raw, ROTATED_KID);
        let provider = Arc::new(Provider {
            issuer: issuer.clone(),
            config,
            misbehaviour,
            key,
            other_key,
            jwk,
            rotated_jwk,
            jwks_fetches: Default::default(),
            interactions: Mutex::default(),
            codes: Mutex::default(),
            access_tokens: Mutex::default(),
        });
        let shared = provider.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = app(provider);
                tokio::select! {
                    served = async {
                        match acceptor {
                            Some(acceptor) => axum::serve(TlsListener { listener, acceptor }, app).await,
                            None => axum::serve(listener, app).await,
                        }
                    } => served.unwrap(),
                    _ = stopped => {}
                }
            });
            // Dropping the runtime drops the open connections with it.
        });
        Self {
            issuer,
            provider: shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// How many times its JWKS was fetched.
    pub fn jwks_fetches(&self) -> usize {
        self.provider
            .jwks_fetches
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The TLS acceptor of `tls`'s certificate and key (rustls with ring).
fn acceptor(tls: &super::Tls) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_slice_iter(tls.chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// axum's listener for HTTPS: a connection is served once its handshake succeeds.
struct TlsListener {
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, peer)) = self.listener.accept().await else {
                continue;
            };
            // One handshake at a time is plenty for a test provider.
            if let Ok(tls) = self.acceptor.accept(stream).await {
                return (tls, peer);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// A fresh P-256 key: (jsonwebtoken's signing key, the public point).
fn key_pair() -> (EncodingKey, Vec<u8>) {
    let pair = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    (
        EncodingKey::from_ec_der(&pair.serialize_der()),
        pair.public_key_raw().to_vec(),
    )
}

fn app(provider: Arc<Provider>) -> Router {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/authorize", get(authorize))
        .route("/interaction/{uid}", get(interaction))
        .route("/token", post(token))
        .route("/userinfo", get(userinfo))
        .with_state(provider)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn random_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn bad_request(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, message.to_owned()).into_response()
}

/// An RFC 6749 §5.2 error.
fn oauth_error(status: StatusCode, error: &str) -> Response {
    (status, Json(json!({"error": error}))).into_response()
}

async fn discovery(State(p): State<Arc<Provider>>) -> Json<Value> {
    let issuer = &p.issuer;
    let algs = match p.misbehaviour {
        Misbehaviour::Hs256Secret => json!(["ES256", "HS256"]),
        _ => json!(["ES256"]),
    };
    Json(json!({
        "issuer": match p.misbehaviour {
            Misbehaviour::DiscoveryIssuerMismatch => format!("{issuer}/"),
            _ => issuer.clone(),
        },
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": match p.misbehaviour {
            Misbehaviour::PlainHttpTokenEndpoint => {
                format!("{}/token", issuer.replacen("https://", "http://", 1))
            }
            _ => format!("{issuer}/token"),
        },
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
        "scopes_supported": ["openid", "email", "profile"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "email", "email_verified", "name"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "grant_types_supported": ["authorization_code"],
        "authorization_response_iss_parameter_supported": true,
    }))
}

async fn jwks(State(p): State<Arc<Provider>>) -> Json<Value> {
    let earlier = p
        .jwks_fetches
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    if p.misbehaviour == Misbehaviour::RotatedKey && earlier > 0 {
        return Json(json!({"keys": [p.jwk, p.rotated_jwk]}));
    }
    Json(json!({"keys": [p.jwk]}))
}

/// Checks the request and sends the user agent to the interaction (no error redirects: a
/// request this provider refuses is a broken test).
async fn authorize(
    State(p): State<Arc<Provider>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let param = |name: &str| q.get(name).cloned();
    if param("client_id").as_deref() != Some(p.config.client_id.as_str()) {
        return bad_request("unknown client_id");
    }
    let Some(redirect_uri) = param("redirect_uri").filter(|r| p.config.redirect_uris.contains(r))
    else {
        return bad_request("redirect_uri is not registered");
    };
    if param("response_type").as_deref() != Some("code") {
        return bad_request("response_type must be code");
    }
    let scope = param("scope").unwrap_or_default();
    if !scope.split(' ').any(|s| s == "openid") {
        return bad_request("scope must include openid");
    }
    let Some(code_challenge) = param("code_challenge") else {
        return bad_request("PKCE is required: no code_challenge");
    };
    if param("code_challenge_method").as_deref() != Some("S256") {
        return bad_request("code_challenge_method must be S256");
    }
    let uid = random_id();
    p.interactions.lock().unwrap().insert(
        uid.clone(),
        Pending {
            redirect_uri,
            state: param("state"),
            nonce: param("nonce"),
            code_challenge,
            scope,
        },
    );
    Redirect::to(&format!("/interaction/{uid}")).into_response()
}

/// `?login={sub}` signs the account in and redirects to the client with a code; without it,
/// a page listing the accounts.
async fn interaction(
    State(p): State<Arc<Provider>>,
    Path(uid): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(sub) = q.get("login") else {
        let links: String = p
            .config
            .accounts
            .iter()
            .map(|a| {
                let query: String = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("login", &a.sub)
                    .finish();
                format!(
                    "<li><a href=\"?{}\">{}</a></li>",
                    escape(&query),
                    escape(&a.email)
                )
            })
            .collect();
        return Html(format!(
            "<!doctype html><title>Rogue sign-in</title><h1>Sign in as</h1><ul>{links}</ul>"
        ))
        .into_response();
    };
    if !p.config.accounts.iter().any(|a| &a.sub == sub) {
        return bad_request("no such account");
    }
    let Some(pending) = p.interactions.lock().unwrap().remove(&uid) else {
        return bad_request("no such interaction");
    };
    let code = random_id();
    let mut to = Url::parse(&pending.redirect_uri).unwrap();
    {
        let mut query = to.query_pairs_mut();
        query.append_pair("code", &code);
        if let Some(state) = &pending.state {
            query.append_pair("state", state);
        }
        if p.misbehaviour != Misbehaviour::MissingIss {
            query.append_pair("iss", &p.issuer);
        }
    }
    p.codes.lock().unwrap().insert(code, (pending, sub.clone()));
    Redirect::to(to.as_str()).into_response()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `client_secret_basic` (RFC 6749 §2.3.1: each part form-urlencoded) or `client_secret_post`.
fn client_authenticated(p: &Provider, headers: &HeaderMap, form: &HashMap<String, String>) -> bool {
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.split_once(':')
                .map(|(id, secret)| (decode(id), decode(secret)))
        });
    let (id, secret) = basic.unwrap_or_else(|| {
        (
            form.get("client_id").cloned().unwrap_or_default(),
            form.get("client_secret").cloned().unwrap_or_default(),
        )
    });
    id == p.config.client_id && secret == p.config.client_secret
}

async fn token(
    State(p): State<Arc<Provider>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if !client_authenticated(&p, &headers, &form) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    if form.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    let code = form.get("code").cloned().unwrap_or_default();
    let Some((pending, sub)) = p.codes.lock().unwrap().remove(&code) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    };
    if form.get("redirect_uri") != Some(&pending.redirect_uri) {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != pending.code_challenge {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    let account = p.config.accounts.iter().find(|a| a.sub == sub).unwrap();
    let now = now();
    let mut claims = json!({
        "iss": p.issuer,
        "sub": account.sub,
        "aud": p.config.client_id,
        "iat": now,
        "exp": now + 300,
        "auth_time": now,
        "email": account.email,
        "email_verified": account.email_verified,
        "name": account.name,
    });
    if let Some(nonce) = &pending.nonce {
        claims["nonce"] = json!(nonce);
    }
    let mut key = &p.key;
    let secret_key;
    let mut jws = Header::new(Algorithm::ES256);
    jws.kid = Some(KID.to_owned());
    match p.misbehaviour {
        Misbehaviour::Honest
        | Misbehaviour::PlainHttpTokenEndpoint
        | Misbehaviour::DiscoveryIssuerMismatch
        | Misbehaviour::MissingIss
        | Misbehaviour::AlgNone => {}
        Misbehaviour::WrongNonce => claims["nonce"] = json!(WRONG_NONCE),
        Misbehaviour::WrongIssuer => claims["iss"] = json!(WRONG_ISSUER),
        Misbehaviour::WrongAudience => claims["aud"] = json!(WRONG_AUDIENCE),
        Misbehaviour::BadSignature => key = &p.other_key,
        Misbehaviour::UnverifiedEmail => claims["email_verified"] = json!(false),
        Misbehaviour::Expired => {
            claims["iat"] = json!(now - 420);
            claims["exp"] = json!(now - 120);
        }
        Misbehaviour::IssuedInFuture => {
            claims["iat"] = json!(now + 600);
            claims["exp"] = json!(now + 900);
        }
        Misbehaviour::ForeignAzp => claims["azp"] = json!(WRONG_AUDIENCE),
        Misbehaviour::MultipleAudiences => {
            claims["aud"] = json!([p.config.client_id, WRONG_AUDIENCE]);
            claims["azp"] = json!(p.config.client_id);
        }
        Misbehaviour::Hs256Secret => {
            secret_key = EncodingKey::from_secret(p.config.client_secret.as_bytes());
            key = &secret_key;
            jws = Header::new(Algorithm::HS256);
        }
        Misbehaviour::UnknownKid => {
            key = &p.other_key;
            jws.kid = Some("unknown-kid".to_owned());
        }
        Misbehaviour::RotatedKey => {
            key = &p.other_key;
            jws.kid = Some(ROTATED_KID.to_owned());
        }
        Misbehaviour::EmailVerifiedString => claims["email_verified"] = json!("true"),
        Misbehaviour::UserInfoOtherSubject => {
            let object = claims.as_object_mut().unwrap();
            object.remove("email");
            object.remove("email_verified");
        }
    }
    let id_token = if p.misbehaviour == Misbehaviour::AlgNone {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        format!("{header}.{payload}.")
    } else {
        jsonwebtoken::encode(&jws, &claims, key).unwrap()
    };
    let access_token = random_id();
    p.access_tokens
        .lock()
        .unwrap()
        .insert(access_token.clone(), sub);
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": pending.scope,
            "id_token": id_token,
        })),
    )
        .into_response()
}

async fn userinfo(State(p): State<Arc<Provider>>, headers: HeaderMap) -> Response {
    let sub = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .and_then(|t| p.access_tokens.lock().unwrap().get(t).cloned());
    let Some(account) = sub.and_then(|sub| p.config.accounts.iter().find(|a| a.sub == sub)) else {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")],
        )
            .into_response();
    };
    let email_verified = account.email_verified && p.misbehaviour != Misbehaviour::UnverifiedEmail;
    let sub = match p.misbehaviour {
        Misbehaviour::UserInfoOtherSubject => WRONG_AUDIENCE.to_owned(),
        _ => account.sub.clone(),
    };
    Json(json!({
        "sub": sub,
        "email": account.email,
        "email_verified": email_verified,
        "name": account.name,
    }))
    .into_response()
}
