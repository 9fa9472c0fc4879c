//! Port lists as fail2ban writes them: `ssh,19226`, `1000:2000`, `domain,953`,
//! `all`. Service names resolve through /etc/services, with a built-in table
//! for the names jails use so a minimal system without that file still works.

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

/// A set of destination ports a jail covers.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum PortSpec {
    /// Every port (allports, or `port = all`).
    #[default]
    All,
    /// These ports and ranges.
    List(Vec<PortRange>),
}

/// One port or an inclusive range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub start: u16,
    /// Last port (equal to `start` for a single port).
    pub end: u16,
}

/// A port list that does not resolve.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("port {input:?}: {reason}")]
pub struct PortError {
    /// The text as written.
    pub input: String,
    /// What is wrong.
    pub reason: String,
}

/// Names the built-in table knows; /etc/services wins when present.
const FALLBACK: &[(&str, u16)] = &[
    ("ssh", 22),
    ("telnet", 23),
    ("smtp", 25),
    ("domain", 53),
    ("http", 80),
    ("www", 80),
    ("pop3", 110),
    ("imap", 143),
    ("imap2", 143),
    ("https", 443),
    ("submission", 587),
    ("submissions", 465),
    ("smtps", 465),
    ("imaps", 993),
    ("pop3s", 995),
    ("ftp", 21),
    ("ftp-data", 20),
    ("rndc", 953),
    ("mysql", 3306),
    ("postgresql", 5432),
    ("openvpn", 1194),
    ("sieve", 4190),
    ("http-alt", 8080),
];

fn services() -> &'static HashMap<String, u16> {
    static TABLE: OnceLock<HashMap<String, u16>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut m: HashMap<String, u16> = FALLBACK
            .iter()
            .map(|(n, p)| ((*n).to_string(), *p))
            .collect();
        if let Ok(text) = std::fs::read_to_string("/etc/services") {
            for line in text.lines() {
                let line = line.split('#').next().unwrap_or("");
                let mut it = line.split_whitespace();
                let (Some(name), Some(pp)) = (it.next(), it.next()) else {
                    continue;
                };
                let Some((port, _proto)) = pp.split_once('/') else {
                    continue;
                };
                let Ok(port) = port.parse::<u16>() else {
                    continue;
                };
                m.entry(name.to_string()).or_insert(port);
                for alias in it {
                    m.entry(alias.to_string()).or_insert(port);
                }
            }
        }
        m
    })
}

fn one_port(s: &str, input: &str) -> Result<u16, PortError> {
    let s = s.trim();
    if let Ok(p) = s.parse::<u16>() {
        if p == 0 {
            return Err(PortError {
                input: input.into(),
                reason: "port 0 is not a port".into(),
            });
        }
        return Ok(p);
    }
    services().get(s).copied().ok_or_else(|| PortError {
        input: input.into(),
        reason: format!("{s:?} is neither a number nor a service name in /etc/services"),
    })
}

impl PortSpec {
    /// Parses a comma-separated list of ports, ranges (`a:b` or `a-b`) and
    /// service names, or `all`/`any`/`0:65535` for every port.
    pub fn parse(input: &str) -> Result<PortSpec, PortError> {
        let t = input.trim();
        if t.is_empty()
            || t.eq_ignore_ascii_case("all")
            || t.eq_ignore_ascii_case("any")
            || t == "0:65535"
            || t == "1:65535"
        {
            return Ok(PortSpec::All);
        }
        let mut out = Vec::new();
        for part in t.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let range = match part.split_once([':', '-']).filter(|(a, _)| !a.is_empty()) {
                Some((a, b)) if a.chars().all(|c| c.is_ascii_digit()) => {
                    let (a, b) = (one_port(a, input)?, one_port(b, input)?);
                    if a > b {
                        return Err(PortError {
                            input: input.into(),
                            reason: format!("range {a}:{b} is backwards"),
                        });
                    }
                    PortRange { start: a, end: b }
                }
                _ => {
                    let p = one_port(part, input)?;
                    PortRange { start: p, end: p }
                }
            };
            if !out.contains(&range) {
                out.push(range);
            }
        }
        if out.is_empty() {
            return Ok(PortSpec::All);
        }
        Ok(PortSpec::List(out))
    }

    /// Whether `port` is covered.
    pub fn contains(&self, port: u16) -> bool {
        match self {
            PortSpec::All => true,
            PortSpec::List(l) => l.iter().any(|r| (r.start..=r.end).contains(&port)),
        }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}:{}", self.start, self.end)
        }
    }
}

impl fmt::Display for PortSpec {
    /// Numeric form, as iptables' multiport takes it (`22,19226,1000:2000`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortSpec::All => f.write_str("0:65535"),
            PortSpec::List(l) => {
                for (i, r) in l.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{r}")?;
                }
                Ok(())
            }
        }
    }
}

/// Transport protocol a jail's rule matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub enum Protocol {
    /// TCP only (fail2ban's default).
    #[default]
    Tcp,
    /// UDP only.
    Udp,
    /// Every protocol.
    All,
}

impl Protocol {
    /// Parses `tcp`, `udp` or `all`.
    pub fn parse(s: &str) -> Option<Protocol> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tcp" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            "all" | "any" | "" => Some(Protocol::All),
            _ => None,
        }
    }
    /// The name iptables and nft use.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::All => "all",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_ranges() {
        assert_eq!(
            PortSpec::parse("ssh,19226").unwrap().to_string(),
            "22,19226"
        );
        assert_eq!(PortSpec::parse("domain,953").unwrap().to_string(), "53,953");
        assert_eq!(
            PortSpec::parse("1000:2000").unwrap().to_string(),
            "1000:2000"
        );
        assert_eq!(PortSpec::parse("all").unwrap(), PortSpec::All);
        assert!(PortSpec::parse("ssh").unwrap().contains(22));
        assert!(!PortSpec::parse("ssh").unwrap().contains(23));
    }

    #[test]
    fn errors() {
        assert!(PortSpec::parse("nosuchservice").is_err());
        assert!(PortSpec::parse("2000:1000").is_err());
        assert!(PortSpec::parse("0").is_err());
        assert!(PortSpec::parse("70000").is_err());
    }
}
