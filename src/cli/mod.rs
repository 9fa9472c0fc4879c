//! What the CLI prints: client commands over the control socket, `check`,
//! and `test-filter`. `main.rs` only parses arguments and calls these.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::config::{self, LoadOptions, Settings};
use crate::control::{client, Request, Response};

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
            let _ = config::fail2ban::report(out, &settings);
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
