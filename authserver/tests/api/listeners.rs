//! The listeners under idle, slow and many connections: timeouts close what sends nothing, a
//! cap bounds the public listener, and the admin and metrics listeners keep answering.

use std::time::{Duration, Instant};

use portcullis_authserver::http::{ConnectionLimits, RequestLimits, ServeLimits};
use portcullis_crds::GoDuration;
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

async fn connect(base: &str) -> TcpStream {
    TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Reads until the server closes the connection or `within` passes; returns what was read and
/// whether it closed.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, bool) {
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(within, stream.read_to_end(&mut answer))
        .await
        .is_ok();
    (String::from_utf8_lossy(&answer).into_owned(), closed)
}

fn with_limits(limits: ServeLimits) -> Options {
    Options {
        limits,
        ..Options::default()
    }
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn an_idle_connection_is_closed_after_the_header_timeout(pool: PgPool) {
    let quick = ConnectionLimits {
        header_timeout: Duration::from_millis(500),
        ..ConnectionLimits::PUBLIC
    };
    let server = start(
        pool,
        with_limits(ServeLimits {
            public: quick,
            ..ServeLimits::default()
        }),
    )
    .await;
    let started = Instant::now();
    let mut idle = connect(&server.base).await;
    let (_, closed) = read_until_closed(&mut idle, Duration::from_secs(5)).await;
    assert!(closed, "an idle connection stayed open");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // A request head sent one byte at a time, slower than the timeout allows.
    let mut slow = connect(&server.base).await;
    for byte in b"GET /.well-known/jwks.json HTTP/1.1\r\n" {
        if slow.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(3)).await;
    assert!(closed, "a slow request head kept its connection");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_request_head_larger_than_the_read_buffer_is_refused(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let mut stream = connect(&server.base).await;
    let head = format!(
        "GET /.well-known/jwks.json HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "v".repeat(64 * 1024)
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let (answer, closed) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(closed, "the connection stayed open");
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_body_that_stalls_answers_408_in_the_problem_format(pool: PgPool) {
    let server = start(
        pool,
        with_limits(ServeLimits {
            requests: RequestLimits {
                body_timeout: Duration::from_millis(300),
                ..RequestLimits::default()
            },
            ..ServeLimits::default()
        }),
    )
    .await;
    let mut stream = connect(&server.base).await;
    let head = "POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"email\":";
    stream.write_all(head.as_bytes()).await.unwrap();
    let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_request_that_takes_too_long_answers_503_in_the_problem_format(pool: PgPool) {
    let mut options = Options::spec(|s| {
        s.lockout.progressive_delay.after_failures = 1;
        s.lockout.progressive_delay.base = GoDuration::parse("5s").unwrap();
        s.lockout.progressive_delay.max = GoDuration::parse("5s").unwrap();
    });
    options.limits.requests.request_timeout = Duration::from_millis(500);
    let server = start(pool, options).await;
    server.login("alice@example.com", PASSWORD).await;
    let started = Instant::now();
    let delayed = server.login("alice@example.com", PASSWORD).await;
    assert_eq!(
        (delayed.status, delayed.code()),
        (503, "server_timeout"),
        "{delayed:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(delayed.header("retry-after").is_some());
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_full_public_listener_leaves_health_and_metrics_answering(pool: PgPool) {
    let capped = ConnectionLimits {
        max_connections: 4,
        header_timeout: Duration::from_secs(30),
        ..ConnectionLimits::PUBLIC
    };
    let server = start(
        pool,
        with_limits(ServeLimits {
            public: capped,
            ..ServeLimits::default()
        }),
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..capped.max_connections {
        held.push(connect(&server.base).await);
    }
    // Let the server take the held connections before the next one arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut waiting = connect(&server.base).await;
    waiting
        .write_all(b"GET /.well-known/jwks.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (answer, _) = read_until_closed(&mut waiting, Duration::from_millis(500)).await;
    assert!(answer.is_empty(), "a fifth connection was served: {answer}");
    for url in [
        format!("{}/healthz", server.admin),
        format!("{}/metrics", server.metrics),
    ] {
        let started = Instant::now();
        let response = server.http.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        assert!(started.elapsed() < Duration::from_secs(1), "{url}");
    }
    // A held connection ends: the waiting one is served.
    drop(held.pop());
    let (answer, _) = read_until_closed(&mut waiting, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
