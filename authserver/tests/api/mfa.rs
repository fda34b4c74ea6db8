//! TOTP enrolment from the account API: password re-check, secret and otpauth URI, a first
//! code computed from the returned secret, recovery codes, and what `/api/v1/me` shows.

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;

use portcullis_authserver::clock::Clock;

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

/// The RFC 6238 code (SHA-1, 6 digits, 30 s) of a base32 `secret` at `unix` seconds, computed
/// here with `hmac` and `sha1` rather than by the server's own TOTP code.
fn totp_at(secret: &str, unix: i64) -> String {
    use hmac::{Hmac, Mac};
    let key = base32_decode(secret);
    let step = u64::try_from(unix / 30).unwrap();
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&key).unwrap();
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[19] & 0x0f);
    let bin = u32::from_be_bytes(digest[offset..offset + 4].try_into().unwrap()) & 0x7fff_ffff;
    format!("{:06}", bin % 1_000_000)
}

/// RFC 4648 base32 without padding (what the server shows as the secret).
fn base32_decode(text: &str) -> Vec<u8> {
    let mut bits = 0u64;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.trim_end_matches('=').bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            other => panic!("not base32: {other}"),
        };
        bits = (bits << 5) | u64::from(value);
        count += 5;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}

#[test]
fn the_tests_totp_matches_the_rfc_6238_sha1_vectors() {
    // RFC 6238 appendix B, SHA-1 key "12345678901234567890", last 6 digits.
    let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    assert_eq!(totp_at(secret, 59), "287082");
    assert_eq!(totp_at(secret, 1_111_111_109), "081804");
    assert_eq!(totp_at(secret, 1_234_567_890), "005924");
    assert_eq!(totp_at(secret, 2_000_000_000), "279037");
}

/// The current code of a base32 `secret` with the realm's default parameters.
fn code_now(secret: &str) -> String {
    totp_at(secret, time::OffsetDateTime::now_utc().unix_timestamp())
}

/// The code of `secret` `steps` time steps after `clock`'s now.
fn code_on(clock: &Clock, secret: &str, steps: i64) -> String {
    totp_at(secret, clock.now().unix_timestamp() + 30 * steps)
}

/// What enrolling gave: the secret and the recovery codes.
struct Enrolled {
    secret: String,
    recovery_codes: Vec<String>,
}

/// Enrols TOTP for the session `cred` with a code of `clock`'s current step.
async fn enrol(server: &TestServer, cred: &Cred, clock: &Clock) -> Enrolled {
    let begun = post(
        server,
        "/api/v1/me/mfa/totp",
        json!({"password": PASSWORD}),
        cred,
    )
    .await;
    assert_eq!(begun.status, 200, "{begun:?}");
    let secret = begun.body["secret"].as_str().unwrap().to_owned();
    let confirmed = post(
        server,
        "/api/v1/me/mfa/totp/confirm",
        json!({"code": code_on(clock, &secret, 0)}),
        cred,
    )
    .await;
    assert_eq!(confirmed.status, 200, "{confirmed:?}");
    let recovery_codes = confirmed.body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    Enrolled {
        secret,
        recovery_codes,
    }
}

/// A server on a stopped clock (TOTP steps move only when the test says so).
async fn stopped(pool: PgPool) -> (TestServer, Clock) {
    let clock = stopped_clock();
    let server = start(
        pool,
        Options {
            clock: clock.clone(),
            ..Options::default()
        },
    )
    .await;
    (server, clock)
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

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn enrolling_ends_every_other_session_and_refresh_family_and_keeps_this_one(pool: PgPool) {
    let (server, clock) = stopped(pool).await;
    assert_eq!(
        server.register("alice@example.com", PASSWORD).await.status,
        201
    );
    let here = server.login("alice@example.com", PASSWORD).await;
    let elsewhere = server.login("alice@example.com", PASSWORD).await;
    enrol(&server, &bearer(&here), &clock).await;

    assert_eq!(
        server.get("/api/v1/me", &bearer(&elsewhere)).await.status,
        401
    );
    let stale = server
        .refresh(elsewhere.body["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(
        stale.status, 400,
        "a pre-MFA family no longer refreshes: {stale:?}"
    );
    assert_eq!(stale.body["error"], "invalid_grant");

    assert_eq!(server.get("/api/v1/me", &bearer(&here)).await.status, 200);
    let kept = server
        .refresh(here.body["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(kept.status, 200, "{kept:?}");
}
