//! TOTP enrolment from the account API: password re-check, secret and otpauth URI, a first
//! code computed from the returned secret, recovery codes, and what `/api/v1/me` shows.

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::support::*;

/// Signs `email` up and in; the bearer credential of its session.
async fn signed_in(server: &TestServer, email: &str) -> Cred {
    assert_eq!(server.register(email, PASSWORD).await.status, 201);
    let login = server.login(email, PASSWORD).await;
    assert_eq!(login.status, 200, "{login:?}");
    bearer(&login)
}

async fn post(server: &TestServer, path: &str, body: Value, cred: &Cred) -> Answer {
    server.call(Method::POST, path, Some(body), cred).await
}

/// The current code of a base32 `secret` with the realm's default parameters.
fn code_now(secret: &str) -> String {
    let secret = portcullis_mfa::TotpSecret::from_base32(secret).expect("a base32 secret");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    portcullis_mfa::generate(&portcullis_mfa::TotpParams::default(), &secret, now).to_string()
}

async fn mfa_of(server: &TestServer, cred: &Cred) -> Value {
    let me = server.get("/api/v1/me", cred).await;
    assert_eq!(me.status, 200, "{me:?}");
    me.body["mfa"].clone()
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_code_from_the_returned_secret_turns_totp_on_and_issues_recovery_codes(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let cred = signed_in(&server, "alice@example.com").await;
    assert_eq!(
        mfa_of(&server, &cred).await,
        json!({"totp": false, "recovery_codes_left": 0})
    );

    let begun = post(
        &server,
        "/api/v1/me/mfa/totp",
        json!({"password": PASSWORD}),
        &cred,
    )
    .await;
    assert_eq!(begun.status, 200, "{begun:?}");
    let secret = begun.body["secret"].as_str().unwrap();
    let uri = begun.body["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    assert!(uri.contains(&format!("secret={secret}")), "{uri}");
    assert_eq!(
        mfa_of(&server, &cred).await["totp"],
        false,
        "pending until confirmed"
    );

    let confirmed = post(
        &server,
        "/api/v1/me/mfa/totp/confirm",
        json!({"code": code_now(secret)}),
        &cred,
    )
    .await;
    assert_eq!(confirmed.status, 200, "{confirmed:?}");
    let codes = confirmed.body["recovery_codes"].as_array().unwrap();
    assert_eq!(codes.len(), 10, "the default count");
    for code in codes {
        assert!(
            portcullis_mfa::RecoveryCode::parse(code.as_str().unwrap()).is_some(),
            "{code}"
        );
    }
    assert_eq!(
        mfa_of(&server, &cred).await,
        json!({"totp": true, "recovery_codes_left": 10})
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn the_realm_sets_how_many_recovery_codes_are_issued(pool: PgPool) {
    let server = start(pool, Options::spec(|s| s.mfa.recovery_codes = 3)).await;
    let cred = signed_in(&server, "alice@example.com").await;
    let begun = post(
        &server,
        "/api/v1/me/mfa/totp",
        json!({"password": PASSWORD}),
        &cred,
    )
    .await;
    let code = code_now(begun.body["secret"].as_str().unwrap());
    let confirmed = post(
        &server,
        "/api/v1/me/mfa/totp/confirm",
        json!({"code": code}),
        &cred,
    )
    .await;
    assert_eq!(
        confirmed.body["recovery_codes"].as_array().unwrap().len(),
        3
    );
    assert_eq!(mfa_of(&server, &cred).await["recovery_codes_left"], 3);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_wrong_password_begins_no_enrolment(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let cred = signed_in(&server, "alice@example.com").await;
    let refused = post(
        &server,
        "/api/v1/me/mfa/totp",
        json!({"password": OTHER_PASSWORD}),
        &cred,
    )
    .await;
    assert_eq!(
        (refused.status, refused.code()),
        (401, "invalid_credentials")
    );
    let confirm = post(
        &server,
        "/api/v1/me/mfa/totp/confirm",
        json!({"code": "123456"}),
        &cred,
    )
    .await;
    assert_eq!(
        (confirm.status, confirm.code()),
        (409, "no_pending_enrolment")
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_wrong_code_leaves_totp_off(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let cred = signed_in(&server, "alice@example.com").await;
    let begun = post(
        &server,
        "/api/v1/me/mfa/totp",
        json!({"password": PASSWORD}),
        &cred,
    )
    .await;
    let right = code_now(begun.body["secret"].as_str().unwrap());
    let wrong = format!("{:06}", (right.parse::<u32>().unwrap() + 1) % 1_000_000);
    let refused = post(
        &server,
        "/api/v1/me/mfa/totp/confirm",
        json!({"code": wrong}),
        &cred,
    )
    .await;
    assert_eq!((refused.status, refused.code()), (401, "invalid_totp"));
    assert_eq!(
        mfa_of(&server, &cred).await,
        json!({"totp": false, "recovery_codes_left": 0})
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn only_the_session_that_was_shown_the_secret_confirms_it(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let first = signed_in(&server, "alice@example.com").await;
    let second = bearer(&server.login("alice@example.com", PASSWORD).await);
    let begun = post(
        &server,
        "/api/v1/me/mfa/totp",
        json!({"password": PASSWORD}),
        &first,
    )
    .await;
    let code = code_now(begun.body["secret"].as_str().unwrap());
    let elsewhere = post(
        &server,
        "/api/v1/me/mfa/totp/confirm",
        json!({"code": code}),
        &second,
    )
    .await;
    assert_eq!(
        (elsewhere.status, elsewhere.code()),
        (409, "no_pending_enrolment")
    );
    assert_eq!(mfa_of(&server, &first).await["totp"], false);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_second_enrolment_is_refused_once_totp_is_on(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let cred = signed_in(&server, "alice@example.com").await;
    let begun = post(
        &server,
        "/api/v1/me/mfa/totp",
        json!({"password": PASSWORD}),
        &cred,
    )
    .await;
    let code = code_now(begun.body["secret"].as_str().unwrap());
    post(
        &server,
        "/api/v1/me/mfa/totp/confirm",
        json!({"code": code}),
        &cred,
    )
    .await;
    let again = post(
        &server,
        "/api/v1/me/mfa/totp",
        json!({"password": PASSWORD}),
        &cred,
    )
    .await;
    assert_eq!((again.status, again.code()), (409, "mfa_already_enrolled"));
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_confirmed_enrolment_is_audited_and_the_owner_is_told(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let cred = signed_in(&server, "alice@example.com").await;
    let begun = post(
        &server,
        "/api/v1/me/mfa/totp",
        json!({"password": PASSWORD}),
        &cred,
    )
    .await;
    let code = code_now(begun.body["secret"].as_str().unwrap());
    let confirmed = post(
        &server,
        "/api/v1/me/mfa/totp/confirm",
        json!({"code": code}),
        &cred,
    )
    .await;
    assert_eq!(confirmed.status, 200, "{confirmed:?}");

    let audit = server.admin_call(Method::GET, "/admin/v1/audit").await;
    let text = match audit.body {
        Value::String(text) => text,
        one => format!("{one}\n"),
    };
    let enrolled: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["type"] == "mfa_enrolled")
        .collect();
    assert_eq!(enrolled.len(), 1, "{text}");
    assert_eq!(enrolled[0]["ip"], "127.0.0.1");

    let mails = server.mails_settled(1).await;
    assert!(
        mails
            .iter()
            .any(|m| m.contains("A second factor was added to")),
        "{mails:?}"
    );
}
