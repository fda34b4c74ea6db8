//! Bucket keys, pure: the IP bucket, the identifier and mail-address digests and the Redis key
//! layout `{prefix}rl:<route>:<key>:<value>`.
//!
//! Identifiers and addresses are stored as digests only, so no email address reaches Redis.

use std::fmt::Write as _;
use std::net::IpAddr;

use sha2::{Digest, Sha256};

/// The bucket value of a client IP: IPv4 dotted; IPv6 its /64 (a customer gets 2^64 addresses,
/// so a per-address limit would be useless). A v4-mapped IPv6 address counts as its IPv4.
pub fn ip_bucket(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            format!("{net}/64")
        }
    }
}

/// The first 32 hex digits (128 bits) of the SHA-256 of `text`.
fn digest32(text: &str) -> String {
    let hash = Sha256::digest(text.as_bytes());
    let mut out = String::with_capacity(32);
    for byte in &hash[..16] {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// The bucket value of a user by the identifier they typed, whether or not the account exists:
/// the first 32 hex of SHA-256 of the canonical identifier (the caller canonicalises it).
pub fn identifier_digest(canonical_identifier: &str) -> String {
    digest32(canonical_identifier)
}

/// The bucket value of the per-address mail limit: the digest of the canonical address with a
/// `+tag` stripped from the local part (RFC 5233 sub-addressing), since plus-variants reach the
/// same mailbox. Only this key strips the tag, never the account identifier.
pub fn mail_address_digest(canonical_address: &str) -> String {
    digest32(&strip_plus_tag(canonical_address))
}

/// `local+tag@domain` → `local@domain`; anything else unchanged. The last `@` splits the
/// address, as a quoted local part may contain one.
pub fn strip_plus_tag(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => match local.split_once('+') {
            // "+tag@x" alone would leave an empty local part: keep such an address whole.
            Some((base, _)) if !base.is_empty() => format!("{base}@{domain}"),
            _ => address.to_owned(),
        },
        None => address.to_owned(),
    }
}

/// The Redis key of one bucket: `{prefix}rl:<route>:<key>:<value>`, e.g.
/// `portcullis:main:rl:login:ip:192.0.2.7`.
pub fn bucket_key(prefix: &str, route: &str, key: &str, value: &str) -> String {
    format!("{prefix}rl:{route}:{key}:{value}")
}

/// The Redis key of the per-address mail limit: `{prefix}rl:mail:addr:<digest>`.
pub fn mail_key(prefix: &str, canonical_address: &str) -> String {
    bucket_key(
        prefix,
        "mail",
        "addr",
        &mail_address_digest(canonical_address),
    )
}

/// The bucket value of the global key.
pub const GLOBAL: &str = "-";

/// The bucket value of any client id that is not registered (keeps the key set bounded).
pub const UNKNOWN_CLIENT: &str = "unknown";

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn ipv4_is_kept_as_is() {
        assert_eq!(ip_bucket(ip("192.0.2.7")), "192.0.2.7");
    }

    #[test]
    fn ipv6_is_keyed_by_its_slash_64() {
        assert_eq!(
            ip_bucket(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            ip_bucket(ip("2001:db8:1:2::1")),
            ip_bucket(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            ip_bucket(ip("2001:db8:1:2::1")),
            ip_bucket(ip("2001:db8:1:3::1"))
        );
        assert_eq!(ip_bucket(ip("::1")), "::/64");
    }

    #[test]
    fn v4_mapped_ipv6_counts_as_its_ipv4() {
        assert_eq!(ip_bucket(ip("::ffff:192.0.2.7")), "192.0.2.7");
    }

    #[test]
    fn identifier_digest_is_the_first_32_hex_of_sha256() {
        // SHA-256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
        assert_eq!(identifier_digest("abc"), "ba7816bf8f01cfea414140de5dae2223");
        assert_ne!(
            identifier_digest("alice@example.com"),
            identifier_digest("bob@example.com")
        );
    }

    #[test]
    fn mail_key_strips_a_plus_tag_from_the_local_part_only() {
        assert_eq!(
            strip_plus_tag("alice+news@example.com"),
            "alice@example.com"
        );
        assert_eq!(strip_plus_tag("alice+a+b@example.com"), "alice@example.com");
        assert_eq!(strip_plus_tag("alice@ex+ample.com"), "alice@ex+ample.com");
        assert_eq!(strip_plus_tag("+tag@example.com"), "+tag@example.com");
        assert_eq!(strip_plus_tag("no-at-sign"), "no-at-sign");
        assert_eq!(
            mail_key("p:", "alice+x@example.com"),
            mail_key("p:", "alice@example.com")
        );
        assert_eq!(
            mail_key("portcullis:main:", "alice@example.com"),
            format!(
                "portcullis:main:rl:mail:addr:{}",
                identifier_digest("alice@example.com")
            )
        );
    }

    #[test]
    fn bucket_keys_follow_the_layout() {
        assert_eq!(
            bucket_key(
                "portcullis:main:",
                "login",
                "ip",
                &ip_bucket(ip("2001:db8::5"))
            ),
            "portcullis:main:rl:login:ip:2001:db8::/64"
        );
        assert_eq!(
            bucket_key("portcullis:main:", "all", "global", GLOBAL),
            "portcullis:main:rl:all:global:-"
        );
    }
}
