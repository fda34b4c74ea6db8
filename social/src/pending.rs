//! What `start` hands the server to keep until the callback: the pending sign-in, and the
//! randomness it is made from.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::SocialError;

/// How long a sign-in may take from `start` to the callback.
pub const PENDING_TTL: Duration = Duration::minutes(10);

/// The randomness of one sign-in, from the server's CSPRNG: 32 bytes each for the `state`, the
/// PKCE verifier and the `nonce` (each sent base64url-encoded, 43 characters).
#[derive(Clone, PartialEq, Eq)]
pub struct Random {
    /// Binds the callback to this sign-in (CSRF).
    pub state: [u8; 32],
    /// The PKCE code verifier (RFC 7636): only its S256 challenge leaves before the exchange.
    pub pkce_verifier: [u8; 32],
    /// Binds the ID token to this sign-in (OpenID Connect only).
    pub nonce: [u8; 32],
}

impl Random {
    /// Fresh randomness from the operating system's CSPRNG: what the server should use, so
    /// that no seeded or time-based generator can make a state or a verifier guessable.
    pub fn generate() -> Result<Self, SocialError> {
        use rand::TryRng as _;
        let mut bytes = [0u8; 96];
        rand::rngs::SysRng
            .try_fill_bytes(&mut bytes)
            .map_err(|e| SocialError::Randomness(e.to_string()))?;
        Ok(Self::from_bytes(bytes))
    }

    /// Splits 96 random bytes into state, verifier and nonce (tests, or a server with its own
    /// CSPRNG).
    pub fn from_bytes(bytes: [u8; 96]) -> Self {
        let mut parts = bytes.chunks_exact(32).map(|c| {
            let mut part = [0; 32];
            part.copy_from_slice(c);
            part
        });
        let mut next = || parts.next().unwrap_or([0; 32]);
        Self {
            state: next(),
            pkce_verifier: next(),
            nonce: next(),
        }
    }
}

impl fmt::Debug for Random {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Random(..)")
    }
}

/// base64url without padding: the 43-character form of 32 bytes (RFC 7636's verifier form).
pub(crate) fn encode(bytes: &[u8; 32]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A sign-in under way, kept by the server between `start` and the callback (bound to the
/// browser that started it, e.g. a server-side record keyed by a random id in a `__Host-`,
/// `Secure`, `HttpOnly`, `SameSite=Lax` cookie). It holds the PKCE verifier: keep it out of
/// reach of the browser's scripts and the logs.
///
/// Single use is the server's job and a MUST: this crate cannot see a second use. Take the
/// record with an atomic get-and-delete (e.g. Redis `GETDEL`) *before* calling
/// [`crate::Provider::finish`], so a replayed callback finds nothing; never finish the same
/// record twice. [`crate::check_callback`] refuses a record older than [`PENDING_TTL`] or
/// from the future.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The provider's name ([`crate::ProviderSettings::name`]).
    pub provider: String,
    /// The `state` sent.
    pub state: String,
    /// The PKCE verifier whose challenge was sent.
    pub pkce_verifier: String,
    /// The `nonce` sent (OpenID Connect); `None` for GitHub.
    pub nonce: Option<String>,
    /// The `redirect_uri` sent; the code exchange repeats it.
    pub redirect_uri: String,
    /// When the sign-in started.
    #[serde(with = "time::serde::timestamp")]
    pub created_at: OffsetDateTime,
}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending")
            .field("provider", &self.provider)
            .field("redirect_uri", &self.redirect_uri)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn random_bytes_split_into_three_distinct_parts() {
        let mut bytes = [0u8; 96];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (i / 32) as u8 + 1;
        }
        let random = Random::from_bytes(bytes);
        assert_eq!(random.state, [1; 32]);
        assert_eq!(random.pkce_verifier, [2; 32]);
        assert_eq!(random.nonce, [3; 32]);
    }

    #[test]
    fn generated_randomness_differs_each_time_and_between_parts() {
        let a = Random::generate().unwrap();
        let b = Random::generate().unwrap();
        assert_ne!(a.state, b.state);
        assert_ne!(a.state, a.pkce_verifier);
        assert_ne!(a.pkce_verifier, a.nonce);
    }

    #[test]
    fn encoded_parts_are_43_url_safe_characters() {
        let encoded = encode(&[0xfb; 32]);
        assert_eq!(encoded.len(), 43);
        assert!(
            encoded
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{encoded}"
        );
    }

    #[test]
    fn pending_round_trips_through_json_with_a_unix_timestamp() {
        let pending = Pending {
            provider: "github".into(),
            state: "s".into(),
            pkce_verifier: "v".into(),
            nonce: None,
            redirect_uri: "https://id.example.com/cb".into(),
            created_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
        };
        let json = serde_json::to_value(&pending).unwrap();
        assert_eq!(json["created_at"], 1_700_000_000);
        assert_eq!(serde_json::from_value::<Pending>(json).unwrap(), pending);
    }

    #[test]
    fn pending_debug_hides_state_verifier_and_nonce() {
        let pending = Pending {
            provider: "corp".into(),
            state: "the-state".into(),
            pkce_verifier: "the-verifier".into(),
            nonce: Some("the-nonce".into()),
            redirect_uri: "https://id.example.com/cb".into(),
            created_at: OffsetDateTime::UNIX_EPOCH,
        };
        let shown = format!("{pending:?}");
        for secret in ["the-state", "the-verifier", "the-nonce"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}
