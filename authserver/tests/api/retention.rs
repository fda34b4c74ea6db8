//! `retention run` against a real database: what each rule removes, the dry run, warnings.

use portcullis_authserver::mail::Mailer;
use portcullis_authserver::privacy::retention::run;
use portcullis_authserver::store::postgres::Db;
use portcullis_crds::retention::{InactiveAccountAction, InactiveAccountRule, RetentionRules};
use serde_json::json;
use sqlx::PgPool;
use time::{Duration, OffsetDateTime};

use crate::support::*;

async fn age_user(pool: &PgPool, email: &str, days: i64, verified: bool) {
    let at = OffsetDateTime::now_utc() - Duration::days(days);
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

#[sqlx::test(migrator = "portcullis_authserver::store::postgres::MIGRATOR")]
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
    let mailer = Mailer::new(
        "no-reply@auth.localhost",
        "http://auth.localhost",
        "test",
        None,
        Some(mail_dir.path().into()),
    )
    .unwrap();
    let db = Db::from_pool(pool.clone());
    let now = OffsetDateTime::now_utc();

    let dry = run(&db, Some(&mailer), &rules, now, true).await.unwrap();
    let expected = json!({"expiredRefreshTokens": 1, "expiredOneTimeTokens": 0, "unverifiedAccounts": 1,
        "withdrawnConsents": 4, "inactiveAccountsWarned": 1, "inactiveAccounts": 1});
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
    assert_eq!(emails, ["dormant@example.com", "fresh@example.com"]);
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
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].contains("To: dormant@example.com")
            && warnings[0].contains("deleted with its data"),
        "{}",
        warnings[0]
    );

    let again = run(&db, Some(&mailer), &rules, now, false).await.unwrap();
    assert_eq!(
        again.counts["inactiveAccountsWarned"], 0,
        "an account is warned once"
    );
    assert!(again.skipped.contains_key("auditLogs"));
}

#[sqlx::test(migrator = "portcullis_authserver::store::postgres::MIGRATOR")]
async fn inactive_accounts_can_be_disabled_instead(pool: PgPool) {
    let server = start(pool.clone(), Options::default()).await;
    server.register("stale@example.com", PASSWORD).await;
    age_user(&pool, "stale@example.com", 800, true).await;
    let rules = RetentionRules {
        inactive_accounts: Some(InactiveAccountRule {
            action: InactiveAccountAction::Disable,
            ..InactiveAccountRule::default()
        }),
        ..RetentionRules::default()
    };
    let summary = run(
        &Db::from_pool(pool.clone()),
        None,
        &rules,
        OffsetDateTime::now_utc(),
        false,
    )
    .await
    .unwrap();
    assert_eq!(summary.counts["inactiveAccounts"], 1);
    let login = server.login("stale@example.com", PASSWORD).await;
    assert_eq!((login.status, login.code()), (403, "account_disabled"));
}
