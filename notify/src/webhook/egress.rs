//! Where a webhook may connect: the address ranges refused ([`forbidden`]) and the resolver
//! that applies them to every address a host name resolves to ([`GuardedResolver`]).

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// The range `ip` is refused for, if any: unspecified, loopback (unless `allow_loopback`),
/// private, CGNAT, link-local, unique local, multicast, broadcast, documentation,
/// benchmarking and other reserved ranges. An IPv6 address that embeds an IPv4 one
/// (IPv4-mapped, NAT64, 6to4) is judged by that IPv4 address.
pub fn forbidden(ip: IpAddr, allow_loopback: bool) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4, allow_loopback),
        IpAddr::V6(v6) => forbidden_v6(v6, allow_loopback),
    }
}

/// Whether `ip` is loopback (IPv4-mapped loopback included).
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr, allow_loopback: bool) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    if ip.is_loopback() {
        return (!allow_loopback).then_some("loopback");
    }
    let range = match (a, b, c) {
        (0, _, _) => "unspecified",
        (10, _, _) | (172, 16..=31, _) | (192, 168, _) => "private",
        (100, 64..=127, _) => "shared (CGNAT)",
        (169, 254, _) => "link-local",
        (192, 0, 0) => "IETF protocol",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18..=19, _) => "benchmarking",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved",
        _ => return None,
    };
    Some(range)
}

fn forbidden_v6(ip: Ipv6Addr, allow_loopback: bool) -> Option<&'static str> {
    if ip.is_loopback() {
        return (!allow_loopback).then_some("loopback");
    }
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4, allow_loopback);
    }
    let s = ip.segments();
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) reach the IPv4 address they embed.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return forbidden_v4(embedded(s[6], s[7]), allow_loopback);
    }
    if s[0] == 0x2002 {
        return forbidden_v4(embedded(s[1], s[2]), allow_loopback);
    }
    let range = match s[0] {
        0x0000..=0x00ff => "reserved",
        0xfc00..=0xfdff => "unique local",
        0xfe80..=0xfebf => "link-local",
        0xfec0..=0xfeff => "site-local",
        0xff00..=0xffff => "multicast",
        0x2001 if s[1] == 0x0db8 => "documentation",
        // Teredo tunnels reach arbitrary IPv4 hosts.
        0x2001 if s[1] == 0 => "Teredo",
        _ => return None,
    };
    Some(range)
}

fn embedded(high: u16, low: u16) -> Ipv4Addr {
    let [a, b] = high.to_be_bytes();
    let [c, d] = low.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

/// A host name resolved to a forbidden address: the attempt is refused before any connection.
#[derive(Debug, thiserror::Error)]
#[error("the webhook host resolves to a {0} address")]
pub struct BlockedAddress(pub &'static str);

/// The addresses to connect to: all of `addresses` if none is forbidden, else an error (one
/// bad answer refuses the whole name, so a mixed answer cannot be used to reach inside).
pub fn check_resolved(
    addresses: &[IpAddr],
    allow_loopback: bool,
) -> Result<Vec<IpAddr>, BlockedAddress> {
    if addresses.is_empty() {
        return Err(BlockedAddress("empty"));
    }
    match addresses
        .iter()
        .find_map(|ip| forbidden(*ip, allow_loopback))
    {
        Some(range) => Err(BlockedAddress(range)),
        None => Ok(addresses.to_vec()),
    }
}

/// How a name is looked up: the system resolver in production, a fixed answer in tests.
pub type Lookup = Arc<
    dyn Fn(String) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>> + Send + Sync,
>;

/// The webhook client's resolver: looks the name up, then refuses it if any address is
/// forbidden ([`check_resolved`]). The client connects only to the addresses returned here.
#[derive(Clone)]
pub struct GuardedResolver {
    allow_loopback: bool,
    lookup: Lookup,
}

impl std::fmt::Debug for GuardedResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedResolver")
            .field("allow_loopback", &self.allow_loopback)
            .finish_non_exhaustive()
    }
}

impl GuardedResolver {
    /// Over the system resolver (`getaddrinfo`, via tokio).
    pub fn system(allow_loopback: bool) -> Self {
        Self::with_lookup(
            allow_loopback,
            Arc::new(|name: String| {
                Box::pin(async move {
                    let found = tokio::net::lookup_host((name.as_str(), 0)).await?;
                    Ok(found.map(|a| a.ip()).collect())
                })
            }),
        )
    }

    /// Over `lookup`.
    pub fn with_lookup(allow_loopback: bool, lookup: Lookup) -> Self {
        Self {
            allow_loopback,
            lookup,
        }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let lookup = Arc::clone(&self.lookup);
        let allow_loopback = self.allow_loopback;
        let name = name.as_str().to_owned();
        Box::pin(async move {
            let found = lookup(name).await?;
            let checked = check_resolved(&found, allow_loopback)?;
            // Port 0: the connector puts the URL's port in.
            let addrs: Addrs = Box::new(checked.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_and_special_addresses_are_forbidden() {
        let table: [(&str, Option<&str>); 30] = [
            ("0.0.0.0", Some("unspecified")),
            ("127.0.0.1", Some("loopback")),
            ("127.9.9.9", Some("loopback")),
            ("10.0.0.1", Some("private")),
            ("172.16.0.1", Some("private")),
            ("172.31.255.255", Some("private")),
            ("192.168.1.1", Some("private")),
            ("100.64.0.1", Some("shared (CGNAT)")),
            ("100.127.255.255", Some("shared (CGNAT)")),
            ("169.254.169.254", Some("link-local")),
            ("192.0.2.10", Some("documentation")),
            ("198.51.100.1", Some("documentation")),
            ("203.0.113.9", Some("documentation")),
            ("224.0.0.1", Some("multicast")),
            ("255.255.255.255", Some("reserved")),
            ("::", Some("unspecified")),
            ("::1", Some("loopback")),
            ("::ffff:127.0.0.1", Some("loopback")),
            ("::ffff:10.1.2.3", Some("private")),
            ("64:ff9b::a9fe:a9fe", Some("link-local")),
            ("2002:a00:1::", Some("private")),
            ("fd00::1", Some("unique local")),
            ("fe80::1", Some("link-local")),
            ("ff02::1", Some("multicast")),
            ("2001:db8::1", Some("documentation")),
            ("172.32.0.1", None),
            ("100.128.0.1", None),
            ("93.184.215.14", None),
            ("2606:4700::1111", None),
            ("::ffff:93.184.215.14", None),
        ];
        for (address, want) in table {
            assert_eq!(forbidden(ip(address), false), want, "{address}");
        }
    }

    #[test]
    fn loopback_is_allowed_only_when_asked_and_nothing_else_is() {
        for address in ["127.0.0.1", "::1", "::ffff:127.0.0.1"] {
            assert_eq!(forbidden(ip(address), true), None, "{address}");
            assert!(is_loopback(ip(address)));
        }
        for address in ["10.0.0.1", "169.254.169.254", "fd00::1"] {
            assert!(forbidden(ip(address), true).is_some(), "{address}");
        }
    }

    #[test]
    fn one_forbidden_address_refuses_the_whole_answer() {
        let public = ip("93.184.215.14");
        assert_eq!(check_resolved(&[public], false).unwrap(), vec![public]);
        assert_eq!(
            check_resolved(&[public, ip("169.254.169.254")], false)
                .unwrap_err()
                .0,
            "link-local"
        );
        assert!(check_resolved(&[], false).is_err());
    }

    fn fixed(answer: &'static str) -> Lookup {
        Arc::new(move |_| Box::pin(async move { Ok(vec![answer.parse().unwrap()]) }))
    }

    #[tokio::test]
    async fn a_name_resolving_to_the_metadata_address_is_refused() {
        let resolver = GuardedResolver::with_lookup(false, fixed("169.254.169.254"));
        let refused = resolver
            .resolve("hooks.example.org".parse().unwrap())
            .await
            .err()
            .unwrap();
        assert!(refused.is::<BlockedAddress>(), "{refused}");
        let resolver = GuardedResolver::with_lookup(false, fixed("93.184.215.14"));
        let addrs: Vec<_> = resolver
            .resolve("hooks.example.org".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert_eq!(addrs, vec!["93.184.215.14:0".parse().unwrap()]);
    }

    #[tokio::test]
    async fn the_system_resolver_refuses_localhost_unless_loopback_is_allowed() {
        let refused = GuardedResolver::system(false)
            .resolve("localhost".parse().unwrap())
            .await
            .err()
            .unwrap();
        assert!(refused.is::<BlockedAddress>(), "{refused}");
        assert!(
            GuardedResolver::system(true)
                .resolve("localhost".parse().unwrap())
                .await
                .is_ok()
        );
    }
}
