//! The hosted second step and the account page's MFA section over real HTTP: the login form
//! hands over to `/login/mfa` with the pending login bound to the browser by its cookie (and
//! continues a pending authorization from there); the account page enrols with a QR code and
//! the key as text, shows the recovery codes once, and turns TOTP off.

use serde_json::json;
use sqlx::PgPool;

use crate::mfa::{claims, code_on, enrolled_user, stopped};
use crate::pages::{hidden, set_cookie};
use crate::support::*;

const SESSION: &str = "__Host-portcullis_session";
const MFA: &str = "__Host-portcullis_mfa";
const AUTHORIZE: &str = "/oauth2/authorize?client_id=web&redirect_uri=http%3A%2F%2Flocalhost%3A7777%2Fcb&response_type=code&scope=openid&state=s&nonce=n";

fn location(answer: &reqwest::Response) -> String {
    answer.headers()["location"].to_str().unwrap().to_owned()
}

/// A browser's cookies, as `name=value` pairs, updated from each answer.
#[derive(Default)]
struct Jar(Vec<(String, String)>);

impl Jar {
    fn take(&mut self, answer: &reqwest::Response) {
        for set in answer
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            let pair = set.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            self.0.retain(|(n, _)| n != name);
            if !value.is_empty() && !set.contains("Max-Age=0") {
                self.0.push((name.to_owned(), value.to_owned()));
            }
        }
    }

    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }

    async fn get(&mut self, server: &TestServer, path: &str) -> reqwest::Response {
        let answer = server
            .http
            .get(format!("{}{path}", server.base))
            .header("cookie", self.header())
            .send()
            .await
            .unwrap();
        self.take(&answer);
        answer
    }

    async fn post(
        &mut self,
        server: &TestServer,
        path: &str,
        fields: &[(&str, &str)],
    ) -> reqwest::Response {
        let answer = server
            .http
            .post(format!("{}{path}", server.base))
            .header("cookie", self.header())
            .form(fields)
            .send()
            .await
            .unwrap();
        self.take(&answer);
        answer
    }
}

/// Signs in on the login page at `path` with the password; the answer (a 303 to the MFA step).
async fn password_step(server: &TestServer, jar: &mut Jar, path: &str) -> reqwest::Response {
    let page = jar.get(server, path).await;
    let html = page.text().await.unwrap();
    let csrf = hidden(&html, "csrf");
    let mut fields = vec![
        ("email", "alice@example.com".to_owned()),
        ("password", PASSWORD.to_owned()),
        ("csrf", csrf),
    ];
    if html.contains("name=\"req\"") {
        fields.push(("req", hidden(&html, "req")));
    }
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    jar.post(server, "/login", &fields).await
}

/// Fills the MFA page at `path` with `field` = `value`; the answer.
async fn code_step(
    server: &TestServer,
    jar: &mut Jar,
    path: &str,
    field: &str,
    value: &str,
) -> reqwest::Response {
    let page = jar.get(server, path).await;
    assert_eq!(page.status(), 200, "{path}");
    let html = page.text().await.unwrap();
    let mut fields = vec![(field, value.to_owned()), ("csrf", hidden(&html, "csrf"))];
    if html.contains("name=\"req\"") {
        fields.push(("req", hidden(&html, "req")));
    }
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    jar.post(server, "/login/mfa", &fields).await
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn the_login_form_hands_over_to_the_mfa_page_with_a_host_cookie_and_no_session(pool: PgPool) {
    let (server, clock) = stopped(pool).await;
    enrolled_user(&server, &clock, "alice@example.com").await;
    let mut jar = Jar::default();
    let answer = password_step(&server, &mut jar, "/login").await;
    assert_eq!(answer.status(), 303);
    assert_eq!(location(&answer), "/login/mfa");
    assert_eq!(set_cookie(&answer, SESSION), None);
    let set = answer
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with(&format!("{MFA}=")))
        .expect("the MFA cookie");
    for attribute in ["Path=/", "Secure", "HttpOnly", "SameSite=Lax"] {
        assert!(set.contains(attribute), "{set}");
    }
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_code_on_the_mfa_page_signs_in_and_drops_the_mfa_cookie(pool: PgPool) {
    let (server, clock) = stopped(pool).await;
    let alice = enrolled_user(&server, &clock, "alice@example.com").await;
    let mut jar = Jar::default();
    password_step(&server, &mut jar, "/login").await;
    let code = code_on(&clock, &alice.secret, 0);
    let answer = code_step(&server, &mut jar, "/login/mfa", "code", &code).await;
    assert_eq!(answer.status(), 200);
    assert!(jar.has(SESSION));
    assert!(!jar.has(MFA));
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_wrong_code_on_the_mfa_page_shows_the_form_again_without_a_session(pool: PgPool) {
    let (server, clock) = stopped(pool).await;
    let alice = enrolled_user(&server, &clock, "alice@example.com").await;
    let mut jar = Jar::default();
    password_step(&server, &mut jar, "/login").await;
    let right = code_on(&clock, &alice.secret, 0);
    let wrong = format!("{:06}", (right.parse::<u32>().unwrap() + 1) % 1_000_000);
    let answer = code_step(&server, &mut jar, "/login/mfa", "code", &wrong).await;
    assert_eq!(answer.status(), 400);
    assert!(!jar.has(SESSION));
    assert!(answer.text().await.unwrap().contains("The code is wrong"));
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_recovery_code_on_the_mfa_page_signs_in(pool: PgPool) {
    let (server, clock) = stopped(pool).await;
    let alice = enrolled_user(&server, &clock, "alice@example.com").await;
    let mut jar = Jar::default();
    password_step(&server, &mut jar, "/login").await;
    let answer = code_step(
        &server,
        &mut jar,
        "/login/mfa",
        "recovery_code",
        &alice.recovery_codes[0],
    )
    .await;
    assert_eq!(answer.status(), 200);
    assert!(jar.has(SESSION));
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn the_mfa_page_without_a_pending_sign_in_in_this_browser_signs_nobody_in(pool: PgPool) {
    let (server, clock) = stopped(pool).await;
    let alice = enrolled_user(&server, &clock, "alice@example.com").await;
    let mut other = Jar::default();
    let shown = other.get(&server, "/login/mfa").await;
    assert_eq!(shown.status(), 303, "to the login page");
    // Another browser: the password step happened elsewhere; this one has a CSRF pair only.
    let mut first = Jar::default();
    password_step(&server, &mut first, "/login").await;
    let login = other.get(&server, "/login").await;
    let csrf = hidden(&login.text().await.unwrap(), "csrf");
    let code = code_on(&clock, &alice.secret, 0);
    let answer = other
        .post(&server, "/login/mfa", &[("code", &code), ("csrf", &csrf)])
        .await;
    assert_eq!(answer.status(), 400);
    assert!(!other.has(SESSION));
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn an_mfa_page_post_without_its_csrf_pair_is_refused(pool: PgPool) {
    let (server, clock) = stopped(pool).await;
    let alice = enrolled_user(&server, &clock, "alice@example.com").await;
    let mut jar = Jar::default();
    password_step(&server, &mut jar, "/login").await;
    let code = code_on(&clock, &alice.secret, 0);
    let answer = jar
        .post(
            &server,
            "/login/mfa",
            &[("code", &code), ("csrf", "forged")],
        )
        .await;
    assert_eq!(answer.status(), 403);
    assert!(!jar.has(SESSION));
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn an_oidc_authorization_continues_through_the_mfa_page_with_amr_pwd_otp(pool: PgPool) {
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
    let alice = enrolled_user(&server, &clock, "alice@example.com").await;
    let mut jar = Jar::default();
    let authorize = jar.get(&server, AUTHORIZE).await;
    let login = location(&authorize);
    let answer = password_step(&server, &mut jar, &login).await;
    let mfa_page = location(&answer);
    assert!(mfa_page.starts_with("/login/mfa?req="), "{mfa_page}");
    let code = code_on(&clock, &alice.secret, 0);
    let answer = code_step(&server, &mut jar, &mfa_page, "code", &code).await;
    assert_eq!(answer.status(), 303);
    let resumed = jar.get(&server, &location(&answer)).await;
    let target = url::Url::parse(&location(&resumed)).unwrap();
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
    let id_token = claims(tokens.body["id_token"].as_str().unwrap());
    assert_eq!(id_token["amr"], json!(["pwd", "otp"]));
    assert_eq!(id_token["acr"], "urn:portcullis:acr:mfa");
}

/// Signs alice (no TOTP yet) in through the API; a jar with her session.
async fn account_session(server: &TestServer) -> Jar {
    let login = server.user("alice@example.com").await;
    let mut jar = Jar::default();
    jar.0
        .push((SESSION.to_owned(), login.session_cookie().unwrap()));
    jar
}

async fn account_csrf(server: &TestServer, jar: &mut Jar) -> String {
    let page = jar.get(server, "/account").await;
    assert_eq!(page.status(), 200);
    hidden(&page.text().await.unwrap(), "csrf")
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn the_account_page_enrols_with_a_qr_code_and_shows_the_recovery_codes_once(pool: PgPool) {
    let (server, clock) = stopped(pool).await;
    let mut jar = account_session(&server).await;
    let csrf = account_csrf(&server, &mut jar).await;
    let begun = jar
        .post(
            &server,
            "/account/mfa/totp",
            &[("password", PASSWORD), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(begun.status(), 200);
    let html = begun.text().await.unwrap();
    assert!(html.contains("<svg id=\"totp-qr\""), "{html}");
    assert!(html.contains("<path fill=\"black\" d=\"M"), "a drawn code");
    let marker = "<code id=\"totp-secret\">";
    let start = html.find(marker).expect("the key as text") + marker.len();
    let secret = &html[start..start + html[start..].find('<').unwrap()];
    let code = code_on(&clock, secret, 0);
    let confirmed = jar
        .post(
            &server,
            "/account/mfa/totp/confirm",
            &[("code", &code), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(confirmed.status(), 200);
    let html = confirmed.text().await.unwrap();
    assert!(html.contains("id=\"recovery-codes\""), "{html}");
    assert_eq!(html.matches("<li><code>").count(), 10);
    let again = jar.get(&server, "/account").await.text().await.unwrap();
    assert!(!again.contains("id=\"recovery-codes\""), "shown once");
    assert!(again.contains("Recovery codes left: 10"), "{again}");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn the_account_page_regenerates_codes_and_turns_totp_off_with_a_fresh_code(pool: PgPool) {
    let (server, clock) = stopped(pool).await;
    let mut jar = account_session(&server).await;
    let csrf = account_csrf(&server, &mut jar).await;
    let begun = jar
        .post(
            &server,
            "/account/mfa/totp",
            &[("password", PASSWORD), ("csrf", &csrf)],
        )
        .await;
    let html = begun.text().await.unwrap();
    let marker = "<code id=\"totp-secret\">";
    let start = html.find(marker).unwrap() + marker.len();
    let secret = html[start..start + html[start..].find('<').unwrap()].to_owned();
    jar.post(
        &server,
        "/account/mfa/totp/confirm",
        &[("code", &code_on(&clock, &secret, 0)), ("csrf", &csrf)],
    )
    .await;
    let regenerated = jar
        .post(
            &server,
            "/account/mfa/recovery-codes",
            &[
                ("password", PASSWORD),
                ("code", &code_on(&clock, &secret, 1)),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(regenerated.status(), 200);
    assert_eq!(
        regenerated
            .text()
            .await
            .unwrap()
            .matches("<li><code>")
            .count(),
        10
    );
    clock.advance(std::time::Duration::from_secs(60));
    let stale = jar
        .post(
            &server,
            "/account/mfa/totp/remove",
            &[
                ("password", PASSWORD),
                ("code", &code_on(&clock, &secret, -1)),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(stale.status(), 400, "a used step is no fresh factor");
    let removed = jar
        .post(
            &server,
            "/account/mfa/totp/remove",
            &[
                ("password", PASSWORD),
                ("code", &code_on(&clock, &secret, 0)),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(removed.status(), 303);
    assert_eq!(location(&removed), "/account?done=mfa_removed");
    let page = jar.get(&server, "/account").await.text().await.unwrap();
    assert!(page.contains("Set up an authenticator app"), "{page}");
}

/// The key shown as text on the enrolment page (`#totp-secret`).
fn shown_secret(html: &str) -> String {
    let start = html.find("id=\"totp-secret\">").expect("the key") + "id=\"totp-secret\">".len();
    html[start..start + html[start..].find('<').unwrap()].to_owned()
}

/// A realm that requires TOTP, with the OIDC test clients, on a stopped clock.
async fn requiring_totp(pool: PgPool) -> (TestServer, portcullis_authserver::clock::Clock) {
    let clock = stopped_clock();
    let server = start(
        pool,
        Options {
            clock: clock.clone(),
            clients: crate::oidc::clients(),
            ..Options::spec(|s| {
                s.mfa.totp.enabled = true;
                s.mfa.totp.required = true;
            })
        },
    )
    .await;
    (server, clock)
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_realm_requiring_totp_enrols_at_the_hosted_sign_in_and_resumes_the_authorization(
    pool: PgPool,
) {
    let (server, clock) = requiring_totp(pool).await;
    assert_eq!(
        server.register("alice@example.com", PASSWORD).await.status,
        201
    );
    let mut jar = Jar::default();
    let authorize = jar.get(&server, AUTHORIZE).await;
    let answer = password_step(&server, &mut jar, &location(&authorize)).await;
    assert_eq!(answer.status(), 303);
    let enrol_page = location(&answer);
    assert!(
        enrol_page.starts_with("/login/mfa/enrol?req="),
        "{enrol_page}"
    );
    assert_eq!(
        set_cookie(&answer, SESSION),
        None,
        "nothing before the code"
    );
    let page = jar.get(&server, &enrol_page).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("<svg id=\"totp-qr\""), "the QR code");
    let secret = shown_secret(&html);
    // A wrong code issues nothing and shows a new secret.
    let wrong = jar
        .post(
            &server,
            "/login/mfa/enrol",
            &[
                ("code", "000000"),
                ("csrf", &hidden(&html, "csrf")),
                ("req", &hidden(&html, "req")),
            ],
        )
        .await;
    assert_eq!(wrong.status(), 400);
    assert_eq!(set_cookie(&wrong, SESSION), None);
    let html = wrong.text().await.unwrap();
    let secret = {
        let new = shown_secret(&html);
        assert_ne!(new, secret, "the scanned secret was replaced");
        new
    };
    let right = jar
        .post(
            &server,
            "/login/mfa/enrol",
            &[
                ("code", &code_on(&clock, &secret, 0)),
                ("csrf", &hidden(&html, "csrf")),
                ("req", &hidden(&html, "req")),
            ],
        )
        .await;
    assert_eq!(right.status(), 200);
    assert!(set_cookie(&right, SESSION).is_some(), "signed in");
    let done = right.text().await.unwrap();
    assert!(done.contains("id=\"recovery-codes\""), "{done}");
    assert_eq!(done.matches("<li><code>").count(), 10, "the realm's count");
    let onward = done
        .split("href=\"")
        .find(|s| s.starts_with("/oauth2/authorize/resume"))
        .map(|s| s[..s.find('"').unwrap()].replace("&amp;", "&"))
        .expect("on to the authorization");
    let resumed = jar.get(&server, &onward).await;
    let target = url::Url::parse(&location(&resumed)).unwrap();
    assert!(target.query_pairs().any(|(k, _)| k == "code"), "{target}");
    // From now on the account has TOTP: the next sign-in asks for a code.
    let mut again = Jar::default();
    let next = password_step(&server, &mut again, "/login").await;
    assert_eq!(location(&next), "/login/mfa");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn the_enrolment_page_without_a_waiting_sign_in_goes_back_to_the_login(pool: PgPool) {
    let (server, _) = requiring_totp(pool).await;
    let mut jar = Jar::default();
    let answer = jar.get(&server, "/login/mfa/enrol").await;
    assert_eq!(answer.status(), 303);
    assert_eq!(location(&answer), "/login");
    let forged = server
        .http
        .get(format!("{}/login/mfa/enrol", server.base))
        .header("cookie", format!("{MFA}=forged-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 303);
    // A post without the form's CSRF pair is refused as a forged form.
    let post = server
        .http
        .post(format!("{}/login/mfa/enrol", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 403);
}
