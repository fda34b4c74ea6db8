//! Social sign-in through the auth server (issue 12): the built `portcullis-authserver serve`
//! with a realm whose `socialProviders` names a real upstream provider, and a browser played
//! over HTTP (cookies per origin, no redirect followed by the client).
//!
//! - Node's certified `oidc-provider`: a verified identity creates an account without a
//!   password and signs in again as the same account; a verified email links to the existing
//!   account (and the owner is mailed); an unverified email takes nothing over; a callback
//!   replayed, or brought by another browser, is refused; the account's last way in cannot
//!   be unlinked; an account with two-step sign-in is never linked by email.
//! - The rogue provider: a wrong `nonce` and a wrong `iss` sign no one in.
//! - A second Portcullis realm as the upstream provider.
//!
//! Without Node the Node tests print SKIPPED and pass, except in CI (see src/upstream).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion

use std::collections::HashMap;

use portcullis_e2e::realm::{Extras, PASSWORD, Realm, free_port};
use portcullis_e2e::upstream::{
    Account, Config, Misbehaviour, Tls, Upstream, node_or_skip, sign_in,
};
use serde_json::{Value, json};
use url::Url;

const CLIENT_ID: &str = "portcullis";
const CLIENT_SECRET: &str = "upstream-secret-0123456789";

/// A realm on a port chosen first (its callback URL goes into the upstream's client) whose
/// provider `corp` is `upstream`, trusting `upstream_ca`.
fn corp_extras(port: u16, issuer: &str, upstream_ca: &str) -> Extras {
    Extras {
        port: Some(port),
        spec: format!(
            "  socialProviders:
    - name: corp
      type: Oidc
      clientId: {CLIENT_ID}
      clientSecretRef: {{name: social, key: corp}}
      issuerUrl: {issuer}
"
        ),
        secrets: vec![
            (
                "social-corp-client-secret".into(),
                format!("{CLIENT_SECRET}\n"),
            ),
            ("social-ca.crt".into(), upstream_ca.to_owned()),
        ],
    }
}

/// The callback URL of provider `corp` of the realm on `port`.
fn callback_url(port: u16) -> String {
    format!("https://localhost:{port}/oauth2/social/corp/callback")
}

/// A browser: trusts both CAs, follows no redirect, keeps cookies per host and port.
struct Browser {
    http: reqwest::Client,
    jar: HashMap<String, HashMap<String, String>>,
}

/// What one request answered.
struct Answer {
    status: u16,
    location: Option<String>,
    body: String,
}

impl Browser {
    fn new(cas: &[&str]) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let certs = cas
            .iter()
            .map(|pem| reqwest::Certificate::from_pem(pem.as_bytes()).unwrap());
        let http = reqwest::Client::builder()
            .tls_certs_only(certs)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            http,
            jar: HashMap::new(),
        }
    }

    fn origin(url: &Url) -> String {
        format!(
            "{}:{}",
            url.host_str().unwrap_or(""),
            url.port_or_known_default().unwrap_or(0)
        )
    }

    fn cookie_header(&self, url: &Url) -> Option<String> {
        let cookies = self.jar.get(&Self::origin(url))?;
        (!cookies.is_empty()).then(|| {
            cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    async fn send(&mut self, request: reqwest::RequestBuilder, url: &Url) -> Answer {
        let request = match self.cookie_header(url) {
            Some(cookies) => request.header(reqwest::header::COOKIE, cookies),
            None => request,
        };
        let response = request.send().await.unwrap();
        let jar = self.jar.entry(Self::origin(url)).or_default();
        for set in response.headers().get_all(reqwest::header::SET_COOKIE) {
            let set = set.to_str().unwrap_or("");
            if let Some((name, value)) = set.split(';').next().unwrap_or("").split_once('=') {
                if value.is_empty() || set.contains("Max-Age=0") {
                    jar.remove(name.trim());
                } else {
                    jar.insert(name.trim().to_owned(), value.to_owned());
                }
            }
        }
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .map(|l| url.join(l.to_str().unwrap()).unwrap().to_string());
        Answer {
            status,
            location,
            body: response.text().await.unwrap_or_default(),
        }
    }

    async fn get(&mut self, url: &str) -> Answer {
        let parsed = Url::parse(url).unwrap();
        let request = self.http.get(parsed.clone());
        self.send(request, &parsed).await
    }

    async fn post_form(&mut self, url: &str, form: &[(&str, &str)]) -> Answer {
        let parsed = Url::parse(url).unwrap();
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let request = self
            .http
            .post(parsed.clone())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body);
        self.send(request, &parsed).await
    }

    /// `POST url` with a JSON body (the realm's API login sets the session cookie).
    async fn post_json(&mut self, url: &str, body: &Value) -> Answer {
        let parsed = Url::parse(url).unwrap();
        let request = self.http.post(parsed.clone()).json(body);
        self.send(request, &parsed).await
    }

    /// The realm's `/api/v1/me` with this browser's session.
    async fn me(&mut self, realm: &Realm) -> Answer {
        self.get(&format!("{}/api/v1/me", realm.issuer)).await
    }

    /// The session cookie for `realm`, if any.
    fn session(&self, realm: &Realm) -> Option<&String> {
        let url = Url::parse(&realm.issuer).unwrap();
        self.jar
            .get(&Self::origin(&url))?
            .get("__Host-portcullis_session")
    }
}

/// Starts the realm's social sign-in with `corp` and plays the upstream login as `sub`: the
/// callback URL the provider sends the browser back to (not followed yet).
async fn to_callback(browser: &mut Browser, realm: &Realm, port: u16, sub: &str) -> String {
    let started = browser
        .get(&format!("{}/oauth2/social/corp/start", realm.issuer))
        .await;
    assert_eq!(started.status, 303, "{}", started.body);
    let location = started.location.unwrap();
    let callback = sign_in(&browser.http, &location, sub, &callback_url(port)).await;
    callback.url.to_string()
}

/// The whole social sign-in as `sub`: the callback's answer, or, when it asks for the realm's
/// privacy policy (an account made by the sign-in has accepted none), the answer to accepting
/// it.
async fn social_sign_in(browser: &mut Browser, realm: &Realm, port: u16, sub: &str) -> Answer {
    let callback = to_callback(browser, realm, port, sub).await;
    let answer = browser.get(&callback).await;
    accept_policy(browser, realm, answer).await
}

/// `answer`, or when it is the privacy policy page of a sign-in, the answer to accepting it
/// (the test realm's one purpose, `account`).
async fn accept_policy(browser: &mut Browser, realm: &Realm, answer: Answer) -> Answer {
    if !answer.body.contains("action=\"/consent/policy\"") {
        return answer;
    }
    assert!(
        browser.session(realm).is_none(),
        "no session before the policy is accepted"
    );
    let field = |name: &str| hidden(&answer.body, name).unwrap_or_else(|| panic!("{name}"));
    let (csrf, version, token) = (
        field("csrf"),
        field("policy_version"),
        field("consent_token"),
    );
    browser
        .post_form(
            &format!("{}/consent/policy", realm.issuer),
            &[
                ("csrf", csrf.as_str()),
                ("policy_version", version.as_str()),
                ("consent_token", token.as_str()),
                ("consent_account", "on"),
            ],
        )
        .await
}

/// A Node upstream with `accounts` over HTTPS for the realm on `port`, and that realm; `None`
/// (after a SKIPPED line) when Node cannot run here outside CI.
async fn node_and_realm(accounts: Vec<Account>, what: &str) -> Option<(Upstream, Realm, u16)> {
    let port = free_port();
    let mut config =
        Config::new(CLIENT_ID, CLIENT_SECRET, &callback_url(port)).tls(Tls::generate());
    for account in accounts {
        config = config.account(account);
    }
    let upstream = node_or_skip(&config, what)?;
    let ca = config.tls.as_ref().unwrap().ca_pem.clone();
    let realm = Realm::start_with(&[], corp_extras(port, &upstream.issuer, &ca)).await;
    Some((upstream, realm, port))
}

fn browser_for(realm: &Realm, upstream: &Upstream) -> Browser {
    Browser::new(&[&realm.ca_pem, &upstream.config.tls.as_ref().unwrap().ca_pem])
}

/// `POST /api/v1/login` with the test password: the answer's JSON (`user_id`, `access_token`).
async fn password_login(realm: &Realm, email: &str) -> Value {
    let http = Browser::new(&[&realm.ca_pem]).http;
    let login = http
        .post(format!("{}/api/v1/login", realm.issuer))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200, "{email}");
    login.json().await.unwrap()
}

/// `DELETE /api/v1/me/identities/{id}` with the browser's session and its CSRF token.
async fn unlink(browser: &mut Browser, realm: &Realm, id: &str) -> Answer {
    let csrf = json_of(&browser.get(&format!("{}/api/v1/csrf", realm.issuer)).await)["csrf_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = Url::parse(&format!("{}/api/v1/me/identities/{id}", realm.issuer)).unwrap();
    let request = browser
        .http
        .delete(url.clone())
        .header("X-CSRF-Token", csrf);
    browser.send(request, &url).await
}

fn json_of(answer: &Answer) -> Value {
    serde_json::from_str(&answer.body).unwrap_or_else(|_| panic!("not JSON: {}", answer.body))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_verified_identity_creates_an_account_and_signs_in_again_as_it() {
    let Some((upstream, realm, port)) = node_and_realm(
        vec![Account::verified("ada-sub", "ada@example.com")],
        "social sign-in creates an account",
    )
    .await
    else {
        return;
    };
    let mut browser = browser_for(&realm, &upstream);
    let first = social_sign_in(&mut browser, &realm, port, "ada-sub").await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert!(
        browser.session(&realm).is_some(),
        "signed in with a session"
    );
    let me = json_of(&browser.me(&realm).await);
    assert_eq!(me["email"], "ada@example.com");
    assert_eq!(me["email_verified"], true);
    assert_eq!(me["identities"][0]["provider"], "corp");
    assert_eq!(me["identities"][0]["email"], "ada@example.com");

    let mut again = browser_for(&realm, &upstream);
    let second = social_sign_in(&mut again, &realm, port, "ada-sub").await;
    assert_eq!(second.status, 200, "{}", second.body);
    let me_again = json_of(&again.me(&realm).await);
    assert_eq!(me_again["user_id"], me["user_id"], "the same account");
    assert_eq!(me_again["identities"].as_array().unwrap().len(), 1);

    // The account has no password: nothing signs in to it by one, not even the text the
    // server hashes for unknown accounts.
    for password in [PASSWORD, "portcullis dummy password for unknown accounts"] {
        let login = again
            .http
            .post(format!("{}/api/v1/login", realm.issuer))
            .json(&json!({"email": "ada@example.com", "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), 401, "{password}");
    }
    realm.stop().await;
}

const USERS_WITH_EMAIL: &str = "SELECT count(*) FROM users WHERE email_canonical = $1";

#[tokio::test(flavor = "multi_thread")]
async fn a_sign_up_makes_no_account_until_the_policy_is_accepted_and_records_it_as_registration() {
    let Some((upstream, realm, port)) = node_and_realm(
        vec![Account::verified("uma-sub", "uma@example.com")],
        "social sign-up waits for the policy",
    )
    .await
    else {
        return;
    };
    let mut browser = browser_for(&realm, &upstream);
    let callback = to_callback(&mut browser, &realm, port, "uma-sub").await;
    let policy_page = browser.get(&callback).await;
    assert!(
        policy_page.body.contains("action=\"/consent/policy\""),
        "{}",
        policy_page.body
    );
    assert!(browser.session(&realm).is_none());
    assert_eq!(realm.count(USERS_WITH_EMAIL, "uma@example.com").await, 0);

    // Declining the required purpose creates nothing and keeps the page usable.
    let field = |name: &str| hidden(&policy_page.body, name).unwrap();
    let declined = browser
        .post_form(
            &format!("{}/consent/policy", realm.issuer),
            &[
                ("csrf", field("csrf").as_str()),
                ("policy_version", field("policy_version").as_str()),
                ("consent_token", field("consent_token").as_str()),
            ],
        )
        .await;
    assert_eq!(declined.status, 400, "{}", declined.body);
    assert!(browser.session(&realm).is_none());
    assert_eq!(realm.count(USERS_WITH_EMAIL, "uma@example.com").await, 0);

    // A second browser starts the same sign-up before the first accepts.
    let mut other = browser_for(&realm, &upstream);
    let other_callback = to_callback(&mut other, &realm, port, "uma-sub").await;
    let other_page = other.get(&other_callback).await;

    let accepted = accept_policy(&mut browser, &realm, policy_page).await;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    assert!(browser.session(&realm).is_some());
    assert_eq!(realm.count(USERS_WITH_EMAIL, "uma@example.com").await, 1);

    // The identity has its account now: the other sign-up is decided anew, not made twice.
    let late = accept_policy(&mut other, &realm, other_page).await;
    assert_eq!(late.status, 409, "{}", late.body);
    assert!(late.body.contains("sign in again"), "{}", late.body);
    assert!(other.session(&realm).is_none());
    assert_eq!(realm.count(USERS_WITH_EMAIL, "uma@example.com").await, 1);
    let registration = realm
        .count(
            "SELECT count(*) FROM consent_events e JOIN users u ON u.id = e.user_id \
             WHERE u.email_canonical = $1 AND e.source = 'registration' AND e.granted",
            "uma@example.com",
        )
        .await;
    assert_eq!(
        registration, 1,
        "the required purpose, granted at registration"
    );
    let me = json_of(&browser.me(&realm).await);
    assert_eq!(me["identities"][0]["provider"], "corp");
    realm.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connecting_from_the_account_page_makes_the_provider_sign_in_afresh_and_links() {
    let Some((upstream, realm, port)) = node_and_realm(
        vec![Account::verified("pia-sub", "pia.elsewhere@example.org")],
        "social link from the account page",
    )
    .await
    else {
        return;
    };
    realm.account("pia@example.com").await;
    let mut browser = browser_for(&realm, &upstream);
    let login = browser
        .post_json(
            &format!("{}/api/v1/login", realm.issuer),
            &json!({"email": "pia@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(login.status, 200, "{}", login.body);
    let page = browser.get(&format!("{}/account", realm.issuer)).await;
    let csrf = hidden(&page.body, "csrf").unwrap();
    let started = browser
        .post_form(
            &format!("{}/account/identities/link", realm.issuer),
            &[("provider", "corp"), ("csrf", csrf.as_str())],
        )
        .await;
    assert_eq!(started.status, 303, "{}", started.body);
    let to_provider = started.location.unwrap();
    let prompt = Url::parse(&to_provider)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "prompt")
        .map(|(_, v)| v.into_owned());
    assert_eq!(prompt.as_deref(), Some("login"), "{to_provider}");

    let callback = sign_in(&browser.http, &to_provider, "pia-sub", &callback_url(port)).await;
    let linked = browser.get(callback.url.as_ref()).await;
    assert_eq!(linked.status, 303, "{}", linked.body);
    assert!(
        linked
            .location
            .as_deref()
            .unwrap_or("")
            .ends_with("/account?done=linked"),
        "{:?}",
        linked.location
    );
    let me = json_of(&browser.me(&realm).await);
    assert_eq!(me["identities"][0]["provider"], "corp");
    assert_eq!(me["identities"][0]["email"], "pia.elsewhere@example.org");
    realm.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_verified_email_links_to_its_account_and_tells_the_owner() {
    let Some((upstream, realm, port)) = node_and_realm(
        vec![Account::verified("bob-sub", "bob@example.com")],
        "social sign-in links by verified email",
    )
    .await
    else {
        return;
    };
    realm.account("bob@example.com").await;
    let bob = password_login(&realm, "bob@example.com").await;
    let mut browser = browser_for(&realm, &upstream);
    let signed = social_sign_in(&mut browser, &realm, port, "bob-sub").await;
    assert_eq!(signed.status, 200, "{}", signed.body);
    let me = json_of(&browser.me(&realm).await);
    assert_eq!(
        me["user_id"], bob["user_id"],
        "linked to the registered account"
    );
    assert_eq!(me["identities"][0]["provider"], "corp");
    let notice =
        portcullis_e2e::served::wait_for_mail(&realm.mail_dir(), "the linked notice", |mail| {
            mail.contains("can now be signed in to through corp")
                .then(|| mail.to_owned())
        });
    assert!(notice.contains("To: bob@example.com"), "{notice}");

    // With a password, the link may go; the account keeps its password.
    let id = me["identities"][0]["id"].as_str().unwrap().to_owned();
    let unlinked = unlink(&mut browser, &realm, &id).await;
    assert_eq!(unlinked.status, 204, "{}", unlinked.body);
    let me = json_of(&browser.me(&realm).await);
    assert!(me["identities"].as_array().unwrap().is_empty());
    realm.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_last_way_in_cannot_be_unlinked() {
    let Some((upstream, realm, port)) = node_and_realm(
        vec![Account::verified("cy-sub", "cy@example.com")],
        "social sign-in: last way in",
    )
    .await
    else {
        return;
    };
    let mut browser = browser_for(&realm, &upstream);
    assert_eq!(
        social_sign_in(&mut browser, &realm, port, "cy-sub")
            .await
            .status,
        200
    );
    let me = json_of(&browser.me(&realm).await);
    let id = me["identities"][0]["id"].as_str().unwrap().to_owned();
    let refused = unlink(&mut browser, &realm, &id).await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert_eq!(json_of(&refused)["code"], "last_sign_in_method");
    assert_eq!(
        json_of(&browser.me(&realm).await)["identities"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    realm.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unverified_upstream_email_takes_no_account_over() {
    let Some((upstream, realm, port)) = node_and_realm(
        vec![
            Account::unverified("mallory-sub", "dee@example.com"),
            Account::unverified("nobody-sub", "new@example.com"),
        ],
        "social sign-in: unverified email",
    )
    .await
    else {
        return;
    };
    realm.account("dee@example.com").await;
    let mut mallory = browser_for(&realm, &upstream);
    let refused = social_sign_in(&mut mallory, &realm, port, "mallory-sub").await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.contains("has not verified your email address"));
    assert!(mallory.session(&realm).is_none(), "no session");
    // Nor is an account made that claims an address nobody proved.
    let mut other = browser_for(&realm, &upstream);
    let refused = social_sign_in(&mut other, &realm, port, "nobody-sub").await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(other.session(&realm).is_none());
    // Dee's account has no link.
    let token = password_login(&realm, "dee@example.com").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let me: Value = Browser::new(&[&realm.ca_pem])
        .http
        .get(format!("{}/api/v1/me", realm.issuer))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(me["identities"].as_array().unwrap().is_empty());
    realm.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_callback_is_used_once_and_only_by_the_browser_that_started_it() {
    let Some((upstream, realm, port)) = node_and_realm(
        vec![Account::verified("eve-sub", "eve@example.com")],
        "social sign-in: callback binding",
    )
    .await
    else {
        return;
    };
    // Another browser brings the callback: it has no pending sign-in.
    let mut victim = browser_for(&realm, &upstream);
    let callback = to_callback(&mut victim, &realm, port, "eve-sub").await;
    let mut attacker = browser_for(&realm, &upstream);
    let refused = attacker.get(&callback).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(attacker.session(&realm).is_none());
    // The browser that started it signs in once; the same callback again finds nothing.
    let answer = victim.get(&callback).await;
    let signed = accept_policy(&mut victim, &realm, answer).await;
    assert_eq!(signed.status, 200, "{}", signed.body);
    let mut replay = Browser::new(&[&realm.ca_pem]);
    replay.jar = victim.jar.clone();
    replay
        .jar
        .values_mut()
        .for_each(|c| drop(c.remove("__Host-portcullis_session")));
    let again = replay.get(&callback).await;
    assert_eq!(again.status, 400, "{}", again.body);
    assert!(replay.session(&realm).is_none());
    realm.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_with_two_step_sign_in_is_not_linked_by_email() {
    let Some((upstream, realm, port)) = node_and_realm(
        vec![Account::verified("fay-sub", "fay@example.com")],
        "social sign-in: MFA account",
    )
    .await
    else {
        return;
    };
    realm.account("fay@example.com").await;
    let http = Browser::new(&[&realm.ca_pem]).http;
    let token = password_login(&realm, "fay@example.com").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let enrol: Value = http
        .post(format!("{}/api/v1/me/mfa/totp", realm.issuer))
        .bearer_auth(&token)
        .json(&json!({"password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = enrol["secret"].as_str().unwrap().to_owned();
    let confirmed = http
        .post(format!("{}/api/v1/me/mfa/totp/confirm", realm.issuer))
        .bearer_auth(&token)
        .json(&json!({"code": portcullis_e2e::totp::code_now(&secret)}))
        .send()
        .await
        .unwrap();
    assert_eq!(confirmed.status(), 200, "{:?}", confirmed.text().await);

    let mut browser = browser_for(&realm, &upstream);
    let refused = social_sign_in(&mut browser, &realm, port, "fay-sub").await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(
        refused.body.contains("two-step sign-in"),
        "{}",
        refused.body
    );
    assert!(browser.session(&realm).is_none());
    realm.stop().await;
}

/// A rogue upstream breaking `misbehaviour`, and a realm using it.
async fn rogue_and_realm(misbehaviour: Misbehaviour) -> (Upstream, Realm, u16) {
    let port = free_port();
    let config = Config::new(CLIENT_ID, CLIENT_SECRET, &callback_url(port))
        .tls(Tls::generate())
        .account(Account::verified("gus-sub", "gus@example.com"));
    let upstream = Upstream::start_rogue(&config, misbehaviour);
    let ca = config.tls.as_ref().unwrap().ca_pem.clone();
    let realm = Realm::start_with(&[], corp_extras(port, &upstream.issuer, &ca)).await;
    (upstream, realm, port)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_id_token_with_a_wrong_nonce_or_issuer_signs_no_one_in() {
    for misbehaviour in [Misbehaviour::WrongNonce, Misbehaviour::WrongIssuer] {
        let (upstream, realm, port) = rogue_and_realm(misbehaviour).await;
        let mut browser = browser_for(&realm, &upstream);
        let refused = social_sign_in(&mut browser, &realm, port, "gus-sub").await;
        assert_eq!(refused.status, 502, "{misbehaviour:?}: {}", refused.body);
        assert!(browser.session(&realm).is_none(), "{misbehaviour:?}");
        realm.stop().await;
    }
    // The same provider without the fault signs in: the refusals above are the fault's.
    let (upstream, realm, port) = rogue_and_realm(Misbehaviour::Honest).await;
    let mut browser = browser_for(&realm, &upstream);
    let signed = social_sign_in(&mut browser, &realm, port, "gus-sub").await;
    assert_eq!(signed.status, 200, "{}", signed.body);
    realm.stop().await;
}

/// The `value` of the hidden input `name` in `html`.
fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(
        html[start..start + end]
            .replace("&#x2f;", "/")
            .replace("&amp;", "&"),
    )
}

/// The browser at an upstream Portcullis realm: from `authorization_url`, through its hosted
/// login as `email`, until the redirect to `callback` (returned, not followed).
async fn sign_in_at_portcullis(
    browser: &mut Browser,
    authorization_url: &str,
    email: &str,
    callback: &str,
) -> String {
    let mut url = authorization_url.to_owned();
    for _ in 0..10 {
        if url.starts_with(callback) {
            return url;
        }
        let answer = browser.get(&url).await;
        if let Some(next) = answer.location {
            url = next;
            continue;
        }
        assert_eq!(answer.status, 200, "GET {url}: {}", answer.body);
        assert!(
            Url::parse(&url).unwrap().path() == "/login",
            "{url}: {}",
            answer.body
        );
        let csrf = hidden(&answer.body, "csrf").expect("the login form's CSRF token");
        let req = hidden(&answer.body, "req").expect("the pending authorization request");
        let action = Url::parse(&url)
            .unwrap()
            .join("/login")
            .unwrap()
            .to_string();
        let posted = browser
            .post_form(
                &action,
                &[
                    ("email", email),
                    ("password", PASSWORD),
                    ("csrf", &csrf),
                    ("req", &req),
                ],
            )
            .await;
        url = posted
            .location
            .unwrap_or_else(|| panic!("login at the upstream realm: {}", posted.body));
    }
    panic!("the upstream realm did not send the browser back; last at {url}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_portcullis_realm_is_an_upstream_provider() {
    let port = free_port();
    let upstream_client = format!(
        "apiVersion: portcullis.dev/v1alpha1
kind: AuthClient
metadata: {{name: downstream}}
spec:
  realmRef: {{name: REALM}}
  clientId: {CLIENT_ID}
  type: Confidential
  firstParty: true
  redirectUris: [\"{}\"]
  grantTypes: [authorization_code]
  scopes: [openid, profile, email]
",
        callback_url(port)
    );
    let upstream = Realm::start(&[upstream_client]).await;
    upstream.account("hana@example.com").await;
    let secret = upstream.client_secret(CLIENT_ID);
    let mut extras = corp_extras(port, &upstream.issuer, &upstream.ca_pem);
    extras.secrets[0].1 = format!("{secret}\n");
    let realm = Realm::start_with(&[], extras).await;
    let mut browser = Browser::new(&[&realm.ca_pem, &upstream.ca_pem]);
    let started = browser
        .get(&format!("{}/oauth2/social/corp/start", realm.issuer))
        .await;
    assert_eq!(started.status, 303, "{}", started.body);
    let location = started.location.unwrap();
    assert!(location.starts_with(&upstream.issuer), "{location}");
    let callback = sign_in_at_portcullis(
        &mut browser,
        &location,
        "hana@example.com",
        &callback_url(port),
    )
    .await;
    let answer = browser.get(&callback).await;
    let signed = accept_policy(&mut browser, &realm, answer).await;
    assert_eq!(signed.status, 200, "{}", signed.body);
    let me = json_of(&browser.me(&realm).await);
    assert_eq!(me["email"], "hana@example.com");
    assert_eq!(me["identities"][0]["provider"], "corp");
    realm.stop().await;
    upstream.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_callbacks_at_once_sign_in_once() {
    let Some((upstream, realm, port)) = node_and_realm(
        vec![Account::verified("ivy-sub", "ivy@example.com")],
        "social sign-in: concurrent callbacks",
    )
    .await
    else {
        return;
    };
    let mut browser = browser_for(&realm, &upstream);
    let callback = to_callback(&mut browser, &realm, port, "ivy-sub").await;
    // The same browser (same cookie) sends the callback twice at once, as a double click or
    // a racing attacker holding a copy of the cookie would.
    let mut twin = browser_for(&realm, &upstream);
    twin.jar = browser.jar.clone();
    let (first, second) = tokio::join!(browser.get(&callback), twin.get(&callback));
    let mut statuses = [first.status, second.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 400], "exactly one goes on");
    realm.stop().await;
}
