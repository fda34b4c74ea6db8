//! The admin API refuses every request without the exact admin token, on every route.

use portcullis_authserver::http::routes::admin::ROUTES;
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::support::*;

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn every_admin_route_refuses_a_missing_or_wrong_token(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let token = server.admin_token.clone();
    let wrong = [
        None,
        Some("Bearer wrong".to_owned()),
        Some(format!("Bearer {token}x")),
        Some(format!("Bearer {}", &token[..token.len() - 1])),
        Some(format!("Basic {token}")),
    ];
    for (method, path) in ROUTES {
        let method: Method = method.parse().unwrap();
        for authorization in &wrong {
            let mut request = server
                .http
                .request(method.clone(), format!("{}{path}", server.admin));
            if let Some(value) = authorization {
                request = request.header("authorization", value);
            }
            let answer = read(request.send().await.unwrap()).await;
            assert_eq!(answer.status, 401, "{method} {path} with {authorization:?}");
            assert_eq!(
                answer.header("www-authenticate"),
                Some("Bearer realm=\"portcullis-admin\""),
                "{method} {path}"
            );
        }
    }
    // The scheme is case-insensitive: the right token in lowercase `bearer` is accepted.
    let accepted = read(
        server
            .http
            .get(format!("{}/admin/v1/audit/verify", server.admin))
            .header("authorization", format!("bearer {token}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(accepted.status, 200, "{:?}", accepted.body);
    // Each refusal was counted and audited.
    let refusals = ROUTES.len() * wrong.len();
    let metrics = read(
        server
            .http
            .get(format!("{}/metrics", server.metrics))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let text = metrics.body.as_str().unwrap_or_default().to_owned();
    assert!(
        text.contains(&format!("portcullis_admin_auth_failures_total {refusals}")),
        "{text}"
    );
    let export = server
        .admin_call(
            Method::GET,
            "/admin/v1/audit?type=admin_auth_failed&limit=1000",
        )
        .await;
    let lines = export.body.as_str().unwrap_or_default().lines().count();
    assert_eq!(lines, refusals);
}

/// The admin rows of `event_type` in the audit export, as JSON.
async fn admin_rows(server: &TestServer, event_type: &str) -> Vec<Value> {
    let export = server
        .admin_call(
            Method::GET,
            &format!("/admin/v1/audit?type={event_type}&limit=1000"),
        )
        .await;
    assert_eq!(export.status, 200, "{export:?}");
    // One line of JSON lines is read as a JSON document by `read`.
    match export.body {
        Value::Null => Vec::new(),
        Value::String(text) => text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect(),
        row => vec![row],
    }
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_user_is_shown_with_state_lock_and_sessions(pool: PgPool) {
    let server = start(pool.clone(), Options::default()).await;
    let login = server.user("alice@example.com").await;
    let id = login.body["user_id"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        let wrong = server.login("alice@example.com", OTHER_PASSWORD).await;
        assert_eq!(wrong.status, 401);
    }
    let shown = server
        .admin_call(Method::GET, &format!("/admin/v1/users/{id}"))
        .await;
    assert_eq!(shown.status, 200, "{shown:?}");
    let body = &shown.body;
    assert_eq!(body["user_id"], id.as_str());
    assert_eq!(body["email"], "alice@example.com");
    assert_eq!(body["email_verified"], true);
    assert_eq!(body["disabled"], false);
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(body["last_login_at"].is_string());
    assert_eq!(body["last_active_at"], Value::Null, "no refresh yet");
    assert_eq!(
        body["lock"],
        json!({"locked": false, "locked_for_secs": 0, "recent_failures": 2, "locked_addresses": 0})
    );
    assert_eq!(body["sessions"], 1);
    assert_eq!(body["mfa_enrolled"], false);
    // A confirmed TOTP enrolment (issue 12's table) shows; a pending one does not.
    sqlx::query(
        "INSERT INTO mfa_totp (user_id, secret, secret_key_id, params, created_at) \
         VALUES ($1, 'sealed', 'k1', 'SHA1:6:30:1', now())",
    )
    .bind(uuid::Uuid::parse_str(&id).unwrap())
    .execute(&pool)
    .await
    .unwrap();
    let path = format!("/admin/v1/users/{id}");
    let pending = server.admin_call(Method::GET, &path).await;
    assert_eq!(pending.body["mfa_enrolled"], false);
    sqlx::query("UPDATE mfa_totp SET confirmed_at = now(), last_used_step = 1")
        .execute(&pool)
        .await
        .unwrap();
    let enrolled = server.admin_call(Method::GET, &path).await;
    assert_eq!(enrolled.body["mfa_enrolled"], true);
    let unknown = server
        .admin_call(
            Method::GET,
            "/admin/v1/users/00000000-0000-0000-0000-000000000009",
        )
        .await;
    assert_eq!(unknown.status, 404);
    let rows = admin_rows(&server, "admin_lookup").await;
    let outcomes: Vec<_> = rows.iter().map(|r| r["outcome"].clone()).collect();
    assert_eq!(
        outcomes,
        [
            json!("success"),
            json!("success"),
            json!("success"),
            json!("failure")
        ]
    );
    assert_eq!(rows[0]["subject_id"], id.as_str());
    assert_eq!(rows[0]["ip"], "127.0.0.1", "the admin caller's address");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn the_key_status_names_the_keys_and_holds_no_key_material(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let jwks = server.get("/.well-known/jwks.json", &Cred::None).await;
    let kid = jwks.body["keys"][0]["kid"].as_str().unwrap().to_owned();
    let status = server.admin_call(Method::GET, "/admin/v1/keys").await;
    assert_eq!(status.status, 200, "{status:?}");
    let body = &status.body;
    assert_eq!(body["active_kid"], kid.as_str());
    assert_eq!(body["signing_keys"][0]["kid"], kid.as_str());
    assert_eq!(body["signing_keys"][0]["active"], true);
    assert!(body["signing_keys"][0]["age_secs"].as_i64().unwrap() >= 0);
    // The realm's default rotation interval, and the next rotation one interval after creation.
    let every = body["rotation_every_secs"].as_u64().unwrap();
    assert!(every > 0);
    assert!(body["next_rotation"].is_string());
    assert_eq!(body["peppers"].as_array().unwrap().len(), 1);
    assert_eq!(body["peppers"][0]["id"], body["pepper_current"]);
    assert_eq!(
        body["peppers"][0]["fingerprint"].as_str().unwrap().len(),
        16
    );
    assert_eq!(body["audit_keys"].as_array().unwrap().len(), 1);
    assert!(body["fernet_keys"].as_u64().is_some());
    // No key material: no JWK member, and none of the keys' base64 from the secrets dir.
    let text = body.to_string();
    for member in ["\"d\"", "\"x\"", "\"y\"", "\"k\""] {
        assert!(!text.contains(member), "{member} in {text}");
    }
    let signing: Value = serde_json::from_str(&server.secret_file("signing-keys.json")).unwrap();
    let mut material: Vec<String> = signing["keys"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|k| ["d", "x", "y"].map(|m| k[m].as_str().unwrap().to_owned()))
        .collect();
    for file in ["pepper", "fernet-keys", "audit-key"] {
        for line in server.secret_file(file).lines().filter(|l| !l.is_empty()) {
            // `version:base64` lines (pepper, audit key) or bare base64 (Fernet).
            material.push(line.rsplit(':').next().unwrap().to_owned());
        }
    }
    assert!(material.len() >= 6, "{material:?}");
    for secret in &material {
        assert!(!text.contains(secret.as_str()), "key material in {text}");
    }
    assert_eq!(admin_rows(&server, "admin_key_status").await.len(), 1);
}

fn retention_policy(dry_run: bool) -> String {
    format!(
        "apiVersion: portcullis.dev/v1alpha1
kind: RetentionPolicy
metadata: {{name: keep}}
spec:
  targetRef: {{name: test}}
  dryRun: {dry_run}
"
    )
}

async fn make_stale_unverified(pool: &PgPool, email: &str) {
    sqlx::query("UPDATE users SET created_at = now() - interval '8 days', email_verified = false WHERE email = $1")
        .bind(email)
        .execute(pool)
        .await
        .unwrap();
}

async fn users(pool: &PgPool) -> i64 {
    sqlx::query_as::<_, (i64,)>("SELECT count(*) FROM users")
        .fetch_one(pool)
        .await
        .unwrap()
        .0
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_retention_run_without_a_policy_is_a_404_problem(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let run = server
        .admin_call(Method::POST, "/admin/v1/retention/run")
        .await;
    assert_eq!((run.status, run.code()), (404, "no_retention_policy"));
    assert_eq!(run.header("content-type"), Some("application/problem+json"));
    let rows = admin_rows(&server, "admin_retention_run").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["outcome"], "failure");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_retention_run_counts_when_dry_and_applies_the_policy_otherwise(pool: PgPool) {
    let server = start(
        pool.clone(),
        Options {
            policies: vec![retention_policy(false)],
            ..Options::default()
        },
    )
    .await;
    server.register("stale@example.com", PASSWORD).await;
    server.register("fresh@example.com", PASSWORD).await;
    make_stale_unverified(&pool, "stale@example.com").await;
    let dry = server
        .admin_call(Method::POST, "/admin/v1/retention/run?dry_run=true")
        .await;
    assert_eq!(dry.status, 200, "{dry:?}");
    assert_eq!(dry.body["dryRun"], true);
    assert_eq!(dry.body["counts"]["unverifiedAccounts"], 1);
    assert_eq!(users(&pool).await, 2, "a dry run changes nothing");
    let real = server
        .admin_call(Method::POST, "/admin/v1/retention/run")
        .await;
    assert_eq!(real.status, 200, "{real:?}");
    assert_eq!(real.body["dryRun"], false);
    assert_eq!(real.body["counts"]["unverifiedAccounts"], 1);
    assert_eq!(users(&pool).await, 1);
    let bad = server
        .admin_call(Method::POST, "/admin/v1/retention/run?dry_run=maybe")
        .await;
    assert_eq!(bad.status, 400);
    let rows = admin_rows(&server, "admin_retention_run").await;
    let dry_flags: Vec<_> = rows
        .iter()
        .map(|r| r["details"]["dry_run"].clone())
        .collect();
    assert_eq!(dry_flags, [json!(true), json!(false)]);
    assert_eq!(rows[1]["details"]["unverifiedAccounts"], 1);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_retention_run_while_another_holds_the_lock_is_a_409_problem_and_changes_nothing(
    pool: PgPool,
) {
    let server = start(
        pool.clone(),
        Options {
            policies: vec![retention_policy(false)],
            ..Options::default()
        },
    )
    .await;
    server.register("stale@example.com", PASSWORD).await;
    server.register("fresh@example.com", PASSWORD).await;
    make_stale_unverified(&pool, "stale@example.com").await;
    // The CronJob's run of realm `test`, as the CLI takes it.
    let held = portcullis_privacy::retention::RetentionLock::try_acquire(&pool, "test")
        .await
        .unwrap()
        .expect("the lock is free");
    let run = server
        .admin_call(Method::POST, "/admin/v1/retention/run")
        .await;
    assert_eq!(
        (run.status, run.code()),
        (409, "retention_running"),
        "{run:?}"
    );
    assert_eq!(run.header("content-type"), Some("application/problem+json"));
    assert_eq!(users(&pool).await, 2, "nothing was purged");
    held.release().await.unwrap();
    let after = server
        .admin_call(Method::POST, "/admin/v1/retention/run")
        .await;
    assert_eq!(after.status, 200, "{after:?}");
    assert_eq!(users(&pool).await, 1);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_policy_in_dry_run_keeps_an_admin_run_dry(pool: PgPool) {
    let server = start(
        pool.clone(),
        Options {
            policies: vec![retention_policy(true)],
            ..Options::default()
        },
    )
    .await;
    server.register("stale@example.com", PASSWORD).await;
    make_stale_unverified(&pool, "stale@example.com").await;
    let run = server
        .admin_call(Method::POST, "/admin/v1/retention/run?dry_run=false")
        .await;
    assert_eq!(run.status, 200, "{run:?}");
    assert_eq!(run.body["dryRun"], true);
    assert_eq!(users(&pool).await, 1);
}

fn login_user_limit() -> String {
    "apiVersion: portcullis.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: login-user}
spec:
  targetRef: {kind: AuthRealm, name: test}
  rules:
    - name: login-user
      routes: [Login]
      limits: [{key: User, requests: 1, period: 1h, burst: 1}]
"
    .to_owned()
}

/// Uses up alice's per-identifier login limit with two wrong passwords (she is not locked out:
/// that takes five), unlocks her, and returns the status of her next login with the right
/// password.
async fn login_after_unlock(server: &TestServer) -> u16 {
    let registered = server.register("alice@example.com", PASSWORD).await;
    let id = registered.body["user_id"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        assert_eq!(
            server
                .login("alice@example.com", OTHER_PASSWORD)
                .await
                .status,
            401
        );
    }
    let limited = server.login("alice@example.com", PASSWORD).await;
    assert_eq!((limited.status, limited.code()), (429, "rate_limited"));
    let unlocked = server
        .admin_call(Method::POST, &format!("/admin/v1/users/{id}/unlock"))
        .await;
    assert_eq!(unlocked.status, 204, "{unlocked:?}");
    let rows = admin_rows(server, "admin_unlock").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["ip"], "127.0.0.1");
    server.login("alice@example.com", PASSWORD).await.status
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn unlock_clears_the_login_rate_limit_of_the_identifier_locally(pool: PgPool) {
    let server = start(
        pool,
        Options {
            rate_limiting: true,
            policies: vec![login_user_limit()],
            ..Options::default()
        },
    )
    .await;
    assert_eq!(login_after_unlock(&server).await, 200);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn unlock_clears_the_login_rate_limit_of_the_identifier_in_redis(pool: PgPool) {
    let server = start(
        pool,
        Options {
            rate_limiting: true,
            policies: vec![login_user_limit()],
            ..Options::spec(|spec| {
                spec.redis =
                    Some(serde_json::from_value(json!({"secretRef": {"name": "redis"}})).unwrap());
            })
        },
    )
    .await;
    assert_eq!(login_after_unlock(&server).await, 200);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn disable_ends_bearer_refresh_and_cookie_access_at_once(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let login = server.user("alice@example.com").await;
    let id = login.body["user_id"].as_str().unwrap().to_owned();
    let refresh_token = login.body["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(server.get("/api/v1/me", &bearer(&login)).await.status, 200);
    assert_eq!(server.get("/api/v1/me", &cookie(&login)).await.status, 200);
    let disabled = server
        .admin_call(Method::POST, &format!("/admin/v1/users/{id}/disable"))
        .await;
    assert_eq!(disabled.status, 204);
    // The very next request of each kind is refused: no expiry is waited for.
    assert_eq!(server.get("/api/v1/me", &bearer(&login)).await.status, 401);
    assert_eq!(server.get("/api/v1/me", &cookie(&login)).await.status, 401);
    let refreshed = server.refresh(&refresh_token).await;
    assert_eq!(refreshed.status, 400, "{refreshed:?}");
    assert_eq!(refreshed.body["error"], "invalid_grant");
    let rows = admin_rows(&server, "admin_disable").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["subject_id"], id.as_str());
    assert_eq!(rows[0]["ip"], "127.0.0.1");
}
