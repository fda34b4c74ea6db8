//! No silent key loss, against PostgreSQL: the first start records the fingerprints of the
//! pepper versions and Fernet keys; a later start whose keys do not cover them is refused.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use portcullis_authserver::auth::keys::Pepper;
use portcullis_authserver::startup::{StartupError, keys_check, secrets_dir};
use portcullis_authserver::store::Db;
use portcullis_authserver::wiring;
use sqlx::PgPool;

use crate::support::settings;

fn pepper(version: &str, byte: u8) -> Pepper {
    Pepper {
        version: version.to_owned(),
        key: vec![byte; 32],
    }
}

/// A complete set of secrets with these peppers and Fernet keys, and no audit key
/// fingerprints (the audit key's own tests set them with [`with_audit_key`]).
fn secrets(peppers: Vec<Pepper>, fernet_keys: Vec<Vec<u8>>) -> secrets_dir::Secrets {
    let dir = tempfile::tempdir().unwrap();
    let random = wiring::os_random();
    let (mut secrets, _) = secrets_dir::load(
        dir.path(),
        &settings(|_| {}),
        Some((&random, wiring::system_clock().now())),
    )
    .unwrap();
    secrets.peppers = peppers;
    secrets.fernet_keys = fernet_keys;
    secrets.audit_key_lines = Vec::new();
    secrets
}

/// `secrets` whose `audit-key` lines are these versioned keys.
fn with_audit_key(mut secrets: secrets_dir::Secrets, lines: Vec<Pepper>) -> secrets_dir::Secrets {
    secrets.audit_key_lines = lines;
    secrets
}

async fn rows(pool: &PgPool) -> Vec<(String, String)> {
    sqlx::query_as("SELECT kind, key_id FROM key_fingerprints ORDER BY kind, key_id")
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn verify(pool: &PgPool, secrets: &secrets_dir::Secrets) -> Result<Vec<String>, String> {
    keys_check::verify(
        &Db::from_pool(pool.clone()),
        secrets,
        wiring::system_clock().now(),
    )
    .await
    .map(|new| {
        new.iter()
            .map(|k| format!("{} {}", k.kind.as_str(), k.key_id))
            .collect()
    })
    .map_err(|e| {
        assert!(matches!(e, StartupError::KeysMismatch(_)), "{e}");
        assert_eq!(e.reason(), "KeysMismatch");
        e.to_string()
    })
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn the_first_start_records_every_key_and_the_same_keys_start_again(pool: PgPool) {
    let keys = secrets(vec![pepper("v2", 2), pepper("v1", 1)], vec![vec![7; 32]]);
    let recorded = verify(&pool, &keys).await.unwrap();
    assert_eq!(recorded.len(), 3, "{recorded:?}");
    let stored = rows(&pool).await;
    assert_eq!(stored.len(), 3);
    assert_eq!(stored[0].0, "fernet");
    assert_eq!(stored[0].1.len(), 16);
    assert_eq!(
        &stored[1..],
        [
            ("pepper".to_owned(), "v1".to_owned()),
            ("pepper".to_owned(), "v2".to_owned())
        ]
    );
    // Nothing of the keys is stored: no key bytes, nor any base64 of them.
    let (fingerprints,): (Vec<Vec<u8>>,) =
        sqlx::query_as("SELECT array_agg(fingerprint) FROM key_fingerprints")
            .fetch_one(&pool)
            .await
            .unwrap();
    for fingerprint in fingerprints {
        for byte in [1u8, 2, 7] {
            assert_ne!(fingerprint, vec![byte; 32]);
        }
    }
    assert_eq!(verify(&pool, &keys).await.unwrap(), Vec::<String>::new());
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn another_pepper_under_a_recorded_version_is_refused_and_changes_nothing(pool: PgPool) {
    verify(&pool, &secrets(vec![pepper("v1", 1)], vec![vec![7; 32]]))
        .await
        .unwrap();
    let error = verify(&pool, &secrets(vec![pepper("v1", 9)], vec![vec![7; 32]]))
        .await
        .unwrap_err();
    assert!(
        error.contains("pepper version v1 is another key"),
        "{error}"
    );
    assert!(error.contains("restore the original v1 line"), "{error}");
    // The original keys still start: the refused start recorded nothing.
    assert_eq!(
        verify(&pool, &secrets(vec![pepper("v1", 1)], vec![vec![7; 32]]))
            .await
            .unwrap(),
        Vec::<String>::new()
    );
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn rotation_adds_keys_and_removing_a_recorded_one_is_refused_naming_it(pool: PgPool) {
    verify(&pool, &secrets(vec![pepper("v1", 1)], vec![vec![7; 32]]))
        .await
        .unwrap();
    // Rotation: a new current pepper and a new encrypting Fernet key, the old ones kept.
    let rotated = secrets(
        vec![pepper("v2", 2), pepper("v1", 1)],
        vec![vec![8; 32], vec![7; 32]],
    );
    let added = verify(&pool, &rotated).await.unwrap();
    assert_eq!(added.len(), 2, "{added:?}");
    assert_eq!(added[0], "pepper v2");
    assert!(added[1].starts_with("fernet "), "{added:?}");
    assert_eq!(rows(&pool).await.len(), 4);
    // Dropping the old pepper and the old Fernet key while the database remembers them.
    let error = verify(&pool, &secrets(vec![pepper("v2", 2)], vec![vec![8; 32]]))
        .await
        .unwrap_err();
    assert!(error.contains("pepper version v1 ("), "{error}");
    assert!(error.contains("is missing"), "{error}");
    let old_fernet = rows(&pool)
        .await
        .into_iter()
        .find(|(kind, id)| kind == "fernet" && !added[1].ends_with(id.as_str()))
        .unwrap()
        .1;
    assert!(
        error.contains(&format!("Fernet key {old_fernet} (")),
        "{error}"
    );
    assert!(
        !error.contains(added[1].trim_start_matches("fernet ")),
        "{error}"
    );
    assert!(verify(&pool, &rotated).await.is_ok());
}

/// Two replicas with different keys start at once on an empty database: one starts, the
/// other is refused and leaves nothing recorded, so the winner starts again.
async fn race(pool: &PgPool, a: &secrets_dir::Secrets, b: &secrets_dir::Secrets) {
    for _ in 0..10 {
        sqlx::query("DELETE FROM key_fingerprints")
            .execute(pool)
            .await
            .unwrap();
        let (first, second) = tokio::join!(verify(pool, a), verify(pool, b));
        assert!(
            first.is_ok() != second.is_ok(),
            "exactly one starts: {first:?} {second:?}"
        );
        let winner = if first.is_ok() { a } else { b };
        assert_eq!(
            verify(pool, winner).await,
            Ok(Vec::new()),
            "the refused start recorded its keys"
        );
        assert_eq!(
            rows(pool).await.len(),
            winner.peppers.len() + winner.fernet_keys.len()
        );
    }
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn two_replicas_starting_together_with_different_keys_cannot_both_start(pool: PgPool) {
    // Another pepper under the same version, and another Fernet key.
    let a = secrets(vec![pepper("v1", 1)], vec![vec![7; 32]]);
    let b = secrets(vec![pepper("v1", 2)], vec![vec![8; 32]]);
    race(&pool, &a, &b).await;
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn two_replicas_starting_together_with_different_fernet_rings_cannot_both_start(
    pool: PgPool,
) {
    // The same pepper: only the Fernet keys differ, so neither has a conflicting row.
    let a = secrets(vec![pepper("v1", 1)], vec![vec![7; 32]]);
    let b = secrets(vec![pepper("v1", 1)], vec![vec![8; 32]]);
    race(&pool, &a, &b).await;
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn replicas_listing_the_same_keys_in_another_order_both_start(pool: PgPool) {
    // Mid-rotation one pod may see the new Fernet key first, another second.
    let a = secrets(
        vec![pepper("v2", 2), pepper("v1", 1)],
        vec![vec![8; 32], vec![7; 32]],
    );
    let b = secrets(
        vec![pepper("v1", 1), pepper("v2", 2)],
        vec![vec![7; 32], vec![8; 32]],
    );
    for _ in 0..5 {
        sqlx::query("DELETE FROM key_fingerprints")
            .execute(&pool)
            .await
            .unwrap();
        let (first, second) = tokio::join!(verify(&pool, &a), verify(&pool, &b));
        assert!(first.is_ok() && second.is_ok(), "{first:?} {second:?}");
        assert_eq!(rows(&pool).await.len(), 4);
    }
}

#[sqlx::test(migrator = "portcullis_authserver::store::MIGRATOR")]
async fn an_audit_key_changed_or_missing_under_a_recorded_version_stops_the_start(pool: PgPool) {
    let base = || secrets(vec![pepper("v1", 1)], vec![vec![7; 32]]);
    let recorded = verify(&pool, &with_audit_key(base(), vec![pepper("a1", 5)]))
        .await
        .unwrap();
    assert!(recorded.contains(&"audit a1".to_owned()), "{recorded:?}");
    let error = verify(&pool, &with_audit_key(base(), vec![pepper("a1", 6)]))
        .await
        .unwrap_err();
    assert!(
        error.contains("audit key version a1 is another key"),
        "{error}"
    );
    let error = verify(&pool, &with_audit_key(base(), vec![pepper("a2", 6)]))
        .await
        .unwrap_err();
    assert!(error.contains("audit key version a1 ("), "{error}");
    assert!(error.contains("`audit-key` file"), "{error}");
    // Rotation keeps the old version after the new one: it starts.
    let rotated = with_audit_key(base(), vec![pepper("a2", 6), pepper("a1", 5)]);
    assert_eq!(verify(&pool, &rotated).await.unwrap(), vec!["audit a2"]);
}

#[test]
fn keys_fingerprint_reads_a_secrets_dir_as_the_database_records_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pepper"),
        format!("v1:{}\n", STANDARD.encode([1u8; 32])),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("fernet-keys"),
        format!("{}\n", URL_SAFE.encode([7u8; 32])),
    )
    .unwrap();
    let (peppers, fernet) = secrets_dir::load_data_keys(dir.path()).unwrap();
    assert_eq!(peppers[0].version, "v1");
    assert_eq!(fernet, [vec![7u8; 32]]);
    std::fs::remove_file(dir.path().join("fernet-keys")).unwrap();
    let error = secrets_dir::load_data_keys(dir.path()).unwrap_err();
    assert!(
        error.to_string().contains("secret fernet-keys is missing"),
        "{error}"
    );
}
