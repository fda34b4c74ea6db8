//! The client's address: the socket peer, or what trusted proxies say in `X-Forwarded-For`.

use std::net::IpAddr;

use portcullis_crds::settings::Cidr;

/// The client address. `X-Forwarded-For` (every header, in order) is believed only when the
/// peer is a trusted proxy; it is read from the right, each trusted proxy vouching for the
/// entry to its left, and the first address that is not a trusted proxy is the client. An
/// entry that is not an address stops the walk at the proxy that wrote it, so nothing a client
/// put further left can win.
pub fn client_ip(peer: Option<IpAddr>, forwarded_for: &[&str], trusted: &[Cidr]) -> String {
    client_addr(peer, forwarded_for, trusted)
        .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
}

/// The client address as [`client_ip`] finds it, `None` without a known peer (the rate
/// limiter keys by it, so it needs the address, not its text).
pub fn client_addr(
    peer: Option<IpAddr>,
    forwarded_for: &[&str],
    trusted: &[Cidr],
) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    let mut client = peer;
    if !is_trusted(peer) {
        return Some(peer);
    }
    let entries: Vec<&str> = forwarded_for
        .iter()
        .flat_map(|header| header.split(','))
        .collect();
    for entry in entries.iter().rev() {
        let Some(ip) = forwarded_address(entry.trim()) else {
            break;
        };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    Some(client)
}

/// Whether `X-Forwarded-For` was sent by a peer that is not a trusted proxy, and so ignored
/// (counted: a client trying to choose its own address, or a proxy missing from
/// `trustedProxies`). Without a known peer nothing is decided.
pub fn forwarded_for_ignored(
    peer: Option<IpAddr>,
    forwarded_for: &[&str],
    trusted: &[Cidr],
) -> bool {
    !forwarded_for.is_empty() && peer.is_some_and(|ip| !trusted.iter().any(|c| c.contains(ip)))
}

/// An `X-Forwarded-For` entry as an address: `ip`, `ipv4:port`, `[ipv6]` or `[ipv6]:port`.
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse() {
        return Some(ip);
    }
    if let Some(rest) = entry.strip_prefix('[') {
        let (ip, port) = rest.split_once(']')?;
        return (port.is_empty() || port.strip_prefix(':').is_some_and(is_port))
            .then(|| ip.parse().ok())
            .flatten();
    }
    let (ip, port) = entry.split_once(':')?;
    let ip: std::net::Ipv4Addr = ip.parse().ok()?;
    is_port(port).then_some(IpAddr::V4(ip))
}

fn is_port(text: &str) -> bool {
    text.parse::<u16>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|c| Cidr::parse(c).unwrap()).collect()
    }

    #[test]
    fn forwarded_for_is_ignored_from_untrusted_peers() {
        let ip = client_ip(
            Some("203.0.113.9".parse().unwrap()),
            &["1.2.3.4"],
            &cidrs(&["10.0.0.0/8"]),
        );
        assert_eq!(ip, "203.0.113.9");
    }

    #[test]
    fn forwarded_for_counts_as_ignored_only_from_a_known_untrusted_peer() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        let stranger = Some("203.0.113.9".parse().unwrap());
        let proxy = Some("10.0.0.2".parse().unwrap());
        assert!(forwarded_for_ignored(stranger, &["1.2.3.4"], &trusted));
        assert!(!forwarded_for_ignored(stranger, &[], &trusted));
        assert!(!forwarded_for_ignored(proxy, &["1.2.3.4"], &trusted));
        assert!(!forwarded_for_ignored(None, &["1.2.3.4"], &trusted));
    }

    #[test]
    fn the_rightmost_untrusted_address_is_the_client() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        let ip = client_ip(
            Some("10.0.0.2".parse().unwrap()),
            &["6.6.6.6, 198.51.100.7, 10.0.0.5"],
            &trusted,
        );
        assert_eq!(
            ip, "198.51.100.7",
            "a client-supplied leftmost entry must not win"
        );
    }

    #[test]
    fn a_trusted_peer_without_header_is_the_client() {
        let ip = client_ip(
            Some("10.0.0.2".parse().unwrap()),
            &[],
            &cidrs(&["10.0.0.0/8"]),
        );
        assert_eq!(ip, "10.0.0.2");
    }

    #[test]
    fn an_unreadable_entry_stops_the_walk_at_the_proxy_that_wrote_it() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        let peer = Some("10.0.0.2".parse().unwrap());
        for forwarded in ["6.6.6.6, garbage", "6.6.6.6, , 10.0.0.5", "6.6.6.6,"] {
            let ip = client_ip(peer, &[forwarded], &trusted);
            assert!(ip.starts_with("10.0.0."), "{forwarded}: {ip}");
        }
    }

    #[test]
    fn every_forwarded_header_is_read_in_order() {
        let ip = client_ip(
            Some("10.0.0.2".parse().unwrap()),
            &["6.6.6.6", "198.51.100.7"],
            &cidrs(&["10.0.0.0/8"]),
        );
        assert_eq!(ip, "198.51.100.7");
    }

    #[test]
    fn addresses_with_ports_are_read() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        let peer = Some("10.0.0.2".parse().unwrap());
        assert_eq!(
            client_ip(peer, &["198.51.100.7:5555"], &trusted),
            "198.51.100.7"
        );
        assert_eq!(
            client_ip(peer, &["[2001:db8::1]:443"], &trusted),
            "2001:db8::1"
        );
        assert_eq!(client_ip(peer, &["[2001:db8::1]"], &trusted), "2001:db8::1");
    }
}
