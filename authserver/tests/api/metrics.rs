//! The metrics a real server exports: a scrape after real traffic passes `promtool check
//! metrics`, Prometheus still gets OpenMetrics, and every auth-server metric the alert rules
//! name is in the scrape (the join between `config/prometheus/alerts.yaml` and the server).

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::json;
use sqlx::PgPool;

use crate::support::{OTHER_PASSWORD, Options, TestServer, start};

/// The scrape, asking with `accept`; its `Content-Type` and body.
async fn scrape(server: &TestServer, accept: &str) -> (String, String) {
    let response = server
        .http
        .get(format!("{}/metrics", server.metrics))
        .header("accept", accept)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (content_type, response.text().await.unwrap())
}

/// A register, a login, a failed login (with an `X-Forwarded-For` from a peer that is not a
/// trusted proxy).
async fn some_traffic(server: &TestServer) {
    server.user("alice@example.com").await;
    let failed = server
        .http
        .post(format!("{}/api/v1/login", server.base))
        .header("x-forwarded-for", "198.51.100.7")
        .json(&json!({"email": "alice@example.com", "password": OTHER_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 401);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_real_scrape_passes_promtool_check_metrics(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    some_traffic(&server).await;
    let (content_type, text) = scrape(&server, "text/plain").await;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    for series in [
        "portcullis_registrations_total{outcome=\"created\"} 1",
        "portcullis_tokens_issued_total{grant=\"login\"} 1",
        "portcullis_login_failures_total{reason=\"invalid_credentials\"} 1",
        "portcullis_forwarded_for_ignored_total 1",
        "portcullis_http_request_duration_seconds_count{route=\"/api/v1/login\"} 2",
        "portcullis_password_hashing_queue_capacity 16",
        "portcullis_store_errors_total{store=\"postgres\"} 0",
    ] {
        assert!(text.contains(series), "{series} missing from\n{text}");
    }
    let Ok(mut promtool) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        eprintln!("SKIPPED: promtool is not installed; the scrape was not checked by promtool");
        return;
    };
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics refused the scrape ({}):\n{}{}\n{text}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn prometheus_asking_for_openmetrics_gets_openmetrics(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    // What Prometheus 2.x sends.
    let accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let (content_type, text) = scrape(&server, accept).await;
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(
        text.contains("# TYPE portcullis_lockouts counter\n"),
        "{text}"
    );
}

/// The `portcullis_*` metric names in the alert rules' expressions (annotation keys such as
/// `portcullis_threshold` are not metrics), without the operator's own.
fn alerted_metric_names(rules: &str) -> Vec<String> {
    let mut names: Vec<String> = rules
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("expr:"))
        .flat_map(|expr| {
            expr.match_indices("portcullis_").map(move |(start, _)| {
                expr[start..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect::<String>()
            })
        })
        .filter(|name| !name.starts_with("portcullis_operator_"))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Alerted metrics whose every label comes from config or traffic that no server has yet, so
/// they cannot appear before the step that counts them; listed with that step. Each must
/// still be missing: when its step lands, the test fails until its line goes.
const NOT_YET_COUNTED: &[(&str, &str)] = &[];

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn every_server_metric_an_alert_names_is_in_the_scrape(pool: PgPool) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/prometheus/alerts.yaml"
    );
    let rules = std::fs::read_to_string(path).unwrap();
    let names = alerted_metric_names(&rules);
    assert!(
        names.len() >= 10,
        "the expressions were not read: {names:?}"
    );
    // Limits on: the rate-limit families get their series from this traffic's decisions.
    let server = start(
        pool,
        Options {
            rate_limiting: true,
            ..Options::default()
        },
    )
    .await;
    // A running server has answered something: families with per-request labels appear once
    // they have a series.
    some_traffic(&server).await;
    let (_, text) = scrape(&server, "text/plain").await;
    let exported: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let is_exported = |name: &str| {
        exported.iter().any(|family| {
            *family == name
                || ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| name.strip_suffix(suffix) == Some(family))
        })
    };
    let missing: Vec<&String> = names
        .iter()
        .filter(|name| !is_exported(name))
        .filter(|name| !NOT_YET_COUNTED.iter().any(|(n, _)| n == name))
        .collect();
    assert!(
        missing.is_empty(),
        "alert rules name metrics the server does not export: {missing:?}\n{text}"
    );
    for (name, step) in NOT_YET_COUNTED {
        assert!(
            names.iter().any(|n| n == name),
            "{name} is no longer alerted on: drop it from NOT_YET_COUNTED"
        );
        assert!(
            !is_exported(name),
            "{name} is exported now ({step}): drop it from NOT_YET_COUNTED"
        );
    }
}
