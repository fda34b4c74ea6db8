//! The hosted login page and the authorization endpoint's error page over real HTTP: HTML
//! without inline script or style under the realm's CSP, CSRF before any session, the same
//! message for unknown accounts and wrong passwords, never a redirect for an unknown client.

use sqlx::PgPool;

use crate::support::*;

/// The `name=value` of a `Set-Cookie` header set by `answer` for cookie `name`.
pub fn set_cookie(answer: &reqwest::Response, name: &str) -> Option<String> {
    answer
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap().to_owned())
}

/// The value of the hidden field `name` in `html`.
pub fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

struct Form {
    cookie: String,
    csrf: String,
}

async fn login_form(server: &TestServer) -> Form {
    let answer = server
        .http
        .get(format!("{}/login", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let cookie = set_cookie(&answer, "__Host-portcullis_csrf").expect("a CSRF cookie");
    let html = answer.text().await.unwrap();
    Form {
        cookie,
        csrf: hidden(&html, "csrf"),
    }
}

async fn submit(
    server: &TestServer,
    form: &Form,
    email: &str,
    password: &str,
) -> reqwest::Response {
    server
        .http
        .post(format!("{}/login", server.base))
        .header("cookie", &form.cookie)
        .form(&[
            ("email", email),
            ("password", password),
            ("csrf", &form.csrf),
        ])
        .send()
        .await
        .unwrap()
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn the_login_page_is_html_under_the_csp_with_labels_and_a_hashed_stylesheet(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let answer = server
        .http
        .get(format!("{}/login", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let headers = answer.headers().clone();
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(csp.contains("default-src 'self'"), "{csp}");
    let html = answer.text().await.unwrap();
    assert!(html.contains("<label for=\"email\">") && html.contains("<label for=\"password\">"));
    assert!(html.contains("<title>Sign in – test</title>"), "{html}");
    assert!(!html.contains("style=") && !html.contains("<style"));
    let href = html
        .split("rel=\"stylesheet\" href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap();
    let css = server
        .http
        .get(format!("{}{href}", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(css.status(), 200);
    assert!(
        css.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    assert!(
        css.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    let unknown = server
        .http
        .get(format!("{}/static/portcullis-0000.css", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn the_login_form_signs_in_and_sets_the_session_cookie(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    assert_eq!(
        server.register("alice@example.com", PASSWORD).await.status,
        201
    );
    let form = login_form(&server).await;
    let answer = submit(&server, &form, "alice@example.com", PASSWORD).await;
    assert_eq!(answer.status(), 200);
    let session = set_cookie(&answer, "__Host-portcullis_session").expect("a session cookie");
    let me = server
        .get(
            "/api/v1/me",
            &Cred::Cookie(session.split_once('=').unwrap().1.to_owned(), None),
        )
        .await;
    assert_eq!(me.status, 200, "{me:?}");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_login_post_without_its_csrf_pair_is_refused_and_signs_nobody_in(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    server.register("alice@example.com", PASSWORD).await;
    let form = login_form(&server).await;
    let other = login_form(&server).await;
    for (cookie, csrf) in [
        (String::new(), form.csrf.clone()),
        (form.cookie.clone(), String::new()),
        (form.cookie.clone(), other.csrf.clone()),
    ] {
        let answer = submit(
            &server,
            &Form { cookie, csrf },
            "alice@example.com",
            PASSWORD,
        )
        .await;
        assert_eq!(answer.status(), 403);
        assert!(set_cookie(&answer, "__Host-portcullis_session").is_none());
    }
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_wrong_password_and_an_unknown_account_get_the_same_page(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    server.register("alice@example.com", PASSWORD).await;
    let form = login_form(&server).await;
    let wrong = submit(&server, &form, "alice@example.com", OTHER_PASSWORD).await;
    let unknown = submit(&server, &form, "nobody@example.com", OTHER_PASSWORD).await;
    assert_eq!(
        (wrong.status().as_u16(), unknown.status().as_u16()),
        (400, 400)
    );
    let message = |html: String| {
        html.split("role=\"alert\"")
            .nth(1)
            .and_then(|rest| rest.split("</div>").next())
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        message(wrong.text().await.unwrap()),
        message(unknown.text().await.unwrap())
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_rate_limited_sign_in_gets_the_login_page_with_429_and_retry_after(pool: PgPool) {
    // (Login, User) 1/h with burst 1: two tries, then the identifier waits.
    let policy = "apiVersion: portcullis.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: login-user}
spec:
  targetRef: {kind: AuthRealm, name: test}
  rules:
    - name: login-user
      routes: [Login]
      limits: [{key: User, requests: 1, period: 1h, burst: 1}]
";
    let options = Options {
        rate_limiting: true,
        clock: stopped_clock(),
        policies: vec![policy.to_owned()],
        ..Options::default()
    };
    let server = start(pool, options).await;
    let form = login_form(&server).await;
    for _ in 0..2 {
        let wrong = submit(&server, &form, "alice@example.com", OTHER_PASSWORD).await;
        assert_eq!(wrong.status(), 400);
    }
    let limited = submit(&server, &form, "alice@example.com", OTHER_PASSWORD).await;
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "3600");
    let html = limited.text().await.unwrap();
    assert!(html.contains("Too many sign-in attempts"), "{html}");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn an_unknown_client_gets_an_error_page_and_never_a_redirect(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let answer = server
        .http
        .get(format!(
            "{}/oauth2/authorize?client_id=nobody&redirect_uri=https%3A%2F%2Fevil.example%2F&response_type=code&scope=openid&state=s",
            server.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    assert!(answer.headers().get("location").is_none());
    assert!(
        answer.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = answer.text().await.unwrap();
    assert!(html.contains("not registered"), "{html}");
    assert!(!html.contains("evil.example"));
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn the_served_openapi_lists_the_pages_and_the_authorization_endpoint(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let document = server.get("/openapi.json", &Cred::None).await;
    let paths = &document.body["paths"];
    for (path, method) in [
        ("/login", "get"),
        ("/login", "post"),
        ("/oauth2/authorize", "get"),
        ("/oauth2/authorize", "post"),
        ("/oauth2/authorize/resume", "get"),
        ("/static/{file}", "get"),
        ("/register", "get"),
        ("/register", "post"),
        ("/verify-email", "get"),
        ("/verify-email", "post"),
        ("/reset-password", "get"),
        ("/reset-password", "post"),
        ("/reset-password/confirm", "post"),
        ("/account", "get"),
        ("/account/password", "post"),
        ("/account/sessions/revoke", "post"),
        ("/account/apps/revoke", "post"),
    ] {
        assert!(paths[path][method].is_object(), "{method} {path}");
    }
}
