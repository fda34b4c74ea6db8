//! Social sign-in's server side without an upstream (the flows with real providers are in
//! e2e/tests/social_signin.rs): unknown providers, callbacks no browser started, a provider
//! that cannot be reached, accounts without a password, and the identities in `/api/v1/me`.

use serde_json::json;
use sqlx::PgPool;

use crate::support::*;

/// A realm whose provider `corp` is an OpenID Connect issuer nothing listens on.
fn with_unreachable_provider() -> Options {
    Options::spec(|spec| {
        spec.social_providers = serde_json::from_value(json!([{
            "name": "corp", "type": "Oidc", "clientId": "portcullis",
            "clientSecretRef": {"name": "social", "key": "corp"},
            "issuerUrl": "https://127.0.0.1:9"
        }]))
        .unwrap();
    })
}

/// A plain GET that keeps the redirect, with `cookie` when given.
async fn get(server: &TestServer, path: &str, cookie: Option<&str>) -> reqwest::Response {
    let mut request = server.http.get(format!("{}{path}", server.base));
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    request.send().await.unwrap()
}

fn set_cookies(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect()
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_provider_the_realm_does_not_have_is_not_found(pool: PgPool) {
    let server = start(pool, with_unreachable_provider()).await;
    let answer = get(&server, "/oauth2/social/github/start", None).await;
    assert_eq!(answer.status(), 404);
    assert!(set_cookies(&answer).is_empty());
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_realm_without_providers_has_no_social_routes_to_use(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    assert_eq!(
        get(&server, "/oauth2/social/corp/start", None)
            .await
            .status(),
        404
    );
    let login = get(&server, "/login", None).await.text().await.unwrap();
    assert!(!login.contains("/oauth2/social/"));
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn the_login_page_offers_the_realms_providers(pool: PgPool) {
    let server = start(pool, with_unreachable_provider()).await;
    let page = get(&server, "/login?next=%2Faccount", None)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("href=\"/oauth2/social/corp/start?next=%2Faccount\""),
        "{page}"
    );
    assert!(page.contains("Sign in with corp"));
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_provider_that_cannot_be_reached_answers_502_and_binds_nothing(pool: PgPool) {
    let server = start(pool, with_unreachable_provider()).await;
    let answer = get(&server, "/oauth2/social/corp/start", None).await;
    assert_eq!(answer.status(), 502);
    assert!(set_cookies(&answer).is_empty(), "no pending sign-in");
    let page = answer.text().await.unwrap();
    assert!(page.contains("corp did not complete the sign-in"), "{page}");
    // The discovery's URL or reason are not shown.
    assert!(!page.contains("127.0.0.1:9"), "{page}");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_callback_no_browser_started_is_refused_and_signs_no_one_in(pool: PgPool) {
    let server = start(pool, with_unreachable_provider()).await;
    for cookie in [None, Some("__Host-portcullis_social=forged-id")] {
        let answer = get(
            &server,
            "/oauth2/social/corp/callback?code=c&state=s",
            cookie,
        )
        .await;
        assert_eq!(answer.status(), 400, "{cookie:?}");
        let cookies = set_cookies(&answer);
        assert!(
            cookies
                .iter()
                .all(|c| !c.starts_with("__Host-portcullis_session=")),
            "{cookies:?}"
        );
        assert!(
            cookies
                .iter()
                .any(|c| c.starts_with("__Host-portcullis_social=;")),
            "the social cookie is cleared: {cookies:?}"
        );
        let page = answer.text().await.unwrap();
        assert!(page.contains("expired or was already used"), "{page}");
    }
}

/// An account as social sign-in makes it: verified email, no password.
async fn passwordless(pool: &PgPool, email: &str) -> uuid::Uuid {
    let id = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO users (id, email, email_canonical, password_hash, pepper_version, email_verified, created_at, updated_at) \
         VALUES ($1, $2, $2, NULL, '1', true, now(), now())",
    )
    .bind(id)
    .bind(email)
    .execute(pool)
    .await
    .unwrap();
    id
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn an_account_without_a_password_is_signed_in_by_no_password(pool: PgPool) {
    passwordless(&pool, "sam@example.com").await;
    let server = start(pool, Options::default()).await;
    // Unknown accounts are checked against a dummy hash whose input is no secret: it must not
    // stand in for a missing password.
    for password in [
        PASSWORD,
        "portcullis dummy password for unknown accounts",
        "",
    ] {
        let answer = server.login("sam@example.com", password).await;
        assert_ne!(answer.status, 200, "{password:?}");
        assert!(answer.session_cookie().is_none());
    }
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn an_account_without_a_password_gets_one_by_a_reset_and_then_signs_in(pool: PgPool) {
    passwordless(&pool, "sam@example.com").await;
    let server = start(pool, Options::default()).await;
    assert_eq!(server.request_reset("sam@example.com").await.status, 202);
    let token = server.mailed_code("Reset code:").await;
    let reset = server.confirm_reset(&token, PASSWORD).await;
    assert!(reset.status < 300, "{:?}", reset.body);
    assert_eq!(server.login("sam@example.com", PASSWORD).await.status, 200);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn me_lists_the_linked_identities_and_unlinking_an_unknown_one_is_not_found(pool: PgPool) {
    let server = start(pool, with_unreachable_provider()).await;
    server.register("ada@example.com", PASSWORD).await;
    let login = server.login("ada@example.com", PASSWORD).await;
    let me = server.get("/api/v1/me", &bearer(&login)).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["identities"], json!([]));
    let unknown = server
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/me/identities/{}", uuid::Uuid::new_v4()),
            None,
            &bearer(&login),
        )
        .await;
    assert_eq!(unknown.status, 404);
    let malformed = server
        .call(
            reqwest::Method::DELETE,
            "/api/v1/me/identities/not-a-uuid",
            None,
            &bearer(&login),
        )
        .await;
    assert_eq!(malformed.status, 400);
}

/// The account page's link form posted for provider `corp` by the session of `login`.
async fn link_corp(server: &TestServer, login: &Answer) -> reqwest::Response {
    let cookie = format!(
        "__Host-portcullis_session={}",
        login.session_cookie().unwrap()
    );
    let page = get(server, "/account", Some(&cookie))
        .await
        .text()
        .await
        .unwrap();
    let csrf = crate::pages::hidden(&page, "csrf");
    server
        .http
        .post(format!("{}/account/identities/link", server.base))
        .header("cookie", cookie)
        .form(&[("provider", "corp"), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap()
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn linking_a_provider_needs_a_sign_in_from_the_last_ten_minutes(pool: PgPool) {
    let clock = stopped_clock();
    let mut options = with_unreachable_provider();
    options.clock = clock.clone();
    let server = start(pool, options).await;
    server.user("ada@example.com").await;
    let login = server.login("ada@example.com", PASSWORD).await;
    // Fresh: on to the provider (which cannot be reached here: 502, past the freshness check).
    assert_eq!(link_corp(&server, &login).await.status(), 502);
    clock.advance(minutes(11));
    let stale = link_corp(&server, &login).await;
    assert_eq!(stale.status(), 403);
    assert!(set_cookies(&stale).is_empty(), "no pending link");
    let page = stale.text().await.unwrap();
    assert!(page.contains("sign in again"), "{page}");
}

/// A link row of `user` as the link store writes it.
async fn linked(pool: &PgPool, user: uuid::Uuid, subject: &str) {
    sqlx::query(
        "INSERT INTO linked_identities (id, user_id, provider, issuer, subject, email, created_at, last_used_at) \
         VALUES (gen_random_uuid(), $1, 'corp', 'https://id.example.com', $2, NULL, now(), now())",
    )
    .bind(user)
    .bind(subject)
    .execute(pool)
    .await
    .unwrap();
}

async fn links_of(pool: &PgPool, email: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM linked_identities l JOIN users u ON u.id = l.user_id WHERE u.email_canonical = $1",
    )
    .bind(email)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_reset_that_proves_the_email_drops_links_made_before_the_proof(pool: PgPool) {
    let server = start(pool.clone(), with_unreachable_provider()).await;
    // An unverified account (whoever typed the address; a realm without verification lets it
    // sign in) with a link, and a verified one with a link.
    server.user("ada@example.com").await;
    server.user("bob@example.com").await;
    sqlx::query(
        "UPDATE users SET email_verified = false WHERE email_canonical = 'ada@example.com'",
    )
    .execute(&pool)
    .await
    .unwrap();
    for (email, subject) in [("ada@example.com", "squatter"), ("bob@example.com", "bob")] {
        let (id,): (uuid::Uuid,) =
            sqlx::query_as("SELECT id FROM users WHERE email_canonical = $1")
                .bind(email)
                .fetch_one(&pool)
                .await
                .unwrap();
        linked(&pool, id, subject).await;
    }
    for email in ["ada@example.com", "bob@example.com"] {
        assert_eq!(server.request_reset(email).await.status, 202);
        let token = server.mailed_code_to(email, "Reset code:").await;
        let reset = server.confirm_reset(&token, OTHER_PASSWORD).await;
        assert!(reset.status < 300, "{email}: {:?}", reset.body);
    }
    assert_eq!(
        links_of(&pool, "ada@example.com").await,
        0,
        "the squatter's link"
    );
    assert_eq!(
        links_of(&pool, "bob@example.com").await,
        1,
        "a proven owner's link"
    );
}

/// Takes the password off `email`'s account, as social sign-in makes accounts; its sessions
/// stay.
async fn drop_password(pool: &PgPool, email: &str) {
    sqlx::query("UPDATE users SET password_hash = NULL WHERE email_canonical = $1")
        .bind(email)
        .execute(pool)
        .await
        .unwrap();
}

async fn delete_me(server: &TestServer, cred: &Cred) -> Answer {
    server
        .call(reqwest::Method::DELETE, "/api/v1/me", Some(json!({})), cred)
        .await
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn an_account_without_a_password_deletes_itself_only_from_a_recent_sign_in(pool: PgPool) {
    let clock = stopped_clock();
    let options = Options {
        clock: clock.clone(),
        ..Options::default()
    };
    let server = start(pool.clone(), options).await;
    let stale = server.user("sam@example.com").await;
    clock.advance(minutes(11));
    let recent = server.login("sam@example.com", PASSWORD).await;
    drop_password(&pool, "sam@example.com").await;

    let refused = delete_me(&server, &cookie(&stale)).await;
    assert_eq!(refused.status, 403, "{refused:?}");
    assert_eq!(refused.body["code"], "reauthentication_required");
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE NOT disabled")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(users, 1, "nothing was requested");

    let erased = delete_me(&server, &cookie(&recent)).await;
    assert_eq!(erased.status, 202, "{erased:?}");
    assert!(erased.body["erasure_id"].is_string());
    assert_eq!(server.get("/api/v1/me", &cookie(&recent)).await.status, 401);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_password_check_on_an_account_without_one_says_so_and_counts_no_failure(pool: PgPool) {
    let server = start(pool.clone(), Options::default()).await;
    let login = server.user("sam@example.com").await;
    drop_password(&pool, "sam@example.com").await;
    // More tries than the lockout allows: none is a guess, none is counted.
    for _ in 0..6 {
        let change = server
            .call(
                reqwest::Method::POST,
                "/api/v1/me/password",
                Some(json!({"current_password": PASSWORD, "new_password": OTHER_PASSWORD})),
                &bearer(&login),
            )
            .await;
        assert_eq!(change.status, 409, "{change:?}");
        assert_eq!(change.body["code"], "password_not_set");
    }
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn the_account_page_of_an_account_without_a_password_offers_a_reset_and_asks_for_none(
    pool: PgPool,
) {
    let server = start(pool.clone(), Options::default()).await;
    let login = server.user("sam@example.com").await;
    drop_password(&pool, "sam@example.com").await;
    let cookie = format!(
        "__Host-portcullis_session={}",
        login.session_cookie().unwrap()
    );
    let page = get(&server, "/account", Some(&cookie))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("href=\"/reset-password\""), "{page}");
    assert!(!page.contains("id=\"current_password\""), "{page}");
    assert!(!page.contains("id=\"delete_password\""), "{page}");
    assert!(!page.contains("id=\"enrol_password\""), "{page}");
    assert!(
        page.contains("needs a sign-in from the last 10 minutes"),
        "{page}"
    );
}
