//! Raw configuration → runtime [`Settings`]: defaults applied, paths
//! resolved, filters compiled, ports resolved, ignore lists built. Every
//! problem is collected so `check` can list them all at once.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use super::paths;
use super::raw::{RawCommandAction, RawInet, RawJail, RawMultipliers, RawUnix};
use super::services::{PortSpec, Protocol};
use super::timespec::TimeSpec;
use super::{ConfigError, Loaded};
use crate::action::{self, CommandTemplates, JailAction};
use crate::ban::policy::BanTimePolicy;
use crate::filter::{self, Filter, NamedOptions};
use crate::jail::ignore::IgnoreList;
use crate::jail::JailName;
use crate::service::logging::LogSettings;
use crate::service::privileges::{RunSettings, ServicePaths};

/// An inet listener.
#[derive(Clone, Debug, PartialEq)]
pub struct InetListener {
    /// Bind address.
    pub addr: SocketAddr,
    /// Peers allowed to send.
    pub allow: Vec<IpNet>,
}

/// A unix listener.
#[derive(Clone, Debug, PartialEq)]
pub struct UnixListener {
    /// Socket path.
    pub path: PathBuf,
    /// Permission bits.
    pub mode: u32,
    /// Allowed sender uids (empty: any).
    pub allow_uids: Vec<u32>,
}

/// `[listen]`, resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct ListenSettings {
    /// UDP listeners.
    pub udp: Vec<InetListener>,
    /// TCP listeners.
    pub tcp: Vec<InetListener>,
    /// Unix datagram listeners.
    pub unix: Vec<UnixListener>,
    /// Unix stream listeners.
    pub unix_stream: Vec<UnixListener>,
    /// Largest frame in bytes.
    pub max_frame: usize,
    /// Most stream connections per listener.
    pub max_connections: usize,
    /// Idle stream connections are closed after this.
    pub idle_timeout: Duration,
    /// SO_RCVBUF for datagram sockets.
    pub recv_buffer: usize,
    /// Frame queue capacity.
    pub queue: usize,
}

/// What a jail matches on.
#[derive(Clone, Debug)]
pub enum JailKind {
    /// A regex filter over routed messages.
    Filter(Arc<Filter>),
    /// Fed by banstream's own bans in other jails.
    Recidive,
}

/// One jail, ready to run.
#[derive(Clone, Debug)]
pub struct JailSettings {
    /// Its name.
    pub name: JailName,
    /// Whether it runs.
    pub enabled: bool,
    /// The filter reference as written (`sshd[mode=aggressive]`).
    pub filter_ref: String,
    /// Filter or recidive.
    pub kind: JailKind,
    /// Programs routed to it.
    pub programs: Vec<String>,
    /// Failures that trigger a ban.
    pub maxretry: u32,
    /// The window.
    pub findtime: Duration,
    /// Ban time and growth.
    pub policy: BanTimePolicy,
    /// Never-ban list.
    pub ignore: IgnoreList,
    /// Ports the ban covers.
    pub ports: PortSpec,
    /// Protocol the ban covers.
    pub protocol: Protocol,
    /// The actions run on ban/unban.
    pub actions: Vec<Arc<JailAction>>,
    /// IPv6 counting prefix.
    pub ipv6_prefix: u8,
    /// Tracked-address cap.
    pub max_tracked: usize,
    /// Allowed unix sender uids (empty: any).
    pub uids: Vec<u32>,
}

/// The whole resolved configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Listeners and their limits.
    pub listen: ListenSettings,
    /// HTTP address, if enabled.
    pub http: Option<SocketAddr>,
    /// Control socket path.
    pub control_socket: PathBuf,
    /// Database file.
    pub database: PathBuf,
    /// History purge age.
    pub dbpurgeage: Duration,
    /// Runtime directory (sockets).
    pub runtime_dir: PathBuf,
    /// State directory (database).
    pub state_dir: PathBuf,
    /// Log level / filter.
    pub log_level: String,
    /// Log target and ident.
    pub log: LogSettings,
    /// The user to drop to after start-up, if any.
    pub run: Option<RunSettings>,
    /// Jails in name order (disabled ones included, `enabled = false`).
    pub jails: Vec<JailSettings>,
    /// The fail2ban tree to load, if any.
    pub fail2ban_dir: Option<PathBuf>,
    /// Non-fatal findings for `check`.
    pub warnings: Vec<String>,
    /// Files the configuration came from.
    pub sources: Vec<String>,
}

impl JailSettings {
    /// The fail2ban filter's program regex, when the jail routes by one
    /// (its `programs` are then only a label).
    pub fn program_pattern(&self) -> Option<&regex::Regex> {
        match &self.kind {
            JailKind::Filter(f) => f.program_pattern(),
            JailKind::Recidive => None,
        }
    }
}

impl Settings {
    /// The enabled jails.
    pub fn enabled_jails(&self) -> impl Iterator<Item = &JailSettings> {
        self.jails.iter().filter(|j| j.enabled)
    }

    /// What the service user must own or be able to write (`[run] user`).
    pub fn service_paths(&self) -> ServicePaths {
        let mut need = Vec::new();
        let parents = std::iter::once(&self.control_socket)
            .chain(std::iter::once(&self.database))
            .chain(self.listen.unix.iter().map(|u| &u.path))
            .chain(self.listen.unix_stream.iter().map(|u| &u.path));
        for p in parents {
            if let Some(d) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                if !need.iter().any(|n: &PathBuf| n == d) {
                    need.push(d.to_path_buf());
                }
            }
        }
        let db = self.database.display().to_string();
        ServicePaths {
            own_dirs: vec![self.runtime_dir.clone(), self.state_dir.clone()],
            need_dirs: need,
            // The lock files too: left by a run as root, they would keep
            // the user from taking the locks.
            own_files: ["", "-wal", "-shm", "-journal"]
                .iter()
                .map(|s| PathBuf::from(format!("{db}{s}")))
                .chain([
                    crate::service::instance::pid_file(&self.control_socket),
                    crate::service::instance::database_lock(&self.database),
                ])
                .collect(),
            xtables_lock: self
                .enabled_jails()
                .any(|j| j.actions.iter().any(|a| a.kind.starts_with("iptables"))),
        }
    }

    /// Whether an enabled jail has an action that edits the firewall: any
    /// but `log` and the notifications (`mail`, `webhook`). A `command`
    /// action counts, since fail2ban's own are firewall commands.
    pub fn edits_firewall(&self) -> bool {
        self.enabled_jails().any(|j| {
            j.actions
                .iter()
                .any(|a| !matches!(a.kind.as_str(), "log" | "mail" | "webhook"))
        })
    }

    /// Replaces every action with `log` (`run --dry-run`).
    pub fn force_dry_run(&mut self) {
        for j in &mut self.jails {
            j.actions = vec![Arc::new(JailAction::log(&j.name))];
        }
    }
}

const DEFAULT_MAX_FRAME: usize = 8192;
const DEFAULT_MAX_CONNECTIONS: usize = 256;
const DEFAULT_IDLE: Duration = Duration::from_secs(300);
const DEFAULT_RECV_BUFFER: usize = 8 << 20;
const DEFAULT_QUEUE: usize = 65536;
const DEFAULT_MAX_TRACKED: usize = 100_000;

struct Ctx {
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
}

impl Ctx {
    fn err(&mut self, origin: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError::Invalid {
            origin: origin.into(),
            message: message.into(),
        });
    }
}

fn loopback() -> Vec<IpNet> {
    vec![
        "127.0.0.0/8".parse().expect("constant network"),
        "::1/128".parse().expect("constant network"),
    ]
}

fn inet(ctx: &mut Ctx, kind: &str, raw: &[RawInet]) -> Vec<InetListener> {
    let mut out = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let origin = format!("listen.{kind}[{i}]");
        let (addr, allow) = match r {
            RawInet::Addr(a) => (a, None),
            RawInet::Full { address, allow } => (address, allow.as_ref()),
        };
        let addr: SocketAddr = match addr.parse() {
            Ok(a) => a,
            Err(_) => {
                ctx.err(
                    origin,
                    format!("{addr:?} is not an address:port (IPv6 as [::1]:5514)"),
                );
                continue;
            }
        };
        let allow = match allow {
            None => {
                if !addr.ip().is_loopback() {
                    ctx.warnings.push(format!(
                        "{origin} ({addr}) listens beyond loopback but has no allow list: only loopback peers are accepted; set allow = [\"10.0.0.0/8\", ...]"
                    ));
                }
                loopback()
            }
            Some(list) => {
                let mut nets = Vec::new();
                for a in list {
                    match crate::addr::parse_net(a) {
                        Some(n) => nets.push(n),
                        None => ctx.err(
                            &origin,
                            format!("allow entry {a:?} is not an address or CIDR"),
                        ),
                    }
                }
                if !addr.ip().is_loopback() && nets.iter().any(|n| n.prefix_len() == 0) {
                    ctx.warnings.push(format!(
                        "{origin} ({addr}) accepts syslog from any address: anyone who can reach it can claim to be sshd"
                    ));
                }
                nets
            }
        };
        out.push(InetListener { addr, allow });
    }
    out
}

fn unix(
    ctx: &mut Ctx,
    kind: &str,
    raw: &[RawUnix],
    runtime: &Path,
    default_mode: u32,
) -> Vec<UnixListener> {
    let mut out = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let origin = format!("listen.{kind}[{i}]");
        let (path, mode, uids) = match r {
            RawUnix::Path(p) => (p, None, None),
            RawUnix::Full {
                path,
                mode,
                allow_uids,
            } => (path, mode.as_deref(), allow_uids.clone()),
        };
        let mode = match mode {
            None => default_mode,
            Some(m) => match u32::from_str_radix(m.trim_start_matches("0o"), 8) {
                Ok(v) if v <= 0o777 => v,
                _ => {
                    ctx.err(
                        origin,
                        format!("mode {m:?} is not octal permission bits like \"0660\""),
                    );
                    continue;
                }
            },
        };
        out.push(UnixListener {
            path: paths::under(runtime, path),
            mode,
            allow_uids: uids.unwrap_or_default(),
        });
    }
    out
}

/// Merges a jail over the defaults: the jail's value wins where set.
fn merge(defaults: &RawJail, jail: &RawJail) -> RawJail {
    macro_rules! pick {
        ($($f:ident),*) => { RawJail { $($f: jail.$f.clone().or_else(|| defaults.$f.clone()),)* } };
    }
    pick!(
        enabled,
        filter,
        programs,
        mode,
        maxretry,
        findtime,
        bantime,
        bantime_increment,
        bantime_factor,
        bantime_multipliers,
        bantime_maxtime,
        bantime_rndtime,
        bantime_overalljails,
        ignoreip,
        ignoreself,
        port,
        protocol,
        banaction,
        action,
        chain,
        blocktype,
        ipv6_prefix,
        max_tracked,
        uids,
        destemail,
        sender,
        sendername,
        mta,
        notify_interval,
        notify_startstop,
        logpath,
        backend,
        logencoding
    )
}

/// A recidive jail bans on every port, as fail2ban's does
/// (`banaction_allports`): unless the jail itself sets them, its `port` and
/// `protocol` are `all`, and an `iptables-multiport` banaction inherited
/// from `[defaults]` becomes `iptables-allports`. `own` is the jail as
/// written, `merged` the jail over `[defaults]`.
pub fn recidive_defaults(name: &str, own: &RawJail, merged: &mut RawJail) {
    let filter = merged.filter.as_deref().unwrap_or(name);
    if filter.split('[').next().map(str::trim) != Some("recidive") {
        return;
    }
    if own.port.is_none() {
        merged.port = Some(super::raw::RawPorts::Text("all".into()));
    }
    if own.protocol.is_none() {
        merged.protocol = Some("all".into());
    }
    if own.banaction.is_none() && own.action.is_none() {
        if let Some(b) = merged.banaction.as_mut() {
            if b.trim() == "iptables-multiport" {
                *b = "iptables-allports".into();
            }
        }
    }
}

fn multipliers(ctx: &mut Ctx, origin: &str, m: &Option<RawMultipliers>) -> Vec<f64> {
    match m {
        None => Vec::new(),
        Some(RawMultipliers::List(l)) => l.clone(),
        Some(RawMultipliers::Text(t)) => {
            let mut out = Vec::new();
            for w in t.split_whitespace() {
                match w.parse::<f64>() {
                    Ok(v) if v >= 0.0 => out.push(v),
                    _ => ctx.err(
                        origin,
                        format!("bantime.multipliers: {w:?} is not a number"),
                    ),
                }
            }
            out
        }
    }
}

/// Turns the `[action.NAME]` tables into command templates.
fn command_actions(
    ctx: &mut Ctx,
    raw: &BTreeMap<String, RawCommandAction>,
) -> BTreeMap<String, Arc<CommandTemplates>> {
    let mut out = BTreeMap::new();
    for (name, a) in raw {
        let origin = format!("action.{name}");
        if action::KNOWN.contains(&name.as_str()) {
            ctx.err(
                &origin,
                format!("{name:?} is a built-in action; give the command action another name"),
            );
            continue;
        }
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        {
            ctx.err(
                &origin,
                "an action name may only contain letters, digits, '_', '-' and '.'",
            );
            continue;
        }
        let mut ok = true;
        let mut list = |key: &str, v: &Option<Vec<Vec<String>>>| -> Vec<Vec<String>> {
            let v = v.clone().unwrap_or_default();
            for (i, cmd) in v.iter().enumerate() {
                if cmd.first().is_none_or(|p| p.trim().is_empty()) {
                    ctx.err(
                        format!("{origin}.{key}[{i}]"),
                        "a command is a non-empty argv array whose first element is the program",
                    );
                    ok = false;
                }
            }
            v
        };
        let t = CommandTemplates {
            origin: origin.clone(),
            start: list("actionstart", &a.actionstart),
            stop: list("actionstop", &a.actionstop),
            check: list("actioncheck", &a.actioncheck),
            ban: list("actionban", &a.actionban),
            unban: list("actionunban", &a.actionunban),
            tags: a
                .tags
                .iter()
                .map(|(k, v)| (k.clone(), v.as_text()))
                .collect(),
        };
        if t.ban.is_empty() {
            ctx.err(
                &origin,
                "actionban is missing: an action that bans nothing is a mistake",
            );
            ok = false;
        }
        if ok {
            out.insert(name.clone(), Arc::new(t));
        }
    }
    out
}

/// Resolves one jail. `raw` is already merged over `[defaults]`.
pub fn resolve_jail(
    name: &str,
    raw: &RawJail,
    filter_dirs: &[PathBuf],
    own: &Arc<Vec<IpAddr>>,
    errors: &mut Vec<ConfigError>,
) -> Option<JailSettings> {
    let mut ctx = Ctx {
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let j = resolve_jail_ctx(&mut ctx, name, raw, filter_dirs, own, &BTreeMap::new());
    errors.append(&mut ctx.errors);
    j
}

fn resolve_jail_ctx(
    ctx: &mut Ctx,
    name: &str,
    raw: &RawJail,
    filter_dirs: &[PathBuf],
    own: &Arc<Vec<IpAddr>>,
    commands: &BTreeMap<String, Arc<CommandTemplates>>,
) -> Option<JailSettings> {
    let origin = format!("jail.{name}");
    let jname = match JailName::new(name) {
        Ok(n) => n,
        Err(e) => {
            ctx.err(&origin, e);
            return None;
        }
    };
    let enabled = raw.enabled.unwrap_or(true);
    let filter_ref = raw.filter.clone().unwrap_or_else(|| name.to_string());
    let mut fref = match NamedOptions::parse(&filter_ref) {
        Ok(f) => f,
        Err(e) => {
            ctx.err(format!("{origin}.filter"), e.to_string());
            return None;
        }
    };
    if let Some(mode) = &raw.mode {
        fref.options
            .entry("mode".into())
            .or_insert_with(|| mode.clone());
    }
    let kind = if fref.name == "recidive" {
        JailKind::Recidive
    } else {
        match filter::builtin::load(&fref, filter_dirs) {
            Ok(f) => JailKind::Filter(Arc::new(f)),
            Err(e) => {
                ctx.err(format!("{origin}.filter"), e.to_string());
                return None;
            }
        }
    };
    let programs = match (&raw.programs, &kind) {
        (Some(p), _) => p.clone(),
        (None, JailKind::Filter(f)) => f.programs().to_vec(),
        (None, JailKind::Recidive) => Vec::new(),
    };
    if matches!(kind, JailKind::Filter(_)) && programs.is_empty() && enabled {
        ctx.warnings.push(format!(
            "{origin}: filter {filter_ref:?} is not anchored to a program, so any program's line can trigger it (set programs = [...])"
        ));
    }
    if let (JailKind::Filter(f), true) = (&kind, enabled) {
        for (n, src) in f.failregex_sources().enumerate() {
            if greedy_before_host(src) {
                ctx.warnings.push(format!(
                    "{origin}: filter {filter_ref:?} failregex #{} has a greedy .* before the address and no end anchor ($), so text after the address (which a client may write) can decide which address is captured: {src}",
                    n + 1
                ));
            }
        }
    }
    let maxretry = raw.maxretry.unwrap_or(5);
    if maxretry == 0 {
        ctx.err(format!("{origin}.maxretry"), "must be at least 1");
    }
    let findtime = match raw
        .findtime
        .unwrap_or(TimeSpec::Finite(Duration::from_secs(600)))
    {
        TimeSpec::Finite(d) => d,
        TimeSpec::Forever => {
            ctx.err(format!("{origin}.findtime"), "cannot be forever");
            Duration::from_secs(600)
        }
    };
    let policy = BanTimePolicy {
        bantime: raw
            .bantime
            .unwrap_or(TimeSpec::Finite(Duration::from_secs(600))),
        increment: raw.bantime_increment.unwrap_or(false),
        factor: raw.bantime_factor.unwrap_or(1.0),
        multipliers: multipliers(ctx, &origin, &raw.bantime_multipliers),
        maxtime: raw.bantime_maxtime.and_then(TimeSpec::finite),
        rndtime: raw.bantime_rndtime.and_then(TimeSpec::finite),
        overalljails: raw.bantime_overalljails.unwrap_or(false),
    };
    if !(policy.factor.is_finite() && policy.factor > 0.0) {
        ctx.err(
            format!("{origin}.bantime.factor"),
            "must be a positive number",
        );
    }
    let ignoreself = raw.ignoreself.unwrap_or(true);
    if !ignoreself && enabled {
        ctx.warnings.push(format!(
            "{origin}: ignoreself = false: this host's own addresses can be banned"
        ));
    }
    let ignore = match IgnoreList::new(
        raw.ignoreip.as_deref().unwrap_or(&[]),
        ignoreself.then(|| own.clone()),
    ) {
        Ok(l) => l,
        Err(e) => {
            ctx.err(format!("{origin}.ignoreip"), e.to_string());
            IgnoreList::default()
        }
    };
    let port_text = raw.port.as_ref().map(|p| p.as_text()).unwrap_or_default();
    let ports = match PortSpec::parse(&port_text) {
        Ok(p) => p,
        Err(e) => {
            ctx.err(format!("{origin}.port"), e.to_string());
            PortSpec::All
        }
    };
    let protocol = match Protocol::parse(raw.protocol.as_deref().unwrap_or("tcp")) {
        Some(p) => p,
        None => {
            ctx.err(format!("{origin}.protocol"), "must be tcp, udp or all");
            Protocol::Tcp
        }
    };
    let defaults = action::ActionDefaults {
        jail: jname.clone(),
        ports: ports.clone(),
        protocol,
        chain: raw.chain.clone().unwrap_or_else(|| "INPUT".into()),
        blocktype: raw.blocktype.clone().unwrap_or_else(|| "REJECT".into()),
    };
    let refs: Vec<String> = match &raw.action {
        Some(list) if !list.is_empty() => list.clone(),
        _ => vec![raw.banaction.clone().unwrap_or_else(|| "nftables".into())],
    };
    let notify_keys = crate::notify::JailKeys {
        destemail: raw.destemail.clone(),
        sender: raw.sender.clone(),
        sendername: raw.sendername.clone(),
        mta: raw.mta.clone(),
        notify_interval: raw.notify_interval,
        notify_startstop: raw.notify_startstop,
    };
    let mut actions = Vec::new();
    for r in &refs {
        match NamedOptions::parse(r)
            .map_err(|e| e.to_string())
            .and_then(|n| JailAction::resolve_with(&n, &defaults, commands))
            .and_then(|a| notifier(a, &notify_keys))
        {
            Ok((a, warnings)) => {
                if enabled {
                    for w in warnings {
                        ctx.warnings.push(format!("{origin}.action: {w}"));
                    }
                }
                actions.push(Arc::new(a))
            }
            Err(e) => ctx.err(format!("{origin}.action"), e),
        }
    }
    if enabled
        && !actions.is_empty()
        && actions
            .iter()
            .all(|a| crate::notify::KINDS.contains(&a.kind.as_str()))
    {
        ctx.warnings.push(format!(
            "{origin}.action: only notifications, no ban action: nothing will be blocked (add e.g. \"nftables\")"
        ));
    }
    let ipv6_prefix = raw.ipv6_prefix.unwrap_or(128);
    if ipv6_prefix == 0 || ipv6_prefix > 128 {
        ctx.err(format!("{origin}.ipv6_prefix"), "must be 1..=128");
    }
    let max_tracked = raw.max_tracked.unwrap_or(DEFAULT_MAX_TRACKED).max(1);
    if raw.logpath.is_some() || raw.backend.is_some() || raw.logencoding.is_some() {
        tracing::debug!(
            jail = name,
            "logpath/backend/logencoding do not apply in-stream; ignored"
        );
    }
    Some(JailSettings {
        name: jname,
        enabled,
        filter_ref,
        kind,
        programs,
        maxretry: maxretry.max(1),
        findtime,
        policy,
        ignore,
        ports,
        protocol,
        actions,
        ipv6_prefix: ipv6_prefix.clamp(1, 128),
        max_tracked,
        uids: raw.uids.clone().unwrap_or_default(),
    })
}

/// Whether a pattern has an unescaped greedy `.*` or `.+` before its first
/// address placeholder and does not end with `$`: then the catch-all can
/// swallow the real address and leave a later, client-written one to the
/// capture.
pub fn greedy_before_host(pattern: &str) -> bool {
    let Some(at) = ["<HOST>", "<ADDR>", "<IP4>", "<IP6>"]
        .iter()
        .filter_map(|t| pattern.find(t))
        .min()
    else {
        return false;
    };
    let b = pattern.as_bytes();
    let mut greedy = false;
    let (mut i, mut in_class) = (0, false);
    while i < at {
        match b[i] {
            b'\\' => i += 1,
            b'[' if !in_class => in_class = true,
            b']' if in_class => in_class = false,
            b'.' if !in_class
                && matches!(b.get(i + 1), Some(b'*' | b'+'))
                && b.get(i + 2) != Some(&b'?') =>
            {
                greedy = true;
            }
            _ => {}
        }
        i += 1;
    }
    if !greedy {
        return false;
    }
    let t = pattern.trim_end();
    let escaped = t.len() >= 2 && t.as_bytes()[t.len() - 2] == b'\\';
    !t.ends_with('$') || escaped
}

/// Fills a `mail` / `webhook` action's options from the jail's keys and
/// checks them (other actions pass through). Returns the action and warnings.
fn notifier(
    mut a: JailAction,
    keys: &crate::notify::JailKeys,
) -> Result<(JailAction, Vec<String>), String> {
    let check = match a.kind.as_str() {
        "mail" => action::mail::validate,
        "webhook" => action::webhook::validate,
        _ => return Ok((a, Vec::new())),
    };
    keys.fill(&a.kind, &mut a.options);
    let warnings = check(&a.options)?;
    Ok((a, warnings))
}

/// The filter directories for a configuration.
pub fn filter_dirs(loaded: &Loaded) -> Vec<PathBuf> {
    if let Some(d) = &loaded.raw.paths.filter_dirs {
        return d.clone();
    }
    let mut dirs = Vec::new();
    if let Some(dir) = loaded.main_file.as_deref().and_then(Path::parent) {
        let d = if dir.as_os_str().is_empty() {
            PathBuf::from("filters")
        } else {
            dir.join("filters")
        };
        dirs.push(d);
    }
    let sys = PathBuf::from("/etc/banstream/filters");
    if !dirs.contains(&sys) {
        dirs.push(sys);
    }
    dirs
}

/// Resolves the merged configuration.
/// Refuses enabled actions of different kinds that would use one iptables
/// chain (`JailAction::clashes_with`): silently sharing it would let one
/// jail's stop or reload lift the other's bans.
fn chain_clashes(ctx: &mut Ctx, jails: &[JailSettings]) {
    let actions: Vec<&JailAction> = jails
        .iter()
        .filter(|j| j.enabled)
        .flat_map(|j| j.actions.iter().map(|a| a.as_ref()))
        .collect();
    for (i, a) in actions.iter().enumerate() {
        if let Some(b) = actions[..i].iter().find(|b| a.clashes_with(b)) {
            ctx.err(
                format!("jail.{}.action", a.jail),
                format!(
                    "{}[name={}] would share the iptables chain f2b-{} with jail {}'s {}[name={}]; one jail's stop would flush the other's bans: give one of them another name=",
                    a.kind, a.name, a.name, b.jail, b.kind, b.name
                ),
            );
        }
    }
}

pub fn resolve(loaded: &Loaded) -> Result<Settings, ConfigError> {
    let raw = &loaded.raw;
    let mut ctx = Ctx {
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let run = match RunSettings::resolve(&raw.run) {
        Ok(r) => r,
        Err(e) => {
            ctx.err("run", e);
            None
        }
    };
    let log = match LogSettings::resolve(&raw.log) {
        Ok(l) => l,
        Err(e) => {
            ctx.err("log", e);
            LogSettings::default()
        }
    };
    // A config that names a service user is a system service: the system
    // directories, whatever uid reads it (the daemon after its drop, or
    // root running `banstream status`).
    let runtime_dir = raw.paths.runtime_dir.clone().unwrap_or_else(|| {
        if run.is_some() {
            PathBuf::from(paths::SYSTEM_RUNTIME_DIR)
        } else {
            paths::default_runtime_dir()
        }
    });
    let state_dir = raw.paths.state_dir.clone().unwrap_or_else(|| {
        if run.is_some() {
            PathBuf::from(paths::SYSTEM_STATE_DIR)
        } else {
            paths::default_state_dir()
        }
    });
    let l = &raw.listen;
    let listen = ListenSettings {
        udp: inet(&mut ctx, "udp", &l.udp),
        tcp: inet(&mut ctx, "tcp", &l.tcp),
        unix: unix(&mut ctx, "unix", &l.unix, &runtime_dir, 0o666),
        unix_stream: unix(&mut ctx, "unix_stream", &l.unix_stream, &runtime_dir, 0o660),
        max_frame: l.max_frame.unwrap_or(DEFAULT_MAX_FRAME).clamp(480, 1 << 20),
        max_connections: l.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS).max(1),
        idle_timeout: l
            .idle_timeout
            .and_then(TimeSpec::finite)
            .unwrap_or(DEFAULT_IDLE),
        recv_buffer: l.recv_buffer.unwrap_or(DEFAULT_RECV_BUFFER),
        queue: l.queue.unwrap_or(DEFAULT_QUEUE).max(16),
    };
    let http = match raw.http.listen.as_deref() {
        None => Some(SocketAddr::from(([127, 0, 0, 1], 9640))),
        Some("") => None,
        Some(a) => match a.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                ctx.err("http.listen", format!("{a:?} is not an address:port"));
                None
            }
        },
    };
    let control_socket = paths::under(
        &runtime_dir,
        raw.control
            .socket
            .as_deref()
            .unwrap_or(Path::new("banstream.sock")),
    );
    let database = paths::under(
        &state_dir,
        raw.database
            .path
            .as_deref()
            .unwrap_or(Path::new("banstream.sqlite3")),
    );
    let dbpurgeage = raw
        .database
        .dbpurgeage
        .and_then(TimeSpec::finite)
        .unwrap_or(Duration::from_secs(86400));
    let dirs = filter_dirs(loaded);
    let own = Arc::new(crate::addr::own_addresses());
    let commands = command_actions(&mut ctx, &raw.action);
    let mut jails = Vec::new();
    // With a fail2ban tree, the tree defines the jail set: banstream's
    // built-in starter jails stay out unless the admin's own files name them.
    let user_jails = user_jail_names(loaded);
    let mut sources: Vec<String> = loaded.layers.iter().map(|l| l.origin.clone()).collect();
    for (name, j) in &raw.jail {
        if raw.fail2ban.is_some() && !user_jails.contains(name) {
            continue;
        }
        let mut merged = merge(&raw.defaults, j);
        recidive_defaults(name, j, &mut merged);
        if let Some(js) = resolve_jail_ctx(&mut ctx, name, &merged, &dirs, &own, &commands) {
            jails.push(js);
        }
    }
    if let Some(f) = &raw.fail2ban {
        let tree = super::fail2ban::load_tree(&f.dir, &own);
        let origin = format!("fail2ban {}", f.dir.display());
        for e in tree.errors {
            ctx.err(&origin, e);
        }
        ctx.warnings.extend(tree.warnings);
        for j in tree.jails {
            if jails.iter().any(|n| n.name == j.name && n.enabled) {
                ctx.err(
                    &origin,
                    format!(
                        "jail {} is defined both in banstream's configuration and in the fail2ban tree; rename or disable one",
                        j.name
                    ),
                );
                continue;
            }
            jails.retain(|n| n.name != j.name);
            jails.push(j);
        }
        sources.push(format!("{origin} ({} files)", tree.files.len()));
    }
    chain_clashes(&mut ctx, &jails);
    if let Some(r) = &run {
        for j in jails.iter().filter(|j| j.enabled) {
            if j.actions.iter().any(|a| a.kind == "ufw") {
                ctx.err(
                    format!("jail.{}.banaction", j.name),
                    format!("ufw refuses to run as a user other than root, and run.user = {:?}: use nftables or iptables-*, or remove run.user", r.user),
                );
            }
        }
        for u in listen.unix.iter().chain(&listen.unix_stream) {
            if !u.path.starts_with(&runtime_dir) {
                ctx.warnings.push(format!(
                    "listen: {} is outside the runtime directory {}: user {:?} must be able to create it",
                    u.path.display(),
                    runtime_dir.display(),
                    r.user
                ));
            }
        }
    }
    if !ctx.errors.is_empty() {
        return Err(if ctx.errors.len() == 1 {
            ctx.errors.remove(0)
        } else {
            ConfigError::Many(ctx.errors)
        });
    }
    Ok(Settings {
        listen,
        http,
        control_socket,
        database,
        dbpurgeage,
        runtime_dir,
        state_dir,
        log_level: raw.log.level.clone().unwrap_or_else(|| "info".into()),
        log,
        run,
        jails,
        fail2ban_dir: raw.fail2ban.as_ref().map(|f| f.dir.clone()),
        warnings: ctx.warnings,
        sources,
    })
}

/// Jail names written in the admin's own files (not the built-in defaults).
fn user_jail_names(loaded: &Loaded) -> std::collections::BTreeSet<String> {
    loaded
        .layers
        .iter()
        .filter(|l| !l.origin.starts_with("builtin:"))
        .filter_map(|l| super::parse_layer(&l.origin, &l.text).ok())
        .flat_map(|r| r.jail.into_keys())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_layer, Layer};

    fn loaded(text: &str) -> Loaded {
        let mut raw = parse_layer("builtin", super::super::EMBEDDED_DEFAULT).unwrap();
        let over = parse_layer("t.toml", text).unwrap();
        // Minimal merge for tests: jails and defaults from the test text.
        raw.jail.extend(over.jail);
        if over.defaults.maxretry.is_some() {
            raw.defaults.maxretry = over.defaults.maxretry;
        }
        raw.listen = if over.listen.udp.is_empty() {
            raw.listen
        } else {
            over.listen
        };
        Loaded {
            raw,
            layers: vec![Layer {
                origin: "t.toml".into(),
                text: text.into(),
            }],
            main_file: None,
        }
    }

    #[test]
    fn default_config_resolves() {
        let s = resolve(&loaded("")).unwrap();
        let sshd = s.jails.iter().find(|j| j.name.as_str() == "sshd").unwrap();
        assert!(sshd.programs.contains(&"sshd-session".to_string()));
        assert!(s.enabled_jails().count() >= 4);
    }

    #[test]
    fn errors_are_collected_and_named() {
        let err = resolve(&loaded(
            "[jail.a]\nfilter = \"nosuch\"\n[jail.b]\nfilter = \"sshd\"\nport = \"nosuchservice\"\n[jail.c]\nfilter = \"sshd\"\nbanaction = \"teleport\"\n",
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("jail.a.filter"), "{err}");
        assert!(err.contains("jail.b.port"), "{err}");
        assert!(err.contains("jail.c.action"), "{err}");
    }

    #[test]
    fn actions_of_two_kinds_on_one_chain_are_refused() {
        let jail = |j: &str, kind: &str| {
            format!("[jail.{j}]\nenabled = true\nfilter = \"sshd\"\naction = [\"{kind}[name=shared]\"]\n")
        };
        let err = resolve(&loaded(
            &(jail("a", "iptables-multiport") + &jail("b", "iptables-allports")),
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("jail.b.action"), "{err}");
        assert!(
            err.contains("chain f2b-shared with jail a's iptables-multiport"),
            "{err}"
        );
        // The same kind shares the chain on purpose (one worker keeps both
        // jails' bans), and a set of the same name is another object.
        for other in ["iptables-multiport", "iptables-ipset", "nftables"] {
            let text = jail("a", "iptables-multiport") + &jail("b", other);
            assert!(resolve(&loaded(&text)).is_ok(), "{other}");
        }
        // A disabled jail's actions never start.
        let text = jail("a", "iptables-multiport")
            + &jail("b", "iptables-allports").replace("enabled = true", "enabled = false");
        assert!(resolve(&loaded(&text)).is_ok());
    }

    #[test]
    fn a_jail_with_uids_counts_only_lines_the_kernel_proved() {
        use crate::syslog::{parse, ParseContext, Peer};
        let s = resolve(&loaded(
            "[jail.sshd]\nenabled = true\nfilter = \"sshd\"\nuids = [22]\n",
        ))
        .unwrap();
        let sshd = s.jails.iter().find(|j| j.name.as_str() == "sshd").unwrap();
        let line =
            "<38>Nov 24 14:00:01 h sshd[1]: Failed password for root from 192.0.2.1 port 22 ssh2";
        let counts = |peer: Peer| {
            let ctx = ParseContext {
                received: std::time::SystemTime::now(),
                peer,
                reference: std::time::SystemTime::now(),
            };
            crate::jail::examine(sshd, &parse(line, &ctx)) != crate::filter::Verdict::Miss
        };
        let unix = |uid| Peer::Unix { uid, pid: Some(1) };
        assert!(counts(unix(Some(22))));
        assert!(
            counts(Peer::File),
            "replay and test-filter read the admin's files"
        );
        assert!(!counts(unix(Some(1000))), "another uid");
        assert!(!counts(unix(None)), "no credentials");
        let lo = "127.0.0.1:40000".parse().unwrap();
        assert!(
            !counts(Peer::Inet(lo)),
            "any local user can send over loopback"
        );
    }

    #[test]
    fn greedy_catch_all_before_the_address_is_spotted() {
        assert!(greedy_before_host("^Failed .* from <HOST>"));
        assert!(greedy_before_host("^x .+ <ADDR> port"));
        assert!(!greedy_before_host("^Failed .* from <HOST> port \\d+$"));
        assert!(!greedy_before_host("^Failed .*? from <HOST>"));
        assert!(!greedy_before_host("^Failed [.*] from <HOST>"));
        assert!(!greedy_before_host("^Failed \\.* from <HOST>"));
        assert!(!greedy_before_host("^from <HOST> .*"));
        assert!(greedy_before_host("^a .* <HOST> b\\$"));
    }

    #[test]
    fn notifier_actions_take_the_jail_keys() {
        let s = resolve(&loaded(
            "[jail.x]\nfilter = \"sshd\"\ndestemail = \"a@example.org\"\nnotify_interval = \"5m\"\naction = [\"log\", \"mail[whois=true]\", \"webhook[url=https://example.org/h]\"]\n[jail.y]\nfilter = \"sshd\"\naction = [\"mail\"]\n",
        ))
        .unwrap();
        let x = s.jails.iter().find(|j| j.name.as_str() == "x").unwrap();
        let mail = x.actions.iter().find(|a| a.kind == "mail").unwrap();
        assert_eq!(mail.options["dest"], "a@example.org");
        assert_eq!(mail.options["interval"], "300s");
        assert_eq!(mail.options["whois"], "true");
        let hook = x.actions.iter().find(|a| a.kind == "webhook").unwrap();
        assert_eq!(hook.options["interval"], "300s");
        assert!(!hook.options.contains_key("dest"));
        assert!(
            s.warnings
                .iter()
                .any(|w| w.contains("jail.y.action") && w.contains("nothing will be blocked")),
            "{:?}",
            s.warnings
        );
    }

    #[test]
    fn recidive_bans_on_all_ports_by_default() {
        let mut l = loaded(
            "[jail.sshd]\nport = \"ssh\"\n[jail.recidive]\nenabled = true\nbantime = \"8d\"\nfindtime = \"1d\"\n[jail.recidive-ssh]\nfilter = \"recidive\"\nport = \"ssh\"\nbanaction = \"iptables-multiport\"\n",
        );
        l.raw.defaults.banaction = Some("iptables-multiport".into());
        let s = resolve(&l).unwrap();
        let j = |n: &str| s.jails.iter().find(|j| j.name.as_str() == n).unwrap();
        let r = j("recidive");
        assert!(matches!(r.kind, JailKind::Recidive));
        assert_eq!(
            r.policy.bantime,
            TimeSpec::Finite(Duration::from_secs(8 * 86400))
        );
        assert_eq!(r.findtime, Duration::from_secs(86400));
        assert_eq!(r.ports, PortSpec::All);
        assert_eq!(r.protocol, Protocol::All);
        assert_eq!(r.actions[0].kind, "iptables-allports");
        assert_eq!(r.actions[0].ports, PortSpec::All);
        // What a jail sets itself wins; other jails are untouched.
        let own = j("recidive-ssh");
        assert_eq!(own.actions[0].kind, "iptables-multiport");
        assert_ne!(own.ports, PortSpec::All);
        assert_eq!(j("sshd").actions[0].kind, "iptables-multiport");
    }

    #[test]
    fn warnings_for_open_listeners_and_ignoreself() {
        let s = resolve(&loaded(
            "[listen]\nudp = [\"0.0.0.0:5514\"]\n[jail.x]\nfilter = \"sshd\"\nignoreself = false\n",
        ))
        .unwrap();
        assert!(
            s.warnings.iter().any(|w| w.contains("no allow list")),
            "{:?}",
            s.warnings
        );
        assert!(
            s.warnings.iter().any(|w| w.contains("ignoreself")),
            "{:?}",
            s.warnings
        );
    }

    #[test]
    fn command_actions_resolve_through_every_layer() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("banstream.toml");
        std::fs::write(
            &main,
            r#"
[action.notify]
actionstart = [["mkdir", "-p", "<spool>"]]
actionban = [["touch", "<spool>/<name>-<ip>"], ["logger", "-t", "banstream", "ban <ip> port <port>"]]
actionunban = [["rm", "-f", "<spool>/<name>-<ip>"]]
spool = "/run/spool"
retries = 3

[jail.x]
filter = "sshd"
port = "ssh"
action = ["notify[spool=/tmp/other]", "nftables"]

[jail.y]
filter = "sshd"
banaction = "notify"
"#,
        )
        .unwrap();
        let l = crate::config::load(&crate::config::LoadOptions {
            file: Some(main),
            env: false,
        })
        .unwrap();
        let s = resolve(&l).unwrap();
        let x = s.jails.iter().find(|j| j.name.as_str() == "x").unwrap();
        assert_eq!(x.actions.len(), 2);
        assert_eq!(x.actions[0].kind, "command");
        let t = x.actions[0].command.as_ref().unwrap();
        assert_eq!(t.ban[0], vec!["touch", "<spool>/<name>-<ip>"]);
        assert_eq!(t.tags["spool"], "/run/spool");
        assert_eq!(t.tags["retries"], "3");
        assert_eq!(x.actions[0].options["spool"], "/tmp/other");
        assert_eq!(x.actions[1].kind, "nftables");
        let y = s.jails.iter().find(|j| j.name.as_str() == "y").unwrap();
        assert_eq!(y.actions[0].kind, "command");
    }

    #[test]
    fn bad_command_actions_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("banstream.toml");
        std::fs::write(
            &main,
            "[action.nftables]\nactionban = [[\"true\"]]\n[action.empty]\nactionban = [[]]\n[action.nothing]\nactionstart = [[\"true\"]]\n[jail.z]\nfilter = \"sshd\"\nbanaction = \"command\"\n",
        )
        .unwrap();
        let l = crate::config::load(&crate::config::LoadOptions {
            file: Some(main),
            env: false,
        })
        .unwrap();
        let err = resolve(&l).unwrap_err().to_string();
        assert!(err.contains("action.nftables"), "{err}");
        assert!(err.contains("action.empty.actionban[0]"), "{err}");
        assert!(
            err.contains("action.nothing: actionban is missing"),
            "{err}"
        );
        assert!(err.contains("jail.z.action"), "{err}");
    }
}
