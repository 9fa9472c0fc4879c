//! The `ufw` backend, for hosts whose firewall is ufw (the seed's ufw
//! setup). Each ban is one ufw rule at the top of the rule list:
//!
//! ```text
//! ufw prepend deny [proto tcp] from <ip> to any [port 22] comment 'banstream <name>'
//! ```
//!
//! and each unban the matching `ufw delete`. `prepend` rather than fail2ban's
//! `insert 1`: ufw refuses `insert 1` for an IPv6 rule while IPv4 rules come
//! first. The comment marks banstream's rules, so `stop` (and the stop after
//! a crash) removes exactly those, found by number in `ufw status numbered`.
//!
//! ufw is slow (a Python program rewriting its rule files on every call) and
//! has no batch mode: expect tens of bans per second, not thousands. Use
//! nftables or iptables-ipset where the load is high.

use super::run::{argv, run_for};
use super::{ActionError, Backend, Family, JailAction, Op, Request};
use crate::config::services::{PortSpec, Protocol};

const KIND: &str = "ufw";

/// Most ports in one ufw rule (a range counts as two).
const UFW_SLOTS: usize = 15;

/// The comment that marks a jail's rules.
pub fn comment(a: &JailAction) -> String {
    format!("banstream {}", a.name)
}

/// The rule words after `prepend` / `delete` for one ban: one per protocol
/// and port group, since ufw needs `proto` for port lists and ranges.
pub fn rules(a: &JailAction, ip: std::net::IpAddr) -> Vec<Vec<String>> {
    let verdict = if a
        .blocktype
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("drop")
    {
        "deny"
    } else {
        "reject"
    };
    let groups: Vec<String> = match &a.ports {
        PortSpec::All => Vec::new(),
        PortSpec::List(list) => {
            let mut out = Vec::new();
            let mut cur: Vec<String> = Vec::new();
            let mut slots = 0;
            for r in list {
                let cost = if r.start == r.end { 1 } else { 2 };
                if slots + cost > UFW_SLOTS {
                    out.push(cur.join(","));
                    cur.clear();
                    slots = 0;
                }
                cur.push(r.to_string());
                slots += cost;
            }
            if !cur.is_empty() {
                out.push(cur.join(","));
            }
            out
        }
    };
    let protos: Vec<Option<&str>> = match (a.protocol, groups.is_empty()) {
        (Protocol::All, true) => vec![None],
        (Protocol::All, false) => vec![Some("tcp"), Some("udp")],
        (p, _) => vec![Some(p.as_str())],
    };
    let mut out = Vec::new();
    for proto in protos {
        let ports: Vec<Option<&String>> = if groups.is_empty() {
            vec![None]
        } else {
            groups.iter().map(Some).collect()
        };
        for p in ports {
            let mut w = vec![verdict.to_string()];
            if let Some(proto) = proto {
                w.extend(["proto".to_string(), proto.to_string()]);
            }
            w.extend([
                "from".to_string(),
                ip.to_string(),
                "to".into(),
                "any".into(),
            ]);
            if let Some(p) = p {
                w.extend(["port".to_string(), p.clone()]);
            }
            out.push(w);
        }
    }
    out
}

/// `ufw`.
#[derive(Default)]
pub struct UfwBackend;

impl UfwBackend {
    /// The backend.
    pub fn new() -> UfwBackend {
        UfwBackend
    }

    fn ufw(&self, args: &[String]) -> Result<String, ActionError> {
        let mut v = vec!["ufw".to_string()];
        v.extend_from_slice(args);
        run_for(KIND, &v, None).map(|r| r.stdout)
    }
}

/// Rule numbers in `ufw status numbered` output carrying `comment`, for a
/// family, highest first (so deleting one does not renumber the rest).
pub fn numbered(status: &str, comment: &str, family: Family) -> Vec<u32> {
    let mut out: Vec<u32> = status
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix('[')?;
            let (num, body) = rest.split_once(']')?;
            let (_, c) = body.split_once(" # ")?;
            if c.trim() != comment {
                return None;
            }
            let v6 = body.contains("(v6)")
                || body
                    .split_whitespace()
                    .any(|w| w.parse::<std::net::Ipv6Addr>().is_ok());
            if v6 != (family == Family::V6) {
                return None;
            }
            num.trim().parse().ok()
        })
        .collect();
    out.sort_unstable_by(|a, b| b.cmp(a));
    out
}

impl Backend for UfwBackend {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn init(&mut self) -> Result<(), ActionError> {
        self.ufw(&argv(&["version"])).map(|_| ())
    }

    fn start(&mut self, _a: &JailAction, _family: Family) -> Result<(), ActionError> {
        let status = self.ufw(&argv(&["status"]))?;
        if !status.lines().any(|l| l.trim() == "Status: active") {
            return Err(ActionError {
                backend: KIND.into(),
                message: "ufw is inactive, so its rules filter nothing: run `ufw enable`".into(),
            });
        }
        Ok(())
    }

    fn apply(&mut self, batch: &[Request]) -> Result<(), ActionError> {
        // ufw skips a rule that exists and reports (exit 0) a delete of one
        // that does not, so each step is idempotent.
        for r in batch {
            for words in rules(&r.action, r.ban.ip) {
                let mut args = Vec::with_capacity(words.len() + 3);
                match r.op {
                    Op::Ban => {
                        args.push("prepend".to_string());
                        args.extend(words);
                        args.extend(["comment".to_string(), comment(&r.action)]);
                    }
                    Op::Unban => {
                        args.push("delete".to_string());
                        args.extend(words);
                    }
                }
                self.ufw(&args)?;
            }
        }
        Ok(())
    }

    fn stop(&mut self, a: &JailAction, family: Family) -> Result<(), ActionError> {
        let status = self.ufw(&argv(&["status", "numbered"]))?;
        for n in numbered(&status, &comment(a), family) {
            self.ufw(&argv(&["--force", "delete", &n.to_string()]))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jail::JailName;

    #[test]
    fn ban_rules_carry_proto_ports_and_no_shell() {
        let mut a = JailAction::log(&JailName::new("sshd").unwrap());
        a.ports = PortSpec::parse("ssh,2222").unwrap();
        a.protocol = Protocol::Tcp;
        let r = rules(&a, "2001:db8::1".parse().unwrap());
        assert_eq!(
            r,
            vec![argv(&[
                "reject",
                "proto",
                "tcp",
                "from",
                "2001:db8::1",
                "to",
                "any",
                "port",
                "22,2222"
            ])]
        );
        a.ports = PortSpec::All;
        a.protocol = Protocol::All;
        a.blocktype = "DROP".into();
        assert_eq!(
            rules(&a, "192.0.2.1".parse().unwrap()),
            vec![argv(&["deny", "from", "192.0.2.1", "to", "any"])]
        );
    }

    #[test]
    fn stop_finds_our_rules_by_comment_and_family() {
        let status = "Status: active\n\n     To                         Action      From\n     --                         ------      ----\n[ 1] 22/tcp                     REJECT IN   192.0.2.7                  # banstream sshd\n[ 2] 22/tcp                     ALLOW IN    Anywhere\n[ 3] Anywhere                   DENY IN     192.0.2.9                  # banstream other\n[ 4] 22/tcp (v6)                REJECT IN   2001:db8::1                # banstream sshd\n[ 5] Anywhere                   DENY IN     192.0.2.8                  # banstream sshd\n";
        assert_eq!(numbered(status, "banstream sshd", Family::V4), vec![5, 1]);
        assert_eq!(numbered(status, "banstream sshd", Family::V6), vec![4]);
    }
}
