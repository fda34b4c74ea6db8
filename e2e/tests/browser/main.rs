//! The hosted pages in headless Chromium (Debian `chromium` and `chromium-driver`, driven over
//! WebDriver with fantoccini), as a person meets them: a partner app (a tiny relying party
//! using the `openidconnect` crate) sends the browser to the realm, served by the built
//! `portcullis-authserver serve` over TLS with real PostgreSQL and Redis; the person signs in
//! with the keyboard only, consents, signs out again; a newcomer registers and confirms the
//! mailed link; the account page signs out another session, disconnects the app and changes
//! the password; a forgotten password is reset through the mailed link; two-step sign-in is
//! turned on by scanning the QR code read from a screenshot, and then asked at sign-in. Every hosted page is
//! checked for inline script and style (the CSP has no `unsafe-inline`) and with axe-core
//! (WCAG 2 A and AA). A failing step leaves `target/browser/<test>-<step>.png` and `.html`.
//!
//! Without Chromium the tests print a loud SKIPPED line and pass; without axe-core
//! (`npm ci` in e2e/node) only the axe check is skipped, loudly.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

mod harness;
mod rp;

use fantoccini::key::Key;
use futures::FutureExt;
use portcullis_e2e::realm::{PASSWORD, Realm};
use serde_json::Value;

use harness::Browser;
use rp::{Rp, registration};

/// The person of these scenarios.
const EMAIL: &str = "ada@example.com";
/// The partner app's client id (not first-party: the realm asks for consent).
const APP: &str = "printshop";

/// A realm with the partner app registered, the app running, an account that can sign in,
/// and a browser.
struct World {
    realm: Realm,
    rp: Rp,
    browser: Browser,
}

/// The world of `test`, or `None` when this machine cannot run a browser (said loudly).
async fn world(test: &'static str) -> Option<World> {
    let browser = Browser::start(test).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let realm = Realm::start(&[registration(APP, port)]).await;
    realm.account(EMAIL).await;
    let rp = Rp::start(&realm, APP, listener).await;
    Some(World { realm, rp, browser })
}

impl World {
    async fn end(self) {
        self.browser.close().await;
        drop(self.rp);
        self.realm.stop().await;
    }

    /// On the realm's login page: signs in with the keyboard only (Tab to the email field,
    /// type, Tab to the password, type, Enter).
    async fn sign_in_by_keyboard(&self, email: &str, password: &str) {
        let b = &self.browser;
        b.page("Sign in").await;
        b.tab_to("#email").await;
        b.assert_focus_visible().await;
        b.type_text(email).await;
        b.press(Key::Tab).await;
        assert!(
            b.focused("#password").await,
            "Tab from the email field reaches the password field"
        );
        b.assert_focus_visible().await;
        b.type_text(password).await;
        b.press(Key::Enter).await;
    }

    /// On the consent page: Tab to `decision` (allow or deny) and press Enter.
    async fn decide_by_keyboard(&self, decision: &str) {
        let b = &self.browser;
        b.page("Allow").await;
        b.tab_to(&format!("button[name=decision][value={decision}]"))
            .await;
        b.assert_focus_visible().await;
        b.press(Key::Enter).await;
    }

    /// From the app's sign-in link through login and consent back to the app, signed in.
    async fn sign_in_to_the_app(&self) {
        let b = &self.browser;
        b.step("sign-in", async {
            b.goto(&self.rp.login_url()).await;
            self.sign_in_by_keyboard(EMAIL, PASSWORD).await;
        })
        .await;
        b.step("allow", self.decide_by_keyboard("allow")).await;
        b.step("signed-in-at-the-app", async {
            b.page("Signed in").await;
            assert_eq!(b.text("#user").await.as_deref(), Some(EMAIL));
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_to_a_partner_app_with_the_keyboard_only_and_allows_it() {
    let Some(w) = world("keyboard-sign-in").await else {
        return;
    };
    let b = &w.browser;
    b.step("login-page", async {
        b.goto(&w.rp.login_url()).await;
        b.page("Sign in").await;
        assert_eq!(
            b.url().await.origin().ascii_serialization(),
            w.realm.issuer,
            "the app sent the browser to the realm"
        );
        let main = b.text("main").await.unwrap();
        assert!(main.contains(&format!("to continue to {APP}")), "{main}");
        assert!(b.url().await.as_str().contains("/login?"));
    })
    .await;
    b.step("login-by-keyboard", w.sign_in_by_keyboard(EMAIL, PASSWORD))
        .await;
    b.step("consent-page", async {
        b.page("Allow").await;
        assert!(b.text("h1").await.unwrap().contains(APP));
        let asked = b.texts("ul.scopes li").await;
        assert!(
            asked.contains(&"See your email address".to_owned())
                && asked.contains(&"Stay connected while you are away".to_owned()),
            "{asked:?}"
        );
    })
    .await;
    b.step("allow-by-keyboard", w.decide_by_keyboard("allow"))
        .await;
    b.step("back-at-the-app", async {
        b.page("Signed in").await;
        assert_eq!(b.url().await.origin().ascii_serialization(), w.rp.base());
        assert_eq!(b.text("#user").await.as_deref(), Some(EMAIL));
        let held = w.rp.signed_in().expect("the app exchanged the code");
        assert_eq!(
            held.email, EMAIL,
            "UserInfo names the person of the ID token"
        );
        assert!(
            held.refresh_token.is_some(),
            "offline_access was allowed: the app got a refresh token"
        );
        w.rp.refresh().await.expect("the app's refresh token works");
    })
    .await;
    w.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_tab_stop_skips_to_the_main_content() {
    let Some(w) = world("skip-link").await else {
        return;
    };
    let b = &w.browser;
    b.step("skip-link", async {
        b.goto(&w.rp.login_url()).await;
        b.page("Sign in").await;
        b.press(Key::Tab).await;
        assert!(b.focused("a.skip").await, "the skip link is the first stop");
        b.assert_focus_visible().await;
        b.press(Key::Enter).await;
        assert!(
            b.focused("main#main").await,
            "Enter moves the focus to main"
        );
        b.press(Key::Tab).await;
        assert!(
            b.focused("#email").await,
            "the next stop is the form's first field"
        );
    })
    .await;
    w.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_who_denies_consent_returns_to_the_app_with_access_denied() {
    let Some(w) = world("deny-consent").await else {
        return;
    };
    let b = &w.browser;
    b.step("sign-in", async {
        b.goto(&w.rp.login_url()).await;
        w.sign_in_by_keyboard(EMAIL, PASSWORD).await;
    })
    .await;
    b.step("deny-by-keyboard", w.decide_by_keyboard("deny"))
        .await;
    b.step("refused-at-the-app", async {
        b.page("Sign-in failed").await;
        assert_eq!(b.text("#error").await.as_deref(), Some("access_denied"));
        assert!(w.rp.signed_in().is_none());
    })
    .await;
    w.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_once_given_is_not_asked_again_while_signed_in() {
    let Some(w) = world("remembered-consent").await else {
        return;
    };
    let b = &w.browser;
    w.sign_in_to_the_app().await;
    b.step("second-sign-in", async {
        b.goto(&w.rp.login_url()).await;
        // Straight back: the realm's session and the remembered consent answer at once.
        b.page("Signed in").await;
        assert_eq!(b.url().await.origin().ascii_serialization(), w.rp.base());
        assert_eq!(b.text("#user").await.as_deref(), Some(EMAIL));
    })
    .await;
    w.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_signs_the_person_out_after_they_confirm_and_keeps_its_offline_grant() {
    let Some(w) = world("rp-logout").await else {
        return;
    };
    let b = &w.browser;
    w.sign_in_to_the_app().await;
    b.step("confirmation-page", async {
        b.goto(&w.rp.logout_url()).await;
        b.page("Sign out?").await;
        let main = b.text("main").await.unwrap();
        assert!(
            main.contains(&format!("{APP} asks to sign you out of {}", w.realm.name)),
            "{main}"
        );
    })
    .await;
    b.step("confirm-by-keyboard", async {
        b.tab_to("form button[type=submit]").await;
        b.press(Key::Enter).await;
        b.page("Signed out").await;
        assert_eq!(
            b.url().await.origin().ascii_serialization(),
            w.rp.base(),
            "back at the registered post-logout URI, state echoed"
        );
    })
    .await;
    b.step("session-ended", async {
        b.goto(&w.rp.login_url()).await;
        b.page("Sign in").await;
    })
    .await;
    w.rp.refresh()
        .await
        .expect("a grant with offline_access outlives the sign-out");
    w.end().await;
}

/// Shows every hosted page there is (login, login with an error, consent, logout
/// confirmation from the app and from the realm, signed in, signed out, error, register,
/// register with an error, check your email, verify email, email confirmed, reset request,
/// reset sent, new password, password changed, account, account with an error) and runs
/// `check` on each, named.
async fn every_page(w: &World, mut check: impl AsyncFnMut(&'static str)) {
    let b = &w.browser;
    b.step("login", async {
        b.goto(&w.rp.login_url()).await;
        b.page("Sign in").await;
    })
    .await;
    check("login").await;
    b.step("login-error", async {
        w.sign_in_by_keyboard(EMAIL, "not-the-password").await;
        b.page("Sign in").await;
        b.text_when_shown("[role=alert]")
            .await
            .expect("the error is announced");
    })
    .await;
    check("login-error").await;
    b.step("consent", async {
        // The form keeps the email: only the password is typed again.
        b.tab_to("#password").await;
        b.type_text(PASSWORD).await;
        b.press(Key::Enter).await;
        b.page("Allow").await;
    })
    .await;
    check("consent").await;
    b.step("logout-confirmation", async {
        w.decide_by_keyboard("allow").await;
        b.page("Signed in").await;
        b.goto(&w.rp.logout_url()).await;
        b.page("Sign out?").await;
    })
    .await;
    check("logout-confirmation").await;
    b.step("error", async {
        b.tab_to("form button[type=submit]").await;
        b.press(Key::Enter).await;
        b.page("Signed out").await;
        b.goto(&format!(
            "{}/oauth2/authorize?client_id=nobody&response_type=code&scope=openid&redirect_uri=https%3A%2F%2Fevil.example%2F",
            w.realm.issuer
        ))
        .await;
        b.page("cannot continue").await;
    })
    .await;
    check("error").await;
    b.step("signed-in", async {
        b.goto(&format!("{}/login", w.realm.issuer)).await;
        w.sign_in_by_keyboard(EMAIL, PASSWORD).await;
        b.page("You are signed in").await;
    })
    .await;
    check("signed-in").await;
    b.step("realm-logout-confirmation", async {
        b.goto(&format!("{}/oauth2/logout", w.realm.issuer)).await;
        b.page("Sign out?").await;
    })
    .await;
    check("realm-logout-confirmation").await;
    b.step("signed-out", async {
        b.tab_to("form button[type=submit]").await;
        b.press(Key::Enter).await;
        b.page("You are signed out").await;
    })
    .await;
    check("signed-out").await;
    b.step("register", async {
        b.goto(&format!("{}/register", w.realm.issuer)).await;
        b.page("Create an account").await;
    })
    .await;
    check("register").await;
    b.step("register-error", async {
        b.fill("#email", NEWCOMER).await;
        b.fill("#password", "short").await;
        b.click("form button[type=submit]").await;
        b.page("Create an account").await;
        b.text(".field-error")
            .await
            .expect("the rule broken, next to its field");
    })
    .await;
    check("register-error").await;
    b.step("check-your-email", async {
        b.fill("#password", PASSWORD).await;
        if !b.checked("#consent-account").await {
            b.click("#consent-account").await;
        }
        b.click("form button[type=submit]").await;
        b.page("Check your email").await;
    })
    .await;
    check("check-your-email").await;
    b.step("verify-email", async {
        b.goto(&portcullis_e2e::served::mailed_link(
            &w.realm.mail_dir(),
            &format!("{}/verify-email?", w.realm.issuer),
        ))
        .await;
        b.page("Confirm your email address").await;
    })
    .await;
    check("verify-email").await;
    b.step("email-confirmed", async {
        b.click("form button[type=submit]").await;
        b.page("Email address confirmed").await;
    })
    .await;
    check("email-confirmed").await;
    b.step("reset-request", async {
        b.goto(&format!("{}/reset-password", w.realm.issuer)).await;
        b.page("Reset your password").await;
    })
    .await;
    check("reset-request").await;
    b.step("reset-sent", async {
        b.fill("#email", NEWCOMER).await;
        b.click("form button[type=submit]").await;
        b.page("Check your email").await;
    })
    .await;
    check("reset-sent").await;
    b.step("new-password", async {
        b.goto(&portcullis_e2e::served::mailed_link(
            &w.realm.mail_dir(),
            &format!("{}/reset-password?token=", w.realm.issuer),
        ))
        .await;
        b.page("Choose a new password").await;
    })
    .await;
    check("new-password").await;
    b.step("password-changed", async {
        b.fill("#new_password", NEW_PASSWORD).await;
        b.click("form button[type=submit]").await;
        b.page("Password changed").await;
    })
    .await;
    check("password-changed").await;
    b.step("account", async {
        b.goto(&format!("{}/account", w.realm.issuer)).await;
        w.sign_in_by_keyboard(EMAIL, PASSWORD).await;
        b.page("Your account").await;
    })
    .await;
    check("account").await;
    b.step("account-error", async {
        b.fill("#current_password", "not-the-password").await;
        b.fill("#new_password", NEW_PASSWORD).await;
        b.press_button("Change password").await;
        b.page("Your account").await;
        // The answer keeps the heading: wait for its error, not for the old page.
        b.text_when_shown(".field-error")
            .await
            .expect("the error next to its field");
    })
    .await;
    check("account-error").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hosted_page_has_no_inline_script_or_style_and_loads_the_realm_stylesheet() {
    let Some(w) = world("csp").await else {
        return;
    };
    let b = &w.browser;
    let issuer = w.realm.issuer.clone();
    let mut checked = Vec::new();
    every_page(&w, async |page| {
        b.step(page, async {
            let problems = b.csp_problems(&issuer).await;
            assert!(problems.is_empty(), "{page}: {problems:#?}");
        })
        .await;
        checked.push(page);
    })
    .await;
    assert_eq!(checked.len(), 19, "{checked:?}");
    w.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hosted_page_passes_axe_wcag2a_and_wcag2aa() {
    let Some(axe) = harness::axe_source("axe") else {
        return;
    };
    let Some(w) = world("axe").await else {
        return;
    };
    let b = &w.browser;
    let mut found: Vec<(&'static str, Vec<Value>)> = Vec::new();
    every_page(&w, async |page| {
        let violations = b.step(page, b.axe_violations(&axe)).await;
        if !violations.is_empty() {
            b.save(&format!("{page}-axe")).await;
        }
        found.push((page, violations));
    })
    .await;
    let report: Vec<String> = found
        .iter()
        .flat_map(|(page, violations)| {
            violations.iter().map(move |v| {
                let targets: Vec<String> = v["nodes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|n| format!("{} {}", n["target"], n["html"]))
                    .collect();
                format!(
                    "{page}: {} ({}): {} at {}",
                    v["id"],
                    v["impact"],
                    v["help"],
                    targets.join("; ")
                )
            })
        })
        .collect();
    assert_eq!(found.len(), 19);
    assert!(report.is_empty(), "axe violations:\n{}", report.join("\n"));
    w.end().await;
}

/// The page checks themselves can fail: a page with an unlabelled field in low contrast, an
/// inline style and script, and no stylesheet is caught by the CSP, focus and axe checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_checks_catch_a_page_that_breaks_them() {
    let Some(b) = Browser::start("checks-catch").await else {
        return;
    };
    b.goto(
        "data:text/html,<!doctype html><html lang=en><title>Bad</title><main>\
         <p style='color:%23bbb;background:%23fff'>faint</p><input id=x>\
         <script>document.title='Bad'</script></main>",
    )
    .await;
    let problems = b.csp_problems("https://localhost:1").await;
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("inline script or style: <p style"))
            && problems
                .iter()
                .any(|p| p.starts_with("inline script or style: <script"))
            && problems
                .iter()
                .any(|p| p.starts_with("not exactly the realm's stylesheet")),
        "{problems:#?}"
    );
    // Chromium's own focus ring (1px, no stylesheet) is too faint for the focus check.
    b.tab_to("#x").await;
    let faint = std::panic::AssertUnwindSafe(b.assert_focus_visible())
        .catch_unwind()
        .await;
    assert!(faint.is_err(), "the focus check passed a 1px focus ring");
    if let Some(axe) = harness::axe_source("checks-catch") {
        let violations = b.axe_violations(&axe).await;
        let ids: Vec<&str> = violations.iter().filter_map(|v| v["id"].as_str()).collect();
        assert!(
            ids.contains(&"label") && ids.contains(&"color-contrast"),
            "{ids:?}"
        );
    }
    b.close().await;
}

/// A second person, who registers on the hosted pages.
const NEWCOMER: &str = "lin@example.com";
/// The password a person chooses when they change or reset theirs.
const NEW_PASSWORD: &str = "Marmalade-Comet-77-Loud";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_registers_confirms_the_mailed_link_and_reaches_the_app() {
    let Some(w) = world("register").await else {
        return;
    };
    let b = &w.browser;
    b.step("register-page", async {
        b.goto(&w.rp.login_url()).await;
        b.page("Sign in").await;
        b.follow("Create one").await;
        b.page("Create an account").await;
    })
    .await;
    b.step("register", async {
        b.fill("#email", NEWCOMER).await;
        b.fill("#display_name", "Lin").await;
        b.fill("#password", PASSWORD).await;
        if !b.checked("#consent-account").await {
            b.click("#consent-account").await;
        }
        b.click("form button[type=submit]").await;
        b.page("Check your email").await;
    })
    .await;
    b.step("verify-link", async {
        let link = portcullis_e2e::served::mailed_link(
            &w.realm.mail_dir(),
            &format!("{}/verify-email?", w.realm.issuer),
        );
        // Opening the link (twice, as a mail scanner might) spends nothing: only the button
        // on the page does.
        b.goto(&link).await;
        b.page("Confirm your email address").await;
        b.goto(&link).await;
        b.page("Confirm your email address").await;
        b.click("form button[type=submit]").await;
        b.page("Email address confirmed").await;
    })
    .await;
    b.step("sign-in-after-verifying", async {
        b.follow("Sign in").await;
        w.sign_in_by_keyboard(NEWCOMER, PASSWORD).await;
    })
    .await;
    b.step("allow", w.decide_by_keyboard("allow")).await;
    b.step("at-the-app", async {
        b.page("Signed in").await;
        assert_eq!(b.text("#user").await.as_deref(), Some(NEWCOMER));
        assert_eq!(w.rp.signed_in().unwrap().email, NEWCOMER);
    })
    .await;
    w.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_password_is_replaced_through_the_mailed_link_and_the_apps_grant_ends() {
    let Some(w) = world("password-reset").await else {
        return;
    };
    let b = &w.browser;
    w.sign_in_to_the_app().await;
    b.step("reset-request", async {
        b.goto(&format!("{}/login", w.realm.issuer)).await;
        b.page("Sign in").await;
        b.follow("Forgot your password?").await;
        b.page("Reset your password").await;
        b.fill("#email", EMAIL).await;
        b.click("form button[type=submit]").await;
        b.page("Check your email").await;
    })
    .await;
    b.step("new-password", async {
        let link = portcullis_e2e::served::mailed_link(
            &w.realm.mail_dir(),
            &format!("{}/reset-password?token=", w.realm.issuer),
        );
        b.goto(&link).await;
        b.page("Choose a new password").await;
        b.fill("#new_password", NEW_PASSWORD).await;
        b.click("form button[type=submit]").await;
        b.page("Password changed").await;
    })
    .await;
    b.step("old-password-refused", async {
        b.follow("Sign in").await;
        w.sign_in_by_keyboard(EMAIL, PASSWORD).await;
        b.page("Sign in").await;
        b.text_when_shown("[role=alert]")
            .await
            .expect("the old password is refused");
    })
    .await;
    b.step("new-password-signs-in", async {
        b.tab_to("#password").await;
        b.type_text(NEW_PASSWORD).await;
        b.press(Key::Enter).await;
        b.page("You are signed in").await;
    })
    .await;
    assert_eq!(
        w.rp.refresh().await,
        Err("invalid_grant".to_owned()),
        "the reset ended the app's grant too"
    );
    w.end().await;
}

impl World {
    /// A second session of `email`, signed in through the API from another device: its
    /// access token.
    async fn second_session(&self, email: &str, password: &str) -> String {
        let login: Value = self
            .realm
            .http()
            .post(format!("{}/api/v1/login", self.realm.issuer))
            .header("user-agent", "SecondDevice/1.0")
            .json(&serde_json::json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        login["access_token"].as_str().unwrap().to_owned()
    }

    /// The status of `GET /api/v1/me` with `access_token`.
    async fn me_status(&self, access_token: &str) -> u16 {
        self.realm
            .http()
            .get(format!("{}/api/v1/me", self.realm.issuer))
            .bearer_auth(access_token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// The rows of the account page's table in the section labelled `section`.
    async fn rows(&self, section: &str) -> Vec<String> {
        self.browser
            .texts(&format!("section[aria-labelledby={section}] tbody tr"))
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_page_signs_out_another_session() {
    let Some(w) = world("account-sessions").await else {
        return;
    };
    let b = &w.browser;
    w.sign_in_to_the_app().await;
    let elsewhere = w.second_session(EMAIL, PASSWORD).await;
    assert_eq!(w.me_status(&elsewhere).await, 200);
    b.step("sessions-listed", async {
        b.goto(&format!("{}/account", w.realm.issuer)).await;
        b.page("Your account").await;
        let rows = w.rows("sessions").await;
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert!(
            rows.iter()
                .any(|r| r.contains("SecondDevice") && !r.contains("This browser")),
            "{rows:?}"
        );
        assert!(rows.iter().any(|r| r.contains("This browser")), "{rows:?}");
    })
    .await;
    b.step("sign-out-the-other", async {
        b.press_button("Sign out this session").await;
        b.page("Your account").await;
        assert_eq!(
            // The answer keeps the heading: wait for its notice, not for the old page.
            b.text_when_shown("[role=status]").await.as_deref(),
            Some("The session was signed out.")
        );
        let rows = w.rows("sessions").await;
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert!(rows[0].contains("This browser"), "{rows:?}");
    })
    .await;
    assert_eq!(
        w.me_status(&elsewhere).await,
        401,
        "the other session's access token died with it"
    );
    w.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnecting_the_app_on_the_account_page_ends_its_refresh_token() {
    let Some(w) = world("account-apps").await else {
        return;
    };
    let b = &w.browser;
    w.sign_in_to_the_app().await;
    w.rp.refresh()
        .await
        .expect("the app can refresh while connected");
    b.step("app-listed", async {
        b.goto(&format!("{}/account", w.realm.issuer)).await;
        b.page("Your account").await;
        let rows = w.rows("apps").await;
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert!(rows[0].starts_with(APP), "{rows:?}");
    })
    .await;
    b.step("disconnect", async {
        b.press_button("Disconnect").await;
        b.page("Your account").await;
        b.text_when_shown("[role=status]")
            .await
            .expect("the page after the disconnection says so");
        assert!(w.rows("apps").await.is_empty());
    })
    .await;
    assert_eq!(
        w.rp.refresh().await,
        Err("invalid_grant".to_owned()),
        "the app's grant ended with the consent"
    );
    w.end().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_changed_on_the_account_page_ends_other_sessions_and_app_grants_and_signs_in() {
    let Some(w) = world("account-password").await else {
        return;
    };
    let b = &w.browser;
    let elsewhere = w.second_session(EMAIL, PASSWORD).await;
    w.sign_in_to_the_app().await;
    b.step("account", async {
        b.goto(&format!("{}/account", w.realm.issuer)).await;
        b.page("Your account").await;
    })
    .await;
    b.step("change-password", async {
        b.fill("#current_password", PASSWORD).await;
        b.fill("#new_password", NEW_PASSWORD).await;
        b.press_button("Change password").await;
        b.page("Your account").await;
        let done = b.text_when_shown("[role=status]").await.unwrap_or_default();
        assert!(done.contains("password was changed"), "{done:?}");
    })
    .await;
    assert_eq!(
        w.me_status(&elsewhere).await,
        401,
        "every other session was signed out"
    );
    assert_eq!(
        w.rp.refresh().await,
        Err("invalid_grant".to_owned()),
        "the app's offline grant ended with the password"
    );
    b.step("sign-out", async {
        b.follow("Sign out").await;
        b.page("Sign out?").await;
        b.press_button("Sign out").await;
        b.page("You are signed out").await;
    })
    .await;
    b.step("old-password-refused", async {
        b.goto(&format!("{}/login", w.realm.issuer)).await;
        w.sign_in_by_keyboard(EMAIL, PASSWORD).await;
        b.page("Sign in").await;
        b.text_when_shown("[role=alert]")
            .await
            .expect("the old password is refused");
    })
    .await;
    b.step("new-password-signs-in", async {
        b.tab_to("#password").await;
        b.type_text(NEW_PASSWORD).await;
        b.press(Key::Enter).await;
        b.page("You are signed in").await;
    })
    .await;
    w.end().await;
}

/// Issue 12: a person turns on two-step sign-in on the account page by scanning the QR code
/// (read here from a screenshot of the page, as a phone's camera would), confirms it with a
/// code of their authenticator, keeps the recovery codes shown once, and from then on signs in
/// to the app only with a code as well: the app's ID token says `pwd` and `otp`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_turns_on_two_step_sign_in_with_the_qr_code_and_then_signs_in_with_a_code() {
    let Some(w) = world("mfa").await else {
        return;
    };
    let b = &w.browser;
    w.sign_in_to_the_app().await;
    let secret = b
        .step("qr-code-shown", async {
            b.goto(&format!("{}/account", w.realm.issuer)).await;
            b.page("Your account").await;
            b.fill("#enrol_password", PASSWORD).await;
            b.press_button("Set up an authenticator app").await;
            b.page("Your account").await;
            b.text_when_shown("#totp-secret")
                .await
                .expect("the key is shown as text too");
            b.scroll_to("section[aria-labelledby=mfa] svg").await;
            let scanned = b.qr_codes_in_screenshot("qr-code").await;
            assert_eq!(scanned.len(), 1, "one QR code on screen: {scanned:?}");
            assert!(
                scanned[0].starts_with("otpauth://totp/"),
                "an authenticator URI: {}",
                scanned[0]
            );
            let secret = portcullis_e2e::totp::secret_of_uri(&scanned[0])
                .expect("the QR code carries the secret");
            let shown: String = b
                .text("#totp-secret")
                .await
                .unwrap()
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            assert_eq!(shown, secret, "the key as text is the one in the QR code");
            secret
        })
        .await;
    page_checks(&w, "qr-code-page").await;
    b.step("turned-on", async {
        // The phone's app shows the code of the secret it scanned.
        b.fill("#totp_code", &portcullis_e2e::totp::code_now(&secret))
            .await;
        b.press_button("Turn on two-step sign-in").await;
        b.page("Your account").await;
        b.text_when_shown("#recovery-codes")
            .await
            .expect("the recovery codes are shown");
        let codes = b.texts("#recovery-codes li").await;
        assert_eq!(codes.len(), 10, "the recovery codes, shown once: {codes:?}");
        assert!(
            b.text("section[aria-labelledby=mfa]")
                .await
                .unwrap()
                .contains("Two-step sign-in is on"),
            "the section says it is on"
        );
    })
    .await;
    page_checks(&w, "recovery-codes-page").await;
    b.forget_cookies().await;
    b.step("code-asked", async {
        b.goto(&w.rp.login_url()).await;
        w.sign_in_by_keyboard(EMAIL, PASSWORD).await;
        b.page("Enter your code").await;
    })
    .await;
    page_checks(&w, "code-page").await;
    b.step("wrong-code", async {
        b.fill("#code", "000000").await;
        b.press(Key::Enter).await;
        b.page("Enter your code").await;
        b.text_when_shown("[role=alert]")
            .await
            .expect("the wrong code is announced");
    })
    .await;
    b.step("signed-in-with-the-code", async {
        // The next step's code: confirming used the current one, and a step counts once.
        b.fill("#code", &portcullis_e2e::totp::next_code(&secret))
            .await;
        b.press(Key::Enter).await;
        // The MFA page's own heading is neither: wait until the answer is shown.
        let heading = b.page_among(&["Allow", "Signed in"]).await;
        if heading.contains("Allow") {
            w.decide_by_keyboard("allow").await;
        }
        b.page("Signed in").await;
        assert_eq!(b.text("#user").await.as_deref(), Some(EMAIL));
    })
    .await;
    let signed_in = w.rp.signed_in().expect("the app has the person");
    assert!(
        signed_in.amr.iter().any(|m| m == "pwd") && signed_in.amr.iter().any(|m| m == "otp"),
        "the ID token says password and one-time code: {:?}",
        signed_in.amr
    );
    w.end().await;
}

/// The checks of every hosted page (no inline script or style, the realm's stylesheet; axe-core
/// WCAG 2 A and AA when axe is installed) on the page the browser shows, which `every_page`
/// cannot reach: it needs an account with two-step sign-in.
async fn page_checks(w: &World, page: &'static str) {
    let b = &w.browser;
    b.step(page, async {
        let problems = b.csp_problems(&w.realm.issuer).await;
        assert!(problems.is_empty(), "{page}: {problems:#?}");
        if let Some(axe) = harness::axe_source(page) {
            let violations = b.axe_violations(&axe).await;
            assert!(violations.is_empty(), "{page}: axe: {violations:#?}");
        }
    })
    .await;
}
