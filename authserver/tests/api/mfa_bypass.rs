//! An account with TOTP gets no session and no token without its second factor, by any route:
//! the API login, the hosted login form, an OpenID Connect authorization through the hosted
//! login, a password reset, and a refresh-token family from before the enrolment; nor does a
//! session or family from before the realm required TOTP. A code is
//! accepted once across two instances sharing PostgreSQL and Redis. Codes are computed by the
//! tests' own RFC 6238 (`mfa::totp_at`), not by the server's.

use serde_json::json;
use sqlx::PgPool;

use crate::mfa::{claims, code_on, enrol, enrolled_user, mfa_token, second_step, stopped};
use crate::pages::{hidden, set_cookie};
use crate::support::*;

const SESSION: &str = "__Host-portcullis_session";
const AUTHORIZE: &str = "/oauth2/authorize?client_id=web&redirect_uri=http%3A%2F%2Flocalhost%3A7777%2Fcb&response_type=code&scope=openid&state=s&nonce=n";

/// A server with the OIDC test clients on a stopped clock.
async fn with_clients(pool: PgPool) -> (TestServer, portcullis_authserver::clock::Clock) {
    let clock = stopped_clock();
    let server = start(
        pool,
        Options {
            clock: clock.clone(),
            clients: crate::oidc::clients(),
            ..Options::default()
        },
    )
    .await;
    (server, clock)
}

/// Submits the hosted login form (with `req` when given); the raw answer.
async fn hosted_login(server: &TestServer, req: Option<&str>) -> reqwest::Response {
    let path = req.map_or_else(|| "/login".to_owned(), |r| format!("/login?req={r}"));
    let page = server
        .http
        .get(format!("{}{path}", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let cookie = set_cookie(&page, "__Host-portcullis_csrf").expect("a CSRF cookie");
    let html = page.text().await.unwrap();
    let mut fields = vec![
        ("email".to_owned(), "alice@example.com".to_owned()),
        ("password".to_owned(), PASSWORD.to_owned()),
        ("csrf".to_owned(), hidden(&html, "csrf")),
    ];
    if let Some(req) = req {
        fields.push(("req".to_owned(), req.to_owned()));
    }
    server
        .http
        .post(format!("{}/login", server.base))
        .header("cookie", cookie)
        .form(&fields)
        .send()
        .await
        .unwrap()
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn the_api_login_gives_no_token_without_the_second_factor(pool: PgPool) {
    let (server, clock) = stopped(pool).await;
    enrolled_user(&server, &clock, "alice@example.com").await;
    let login = server.login("alice@example.com", PASSWORD).await;
    assert_eq!(login.body["mfa_required"], true, "{login:?}");
    assert!(login.body.get("access_token").is_none());
    assert!(login.body.get("refresh_token").is_none());
    assert_eq!(login.session_cookie(), None);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn the_hosted_login_form_gives_no_session_without_the_second_factor(pool: PgPool) {
    let (server, clock) = stopped(pool).await;
    enrolled_user(&server, &clock, "alice@example.com").await;
    let answer = hosted_login(&server, None).await;
    assert_eq!(set_cookie(&answer, SESSION), None, "{answer:?}");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn an_oidc_authorization_gives_no_code_without_the_second_factor(pool: PgPool) {
    let (server, clock) = with_clients(pool).await;
    enrolled_user(&server, &clock, "alice@example.com").await;
    let authorize = server
        .http
        .get(format!("{}{AUTHORIZE}", server.base))
        .send()
        .await
        .unwrap();
    let login = authorize.headers()["location"].to_str().unwrap().to_owned();
    let req = login.strip_prefix("/login?req=").unwrap().to_owned();
    let answer = hosted_login(&server, Some(&req)).await;
    let session = set_cookie(&answer, SESSION);
    assert_eq!(session, None);
    // Whatever the login answered, going on with every cookie it set (as a browser would)
    // reaches no code.
    let resumed = server
        .http
        .get(format!("{}/oauth2/authorize/resume?req={req}", server.base))
        .header("cookie", session.unwrap_or_default())
        .send()
        .await
        .unwrap();
    let went = resumed
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(!went.starts_with("http://localhost:7777/cb"), "{went}");
    assert!(!went.contains("code="), "{went}");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_session_completed_with_the_second_factor_authorizes_with_amr_pwd_otp(pool: PgPool) {
    let (server, clock) = with_clients(pool).await;
    let alice = enrolled_user(&server, &clock, "alice@example.com").await;
    let token = mfa_token(&server, "alice@example.com").await;
    let login = second_step(
        &server,
        json!({"mfa_token": token, "code": code_on(&clock, &alice.secret, 0)}),
    )
    .await;
    let cookie = format!("{SESSION}={}", login.session_cookie().unwrap());
    let authorize = server
        .http
        .get(format!("{}{AUTHORIZE}", server.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    let target = url::Url::parse(authorize.headers()["location"].to_str().unwrap()).unwrap();
    let code = target
        .query_pairs()
        .find(|(k, _)| k == "code")
        .expect("a code")
        .1
        .into_owned();
    let tokens = read(
        server
            .http
            .post(format!("{}/oauth2/token", server.base))
            .basic_auth("web", Some(server.client_secret("web")))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", "http://localhost:7777/cb"),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(tokens.status, 200, "{tokens:?}");
    let id = claims(tokens.body["id_token"].as_str().unwrap());
    assert_eq!(id["amr"], json!(["pwd", "otp"]));
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_password_reset_gives_no_session_and_the_next_login_still_asks_the_second_factor(
    pool: PgPool,
) {
    let (server, clock) = stopped(pool).await;
    enrolled_user(&server, &clock, "alice@example.com").await;
    assert_eq!(server.request_reset("alice@example.com").await.status, 202);
    let reset = server.mailed_code("Reset code:").await;
    let confirmed = server.confirm_reset(&reset, OTHER_PASSWORD).await;
    assert_eq!(confirmed.status, 204, "{confirmed:?}");
    assert_eq!(confirmed.session_cookie(), None);
    assert_eq!(confirmed.body, serde_json::Value::Null);
    let login = server.login("alice@example.com", OTHER_PASSWORD).await;
    assert_eq!(login.status, 200, "{login:?}");
    assert_eq!(login.body["mfa_required"], true, "{login:?}");
    assert!(login.body.get("access_token").is_none());
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_refresh_family_from_before_the_enrolment_no_longer_refreshes(pool: PgPool) {
    let (server, clock) = stopped(pool).await;
    assert_eq!(
        server.register("alice@example.com", PASSWORD).await.status,
        201
    );
    let before = server.login("alice@example.com", PASSWORD).await;
    let enrolling = server.login("alice@example.com", PASSWORD).await;
    enrol(&server, &bearer(&enrolling), &clock).await;
    let refreshed = server
        .refresh(before.body["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(refreshed.status, 400, "{refreshed:?}");
    assert_eq!(refreshed.body["error"], "invalid_grant");
    assert!(refreshed.body.get("access_token").is_none());
}

/// A server of `first`'s realm (database, Redis keys, secrets) whose TOTP became required.
async fn now_requiring_totp(pool: &PgPool, first: &TestServer) -> TestServer {
    start_sharing(
        pool.clone(),
        Options {
            clients: crate::oidc::clients(),
            redis_prefix: first.redis_prefix.clone(),
            ..Options::spec(|s| {
                s.mfa.totp.enabled = true;
                s.mfa.totp.required = true;
            })
        },
        Some(first),
    )
    .await
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_refresh_family_from_before_totp_was_required_ends_at_its_next_refresh(pool: PgPool) {
    let first = start(pool.clone(), Options::default()).await;
    let login = first.user("alice@example.com").await;
    let token = login.body["refresh_token"].as_str().unwrap();
    let required = now_requiring_totp(&pool, &first).await;
    let refused = required.refresh(token).await;
    assert_eq!(refused.status, 400, "{refused:?}");
    assert_eq!(refused.body["error"], "invalid_grant");
    assert!(refused.body.get("access_token").is_none());
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_session_from_before_totp_was_required_opens_nothing_without_signing_in_again(
    pool: PgPool,
) {
    let first = start(
        pool.clone(),
        Options {
            clients: crate::oidc::clients(),
            ..Options::default()
        },
    )
    .await;
    let login = first.user("alice@example.com").await;
    let required = now_requiring_totp(&pool, &first).await;
    let authorize = required
        .http
        .get(format!("{}{AUTHORIZE}", required.base))
        .header(
            "cookie",
            format!("{SESSION}={}", login.session_cookie().unwrap()),
        )
        .send()
        .await
        .unwrap();
    let went = authorize.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        went.starts_with("/login?req="),
        "to the login, not a code: {went}"
    );
    assert_eq!(
        required.get("/api/v1/me", &bearer(&login)).await.status,
        401
    );
    assert_eq!(
        required.get("/api/v1/me", &cookie(&login)).await.status,
        401
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_code_used_on_one_instance_is_refused_as_a_replay_on_another(pool: PgPool) {
    let clock = stopped_clock();
    let a = start(
        pool.clone(),
        Options {
            clock: clock.clone(),
            ..Options::default()
        },
    )
    .await;
    let b = start_sharing(
        pool,
        Options {
            clock: clock.clone(),
            redis_prefix: a.redis_prefix.clone(),
            ..Options::default()
        },
        Some(&a),
    )
    .await;
    let alice = enrolled_user(&a, &clock, "alice@example.com").await;
    let code = code_on(&clock, &alice.secret, 0);
    let on_a = mfa_token(&a, "alice@example.com").await;
    let used = second_step(&a, json!({"mfa_token": on_a, "code": code})).await;
    assert_eq!(used.status, 200, "{used:?}");
    let on_b = mfa_token(&b, "alice@example.com").await;
    let replayed = second_step(&b, json!({"mfa_token": on_b, "code": code})).await;
    assert_eq!((replayed.status, replayed.code()), (401, "invalid_totp"));
    assert_eq!(replayed.session_cookie(), None);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_pending_login_started_on_one_instance_completes_on_another(pool: PgPool) {
    let clock = stopped_clock();
    let a = start(
        pool.clone(),
        Options {
            clock: clock.clone(),
            ..Options::default()
        },
    )
    .await;
    let b = start_sharing(
        pool,
        Options {
            clock: clock.clone(),
            redis_prefix: a.redis_prefix.clone(),
            ..Options::default()
        },
        Some(&a),
    )
    .await;
    let alice = enrolled_user(&a, &clock, "alice@example.com").await;
    let token = mfa_token(&a, "alice@example.com").await;
    let done = second_step(
        &b,
        json!({"mfa_token": token, "code": code_on(&clock, &alice.secret, 0)}),
    )
    .await;
    assert_eq!(done.status, 200, "{done:?}");
}
