//! Registration, email verification and password reset.

use serde_json::json;
use sqlx::PgPool;

use crate::support::*;

fn verifying() -> Options {
    Options::spec(|s| s.email_verification.required = true)
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn registration_without_verification_creates_the_account(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let answer = server.register("alice@example.com", PASSWORD).await;
    assert_eq!(answer.status, 201, "{answer:?}");
    assert!(
        answer.body["user_id"]
            .as_str()
            .unwrap()
            .parse::<uuid::Uuid>()
            .is_ok()
    );
    assert_eq!(
        server.login("alice@example.com", PASSWORD).await.status,
        200
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_taken_email_is_409_without_verification(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    server.register("alice@example.com", PASSWORD).await;
    let again = server.register("ALICE@example.com", OTHER_PASSWORD).await;
    assert_eq!((again.status, again.code()), (409, "email_taken"));
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn with_verification_the_answer_hides_whether_the_email_is_taken(pool: PgPool) {
    let server = start(pool, verifying()).await;
    let first = server.register("alice@example.com", PASSWORD).await;
    let second = server.register("alice@example.com", OTHER_PASSWORD).await;
    assert_eq!(
        (first.status, &first.body),
        (202, &json!({"status": "verification_pending"}))
    );
    assert_eq!((second.status, &second.body), (first.status, &first.body));
    let mails = server.mails_settled(2).await;
    assert_eq!(mails.len(), 2);
    assert!(
        mails
            .iter()
            .any(|m| m.contains("Confirm your email address")),
        "{mails:?}"
    );
    assert!(
        mails.iter().any(|m| m.contains("Registration attempt")),
        "the owner is told instead: {mails:?}"
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn login_waits_for_verification_and_the_token_works_once(pool: PgPool) {
    let server = start(pool, verifying()).await;
    server.register("alice@example.com", PASSWORD).await;
    let early = server.login("alice@example.com", PASSWORD).await;
    assert_eq!((early.status, early.code()), (403, "email_not_verified"));
    for _ in 0..6 {
        let again = server.login("alice@example.com", PASSWORD).await;
        assert_eq!(
            again.code(),
            "email_not_verified",
            "the right password never counts towards a lockout"
        );
    }
    let token = server.mailed_code("Verification code:").await;
    let verified = server
        .post("/api/v1/verify-email", json!({"token": token}))
        .await;
    assert_eq!(verified.status, 200, "{verified:?}");
    assert_eq!(
        server.login("alice@example.com", PASSWORD).await.status,
        200
    );
    let reused = server
        .post("/api/v1/verify-email", json!({"token": token}))
        .await;
    assert_eq!((reused.status, reused.code()), (400, "invalid_token"));
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_verification_token_expires_after_24_hours(pool: PgPool) {
    let clock = stopped_clock();
    let server = start(
        pool,
        Options {
            clock: clock.clone(),
            ..verifying()
        },
    )
    .await;
    server.register("alice@example.com", PASSWORD).await;
    let token = server.mailed_code("Verification code:").await;
    clock.advance(std::time::Duration::from_secs(24 * 3_600));
    let late = server
        .post("/api/v1/verify-email", json!({"token": token}))
        .await;
    assert_eq!((late.status, late.code()), (400, "invalid_token"));
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn every_password_rule_has_its_own_violation(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let cases = [
        ("Ab1!", "password_too_short"),
        (&"Ab1!xY".repeat(22)[..], "password_too_long"),
        (
            "tangerineorbitquietly",
            "password_missing_character_classes",
        ),
        ("Password1234!", "password_too_weak"),
    ];
    for (password, code) in cases {
        let answer = server.register("bob@example.com", password).await;
        assert_eq!(answer.status, 400, "{password}: {answer:?}");
        assert!(
            answer.violation_codes().contains(&code.to_owned()),
            "{password}: {answer:?}"
        );
        assert_eq!(
            answer.header("content-type"),
            Some("application/problem+json")
        );
        assert_eq!(answer.body["violations"][0]["field"], "password");
    }
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn registration_checks_email_policy_version_and_required_consents(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let answer = server
        .post("/api/v1/register", json!({"email": "not-an-email", "password": PASSWORD, "policy_version": "0", "consents": {"news": true, "tracking": true}}))
        .await;
    assert_eq!(answer.status, 400);
    let codes = answer.violation_codes();
    for code in [
        "invalid_email",
        "policy_version_mismatch",
        "consent_required",
        "unknown_purpose",
    ] {
        assert!(
            codes.contains(&code.to_owned()),
            "{code} missing in {codes:?}"
        );
    }
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn malformed_bodies_answer_in_the_problem_format(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let response = server
        .http
        .post(format!("{}/api/v1/register", server.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let answer = read(response).await;
    assert_eq!((answer.status, answer.code()), (400, "invalid_json"));
    let missing = server
        .post("/api/v1/register", json!({"email": "a@example.com"}))
        .await;
    assert_eq!((missing.status, missing.code()), (400, "invalid_body"));
    let text = server
        .http
        .post(format!("{}/api/v1/login", server.base))
        .body("x")
        .send()
        .await
        .unwrap();
    let text = read(text).await;
    assert_eq!((text.status, text.code()), (415, "unsupported_media_type"));
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn password_reset_answers_202_for_everyone_and_mails_only_owners(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    server.register("alice@example.com", PASSWORD).await;
    let unknown = server.request_reset("nobody@example.com").await;
    let known = server.request_reset("alice@example.com").await;
    assert_eq!((unknown.status, known.status), (202, 202));
    assert_eq!(unknown.body, known.body);
    server.mailed_code("Reset code:").await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(server.mails().len(), 1, "only the owner got a mail");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_reset_sets_the_password_once_and_ends_every_session(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let login = server.user("alice@example.com").await;
    server.request_reset("alice@example.com").await;
    let token = server.mailed_code("Reset code:").await;
    let weak = server.confirm_reset(&token, "short").await;
    assert_eq!(
        weak.status, 400,
        "a refused password leaves the token usable"
    );
    let done = server.confirm_reset(&token, OTHER_PASSWORD).await;
    assert_eq!(done.status, 204, "{done:?}");
    let again = server.confirm_reset(&token, OTHER_PASSWORD).await;
    assert_eq!((again.status, again.code()), (400, "invalid_token"));
    assert_eq!(
        server.get("/api/v1/me", &cookie(&login)).await.status,
        401,
        "old session ended"
    );
    assert_eq!(
        server.get("/api/v1/me", &bearer(&login)).await.status,
        401,
        "old access token ended"
    );
    assert_eq!(
        server
            .refresh(login.body["refresh_token"].as_str().unwrap())
            .await
            .status,
        400,
        "refresh token revoked"
    );
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
async fn a_reset_token_expires_after_30_minutes(pool: PgPool) {
    let clock = stopped_clock();
    let server = start(
        pool,
        Options {
            clock: clock.clone(),
            ..Options::default()
        },
    )
    .await;
    server.register("alice@example.com", PASSWORD).await;
    server.request_reset("alice@example.com").await;
    let token = server.mailed_code("Reset code:").await;
    clock.advance(minutes(30));
    let late = server.confirm_reset(&token, OTHER_PASSWORD).await;
    assert_eq!((late.status, late.code()), (400, "invalid_token"));
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn an_address_with_a_display_name_part_is_refused(pool: PgPool) {
    let server = start(pool, verifying()).await;
    for email in [
        "a<b@evil.com>",
        "Bob <bob@example.com>",
        "\"a\"@example.com",
    ] {
        let answer = server.register(email, PASSWORD).await;
        assert_eq!(
            (answer.status, answer.violation_codes()),
            (400, vec!["invalid_email".to_owned()]),
            "{email}"
        );
    }
    assert!(server.mails().is_empty(), "nobody was mailed");
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn every_mail_goes_to_the_address_that_was_verified(pool: PgPool) {
    let server = start(pool, verifying()).await;
    server.register("  Alice@Example.COM ", PASSWORD).await;
    let token = server.mailed_code("Verification code:").await;
    server
        .post("/api/v1/verify-email", json!({"token": token}))
        .await;
    server.request_reset("alice@example.com").await;
    server.mailed_code("Reset code:").await;
    let mails = server.mails_settled(2).await;
    assert_eq!(mails.len(), 2);
    for mail in mails {
        assert!(mail.contains("To: alice@example.com\r\n"), "{mail}");
    }
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_successful_reset_voids_every_other_reset_token(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    server.register("alice@example.com", PASSWORD).await;
    let mut tokens = Vec::new();
    for _ in 0..2 {
        server.request_reset("alice@example.com").await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while server.mails().len() == tokens.len() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        tokens.push(server.mailed_code("Reset code:").await);
    }
    assert_ne!(tokens[0], tokens[1]);
    let done = server.confirm_reset(&tokens[1], OTHER_PASSWORD).await;
    assert_eq!(done.status, 204, "{done:?}");
    let older = server
        .confirm_reset(&tokens[0], "Marigold-Harbor-31-Velvet")
        .await;
    assert_eq!((older.status, older.code()), (400, "invalid_token"));
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn a_password_change_voids_outstanding_reset_tokens(pool: PgPool) {
    let server = start(pool, Options::default()).await;
    let login = server.user("alice@example.com").await;
    server.request_reset("alice@example.com").await;
    let token = server.mailed_code("Reset code:").await;
    let changed = server
        .call(
            reqwest::Method::POST,
            "/api/v1/me/password",
            Some(json!({"current_password": PASSWORD, "new_password": OTHER_PASSWORD})),
            &cookie(&login),
        )
        .await;
    assert_eq!(changed.status, 204, "{changed:?}");
    let late = server
        .confirm_reset(&token, "Marigold-Harbor-31-Velvet")
        .await;
    assert_eq!((late.status, late.code()), (400, "invalid_token"));
}
