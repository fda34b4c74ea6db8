//! Migrations that reshape existing rows, applied to rows written in the previous shape.

use sqlx::PgPool;

async fn apply(pool: &PgPool, sql: &'static str) {
    sqlx::raw_sql(sql).execute(pool).await.unwrap();
}

#[sqlx::test(migrations = false)]
async fn refresh_tokens_of_the_old_shape_become_families_with_their_tokens(pool: PgPool) {
    apply(&pool, include_str!("../../migrations/0001_accounts.sql")).await;
    apply(
        &pool,
        include_str!("../../migrations/0002_inactivity_warning.sql"),
    )
    .await;
    apply(
        &pool,
        "INSERT INTO users (id, email, email_canonical, password_hash, pepper_version, created_at, updated_at)
         VALUES ('00000000-0000-0000-0000-000000000001', 'a@example.com', 'a@example.com', 'h', 'v1', now(), now());
         INSERT INTO refresh_tokens (token_hash, family_id, user_id, session_id, client_id, issued_at, expires_at,
                                     family_expires_at, used_at, revoked_at) VALUES
         ('\\x01', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-000000000001', 's1', NULL,
          '2030-01-01', '2030-01-08', '2030-01-31', '2030-01-02', NULL),
         ('\\x02', '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-000000000001', 's1', NULL,
          '2030-01-02', '2030-01-09', '2030-01-31', NULL, NULL),
         ('\\x03', '00000000-0000-0000-0000-00000000000b', '00000000-0000-0000-0000-000000000001', 's2', NULL,
          '2030-01-03', '2030-01-10', '2030-02-02', NULL, '2030-01-04');",
    )
    .await;
    apply(
        &pool,
        include_str!("../../migrations/0003_refresh_families_and_credential_epoch.sql"),
    )
    .await;
    let families: Vec<(String, String, bool)> = sqlx::query_as(
        "SELECT session_id, to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), revoked_at IS NOT NULL \
         FROM refresh_families ORDER BY session_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        families,
        [
            ("s1".to_owned(), "2030-01-31".to_owned(), false),
            ("s2".to_owned(), "2030-02-02".to_owned(), true)
        ]
    );
    let (tokens,): (i64,) = sqlx::query_as("SELECT count(*) FROM refresh_tokens")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(tokens, 3, "every token kept, now in its family");
    let (epoch,): (i64,) = sqlx::query_as("SELECT credential_epoch FROM users")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(epoch, 0);
}

#[sqlx::test(migrations = false)]
async fn families_from_before_oidc_grant_the_api_scope_by_password_and_are_not_offline(
    pool: PgPool,
) {
    for sql in [
        include_str!("../../migrations/0001_accounts.sql"),
        include_str!("../../migrations/0002_inactivity_warning.sql"),
        include_str!("../../migrations/0003_refresh_families_and_credential_epoch.sql"),
        include_str!("../../migrations/0004_key_fingerprints.sql"),
        "INSERT INTO users (id, email, email_canonical, password_hash, pepper_version, created_at, updated_at)
         VALUES ('00000000-0000-0000-0000-000000000001', 'a@example.com', 'a@example.com', 'h', 'v1', now(), now());
         INSERT INTO refresh_families (family_id, user_id, session_id, client_id, credential_epoch, created_at,
                                       expires_at)
         VALUES ('00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-000000000001', 's1', NULL, 0,
                 '2030-01-01', '2030-01-31');",
        include_str!("../../migrations/0005_oidc.sql"),
    ] {
        apply(&pool, sql).await;
    }
    let family: (String, Vec<String>, Option<String>, bool) =
        sqlx::query_as("SELECT scope, amr, acr, offline FROM refresh_families")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        family,
        (
            "openid profile email".to_owned(),
            vec!["pwd".to_owned()],
            None,
            false
        )
    );
}
