//! At every start, before serving: the pepper versions and Fernet keys of the secrets dir must
//! cover every key fingerprint the database recorded (`auth::key_fingerprints`); keys not
//! recorded yet are recorded.

use time::OffsetDateTime;

use super::StartupError;
use super::secrets_dir::Secrets;
use crate::auth::key_fingerprints::{self, KeyFingerprint, KeyKind, Recorded};
use crate::store::{Db, KeyFingerprintRow};

/// Checks the secrets' keys against the recorded fingerprints and records the new ones;
/// returns what was recorded now. Refuses ([`StartupError::KeysMismatch`]) when a recorded
/// key is missing or a pepper version changed.
///
/// Replicas may start together: each records only what was not there, then reads back and
/// compares again, so two replicas with different keys under one pepper version cannot both
/// start.
pub async fn verify(
    db: &Db,
    secrets: &Secrets,
    now: OffsetDateTime,
) -> Result<Vec<KeyFingerprint>, StartupError> {
    let current = key_fingerprints::fingerprints(&secrets.peppers, &secrets.fernet_keys);
    let new = key_fingerprints::compare(&recorded(db).await?, &current)?;
    if new.is_empty() {
        return Ok(new);
    }
    let rows: Vec<KeyFingerprintRow> = new
        .iter()
        .map(|key| KeyFingerprintRow {
            kind: key.kind.as_str().to_owned(),
            key_id: key.key_id.clone(),
            fingerprint: key.fingerprint.to_vec(),
            recorded_at: now,
        })
        .collect();
    db.add_key_fingerprints(&rows).await.map_err(unavailable)?;
    key_fingerprints::compare(&recorded(db).await?, &current)?;
    Ok(new)
}

fn unavailable(error: crate::store::StoreError) -> StartupError {
    StartupError::Dependency(format!("cannot check the key fingerprints: {error}"))
}

/// The recorded fingerprints. Rows of a kind this version does not know are left to the
/// version that wrote them.
async fn recorded(db: &Db) -> Result<Vec<Recorded>, StartupError> {
    let rows = db.key_fingerprints().await.map_err(unavailable)?;
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
