//! `banstream run`: wires the stages together and owns their lifetimes.
//!
//! ```text
//! listeners ──frames──► engine task ──requests──► action workers (one thread per backend)
//! control / http ──calls──┘   (parse, route,  └──changes──► store writer (one thread, SQLite)
//!                              match, count, ban, expire)
//! ```
//!
//! Start: the store opens (a broken database fails the start) and its bans
//! are restored and handed to the firewall before any listener, the control
//! socket or HTTP opens.
//!
//! Shutdown is two signals (a `CancellationToken` and a `TaskTracker`):
//! SIGTERM/SIGINT cancel the sources (listeners, control, http). When the
//! last listener drops its sender the frame queue closes, the engine task
//! drains what is queued and ends, the store commits what it holds and
//! closes, and the action workers apply what they hold, run every backend's
//! stop and exit. Nothing sleeps to let tasks finish.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::action::{self, Dispatcher, JailAction, Op};
use crate::ban::{Ban, BanOrigin, Effect, UnbanReason};
use crate::config::resolve::JailKind;
use crate::config::{self, LoadOptions, Settings};
use crate::control::server::Call;
use crate::control::{BannedItem, Request, Response};
use crate::engine::{unix, Engine};
use crate::ingest::{self, Frame, Transport};
use crate::jail::JailName;
use crate::service::instance::FirewallLock;
use crate::store::{Snapshot, Store};
use crate::syslog::{self, ParseContext};
use crate::telemetry::Metrics;

/// How to run the daemon.
#[derive(Clone, Debug, Default)]
pub struct DaemonOptions {
    /// Where the configuration comes from.
    pub load: LoadOptions,
    /// Replace every action with `log`.
    pub dry_run: bool,
}

/// Loads and resolves the configuration (used at start and on reload).
pub fn load_settings(opts: &DaemonOptions) -> Result<Settings, config::ConfigError> {
    let loaded = config::load(&opts.load)?;
    let mut s = config::resolve::resolve(&loaded)?;
    if opts.dry_run {
        s.force_dry_run();
    }
    Ok(s)
}

/// Frames taken from the queue per wake-up.
const BATCH: usize = 512;
/// Window housekeeping interval.
const HOUSEKEEPING: Duration = Duration::from_secs(60);

/// How far back recidive jails look (their longest findtime): the ban log
/// kept and read at start covers at least this.
fn recidive_horizon(settings: &Settings) -> Duration {
    settings
        .enabled_jails()
        .filter(|j| matches!(j.kind, JailKind::Recidive))
        .map(|j| j.findtime)
        .max()
        .unwrap_or(Duration::ZERO)
}

/// How often history is purged: half of dbpurgeage, between 1 s and 1 h.
fn purge_interval(dbpurgeage: Duration) -> Duration {
    (dbpurgeage / 2).clamp(Duration::from_secs(1), Duration::from_secs(3600))
}

/// Opens the store at `settings.database` (on a blocking thread: it reads
/// the whole state).
async fn open_store(settings: &Settings, metrics: Metrics) -> anyhow::Result<(Store, Snapshot)> {
    let path = settings.database.clone();
    let now = SystemTime::now();
    let since = now
        .checked_sub(recidive_horizon(settings))
        .unwrap_or(UNIX_EPOCH);
    let opened = tokio::task::spawn_blocking(move || Store::open(&path, now, since, metrics))
        .await
        .context("store open task")?;
    Ok(opened?)
}

/// Messages the engine task sends itself.
enum Internal {
    /// A reload's configuration, loaded off the engine task: its number
    /// from [`ReloadOrder::issue`], the result, the caller.
    Reloaded(
        u64,
        Box<Result<Settings, String>>,
        Option<oneshot::Sender<Response>>,
    ),
}

/// Keeps concurrent reloads in the order they were asked for. Each loads
/// the files on its own thread, so two (`banstream reload` beside a
/// SIGHUP, or two clients) can finish loading in either order; the one
/// that read the files first must not be applied after the one that read
/// them later, or an older configuration (without a new `ignoreip` entry
/// or jail) would silently come back. A reload that fails (to load or to
/// swap in) applies nothing and does not count.
#[derive(Debug, Default)]
struct ReloadOrder {
    issued: u64,
    applied: u64,
}

impl ReloadOrder {
    /// The number of a reload asked for now.
    fn issue(&mut self) -> u64 {
        self.issued += 1;
        self.issued
    }

    /// Whether reload `n` may still be applied: no reload asked for after
    /// it has been applied.
    fn is_current(&self, n: u64) -> bool {
        n > self.applied
    }

    /// Reload `n` is in force.
    fn applied(&mut self, n: u64) {
        self.applied = self.applied.max(n);
    }
}

struct Daemon {
    opts: DaemonOptions,
    settings: Settings,
    engine: Engine,
    dispatcher: Dispatcher,
    store: Store,
    actions: HashMap<JailName, Vec<Arc<JailAction>>>,
    listeners: Vec<(Transport, SocketAddr)>,
    http: Option<SocketAddr>,
    started: Instant,
    internal: mpsc::Sender<Internal>,
    /// Counts banstream's own log lines received back (never routed).
    own_log: prometheus::IntCounter,
    /// This network namespace's firewall lock (`None`: not root, a dry
    /// run, or `/run` not writable), taken by a reload that first gives a
    /// jail a firewall action when the start did not.
    firewall_lock: Option<FirewallLock>,
    reloads: ReloadOrder,
    /// Bans the store holds for jails not configured at start: restored
    /// when a reload adds their jail, as a restart would.
    parked: Vec<Ban>,
}

fn actions_of(settings: &Settings) -> HashMap<JailName, Vec<Arc<JailAction>>> {
    settings
        .enabled_jails()
        .map(|j| (j.name.clone(), j.actions.clone()))
        .collect()
}

/// Runs the daemon until SIGTERM/SIGINT, with settings already loaded by
/// [`load_settings`] (so the caller can set up logging from them first)
/// and the namespace's firewall lock file opened by the caller before the
/// privilege drop (held already if the settings edit the firewall).
pub async fn run(
    opts: DaemonOptions,
    settings: Settings,
    firewall_lock: Option<FirewallLock>,
) -> anyhow::Result<()> {
    for w in &settings.warnings {
        tracing::warn!("config: {w}");
    }
    let metrics = Metrics::new();
    let mut engine = Engine::new(&settings, metrics.clone());
    engine.randomize();
    engine.keep_lines(true);
    engine.watch_own_addresses(true);
    let mut dispatcher = Dispatcher::new(action::default_factory(), metrics.clone())
        .with_evidence(engine.evidence());
    for j in settings.enabled_jails() {
        for a in &j.actions {
            dispatcher
                .ensure(&a.kind)
                .with_context(|| format!("jail {}: action {}", j.name, a.kind))?;
            dispatcher.jail_started(a.clone());
        }
    }
    // Before the stored bans come back: leftovers of jails since removed go.
    dispatcher.configured();
    // The store opens, and its bans are back in the firewall, before
    // anything listens: a restart is never a window without bans.
    let (store, snapshot) = open_store(&settings, metrics.clone()).await?;
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let (frame_tx, mut frame_rx) = mpsc::channel::<Frame>(settings.listen.queue);
    let (call_tx, mut call_rx) = mpsc::channel::<Call>(64);
    let (internal_tx, mut internal_rx) = mpsc::channel::<Internal>(4);
    let mut d = Daemon {
        actions: actions_of(&settings),
        opts,
        settings,
        engine,
        dispatcher,
        store,
        listeners: Vec::new(),
        http: None,
        started: Instant::now(),
        internal: internal_tx,
        own_log: metrics.dropped.with_label_values(&["own_log"]),
        firewall_lock,
        reloads: ReloadOrder::default(),
        parked: Vec::new(),
    };
    d.restore(snapshot);
    d.flush(None);
    let settings = &d.settings;

    crate::control::server::start(
        &settings.control_socket,
        call_tx.clone(),
        cancel.clone(),
        &tracker,
    )?;
    let http = match settings.http {
        Some(a) => Some(
            crate::http::start(
                a,
                metrics.clone(),
                call_tx.clone(),
                cancel.clone(),
                &tracker,
            )
            .await?,
        ),
        None => None,
    };
    let listeners = ingest::start(
        &settings.listen,
        frame_tx,
        metrics.clone(),
        cancel.clone(),
        &tracker,
    )
    .await?;
    spawn_signals(cancel.clone(), call_tx, &tracker)?;
    tracing::info!(
        jails = settings.enabled_jails().count(),
        dry_run = d.opts.dry_run,
        "banstream {} running",
        env!("CARGO_PKG_VERSION")
    );
    d.listeners = listeners;
    d.http = http;

    let mut batch = Vec::with_capacity(BATCH);
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
    let mut purge = tokio::time::interval(purge_interval(d.settings.dbpurgeage));
    loop {
        let wait = d
            .engine
            .next_expiry()
            .map(|t| {
                t.duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO)
            })
            .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            biased;
            n = frame_rx.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    break; // every listener is gone: shutting down
                }
                for f in batch.drain(..) {
                    d.process(&f);
                }
            }
            Some((req, reply)) = call_rx.recv() => {
                let resp = d.handle(req, Some(reply));
                if let Some((resp, reply)) = resp {
                    let _ = reply.send(resp);
                }
            }
            Some(msg) = internal_rx.recv() => d.internal(msg),
            _ = tokio::time::sleep(wait) => d.engine.tick(SystemTime::now()),
            _ = housekeeping.tick() => d.engine.housekeeping(SystemTime::now()),
            _ = purge.tick() => d.purge(),
        }
        d.flush(None);
    }
    tracing::info!("shutting down: draining, closing the database, removing firewall objects");
    // Requests queued after the loop ended get "shutting down", not silence.
    drop(call_rx);
    tracker.close();
    tracker.wait().await;
    d.flush(None);
    let Daemon {
        dispatcher, store, ..
    } = d;
    tokio::task::spawn_blocking(move || {
        store.close();
        dispatcher.shutdown();
    })
    .await
    .context("store and action shutdown")?;
    // The run's total, so a restart can be accounted for from the logs.
    let received: u64 = [
        Transport::Udp,
        Transport::Tcp,
        Transport::Unix,
        Transport::UnixStream,
    ]
    .iter()
    .map(|t| metrics.messages.with_label_values(&[t.as_str()]).get())
    .sum();
    tracing::info!(received, "stopped");
    Ok(())
}

fn spawn_signals(
    cancel: CancellationToken,
    calls: mpsc::Sender<Call>,
    tracker: &TaskTracker,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    let c = cancel.clone();
    tracker.spawn(async move {
        loop {
            tokio::select! {
                _ = c.cancelled() => break,
                _ = term.recv() => { tracing::info!("SIGTERM"); c.cancel(); break; }
                _ = int.recv() => { tracing::info!("SIGINT"); c.cancel(); break; }
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading");
                    let (tx, rx) = oneshot::channel();
                    if calls.send((Request::Reload, tx)).await.is_ok() {
                        if let Ok(r) = rx.await {
                            if !r.ok {
                                tracing::error!("reload refused: {}", r.error.unwrap_or_default());
                            }
                        }
                    }
                }
            }
        }
    });
    Ok(())
}

fn parse_ip(text: &str) -> Result<std::net::IpAddr, String> {
    crate::addr::parse_host(text)
        .ok_or_else(|| format!("invalid address {text:?}: expected an IPv4 or IPv6 address"))
}

impl Daemon {
    /// Puts the store's state back: history first (ban times and failure
    /// weights), then the bans in force (as effects for the firewall), then
    /// recidive's window from the ban log.
    fn restore(&mut self, snap: Snapshot) {
        let started = Instant::now();
        let now = SystemTime::now();
        let history = snap.history.len();
        for (jail, ip, h) in snap.history {
            self.engine.load_history(&jail, ip, h);
        }
        let (restored, skipped) = self.engine.restore(snap.bans, now);
        // Restored first, so that a leftover of a crash in the firewall is
        // known, then lifted when its address is now ignored.
        let lifted_ignored = self.engine.lift_ignored();
        let mut expired = snap.expired_while_down;
        let mut kept = 0;
        for b in skipped {
            match b.expires {
                // Ended between the open and now.
                Some(e) if e <= now => {
                    expired += 1;
                    self.store.unban(Arc::new(b), UnbanReason::Expired, e);
                }
                // Its jail is not configured now: kept in the store, it comes
                // back when the jail does (a reload adding it, or a start).
                _ => {
                    kept += 1;
                    self.parked.push(b);
                }
            }
        }
        let recidive = self.engine.rebuild_recidive(&snap.ban_log, now);
        tracing::info!(
            path = %self.store.path().display(),
            created = snap.created,
            restored = restored.len(),
            expired_while_down = expired,
            kept_for_unconfigured_jails = kept,
            lifted_ignored,
            history,
            ban_log = snap.ban_log.len(),
            recidive_bans = recidive,
            ms = started.elapsed().as_millis() as u64,
            "bans restored from the database"
        );
    }

    /// dbpurgeage: forget old history, in memory and in the store. The ban
    /// log is kept at least as long as the longest recidive findtime.
    fn purge(&mut self) {
        let now = SystemTime::now();
        let age = self.settings.dbpurgeage;
        let history = now.checked_sub(age).unwrap_or(UNIX_EPOCH);
        let log = now
            .checked_sub(age.max(recidive_horizon(&self.settings)))
            .unwrap_or(UNIX_EPOCH);
        self.engine.purge_history(history);
        self.store.purge(history, log);
    }

    fn process(&mut self, f: &Frame) {
        // A line holding none of the literals the filters require cannot
        // match: skip decoding and parsing (most of a busy stream).
        if !self.engine.admits(&f.data) {
            return;
        }
        let text = syslog::decode(&f.data);
        let ev = syslog::parse(&text, &ParseContext::live(f.peer, f.received));
        if ev.program == self.settings.log.ident {
            // Our own log line came back (syslogd forwards everything):
            // count it, log nothing, so it can never become a cycle.
            self.own_log.inc();
            return;
        }
        if self.engine.on_event(&ev, f.received) > 0 && self.engine.has_effects() {
            self.flush(Some(f.instant));
        }
    }

    /// Carries out the engine's decisions.
    fn flush(&mut self, received: Option<Instant>) {
        let now = SystemTime::now();
        for eff in self.engine.take_effects() {
            self.store.record(&eff, now);
            let (op, ban) = match &eff {
                Effect::Ban(b) if b.origin == BanOrigin::Restored => {
                    tracing::debug!(jail = %b.jail, ip = %b.ip, expires = ?b.expires.map(unix), "Restore");
                    (Op::Ban, b.clone())
                }
                Effect::Ban(b) => {
                    tracing::info!(jail = %b.jail, ip = %b.ip, bantime = %b.bantime, failures = b.failures, origin = ?b.origin, "Ban");
                    (Op::Ban, b.clone())
                }
                Effect::Unban(b, why) => {
                    tracing::info!(jail = %b.jail, ip = %b.ip, reason = ?why, "Unban");
                    (Op::Unban, b.clone())
                }
            };
            let Some(actions) = self.actions.get(&ban.jail) else {
                continue;
            };
            for (i, a) in actions.iter().enumerate() {
                if op == Op::Unban && self.held_by_a_sharer(a, ban.ip) {
                    tracing::debug!(jail = %ban.jail, ip = %ban.ip, action = %a.kind, name = %a.name, "unban kept out of objects another jail's ban still needs");
                    continue;
                }
                let ban = match op {
                    Op::Ban => self.longest_in_shared_objects(a, &ban),
                    Op::Unban => ban.clone(),
                };
                self.dispatcher.submit(action::Request {
                    op,
                    action: a.clone(),
                    ban,
                    // Latency is measured once per ban, on its first action.
                    received: if i == 0 { received } else { None },
                });
            }
        }
    }

    /// Whether another jail whose action shares `a`'s firewall objects (the
    /// same kind and `name=`) has `ip` banned: then an unban through `a`
    /// would delete that jail's ban from the kernel too.
    fn held_by_a_sharer(&self, a: &JailAction, ip: std::net::IpAddr) -> bool {
        self.actions.iter().any(|(jail, acts)| {
            acts.iter().any(|b| b.shares_objects_with(a))
                && self.engine.bans().get(jail, ip).is_some()
        })
    }

    /// The ban to write through `a` for `ban`: when another jail whose
    /// action shares `a`'s objects bans the same address for longer, its
    /// end (the kernel element is one for both: a shorter timeout written
    /// over it would let the kernel lift the longer ban early).
    fn longest_in_shared_objects(&self, a: &JailAction, ban: &Arc<Ban>) -> Arc<Ban> {
        let mut expires = ban.expires;
        for (jail, acts) in &self.actions {
            if *jail == ban.jail || !acts.iter().any(|b| b.shares_objects_with(a)) {
                continue;
            }
            if let Some(other) = self.engine.bans().get(jail, ban.ip) {
                expires = match (expires, other.expires) {
                    (None, _) | (_, None) => None,
                    (Some(x), Some(y)) => Some(x.max(y)),
                };
            }
        }
        if expires == ban.expires {
            return ban.clone();
        }
        Arc::new(Ban {
            expires,
            ..(**ban).clone()
        })
    }

    /// Restores the parked bans of the jails the running configuration now
    /// has (a reload added them back); those that ended meanwhile are
    /// logged as expired.
    fn unpark(&mut self) {
        let now = SystemTime::now();
        let (back, still): (Vec<Ban>, Vec<Ban>) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|b| self.actions.contains_key(&b.jail));
        self.parked = still;
        if back.is_empty() {
            return;
        }
        let (restored, skipped) = self.engine.restore(back, now);
        let mut expired = 0;
        for b in skipped {
            // Ended meanwhile: logged as expired. Otherwise a ban issued
            // since in the same jail has replaced it.
            if let Some(e) = b.expires.filter(|e| *e <= now) {
                expired += 1;
                self.store.unban(Arc::new(b), UnbanReason::Expired, e);
            }
        }
        let lifted_ignored = self.engine.lift_ignored();
        tracing::info!(
            restored = restored.len(),
            expired,
            lifted_ignored,
            "bans kept in the database for jails the reload added back"
        );
        self.flush(None);
    }

    /// After `stopped` removed their firewall objects, the bans of the other
    /// jails whose actions share those objects go in again (their objects
    /// are made anew at the first of them).
    fn reban_sharers(&mut self, stopped: &[Arc<JailAction>]) {
        let mut again = Vec::new();
        for (jail, acts) in &self.actions {
            for b in acts {
                if stopped.iter().any(|a| a.shares_objects_with(b)) && !stopped.contains(b) {
                    again.push((jail.clone(), b.clone()));
                }
            }
        }
        for (jail, b) in again {
            let bans = self.engine.bans().active_in(&jail);
            tracing::info!(jail = %jail, action = %b.kind, name = %b.name, bans = bans.len(), "objects shared with a stopped action: banning again");
            for ban in bans {
                let ban = self.longest_in_shared_objects(&b, &ban);
                self.dispatcher.submit(action::Request {
                    op: Op::Ban,
                    action: b.clone(),
                    ban,
                    received: None,
                });
            }
        }
    }

    /// Acknowledges a change only once the store has committed it: the
    /// effects go to the store now, and the store answers the client after
    /// its commit (or with `what` and the error when the database fails, in
    /// which case the change is in force but still being retried).
    fn durable(
        &mut self,
        resp: Response,
        reply: Option<oneshot::Sender<Response>>,
        what: String,
    ) -> Option<(Response, oneshot::Sender<Response>)> {
        self.flush(None);
        if let Some(reply) = reply {
            self.store.sync(Box::new(move |r| {
                let _ = reply.send(match r {
                    Ok(()) => resp,
                    Err(e) => Response::err(format!("{what}, but {e}")),
                });
            }));
        }
        None
    }

    /// Answers a control request. Returns the response with its reply
    /// channel, or `None` when the answer comes later (reload; a ban, once
    /// it is committed to the store).
    fn handle(
        &mut self,
        req: Request,
        reply: Option<oneshot::Sender<Response>>,
    ) -> Option<(Response, oneshot::Sender<Response>)> {
        let now = SystemTime::now();
        let resp = match req {
            Request::Ping => Response::ok(json!({"pong": true})),
            Request::Status { jail: None } => Response::ok(json!({
                "version": env!("CARGO_PKG_VERSION"),
                "uptime": self.started.elapsed().as_secs(),
                "dry_run": self.opts.dry_run,
                "listeners": self.listeners.iter().map(|(t, a)| json!({"transport": t.as_str(), "address": a.to_string()})).collect::<Vec<_>>(),
                "unix": self.settings.listen.unix.iter().map(|u| u.path.display().to_string()).collect::<Vec<_>>(),
                "http": self.http.map(|a| a.to_string()),
                "bans_active": self.engine.bans().len(),
                "jails": self.jails_overview(),
            })),
            Request::Status { jail: Some(j) } => match self.engine.status_jail(&j, now) {
                Ok(s) => Response::ok(serde_json::to_value(s).unwrap_or_default()),
                Err(_) if self.settings.jails.iter().any(|x| x.name.as_str() == j) => {
                    Response::err(format!(
                        "jail {j:?} is configured but disabled (enabled = false)"
                    ))
                }
                Err(e) => Response::err(e.to_string()),
            },
            Request::Ban { jail, ip } => match parse_ip(&ip) {
                Err(e) => Response::err(e),
                Ok(ip) => match self.engine.ban_manual(&jail, ip, now) {
                    Ok(b) => {
                        let resp = Response::ok(json!({
                            "jail": b.jail.to_string(),
                            "ip": b.ip.to_string(),
                            "expires": b.expires.map(unix),
                            "bantime": b.bantime.as_secs_i64(),
                        }));
                        let what = format!("{} is banned in {} and in force", b.ip, b.jail);
                        return self.durable(resp, reply, what);
                    }
                    Err(e) => Response::err(e.to_string()),
                },
            },
            Request::Unban {
                jail,
                ip: _,
                all: true,
            } => match self.engine.unban_all(jail.as_deref()) {
                Ok(v) => {
                    let what = format!("{} ban(s) lifted", v.len());
                    return self.durable(Response::ok(json!({"unbanned": v.len()})), reply, what);
                }
                Err(e) => Response::err(e.to_string()),
            },
            Request::Unban {
                jail,
                ip: Some(ip),
                all: false,
            } => match parse_ip(&ip) {
                Err(e) => Response::err(e),
                Ok(ip) => match self.engine.unban(jail.as_deref(), ip) {
                    Ok(v) => {
                        let mut jails: Vec<String> = v.iter().map(|b| b.jail.to_string()).collect();
                        jails.sort();
                        let what = format!("{ip} is unbanned");
                        let resp = Response::ok(json!({"unbanned": v.len(), "jails": jails}));
                        return self.durable(resp, reply, what);
                    }
                    Err(e) => Response::err(e.to_string()),
                },
            },
            Request::Unban {
                ip: None,
                all: false,
                ..
            } => Response::err("unban needs an address or --all"),
            Request::Banned => {
                let items: Vec<BannedItem> = self
                    .engine
                    .banned()
                    .iter()
                    .map(|b| BannedItem {
                        jail: b.jail.to_string(),
                        ip: b.ip.to_string(),
                        expires: b.expires.map(unix),
                    })
                    .collect();
                Response::ok(serde_json::to_value(items).unwrap_or_default())
            }
            Request::Reload => {
                let n = self.reloads.issue();
                let opts = self.opts.clone();
                let internal = self.internal.clone();
                tokio::spawn(async move {
                    let r = tokio::task::spawn_blocking(move || {
                        load_settings(&opts).map_err(|e| e.to_string())
                    })
                    .await
                    .unwrap_or_else(|e| Err(format!("reload task failed: {e}")));
                    let _ = internal
                        .send(Internal::Reloaded(n, Box::new(r), reply))
                        .await;
                });
                return None;
            }
        };
        reply.map(|r| (resp, r))
    }

    /// Every configured jail, running or not, in name order.
    fn jails_overview(&self) -> Vec<crate::engine::JailSummary> {
        let mut all = self.engine.status_all();
        for j in self.settings.jails.iter().filter(|j| !j.enabled) {
            all.push(crate::engine::JailSummary::disabled(j));
        }
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    fn internal(&mut self, msg: Internal) {
        match msg {
            Internal::Reloaded(n, result, reply) => {
                let resp = match *result {
                    Err(e) => {
                        tracing::error!("reload refused, keeping the running configuration:\n{e}");
                        Response::err(format!(
                            "reload refused, the running configuration stays:\n{e}"
                        ))
                    }
                    Ok(_) if !self.reloads.is_current(n) => {
                        tracing::warn!(
                            reload = n,
                            "reload superseded: a reload asked for later, which read the configuration after this one, is in force"
                        );
                        Response::ok(self.superseded())
                    }
                    Ok(new) => match self.swap(new) {
                        Ok(v) => {
                            self.reloads.applied(n);
                            Response::ok(v)
                        }
                        Err(e) => {
                            tracing::error!(
                                "reload refused, keeping the running configuration: {e}"
                            );
                            Response::err(format!(
                                "reload refused, the running configuration stays: {e}"
                            ))
                        }
                    },
                };
                if let Some(r) = reply {
                    let _ = r.send(resp);
                }
            }
        }
    }

    /// The answer to a reload a later one overtook: nothing changed by it.
    fn superseded(&self) -> serde_json::Value {
        let mut v = self.reload_answer(&[], &[], &[], &[]);
        v["superseded"] = json!(true);
        v
    }

    /// The answer to `reload`, for the running configuration.
    fn reload_answer(
        &self,
        added: &[String],
        removed: &[String],
        moved: &[String],
        restart: &[&str],
    ) -> serde_json::Value {
        json!({
            "jails": self.engine.jails().len(),
            "added": added,
            "removed": removed,
            "actions_changed": moved,
            "restart_needed": restart,
            "warnings": self.settings.warnings,
        })
    }

    /// Swaps in a fully built configuration. Everything that can fail
    /// (starting the backends of new action kinds) happens before anything
    /// changes; then jails are swapped (unchanged ones keep counters and
    /// bans), removed jails' bans are lifted through their old actions, and
    /// the bans of jails whose actions changed move to the new actions.
    fn swap(&mut self, new: Settings) -> Result<serde_json::Value, String> {
        // A first firewall action needs the namespace's lock: while another
        // daemon edits this firewall, the reload is refused (both would
        // share its objects, and the first to stop would remove them).
        // Without the file (not root, /run not writable) it goes on, as the
        // start did.
        if new.edits_firewall() {
            if let Some(lock) = &mut self.firewall_lock {
                lock.hold_unless_taken().map_err(|e| e.to_string())?;
            }
        }
        for j in new.enabled_jails() {
            for a in &j.actions {
                self.dispatcher
                    .ensure(&a.kind)
                    .map_err(|e| format!("jail {}: action {}: {e}", j.name, a.kind))?;
            }
        }
        let old_actions = std::mem::take(&mut self.actions);
        let new_actions = actions_of(&new);
        let old_names: Vec<String> = old_actions.keys().map(|j| j.to_string()).collect();
        self.engine.reload(&new);
        // Unbans of removed jails still go through their old actions.
        self.actions = old_actions.clone();
        self.flush(None);
        // Files named by action options (a webhook's token_file) are read
        // again from here on.
        self.dispatcher.reloaded();
        // Actions new to a jail are announced before any ban reaches them.
        for (jail, acts) in &new_actions {
            for a in acts {
                if !old_actions.get(jail).is_some_and(|o| o.contains(a)) {
                    self.dispatcher.jail_started(a.clone());
                }
            }
        }
        let mut removed = Vec::new();
        let mut moved = Vec::new();
        let mut stopped: Vec<Arc<JailAction>> = Vec::new();
        for (jail, acts) in &old_actions {
            let Some(now_acts) = new_actions.get(jail) else {
                removed.push(jail.to_string());
                for a in acts {
                    self.dispatcher.stop_jail(a.clone());
                    stopped.push(a.clone());
                }
                continue;
            };
            let gone: Vec<&Arc<JailAction>> =
                acts.iter().filter(|a| !now_acts.contains(a)).collect();
            // A backend stops a jail's objects per kind: an unchanged action
            // of the same kind as a removed one is banned again after the stop.
            let added: Vec<&Arc<JailAction>> = now_acts
                .iter()
                .filter(|a| !acts.contains(a) || gone.iter().any(|g| g.kind == a.kind))
                .collect();
            if gone.is_empty() && added.iter().all(|a| acts.contains(a)) {
                continue;
            }
            moved.push(jail.to_string());
            let bans = self.engine.bans().active_in(jail);
            tracing::info!(jail = %jail, bans = bans.len(), "actions changed: moving bans to the new actions");
            for a in &gone {
                for b in &bans {
                    self.dispatcher.submit(action::Request {
                        op: Op::Unban,
                        action: (*a).clone(),
                        ban: b.clone(),
                        received: None,
                    });
                }
                self.dispatcher.stop_jail((*a).clone());
                stopped.push((*a).clone());
            }
            for a in &added {
                for b in &bans {
                    self.dispatcher.submit(action::Request {
                        op: Op::Ban,
                        action: (*a).clone(),
                        ban: b.clone(),
                        received: None,
                    });
                }
            }
        }
        self.actions = new_actions;
        self.reban_sharers(&stopped);
        self.unpark();
        let mut added: Vec<String> = self
            .actions
            .keys()
            .map(|j| j.to_string())
            .filter(|j| !old_names.contains(j))
            .collect();
        // The maps iterate in random order; the answer lists in name order.
        for list in [&mut added, &mut removed, &mut moved] {
            list.sort();
        }
        let mut restart = Vec::new();
        if new.listen != self.settings.listen {
            restart.push("listen");
        }
        if new.http != self.settings.http {
            restart.push("http");
        }
        if new.control_socket != self.settings.control_socket {
            restart.push("control.socket");
        }
        if new.database != self.settings.database {
            restart.push("database.path");
        }
        for w in &new.warnings {
            tracing::warn!("config: {w}");
        }
        if !restart.is_empty() {
            tracing::warn!(
                settings = %restart.join(", "),
                "these settings changed but only take effect after a restart"
            );
        }
        tracing::info!(
            jails = new.enabled_jails().count(),
            added = added.len(),
            removed = removed.len(),
            actions_changed = moved.len(),
            "configuration reloaded"
        );
        self.settings = new;
        Ok(self.reload_answer(&added, &removed, &moved, &restart))
    }
}

#[cfg(test)]
mod tests {
    use super::ReloadOrder;

    #[test]
    fn a_reload_that_finishes_after_a_later_one_is_not_applied() {
        let mut r = ReloadOrder::default();
        let (first, second) = (r.issue(), r.issue());
        // The later one finished first and went in; the earlier one then may not.
        assert!(r.is_current(second));
        r.applied(second);
        assert!(!r.is_current(first));
        // One that failed (to load or to swap in) is never recorded: an
        // earlier one finishing after it still goes in.
        let (earlier, _failed) = (r.issue(), r.issue());
        assert!(r.is_current(earlier));
        r.applied(earlier);
        // In order, each one applies.
        let (a, b) = (r.issue(), r.issue());
        assert!(r.is_current(a));
        r.applied(a);
        assert!(r.is_current(b));
    }
}
