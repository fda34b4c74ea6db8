//! An authenticator app for the tests: RFC 6238 TOTP written from the RFC with `hmac` and `sha1`,
//! independent of the `totp-rs` crate the server uses, so a test that logs in with a code from
//! here checks the server against the standard, not against itself.

#![allow(clippy::expect_used)] // test helpers: a panic is a failed test

use hmac::{Hmac, Mac};
use sha1::Sha1;

/// Decodes an RFC 4648 base32 secret as authenticator apps accept it (upper or lower case,
/// padding and spaces ignored); `None` for any other character.
pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut bits: u64 = 0;
    let mut held = 0u32;
    let mut out = Vec::new();
    for c in text.chars().filter(|c| *c != '=' && *c != ' ') {
        let value = match c.to_ascii_uppercase() {
            c @ 'A'..='Z' => c as u64 - 'A' as u64,
            c @ '2'..='7' => c as u64 - '2' as u64 + 26,
            _ => return None,
        };
        bits = (bits << 5) | value;
        held += 5;
        if held >= 8 {
            held -= 8;
            out.push((bits >> held) as u8);
            bits &= (1 << held) - 1;
        }
    }
    Some(out)
}

/// The HOTP value (RFC 4226) of `counter` with HMAC-SHA-1, as `digits` decimal digits.
pub fn hotp_sha1(key: &[u8], counter: u64, digits: u32) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(&counter.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = (digest[19] & 0x0f) as usize;
    let binary = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    format!(
        "{:0width$}",
        binary % 10u32.pow(digits),
        width = digits as usize
    )
}

/// The TOTP code (SHA-1) of the base32 `secret` at `unix_seconds` for a `period` and `digits`.
pub fn code_at(secret: &str, unix_seconds: u64, period: u64, digits: u32) -> String {
    let key = base32_decode(secret).expect("a base32 TOTP secret");
    hotp_sha1(&key, unix_seconds / period, digits)
}

/// The code an authenticator app shows now, with the realm defaults (30 s, 6 digits).
pub fn code_now(secret: &str) -> String {
    code_at(secret, now_unix(), 30, 6)
}

/// The code of the next 30 s step: a test that already used the current step (each step is
/// accepted once per user) logs in again with it, inside the server's ±1 step window.
pub fn next_code(secret: &str) -> String {
    code_at(secret, now_unix() + 30, 30, 6)
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The secret in an `otpauth://totp/...?secret=...` URI.
pub fn secret_of_uri(uri: &str) -> Option<String> {
    let url = url::Url::parse(uri).ok()?;
    if url.scheme() != "otpauth" || url.host_str() != Some("totp") {
        return None;
    }
    url.query_pairs()
        .find(|(k, _)| k == "secret")
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B: the SHA-1 seed is the ASCII "12345678901234567890", 8 digits.
    #[test]
    fn the_rfc_6238_sha1_test_vectors_come_out() {
        let key = b"12345678901234567890";
        for (time, expected) in [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(hotp_sha1(key, time / 30, 8), expected, "T = {time}");
        }
    }

    #[test]
    fn base32_decodes_the_rfc_4648_vectors_in_either_case() {
        assert_eq!(base32_decode("MZXW6YTBOI======").unwrap(), b"foobar");
        assert_eq!(base32_decode("mzxw6ytboi").unwrap(), b"foobar");
        assert_eq!(base32_decode("MZXW6YQ=").unwrap(), b"foob");
        assert!(base32_decode("MZXW1").is_none(), "1 is not base32");
    }

    #[test]
    fn the_secret_is_read_from_an_otpauth_uri_and_nothing_else() {
        assert_eq!(
            secret_of_uri("otpauth://totp/Demo:alice?secret=JBSWY3DPEHPK3PXP&issuer=Demo")
                .as_deref(),
            Some("JBSWY3DPEHPK3PXP")
        );
        assert_eq!(secret_of_uri("https://totp/x?secret=JBSW"), None);
    }
}
