//! Addresses as banstream sees them: parsing captured text into an [`IpAddr`],
//! normalising IPv4-mapped IPv6, the counting key for IPv6 prefixes, and the
//! addresses that must never be banned.
//!
//! Everything that reaches a window counter or an action has passed through
//! [`parse_host`]: a string an attacker wrote never travels further as a string.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Parses a captured `<HOST>` into an address.
///
/// Accepts dotted IPv4, IPv6 (optionally in brackets, optionally with a
/// `%zone` suffix, which is dropped) and IPv4-mapped IPv6, which comes back as
/// IPv4. Anything else (a hostname, garbage) is `None`: banstream does not
/// resolve names an attacker chose.
pub fn parse_host(text: &str) -> Option<IpAddr> {
    let t = text.trim();
    let t = t
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(t);
    let t = match t.find('%') {
        Some(i) => &t[..i],
        None => t,
    };
    // A leading zero in an IPv4 octet is ambiguous (octal to inet_aton); std
    // refuses it, which is what we want.
    let ip: IpAddr = t.parse().ok()?;
    Some(normalize(ip))
}

/// Maps `::ffff:a.b.c.d` to `a.b.c.d`; leaves everything else unchanged.
pub fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// The key a window counts under: the address itself, or for IPv6 the
/// network of `prefix` bits that contains it.
pub fn count_key(ip: IpAddr, ipv6_prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V6(v6) if ipv6_prefix < 128 => {
            let bits = u128::from(v6);
            let mask = if ipv6_prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(ipv6_prefix))
            };
            IpAddr::V6(Ipv6Addr::from(bits & mask))
        }
        other => other,
    }
}

/// Addresses that are never a valid ban target whatever the configuration
/// says: loopback, unspecified, multicast and broadcast. Banning these would
/// cut the host off from itself or make no sense.
pub fn is_unbannable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback() || v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast()
        }
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unspecified() || v6.is_multicast(),
    }
}

/// Parses one `ignoreip`-style entry: an address or a CIDR network.
pub fn parse_net(text: &str) -> Option<IpNet> {
    let t = text.trim();
    if let Ok(net) = t.parse::<IpNet>() {
        return Some(normalize_net(net));
    }
    let ip = parse_host(t)?;
    Some(IpNet::from(ip))
}

fn normalize_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
            Some(v4) if v6.prefix_len() >= 96 => IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96)
                .unwrap_or(IpNet::from(IpAddr::V4(v4))),
            _ => IpNet::V6(v6.trunc()),
        },
        IpNet::V4(v4) => IpNet::V4(v4.trunc()),
    }
}

/// The IPv4 loopback network, which is always ignored.
pub const LOOPBACK_V4: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 0);

/// The addresses configured on this host's interfaces (`ignoreself`).
///
/// Read with getifaddrs; an error (no permission, no interfaces) gives an
/// empty list, and loopback is ignored separately anyway.
pub fn own_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for ifa in addrs {
            let Some(sa) = ifa.address else { continue };
            if let Some(v4) = sa.as_sockaddr_in() {
                out.push(IpAddr::V4(v4.ip()));
            } else if let Some(v6) = sa.as_sockaddr_in6() {
                out.push(normalize(IpAddr::V6(v6.ip())));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v4_v6_bracketed_and_zoned() {
        assert_eq!(parse_host("1.2.3.4"), Some("1.2.3.4".parse().unwrap()));
        assert_eq!(
            parse_host("[2001:db8::1]"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(parse_host("fe80::1%eth0"), Some("fe80::1".parse().unwrap()));
    }

    #[test]
    fn mapped_v6_becomes_v4() {
        assert_eq!(
            parse_host("::ffff:192.0.2.7"),
            Some("192.0.2.7".parse().unwrap())
        );
        assert_eq!(
            parse_net("::ffff:192.0.2.0/120"),
            Some("192.0.2.0/24".parse().unwrap())
        );
    }

    #[test]
    fn hostnames_and_garbage_are_not_addresses() {
        assert_eq!(parse_host("example.com"), None);
        assert_eq!(parse_host("1.2.3.4.5"), None);
        assert_eq!(parse_host("01.2.3.4"), None);
        assert_eq!(parse_host(""), None);
    }

    #[test]
    fn v6_prefix_key() {
        let ip: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        assert_eq!(
            count_key(ip, 64),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
        assert_eq!(count_key(ip, 128), ip);
        let v4: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(count_key(v4, 64), v4);
    }

    #[test]
    fn unbannable() {
        for s in [
            "127.0.0.1",
            "127.9.9.9",
            "::1",
            "0.0.0.0",
            "::",
            "224.0.0.1",
            "255.255.255.255",
            "ff02::1",
        ] {
            assert!(is_unbannable(s.parse().unwrap()), "{s}");
        }
        assert!(!is_unbannable("203.0.113.5".parse().unwrap()));
    }
}
