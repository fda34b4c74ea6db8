//! The second factor's store, built at start on PostgreSQL: TOTP secrets sealed with the
//! secrets dir's `fernet-keys`, recovery codes hashed with keys derived from the peppers.
//!
//! Recovery-code hashes carry a numeric key version for as long as they exist, while pepper
//! versions are text. The mapping between them is explicit and stable: pepper `N` (the form
//! the operator writes) and `vN` are both recovery key version `N`, never a position in the
//! pepper file (which shifts when a pepper is added in front and would silently void every
//! stored code). The key itself is derived
//! from the pepper under the mfa crate's own label (`RecoveryKey::new`), so the password
//! pepper's other uses never produce a value keyed like a recovery-code hash.

use std::sync::Arc;

use portcullis_mfa::{PgMfaStore, RecoveryKey, RecoveryKeyRing};
use portcullis_sealed::KeyRing;
use sqlx::PgPool;

use super::StartupError;
use super::secrets_dir::{Secrets, files};
use crate::auth::keys::Pepper;

/// The recovery key version of pepper version `version`: `N` and `vN` (N a decimal number
/// without leading zeros, 1 to 4294967295) are both `N`.
///
/// # Errors
/// A message naming the version when it has another form: such a pepper cannot key recovery
/// codes until it is renamed, and the server says so rather than guessing a number.
pub fn recovery_key_version(version: &str) -> Result<u32, String> {
    let refused = || {
        format!(
            "pepper version {version:?} has no recovery-code key version: MFA needs pepper versions that are a number N or vN (1, 2, ... or v1, v2, ...; no leading zeros)"
        )
    };
    let digits = version.strip_prefix('v').unwrap_or(version);
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if !canonical {
        return Err(refused());
    }
    digits.parse::<u32>().map_err(|_| refused())
}

/// The recovery-code key ring from the peppers, the current one first (it hashes new codes).
///
/// # Errors
/// [`StartupError::Secrets`] naming the pepper file when a version does not map, a key is too
/// short, or two versions map to the same number.
pub fn recovery_keys(peppers: &[Pepper]) -> Result<RecoveryKeyRing, StartupError> {
    let invalid = |reason: String| {
        StartupError::Secrets(super::secrets_dir::SecretsError::Invalid {
            name: files::PEPPER.to_owned(),
            reason,
        })
    };
    let keys = peppers
        .iter()
        .map(|pepper| {
            let version = recovery_key_version(&pepper.version).map_err(invalid)?;
            RecoveryKey::new(version, &pepper.key)
                .map_err(|e| invalid(format!("pepper {}: {e}", pepper.version)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecoveryKeyRing::new(keys).map_err(|e| invalid(e.to_string()))
}

/// The store of `realm` over `pool`, sealing with `fernet-keys` and hashing recovery codes
/// with keys derived from the peppers.
///
/// # Errors
/// [`StartupError::Secrets`] when the Fernet keys or the peppers cannot be used.
pub fn build(pool: PgPool, secrets: &Secrets, realm: &str) -> Result<PgMfaStore, StartupError> {
    build_from_keys(pool, &secrets.peppers, &secrets.fernet_keys, realm)
}

/// [`build`] from the two key files alone (`keys reencrypt` reads no other secret).
///
/// # Errors
/// [`StartupError::Secrets`] when the Fernet keys or the peppers cannot be used.
pub fn build_from_keys(
    pool: PgPool,
    peppers: &[Pepper],
    fernet_keys: &[Vec<u8>],
    realm: &str,
) -> Result<PgMfaStore, StartupError> {
    let sealing = KeyRing::new(fernet_keys).map_err(|e| {
        StartupError::Secrets(super::secrets_dir::SecretsError::Invalid {
            name: files::FERNET_KEYS.to_owned(),
            reason: e.to_string(),
        })
    })?;
    let recovery = recovery_keys(peppers)?;
    Ok(PgMfaStore::new(
        pool,
        Arc::new(sealing),
        Arc::new(recovery),
        realm,
    ))
}

/// What `keys reencrypt` did, over every batch.
#[derive(Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReencryptTotals {
    /// Batches run.
    pub batches: u32,
    /// Rows read that were labelled with a key other than the newest.
    pub examined: u32,
    /// Rows re-sealed under the newest key.
    pub reencrypted: u32,
    /// Rows already under the newest key whose label was fixed.
    pub relabelled: u32,
    /// Rows changed meanwhile (left as they are).
    pub raced: u32,
    /// Rows that do not open, with the reason.
    pub failed: Vec<ReencryptFailure>,
}

/// A row `keys reencrypt` could not open.
#[derive(Debug, PartialEq, Eq, serde::Serialize)]
pub struct ReencryptFailure {
    /// Its user.
    pub user_id: uuid::Uuid,
    /// Why (a stable reason, never key material).
    pub reason: &'static str,
}

/// Re-seals every TOTP secret sealed under an older Fernet key with the newest one, `batch`
/// rows at a time (each batch bounded, the cursor moving on by user id), until a batch finds
/// nothing more.
///
/// # Errors
/// The store's error: an invalid batch size (0) or a database failure (rows already written
/// stay written; a re-run is safe).
pub async fn reencrypt_all(
    store: &PgMfaStore,
    batch: u32,
    now: time::OffsetDateTime,
) -> Result<ReencryptTotals, portcullis_mfa::MfaStoreError> {
    let mut totals = ReencryptTotals::default();
    let mut after = None;
    loop {
        let report = store.reencrypt_batch(after, batch, now).await?;
        totals.batches += 1;
        totals.examined += report.examined;
        totals.reencrypted += report.reencrypted;
        totals.relabelled += report.relabelled;
        totals.raced += report.raced;
        totals.failed.extend(
            report
                .failed
                .into_iter()
                .map(|(user_id, reason)| ReencryptFailure { user_id, reason }),
        );
        match report.next {
            Some(next) => after = Some(next),
            None => return Ok(totals),
        }
    }
}

/// Refuses the start when stored, unspent recovery codes carry a key version the ring lacks:
/// their users' codes would silently stop working (a pepper removed too early, or a restore
/// beside the wrong secrets).
///
/// # Errors
/// [`StartupError::RecoveryKeysMissing`] naming the missing versions; [`StartupError::Dependency`]
/// when the database cannot be read.
pub async fn check_recovery_key_versions(store: &PgMfaStore) -> Result<(), StartupError> {
    let unknown = store
        .unknown_recovery_key_versions()
        .await
        .map_err(|e| StartupError::Dependency(format!("cannot read the recovery codes: {e}")))?;
    if unknown.is_empty() {
        return Ok(());
    }
    Err(StartupError::RecoveryKeysMissing(
        unknown.iter().map(|v| format!("v{v}")).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pepper(version: &str) -> Pepper {
        Pepper {
            version: version.to_owned(),
            key: vec![7; 32],
        }
    }

    #[test]
    fn pepper_vn_maps_to_recovery_key_version_n() {
        assert_eq!(recovery_key_version("v1"), Ok(1));
        assert_eq!(recovery_key_version("v42"), Ok(42));
        assert_eq!(recovery_key_version("v4294967295"), Ok(u32::MAX));
    }

    #[test]
    fn pepper_n_as_the_operator_writes_it_maps_to_recovery_key_version_n() {
        assert_eq!(recovery_key_version("1"), Ok(1));
        assert_eq!(recovery_key_version("42"), Ok(42));
        assert_eq!(recovery_key_version("4294967295"), Ok(u32::MAX));
    }

    #[test]
    fn pepper_versions_of_another_form_are_refused_by_name() {
        for version in [
            "",
            "0",
            "01",
            "vv1",
            "1v",
            "-1",
            "+1",
            " 1",
            "4294967296",
            "v",
            "v0",
            "v01",
            "v1a",
            "V1",
            "2026-rot",
            "v4294967296",
        ] {
            let error = recovery_key_version(version).expect_err(version);
            assert!(error.contains(&format!("{version:?}")), "{error}");
        }
    }

    #[test]
    fn the_current_pepper_hashes_new_codes_and_older_ones_stay_in_the_ring() {
        let ring = recovery_keys(&[pepper("v3"), pepper("v1")]).expect("ring");
        assert!(ring.contains(3) && ring.contains(1) && !ring.contains(2));
        let code = portcullis_mfa::RecoveryCode::from_random([1; 10]);
        assert_eq!(ring.hash("realm", "user", &code).version(), 3);
    }

    #[test]
    fn a_pepper_file_without_mappable_versions_stops_the_start() {
        let error = recovery_keys(&[pepper("v1"), pepper("legacy")]).expect_err("refused");
        let message = error.to_string();
        assert!(message.contains("\"legacy\""), "{message}");
        assert!(message.contains(files::PEPPER), "names the file: {message}");
        assert!(
            message.contains("a number N or vN"),
            "states the rule: {message}"
        );
    }

    #[test]
    fn the_operators_numbered_peppers_build_a_ring() {
        let ring = recovery_keys(&[pepper("2"), pepper("1")]).expect("ring");
        assert!(ring.contains(2) && ring.contains(1));
        let code = portcullis_mfa::RecoveryCode::from_random([1; 10]);
        assert_eq!(ring.hash("realm", "user", &code).version(), 2);
    }

    #[test]
    fn n_and_vn_naming_the_same_number_are_refused_together() {
        assert!(recovery_keys(&[pepper("1"), pepper("v1")]).is_err());
    }

    fn store(pool: &PgPool, peppers: &[Pepper]) -> PgMfaStore {
        let sealing = KeyRing::new(&[vec![9; 32]]).expect("fernet ring");
        let recovery = recovery_keys(peppers).expect("recovery ring");
        PgMfaStore::new(pool.clone(), Arc::new(sealing), Arc::new(recovery), "realm")
    }

    /// A user with TOTP and recovery codes hashed under the ring of `peppers`.
    async fn user_with_codes(pool: &PgPool, peppers: &[Pepper]) {
        let user = uuid::Uuid::from_u128(1);
        let now = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time");
        sqlx::query(
            "INSERT INTO users (id, email, email_canonical, password_hash, pepper_version, created_at, updated_at) \
             VALUES ($1, 'a@example.com', 'a@example.com', 'x', 'v1', $2, $2)",
        )
        .bind(user)
        .bind(now)
        .execute(pool)
        .await
        .expect("user");
        let store = store(pool, peppers);
        let secret = portcullis_mfa::TotpSecret::generate([5; portcullis_mfa::SECRET_LEN]);
        let params = portcullis_mfa::TotpParams::default();
        let id = store
            .begin_enrolment(user, &secret, params, now)
            .await
            .expect("begin");
        let code = portcullis_mfa::generate(&params, &secret, 1_800_000_000);
        store
            .confirm(user, id, &code, now, time::Duration::minutes(15))
            .await
            .expect("confirm");
        let codes = {
            let random: Vec<u8> = (0..20).collect();
            portcullis_mfa::generate_recovery_codes(2, &random).expect("codes")
        };
        store
            .replace_recovery_codes(user, &codes, now)
            .await
            .expect("codes stored");
    }

    fn store_sealing_with(pool: &PgPool, fernet: &[Vec<u8>]) -> PgMfaStore {
        build_from_keys(pool.clone(), &[pepper("1")], fernet, "realm").expect("store")
    }

    #[sqlx::test(migrator = "crate::store::MIGRATOR")]
    async fn reencrypting_moves_secrets_under_an_old_key_to_the_newest_in_batches(pool: PgPool) {
        let (old, new) = (vec![1u8; 32], vec![2u8; 32]);
        let now = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time");
        let params = portcullis_mfa::TotpParams::default();
        let mut secrets = Vec::new();
        for n in 1..=3u128 {
            let user = uuid::Uuid::from_u128(n);
            sqlx::query(
                "INSERT INTO users (id, email, email_canonical, password_hash, pepper_version, created_at, updated_at) \
                 VALUES ($1, $2, $2, 'x', 'v1', $3, $3)",
            )
            .bind(user)
            .bind(format!("u{n}@example.com"))
            .bind(now)
            .execute(&pool)
            .await
            .expect("user");
            let secret =
                portcullis_mfa::TotpSecret::generate([n as u8; portcullis_mfa::SECRET_LEN]);
            let id = store_sealing_with(&pool, std::slice::from_ref(&old))
                .begin_enrolment(user, &secret, params, now)
                .await
                .expect("begin");
            let code = portcullis_mfa::generate(&params, &secret, 1_800_000_000);
            store_sealing_with(&pool, std::slice::from_ref(&old))
                .confirm(user, id, &code, now, time::Duration::minutes(15))
                .await
                .expect("confirm");
            secrets.push((user, secret));
        }
        let rotated = store_sealing_with(&pool, &[new.clone(), old.clone()]);
        let totals = reencrypt_all(&rotated, 2, now).await.expect("reencrypt");
        assert_eq!(totals.reencrypted, 3, "{totals:?}");
        assert!(totals.batches >= 2, "bounded batches: {totals:?}");
        assert!(totals.failed.is_empty());
        // The old key can go: every secret opens under the newest alone.
        let newest_only = store_sealing_with(&pool, &[new]);
        let later = now + time::Duration::seconds(60);
        for (user, secret) in &secrets {
            let code = portcullis_mfa::generate(&params, secret, 1_800_000_060);
            newest_only
                .verify(*user, &code, later)
                .await
                .expect("opens under the newest key");
        }
        let again = reencrypt_all(&rotated, 2, now).await.expect("second run");
        assert_eq!((again.examined, again.reencrypted), (0, 0), "{again:?}");
    }

    #[sqlx::test(migrator = "crate::store::MIGRATOR")]
    async fn a_batch_of_zero_is_refused(pool: PgPool) {
        let store = store_sealing_with(&pool, &[vec![2u8; 32]]);
        let now = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time");
        assert!(reencrypt_all(&store, 0, now).await.is_err());
    }

    #[sqlx::test(migrator = "crate::store::MIGRATOR")]
    async fn the_start_is_refused_when_stored_codes_use_a_pepper_no_longer_present(pool: PgPool) {
        user_with_codes(&pool, &[pepper("v2")]).await;
        let error = check_recovery_key_versions(&store(&pool, &[pepper("v3")]))
            .await
            .expect_err("refused");
        assert!(matches!(&error, StartupError::RecoveryKeysMissing(v) if v == &["v2"]));
        assert_eq!(error.reason(), "KeysMismatch");
    }

    #[sqlx::test(migrator = "crate::store::MIGRATOR")]
    async fn the_start_goes_on_while_the_old_pepper_stays_behind_a_new_one(pool: PgPool) {
        user_with_codes(&pool, &[pepper("v2")]).await;
        check_recovery_key_versions(&store(&pool, &[pepper("v3"), pepper("v2")]))
            .await
            .expect("every stored version is in the ring");
    }
}
