//! Upstream identity providers for the social-login tests (issue 12): the relying party under
//! test (the auth server) sends the browser to one of these and gets an ID token back.
//!
//! - [`Upstream::start_node`]: Node's certified `oidc-provider`, unmodified
//!   (`e2e/node/upstream.mjs`, on the Node 22 that `npm ci` in e2e/node installs). The honest
//!   provider: a code flow with PKCE gives a correctly signed ID token carrying the account's
//!   `email` and `email_verified`.
//! - [`Upstream::start_rogue`]: a small provider of ours ([`rogue`]) whose ID tokens break
//!   one rule on purpose, the [`Misbehaviour`] a test picks: a wrong `nonce`, `iss` or `aud`,
//!   a signature by a key it does not publish, or `email_verified: false`.
//!
//! Both listen on `http://127.0.0.1:{port}`, or `https://localhost:{port}` with a certificate
//! from a throwaway CA when the config asks for [`Tls`] (real providers are HTTPS), register the one confidential client of the
//! [`Config`] (`client_secret_basic` or `client_secret_post`, PKCE S256 required, scopes
//! `openid email profile`) and sign its accounts in without a page to fill in: the
//! authorization endpoint redirects to `/interaction/{id}`, and
//! `GET /interaction/{id}?login={sub}` signs that account in, grants the scopes and carries on
//! to the client's redirect URI. [`sign_in`] walks that path over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is a failed test

pub mod rogue;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::json;
use url::Url;

use crate::repo_root;

pub use rogue::Misbehaviour;

/// A person at the upstream provider: what its ID tokens and UserInfo say about them.
#[derive(Clone, Debug)]
pub struct Account {
    /// The fixed `sub`; also the `login` value that signs this account in.
    pub sub: String,
    /// The `email` claim.
    pub email: String,
    /// The `email_verified` claim.
    pub email_verified: bool,
    /// The `name` claim (scope `profile`).
    pub name: String,
}

impl Account {
    /// An account whose email the provider vouches for.
    pub fn verified(sub: &str, email: &str) -> Self {
        Self {
            sub: sub.to_owned(),
            email: email.to_owned(),
            email_verified: true,
            name: format!("Upstream {sub}"),
        }
    }

    /// An account whose email the provider has not verified (`email_verified: false`): it
    /// must not take over a local account with that email.
    pub fn unverified(sub: &str, email: &str) -> Self {
        Self {
            email_verified: false,
            ..Self::verified(sub, email)
        }
    }
}

/// The ID token signing algorithm of the Node provider (the rogue one always signs ES256).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Alg {
    /// ECDSA P-256 (the default).
    #[default]
    Es256,
    /// RSA PKCS#1 v1.5, 2048-bit key.
    Rs256,
}

impl Alg {
    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
        }
    }
}

/// HTTPS for an upstream provider: a serving certificate for `localhost` from a throwaway CA.
#[derive(Clone, Debug)]
pub struct Tls {
    /// The CA certificate, PEM: what a client of the provider must trust.
    pub ca_pem: String,
    /// The serving certificate chain, PEM.
    pub chain_pem: String,
    /// Its private key, PEM.
    pub key_pem: String,
}

impl Tls {
    /// A fresh CA and a certificate for `localhost` from it.
    pub fn generate() -> Self {
        let (ca_pem, chain_pem, key_pem) = crate::realm::certificate();
        Self {
            ca_pem,
            chain_pem,
            key_pem,
        }
    }
}

/// An upstream provider's client (the relying party under test) and accounts.
#[derive(Clone, Debug)]
pub struct Config {
    /// The relying party's `client_id` at the upstream.
    pub client_id: String,
    /// Its secret (`client_secret_basic` or `client_secret_post`).
    pub client_secret: String,
    /// Registered exactly; an authorization request with another one is refused.
    pub redirect_uris: Vec<String>,
    /// Who can sign in.
    pub accounts: Vec<Account>,
    /// The ID token signing algorithm (the Node provider only).
    pub alg: Alg,
    /// HTTPS, or plain HTTP when `None`.
    pub tls: Option<Tls>,
}

impl Config {
    /// One client with one redirect URI, no accounts yet, ES256.
    pub fn new(client_id: &str, client_secret: &str, redirect_uri: &str) -> Self {
        Self {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            redirect_uris: vec![redirect_uri.to_owned()],
            accounts: Vec::new(),
            alg: Alg::Es256,
            tls: None,
        }
    }

    /// Adds an account.
    pub fn account(mut self, account: Account) -> Self {
        self.accounts.push(account);
        self
    }

    /// Signs ID tokens with `alg` (the Node provider only).
    pub fn alg(mut self, alg: Alg) -> Self {
        self.alg = alg;
        self
    }

    /// Serves HTTPS with `tls` (issuer `https://localhost:{port}`).
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The JSON upstream.mjs reads; the TLS files are written to `dir`.
    fn to_json(&self, dir: &std::path::Path) -> serde_json::Value {
        let accounts: Vec<_> = self
            .accounts
            .iter()
            .map(|a| {
                json!({"sub": a.sub, "email": a.email, "email_verified": a.email_verified, "name": a.name})
            })
            .collect();
        let tls = self.tls.as_ref().map(|tls| {
            let (cert_file, key_file) = (dir.join("tls.crt"), dir.join("tls.key"));
            std::fs::write(&cert_file, &tls.chain_pem).unwrap();
            std::fs::write(&key_file, &tls.key_pem).unwrap();
            json!({"cert_file": cert_file, "key_file": key_file})
        });
        json!({
            "tls": tls,
            "client": {
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "redirect_uris": self.redirect_uris,
            },
            "alg": self.alg.as_str(),
            "accounts": accounts,
        })
    }
}

enum Running {
    /// The process and the file its stderr goes to.
    Node(Child, tempfile::TempDir),
    Rogue(rogue::Server),
}

/// A running upstream provider; stopped when dropped.
pub struct Upstream {
    /// `http://127.0.0.1:{port}` (`https://localhost:{port}` with TLS): discovery is at
    /// `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    /// What it was started with.
    pub config: Config,
    /// What the Node provider printed when ready (its `oidc_provider` and `node` versions);
    /// `null` for the rogue one.
    pub about: serde_json::Value,
    running: Running,
}

/// The Node 22 that `npm ci` in e2e/node installs (npm's `node` package, as bench/op):
/// oidc-provider supports Node 22 and later LTS releases only.
pub fn node_binary() -> PathBuf {
    repo_root().join("e2e/node/node_modules/.bin/node")
}

/// Why the Node provider cannot run here, if it cannot: a test prints it with
/// [`crate::skipped`] and passes.
pub fn node_skip_reason() -> Option<String> {
    let package = repo_root().join("e2e/node/node_modules/oidc-provider/package.json");
    if !package.is_file() {
        return Some(format!(
            "{} is missing: run `npm ci` in e2e/node (scripts/test.sh does)",
            package.display()
        ));
    }
    match Command::new(node_binary()).arg("--version").output() {
        Ok(out) if out.status.success() => None,
        _ => Some(format!(
            "{} does not run: run `npm ci` in e2e/node (it installs Node 22 from npm's `node` package)",
            node_binary().display()
        )),
    }
}

/// Whether a missing Node provider fails the test: in CI (`CI` set, as the sealed crate's
/// interop test decides) or when `PORTCULLIS_REQUIRE_NODE=1`.
pub fn node_required(ci: Option<&str>, require_node: Option<&str>) -> bool {
    ci.is_some() || require_node == Some("1")
}

/// The Node provider started with `config`, or `None` after a loud SKIPPED line naming `what`
/// when it cannot run here; a panic instead when it is required ([`node_required`]): the
/// certified provider is what the social-login requirement names, so CI must not go green
/// without it.
pub fn node_or_skip(config: &Config, what: &str) -> Option<Upstream> {
    let Some(reason) = node_skip_reason() else {
        return Some(Upstream::start_node(config));
    };
    let ci = std::env::var("CI").ok();
    let flag = std::env::var("PORTCULLIS_REQUIRE_NODE").ok();
    assert!(
        !node_required(ci.as_deref(), flag.as_deref()),
        "{what}: the Node upstream provider cannot run: {reason} \
         (required: CI or PORTCULLIS_REQUIRE_NODE=1 is set)"
    );
    crate::skipped(what, &reason);
    None
}

impl Upstream {
    /// Starts `e2e/node/upstream.mjs` (oidc-provider) with `config` on a free port and waits
    /// until it prints its issuer. Check [`node_skip_reason`] first.
    pub fn start_node(config: &Config) -> Self {
        let work = tempfile::tempdir().unwrap();
        let stderr = work.path().join("stderr");
        let mut child = Command::new(node_binary())
            .arg("upstream.mjs")
            .arg("0")
            .arg(config.to_json(work.path()).to_string())
            .current_dir(repo_root().join("e2e/node"))
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", node_binary().display()));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut stdout = BufReader::new(stdout);
            let mut line = String::new();
            let _ = stdout.read_line(&mut line);
            let _ = tx.send(line);
            // oidc-provider writes notices to stdout too: keep reading, or a write kills it.
            let _ = std::io::copy(&mut stdout, &mut std::io::sink());
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        let Ok(about) = serde_json::from_str::<serde_json::Value>(&line) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "upstream.mjs did not print its issuer (got {line:?}); its stderr:\n{}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        };
        let issuer = about["issuer"].as_str().unwrap().to_owned();
        Self {
            issuer,
            config: config.clone(),
            about,
            running: Running::Node(child, work),
        }
    }

    /// Starts the rogue provider ([`rogue`]) with `config`, misbehaving as `misbehaviour`
    /// says, on a free port, in a thread of its own (whatever the test's runtime does).
    pub fn start_rogue(config: &Config, misbehaviour: Misbehaviour) -> Self {
        let server = rogue::Server::start(config.clone(), misbehaviour);
        Self {
            issuer: server.issuer.clone(),
            config: config.clone(),
            about: serde_json::Value::Null,
            running: Running::Rogue(server),
        }
    }

    /// How many times the rogue provider's JWKS was fetched; `None` for the Node provider.
    pub fn jwks_fetches(&self) -> Option<usize> {
        match &self.running {
            Running::Rogue(server) => Some(server.jwks_fetches()),
            Running::Node(..) => None,
        }
    }

    /// An HTTP client for this provider: trusting its CA when it serves HTTPS, following no
    /// redirects, as [`sign_in`] needs.
    pub fn http(&self) -> reqwest::Client {
        // reqwest is built without a default TLS provider: ring, as everywhere here.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        if let Some(tls) = &self.config.tls {
            let ca = reqwest::Certificate::from_pem(tls.ca_pem.as_bytes()).unwrap();
            builder = builder.tls_certs_only([ca]);
        }
        builder.build().unwrap()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        match &mut self.running {
            Running::Node(child, work) => {
                let _ = child.kill();
                let _ = child.wait();
                if std::thread::panicking() {
                    let log =
                        std::fs::read_to_string(work.path().join("stderr")).unwrap_or_default();
                    eprintln!("upstream.mjs stderr:\n{log}");
                }
            }
            Running::Rogue(server) => server.stop(),
        }
    }
}

/// Where [`sign_in`] ended: the redirect to the relying party's `redirect_uri`.
#[derive(Debug)]
pub struct Callback {
    /// The whole URL, as the browser would be sent to it.
    pub url: Url,
    /// Its query parameters (`code`, `state`, `iss`, or `error`, ...).
    pub params: HashMap<String, String>,
}

/// The upstream login step of a browser, over HTTP: GETs `authorization_url` and follows the
/// redirects (keeping each host's cookies), answering the provider's `/interaction/{id}` with
/// `login={sub}`, until a redirect leads to `redirect_uri` (same origin and path); returns
/// that redirect without following it. `http` must follow no redirects ([`Upstream::http`],
/// or `Realm::http` when the chain starts at the realm). Panics, saying where, when the chain
/// ends anywhere else.
pub async fn sign_in(
    http: &reqwest::Client,
    authorization_url: &str,
    sub: &str,
    redirect_uri: &str,
) -> Callback {
    let target = Url::parse(redirect_uri).unwrap();
    let mut url = Url::parse(authorization_url).unwrap();
    // Cookies by host:port; a test provider needs no finer paths or expiry.
    let mut jar: HashMap<String, HashMap<String, String>> = HashMap::new();
    for _ in 0..20 {
        if url.origin() == target.origin() && url.path() == target.path() {
            let params = url.query_pairs().into_owned().collect();
            return Callback { url, params };
        }
        let interaction = url
            .path()
            .strip_prefix("/interaction/")
            .is_some_and(|uid| !uid.is_empty() && !uid.contains('/'));
        if interaction && !url.query_pairs().any(|(k, _)| k == "login") {
            url.query_pairs_mut().append_pair("login", sub);
        }
        let host = format!(
            "{}:{}",
            url.host_str().unwrap_or(""),
            url.port_or_known_default().unwrap_or(0)
        );
        let cookies = jar.entry(host).or_default();
        let mut request = http.get(url.clone());
        if !cookies.is_empty() {
            let header: Vec<String> = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            request = request.header(reqwest::header::COOKIE, header.join("; "));
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("upstream sign-in: GET {url}: {e:?}"));
        for set in response.headers().get_all(reqwest::header::SET_COOKIE) {
            let set = set.to_str().unwrap_or("");
            let pair = set.split(';').next().unwrap_or("");
            if let Some((name, value)) = pair.split_once('=') {
                let expired = value.is_empty()
                    || set.to_ascii_lowercase().contains("max-age=0")
                    || set.contains("1970");
                if expired {
                    cookies.remove(name.trim());
                } else {
                    cookies.insert(name.trim().to_owned(), value.to_owned());
                }
            }
        }
        let status = response.status();
        let Some(location) = response.headers().get(reqwest::header::LOCATION) else {
            let body = response.text().await.unwrap_or_default();
            panic!("upstream sign-in: GET {url} answered {status} without a redirect:\n{body}");
        };
        assert!(
            status.is_redirection(),
            "upstream sign-in: GET {url} answered {status}"
        );
        url = url.join(location.to_str().unwrap()).unwrap();
    }
    panic!("upstream sign-in: more than 20 redirects, the last to {url}");
}
