//! The self-service pages over real HTTP: registration, email verification and password reset.
//! Their answers never tell whether an account exists, a GET never spends a mailed token, a
//! password the policy refuses is reported next to its field, and a registration made during
//! an authorization request goes on to that request.

use sqlx::PgPool;

use crate::pages::{hidden, set_cookie};
use crate::support::*;

/// A browser with its pre-session CSRF cookie and the CSRF field of the last form it got.
struct Browser {
    cookie: String,
    csrf: String,
}

impl Browser {
    /// Opens `path` (a page with a form); keeps the CSRF cookie and field.
    async fn open(server: &TestServer, path: &str) -> (Browser, String) {
        let answer = server
            .http
            .get(format!("{}{path}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "GET {path}");
        let cookie = set_cookie(&answer, "__Host-portcullis_csrf").expect("a CSRF cookie");
        let html = answer.text().await.unwrap();
        let csrf = hidden(&html, "csrf");
        (Browser { cookie, csrf }, html)
    }

    /// POSTs `fields` and the CSRF field to `path`; the status and the page.
    async fn post(
        &self,
        server: &TestServer,
        path: &str,
        fields: &[(&str, &str)],
    ) -> (u16, String) {
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        form.push(("csrf", &self.csrf));
        let answer = server
            .http
            .post(format!("{}{path}", server.base))
            .header("cookie", &self.cookie)
            .form(&form)
            .send()
            .await
            .unwrap();
        (answer.status().as_u16(), answer.text().await.unwrap())
    }
}

fn verifying() -> Options {
    Options::spec(|s| s.email_verification.required = true)
}

async fn register_page(server: &TestServer, email: &str, password: &str) -> (u16, String) {
    let (browser, _) = Browser::open(server, "/register").await;
    browser
        .post(
            server,
            "/register",
            &[
                ("email", email),
                ("password", password),
                ("consent", "account"),
                ("policy_version", "1"),
            ],
        )
        .await
}

/// A mail body's text with quoted-printable soft breaks and `=3D` undone.
fn quoted_printable(mail: &str) -> String {
    mail.replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=")
}

/// The `<main>` of a page.
fn main_of(html: &str) -> &str {
    let start = html.find("<main").unwrap();
    &html[start..html.find("</main>").unwrap()]
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn registering_a_taken_address_shows_exactly_the_page_a_new_address_gets(pool: PgPool) {
    let server = start(pool, verifying()).await;
    let new = register_page(&server, "alice@example.com", PASSWORD).await;
    let taken = register_page(&server, "alice@example.com", OTHER_PASSWORD).await;
    assert_eq!(new.0, 200);
    assert_eq!(new, taken);
    assert!(new.1.contains("Check your email"), "{}", new.1);
    let mails = server.mails_settled(2).await;
    assert!(
        mails[1].contains("Subject: Registration attempt"),
        "{}",
        mails[1]
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn without_verification_a_taken_address_also_looks_like_a_new_one(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let new = register_page(&server, "alice@example.com", PASSWORD).await;
    let taken = register_page(&server, "alice@example.com", OTHER_PASSWORD).await;
    assert_eq!(new.0, 200);
    assert_eq!(new, taken);
    assert_eq!(
        server.login("alice@example.com", PASSWORD).await.status,
        200
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_password_the_policy_refuses_is_reported_next_to_the_password_field(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let (status, html) = register_page(&server, "alice@example.com", "short").await;
    assert_eq!(status, 400);
    let field = html.split("<label for=\"password\">").nth(1).unwrap();
    let field = &field[..field.find("</div>").unwrap()];
    assert!(
        field.contains("class=\"field-error\" id=\"password-error\""),
        "{field}"
    );
    assert!(
        field.contains("aria-describedby=\"password-error\""),
        "{field}"
    );
    assert!(
        html.contains("value=\"alice@example.com\""),
        "the email is kept"
    );
    assert_eq!(server.login("alice@example.com", "short").await.status, 401);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_registration_post_without_its_csrf_pair_creates_nothing(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let (browser, _) = Browser::open(&server, "/register").await;
    let forged = Browser {
        cookie: browser.cookie,
        csrf: "forged".into(),
    };
    let fields = [
        ("email", "alice@example.com"),
        ("password", PASSWORD),
        ("consent", "account"),
        ("policy_version", "1"),
    ];
    assert_eq!(forged.post(&server, "/register", &fields).await.0, 403);
    assert_eq!(
        server.login("alice@example.com", PASSWORD).await.status,
        401
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn opening_the_verification_link_spends_nothing_and_its_button_verifies(pool: PgPool) {
    let server = start(pool, verifying()).await;
    register_page(&server, "alice@example.com", PASSWORD).await;
    let token = server.mailed_code("Verification code:").await;
    let link = format!("/verify-email?token={token}");
    Browser::open(&server, &link).await;
    let (browser, html) = Browser::open(&server, &link).await;
    assert_eq!(hidden(&html, "token"), token);
    assert_eq!(
        server.login("alice@example.com", PASSWORD).await.status,
        403,
        "two GETs verified nothing"
    );
    let (status, page) = browser
        .post(&server, "/verify-email", &[("token", &token)])
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("href=\"/login\""), "{page}");
    assert_eq!(
        server.login("alice@example.com", PASSWORD).await.status,
        200
    );
    let (again, _) = browser
        .post(&server, "/verify-email", &[("token", &token)])
        .await;
    assert_eq!(again, 400, "single use");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_reset_for_an_unknown_address_looks_exactly_like_one_for_a_known_address(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    server.register("alice@example.com", PASSWORD).await;
    let (browser, _) = Browser::open(&server, "/reset-password").await;
    let known = browser
        .post(
            &server,
            "/reset-password",
            &[("email", "alice@example.com")],
        )
        .await;
    let unknown = browser
        .post(
            &server,
            "/reset-password",
            &[("email", "nobody@example.com")],
        )
        .await;
    assert_eq!(known.0, 200);
    assert_eq!(known, unknown);
    let mails = server.mails_settled(1).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(server.mails().len(), 1, "{mails:?}");
    assert!(mails[0].contains("To: alice@example.com"), "{}", mails[0]);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_reset_link_asks_for_the_new_password_and_reports_policy_errors_by_the_field(
    pool: PgPool,
) {
    let server = start(pool, Options::default()).await;
    server.register("alice@example.com", PASSWORD).await;
    server.request_reset("alice@example.com").await;
    let token = server.mailed_code("Reset code:").await;
    let (browser, html) = Browser::open(&server, &format!("/reset-password?token={token}")).await;
    assert!(html.contains("<label for=\"new_password\">"), "{html}");
    let (status, weak) = browser
        .post(
            &server,
            "/reset-password/confirm",
            &[("token", &token), ("new_password", "short")],
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        weak.contains("aria-describedby=\"new_password-error\""),
        "{weak}"
    );
    assert_eq!(
        server.login("alice@example.com", PASSWORD).await.status,
        200
    );
    let (status, done) = browser
        .post(
            &server,
            "/reset-password/confirm",
            &[("token", &token), ("new_password", OTHER_PASSWORD)],
        )
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(
        server.login("alice@example.com", PASSWORD).await.status,
        401
    );
    assert_eq!(
        server
            .login("alice@example.com", OTHER_PASSWORD)
            .await
            .status,
        200
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn registering_during_an_authorization_goes_on_to_that_request_after_verifying(pool: PgPool) {
    let server = start(
        pool,
        Options {
            clients: crate::oidc::clients(),
            ..verifying()
        },
    )
    .await;
    let authorize = server
        .http
        .get(format!(
            "{}/oauth2/authorize?client_id=web&redirect_uri=http%3A%2F%2Flocalhost%3A7777%2Fcb&response_type=code&scope=openid&state=s&nonce=n",
            server.base
        ))
        .send()
        .await
        .unwrap();
    let login = authorize.headers()["location"].to_str().unwrap().to_owned();
    let req = login.strip_prefix("/login?req=").unwrap().to_owned();
    let (_, login_page) = Browser::open(&server, &login).await;
    let register = format!("/register?req={req}");
    assert!(
        login_page.contains(&format!("href=\"{register}\"")),
        "{login_page}"
    );
    assert!(login_page.contains(&format!("href=\"/reset-password?req={req}\"")));

    let (browser, form) = Browser::open(&server, &register).await;
    assert_eq!(hidden(&form, "req"), req);
    let (status, pending) = browser
        .post(
            &server,
            "/register",
            &[
                ("email", "alice@example.com"),
                ("password", PASSWORD),
                ("consent", "account"),
                ("policy_version", "1"),
                ("req", &req),
            ],
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        main_of(&pending).contains(&format!("href=\"{login}\"")),
        "{pending}"
    );
    let mail = quoted_printable(&server.mails_settled(1).await.remove(0));
    let token = server.mailed_code("Verification code:").await;
    let link = format!("/verify-email?token={token}&req={req}");
    assert!(mail.contains(&link), "{mail}");

    let (browser, verify) = Browser::open(&server, &link).await;
    assert_eq!(hidden(&verify, "req"), req);
    let (status, verified) = browser
        .post(
            &server,
            "/verify-email",
            &[("token", &token), ("req", &req)],
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        main_of(&verified).contains(&format!("href=\"{login}\"")),
        "{verified}"
    );

    let (browser, _) = Browser::open(&server, &login).await;
    let answer = server
        .http
        .post(format!("{}/login", server.base))
        .header("cookie", &browser.cookie)
        .form(&[
            ("email", "alice@example.com"),
            ("password", PASSWORD),
            ("csrf", &browser.csrf),
            ("req", &req),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303);
    assert_eq!(
        answer.headers()["location"],
        format!("/oauth2/authorize/resume?req={req}").as_str()
    );
}
