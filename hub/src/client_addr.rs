//! The client's address: the TCP peer, or — only when the peer is one of the configured trusted
//! proxies (`--trusted-proxies`) — the address that proxy says it forwarded for.
//!
//! Behind an Ingress or a NodePort every connection comes from a proxy or a node, so counting
//! by the TCP peer makes one budget for the whole world; believing `X-Forwarded-For` from
//! anyone lets every client pick its own address. The standard way between the two: walk
//! `X-Forwarded-For` from the right (the entry the nearest proxy appended), skip the trusted
//! proxies, and take the first address that is not one of them.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The trusted proxies' networks (`10.0.0.0/8`, `192.168.1.10`, `fd00::/8`).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn parse(list: &[String]) -> Result<Self, String> {
        list.iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("trusted proxy {s:?} is neither an address nor a CIDR"))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client behind `peer` (see the module docs).
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = canonical(peer);
        if !self.contains(client) {
            return client;
        }
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect::<Vec<_>>();
        for hop in hops.iter().rev() {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    client = canonical(ip);
                    if !self.contains(client) {
                        break;
                    }
                }
                // A trusted proxy wrote something that is not an address: stop at that proxy.
                Err(_) => break,
            }
        }
        client
    }
}

/// What one client is counted as by the limits keyed on clients (the login throttle, the
/// connection caps): an IPv4 address (also when it arrives IPv4-mapped on a dual-stack
/// listener), or an IPv6 /64 — the block one host or one home router usually gets, so a client
/// cannot escape a limit by cycling addresses within it.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// IPv4 addresses seen on an IPv6 socket (`::ffff:a.b.c.d`) as plain IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn proxies() -> TrustedProxies {
        TrustedProxies::parse(&["10.244.0.0/16".into(), " 192.0.2.10 ".into(), "".into()]).unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let p = proxies();
        assert_eq!(
            p.client(ip("203.0.113.5"), &xff(&["1.2.3.4"])),
            ip("203.0.113.5")
        );
        assert_eq!(
            TrustedProxies::default().client(ip("10.244.1.1"), &xff(&["1.2.3.4"])),
            ip("10.244.1.1")
        );
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let p = proxies();
        // The client forged a first entry; the ingress appended the real address.
        assert_eq!(
            p.client(ip("10.244.3.7"), &xff(&["6.6.6.6, 198.51.100.20"])),
            ip("198.51.100.20")
        );
        // Two trusted proxies in a row, headers split over several lines.
        assert_eq!(
            p.client(
                ip("10.244.3.7"),
                &xff(&["198.51.100.20", "192.0.2.10, 10.244.9.9"])
            ),
            ip("198.51.100.20")
        );
        assert_eq!(
            p.client(ip("::ffff:10.244.3.7"), &xff(&["::ffff:198.51.100.20"])),
            ip("198.51.100.20")
        );
    }

    #[test]
    fn garbage_or_no_header_stops_at_the_proxy() {
        let p = proxies();
        assert_eq!(
            p.client(ip("10.244.3.7"), &HeaderMap::new()),
            ip("10.244.3.7")
        );
        assert_eq!(
            p.client(ip("10.244.3.7"), &xff(&["198.51.100.20, unknown"])),
            ip("10.244.3.7")
        );
    }

    #[test]
    fn a_client_is_an_ipv4_address_or_an_ipv6_slash_64() {
        assert_eq!(client_key(ip("192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(client_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(
            client_key(ip("2001:db8:1:2:aaaa::1")),
            client_key(ip("2001:db8:1:2:bbbb::9"))
        );
        assert_ne!(
            client_key(ip("2001:db8:1:2::1")),
            client_key(ip("2001:db8:1:3::1"))
        );
    }

    #[test]
    fn refuses_what_is_no_network() {
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["ingress".into()]).is_err());
    }
}
