//! What the CLI prints: client commands over the control socket, `check`,
//! `test-filter` and `replay`. `main.rs` only parses arguments and calls these.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::config::{self, ConfigError, LoadOptions, Settings};
use crate::control::{client, Request, Response};
use crate::tools::{replay, test_filter};

/// Exit code when the daemon refused the request.
pub const EXIT_REFUSED: i32 = 1;
/// Exit code when the daemon is not running.
pub const EXIT_NOT_RUNNING: i32 = 3;

/// Finds the control socket: `--socket`, else the configuration's.
pub fn socket_path(socket: Option<&Path>, load: &LoadOptions) -> Result<PathBuf, String> {
    if let Some(s) = socket {
        return Ok(s.to_path_buf());
    }
    let loaded = config::load(load).map_err(|e| e.to_string())?;
    // Only paths are needed: skip compiling filters.
    let raw = &loaded.raw;
    let runtime = raw
        .paths
        .runtime_dir
        .clone()
        .unwrap_or_else(config::paths::default_runtime_dir);
    Ok(config::paths::under(
        &runtime,
        raw.control
            .socket
            .as_deref()
            .unwrap_or(Path::new("banstream.sock")),
    ))
}

/// Sends a request; prints a one-line reason and returns the exit code on failure.
pub fn ask(socket: &Path, req: &Request) -> Result<Value, i32> {
    let timeout = if matches!(req, Request::Reload) {
        Duration::from_secs(120)
    } else {
        Duration::from_secs(30)
    };
    match client::call(socket, req, timeout) {
        Ok(Response { ok: true, data, .. }) => Ok(data),
        Ok(Response { error, .. }) => {
            eprintln!(
                "banstream: {}",
                error.unwrap_or_else(|| "request refused".into())
            );
            Err(EXIT_REFUSED)
        }
        Err(e @ client::ClientError::NotRunning { .. }) => {
            eprintln!("banstream: {e}");
            Err(EXIT_NOT_RUNNING)
        }
        Err(e) => {
            eprintln!("banstream: {e}");
            Err(EXIT_REFUSED)
        }
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(x) => x.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn list(v: &Value) -> String {
    v.as_array()
        .map(|a| a.iter().map(s).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

/// Prints `status` (all jails) the way fail2ban-client does, plus more.
pub fn print_status_all(out: &mut dyn Write, v: &Value) -> std::io::Result<()> {
    let jails = v["jails"].as_array().cloned().unwrap_or_default();
    let running: Vec<&Value> = jails.iter().filter(|j| j["enabled"] != false).collect();
    writeln!(out, "Status")?;
    writeln!(out, "|- Number of jail:      {}", running.len())?;
    writeln!(
        out,
        "|- Jail list:           {}",
        running
            .iter()
            .map(|j| s(&j["name"]))
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    writeln!(out, "|- Bans in force:       {}", s(&v["bans_active"]))?;
    if v["dry_run"] == true {
        writeln!(out, "|- Dry run:             yes (every action is `log`)")?;
    }
    writeln!(out, "`- Jails")?;
    for (i, j) in jails.iter().enumerate() {
        let last = i + 1 == jails.len();
        let (a, b) = if last { ("`-", "   ") } else { ("|-", "|  ") };
        if j["enabled"] == false {
            writeln!(out, "   {a} {:<20} disabled", s(&j["name"]))?;
            continue;
        }
        writeln!(
            out,
            "   {a} {:<20} failed {:>6} (total {:>8})  banned {:>6} (total {:>8})",
            s(&j["name"]),
            s(&j["currently_failed"]),
            s(&j["total_failed"]),
            s(&j["currently_banned"]),
            s(&j["total_banned"])
        )?;
        writeln!(
            out,
            "   {b}   filter: {}  programs: {}  actions: {}",
            s(&j["filter"]),
            list(&j["programs"]),
            list(&j["actions"])
        )?;
    }
    Ok(())
}

fn secs(v: &Value) -> String {
    match v.as_u64() {
        None => "permanent".into(),
        Some(x) if x >= 86400 => format!("{}d{:02}h", x / 86400, (x % 86400) / 3600),
        Some(x) if x >= 3600 => format!("{}h{:02}m", x / 3600, (x % 3600) / 60),
        Some(x) if x >= 60 => format!("{}m{:02}s", x / 60, x % 60),
        Some(x) => format!("{x}s"),
    }
}

/// Prints `status JAIL`: fail2ban's fields, then rates, offenders, and per
/// ban the time left and the last lines that counted.
pub fn print_status_jail(out: &mut dyn Write, v: &Value) -> std::io::Result<()> {
    let rate = &v["failures_per_minute"];
    writeln!(out, "Status for the jail: {}", s(&v["name"]))?;
    writeln!(out, "|- Filter")?;
    writeln!(out, "|  |- Filter:              {}", s(&v["filter"]))?;
    writeln!(out, "|  |- Programs:            {}", list(&v["programs"]))?;
    writeln!(
        out,
        "|  |- Currently failed:    {}",
        s(&v["currently_failed"])
    )?;
    writeln!(out, "|  |- Total failed:        {}", s(&v["total_failed"]))?;
    writeln!(
        out,
        "|  |- Failures per minute: {} now, {:.1} (10m avg), {:.1} (1h avg)",
        s(&rate["1m"]),
        rate["10m"].as_f64().unwrap_or(0.0),
        rate["60m"].as_f64().unwrap_or(0.0)
    )?;
    writeln!(
        out,
        "|  |- Unattributed:        {}  (ignored: {})",
        s(&v["unattributed"]),
        s(&v["ignored"])
    )?;
    writeln!(
        out,
        "|  `- Top offenders:       {}",
        v["top"]
            .as_array()
            .map(|a| a
                .iter()
                .map(|o| format!("{} ({})", s(&o["ip"]), s(&o["count"])))
                .collect::<Vec<_>>()
                .join(", "))
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "-".into())
    )?;
    writeln!(out, "`- Actions")?;
    writeln!(out, "   |- Actions:             {}", list(&v["actions"]))?;
    writeln!(
        out,
        "   |- Policy:              maxretry {} in {}, bantime {}",
        s(&v["maxretry"]),
        secs(&v["findtime"]),
        if v["bantime"].as_i64() == Some(-1) {
            "permanent".to_string()
        } else {
            secs(&v["bantime"])
        }
    )?;
    writeln!(
        out,
        "   |- Currently banned:    {}",
        s(&v["currently_banned"])
    )?;
    writeln!(out, "   |- Total banned:        {}", s(&v["total_banned"]))?;
    let banned = v["banned"].as_array().cloned().unwrap_or_default();
    writeln!(
        out,
        "   `- Banned IP list:      {}",
        banned
            .iter()
            .map(|b| s(&b["ip"]))
            .collect::<Vec<_>>()
            .join(" ")
    )?;
    for b in &banned {
        let left = match b["remaining"].as_u64() {
            Some(_) => format!("{} left", secs(&b["remaining"])),
            None => "permanent".into(),
        };
        writeln!(
            out,
            "        {:<40} {left}, {} failures, ban #{}",
            s(&b["ip"]),
            s(&b["failures"]),
            s(&b["ban_count"])
        )?;
        for l in b["lines"].as_array().cloned().unwrap_or_default() {
            let t = l["time"]
                .as_u64()
                .map(|t| replay::rfc3339(std::time::UNIX_EPOCH + Duration::from_secs(t)))
                .unwrap_or_default();
            writeln!(out, "          {t}  {}", s(&l["line"]))?;
        }
    }
    Ok(())
}

/// Prints the answer to `ban`.
pub fn print_ban(out: &mut dyn Write, v: &Value) -> std::io::Result<()> {
    let exp = v["expires"]
        .as_u64()
        .map_or("permanently".to_string(), |e| {
            format!(
                "until {}",
                replay::rfc3339(std::time::UNIX_EPOCH + Duration::from_secs(e))
            )
        });
    writeln!(out, "banned {} in {} {exp}", s(&v["ip"]), s(&v["jail"]))
}

/// The request for `unban [JAIL] ADDR | --all [JAIL]`, or a usage error.
pub fn unban_request(args: &[String], all: bool) -> Result<Request, String> {
    let usage = "usage: unban ADDR | unban JAIL ADDR | unban --all [JAIL]";
    Ok(match (all, args) {
        (true, []) => Request::Unban {
            jail: None,
            ip: None,
            all: true,
        },
        (true, [j]) => Request::Unban {
            jail: Some(j.clone()),
            ip: None,
            all: true,
        },
        (false, [ip]) => Request::Unban {
            jail: None,
            ip: Some(ip.clone()),
            all: false,
        },
        (false, [j, ip]) => Request::Unban {
            jail: Some(j.clone()),
            ip: Some(ip.clone()),
            all: false,
        },
        _ => return Err(usage.into()),
    })
}

/// Prints the answer to `unban`.
pub fn print_unban(out: &mut dyn Write, v: &Value) -> std::io::Result<()> {
    let n = v["unbanned"].as_u64().unwrap_or(0);
    match v["jails"].as_array() {
        Some(j) if !j.is_empty() => writeln!(out, "unbanned {n} ban(s): {}", list(&v["jails"])),
        _ => writeln!(out, "unbanned {n} ban(s)"),
    }
}

/// Prints `banned` as a table.
pub fn print_banned(out: &mut dyn Write, v: &Value) -> std::io::Result<()> {
    let items = v.as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        return writeln!(out, "no bans in force");
    }
    writeln!(out, "{:<20} {:<40} expires", "jail", "address")?;
    for b in items {
        let exp = b["expires"].as_u64().map_or("permanent".to_string(), |e| {
            replay::rfc3339(std::time::UNIX_EPOCH + Duration::from_secs(e))
        });
        writeln!(out, "{:<20} {:<40} {exp}", s(&b["jail"]), s(&b["ip"]))?;
    }
    Ok(())
}

/// Prints the answer to `reload`.
pub fn print_reload(out: &mut dyn Write, v: &Value) -> std::io::Result<()> {
    writeln!(out, "reloaded: {} jail(s) running", s(&v["jails"]))?;
    if v["superseded"].as_bool() == Some(true) {
        writeln!(
            out,
            "  a reload asked for after this one, which read the configuration later, is in force"
        )?;
    }
    for (key, what) in [
        ("added", "added"),
        ("removed", "removed (their bans lifted)"),
        ("actions_changed", "actions changed (bans moved)"),
    ] {
        if v[key].as_array().is_some_and(|a| !a.is_empty()) {
            writeln!(out, "  {what}: {}", list(&v[key]))?;
        }
    }
    for w in v["warnings"].as_array().cloned().unwrap_or_default() {
        writeln!(out, "  warning: {}", s(&w))?;
    }
    if v["restart_needed"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        writeln!(
            out,
            "  restart needed for: {} (the running values stay until then)",
            list(&v["restart_needed"])
        )?;
    }
    Ok(())
}

/// `banstream check`: loads and compiles everything; prints every error
/// (file:line or key, and the reason) and every warning. Returns the exit
/// code: 0 when the configuration can run (warnings or not), 1 otherwise.
pub fn check(load: &LoadOptions, out: &mut dyn Write) -> i32 {
    let loaded = match config::load(load) {
        Ok(l) => l,
        Err(e) => {
            let errors = load_errors(e);
            print_errors(out, &errors);
            return 1;
        }
    };
    match config::resolve::resolve(&loaded) {
        Err(e) => {
            let mut errors = Vec::new();
            flatten(e, &mut errors);
            let located: Vec<String> = errors
                .iter()
                .map(|e| locate_error(&loaded.layers, e))
                .collect();
            print_errors(out, &located);
            1
        }
        Ok(settings) => {
            let _ = config::fail2ban::report(out, &settings);
            print_check_ok(out, &settings);
            0
        }
    }
}

fn print_errors(out: &mut dyn Write, errors: &[String]) {
    for e in errors {
        let mut lines = e.lines();
        if let Some(first) = lines.next() {
            let _ = writeln!(out, "error: {first}");
        }
        for l in lines {
            let _ = writeln!(out, "       {l}");
        }
    }
    let _ = writeln!(
        out,
        "{} error(s); the configuration cannot run",
        errors.len()
    );
}

fn flatten(e: ConfigError, out: &mut Vec<ConfigError>) {
    match e {
        ConfigError::Many(v) => v.into_iter().for_each(|e| flatten(e, out)),
        e => out.push(e),
    }
}

/// Every error of the files that failed to load. TOML stops at a file's
/// first error, so each failing file is read again with the offending line
/// blanked, until it loads or the next error is a syntax error (which
/// makes what follows unreliable).
fn load_errors(e: ConfigError) -> Vec<String> {
    let mut flat = Vec::new();
    flatten(e, &mut flat);
    let mut out = Vec::new();
    for e in flat {
        match &e {
            ConfigError::Parse { origin, line, .. } if *line > 0 => {
                match std::fs::read_to_string(origin) {
                    Ok(text) => out.extend(all_parse_errors(origin, &text)),
                    Err(_) => out.push(e.to_string()),
                }
            }
            _ => out.push(e.to_string()),
        }
    }
    out
}

/// The errors of one file, found one after the other, in line order.
pub fn all_parse_errors(origin: &str, text: &str) -> Vec<String> {
    let original = text;
    let mut text = text.to_string();
    let mut out: Vec<(usize, String)> = Vec::new();
    for _ in 0..200 {
        let e = match config::parse_layer(origin, &text) {
            Ok(_) => break,
            Err(e) => e,
        };
        let (line, mut msg) = match &e {
            ConfigError::Parse {
                line,
                column,
                message,
                ..
            } => {
                let key = key_on_line(original, *line);
                let msg = match key {
                    Some(k) if !message.contains('`') => {
                        format!("{origin}:{line}:{column}: {k}: {message}")
                    }
                    _ => e.to_string(),
                };
                (*line, msg + &explain(original, *line, message))
            }
            _ => (0, e.to_string()),
        };
        if out.iter().any(|(_, m)| *m == msg) {
            break;
        }
        if msg.is_empty() {
            msg = "unreadable".into();
        }
        out.push((line, msg));
        // A syntax error cannot be stepped over safely.
        if line == 0 || text.parse::<toml::Table>().is_err() {
            break;
        }
        text = blank_line(&text, line);
        if text.parse::<toml::Table>().is_err() {
            break;
        }
    }
    out.sort_by_key(|(l, _)| *l);
    out.into_iter().map(|(_, m)| m).collect()
}

/// The key set on line `n`, if the line is `key = value`.
fn key_on_line(text: &str, n: usize) -> Option<String> {
    let l = text.lines().nth(n.checked_sub(1)?)?.trim();
    if l.starts_with('[') || l.starts_with('#') {
        return None;
    }
    let (k, _) = l.split_once('=')?;
    let k = k.trim().trim_matches('"').trim_matches('\'');
    (!k.is_empty()).then(|| k.to_string())
}

/// Adds what TOML leaves out of some messages (which key is duplicated).
fn explain(text: &str, line: usize, message: &str) -> String {
    if !message.starts_with("duplicate key") {
        return String::new();
    }
    let l = text
        .lines()
        .nth(line.saturating_sub(1))
        .unwrap_or("")
        .trim();
    if l.starts_with("[jail.") {
        format!(": {l} is defined twice in this file (a later file may override it key by key, but one file defines a jail once)")
    } else {
        format!(": {l}")
    }
}

/// Blanks line `n` (1-based); a table header is blanked with its keys.
fn blank_line(text: &str, n: usize) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_blanked_table = false;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        let header = l.trim_start().starts_with('[');
        if header {
            in_blanked_table = false;
        }
        if i + 1 == n {
            in_blanked_table = header;
        }
        if i + 1 == n || in_blanked_table {
            if l.ends_with('\n') {
                out.push('\n');
            }
        } else {
            out.push_str(l);
        }
    }
    out
}

/// Prefixes a resolve error (`jail.sshd.port: ...`) with the file and line
/// that set the key, when a layer sets it.
fn locate_error(layers: &[config::Layer], e: &ConfigError) -> String {
    let ConfigError::Invalid { origin, .. } = e else {
        return e.to_string();
    };
    match locate_key(layers, origin) {
        Some((file, line)) => format!("{file}:{line}: {e}"),
        None => e.to_string(),
    }
}

/// Finds where a key such as `jail.sshd.port`, `jail.sshd.bantime.factor`
/// or `listen.udp[0]` is set: the last layer that sets it wins, as in the
/// merge. A jail key set nowhere in the jail is looked for in `[defaults]`.
pub fn locate_key(layers: &[config::Layer], key: &str) -> Option<(String, usize)> {
    let key = key.split('[').next().unwrap_or(key);
    let (section, leaf): (Vec<&str>, &str) = match key.strip_prefix("jail.") {
        Some(rest) => {
            let (name, leaf) = rest.split_once('.').unwrap_or((rest, ""));
            (vec!["jail", name], leaf)
        }
        None => {
            let (sec, leaf) = key.split_once('.').unwrap_or((key, ""));
            (vec![sec], leaf)
        }
    };
    let find = |section: &[&str], leaf: &str| {
        layers
            .iter()
            .rev()
            .find_map(|l| find_in(&l.text, section, leaf).map(|n| (l.origin.clone(), n)))
    };
    // `action` errors may come from `banaction`.
    let leaves: &[&str] = if leaf == "action" {
        &["action", "banaction"]
    } else {
        std::slice::from_ref(&leaf)
    };
    leaves.iter().find_map(|leaf| {
        find(&section, leaf).or_else(|| {
            (section[0] == "jail" && !leaf.is_empty())
                .then(|| find(&["defaults"], leaf))
                .flatten()
        })
    })
}

fn header_matches(line: &str, section: &[&str]) -> bool {
    let t = line.trim();
    let Some(inner) = t.strip_prefix('[').and_then(|x| x.split(']').next()) else {
        return false;
    };
    if t.starts_with("[[") {
        return false;
    }
    let parts: Vec<String> = inner
        .split('.')
        .map(|p| p.trim().trim_matches('"').trim_matches('\'').to_string())
        .collect();
    parts.len() == section.len() && parts.iter().zip(section).all(|(a, b)| a == b)
}

fn find_in(text: &str, section: &[&str], leaf: &str) -> Option<usize> {
    let mut inside = false;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if t.starts_with('[') {
            inside = header_matches(t, section);
            if inside && leaf.is_empty() {
                return Some(i + 1);
            }
            continue;
        }
        if !inside || leaf.is_empty() {
            continue;
        }
        let k = t.split('=').next().unwrap_or("").trim();
        let k = k.trim_matches('"').trim_matches('\'');
        if t.contains('=') && k == leaf {
            return Some(i + 1);
        }
    }
    None
}

fn print_check_ok(out: &mut dyn Write, s: &Settings) {
    for w in &s.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    if !s.warnings.is_empty() {
        let _ = writeln!(
            out,
            "{} warning(s); the configuration can run",
            s.warnings.len()
        );
    }
    let _ = writeln!(out, "configuration: {}", s.sources.join(" + "));
    for j in &s.jails {
        let kind = match &j.kind {
            config::resolve::JailKind::Recidive => "recidive (fed by bans)".to_string(),
            config::resolve::JailKind::Filter(f) => format!("{} failregex", f.failregex_count()),
        };
        let _ = writeln!(
            out,
            "jail {:<20} {:<8} filter {} ({kind}); programs [{}]; maxretry {} findtime {}s bantime {}; actions [{}]",
            j.name.as_str(),
            if j.enabled { "enabled" } else { "disabled" },
            j.filter_ref,
            j.programs.join(", "),
            j.maxretry,
            j.findtime.as_secs(),
            j.policy.bantime,
            j.actions.iter().map(|a| a.kind.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    let _ = writeln!(out, "OK");
}

/// Opens INPUT for `test-filter`: `-` is stdin, an existing file is read,
/// and anything else with a space in it is one literal log line. A single
/// word that is not a file is an error (a mistyped path, not a log line).
fn open_input(input: &str) -> Result<Box<dyn std::io::Read>, String> {
    if input == "-" {
        return Ok(Box::new(std::io::stdin()));
    }
    let p = Path::new(input);
    if p.is_file() {
        return std::fs::File::open(p)
            .map(|f| Box::new(f) as Box<dyn std::io::Read>)
            .map_err(|e| format!("{input}: {e}"));
    }
    if p.exists() {
        return Err(format!("{input}: not a regular file"));
    }
    if !input.trim().contains(char::is_whitespace) {
        return Err(format!(
            "{input}: no such file (a literal log line must be quoted as one argument)"
        ));
    }
    Ok(Box::new(std::io::Cursor::new(
        format!("{input}\n").into_bytes(),
    )))
}

/// The filter directories of the configuration, for `test-filter`. A broken
/// `-c FILE` is an error; a broken system configuration only a warning
/// (test-filter is what one runs while fixing it).
fn filter_dirs_for(load: &LoadOptions) -> Result<Vec<PathBuf>, String> {
    match config::load(load) {
        Ok(l) => Ok(config::resolve::filter_dirs(&l)),
        Err(e) if load.file.is_some() => Err(e.to_string()),
        Err(e) => {
            eprintln!("banstream: warning: ignoring the system configuration: {e}");
            Ok(vec![PathBuf::from("/etc/banstream/filters")])
        }
    }
}

/// `banstream test-filter FILTER INPUT`. Returns the exit code: 0 when the
/// run completed (whatever matched), 1 on a bad filter or unreadable input.
pub fn test_filter(
    load: &LoadOptions,
    spec: &str,
    input: &str,
    json: bool,
    show: test_filter::Show,
    programs: &[String],
) -> i32 {
    let fail = |e: String| {
        eprintln!("banstream: {e}");
        1
    };
    let dirs = match filter_dirs_for(load) {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    let filter = match test_filter::load_filter(spec, &dirs) {
        Ok(f) => f,
        Err(e) => return fail(e.to_string()),
    };
    let reader = match open_input(input) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let programs = match programs {
        [] => None,
        [star] if star == "*" => Some(Vec::new()),
        list => Some(list.to_vec()),
    };
    let routed = programs
        .clone()
        .unwrap_or_else(|| filter.programs().to_vec());
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut write_error = None;
    let mut line_buf = Vec::with_capacity(64);
    let report = test_filter::run(&filter, programs, reader, |r, line| {
        let res = if json {
            // Serialised apart so a closed pipe keeps its error kind.
            line_buf.clear();
            serde_json::to_writer(&mut line_buf, r)
                .map_err(std::io::Error::other)
                .and_then(|()| {
                    line_buf.push(b'\n');
                    out.write_all(&line_buf)
                })
        } else {
            test_filter::print_line(&mut out, show, r, line)
        };
        match res {
            Ok(()) => true,
            Err(e) => {
                write_error.get_or_insert(e);
                false
            }
        }
    });
    let report = match report {
        Ok(r) => r,
        Err(e) => return fail(format!("reading {input}: {e}")),
    };
    if !json && write_error.is_none() {
        let _ = test_filter::print_report(&mut out, &filter, spec, &routed, &report);
    }
    match write_error.map_or_else(|| out.flush(), Err) {
        // A closed pipe (`| head`) is not an error worth a message.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => fail(format!("writing output: {e}")),
        Ok(()) => 0,
    }
}

/// `banstream replay [-c FILE] LOGFILE`. Returns the exit code: 0 after a
/// complete replay, 1 on a configuration or read error.
pub fn replay(load: &LoadOptions, logfile: &str, opts: &replay::Options) -> i32 {
    let fail = |e: String| {
        eprintln!("banstream: {e}");
        1
    };
    let settings = match config::load(load).and_then(|l| config::resolve::resolve(&l)) {
        Ok(s) => s,
        Err(e) => return fail(format!("configuration error:\n{e}")),
    };
    let (input, anchor): (Box<dyn std::io::Read + Send>, SystemTime) = if logfile == "-" {
        (Box::new(std::io::stdin()), SystemTime::now())
    } else {
        match std::fs::File::open(logfile) {
            Ok(f) => {
                let mtime = f
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or_else(|_| SystemTime::now());
                (Box::new(f), mtime)
            }
            Err(e) => return fail(format!("{logfile}: {e}")),
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let json = opts.json;
    let show_unbans = opts.unbans;
    // One line buffer for the ban lines: a replay can print a great many.
    let mut line = String::with_capacity(160);
    let result = replay::replay(&settings, input, anchor, opts, |h| {
        let _ = match h {
            replay::Happening::Ban(b) if json => writeln!(
                out,
                "{}",
                serde_json::json!({
                    "jail": b.jail.as_str(),
                    "ip": b.ip.to_string(),
                    "time": crate::engine::unix(b.start),
                })
            ),
            replay::Happening::Ban(b) => {
                // "{time}  Ban    {jail:<20} {ip:<39} {n} failures, ...",
                // padded by hand (the formatter pads through a slow path).
                use std::fmt::Write as _;
                let pad = |line: &mut String, from: usize, width: usize| {
                    let n = line[from..].chars().count();
                    line.extend(std::iter::repeat_n(' ', width.saturating_sub(n)));
                };
                line.clear();
                replay::push_rfc3339(&mut line, b.start);
                line.push_str("  Ban    ");
                let at = line.len();
                line.push_str(b.jail.as_str());
                pad(&mut line, at, 20);
                line.push(' ');
                let at = line.len();
                let _ = write!(line, "{}", b.ip);
                pad(&mut line, at, 39);
                let _ = writeln!(
                    line,
                    " {} failures, bantime {}, ban #{}",
                    b.failures, b.bantime, b.ban_count
                );
                out.write_all(line.as_bytes())
            }
            replay::Happening::Unban(b, _, at) if show_unbans && json => writeln!(
                out,
                "{}",
                serde_json::json!({
                    "jail": b.jail.as_str(),
                    "ip": b.ip.to_string(),
                    "time": crate::engine::unix(at),
                    "unban": true,
                })
            ),
            replay::Happening::Unban(b, why, at) if show_unbans => writeln!(
                out,
                "{}  Unban  {:<20} {:<39} {why:?}",
                replay::rfc3339(at),
                b.jail.as_str(),
                b.ip
            ),
            replay::Happening::Unban(..) => Ok(()),
        };
    });
    let s = match result {
        Ok(s) => s,
        Err(e) => return fail(format!("reading {logfile}: {e}")),
    };
    let _ = if json {
        writeln!(
            out,
            "{}",
            serde_json::json!({"summary": {"lines": s.lines, "failures": s.failures, "bans": s.bans}})
        )
    } else {
        print_replay_summary(&mut out, logfile, &s)
    };
    match out.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            fail(format!("writing output: {e}"))
        }
        _ => 0,
    }
}

fn print_replay_summary(
    out: &mut dyn Write,
    logfile: &str,
    s: &replay::Summary,
) -> std::io::Result<()> {
    writeln!(out)?;
    writeln!(
        out,
        "Replayed {logfile}: {} lines ({:.1} MB) in {:.3} s, {:.0} lines/s on {} matcher thread(s); applier {:.3} s CPU",
        s.lines,
        s.bytes as f64 / 1e6,
        s.elapsed,
        s.rate(),
        s.threads,
        s.apply_busy
    )?;
    if let (Some(a), Some(b)) = (s.first, s.last) {
        writeln!(
            out,
            "Clock (message time): {} .. {}",
            replay::rfc3339(a),
            replay::rfc3339(b)
        )?;
    }
    writeln!(
        out,
        "Failures: {}   Bans: {}   Expired: {}   In force at the end: {}",
        s.failures, s.bans, s.unbans, s.active_at_end
    )?;
    writeln!(
        out,
        "  {:<20} {:>10} {:>8} {:>13} {:>8}",
        "jail", "failures", "bans", "unattributed", "ignored"
    )?;
    for j in &s.jails {
        writeln!(
            out,
            "  {:<20} {:>10} {:>8} {:>13} {:>8}",
            j.jail, j.failures, j.bans, j.unattributed, j.ignored
        )?;
    }
    Ok(())
}
