//! The audit trail through the server, against PostgreSQL: security events land in the chain,
//! without emails, and the chain check names a row changed, inserted or deleted in SQL.

use reqwest::Method;
use serde_json::Value;
use sqlx::PgPool;

use crate::support::{OTHER_PASSWORD, Options, PASSWORD, TestServer, start};

/// A server whose trail holds a registration, a failed login and a login.
async fn with_events(pool: PgPool) -> TestServer {
    let server = start(pool, Options::default()).await;
    assert_eq!(
        server.register("alice@example.com", PASSWORD).await.status,
        201
    );
    assert_eq!(
        server
            .login("alice@example.com", OTHER_PASSWORD)
            .await
            .status,
        401
    );
    assert_eq!(
        server.login("alice@example.com", PASSWORD).await.status,
        200
    );
    server
}

async fn export(server: &TestServer) -> Vec<Value> {
    let answer = server.admin_call(Method::GET, "/admin/v1/audit").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), Some("application/jsonl"));
    let text = match answer.body {
        Value::String(text) => text,
        one => format!("{one}\n"),
    };
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn findings(server: &TestServer) -> Vec<Value> {
    let answer = server
        .admin_call(Method::GET, "/admin/v1/audit/verify")
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    answer.body["findings"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Runs `sql` as the maintenance role would: with the append-only guard switched off.
async fn tamper(pool: &PgPool, sql: &str) {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SET LOCAL portcullis.audit_maintenance = 'on'")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn registration_and_logins_are_chained_events_without_the_email(pool: PgPool) {
    let server = with_events(pool.clone()).await;
    let rows = export(&server).await;
    let kinds: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["type"].as_str().unwrap(), r["outcome"].as_str().unwrap()))
        .collect();
    for expected in [
        ("register", "success"),
        ("login_failed", "failure"),
        ("login", "success"),
    ] {
        assert!(kinds.contains(&expected), "{expected:?} in {kinds:?}");
    }
    let login = rows.iter().find(|r| r["type"] == "login").unwrap();
    assert!(login["ip"].is_string(), "{login}");
    assert_eq!(login["actor"]["kind"], "user");
    for pair in rows.windows(2) {
        assert_eq!(pair[1]["prev_hash"], pair[0]["hash"]);
    }
    // No email anywhere in the stored rows.
    let (text,): (String,) = sqlx::query_as("SELECT string_agg(t::text, ' ') FROM audit_events t")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(!text.contains("alice"), "{text}");
    assert!(findings(&server).await.is_empty());
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_row_changed_in_sql_is_named(pool: PgPool) {
    let server = with_events(pool.clone()).await;
    tamper(
        &pool,
        "UPDATE audit_events SET outcome = 'success' WHERE seq = 2",
    )
    .await;
    let found = findings(&server).await;
    assert!(
        found
            .iter()
            .any(|f| f["kind"] == "changed" && f["seq"] == 2),
        "{found:?}"
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_row_inserted_in_sql_is_named(pool: PgPool) {
    let server = with_events(pool.clone()).await;
    tamper(
        &pool,
        "CREATE TEMP TABLE forged AS SELECT * FROM audit_events WHERE seq = 1;
         UPDATE forged SET seq = 1000, event_id = gen_random_uuid();
         INSERT INTO audit_events SELECT * FROM forged;",
    )
    .await;
    let found = findings(&server).await;
    assert!(
        found
            .iter()
            .any(|f| f["kind"] == "inserted" && f["seq"] == 1000),
        "{found:?}"
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_middle_row_deleted_in_sql_is_named(pool: PgPool) {
    let server = with_events(pool.clone()).await;
    tamper(&pool, "DELETE FROM audit_events WHERE seq = 2").await;
    let found = findings(&server).await;
    assert!(
        found
            .iter()
            .any(|f| f["kind"] == "deleted" && f["first"] == 2 && f["last"] == 2),
        "{found:?}"
    );
    // The gauge follows the last check.
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
        metrics.contains("portcullis_audit_chain_broken 1"),
        "{metrics}"
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn account_events_carry_the_callers_address_and_user_agent(pool: PgPool) {
    use crate::support::{bearer, cookie};
    use serde_json::json;
    let mut server = start(pool, Options::default()).await;
    server.http = reqwest::Client::builder()
        .user_agent("audit-test/1")
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = server.user("alice@example.com").await;
    let changed = server
        .call(
            Method::POST,
            "/api/v1/me/password",
            Some(json!({"current_password": PASSWORD, "new_password": OTHER_PASSWORD})),
            &bearer(&login),
        )
        .await;
    assert_eq!(changed.status, 204, "{changed:?}");
    assert_eq!(server.request_reset("alice@example.com").await.status, 202);
    let token = server.mailed_code("Reset code:").await;
    assert_eq!(server.confirm_reset(&token, PASSWORD).await.status, 204);
    let here = server.login("alice@example.com", PASSWORD).await;
    let there = server.login("alice@example.com", PASSWORD).await;
    let sessions = server.get("/api/v1/me/sessions", &bearer(&here)).await;
    let other = sessions
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == false)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoked = server
        .call(
            Method::DELETE,
            &format!("/api/v1/me/sessions/{other}"),
            None,
            &bearer(&here),
        )
        .await;
    assert_eq!(revoked.status, 204, "{revoked:?}");
    assert_eq!(there.status, 200);
    let out = server
        .call(Method::POST, "/api/v1/logout", None, &cookie(&here))
        .await;
    assert_eq!(out.status, 204, "{out:?}");
    let rows = export(&server).await;
    for event in [
        "register",
        "password_changed",
        "password_reset_requested",
        "password_reset",
        "session_revoked",
        "logout",
    ] {
        let row = rows
            .iter()
            .find(|r| r["type"] == event)
            .unwrap_or_else(|| panic!("no {event} row in {rows:?}"));
        assert_eq!(row["ip"], "127.0.0.1", "{event}");
        assert_eq!(row["user_agent"], "audit-test/1", "{event}");
    }
}
