//! The `iptables-multiport` and `iptables-allports` backends, with fail2ban's
//! layout: a chain `f2b-<name>` ending in RETURN, jumped to from the jail's
//! `chain` (INPUT) by rules matching its protocol and ports, and one
//! `-s <ip> -j <blocktype>` rule per banned address. `ip6tables` carries the
//! IPv6 half.
//!
//! Chains and jump rules are managed through the `iptables` crate; bans
//! travel in batches through one `iptables-restore --noflush` per family.
//! The backend mirrors each chain's address rules (read back from the kernel
//! when it adopts a chain), so no rule is ever inserted twice and an unban
//! of an absent rule never fails a batch. Also home of the helpers the
//! `iptables-ipset` backend shares (jump-rule matches, blocktypes).

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::run::{argv, run_for};
use super::{ActionError, Backend, Family, JailAction, Op, Request, SharedRefs};
use crate::config::services::{PortSpec, Protocol};

const TABLE: &str = "filter";

/// Most ports one `-m multiport` match takes (a range counts as two).
const MULTIPORT_SLOTS: usize = 15;

/// The iptables command pair, probed once.
pub(super) struct Xt {
    backend: &'static str,
    v4: iptables::IPTables,
    v6: Option<iptables::IPTables>,
}

impl Xt {
    /// Probes `iptables` (required) and `ip6tables` (needed for IPv6 bans).
    pub(super) fn probe(backend: &'static str) -> Result<Xt, ActionError> {
        let v4 = iptables::new(false).map_err(|e| ActionError {
            backend: backend.into(),
            message: format!("iptables is not usable: {e}"),
        })?;
        let v6 = iptables::new(true).ok();
        Ok(Xt { backend, v4, v6 })
    }

    /// The command for a family.
    pub(super) fn get(&self, family: Family) -> Result<&iptables::IPTables, ActionError> {
        match family {
            Family::V4 => Ok(&self.v4),
            Family::V6 => self.v6.as_ref().ok_or_else(|| ActionError {
                backend: self.backend.into(),
                message: "ip6tables is not usable, so IPv6 addresses cannot be banned".into(),
            }),
        }
    }

    fn err(&self, family: Family, what: &str, e: impl std::fmt::Display) -> ActionError {
        ActionError {
            backend: self.backend.into(),
            message: format!(
                "`{} -t {TABLE} {what}` failed: {}",
                tool(family),
                e.to_string().trim()
            ),
        }
    }

    /// `-S chain` lines, or `None` when the chain does not exist.
    pub(super) fn list(
        &self,
        family: Family,
        chain: &str,
    ) -> Result<Option<Vec<String>>, ActionError> {
        let ipt = self.get(family)?;
        let exists = ipt
            .chain_exists(TABLE, chain)
            .map_err(|e| self.err(family, &format!("-L {chain}"), e))?;
        if !exists {
            return Ok(None);
        }
        let lines = ipt
            .list(TABLE, chain)
            .map_err(|e| self.err(family, &format!("-S {chain}"), e))?;
        Ok(Some(lines.into_iter().filter(|l| !l.is_empty()).collect()))
    }

    fn delete(&self, family: Family, chain: &str, spec: &str) -> Result<(), ActionError> {
        self.get(family)?
            .delete(TABLE, chain, spec)
            .map_err(|e| self.err(family, &format!("-D {chain} {spec}"), e))
    }

    /// Makes the rules in `parent` that refer to our object (`is_ours`) be
    /// exactly `desired`, each once, inserted at the top like fail2ban does.
    /// Rules already right are left alone, so an adopted setup keeps
    /// filtering while it is checked.
    pub(super) fn reconcile_refs(
        &self,
        family: Family,
        parent: &str,
        desired: &[String],
        is_ours: impl Fn(&[&str]) -> bool,
    ) -> Result<(), ActionError> {
        let ipt = self.get(family)?;
        let mut present = Vec::with_capacity(desired.len());
        for d in desired {
            present.push(
                ipt.exists(TABLE, parent, d)
                    .map_err(|e| self.err(family, &format!("-C {parent} {d}"), e))?,
            );
        }
        let refs = self.refs(family, parent, &is_ours)?;
        let all_clean = refs.len() == present.iter().filter(|p| **p).count();
        if !all_clean {
            // A stale rule (ports changed since a crash) or a duplicate:
            // start over from exactly the desired rules.
            for r in &refs {
                self.delete(family, parent, r)?;
            }
        }
        for (d, p) in desired.iter().zip(&present).rev() {
            if !*p || !all_clean {
                ipt.insert(TABLE, parent, d, 1)
                    .map_err(|e| self.err(family, &format!("-I {parent} 1 {d}"), e))?;
            }
        }
        Ok(())
    }

    /// Deletes every rule in `parent` that refers to our object.
    pub(super) fn remove_refs(
        &self,
        family: Family,
        parent: &str,
        is_ours: impl Fn(&[&str]) -> bool,
    ) -> Result<(), ActionError> {
        for r in self.refs(family, parent, &is_ours)? {
            self.delete(family, parent, &r)?;
        }
        Ok(())
    }

    /// Rule specs (without `-A parent`) in `parent` that refer to our object.
    fn refs(
        &self,
        family: Family,
        parent: &str,
        is_ours: &impl Fn(&[&str]) -> bool,
    ) -> Result<Vec<String>, ActionError> {
        let Some(lines) = self.list(family, parent)? else {
            return Err(self.err(family, &format!("-S {parent}"), "no such chain"));
        };
        Ok(lines
            .iter()
            .filter_map(|l| rule_spec(l, parent))
            .filter(|spec| is_ours(&spec.split_whitespace().collect::<Vec<_>>()))
            .map(str::to_string)
            .collect())
    }
}

/// `-A chain SPEC` → `SPEC`.
fn rule_spec<'a>(line: &'a str, chain: &str) -> Option<&'a str> {
    line.strip_prefix("-A ")?
        .strip_prefix(chain)?
        .strip_prefix(' ')
        .map(str::trim)
}

/// Whether `tokens` contain `a b` in sequence.
pub(super) fn has_pair(tokens: &[&str], a: &str, b: &str) -> bool {
    tokens.windows(2).any(|w| w[0] == a && w[1] == b)
}

/// `iptables` or `ip6tables`.
pub(super) fn tool(family: Family) -> &'static str {
    match family {
        Family::V4 => "iptables",
        Family::V6 => "ip6tables",
    }
}

/// The jail's blocktype for a family: ICMP reject types have ICMPv6
/// counterparts that ip6tables requires.
pub(super) fn blocktype(bt: &str, family: Family) -> String {
    let bt = bt.trim();
    let bt = if bt.is_empty() { "REJECT" } else { bt };
    if family == Family::V4 {
        return bt.to_string();
    }
    bt.split_whitespace()
        .map(|t| match t {
            "icmp-net-unreachable" => "icmp6-no-route",
            "icmp-host-unreachable" => "icmp6-addr-unreachable",
            "icmp-port-unreachable" | "icmp-proto-unreachable" => "icmp6-port-unreachable",
            "icmp-net-prohibited" | "icmp-host-prohibited" | "icmp-admin-prohibited" => {
                "icmp6-adm-prohibited"
            }
            other => other,
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The protocol/port matches of a jail's jump rules: one per protocol and
/// per 15 multiport slots (`all` with a port list covers tcp and udp,
/// since ports only exist for those).
pub(super) fn match_specs(ports: &PortSpec, protocol: Protocol) -> Vec<String> {
    let protos: Vec<Option<&str>> = match (protocol, ports) {
        (Protocol::All, PortSpec::All) => vec![None],
        (Protocol::All, PortSpec::List(_)) => vec![Some("tcp"), Some("udp")],
        (p, _) => vec![Some(p.as_str())],
    };
    let mut out = Vec::new();
    for proto in protos {
        let p = proto.map(|p| format!("-p {p}")).unwrap_or_default();
        match ports {
            PortSpec::All => out.push(p),
            PortSpec::List(list) => {
                let mut chunk: Vec<String> = Vec::new();
                let mut slots = 0;
                for r in list {
                    let cost = if r.start == r.end { 1 } else { 2 };
                    if slots + cost > MULTIPORT_SLOTS {
                        out.push(format!("{p} -m multiport --dports {}", chunk.join(",")));
                        chunk.clear();
                        slots = 0;
                    }
                    chunk.push(r.to_string());
                    slots += cost;
                }
                if !chunk.is_empty() {
                    out.push(format!("{p} -m multiport --dports {}", chunk.join(",")));
                }
            }
        }
    }
    out
}

/// Joins a match and a target into one rule spec.
pub(super) fn spec(m: &str, rest: &str) -> String {
    if m.is_empty() {
        rest.to_string()
    } else {
        format!("{m} {rest}")
    }
}

/// The chain a jail's bans live in.
fn chain_name(a: &JailAction) -> String {
    format!("f2b-{}", a.name)
}

/// The address rules of one chain, as the kernel has them.
#[derive(Default)]
struct ChainState {
    /// Address → the rule spec to delete it with.
    rules: HashMap<IpAddr, String>,
    /// A batch failed: re-read the chain before trusting `rules`.
    dirty: bool,
}

/// `iptables-multiport` / `iptables-allports`.
pub struct IptablesBackend {
    kind: &'static str,
    xt: Option<Xt>,
    chains: HashMap<(String, Family), ChainState>,
    refs: SharedRefs,
}

impl IptablesBackend {
    /// A backend of kind `iptables-multiport` or `iptables-allports`.
    pub fn new(kind: &'static str) -> IptablesBackend {
        IptablesBackend {
            kind,
            xt: None,
            chains: HashMap::new(),
            refs: SharedRefs::default(),
        }
    }

    fn xt(&mut self) -> Result<&Xt, ActionError> {
        if self.xt.is_none() {
            self.xt = Some(Xt::probe(self.kind)?);
        }
        self.xt.as_ref().ok_or_else(|| ActionError {
            backend: self.kind.into(),
            message: "iptables is not usable".into(),
        })
    }

    /// Reads a chain's address rules back; deletes duplicates left by
    /// anything that inserted the same address twice.
    fn read_chain(&mut self, chain: &str, family: Family) -> Result<ChainState, ActionError> {
        let xt = self.xt()?;
        let mut st = ChainState::default();
        for line in xt.list(family, chain)?.unwrap_or_default() {
            let Some(s) = rule_spec(&line, chain) else {
                continue;
            };
            let t: Vec<&str> = s.split_whitespace().collect();
            let ip = match t.as_slice() {
                ["-s", net, "-j", ..] => net
                    .parse::<IpNet>()
                    .ok()
                    .and_then(|n| (n.prefix_len() == n.max_prefix_len()).then_some(n.addr())),
                _ => None,
            };
            let Some(ip) = ip else { continue };
            match st.rules.entry(ip) {
                std::collections::hash_map::Entry::Occupied(_) => xt.delete(family, chain, s)?,
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(s.to_string());
                }
            }
        }
        Ok(st)
    }

    fn restore(&mut self, family: Family, lines: &[String]) -> Result<(), ActionError> {
        let mut script = String::with_capacity(lines.len() * 48 + 16);
        script.push_str("*filter\n");
        for l in lines {
            script.push_str(l);
            script.push('\n');
        }
        script.push_str("COMMIT\n");
        let cmd = match family {
            Family::V4 => "iptables-restore",
            Family::V6 => "ip6tables-restore",
        };
        run_for(
            self.kind,
            &argv(&[cmd, "--noflush", "--wait"]),
            Some(script.as_bytes()),
        )
        .map(|_| ())
        .map_err(|mut e| {
            e.message = format!("{} ({} rule changes)", e.message, lines.len());
            e
        })
    }
}

impl Backend for IptablesBackend {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn init(&mut self) -> Result<(), ActionError> {
        self.xt().map(|_| ())
    }

    fn start(&mut self, a: &JailAction, family: Family) -> Result<(), ActionError> {
        let chain = chain_name(a);
        let own: Vec<String> = match_specs(&a.ports, a.protocol)
            .iter()
            .map(|m| spec(m, &format!("-j {chain}")))
            .collect();
        let desired = self.refs.want(&chain, family, &a.jail, &a.chain, own);
        let xt = self.xt()?;
        let ipt = xt.get(family)?;
        let exists = ipt
            .chain_exists(TABLE, &chain)
            .map_err(|e| xt.err(family, &format!("-L {chain}"), e))?;
        if !exists {
            ipt.new_chain(TABLE, &chain)
                .map_err(|e| xt.err(family, &format!("-N {chain}"), e))?;
        }
        let has_return = ipt
            .exists(TABLE, &chain, "-j RETURN")
            .map_err(|e| xt.err(family, &format!("-C {chain} -j RETURN"), e))?;
        if !has_return {
            ipt.append(TABLE, &chain, "-j RETURN")
                .map_err(|e| xt.err(family, &format!("-A {chain} -j RETURN"), e))?;
        }
        xt.reconcile_refs(family, &a.chain, &desired, |t| has_pair(t, "-j", &chain))?;
        let st = self.read_chain(&chain, family)?;
        if !st.rules.is_empty() {
            tracing::info!(
                action = self.kind,
                chain,
                ?family,
                rules = st.rules.len(),
                "adopted address rules left by a previous run"
            );
        }
        self.chains.insert((chain, family), st);
        Ok(())
    }

    fn apply(&mut self, batch: &[Request]) -> Result<(), ActionError> {
        // Work on copies of the touched chains; commit them only when the
        // kernel has accepted the batch.
        let mut work: HashMap<(String, Family), ChainState> = HashMap::new();
        let mut lines: [Vec<String>; 2] = [Vec::new(), Vec::new()];
        for r in batch {
            let family = Family::of(r.ban.ip);
            let key = (chain_name(&r.action), family);
            if !work.contains_key(&key) {
                let st = match self.chains.get(&key) {
                    Some(st) if !st.dirty => ChainState {
                        rules: st.rules.clone(),
                        dirty: false,
                    },
                    _ => self.read_chain(&key.0, family)?,
                };
                work.insert(key.clone(), st);
            }
            let Some(st) = work.get_mut(&key) else {
                continue;
            };
            let out = &mut lines[usize::from(family == Family::V6)];
            let chain = &key.0;
            match r.op {
                Op::Ban => {
                    if st.rules.contains_key(&r.ban.ip) {
                        continue;
                    }
                    let s = format!(
                        "-s {} -j {}",
                        r.ban.ip,
                        blocktype(&r.action.blocktype, family)
                    );
                    out.push(format!("-I {chain} 1 {s}"));
                    st.rules.insert(r.ban.ip, s);
                }
                Op::Unban => {
                    if let Some(s) = st.rules.remove(&r.ban.ip) {
                        out.push(format!("-D {chain} {s}"));
                    }
                }
            }
        }
        for family in [Family::V4, Family::V6] {
            let l = std::mem::take(&mut lines[usize::from(family == Family::V6)]);
            if l.is_empty() {
                continue;
            }
            if let Err(e) = self.restore(family, &l) {
                // Part of the batch may be in (the other family): re-read
                // every touched chain before the retry.
                for (k, _) in work {
                    self.chains.entry(k).or_default().dirty = true;
                }
                return Err(e);
            }
        }
        self.chains.extend(work);
        Ok(())
    }

    fn stop(&mut self, a: &JailAction, family: Family) -> Result<(), ActionError> {
        let chain = chain_name(a);
        self.refs.forget(&chain, family);
        let xt = self.xt()?;
        xt.remove_refs(family, &a.chain, |t| has_pair(t, "-j", &chain))?;
        let ipt = xt.get(family)?;
        let exists = ipt
            .chain_exists(TABLE, &chain)
            .map_err(|e| xt.err(family, &format!("-L {chain}"), e))?;
        if exists {
            ipt.flush_chain(TABLE, &chain)
                .map_err(|e| xt.err(family, &format!("-F {chain}"), e))?;
            ipt.delete_chain(TABLE, &chain)
                .map_err(|e| xt.err(family, &format!("-X {chain}"), e))?;
        }
        self.chains.remove(&(chain, family));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiport_matches_split_and_cover_protocols() {
        let p = PortSpec::parse("ssh,19226,1000:2000").unwrap();
        assert_eq!(
            match_specs(&p, Protocol::Tcp),
            vec!["-p tcp -m multiport --dports 22,19226,1000:2000"]
        );
        assert_eq!(
            match_specs(&p, Protocol::All),
            vec![
                "-p tcp -m multiport --dports 22,19226,1000:2000",
                "-p udp -m multiport --dports 22,19226,1000:2000"
            ]
        );
        assert_eq!(match_specs(&PortSpec::All, Protocol::All), vec![""]);
        assert_eq!(match_specs(&PortSpec::All, Protocol::Udp), vec!["-p udp"]);
        let many = PortSpec::parse(
            &(1..=20)
                .map(|p| (p * 10).to_string())
                .collect::<Vec<_>>()
                .join(","),
        )
        .unwrap();
        let m = match_specs(&many, Protocol::Tcp);
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(m[0].ends_with(",150"), "{m:?}");
    }

    #[test]
    fn reject_types_translate_for_ipv6() {
        assert_eq!(blocktype("REJECT", Family::V6), "REJECT");
        assert_eq!(
            blocktype("REJECT --reject-with icmp-port-unreachable", Family::V6),
            "REJECT --reject-with icmp6-port-unreachable"
        );
        assert_eq!(
            blocktype("REJECT --reject-with icmp-port-unreachable", Family::V4),
            "REJECT --reject-with icmp-port-unreachable"
        );
        assert_eq!(blocktype("", Family::V4), "REJECT");
    }

    #[test]
    fn rule_specs_and_pairs() {
        let l = "-A INPUT -p tcp -m multiport --dports 22 -j f2b-sshd";
        let s = rule_spec(l, "INPUT").unwrap();
        assert_eq!(s, "-p tcp -m multiport --dports 22 -j f2b-sshd");
        let t: Vec<&str> = s.split_whitespace().collect();
        assert!(has_pair(&t, "-j", "f2b-sshd"));
        assert!(!has_pair(&t, "-j", "f2b-ssh"));
        assert!(rule_spec("-A INPUTX -j x", "INPUT").is_none());
    }
}
