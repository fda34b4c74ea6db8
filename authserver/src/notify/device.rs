//! New-device detection: which devices an account signed in from, as keyed digests.
//!
//! A browser is known by its device cookie (`__Host-portcullis_device`, 32 random bytes kept
//! 400 days), stored as HMAC(cookie key, "device:" ‖ user id ‖ value); a client that keeps no
//! cookie by a fingerprint, HMAC(cookie key, "fp:" ‖ user id ‖ user agent ‖ address prefix),
//! the prefix an IPv4 /24 or an IPv6 /48 so a changing address within one network stays the
//! same device. Only digests are stored: neither the cookie nor the address can be read back.
//! The user id in each digest keeps one browser's accounts from sharing a stored value, so
//! the table cannot link them.

use std::net::IpAddr;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

/// Name of the device cookie.
pub const COOKIE_NAME: &str = "__Host-portcullis_device";

/// The device cookie's lifetime: 400 days, the longest browsers keep a cookie.
pub const COOKIE_MAX_AGE_SECS: u64 = 400 * 86_400;

/// Devices remembered per account; the least recently seen go first.
pub const MAX_DEVICES: usize = 50;

/// What a sign-in's device is to its account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Novelty {
    /// The account has no known device: its first sign-in (nothing to tell).
    First,
    /// Seen before, by cookie or fingerprint.
    Known,
    /// Not seen before: the owner is told.
    New,
}

/// Decides a sign-in's novelty from the account's known digests and this sign-in's (pure).
pub fn novelty(known: &[[u8; 32]], cookie: Option<&[u8; 32]>, fingerprint: &[u8; 32]) -> Novelty {
    if known.is_empty() {
        return Novelty::First;
    }
    let seen = |digest: &[u8; 32]| known.contains(digest);
    if cookie.is_some_and(seen) || seen(fingerprint) {
        Novelty::Known
    } else {
        Novelty::New
    }
}

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length: this cannot fail.
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
        return [0; 32];
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// The stored digest of a device cookie's value for account `user`.
pub fn cookie_digest(key: &[u8], user: Uuid, value: &str) -> [u8; 32] {
    mac(key, &[b"device:", user.as_bytes(), value.as_bytes()])
}

/// The network an address is counted in: an IPv4 /24 or an IPv6 /48 (an IPv4-mapped address
/// as its IPv4); text that is not an address as itself.
pub fn address_prefix(ip: &str) -> String {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => address_prefix(&v4.to_string()),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
            }
        },
        Err(_) => ip.to_owned(),
    }
}

/// The stored digest of a client that keeps no cookie, for account `user`: its user agent and
/// address prefix.
pub fn fingerprint_digest(key: &[u8], user: Uuid, user_agent: &str, ip: &str) -> [u8; 32] {
    let prefix = address_prefix(ip);
    // The user id is fixed-length; the NUL separates the other two, so no user agent can end
    // in a prefix of its own choosing.
    mac(
        key,
        &[
            b"fp:",
            user.as_bytes(),
            user_agent.as_bytes(),
            b"\0",
            prefix.as_bytes(),
        ],
    )
}

/// A device cookie value from a `Cookie` header, if well formed (43 base64url characters).
pub fn cookie_from_header(header: &str) -> Option<&str> {
    header.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == COOKIE_NAME
            && value.len() == 43
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .then_some(value)
    })
}

/// The `Set-Cookie` value installing device cookie `value`.
pub fn set_cookie(value: &str) -> String {
    format!(
        "{COOKIE_NAME}={value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={COOKIE_MAX_AGE_SECS}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn novelty_is_first_without_devices_known_by_cookie_or_fingerprint_else_new() {
        let (a, b, c) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        type Case<'a> = (&'a [[u8; 32]], Option<&'a [u8; 32]>, &'a [u8; 32], Novelty);
        let cases: [Case<'_>; 7] = [
            (&[], None, &a, Novelty::First),
            (&[], Some(&b), &a, Novelty::First),
            (&[a], None, &a, Novelty::Known),
            (&[b], Some(&b), &a, Novelty::Known),
            (&[a], Some(&c), &a, Novelty::Known),
            (&[c], Some(&b), &a, Novelty::New),
            (&[c], None, &a, Novelty::New),
        ];
        for (known, cookie, fingerprint, expected) in cases {
            assert_eq!(
                novelty(known, cookie, fingerprint),
                expected,
                "{known:?} {cookie:?}"
            );
        }
    }

    #[test]
    fn a_fingerprint_keeps_to_the_network_and_the_user_agent() {
        let key = [7u8; 32];
        let user = Uuid::from_u128(1);
        let fp = |ua, ip| fingerprint_digest(&key, user, ua, ip);
        assert_eq!(fp("ua/1", "192.0.2.7"), fp("ua/1", "192.0.2.200"));
        assert_ne!(fp("ua/1", "192.0.2.7"), fp("ua/1", "192.0.3.7"));
        assert_ne!(fp("ua/1", "192.0.2.7"), fp("ua/2", "192.0.2.7"));
        assert_eq!(
            fp("ua/1", "2001:db8:1:aaaa::1"),
            fp("ua/1", "2001:db8:1:bbbb::2")
        );
        assert_ne!(fp("ua/1", "2001:db8:1::1"), fp("ua/1", "2001:db8:2::1"));
        assert_eq!(fp("ua/1", "::ffff:192.0.2.9"), fp("ua/1", "192.0.2.1"));
        assert_ne!(
            fingerprint_digest(&[8u8; 32], user, "ua/1", "192.0.2.7"),
            fp("ua/1", "192.0.2.7"),
            "keyed"
        );
        assert_ne!(
            cookie_digest(&key, user, "x"),
            mac(&key, &[b"fp:", user.as_bytes(), b"x"])
        );
    }

    #[test]
    fn one_browser_gives_each_account_its_own_digests() {
        let key = [7u8; 32];
        let (alice, bob) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let value = "A".repeat(43);
        assert_ne!(
            cookie_digest(&key, alice, &value),
            cookie_digest(&key, bob, &value)
        );
        assert_eq!(
            cookie_digest(&key, alice, &value),
            cookie_digest(&key, alice, &value)
        );
        assert_ne!(
            fingerprint_digest(&key, alice, "ua/1", "192.0.2.7"),
            fingerprint_digest(&key, bob, "ua/1", "192.0.2.7")
        );
    }

    #[test]
    fn only_a_well_formed_device_cookie_is_read() {
        let value = "A".repeat(43);
        let header = format!("a=b; {COOKIE_NAME}={value}; c=d");
        assert_eq!(cookie_from_header(&header), Some(value.as_str()));
        assert_eq!(cookie_from_header(&format!("{COOKIE_NAME}=short")), None);
        assert_eq!(
            cookie_from_header(&format!("{COOKIE_NAME}={}", "+".repeat(43))),
            None
        );
        assert!(set_cookie(&value).starts_with("__Host-portcullis_device="));
        assert!(set_cookie(&value).contains("Max-Age=34560000"));
    }
}
