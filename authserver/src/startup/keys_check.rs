//! At every start, before serving: the pepper versions, Fernet keys and audit key versions of
//! the secrets dir must cover every key fingerprint the database recorded (`auth::key_fingerprints`); keys not
//! recorded yet are recorded.

use time::OffsetDateTime;

use super::StartupError;
use super::secrets_dir::Secrets;
use crate::auth::key_fingerprints::{self, KeyFingerprint, KeyKind, Recorded};
use crate::store::{Db, KeyFingerprintRow};

/// Checks the secrets' keys against the recorded fingerprints and records the new ones;
/// returns what was recorded now. Refuses ([`StartupError::KeysMismatch`]) when a recorded
/// key is missing or a pepper version changed, and then records nothing.
///
/// Replicas may start together: the check and the recording are one step under a lock
/// ([`Db::record_key_fingerprints`]), so of two replicas with different keys starting on an
/// empty database one records its keys and the other is refused against them.
pub async fn verify(
    db: &Db,
    secrets: &Secrets,
    now: OffsetDateTime,
) -> Result<Vec<KeyFingerprint>, StartupError> {
    let mut current = key_fingerprints::fingerprints(&secrets.peppers, &secrets.fernet_keys);
    current.extend(key_fingerprints::audit_fingerprints(
        &secrets.audit_key_lines,
    ));
    let mut recorded_now = Vec::new();
    db.record_key_fingerprints(|rows| {
        let new = key_fingerprints::compare(&recorded(rows)?, &current)?;
        let rows = new.iter().map(|key| row_of(key, now)).collect();
        recorded_now = new;
        Ok::<_, StartupError>(rows)
    })
    .await
    .map_err(|error| {
        StartupError::Dependency(format!("cannot check the key fingerprints: {error}"))
    })??;
    Ok(recorded_now)
}

fn row_of(key: &KeyFingerprint, now: OffsetDateTime) -> KeyFingerprintRow {
    KeyFingerprintRow {
        kind: key.kind.as_str().to_owned(),
        key_id: key.key_id.clone(),
        fingerprint: key.fingerprint.to_vec(),
        recorded_at: now,
    }
}

/// The recorded fingerprints. Rows of a kind this version does not know are left to the
/// version that wrote them.
fn recorded(rows: Vec<KeyFingerprintRow>) -> Result<Vec<Recorded>, StartupError> {
    let mut recorded = Vec::with_capacity(rows.len());
    for row in rows {
        let Some(kind) = KeyKind::parse(&row.kind) else {
            tracing::warn!(kind = %row.kind, key_id = %row.key_id, "a key fingerprint of a kind this version does not know; not checked");
            continue;
        };
        let fingerprint = <[u8; 32]>::try_from(row.fingerprint.as_slice()).map_err(|_| {
            StartupError::Dependency(format!(
                "the recorded fingerprint of {} {} is not 32 bytes",
                row.kind, row.key_id
            ))
        })?;
        recorded.push(Recorded {
            key: KeyFingerprint {
                kind,
                key_id: row.key_id,
                fingerprint,
            },
            recorded_at: row.recorded_at,
        });
    }
    Ok(recorded)
}
