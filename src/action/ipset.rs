//! The `iptables-ipset` backend: one `hash:ip` set per jail and family
//! (`f2b-<name>`, `f2b-<name>6`, like fail2ban's iptables-ipset action) with
//! per-element timeouts, referenced by one iptables rule per protocol and
//! port group (`-m set --match-set f2b-<name> src -j <blocktype>`).
//!
//! Bans and unbans are set operations, a whole batch sent to the kernel
//! over netlink in-process ([`super::ipset_nl`]), or in one `ipset restore
//! -exist` when netlink is refused: adding a present address refreshes its
//! timeout and deleting an absent one is a no-op, so a batch can always be
//! repeated. Each element
//! carries the ban's remaining time, so bans still end if banstream dies.

use std::collections::HashSet;
use std::net::IpAddr;

use super::ipset_nl::{IpsetNl, SetOp};
use super::iptables::{blocktype, has_pair, match_specs, spec, Xt};
use super::run::{argv, run, run_for, COMMAND_TIMEOUT};
use super::{kernel_timeout, ActionError, Backend, Family, JailAction, Op, Request, SharedRefs};

const KIND: &str = "iptables-ipset";

/// Elements a set may hold (the kernel default of 65536 is too small for
/// imported blocklists).
const MAXELEM: u32 = 1 << 20;

/// ipset's largest timeout in seconds; longer bans are stored without a
/// timeout and lifted by banstream itself.
const MAX_TIMEOUT: u64 = 2_147_483;

/// The set of a jail's bans for a family.
pub fn set_name(a: &JailAction, family: Family) -> String {
    match family {
        Family::V4 => format!("f2b-{}", a.name),
        Family::V6 => format!("f2b-{}6", a.name),
    }
}

fn inet(family: Family) -> &'static str {
    match family {
        Family::V4 => "inet",
        Family::V6 => "inet6",
    }
}

/// The elements of one batch for one set: (set, is IPv6, elements in order).
type SetBatch = (String, bool, Vec<(IpAddr, SetOp)>);

/// `iptables-ipset`.
#[derive(Default)]
pub struct IpsetBackend {
    xt: Option<Xt>,
    /// Sets created or adopted by this run.
    sets: HashSet<String>,
    /// The in-process path; `None` after it failed once (then `ipset
    /// restore` is run per batch).
    nl: Option<IpsetNl>,
    /// Never open the netlink socket: `ipset restore` from the start.
    restore_only: bool,
    /// The rules referring to each set, per jail sharing it.
    refs: SharedRefs,
}

impl IpsetBackend {
    /// A backend that runs one `ipset restore -exist` per batch from the
    /// start, the path taken when the kernel refuses the netlink socket
    /// (so the tests can prove that path drops packets too).
    pub fn restore_only() -> IpsetBackend {
        IpsetBackend {
            restore_only: true,
            ..IpsetBackend::default()
        }
    }
}

impl IpsetBackend {
    /// A backend that probes its tools on `init`.
    pub fn new() -> IpsetBackend {
        IpsetBackend::default()
    }

    fn xt(&mut self) -> Result<&Xt, ActionError> {
        if self.xt.is_none() {
            self.xt = Some(Xt::probe(KIND)?);
        }
        self.xt.as_ref().ok_or_else(|| ActionError {
            backend: KIND.into(),
            message: "iptables is not usable".into(),
        })
    }

    /// Creates the set, or adopts one a previous run (or fail2ban) left if it
    /// is a `hash:ip` set of the right family with timeout support.
    fn ensure_set(&self, name: &str, family: Family) -> Result<(), ActionError> {
        let create = argv(&[
            "ipset",
            "create",
            name,
            "hash:ip",
            "family",
            inet(family),
            "timeout",
            "0",
            "maxelem",
            &MAXELEM.to_string(),
            "-exist",
        ]);
        let Err(fail) = run(&create, None, COMMAND_TIMEOUT) else {
            return Ok(());
        };
        // Same name, other parameters (another maxelem or default timeout):
        // adopt it if it can hold our bans.
        let header = run_for(KIND, &argv(&["ipset", "list", "-t", name]), None)
            .map_err(|_| fail.into_error(KIND))?
            .stdout;
        let ok = header.lines().any(|l| l.trim() == "Type: hash:ip")
            && header.lines().any(|l| {
                l.starts_with("Header:")
                    && l.contains(&format!("family {}", inet(family)))
                    && l.contains("timeout")
            });
        if ok {
            return Ok(());
        }
        Err(ActionError {
            backend: KIND.into(),
            message: format!(
                "ipset {name} exists but is not a hash:ip set of family {} with timeout support; remove it (`ipset destroy {name}`) or give the action another name=",
                inet(family)
            ),
        })
    }

    /// A batch over netlink: one message per set and run of adds or deletes.
    fn apply_netlink(&mut self, batch: &[Request]) -> std::io::Result<()> {
        let now = std::time::SystemTime::now();
        // (set, is IPv6, its elements in batch order)
        let mut per_set: Vec<SetBatch> = Vec::new();
        for r in batch {
            let family = Family::of(r.ban.ip);
            let set = set_name(&r.action, family);
            let op = match r.op {
                Op::Ban => SetOp::Add(
                    kernel_timeout(&r.ban, now)
                        .filter(|t| *t <= MAX_TIMEOUT)
                        .unwrap_or(0) as u32,
                ),
                // A set that was never created has nothing to delete.
                Op::Unban if !self.sets.contains(&set) => continue,
                Op::Unban => SetOp::Del,
            };
            match per_set.iter_mut().find(|(s, _, _)| *s == set) {
                Some((_, _, v)) => v.push((r.ban.ip, op)),
                None => per_set.push((set, family == Family::V6, vec![(r.ban.ip, op)])),
            }
        }
        let Some(nl) = self.nl.as_mut() else {
            return Err(std::io::Error::other("no netlink socket"));
        };
        for (set, v6, elems) in &per_set {
            nl.apply(set, *v6, elems)?;
        }
        Ok(())
    }

    /// A batch through one `ipset restore -exist`.
    fn apply_restore(&mut self, batch: &[Request]) -> Result<(), ActionError> {
        let mut script = String::with_capacity(batch.len() * 40);
        let now = std::time::SystemTime::now();
        for r in batch {
            let set = set_name(&r.action, Family::of(r.ban.ip));
            match r.op {
                Op::Ban => {
                    let t = kernel_timeout(&r.ban, now)
                        .filter(|t| *t <= MAX_TIMEOUT)
                        .unwrap_or(0);
                    script.push_str(&format!("add {set} {} timeout {t}\n", r.ban.ip));
                }
                Op::Unban => {
                    // A set that was never created (the jail never banned in
                    // this family) has nothing to delete.
                    if self.sets.contains(&set) {
                        script.push_str(&format!("del {set} {}\n", r.ban.ip));
                    }
                }
            }
        }
        if script.is_empty() {
            return Ok(());
        }
        run_for(
            KIND,
            &argv(&["ipset", "restore", "-exist"]),
            Some(script.as_bytes()),
        )
        .map(|_| ())
    }
}

impl Backend for IpsetBackend {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn init(&mut self) -> Result<(), ActionError> {
        self.xt()?;
        run_for(KIND, &argv(&["ipset", "version"]), None)?;
        if self.restore_only {
            return Ok(());
        }
        self.nl = match IpsetNl::open() {
            Ok(nl) => Some(nl),
            Err(e) => {
                tracing::info!(
                    "ipset netlink socket refused ({e}): running ipset restore per batch"
                );
                None
            }
        };
        Ok(())
    }

    fn start(&mut self, a: &JailAction, family: Family) -> Result<(), ActionError> {
        let set = set_name(a, family);
        self.ensure_set(&set, family)?;
        let target = format!(
            "-m set --match-set {set} src -j {}",
            blocktype(&a.blocktype, family)
        );
        let own: Vec<String> = match_specs(&a.ports, a.protocol)
            .iter()
            .map(|m| spec(m, &target))
            .collect();
        let desired = self.refs.want(&set, family, &a.jail, &a.chain, own);
        self.xt()?.reconcile_refs(family, &a.chain, &desired, |t| {
            has_pair(t, "--match-set", &set)
        })?;
        self.sets.insert(set);
        Ok(())
    }

    fn apply(&mut self, batch: &[Request]) -> Result<(), ActionError> {
        if self.nl.is_some() {
            match self.apply_netlink(batch) {
                Ok(()) => return Ok(()),
                // The batch is idempotent: `ipset restore` repeats it whole.
                Err(e) => {
                    tracing::warn!("ipset over netlink failed, falling back to ipset restore: {e}");
                    self.nl = None;
                }
            }
        }
        self.apply_restore(batch)
    }

    fn stop(&mut self, a: &JailAction, family: Family) -> Result<(), ActionError> {
        let set = set_name(a, family);
        self.refs.forget(&set, family);
        self.xt()?
            .remove_refs(family, &a.chain, |t| has_pair(t, "--match-set", &set))?;
        self.sets.remove(&set);
        let exists = run(&argv(&["ipset", "list", "-n", &set]), None, COMMAND_TIMEOUT).is_ok();
        if !exists {
            return Ok(());
        }
        // The kernel may release the rule's reference to the set a moment
        // after the rule is gone; give it a few short tries.
        let destroy = argv(&["ipset", "destroy", &set]);
        let mut last = None;
        for i in 0..20u32 {
            match run(&destroy, None, COMMAND_TIMEOUT) {
                Ok(_) => return Ok(()),
                Err(f) if f.stderr.contains("in use") => {
                    last = Some(f);
                    std::thread::sleep(std::time::Duration::from_millis(10 * u64::from(i + 1)));
                }
                Err(f) => return Err(f.into_error(KIND)),
            }
        }
        Err(last.map_or_else(
            || ActionError {
                backend: KIND.into(),
                message: format!("cannot destroy ipset {set}"),
            },
            |f| f.into_error(KIND),
        ))
    }
}
