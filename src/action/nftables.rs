//! The `nftables` backend. banstream owns one table, `inet banstream`; per
//! jail and family it holds a set of banned addresses (`flags timeout`) and
//! a base chain hooked at input with one rule matching the jail's protocol
//! and ports against that set:
//!
//! ```text
//! table inet banstream {
//!     set f2b-sshd-v4 { type ipv4_addr; flags timeout; }
//!     chain f2b-sshd-v4 {
//!         type filter hook input priority filter - 1; policy accept;
//!         tcp dport { 22 } ip saddr @f2b-sshd-v4 counter reject
//!     }
//! }
//! ```
//!
//! A chain per (jail, family) makes `start` one idempotent transaction
//! (`add` the set and chain, `flush` the chain, `add` its rule: no rule
//! handles to track, no duplicates) and `stop` a plain delete. Every batch of
//! bans and unbans is one nft transaction, all or nothing, run in-process
//! through libnftables when it is installed (else by `nft -f -`). Elements
//! carry the ban's remaining time as kernel timeout (plus a second of grace
//! so banstream's own unban normally comes first), so bans end even if
//! banstream dies; permanent bans have none.
//!
//! nft's `delete element` fails on an absent element, so the backend mirrors
//! each set's contents (read from the kernel at `init`, which is how the
//! leftovers of a crash are adopted; those of jails no longer configured are
//! deleted once start-up has announced its jails) and only deletes what is
//! there. If the kernel disagrees (an element timed out), the batch is
//! retried once at once after re-reading the table.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::Value;

use super::libnft::LibNft;
use super::run::{argv, run, run_for, COMMAND_TIMEOUT};
use super::{kernel_timeout, ActionError, Backend, Family, JailAction, Op, Request, SharedRefs};
use crate::config::services::{PortSpec, Protocol};

const KIND: &str = "nftables";
/// The table banstream owns.
pub const TABLE: &str = "banstream";

/// The set (and chain) of a jail's bans for a family.
pub fn set_name(a: &JailAction, family: Family) -> String {
    match family {
        Family::V4 => format!("f2b-{}-v4", a.name),
        Family::V6 => format!("f2b-{}-v6", a.name),
    }
}

/// The rule of a jail for a family: protocol and port match, the set
/// lookup, a counter and the verdict.
pub fn rule(a: &JailAction, family: Family) -> String {
    let set = set_name(a, family);
    let ports = match &a.ports {
        PortSpec::All => None,
        PortSpec::List(l) => Some(
            l.iter()
                .map(|r| {
                    if r.start == r.end {
                        r.start.to_string()
                    } else {
                        format!("{}-{}", r.start, r.end)
                    }
                })
                .collect::<Vec<_>>()
                .join(", "),
        ),
    };
    let proto = match (a.protocol, &ports) {
        (Protocol::Tcp, Some(p)) => format!("tcp dport {{ {p} }} "),
        (Protocol::Udp, Some(p)) => format!("udp dport {{ {p} }} "),
        (Protocol::All, Some(p)) => format!("meta l4proto {{ tcp, udp }} th dport {{ {p} }} "),
        (Protocol::Tcp, None) => "meta l4proto tcp ".into(),
        (Protocol::Udp, None) => "meta l4proto udp ".into(),
        (Protocol::All, None) => String::new(),
    };
    let saddr = match family {
        Family::V4 => "ip saddr",
        Family::V6 => "ip6 saddr",
    };
    format!("{proto}{saddr} @{set} counter {}", verdict(a))
}

/// iptables blocktypes in nft terms: DROP drops, anything else rejects
/// (`tcp-reset` as a TCP reset when the rule only sees TCP).
fn verdict(a: &JailAction) -> &'static str {
    let bt = a.blocktype.to_ascii_lowercase();
    if bt.trim_start().starts_with("drop") {
        "drop"
    } else if bt.contains("tcp-reset") && a.protocol == Protocol::Tcp {
        "reject with tcp reset"
    } else {
        "reject"
    }
}

/// The hook of the jail's base chain: `chain = FORWARD` bans forwarded
/// traffic (routers, containers), anything else incoming traffic.
fn hook(a: &JailAction) -> &'static str {
    if a.chain.eq_ignore_ascii_case("forward") {
        "forward"
    } else {
        "input"
    }
}

/// The largest element timeout nft accepts written in seconds (one more
/// is "value too large", which would fail the whole batch and every batch
/// after it). Longer bans (over three years) get no kernel timeout; banstream
/// lifts them itself, as with ipset.
const MAX_TIMEOUT: u64 = 99_999_999;

/// `nftables`.
#[derive(Default)]
pub struct NftBackend {
    /// libnftables, when installed; else the `nft` program is run.
    lib: Option<LibNft>,
    /// Set name → addresses in it, as far as we know.
    sets: HashMap<String, HashSet<IpAddr>>,
    /// (set name) pairs started by this run.
    started: HashSet<String>,
    /// A batch failed: re-read the table before the next one.
    dirty: bool,
    /// Each started jail's rule in each chain: jails sharing `name=` may
    /// differ in ports or protocol, and a start must keep the others' rules.
    rules: SharedRefs,
}

impl NftBackend {
    /// A backend that reads the table on `init`.
    pub fn new() -> NftBackend {
        NftBackend::default()
    }

    /// Runs a script as one transaction; `Err` is nft's error text.
    fn exec(&mut self, script: &str) -> Result<(), String> {
        match &mut self.lib {
            Some(lib) => lib.run(script),
            None => run(
                &argv(&["nft", "-f", "-"]),
                Some(script.as_bytes()),
                COMMAND_TIMEOUT,
            )
            .map(|_| ())
            .map_err(|f| f.into_error(KIND).message),
        }
    }

    fn nft(&mut self, script: &str) -> Result<(), ActionError> {
        self.exec(script).map_err(|e| {
            let lines = script.lines().count();
            let head: String = script
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(160)
                .collect();
            ActionError {
                backend: KIND.into(),
                message: format!(
                    "nft -f (script of {lines} lines, first `{head}`): {}",
                    e.trim()
                ),
            }
        })
    }

    /// Re-reads every set of our table from the kernel.
    fn sync(&mut self) -> Result<(), ActionError> {
        let out = run(
            &argv(&["nft", "-j", "list", "table", "inet", TABLE]),
            None,
            COMMAND_TIMEOUT,
        );
        self.sets.clear();
        self.dirty = false;
        let text = match out {
            Ok(r) => r.stdout,
            Err(f) if f.stderr.contains("No such file or directory") => return Ok(()),
            Err(f) => return Err(f.into_error(KIND)),
        };
        let v: Value = serde_json::from_str(&text).map_err(|e| ActionError {
            backend: KIND.into(),
            message: format!("cannot parse `nft -j list table inet {TABLE}`: {e}"),
        })?;
        for item in v["nftables"].as_array().into_iter().flatten() {
            let Some(set) = item.get("set") else { continue };
            let Some(name) = set["name"].as_str() else {
                continue;
            };
            let mut elems = HashSet::new();
            for e in set["elem"].as_array().into_iter().flatten() {
                let val = e.as_str().or_else(|| e["elem"]["val"].as_str());
                if let Some(ip) = val.and_then(|s| s.parse::<IpAddr>().ok()) {
                    elems.insert(ip);
                }
            }
            self.sets.insert(name.to_string(), elems);
        }
        Ok(())
    }

    /// The script for a batch, and the changes to the sets' contents once
    /// it is applied (address added or removed). Changes, not copies of the
    /// sets: copying the whole set (and hashing it again) for every batch
    /// was about a sixth of the worker's time in a 100,000-ban restore.
    fn script(&self, batch: &[Request], now: SystemTime) -> (String, Vec<(String, IpAddr, bool)>) {
        // Last operation per (set, address) wins, which is what applying the
        // batch in order would leave.
        let mut last: HashMap<(String, IpAddr), &Request> = HashMap::new();
        let mut order: Vec<(String, IpAddr)> = Vec::new();
        for r in batch {
            let key = (set_name(&r.action, Family::of(r.ban.ip)), r.ban.ip);
            if last.insert(key.clone(), r).is_none() {
                order.push(key);
            }
        }
        let mut changes: Vec<(String, IpAddr, bool)> = Vec::with_capacity(order.len());
        let mut dels: HashMap<&str, Vec<String>> = HashMap::new();
        let mut adds: HashMap<&str, Vec<String>> = HashMap::new();
        let mut sets: Vec<&str> = Vec::new();
        for key in &order {
            let (set, ip) = key;
            let Some(r) = last.get(key) else { continue };
            let known = self.sets.get(set);
            let present = known.is_some_and(|s| s.contains(ip));
            if known.is_none() && r.op == Op::Unban {
                continue; // no such set: nothing to lift
            }
            if !sets.contains(&set.as_str()) {
                sets.push(set);
            }
            match r.op {
                Op::Ban => {
                    if present {
                        // Re-adding keeps the old timeout: replace it.
                        dels.entry(set).or_default().push(ip.to_string());
                    }
                    let timeout = kernel_timeout(&r.ban, now).filter(|t| *t <= MAX_TIMEOUT);
                    let elem = match timeout {
                        Some(t) => format!("{ip} timeout {t}s"),
                        None => ip.to_string(),
                    };
                    adds.entry(set).or_default().push(elem);
                    changes.push((set.clone(), *ip, true));
                }
                Op::Unban => {
                    if present {
                        dels.entry(set).or_default().push(ip.to_string());
                    }
                    changes.push((set.clone(), *ip, false));
                }
            }
        }
        let mut script = String::new();
        for set in sets {
            if let Some(d) = dels.get(set) {
                let _ = writeln!(
                    script,
                    "delete element inet {TABLE} {set} {{ {} }}",
                    d.join(", ")
                );
            }
            if let Some(a) = adds.get(set) {
                let _ = writeln!(
                    script,
                    "add element inet {TABLE} {set} {{ {} }}",
                    a.join(", ")
                );
            }
        }
        (script, changes)
    }

    fn try_apply(&mut self, batch: &[Request]) -> Result<(), ActionError> {
        let (script, changes) = self.script(batch, SystemTime::now());
        if !script.is_empty() {
            self.nft(&script)?;
        }
        for (set, ip, present) in changes {
            let s = self.sets.entry(set).or_default();
            if present {
                s.insert(ip);
            } else {
                s.remove(&ip);
            }
        }
        Ok(())
    }
}

impl Backend for NftBackend {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn init(&mut self) -> Result<(), ActionError> {
        self.lib = LibNft::open();
        if self.lib.is_none() {
            run_for(KIND, &argv(&["nft", "--version"]), None)?;
            tracing::info!("libnftables not found: running the nft program per batch");
        }
        self.sync()?;
        let adopted: usize = self.sets.values().map(HashSet::len).sum();
        if !self.sets.is_empty() {
            tracing::info!(
                sets = self.sets.len(),
                elements = adopted,
                "adopted table inet {TABLE} left by a previous run"
            );
        }
        Ok(())
    }

    fn configured(&mut self, actions: &[Arc<JailAction>]) {
        let wanted: HashSet<String> = actions
            .iter()
            .flat_map(|a| [Family::V4, Family::V6].map(|f| set_name(a, f)))
            .collect();
        let mut stale: Vec<String> = self
            .sets
            .keys()
            .filter(|n| !wanted.contains(*n) && !self.started.contains(*n))
            .cloned()
            .collect();
        stale.sort();
        for name in stale {
            let elements = self.sets.get(&name).map_or(0, HashSet::len);
            // Chain first: the set is in use while its rule is there. Each
            // on its own, so one already gone does not keep the other.
            for what in ["chain", "set"] {
                match self.exec(&format!("delete {what} inet {TABLE} {name}\n")) {
                    Ok(()) => {}
                    Err(e) if e.contains("No such file or directory") => {}
                    Err(e) => tracing::warn!(
                        set = %name,
                        "cannot delete the {what} a previous run left for a jail no longer configured: {}",
                        e.trim()
                    ),
                }
            }
            self.sets.remove(&name);
            tracing::info!(
                set = %name,
                elements,
                "removed what a previous run left for a jail no longer configured"
            );
        }
    }

    fn start(&mut self, a: &JailAction, family: Family) -> Result<(), ActionError> {
        let name = set_name(a, family);
        let ty = match family {
            Family::V4 => "ipv4_addr",
            Family::V6 => "ipv6_addr",
        };
        let rules = self
            .rules
            .want(&name, family, &a.jail, hook(a), vec![rule(a, family)]);
        let mut script = format!(
            "add table inet {TABLE}\n\
             add set inet {TABLE} {name} {{ type {ty}; flags timeout; }}\n\
             add chain inet {TABLE} {name} {{ type filter hook {hook} priority filter - 1; policy accept; }}\n\
             flush chain inet {TABLE} {name}\n",
            hook = hook(a),
        );
        for r in &rules {
            let _ = writeln!(script, "add rule inet {TABLE} {name} {r}");
        }
        self.nft(&script)?;
        self.sets.entry(name.clone()).or_default();
        self.started.insert(name);
        Ok(())
    }

    fn apply(&mut self, batch: &[Request]) -> Result<(), ActionError> {
        if self.dirty {
            self.sync()?;
        }
        match self.try_apply(batch) {
            Ok(()) => Ok(()),
            Err(first) => {
                // Most likely an element the kernel already timed out:
                // re-read and try once more before reporting.
                tracing::debug!("nft batch failed, re-reading the table: {first}");
                self.sync()?;
                self.try_apply(batch).inspect_err(|_| self.dirty = true)
            }
        }
    }

    fn stop(&mut self, a: &JailAction, family: Family) -> Result<(), ActionError> {
        let name = set_name(a, family);
        self.started.remove(&name);
        // The chain goes, with every sharer's rule in it.
        self.rules.forget(&name, family);
        let script = if self.started.is_empty() {
            // Nothing of ours is left running: drop the whole table, which
            // also takes any leftovers of jails a crashed run had.
            format!("delete table inet {TABLE}\n")
        } else {
            format!("delete chain inet {TABLE} {name}\ndelete set inet {TABLE} {name}\n")
        };
        match self.exec(&script) {
            Ok(()) => {}
            Err(e) if e.contains("No such file or directory") => {}
            Err(e) => {
                return Err(ActionError {
                    backend: KIND.into(),
                    message: format!("nft `{}`: {}", script.trim(), e.trim()),
                })
            }
        }
        if self.started.is_empty() {
            self.sets.clear();
        } else {
            self.sets.remove(&name);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jail::JailName;
    use std::sync::Arc;

    fn action(ports: &str, proto: Protocol, bt: &str) -> JailAction {
        let mut a = JailAction::log(&JailName::new("sshd").unwrap());
        a.kind = KIND.into();
        a.ports = PortSpec::parse(ports).unwrap();
        a.protocol = proto;
        a.blocktype = bt.into();
        a
    }

    fn ban(ip: &str, days: Option<u64>) -> Request {
        let now = SystemTime::now();
        let jail = JailName::new("sshd").unwrap();
        Request {
            op: Op::Ban,
            action: Arc::new(action("ssh", Protocol::Tcp, "REJECT")),
            ban: Arc::new(crate::ban::Ban {
                jail,
                ip: ip.parse().unwrap(),
                start: now,
                bantime: crate::config::timespec::TimeSpec::Forever,
                expires: days.map(|d| now + std::time::Duration::from_secs(d * 86400)),
                failures: 1,
                ban_count: 1,
                origin: crate::ban::BanOrigin::Manual,
            }),
            received: None,
        }
    }

    #[test]
    fn bans_longer_than_nft_takes_in_seconds_get_no_kernel_timeout() {
        let b = NftBackend::new();
        let (script, _) = b.script(
            &[
                ban("192.0.2.1", Some(1)),
                ban("192.0.2.2", Some(1157)),
                ban("192.0.2.3", Some(1200)),
                ban("192.0.2.4", None),
            ],
            SystemTime::now(),
        );
        assert!(script.contains("192.0.2.1 timeout 86401s"), "{script}");
        assert!(script.contains("192.0.2.2 timeout 99964801s"), "{script}");
        // 1200 days is 103,680,000 s: nft refuses it as "value too large".
        assert!(script.contains("192.0.2.3, 192.0.2.4 }"), "{script}");
        assert!(!script.contains("1036800"), "{script}");
    }

    #[test]
    fn rules_match_ports_protocol_and_family() {
        assert_eq!(
            rule(
                &action("ssh,1000:2000", Protocol::Tcp, "REJECT"),
                Family::V4
            ),
            "tcp dport { 22, 1000-2000 } ip saddr @f2b-sshd-v4 counter reject"
        );
        assert_eq!(
            rule(&action("all", Protocol::All, "DROP"), Family::V6),
            "ip6 saddr @f2b-sshd-v6 counter drop"
        );
        assert_eq!(
            rule(&action("53", Protocol::All, "REJECT"), Family::V4),
            "meta l4proto { tcp, udp } th dport { 53 } ip saddr @f2b-sshd-v4 counter reject"
        );
        assert_eq!(
            rule(
                &action("all", Protocol::Tcp, "REJECT --reject-with tcp-reset"),
                Family::V4
            ),
            "meta l4proto tcp ip saddr @f2b-sshd-v4 counter reject with tcp reset"
        );
    }
}
