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
    let sealing = KeyRing::new(&secrets.fernet_keys).map_err(|e| {
        StartupError::Secrets(super::secrets_dir::SecretsError::Invalid {
            name: files::FERNET_KEYS.to_owned(),
            reason: e.to_string(),
        })
    })?;
    let recovery = recovery_keys(&secrets.peppers)?;
    Ok(PgMfaStore::new(
        pool,
        Arc::new(sealing),
        Arc::new(recovery),
        realm,
    ))
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
