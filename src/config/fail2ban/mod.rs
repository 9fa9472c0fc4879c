//! The fail2ban-directory reader: `[fail2ban] dir = "/etc/fail2ban"` runs
//! the enabled jails of an existing fail2ban tree in-stream, with the
//! meaning fail2ban's own client gives them (`jailreader.py`,
//! `filterreader.py`, `actionreader.py`).
//!
//! Receives the directory; produces [`JailSettings`] for the enabled jails
//! (filters compiled, actions mapped), warnings for `check`, and errors
//! naming file and line. Disabled jails are not read further, as in
//! fail2ban (their filters need not exist).
//!
//! Accepted and ignored in-stream (noted at debug level): `logpath`,
//! `backend`, `logencoding`, `logtimezone`, `journalmatch`, `maxmatches`,
//! `ignorecache`; `datepattern` is used only for raw lines without a
//! syslog header.

pub mod action;
pub mod ini;
pub mod reader;
pub mod tags;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::action::{ActionDefaults, JailAction};
use crate::ban::policy::BanTimePolicy;
use crate::config::resolve::{JailKind, JailSettings};
use crate::config::services::{PortSpec, Protocol};
use crate::config::TimeSpec;
use crate::filter::fail2ban::{FilterDef, Matcher, PatternSource};
use crate::filter::Filter;
use crate::jail::ignore::IgnoreList;
use crate::jail::JailName;

use ini::{Config, GetError, Reader};
use reader::{get, merged, set, DefReader, Opts};

/// The filter options fail2ban reads from `[Definition]` (and a jail may
/// override).
const FILTER_KEYS: &[&str] = &[
    "usedns",
    "prefregex",
    "ignoreregex",
    "failregex",
    "maxlines",
    "datepattern",
    "journalmatch",
];

/// The jail options fail2ban reads (JailReader._configOpts).
const JAIL_KEYS: &[&str] = &[
    "enabled",
    "backend",
    "maxretry",
    "maxmatches",
    "findtime",
    "bantime",
    "bantime.increment",
    "bantime.factor",
    "bantime.formula",
    "bantime.multipliers",
    "bantime.maxtime",
    "bantime.rndtime",
    "bantime.overalljails",
    "ignorecommand",
    "ignoreself",
    "ignoreip",
    "ignorecache",
    "filter",
    "logtimezone",
    "logencoding",
    "logpath",
    "action",
];

const ACTION_KEYS: &[&str] = &[
    "actionstart",
    "actionstart_on_demand",
    "actionstop",
    "actionflush",
    "actionreload",
    "actioncheck",
    "actionrepair",
    "actionrepair_on_unban",
    "actionban",
    "actionprolong",
    "actionreban",
    "actionunban",
    "norestored",
];

/// The fail2ban version whose reader this follows (`%(fail2ban_version)s`).
pub const FAIL2BAN_VERSION: &str = "1.0.2";

/// What reading a tree gave.
#[derive(Debug, Default)]
pub struct Tree {
    /// The enabled jails, ready to run.
    pub jails: Vec<JailSettings>,
    /// Names of the jails defined but not enabled.
    pub disabled: Vec<String>,
    /// Non-fatal findings.
    pub warnings: Vec<String>,
    /// Problems that stop the configuration.
    pub errors: Vec<String>,
    /// Files read.
    pub files: Vec<PathBuf>,
}

/// fail2ban's `_as_bool`.
fn as_bool(v: &str) -> bool {
    matches!(
        v.trim().to_lowercase().as_str(),
        "1" | "on" | "true" | "yes"
    )
}

/// fail2ban's `splitwords`.
pub fn splitwords(s: &str) -> Vec<String> {
    s.split([' ', ',', '\n'])
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// Reads the options `keys` of a section: fail2ban's `getOptions` (a
/// missing option is skipped, vars win).
fn get_options(cfg: &Config, section: &str, keys: &[&str], errors: &mut Vec<String>) -> Opts {
    let mut out = Vec::new();
    for k in keys {
        match cfg.get(section, k, &[]) {
            Ok(v) => set(&mut out, k, v),
            Err(GetError::NoOption(_)) => {}
            Err(e) => errors.push(format!("jail [{section}]: {e}")),
        }
    }
    out
}

/// fail2ban's `_fillStream`: (option, value) pairs as the server would
/// receive them, in order. Single values: the last wins; failregex and
/// ignoreregex: every line is added.
fn fill_stream(stream: &mut Vec<(String, String)>, opts: &Opts) {
    let mut prio = 0;
    for (k, v) in opts {
        match k.as_str() {
            "failregex" | "ignoreregex" => {
                for line in v.split('\n').filter(|l| !l.is_empty()) {
                    stream.push((k.clone(), line.to_string()));
                }
            }
            "usedns" => {
                stream.insert(0, (k.clone(), v.clone()));
                prio += 1;
            }
            "maxlines" | "prefregex" => {
                stream.insert(prio.min(stream.len()), (k.clone(), v.clone()));
                prio += 1;
            }
            "datepattern" => stream.push((k.clone(), v.clone())),
            _ => {}
        }
    }
}

/// Finds the file and line where a pattern was written: the line of the
/// filter files whose text (after `key =`) is the pattern, else the line of
/// the option's key.
fn place_of(r: &DefReader, key: &str, pattern: &str) -> (String, usize) {
    for f in r.cfg.files.iter().rev() {
        if let Ok(text) = std::fs::read_to_string(f) {
            for (n, l) in text.lines().enumerate() {
                let t = l.trim();
                let t = t
                    .strip_prefix(key)
                    .map(|x| x.trim_start().trim_start_matches(['=', ':']).trim())
                    .unwrap_or(t);
                if t == pattern {
                    return (f.display().to_string(), n + 1);
                }
            }
        }
    }
    let (f, l) = r.place(key);
    (f.display().to_string(), l)
}

/// The filter side of a jail (or of `test-filter FILE.conf`): reads
/// `filter.d/NAME` with its options, applying the jail's options like
/// fail2ban. Returns the definition and the reader (for `known/...`).
pub struct FilterRead {
    /// The definition to compile.
    pub def: FilterDef,
    /// Problems found.
    pub errors: Vec<String>,
    /// Non-fatal findings.
    pub warnings: Vec<String>,
}

fn filter_def(r: &DefReader, name: &str, jail_opts: Option<&Opts>) -> Result<FilterRead, String> {
    let combined = r.combined(&[])?;
    let mut stream = Vec::new();
    fill_stream(&mut stream, &combined);
    if let Some(j) = jail_opts {
        fill_stream(&mut stream, j);
    }
    let mut def = FilterDef {
        name: name.to_string(),
        origin: r.origin.display().to_string(),
        maxlines: 1,
        usedns: "warn".into(),
        ..Default::default()
    };
    let mut warnings = Vec::new();
    let mut errors = r.errors.clone();
    for (k, v) in stream {
        match k.as_str() {
            "failregex" => {
                let (file, line) = place_of(r, "failregex", &v);
                def.failregex.push(PatternSource {
                    regex: v,
                    file,
                    line,
                });
            }
            "ignoreregex" => {
                let (file, line) = place_of(r, "ignoreregex", &v);
                def.ignoreregex.push(PatternSource {
                    regex: v,
                    file,
                    line,
                });
            }
            "prefregex" => {
                let (file, line) = place_of(r, "prefregex", &v);
                def.prefregex = (!v.trim().is_empty()).then_some(PatternSource {
                    regex: v,
                    file,
                    line,
                });
            }
            "maxlines" => match v.trim().parse::<usize>() {
                Ok(n) if n > 0 => def.maxlines = n,
                _ => errors.push(format!(
                    "{}: maxlines {v:?} must be a whole number above zero",
                    def.origin
                )),
            },
            "usedns" => def.usedns = v.trim().to_lowercase(),
            "datepattern" => def.datepattern = Some(v),
            _ => {}
        }
    }
    if def.maxlines > super::super::filter::fail2ban::MAX_LINES {
        warnings.push(format!(
            "{}: maxlines {} is above {}; lines are buffered per connection and capped there",
            def.origin,
            def.maxlines,
            super::super::filter::fail2ban::MAX_LINES
        ));
    }
    // Routing: the filter's _daemon, when its regexes use the prefix.
    let prefix = r
        .cfg
        .get("Definition", "__prefix_line", &r.vars)
        .ok()
        .map(|p| substitute(r, &combined, &p));
    let daemon = r
        .cfg
        .get("Definition", "_daemon", &r.vars)
        .ok()
        .map(|d| substitute(r, &combined, &d));
    let uses_prefix = |p: &PatternSource| {
        prefix
            .as_ref()
            .is_some_and(|x| !x.is_empty() && p.regex.contains(x.as_str()))
    };
    let anchored = def.prefregex.as_ref().is_some_and(uses_prefix)
        || (!def.failregex.is_empty() && def.failregex.iter().all(uses_prefix));
    if anchored {
        def.daemon = daemon.filter(|d| !d.is_empty());
    }
    Ok(FilterRead {
        def,
        errors,
        warnings,
    })
}

/// `<tag>` substitution of one value against a reader's options.
fn substitute(r: &DefReader, combined: &Opts, value: &str) -> String {
    let mut tags = combined.clone();
    tags.push(("\u{0}value".into(), value.to_string()));
    let ign = std::collections::HashSet::new();
    if tags::substitute_recursive(&mut tags, &ign, &|n| {
        r.cfg.get_ex("Definition", n, &r.vars).ok()
    })
    .is_err()
    {
        return value.to_string();
    }
    tags.pop().map(|(_, v)| v).unwrap_or_default()
}

/// Reads a filter file on its own (`test-filter /etc/fail2ban/filter.d/x.conf`,
/// `test-filter x.conf[mode=ddos]`), as `fail2ban-regex` does: the file's
/// directory is `filter.d` of a tree whose includes resolve beside it.
pub fn load_filter_file(path: &Path, opts: &[(String, String)]) -> Result<Filter, String> {
    let mut reader = Reader::default();
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("filter")
        .to_string();
    let mut r = DefReader::read(
        &mut reader,
        Path::new(""),
        "",
        &path.display().to_string(),
        opts.to_vec(),
    )
    .ok_or_else(|| format!("{}: cannot read the filter", path.display()))?;
    r.get_options(&Vec::new(), FILTER_KEYS, false);
    let fr = filter_def(&r, &name, None)?;
    let mut errors: Vec<String> = reader.errors.iter().map(|e| e.to_string()).collect();
    errors.extend(fr.errors);
    if !errors.is_empty() {
        return Err(errors.join("\n"));
    }
    let m = Matcher::compile(fr.def).map_err(|es| {
        es.iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    Ok(Filter::from_fail2ban(m))
}

/// Reads a fail2ban tree and builds its enabled jails. `own` is the host's
/// addresses (for `ignoreself`).
pub fn load_tree(dir: &Path, own: &Arc<Vec<IpAddr>>) -> Tree {
    let mut tree = Tree::default();
    if !dir.is_dir() {
        tree.errors
            .push(format!("[fail2ban] dir {}: not a directory", dir.display()));
        return tree;
    }
    let mut reader = Reader::default();
    let mut cfg = reader.read(&dir.join("jail"));
    if cfg.files.is_empty() {
        tree.errors
            .push(format!("{}: no jail.conf or jail.local", dir.display()));
        return tree;
    }
    tree.files = cfg.files.clone();
    let confpath = dir.display().to_string();
    cfg.merge_defaults(&[
        ("fail2ban_version", FAIL2BAN_VERSION),
        ("fail2ban_confpath", &confpath),
    ]);
    let names: Vec<String> = cfg
        .sections()
        .filter(|s| *s != "INCLUDES")
        .map(str::to_string)
        .collect();
    for name in names {
        read_jail(&mut tree, &mut cfg, &mut reader, dir, &name, own);
    }
    for e in &reader.errors {
        tree.errors.push(e.to_string());
    }
    tree.jails.sort_by(|a, b| a.name.cmp(&b.name));
    tree
}

fn read_jail(
    tree: &mut Tree,
    cfg: &mut Config,
    reader: &mut Reader,
    dir: &Path,
    name: &str,
    own: &Arc<Vec<IpAddr>>,
) {
    let mut errs = Vec::new();
    let first = get_options(cfg, name, &["enabled", "backend", "filter"], &mut errs);
    let enabled = get(&first, "enabled").is_some_and(as_bool);
    if !enabled {
        tree.disabled.push(name.to_string());
        return;
    }
    let jerr = |m: String| format!("jail [{name}]: {m}");
    if !errs.is_empty() {
        tree.errors.extend(errs);
        return;
    }
    let backend = get(&first, "backend").unwrap_or("auto").to_string();
    let filter_ref = get(&first, "filter").unwrap_or("").trim().to_string();
    // The filter, read with the jail's first options; its options become
    // known/... of the jail.
    let mut filter_reader = None;
    let mut fname = String::new();
    if !filter_ref.is_empty() {
        let fopts = match tags::extract_options(&filter_ref) {
            Ok(o) => o,
            Err(e) => {
                tree.errors
                    .push(jerr(format!("filter {filter_ref:?}: {e}")));
                return;
            }
        };
        fname = fopts.name.clone();
        if fname != "recidive" {
            let init: Opts = fopts
                .options
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let Some(mut r) = DefReader::read(reader, dir, "filter.d", &fname, init) else {
                tree.errors.push(jerr(format!(
                    "no filter {}",
                    dir.join("filter.d").join(format!("{fname}.conf")).display()
                )));
                return;
            };
            if get(&r.init, "logtype").is_none()
                && !r.cfg.options("Definition").iter().any(|o| o == "logtype")
            {
                let lt = if backend.starts_with("systemd") {
                    "journal"
                } else {
                    "file"
                };
                set(&mut r.init, "logtype", lt.into());
            }
            r.get_options(&first, FILTER_KEYS, true);
            match r.combined(&[]) {
                Ok(c) => cfg.merge_section(name, &c, "known/"),
                Err(e) => {
                    tree.errors
                        .push(jerr(format!("{}: {e}", r.origin.display())));
                    return;
                }
            }
            filter_reader = Some(r);
        }
    }
    let mut opts = get_options(cfg, name, JAIL_KEYS, &mut errs);
    for (k, _) in FILTER_KEYS.iter().map(|k| (k, ())) {
        if let Ok(v) = cfg.get(name, k, &[]) {
            set(&mut opts, k, v);
        }
    }
    if !errs.is_empty() {
        tree.errors.extend(errs);
        return;
    }
    for k in [
        "logpath",
        "backend",
        "logencoding",
        "logtimezone",
        "journalmatch",
        "maxmatches",
        "ignorecache",
    ] {
        if let Some(v) = get(&opts, k) {
            tracing::debug!(
                jail = name,
                option = k,
                value = v,
                "fail2ban option does not apply in-stream; ignored"
            );
        }
    }
    if let Some(f) = get(&opts, "bantime.formula") {
        if !f.trim().is_empty() {
            tree.warnings.push(jerr(format!(
                "bantime.formula is not supported (a Python expression); the bantime.factor / bantime.multipliers growth applies: {f:?}"
            )));
        }
    }
    // Filter, read again with every jail option.
    let kind = if fname == "recidive" {
        JailKind::Recidive
    } else if let Some(mut r) = filter_reader {
        r.get_options(&opts, FILTER_KEYS, false);
        let fr = match filter_def(&r, &fname, Some(&opts)) {
            Ok(f) => f,
            Err(e) => {
                tree.errors
                    .push(jerr(format!("{}: {e}", r.origin.display())));
                return;
            }
        };
        if !fr.errors.is_empty() {
            tree.errors.extend(fr.errors.into_iter().map(&jerr));
            return;
        }
        tree.warnings.extend(fr.warnings);
        match Matcher::compile(fr.def) {
            Ok(m) => JailKind::Filter(Arc::new(Filter::from_fail2ban(m))),
            Err(es) => {
                tree.errors.extend(es.iter().map(|e| jerr(e.to_string())));
                return;
            }
        }
    } else {
        tree.errors.push(jerr("has no filter".into()));
        return;
    };
    match build_jail(cfg, reader, dir, name, &opts, kind, own, &filter_ref) {
        Ok((j, warnings)) => {
            tree.warnings.extend(warnings.into_iter().map(&jerr));
            tree.jails.push(j);
        }
        Err(es) => tree.errors.extend(es.into_iter().map(&jerr)),
    }
}

#[allow(clippy::too_many_arguments)]
fn build_jail(
    cfg: &Config,
    reader: &mut Reader,
    dir: &Path,
    name: &str,
    opts: &Opts,
    kind: JailKind,
    own: &Arc<Vec<IpAddr>>,
    filter_ref: &str,
) -> Result<(JailSettings, Vec<String>), Vec<String>> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let jname = match JailName::new(name) {
        Ok(n) => n,
        Err(e) => return Err(vec![e]),
    };
    let time = |k: &str, default: u64, errors: &mut Vec<String>| -> TimeSpec {
        match get(opts, k) {
            Some(v) if !v.trim().is_empty() => TimeSpec::parse(v).unwrap_or_else(|e| {
                errors.push(format!("{k}: {e}"));
                TimeSpec::Finite(Duration::from_secs(default))
            }),
            _ => TimeSpec::Finite(Duration::from_secs(default)),
        }
    };
    let maxretry = match get(opts, "maxretry").map(|v| v.trim().parse::<u32>()) {
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            errors.push(format!(
                "maxretry {:?} must be a whole number above zero",
                get(opts, "maxretry").unwrap_or("")
            ));
            3
        }
        None => 3,
    };
    let findtime = match time("findtime", 600, &mut errors) {
        TimeSpec::Finite(d) => d,
        TimeSpec::Forever => {
            errors.push("findtime cannot be forever".into());
            Duration::from_secs(600)
        }
    };
    let bantime = time("bantime", 600, &mut errors);
    let optional_time = |k: &str, errors: &mut Vec<String>| -> Option<Duration> {
        get(opts, k)
            .filter(|v| !v.trim().is_empty())
            .and_then(|v| match TimeSpec::parse(v) {
                Ok(t) => t.finite(),
                Err(e) => {
                    errors.push(format!("{k}: {e}"));
                    None
                }
            })
    };
    let factor = match get(opts, "bantime.factor").filter(|v| !v.trim().is_empty()) {
        Some(v) => match v.trim().parse::<f64>() {
            Ok(f) if f.is_finite() && f > 0.0 => f,
            _ => {
                errors.push(format!("bantime.factor {v:?} must be a positive number"));
                1.0
            }
        },
        None => 1.0,
    };
    let mut multipliers = Vec::new();
    for w in get(opts, "bantime.multipliers")
        .unwrap_or("")
        .split_whitespace()
    {
        match w.parse::<f64>() {
            Ok(v) if v >= 0.0 => multipliers.push(v),
            _ => errors.push(format!("bantime.multipliers: {w:?} is not a number")),
        }
    }
    let policy = BanTimePolicy {
        bantime,
        increment: get(opts, "bantime.increment").is_some_and(as_bool),
        factor,
        multipliers,
        maxtime: optional_time("bantime.maxtime", &mut errors),
        rndtime: optional_time("bantime.rndtime", &mut errors),
        overalljails: get(opts, "bantime.overalljails").is_some_and(as_bool),
    };
    let ignoreself = get(opts, "ignoreself").is_none_or(as_bool);
    let entries = splitwords(get(opts, "ignoreip").unwrap_or(""));
    let mut ignore = match IgnoreList::new(&entries, ignoreself.then(|| own.clone())) {
        Ok(l) => l,
        Err(e) => {
            errors.push(format!("ignoreip: {e}"));
            IgnoreList::default()
        }
    };
    if let Some(cmd) = get(opts, "ignorecommand").filter(|c| !c.trim().is_empty()) {
        match crate::jail::ignore::IgnoreCommand::parse(cmd) {
            Ok(c) => ignore = ignore.with_command(c),
            Err(e) => errors.push(format!("ignorecommand: {e}")),
        }
    }
    // port / protocol / chain are [DEFAULT] options the actions use.
    let raw = |k: &str| cfg.get(name, k, &[]).ok();
    let port_text = raw("port").unwrap_or_default();
    let ports = match PortSpec::parse(port_text.trim()) {
        Ok(p) => p,
        Err(e) => {
            errors.push(format!("port: {e}"));
            PortSpec::All
        }
    };
    let protocol = match Protocol::parse(raw("protocol").as_deref().unwrap_or("tcp")) {
        Some(p) => p,
        None => {
            errors.push(format!(
                "protocol {:?} must be tcp, udp or all",
                raw("protocol").unwrap_or_default()
            ));
            Protocol::Tcp
        }
    };
    let chain = raw("chain")
        .filter(|c| !c.contains('<') && !c.trim().is_empty())
        .unwrap_or_else(|| "INPUT".into());
    let defaults = ActionDefaults {
        jail: jname.clone(),
        ports: ports.clone(),
        protocol,
        chain,
        blocktype: "REJECT".into(),
    };
    let mut actions = Vec::new();
    for act in tags::split_with_options(get(opts, "action").unwrap_or("")) {
        let act = act.trim();
        if act.is_empty() {
            continue;
        }
        let r = match tags::extract_options(act) {
            Ok(r) => r,
            Err(e) => {
                errors.push(format!("action {act:?}: {e}"));
                continue;
            }
        };
        if r.name.ends_with(".py") {
            errors.push(format!(
                "action {}: Python actions cannot run in banstream",
                r.name
            ));
            continue;
        }
        let mut init: Opts = r
            .options
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if get(&init, "name").is_none() {
            set(&mut init, "name", name.to_string());
        }
        let Some(mut ar) = DefReader::read(reader, dir, "action.d", &r.name, init) else {
            errors.push(format!(
                "no action {}",
                dir.join("action.d")
                    .join(format!("{}.conf", r.name))
                    .display()
            ));
            continue;
        };
        ar.get_options(opts, ACTION_KEYS, false);
        errors.extend(ar.errors.iter().cloned());
        let combined = match ar.combined(&[
            "matches",
            "ipmatches",
            "ipjailmatches",
            "timeout",
            "bantime",
        ]) {
            Ok(c) => merged(&c, &Vec::new()),
            Err(e) => {
                errors.push(format!("{}: {e}", ar.origin.display()));
                continue;
            }
        };
        match action::map(&r.name, &ar, &combined, &defaults) {
            Ok(action::Mapped::Action(a)) => actions.push(Arc::new(a)),
            Ok(action::Mapped::Skipped(w)) => warnings.push(w),
            Err(e) => errors.push(e),
        }
    }
    if actions.is_empty() && errors.is_empty() {
        warnings.push("no action runs for this jail: failures are counted and bans recorded, but nothing is blocked".into());
        actions.push(Arc::new(JailAction::log(&jname)));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let programs = match &kind {
        JailKind::Filter(f) => match f.program_pattern() {
            Some(re) => vec![crate::filter::fail2ban::program_label(re.as_str())],
            None => {
                warnings.push(format!(
                    "filter {filter_ref:?} is not anchored to a program (its regexes do not use %(__prefix_line)s), so any program's line can trigger it"
                ));
                Vec::new()
            }
        },
        JailKind::Recidive => Vec::new(),
    };
    if let JailKind::Filter(f) = &kind {
        if let Some(re) = f.program_pattern() {
            if re.is_match("banstream-any-program") {
                warnings.push(format!(
                    "filter {filter_ref:?}: its _daemon matches any program name, so any program's line can trigger it"
                ));
            }
        }
    }
    Ok((
        JailSettings {
            name: jname,
            enabled: true,
            filter_ref: filter_ref.to_string(),
            kind,
            programs,
            maxretry,
            findtime,
            policy,
            ignore,
            ports,
            protocol,
            actions,
            ipv6_prefix: 128,
            max_tracked: 100_000,
            uids: Vec::new(),
        },
        warnings,
    ))
}

/// `check`'s lines for the fail2ban jails: the filter file, the programs
/// the jail listens to, its backends, and the engine of each pattern.
pub fn report(
    out: &mut dyn std::io::Write,
    settings: &crate::config::Settings,
) -> std::io::Result<()> {
    for j in &settings.jails {
        let JailKind::Filter(f) = &j.kind else {
            continue;
        };
        let Some(m) = f.fail2ban() else { continue };
        let programs = match f.program_pattern() {
            Some(re) => format!("programs matching {}", re.as_str()),
            None => "every program".to_string(),
        };
        writeln!(
            out,
            "fail2ban jail {}: {} ({}); listens to {programs}; backends {}",
            j.name,
            m.def().origin,
            if m.is_multiline() {
                "multi-line, buffered per connection"
            } else if m.is_stateful() {
                "lines of a connection merged by <F-MLFID>"
            } else {
                "single-line"
            },
            j.actions
                .iter()
                .map(|a| match a.options.get("file") {
                    Some(file) => format!("{} ({file})", a.kind),
                    None => a.kind.clone(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        )?;
        for (role, p) in m.patterns() {
            writeln!(
                out,
                "  {role:<11} engine {:<11} {}",
                p.engine().to_string(),
                p.source
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_order_gives_fail2ban_precedence() {
        // A filter's [Init] maxlines is sent after the jail's, so it wins
        // (the field guide's `maxlines = 3` on alpine-sshd ends up 10);
        // failregex lines accumulate; datepattern: the jail's, sent last.
        let mut stream = Vec::new();
        let filter: Opts = vec![
            ("maxlines".into(), "10".into()),
            ("failregex".into(), "a <HOST>\n\nb <HOST>".into()),
            ("datepattern".into(), "{^LN-BEG}".into()),
        ];
        let jail: Opts = vec![
            ("usedns".into(), "no".into()),
            ("maxlines".into(), "3".into()),
            ("datepattern".into(), "{NONE}".into()),
        ];
        fill_stream(&mut stream, &filter);
        fill_stream(&mut stream, &jail);
        let last = |k: &str| {
            stream
                .iter()
                .rev()
                .find(|(x, _)| x == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(last("maxlines"), Some("10"));
        assert_eq!(last("usedns"), Some("no"));
        assert_eq!(last("datepattern"), Some("{NONE}"));
        assert_eq!(stream.iter().filter(|(k, _)| k == "failregex").count(), 2);
    }

    #[test]
    fn labels_and_words() {
        use crate::filter::fail2ban::program_label;
        assert_eq!(
            program_label(r"^[\[\(]?(?:sshd)(?:\(\S+\))?[\]\)]?$"),
            "sshd"
        );
        assert_eq!(
            program_label(r"^[\[\(]?(?:\S+)(?:\(\S+\))?[\]\)]?$"),
            r"~\S+"
        );
        assert_eq!(
            splitwords("127.0.0.1/8 ::1,\n 10.0.0.0/8"),
            ["127.0.0.1/8", "::1", "10.0.0.0/8"]
        );
        assert!(as_bool("True") && as_bool("yes") && !as_bool("false") && !as_bool(""));
    }
}
