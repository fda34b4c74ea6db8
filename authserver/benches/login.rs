//! Login and token benchmark: prints figures, asserts nothing. Needs DATABASE_URL and REDIS_URL
//! (`make bench` starts throwaway servers). Run: `cargo bench -p portcullis-authserver`.
//!
//! 1. one bare bcrypt verification at the realm's cost vs a full login over HTTP (p50);
//! 2. login p50 for an unknown vs a known email (the dummy-hash defence);
//! 3. `/healthz` and JWKS p99 while logins saturate the hashing pool;
//! 4. refresh-token grants per second per core.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // a benchmark binary
#![allow(clippy::disallowed_methods)] // a benchmark measures real time

use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_authserver::startup::{self, ServiceParts, secrets_dir};
use portcullis_authserver::store::Postgres;
use portcullis_authserver::store::kv::Kv;
use portcullis_authserver::{http, wiring};
use portcullis_crds::{RealmSettings, parse_manifests};
use serde_json::{Value, json};

const PASSWORD: &str = "Tangerine-Orbit-42-Quiet";
const REALM: &str = "apiVersion: portcullis.dev/v1alpha1
kind: AuthRealm
metadata: {name: bench}
spec:
  issuer: http://bench.localhost
  database: {secretRef: {name: db}}
  passwordPolicy: {bcryptCost: 12, breachCheck: {mode: Disabled}}
  emailVerification: {required: false}
  lockout: {maxFailures: 100, progressiveDelay: {afterFailures: 0}}
  notifications: {smtp: {secretRef: {name: smtp}, from: no-reply@bench.localhost}}
";

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn post(http: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let response = http.post(url).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::main]
async fn main() {
    portcullis_authserver::install_crypto_provider();
    let base_url = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let redis_url = std::env::var("REDIS_URL").expect("REDIS_URL");
    let cores = std::thread::available_parallelism().map_or(2, usize::from);

    // A fresh database for the run.
    let admin = Postgres::connect(&base_url, 1).await.unwrap();
    let db_name = format!("portcullis_bench_{}", std::process::id());
    let pool = sqlx::PgPool::connect(&base_url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}")))
        .execute(&pool)
        .await
        .unwrap();
    let db_url = match base_url.rsplit_once('/') {
        Some((prefix, _)) => format!("{prefix}/{db_name}"),
        None => base_url.clone(),
    };
    let db = Postgres::connect(&db_url, 32).await.unwrap();
    db.migrate().await.unwrap();
    drop(admin);

    let manifests = parse_manifests(REALM).unwrap();
    let settings = RealmSettings::from_manifests(&manifests).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (clock, random) = (wiring::system_clock(), wiring::os_random());
    let (secrets, _) =
        secrets_dir::load(dir.path(), &settings, Some((&random, clock.now()))).unwrap();
    let kv = Kv::redis(&redis_url, &format!("bench:{}:", uuid::Uuid::new_v4()))
        .await
        .unwrap();
    let service = startup::build(ServiceParts {
        settings,
        secrets,
        db: db.into(),
        kv,
        clock,
        random,
        mail_dir: Some(dir.path().join("mail")),
        breach_list: None,
        hash_permits: cores,
        rate_limiting: false,
        webhook_loopback: true,
    })
    .unwrap();
    let public = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", public.local_addr().unwrap());
    let admin_base = format!("http://{}", admin_listener.local_addr().unwrap());
    let listeners = http::Listeners {
        public,
        public_tls: None,
        admin: admin_listener,
        metrics: metrics_listener,
    };
    tokio::spawn(http::serve(
        service.state,
        listeners,
        http::ServeLimits::default(),
        std::future::pending(),
    ));
    let http = reqwest::Client::new();

    let (status, _) = post(
        &http,
        format!("{base}/api/v1/register"),
        json!({"email": "bench@example.com", "password": PASSWORD, "policy_version": "1"}),
    )
    .await;
    assert_eq!(status, 201);

    println!("Portcullis auth server benchmark ({cores} cores, bcrypt cost 12, release build)");

    // 1. Bare bcrypt vs login.
    let hash = bcrypt::hash(PASSWORD, 12).unwrap();
    let mut bare = Vec::new();
    for _ in 0..15 {
        let started = Instant::now();
        assert!(bcrypt::verify(PASSWORD, &hash).unwrap());
        bare.push(started.elapsed());
    }
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for i in 0..15 {
        let started = Instant::now();
        let (status, _) = post(
            &http,
            format!("{base}/api/v1/login"),
            json!({"email": "bench@example.com", "password": PASSWORD}),
        )
        .await;
        assert_eq!(status, 200);
        known.push(started.elapsed());
        let started = Instant::now();
        let (status, _) = post(
            &http,
            format!("{base}/api/v1/login"),
            json!({"email": format!("nobody{i}@example.com"), "password": PASSWORD}),
        )
        .await;
        assert_eq!(status, 401);
        unknown.push(started.elapsed());
    }
    let bare_p50 = percentile(&mut bare, 0.5);
    let known_p50 = percentile(&mut known, 0.5);
    let unknown_p50 = percentile(&mut unknown, 0.5);
    println!("bare bcrypt verify p50        {:8.1} ms", ms(bare_p50));
    println!(
        "login (known, 200) p50        {:8.1} ms   ({:+.1}% vs bare bcrypt)",
        ms(known_p50),
        (ms(known_p50) / ms(bare_p50) - 1.0) * 100.0
    );
    println!(
        "login (unknown, 401) p50      {:8.1} ms   ({:+.1}% vs known)",
        ms(unknown_p50),
        (ms(unknown_p50) / ms(known_p50) - 1.0) * 100.0
    );

    // 3. Health and JWKS latency while logins saturate the pool.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut loaders = Vec::new();
    for i in 0..(cores * 4) {
        let (http, base, stop) = (http.clone(), base.clone(), stop.clone());
        loaders.push(tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                post(
                    &http,
                    format!("{base}/api/v1/login"),
                    json!({"email": format!("load{i}@example.com"), "password": PASSWORD}),
                )
                .await;
                n += 1;
            }
            n
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut health = Vec::new();
    let mut jwks = Vec::new();
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        let started = Instant::now();
        assert!(
            http.get(format!("{admin_base}/healthz"))
                .send()
                .await
                .unwrap()
                .status()
                .is_success()
        );
        health.push(started.elapsed());
        let started = Instant::now();
        assert!(
            http.get(format!("{base}/.well-known/jwks.json"))
                .send()
                .await
                .unwrap()
                .status()
                .is_success()
        );
        jwks.push(started.elapsed());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut logins = 0;
    for loader in loaders {
        logins += loader.await.unwrap();
    }
    println!(
        "under load ({} concurrent logins, {logins} done in ~5.5 s):",
        cores * 4
    );
    println!(
        "  /healthz p99 over {:5} req  {:8.2} ms",
        health.len(),
        ms(percentile(&mut health, 0.99))
    );
    println!(
        "  JWKS     p99 over {:5} req  {:8.2} ms",
        jwks.len(),
        ms(percentile(&mut jwks, 0.99))
    );

    // 4. Refresh grants per second per core.
    let (_, login) = post(
        &http,
        format!("{base}/api/v1/login"),
        json!({"email": "bench@example.com", "password": PASSWORD}),
    )
    .await;
    let mut refresh = login["refresh_token"].as_str().unwrap().to_owned();
    let started = Instant::now();
    let mut grants = 0u32;
    while started.elapsed() < Duration::from_secs(5) {
        let response = http
            .post(format!("{base}/oauth2/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("grant_type=refresh_token&refresh_token={refresh}"))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
        let body: Value = response.json().await.unwrap();
        refresh = body["refresh_token"].as_str().unwrap().to_owned();
        grants += 1;
    }
    let rate = f64::from(grants) / started.elapsed().as_secs_f64();
    println!(
        "refresh grants, one client    {rate:8.0} /s  ({:.0} /s per core; client, server, PostgreSQL and Redis share the {cores} cores)",
        rate / cores as f64
    );

    drop(service.hasher);
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"
    )))
    .execute(&pool)
    .await;
}
