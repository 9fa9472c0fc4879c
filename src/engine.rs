//! The synchronous heart of banstream: route → filter → count → ban, for
//! one event at a time, with the clock passed in.
//!
//! The daemon feeds it frames as they arrive (clock: receive time); `replay`
//! feeds it log lines (clock: their timestamps). Both get the same
//! decisions, as [`Effect`]s to carry out. The engine does no I/O.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::{IntCounter, IntGauge};
use serde::Serialize;

use crate::ban::{Ban, BanError, BanManager, BanOrigin, BanRequest, Effect, UnbanReason};
use crate::config::resolve::{JailKind, JailSettings, Settings};
use crate::filter::Verdict;
use crate::jail::activity::{RateSummary, RecentLine};
use crate::jail::{BanView, Jail, JailName, Observation};
use crate::router::Router;
use crate::syslog::Event;
use crate::telemetry::Metrics;

/// Per-jail metric handles, looked up once.
#[derive(Clone)]
struct JailMetrics {
    failures: IntCounter,
    bans: IntCounter,
    unbans: IntCounter,
    active: IntGauge,
    unattributed: IntCounter,
    ignored: IntCounter,
    evictions: IntCounter,
}

impl JailMetrics {
    /// Brings `banstream_window_evictions_total` up to the window's count
    /// (an atomic load when nothing was evicted).
    fn sync_evictions(&self, window: &crate::jail::window::WindowCounter) {
        let (seen, shown) = (window.evictions(), self.evictions.get());
        if seen > shown {
            self.evictions.inc_by(seen - shown);
        }
    }

    fn new(m: &Metrics, jail: &str) -> Self {
        JailMetrics {
            failures: m.failures.with_label_values(&[jail]),
            bans: m.bans.with_label_values(&[jail]),
            unbans: m.unbans.with_label_values(&[jail]),
            active: m.bans_active.with_label_values(&[jail]),
            unattributed: m.unattributed.with_label_values(&[jail]),
            ignored: m.ignored.with_label_values(&[jail]),
            evictions: m.evictions.with_label_values(&[jail]),
        }
    }
}

/// A tiny deterministic generator for `bantime.rndtime` (xorshift64*): no
/// cryptographic need, and replay stays reproducible.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    /// A seed that differs from run to run (the process's randomly keyed
    /// SipHash over the clock): `rndtime` exists so that attackers cannot
    /// time their return, which a sequence repeated at every start would
    /// let them learn. Not for secrets.
    fn unpredictable() -> Rng {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        let t = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        h.write_u128(t);
        h.write_u32(std::process::id());
        // xorshift never leaves zero.
        Rng(h.finish() | 1)
    }

    fn next_f64(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The stateless half of the engine: routing and filters over a snapshot of
/// the jail settings. Cheap to clone and `Send + Sync`, so `replay` matches
/// on several threads while one thread applies verdicts in order.
#[derive(Clone)]
pub struct Matcher {
    jails: Arc<[Arc<JailSettings>]>,
    router: Router,
}

impl Matcher {
    /// The verdicts of one event, as `(jail index, verdict)`, misses left out.
    /// Indices are those of the [`Engine`] the matcher was taken from.
    pub fn examine<'t>(&self, ev: &Event<'t>, out: &mut Vec<(usize, Verdict<'t>)>) {
        self.router.for_each(ev.program, |i| {
            let v = crate::jail::examine(&self.jails[i], ev);
            if v != Verdict::Miss {
                out.push((i, v));
            }
        });
    }
}

/// Literals one of which every line some jail can match contains (the
/// union over the filters), or `None` when a filter cannot promise that.
fn line_literals<'a>(jails: impl Iterator<Item = &'a JailSettings>) -> Option<Vec<Vec<u8>>> {
    let mut all = Vec::new();
    for j in jails {
        if let JailKind::Filter(f) = &j.kind {
            all.extend_from_slice(f.required_literals()?);
        }
    }
    Some(all)
}

/// The literals without duplicates and without any that contains another:
/// a line holding the longer one holds the shorter, so the gate admits the
/// same lines with a smaller automaton (fewer patterns scan faster).
fn minimal(mut lits: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    lits.sort_by_key(Vec::len);
    lits.dedup();
    let mut keep: Vec<Vec<u8>> = Vec::with_capacity(lits.len());
    for l in lits {
        if !keep.iter().any(|k| memchr::memmem::find(&l, k).is_some()) {
            keep.push(l);
        }
    }
    keep
}

/// A quick test that a line may matter to some jail: one Aho-Corasick
/// search for the literals every filter requires (see
/// [`crate::filter::Filter::required_literals`]). A line without any of them
/// cannot match a failregex, so it is neither parsed nor routed. Most of a
/// busy syslog stream (cron, dhcpcd, web servers) ends here.
#[derive(Clone, Debug, Default)]
pub struct LineGate(Option<aho_corasick::AhoCorasick>);

impl LineGate {
    /// The gate for these literals; `None` (or none at all) lets every line
    /// through.
    pub fn new(literals: Option<Vec<Vec<u8>>>) -> LineGate {
        LineGate(
            literals
                .map(minimal)
                .filter(|l| !l.is_empty())
                .and_then(|l| {
                    aho_corasick::AhoCorasick::builder()
                        .match_kind(aho_corasick::MatchKind::LeftmostFirst)
                        .build(&l)
                        .ok()
                }),
        )
    }

    /// The automaton, when the gate can skip lines.
    pub fn automaton(&self) -> Option<&aho_corasick::AhoCorasick> {
        self.0.as_ref()
    }

    /// Whether `line` may match some jail.
    pub fn admits(&self, line: &[u8]) -> bool {
        self.0.as_ref().is_none_or(|ac| ac.is_match(line))
    }
}

/// Route, match, count and ban.
pub struct Engine {
    jails: Vec<Jail>,
    metrics_by_jail: Vec<JailMetrics>,
    index: HashMap<JailName, usize>,
    router: Router,
    recidive: Vec<usize>,
    bans: BanManager,
    effects: Vec<Effect>,
    metrics: Metrics,
    rng: Rng,
    /// Keep the last lines of failing addresses (status shows them).
    keep_lines: bool,
    /// Matched lines for the notifiers that show them.
    matches: crate::notify::MatchRecorder,
    /// Skips lines no filter can match.
    gate: LineGate,
    /// The host's addresses read again before a ban (the daemon's
    /// `ignoreself`); `None` in replay, which keeps the configuration's.
    own: Option<OwnAddresses>,
}

/// How old the host's address list may be when a ban is decided.
const OWN_MAX_AGE: Duration = Duration::from_secs(1);

/// The host's addresses, as last read. The list in the configuration is
/// read at start and reload; a DHCP lease or an IPv6 privacy address added
/// since must not become bannable, so a ban in a jail with `ignoreself`
/// reads them again when they are older than [`OWN_MAX_AGE`] (one
/// `getifaddrs` a second at most, however many bans).
#[derive(Debug, Default)]
struct OwnAddresses {
    addrs: Vec<IpAddr>,
    read: Option<std::time::Instant>,
}

/// A jail in `status` output.
#[derive(Debug, Serialize)]
pub struct JailSummary {
    /// Name.
    pub name: String,
    /// Whether it runs.
    pub enabled: bool,
    /// Filter reference.
    pub filter: String,
    /// Programs routed to it.
    pub programs: Vec<String>,
    /// Its actions (backend names).
    pub actions: Vec<String>,
    /// Addresses with failures inside findtime.
    pub currently_failed: usize,
    /// Failures counted since start.
    pub total_failed: u64,
    /// Bans in force.
    pub currently_banned: usize,
    /// Bans issued since start.
    pub total_banned: u64,
}

impl JailSummary {
    /// A configured jail that does not run (`enabled = false`).
    pub fn disabled(s: &JailSettings) -> JailSummary {
        JailSummary {
            name: s.name.to_string(),
            enabled: false,
            filter: s.filter_ref.clone(),
            programs: s.programs.clone(),
            actions: s.actions.iter().map(|a| a.kind.clone()).collect(),
            currently_failed: 0,
            total_failed: 0,
            currently_banned: 0,
            total_banned: 0,
        }
    }
}

/// One banned address in `status JAIL`.
#[derive(Debug, Serialize)]
pub struct BannedEntry {
    /// The address.
    pub ip: String,
    /// Expiry, UNIX seconds (`null`: permanent).
    pub expires: Option<u64>,
    /// Seconds left (`null`: permanent).
    pub remaining: Option<u64>,
    /// Failures behind the ban.
    pub failures: u32,
    /// Which ban of this address it is.
    pub ban_count: u32,
    /// The last lines that counted against the address (oldest first).
    pub lines: Vec<RecentLine>,
}

/// An address with failures in the window.
#[derive(Debug, Serialize)]
pub struct Offender {
    /// The address (or IPv6 network key).
    pub ip: String,
    /// Failures inside findtime.
    pub count: u32,
}

/// `status JAIL`.
#[derive(Debug, Serialize)]
pub struct JailStatus {
    /// The summary fields.
    #[serde(flatten)]
    pub summary: JailSummary,
    /// maxretry.
    pub maxretry: u32,
    /// findtime, seconds.
    pub findtime: u64,
    /// bantime, seconds (-1: permanent).
    pub bantime: i64,
    /// Failures without a usable address.
    pub unattributed: u64,
    /// Failures from ignored addresses.
    pub ignored: u64,
    /// Failures per minute (current minute, last 10 and 60 minutes).
    pub failures_per_minute: RateSummary,
    /// Most active addresses in the window.
    pub top: Vec<Offender>,
    /// Bans in force.
    pub banned: Vec<BannedEntry>,
}

/// UNIX seconds of a time.
pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Engine {
    /// An engine running the enabled jails of `settings`.
    pub fn new(settings: &Settings, metrics: Metrics) -> Engine {
        let mut e = Engine {
            jails: Vec::new(),
            metrics_by_jail: Vec::new(),
            index: HashMap::new(),
            router: Router::default(),
            recidive: Vec::new(),
            bans: BanManager::new(),
            effects: Vec::new(),
            metrics,
            rng: Rng(0x9E37_79B9_7F4A_7C15),
            keep_lines: false,
            matches: Default::default(),
            gate: LineGate::default(),
            own: None,
        };
        e.install(settings.enabled_jails().cloned().map(Arc::new).collect());
        e
    }

    /// Replaces the jails. A jail whose settings are unchanged keeps its
    /// counters. Returns the jails removed (their bans must be lifted by the
    /// caller, through [`Engine::drop_jail_bans`]).
    fn install(&mut self, settings: Vec<Arc<JailSettings>>) -> Vec<Jail> {
        let mut old: HashMap<JailName, Jail> = self
            .jails
            .drain(..)
            .map(|j| (j.name().clone(), j))
            .collect();
        self.metrics_by_jail.clear();
        self.index.clear();
        self.recidive.clear();
        for s in settings {
            let mut j = Jail::new(s.clone());
            if let Some(o) = old.remove(&s.name) {
                if same_matching(&o.settings, &s) {
                    j.adopt_state(o);
                }
            }
            let i = self.jails.len();
            if matches!(s.kind, JailKind::Recidive) {
                self.recidive.push(i);
            }
            self.index.insert(s.name.clone(), i);
            self.metrics_by_jail
                .push(JailMetrics::new(&self.metrics, s.name.as_str()));
            self.jails.push(j);
        }
        self.matches.configure(
            self.jails
                .iter()
                .map(|j| {
                    let acts = &j.settings.actions;
                    acts.iter()
                        .map(|a| crate::notify::lines_wanted(&a.kind, &a.options))
                        .max()
                        .unwrap_or(0)
                })
                .collect(),
        );
        self.apply_keep_lines();
        // Recidive jails read no messages: they are fed by bans. fail2ban
        // filters route by their _daemon regex instead of names.
        self.router = Router::new(self.jails.iter().map(|j| match j.settings.kind {
            JailKind::Recidive => None,
            JailKind::Filter(_) if j.settings.program_pattern().is_some() => None,
            JailKind::Filter(_) => Some(j.settings.programs.as_slice()),
        }));
        for (i, j) in self.jails.iter().enumerate() {
            if let Some(re) = j.settings.program_pattern() {
                self.router.add_pattern(i, re.clone());
            }
        }
        self.gate = LineGate::new(line_literals(self.jails.iter().map(|j| &*j.settings)));
        old.into_values().collect()
    }

    /// Swaps in a new configuration (reload). Unchanged jails keep their
    /// counters and bans; removed jails' bans are lifted (as effects).
    pub fn reload(&mut self, settings: &Settings) {
        let removed = self.install(settings.enabled_jails().cloned().map(Arc::new).collect());
        for j in removed {
            for b in self.bans.unban_all(Some(j.name())) {
                self.effects
                    .push(Effect::Unban(b, UnbanReason::JailRemoved));
            }
        }
        self.lift_ignored();
        self.refresh_gauges();
    }

    /// Lifts the bans of addresses their jail must not ban now: one that
    /// `ignoreip` lists since a reload (or since before a restart, once the
    /// store's bans are restored), or that became one of the host's. The
    /// admin's fix for a wrong ban, adding the address to `ignoreip`, then
    /// frees it with the reload or restart, as in fail2ban. Returns how many
    /// were lifted (reason [`UnbanReason::Ignored`]).
    pub fn lift_ignored(&mut self) -> usize {
        let mut lifted = 0;
        for b in self.bans.active() {
            let Some(&i) = self.index.get(&b.jail) else {
                continue;
            };
            if !self.ignores_now(i, b.ip) {
                continue;
            }
            if let Ok(out) = self.bans.unban(Some(&b.jail), b.ip) {
                for x in out {
                    tracing::info!(jail = %x.jail, ip = %x.ip, "ban lifted: the jail ignores this address now");
                    self.lifted(x, UnbanReason::Ignored);
                    lifted += 1;
                }
            }
        }
        lifted
    }

    /// Reads the host's addresses again before each ban in a jail with
    /// `ignoreself` (at most once a second), rather than trusting the list
    /// read with the configuration (the daemon turns this on).
    pub fn watch_own_addresses(&mut self, on: bool) {
        self.own = on.then(OwnAddresses::default);
    }

    /// Whether jail `i` must not ban `ip` now: its ignore list, or (with
    /// `ignoreself`, when watched) one of the host's current addresses.
    fn ignores_now(&mut self, i: usize, ip: IpAddr) -> bool {
        let ignore = &self.jails[i].settings.ignore;
        let (listed, self_too) = (ignore.contains(ip), ignore.ignores_self());
        listed || (self_too && self.is_own_now(ip))
    }

    /// Whether `ip` is one of the host's addresses now (false unless
    /// watched).
    fn is_own_now(&mut self, ip: IpAddr) -> bool {
        let Some(own) = self.own.as_mut() else {
            return false;
        };
        if own.read.is_none_or(|t| t.elapsed() >= OWN_MAX_AGE) {
            own.addrs = crate::addr::own_addresses();
            own.read = Some(std::time::Instant::now());
        }
        own.addrs.binary_search(&crate::addr::normalize(ip)).is_ok()
    }

    /// Seeds `bantime.rndtime`'s random part anew for this run. The daemon
    /// does; `replay` keeps the fixed seed so its output is repeatable.
    pub fn randomize(&mut self) {
        self.rng = Rng::unpredictable();
    }

    /// Keeps the last matched lines of each failing address, for `status
    /// JAIL` and the notifiers' `lines=` (the daemon turns this on; replay
    /// leaves it off).
    pub fn keep_lines(&mut self, on: bool) {
        self.keep_lines = on;
        self.apply_keep_lines();
    }

    /// Each jail keeps as many lines per address as `status` shows or its
    /// notifiers want, whichever is more.
    fn apply_keep_lines(&mut self) {
        for (i, j) in self.jails.iter_mut().enumerate() {
            let n = match self.keep_lines {
                true => crate::jail::activity::LINES_PER_ADDRESS.max(self.matches.wanted(i)),
                false => 0,
            };
            j.keep_lines(n);
        }
    }

    /// The jails, in index order.
    pub fn jails(&self) -> &[Jail] {
        &self.jails
    }

    /// The jail settings by name.
    pub fn jail(&self, name: &str) -> Option<&Jail> {
        let n = JailName::new(name).ok()?;
        self.index.get(&n).map(|i| &self.jails[*i])
    }

    /// The matched lines of banned addresses, for the notifiers.
    pub fn evidence(&self) -> crate::notify::Evidence {
        self.matches.evidence()
    }

    /// The ban manager (read-only).
    pub fn bans(&self) -> &BanManager {
        &self.bans
    }

    /// A snapshot of the matching half, for matching on other threads. It
    /// stays valid until the next [`Engine::reload`].
    pub fn matcher(&self) -> Matcher {
        Matcher {
            jails: self.jails.iter().map(|j| j.settings.clone()).collect(),
            router: self.router.clone(),
        }
    }

    /// Whether a raw line may matter to some jail ([`LineGate`]): when not,
    /// it need not even be parsed.
    pub fn admits(&self, line: &[u8]) -> bool {
        self.gate.admits(line)
    }

    /// The line gate of the current jails (`replay` hands it to its matchers).
    pub fn gate(&self) -> &LineGate {
        &self.gate
    }

    /// Whether any jail listens to `program` (cheap pre-check).
    pub fn routes(&self, program: &str) -> bool {
        self.router.routes(program)
    }

    /// Stateless matching of one event: the jails it reaches and their
    /// verdicts. Replay runs this on several threads.
    pub fn examine<'t>(&self, ev: &Event<'t>, out: &mut Vec<(usize, Verdict<'t>)>) {
        self.router.for_each(ev.program, |i| {
            let v = self.jails[i].examine(ev);
            if v != Verdict::Miss {
                out.push((i, v));
            }
        });
    }

    /// Applies the verdicts of one event at `now`.
    pub fn apply<'t>(
        &mut self,
        ev: &Event<'t>,
        verdicts: &[(usize, Verdict<'t>)],
        now: SystemTime,
    ) {
        for (i, v) in verdicts {
            let obs = self.jails[*i].observe(ev, *v, now, &self.bans);
            let j = &self.jails[*i];
            self.matches.observe(*i, j.name(), &obs, j.activity());
            self.after_observation(*i, obs, now);
        }
    }

    /// Processes one event at `now` (examine + apply). Returns the number of
    /// jails that saw a failure.
    pub fn on_event(&mut self, ev: &Event<'_>, now: SystemTime) -> usize {
        if !self.router.routes(ev.program) {
            return 0;
        }
        let mut verdicts = Vec::new();
        self.examine(ev, &mut verdicts);
        let n = verdicts.len();
        if n > 0 {
            self.apply(ev, &verdicts, now);
        }
        n
    }

    fn after_observation(&mut self, i: usize, obs: Observation, now: SystemTime) {
        let m = &self.metrics_by_jail[i];
        match obs {
            Observation::Nothing | Observation::AlreadyBanned(_) => {}
            Observation::Unattributed => m.unattributed.inc(),
            Observation::Ignored(_) => m.ignored.inc(),
            Observation::Counted { .. } => {
                m.failures.inc();
                // A new address may have pushed the stalest out.
                m.sync_evictions(self.jails[i].window());
            }
            Observation::Offense { ip, failures } => {
                m.failures.inc();
                m.sync_evictions(self.jails[i].window());
                if let Err(BanError::Ignored(_)) =
                    self.ban_in(i, ip, failures, BanOrigin::Stream, now)
                {
                    // Became one of the host's addresses since the
                    // configuration was read.
                    self.metrics_by_jail[i].ignored.inc();
                    self.jails[i].stats.ignored_total += 1;
                    tracing::debug!(jail = %self.jails[i].name(), %ip, "not banned: one of this host's addresses");
                }
            }
        }
    }

    fn ban_in(
        &mut self,
        i: usize,
        ip: IpAddr,
        failures: u32,
        origin: BanOrigin,
        now: SystemTime,
    ) -> Result<Arc<Ban>, BanError> {
        let random = self.rng.next_f64();
        let ignored = self.ignores_now(i, ip);
        let jail = &self.jails[i];
        let req = BanRequest {
            jail: &jail.settings.name,
            policy: &jail.settings.policy,
            ip,
            failures,
            ignored,
            origin,
            random,
        };
        let ban = self.bans.ban(req, now)?;
        let m = &self.metrics_by_jail[i];
        m.bans.inc();
        m.active.inc();
        self.effects.push(Effect::Ban(ban.clone()));
        // Recidive: every ban in another jail is a "failure" for it.
        if !self.recidive.contains(&i) {
            for r in self.recidive.clone() {
                let obs = self.jails[r].count(ip, 1, now, &self.bans);
                self.after_observation(r, obs, now);
            }
        }
        Ok(ban)
    }

    /// `banstream ban JAIL ADDR`.
    pub fn ban_manual(
        &mut self,
        jail: &str,
        ip: IpAddr,
        now: SystemTime,
    ) -> Result<Arc<Ban>, BanError> {
        let i = self.lookup(jail)?;
        self.ban_in(i, ip, 0, BanOrigin::Manual, now)
    }

    fn lookup(&self, jail: &str) -> Result<usize, BanError> {
        JailName::new(jail)
            .ok()
            .and_then(|n| self.index.get(&n).copied())
            .ok_or_else(|| BanError::NoSuchJail(jail.to_string()))
    }

    /// `banstream unban [JAIL] ADDR`.
    pub fn unban(&mut self, jail: Option<&str>, ip: IpAddr) -> Result<Vec<Arc<Ban>>, BanError> {
        let name = match jail {
            Some(j) => Some(self.jails[self.lookup(j)?].name().clone()),
            None => None,
        };
        let out = self.bans.unban(name.as_ref(), ip)?;
        for b in &out {
            self.lifted(b.clone(), UnbanReason::Manual);
        }
        Ok(out)
    }

    /// `banstream unban --all` (or every ban of one jail).
    pub fn unban_all(&mut self, jail: Option<&str>) -> Result<Vec<Arc<Ban>>, BanError> {
        let name = match jail {
            Some(j) => Some(self.jails[self.lookup(j)?].name().clone()),
            None => None,
        };
        let out = self.bans.unban_all(name.as_ref());
        for b in &out {
            self.lifted(b.clone(), UnbanReason::Manual);
        }
        Ok(out)
    }

    fn lifted(&mut self, b: Arc<Ban>, why: UnbanReason) {
        if let Some(i) = self.index.get(&b.jail) {
            let m = &self.metrics_by_jail[*i];
            m.unbans.inc();
            m.active.dec();
        }
        self.effects.push(Effect::Unban(b, why));
    }

    /// Lifts expired bans and drops stale window entries.
    pub fn tick(&mut self, now: SystemTime) {
        for b in self.bans.expire(now) {
            self.lifted(b, UnbanReason::Expired);
        }
    }

    /// Periodic housekeeping (window expiry); cheap enough for once a minute.
    pub fn housekeeping(&mut self, now: SystemTime) {
        for j in &mut self.jails {
            j.expire(now);
        }
        for (j, m) in self.jails.iter().zip(&self.metrics_by_jail) {
            m.sync_evictions(j.window());
        }
    }

    /// When the next ban expires.
    pub fn next_expiry(&mut self) -> Option<SystemTime> {
        self.bans.next_expiry()
    }

    /// Puts back bans from the store; expired ones are skipped (returned in
    /// the second list). Bans of jails that no longer exist are skipped too.
    pub fn restore(&mut self, bans: Vec<Ban>, now: SystemTime) -> (Vec<Arc<Ban>>, Vec<Ban>) {
        let mut restored = Vec::new();
        let mut skipped = Vec::new();
        for b in bans {
            if !self.index.contains_key(&b.jail) {
                skipped.push(b);
                continue;
            }
            match self.bans.restore(b.clone(), now) {
                Some(r) => {
                    self.effects.push(Effect::Ban(r.clone()));
                    restored.push(r);
                }
                None => skipped.push(b),
            }
        }
        self.refresh_gauges();
        (restored, skipped)
    }

    /// Seeds ban history (from the store).
    pub fn load_history(&mut self, jail: &JailName, ip: IpAddr, h: crate::ban::History) {
        self.bans.load_history(jail, ip, h);
    }

    /// Rebuilds the windows of the recidive jails from the ban log (bans
    /// in every jail, oldest first, as kept by the store), so a restart is
    /// not a free reset. A recidive jail's own last ban of an address ends
    /// what counted before it, as it does in-stream. An address that
    /// reaches the threshold here (its recidive ban was lost with a crash)
    /// is banned at `now`; returns how many were.
    pub fn rebuild_recidive(
        &mut self,
        log: &[(JailName, IpAddr, SystemTime)],
        now: SystemTime,
    ) -> usize {
        let is_recidive =
            |e: &Engine, j: &JailName| e.index.get(j).is_some_and(|i| e.recidive.contains(i));
        let mut offenses = Vec::new();
        for r in self.recidive.clone() {
            let name = self.jails[r].name().clone();
            let since = now
                .checked_sub(self.jails[r].settings.findtime)
                .unwrap_or(UNIX_EPOCH);
            let mut last_own: HashMap<IpAddr, SystemTime> = HashMap::new();
            for (j, ip, t) in log {
                if *j == name {
                    let e = last_own.entry(*ip).or_insert(*t);
                    *e = (*e).max(*t);
                }
            }
            for (j, ip, t) in log {
                if *t < since
                    || is_recidive(self, j)
                    || last_own.get(ip).is_some_and(|own| t <= own)
                {
                    continue;
                }
                if let Observation::Offense { ip, failures } =
                    self.jails[r].count(*ip, 1, *t, &self.bans)
                {
                    offenses.push((r, ip, failures));
                }
            }
        }
        let mut banned = 0;
        for (r, ip, failures) in offenses {
            if self.ban_in(r, ip, failures, BanOrigin::Stream, now).is_ok() {
                banned += 1;
            }
        }
        banned
    }

    /// Forgets ban history older than `cutoff` (dbpurgeage), except for
    /// bans in force.
    pub fn purge_history(&mut self, cutoff: SystemTime) {
        self.bans.purge_history(cutoff);
    }

    fn refresh_gauges(&mut self) {
        for (i, j) in self.jails.iter().enumerate() {
            self.metrics_by_jail[i]
                .active
                .set(self.bans.count_in(j.name()) as i64);
        }
    }

    /// Takes the effects decided since the last call.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// Whether effects are waiting.
    pub fn has_effects(&self) -> bool {
        !self.effects.is_empty()
    }

    /// Every ban in force.
    pub fn banned(&self) -> Vec<Arc<Ban>> {
        self.bans.active()
    }

    fn summary(&self, j: &Jail) -> JailSummary {
        let (total_banned, _) = self.bans.totals(j.name());
        JailSummary {
            name: j.name().to_string(),
            enabled: j.settings.enabled,
            filter: j.settings.filter_ref.clone(),
            // An empty list reads every program: shown as "*".
            programs: match (&j.settings.kind, j.settings.programs.is_empty()) {
                (JailKind::Filter(_), true) => vec!["*".to_string()],
                _ => j.settings.programs.clone(),
            },
            actions: j.settings.actions.iter().map(|a| a.kind.clone()).collect(),
            currently_failed: j.window().tracked(),
            total_failed: j.stats.failures_total,
            currently_banned: self.bans.count_in(j.name()),
            total_banned,
        }
    }

    /// `status` without a jail: the running jails.
    pub fn status_all(&self) -> Vec<JailSummary> {
        self.jails.iter().map(|j| self.summary(j)).collect()
    }

    /// `status JAIL`.
    pub fn status_jail(&self, name: &str, now: SystemTime) -> Result<JailStatus, BanError> {
        let j = &self.jails[self.lookup(name)?];
        let s = &j.settings;
        Ok(JailStatus {
            summary: self.summary(j),
            maxretry: s.maxretry,
            findtime: s.findtime.as_secs(),
            bantime: s.policy.bantime.as_secs_i64(),
            unattributed: j.stats.unattributed_total,
            ignored: j.stats.ignored_total,
            failures_per_minute: j.activity().rate(now),
            top: j
                .window()
                .top(now, s.findtime, 10)
                .into_iter()
                .map(|(ip, count)| Offender {
                    ip: ip.to_string(),
                    count,
                })
                .collect(),
            banned: self
                .bans
                .active_in(j.name())
                .iter()
                .map(|b| BannedEntry {
                    ip: b.ip.to_string(),
                    expires: b.expires.map(unix),
                    remaining: b.remaining(now).map(|d: Duration| d.as_secs()),
                    failures: b.failures,
                    ban_count: b.ban_count,
                    lines: j
                        .activity()
                        .last_lines(b.ip, crate::jail::activity::LINES_PER_ADDRESS),
                })
                .collect(),
        })
    }

    /// Whether an address is banned in a jail (tests, status).
    pub fn is_banned(&self, jail: &str, ip: IpAddr) -> bool {
        JailName::new(jail).is_ok_and(|n| self.bans.is_banned(&n, ip))
    }
}

/// Whether two settings of the same jail count the same way, so counters
/// can carry over a reload.
fn same_matching(a: &JailSettings, b: &JailSettings) -> bool {
    a.filter_ref == b.filter_ref
        && a.programs == b.programs
        && a.maxretry == b.maxretry
        && a.findtime == b.findtime
        && a.ipv6_prefix == b.ipv6_prefix
        && a.max_tracked == b.max_tracked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_run_draws_another_rndtime_sequence() {
        // Two seeds in one process differ too: RandomState keys each anew.
        let (mut a, mut b) = (Rng::unpredictable(), Rng::unpredictable());
        let xs: Vec<f64> = (0..4).map(|_| a.next_f64()).collect();
        let ys: Vec<f64> = (0..4).map(|_| b.next_f64()).collect();
        assert_ne!(xs, ys);
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
    }

    #[test]
    fn the_gate_keeps_the_shortest_literals_and_admits_the_same_lines() {
        let lits = |v: &[&str]| v.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();
        let all = lits(&[
            "Failed publickey for ",
            "Failed ",
            "' denied",
            "Failed ",
            " denied",
        ]);
        assert_eq!(minimal(all.clone()), lits(&["Failed ", " denied"]));
        let gate = LineGate::new(Some(all));
        assert!(gate.admits(b"sshd[1]: Failed password for root"));
        assert!(gate.admits(b"named[2]: query 'x/A/IN' denied"));
        assert!(!gate.admits(b"crond[3]: (root) CMD (run-parts)"));
        assert!(LineGate::new(None).admits(b"anything"));
    }
}
