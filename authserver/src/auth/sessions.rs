//! Browser sessions: 256-bit random ids (only their SHA-256 is stored), the cookie that carries
//! them, and the timeout rules.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_crds::realm::SameSite;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

/// Name of the session cookie; `__Host-` binds it to this host, path `/`, Secure.
pub const COOKIE_NAME: &str = "__Host-portcullis_session";

/// A new session secret (what the cookie carries) and its public id (what is stored and shown).
pub fn new_session_secret() -> (String, String) {
    let secret = crate::secrets::random_token(32);
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

/// A stored session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Owner.
    pub user_id: Uuid,
    /// Login time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last request seen.
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen_at: OffsetDateTime,
    /// The session ends at this time however active it is.
    #[serde(with = "time::serde::rfc3339")]
    pub absolute_expires_at: OffsetDateTime,
    /// Client IP at login.
    pub ip: String,
    /// User agent at login (truncated).
    pub user_agent: String,
}

impl SessionRecord {
    /// Whether the session has ended by its idle or absolute timeout at `now`.
    pub fn is_expired(&self, now: OffsetDateTime, idle_timeout: Duration) -> bool {
        now >= self.absolute_expires_at || now >= self.last_seen_at + idle_timeout
    }

    /// How long the store should keep the record from `now`: until the earlier timeout.
    pub fn ttl(&self, now: OffsetDateTime, idle_timeout: Duration) -> Duration {
        let idle_end = self.last_seen_at + idle_timeout;
        let end = idle_end.min(self.absolute_expires_at);
        Duration::try_from(end - now).unwrap_or(Duration::ZERO)
    }
}

/// The `Set-Cookie` value that installs a session.
pub fn session_cookie(secret: &str, max_age: Duration, same_site: SameSite) -> String {
    let same_site = match same_site {
        SameSite::Lax => "Lax",
        SameSite::Strict => "Strict",
    };
    format!(
        "{COOKIE_NAME}={secret}; Path=/; Secure; HttpOnly; SameSite={same_site}; Max-Age={}",
        max_age.as_secs()
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE_NAME}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0")
}

/// The session secret in a `Cookie` header, if any.
pub fn secret_from_cookie_header(header: &str) -> Option<&str> {
    header.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == COOKIE_NAME && is_well_formed(value)).then_some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(now: OffsetDateTime) -> SessionRecord {
        SessionRecord {
            user_id: Uuid::nil(),
            created_at: now,
            last_seen_at: now,
            absolute_expires_at: now + Duration::from_secs(3_600),
            ip: "127.0.0.1".into(),
            user_agent: "test".into(),
        }
    }

    #[test]
    fn secrets_are_256_bits_and_ids_are_their_hash() {
        let (secret, id) = new_session_secret();
        assert!(is_well_formed(&secret));
        assert_eq!(id, public_id(&secret));
        assert_eq!(id.len(), 64);
        assert_ne!(new_session_secret().0, secret);
    }

    #[test]
    fn the_cookie_is_host_only_secure_http_only_and_same_site() {
        let cookie = session_cookie("abc", Duration::from_secs(43_200), SameSite::Lax);
        assert_eq!(
            cookie,
            "__Host-portcullis_session=abc; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=43200"
        );
        assert!(
            session_cookie("abc", Duration::from_secs(1), SameSite::Strict)
                .contains("SameSite=Strict")
        );
    }

    #[test]
    fn idle_and_absolute_timeouts_both_end_a_session() {
        let t0 = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let idle = Duration::from_secs(600);
        let mut r = record(t0);
        assert!(!r.is_expired(t0 + Duration::from_secs(599), idle));
        assert!(r.is_expired(t0 + Duration::from_secs(600), idle));
        r.last_seen_at = t0 + Duration::from_secs(3_000);
        assert!(!r.is_expired(t0 + Duration::from_secs(3_500), idle));
        assert!(
            r.is_expired(t0 + Duration::from_secs(3_600), idle),
            "absolute timeout"
        );
        assert_eq!(
            r.ttl(t0 + Duration::from_secs(3_500), idle),
            Duration::from_secs(100)
        );
    }

    #[test]
    fn only_a_well_formed_session_cookie_is_read() {
        let (secret, _) = new_session_secret();
        let header = format!("a=b; {COOKIE_NAME}={secret}; c=d");
        assert_eq!(secret_from_cookie_header(&header), Some(secret.as_str()));
        assert_eq!(
            secret_from_cookie_header(&format!("{COOKIE_NAME}=short")),
            None
        );
        assert_eq!(secret_from_cookie_header("portcullis_session=x"), None);
    }
}
