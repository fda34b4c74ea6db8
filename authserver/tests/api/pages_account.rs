//! The account page over real HTTP: it needs a session (else to the login page and back), its
//! password change checks the current password and ends the other sessions, a session revoked
//! there loses its tokens, and a disconnected app loses its consent and its refresh tokens.

use serde_json::Value;
use sqlx::PgPool;

use crate::pages::hidden;
use crate::support::*;

const SESSION: &str = "__Host-portcullis_session";

/// The cookie header of an API login's session.
fn session_of(login: &Answer) -> String {
    format!("{SESSION}={}", login.session_cookie().unwrap())
}

async fn get(server: &TestServer, path: &str, cookie: &str) -> reqwest::Response {
    server
        .http
        .get(format!("{}{path}", server.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

async fn post(
    server: &TestServer,
    path: &str,
    cookie: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    server
        .http
        .post(format!("{}{path}", server.base))
        .header("cookie", cookie)
        .form(fields)
        .send()
        .await
        .unwrap()
}

fn location(answer: &reqwest::Response) -> String {
    answer.headers()["location"].to_str().unwrap().to_owned()
}

/// The account page of the session `cookie`, and its CSRF field.
async fn account(server: &TestServer, cookie: &str) -> (String, String) {
    let answer = get(server, "/account", cookie).await;
    assert_eq!(answer.status(), 200);
    let html = answer.text().await.unwrap();
    let csrf = hidden(&html, "csrf");
    (html, csrf)
}

/// Tokens the client `partner` gets at the token endpoint for `scope`, after the user of the
/// session `cookie` allowed it on the consent page.
pub async fn partner_tokens(server: &TestServer, cookie: &str, scope: &str) -> Value {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", "partner")
        .append_pair("redirect_uri", "http://localhost:7777/cb")
        .append_pair("response_type", "code")
        .append_pair("scope", scope)
        .append_pair("nonce", "n")
        .finish();
    let mut answer = get(server, &format!("/oauth2/authorize?{query}"), cookie).await;
    if location(&answer).starts_with("/consent?") {
        let html = get(server, &location(&answer), cookie)
            .await
            .text()
            .await
            .unwrap();
        let (csrf, req) = (hidden(&html, "csrf"), hidden(&html, "req"));
        answer = post(
            server,
            "/consent",
            cookie,
            &[("csrf", &csrf), ("req", &req), ("decision", "allow")],
        )
        .await;
    }
    let target = url::Url::parse(&location(&answer)).unwrap();
    let code = target
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let answer = server
        .http
        .post(format!("{}/oauth2/token", server.base))
        .basic_auth("partner", Some(server.client_secret("partner")))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://localhost:7777/cb"),
        ])
        .send()
        .await
        .unwrap();
    let answer = read(answer).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body
}

/// A server with the OIDC test clients, and the session cookie of alice signed in to it.
async fn alice_with_the_test_clients(pool: PgPool) -> (TestServer, String) {
    let server = start(
        pool,
        Options {
            clients: crate::oidc::clients(),
            ..Options::default()
        },
    )
    .await;
    let login = server.user("alice@example.com").await;
    (server, session_of(&login))
}

/// The status of `partner` refreshing `token`.
pub async fn partner_refresh(server: &TestServer, token: &str) -> u16 {
    server
        .http
        .post(format!("{}/oauth2/token", server.base))
        .basic_auth("partner", Some(server.client_secret("partner")))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Opens the login page at `path` and signs alice in with `next`; the page and the answer.
async fn sign_in_on_the_page(
    server: &TestServer,
    path: &str,
    next: &str,
) -> (String, reqwest::Response) {
    let page = get(server, path, "").await;
    let csrf_cookie = crate::pages::set_cookie(&page, "__Host-portcullis_csrf").unwrap();
    let html = page.text().await.unwrap();
    let answer = post(
        server,
        "/login",
        &csrf_cookie,
        &[
            ("email", "alice@example.com"),
            ("password", PASSWORD),
            ("csrf", &hidden(&html, "csrf")),
            ("next", next),
        ],
    )
    .await;
    (html, answer)
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn without_a_session_the_account_page_sends_to_sign_in_and_back(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    server.register("alice@example.com", PASSWORD).await;
    let answer = get(&server, "/account", "").await;
    assert_eq!(answer.status(), 303);
    let login = location(&answer);
    assert_eq!(login, "/login?next=%2Faccount");
    let (html, signed_in) = sign_in_on_the_page(&server, &login, "/account").await;
    assert_eq!(hidden(&html, "next"), "/account");
    assert_eq!(signed_in.status(), 303);
    assert_eq!(location(&signed_in), "/account");
    let session = crate::pages::set_cookie(&signed_in, SESSION).unwrap();
    let (html, _) = account(&server, &session).await;
    assert!(html.contains("alice@example.com"), "{html}");
    assert!(html.contains("href=\"/oauth2/logout\""), "a sign-out link");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn only_next_account_is_followed_after_sign_in(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    server.register("alice@example.com", PASSWORD).await;
    let (html, signed_in) = sign_in_on_the_page(
        &server,
        "/login?next=https%3A%2F%2Fevil.example%2F",
        "https://evil.example/",
    )
    .await;
    assert!(!html.contains("evil.example"));
    assert_eq!(signed_in.status(), 200);
    assert!(signed_in.headers().get("location").is_none());
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_password_change_checks_the_current_password_and_ends_the_other_sessions(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let here = server.user("alice@example.com").await;
    let elsewhere = server.login("alice@example.com", PASSWORD).await;
    let cookie = session_of(&here);
    let (_, csrf) = account(&server, &cookie).await;
    let wrong = post(
        &server,
        "/account/password",
        &cookie,
        &[
            ("csrf", &csrf),
            ("current_password", OTHER_PASSWORD),
            ("new_password", OTHER_PASSWORD),
        ],
    )
    .await;
    assert_eq!(wrong.status(), 400);
    let html = wrong.text().await.unwrap();
    assert!(
        html.contains("aria-describedby=\"current_password-error\""),
        "{html}"
    );
    let weak = post(
        &server,
        "/account/password",
        &cookie,
        &[
            ("csrf", &csrf),
            ("current_password", PASSWORD),
            ("new_password", "short"),
        ],
    )
    .await;
    assert_eq!(weak.status(), 400);
    assert!(
        weak.text()
            .await
            .unwrap()
            .contains("aria-describedby=\"new_password-error\"")
    );
    let forged = post(
        &server,
        "/account/password",
        &cookie,
        &[
            ("csrf", "forged"),
            ("current_password", PASSWORD),
            ("new_password", OTHER_PASSWORD),
        ],
    )
    .await;
    assert_eq!(forged.status(), 403);
    let changed = post(
        &server,
        "/account/password",
        &cookie,
        &[
            ("csrf", &csrf),
            ("current_password", PASSWORD),
            ("new_password", OTHER_PASSWORD),
        ],
    )
    .await;
    assert_eq!(changed.status(), 303);
    assert_eq!(location(&changed), "/account?done=password");
    assert_eq!(
        server.get("/api/v1/me", &bearer(&elsewhere)).await.status,
        401
    );
    let done = get(&server, &location(&changed), &cookie).await;
    assert_eq!(done.status(), 200, "this session stays");
    let html = done.text().await.unwrap();
    assert!(html.contains("Your password was changed"), "{html}");
    assert_eq!(
        server
            .login("alice@example.com", OTHER_PASSWORD)
            .await
            .status,
        200
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_session_revoked_on_the_account_page_loses_its_tokens(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let here = server.user("alice@example.com").await;
    let elsewhere = server.login("alice@example.com", PASSWORD).await;
    let cookie = session_of(&here);
    let (html, csrf) = account(&server, &cookie).await;
    assert_eq!(html.matches("This browser").count(), 1, "{html}");
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
    assert!(html.contains(&format!("value=\"{other}\"")));
    let revoked = post(
        &server,
        "/account/sessions/revoke",
        &cookie,
        &[("csrf", &csrf), ("id", &other)],
    )
    .await;
    assert_eq!(revoked.status(), 303);
    assert_eq!(
        server.get("/api/v1/me", &bearer(&elsewhere)).await.status,
        401
    );
    let refresh = elsewhere.body["refresh_token"].as_str().unwrap();
    assert_ne!(server.refresh(refresh).await.status, 200);
    assert_eq!(server.get("/api/v1/me", &bearer(&here)).await.status, 200);
    let (html, _) = account(&server, &cookie).await;
    assert!(!html.contains(&format!("value=\"{other}\"")));
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_disconnected_app_loses_its_consent_and_its_refresh_tokens(pool: PgPool) {
    let (server, cookie) = alice_with_the_test_clients(pool).await;
    let tokens = partner_tokens(&server, &cookie, "openid email offline_access").await;
    let (html, csrf) = account(&server, &cookie).await;
    assert!(html.contains("<td>partner</td>"), "{html}");
    let revoked = post(
        &server,
        "/account/apps/revoke",
        &cookie,
        &[("csrf", &csrf), ("id", "partner")],
    )
    .await;
    assert_eq!(revoked.status(), 303);
    assert_eq!(location(&revoked), "/account?done=app");
    let refresh = tokens["refresh_token"].as_str().unwrap();
    assert_eq!(partner_refresh(&server, refresh).await, 400);
    let (html, _) = account(&server, &cookie).await;
    assert!(!html.contains("<td>partner</td>"), "{html}");
    let again = get(
        &server,
        "/oauth2/authorize?client_id=partner&redirect_uri=http%3A%2F%2Flocalhost%3A7777%2Fcb&response_type=code&scope=openid&nonce=n",
        &cookie,
    )
    .await;
    assert!(location(&again).starts_with("/consent?"), "asked again");
}

/// `partner` refreshing `token` asking for `scope`: the status and the answer's JSON.
async fn partner_refresh_for(server: &TestServer, token: &str, scope: &str) -> (u16, Value) {
    let answer = server
        .http
        .post(format!("{}/oauth2/token", server.base))
        .basic_auth("partner", Some(server.client_secret("partner")))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", token),
            ("scope", scope),
        ])
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap())
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_refresh_asking_for_more_scope_is_refused_without_spending_the_token(pool: PgPool) {
    let (server, cookie) = alice_with_the_test_clients(pool).await;
    let tokens = partner_tokens(&server, &cookie, "openid offline_access").await;
    let refresh = tokens["refresh_token"].as_str().unwrap();

    let (status, body) = partner_refresh_for(&server, refresh, "openid email").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_scope");
    // Not spent: the same token still refreshes (no replay ends the grant).
    let (status, body) = partner_refresh_for(&server, refresh, "openid").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "openid");
}
