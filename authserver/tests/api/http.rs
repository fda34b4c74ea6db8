//! Cross-cutting HTTP behaviour: security headers, the body limit, health and readiness.

use reqwest::Method;
use serde_json::json;
use sqlx::PgPool;

use crate::support::*;

const SECURITY_HEADERS: [(&str, &str); 8] = [
    (
        "strict-transport-security",
        "max-age=31536000; includeSubDomains",
    ),
    (
        "content-security-policy",
        "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    ),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "strict-origin-when-cross-origin"),
    ("x-xss-protection", "0"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cache-control", "no-store"),
];

fn assert_security_headers(answer: &Answer) {
    for (name, value) in SECURITY_HEADERS {
        assert_eq!(
            answer.header(name),
            Some(value),
            "{name} on a {} answer",
            answer.status
        );
    }
    assert!(answer.header("permissions-policy").is_some());
    assert!(answer.header("x-request-id").is_some());
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn security_headers_are_on_200_4xx_and_5xx_answers(pool: PgPool) {
    let server = start(pool.clone(), Options::default()).await;
    let ok = server.register("alice@example.com", PASSWORD).await;
    assert_eq!(ok.status, 201);
    assert_security_headers(&ok);
    for answer in [
        server.get("/api/v1/me", &Cred::None).await,
        server.get("/no/such/route", &Cred::None).await,
        server
            .call(Method::DELETE, "/api/v1/login", None, &Cred::None)
            .await,
    ] {
        assert!((400..500).contains(&answer.status), "{answer:?}");
        assert_security_headers(&answer);
        assert_eq!(
            answer.header("content-type"),
            Some("application/problem+json")
        );
    }
    pool.close().await;
    let failed = server.login("alice@example.com", PASSWORD).await;
    assert_eq!((failed.status, failed.code()), (503, "service_unavailable"));
    assert_security_headers(&failed);
    assert!(
        !failed.body.to_string().contains("pool"),
        "no internal detail: {}",
        failed.body
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn unknown_routes_and_methods_answer_in_the_problem_format(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let missing = server.get("/nope", &Cred::None).await;
    assert_eq!((missing.status, missing.code()), (404, "not_found"));
    let method = server
        .call(Method::GET, "/api/v1/login", None, &Cred::None)
        .await;
    assert_eq!((method.status, method.code()), (405, "method_not_allowed"));
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn bodies_over_64_kib_answer_413(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let big = json!({"email": "a@example.com", "password": "x".repeat(70 * 1024)});
    let declared = server.post("/api/v1/login", big.clone()).await;
    assert_eq!(
        (declared.status, declared.code()),
        (413, "payload_too_large")
    );
    assert_security_headers(&declared);
    // Without Content-Length (chunked), the extractor stops at the limit.
    let status_line = chunked_post(
        &server.base,
        "/api/v1/login",
        &serde_json::to_vec(&big).unwrap(),
    )
    .await;
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
    let just_under = json!({"email": "a@example.com", "password": "x".repeat(60 * 1024)});
    assert_eq!(server.post("/api/v1/login", just_under).await.status, 401);
}

/// Sends a body with `Transfer-Encoding: chunked` over a raw connection; returns the status
/// line. The server may answer before the body is complete, so write errors are ignored.
async fn chunked_post(base: &str, path: &str, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let _ = stream.write_all(head.as_bytes()).await;
    for chunk in body.chunks(8 * 1024) {
        let _ = stream
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await;
        let _ = stream.write_all(chunk).await;
        let _ = stream.write_all(b"\r\n").await;
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn health_and_readiness_are_on_the_admin_listener(pool: PgPool) {
    let server = start(pool.clone(), Options::default()).await;
    let health = read(
        server
            .http
            .get(format!("{}/healthz", server.admin))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(health.status, 200);
    let ready = read(
        server
            .http
            .get(format!("{}/readyz", server.admin))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(ready.status, 200, "{ready:?}");
    assert_eq!(
        ready.body["checks"],
        json!({"database": "ok", "session_store": "ok"})
    );
    assert_eq!(
        server.get("/healthz", &Cred::None).await.status,
        404,
        "not on the public listener"
    );
    sqlx::query("DELETE FROM _sqlx_migrations")
        .execute(&pool)
        .await
        .unwrap();
    let pending = read(
        server
            .http
            .get(format!("{}/readyz", server.admin))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(pending.status, 503);
    assert_eq!(pending.body["checks"]["database"], "migrations pending");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn metrics_count_logins_and_requests(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    server.user("alice@example.com").await;
    server.login("alice@example.com", OTHER_PASSWORD).await;
    let text = server
        .http
        .get(format!("{}/metrics", server.metrics))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("portcullis_login_successes_total 1"),
        "{text}"
    );
    assert!(
        text.contains("portcullis_login_failures_total{reason=\"invalid_credentials\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("portcullis_http_requests_total{route=\"/api/v1/login\",status=\"401\"} 1"),
        "{text}"
    );
    let age = text
        .lines()
        .find_map(|l| l.strip_prefix("portcullis_signing_key_age_seconds "))
        .expect("the active key's age is exported");
    assert!(
        age.parse::<i64>().unwrap() < 60,
        "a key generated for this test is new: {age}"
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn metrics_are_served_on_their_own_listener_only(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let on_admin = read(
        server
            .http
            .get(format!("{}/metrics", server.admin))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        on_admin.status, 404,
        "the monitoring namespace must not need the admin listener"
    );
    for path in ["/healthz", "/admin/v1/users?email=a@example.com"] {
        let answer = read(
            server
                .http
                .get(format!("{}{path}", server.metrics))
                .bearer_auth(&server.admin_token)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(answer.status, 404, "{path} on the metrics listener");
    }
    let metrics = server
        .http
        .get(format!("{}/metrics", server.metrics))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn the_server_describes_itself_in_openapi_3_1(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let doc = server.get("/openapi.json", &Cred::None).await;
    assert_eq!(doc.status, 200);
    assert_eq!(doc.body["openapi"], "3.1.0");
    assert_eq!(doc.body["servers"][0]["url"], "http://auth.localhost");
    let paths = doc.body["paths"].as_object().unwrap();
    assert!(paths["/api/v1/login"]["post"]["responses"]["429"].is_object());
    // Every documented operation is routed (never the fallback 404 or a 405).
    for (path, operations) in paths {
        for method in operations.as_object().unwrap().keys() {
            let concrete = path.replace("{id}", "00000000000000000000000000000000");
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let answer = server
                .call(method.clone(), &concrete, None, &Cred::None)
                .await;
            assert_ne!(answer.status, 405, "{method} {path}");
            assert!(
                !(answer.status == 404 && answer.body["detail"] == "no such resource"),
                "{method} {path} is not routed"
            );
        }
    }
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_path_segment_that_is_not_utf8_answers_in_the_problem_format(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let login = server.user("alice@example.com").await;
    let session = server
        .call(
            Method::DELETE,
            "/api/v1/me/sessions/%ff%fe",
            None,
            &cookie(&login),
        )
        .await;
    let admin = server
        .admin_call(Method::POST, "/admin/v1/users/%ff/unlock")
        .await;
    for answer in [session, admin] {
        assert_eq!(answer.status, 400, "{answer:?}");
        assert_eq!(
            answer.header("content-type"),
            Some("application/problem+json"),
            "{answer:?}"
        );
        assert_eq!(answer.code(), "invalid_path");
    }
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_bad_admin_query_answers_in_the_problem_format(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    for query in ["", "?email=a@example.com&email=b@example.com", "?mail=x"] {
        let answer = server
            .admin_call(Method::GET, &format!("/admin/v1/users{query}"))
            .await;
        assert_eq!(answer.status, 400, "{query}: {answer:?}");
        assert_eq!(
            answer.header("content-type"),
            Some("application/problem+json"),
            "{query}"
        );
        assert_eq!(answer.code(), "invalid_query", "{query}");
    }
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_json_array_is_not_an_object_body(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    server.register("alice@example.com", PASSWORD).await;
    let answer = server
        .post("/api/v1/login", json!(["alice@example.com", PASSWORD]))
        .await;
    assert_eq!(
        (answer.status, answer.code()),
        (400, "invalid_body"),
        "{answer:?}"
    );
    assert!(answer.session_cookie().is_none());
}
