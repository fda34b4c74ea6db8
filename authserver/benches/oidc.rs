//! OpenID Connect benchmark: prints figures, asserts nothing. Needs no servers: the auth server
//! runs in this process on the in-memory stores (client credentials touch no store;
//! introspection reads the revocation keys). Run: `cargo bench -p portcullis-authserver --bench
//! oidc`.
//!
//! 1. bare ES256 signatures per second of the signing code (`KeyRing::sign`), one thread: the
//!    physical limit of a grant;
//! 2. client-credentials grants per second over HTTP (32 connections, Basic auth), p50 and p99;
//! 3. introspections per second of one access token, p50 and p99;
//! 4. the process's peak RSS (server and load generator together).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // a benchmark binary
#![allow(clippy::disallowed_methods)] // a benchmark measures real time

use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_authserver::auth::keys::SigningKey;
use portcullis_authserver::auth::tokens::{AccessClaims, KeyRing};
use portcullis_authserver::startup::{self, ServiceParts, secrets_dir};
use portcullis_authserver::store::Db;
use portcullis_authserver::store::kv::Kv;
use portcullis_authserver::{http, wiring};
use portcullis_crds::{RealmSettings, parse_manifests};

const CONFIG: &str = "apiVersion: portcullis.dev/v1alpha1
kind: AuthRealm
metadata: {name: bench}
spec:
  issuer: http://localhost
  database: {secretRef: {name: db}}
  passwordPolicy: {breachCheck: {mode: Disabled}}
  emailVerification: {required: false}
---
apiVersion: portcullis.dev/v1alpha1
kind: AuthClient
metadata: {name: bench}
spec:
  realmRef: {name: bench}
  clientId: bench
  type: Confidential
  grantTypes: [client_credentials]
  scopes: [api]
";

const CONNECTIONS: usize = 32;
const RUN: Duration = Duration::from_secs(5);

fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index].as_secs_f64() * 1000.0
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Sends `build()` from `CONNECTIONS` tasks for `RUN`; returns requests per second, p50, p99.
async fn load(
    build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync + 'static,
) -> (f64, f64, f64) {
    let build = Arc::new(build);
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let build = build.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut samples = Vec::new();
                while started.elapsed() < RUN {
                    let t = Instant::now();
                    let response = build(&client).send().await.unwrap();
                    assert_eq!(response.status(), 200);
                    response.bytes().await.unwrap();
                    samples.push(t.elapsed());
                }
                samples
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    (rate, percentile(&mut all, 0.5), percentile(&mut all, 0.99))
}

#[tokio::main]
async fn main() {
    portcullis_authserver::install_crypto_provider();
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let (clock, random) = (wiring::system_clock(), wiring::os_random());

    // 1. Bare signatures.
    let ring = KeyRing::new(
        &[SigningKey::generate(&random, clock.now())],
        wiring::signing_random(),
    )
    .unwrap();
    let claims = AccessClaims {
        iss: "http://localhost".into(),
        sub: "bench".into(),
        aud: "http://localhost".into(),
        exp: 2_000_000_000,
        iat: 1_900_000_000,
        nbf: 1_900_000_000,
        jti: uuid::Uuid::nil().to_string(),
        sid: None,
        gid: None,
        client_id: Some("bench".into()),
        scope: "api".into(),
        auth_time: None,
        acr: None,
        amr: Vec::new(),
    };
    let started = Instant::now();
    let mut signed = 0u64;
    while started.elapsed() < Duration::from_secs(2) {
        std::hint::black_box(ring.sign("at+jwt", &claims).unwrap());
        signed += 1;
    }
    let signs = signed as f64 / started.elapsed().as_secs_f64();

    // The server, on the in-memory stores.
    let settings = RealmSettings::from_manifests(&parse_manifests(CONFIG).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (secrets, _) =
        secrets_dir::load(dir.path(), &settings, Some((&random, clock.now()))).unwrap();
    let secret = secrets.client_secrets["bench"].clone();
    let service = startup::build(ServiceParts {
        settings,
        secrets,
        db: Db::memory(),
        kv: Kv::memory(clock.clone()),
        clock,
        random,
        mail_dir: Some(dir.path().join("mail")),
        breach_list: None,
        hash_permits: 1,
        rate_limiting: false,
        webhook_loopback: true,
    })
    .unwrap();
    let public = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", public.local_addr().unwrap());
    let listeners = http::Listeners {
        public,
        public_tls: None,
        admin: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        metrics: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    };
    tokio::spawn(http::serve(
        service.state,
        listeners,
        http::ServeLimits::default(),
        std::future::pending(),
    ));

    let token_url = format!("{base}/oauth2/token");
    let secret_for_grants = secret.clone();
    let (grants, grant_p50, grant_p99) = load(move |client| {
        client
            .post(&token_url)
            .basic_auth("bench", Some(&secret_for_grants))
            .form(&[("grant_type", "client_credentials")])
    })
    .await;

    let token: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/oauth2/token"))
        .basic_auth("bench", Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = token["access_token"].as_str().unwrap().to_owned();
    let introspect_url = format!("{base}/oauth2/introspect");
    let (introspections, intro_p50, intro_p99) = load(move |client| {
        client
            .post(&introspect_url)
            .basic_auth("bench", Some(&secret))
            .form(&[("token", access.as_str())])
    })
    .await;

    println!(
        "Portcullis OpenID Connect benchmark ({cores} cores, release build, in-memory stores; server and load generator share the cores)"
    );
    println!("bare ES256 signatures, one thread      {signs:8.0} /s");
    println!(
        "client_credentials grants, {CONNECTIONS} conns   {grants:8.0} /s  p50 {grant_p50:.2} ms  p99 {grant_p99:.2} ms"
    );
    println!(
        "introspections, {CONNECTIONS} conns              {introspections:8.0} /s  p50 {intro_p50:.2} ms  p99 {intro_p99:.2} ms"
    );
    println!(
        "peak RSS of this process                {:8.1} MB",
        peak_rss_mb()
    );
}
