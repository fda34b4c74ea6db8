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
pub(crate) fn totp_at(secret: &str, unix: i64) -> String {
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
pub(crate) fn base32_decode(text: &str) -> Vec<u8> {
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
pub(crate) fn code_on(clock: &Clock, secret: &str, steps: i64) -> String {
    totp_at(secret, clock.now().unix_timestamp() + 30 * steps)
}

/// What enrolling gave: the secret and the recovery codes.
pub(crate) struct Enrolled {
    pub(crate) secret: String,
    pub(crate) recovery_codes: Vec<String>,
}

/// Enrols TOTP for the session `cred` with a code of `clock`'s current step.
pub(crate) async fn enrol(server: &TestServer, cred: &Cred, clock: &Clock) -> Enrolled {
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
pub(crate) async fn stopped(pool: PgPool) -> (TestServer, Clock) {
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

/// Makes every recovery-code write fail (a database blip after TOTP is confirmed).
async fn break_recovery_codes(pool: &PgPool) {
    sqlx::query("ALTER TABLE mfa_recovery_codes RENAME TO mfa_recovery_codes_gone")
        .execute(pool)
        .await
        .unwrap();
}

async fn mend_recovery_codes(pool: &PgPool) {
    sqlx::query("ALTER TABLE mfa_recovery_codes_gone RENAME TO mfa_recovery_codes")
        .execute(pool)
        .await
        .unwrap();
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn other_sessions_end_even_when_issuing_the_recovery_codes_fails(pool: PgPool) {
    let (server, clock) = stopped(pool.clone()).await;
    assert_eq!(
        server.register("alice@example.com", PASSWORD).await.status,
        201
    );
    let here = server.login("alice@example.com", PASSWORD).await;
    let elsewhere = server.login("alice@example.com", PASSWORD).await;
    let begun = post(
        &server,
        "/api/v1/me/mfa/totp",
        json!({"password": PASSWORD}),
        &bearer(&here),
    )
    .await;
    assert_eq!(begun.status, 200, "{begun:?}");
    let secret = begun.body["secret"].as_str().unwrap().to_owned();
    break_recovery_codes(&pool).await;
    let failed = post(
        &server,
        "/api/v1/me/mfa/totp/confirm",
        json!({"code": code_on(&clock, &secret, 0)}),
        &bearer(&here),
    )
    .await;
    assert_eq!(failed.status, 503, "{failed:?}");
    mend_recovery_codes(&pool).await;

    // TOTP is on: the sessions and families from before it are over all the same.
    assert_eq!(
        server.get("/api/v1/me", &bearer(&elsewhere)).await.status,
        401
    );
    let stale = server
        .refresh(elsewhere.body["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(stale.status, 400, "{stale:?}");
    assert_eq!(mfa_of(&server, &bearer(&here)).await["totp"], true);
    // The session that proved the code stays, and the codes can be issued again.
    clock.advance(std::time::Duration::from_secs(30));
    let codes = post(
        &server,
        "/api/v1/me/mfa/recovery-codes",
        json!({"password": PASSWORD, "code": code_on(&clock, &secret, 0)}),
        &bearer(&here),
    )
    .await;
    assert_eq!(codes.status, 200, "{codes:?}");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn sessions_from_before_a_login_enrolment_end_even_when_issuing_the_codes_fails(
    pool: PgPool,
) {
    let clock = stopped_clock();
    // One instance before the realm required TOTP, one after, on the same stores.
    let before = start(
        pool.clone(),
        Options {
            clock: clock.clone(),
            ..Options::default()
        },
    )
    .await;
    let after = start_sharing(
        pool.clone(),
        Options {
            clock: clock.clone(),
            redis_prefix: before.redis_prefix.clone(),
            ..Options::spec(|s| {
                s.mfa.totp.enabled = true;
                s.mfa.totp.required = true;
            })
        },
        Some(&before),
    )
    .await;
    assert_eq!(
        before.register("bob@example.com", PASSWORD).await.status,
        201
    );
    let old = before.login("bob@example.com", PASSWORD).await;
    assert_eq!(old.status, 200, "{old:?}");
    let token = enrolment_token(&after, "bob@example.com").await;
    let shown = after
        .post("/api/v1/login/mfa/enrol", json!({"mfa_token": token}))
        .await;
    assert_eq!(shown.status, 200, "{shown:?}");
    let secret = shown.body["secret"].as_str().unwrap();
    break_recovery_codes(&pool).await;
    let failed = after
        .post(
            "/api/v1/login/mfa/enrol/confirm",
            json!({"mfa_token": token, "code": code_on(&clock, secret, 0)}),
        )
        .await;
    assert_eq!(failed.status, 503, "{failed:?}");
    assert_eq!(failed.session_cookie(), None);
    mend_recovery_codes(&pool).await;
    assert_eq!(before.get("/api/v1/me", &bearer(&old)).await.status, 401);
    let stale = before
        .refresh(old.body["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(stale.status, 400, "{stale:?}");
}

// ---- Login with the second factor -------------------------------------------------------

/// A registered user with TOTP enrolled on a server with a stopped clock; the secret and
/// codes. The clock is moved one step on, so the next code is not the enrolment's.
pub(crate) async fn enrolled_user(server: &TestServer, clock: &Clock, email: &str) -> Enrolled {
    assert_eq!(server.register(email, PASSWORD).await.status, 201);
    let login = server.login(email, PASSWORD).await;
    let enrolled = enrol(server, &bearer(&login), clock).await;
    clock.advance(std::time::Duration::from_secs(30));
    enrolled
}

/// The `mfa_token` of a password login that must answer `mfa_required`.
pub(crate) async fn mfa_token(server: &TestServer, email: &str) -> String {
    let login = server.login(email, PASSWORD).await;
    assert_eq!(login.status, 200, "{login:?}");
    assert_eq!(login.body["mfa_required"], true, "{login:?}");
    login.body["mfa_token"].as_str().unwrap().to_owned()
}

pub(crate) async fn second_step(server: &TestServer, body: Value) -> Answer {
    server.post("/api/v1/login/mfa", body).await
}

/// The claims of a JWT, unverified (the server's own tests check signatures elsewhere).
pub(crate) fn claims(jwt: &str) -> Value {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// The audit records of `kind`.
pub(crate) async fn audited(server: &TestServer, kind: &str) -> Vec<Value> {
    let audit = server.admin_call(Method::GET, "/admin/v1/audit").await;
    let text = match audit.body {
        Value::String(text) => text,
        one => format!("{one}\n"),
    };
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["type"] == kind)
        .collect()
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_right_password_of_a_totp_account_answers_mfa_required_and_issues_nothing(pool: PgPool) {
    let (server, clock) = stopped(pool).await;
    enrolled_user(&server, &clock, "alice@example.com").await;
    let login = server.login("alice@example.com", PASSWORD).await;
    assert_eq!(login.status, 200, "{login:?}");
    assert_eq!(login.body["mfa_required"], true);
    assert!(login.body["mfa_token"].as_str().unwrap().len() >= 32);
    let fields: Vec<&String> = login.body.as_object().unwrap().keys().collect();
    assert_eq!(
        fields,
        ["mfa_required", "mfa_token"],
        "no tokens: {login:?}"
    );
    assert_eq!(login.header("set-cookie"), None, "no cookie");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_totp_code_completes_the_login_with_session_and_tokens_and_amr_pwd_otp(pool: PgPool) {
    let (server, clock) = stopped(pool).await;
    let alice = enrolled_user(&server, &clock, "alice@example.com").await;
    let token = mfa_token(&server, "alice@example.com").await;
    let done = second_step(
        &server,
        json!({"mfa_token": token, "code": code_on(&clock, &alice.secret, 0)}),
    )
    .await;
    assert_eq!(done.status, 200, "{done:?}");
    assert!(done.session_cookie().is_some(), "{done:?}");
    assert_eq!(done.body["token_type"], "Bearer");
    assert_eq!(server.get("/api/v1/me", &bearer(&done)).await.status, 200);
    assert_eq!(
        claims(done.body["access_token"].as_str().unwrap())["amr"],
        json!(["pwd", "otp"])
    );
    let refreshed = server
        .refresh(done.body["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(refreshed.status, 200, "{refreshed:?}");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn an_mfa_token_is_single_use(pool: PgPool) {
    let (server, clock) = stopped(pool).await;
    let alice = enrolled_user(&server, &clock, "alice@example.com").await;
    let token = mfa_token(&server, "alice@example.com").await;
    let first = second_step(
        &server,
        json!({"mfa_token": token, "code": code_on(&clock, &alice.secret, 0)}),
    )
    .await;
    assert_eq!(first.status, 200, "{first:?}");
    let again = second_step(
        &server,
        json!({"mfa_token": token, "code": code_on(&clock, &alice.secret, 1)}),
    )
    .await;
    assert_eq!((again.status, again.code()), (401, "invalid_totp"));
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_wrong_code_is_invalid_totp_and_the_right_one_still_completes(pool: PgPool) {
    let (server, clock) = stopped(pool).await;
    let alice = enrolled_user(&server, &clock, "alice@example.com").await;
    let token = mfa_token(&server, "alice@example.com").await;
    let right = code_on(&clock, &alice.secret, 0);
    let wrong = format!("{:06}", (right.parse::<u32>().unwrap() + 1) % 1_000_000);
    let refused = second_step(&server, json!({"mfa_token": token, "code": wrong})).await;
    assert_eq!((refused.status, refused.code()), (401, "invalid_totp"));
    assert!(refused.header("www-authenticate").is_some());
    assert_eq!(refused.header("set-cookie"), None);
    let done = second_step(&server, json!({"mfa_token": token, "code": right})).await;
    assert_eq!(done.status, 200, "{done:?}");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_code_already_used_is_refused_as_a_replay(pool: PgPool) {
    let (server, clock) = stopped(pool).await;
    let alice = enrolled_user(&server, &clock, "alice@example.com").await;
    let code = code_on(&clock, &alice.secret, 0);
    let first = mfa_token(&server, "alice@example.com").await;
    let used = second_step(&server, json!({"mfa_token": first, "code": code})).await;
    assert_eq!(used.status, 200, "{used:?}");
    let second = mfa_token(&server, "alice@example.com").await;
    let replayed = second_step(&server, json!({"mfa_token": second, "code": code})).await;
    assert_eq!((replayed.status, replayed.code()), (401, "invalid_totp"));
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn the_fifth_wrong_code_ends_the_pending_login(pool: PgPool) {
    let clock = stopped_clock();
    let server = start(
        pool,
        Options {
            clock: clock.clone(),
            // The lockout out of the way: this is about the token's own count.
            ..Options::spec(|s| s.lockout.max_failures = 100)
        },
    )
    .await;
    let alice = enrolled_user(&server, &clock, "alice@example.com").await;
    let token = mfa_token(&server, "alice@example.com").await;
    let right = code_on(&clock, &alice.secret, 0);
    let wrong = format!("{:06}", (right.parse::<u32>().unwrap() + 7) % 1_000_000);
    for _ in 0..5 {
        let refused = second_step(&server, json!({"mfa_token": token, "code": wrong})).await;
        assert_eq!(refused.code(), "invalid_totp", "{refused:?}");
    }
    let ended = second_step(&server, json!({"mfa_token": token, "code": right})).await;
    assert_eq!((ended.status, ended.code()), (401, "invalid_totp"));
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn an_unknown_mfa_token_is_invalid_totp(pool: PgPool) {
    let (server, clock) = stopped(pool).await;
    let alice = enrolled_user(&server, &clock, "alice@example.com").await;
    let refused = second_step(
        &server,
        json!({"mfa_token": "not-a-token", "code": code_on(&clock, &alice.secret, 0)}),
    )
    .await;
    assert_eq!((refused.status, refused.code()), (401, "invalid_totp"));
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn neither_or_both_factors_are_a_validation_error(pool: PgPool) {
    let (server, clock) = stopped(pool).await;
    let alice = enrolled_user(&server, &clock, "alice@example.com").await;
    let token = mfa_token(&server, "alice@example.com").await;
    let neither = second_step(&server, json!({"mfa_token": token})).await;
    assert_eq!(neither.status, 400, "{neither:?}");
    assert_eq!(neither.violation_codes(), ["one_factor_required"]);
    let both = second_step(
        &server,
        json!({"mfa_token": token, "code": code_on(&clock, &alice.secret, 0),
               "recovery_code": alice.recovery_codes[0]}),
    )
    .await;
    assert_eq!(both.status, 400, "{both:?}");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_recovery_code_completes_a_login_once_and_is_audited_told_and_counted(pool: PgPool) {
    let (server, clock) = stopped(pool).await;
    let alice = enrolled_user(&server, &clock, "alice@example.com").await;
    let code = &alice.recovery_codes[3];
    let token = mfa_token(&server, "alice@example.com").await;
    let done = second_step(&server, json!({"mfa_token": token, "recovery_code": code})).await;
    assert_eq!(done.status, 200, "{done:?}");
    assert_eq!(
        mfa_of(&server, &bearer(&done)).await,
        json!({"totp": true, "recovery_codes_left": 9})
    );
    let token = mfa_token(&server, "alice@example.com").await;
    let spent = second_step(&server, json!({"mfa_token": token, "recovery_code": code})).await;
    assert_eq!((spent.status, spent.code()), (401, "invalid_totp"));

    let used = audited(&server, "recovery_code_used").await;
    assert_eq!(used.len(), 1, "{used:?}");
    let mails = server.mails_settled(2).await;
    assert!(
        mails.iter().any(
            |m| m.contains("Subject: A recovery code was used to sign in")
                && m.contains("9 unused")
        ),
        "{mails:?}"
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_password_reset_between_the_steps_ends_the_pending_login(pool: PgPool) {
    let (server, clock) = stopped(pool).await;
    let alice = enrolled_user(&server, &clock, "alice@example.com").await;
    let token = mfa_token(&server, "alice@example.com").await;
    assert_eq!(server.request_reset("alice@example.com").await.status, 202);
    let reset = server.mailed_code("Reset code:").await;
    assert_eq!(
        server.confirm_reset(&reset, OTHER_PASSWORD).await.status,
        204
    );
    let stale = second_step(
        &server,
        json!({"mfa_token": token, "code": code_on(&clock, &alice.secret, 0)}),
    )
    .await;
    assert_eq!((stale.status, stale.code()), (401, "invalid_totp"));
}

/// A code of `right`'s length that is not it.
fn wrong_for(right: &str, by: u32) -> String {
    format!("{:06}", (right.parse::<u32>().unwrap() + by) % 1_000_000)
}

/// `n` wrong codes on the pending login of `token`, each answered `invalid_totp`.
async fn wrong_codes(server: &TestServer, token: &str, wrong: &str, n: usize) {
    for i in 0..n {
        let refused = second_step(server, json!({"mfa_token": token, "code": wrong})).await;
        assert_eq!(
            (refused.status, refused.code()),
            (401, "invalid_totp"),
            "wrong code {i}: {refused:?}"
        );
    }
}

/// The lockout's refusal, as the password lockout answers it under the realm's defaults
/// (a first lock of one minute on a stopped clock).
fn assert_account_locked(answer: &Answer) {
    assert_eq!(
        (answer.status, answer.code()),
        (429, "account_locked"),
        "{answer:?}"
    );
    assert_eq!(answer.header("retry-after"), Some("60"), "{answer:?}");
    assert!(answer.header("ratelimit-policy").is_some(), "{answer:?}");
}

/// Resets `email`'s password to `new_password` through the mailed code.
async fn reset_password(server: &TestServer, email: &str, new_password: &str) {
    assert_eq!(server.request_reset(email).await.status, 202);
    let reset = server.mailed_code("Reset code:").await;
    assert_eq!(server.confirm_reset(&reset, new_password).await.status, 204);
}

/// The `mfa_token` of a login of `email` with `password`.
async fn mfa_token_with(server: &TestServer, email: &str, password: &str) -> String {
    let login = server.login(email, password).await;
    assert_eq!(login.status, 200, "{login:?}");
    assert_eq!(login.body["mfa_required"], true, "{login:?}");
    login.body["mfa_token"].as_str().unwrap().to_owned()
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn wrong_second_factors_lock_the_second_factor_of_the_account(pool: PgPool) {
    let (server, clock) = stopped(pool).await;
    let alice = enrolled_user(&server, &clock, "alice@example.com").await;
    let right = code_on(&clock, &alice.secret, 0);
    // The realm's default: five wrong codes lock, whatever address they come from.
    let token = mfa_token(&server, "alice@example.com").await;
    wrong_codes(&server, &token, &wrong_for(&right, 3), 5).await;
    // The password alone still passes (the lock is the second factor's), the code does not.
    let token = mfa_token(&server, "alice@example.com").await;
    let locked = second_step(&server, json!({"mfa_token": token, "code": right})).await;
    assert_account_locked(&locked);
    assert_eq!(audited(&server, "mfa_failed").await.len(), 5);
    assert_eq!(audited(&server, "lockout").await.len(), 1);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_password_reset_between_wrong_codes_does_not_restore_the_attempt_budget(pool: PgPool) {
    let (server, clock) = stopped(pool).await;
    let alice = enrolled_user(&server, &clock, "alice@example.com").await;
    let right = code_on(&clock, &alice.secret, 0);
    let wrong = wrong_for(&right, 3);
    let token = mfa_token(&server, "alice@example.com").await;
    wrong_codes(&server, &token, &wrong, 3).await;
    // Whoever controls the mailbox resets the password; the codes they guessed stay counted.
    reset_password(&server, "alice@example.com", OTHER_PASSWORD).await;
    let token = mfa_token_with(&server, "alice@example.com", OTHER_PASSWORD).await;
    wrong_codes(&server, &token, &wrong, 2).await;
    let locked = second_step(&server, json!({"mfa_token": token, "code": right})).await;
    assert_account_locked(&locked);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_locked_second_factor_stays_locked_after_a_password_reset(pool: PgPool) {
    let (server, clock) = stopped(pool).await;
    let alice = enrolled_user(&server, &clock, "alice@example.com").await;
    let right = code_on(&clock, &alice.secret, 0);
    let token = mfa_token(&server, "alice@example.com").await;
    wrong_codes(&server, &token, &wrong_for(&right, 3), 5).await;
    reset_password(&server, "alice@example.com", OTHER_PASSWORD).await;
    let token = mfa_token_with(&server, "alice@example.com", OTHER_PASSWORD).await;
    let locked = second_step(&server, json!({"mfa_token": token, "code": right})).await;
    assert_account_locked(&locked);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_right_second_factor_clears_the_count_of_wrong_ones(pool: PgPool) {
    let (server, clock) = stopped(pool).await;
    let alice = enrolled_user(&server, &clock, "alice@example.com").await;
    for _ in 0..2 {
        let right = code_on(&clock, &alice.secret, 0);
        let token = mfa_token(&server, "alice@example.com").await;
        // Four wrong codes twice: eight in the window, none of them after the right one.
        wrong_codes(&server, &token, &wrong_for(&right, 3), 4).await;
        let done = second_step(&server, json!({"mfa_token": token, "code": right})).await;
        assert_eq!(done.status, 200, "{done:?}");
        clock.advance(std::time::Duration::from_secs(30));
    }
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn an_admin_unlock_lifts_a_locked_second_factor(pool: PgPool) {
    let (server, clock) = stopped(pool).await;
    let alice = enrolled_user(&server, &clock, "alice@example.com").await;
    let right = code_on(&clock, &alice.secret, 0);
    let token = mfa_token(&server, "alice@example.com").await;
    wrong_codes(&server, &token, &wrong_for(&right, 3), 5).await;
    let found = server
        .admin_call(Method::GET, "/admin/v1/users?email=alice@example.com")
        .await;
    let id = found.body["user_id"].as_str().unwrap().to_owned();
    let unlocked = server
        .admin_call(Method::POST, &format!("/admin/v1/users/{id}/unlock"))
        .await;
    assert_eq!(unlocked.status, 204, "{unlocked:?}");
    let token = mfa_token(&server, "alice@example.com").await;
    let done = second_step(&server, json!({"mfa_token": token, "code": right})).await;
    assert_eq!(done.status, 200, "{done:?}");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn the_second_factor_has_a_per_account_rate_limit_across_tokens(pool: PgPool) {
    let clock = stopped_clock();
    let server = start(
        pool,
        Options {
            rate_limiting: true,
            clock: clock.clone(),
            // Lockout out of the way: this is about the rate limit alone.
            ..Options::spec(|s| s.lockout.max_failures = 100)
        },
    )
    .await;
    let alice = enrolled_user(&server, &clock, "alice@example.com").await;
    let right = code_on(&clock, &alice.secret, 0);
    let wrong = format!("{:06}", (right.parse::<u32>().unwrap() + 5) % 1_000_000);
    // Default `Mfa` per user: 10 a minute, burst 4. A fresh token every few tries.
    let mut answers = Vec::new();
    for _ in 0..3 {
        let token = mfa_token(&server, "alice@example.com").await;
        for _ in 0..3 {
            let answer = second_step(&server, json!({"mfa_token": token, "code": wrong})).await;
            answers.push((answer.status, answer.code().to_owned()));
        }
    }
    assert!(
        answers.contains(&(429, "rate_limited".to_owned())),
        "{answers:?}"
    );
    let first_refusal = answers.iter().position(|a| a.0 == 429).unwrap();
    assert!(
        first_refusal >= 4,
        "the burst is allowed first: {answers:?}"
    );
    let token = mfa_token(&server, "alice@example.com").await;
    let still = second_step(&server, json!({"mfa_token": token, "code": right})).await;
    assert_eq!((still.status, still.code()), (429, "rate_limited"));
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_store_failure_at_the_second_step_answers_503_and_no_session(pool: PgPool) {
    let (server, clock) = stopped(pool.clone()).await;
    let alice = enrolled_user(&server, &clock, "alice@example.com").await;
    let token = mfa_token(&server, "alice@example.com").await;
    sqlx::query("ALTER TABLE mfa_totp RENAME TO mfa_totp_gone")
        .execute(&pool)
        .await
        .unwrap();
    let failed = second_step(
        &server,
        json!({"mfa_token": token, "code": code_on(&clock, &alice.secret, 0)}),
    )
    .await;
    assert_eq!(failed.status, 503, "{failed:?}");
    assert_eq!(failed.header("set-cookie"), None);
    assert!(failed.body.get("access_token").is_none());
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_store_failure_at_the_password_step_answers_503_and_no_session(pool: PgPool) {
    let (server, clock) = stopped(pool.clone()).await;
    enrolled_user(&server, &clock, "alice@example.com").await;
    sqlx::query("ALTER TABLE mfa_totp RENAME TO mfa_totp_gone")
        .execute(&pool)
        .await
        .unwrap();
    let failed = server.login("alice@example.com", PASSWORD).await;
    assert_eq!(failed.status, 503, "{failed:?}");
    assert_eq!(failed.header("set-cookie"), None);
    assert!(failed.body.get("access_token").is_none());
}

// ---- A realm that requires TOTP ----------------------------------------------------------

/// A server whose realm requires TOTP, on a stopped clock.
async fn requiring(pool: PgPool) -> (TestServer, Clock) {
    let clock = stopped_clock();
    let server = start(
        pool,
        Options {
            clock: clock.clone(),
            ..Options::spec(|s| {
                s.mfa.totp.enabled = true;
                s.mfa.totp.required = true;
            })
        },
    )
    .await;
    (server, clock)
}

/// The `mfa_token` of a login that must answer `mfa_enrolment_required`.
async fn enrolment_token(server: &TestServer, email: &str) -> String {
    let login = server.login(email, PASSWORD).await;
    assert_eq!(login.status, 200, "{login:?}");
    assert_eq!(login.body["mfa_enrolment_required"], true, "{login:?}");
    login.body["mfa_token"].as_str().unwrap().to_owned()
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_realm_requiring_totp_answers_enrolment_required_and_issues_nothing(pool: PgPool) {
    let (server, _) = requiring(pool).await;
    assert_eq!(
        server.register("bob@example.com", PASSWORD).await.status,
        201
    );
    let login = server.login("bob@example.com", PASSWORD).await;
    assert_eq!(login.status, 200, "{login:?}");
    let fields: Vec<&String> = login.body.as_object().unwrap().keys().collect();
    assert_eq!(fields, ["mfa_enrolment_required", "mfa_token"], "{login:?}");
    assert_eq!(login.header("set-cookie"), None);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn enrolling_at_login_completes_it_with_recovery_codes_and_the_next_login_asks_totp(
    pool: PgPool,
) {
    let (server, clock) = requiring(pool).await;
    assert_eq!(
        server.register("bob@example.com", PASSWORD).await.status,
        201
    );
    let token = enrolment_token(&server, "bob@example.com").await;
    let shown = server
        .post("/api/v1/login/mfa/enrol", json!({"mfa_token": token}))
        .await;
    assert_eq!(shown.status, 200, "{shown:?}");
    let secret = shown.body["secret"].as_str().unwrap();
    assert!(
        shown.body["otpauth_uri"]
            .as_str()
            .unwrap()
            .contains(&format!("secret={secret}"))
    );
    let done = server
        .post(
            "/api/v1/login/mfa/enrol/confirm",
            json!({"mfa_token": token, "code": code_on(&clock, secret, 0)}),
        )
        .await;
    assert_eq!(done.status, 200, "{done:?}");
    assert!(done.session_cookie().is_some());
    assert_eq!(done.body["recovery_codes"].as_array().unwrap().len(), 10);
    assert_eq!(
        claims(done.body["access_token"].as_str().unwrap())["amr"],
        json!(["pwd", "otp"])
    );
    assert_eq!(
        mfa_of(&server, &bearer(&done)).await,
        json!({"totp": true, "recovery_codes_left": 10})
    );
    clock.advance(std::time::Duration::from_secs(30));
    mfa_token(&server, "bob@example.com").await;
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn an_enrolment_token_opens_no_other_route(pool: PgPool) {
    let (server, clock) = requiring(pool).await;
    assert_eq!(
        server.register("bob@example.com", PASSWORD).await.status,
        201
    );
    let token = enrolment_token(&server, "bob@example.com").await;
    let unconfirmed = server
        .post(
            "/api/v1/login/mfa/enrol/confirm",
            json!({"mfa_token": token, "code": "123456"}),
        )
        .await;
    assert_eq!(
        (unconfirmed.status, unconfirmed.code()),
        (409, "no_pending_enrolment")
    );
    let shown = server
        .post("/api/v1/login/mfa/enrol", json!({"mfa_token": token}))
        .await;
    let secret = shown.body["secret"].as_str().unwrap();
    let as_login = second_step(
        &server,
        json!({"mfa_token": token, "code": code_on(&clock, secret, 0)}),
    )
    .await;
    assert_eq!((as_login.status, as_login.code()), (401, "invalid_totp"));
    assert_eq!(as_login.header("set-cookie"), None);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_wrong_first_code_at_login_enrolment_is_invalid_totp(pool: PgPool) {
    let (server, clock) = requiring(pool).await;
    assert_eq!(
        server.register("bob@example.com", PASSWORD).await.status,
        201
    );
    let token = enrolment_token(&server, "bob@example.com").await;
    let shown = server
        .post("/api/v1/login/mfa/enrol", json!({"mfa_token": token}))
        .await;
    let right = code_on(&clock, shown.body["secret"].as_str().unwrap(), 0);
    let wrong = format!("{:06}", (right.parse::<u32>().unwrap() + 1) % 1_000_000);
    let refused = server
        .post(
            "/api/v1/login/mfa/enrol/confirm",
            json!({"mfa_token": token, "code": wrong}),
        )
        .await;
    assert_eq!((refused.status, refused.code()), (401, "invalid_totp"));
    assert_eq!(refused.header("set-cookie"), None);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn wrong_first_codes_at_login_enrolment_lock_the_second_factor_past_a_reset(pool: PgPool) {
    let (server, clock) = requiring(pool).await;
    assert_eq!(
        server.register("bob@example.com", PASSWORD).await.status,
        201
    );
    let token = enrolment_token(&server, "bob@example.com").await;
    let shown = server
        .post("/api/v1/login/mfa/enrol", json!({"mfa_token": token}))
        .await;
    let wrong = wrong_for(
        &code_on(&clock, shown.body["secret"].as_str().unwrap(), 0),
        1,
    );
    for i in 0..5 {
        let refused = server
            .post(
                "/api/v1/login/mfa/enrol/confirm",
                json!({"mfa_token": token, "code": wrong}),
            )
            .await;
        assert_eq!(
            refused.code(),
            "invalid_totp",
            "wrong code {i}: {refused:?}"
        );
    }
    reset_password(&server, "bob@example.com", OTHER_PASSWORD).await;
    let login = server.login("bob@example.com", OTHER_PASSWORD).await;
    let token = login.body["mfa_token"].as_str().unwrap().to_owned();
    let shown = server
        .post("/api/v1/login/mfa/enrol", json!({"mfa_token": token}))
        .await;
    assert_eq!(shown.status, 200, "{shown:?}");
    let right = code_on(&clock, shown.body["secret"].as_str().unwrap(), 0);
    let locked = server
        .post(
            "/api/v1/login/mfa/enrol/confirm",
            json!({"mfa_token": token, "code": right}),
        )
        .await;
    assert_account_locked(&locked);
}

// ---- Removing TOTP and regenerating recovery codes ---------------------------------------

/// A user with TOTP on, signed in (through the second factor); the enrolment and the login.
async fn signed_in_with_totp(
    server: &TestServer,
    clock: &Clock,
    email: &str,
) -> (Enrolled, Answer) {
    let enrolled = enrolled_user(server, clock, email).await;
    let token = mfa_token(server, email).await;
    let login = second_step(
        server,
        json!({"mfa_token": token, "code": code_on(clock, &enrolled.secret, 0)}),
    )
    .await;
    assert_eq!(login.status, 200, "{login:?}");
    clock.advance(std::time::Duration::from_secs(30));
    (enrolled, login)
}

async fn delete_totp(server: &TestServer, cred: &Cred, body: Value) -> Answer {
    server
        .call(Method::DELETE, "/api/v1/me/mfa/totp", Some(body), cred)
        .await
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn removing_totp_needs_the_password_and_a_fresh_code(pool: PgPool) {
    let (server, clock) = stopped(pool).await;
    let (alice, login) = signed_in_with_totp(&server, &clock, "alice@example.com").await;
    let cred = bearer(&login);
    let code = code_on(&clock, &alice.secret, 0);
    let wrong_password = delete_totp(
        &server,
        &cred,
        json!({"password": OTHER_PASSWORD, "code": code}),
    )
    .await;
    assert_eq!(
        (wrong_password.status, wrong_password.code()),
        (401, "invalid_credentials")
    );
    let wrong = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);
    let wrong_code =
        delete_totp(&server, &cred, json!({"password": PASSWORD, "code": wrong})).await;
    assert_eq!(
        (wrong_code.status, wrong_code.code()),
        (401, "invalid_totp")
    );
    assert_eq!(mfa_of(&server, &cred).await["totp"], true);

    let removed = delete_totp(&server, &cred, json!({"password": PASSWORD, "code": code})).await;
    assert_eq!(removed.status, 204, "{removed:?}");
    assert_eq!(
        mfa_of(&server, &cred).await,
        json!({"totp": false, "recovery_codes_left": 0})
    );
    let plain = server.login("alice@example.com", PASSWORD).await;
    assert!(plain.body["access_token"].is_string(), "{plain:?}");
    assert_eq!(audited(&server, "mfa_removed").await.len(), 1);
    let mails = server.mails_settled(2).await;
    assert!(
        mails
            .iter()
            .any(|m| m.contains("A second factor was removed from")),
        "{mails:?}"
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn wrong_codes_on_removal_lock_further_removal_and_mfa_logins(pool: PgPool) {
    let (server, clock) = stopped(pool).await;
    let (alice, login) = signed_in_with_totp(&server, &clock, "alice@example.com").await;
    let cred = bearer(&login);
    let right = code_on(&clock, &alice.secret, 0);
    let wrong = wrong_for(&right, 1);
    // Each try re-checks the right password: that must not lift the second factor's count.
    for i in 0..5 {
        let refused =
            delete_totp(&server, &cred, json!({"password": PASSWORD, "code": wrong})).await;
        assert_eq!(
            (refused.status, refused.code()),
            (401, "invalid_totp"),
            "wrong code {i}: {refused:?}"
        );
    }
    let locked = delete_totp(&server, &cred, json!({"password": PASSWORD, "code": right})).await;
    assert_account_locked(&locked);
    assert_eq!(mfa_of(&server, &cred).await["totp"], true);
    let regenerate = post(
        &server,
        "/api/v1/me/mfa/recovery-codes",
        json!({"password": PASSWORD, "code": alice.recovery_codes[0]}),
        &cred,
    )
    .await;
    assert_account_locked(&regenerate);
    let token = mfa_token(&server, "alice@example.com").await;
    let at_login = second_step(&server, json!({"mfa_token": token, "code": right})).await;
    assert_account_locked(&at_login);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_recovery_code_is_a_fresh_second_factor_for_removing_totp(pool: PgPool) {
    let (server, clock) = stopped(pool).await;
    let (alice, login) = signed_in_with_totp(&server, &clock, "alice@example.com").await;
    let removed = delete_totp(
        &server,
        &bearer(&login),
        json!({"password": PASSWORD, "code": alice.recovery_codes[0]}),
    )
    .await;
    assert_eq!(removed.status, 204, "{removed:?}");
    assert_eq!(mfa_of(&server, &bearer(&login)).await["totp"], false);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn the_code_that_signed_in_cannot_be_used_again_to_remove_totp(pool: PgPool) {
    let (server, clock) = stopped(pool).await;
    let alice = enrolled_user(&server, &clock, "alice@example.com").await;
    let code = code_on(&clock, &alice.secret, 0);
    let token = mfa_token(&server, "alice@example.com").await;
    let login = second_step(&server, json!({"mfa_token": token, "code": code})).await;
    assert_eq!(login.status, 200, "{login:?}");
    let replayed = delete_totp(
        &server,
        &bearer(&login),
        json!({"password": PASSWORD, "code": code}),
    )
    .await;
    assert_eq!((replayed.status, replayed.code()), (401, "invalid_totp"));
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn regenerating_recovery_codes_needs_a_fresh_code_and_voids_the_old_set(pool: PgPool) {
    let (server, clock) = stopped(pool).await;
    let (alice, login) = signed_in_with_totp(&server, &clock, "alice@example.com").await;
    let cred = bearer(&login);
    let password_only = post(
        &server,
        "/api/v1/me/mfa/recovery-codes",
        json!({"password": PASSWORD}),
        &cred,
    )
    .await;
    assert_eq!(
        password_only.status, 400,
        "a second factor is needed: {password_only:?}"
    );
    let fresh = post(
        &server,
        "/api/v1/me/mfa/recovery-codes",
        json!({"password": PASSWORD, "code": code_on(&clock, &alice.secret, 0)}),
        &cred,
    )
    .await;
    assert_eq!(fresh.status, 200, "{fresh:?}");
    let new_codes: Vec<String> = fresh.body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(new_codes.len(), 10);
    assert!(new_codes.iter().all(|c| !alice.recovery_codes.contains(c)));

    let token = mfa_token(&server, "alice@example.com").await;
    let old = second_step(
        &server,
        json!({"mfa_token": token, "recovery_code": alice.recovery_codes[0]}),
    )
    .await;
    assert_eq!(
        (old.status, old.code()),
        (401, "invalid_totp"),
        "the old set is void"
    );
    let new = second_step(
        &server,
        json!({"mfa_token": token, "recovery_code": new_codes[0]}),
    )
    .await;
    assert_eq!(new.status, 200, "{new:?}");
    assert_eq!(
        audited(&server, "recovery_codes_regenerated").await.len(),
        1
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn regenerating_recovery_codes_ends_the_other_sessions(pool: PgPool) {
    let (server, clock) = stopped(pool).await;
    let (alice, here) = signed_in_with_totp(&server, &clock, "alice@example.com").await;
    let token = mfa_token(&server, "alice@example.com").await;
    let elsewhere = second_step(
        &server,
        json!({"mfa_token": token, "recovery_code": alice.recovery_codes[1]}),
    )
    .await;
    assert_eq!(elsewhere.status, 200, "{elsewhere:?}");
    let fresh = post(
        &server,
        "/api/v1/me/mfa/recovery-codes",
        json!({"password": PASSWORD, "code": code_on(&clock, &alice.secret, 0)}),
        &bearer(&here),
    )
    .await;
    assert_eq!(fresh.status, 200, "{fresh:?}");
    assert_eq!(
        server.get("/api/v1/me", &bearer(&elsewhere)).await.status,
        401
    );
    assert_eq!(server.get("/api/v1/me", &bearer(&here)).await.status, 200);
}
