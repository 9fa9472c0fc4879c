//! Stage 6: actions. The [`Backend`] trait and the dispatcher that feeds
//! each backend batches of bans and unbans on its own thread.
//!
//! Receives [`Effect`](crate::ban::Effect)s turned into [`Request`]s by the
//! daemon; sends nothing back except metrics and logs. A backend that fails
//! is retried with backoff and its requests are kept: a ban decided is never
//! silently dropped.
//!
//! # The `Backend` protocol
//!
//! - [`Backend::init`] is called once, before anything else, on the
//!   backend's own thread. It may find objects a previous run left behind
//!   (after a crash) and must adopt them rather than fail or duplicate.
//! - [`Backend::start`] prepares a jail's objects for one address family
//!   (chain, set, table). It is called lazily before the first ban of that
//!   (jail, family) and must be idempotent.
//! - [`Backend::apply`] applies a batch, which may mix jails, families,
//!   bans and unbans, in order. Each element is idempotent: banning a banned
//!   address or unbanning an absent one succeeds. On `Err` the whole batch is
//!   retried later, so partial application must be safe to repeat.
//! - [`Backend::stop`] removes what `start` created, for one (jail, family).
//!   It is called at shutdown for every pair started, and when a reload
//!   removes a jail.
//! - Every address reaching a backend is an [`IpAddr`]; backends run
//!   commands as argv vectors, never through a shell.
//! - [`Backend::attach`] hands the backend the daemon's shared handles
//!   (metrics, matched lines) before `init`; most backends ignore it.
//! - [`Backend::lifecycle`] tells the backend a jail using it started
//!   (daemon start, or a reload added it) or stopped (shutdown, or a reload
//!   removed it); every `Started` is followed by one `Stopped`. Firewall
//!   backends ignore it (they create objects lazily in `start`); the
//!   notifiers send their start/stop notices from it.
//! - The notifiers (`mail`, `webhook`) never return `Err`: delivery happens
//!   on their own thread with their own retries, so a dead MTA or webhook
//!   never makes their worker back off, and never touches another kind's
//!   worker.

pub mod command;
pub mod ipset;
pub mod ipset_nl;
pub mod iptables;
pub mod libnft;
pub mod log;
pub mod mail;
pub mod nftables;
pub mod run;
pub mod ufw;
pub mod webhook;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::ban::Ban;
use crate::config::services::{PortSpec, Protocol};
use crate::filter::NamedOptions;
use crate::jail::JailName;
use crate::telemetry::{Metrics, RateLimiter};

/// The backends banstream knows by name.
pub const KNOWN: &[&str] = &[
    "log",
    "command",
    "nftables",
    "iptables-multiport",
    "iptables-allports",
    "iptables-ipset",
    "ufw",
    "mail",
    "webhook",
];

/// The backends keeping their bans in an iptables chain `f2b-<name>`.
const CHAIN_KINDS: [&str; 2] = ["iptables-multiport", "iptables-allports"];
/// The backends whose firewall objects `name=` names (log, command, mail,
/// webhook and ufw have none to share).
const NAMED_KINDS: [&str; 4] = [CHAIN_KINDS[0], CHAIN_KINDS[1], "nftables", "iptables-ipset"];

/// Address family of a ban.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of an address.
    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

/// Values an action inherits from its jail.
#[derive(Clone, Debug)]
pub struct ActionDefaults {
    /// The jail.
    pub jail: JailName,
    /// The jail's ports.
    pub ports: PortSpec,
    /// The jail's protocol.
    pub protocol: Protocol,
    /// The jail's `chain`.
    pub chain: String,
    /// The jail's `blocktype`.
    pub blocktype: String,
}

/// One action of one jail, with its parameters resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct JailAction {
    /// The jail it belongs to.
    pub jail: JailName,
    /// Backend name (one of [`KNOWN`]).
    pub kind: String,
    /// Base name of the firewall objects (fail2ban's `name=`; default the jail's name).
    pub name: String,
    /// Ports covered.
    pub ports: PortSpec,
    /// Protocol covered.
    pub protocol: Protocol,
    /// iptables chain jumped from.
    pub chain: String,
    /// REJECT, DROP, ...
    pub blocktype: String,
    /// Any other options given in brackets.
    pub options: BTreeMap<String, String>,
    /// The templates of a `command` action (`None` for the built-in backends).
    pub command: Option<Arc<CommandTemplates>>,
}

impl JailAction {
    /// Whether this action and `other`, of another jail, use the same
    /// firewall objects: the same built-in kind and `name=`. (Command
    /// actions name their objects in their own templates.)
    pub fn shares_objects_with(&self, other: &JailAction) -> bool {
        self.jail != other.jail
            && self.kind == other.kind
            && self.name == other.name
            && self.command.is_none()
            && NAMED_KINDS.contains(&self.kind.as_str())
    }

    /// Whether this action and `other` would fight over one firewall
    /// object: iptables-multiport and iptables-allports with the same
    /// `name=` both use the chain `f2b-<name>`, but run in different
    /// workers, so one's stop would flush the other's bans. The
    /// configuration refuses such a pair (see `config::resolve`).
    pub fn clashes_with(&self, other: &JailAction) -> bool {
        self.kind != other.kind
            && CHAIN_KINDS.contains(&self.kind.as_str())
            && CHAIN_KINDS.contains(&other.kind.as_str())
            && self.name == other.name
    }
}

/// A command action: fail2ban's actionstart / actionstop / actioncheck /
/// actionban / actionunban, each a list of commands run in order. Every
/// command is an argv vector; tags like `<ip>`, `<name>`, `<port>`,
/// `<protocol>`, `<bantime>`, `<failures>` (and the static `tags`) are
/// substituted inside single arguments only, after the address has been
/// parsed as an IP. Nothing is ever passed to a shell.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandTemplates {
    /// Where the templates came from (config key or action.d file), for errors.
    pub origin: String,
    /// Run once per (jail, family) before the first ban.
    pub start: Vec<Vec<String>>,
    /// Run at shutdown for every (jail, family) started.
    pub stop: Vec<Vec<String>>,
    /// Run before a ban to verify the setup (fail2ban's actioncheck).
    pub check: Vec<Vec<String>>,
    /// Run per ban.
    pub ban: Vec<Vec<String>>,
    /// Run per unban.
    pub unban: Vec<Vec<String>>,
    /// Static tag values (fail2ban's `[Init]`, overridden by jail options).
    pub tags: BTreeMap<String, String>,
}

impl JailAction {
    /// Resolves an action reference (`iptables-multiport[name=Named, port=53, protocol=udp]`)
    /// over the jail's defaults. Only the built-in backends; see [`JailAction::resolve_with`].
    pub fn resolve(r: &NamedOptions, d: &ActionDefaults) -> Result<JailAction, String> {
        Self::resolve_with(r, d, &BTreeMap::new())
    }

    /// Resolves an action reference that may also name a command action
    /// (`[action.NAME]` in banstream.toml): such a reference becomes a
    /// `command` action carrying its templates.
    pub fn resolve_with(
        r: &NamedOptions,
        d: &ActionDefaults,
        commands: &BTreeMap<String, Arc<CommandTemplates>>,
    ) -> Result<JailAction, String> {
        let name = r.name.trim();
        let (kind, command) = match commands.get(name) {
            Some(t) => ("command".to_string(), Some(t.clone())),
            None if name == "command" => {
                return Err(
                    "a command action is used by its name: define it as [action.NAME] and write banaction = \"NAME\"".into(),
                )
            }
            None => (name.to_string(), None),
        };
        if !KNOWN.contains(&kind.as_str()) {
            let mut known: Vec<&str> = KNOWN.iter().copied().filter(|k| *k != "command").collect();
            known.extend(commands.keys().map(String::as_str));
            return Err(format!(
                "unknown action {kind:?} (known: {})",
                known.join(", ")
            ));
        }
        let mut a = JailAction {
            jail: d.jail.clone(),
            kind,
            name: d.jail.to_string(),
            ports: d.ports.clone(),
            protocol: d.protocol,
            chain: d.chain.clone(),
            blocktype: d.blocktype.clone(),
            options: BTreeMap::new(),
            command,
        };
        if a.kind == "iptables-allports" {
            a.ports = PortSpec::All;
        }
        for (k, v) in &r.options {
            match k.as_str() {
                "name" => {
                    JailName::new(v).map_err(|e| format!("action name= {e}"))?;
                    a.name = v.clone();
                }
                "port" => a.ports = PortSpec::parse(v).map_err(|e| e.to_string())?,
                "protocol" => {
                    a.protocol = Protocol::parse(v)
                        .ok_or_else(|| format!("protocol {v:?} must be tcp, udp or all"))?
                }
                "chain" => a.chain = v.clone(),
                "blocktype" => a.blocktype = v.clone(),
                _ => {
                    a.options.insert(k.clone(), v.clone());
                }
            }
        }
        if !a
            .chain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(format!(
                "chain {:?} must be letters, digits, '_' or '-'",
                a.chain
            ));
        }
        // Kernel limits on object names: iptables chains 28 characters
        // (`f2b-` + name), ipsets 31 (`f2b-` + name + `6`).
        let limit = match a.kind.as_str() {
            "iptables-multiport" | "iptables-allports" => Some(24),
            "iptables-ipset" => Some(26),
            _ => None,
        };
        if let Some(max) = limit.filter(|m| a.name.len() > *m) {
            return Err(format!(
                "{}: name {:?} is longer than {max} characters, too long for the firewall's object names; shorten it with {}[name=...]",
                a.kind, a.name, a.kind
            ));
        }
        if let Some(t) = &a.command {
            command::validate(t, &a)?;
        }
        if !a
            .blocktype
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b' ')
        {
            return Err(format!(
                "blocktype {:?} has characters a firewall rule cannot take",
                a.blocktype
            ));
        }
        Ok(a)
    }

    /// A `log` action for a jail (dry-run).
    pub fn log(jail: &JailName) -> JailAction {
        JailAction {
            jail: jail.clone(),
            kind: "log".into(),
            name: jail.to_string(),
            ports: PortSpec::All,
            protocol: Protocol::All,
            chain: "INPUT".into(),
            blocktype: "REJECT".into(),
            options: BTreeMap::new(),
            command: None,
        }
    }
}

/// Extra kernel lifetime given to a ban element beyond its remaining time,
/// so banstream's own unban (at expiry) normally finds it still there.
pub const KERNEL_GRACE_SECS: u64 = 1;

/// The kernel timeout for a ban element, in whole seconds (`None`: the
/// ban is permanent, no timeout). Never 0, which would mean "forever" to
/// ipset.
pub fn kernel_timeout(ban: &Ban, now: std::time::SystemTime) -> Option<u64> {
    let left = ban.remaining(now)?;
    let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    Some(secs.max(1) + KERNEL_GRACE_SECS)
}

/// Ban or unban.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Block the address.
    Ban,
    /// Unblock it.
    Unban,
}

/// One unit of work for a backend.
#[derive(Clone, Debug)]
pub struct Request {
    /// Ban or unban.
    pub op: Op,
    /// Which jail action.
    pub action: Arc<JailAction>,
    /// The ban (address, times).
    pub ban: Arc<Ban>,
    /// When the triggering message arrived; the latency histogram is
    /// observed when this request is applied.
    pub received: Option<Instant>,
}

/// A backend failure.
#[derive(Debug, thiserror::Error)]
#[error("{backend}: {message}")]
pub struct ActionError {
    /// Backend name.
    pub backend: String,
    /// What failed (command and output).
    pub message: String,
}

/// Handles a backend may need from the daemon besides its kind.
#[derive(Clone, Default)]
pub struct Services {
    /// Where backends count what they do.
    pub metrics: Metrics,
    /// Matched lines of banned addresses (for notifications).
    pub evidence: crate::notify::Evidence,
}

/// A jail using a backend started or stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    /// Daemon start, or a reload added the jail.
    Started,
    /// Shutdown, or a reload removed the jail.
    Stopped,
}

/// A firewall (or other) backend. See the module docs for the protocol.
pub trait Backend: Send {
    /// The backend's name.
    fn kind(&self) -> &'static str;
    /// Receives the daemon's shared handles, before `init`.
    fn attach(&mut self, _services: &Services) {}
    /// A jail using this backend started or stopped.
    fn lifecycle(&mut self, _action: &JailAction, _event: Lifecycle) {}
    /// The daemon reloaded its configuration: forget what was read from
    /// files the options name (a rotated `token_file`), so the next use
    /// reads them again.
    fn reloaded(&mut self) {}
    /// Called once before anything else; adopt leftovers of a crashed run.
    fn init(&mut self) -> Result<(), ActionError> {
        Ok(())
    }
    /// Every jail using this backend at start-up has been announced (by
    /// [`Backend::lifecycle`]), before any ban: remove what a crashed run
    /// left for jails no longer configured, which nothing would lift.
    fn configured(&mut self, _actions: &[Arc<JailAction>]) {}
    /// Create a jail's objects for a family. Idempotent.
    fn start(&mut self, action: &JailAction, family: Family) -> Result<(), ActionError>;
    /// Apply a batch in order. Idempotent per element.
    fn apply(&mut self, batch: &[Request]) -> Result<(), ActionError>;
    /// Remove a jail's objects for a family.
    fn stop(&mut self, action: &JailAction, family: Family) -> Result<(), ActionError>;
}

/// Makes a backend for a kind name.
pub type Factory = Arc<dyn Fn(&str) -> Result<Box<dyn Backend>, ActionError> + Send + Sync>;

/// The factory for the backends built into banstream.
pub fn default_factory() -> Factory {
    Arc::new(|kind: &str| -> Result<Box<dyn Backend>, ActionError> {
        match kind {
            "log" => Ok(Box::new(log::LogBackend)),
            "mail" => Ok(Box::new(mail::MailBackend::new(mail::Mail::default()))),
            "webhook" => Ok(Box::new(webhook::WebhookBackend::new(webhook::Webhook))),
            "nftables" => Ok(Box::new(nftables::NftBackend::new())),
            "iptables-multiport" => Ok(Box::new(iptables::IptablesBackend::new(
                "iptables-multiport",
            ))),
            "iptables-allports" => Ok(Box::new(iptables::IptablesBackend::new(
                "iptables-allports",
            ))),
            "iptables-ipset" => Ok(Box::new(ipset::IpsetBackend::new())),
            "ufw" => Ok(Box::new(ufw::UfwBackend::new())),
            "command" => Ok(Box::new(command::CommandBackend::new())),
            other => Err(ActionError {
                backend: other.to_string(),
                message: format!("unknown backend (known: {})", KNOWN.join(", ")),
            }),
        }
    })
}

enum Msg {
    Work(Request),
    /// Stop a jail's objects (reload removed the jail); the bans were
    /// already unbanned by requests queued before this.
    StopJail(Arc<JailAction>),
    /// A jail using the backend started.
    Started(Arc<JailAction>),
    /// The configuration was reloaded (see [`Backend::reloaded`]).
    Reloaded,
    /// Start-up announced every jail (see [`Backend::configured`]).
    Configured,
}

/// Largest batch handed to a backend at once.
const MAX_BATCH: usize = 10_000;
/// First retry delay; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Runs one thread per backend kind and routes requests to them.
pub struct Dispatcher {
    workers: HashMap<String, (mpsc::Sender<Msg>, JoinHandle<()>)>,
    factory: Factory,
    metrics: Metrics,
    services: Services,
}

impl Dispatcher {
    /// A dispatcher using `factory` to build backends as kinds are first used.
    pub fn new(factory: Factory, metrics: Metrics) -> Dispatcher {
        Dispatcher {
            workers: HashMap::new(),
            factory,
            services: Services {
                metrics: metrics.clone(),
                evidence: Default::default(),
            },
            metrics,
        }
    }

    /// Shares the engine's matched lines with the backends built from now on.
    pub fn with_evidence(mut self, evidence: crate::notify::Evidence) -> Dispatcher {
        self.services.evidence = evidence;
        self
    }

    /// Builds and initialises the backend for `kind` now (so start-up fails
    /// loudly on a broken firewall rather than at the first ban).
    pub fn ensure(&mut self, kind: &str) -> Result<(), ActionError> {
        if self.workers.contains_key(kind) {
            return Ok(());
        }
        let mut backend = (self.factory)(kind)?;
        backend.attach(&self.services);
        backend.init()?;
        let (tx, rx) = mpsc::channel();
        let metrics = self.metrics.clone();
        let name = kind.to_string();
        let handle = std::thread::Builder::new()
            .name(format!("action-{kind}"))
            .spawn(move || worker(backend, rx, metrics))
            .map_err(|e| ActionError {
                backend: name.clone(),
                message: format!("cannot start worker thread: {e}"),
            })?;
        self.workers.insert(kind.to_string(), (tx, handle));
        Ok(())
    }

    /// Queues a request. Never blocks.
    pub fn submit(&mut self, req: Request) {
        let kind = req.action.kind.clone();
        if let Err(e) = self.ensure(&kind) {
            self.metrics
                .action_errors
                .with_label_values(&[req.action.jail.as_str(), &kind])
                .inc();
            tracing::error!(jail = %req.action.jail, action = %kind, ip = %req.ban.ip, "cannot run action: {e}");
            return;
        }
        if let Some((tx, _)) = self.workers.get(&kind) {
            let _ = tx.send(Msg::Work(req));
        }
    }

    /// Tells the action's backend that its jail started (see [`Backend::lifecycle`]).
    pub fn jail_started(&mut self, action: Arc<JailAction>) {
        if self.ensure(&action.kind).is_err() {
            return; // `submit` reports it at the first ban
        }
        if let Some((tx, _)) = self.workers.get(&action.kind) {
            let _ = tx.send(Msg::Started(action));
        }
    }

    /// Tells every running backend that start-up has announced all its
    /// jails (see [`Backend::configured`]).
    pub fn configured(&mut self) {
        for (tx, _) in self.workers.values() {
            let _ = tx.send(Msg::Configured);
        }
    }

    /// Tells every running backend that the configuration was reloaded.
    pub fn reloaded(&mut self) {
        for (tx, _) in self.workers.values() {
            let _ = tx.send(Msg::Reloaded);
        }
    }

    /// Asks the backend to remove a jail's objects (after its bans were lifted).
    pub fn stop_jail(&mut self, action: Arc<JailAction>) {
        if let Some((tx, _)) = self.workers.get(&action.kind) {
            let _ = tx.send(Msg::StopJail(action));
        }
    }

    /// Closes every queue, lets each worker apply what it has, stop every
    /// jail it started, and exit. Blocks until they are done.
    pub fn shutdown(self) {
        let handles: Vec<JoinHandle<()>> = self
            .workers
            .into_values()
            .map(|(tx, h)| {
                drop(tx);
                h
            })
            .collect();
        for h in handles {
            if h.join().is_err() {
                tracing::error!("an action worker panicked during shutdown");
            }
        }
    }
}

fn worker(mut backend: Box<dyn Backend>, rx: mpsc::Receiver<Msg>, metrics: Metrics) {
    let kind = backend.kind();
    let limiter = RateLimiter::default();
    // (action, family) pairs started, in start order. Keyed by the action
    // itself, not the jail: a jail may run two actions of one kind
    // (`iptables-multiport[name=a]`, `iptables-multiport[name=b]`), and a
    // reload that changes an action's ports starts it again.
    let mut started: Vec<(Arc<JailAction>, Family)> = Vec::new();
    let mut pending: Vec<Request> = Vec::new();
    let mut announced: Vec<Arc<JailAction>> = Vec::new();
    let mut backoff = FIRST_BACKOFF;
    let mut failures: u64 = 0;
    let mut open = true;
    while open || !pending.is_empty() {
        // Wait for work (or for the retry delay when a batch is pending).
        let first = if pending.is_empty() {
            match rx.recv() {
                Ok(m) => Some(m),
                Err(_) => {
                    open = false;
                    None
                }
            }
        } else if open {
            match rx.recv_timeout(backoff) {
                Ok(m) => Some(m),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    open = false;
                    None
                }
            }
        } else {
            // Shutting down with a failing backend: a last bounded retry.
            std::thread::sleep(backoff.min(Duration::from_secs(1)));
            None
        };
        let mut stops = Vec::new();
        // A stop is a barrier: what was queued before it is applied first,
        // and what comes after it (a reload re-banning through a changed
        // action of the same kind) waits for the next round, so it starts
        // the jail's objects again instead of being removed with them.
        let mut take = |m: Msg, pending: &mut Vec<Request>| match m {
            Msg::Work(r) => {
                pending.push(r);
                false
            }
            Msg::StopJail(a) => {
                stops.push(a);
                true
            }
            Msg::Started(a) => {
                if !announced.contains(&a) {
                    announced.push(a.clone());
                }
                backend.lifecycle(&a, Lifecycle::Started);
                false
            }
            Msg::Reloaded => {
                backend.reloaded();
                false
            }
            Msg::Configured => {
                backend.configured(&announced);
                false
            }
        };
        let mut barrier = false;
        if let Some(m) = first {
            barrier = take(m, &mut pending);
        }
        while !barrier && pending.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => barrier = take(m, &mut pending),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        if !pending.is_empty() {
            let (applied, error) = apply_isolating(&mut *backend, &mut pending, &mut started);
            let now = Instant::now();
            for r in &applied {
                if let (Op::Ban, Some(t)) = (r.op, r.received) {
                    metrics
                        .ban_latency
                        .observe(now.duration_since(t).as_secs_f64());
                }
            }
            match error {
                None => {
                    if failures > 0 {
                        tracing::info!(
                            action = kind,
                            failures,
                            applied = applied.len(),
                            "action recovered"
                        );
                        failures = 0;
                    }
                    backoff = FIRST_BACKOFF;
                }
                Some(e) => {
                    failures += 1;
                    let mut jails: Vec<&str> =
                        pending.iter().map(|r| r.action.jail.as_str()).collect();
                    jails.sort_unstable();
                    jails.dedup();
                    for j in &jails {
                        metrics.action_errors.with_label_values(&[j, kind]).inc();
                    }
                    if let Some(suppressed) = limiter.check("action_failed") {
                        tracing::error!(
                            action = kind,
                            pending = pending.len(),
                            applied = applied.len(),
                            retry_in_ms = backoff.as_millis() as u64,
                            suppressed,
                            "action failed, will retry: {e}"
                        );
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    if !open && backoff >= MAX_BACKOFF {
                        tracing::error!(action = kind, lost = pending.len(), "giving up at shutdown; the store still holds these bans and the next start re-applies them");
                        pending.clear();
                    }
                }
            }
        }
        for a in stops {
            if let Some(i) = announced.iter().position(|x| **x == *a) {
                announced.remove(i);
                backend.lifecycle(&a, Lifecycle::Stopped);
            }
            // Another jail's action of this kind with the same `name=` uses
            // the same objects (the seed guide's named-refused-udp and -tcp
            // share `f2b-Named`): the stop removes them too, so it is
            // started again at its next ban, and the daemon bans its
            // addresses again after the stop (`Daemon::swap`).
            let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut started)
                .into_iter()
                .partition(|(s, _)| {
                    s.kind == a.kind && (s.jail == a.jail || s.shares_objects_with(&a))
                });
            started = kept;
            for (s, fam) in gone {
                if let Err(e) = backend.stop(&s, fam) {
                    metrics
                        .action_errors
                        .with_label_values(&[s.jail.as_str(), kind])
                        .inc();
                    tracing::error!(action = kind, jail = %s.jail, "stop failed: {e}");
                }
            }
        }
    }
    for a in announced {
        backend.lifecycle(&a, Lifecycle::Stopped);
    }
    for (a, fam) in started {
        if let Err(e) = backend.stop(&a, fam) {
            metrics
                .action_errors
                .with_label_values(&[a.jail.as_str(), kind])
                .inc();
            tracing::error!(action = kind, jail = %a.jail, "stop failed: {e}");
        }
    }
}

/// The rules that refer to a shared firewall object (an iptables chain
/// `f2b-Named`, an ipset, an nftables chain), per jail that started it: jails sharing `name=` may differ in ports or
/// protocol (the seed guide's named-refused-udp and -tcp), and each start
/// must keep the others' rules instead of replacing them with its own.
#[derive(Default)]
struct SharedRefs {
    /// (object, family) → its users, in start order.
    by_object: HashMap<(String, Family), Vec<RefUser>>,
}

/// A jail using a shared object: the parent chain (or hook) and its rules there.
type RefUser = (JailName, String, Vec<String>);

impl SharedRefs {
    /// Records what `jail` wants in `parent` for the object and returns
    /// every started jail's rules in that parent, each once, in start order.
    fn want(
        &mut self,
        object: &str,
        family: Family,
        jail: &JailName,
        parent: &str,
        specs: Vec<String>,
    ) -> Vec<String> {
        let users = self
            .by_object
            .entry((object.to_string(), family))
            .or_default();
        match users.iter_mut().find(|(j, p, _)| j == jail && p == parent) {
            Some(u) => u.2 = specs,
            None => users.push((jail.clone(), parent.to_string(), specs)),
        }
        let mut all: Vec<String> = Vec::new();
        for (_, p, specs) in users.iter() {
            for spec in specs.iter().filter(|_| p == parent) {
                if !all.contains(spec) {
                    all.push(spec.clone());
                }
            }
        }
        all
    }

    /// The object is gone (its stop removes every rule referring to it,
    /// whoever started them).
    fn forget(&mut self, object: &str, family: Family) {
        self.by_object.remove(&(object.to_string(), family));
    }
}

/// Batches tried per round to single out the requests a backend refuses.
const ISOLATION_ATTEMPTS: usize = 32;

/// Applies `pending` as one batch; when that fails, splits it in halves
/// (recursively, in order) so that one request the backend refuses (an IPv6
/// ban without ip6tables, an element nft rejects, a command failing for one
/// address) does not hold up every other ban and unban of the backend.
/// Returns the requests applied and the last error; the ones not applied
/// stay in `pending`, in order, for the retry. Once a request for an
/// address fails or goes untried (at most [`ISOLATION_ATTEMPTS`] batches
/// per round), later requests for that address wait behind it, so an unban
/// is never applied before the ban it follows.
fn apply_isolating(
    backend: &mut dyn Backend,
    pending: &mut Vec<Request>,
    started: &mut Vec<(Arc<JailAction>, Family)>,
) -> (Vec<Request>, Option<ActionError>) {
    let mut last = match run_batch(backend, pending, started) {
        Ok(()) => return (std::mem::take(pending), None),
        Err(e) if pending.len() == 1 => return (Vec::new(), Some(e)),
        Err(e) => e,
    };
    let all = std::mem::take(pending);
    let mut applied = vec![false; all.len()];
    let mut blocked: HashSet<IpAddr> = HashSet::new();
    let mut budget = ISOLATION_ATTEMPTS;
    let half = all.len() / 2;
    // Depth first, first half first: the input order.
    let mut todo: Vec<Vec<usize>> = vec![(half..all.len()).collect(), (0..half).collect()];
    while let Some(part) = todo.pop() {
        let part: Vec<usize> = part
            .into_iter()
            .filter(|i| !blocked.contains(&all[*i].ban.ip))
            .collect();
        if part.is_empty() {
            continue;
        }
        if budget == 0 {
            blocked.extend(part.iter().map(|i| all[*i].ban.ip));
            continue;
        }
        budget -= 1;
        let batch: Vec<Request> = part.iter().map(|i| all[*i].clone()).collect();
        match run_batch(backend, &batch, started) {
            Ok(()) => part.iter().for_each(|i| applied[*i] = true),
            Err(e) => {
                last = e;
                if let [one] = part[..] {
                    blocked.insert(all[one].ban.ip);
                } else {
                    let (a, b) = part.split_at(part.len() / 2);
                    todo.push(b.to_vec());
                    todo.push(a.to_vec());
                }
            }
        }
    }
    let mut done = Vec::new();
    for (r, ok) in all.into_iter().zip(applied) {
        if ok {
            done.push(r);
        } else {
            pending.push(r);
        }
    }
    if pending.is_empty() {
        // The parts went through: the first failure passed.
        tracing::debug!("a batch failed, then went through in parts: {last}");
        return (done, None);
    }
    (done, Some(last))
}

fn run_batch(
    backend: &mut dyn Backend,
    batch: &[Request],
    started: &mut Vec<(Arc<JailAction>, Family)>,
) -> Result<(), ActionError> {
    for r in batch {
        let fam = Family::of(r.ban.ip);
        if r.op == Op::Ban
            && !started
                .iter()
                .any(|(a, f)| *f == fam && (Arc::ptr_eq(a, &r.action) || **a == *r.action))
        {
            backend.start(&r.action, fam)?;
            started.push((r.action.clone(), fam));
        }
    }
    backend.apply(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ban::BanOrigin;
    use crate::config::TimeSpec;
    use std::sync::Mutex;
    use std::time::SystemTime;

    #[derive(Default)]
    struct Recorder {
        log: Arc<Mutex<Vec<String>>>,
        fail_first: Arc<Mutex<u32>>,
        /// Every batch holding this address fails.
        refuse: Option<IpAddr>,
    }

    impl Backend for Recorder {
        fn kind(&self) -> &'static str {
            "rec"
        }
        fn start(&mut self, a: &JailAction, f: Family) -> Result<(), ActionError> {
            self.log
                .lock()
                .unwrap()
                .push(format!("start {} {:?}", a.jail, f));
            Ok(())
        }
        fn apply(&mut self, batch: &[Request]) -> Result<(), ActionError> {
            let mut left = self.fail_first.lock().unwrap();
            if *left > 0 || batch.iter().any(|r| Some(r.ban.ip) == self.refuse) {
                *left = left.saturating_sub(1);
                return Err(ActionError {
                    backend: "rec".into(),
                    message: "boom".into(),
                });
            }
            for r in batch {
                self.log
                    .lock()
                    .unwrap()
                    .push(format!("{:?} {}", r.op, r.ban.ip));
            }
            Ok(())
        }
        fn stop(&mut self, a: &JailAction, f: Family) -> Result<(), ActionError> {
            self.log
                .lock()
                .unwrap()
                .push(format!("stop {} {:?}", a.jail, f));
            Ok(())
        }
    }

    fn request(op: Op, ip: &str) -> Request {
        let jail = JailName::new("sshd").unwrap();
        let mut action = JailAction::log(&jail);
        action.kind = "rec".into();
        Request {
            op,
            action: Arc::new(action),
            ban: Arc::new(Ban {
                jail,
                ip: ip.parse().unwrap(),
                start: SystemTime::now(),
                bantime: TimeSpec::Forever,
                expires: None,
                failures: 1,
                ban_count: 1,
                origin: BanOrigin::Manual,
            }),
            received: Some(Instant::now()),
        }
    }

    #[test]
    fn failures_are_retried_not_lost_and_stop_runs_at_shutdown() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let fail = Arc::new(Mutex::new(2));
        let (l2, f2) = (log.clone(), fail.clone());
        let factory: Factory = Arc::new(move |_k: &str| -> Result<Box<dyn Backend>, ActionError> {
            Ok(Box::new(Recorder {
                log: l2.clone(),
                fail_first: f2.clone(),
                ..Default::default()
            }))
        });
        let metrics = Metrics::new();
        let mut d = Dispatcher::new(factory, metrics.clone());
        d.submit(request(Op::Ban, "192.0.2.1"));
        d.submit(request(Op::Ban, "2001:db8::1"));
        d.shutdown();
        let log = log.lock().unwrap().clone();
        assert!(log.contains(&"Ban 192.0.2.1".to_string()), "{log:?}");
        assert!(log.contains(&"Ban 2001:db8::1".to_string()), "{log:?}");
        assert!(log.contains(&"stop sshd V4".to_string()), "{log:?}");
        assert!(log.contains(&"stop sshd V6".to_string()), "{log:?}");
        assert!(
            metrics
                .action_errors
                .with_label_values(&["sshd", "rec"])
                .get()
                >= 1
        );
        assert_eq!(metrics.ban_latency.get_sample_count(), 2);
    }

    #[test]
    fn a_request_the_backend_refuses_holds_up_only_its_own_address() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let l2 = log.clone();
        let factory: Factory = Arc::new(move |_k: &str| -> Result<Box<dyn Backend>, ActionError> {
            Ok(Box::new(Recorder {
                log: l2.clone(),
                refuse: Some("2001:db8::1".parse().unwrap()),
                ..Default::default()
            }))
        });
        let mut backend = factory("rec").unwrap();
        let mut started = Vec::new();
        let mut pending = vec![
            request(Op::Ban, "192.0.2.1"),
            request(Op::Ban, "2001:db8::1"),
            request(Op::Ban, "192.0.2.2"),
            request(Op::Unban, "2001:db8::1"),
            request(Op::Unban, "192.0.2.1"),
            request(Op::Ban, "192.0.2.3"),
        ];
        let (applied, err) = apply_isolating(&mut *backend, &mut pending, &mut started);
        assert!(err.is_some());
        let ips = |v: &[Request]| -> Vec<String> {
            v.iter()
                .map(|r| format!("{:?} {}", r.op, r.ban.ip))
                .collect()
        };
        assert_eq!(
            ips(&applied),
            [
                "Ban 192.0.2.1",
                "Ban 192.0.2.2",
                "Unban 192.0.2.1",
                "Ban 192.0.2.3"
            ]
        );
        // The refused ban and the unban behind it wait, in order.
        assert_eq!(ips(&pending), ["Ban 2001:db8::1", "Unban 2001:db8::1"]);
        let seen = log.lock().unwrap().clone();
        assert!(!seen.iter().any(|l| l.contains("2001:db8::1")), "{seen:?}");
        let at = |what: &str| seen.iter().position(|l| l == what).expect(what);
        assert!(at("Ban 192.0.2.1") < at("Unban 192.0.2.1"), "{seen:?}");

        // Through the worker: the other addresses are banned while the
        // refused one is retried.
        let metrics = Metrics::new();
        let mut d = Dispatcher::new(factory, metrics.clone());
        d.submit(request(Op::Ban, "2001:db8::1"));
        d.submit(request(Op::Ban, "192.0.2.9"));
        let deadline = Instant::now() + Duration::from_secs(5);
        while metrics.ban_latency.get_sample_count() < 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            log.lock().unwrap().iter().any(|l| l == "Ban 192.0.2.9"),
            "the ban behind a refused one waited for it"
        );
        d.shutdown();
        assert_eq!(metrics.ban_latency.get_sample_count(), 1);
    }

    /// The seed guide's named-refused-udp and -tcp both use
    /// `iptables-multiport[name=Named]`: stopping one removes the shared
    /// objects, so the other is started again at its next ban.
    #[test]
    fn a_stop_takes_another_jails_action_on_the_same_objects_with_it() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let l2 = log.clone();
        let factory: Factory = Arc::new(move |_k: &str| -> Result<Box<dyn Backend>, ActionError> {
            Ok(Box::new(Recorder {
                log: l2.clone(),
                ..Default::default()
            }))
        });
        let on = |jail: &str, ip: &str| {
            let mut r = request(Op::Ban, ip);
            let mut a = (*r.action).clone();
            a.jail = JailName::new(jail).unwrap();
            a.name = "Named".into();
            // A backend with named objects (the recorder stands in for it).
            a.kind = "iptables-multiport".into();
            r.action = Arc::new(a);
            r
        };
        let (udp, tcp) = (on("named-udp", "192.0.2.1"), on("named-tcp", "192.0.2.2"));
        assert!(udp.action.shares_objects_with(&tcp.action));
        let mut mail = (*udp.action).clone();
        mail.kind = "mail".into();
        let mut mail2 = (*tcp.action).clone();
        mail2.kind = "mail".into();
        assert!(!mail.shares_objects_with(&mail2), "mail has no objects");
        let udp_action = udp.action.clone();
        let mut d = Dispatcher::new(factory, Metrics::new());
        d.submit(udp);
        d.submit(tcp);
        d.stop_jail(udp_action);
        d.submit(on("named-tcp", "192.0.2.2"));
        d.shutdown();
        let log = log.lock().unwrap().clone();
        let at = |what: &str| log.iter().position(|l| l == what);
        let stop_udp = at("stop named-udp V4").expect("udp stopped");
        let stop_tcp = at("stop named-tcp V4").expect("tcp's objects went with it");
        assert!(stop_udp < stop_tcp, "{log:?}");
        let starts: Vec<usize> = (0..log.len())
            .filter(|&i| log[i] == "start named-tcp V4")
            .collect();
        assert_eq!(starts.len(), 2, "started again after the stop: {log:?}");
        assert!(starts[1] > stop_tcp, "{log:?}");
    }

    #[test]
    fn resolve_keeps_fail2ban_parameters() {
        let d = ActionDefaults {
            jail: JailName::new("named-refused-udp").unwrap(),
            ports: PortSpec::parse("domain,953").unwrap(),
            protocol: Protocol::Udp,
            chain: "INPUT".into(),
            blocktype: "REJECT".into(),
        };
        let a = JailAction::resolve(
            &NamedOptions::parse("iptables-multiport[name=Named, port=53, protocol=udp]").unwrap(),
            &d,
        )
        .unwrap();
        assert_eq!(a.name, "Named");
        assert_eq!(a.ports.to_string(), "53");
        let err = JailAction::resolve(
            &NamedOptions::parse("iptables-multiport[chain=\"INPUT; rm\"]").unwrap(),
            &d,
        )
        .unwrap_err();
        assert!(err.contains("chain"));
        assert!(JailAction::resolve(&NamedOptions::parse("nope").unwrap(), &d).is_err());
    }
}
