//! Privacy (issue 13) over real HTTP, PostgreSQL and Redis: the policy and its acceptance at
//! registration, re-consent after a policy version change before any token (password login,
//! the MFA step, the refresh grant, an authorization with a session), consents and their
//! history, the export, erasure (at once, after a grace period, by an admin) and retention.

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::mfa::{code_on, enrol};
use crate::pages::hidden;
use crate::support::*;

/// A server of the same realm, database, Redis keys and secrets as `first`, whose privacy
/// policy is at version 2: the policy was bumped.
async fn bumped(pool: &PgPool, first: &TestServer, options: Options) -> TestServer {
    start_sharing(
        pool.clone(),
        Options {
            spec: Box::new(|s| s.privacy.policy_version = "2".into()),
            redis_prefix: first.redis_prefix.clone(),
            ..options
        },
        Some(first),
    )
    .await
}

async fn send(server: &TestServer, method: Method, path: &str, body: Value, cred: &Cred) -> Answer {
    server.call(method, path, Some(body), cred).await
}

async fn count(pool: &PgPool, sql: &'static str, bind: &str) -> i64 {
    sqlx::query_scalar(sql)
        .bind(bind)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn user_id(pool: &PgPool, email: &str) -> uuid::Uuid {
    sqlx::query_scalar("SELECT id FROM users WHERE email_canonical = $1")
        .bind(email)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn chain_ok(server: &TestServer) -> bool {
    let verify = server
        .admin_call(Method::GET, "/admin/v1/audit/verify")
        .await;
    assert_eq!(verify.status, 200, "{verify:?}");
    verify.body["ok"] == true
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn the_privacy_policy_answers_its_version_url_and_purposes(pool: PgPool) {
    let server = start(
        pool,
        Options::spec(|s| s.privacy.policy_url = Some("https://example.com/privacy".into())),
    )
    .await;
    let policy = server.get("/api/v1/privacy-policy", &Cred::None).await;
    assert_eq!(policy.status, 200);
    assert_eq!(
        policy.body,
        json!({"version": "1", "url": "https://example.com/privacy", "purposes": [
            {"name": "account", "required": true, "description": "Run the account."},
            {"name": "news", "required": false, "description": "Product news."}]})
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn every_hosted_page_links_the_privacy_policy(pool: PgPool) {
    let server = start(
        pool,
        Options::spec(|s| s.privacy.policy_url = Some("https://example.com/privacy".into())),
    )
    .await;
    for path in ["/login", "/register", "/reset-password"] {
        let page = server
            .http
            .get(format!("{}{path}", server.base))
            .send()
            .await
            .unwrap();
        let html = page.text().await.unwrap();
        assert!(
            html.contains("href=\"https://example.com/privacy\""),
            "{path}: {html}"
        );
    }
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn registration_without_a_required_consent_is_refused_and_creates_no_account(pool: PgPool) {
    let server = start(pool.clone(), Options::default()).await;
    let refused = server
        .post(
            "/api/v1/register",
            json!({"email": "alice@example.com", "password": PASSWORD, "policy_version": "1", "consents": {"news": true}}),
        )
        .await;
    assert_eq!(refused.status, 400, "{refused:?}");
    assert_eq!(
        refused.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(refused.violation_codes(), ["consent_required"]);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM users WHERE email_canonical = $1",
            "alice@example.com"
        )
        .await,
        0
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_registration_whose_acceptance_cannot_be_written_leaves_no_account(pool: PgPool) {
    let server = start(pool.clone(), Options::default()).await;
    let register = || {
        server.post(
            "/api/v1/register",
            json!({"email": "alice@example.com", "password": PASSWORD, "policy_version": "1", "consents": {"account": true}}),
        )
    };
    // The consent history cannot be written (a database fault after the account row).
    sqlx::query("ALTER TABLE consent_events RENAME TO consent_events_gone")
        .execute(&pool)
        .await
        .unwrap();
    let failed = register().await;
    assert!(failed.status >= 500, "{failed:?}");
    let users = "SELECT count(*) FROM users WHERE email_canonical = $1";
    assert_eq!(count(&pool, users, "alice@example.com").await, 0);

    sqlx::query("ALTER TABLE consent_events_gone RENAME TO consent_events")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(register().await.status, 201, "the address registers anew");
    assert_eq!(count(&pool, users, "alice@example.com").await, 1);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn registration_records_the_accepted_version_and_each_choice_with_its_history(pool: PgPool) {
    let server = start(pool.clone(), Options::default()).await;
    let created = server
        .post(
            "/api/v1/register",
            json!({"email": "alice@example.com", "password": PASSWORD, "policy_version": "1", "consents": {"account": true, "news": false}}),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let id = user_id(&pool, "alice@example.com").await;
    let accepted: Option<String> =
        sqlx::query_scalar("SELECT policy_version_accepted FROM users WHERE id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(accepted.as_deref(), Some("1"));
    let history: Vec<(String, bool, String, Option<String>)> = sqlx::query_as(
        "SELECT purpose, granted, source, ip_prefix FROM consent_events WHERE user_id = $1 ORDER BY purpose",
    )
    .bind(id)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        history,
        [
            (
                "account".into(),
                true,
                "registration".into(),
                Some("127.0.0.0/24".into())
            ),
            (
                "news".into(),
                false,
                "registration".into(),
                Some("127.0.0.0/24".into())
            ),
        ]
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_realm_without_a_policy_registers_and_signs_in_without_any_consent(pool: PgPool) {
    let server = start(pool.clone(), Options::spec(|s| s.privacy.purposes.clear())).await;
    let created = server
        .post(
            "/api/v1/register",
            json!({"email": "alice@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let login = server.login("alice@example.com", PASSWORD).await;
    assert_eq!(login.status, 200);
    assert!(login.body["access_token"].is_string(), "{login:?}");
    let accepted: Option<String> = sqlx::query_scalar("SELECT policy_version_accepted FROM users")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(accepted, None);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn after_a_policy_bump_a_password_login_issues_nothing_until_the_policy_is_accepted(
    pool: PgPool,
) {
    let first = start(pool.clone(), Options::default()).await;
    assert_eq!(
        first.register("alice@example.com", PASSWORD).await.status,
        201
    );
    let server = bumped(&pool, &first, Options::default()).await;
    let login = server.login("alice@example.com", PASSWORD).await;
    assert_eq!(login.status, 200, "{login:?}");
    assert_eq!(login.body["consent_required"], true);
    assert!(login.body.get("access_token").is_none(), "{login:?}");
    assert_eq!(login.session_cookie(), None);
    let token = login.body["consent_token"].as_str().unwrap().to_owned();

    let refused = server
        .post(
            "/api/v1/consent",
            json!({"consent_token": token, "consents": {"news": true}}),
        )
        .await;
    assert_eq!(refused.status, 400, "{refused:?}");
    assert_eq!(refused.violation_codes(), ["consent_required"]);

    let accepted = server
        .post(
            "/api/v1/consent",
            json!({"consent_token": token, "consents": {"account": true}, "policy_version": "2"}),
        )
        .await;
    assert_eq!(accepted.status, 200, "{accepted:?}");
    assert!(accepted.session_cookie().is_some());
    let me = server.get("/api/v1/me", &bearer(&accepted)).await;
    assert_eq!(me.status, 200, "{me:?}");
    let again = server
        .post(
            "/api/v1/consent",
            json!({"consent_token": token, "consents": {"account": true}}),
        )
        .await;
    assert_eq!(again.status, 400, "a consent token is used once: {again:?}");
    let next = server.login("alice@example.com", PASSWORD).await;
    assert!(
        next.body["access_token"].is_string(),
        "accepted once: {next:?}"
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn after_a_policy_bump_the_mfa_step_issues_nothing_until_the_policy_is_accepted(
    pool: PgPool,
) {
    let clock = stopped_clock();
    let first = start(
        pool.clone(),
        Options {
            clock: clock.clone(),
            ..Options::default()
        },
    )
    .await;
    let login = first.user("alice@example.com").await;
    let enrolled = enrol(&first, &bearer(&login), &clock).await;
    let server = bumped(
        &pool,
        &first,
        Options {
            clock: clock.clone(),
            ..Options::default()
        },
    )
    .await;
    let pending = server.login("alice@example.com", PASSWORD).await;
    assert_eq!(pending.body["mfa_required"], true, "{pending:?}");
    let second = server
        .post(
            "/api/v1/login/mfa",
            json!({"mfa_token": pending.body["mfa_token"], "code": code_on(&clock, &enrolled.secret, 1)}),
        )
        .await;
    assert_eq!(second.status, 200, "{second:?}");
    assert_eq!(second.body["consent_required"], true, "{second:?}");
    assert!(second.body.get("access_token").is_none());
    let accepted = server
        .post(
            "/api/v1/consent",
            json!({"consent_token": second.body["consent_token"], "consents": {"account": true}}),
        )
        .await;
    assert_eq!(accepted.status, 200, "{accepted:?}");
    let sessions = server.get("/api/v1/me/sessions", &bearer(&accepted)).await;
    assert_eq!(sessions.status, 200, "{sessions:?}");
    let sid = sessions
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let client = redis::Client::open(std::env::var("REDIS_URL").unwrap()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let stored: String =
        redis::AsyncCommands::get(&mut conn, format!("{}sess:{sid}", server.redis_prefix))
            .await
            .unwrap();
    let stored: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(
        stored["amr"],
        json!(["pwd", "otp"]),
        "the session keeps the second factor"
    );
}

/// Signs `email` in with the test password and accepts the policy the sign-in waits on.
async fn accept_at_next_sign_in(server: &TestServer, email: &str) {
    let pending = server.login(email, PASSWORD).await;
    let accepted = server
        .post(
            "/api/v1/consent",
            json!({"consent_token": pending.body["consent_token"], "consents": {"account": true}}),
        )
        .await;
    assert_eq!(accepted.status, 200, "{accepted:?}");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn after_a_policy_bump_the_refresh_grant_is_refused_until_the_policy_is_accepted(
    pool: PgPool,
) {
    let first = start(pool.clone(), Options::default()).await;
    let login = first.user("alice@example.com").await;
    let refresh_token = login.body["refresh_token"].as_str().unwrap().to_owned();
    let server = bumped(&pool, &first, Options::default()).await;
    let refused = server.refresh(&refresh_token).await;
    assert_eq!(refused.status, 403, "{refused:?}");
    assert_eq!(refused.body["error"], "consent_required", "{refused:?}");

    accept_at_next_sign_in(&server, "alice@example.com").await;
    let refreshed = server.refresh(&refresh_token).await;
    assert_eq!(
        refreshed.status, 200,
        "the refused grant did not spend the token: {refreshed:?}"
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_replayed_refresh_token_ends_its_family_also_while_the_policy_waits(pool: PgPool) {
    let first = start(pool.clone(), Options::default()).await;
    let login = first.user("alice@example.com").await;
    let spent = login.body["refresh_token"].as_str().unwrap().to_owned();
    let rotated = first.refresh(&spent).await;
    assert_eq!(rotated.status, 200, "{rotated:?}");
    let successor = rotated.body["refresh_token"].as_str().unwrap().to_owned();
    let server = bumped(&pool, &first, Options::default()).await;

    let replay = server.refresh(&spent).await;
    assert_eq!(
        replay.status, 400,
        "a replay, not a consent question: {replay:?}"
    );
    assert_eq!(replay.body["error"], "invalid_grant");

    accept_at_next_sign_in(&server, "alice@example.com").await;
    let after = server.refresh(&successor).await;
    assert_eq!(after.status, 400, "the replay ended the family: {after:?}");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn after_a_policy_bump_an_authorization_with_a_session_waits_on_the_policy_page_then_resumes(
    pool: PgPool,
) {
    let clients = crate::oidc::clients();
    let first = start(
        pool.clone(),
        Options {
            clients: clients.clone(),
            ..Options::default()
        },
    )
    .await;
    let login = first.user("alice@example.com").await;
    let session = login.session_cookie().unwrap();
    let server = bumped(
        &pool,
        &first,
        Options {
            clients,
            ..Options::default()
        },
    )
    .await;
    let mut authorize = url::Url::parse(&format!("{}/oauth2/authorize", server.base)).unwrap();
    authorize
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", "web")
        .append_pair("redirect_uri", "http://localhost:7777/cb")
        .append_pair("scope", "openid")
        .append_pair("state", "s1")
        .append_pair(
            "code_challenge",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        )
        .append_pair("code_challenge_method", "S256");
    let cookie = format!("__Host-portcullis_session={session}");
    let answer = server
        .http
        .get(authorize.as_str())
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303);
    let location = answer.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/consent/policy?req="), "{location}");
    let page = server
        .http
        .get(format!("{}{location}", server.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let (csrf, req) = (hidden(&html, "csrf"), hidden(&html, "req"));
    let without_csrf = server
        .http
        .post(format!("{}/consent/policy", server.base))
        .header("cookie", &cookie)
        .form(&[("req", req.as_str()), ("consent_account", "on")])
        .send()
        .await
        .unwrap();
    assert_eq!(without_csrf.status(), 403);
    let accepted = server
        .http
        .post(format!("{}/consent/policy", server.base))
        .header("cookie", &cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("req", req.as_str()),
            ("policy_version", "2"),
            ("consent_account", "on"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 303);
    let back = accepted.headers()["location"].to_str().unwrap();
    assert!(
        back.starts_with("http://localhost:7777/cb?")
            && back.contains("code=")
            && back.contains("state=s1"),
        "{back}"
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn withdrawing_a_required_purpose_is_a_409_consent_required(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let cred = bearer(&server.user("alice@example.com").await);
    let refused = send(
        &server,
        Method::PUT,
        "/api/v1/me/consents/account",
        json!({"granted": false, "policy_version": "1"}),
        &cred,
    )
    .await;
    assert_eq!((refused.status, refused.code()), (409, "consent_required"));
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap()
            .contains("delete the account"),
        "{refused:?}"
    );
    let consents = server.get("/api/v1/me/consents", &cred).await;
    assert_eq!(consents.body[0]["granted"], true, "{consents:?}");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn withdrawing_an_optional_purpose_is_recorded_with_its_history(pool: PgPool) {
    let server = start(pool.clone(), Options::default()).await;
    let cred = bearer(&server.user("alice@example.com").await);
    let granted = send(
        &server,
        Method::PUT,
        "/api/v1/me/consents/news",
        json!({"granted": true, "policy_version": "1"}),
        &cred,
    )
    .await;
    assert_eq!(granted.status, 200, "{granted:?}");
    let withdrawn = send(
        &server,
        Method::PUT,
        "/api/v1/me/consents/news",
        json!({"granted": false, "policy_version": "0"}),
        &cred,
    )
    .await;
    assert_eq!(withdrawn.status, 200, "{withdrawn:?}");
    assert_eq!(withdrawn.body["granted"], false);
    assert_eq!(
        withdrawn.body["policy_version"], "1",
        "recorded under the version in force"
    );
    let consents = server.get("/api/v1/me/consents", &cred).await;
    let news = consents
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["purpose"] == "news")
        .cloned()
        .unwrap();
    assert_eq!(news["granted"], false);
    let id = user_id(&pool, "alice@example.com").await;
    let history: Vec<(bool, String, Option<String>)> = sqlx::query_as(
        "SELECT granted, source, ip_prefix FROM consent_events WHERE user_id = $1 AND purpose = 'news' ORDER BY id",
    )
    .bind(id)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        history,
        [
            (true, "api".into(), Some("127.0.0.0/24".into())),
            (false, "api".into(), Some("127.0.0.0/24".into())),
        ]
    );
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events WHERE event_type = 'consent_changed' AND outcome = 'success'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(audited, 2);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn the_export_has_the_users_data_field_by_field_and_no_secret_and_not_another_users(
    pool: PgPool,
) {
    let server = start(pool.clone(), Options::default()).await;
    let login = server.user("alice@example.com").await;
    server.user("bob@example.com").await;
    let cred = bearer(&login);
    let answer = server
        .http
        .get(format!("{}/api/v1/me/export", server.base))
        .bearer_auth(match &cred {
            Cred::Bearer(t) => t.clone(),
            _ => unreachable!(),
        })
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert!(
        answer.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment"),
    );
    let text = answer.text().await.unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let id = user_id(&pool, "alice@example.com").await;
    assert_eq!(doc["schema_version"], 1);
    assert_eq!(doc["profile"]["id"], id.to_string());
    assert_eq!(doc["profile"]["email"], "alice@example.com");
    assert_eq!(doc["profile"]["policy_version_accepted"], "1");
    assert_eq!(doc["sessions"].as_array().unwrap().len(), 1, "{doc}");
    assert_eq!(doc["sessions"][0]["ip"], "127.0.0.1");
    assert_eq!(doc["consents"][0]["purpose"], "account");
    assert_eq!(doc["consent_history"][0]["source"], "registration");
    assert_eq!(doc["refresh_families"].as_array().unwrap().len(), 1);
    assert!(
        doc["audit_events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e.to_string().contains("login")),
        "{doc}"
    );
    let (hash, refresh) = sqlx::query_as::<_, (String, String)>(
        "SELECT u.password_hash, encode(t.token_hash, 'hex') FROM users u \
         JOIN refresh_families f ON f.user_id = u.id JOIN refresh_tokens t USING (family_id) WHERE u.id = $1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    for secret in [
        hash.as_str(),
        refresh.as_str(),
        login.body["refresh_token"].as_str().unwrap(),
        login.body["access_token"].as_str().unwrap(),
        login.session_cookie().unwrap().as_str(),
    ] {
        assert!(!text.contains(secret), "a secret in the export");
    }
    assert!(!text.contains("bob@example.com"));
    let bob = user_id(&pool, "bob@example.com").await;
    assert!(!text.contains(&bob.to_string()));
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn deleting_the_account_with_a_wrong_password_is_refused_and_counted(pool: PgPool) {
    let server = start(pool.clone(), Options::default()).await;
    let cred = bearer(&server.user("alice@example.com").await);
    let refused = send(
        &server,
        Method::DELETE,
        "/api/v1/me",
        json!({"password": OTHER_PASSWORD}),
        &cred,
    )
    .await;
    assert_eq!(refused.status, 401, "{refused:?}");
    let id = user_id(&pool, "alice@example.com").await;
    let detail = server
        .admin_call(Method::GET, &format!("/admin/v1/users/{id}"))
        .await;
    assert_eq!(detail.body["lock"]["recent_failures"], 1, "{detail:?}");
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM erasure_requests WHERE user_id::text = $1",
            &id.to_string()
        )
        .await,
        0
    );
    assert_eq!(server.get("/api/v1/me", &cred).await.status, 200);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn deleting_the_account_ends_its_session_access_and_refresh_tokens_at_once(pool: PgPool) {
    let server = start(
        pool.clone(),
        Options::spec(|s| {
            s.privacy.erasure_grace_period =
                portcullis_crds::duration::GoDuration::from_secs(86_400)
        }),
    )
    .await;
    let login = server.user("alice@example.com").await;
    let other = server.login("alice@example.com", PASSWORD).await;
    let asked = send(
        &server,
        Method::DELETE,
        "/api/v1/me",
        json!({"password": PASSWORD}),
        &bearer(&login),
    )
    .await;
    assert_eq!(asked.status, 202, "{asked:?}");
    assert!(asked.body["erasure_id"].is_string());
    assert!(asked.body["effective_at"].is_string());
    for answer in [&login, &other] {
        assert_eq!(server.get("/api/v1/me", &bearer(answer)).await.status, 401);
        assert_eq!(server.get("/api/v1/me", &cookie(answer)).await.status, 401);
        let refreshed = server
            .refresh(answer.body["refresh_token"].as_str().unwrap())
            .await;
        assert_eq!(refreshed.status, 400, "{refreshed:?}");
    }
    assert_eq!(
        server.login("alice@example.com", PASSWORD).await.status,
        403
    );
}

/// Every text-like column of every table holding `needle`, as `table.column`.
async fn tables_holding(pool: &PgPool, needle: &str) -> Vec<String> {
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = 'public' AND data_type IN ('text', 'character varying', 'jsonb', 'json', 'uuid', 'bytea', 'ARRAY')",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut found = Vec::new();
    for (table, column) in columns {
        let sql = format!(
            "SELECT count(*) FROM \"{table}\" WHERE \"{column}\"::text ILIKE '%' || $1 || '%'"
        );
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(needle)
            .fetch_one(pool)
            .await
            .unwrap();
        if n > 0 {
            found.push(format!("{table}.{column}"));
        }
    }
    found
}

/// Every Redis key of `server` whose name or value holds `needle`.
async fn redis_holding(server: &TestServer, needle: &str) -> Vec<String> {
    let client = redis::Client::open(std::env::var("REDIS_URL").unwrap()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = {
        let mut iter: redis::AsyncIter<'_, String> =
            redis::AsyncCommands::scan_match(&mut conn, format!("{}*", server.redis_prefix))
                .await
                .unwrap();
        let mut keys = Vec::new();
        while let Some(key) = iter.next_item().await {
            keys.push(key.unwrap());
        }
        keys
    };
    let mut found = Vec::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let value: Vec<Vec<u8>> = match kind.as_str() {
            "string" => vec![
                redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .unwrap(),
            ],
            "hash" => redis::cmd("HGETALL")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap(),
            "set" => redis::cmd("SMEMBERS")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap(),
            "zset" => redis::cmd("ZRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .query_async(&mut conn)
                .await
                .unwrap(),
            "list" => redis::cmd("LRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .query_async(&mut conn)
                .await
                .unwrap(),
            _ => Vec::new(),
        };
        let text = value
            .iter()
            .map(|v| String::from_utf8_lossy(v).to_lowercase())
            .collect::<String>();
        if key.to_lowercase().contains(needle) || text.contains(needle) {
            found.push(key);
        }
    }
    found
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn an_erasure_without_grace_leaves_no_trace_of_the_email_or_id_but_the_erased_notice(
    pool: PgPool,
) {
    let server = start(pool.clone(), Options::default()).await;
    let login = server.user("alice@example.com").await;
    let cred = bearer(&login);
    send(
        &server,
        Method::PUT,
        "/api/v1/me/consents/news",
        json!({"granted": true, "policy_version": "1"}),
        &cred,
    )
    .await;
    // A wrong password leaves a lockout counter keyed by the address's digest.
    server.login("alice@example.com", OTHER_PASSWORD).await;
    let id = user_id(&pool, "alice@example.com").await.to_string();
    let asked = send(
        &server,
        Method::DELETE,
        "/api/v1/me",
        json!({"password": PASSWORD}),
        &cred,
    )
    .await;
    assert_eq!(asked.status, 202, "{asked:?}");
    let erasure_id = asked.body["erasure_id"].as_str().unwrap();
    let (state, user): (String, Option<uuid::Uuid>) =
        sqlx::query_as("SELECT state, user_id FROM erasure_requests WHERE id::text = $1")
            .bind(erasure_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (state.as_str(), user),
        ("done", None),
        "only the receipt is left"
    );
    assert_eq!(tables_holding(&pool, &id).await, Vec::<String>::new());
    // The `account.erased` mail to the erased address waits in the outbox until delivered
    // (docs/privacy.md, section 9): the one place the address is left.
    assert_eq!(
        tables_holding(&pool, "alice@example.com").await,
        ["notification_outbox.recipient"]
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM notification_outbox WHERE recipient = $1 AND event <> 'account.erased'",
            "alice@example.com"
        )
        .await,
        0
    );
    assert_eq!(redis_holding(&server, &id).await, Vec::<String>::new());
    assert_eq!(
        redis_holding(&server, "alice@example.com").await,
        Vec::<String>::new()
    );
    let digest: String = {
        use sha2::Digest as _;
        sha2::Sha256::digest(b"alice@example.com")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    assert_eq!(redis_holding(&server, &digest).await, Vec::<String>::new());
    assert!(
        chain_ok(&server).await,
        "the audit chain verifies after the erasure"
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn an_erased_email_registers_anew(pool: PgPool) {
    let server = start(pool.clone(), Options::default()).await;
    let cred = bearer(&server.user("alice@example.com").await);
    let asked = send(
        &server,
        Method::DELETE,
        "/api/v1/me",
        json!({"password": PASSWORD}),
        &cred,
    )
    .await;
    assert_eq!(asked.status, 202);
    let again = server.register("alice@example.com", PASSWORD).await;
    assert_eq!(again.status, 201, "{again:?}");
    assert_eq!(
        server.login("alice@example.com", PASSWORD).await.status,
        200
    );
}

fn retention_policy() -> String {
    "apiVersion: portcullis.dev/v1alpha1
kind: RetentionPolicy
metadata: {name: keep}
spec:
  targetRef: {name: test}
"
    .to_owned()
}

/// A server whose erasures wait `days`, with a RetentionPolicy, on a stopped clock.
async fn with_grace(pool: &PgPool, days: u64) -> (TestServer, portcullis_authserver::clock::Clock) {
    let clock = stopped_clock();
    let server = start(
        pool.clone(),
        Options {
            spec: Box::new(move |s| {
                s.privacy.erasure_grace_period =
                    portcullis_crds::duration::GoDuration::from_secs(days * 86_400)
            }),
            clock: clock.clone(),
            policies: vec![retention_policy()],
            ..Options::default()
        },
    )
    .await;
    (server, clock)
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn an_erasure_with_grace_deletes_nothing_before_and_everything_at_the_retention_run_after(
    pool: PgPool,
) {
    let (server, clock) = with_grace(&pool, 1).await;
    let cred = bearer(&server.user("alice@example.com").await);
    let asked = send(
        &server,
        Method::DELETE,
        "/api/v1/me",
        json!({"password": PASSWORD}),
        &cred,
    )
    .await;
    assert_eq!(asked.status, 202);
    let users = "SELECT count(*) FROM users WHERE email_canonical = $1";
    let early = server
        .admin_call(Method::POST, "/admin/v1/retention/run")
        .await;
    assert_eq!(early.status, 200, "{early:?}");
    assert_eq!(early.body["counts"]["erasures"], 0);
    assert_eq!(count(&pool, users, "alice@example.com").await, 1);
    clock.advance(std::time::Duration::from_secs(86_401));
    let due = server
        .admin_call(Method::POST, "/admin/v1/retention/run")
        .await;
    assert_eq!(due.body["counts"]["erasures"], 1, "{due:?}");
    assert_eq!(count(&pool, users, "alice@example.com").await, 0);
    assert!(
        chain_ok(&server).await,
        "the audit chain verifies after retention"
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_dry_retention_run_reports_a_due_erasure_and_changes_nothing(pool: PgPool) {
    let (server, clock) = with_grace(&pool, 1).await;
    let cred = bearer(&server.user("alice@example.com").await);
    send(
        &server,
        Method::DELETE,
        "/api/v1/me",
        json!({"password": PASSWORD}),
        &cred,
    )
    .await;
    clock.advance(std::time::Duration::from_secs(86_401));
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events")
        .fetch_one(&pool)
        .await
        .unwrap();
    let dry = server
        .admin_call(Method::POST, "/admin/v1/retention/run?dry_run=true")
        .await;
    assert_eq!(dry.status, 200, "{dry:?}");
    assert_eq!(dry.body["counts"]["erasures"], 1);
    assert_eq!(dry.body["counts"]["auditEventsDeleted"], 0);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM users WHERE email_canonical = $1",
            "alice@example.com"
        )
        .await,
        1
    );
    let after: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events WHERE event_type <> 'admin_retention_run'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(after, events, "nothing but the run's own record");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn an_admin_erases_an_account(pool: PgPool) {
    let server = start(pool.clone(), Options::default()).await;
    let login = server.user("alice@example.com").await;
    let id = user_id(&pool, "alice@example.com").await;
    let erased = server
        .admin_call(Method::POST, &format!("/admin/v1/users/{id}/erase"))
        .await;
    assert_eq!(erased.status, 202, "{erased:?}");
    assert_eq!(erased.body["done"], true);
    assert_eq!(erased.body["requested_by"], "admin");
    assert_eq!(erased.body["user_id"], Value::Null);
    assert_eq!(server.get("/api/v1/me", &bearer(&login)).await.status, 401);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM users WHERE id::text = $1",
            &id.to_string()
        )
        .await,
        0
    );
    let unknown = server
        .admin_call(Method::POST, &format!("/admin/v1/users/{id}/erase"))
        .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM audit_events WHERE event_type = $1 AND outcome = 'failure' \
             AND actor_kind = 'admin'",
            "erasure_requested"
        )
        .await,
        1,
        "the refused request is audited too"
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn deleting_an_account_with_totp_needs_a_fresh_code_and_a_wrong_one_is_counted(pool: PgPool) {
    let clock = stopped_clock();
    let server = start(
        pool.clone(),
        Options {
            clock: clock.clone(),
            ..Options::default()
        },
    )
    .await;
    let login = server.user("alice@example.com").await;
    let enrolled = enrol(&server, &bearer(&login), &clock).await;
    let pending = server.login("alice@example.com", PASSWORD).await;
    let signed = server
        .post(
            "/api/v1/login/mfa",
            json!({"mfa_token": pending.body["mfa_token"], "code": code_on(&clock, &enrolled.secret, 1)}),
        )
        .await;
    let cred = bearer(&signed);
    let without = send(
        &server,
        Method::DELETE,
        "/api/v1/me",
        json!({"password": PASSWORD}),
        &cred,
    )
    .await;
    assert_eq!(without.status, 400, "{without:?}");
    assert_eq!(without.violation_codes(), ["required"]);
    let wrong = send(
        &server,
        Method::DELETE,
        "/api/v1/me",
        json!({"password": PASSWORD, "code": "000000"}),
        &cred,
    )
    .await;
    assert_eq!(wrong.status, 401, "{wrong:?}");
    let failed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE event_type = 'mfa_failed'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        failed, 1,
        "the wrong code counts on the second factor's lockout"
    );
    clock.advance(std::time::Duration::from_secs(60));
    let right = send(
        &server,
        Method::DELETE,
        "/api/v1/me",
        json!({"password": PASSWORD, "code": code_on(&clock, &enrolled.secret, 0)}),
        &cred,
    )
    .await;
    assert_eq!(right.status, 202, "{right:?}");
}

/// The account page of the session `login` started: its HTML and the cookie header.
async fn account_page(server: &TestServer, login: &Answer) -> (String, String) {
    let cookie = format!(
        "__Host-portcullis_session={}",
        login.session_cookie().unwrap()
    );
    let page = server
        .http
        .get(format!("{}/account", server.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    (page.text().await.unwrap(), cookie)
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn the_account_page_withdraws_an_optional_consent_and_refuses_to_withdraw_a_required_one(
    pool: PgPool,
) {
    let server = start(pool.clone(), Options::default()).await;
    let login = server.user("alice@example.com").await;
    let (html, cookie) = account_page(&server, &login).await;
    assert!(html.contains("href=\"/api/v1/me/export\""), "{html}");
    assert!(html.contains("action=\"/account/delete\""), "{html}");
    let csrf = hidden(&html, "csrf");
    let post = |purpose: &'static str, granted: &'static str| {
        server
            .http
            .post(format!("{}/account/consents", server.base))
            .header("cookie", &cookie)
            .form(&[
                ("csrf", csrf.as_str()),
                ("purpose", purpose),
                ("granted", granted),
                ("policy_version", "1"),
            ])
            .send()
    };
    assert_eq!(post("news", "true").await.unwrap().status(), 303);
    assert_eq!(post("news", "false").await.unwrap().status(), 303);
    assert_eq!(post("account", "false").await.unwrap().status(), 409);
    let id = user_id(&pool, "alice@example.com").await;
    let sources: Vec<(String, bool, String)> = sqlx::query_as(
        "SELECT purpose, granted, source FROM consent_events WHERE user_id = $1 AND source = 'account' ORDER BY id",
    )
    .bind(id)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        sources,
        [
            ("news".into(), true, "account".into()),
            ("news".into(), false, "account".into())
        ]
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn the_account_page_deletes_the_account_and_signs_out(pool: PgPool) {
    let server = start(pool.clone(), Options::default()).await;
    let login = server.user("alice@example.com").await;
    let (html, cookie) = account_page(&server, &login).await;
    let csrf = hidden(&html, "csrf");
    let wrong = server
        .http
        .post(format!("{}/account/delete", server.base))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("password", OTHER_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 400);
    let deleted = server
        .http
        .post(format!("{}/account/delete", server.base))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str()), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM users WHERE email_canonical = $1",
            "alice@example.com"
        )
        .await,
        0
    );
    assert_eq!(
        server.get("/api/v1/me", &cookie_of(&login)).await.status,
        401
    );
}

fn cookie_of(login: &Answer) -> Cred {
    cookie(login)
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn after_a_policy_bump_an_authorization_with_prompt_none_answers_consent_required(
    pool: PgPool,
) {
    let clients = crate::oidc::clients();
    let first = start(
        pool.clone(),
        Options {
            clients: clients.clone(),
            ..Options::default()
        },
    )
    .await;
    let login = first.user("alice@example.com").await;
    let server = bumped(
        &pool,
        &first,
        Options {
            clients,
            ..Options::default()
        },
    )
    .await;
    let mut authorize = url::Url::parse(&format!("{}/oauth2/authorize", server.base)).unwrap();
    authorize
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", "web")
        .append_pair("redirect_uri", "http://localhost:7777/cb")
        .append_pair("scope", "openid")
        .append_pair("prompt", "none")
        .append_pair(
            "code_challenge",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        )
        .append_pair("code_challenge_method", "S256");
    let answer = server
        .http
        .get(authorize.as_str())
        .header(
            "cookie",
            format!(
                "__Host-portcullis_session={}",
                login.session_cookie().unwrap()
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303);
    let location = answer.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with("http://localhost:7777/cb?")
            && location.contains("error=consent_required")
            && !location.contains("code="),
        "{location}"
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn after_a_policy_bump_the_hosted_login_shows_the_policy_page_and_signs_in_after_acceptance(
    pool: PgPool,
) {
    use crate::pages::set_cookie;
    let first = start(pool.clone(), Options::default()).await;
    assert_eq!(
        first.register("alice@example.com", PASSWORD).await.status,
        201
    );
    let server = bumped(&pool, &first, Options::default()).await;
    let login_page = server
        .http
        .get(format!("{}/login", server.base))
        .send()
        .await
        .unwrap();
    let csrf_cookie = set_cookie(&login_page, "__Host-portcullis_csrf").unwrap();
    let csrf = hidden(&login_page.text().await.unwrap(), "csrf");
    let answer = server
        .http
        .post(format!("{}/login", server.base))
        .header("cookie", &csrf_cookie)
        .form(&[
            ("email", "alice@example.com"),
            ("password", PASSWORD),
            ("csrf", csrf.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(set_cookie(&answer, "__Host-portcullis_session"), None);
    let html = answer.text().await.unwrap();
    assert!(html.contains("action=\"/consent/policy\""), "{html}");
    let (token, form_csrf) = (hidden(&html, "consent_token"), hidden(&html, "csrf"));
    let post = |fields: Vec<(&'static str, String)>| {
        server
            .http
            .post(format!("{}/consent/policy", server.base))
            .header("cookie", &csrf_cookie)
            .form(&fields)
            .send()
    };
    let refused = post(vec![
        ("csrf", form_csrf.clone()),
        ("consent_token", token.clone()),
        ("policy_version", "2".into()),
    ])
    .await
    .unwrap();
    assert_eq!(refused.status(), 400, "a required purpose left out");
    let accepted = post(vec![
        ("csrf", form_csrf),
        ("consent_token", token),
        ("policy_version", "2".into()),
        ("consent_account", "on".into()),
    ])
    .await
    .unwrap();
    assert_eq!(accepted.status(), 200);
    let session = set_cookie(&accepted, "__Host-portcullis_session").expect("a session cookie");
    let me = server
        .get(
            "/api/v1/me",
            &Cred::Cookie(session.split_once('=').unwrap().1.to_owned(), None),
        )
        .await;
    assert_eq!(me.status, 200, "{me:?}");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn the_clis_retention_run_executes_a_due_erasure_with_its_notice_and_the_chain_verifies(
    pool: PgPool,
) {
    use portcullis_authserver::auth::privacy::{ErasedNotice, KvOnlyEraser, retention_rules};
    use portcullis_authserver::privacy::retention::{PrivacyRun, run};
    use portcullis_authserver::startup::secrets_dir;
    use portcullis_authserver::store::Postgres;
    use portcullis_authserver::store::kv::Kv;

    let (server, clock) = with_grace(&pool, 1).await;
    let cred = bearer(&server.user("alice@example.com").await);
    let asked = send(
        &server,
        Method::DELETE,
        "/api/v1/me",
        json!({"password": PASSWORD}),
        &cred,
    )
    .await;
    assert_eq!(asked.status, 202);
    clock.advance(std::time::Duration::from_secs(86_401));
    // What `retention run --secrets-dir DIR` builds: the audit log under the secrets dir's
    // key, the realm's Redis, and the notice written to the outbox table.
    let keys =
        portcullis_audit::AuditKeys::parse(&server.secret_file(secrets_dir::files::AUDIT_KEY))
            .unwrap();
    let audit = portcullis_audit::PgAuditLog::new(pool.clone(), std::sync::Arc::new(keys), "test");
    let kv = Kv::redis(&std::env::var("REDIS_URL").unwrap(), &server.redis_prefix)
        .await
        .unwrap();
    let eraser = KvOnlyEraser::new(kv);
    let settings = settings(|_| {});
    let notice = ErasedNotice::for_realm(&settings.spec, clock.clone());
    let rules = portcullis_crds::retention::RetentionRules::default();
    let lock = portcullis_privacy::retention::RetentionLock::try_acquire(&pool, "test")
        .await
        .unwrap()
        .unwrap();
    let summary = run(
        &Postgres::from_pool(pool.clone()),
        &lock,
        Some(PrivacyRun {
            audit: &audit,
            kv: &eraser,
            hook: Some(&notice),
            rules: retention_rules(&rules),
        }),
        None,
        &rules,
        clock.now(),
        false,
    )
    .await
    .unwrap();
    lock.release().await.unwrap();
    assert_eq!(summary.counts["erasures"], 1, "{summary:?}");
    assert!(summary.failures.is_empty(), "{summary:?}");
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM users WHERE email_canonical = $1",
            "alice@example.com"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM notification_outbox WHERE event = $1 AND user_id IS NULL",
            "account.erased"
        )
        .await,
        1
    );
    assert!(chain_ok(&server).await);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn an_erasure_completes_beside_authorization_codes_and_takes_only_the_users_own(
    pool: PgPool,
) {
    let server = start(pool.clone(), Options::default()).await;
    server.user("alice@example.com").await;
    let id = user_id(&pool, "alice@example.com").await;
    let client = redis::Client::open(std::env::var("REDIS_URL").unwrap()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    // Authorization codes are hashes (`rec`, `exp`), as the server stores them: one of
    // Alice's, one of someone else's.
    let mine = format!("{}code:alice", server.redis_prefix);
    let theirs = format!("{}code:other", server.redis_prefix);
    for (key, user) in [(&mine, id), (&theirs, uuid::Uuid::new_v4())] {
        let record = json!({"user_id": user}).to_string();
        let _: () = redis::AsyncCommands::hset_multiple(
            &mut conn,
            key,
            &[("rec", record.as_str()), ("exp", "0")],
        )
        .await
        .unwrap();
    }
    let erased = server
        .admin_call(Method::POST, &format!("/admin/v1/users/{id}/erase"))
        .await;
    assert_eq!(erased.status, 202, "{erased:?}");
    assert_eq!(erased.body["done"], true, "{erased:?}");
    let exists = |key: String| {
        let client = client.clone();
        async move {
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            redis::AsyncCommands::exists::<_, bool>(&mut conn, key)
                .await
                .unwrap()
        }
    };
    assert!(!exists(mine).await, "Alice's code is erased");
    assert!(exists(theirs).await, "another user's code stays");
}
