//! The audit MAC keys: the `audit-key` secret, `VERSION:BASE64` per line.
//!
//! The first line's key signs new rows; every line's key verifies, so a key can be rotated by
//! putting a new line first and keeping the old one until its rows are pruned.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};

/// Shortest accepted key: HMAC-SHA256 gains nothing from more, and loses strength with less.
const MIN_KEY_BYTES: usize = 32;

/// Why the secret was refused. Never contains key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The secret has no key line.
    #[error("the audit key secret has no key")]
    Empty,
    /// A line is malformed; `line` counts from 1.
    #[error("audit key line {line}: {reason}")]
    Line {
        /// The line number, from 1.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// One version's key.
struct Key {
    version: String,
    bytes: Vec<u8>,
}

/// The parsed audit keys, the signing one first.
pub struct AuditKeys {
    keys: Vec<Key>,
}

// Hand-written so a debug print or a log line can never show key bytes.
impl fmt::Debug for AuditKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditKeys")
            .field("versions", &self.versions().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl AuditKeys {
    /// Parses the secret text: `VERSION:BASE64` per line (blank lines ignored), versions of
    /// `[A-Za-z0-9._-]`, keys of at least 32 bytes, no version twice.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let mut keys: Vec<Key> = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let raw = raw.trim();
            if raw.is_empty() {
                continue;
            }
            let err = |reason| KeyError::Line { line, reason };
            let (version, encoded) = raw.split_once(':').ok_or(err("expected VERSION:BASE64"))?;
            let valid_version = !version.is_empty()
                && version
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
            if !valid_version {
                return Err(err("the version must be [A-Za-z0-9._-]+"));
            }
            let bytes = decode_base64(encoded).ok_or(err("the key is not base64"))?;
            if bytes.len() < MIN_KEY_BYTES {
                return Err(err("the key is shorter than 32 bytes"));
            }
            if keys.iter().any(|k| k.version == version) {
                return Err(err("the version appears twice"));
            }
            keys.push(Key {
                version: version.to_owned(),
                bytes,
            });
        }
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(Self { keys })
    }

    /// The version that signs new rows (the first line).
    pub fn signing_version(&self) -> &str {
        // `parse` refuses an empty list, so there is always a first key.
        self.keys.first().map_or("", |k| k.version.as_str())
    }

    /// The signing key's bytes.
    pub(crate) fn signing_key(&self) -> &[u8] {
        self.keys.first().map_or(&[], |k| k.bytes.as_slice())
    }

    /// The key of `version`, if it is known.
    pub(crate) fn get(&self, version: &str) -> Option<&[u8]> {
        self.keys
            .iter()
            .find(|k| k.version == version)
            .map(|k| k.bytes.as_slice())
    }

    /// Every version, the signing one first.
    pub fn versions(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.version.as_str())
    }
}

/// Base64 in any of the common alphabets, as the other key secrets (written by hand or tools).
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(text)
        .or_else(|_| URL_SAFE.decode(text))
        .or_else(|_| URL_SAFE_NO_PAD.decode(text))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(version: &str, byte: u8, len: usize) -> String {
        format!("{version}:{}", STANDARD.encode(vec![byte; len]))
    }

    #[test]
    fn the_first_line_signs_and_every_line_verifies() {
        let text = format!("{}\n\n{}\n", line("v2", 2, 32), line("v1", 1, 48));
        let keys = AuditKeys::parse(&text).unwrap();
        assert_eq!(keys.signing_version(), "v2");
        assert_eq!(keys.signing_key(), &[2u8; 32][..]);
        assert_eq!(keys.get("v1").unwrap(), &[1u8; 48][..]);
        assert_eq!(keys.get("v3"), None);
        assert_eq!(keys.versions().collect::<Vec<_>>(), ["v2", "v1"]);
    }

    #[test]
    fn malformed_lines_are_named_without_echoing_the_key() {
        let short = line("v1", 7, 31);
        let cases = [
            (format!("{}\n{short}", line("v2", 2, 32)), 2),
            ("v1 no colon".to_owned(), 1),
            (format!("\nv 1:{}", STANDARD.encode([1u8; 32])), 2),
            ("v1:not base64!!".to_owned(), 1),
            (format!("{}\n{}", line("v1", 1, 32), line("v1", 3, 32)), 2),
        ];
        for (text, bad_line) in cases {
            let err = AuditKeys::parse(&text).unwrap_err();
            assert!(
                matches!(err, KeyError::Line { line, .. } if line == bad_line),
                "{text}: {err:?}"
            );
            let shown = err.to_string();
            assert!(shown.contains(&format!("line {bad_line}")), "{shown}");
            let secret = short.split_once(':').unwrap().1;
            assert!(!shown.contains(secret), "{shown}");
        }
        assert_eq!(AuditKeys::parse(" \n\n").unwrap_err(), KeyError::Empty);
    }

    #[test]
    fn debug_output_shows_versions_only() {
        let keys = AuditKeys::parse(&line("v1", b'A', 32)).unwrap();
        let shown = format!("{keys:?}");
        assert!(shown.contains("v1"), "{shown}");
        assert!(!shown.contains("QUFB"), "{shown}");
    }
}
