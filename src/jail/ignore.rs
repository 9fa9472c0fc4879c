//! Addresses a jail never bans: `ignoreip` (addresses, CIDR, `file:/path`),
//! the host's own addresses (`ignoreself`), and loopback and the other
//! never-bannable addresses, which no setting can turn back on; and
//! fail2ban's `ignorecommand`, run argv-style (no shell) with `<ip>`
//! filled in: exit 0 means ignore, 1 means ban.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipnet::IpNet;

use crate::addr;

/// The ignore list of one jail.
#[derive(Clone, Debug, Default)]
pub struct IgnoreList {
    nets: Vec<IpNet>,
    /// The host's addresses when ignoreself is on, as sorted [`own_key`]s:
    /// every failure counted searches them, and comparing integers costs a
    /// fraction of comparing `IpAddr`s.
    own: Option<Arc<[u128]>>,
    /// fail2ban's `ignorecommand`.
    command: Option<Arc<IgnoreCommand>>,
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
        let own = own.map(|o| {
            let mut keys: Vec<u128> = o.iter().map(|ip| own_key(addr::normalize(*ip))).collect();
            keys.sort_unstable();
            keys.dedup();
            Arc::from(keys)
        });
        Ok(IgnoreList {
            nets,
            own,
            command: None,
        })
    }

    /// Whether the host's own addresses are ignored (`ignoreself`).
    pub fn ignores_self(&self) -> bool {
        self.own.is_some()
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
        if self
            .own
            .as_ref()
            .is_some_and(|o| o.binary_search(&own_key(ip)).is_ok())
        {
            return true;
        }
        self.command.as_ref().is_some_and(|c| c.ignores(ip))
    }

    /// Adds an `ignorecommand`.
    pub fn with_command(mut self, c: IgnoreCommand) -> IgnoreList {
        self.command = Some(Arc::new(c));
        self
    }

    /// The configured networks (for status and check).
    pub fn networks(&self) -> &[IpNet] {
        &self.nets
    }
}

/// A normalized address as one integer: IPv4 as its IPv4-mapped IPv6 form,
/// which a normalized IPv6 address never is, so no two addresses share one.
fn own_key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// fail2ban's `ignorecommand`: a program asked whether to spare an
/// address. Answers are cached for five minutes (bounded), so a busy
/// attacker costs one run per address.
#[derive(Debug)]
pub struct IgnoreCommand {
    argv: Vec<String>,
    cache: Mutex<HashMap<IpAddr, (bool, Instant)>>,
}

/// How long an `ignorecommand` answer is reused.
const COMMAND_CACHE_TTL: Duration = Duration::from_secs(300);
/// Answers cached at most.
const COMMAND_CACHE_CAP: usize = 4096;
/// A command still running after this is killed (the address is banned).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

impl IgnoreCommand {
    /// Splits the command into an argv (quotes honoured, shell syntax
    /// refused); `<ip>` may appear inside any argument.
    pub fn parse(text: &str) -> Result<IgnoreCommand, String> {
        let argv = crate::config::fail2ban::action::split_argv(text.trim())
            .map_err(|why| format!("{why} in {text:?}; banstream runs it without a shell"))?;
        if argv.is_empty() {
            return Err("empty command".into());
        }
        Ok(IgnoreCommand {
            argv,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Runs the command for `ip` (or reuses a recent answer): exit status
    /// 0 means ignore. Failing to run it, or any other status, means ban.
    pub fn ignores(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        if let Ok(c) = self.cache.lock() {
            if let Some((v, at)) = c.get(&ip) {
                if now.duration_since(*at) < COMMAND_CACHE_TTL {
                    return *v;
                }
            }
        }
        let ip_text = ip.to_string();
        let args: Vec<String> = self
            .argv
            .iter()
            .map(|a| a.replace("<ip>", &ip_text))
            .collect();
        let verdict = match std::process::Command::new(&args[0])
            .args(&args[1..])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
        {
            Ok(mut child) => {
                let deadline = now + COMMAND_TIMEOUT;
                loop {
                    match child.try_wait() {
                        Ok(Some(st)) => break st.code() == Some(0),
                        Ok(None) if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(5))
                        }
                        _ => {
                            let _ = child.kill();
                            let _ = child.wait();
                            tracing::warn!(command = %args[0], %ip, "ignorecommand timed out; not ignoring");
                            break false;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(command = %args[0], "ignorecommand cannot run: {e}");
                false
            }
        };
        if let Ok(mut c) = self.cache.lock() {
            if c.len() >= COMMAND_CACHE_CAP {
                c.clear();
            }
            c.insert(ip, (verdict, now));
        }
        verdict
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
    fn own_addresses_in_any_order_and_form_are_found() {
        let own: Vec<IpAddr> = [
            "2001:db8::7",
            "198.51.100.9",
            "::ffff:192.0.2.1",
            "10.9.9.9",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let l = IgnoreList::new(&[], Some(Arc::new(own))).unwrap();
        for ip in [
            "2001:db8::7",
            "198.51.100.9",
            "192.0.2.1",
            "::ffff:198.51.100.9",
            "10.9.9.9",
        ] {
            assert!(l.contains(ip.parse().unwrap()), "{ip}");
        }
        // Neighbours, and an IPv6 address whose low bits equal an own IPv4.
        for ip in ["2001:db8::8", "198.51.100.8", "192.0.2.2", "::c633:6409"] {
            assert!(!l.contains(ip.parse().unwrap()), "{ip}");
        }
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

    #[test]
    fn ignorecommand_runs_argv_style() {
        let l = IgnoreList::default()
            .with_command(IgnoreCommand::parse("test <ip> = 192.0.2.7").unwrap());
        assert!(l.contains("192.0.2.7".parse().unwrap()));
        assert!(!l.contains("192.0.2.8".parse().unwrap()));
        assert!(IgnoreCommand::parse("/bin/check <ip> | grep x").is_err());
    }
}
