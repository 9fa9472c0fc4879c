//! Addresses a jail never bans: `ignoreip` (addresses, CIDR, `file:/path`),
//! the host's own addresses (`ignoreself`), and loopback and the other
//! never-bannable addresses, which no setting can turn back on.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use ipnet::IpNet;

use crate::addr;

/// The ignore list of one jail.
#[derive(Clone, Debug, Default)]
pub struct IgnoreList {
    nets: Vec<IpNet>,
    /// The host's addresses, shared by every jail with ignoreself on.
    own: Option<Arc<Vec<IpAddr>>>,
}

/// Why an `ignoreip` entry was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("ignoreip entry {entry:?}: {reason}")]
pub struct IgnoreError {
    /// The entry as written.
    pub entry: String,
    /// What is wrong.
    pub reason: String,
}

impl IgnoreList {
    /// Builds the list. `own` is the host's addresses when `ignoreself` is on.
    /// Entries may be separated by spaces or commas within one string, as in
    /// jail.local.
    pub fn new(
        entries: &[String],
        own: Option<Arc<Vec<IpAddr>>>,
    ) -> Result<IgnoreList, IgnoreError> {
        let mut nets = Vec::new();
        for raw in entries {
            for entry in raw.split([' ', ',', '\t', '\n']).filter(|s| !s.is_empty()) {
                if let Some(path) = entry.strip_prefix("file:") {
                    nets.extend(read_file(Path::new(path), entry)?);
                    continue;
                }
                let net = addr::parse_net(entry).ok_or_else(|| IgnoreError {
                    entry: entry.to_string(),
                    reason: "not an address or CIDR network (host names are not resolved)".into(),
                })?;
                nets.push(net);
            }
        }
        nets.sort();
        nets.dedup();
        Ok(IgnoreList { nets, own })
    }

    /// Whether `ip` must not be banned by this jail.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = addr::normalize(ip);
        if addr::is_unbannable(ip) {
            return true;
        }
        if self.nets.iter().any(|n| n.contains(&ip)) {
            return true;
        }
        self.own
            .as_ref()
            .is_some_and(|o| o.binary_search(&ip).is_ok())
    }

    /// The configured networks (for status and check).
    pub fn networks(&self) -> &[IpNet] {
        &self.nets
    }
}

fn read_file(path: &Path, entry: &str) -> Result<Vec<IpNet>, IgnoreError> {
    let text = std::fs::read_to_string(path).map_err(|e| IgnoreError {
        entry: entry.to_string(),
        reason: format!("cannot read {}: {e}", path.display()),
    })?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        for word in line.split_whitespace() {
            out.push(addr::parse_net(word).ok_or_else(|| IgnoreError {
                entry: entry.to_string(),
                reason: format!(
                    "{}:{}: {word:?} is not an address or CIDR",
                    path.display(),
                    n + 1
                ),
            })?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_addresses_self_and_loopback() {
        let own = Arc::new(vec!["192.0.2.10".parse().unwrap()]);
        let l = IgnoreList::new(
            &["10.0.0.0/8 203.0.113.5".into(), "2001:db8::/32".into()],
            Some(own),
        )
        .unwrap();
        for ip in [
            "10.1.2.3",
            "203.0.113.5",
            "2001:db8::9",
            "192.0.2.10",
            "127.0.0.1",
            "::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(l.contains(ip.parse().unwrap()), "{ip}");
        }
        assert!(!l.contains("203.0.113.6".parse().unwrap()));
        // Loopback is ignored even with an empty list and ignoreself off.
        assert!(IgnoreList::default().contains("127.0.0.2".parse().unwrap()));
    }

    #[test]
    fn file_entries_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ign");
        std::fs::write(&f, "# office\n198.51.100.0/24\n\n192.0.2.1 # vpn\n").unwrap();
        let l = IgnoreList::new(&[format!("file:{}", f.display())], None).unwrap();
        assert!(l.contains("198.51.100.77".parse().unwrap()));
        assert!(l.contains("192.0.2.1".parse().unwrap()));
        assert!(IgnoreList::new(&["example.com".into()], None).is_err());
        assert!(IgnoreList::new(&["file:/nonexistent/x".into()], None).is_err());
    }
}
