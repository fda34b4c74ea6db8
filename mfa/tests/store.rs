//! The PostgreSQL store against a real server (`DATABASE_URL`; each test gets a fresh database
//! with the auth server's migrations). Races are run for real: two pools, two connections, the
//! two calls in flight at once.

// Helpers outside #[test] functions unwrap too: a panic there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use portcullis_mfa::*;
use portcullis_sealed::{Binding, KeyRing, Purpose};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

const REALM: &str = "acme";
/// 2026-01-01T00:00:15Z, the middle of a 30-second step.
const T0: i64 = 1_767_225_615;
/// How long a pending enrolment may wait for its confirmation.
const TTL: Duration = Duration::minutes(15);

fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap()
}

fn key(first: u8) -> Vec<u8> {
    (first..first + 32).collect()
}

fn ring(keys: &[Vec<u8>]) -> Arc<KeyRing> {
    Arc::new(KeyRing::new(keys).unwrap())
}

fn recovery_ring() -> Arc<RecoveryKeyRing> {
    Arc::new(
        RecoveryKeyRing::new(vec![
            RecoveryKey::new(1, b"a realm pepper of some 32 bytes!").unwrap(),
        ])
        .unwrap(),
    )
}

fn store_with(pool: &PgPool, sealing: Arc<KeyRing>) -> PgMfaStore {
    PgMfaStore::new(pool.clone(), sealing, recovery_ring(), REALM)
}

fn store(pool: &PgPool) -> PgMfaStore {
    store_with(pool, ring(&[key(0)]))
}

/// Another pool on the same test database: a second replica.
async fn second_pool(pool: &PgPool) -> PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .connect_with((*pool.connect_options()).clone())
        .await
        .unwrap()
}

/// A `users` row, as the schema requires before any MFA row.
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

fn new_secret(n: u8) -> TotpSecret {
    TotpSecret::generate([n; SECRET_LEN])
}

/// What the user's authenticator app shows at `unix`.
fn code(secret: &TotpSecret, unix: i64) -> String {
    generate(&TotpParams::default(), secret, unix as u64).to_string()
}

/// A user with a confirmed enrolment (confirmed at `T0 - 60`, so steps from T0 on are new).
async fn enrolled(store: &PgMfaStore, pool: &PgPool, n: u128) -> (Uuid, TotpSecret) {
    let id = user(pool, n).await;
    let secret = new_secret(n as u8);
    let enrolment = store
        .begin_enrolment(id, &secret, TotpParams::default(), at(T0 - 90))
        .await
        .unwrap();
    store
        .confirm(id, enrolment, &code(&secret, T0 - 60), at(T0 - 60), TTL)
        .await
        .unwrap();
    (id, secret)
}

/// `count` recovery codes from a xorshift stream seeded with `seed`: distinct sets for distinct
/// seeds, as a CSPRNG's would be.
fn recovery_codes(seed: u64, count: u32) -> Vec<RecoveryCode> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let random: Vec<u8> = (0..count as usize * RECOVERY_CODE_RANDOM_BYTES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect();
    generate_recovery_codes(count, &random).unwrap()
}

async fn count(pool: &PgPool, sql: &'static str, user: Uuid) -> i64 {
    sqlx::query_scalar(sql)
        .bind(user)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn an_enrolment_is_pending_until_confirmed_with_a_code_from_its_secret(pool: PgPool) {
    let store = store(&pool);
    let id = user(&pool, 1).await;
    let secret = new_secret(1);
    let params = TotpParams::new(Algorithm::Sha1, 6, 30).unwrap();
    let enrolment = store
        .begin_enrolment(id, &secret, params, at(T0))
        .await
        .unwrap();
    let pending = store.status(id).await.unwrap();
    assert_eq!(
        pending,
        MfaStatus {
            enrolled: false,
            confirmed_at: None,
            pending: true,
            recovery_codes_remaining: 0
        }
    );
    assert!(matches!(
        store.verify(id, &code(&secret, T0), at(T0)).await,
        Err(MfaStoreError::NotEnrolled)
    ));
    assert!(matches!(
        store
            .confirm(id, enrolment, &code(&new_secret(2), T0), at(T0), TTL)
            .await,
        Err(MfaStoreError::InvalidCode)
    ));

    let step = store
        .confirm(id, enrolment, &code(&secret, T0 + 5), at(T0 + 5), TTL)
        .await
        .unwrap();
    assert_eq!(step, params.time_step((T0 + 5) as u64));
    let status = store.status(id).await.unwrap();
    assert!(status.enrolled && !status.pending);
    assert_eq!(status.confirmed_at, Some(at(T0 + 5)));
    // The confirmation code's step was recorded: it cannot be replayed at login.
    assert!(matches!(
        store.verify(id, &code(&secret, T0 + 5), at(T0 + 10)).await,
        Err(MfaStoreError::Replayed)
    ));
    assert_eq!(
        store
            .verify(id, &code(&secret, T0 + 30), at(T0 + 30))
            .await
            .unwrap(),
        params.time_step((T0 + 30) as u64)
    );
    // The secret is stored sealed, not as its bytes or base32.
    let stored: String = sqlx::query_scalar("SELECT secret FROM mfa_totp WHERE user_id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(stored.starts_with("gAAAAA"), "a Fernet token");
    assert!(!stored.contains(secret.to_base32().as_str()));
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_new_enrolment_replaces_a_pending_one_but_never_a_confirmed_one(pool: PgPool) {
    let store = store(&pool);
    let id = user(&pool, 1).await;
    let (first, second) = (new_secret(1), new_secret(2));
    let params = TotpParams::default();
    let shown_first = store
        .begin_enrolment(id, &first, params, at(T0))
        .await
        .unwrap();
    let shown_second = store
        .begin_enrolment(id, &second, params, at(T0 + 1))
        .await
        .unwrap();
    assert_ne!(shown_first, shown_second);
    assert!(matches!(
        store
            .confirm(id, shown_second, &code(&first, T0 + 2), at(T0 + 2), TTL)
            .await,
        Err(MfaStoreError::InvalidCode)
    ));
    store
        .confirm(id, shown_second, &code(&second, T0 + 2), at(T0 + 2), TTL)
        .await
        .unwrap();
    assert!(matches!(
        store.begin_enrolment(id, &first, params, at(T0 + 3)).await,
        Err(MfaStoreError::AlreadyEnrolled)
    ));
    assert!(matches!(
        store
            .confirm(id, shown_second, &code(&second, T0 + 30), at(T0 + 30), TTL)
            .await,
        Err(MfaStoreError::AlreadyEnrolled)
    ));
    // Still the confirmed secret.
    store
        .verify(id, &code(&second, T0 + 30), at(T0 + 30))
        .await
        .unwrap();
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn an_enrolment_verifies_with_its_own_stored_params(pool: PgPool) {
    let store = store(&pool);
    let id = user(&pool, 1).await;
    let secret = new_secret(1);
    let params = TotpParams::new(Algorithm::Sha256, 8, 60).unwrap();
    let enrolment = store
        .begin_enrolment(id, &secret, params, at(T0))
        .await
        .unwrap();
    let app = |unix: i64| generate(&params, &secret, unix as u64).to_string();
    assert!(matches!(
        store
            .confirm(id, enrolment, &code(&secret, T0), at(T0), TTL)
            .await,
        Err(MfaStoreError::InvalidCode)
    ));
    store
        .confirm(id, enrolment, &app(T0), at(T0), TTL)
        .await
        .unwrap();
    let step = store.verify(id, &app(T0 + 60), at(T0 + 60)).await.unwrap();
    assert_eq!(step, params.time_step((T0 + 60) as u64));
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn the_same_code_verified_concurrently_from_two_pools_is_accepted_exactly_once(pool: PgPool) {
    let a = store(&pool);
    let b = store(&second_pool(&pool).await);
    let (id, secret) = enrolled(&a, &pool, 1).await;
    for round in 0..20 {
        let now = T0 + 30 * round;
        let code = code(&secret, now);
        let (left, right) =
            tokio::join!(a.verify(id, &code, at(now)), b.verify(id, &code, at(now)));
        let accepted = [&left, &right].iter().filter(|r| r.is_ok()).count();
        assert_eq!(accepted, 1, "round {round}: {left:?} {right:?}");
        let refused = if left.is_ok() { right } else { left };
        assert!(
            matches!(refused, Err(MfaStoreError::Replayed)),
            "round {round}: {refused:?}"
        );
        assert_eq!(refused.unwrap_err().reason(), "replayed");
    }
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn an_older_step_after_a_newer_one_is_refused(pool: PgPool) {
    let store = store(&pool);
    let (id, secret) = enrolled(&store, &pool, 1).await;
    // The phone runs one step ahead: its code for the next step is inside the skew window.
    let newer = store
        .verify(id, &code(&secret, T0 + 30), at(T0))
        .await
        .unwrap();
    assert_eq!(newer.value(), (T0 as u64 / 30) + 1);
    // The current step's code is genuine and within the window, but older than one used.
    assert!(matches!(
        store.verify(id, &code(&secret, T0), at(T0)).await,
        Err(MfaStoreError::Replayed)
    ));
    // A wrong code is told apart from a replay.
    assert!(matches!(
        store
            .verify(id, &code(&new_secret(9), T0 + 60), at(T0 + 60))
            .await,
        Err(MfaStoreError::InvalidCode)
    ));
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_recovery_code_spent_concurrently_twice_works_once(pool: PgPool) {
    let a = store(&pool);
    let b = store(&second_pool(&pool).await);
    let (id, _) = enrolled(&a, &pool, 1).await;
    let codes = recovery_codes(1, 10);
    a.replace_recovery_codes(id, &codes, at(T0)).await.unwrap();
    assert_eq!(a.status(id).await.unwrap().recovery_codes_remaining, 10);
    for (i, code) in codes.iter().enumerate().take(5) {
        let typed = code.as_str().to_uppercase();
        let (left, right) = tokio::join!(
            a.spend_recovery_code(id, &typed, at(T0)),
            b.spend_recovery_code(id, code.as_str(), at(T0))
        );
        assert_eq!(
            [&left, &right].iter().filter(|r| r.is_ok()).count(),
            1,
            "code {i}: {left:?} {right:?}"
        );
        let refused = if left.is_ok() { right } else { left };
        assert!(matches!(refused, Err(MfaStoreError::InvalidRecoveryCode)));
        // Spent: refused afterwards too.
        assert!(matches!(
            a.spend_recovery_code(id, code.as_str(), at(T0)).await,
            Err(MfaStoreError::InvalidRecoveryCode)
        ));
    }
    assert_eq!(a.status(id).await.unwrap().recovery_codes_remaining, 5);
    assert!(matches!(
        a.spend_recovery_code(id, "not a code", at(T0)).await,
        Err(MfaStoreError::InvalidRecoveryCode)
    ));
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn regenerating_recovery_codes_voids_the_old_set(pool: PgPool) {
    let store = store(&pool);
    let (id, _) = enrolled(&store, &pool, 1).await;
    let old = recovery_codes(1, 10);
    let new = recovery_codes(2, 10);
    store
        .replace_recovery_codes(id, &old, at(T0))
        .await
        .unwrap();
    store
        .spend_recovery_code(id, old[0].as_str(), at(T0))
        .await
        .unwrap();
    store
        .replace_recovery_codes(id, &new, at(T0 + 1))
        .await
        .unwrap();
    for code in &old[1..] {
        assert!(matches!(
            store
                .spend_recovery_code(id, code.as_str(), at(T0 + 2))
                .await,
            Err(MfaStoreError::InvalidRecoveryCode)
        ));
    }
    assert_eq!(store.status(id).await.unwrap().recovery_codes_remaining, 10);
    store
        .spend_recovery_code(id, new[3].as_str(), at(T0 + 2))
        .await
        .unwrap();
    assert_eq!(store.status(id).await.unwrap().recovery_codes_remaining, 9);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM mfa_recovery_codes WHERE user_id = $1",
            id
        )
        .await,
        10
    );
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn two_concurrent_regenerations_leave_one_whole_set(pool: PgPool) {
    let a = store(&pool);
    let b = store(&second_pool(&pool).await);
    let (id, _) = enrolled(&a, &pool, 1).await;
    for round in 0..10 {
        let left = recovery_codes(2 * round + 1, 10);
        let right = recovery_codes(2 * round + 2, 10);
        let (l, r) = tokio::join!(
            a.replace_recovery_codes(id, &left, at(T0)),
            b.replace_recovery_codes(id, &right, at(T0))
        );
        l.unwrap();
        r.unwrap();
        assert_eq!(a.status(id).await.unwrap().recovery_codes_remaining, 10);
        // Exactly one of the two sets works, whole.
        let (kept, voided) = match a.spend_recovery_code(id, left[0].as_str(), at(T0)).await {
            Ok(()) => (&left, &right),
            Err(_) => (&right, &left),
        };
        for code in &voided[..] {
            assert!(matches!(
                a.spend_recovery_code(id, code.as_str(), at(T0)).await,
                Err(MfaStoreError::InvalidRecoveryCode)
            ));
        }
        for code in &kept[1..] {
            a.spend_recovery_code(id, code.as_str(), at(T0))
                .await
                .unwrap();
        }
    }
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn recovery_codes_need_a_confirmed_enrolment_distinct_codes_and_their_own_user(pool: PgPool) {
    let store = store(&pool);
    let pending = user(&pool, 1).await;
    let codes = recovery_codes(1, 3);
    assert!(matches!(
        store.replace_recovery_codes(pending, &codes, at(T0)).await,
        Err(MfaStoreError::NotEnrolled)
    ));
    let (alice, _) = enrolled(&store, &pool, 2).await;
    let (bob, _) = enrolled(&store, &pool, 3).await;
    let mut repeated = codes.clone();
    repeated.push(codes[1].clone());
    assert!(matches!(
        store.replace_recovery_codes(alice, &repeated, at(T0)).await,
        Err(MfaStoreError::DuplicateRecoveryCode)
    ));
    // Alice's hashes copied into Bob's rows: her codes do not work as Bob.
    store
        .replace_recovery_codes(alice, &codes, at(T0))
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO mfa_recovery_codes (user_id, key_version, digest, created_at) \
         SELECT $2, key_version, digest, created_at FROM mfa_recovery_codes WHERE user_id = $1",
    )
    .bind(alice)
    .bind(bob)
    .execute(&pool)
    .await
    .unwrap();
    assert!(matches!(
        store
            .spend_recovery_code(bob, codes[0].as_str(), at(T0))
            .await,
        Err(MfaStoreError::InvalidRecoveryCode)
    ));
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_ciphertext_swapped_between_two_users_rows_is_refused(pool: PgPool) {
    let store = store(&pool);
    let (alice, alices) = enrolled(&store, &pool, 1).await;
    let (bob, bobs) = enrolled(&store, &pool, 2).await;
    sqlx::query(
        "UPDATE mfa_totp AS t SET secret = o.secret FROM mfa_totp AS o \
         WHERE t.user_id IN ($1, $2) AND o.user_id IN ($1, $2) AND o.user_id <> t.user_id",
    )
    .bind(alice)
    .bind(bob)
    .execute(&pool)
    .await
    .unwrap();
    for (id, secret) in [
        (alice, &alices),
        (bob, &bobs),
        (alice, &bobs),
        (bob, &alices),
    ] {
        let refused = store.verify(id, &code(secret, T0), at(T0)).await;
        assert!(
            matches!(refused, Err(MfaStoreError::Sealed(_))),
            "{refused:?}"
        );
        assert_eq!(refused.unwrap_err().reason(), "moved_ciphertext");
    }
    // Re-encryption does not re-seal them in their new place either.
    let rotated = store_with(&pool, ring(&[key(64), key(0)]));
    let report = rotated.reencrypt_batch(None, 10, at(T0)).await.unwrap();
    assert_eq!(report.examined, 2);
    assert_eq!(report.reencrypted, 0);
    let mut failed = report.failed.clone();
    failed.sort();
    assert_eq!(
        failed,
        [(alice, "moved_ciphertext"), (bob, "moved_ciphertext")]
    );
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn reencryption_in_batches_of_three_by_two_concurrent_runs_leaves_every_row_under_the_new_key(
    pool: PgPool,
) {
    let old_store = store_with(&pool, ring(&[key(0)]));
    let mut users = Vec::new();
    for n in 1..=10 {
        users.push(enrolled(&old_store, &pool, n).await);
    }
    let rotated = ring(&[key(32), key(0)]);
    let new_id = rotated.current_key_id().as_str().to_owned();
    let a = store_with(&pool, rotated.clone());
    let b = store_with(&second_pool(&pool).await, rotated);

    async fn run(store: &PgMfaStore) -> Vec<ReencryptReport> {
        let mut reports = Vec::new();
        let mut after = None;
        loop {
            let report = store.reencrypt_batch(after, 3, at(T0)).await.unwrap();
            after = report.next;
            reports.push(report);
            if after.is_none() {
                return reports;
            }
        }
    }
    let (left, right) = tokio::join!(run(&a), run(&b));
    let reports: Vec<&ReencryptReport> = left.iter().chain(&right).collect();
    assert!(
        reports
            .iter()
            .all(|r| r.examined <= 3 && r.failed.is_empty())
    );
    // Each run alone walks the 10 rows in 4 batches at most.
    assert!(left.len() <= 4 && right.len() <= 4, "{left:?} {right:?}");
    // Between them, every row was written exactly once; the other run's attempts lost the
    // compare-and-swap or no longer saw the row.
    let written: u32 = reports.iter().map(|r| r.reencrypted).sum();
    assert_eq!(written, 10, "{reports:?}");

    let labels: Vec<String> =
        sqlx::query_scalar("SELECT secret_key_id FROM mfa_totp ORDER BY user_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(labels, vec![new_id; 10]);
    // Nothing is left for a later run.
    let again = a.reencrypt_batch(None, 3, at(T0)).await.unwrap();
    assert_eq!((again.examined, again.next), (0, None));
    // With the new key alone, every secret opens and still verifies its user's codes.
    let new_only = store_with(&pool, ring(&[key(32)]));
    for (id, secret) in &users {
        new_only
            .verify(*id, &code(secret, T0), at(T0))
            .await
            .unwrap();
        let token: String = sqlx::query_scalar("SELECT secret FROM mfa_totp WHERE user_id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
        let opened = portcullis_sealed::open(
            &KeyRing::new(&[key(32)]).unwrap(),
            Binding::new(Purpose::TotpSecret, *id),
            &token,
        )
        .unwrap();
        assert_eq!(opened.plaintext.as_slice(), secret.as_bytes());
    }
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_row_already_under_the_newest_key_is_only_relabelled(pool: PgPool) {
    let old_store = store_with(&pool, ring(&[key(0)]));
    let id = user(&pool, 1).await;
    old_store
        .begin_enrolment(id, &new_secret(1), TotpParams::default(), at(T0))
        .await
        .unwrap();
    let rotated = store_with(&pool, ring(&[key(32), key(0)]));
    // A row labelled old but already sealed under the newest key (a label left stale) is
    // only relabelled.
    let enrolment = rotated
        .begin_enrolment(id, &new_secret(2), TotpParams::default(), at(T0))
        .await
        .unwrap();
    sqlx::query("UPDATE mfa_totp SET secret_key_id = 'stale' WHERE user_id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    let report = rotated.reencrypt_batch(None, 5, at(T0)).await.unwrap();
    assert_eq!((report.relabelled, report.reencrypted), (1, 0));
    let label: String = sqlx::query_scalar("SELECT secret_key_id FROM mfa_totp WHERE user_id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(label, ring(&[key(32)]).current_key_id().as_str());
    // The second enrolment's secret is the one kept.
    rotated
        .confirm(id, enrolment, &code(&new_secret(2), T0), at(T0), TTL)
        .await
        .unwrap();
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn deleting_the_user_deletes_their_mfa_rows(pool: PgPool) {
    let store = store(&pool);
    let (alice, _) = enrolled(&store, &pool, 1).await;
    let (bob, _) = enrolled(&store, &pool, 2).await;
    for id in [alice, bob] {
        store
            .replace_recovery_codes(id, &recovery_codes(1, 4), at(T0))
            .await
            .unwrap();
    }
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(alice)
        .execute(&pool)
        .await
        .unwrap();
    for (id, rows) in [(alice, 0), (bob, 1)] {
        assert_eq!(
            count(
                &pool,
                "SELECT count(*) FROM mfa_totp WHERE user_id = $1",
                id
            )
            .await,
            rows
        );
        assert_eq!(
            count(
                &pool,
                "SELECT count(*) FROM mfa_recovery_codes WHERE user_id = $1",
                id
            )
            .await,
            rows * 4
        );
    }
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn remove_deletes_the_enrolment_and_the_recovery_codes(pool: PgPool) {
    let store = store(&pool);
    let (id, secret) = enrolled(&store, &pool, 1).await;
    let codes = recovery_codes(1, 4);
    store
        .replace_recovery_codes(id, &codes, at(T0))
        .await
        .unwrap();
    assert!(store.remove(id).await.unwrap());
    assert!(!store.remove(id).await.unwrap());
    assert_eq!(
        store.status(id).await.unwrap(),
        MfaStatus {
            enrolled: false,
            confirmed_at: None,
            pending: false,
            recovery_codes_remaining: 0
        }
    );
    assert!(matches!(
        store.verify(id, &code(&secret, T0), at(T0)).await,
        Err(MfaStoreError::NotEnrolled)
    ));
    assert!(matches!(
        store
            .spend_recovery_code(id, codes[0].as_str(), at(T0))
            .await,
        Err(MfaStoreError::InvalidRecoveryCode)
    ));
    // Enrolling again (with a new secret, as the server must draw) is allowed once removed.
    store
        .begin_enrolment(id, &new_secret(2), TotpParams::default(), at(T0))
        .await
        .unwrap();
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn bad_inputs_get_clear_errors(pool: PgPool) {
    let store = store(&pool);
    let nobody = Uuid::from_u128(42);
    let refused = store
        .begin_enrolment(nobody, &new_secret(1), TotpParams::default(), at(T0))
        .await;
    assert!(
        matches!(refused, Err(MfaStoreError::UnknownUser)),
        "{refused:?}"
    );
    assert!(matches!(
        store
            .confirm(nobody, EnrolmentId(1), "123456", at(T0), TTL)
            .await,
        Err(MfaStoreError::NoPendingEnrolment)
    ));
    for ttl in [Duration::ZERO, Duration::minutes(-15)] {
        assert!(matches!(
            store
                .confirm(nobody, EnrolmentId(1), "123456", at(T0), ttl)
                .await,
            Err(MfaStoreError::InvalidEnrolmentTtl)
        ));
    }
    let id = user(&pool, 1).await;
    assert!(matches!(
        store
            .begin_enrolment(id, &new_secret(1), TotpParams::default(), at(-1))
            .await,
        Err(MfaStoreError::TimeBeforeEpoch)
    ));
    assert!(matches!(
        store.reencrypt_batch(None, 0, at(T0)).await,
        Err(MfaStoreError::InvalidBatchSize)
    ));
    // Params the code never writes, planted in SQL, are reported as a corrupt row.
    let enrolment = store
        .begin_enrolment(id, &new_secret(1), TotpParams::default(), at(T0))
        .await
        .unwrap();
    sqlx::query("UPDATE mfa_totp SET params = 'SHA1:9:30:1' WHERE user_id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    assert!(matches!(
        store
            .confirm(id, enrolment, &code(&new_secret(1), T0), at(T0), TTL)
            .await,
        Err(MfaStoreError::Corrupt(_))
    ));
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn the_schema_refuses_an_infinite_confirmation_time(pool: PgPool) {
    let store = store(&pool);
    let (id, _) = enrolled(&store, &pool, 1).await;
    for odd in ["infinity", "-infinity"] {
        let refused =
            sqlx::query("UPDATE mfa_totp SET confirmed_at = $2::timestamptz WHERE user_id = $1")
                .bind(id)
                .bind(odd)
                .execute(&pool)
                .await
                .unwrap_err();
        assert_eq!(
            refused.as_database_error().and_then(|e| e.constraint()),
            Some("mfa_totp_finite_times"),
            "{odd}"
        );
    }
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn status_and_verify_agree_that_an_odd_confirmation_time_is_enrolled(pool: PgPool) {
    let store = store(&pool);
    let (id, secret) = enrolled(&store, &pool, 1).await;
    // A writer that bypassed the schema's checks (S2 of the store review).
    sqlx::query("ALTER TABLE mfa_totp DROP CONSTRAINT mfa_totp_finite_times")
        .execute(&pool)
        .await
        .unwrap();
    for (n, odd) in ["infinity", "-infinity"].into_iter().enumerate() {
        sqlx::query("UPDATE mfa_totp SET confirmed_at = $2::timestamptz WHERE user_id = $1")
            .bind(id)
            .bind(odd)
            .execute(&pool)
            .await
            .unwrap();
        let status = store.status(id).await.unwrap();
        assert!(status.enrolled, "{odd}");
        assert!(!status.pending, "{odd}");
        assert_eq!(status.confirmed_at, None, "{odd}");
        let now = T0 + 30 * n as i64;
        assert!(store.verify(id, &code(&secret, now), at(now)).await.is_ok());
    }
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_pending_enrolment_older_than_the_ttl_no_longer_confirms(pool: PgPool) {
    let store = store(&pool);
    let id = user(&pool, 1).await;
    let secret = new_secret(1);
    let enrolment = store
        .begin_enrolment(id, &secret, TotpParams::default(), at(T0))
        .await
        .unwrap();
    let late = T0 + TTL.whole_seconds() + 1;
    assert!(matches!(
        store
            .confirm(id, enrolment, &code(&secret, late), at(late), TTL)
            .await,
        Err(MfaStoreError::EnrolmentExpired)
    ));
    assert!(!store.status(id).await.unwrap().enrolled);
    // Exactly at the limit it still confirms.
    let last = T0 + TTL.whole_seconds();
    store
        .confirm(id, enrolment, &code(&secret, last), at(last), TTL)
        .await
        .unwrap();
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn confirm_refuses_an_enrolment_other_than_the_one_shown(pool: PgPool) {
    let store = store(&pool);
    let id = user(&pool, 1).await;
    let shown_to_victim = store
        .begin_enrolment(id, &new_secret(1), TotpParams::default(), at(T0))
        .await
        .unwrap();
    // Someone else (holding the password) restarts the enrolment with their own secret.
    let theirs = new_secret(2);
    store
        .begin_enrolment(id, &theirs, TotpParams::default(), at(T0 + 1))
        .await
        .unwrap();
    // A confirmation that carries the number the victim was shown does not confirm the
    // replacement, even with a code of the replacement's secret.
    assert!(matches!(
        store
            .confirm(id, shown_to_victim, &code(&theirs, T0 + 2), at(T0 + 2), TTL)
            .await,
        Err(MfaStoreError::NoPendingEnrolment)
    ));
    assert!(store.status(id).await.unwrap().pending);
}

/// A store of `realm` whose recovery ring holds `versions` (each with its own key).
fn store_with_recovery(pool: &PgPool, realm: &str, versions: &[u32]) -> PgMfaStore {
    let keys = versions
        .iter()
        .map(|&v| RecoveryKey::new(v, &key(v as u8 * 20)).unwrap())
        .collect();
    PgMfaStore::new(
        pool.clone(),
        ring(&[key(0)]),
        Arc::new(RecoveryKeyRing::new(keys).unwrap()),
        realm,
    )
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn recovery_codes_are_hashed_by_the_store_with_its_newest_key_realm_and_user(pool: PgPool) {
    let store = store_with_recovery(&pool, REALM, &[7, 3]);
    let (id, _) = enrolled(&store, &pool, 1).await;
    let codes = recovery_codes(1, 3);
    store
        .replace_recovery_codes(id, &codes, at(T0))
        .await
        .unwrap();
    let versions: Vec<i64> = sqlx::query_scalar(
        "SELECT DISTINCT key_version FROM mfa_recovery_codes WHERE user_id = $1",
    )
    .bind(id)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(versions, [7]);
    // The stored digests are exactly the ones the store's ring finds for this realm and user.
    let other_realm = store_with_recovery(&pool, "another-realm", &[7, 3]);
    assert!(matches!(
        other_realm
            .spend_recovery_code(id, codes[0].as_str(), at(T0))
            .await,
        Err(MfaStoreError::InvalidRecoveryCode)
    ));
    store
        .spend_recovery_code(id, codes[0].as_str(), at(T0))
        .await
        .unwrap();
    // After a rotation (a new version in front) the older codes still spend.
    let rotated = store_with_recovery(&pool, REALM, &[8, 7, 3]);
    rotated
        .spend_recovery_code(id, codes[1].as_str(), at(T0))
        .await
        .unwrap();
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn stored_recovery_key_versions_missing_from_the_ring_are_reported(pool: PgPool) {
    let v1 = store_with_recovery(&pool, REALM, &[1]);
    let (alice, _) = enrolled(&v1, &pool, 1).await;
    let (bob, _) = enrolled(&v1, &pool, 2).await;
    v1.replace_recovery_codes(alice, &recovery_codes(1, 3), at(T0))
        .await
        .unwrap();
    let v2 = store_with_recovery(&pool, REALM, &[2, 1]);
    let bobs = recovery_codes(2, 3);
    v2.replace_recovery_codes(bob, &bobs, at(T0)).await.unwrap();
    assert_eq!(
        v2.unknown_recovery_key_versions().await.unwrap(),
        Vec::<u32>::new()
    );
    assert_eq!(v1.unknown_recovery_key_versions().await.unwrap(), [2]);
    // Version 1 dropped too early: Alice's codes are reported, and spending says why.
    let v2_only = store_with_recovery(&pool, REALM, &[2]);
    assert_eq!(v2_only.unknown_recovery_key_versions().await.unwrap(), [1]);
    assert!(matches!(
        v2_only
            .spend_recovery_code(alice, recovery_codes(1, 3)[0].as_str(), at(T0))
            .await,
        Err(MfaStoreError::UnknownRecoveryKeyVersion(1))
    ));
    // Spent codes need no key: once Bob's set is spent, version 2 is no longer needed.
    for code in &bobs {
        v2.spend_recovery_code(bob, code.as_str(), at(T0))
            .await
            .unwrap();
    }
    assert_eq!(
        v1.unknown_recovery_key_versions().await.unwrap(),
        Vec::<u32>::new()
    );
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn verify_refuses_a_time_far_from_the_database_clock_when_bounded(pool: PgPool) {
    let unbounded = store(&pool);
    let (id, secret) = enrolled(&unbounded, &pool, 1).await;
    let bounded = unbounded
        .clone()
        .with_max_clock_difference(std::time::Duration::from_secs(60));
    // A replica whose clock is stuck at T0 (long before the database's now): refused, and the
    // step is not recorded.
    let lagging = bounded.verify(id, &code(&secret, T0), at(T0)).await;
    assert!(
        matches!(lagging, Err(MfaStoreError::ClockSkew { difference_secs }) if difference_secs < -60.0),
        "{lagging:?}"
    );
    // Not recorded: the same code still verifies where the time is not bounded.
    unbounded
        .verify(id, &code(&secret, T0), at(T0))
        .await
        .unwrap();
    // A replica with the right time is served.
    let now = OffsetDateTime::now_utc();
    bounded
        .verify(id, &code(&secret, now.unix_timestamp()), now)
        .await
        .unwrap();
    // Without a bound the store follows the time it is given (the other tests rely on it).
    let later = now.unix_timestamp() + 600;
    unbounded
        .verify(id, &code(&secret, later), at(later))
        .await
        .unwrap();
}

/// Waits until another session of this database waits for a row lock: the store's write,
/// queued behind the test's open transaction, after the store read the row.
async fn until_a_write_waits_for_the_row(pool: &PgPool) {
    until_writes_wait(pool, 1).await;
}

/// Waits until `count` sessions of this database wait for a lock.
async fn until_writes_wait(pool: &PgPool, count: i64) {
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
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the store's write never waited for the row lock");
}

/// In `tx`: the row's secret re-sealed under the newest key of `rotated`, as
/// `reencrypt_batch` writes it (compare-and-swap on the ciphertext).
async fn reencrypt_in(tx: &mut sqlx::PgConnection, rotated: &KeyRing, id: Uuid) {
    let old: String =
        sqlx::query_scalar("SELECT secret FROM mfa_totp WHERE user_id = $1 FOR UPDATE")
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    let swap = portcullis_sealed::reencrypt(
        rotated,
        Binding::new(Purpose::TotpSecret, id),
        &old,
        T0 as u64,
    )
    .unwrap()
    .unwrap();
    let done = sqlx::query(
        "UPDATE mfa_totp SET secret = $3, secret_key_id = $4 WHERE user_id = $1 AND secret = $2",
    )
    .bind(id)
    .bind(&swap.old)
    .bind(&swap.new)
    .bind(rotated.current_key_id().as_str())
    .execute(&mut *tx)
    .await
    .unwrap();
    assert_eq!(done.rows_affected(), 1);
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_reencryption_between_verifys_read_and_write_does_not_refuse_the_code(pool: PgPool) {
    let (id, secret) = enrolled(&store(&pool), &pool, 1).await;
    let rotated = ring(&[key(32), key(0)]);
    let replica = store_with(&second_pool(&pool).await, rotated.clone());
    // The row is locked (as re-encryption's UPDATE will lock it) before verify starts: its
    // read sees the old ciphertext, its write queues behind the re-encryption.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM mfa_totp WHERE user_id = $1 FOR UPDATE")
        .bind(id)
        .execute(&mut *tx)
        .await
        .unwrap();
    let verifying = tokio::spawn({
        let code = code(&secret, T0);
        async move { replica.verify(id, &code, at(T0)).await }
    });
    until_a_write_waits_for_the_row(&pool).await;
    reencrypt_in(&mut tx, &rotated, id).await;
    tx.commit().await.unwrap();
    let step = verifying.await.unwrap().unwrap();
    assert_eq!(step, TotpParams::default().time_step(T0 as u64));
    let (label, last): (String, i64) =
        sqlx::query_as("SELECT secret_key_id, last_used_step FROM mfa_totp WHERE user_id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(label, rotated.current_key_id().as_str());
    assert_eq!(last as u64, step.value());
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_reencryption_between_confirms_read_and_write_does_not_refuse_the_code(pool: PgPool) {
    let id = user(&pool, 1).await;
    let secret = new_secret(1);
    let enrolment = store(&pool)
        .begin_enrolment(id, &secret, TotpParams::default(), at(T0))
        .await
        .unwrap();
    let rotated = ring(&[key(32), key(0)]);
    let replica = store_with(&second_pool(&pool).await, rotated.clone());
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM mfa_totp WHERE user_id = $1 FOR UPDATE")
        .bind(id)
        .execute(&mut *tx)
        .await
        .unwrap();
    let confirming = tokio::spawn({
        let code = code(&secret, T0);
        async move { replica.confirm(id, enrolment, &code, at(T0), TTL).await }
    });
    until_a_write_waits_for_the_row(&pool).await;
    reencrypt_in(&mut tx, &rotated, id).await;
    tx.commit().await.unwrap();
    confirming.await.unwrap().unwrap();
    assert!(store(&pool).status(id).await.unwrap().enrolled);
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_verify_whose_enrolment_was_replaced_meanwhile_is_refused(pool: PgPool) {
    let (id, secret) = enrolled(&store(&pool), &pool, 1).await;
    let replica = store(&second_pool(&pool).await);
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM mfa_totp WHERE user_id = $1 FOR UPDATE")
        .bind(id)
        .execute(&mut *tx)
        .await
        .unwrap();
    let verifying = tokio::spawn({
        let code = code(&secret, T0);
        async move { replica.verify(id, &code, at(T0)).await }
    });
    until_a_write_waits_for_the_row(&pool).await;
    // Meanwhile the row becomes another, confirmed enrolment (a new number and secret) whose
    // last used step is older than the code's: only the enrolment number tells them apart.
    let other = portcullis_sealed::seal(
        &KeyRing::new(&[key(0)]).unwrap(),
        Binding::new(Purpose::TotpSecret, id),
        new_secret(2).as_bytes(),
        T0 as u64,
    );
    sqlx::query(
        "UPDATE mfa_totp SET enrolment = nextval('mfa_totp_enrolment_seq'), secret = $2, \
         last_used_step = 0, confirmed_at = $3 WHERE user_id = $1",
    )
    .bind(id)
    .bind(&other)
    .bind(at(T0))
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert!(matches!(
        verifying.await.unwrap(),
        Err(MfaStoreError::Replayed)
    ));
    let last: i64 = sqlx::query_scalar("SELECT last_used_step FROM mfa_totp WHERE user_id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(last, 0, "the new enrolment's step is untouched");
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_confirmation_racing_a_restarted_enrolment_never_both_win(pool: PgPool) {
    let a = store(&pool);
    let b = store(&second_pool(&pool).await);
    for n in 1..=10u8 {
        let id = user(&pool, u128::from(n)).await;
        let shown = new_secret(n);
        let enrolment = a
            .begin_enrolment(id, &shown, TotpParams::default(), at(T0))
            .await
            .unwrap();
        let (typed, other) = (code(&shown, T0 + 1), new_secret(n + 100));
        let (confirmed, restarted) = tokio::join!(
            a.confirm(id, enrolment, &typed, at(T0 + 1), TTL),
            b.begin_enrolment(id, &other, TotpParams::default(), at(T0 + 1))
        );
        let status = a.status(id).await.unwrap();
        match (&confirmed, &restarted) {
            (Ok(_), Err(MfaStoreError::AlreadyEnrolled)) => assert!(status.enrolled),
            (Err(MfaStoreError::NoPendingEnrolment), Ok(_)) => {
                assert!(!status.enrolled && status.pending)
            }
            other => panic!("round {n}: {other:?}"),
        }
    }
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn the_compare_and_set_statements_hold_under_a_serializable_default(pool: PgPool) {
    sqlx::query(
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET default_transaction_isolation \
         = ''serializable''', current_database()); END $$",
    )
    .execute(&pool)
    .await
    .unwrap();
    // New connections pick the database's default up.
    let (one, two) = (second_pool(&pool).await, second_pool(&pool).await);
    let level: String = sqlx::query_scalar("SHOW default_transaction_isolation")
        .fetch_one(&one)
        .await
        .unwrap();
    assert_eq!(level, "serializable");
    let (a, b) = (store(&one), store(&two));
    let (id, secret) = enrolled(&a, &pool, 1).await;
    let codes = recovery_codes(1, 10);
    a.replace_recovery_codes(id, &codes, at(T0)).await.unwrap();
    // Both replicas read, then both writes queue behind a lock the test holds: a real race
    // on the one statement that decides.
    for round in 0..3 {
        let now = T0 + 30 * round;
        let typed = code(&secret, now);
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("SELECT 1 FROM mfa_totp WHERE user_id = $1 FOR UPDATE")
            .bind(id)
            .execute(&mut *tx)
            .await
            .unwrap();
        let left = tokio::spawn({
            let (a, typed) = (a.clone(), typed.clone());
            async move { a.verify(id, &typed, at(now)).await }
        });
        let right = tokio::spawn({
            let b = b.clone();
            async move { b.verify(id, &typed, at(now)).await }
        });
        until_writes_wait(&pool, 2).await;
        tx.rollback().await.unwrap();
        let (left, right) = (left.await.unwrap(), right.await.unwrap());
        let refused = match (&left, &right) {
            (Ok(_), refused) | (refused, Ok(_)) => refused,
            other => panic!("round {round}: {other:?}"),
        };
        assert!(
            matches!(refused, Err(MfaStoreError::Replayed)),
            "round {round}: {refused:?}"
        );

        let code = codes[round as usize].as_str().to_owned();
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("SELECT 1 FROM mfa_recovery_codes WHERE user_id = $1 FOR UPDATE")
            .bind(id)
            .execute(&mut *tx)
            .await
            .unwrap();
        let left = tokio::spawn({
            let (a, code) = (a.clone(), code.clone());
            async move { a.spend_recovery_code(id, &code, at(now)).await }
        });
        let right = tokio::spawn({
            let b = b.clone();
            async move { b.spend_recovery_code(id, &code, at(now)).await }
        });
        until_writes_wait(&pool, 2).await;
        tx.rollback().await.unwrap();
        let (left, right) = (left.await.unwrap(), right.await.unwrap());
        let refused = match (&left, &right) {
            (Ok(()), refused) | (refused, Ok(())) => refused,
            other => panic!("round {round}: {other:?}"),
        };
        assert!(
            matches!(refused, Err(MfaStoreError::InvalidRecoveryCode)),
            "round {round}: {refused:?}"
        );
    }
}

#[sqlx::test(migrations = "../authserver/migrations")]
async fn a_sealed_errors_text_names_no_user(pool: PgPool) {
    let store = store(&pool);
    let (alice, alices) = enrolled(&store, &pool, 1).await;
    let (bob, _) = enrolled(&store, &pool, 2).await;
    sqlx::query("UPDATE mfa_totp SET secret = (SELECT secret FROM mfa_totp WHERE user_id = $2) WHERE user_id = $1")
        .bind(alice)
        .bind(bob)
        .execute(&pool)
        .await
        .unwrap();
    let refused = store
        .verify(alice, &code(&alices, T0), at(T0))
        .await
        .unwrap_err();
    let text = refused.to_string();
    assert_eq!(
        text,
        "the stored TOTP secret cannot be opened (moved_ciphertext)"
    );
    assert!(!text.contains(&alice.to_string()) && !text.contains(&bob.to_string()));
}
