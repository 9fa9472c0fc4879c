//! What the CLI prints: client commands over the control socket, `check`,
//! `test-filter` and `replay`. `main.rs` only parses arguments and calls these.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::config::{self, LoadOptions, Settings};
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
    writeln!(out, "Status")?;
    writeln!(out, "|- Number of jail:      {}", jails.len())?;
    writeln!(
        out,
        "|- Jail list:           {}",
        jails
            .iter()
            .map(|j| s(&j["name"]))
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    writeln!(out, "|- Bans in force:       {}", s(&v["bans_active"]))?;
    writeln!(out, "`- Jails")?;
    for (i, j) in jails.iter().enumerate() {
        let last = i + 1 == jails.len();
        let (a, b) = if last { ("`-", "   ") } else { ("|-", "|  ") };
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
            "   {b}   programs: {}  actions: {}",
            list(&j["programs"]),
            list(&j["actions"])
        )?;
    }
    Ok(())
}

/// Prints `status JAIL`.
pub fn print_status_jail(out: &mut dyn Write, v: &Value) -> std::io::Result<()> {
    writeln!(out, "Status for the jail: {}", s(&v["name"]))?;
    writeln!(out, "|- Filter")?;
    writeln!(out, "|  |- Filter:           {}", s(&v["filter"]))?;
    writeln!(out, "|  |- Programs:         {}", list(&v["programs"]))?;
    writeln!(out, "|  |- Currently failed: {}", s(&v["currently_failed"]))?;
    writeln!(out, "|  |- Total failed:     {}", s(&v["total_failed"]))?;
    writeln!(out, "|  |- Unattributed:     {}", s(&v["unattributed"]))?;
    writeln!(
        out,
        "|  `- Top offenders:    {}",
        v["top"]
            .as_array()
            .map(|a| a
                .iter()
                .map(|o| format!("{} ({})", s(&o["ip"]), s(&o["count"])))
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default()
    )?;
    writeln!(out, "`- Actions")?;
    writeln!(out, "   |- Actions:          {}", list(&v["actions"]))?;
    writeln!(out, "   |- Currently banned: {}", s(&v["currently_banned"]))?;
    writeln!(out, "   |- Total banned:     {}", s(&v["total_banned"]))?;
    let banned = v["banned"].as_array().cloned().unwrap_or_default();
    writeln!(
        out,
        "   `- Banned IP list:   {}",
        banned
            .iter()
            .map(|b| s(&b["ip"]))
            .collect::<Vec<_>>()
            .join(" ")
    )?;
    for b in &banned {
        let left = match b["remaining"].as_u64() {
            Some(x) => format!("{x}s left"),
            None => "permanent".into(),
        };
        writeln!(
            out,
            "        {:<40} {left}, {} failures, ban #{}",
            s(&b["ip"]),
            s(&b["failures"]),
            s(&b["ban_count"])
        )?;
    }
    Ok(())
}

/// `banstream check`: loads and compiles everything; prints errors and warnings.
/// Returns the exit code.
pub fn check(load: &LoadOptions, out: &mut dyn Write) -> i32 {
    let loaded = match config::load(load) {
        Ok(l) => l,
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
            return 1;
        }
    };
    match config::resolve::resolve(&loaded) {
        Err(e) => {
            for line in e.to_string().lines() {
                let _ = writeln!(out, "error: {line}");
            }
            1
        }
        Ok(settings) => {
            print_check_ok(out, &settings);
            0
        }
    }
}

fn print_check_ok(out: &mut dyn Write, s: &Settings) {
    for w in &s.warnings {
        let _ = writeln!(out, "warning: {w}");
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
    let report = test_filter::run(&filter, programs, reader, |r, line| {
        let res = if json {
            serde_json::to_writer(&mut out, r)
                .map_err(std::io::Error::other)
                .and_then(|()| out.write_all(b"\n"))
        } else {
            test_filter::print_line(&mut out, show, r, line)
        };
        if let Err(e) = res {
            write_error.get_or_insert(e);
        }
    });
    let report = match report {
        Ok(r) => r,
        Err(e) => return fail(format!("reading {input}: {e}")),
    };
    if !json {
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
            replay::Happening::Ban(b) => writeln!(
                out,
                "{}  Ban    {:<20} {:<39} {} failures, bantime {}, ban #{}",
                replay::rfc3339(b.start),
                b.jail.as_str(),
                b.ip,
                b.failures,
                b.bantime,
                b.ban_count
            ),
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
        "Replayed {logfile}: {} lines ({:.1} MB) in {:.3} s, {:.0} lines/s on {} matcher thread(s)",
        s.lines,
        s.bytes as f64 / 1e6,
        s.elapsed,
        s.rate(),
        s.threads
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
