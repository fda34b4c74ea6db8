//! Bucket keys, pure: the IP bucket, the identifier and mail-address digests and the Redis key
//! layout `{prefix}rl:<route>:<key>:<value>`.
//!
//! Identifiers and addresses are stored as digests only, so no email address reaches Redis.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use sha2::{Digest, Sha256};

/// The bucket value of a client IP: IPv4 dotted; IPv6 its /64 (a customer gets 2^64 addresses,
/// so a per-address limit would be useless). A v4-mapped IPv6 address counts as its IPv4.
pub fn ip_bucket(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let net = Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            format!("{net}/64")
        }
    }
}

/// The IPv6 prefix lengths of [`ip_prefix_buckets`], most specific first.
pub const IPV6_PREFIX_LENS: [u8; 3] = [64, 56, 48];

/// The IPv4 address a transition prefix embeds, so its users count as that IPv4 client:
/// 6to4 (`2002:AABB:CCDD::/48`, RFC 3056: one IPv4 address owns 2^16 /64s) and the NAT64
/// well-known prefix (`64:ff9b::a.b.c.d`, RFC 6052: every IPv4 client of a translator would
/// otherwise share one /64). A v4-mapped address counts as its IPv4 too, as in [`ip_bucket`].
pub fn embedded_ipv4(ip: IpAddr) -> Option<Ipv4Addr> {
    let v6 = match ip.to_canonical() {
        IpAddr::V4(v4) => return Some(v4),
        IpAddr::V6(v6) => v6,
    };
    let s = v6.segments();
    let [a, b] = s[1].to_be_bytes();
    let [c, d] = s[2].to_be_bytes();
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(a, b, c, d));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [a, b] = s[6].to_be_bytes();
        let [c, d] = s[7].to_be_bytes();
        return Some(Ipv4Addr::new(a, b, c, d));
    }
    None
}

/// The bucket values of a client IP at every level of the prefix hierarchy, most specific
/// first: for IPv6 its /64, /56 and /48 (`2001:db8:1:2::/64`, `2001:db8:1::/56`,
/// `2001:db8:1::/48`, in the order of [`IPV6_PREFIX_LENS`]); for IPv4, and for an IPv6 address
/// embedding one (see [`embedded_ipv4`]), just the dotted IPv4.
///
/// A /48 is what a tunnel broker hands out for free and a /56 what an ISP gives a household,
/// so the /64 of [`ip_bucket`] alone lets one client hold 2^8 to 2^16 independent buckets.
/// The caller checks each value as a bucket of its own, with its own limit, in the same
/// all-or-nothing decision (they fit in [`crate::MAX_BUCKETS`]): the /64 at the configured
/// limit and the wider prefixes with larger quotas, e.g. `requests` and `burst` ×4 for the /56
/// and ×16 for the /48, so a household or a site is not limited like a single machine, yet a
/// /48 holder gets 16 machines' worth, not 65 536. The values differ by their `/len` suffix,
/// so one key kind (`bucket_key(prefix, route, "ip", value)`) keeps them apart; the suffix
/// (or the position) tells which limit applies.
pub fn ip_prefix_buckets(ip: IpAddr) -> Vec<String> {
    if let Some(v4) = embedded_ipv4(ip) {
        return vec![v4.to_string()];
    }
    let bits = match ip {
        IpAddr::V6(v6) => v6.to_bits(),
        // Unreachable: an IPv4 address is its own embedded IPv4 above.
        IpAddr::V4(v4) => return vec![v4.to_string()],
    };
    IPV6_PREFIX_LENS
        .iter()
        .map(|&len| {
            let mask = u128::MAX << (128 - u32::from(len));
            format!("{}/{len}", Ipv6Addr::from_bits(bits & mask))
        })
        .collect()
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

/// The bucket value of the per-address mail limit: the digest of [`mailbox_address`], so that
/// the spellings one mailbox receives under (`+tag`s; dots at Gmail) share one bucket. Only
/// this key folds them, never the account identifier.
pub fn mail_address_digest(canonical_address: &str) -> String {
    digest32(&mailbox_address(canonical_address))
}

/// The domains whose mailboxes ignore dots in the local part; `googlemail.com` is an alias of
/// `gmail.com`. Only these: elsewhere `a.b` and `ab` may be two people.
const DOTLESS_DOMAINS: [&str; 2] = ["gmail.com", "googlemail.com"];

/// The mailbox a canonical (lowercase ASCII) address reaches, as the mail limit counts it:
/// a `+tag` stripped from the local part (RFC 5233 sub-addressing, see [`strip_plus_tag`]),
/// and for `gmail.com` and `googlemail.com` only, the dots removed from the local part and the
/// domain folded to `gmail.com` (Gmail delivers `a.lice@googlemail.com` to `alice@gmail.com`).
/// Other delimiters (`-` at some providers) are not stripped: on most servers it is part of
/// the name. An address whose local part would become empty is kept as it is.
pub fn mailbox_address(canonical_address: &str) -> String {
    let address = strip_plus_tag(canonical_address);
    let Some((local, domain)) = address.rsplit_once('@') else {
        return address;
    };
    if !DOTLESS_DOMAINS
        .iter()
        .any(|d| d.eq_ignore_ascii_case(domain))
    {
        return address;
    }
    let local: String = local.chars().filter(|&c| c != '.').collect();
    if local.is_empty() {
        return address;
    }
    format!("{local}@gmail.com")
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
    fn ip_prefix_buckets_give_the_ipv6_hierarchy_and_map_embedded_ipv4() {
        let table: &[(&str, &[&str])] = &[
            ("192.0.2.7", &["192.0.2.7"]),
            ("::ffff:192.0.2.7", &["192.0.2.7"]),
            (
                "2001:db8:1:2:aaaa:bbbb:cccc:dddd",
                &["2001:db8:1:2::/64", "2001:db8:1::/56", "2001:db8:1::/48"],
            ),
            (
                "2001:db8:abcd:12ff::1",
                &[
                    "2001:db8:abcd:12ff::/64",
                    "2001:db8:abcd:1200::/56",
                    "2001:db8:abcd::/48",
                ],
            ),
            ("::1", &["::/64", "::/56", "::/48"]),
            // 6to4: the /48 is one IPv4 address, whatever the subnet and interface.
            ("2002:c000:0207::1", &["192.0.2.7"]),
            ("2002:c000:0207:ffff:1:2:3:4", &["192.0.2.7"]),
            ("2002:c633:6401::", &["198.51.100.1"]),
            // NAT64 well-known prefix: each IPv4 client its own bucket, not one shared /64.
            ("64:ff9b::192.0.2.7", &["192.0.2.7"]),
            ("64:ff9b::c633:6401", &["198.51.100.1"]),
            // Near misses stay IPv6: a non-zero middle is not the /96 well-known prefix.
            (
                "64:ff9b:1::c000:207",
                &["64:ff9b:1::/64", "64:ff9b:1::/56", "64:ff9b:1::/48"],
            ),
            (
                "2003:c000:207:1ff::1",
                &[
                    "2003:c000:207:1ff::/64",
                    "2003:c000:207:100::/56",
                    "2003:c000:207::/48",
                ],
            ),
        ];
        for (addr, want) in table {
            assert_eq!(ip_prefix_buckets(ip(addr)), *want, "{addr}");
        }
        // The /64 level is ip_bucket's value for native IPv6 and for IPv4.
        for addr in ["2001:db8:1:2::9", "192.0.2.7", "::ffff:10.0.0.1"] {
            assert_eq!(
                ip_prefix_buckets(ip(addr))[0],
                ip_bucket(ip(addr)),
                "{addr}"
            );
        }
        // Two /64s of one /56 share the /56 and /48 buckets; another /48 shares none.
        let a = ip_prefix_buckets(ip("2001:db8:1:1::1"));
        let b = ip_prefix_buckets(ip("2001:db8:1:ff::1"));
        let c = ip_prefix_buckets(ip("2001:db8:2:1::1"));
        assert_ne!(a[0], b[0]);
        assert_eq!(a[1..], b[1..]);
        assert!(a.iter().all(|v| !c.contains(v)));
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
    fn gmail_spellings_of_one_mailbox_share_one_mail_key_and_other_domains_keep_dots() {
        let table = [
            ("alice@gmail.com", "alice@gmail.com"),
            ("a.lice@gmail.com", "alice@gmail.com"),
            ("a.l.i.c.e.@gmail.com", "alice@gmail.com"),
            ("alice@googlemail.com", "alice@gmail.com"),
            ("a.lice+news@googlemail.com", "alice@gmail.com"),
            ("Alice@GMail.com", "Alice@gmail.com"),
            (".@gmail.com", ".@gmail.com"),
            ("+tag@gmail.com", "+tag@gmail.com"),
            ("a.lice@example.com", "a.lice@example.com"),
            ("a.lice+x@example.com", "a.lice@example.com"),
            (
                "a.lice@gmail.com.evil.example",
                "a.lice@gmail.com.evil.example",
            ),
            ("a.lice@notgmail.com", "a.lice@notgmail.com"),
            ("alice-news@example.com", "alice-news@example.com"),
            ("no-at-sign", "no-at-sign"),
        ];
        for (address, mailbox) in table {
            assert_eq!(mailbox_address(address), mailbox, "{address}");
        }
        let key = |a| mail_key("p:", a);
        assert_eq!(key("a.lice@gmail.com"), key("alice@gmail.com"));
        assert_eq!(key("al.ice+x@googlemail.com"), key("alice@gmail.com"));
        assert_ne!(key("a.lice@example.com"), key("alice@example.com"));
        // The account identifier keeps its dots: only the mail key folds them.
        assert_ne!(
            identifier_digest("a.lice@gmail.com"),
            identifier_digest("alice@gmail.com")
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
