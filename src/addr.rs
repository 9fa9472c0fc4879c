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
    // Most hosts are a bare dotted quad: read it in one pass, before the
    // trims and searches below (which change nothing for such text). Any
    // other text fails within its first few bytes here.
    if let Some(v4) = parse_ipv4(text.as_bytes()) {
        return Some(IpAddr::V4(v4));
    }
    let t = text.trim();
    let t = t
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(t);
    // Byte searches: hosts are short, and `str::find` costs more to set up
    // than to run on them.
    let t = match t.bytes().position(|b| b == b'%') {
        Some(i) => t.get(..i)?,
        None => t,
    };
    // A leading zero in an IPv4 octet is ambiguous (octal to inet_aton); std
    // refuses it, which is what we want. Without a colon only IPv4 can
    // parse, and its own parser skips the IPv6 attempt.
    if !t.as_bytes().contains(&b':') {
        return parse_ipv4(t.as_bytes()).map(IpAddr::V4);
    }
    let ip: IpAddr = t.parse().ok()?;
    Some(normalize(ip))
}

/// Dotted IPv4 exactly as std reads it (four decimal octets of one to
/// three digits, no leading zero, at most 255), in one pass: std's parser
/// is generic and took most of the time spent on each captured address.
fn parse_ipv4(b: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut i = 0;
    for (k, o) in octets.iter_mut().enumerate() {
        if k > 0 {
            if b.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let start = i;
        let mut v: u32 = 0;
        // At most three digits: a fourth fails the dot or the end check.
        while let Some(&d) = b.get(i) {
            if !d.is_ascii_digit() || i - start == 3 {
                break;
            }
            v = v * 10 + u32::from(d - b'0');
            i += 1;
        }
        let n = i - start;
        if n == 0 || (n > 1 && b.get(start) == Some(&b'0')) {
            return None;
        }
        *o = u8::try_from(v).ok()?;
    }
    (i == b.len()).then_some(Ipv4Addr::from(octets))
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
    fn ipv4_is_read_exactly_as_std_reads_it() {
        let mut cases: Vec<String> = [
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4.",
            ".1.2.3",
            "1..2.3",
            "1.2.3.4 ",
            "+1.2.3.4",
            "1.2.3.-4",
            "00.1.2.3",
            "0.01.2.3",
            "1.2.3.0000",
            "1.2.3.999",
            "1.2.3.4a",
            "١.2.3.4",
            "",
            ".",
            "...",
            "1.2.3.4.5",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Every shape of octet from a small alphabet, at every position.
        let octets = [
            "0", "9", "10", "99", "100", "199", "255", "256", "300", "1000", "01", "x", "",
        ];
        for a in octets {
            for b in octets {
                cases.push(format!("{a}.{b}.1.2"));
                cases.push(format!("1.{a}.2.{b}"));
                cases.push(format!("{a}.{b}"));
            }
        }
        for c in &cases {
            assert_eq!(
                parse_ipv4(c.as_bytes()),
                c.parse::<Ipv4Addr>().ok(),
                "{c:?}"
            );
        }
    }

    #[test]
    fn parses_v4_v6_bracketed_and_zoned() {
        assert_eq!(parse_host("1.2.3.4"), Some("1.2.3.4".parse().unwrap()));
        assert_eq!(
            parse_host("[2001:db8::1]"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(parse_host("fe80::1%eth0"), Some("fe80::1".parse().unwrap()));
        // Past the dotted-quad fast path, the general one still reads these.
        assert_eq!(parse_host(" 1.2.3.4\t"), Some("1.2.3.4".parse().unwrap()));
        assert_eq!(parse_host("[1.2.3.4]"), Some("1.2.3.4".parse().unwrap()));
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
        assert_eq!(parse_host("1.2.3.4%eth0"), Some("1.2.3.4".parse().unwrap()));
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
