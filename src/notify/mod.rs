//! Notifications: telling the admin about bans by mail or webhook, safely
//! under attack. Sits beside the firewall backends at the end of the flow:
//! the `mail` and `webhook` actions ([`crate::action::mail`],
//! [`crate::action::webhook`]) are [`Channel`]s driven by a [`Notifier`].
//!
//! Receives bans (from the action dispatcher's worker for the kind) and jail
//! start/stop events; sends messages through the channel on a thread of its
//! own, and nothing back except metrics and logs. What it guarantees:
//!
//! - **Never delays a ban.** Taking a ban is a push into a bounded digest
//!   under a mutex; delivery (sendmail, whois, HTTP, retries, timeouts)
//!   happens on the notifier's own sender thread. The dispatcher worker of
//!   the kind never sees an error, so it never retries or backs off, and the
//!   firewall backends run on their own workers anyway.
//! - **Digests.** At most one message per `interval` per jail and
//!   destination ([`digest`]): a flood of 10,000 bans is one message.
//! - **Failures are counted and logged once per burst.** Each message is
//!   tried `retries` more times with backoff when the failure may pass
//!   (timeouts, 5xx, a temporary MTA failure), then dropped and counted; the
//!   first failure of a run of failures is logged as an error, the rest at
//!   debug, and a line says when delivery works again.
//! - **Foreign text is inert** ([`text`]): log lines and whois output have
//!   control characters made visible, are cut, and never start a line.
//! - **Bounded.** Digests list at most [`MAX_LISTED`] bans (the rest are
//!   counted), matched lines and whois output are cut, helper programs run
//!   with deadlines and output budgets ([`process`]).
//!
//! Bans restored from the store at start are not notified (they were when
//! they happened); manual bans are. `run --dry-run` replaces every action
//! with `log`, so it sends nothing.

pub mod digest;
pub mod evidence;
pub mod process;
pub mod text;
pub mod whois;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::ban::{Ban, BanOrigin};
use crate::config::TimeSpec;
use crate::jail::JailName;
use crate::telemetry::{Metrics, RateLimiter};

pub use digest::{Added, Digests};
pub use evidence::{Evidence, MatchRecorder, MatchedLine};

/// Bans listed in one digest at most; beyond, they are counted.
pub const MAX_LISTED: usize = 10_000;
/// Bans of one digest that carry their matched lines (memory bound).
pub const MAX_WITH_LINES: usize = 100;
/// Default digest interval (`notify_interval`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Default extra attempts after a failure that may pass.
pub const DEFAULT_RETRIES: u32 = 3;
/// Longest `interval` accepted.
const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// First retry delay; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long shutdown waits for the last messages.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The backend kinds that are notifiers.
pub const KINDS: &[&str] = &["mail", "webhook"];

/// Options every notifier takes (besides its own).
pub const COMMON_KEYS: &[&str] = &["interval", "startstop", "retries", "timeout", "lines"];

/// Settings every notifier has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Common {
    /// Digest interval: at most one message per interval per jail (0: one per ban).
    pub interval: Duration,
    /// Send jail start/stop notices.
    pub startstop: bool,
    /// Extra attempts after a failure that may pass.
    pub retries: u32,
    /// Deadline of one attempt.
    pub timeout: Duration,
    /// Matched lines shown per ban (0: none).
    pub lines: usize,
}

/// Reads a boolean option.
pub fn parse_bool(key: &str, v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(format!("{key}={v:?} must be true or false")),
    }
}

/// Reads a finite time span option (`30s`, `1m`).
pub fn parse_span(key: &str, v: &str, max: Duration) -> Result<Duration, String> {
    match TimeSpec::parse(v.trim()) {
        Ok(TimeSpec::Finite(d)) if d <= max => Ok(d),
        Ok(_) => Err(format!(
            "{key}={v:?} must be at most {}",
            TimeSpec::Finite(max)
        )),
        Err(e) => Err(format!("{key}={v:?}: {e}")),
    }
}

/// Reads a small number option.
pub fn parse_count(key: &str, v: &str, max: u32) -> Result<u32, String> {
    match v.trim().parse::<u32>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(format!("{key}={v:?} must be a number from 0 to {max}")),
    }
}

impl Common {
    /// Reads the common options; `timeout` defaults to `default_timeout`.
    pub fn parse(
        o: &BTreeMap<String, String>,
        default_timeout: Duration,
    ) -> Result<Common, String> {
        let mut c = Common {
            interval: DEFAULT_INTERVAL,
            startstop: false,
            retries: DEFAULT_RETRIES,
            timeout: default_timeout,
            lines: 0,
        };
        if let Some(v) = o.get("interval") {
            c.interval = parse_span("interval", v, MAX_INTERVAL)?;
        }
        if let Some(v) = o.get("startstop") {
            c.startstop = parse_bool("startstop", v)?;
        }
        if let Some(v) = o.get("retries") {
            c.retries = parse_count("retries", v, 10)?;
        }
        if let Some(v) = o.get("timeout") {
            c.timeout = parse_span("timeout", v, Duration::from_secs(300))?;
            if c.timeout.is_zero() {
                return Err("timeout must be more than 0".into());
            }
        }
        if let Some(v) = o.get("lines") {
            c.lines = parse_count("lines", v, evidence::MAX_LINES as u32)? as usize;
        }
        Ok(c)
    }
}

/// Rejects options a notifier does not know (a typo must not silently turn
/// a feature off).
pub fn check_keys(kind: &str, o: &BTreeMap<String, String>, own: &[&str]) -> Result<(), String> {
    for k in o.keys() {
        if !own.contains(&k.as_str()) && !COMMON_KEYS.contains(&k.as_str()) {
            let mut known: Vec<&str> = own.iter().chain(COMMON_KEYS).copied().collect();
            known.sort_unstable();
            return Err(format!(
                "{kind} has no option {k:?} (known: {})",
                known.join(", ")
            ));
        }
    }
    Ok(())
}

/// Matched lines a notifier action wants per ban (for the engine's recorder).
pub fn lines_wanted(kind: &str, options: &BTreeMap<String, String>) -> usize {
    if !KINDS.contains(&kind) {
        return 0;
    }
    options
        .get("lines")
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0)
        .min(evidence::MAX_LINES)
}

/// The notification keys a jail (or `[defaults]`) sets. An option in the
/// action's brackets wins over them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JailKeys {
    /// `destemail`: mail recipients.
    pub destemail: Option<String>,
    /// `sender`: the From address.
    pub sender: Option<String>,
    /// `sendername`: the From display name.
    pub sendername: Option<String>,
    /// `mta`: the sendmail-compatible program.
    pub mta: Option<String>,
    /// `notify_interval`: the digest interval.
    pub notify_interval: Option<TimeSpec>,
    /// `notify_startstop`: start/stop notices.
    pub notify_startstop: Option<bool>,
}

impl JailKeys {
    /// Fills the options of a `kind` action from the jail's keys where the
    /// brackets did not set them.
    pub fn fill(&self, kind: &str, options: &mut BTreeMap<String, String>) {
        let mut set = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                options.entry(k.to_string()).or_insert(v);
            }
        };
        // Whole seconds: TimeSpec's display of a zero span ("0ms") is not
        // something its parser reads back.
        set(
            "interval",
            self.notify_interval.map(|t| match t {
                TimeSpec::Finite(d) => format!("{}s", d.as_secs()),
                TimeSpec::Forever => "-1".into(),
            }),
        );
        set("startstop", self.notify_startstop.map(|b| b.to_string()));
        if kind == "mail" {
            set("dest", self.destemail.clone());
            set("sender", self.sender.clone());
            set("sendername", self.sendername.clone());
            set("mta", self.mta.clone());
        }
    }
}

/// One ban in a notification.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The address.
    pub ip: IpAddr,
    /// Failures behind it.
    pub failures: u32,
    /// Its length.
    pub bantime: TimeSpec,
    /// When it started.
    pub start: SystemTime,
    /// When it ends (`None`: permanent).
    pub expires: Option<SystemTime>,
    /// Which ban of this address in the jail it is.
    pub ban_count: u32,
    /// How it came about.
    pub origin: BanOrigin,
    /// The failure lines that led to it (foreign text), oldest first.
    pub matches: Arc<[MatchedLine]>,
}

/// What a notification is about.
#[derive(Clone, Debug)]
pub enum What {
    /// One ban or a digest of bans.
    Bans {
        /// The bans listed, oldest first.
        entries: Vec<Entry>,
        /// Bans folded in beyond [`MAX_LISTED`]: counted, not listed.
        unlisted: u64,
    },
    /// The jail started.
    Started,
    /// The jail stopped.
    Stopped,
}

/// One message to deliver.
#[derive(Clone, Debug)]
pub struct Notice {
    /// The jail.
    pub jail: JailName,
    /// This host's name.
    pub host: String,
    /// What happened.
    pub what: What,
}

impl Notice {
    /// Bans this notice reports (listed and unlisted).
    pub fn ban_count(&self) -> u64 {
        match &self.what {
            What::Bans { entries, unlisted } => entries.len() as u64 + unlisted,
            _ => 0,
        }
    }
}

/// Why one delivery attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// It may work if tried again (timeout, 5xx, temporary MTA failure).
    #[error("{0}")]
    Transient(String),
    /// Trying again will not help (program missing, 4xx, bad address).
    #[error("{0}")]
    Permanent(String),
}

/// A way to deliver notices: mail or webhook.
pub trait Channel: Send + 'static {
    /// The settings of one action, read from its options.
    type Config: Send + Sync + 'static;
    /// The backend name.
    const KIND: &'static str;
    /// Reads (and checks) an action's options; also reads files they name
    /// (a token file). Called at config load to validate, and by the
    /// notifier when an action is first seen.
    fn config(options: &BTreeMap<String, String>) -> Result<Self::Config, String>;
    /// The common part of the settings.
    fn common(cfg: &Self::Config) -> &Common;
    /// The destination, so two actions of one kind in a jail keep separate digests.
    fn target(cfg: &Self::Config) -> String;
    /// One delivery attempt, within the configured timeout.
    fn deliver(&mut self, cfg: &Self::Config, notice: &Notice) -> Result<(), DeliveryError>;
}

type Key = (JailName, String);

struct State<Cfg> {
    digests: Digests<Key, Entry>,
    configs: HashMap<Key, Arc<Cfg>>,
    /// Start/stop notices and flushed digests, sent in order before due digests.
    queue: VecDeque<(Key, Arc<Cfg>, Notice)>,
    closing: bool,
}

struct Shared<Cfg> {
    state: Mutex<State<Cfg>>,
    wake: Condvar,
    closing: AtomicBool,
}

impl<Cfg> Shared<Cfg> {
    fn lock(&self) -> MutexGuard<'_, State<Cfg>> {
        // A std Mutex: held for map operations only, never across delivery.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Drives a [`Channel`]: takes bans and start/stop events on the caller's
/// thread (never blocking), digests them, and delivers on its own thread.
pub struct Notifier<C: Channel> {
    channel: Option<C>,
    shared: Arc<Shared<C::Config>>,
    metrics: Metrics,
    evidence: Evidence,
    host: String,
    configs: HashMap<BTreeMap<String, String>, Arc<C::Config>>,
    announced: HashSet<Key>,
    limiter: RateLimiter,
    sender: Option<(JoinHandle<()>, mpsc::Receiver<()>)>,
}

impl<C: Channel> Notifier<C> {
    /// A notifier for `channel`; its thread starts with [`Notifier::spawn`].
    pub fn new(channel: C) -> Self {
        Notifier {
            channel: Some(channel),
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    digests: Digests::new(MAX_LISTED),
                    configs: HashMap::new(),
                    queue: VecDeque::new(),
                    closing: false,
                }),
                wake: Condvar::new(),
                closing: AtomicBool::new(false),
            }),
            metrics: Metrics::default(),
            evidence: Evidence::default(),
            host: text::hostname(),
            configs: HashMap::new(),
            announced: HashSet::new(),
            limiter: RateLimiter::default(),
            sender: None,
        }
    }

    /// Uses the daemon's metrics and matched lines (before [`Notifier::spawn`]).
    pub fn use_handles(&mut self, metrics: Metrics, evidence: Evidence) {
        self.metrics = metrics;
        self.evidence = evidence;
    }

    /// Starts the sender thread (once).
    pub fn spawn(&mut self) -> Result<(), String> {
        let Some(channel) = self.channel.take() else {
            return Ok(());
        };
        let shared = self.shared.clone();
        let ctx = Sender {
            kind: C::KIND,
            metrics: self.metrics.clone(),
            host: self.host.clone(),
            failing: 0,
        };
        let (done_tx, done_rx) = mpsc::channel();
        let h = std::thread::Builder::new()
            .name(format!("notify-{}", C::KIND))
            .spawn(move || {
                ctx.run(channel, &shared);
                let _ = done_tx.send(());
            })
            .map_err(|e| format!("cannot start the {} sender thread: {e}", C::KIND))?;
        self.sender = Some((h, done_rx));
        Ok(())
    }

    /// Forgets the parsed options, so the next notice reads the files they
    /// name (`token_file`, `ca_file`) again: the daemon calls this on
    /// reload, which is how a rotated token is picked up.
    pub fn forget_configs(&mut self) {
        self.configs.clear();
    }

    fn config(
        &mut self,
        jail: &JailName,
        options: &BTreeMap<String, String>,
    ) -> Option<Arc<C::Config>> {
        if let Some(c) = self.configs.get(options) {
            return Some(c.clone());
        }
        match C::config(options) {
            Ok(c) => {
                if self.configs.len() > 256 {
                    self.configs.clear();
                }
                let c = Arc::new(c);
                self.configs.insert(options.clone(), c.clone());
                Some(c)
            }
            Err(e) => {
                self.metrics
                    .notifications
                    .with_label_values(&[C::KIND, "failed"])
                    .inc();
                if let Some(suppressed) = self.limiter.check("notify_config") {
                    tracing::error!(kind = C::KIND, %jail, suppressed, "notification skipped: {e}");
                }
                None
            }
        }
    }

    /// Takes a ban. Never blocks on delivery.
    pub fn take_ban(&mut self, jail: &JailName, options: &BTreeMap<String, String>, ban: &Ban) {
        if ban.origin == BanOrigin::Restored {
            return;
        }
        let Some(cfg) = self.config(jail, options) else {
            return;
        };
        let common = C::common(&cfg);
        let key = (jail.clone(), C::target(&cfg));
        let listed = self.shared.lock().digests.listed(&key);
        let matches: Arc<[MatchedLine]> = if common.lines == 0 || listed >= MAX_WITH_LINES {
            Arc::from(Vec::new())
        } else {
            let all = self.evidence.get(jail, ban.ip);
            let skip = all.len().saturating_sub(common.lines);
            Arc::from(&all[skip..])
        };
        let entry = Entry {
            ip: ban.ip,
            failures: ban.failures,
            bantime: ban.bantime,
            start: ban.start,
            expires: ban.expires,
            ban_count: ban.ban_count,
            origin: ban.origin,
            matches,
        };
        let interval = common.interval;
        let added = {
            let mut st = self.shared.lock();
            st.configs.insert(key.clone(), cfg);
            st.digests.add(key, entry, interval, Instant::now())
        };
        match added {
            Added::Opened => self.shared.wake.notify_one(),
            Added::Folded | Added::Unlisted => self
                .metrics
                .notifications
                .with_label_values(&[C::KIND, "suppressed"])
                .inc(),
        }
    }

    /// A jail using this action started: a start notice if asked for.
    pub fn jail_started(&mut self, jail: &JailName, options: &BTreeMap<String, String>) {
        let Some(cfg) = self.config(jail, options) else {
            return;
        };
        let key = (jail.clone(), C::target(&cfg));
        if !C::common(&cfg).startstop || !self.announced.insert(key.clone()) {
            return;
        }
        let notice = self.notice(jail, What::Started);
        self.shared.lock().queue.push_back((key, cfg, notice));
        self.shared.wake.notify_one();
    }

    /// A jail using this action stopped: its open digest goes out now, then
    /// a stop notice if asked for.
    pub fn jail_stopped(&mut self, jail: &JailName, options: &BTreeMap<String, String>) {
        let Some(cfg) = self.config(jail, options) else {
            return;
        };
        let key = (jail.clone(), C::target(&cfg));
        let announced = self.announced.remove(&key);
        let host = self.host.clone();
        let mut st = self.shared.lock();
        if let Some(open) = st.digests.take(&key) {
            let c = st.configs.get(&key).cloned().unwrap_or_else(|| cfg.clone());
            let notice = Notice {
                jail: jail.clone(),
                host,
                what: What::Bans {
                    entries: open.entries,
                    unlisted: open.unlisted,
                },
            };
            st.queue.push_back((key.clone(), c, notice));
        }
        if announced && C::common(&cfg).startstop {
            let notice = self.notice(jail, What::Stopped);
            st.queue.push_back((key, cfg, notice));
        }
        drop(st);
        self.shared.wake.notify_one();
    }

    fn notice(&self, jail: &JailName, what: What) -> Notice {
        Notice {
            jail: jail.clone(),
            host: self.host.clone(),
            what,
        }
    }
}

impl<C: Channel> Drop for Notifier<C> {
    /// Shutdown: what is pending goes out now (one attempt each), within
    /// [`SHUTDOWN_GRACE`]; whatever is left after that is abandoned.
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.closing.store(true, Ordering::SeqCst);
        self.shared.wake.notify_all();
        if let Some((h, done)) = self.sender.take() {
            match done.recv_timeout(SHUTDOWN_GRACE) {
                Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = h.join();
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    tracing::warn!(
                        kind = C::KIND,
                        "notifications still pending at shutdown were abandoned"
                    );
                }
            }
        }
    }
}

/// The sender thread's side.
struct Sender {
    kind: &'static str,
    metrics: Metrics,
    host: String,
    /// Failures in the current run of failures (0: delivery works).
    failing: u64,
}

impl Sender {
    fn run<C: Channel>(mut self, mut channel: C, shared: &Shared<C::Config>) {
        let mut deadline: Option<Instant> = None;
        loop {
            let (work, closing) = {
                let mut st = shared.lock();
                loop {
                    let now = Instant::now();
                    let closing = st.closing;
                    let mut work: Vec<(Key, Arc<C::Config>, Notice)> = st.queue.drain(..).collect();
                    let due = if closing {
                        st.digests.take_all()
                    } else {
                        st.digests.take_due(now)
                    };
                    for (key, open) in due {
                        let Some(cfg) = st.configs.get(&key).cloned() else {
                            continue;
                        };
                        let notice = Notice {
                            jail: key.0.clone(),
                            host: String::new(),
                            what: What::Bans {
                                entries: open.entries,
                                unlisted: open.unlisted,
                            },
                        };
                        work.push((key, cfg, notice));
                    }
                    if !work.is_empty() || closing {
                        break (work, closing);
                    }
                    st = match st.digests.next_due() {
                        Some(t) => {
                            shared
                                .wake
                                .wait_timeout(st, t.saturating_duration_since(now))
                                .unwrap_or_else(|p| p.into_inner())
                                .0
                        }
                        None => shared.wake.wait(st).unwrap_or_else(|p| p.into_inner()),
                    };
                }
            };
            if closing && deadline.is_none() {
                deadline = Some(Instant::now() + SHUTDOWN_GRACE);
            }
            for (key, cfg, mut notice) in work {
                if notice.host.is_empty() {
                    notice.host = self.host.clone();
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    self.failed(&key.0, "shutdown grace period over", notice.ban_count());
                    continue;
                }
                self.deliver(&mut channel, &cfg, &notice, shared);
            }
            if closing {
                // Anything queued while we were delivering goes out too.
                let st = shared.lock();
                if st.queue.is_empty() && st.digests.next_due().is_none() {
                    return;
                }
            }
        }
    }

    /// Delivers one notice with the retry policy; counts and logs the result.
    fn deliver<C: Channel>(
        &mut self,
        channel: &mut C,
        cfg: &C::Config,
        notice: &Notice,
        shared: &Shared<C::Config>,
    ) {
        let retries = if shared.closing.load(Ordering::SeqCst) {
            0
        } else {
            C::common(cfg).retries
        };
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 0;
        loop {
            match channel.deliver(cfg, notice) {
                Ok(()) => {
                    self.metrics
                        .notifications
                        .with_label_values(&[self.kind, "sent"])
                        .inc();
                    if self.failing > 0 {
                        tracing::info!(
                            kind = self.kind,
                            failed = self.failing,
                            "notifications are delivered again"
                        );
                        self.failing = 0;
                    }
                    tracing::debug!(kind = self.kind, jail = %notice.jail, bans = notice.ban_count(), "notification sent");
                    return;
                }
                Err(DeliveryError::Transient(e))
                    if attempt < retries && !shared.closing.load(Ordering::SeqCst) =>
                {
                    tracing::debug!(kind = self.kind, jail = %notice.jail, attempt, "notification attempt failed, will retry: {e}");
                    attempt += 1;
                    sleep_unless_closing(backoff, &shared.closing);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(e) => {
                    self.failed(&notice.jail, &e.to_string(), notice.ban_count());
                    return;
                }
            }
        }
    }

    /// Counts a message given up on; logs the first of a run of failures.
    fn failed(&mut self, jail: &JailName, why: &str, bans: u64) {
        self.metrics
            .notifications
            .with_label_values(&[self.kind, "failed"])
            .inc();
        self.metrics
            .action_errors
            .with_label_values(&[jail.as_str(), self.kind])
            .inc();
        if self.failing == 0 {
            tracing::error!(kind = self.kind, %jail, bans, "notification failed (further failures are counted in banstream_notifications_total and logged at debug until one succeeds): {why}");
        } else {
            tracing::debug!(kind = self.kind, %jail, bans, "notification failed: {why}");
        }
        self.failing += 1;
    }
}

/// Sleeps `d`, waking early when shutdown starts.
fn sleep_unless_closing(d: Duration, closing: &AtomicBool) {
    let end = Instant::now() + d;
    while !closing.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= end {
            return;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    /// A channel that records what it delivers, fails the first `fail`
    /// attempts, and can hang.
    struct Probe {
        got: Arc<Mutex<Vec<Notice>>>,
        fail: Arc<AtomicU32>,
        hang: Duration,
        transient: bool,
    }

    impl Channel for Probe {
        type Config = Common;
        const KIND: &'static str = "probe";
        fn config(o: &BTreeMap<String, String>) -> Result<Common, String> {
            Common::parse(o, Duration::from_secs(1))
        }
        fn common(c: &Common) -> &Common {
            c
        }
        fn target(_: &Common) -> String {
            "t".into()
        }
        fn deliver(&mut self, _: &Common, n: &Notice) -> Result<(), DeliveryError> {
            std::thread::sleep(self.hang);
            if self.fail.load(Ordering::SeqCst) > 0 {
                self.fail.fetch_sub(1, Ordering::SeqCst);
                return Err(if self.transient {
                    DeliveryError::Transient("503".into())
                } else {
                    DeliveryError::Permanent("missing".into())
                });
            }
            self.got.lock().unwrap().push(n.clone());
            Ok(())
        }
    }

    fn ban(ip: &str) -> Ban {
        Ban {
            jail: JailName::new("sshd").unwrap(),
            ip: ip.parse().unwrap(),
            start: SystemTime::now(),
            bantime: TimeSpec::Finite(Duration::from_secs(600)),
            expires: None,
            failures: 3,
            ban_count: 1,
            origin: BanOrigin::Stream,
        }
    }

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn probe(
        fail: u32,
        hang: Duration,
        transient: bool,
    ) -> (Notifier<Probe>, Arc<Mutex<Vec<Notice>>>, Metrics) {
        let got = Arc::new(Mutex::new(Vec::new()));
        let mut n = Notifier::new(Probe {
            got: got.clone(),
            fail: Arc::new(AtomicU32::new(fail)),
            hang,
            transient,
        });
        let m = Metrics::new();
        n.use_handles(m.clone(), Evidence::default());
        n.spawn().unwrap();
        (n, got, m)
    }

    fn count(m: &Metrics, result: &str) -> u64 {
        m.notifications.with_label_values(&["probe", result]).get()
    }

    #[test]
    fn bans_within_an_interval_make_one_digest_and_restored_bans_none() {
        let (mut n, got, m) = probe(0, Duration::ZERO, true);
        let jail = JailName::new("sshd").unwrap();
        let o = opts(&[("interval", "1s")]);
        for i in 0..50 {
            n.take_ban(&jail, &o, &ban(&format!("192.0.2.{i}")));
        }
        let mut restored = ban("198.51.100.1");
        restored.origin = BanOrigin::Restored;
        n.take_ban(&jail, &o, &restored);
        let t = Instant::now();
        while got.lock().unwrap().is_empty() && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(n);
        let got = got.lock().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].ban_count(), 50);
        assert_eq!(count(&m, "sent"), 1);
        assert_eq!(count(&m, "suppressed"), 49);
    }

    #[test]
    fn a_hanging_channel_never_blocks_taking_bans() {
        let (mut n, _got, _m) = probe(0, Duration::from_secs(3), true);
        let jail = JailName::new("sshd").unwrap();
        let o = opts(&[("interval", "0")]);
        let t = Instant::now();
        for i in 0..200 {
            n.take_ban(&jail, &o, &ban(&format!("192.0.2.{}", i % 250)));
        }
        // Taking 200 bans while the channel hangs 3 s per message: instant.
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        std::mem::forget(n); // do not wait for the hanging deliveries
    }

    #[test]
    fn transient_failures_are_retried_permanent_ones_counted_once() {
        let (mut n, got, m) = probe(1, Duration::ZERO, true);
        let jail = JailName::new("sshd").unwrap();
        n.take_ban(&jail, &opts(&[("interval", "0")]), &ban("192.0.2.1"));
        let t = Instant::now();
        while got.lock().unwrap().is_empty() && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(got.lock().unwrap().len(), 1, "delivered after one retry");
        assert_eq!(count(&m, "failed"), 0);
        drop(n);

        let (mut n, got, m) = probe(5, Duration::ZERO, false);
        for i in 0..3 {
            n.take_ban(
                &jail,
                &opts(&[("interval", "0")]),
                &ban(&format!("192.0.2.{i}")),
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        drop(n);
        assert!(got.lock().unwrap().is_empty());
        assert!(count(&m, "failed") >= 1);
        assert_eq!(
            m.action_errors.with_label_values(&["sshd", "probe"]).get(),
            count(&m, "failed")
        );
    }

    #[test]
    fn start_and_stop_notices_only_when_asked_and_pending_digest_first() {
        let (mut n, got, _m) = probe(0, Duration::ZERO, true);
        let jail = JailName::new("sshd").unwrap();
        let quiet = opts(&[]);
        n.jail_started(&jail, &quiet);
        n.jail_stopped(&jail, &quiet);
        let loud = opts(&[("startstop", "true"), ("interval", "1h")]);
        n.jail_started(&jail, &loud);
        n.jail_started(&jail, &loud); // a reload announcing again: no second notice
        n.take_ban(&jail, &loud, &ban("192.0.2.1"));
        n.jail_stopped(&jail, &loud);
        drop(n);
        let got = got.lock().unwrap();
        let kinds: Vec<&str> = got
            .iter()
            .map(|n| match n.what {
                What::Started => "start",
                What::Stopped => "stop",
                What::Bans { .. } => "bans",
            })
            .collect();
        assert_eq!(kinds, vec!["start", "bans", "stop"]);
    }

    #[test]
    fn common_options_are_checked() {
        assert!(Common::parse(&opts(&[("interval", "1m")]), Duration::from_secs(1)).is_ok());
        assert!(Common::parse(&opts(&[("interval", "-1")]), Duration::from_secs(1)).is_err());
        assert!(Common::parse(&opts(&[("lines", "500")]), Duration::from_secs(1)).is_err());
        assert!(Common::parse(&opts(&[("startstop", "maybe")]), Duration::from_secs(1)).is_err());
        assert!(check_keys("mail", &opts(&[("whios", "true")]), &["whois"]).is_err());
        assert_eq!(lines_wanted("mail", &opts(&[("lines", "5")])), 5);
        assert_eq!(lines_wanted("nftables", &opts(&[("lines", "5")])), 0);
        let keys = JailKeys {
            notify_interval: Some(TimeSpec::Finite(Duration::ZERO)),
            destemail: Some("a@example.org".into()),
            ..Default::default()
        };
        let mut o = opts(&[("dest", "b@example.org")]);
        keys.fill("mail", &mut o);
        assert_eq!(o["dest"], "b@example.org", "the brackets win");
        let c = Common::parse(&o, Duration::from_secs(1)).unwrap();
        assert_eq!(c.interval, Duration::ZERO);
        let mut w = opts(&[]);
        keys.fill("webhook", &mut w);
        assert!(!w.contains_key("dest"));
    }
}
