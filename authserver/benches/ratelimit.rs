//! What the rate limits cost over HTTP: prints figures, asserts nothing but 200s. A cheap
//! authenticated route, `GET /api/v1/me` with a bearer token (a revocation lookup in Redis),
//! served in this process (32 connections, 5 s each) three ways: limits off; on with the
//! buckets in Redis (`REDIS_URL`, as `scripts/bench.sh` starts it); on with the buckets in
//! this process. Limits on means one
//! decision per request, `(All, Ip)`, raised so the load is never refused; for Redis the
//! EVALSHA calls per request are read from `INFO commandstats` (expected: 1.00).
//! Run: `scripts/bench.sh`, or `cargo bench -p portcullis-authserver --bench ratelimit` with
//! `REDIS_URL` set.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // a benchmark binary
#![allow(clippy::disallowed_methods)] // a benchmark measures real time

use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_authserver::startup::{self, ServiceParts, secrets_dir};
use portcullis_authserver::store::Db;
use portcullis_authserver::store::kv::Kv;
use portcullis_authserver::{http, wiring};
use portcullis_crds::{RealmSettings, parse_manifests};

const REALM: &str = "apiVersion: portcullis.dev/v1alpha1
kind: AuthRealm
metadata: {name: bench}
spec:
  issuer: http://localhost
  database: {secretRef: {name: db}}
  passwordPolicy: {bcryptCost: 10, breachCheck: {mode: Disabled}}
  emailVerification: {required: false}
  privacy:
    policyVersion: \"1\"
    purposes:
      - {name: account, required: true, description: Run the account.}
";

/// `spec.redis`, so that the merged backend is Redis.
const WITH_REDIS: &str = "  redis: {secretRef: {name: redis}}\n";

/// One decision per request that never refuses this load.
const POLICY: &str = "---
apiVersion: portcullis.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: bench}
spec:
  targetRef: {kind: AuthRealm, name: bench}
  rules:
    - name: all
      routes: [All]
      limits: [{key: Ip, requests: 1000000, period: 1s, burst: 1000000}]
";

const CONNECTIONS: usize = 32;
const RUN: Duration = Duration::from_secs(5);
const PASSWORD: &str = "Tangerine-Orbit-42-Quiet";

fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index].as_secs_f64() * 1000.0
}

/// How the server is set up.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Case {
    Off,
    Redis,
    Local,
}

/// Serves the realm in this process; returns its base URL.
async fn serve(case: Case, redis_url: &str) -> String {
    let mut yaml = REALM.to_owned();
    if case == Case::Redis {
        yaml.push_str(WITH_REDIS);
    }
    yaml.push_str(POLICY);
    let settings = RealmSettings::from_manifests(&parse_manifests(&yaml).unwrap()).unwrap();
    let (clock, random) = (wiring::system_clock(), wiring::os_random());
    let dir = tempfile::tempdir().unwrap().keep();
    let (secrets, _) = secrets_dir::load(&dir, &settings, Some((&random, clock.now()))).unwrap();
    // Sessions and revocations in Redis in every case, as in production: the cases differ
    // only in the limiter.
    let prefix = format!("bench:{}:", uuid::Uuid::new_v4());
    let kv = Kv::redis(redis_url, &prefix).await.unwrap();
    let service = startup::build(ServiceParts {
        settings,
        secrets,
        db: Db::memory(),
        kv,
        clock,
        random,
        mail_dir: Some(dir.join("mail")),
        breach_list: None,
        hash_permits: 2,
        rate_limiting: case != Case::Off,
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
    base
}

/// Registers an account and logs it in; returns its access token.
async fn bearer(base: &str) -> String {
    let client = reqwest::Client::new();
    let registered = client
        .post(format!("{base}/api/v1/register"))
        .json(
            &serde_json::json!({"email": "bench@example.com", "password": PASSWORD,
            "policy_version": "1", "consents": {"account": true}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);
    let login: serde_json::Value = client
        .post(format!("{base}/api/v1/login"))
        .json(&serde_json::json!({"email": "bench@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    login["access_token"].as_str().unwrap().to_owned()
}

/// `GET /api/v1/me` from `CONNECTIONS` tasks for `RUN`: requests, per second, p50, p99 (ms).
async fn load(base: &str, token: &str) -> (usize, f64, f64, f64) {
    let url = Arc::new(format!("{base}/api/v1/me"));
    let token = Arc::new(token.to_owned());
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (url, token) = (url.clone(), token.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut samples = Vec::new();
                while started.elapsed() < RUN {
                    let t = Instant::now();
                    let response = client
                        .get(url.as_str())
                        .bearer_auth(token.as_str())
                        .send()
                        .await
                        .unwrap();
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
    (
        all.len(),
        rate,
        percentile(&mut all, 0.5),
        percentile(&mut all, 0.99),
    )
}

/// `calls=` of `cmdstat_evalsha` in the server's `INFO commandstats`.
async fn evalsha_calls(redis_url: &str) -> u64 {
    let client = redis::Client::open(redis_url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::main]
async fn main() {
    portcullis_authserver::install_crypto_provider();
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let redis_url = std::env::var("REDIS_URL")
        .expect("REDIS_URL must point at a Redis server (scripts/bench.sh starts one)");
    println!(
        "Portcullis rate-limit benchmark: GET /api/v1/me with a bearer token ({cores} cores, release build, {CONNECTIONS} connections, {} s each; server and load generator share the cores)",
        RUN.as_secs()
    );
    for (case, name) in [
        (Case::Off, "limits off        "),
        (Case::Redis, "limits on, Redis  "),
        (Case::Local, "limits on, Local  "),
    ] {
        let base = serve(case, &redis_url).await;
        let token = bearer(&base).await;
        let before = evalsha_calls(&redis_url).await;
        let (requests, rate, p50, p99) = load(&base, &token).await;
        let evalsha = evalsha_calls(&redis_url).await - before;
        println!(
            "{name} {rate:8.0} /s  p50 {p50:.2} ms  p99 {p99:.2} ms  EVALSHA per request {:.2}",
            evalsha as f64 / requests as f64
        );
    }
}
