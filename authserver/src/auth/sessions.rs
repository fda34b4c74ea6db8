//! Session rules: 256-bit random secrets of which only the SHA-256 (the public id) is stored,
//! and the idle and absolute timeouts. The cookie that carries a secret is `http::cookies`.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::random::Random;
use crate::store::kv::SessionRecord;

/// Sessions are written back at most this often when only `last_seen_at` changes.
pub const TOUCH_INTERVAL: Duration = Duration::from_secs(60);

/// A new session secret (what the cookie carries) and its public id (what is stored and shown).
pub fn new_session_secret(random: &Random) -> (String, String) {
    let secret = random.token(32);
    let id = public_id(&secret);
    (secret, id)
}

/// The public id of a session secret: hex SHA-256. Knowing it does not let anyone act as the
/// session; it names the session in lists and revocations.
pub fn public_id(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `text` looks like a session secret (43 base64url characters).
pub fn is_well_formed(secret: &str) -> bool {
    secret.len() == 43 && URL_SAFE_NO_PAD.decode(secret).is_ok_and(|b| b.len() == 32)
}

/// Whether the session has ended by its idle or absolute timeout at `now`.
pub fn is_expired(record: &SessionRecord, now: OffsetDateTime, idle_timeout: Duration) -> bool {
    now >= record.absolute_expires_at
        || crate::clock::later(record.last_seen_at, idle_timeout).is_none_or(|end| now >= end)
}

/// How long the store should keep the record from `now`: until the earlier timeout.
pub fn ttl(record: &SessionRecord, now: OffsetDateTime, idle_timeout: Duration) -> Duration {
    let idle_end = crate::clock::later(record.last_seen_at, idle_timeout)
        .unwrap_or(record.absolute_expires_at);
    let end = idle_end.min(record.absolute_expires_at);
    Duration::try_from(end - now).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use uuid::Uuid;

    fn record(now: OffsetDateTime) -> SessionRecord {
        SessionRecord {
            user_id: Uuid::nil(),
            created_at: now,
            last_seen_at: now,
            absolute_expires_at: now + Duration::from_secs(3_600),
            ip: "127.0.0.1".into(),
            user_agent: "test".into(),
            credential_epoch: 0,
            amr: vec!["pwd".into()],
            acr: None,
        }
    }

    #[test]
    fn secrets_are_256_bits_and_ids_are_their_hash() {
        let random = Random::new(rand_chacha::ChaCha20Rng::seed_from_u64(5));
        let (secret, id) = new_session_secret(&random);
        assert!(is_well_formed(&secret));
        assert_eq!(id, public_id(&secret));
        assert_eq!(id.len(), 64);
        assert_ne!(new_session_secret(&random).0, secret);
    }

    #[test]
    fn idle_and_absolute_timeouts_both_end_a_session() {
        let t0 = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let idle = Duration::from_secs(600);
        let mut r = record(t0);
        assert!(!is_expired(&r, t0 + Duration::from_secs(599), idle));
        assert!(is_expired(&r, t0 + Duration::from_secs(600), idle));
        r.last_seen_at = t0 + Duration::from_secs(3_000);
        assert!(!is_expired(&r, t0 + Duration::from_secs(3_500), idle));
        assert!(
            is_expired(&r, t0 + Duration::from_secs(3_600), idle),
            "absolute timeout"
        );
        assert_eq!(
            ttl(&r, t0 + Duration::from_secs(3_500), idle),
            Duration::from_secs(100)
        );
    }
}
