//! No silent key loss: the database remembers which keys protect its data, by fingerprint.
//!
//! Every pepper version hashed passwords and every Fernet key may have encrypted a TOTP secret
//! or a provider token; with one of them gone, that data is lost without a word. So each
//! key's fingerprint is recorded at the first start that sees it, and a start whose keys do
//! not cover every recorded fingerprint is refused, naming each missing key and what to
//! restore. Adding keys (rotation) is fine: new fingerprints are recorded.
//!
//! A fingerprint is HMAC-SHA256 of a fixed label under the key: it identifies the key and
//! reveals nothing about it (without the key, the label's MAC cannot be computed, nor the key
//! found from it). The label starts with the byte 0xFF, which no UTF-8 text contains: the
//! pepper also MACs passwords (`auth::hashing`), and no password's MAC can equal a
//! fingerprint, so a database dump does not let anyone test a guessed password.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use time::OffsetDateTime;

use super::keys::Pepper;

/// Which key material a fingerprint belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyKind {
    /// A pepper version (identified by its version).
    Pepper,
    /// A Fernet key (identified by the start of its fingerprint: Fernet keys have no names).
    Fernet,
    /// An `audit-key` version (identified by its version): it MACs the audit chain.
    Audit,
}

impl KeyKind {
    /// The name stored with the fingerprint.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Pepper => "pepper",
            KeyKind::Fernet => "fernet",
            KeyKind::Audit => "audit",
        }
    }

    /// The kind stored under `name`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "pepper" => Some(KeyKind::Pepper),
            "fernet" => Some(KeyKind::Fernet),
            "audit" => Some(KeyKind::Audit),
            _ => None,
        }
    }

    /// The fixed label each key of this kind MACs (versioned, so the scheme can change). The
    /// leading 0xFF is never part of UTF-8 text, so no password MACs to a fingerprint.
    fn label(self) -> &'static [u8] {
        match self {
            KeyKind::Pepper => b"\xffportcullis.dev/key-fingerprint/v1/pepper",
            KeyKind::Fernet => b"\xffportcullis.dev/key-fingerprint/v1/fernet",
            KeyKind::Audit => b"\xffportcullis.dev/key-fingerprint/v1/audit",
        }
    }
}

/// The fingerprint of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFingerprint {
    /// Pepper or Fernet.
    pub kind: KeyKind,
    /// The pepper version, or for a Fernet key the first 16 hex digits of its fingerprint.
    pub key_id: String,
    /// HMAC-SHA256 of the kind's label under the key.
    pub fingerprint: [u8; 32],
}

impl KeyFingerprint {
    /// The fingerprint of `key` of `kind`; `key_id` for versioned keys (their version).
    fn of(kind: KeyKind, pepper_version: Option<&str>, key: &[u8]) -> Self {
        let fingerprint = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
            Ok(mut mac) => {
                mac.update(kind.label());
                mac.finalize().into_bytes().into()
            }
            // HMAC takes keys of any length; this arm is never taken.
            Err(_) => [0; 32],
        };
        let key_id = pepper_version.map_or_else(|| short(&fingerprint), str::to_owned);
        Self {
            kind,
            key_id,
            fingerprint,
        }
    }

    /// The first 16 hex digits of the fingerprint: enough to tell keys apart in a message.
    pub fn short(&self) -> String {
        short(&self.fingerprint)
    }
}

fn short(fingerprint: &[u8; 32]) -> String {
    fingerprint[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The fingerprints of every pepper version and every Fernet key in the secrets dir.
pub fn fingerprints(peppers: &[Pepper], fernet_keys: &[Vec<u8>]) -> Vec<KeyFingerprint> {
    let peppers = peppers
        .iter()
        .map(|p| KeyFingerprint::of(KeyKind::Pepper, Some(&p.version), &p.key));
    let fernet = fernet_keys
        .iter()
        .map(|k| KeyFingerprint::of(KeyKind::Fernet, None, k));
    peppers.chain(fernet).collect()
}

/// The fingerprints of every `audit-key` version (the lines read as versioned keys).
pub fn audit_fingerprints(audit_keys: &[Pepper]) -> Vec<KeyFingerprint> {
    audit_keys
        .iter()
        .map(|k| KeyFingerprint::of(KeyKind::Audit, Some(&k.version), &k.key))
        .collect()
}

/// A fingerprint as the database recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// The key's fingerprint.
    pub key: KeyFingerprint,
    /// When it was first seen.
    pub recorded_at: OffsetDateTime,
}

/// One recorded key the current keys do not cover.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Uncovered {
    /// A recorded key is not among the current ones.
    Missing(Recorded),
    /// The pepper version is there, with another key than the one recorded.
    Changed {
        /// What was recorded.
        recorded: Recorded,
        /// The fingerprint of the key now under that version.
        now: KeyFingerprint,
    },
}

impl fmt::Display for Uncovered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let when = |r: &Recorded| {
            r.recorded_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|_| r.recorded_at.to_string())
        };
        match self {
            Uncovered::Missing(r) if r.key.kind == KeyKind::Pepper => write!(
                f,
                "pepper version {} (fingerprint {}, recorded {}) is missing: the passwords it hashed could never be verified again; restore its line to the secrets dir's `pepper` file (after the current one)",
                r.key.key_id,
                r.key.short(),
                when(r)
            ),
            Uncovered::Missing(r) if r.key.kind == KeyKind::Audit => write!(
                f,
                "audit key version {} (fingerprint {}, recorded {}) is missing: the audit rows it sealed could never be verified again; restore its line to the secrets dir's `audit-key` file (after the current one)",
                r.key.key_id,
                r.key.short(),
                when(r)
            ),
            Uncovered::Missing(r) => write!(
                f,
                "Fernet key {} (recorded {}) is missing: what it encrypted (TOTP secrets, provider tokens) could never be decrypted again; restore it to the secrets dir's `fernet-keys` file (after the first line)",
                r.key.key_id,
                when(r)
            ),
            Uncovered::Changed { recorded, now } if recorded.key.kind == KeyKind::Audit => write!(
                f,
                "audit key version {} is another key than the one recorded {} (fingerprint {} recorded, {} now): the audit rows it sealed would read as tampered; restore the original {} line, and give a new audit key a new version",
                recorded.key.key_id,
                when(recorded),
                recorded.key.short(),
                now.short(),
                recorded.key.key_id
            ),
            Uncovered::Changed { recorded, now } => write!(
                f,
                "pepper version {} is another key than the one recorded {} (fingerprint {} recorded, {} now): the passwords it hashed would never verify; restore the original {} line, and give a new pepper a new version",
                recorded.key.key_id,
                when(recorded),
                recorded.key.short(),
                now.short(),
                recorded.key.key_id
            ),
        }
    }
}

/// The current keys do not cover what the database recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeysMismatch(pub Vec<Uncovered>);

impl std::error::Error for KeysMismatch {}

impl fmt::Display for KeysMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let problems: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(
            f,
            "the keys in the secrets dir do not match the data in the database: {}. Restore the missing keys (e.g. from a backup of the realm's keys Secret; `portcullis-authserver keys fingerprint --secrets-dir DIR` shows the fingerprints of a set of keys); refusing to start rather than lose data silently",
            problems.join("; ")
        )
    }
}

/// Compares the recorded fingerprints with the current keys: every recorded key must be among
/// them, a pepper version with the same key. Returns the current keys not yet recorded (to
/// record), or every recorded key they do not cover.
pub fn compare(
    recorded: &[Recorded],
    current: &[KeyFingerprint],
) -> Result<Vec<KeyFingerprint>, KeysMismatch> {
    let uncovered: Vec<Uncovered> = recorded
        .iter()
        .filter_map(|r| {
            let same_id = current
                .iter()
                .find(|c| c.kind == r.key.kind && c.key_id == r.key.key_id);
            match same_id {
                Some(c) if c.fingerprint == r.key.fingerprint => None,
                // Versioned keys: the same version with another key.
                Some(c) if r.key.kind != KeyKind::Fernet => Some(Uncovered::Changed {
                    recorded: r.clone(),
                    now: c.clone(),
                }),
                _ => Some(Uncovered::Missing(r.clone())),
            }
        })
        .collect();
    if !uncovered.is_empty() {
        return Err(KeysMismatch(uncovered));
    }
    let mut new: Vec<KeyFingerprint> = Vec::new();
    for c in current {
        let known = recorded
            .iter()
            .any(|r| r.key.kind == c.kind && r.key.key_id == c.key_id);
        // A key listed twice in the secrets dir is recorded once.
        let listed = new.iter().any(|n| n.kind == c.kind && n.key_id == c.key_id);
        if !known && !listed {
            new.push(c.clone());
        }
    }
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pepper(version: &str, byte: u8) -> Pepper {
        Pepper {
            version: version.to_owned(),
            key: vec![byte; 32],
        }
    }

    fn recorded(keys: &[KeyFingerprint]) -> Vec<Recorded> {
        keys.iter()
            .map(|key| Recorded {
                key: key.clone(),
                recorded_at: OffsetDateTime::UNIX_EPOCH,
            })
            .collect()
    }

    #[test]
    fn a_fingerprint_is_a_keyed_hash_that_tells_keys_and_kinds_apart() {
        let a = fingerprints(&[pepper("v1", 1)], &[vec![1; 32], vec![2; 32]]);
        assert_eq!(a.len(), 3);
        assert_eq!(a[0].key_id, "v1");
        assert_eq!((a[1].kind, a[1].key_id.len()), (KeyKind::Fernet, 16));
        assert_eq!(a[1].key_id, a[1].short());
        // The same key under another kind, and another key, give other fingerprints.
        assert_ne!(a[0].fingerprint, a[1].fingerprint);
        assert_ne!(a[1].fingerprint, a[2].fingerprint);
        // Deterministic, and not the key itself nor its plain hash.
        assert_eq!(fingerprints(&[pepper("v1", 1)], &[])[0], a[0]);
        assert_ne!(a[0].fingerprint.to_vec(), vec![1u8; 32]);
        use sha2::Digest;
        assert_ne!(
            a[0].fingerprint,
            <[u8; 32]>::from(Sha256::digest([1u8; 32]))
        );
        // HMAC-SHA256 of the label under the key (RFC 2104), checked by hand.
        let mut inner = Sha256::new();
        inner.update([1u8 ^ 0x36; 32]);
        inner.update([0x36u8; 32]);
        inner.update(b"\xffportcullis.dev/key-fingerprint/v1/pepper");
        let mut outer = Sha256::new();
        outer.update([1u8 ^ 0x5c; 32]);
        outer.update([0x5cu8; 32]);
        outer.update(inner.finalize());
        assert_eq!(a[0].fingerprint, <[u8; 32]>::from(outer.finalize()));
    }

    #[test]
    fn no_password_macs_to_a_pepper_fingerprint() {
        // The label as text (the only way a password could reach it) MACs to something else.
        let key = pepper("v1", 1);
        let fingerprint = fingerprints(std::slice::from_ref(&key), &[])[0].fingerprint;
        let label = std::str::from_utf8(&KeyKind::Pepper.label()[1..]).unwrap();
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key.key).unwrap();
        mac.update(label.as_bytes());
        assert_ne!(<[u8; 32]>::from(mac.finalize().into_bytes()), fingerprint);
        assert!(std::str::from_utf8(KeyKind::Pepper.label()).is_err());
        assert!(std::str::from_utf8(KeyKind::Fernet.label()).is_err());
    }

    #[test]
    fn the_first_start_records_every_key() {
        let current = fingerprints(&[pepper("v1", 1)], &[vec![1; 32]]);
        assert_eq!(compare(&[], &current).unwrap(), current);
    }

    #[test]
    fn the_same_keys_record_nothing_new_and_added_keys_are_recorded() {
        let first = fingerprints(&[pepper("v1", 1)], &[vec![1; 32]]);
        assert_eq!(compare(&recorded(&first), &first).unwrap(), []);
        let rotated = fingerprints(
            &[pepper("v2", 2), pepper("v1", 1)],
            &[vec![3; 32], vec![1; 32]],
        );
        let new = compare(&recorded(&first), &rotated).unwrap();
        let ids: Vec<(KeyKind, &str)> = new.iter().map(|k| (k.kind, k.key_id.as_str())).collect();
        assert_eq!(
            ids,
            [
                (KeyKind::Pepper, "v2"),
                (KeyKind::Fernet, rotated[2].key_id.as_str())
            ]
        );
    }

    #[test]
    fn a_changed_pepper_is_refused_naming_its_version_and_both_fingerprints() {
        let first = fingerprints(&[pepper("v1", 1)], &[vec![1; 32]]);
        let changed = fingerprints(&[pepper("v1", 9)], &[vec![1; 32]]);
        let error = compare(&recorded(&first), &changed).unwrap_err();
        assert_eq!(
            error.0,
            [Uncovered::Changed {
                recorded: recorded(&first)[0].clone(),
                now: changed[0].clone()
            }]
        );
        let message = error.to_string();
        assert!(
            message.contains("pepper version v1 is another key"),
            "{message}"
        );
        assert!(message.contains(&first[0].short()), "{message}");
        assert!(message.contains(&changed[0].short()), "{message}");
        assert!(message.contains("1970-01-01T00:00:00Z"), "{message}");
    }

    #[test]
    fn a_removed_pepper_version_or_fernet_key_is_refused_naming_each() {
        let first = fingerprints(
            &[pepper("v2", 2), pepper("v1", 1)],
            &[vec![1; 32], vec![2; 32]],
        );
        let fewer = fingerprints(&[pepper("v2", 2)], &[vec![2; 32]]);
        let error = compare(&recorded(&first), &fewer).unwrap_err();
        assert_eq!(
            error.0,
            [
                Uncovered::Missing(recorded(&first)[1].clone()),
                Uncovered::Missing(recorded(&first)[2].clone())
            ]
        );
        let message = error.to_string();
        assert!(message.contains("pepper version v1 ("), "{message}");
        assert!(
            message.contains(&format!("Fernet key {} (", first[2].key_id)),
            "{message}"
        );
        assert!(message.contains("`fernet-keys`"), "{message}");
        assert!(!message.contains(&first[3].key_id), "{message}");
    }

    #[test]
    fn a_key_listed_twice_is_recorded_once() {
        let twice = fingerprints(&[pepper("v1", 1)], &[vec![1; 32], vec![1; 32]]);
        assert_eq!(compare(&[], &twice).unwrap().len(), 2);
    }

    #[test]
    fn kinds_are_stored_by_name() {
        for kind in [KeyKind::Pepper, KeyKind::Fernet] {
            assert_eq!(KeyKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(KeyKind::parse("other"), None);
    }
}
