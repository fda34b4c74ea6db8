//! The Fernet key ring of the secrets dir's `fernet-keys` file: the first key encrypts, every
//! key decrypts.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;
use fernet::Fernet;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// The length of a Fernet key: 16 bytes signing key, then 16 bytes AES-128 key.
pub const KEY_LEN: usize = 32;

/// The label whose HMAC under a key identifies it. The auth server's key fingerprints
/// (`auth::key_fingerprints`, recorded in the database and checked at start) use the same
/// label, so a key id printed here is the one a start-up error or `keys fingerprint` names.
const FINGERPRINT_LABEL: &[u8] = b"\xffportcullis.dev/key-fingerprint/v1/fernet";

/// Why a key ring cannot be built. Says which key and its length, never a key byte.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRingError {
    /// No key at all: nothing could be encrypted.
    #[error("the Fernet key ring has no key")]
    NoKeys,
    /// A key is not 32 bytes.
    #[error("the Fernet key at index {index} (0 = the first) is {len} bytes; a Fernet key is 32")]
    WrongLength {
        /// Its position in the ring, 0 for the first.
        index: usize,
        /// Its length in bytes.
        len: usize,
    },
}

/// The id of a key, for status output and logs: the first 16 hex digits of
/// HMAC-SHA256(key, fixed label). It tells keys apart and reveals nothing about them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyId(String);

impl KeyId {
    fn of(key: &[u8]) -> Self {
        let fingerprint: [u8; 32] = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
            Ok(mut mac) => {
                mac.update(FINGERPRINT_LABEL);
                mac.finalize().into_bytes().into()
            }
            // HMAC takes keys of any length; this arm is never taken.
            Err(_) => [0; 32],
        };
        Self(
            fingerprint[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        )
    }

    /// The id as 16 lowercase hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The Fernet keys in `fernet-keys` order: the active (encrypting) key first, then the others
/// (a newly added key is second until the operator promotes it). The key material lives only inside `fernet::Fernet`, which
/// wipes it on drop; `Debug` shows the count and the key ids.
#[derive(Clone)]
pub struct KeyRing {
    /// Every key, in ring order.
    fernets: Vec<Fernet>,
    ids: Vec<KeyId>,
    /// A copy of the first key and id: a ring is never empty, and holding them apart keeps
    /// `seal` free of an index that could panic.
    current: Fernet,
    current_id: KeyId,
}

impl KeyRing {
    /// A ring of raw 32-byte keys, the encrypting one first: the secrets dir's `fernet-keys`
    /// lines, base64url-decoded, in file order.
    pub fn new(keys: &[Vec<u8>]) -> Result<Self, KeyRingError> {
        let mut fernets = Vec::with_capacity(keys.len());
        let mut ids = Vec::with_capacity(keys.len());
        for (index, key) in keys.iter().enumerate() {
            let wrong_length = KeyRingError::WrongLength {
                index,
                len: key.len(),
            };
            if key.len() != KEY_LEN {
                return Err(wrong_length);
            }
            // The fernet crate takes keys only as base64url text; the copy is wiped on drop.
            let encoded = Zeroizing::new(URL_SAFE.encode(key));
            fernets.push(Fernet::new(&encoded).ok_or(wrong_length)?);
            ids.push(KeyId::of(key));
        }
        let (Some(current), Some(current_id)) = (fernets.first(), ids.first()) else {
            return Err(KeyRingError::NoKeys);
        };
        let (current, current_id) = (current.clone(), current_id.clone());
        Ok(Self {
            fernets,
            ids,
            current,
            current_id,
        })
    }

    /// The ids of the keys, in ring order (the encrypting key first).
    pub fn key_ids(&self) -> &[KeyId] {
        &self.ids
    }

    /// The id of the key that encrypts.
    pub fn current_key_id(&self) -> &KeyId {
        &self.current_id
    }

    /// The encrypting key.
    pub(crate) fn current(&self) -> &Fernet {
        &self.current
    }

    /// The keys in ring order.
    pub(crate) fn fernets(&self) -> &[Fernet] {
        &self.fernets
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("keys", &self.ids.len())
            .field(
                "ids",
                &self.ids.iter().map(KeyId::as_str).collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(first: u8) -> Vec<u8> {
        (first..first + 32).collect()
    }

    #[test]
    fn an_empty_key_list_is_refused() {
        assert_eq!(KeyRing::new(&[]).unwrap_err(), KeyRingError::NoKeys);
    }

    #[test]
    fn a_key_of_the_wrong_length_is_refused_by_position_without_its_bytes() {
        let short = vec![0xAB; 31];
        let err = KeyRing::new(&[key(0), short]).unwrap_err();
        assert_eq!(err, KeyRingError::WrongLength { index: 1, len: 31 });
        let text = format!("{err} {err:?}");
        // Neither the hex (`ab`) nor the decimal (`171`, what a leaked `Vec<u8>` Debug prints).
        assert!(!text.to_lowercase().contains("ab"), "{text}");
        assert!(!text.contains("171"), "{text}");
        assert!(KeyRing::new(&[vec![0; 33]]).is_err());
        assert!(KeyRing::new(&[Vec::new()]).is_err());
    }

    #[test]
    fn the_key_id_is_the_auth_servers_fernet_fingerprint_id() {
        // Computed independently with Python's hmac over the same label.
        let ring = KeyRing::new(&[key(0), key(32)]).unwrap();
        let ids: Vec<&str> = ring.key_ids().iter().map(KeyId::as_str).collect();
        assert_eq!(ids, ["4533d54cea2ca7ed", "55cd825ffd0ecc7f"]);
        assert_eq!(ring.current_key_id().as_str(), "4533d54cea2ca7ed");
    }

    #[test]
    fn debug_shows_the_count_and_ids_but_no_key_material() {
        let k = key(0);
        let ring = KeyRing::new(std::slice::from_ref(&k)).unwrap();
        let debug = format!("{ring:?}");
        assert_eq!(debug, r#"KeyRing { keys: 1, ids: ["4533d54cea2ca7ed"] }"#);
        assert!(!debug.contains(&URL_SAFE.encode(&k)));
    }
}
