//! `retention run` against a real database: what each rule removes, the dry run, warnings.

use portcullis_authserver::mail::Mailer;
use portcullis_authserver::privacy::retention::Summary;
use portcullis_authserver::store::Postgres;
use portcullis_authserver::store::StoreError;
use portcullis_authserver::{startup, wiring};
use portcullis_crds::retention::{InactiveAccountAction, InactiveAccountRule, RetentionRules};
use portcullis_privacy::retention::RetentionLock;
use serde_json::json;
use sqlx::PgPool;
use time::Duration;

use crate::support::*;

/// The server's retention rules alone (no audit key: the privacy crate's rules are skipped),
/// under the realm's retention lock, as the CLI runs them.
async fn run(
    db: &Postgres,
    mailer: Option<&Mailer>,
    rules: &RetentionRules,
    now: time::OffsetDateTime,
    dry_run: bool,
) -> Result<Summary, StoreError> {
    let lock = RetentionLock::try_acquire(db.pool(), "test")
        .await
        .unwrap()
        .expect("the lock is free");
    let summary = portcullis_authserver::privacy::retention::run(
        db, &lock, None, mailer, rules, now, dry_run,
    )
    .await;
    lock.release().await.unwrap();
    summary
}

async fn age_user(pool: &PgPool, email: &str, days: i64, verified: bool) {
    let at = wiring::system_clock().now() - Duration::days(days);
    sqlx::query("UPDATE users SET created_at = $2, last_login_at = NULL, email_verified = $3 WHERE email = $1")
        .bind(email)
        .bind(at)
        .bind(verified)
        .execute(pool)
        .await
        .unwrap();
}

async fn count(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_as::<_, (i64,)>(sql)
        .fetch_one(pool)
        .await
        .unwrap()
        .0
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn each_rule_removes_only_what_is_past_its_cutoff_and_a_dry_run_only_counts(pool: PgPool) {
    let server = start(pool.clone(), Options::default()).await;
    for email in [
        "fresh@example.com",
        "unverified@example.com",
        "stale@example.com",
        "dormant@example.com",
    ] {
        server.register(email, PASSWORD).await;
    }
    // A used refresh token from long ago, and a withdrawn consent.
    let login = server.login("fresh@example.com", PASSWORD).await;
    server
        .refresh(login.body["refresh_token"].as_str().unwrap())
        .await;
    sqlx::query(
        "UPDATE refresh_tokens SET used_at = now() - interval '2 days' WHERE used_at IS NOT NULL",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("UPDATE consents SET granted = false, updated_at = now() - interval '100 days' WHERE purpose = 'account'")
        .execute(&pool)
        .await
        .unwrap();
    age_user(&pool, "unverified@example.com", 8, false).await;
    age_user(&pool, "stale@example.com", 731, true).await;
    age_user(&pool, "dormant@example.com", 705, true).await;

    let rules = RetentionRules {
        inactive_accounts: Some(InactiveAccountRule {
            action: InactiveAccountAction::Delete,
            ..InactiveAccountRule::default()
        }),
        ..RetentionRules::default()
    };
    let mail_dir = tempfile::tempdir().unwrap();
    let mailer = mailer(mail_dir.path());
    let db = Postgres::from_pool(pool.clone());
    let now = wiring::system_clock().now();

    let dry = run(&db, Some(&mailer), &rules, now, true).await.unwrap();
    let expected = json!({"expiredRefreshTokens": 1, "expiredRefreshFamilies": 0, "expiredOneTimeTokens": 0, "unverifiedAccounts": 1,
        "withdrawnConsents": 4, "inactiveAccountsWarned": 2, "inactiveAccounts": 0});
    assert_eq!(serde_json::to_value(&dry.counts).unwrap(), expected);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM users").await,
        4,
        "a dry run changes nothing"
    );
    assert_eq!(
        std::fs::read_dir(mail_dir.path()).unwrap().count(),
        0,
        "and mails nobody"
    );

    let real = run(&db, Some(&mailer), &rules, now, false).await.unwrap();
    assert_eq!(serde_json::to_value(&real.counts).unwrap(), expected);
    let emails: Vec<(String,)> = sqlx::query_as("SELECT email FROM users ORDER BY email")
        .fetch_all(&pool)
        .await
        .unwrap();
    let emails: Vec<&str> = emails.iter().map(|(e,)| e.as_str()).collect();
    assert_eq!(
        emails,
        [
            "dormant@example.com",
            "fresh@example.com",
            "stale@example.com"
        ],
        "inactive accounts are warned first, acted on a warning period later"
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM refresh_tokens").await,
        1,
        "the unused successor stays"
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM consents WHERE NOT granted").await,
        0
    );
    let warnings: Vec<String> = std::fs::read_dir(mail_dir.path())
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(warnings.len(), 2);
    assert!(
        warnings
            .iter()
            .all(|w| w.contains("deleted with its data") && w.contains("in 30 day(s)")),
        "{warnings:?}"
    );

    let again = run(&db, Some(&mailer), &rules, now, false).await.unwrap();
    assert_eq!(
        again.counts["inactiveAccountsWarned"], 0,
        "an account is warned once"
    );
    assert!(again.skipped.contains_key("auditLogs"));
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn inactive_accounts_can_be_disabled_instead(pool: PgPool) {
    let server = start(pool.clone(), Options::default()).await;
    server.register("stale@example.com", PASSWORD).await;
    age_user(&pool, "stale@example.com", 800, true).await;
    let rules = inactive_rule(InactiveAccountAction::Disable);
    let mail_dir = tempfile::tempdir().unwrap();
    let mailer = mailer(mail_dir.path());
    let db = Postgres::from_pool(pool.clone());
    let now = wiring::system_clock().now();
    run(&db, Some(&mailer), &rules, now, false).await.unwrap();
    let summary = run(&db, Some(&mailer), &rules, now + Duration::days(30), false)
        .await
        .unwrap();
    assert_eq!(summary.counts["inactiveAccounts"], 1);
    let login = server.login("stale@example.com", PASSWORD).await;
    assert_eq!((login.status, login.code()), (403, "account_disabled"));
}

fn inactive_rule(action: InactiveAccountAction) -> RetentionRules {
    RetentionRules {
        inactive_accounts: Some(InactiveAccountRule {
            action,
            ..InactiveAccountRule::default()
        }),
        ..RetentionRules::default()
    }
}

fn mailer(dir: &std::path::Path) -> Mailer {
    startup::mailer(
        &settings(|_| {}),
        None,
        Some(dir.into()),
        wiring::system_clock(),
        wiring::os_random(),
    )
    .unwrap()
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn an_account_without_a_delivered_warning_is_never_acted_on(pool: PgPool) {
    let server = start(pool.clone(), Options::default()).await;
    server.register("stale@example.com", PASSWORD).await;
    age_user(&pool, "stale@example.com", 800, true).await;
    let rules = inactive_rule(InactiveAccountAction::Delete);
    let db = Postgres::from_pool(pool.clone());
    let now = wiring::system_clock().now();
    for later in [0, 30, 365] {
        let summary = run(&db, None, &rules, now + Duration::days(later), false)
            .await
            .unwrap();
        assert_eq!(summary.counts["inactiveAccounts"], 0, "day {later}");
    }
    assert_eq!(count(&pool, "SELECT count(*) FROM users").await, 1);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn an_account_that_logs_in_is_not_inactive(pool: PgPool) {
    let server = start(pool.clone(), Options::default()).await;
    server.user("alice@example.com").await;
    sqlx::query("UPDATE users SET created_at = now() - interval '800 days'")
        .execute(&pool)
        .await
        .unwrap();
    let summary = run(
        &Postgres::from_pool(pool.clone()),
        None,
        &inactive_rule(InactiveAccountAction::Delete),
        wiring::system_clock().now(),
        false,
    )
    .await
    .unwrap();
    assert_eq!(summary.counts["inactiveAccounts"], 0);
    assert_eq!(count(&pool, "SELECT count(*) FROM users").await, 1);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn an_inactive_account_is_deleted_only_its_warning_period_after_the_warning(pool: PgPool) {
    let server = start(pool.clone(), Options::default()).await;
    server.register("stale@example.com", PASSWORD).await;
    age_user(&pool, "stale@example.com", 800, true).await;
    let mail_dir = tempfile::tempdir().unwrap();
    let mailer = mailer(mail_dir.path());
    let rules = inactive_rule(InactiveAccountAction::Delete);
    let db = Postgres::from_pool(pool.clone());
    let now = wiring::system_clock().now();
    let first = run(&db, Some(&mailer), &rules, now, false).await.unwrap();
    assert_eq!(
        (
            first.counts["inactiveAccountsWarned"],
            first.counts["inactiveAccounts"]
        ),
        (1, 0),
        "warned, not deleted"
    );
    let early = run(&db, Some(&mailer), &rules, now + Duration::days(29), false)
        .await
        .unwrap();
    assert_eq!(early.counts["inactiveAccounts"], 0, "29 of 30 days");
    let due = run(&db, Some(&mailer), &rules, now + Duration::days(30), false)
        .await
        .unwrap();
    assert_eq!(due.counts["inactiveAccounts"], 1);
    assert_eq!(count(&pool, "SELECT count(*) FROM users").await, 0);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn an_account_disabled_for_inactivity_loses_its_sessions_and_tokens(pool: PgPool) {
    let server = start(pool.clone(), Options::default()).await;
    let login = server.user("stale@example.com").await;
    sqlx::query(
        "UPDATE users SET created_at = now() - interval '800 days', last_login_at = now() - interval '800 days'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let mail_dir = tempfile::tempdir().unwrap();
    let mailer = mailer(mail_dir.path());
    let rules = inactive_rule(InactiveAccountAction::Disable);
    let db = Postgres::from_pool(pool.clone());
    let now = wiring::system_clock().now();
    run(&db, Some(&mailer), &rules, now, false).await.unwrap();
    let due = run(&db, Some(&mailer), &rules, now + Duration::days(30), false)
        .await
        .unwrap();
    assert_eq!(due.counts["inactiveAccounts"], 1);
    let sessions = server.get("/api/v1/me/sessions", &cookie(&login)).await;
    assert_eq!(sessions.status, 401, "{sessions:?}");
    let refreshed = server
        .refresh(login.body["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(refreshed.status, 400);
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn an_account_kept_signed_in_by_refresh_grants_is_not_inactive(pool: PgPool) {
    let server = start(pool.clone(), Options::default()).await;
    let login = server.user("kept@example.com").await;
    // Warned once already, its last login long ago: then its app refreshes its tokens.
    sqlx::query(
        "UPDATE users SET created_at = now() - interval '800 days', \
         last_login_at = now() - interval '800 days', inactivity_warned_at = now() - interval '40 days'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let refreshed = server
        .refresh(login.body["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(refreshed.status, 200, "{refreshed:?}");
    let id = login.body["user_id"].as_str().unwrap();
    let shown = server
        .admin_call(reqwest::Method::GET, &format!("/admin/v1/users/{id}"))
        .await;
    assert!(shown.body["last_active_at"].is_string(), "{shown:?}");

    let mail_dir = tempfile::tempdir().unwrap();
    let mailer = mailer(mail_dir.path());
    let db = Postgres::from_pool(pool.clone());
    let summary = run(
        &db,
        Some(&mailer),
        &inactive_rule(InactiveAccountAction::Delete),
        wiring::system_clock().now(),
        false,
    )
    .await
    .unwrap();
    assert_eq!(
        (
            summary.counts["inactiveAccountsWarned"],
            summary.counts["inactiveAccounts"]
        ),
        (0, 0),
        "neither warned again nor deleted"
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM users").await, 1);
}
