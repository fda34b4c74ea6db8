//! Event details: a sorted map of static keys to typed values.
//!
//! The types are the privacy control: there is no variant for free text, and an [`Ident`] only
//! accepts the characters of client ids, key ids, JWT ids and UUIDs, so an email address, a
//! password or a bearer token cannot end up in the audit trail by accident.
//!
//! They do not catch everything: an IP address, a phone number, a username or a user id also
//! fit an [`Ident`]. Details are in the MAC and no erasure touches them, so callers put only ids
//! of things (keys, tokens, clients, erasures) here; people go only in `subject_id` and
//! `actor_id`, which erasure rewrites.

use std::collections::BTreeMap;

use serde::Serialize;
use uuid::Uuid;

/// Longest accepted identifier: client ids and jti values are far shorter.
const IDENT_MAX: usize = 128;

/// An identifier that is safe to keep: `[A-Za-z0-9._:-]`, 1 to 128 characters.
///
/// `@` (emails), `/`, `+`, `=` and whitespace (free text, base64 tokens) are refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Ident(String);

impl Ident {
    /// Accepts `value` if it looks like an identifier, not like text, an email or a token.
    pub fn parse(value: &str) -> Option<Self> {
        let ok = !value.is_empty()
            && value.len() <= IDENT_MAX
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c));
        ok.then(|| Self(value.to_owned()))
    }

    /// Lowercase hex of `bytes` (digests in details).
    pub fn hex(bytes: &[u8]) -> Self {
        Self(crate::chain::hex(bytes))
    }

    /// The identifier.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<Uuid> for Ident {
    fn from(id: Uuid) -> Self {
        Self(id.hyphenated().to_string())
    }
}

/// One detail value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Detail {
    /// A code from the program text (`"invalid_grant"`, `"totp"`).
    Code(&'static str),
    /// A number (counts, sequence numbers).
    Int(i64),
    /// A flag.
    Bool(bool),
    /// A client id, key id, jti or UUID.
    Id(Ident),
}

/// The details of one event, serialised as canonical JSON (sorted keys, no whitespace).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Details(BTreeMap<&'static str, Detail>);

impl Details {
    /// No details.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a code.
    pub fn code(mut self, key: &'static str, value: &'static str) -> Self {
        self.0.insert(key, Detail::Code(value));
        self
    }

    /// Adds a number.
    pub fn int(mut self, key: &'static str, value: i64) -> Self {
        self.0.insert(key, Detail::Int(value));
        self
    }

    /// Adds a flag.
    pub fn bool(mut self, key: &'static str, value: bool) -> Self {
        self.0.insert(key, Detail::Bool(value));
        self
    }

    /// Adds an identifier.
    pub fn id(mut self, key: &'static str, value: Ident) -> Self {
        self.0.insert(key, Detail::Id(value));
        self
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&Detail> {
        self.0.get(key)
    }

    /// The canonical JSON text: the exact bytes that are hashed and stored.
    ///
    /// Keys are sorted by the map and values are strings, integers or booleans, so the
    /// encoding is unique; it is stored as `text` because `jsonb` would not keep these bytes.
    pub fn canonical_json(&self) -> String {
        let mut out = String::from("{");
        for (i, (key, value)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_json_string(&mut out, key);
            out.push(':');
            match value {
                Detail::Code(code) => push_json_string(&mut out, code),
                Detail::Id(id) => push_json_string(&mut out, id.as_str()),
                Detail::Int(n) => out.push_str(&n.to_string()),
                Detail::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            }
        }
        out.push('}');
        out
    }
}

/// Appends `s` as a JSON string. serde_json's escaping is used so the text is always valid JSON.
fn push_json_string(out: &mut String, s: &str) {
    // Serialising a &str cannot fail; the fallback keeps the output valid JSON regardless.
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => out.push_str("\"\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_and_has_no_whitespace() {
        let details = Details::new()
            .int("rows", 3)
            .code("reason", "bad \"pw\"")
            .bool("mfa", true)
            .id("client", Ident::parse("web-app").unwrap());
        assert_eq!(
            details.canonical_json(),
            r#"{"client":"web-app","mfa":true,"reason":"bad \"pw\"","rows":3}"#
        );
        assert_eq!(Details::new().canonical_json(), "{}");
        let parsed: serde_json::Value = serde_json::from_str(&details.canonical_json()).unwrap();
        assert_eq!(parsed["rows"], 3);
    }

    #[test]
    fn idents_refuse_emails_tokens_and_text() {
        for bad in [
            "alice@example.com",
            "eyJhbGciOi.J9+x/y=",
            "free text",
            "",
            &"a".repeat(129),
        ] {
            assert_eq!(Ident::parse(bad), None, "{bad}");
        }
        for good in ["web-app", "kid_2026.1", "retention:7:2", "0a1B"] {
            assert_eq!(Ident::parse(good).unwrap().as_str(), good);
        }
        let id = Uuid::from_u128(1);
        assert_eq!(
            Ident::from(id).as_str(),
            "00000000-0000-0000-0000-000000000001"
        );
    }
}
