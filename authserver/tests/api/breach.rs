//! The breach check against a local server speaking the HaveIBeenPwned range format.

use std::time::Duration;

use axum::extract::Path;
use axum::routing::get;
use portcullis_authserver::auth::breach::sha1_hex;
use portcullis_crds::GoDuration;
use portcullis_crds::realm::{BreachCheckMode, FailurePolicy};
use sqlx::PgPool;

use crate::support::*;

/// A range server that knows `breached` and answers after `delay`; returns its base URL and
/// counts requests with padding asked for.
async fn range_server(
    breached: &'static str,
    delay: Duration,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let padded = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = padded.clone();
    let app = axum::Router::new().route(
        "/range/{prefix}",
        get(
            move |Path(prefix): Path<String>, headers: axum::http::HeaderMap| {
                let counter = counter.clone();
                async move {
                    tokio::time::sleep(delay).await;
                    if headers.get("add-padding").and_then(|v| v.to_str().ok()) == Some("true") {
                        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    let hash = sha1_hex(breached);
                    let mut body = String::from("0000000000000000000000000000000000A:0\r\n");
                    if hash.starts_with(&prefix) {
                        body.push_str(&format!("{}:42\r\n", &hash[5..]));
                    }
                    body.push_str("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF:0\r\n");
                    body
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, padded)
}

fn online(url: String, policy: FailurePolicy, timeout: &str) -> Options {
    let timeout = GoDuration::parse(timeout).unwrap();
    Options::spec(move |s| {
        let check = &mut s.password_policy.breach_check;
        check.mode = BreachCheckMode::Online;
        check.api_url = url;
        check.failure_policy = policy;
        check.timeout = timeout;
    })
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_breached_password_is_refused_and_a_clean_one_accepted(pool: PgPool) {
    let (url, padded) = range_server(PASSWORD, Duration::ZERO).await;
    let server = start(pool, online(url, FailurePolicy::Closed, "2s")).await;
    let breached = server.register("alice@example.com", PASSWORD).await;
    assert_eq!(breached.status, 400);
    assert_eq!(breached.violation_codes(), ["password_breached"]);
    assert_eq!(
        server
            .register("alice@example.com", OTHER_PASSWORD)
            .await
            .status,
        201
    );
    assert_eq!(
        padded.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "every lookup asks for padding"
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_timeout_fails_open_when_the_realm_says_open(pool: PgPool) {
    let (url, _) = range_server(PASSWORD, Duration::from_secs(3)).await;
    let server = start(pool, online(url, FailurePolicy::Open, "200ms")).await;
    let started = std::time::Instant::now();
    assert_eq!(
        server.register("alice@example.com", PASSWORD).await.status,
        201
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the timeout bounds the wait"
    );
    let metrics = server
        .http
        .get(format!("{}/metrics", server.metrics))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("portcullis_breach_check_failures_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("portcullis_breach_checks_total{context=\"register\",result=\"error\"} 1"),
        "{metrics}"
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_timeout_fails_closed_when_the_realm_says_closed(pool: PgPool) {
    let (url, _) = range_server(PASSWORD, Duration::from_secs(3)).await;
    let server = start(pool, online(url, FailurePolicy::Closed, "200ms")).await;
    let answer = server.register("alice@example.com", OTHER_PASSWORD).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.violation_codes(), ["breach_check_unavailable"]);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn password_change_and_reset_are_breach_checked_too(pool: PgPool) {
    let (url, _) = range_server(OTHER_PASSWORD, Duration::ZERO).await;
    let server = start(pool, online(url, FailurePolicy::Closed, "2s")).await;
    let login = server.user("alice@example.com").await;
    let change = server
        .call(
            reqwest::Method::POST,
            "/api/v1/me/password",
            Some(serde_json::json!({"current_password": PASSWORD, "new_password": OTHER_PASSWORD})),
            &cookie(&login),
        )
        .await;
    assert_eq!(change.violation_codes(), ["password_breached"]);
    server.request_reset("alice@example.com").await;
    let token = server.mailed_code("Reset code:").await;
    let reset = server.confirm_reset(&token, OTHER_PASSWORD).await;
    assert_eq!(reset.violation_codes(), ["password_breached"]);
}
