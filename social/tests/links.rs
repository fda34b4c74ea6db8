//! The link store against a real PostgreSQL (`DATABASE_URL`; each test gets a fresh database
//! with the auth server's migrations). Races are run for real: two pools, the calls in flight
//! at once, or queued behind a lock the test holds.

// Helpers outside #[test] functions unwrap too: a panic there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use portcullis_sealed::{Binding, KeyRing, Purpose};
use portcullis_social::pg::{PgLinkStore, StoredTokens};
use portcullis_social::{Link, SocialError, UpstreamIdentity, UpstreamTokens};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use time::OffsetDateTime;
use uuid::Uuid;

/// 2026-01-01T00:00:15Z.
const T0: i64 = 1_767_225_615;
const ISSUER: &str = "https://accounts.example";

fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap()
}

fn key(first: u8) -> Vec<u8> {
    (first..first + 32).collect()
}

fn ring(keys: &[Vec<u8>]) -> KeyRing {
    KeyRing::new(keys).unwrap()
}

/// Another pool on the same test database: a second replica.
async fn second_pool(pool: &PgPool) -> PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .connect_with((*pool.connect_options()).clone())
        .await
        .unwrap()
}

/// A `users` row, as the schema requires before any link.
async fn user(pool: &PgPool, n: u128) -> Uuid {
    let id = Uuid::from_u128(0x0192_e3a4_0000_7000_8000_0000_0000_0000 + n);
    sqlx::query(
        "INSERT INTO users (id, email, email_canonical, password_hash, pepper_version, \
         created_at, updated_at) VALUES ($1, $2, $2, 'x', 'v1', $3, $3)",
    )
    .bind(id)
    .bind(format!("user{n}@example.com"))
    .bind(at(T0))
    .execute(pool)
    .await
    .unwrap();
    id
}

fn identity(provider: &str, issuer: &str, subject: &str) -> UpstreamIdentity {
    UpstreamIdentity {
        provider: provider.into(),
        issuer: issuer.into(),
        subject: subject.into(),
        email: Some(format!("{subject}@example.com")),
        email_verified: true,
        name: None,
        hosted_domain: None,
    }
}

/// `user` linked to the subject `subject` of the realm's provider `corp`, at `T0`.
async fn linked(store: &PgLinkStore, user: Uuid, subject: &str) -> Link {
    store
        .link(user, &identity("corp", ISSUER, subject), at(T0))
        .await
        .unwrap()
}

fn tokens(access: &str, refresh: Option<&str>) -> UpstreamTokens {
    UpstreamTokens {
        access_token: access.into(),
        refresh_token: refresh.map(str::to_owned),
        expires_in: Some(Duration::from_secs(3600)),
        scopes: Some(vec!["openid".into(), "email".into()]),
    }
}

fn live(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

fn code<T: std::fmt::Debug>(result: Result<T, SocialError>) -> &'static str {
    result.unwrap_err().code()
}

async fn raw_tokens(pool: &PgPool, id: Uuid) -> (Option<String>, Option<String>) {
    sqlx::query_as(
        "SELECT upstream_tokens, upstream_tokens_key_id FROM linked_identities WHERE id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn link_count(pool: &PgPool, user: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM linked_identities WHERE user_id = $1")
        .bind(user)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Waits until `count` sessions of this database wait for a lock.
async fn until_sessions_wait(pool: &PgPool, count: i64) {
    for _ in 0..500 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the store never waited for the row lock");
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_link_is_found_by_issuer_and_subject_and_listed_for_its_user(pool: PgPool) {
    let store = PgLinkStore::new(pool.clone());
    let ada = user(&pool, 1).await;
    let made = linked(&store, ada, "s-1").await;
    let expected = Link {
        id: made.id,
        user: ada,
        provider: "corp".into(),
        issuer: ISSUER.into(),
        subject: "s-1".into(),
        email: Some("s-1@example.com".into()),
        created_at: at(T0),
        last_used_at: at(T0),
    };
    assert_eq!(made, expected);
    assert_eq!(
        store.find(ISSUER, "s-1").await.unwrap(),
        Some(expected.clone())
    );
    assert_eq!(store.list_for_user(ada).await.unwrap(), vec![expected]);
    assert_eq!(store.find(ISSUER, "s-2").await.unwrap(), None);
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn the_same_subject_at_another_issuer_is_another_identity(pool: PgPool) {
    let store = PgLinkStore::new(pool.clone());
    let ada = user(&pool, 1).await;
    let bob = user(&pool, 2).await;
    store
        .link(ada, &identity("gh", "https://api.github.com", "42"), at(T0))
        .await
        .unwrap();
    let enterprise = store
        .link(
            bob,
            &identity("gh", "https://ghe.corp/api/v3", "42"),
            at(T0),
        )
        .await
        .unwrap();
    assert_eq!(enterprise.user, bob);
    let found = store.find("https://api.github.com", "42").await.unwrap();
    assert_eq!(found.map(|l| l.user), Some(ada));
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn linking_the_same_identity_to_the_same_user_again_returns_the_first_link(pool: PgPool) {
    let store = PgLinkStore::new(pool.clone());
    let ada = user(&pool, 1).await;
    let first = linked(&store, ada, "s-1").await;
    let again = store
        .link(ada, &identity("corp", ISSUER, "s-1"), at(T0 + 60))
        .await
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(link_count(&pool, ada).await, 1);
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn an_identity_linked_to_another_user_is_refused_and_never_moved(pool: PgPool) {
    let store = PgLinkStore::new(pool.clone());
    let ada = user(&pool, 1).await;
    let mallory = user(&pool, 2).await;
    linked(&store, ada, "s-1").await;
    let refused = store
        .link(mallory, &identity("corp", ISSUER, "s-1"), at(T0 + 1))
        .await;
    assert_eq!(code(refused), "already_linked");
    let found = store.find(ISSUER, "s-1").await.unwrap();
    assert_eq!(found.map(|l| l.user), Some(ada));
    assert_eq!(link_count(&pool, mallory).await, 0);
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn two_users_racing_to_link_one_identity_exactly_one_wins(pool: PgPool) {
    let a = PgLinkStore::new(pool.clone());
    let b = PgLinkStore::new(second_pool(&pool).await);
    let ada = user(&pool, 1).await;
    let bob = user(&pool, 2).await;
    for round in 0..20 {
        let who = identity("corp", ISSUER, &format!("race-{round}"));
        let (left, right) = tokio::join!(a.link(ada, &who, at(T0)), b.link(bob, &who, at(T0)));
        let (winner, loser) = match (left, right) {
            (Ok(link), Err(e)) => ((link, ada), e),
            (Err(e), Ok(link)) => ((link, bob), e),
            other => panic!("round {round}: expected one winner, got {other:?}"),
        };
        assert_eq!(loser.code(), "already_linked", "round {round}");
        assert_eq!(winner.0.user, winner.1);
        let stored = a.find(ISSUER, &who.subject).await.unwrap().unwrap();
        assert_eq!(stored, winner.0, "round {round}");
    }
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn the_same_user_linking_one_identity_twice_at_once_gets_one_link(pool: PgPool) {
    let a = PgLinkStore::new(pool.clone());
    let b = PgLinkStore::new(second_pool(&pool).await);
    let ada = user(&pool, 1).await;
    let who = identity("corp", ISSUER, "s-1");
    let (left, right) = tokio::join!(a.link(ada, &who, at(T0)), b.link(ada, &who, at(T0)));
    assert_eq!(left.unwrap(), right.unwrap());
    assert_eq!(link_count(&pool, ada).await, 1);
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn linking_needs_an_existing_user_and_a_provider_issuer_and_subject(pool: PgPool) {
    let store = PgLinkStore::new(pool.clone());
    let ada = user(&pool, 1).await;
    let nobody = Uuid::from_u128(7);
    assert_eq!(
        code(
            store
                .link(nobody, &identity("corp", ISSUER, "s"), at(T0))
                .await
        ),
        "unknown_user"
    );
    for (bad, field) in [
        (identity("", ISSUER, "s"), "provider"),
        (identity("corp", "", "s"), "issuer"),
        (identity("corp", ISSUER, ""), "subject"),
    ] {
        let refused = store.link(ada, &bad, at(T0)).await;
        assert!(
            matches!(refused, Err(SocialError::InvalidLink(f)) if f == field),
            "{field}: {refused:?}"
        );
    }
    assert_eq!(link_count(&pool, ada).await, 0);
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn touch_records_the_last_use_and_never_moves_it_back(pool: PgPool) {
    let store = PgLinkStore::new(pool.clone());
    let ada = user(&pool, 1).await;
    let link = linked(&store, ada, "s-1").await;
    store.touch(link.id, at(T0 + 100)).await.unwrap();
    store.touch(link.id, at(T0 + 50)).await.unwrap();
    let found = store.find(ISSUER, "s-1").await.unwrap().unwrap();
    assert_eq!(found.last_used_at, at(T0 + 100));
    assert_eq!(found.created_at, at(T0));
    assert_eq!(
        code(store.touch(Uuid::from_u128(9), at(T0)).await),
        "not_found"
    );
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_link_is_removed_while_the_password_still_works(pool: PgPool) {
    let store = PgLinkStore::new(pool.clone());
    let ada = user(&pool, 1).await;
    let link = linked(&store, ada, "s-1").await;
    let removed = store
        .unlink(ada, link.id, true, &live(&["corp"]))
        .await
        .unwrap();
    assert_eq!(removed, link);
    assert_eq!(store.find(ISSUER, "s-1").await.unwrap(), None);
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn the_last_way_in_is_not_unlinked(pool: PgPool) {
    let store = PgLinkStore::new(pool.clone());
    let ada = user(&pool, 1).await;
    let link = linked(&store, ada, "s-1").await;
    let refused = store.unlink(ada, link.id, false, &live(&["corp"])).await;
    assert_eq!(code(refused), "last_sign_in_method");
    assert_eq!(link_count(&pool, ada).await, 1);
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_link_to_a_provider_removed_from_the_realm_is_no_way_in(pool: PgPool) {
    let store = PgLinkStore::new(pool.clone());
    let ada = user(&pool, 1).await;
    let corp = linked(&store, ada, "s-1").await;
    let old = store
        .link(
            ada,
            &identity("retired", "https://old.example", "s-1"),
            at(T0),
        )
        .await
        .unwrap();
    let refused = store.unlink(ada, corp.id, false, &live(&["corp"])).await;
    assert_eq!(code(refused), "last_sign_in_method");
    // The other way round, the live link remains: the dead one may go.
    store
        .unlink(ada, old.id, false, &live(&["corp"]))
        .await
        .unwrap();
    assert_eq!(store.list_for_user(ada).await.unwrap(), vec![corp]);
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn unlinking_another_users_link_or_an_unknown_one_is_not_found(pool: PgPool) {
    let store = PgLinkStore::new(pool.clone());
    let ada = user(&pool, 1).await;
    let mallory = user(&pool, 2).await;
    let link = linked(&store, ada, "s-1").await;
    let theirs = store.unlink(mallory, link.id, true, &live(&["corp"])).await;
    assert_eq!(code(theirs), "not_found");
    let unknown = store
        .unlink(ada, Uuid::from_u128(9), true, &live(&["corp"]))
        .await;
    assert_eq!(code(unknown), "not_found");
    assert_eq!(link_count(&pool, ada).await, 1);
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn two_concurrent_unlinks_of_a_passwordless_users_two_links_leave_one(pool: PgPool) {
    let ada = user(&pool, 1).await;
    let a = PgLinkStore::new(pool.clone());
    let b = PgLinkStore::new(second_pool(&pool).await);
    let github = a
        .link(
            ada,
            &identity("github", "https://api.github.com", "1"),
            at(T0),
        )
        .await
        .unwrap();
    let google = a
        .link(
            ada,
            &identity("google", "https://accounts.google.com", "2"),
            at(T0),
        )
        .await
        .unwrap();
    let providers = live(&["github", "google"]);
    // The test holds a lock on one of the rows so that both unlinks have read nothing yet
    // when they start, and are both under way when it lets go.
    let mut hold = pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM linked_identities WHERE id = $1 FOR UPDATE")
        .bind(github.id)
        .execute(&mut *hold)
        .await
        .unwrap();
    let left = tokio::spawn({
        let (a, providers) = (a.clone(), providers.clone());
        async move { a.unlink(ada, github.id, false, &providers).await }
    });
    let right = tokio::spawn({
        let (b, providers) = (b.clone(), providers.clone());
        async move { b.unlink(ada, google.id, false, &providers).await }
    });
    until_sessions_wait(&pool, 2).await;
    hold.commit().await.unwrap();
    let (left, right) = (left.await.unwrap(), right.await.unwrap());
    let outcomes = [&left, &right].map(|r| r.as_ref().err().map(SocialError::code));
    assert!(
        outcomes == [None, Some("last_sign_in_method")]
            || outcomes == [Some("last_sign_in_method"), None],
        "{left:?} {right:?}"
    );
    assert_eq!(link_count(&pool, ada).await, 1);
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn deleting_the_user_deletes_their_links(pool: PgPool) {
    let store = PgLinkStore::new(pool.clone());
    let ada = user(&pool, 1).await;
    linked(&store, ada, "s-1").await;
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(ada)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(store.find(ISSUER, "s-1").await.unwrap(), None);
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn stored_tokens_open_again_and_the_column_holds_no_token_in_clear(pool: PgPool) {
    let store = PgLinkStore::new(pool.clone());
    let keys = ring(&[key(0)]);
    let ada = user(&pool, 1).await;
    let link = linked(&store, ada, "s-1").await;
    assert_eq!(store.tokens(link.id, &keys).await.unwrap(), None);
    store
        .store_tokens(
            link.id,
            &tokens("gho_access", Some("ghr_refresh")),
            &keys,
            at(T0),
        )
        .await
        .unwrap();
    let read = store.tokens(link.id, &keys).await.unwrap().unwrap();
    assert_eq!(
        read,
        StoredTokens {
            access_token: "gho_access".into(),
            refresh_token: Some("ghr_refresh".into()),
            expires_at: Some(at(T0 + 3600)),
            scopes: Some(vec!["openid".into(), "email".into()]),
        }
    );
    let (json, key_id) = raw_tokens(&pool, link.id).await;
    let json = json.unwrap();
    assert!(
        !json.contains("gho_access") && !json.contains("ghr_refresh"),
        "{json}"
    );
    assert_eq!(key_id.as_deref(), Some(keys.current_key_id().as_str()));
    // Each token is a standard Fernet token sealed for its own purpose and the row.
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    let access = parsed["access"].as_str().unwrap();
    let opened = portcullis_sealed::open(
        &keys,
        Binding::new(Purpose::UpstreamAccessToken, link.id),
        access,
    )
    .unwrap();
    assert_eq!(opened.plaintext.as_slice(), b"gho_access");
    let as_refresh = portcullis_sealed::open(
        &keys,
        Binding::new(Purpose::UpstreamRefreshToken, link.id),
        access,
    );
    assert_eq!(as_refresh.unwrap_err().reason(), "moved_ciphertext");
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn tokens_copied_to_another_users_link_are_refused(pool: PgPool) {
    let store = PgLinkStore::new(pool.clone());
    let keys = ring(&[key(0)]);
    let ada = user(&pool, 1).await;
    let mallory = user(&pool, 2).await;
    let adas = linked(&store, ada, "ada").await;
    let mallorys = linked(&store, mallory, "mallory").await;
    store
        .store_tokens(adas.id, &tokens("ada-access", None), &keys, at(T0))
        .await
        .unwrap();
    sqlx::query(
        "UPDATE linked_identities SET (upstream_tokens, upstream_tokens_key_id) = \
         (SELECT upstream_tokens, upstream_tokens_key_id FROM linked_identities WHERE id = $1) \
         WHERE id = $2",
    )
    .bind(adas.id)
    .bind(mallorys.id)
    .execute(&pool)
    .await
    .unwrap();
    let refused = store.tokens(mallorys.id, &keys).await;
    assert!(
        matches!(&refused, Err(SocialError::Sealed(e)) if e.reason() == "moved_ciphertext"),
        "{refused:?}"
    );
    // The error's text names no row.
    let text = refused.unwrap_err().to_string();
    assert!(!text.contains(&adas.id.to_string()), "{text}");
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn tokens_of_an_unknown_link_are_not_found(pool: PgPool) {
    let store = PgLinkStore::new(pool.clone());
    let keys = ring(&[key(0)]);
    let unknown = Uuid::from_u128(9);
    assert_eq!(code(store.tokens(unknown, &keys).await), "not_found");
    let stored = store
        .store_tokens(unknown, &tokens("a", None), &keys, at(T0))
        .await;
    assert_eq!(code(stored), "not_found");
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn reencryption_moves_rows_under_an_old_key_to_the_newest_in_batches(pool: PgPool) {
    let store = PgLinkStore::new(pool.clone());
    let old = ring(&[key(0)]);
    let rotated = ring(&[key(32), key(0)]);
    let ada = user(&pool, 1).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let link = linked(&store, ada, &format!("s-{n}")).await;
        let refresh = format!("refresh-{n}");
        store
            .store_tokens(
                link.id,
                &tokens(&format!("access-{n}"), Some(&refresh)),
                &old,
                at(T0),
            )
            .await
            .unwrap();
        ids.push(link.id);
    }
    let mut after = None;
    let mut reencrypted = 0;
    let mut batches = 0;
    loop {
        let report = store
            .reencrypt_batch(after, 2, &rotated, at(T0 + 10))
            .await
            .unwrap();
        assert!(report.failed.is_empty(), "{report:?}");
        reencrypted += report.reencrypted;
        batches += 1;
        match report.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!((reencrypted, batches), (5, 3));
    let newest_only = ring(&[key(32)]);
    for (n, id) in ids.iter().enumerate() {
        let read = store.tokens(*id, &newest_only).await.unwrap().unwrap();
        assert_eq!(read.access_token, format!("access-{n}"));
        assert_eq!(read.refresh_token, Some(format!("refresh-{n}")));
        let (_, key_id) = raw_tokens(&pool, *id).await;
        assert_eq!(key_id.as_deref(), Some(rotated.current_key_id().as_str()));
    }
    let again = store
        .reencrypt_batch(None, 2, &rotated, at(T0 + 20))
        .await
        .unwrap();
    assert_eq!(again.examined, 0);
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn tokens_stored_between_reencryptions_read_and_write_are_kept(pool: PgPool) {
    let store = PgLinkStore::new(pool.clone());
    let old = ring(&[key(0)]);
    let rotated = ring(&[key(32), key(0)]);
    let ada = user(&pool, 1).await;
    let link = linked(&store, ada, "s-1").await;
    // The newer tokens' column value, made by the store itself, then the old ones put back.
    store
        .store_tokens(
            link.id,
            &tokens("new-access", Some("new-refresh")),
            &rotated,
            at(T0),
        )
        .await
        .unwrap();
    let (newer, newer_key) = raw_tokens(&pool, link.id).await;
    store
        .store_tokens(link.id, &tokens("old-access", None), &old, at(T0))
        .await
        .unwrap();
    // A login stores the newer tokens in a transaction not yet committed when re-encryption
    // reads the old ones; its compare-and-swap then waits for the row.
    let mut login = pool.begin().await.unwrap();
    sqlx::query(
        "UPDATE linked_identities SET upstream_tokens = $2, upstream_tokens_key_id = $3 \
         WHERE id = $1",
    )
    .bind(link.id)
    .bind(&newer)
    .bind(&newer_key)
    .execute(&mut *login)
    .await
    .unwrap();
    let replica = PgLinkStore::new(second_pool(&pool).await);
    let reencrypting = tokio::spawn({
        let rotated = rotated.clone();
        async move {
            replica
                .reencrypt_batch(None, 10, &rotated, at(T0 + 10))
                .await
        }
    });
    until_sessions_wait(&pool, 1).await;
    login.commit().await.unwrap();
    let report = reencrypting.await.unwrap().unwrap();
    assert_eq!(
        (report.examined, report.raced, report.reencrypted),
        (1, 1, 0)
    );
    let read = store.tokens(link.id, &rotated).await.unwrap().unwrap();
    assert_eq!(read.access_token, "new-access");
    assert_eq!(read.refresh_token.as_deref(), Some("new-refresh"));
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_row_that_does_not_open_is_reported_and_left_alone(pool: PgPool) {
    let store = PgLinkStore::new(pool.clone());
    let stranger = ring(&[key(64)]);
    let rotated = ring(&[key(32), key(0)]);
    let ada = user(&pool, 1).await;
    let link = linked(&store, ada, "s-1").await;
    store
        .store_tokens(link.id, &tokens("a", None), &stranger, at(T0))
        .await
        .unwrap();
    let before = raw_tokens(&pool, link.id).await;
    let report = store
        .reencrypt_batch(None, 10, &rotated, at(T0 + 10))
        .await
        .unwrap();
    assert_eq!(report.failed, vec![(link.id, "no_key_decrypts")]);
    assert_eq!(raw_tokens(&pool, link.id).await, before);
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn bad_token_inputs_get_clear_errors(pool: PgPool) {
    let store = PgLinkStore::new(pool.clone());
    let keys = ring(&[key(0)]);
    let ada = user(&pool, 1).await;
    let link = linked(&store, ada, "s-1").await;
    assert_eq!(
        code(store.reencrypt_batch(None, 0, &keys, at(T0)).await),
        "invalid_batch_size"
    );
    assert_eq!(
        code(store.reencrypt_batch(None, 1, &keys, at(-1)).await),
        "time_before_epoch"
    );
    assert_eq!(
        code(
            store
                .store_tokens(link.id, &tokens("a", None), &keys, at(-1))
                .await
        ),
        "time_before_epoch"
    );
    sqlx::query(
        "UPDATE linked_identities SET upstream_tokens = 'not json', \
         upstream_tokens_key_id = 'k' WHERE id = $1",
    )
    .bind(link.id)
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(code(store.tokens(link.id, &keys).await), "corrupt_row");
}
