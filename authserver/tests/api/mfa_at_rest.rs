//! The second factor seen from outside the API: the attempts metric, and the TOTP secret as
//! stored. A ciphertext the server wrote to `mfa_totp.secret` decrypts with an independent
//! Fernet (Python's `cryptography`) under the secrets dir's key, to the documented framing
//! (version 1, purpose 1 = TOTP secret, the user id, the secret); copied to another user's
//! row, the server refuses it. Without python3 and `cryptography` the Python check says
//! SKIPPED and passes, except under CI or `PORTCULLIS_REQUIRE_INTEROP=1`, where it fails
//! (as `sealed/tests/python_fernet.rs` does).

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::mfa::{code_on, enrolled_user, mfa_token, second_step, stopped};
use crate::support::*;

/// The metrics scrape.
async fn scrape(server: &TestServer) -> String {
    server
        .http
        .get(format!("{}/metrics", server.metrics))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the sample `line_start` (name and labels) in `text`.
fn sample(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .unwrap_or_else(|| panic!("no {line_start} in {text}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn second_factor_attempts_are_counted_by_method_and_result(pool: PgPool) {
    let (server, clock) = stopped(pool).await;
    let alice = enrolled_user(&server, &clock, "alice@example.com").await;
    let code = code_on(&clock, &alice.secret, 0);
    let wrong = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);
    let token = mfa_token(&server, "alice@example.com").await;
    second_step(&server, json!({"mfa_token": token, "code": wrong})).await;
    second_step(&server, json!({"mfa_token": token, "code": code})).await;
    let token = mfa_token(&server, "alice@example.com").await;
    second_step(&server, json!({"mfa_token": token, "code": code})).await;
    second_step(
        &server,
        json!({"mfa_token": token, "recovery_code": alice.recovery_codes[0]}),
    )
    .await;
    let text = scrape(&server).await;
    let count = |method: &str, result: &str| {
        sample(
            &text,
            &format!("portcullis_mfa_attempts_total{{method=\"{method}\",result=\"{result}\"}}"),
        )
    };
    assert_eq!(count("totp", "failure"), 1.0);
    // The enrolment's confirmation is a TOTP success too (account page or API alike).
    assert_eq!(count("totp", "success"), 2.0);
    assert_eq!(count("totp", "replay"), 1.0);
    assert_eq!(count("recovery", "success"), 1.0);
    assert_eq!(count("recovery", "failure"), 0.0);
}

const PYTHON: &str = r#"
import sys
from cryptography.fernet import Fernet, InvalidToken
key, token = sys.stdin.read().split()
try:
    print(Fernet(key.encode()).decrypt(token.encode()).hex())
except InvalidToken:
    print("INVALID")
"#;

fn python_fernet_available() -> bool {
    Command::new("python3")
        .args(["-c", "import cryptography.fernet"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether to skip for want of Python; under CI or `PORTCULLIS_REQUIRE_INTEROP=1` a missing
/// Python fails the test instead.
fn skip_unless_python() -> bool {
    if python_fernet_available() {
        return false;
    }
    let msg = "SKIPPED: python3 with the `cryptography` module not found; \
               the stored TOTP secret was not checked with an independent Fernet";
    let required = std::env::var_os("CI").is_some()
        || std::env::var("PORTCULLIS_REQUIRE_INTEROP").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{msg} (required: CI or PORTCULLIS_REQUIRE_INTEROP=1 is set)"
    );
    eprintln!("{msg}");
    true
}

/// Python's Fernet decryption of `token` under `key` (base64url): the plaintext in hex, or
/// `INVALID`.
fn python_decrypt(key: &str, token: &str) -> String {
    let mut child = Command::new("python3")
        .args(["-c", PYTHON])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{key} {token}").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the Python Fernet script failed");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn user_id(pool: &PgPool, email: &str) -> Uuid {
    sqlx::query_scalar("SELECT id FROM users WHERE email_canonical = $1")
        .bind(email)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn stored_secret(pool: &PgPool, user: Uuid) -> String {
    sqlx::query_scalar("SELECT secret FROM mfa_totp WHERE user_id = $1")
        .bind(user)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_stored_totp_secret_decrypts_with_pythons_fernet_to_the_documented_framing(pool: PgPool) {
    if skip_unless_python() {
        return;
    }
    let (server, clock) = stopped(pool.clone()).await;
    let alice = enrolled_user(&server, &clock, "alice@example.com").await;
    let user = user_id(&pool, "alice@example.com").await;
    let token = stored_secret(&pool, user).await;
    let key = server
        .secret_file("fernet-keys")
        .lines()
        .next()
        .unwrap()
        .trim()
        .to_owned();
    let plaintext = python_decrypt(&key, &token);
    let secret = crate::mfa::base32_decode(&alice.secret);
    // Version 1, purpose 1 (TOTP secret), the row's user id, the secret itself.
    let expected = format!("0101{}{}", user.simple(), hex(&secret));
    assert_eq!(plaintext, expected);
    // Nothing else decrypts it: another key says INVALID.
    let other = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    assert_eq!(python_decrypt(other, &token), "INVALID");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_totp_secret_copied_to_another_users_row_is_refused(pool: PgPool) {
    let (server, clock) = stopped(pool.clone()).await;
    let alice = enrolled_user(&server, &clock, "alice@example.com").await;
    enrolled_user(&server, &clock, "bob@example.com").await;
    let (alice_id, bob_id) = (
        user_id(&pool, "alice@example.com").await,
        user_id(&pool, "bob@example.com").await,
    );
    // Bob's row now holds Alice's ciphertext (and its key label): whoever knows Alice's codes
    // must not pass Bob's second step with them.
    sqlx::query(
        "UPDATE mfa_totp SET (secret, secret_key_id) = \
         (SELECT secret, secret_key_id FROM mfa_totp WHERE user_id = $1) WHERE user_id = $2",
    )
    .bind(alice_id)
    .bind(bob_id)
    .execute(&pool)
    .await
    .unwrap();
    let token = mfa_token(&server, "bob@example.com").await;
    let refused = second_step(
        &server,
        json!({"mfa_token": token, "code": code_on(&clock, &alice.secret, 0)}),
    )
    .await;
    assert_ne!(refused.status, 200, "{refused:?}");
    assert_eq!(refused.status, 503, "fails closed: {refused:?}");
    assert_eq!(refused.session_cookie(), None);
    assert!(refused.body.get("access_token").is_none());
}
