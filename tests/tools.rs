//! Operator tools: `test-filter`, `replay`, `check`, `reload`, `status`,
//! `ban` / `unban` / `banned`. Output shapes, exit codes and error text on
//! bad input; reload keeping state and refusing a broken configuration;
//! replay agreeing with the daemon; the built-in filters agreeing with
//! fail2ban's own samples.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::{bin, fixture, Daemon, Opts, QUIET_DEFAULTS};
use crate::require;

fn run(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run banstream")
}

fn run_stdin(args: &[&str], input: &str) -> Output {
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn banstream");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_string();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let out = child.wait_with_output().expect("wait");
    let _ = writer.join();
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_lines(o: &Output) -> Vec<Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

/// A configuration directory: the main file quiets the default jails, the
/// test's jails go in `conf.d/50-test.toml`.
fn config_dir(jails: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("banstream.toml");
    std::fs::write(&main, QUIET_DEFAULTS).unwrap();
    std::fs::create_dir(dir.path().join("conf.d")).unwrap();
    std::fs::write(dir.path().join("conf.d/50-test.toml"), jails).unwrap();
    (dir, main)
}

// ---------------------------------------------------------------- test-filter

#[test]
fn test_filter_json_has_one_object_per_line_with_design_shape() {
    let f = fixture("tools-sshd.log");
    let out = run(&["test-filter", "sshd", f.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json_lines(&out);
    // 10 log lines; the 3 comment/blank lines are skipped but counted.
    assert_eq!(v.len(), 10, "{}", stdout(&out));
    for o in &v {
        let keys: Vec<&String> = o.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["host", "line", "match"], "DESIGN.md shape: {o}");
    }
    let by_line = |n: u64| v.iter().find(|o| o["line"] == n).unwrap().clone();
    assert_eq!(by_line(4)["host"], "203.0.113.9", "PRI + BusyBox line");
    assert_eq!(by_line(5)["host"], "2001:db8::5", "file line without PRI");
    assert_eq!(by_line(6)["host"], "203.0.113.10", "RFC 5424");
    assert_eq!(by_line(7)["match"], false, "an accepted login");
    assert_eq!(by_line(8)["match"], false, "cron is not routed to sshd");
    assert_eq!(by_line(8)["host"], Value::Null);
    assert_eq!(by_line(9)["match"], false, "helper line names the address");
    assert_eq!(
        by_line(10)["host"],
        "203.0.113.11",
        "session failure attributed"
    );
    assert_eq!(by_line(11)["match"], false, "pending: no address yet");
    assert_eq!(
        by_line(12)["host"],
        "203.0.113.12",
        "the pending failure counts when the address appears"
    );
    assert_eq!(by_line(13)["host"], "host.example.com", "a name, shown");
}

#[test]
fn test_filter_human_report_has_hits_totals_and_speed() {
    let f = fixture("tools-sshd.log");
    let out = run(&["test-filter", "sshd", f.to_str().unwrap(), "--show"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for needle in [
        "Failregex: 6 total",
        "Lines: 10 lines, 0 ignored, 6 matched, 4 missed",
        "1 from other programs",
        "lines/s",
        "Programs:  sshd, sshd-session",
    ] {
        assert!(text.contains(needle), "{needle:?} in\n{text}");
    }
    // --show prints each failure with its address.
    assert!(
        text.lines()
            .any(|l| l.contains("203.0.113.9") && l.contains("Failed password")),
        "{text}"
    );
    // Per-regex hit counts add up to the matched total.
    let hits: u64 = text
        .lines()
        .filter_map(|l| {
            let l = l.trim_start_matches(['|', ' ']);
            let rest = l.split_once(") [")?.1;
            rest.split(']').next()?.parse::<u64>().ok()
        })
        .sum();
    assert_eq!(hits, 6, "{text}");
}

#[test]
fn test_filter_reads_a_literal_line_stdin_a_filter_file_and_a_raw_regex() {
    let line =
        "<38>Nov 24 14:00:01 sshd[1]: Failed password for root from 203.0.113.9 port 4711 ssh2";
    let out = run(&["test-filter", "sshd[mode=aggressive]", line, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        json_lines(&out),
        vec![serde_json::json!({"line": 1, "match": true, "host": "203.0.113.9"})]
    );
    let out = run_stdin(
        &["test-filter", "sshd", "-", "--json"],
        &format!("\n{line}\n"),
    );
    assert_eq!(json_lines(&out)[0]["line"], 2);

    // A filter file, routed to its own program.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("myd.toml");
    std::fs::write(
        &file,
        "programs = [\"myd\"]\nfailregex = ['^bad login from <ADDR>$']\n",
    )
    .unwrap();
    let input = "Nov 24 14:00:01 myd[3]: bad login from 192.0.2.7\nNov 24 14:00:01 other[3]: bad login from 192.0.2.8\n";
    let out = run_stdin(
        &["test-filter", file.to_str().unwrap(), "-", "--json"],
        input,
    );
    let v = json_lines(&out);
    assert_eq!(
        (v[0]["match"].clone(), v[1]["match"].clone()),
        (true.into(), false.into())
    );
    // --program replaces the routing.
    let out = run_stdin(
        &[
            "test-filter",
            file.to_str().unwrap(),
            "-",
            "--json",
            "--program",
            "other",
        ],
        input,
    );
    let v = json_lines(&out);
    assert_eq!(
        (v[0]["match"].clone(), v[1]["match"].clone()),
        (false.into(), true.into())
    );

    // A raw regex reads every line.
    let out = run_stdin(
        &["test-filter", "bad login from <HOST>$", "-", "--json"],
        input,
    );
    let v = json_lines(&out);
    assert_eq!(v[1]["host"], "192.0.2.8");
}

#[test]
fn test_filter_errors_exit_1_with_a_reason() {
    let f = fixture("tools-sshd.log");
    let f = f.to_str().unwrap();
    for (args, needle) in [
        (
            vec!["test-filter", "nosuch", f],
            "unknown filter \"nosuch\"",
        ),
        (
            vec!["test-filter", "sshd[mode=turbo]", f],
            "no mode \"turbo\"",
        ),
        (vec!["test-filter", "sshd[mode=", f], "invalid reference"),
        (vec!["test-filter", "(bad <HOST>", f], "does not compile"),
        (vec!["test-filter", "^no placeholder$", f], "unknown filter"),
        (
            vec!["test-filter", "sshd", "/nonexistent/auth.log"],
            "no such file",
        ),
        (vec!["test-filter", "sshd", "/tmp"], "not a regular file"),
        (
            vec![
                "test-filter",
                "sshd",
                f,
                "-c",
                "/nonexistent/banstream.toml",
            ],
            "cannot read",
        ),
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stdout(&out));
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
    // No arguments: a usage error.
    assert_eq!(run(&["test-filter"]).status.code(), Some(2));
}

// ------------------------------------------------- fail2ban sample agreement

/// Where fail2ban's upstream samples live (Debian package `fail2ban`), or
/// `BANSTREAM_F2B_SAMPLES` (CI installs the fail2ban package with its service blocked).
fn samples_dir() -> PathBuf {
    std::env::var_os("BANSTREAM_F2B_SAMPLES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from("/usr/lib/python3/dist-packages/fail2ban/tests/files/logs")
        })
}

/// One annotated line.
struct Sample {
    line: String,
    matched: bool,
    /// `None` when the annotation does not say (then only `match` counts).
    host: Option<Value>,
}

/// The `test.condition` / `constraint` expressions the sample files use.
fn condition(expr: &str, name: &str, opts: &serde_json::Map<String, Value>) -> bool {
    let e: String = expr.chars().filter(|c| !c.is_whitespace()).collect();
    if let Some(v) = e.strip_prefix("name==") {
        return v.trim_matches('\'') == name;
    }
    for (op, eq) in [("==", true), ("!=", false)] {
        if let Some((lhs, rhs)) = e.split_once(op) {
            if let Some(k) = lhs
                .strip_prefix("opts.get('")
                .and_then(|x| x.strip_suffix("')"))
            {
                let v = opts.get(k).and_then(Value::as_str);
                return (v == Some(rhs.trim_matches('\''))) == eq;
            }
        }
    }
    panic!("unknown sample condition {expr:?}")
}

/// The lines of `files` that fail2ban's test runs with filter options
/// selecting `mode`, in order (the same filter state runs through them).
fn samples(name: &str, mode: &str, files: &[&str]) -> Vec<Sample> {
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(samples_dir().join(file)).unwrap();
        let mut common = serde_json::Map::new();
        let mut blocks = vec![serde_json::Map::new()];
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            let note = line
                .trim_start_matches('#')
                .trim_start()
                .split_once(':')
                .filter(|_| line.starts_with('#'));
            let (kind, data) = match note {
                Some((k @ ("failJSON" | "filterOptions" | "fileOptions" | "addFILE"), d)) => {
                    (k, serde_json::from_str::<Value>(d.trim()).unwrap())
                }
                _ if line.starts_with('#') || line.trim().is_empty() => continue,
                _ => ("", Value::Object(Default::default())),
            };
            let (fa, text_line) = match kind {
                "fileOptions" => {
                    common = data.as_object().cloned().unwrap_or_default();
                    blocks = vec![common.clone()];
                    continue;
                }
                "filterOptions" => {
                    let list = match data {
                        Value::Array(a) => a,
                        o => vec![o],
                    };
                    blocks = list
                        .into_iter()
                        .map(|o| {
                            let mut m = common.clone();
                            m.extend(o.as_object().cloned().unwrap_or_default());
                            m
                        })
                        .collect();
                    continue;
                }
                "addFILE" => continue,
                "failJSON" => match lines.next() {
                    Some(l) => (data, l),
                    None => break,
                },
                _ => (data, line),
            };
            for o in &blocks {
                if let Some(c) = o.get("test.condition").and_then(Value::as_str) {
                    if !condition(c, name, o) {
                        continue;
                    }
                }
                if o.get("mode").and_then(Value::as_str).unwrap_or("normal") != mode {
                    continue;
                }
                if let Some(c) = fa.get("constraint").and_then(Value::as_str) {
                    if !condition(c, name, o) {
                        continue;
                    }
                }
                out.push(Sample {
                    line: text_line.to_string(),
                    matched: fa.get("match").and_then(Value::as_bool).unwrap_or(false),
                    host: ["host", "ip4", "ip6"]
                        .iter()
                        .find_map(|k| fa.get(*k).cloned()),
                });
                break;
            }
        }
    }
    out
}

/// Runs `test-filter --json` over the samples: (agreeing lines, lines, the
/// lines that disagree).
fn agreement(filter: &str, extra: &[&str], samples: &[Sample]) -> (usize, usize, Vec<String>) {
    let input: String = samples.iter().map(|s| format!("{}\n", s.line)).collect();
    let mut args = vec!["test-filter", filter, "-", "--json"];
    args.extend_from_slice(extra);
    let out = run_stdin(&args, &input);
    assert!(out.status.success(), "{}", stderr(&out));
    let got = json_lines(&out);
    assert_eq!(got.len(), samples.len(), "one result per sample line");
    let mut agree = 0;
    let mut bad = Vec::new();
    for (s, g) in samples.iter().zip(&got) {
        let host_ok = !s.matched || s.host.as_ref().is_none_or(|h| *h == g["host"]);
        // On purpose: a line repeating the text sshd or PAM writes once
        // around the address (the filters' `once`) is ambiguous, and
        // banstream blames nobody where fail2ban's heuristics pick one.
        let twice = |lit: &str| s.line.matches(lit).count() >= 2;
        let ambiguous = s.matched && g["host"].is_null() && (twice(" from ") || twice("rhost="));
        if g["match"] == s.matched && host_ok {
            agree += 1;
        } else if ambiguous {
            agree += 1;
            println!("  on purpose, no address (ambiguous): {}", s.line);
        } else {
            bad.push(format!(
                "  want match={} host={:?}, got match={} host={}: {}",
                s.matched, s.host, g["match"], g["host"], s.line
            ));
        }
    }
    (agree, samples.len(), bad)
}

/// The measurement BENCHMARKS.md reports. `cargo test fail2ban_samples --
/// --nocapture` prints the table and every disagreement.
#[test]
fn fail2ban_samples_agreement() {
    require!(
        samples_dir().join("sshd").is_file(),
        "fail2ban's samples are not installed (apt-get install fail2ban, or set BANSTREAM_F2B_SAMPLES)"
    );
    // (row, filter, extra test-filter args, mode, sample files)
    type Row<'a> = (&'a str, &'a str, &'a [&'a str], &'a str, Vec<&'a str>);
    let every = ["--program", "*"];
    let rows: Vec<Row> = vec![
        (
            "sshd (normal)",
            "sshd",
            &[],
            "normal",
            vec!["sshd", "sshd-journal"],
        ),
        (
            "sshd[mode=ddos]",
            "sshd[mode=ddos]",
            &[],
            "ddos",
            vec!["sshd", "sshd-journal"],
        ),
        (
            "sshd[mode=extra]",
            "sshd[mode=extra]",
            &[],
            "extra",
            vec!["sshd", "sshd-journal"],
        ),
        (
            "sshd[mode=aggressive]",
            "sshd[mode=aggressive]",
            &[],
            "aggressive",
            vec!["sshd", "sshd-journal"],
        ),
        (
            "pam-generic",
            "pam-generic",
            &every,
            "normal",
            vec!["pam-generic"],
        ),
        (
            "named-refused",
            "named-refused",
            &every,
            "normal",
            vec!["named-refused"],
        ),
        ("dropbear", "dropbear", &[], "normal", vec!["dropbear"]),
        (
            "pam-generic, default routing",
            "pam-generic",
            &[],
            "normal",
            vec!["pam-generic"],
        ),
        (
            "named-refused, default routing",
            "named-refused",
            &[],
            "normal",
            vec!["named-refused"],
        ),
    ];
    println!("| filter | agreeing / annotated | agreement |\n|---|---|---|");
    let mut failures = Vec::new();
    for (row, filter, extra, mode, files) in rows {
        let name = filter.split('[').next().unwrap();
        let s = samples(name, mode, &files);
        let (agree, total, bad) = agreement(filter, extra, &s);
        let pct = 100.0 * agree as f64 / total as f64;
        println!("| {row} | {agree} / {total} | {pct:.1}% |");
        for b in &bad {
            println!("{b}");
        }
        // The gate: 95% with routing as fail2ban's samples assume. The
        // default-routing rows differ only by program names (see README).
        if !row.contains("default routing") && pct < 95.0 {
            failures.push(format!("{row}: {pct:.1}%"));
        }
        // Regression guard at today's figures (README explains each miss).
        let allowed_misses = match row {
            "sshd (normal)" => 2,
            "sshd[mode=aggressive]" => 2,
            r if r.contains("default routing") => total,
            _ => 0,
        };
        if total - agree > allowed_misses {
            failures.push(format!(
                "{row}: {} disagreements, {allowed_misses} allowed",
                total - agree
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:?}");
}

// --------------------------------------------------------------------- replay

const REPLAY_JAILS: &str = r#"
[defaults]
banaction = "log"
[jail.sshd]
enabled = true
filter = "sshd"
maxretry = 3
findtime = "10m"
bantime = "10m"
"bantime.increment" = true
[jail.recidive]
enabled = true
filter = "recidive"
maxretry = 2
findtime = "1d"
bantime = "1w"
"#;

#[test]
fn replay_uses_message_time_for_expiry_increment_recidive_and_year_rollover() {
    let (_dir, cfg) = config_dir(REPLAY_JAILS);
    let log = fixture("replay-sshd.log");
    let out = run(&[
        "replay",
        "-c",
        cfg.to_str().unwrap(),
        log.to_str().unwrap(),
        "--json",
        "--year",
        "2026",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json_lines(&out);
    // 2026-12-31T23:50:20Z, then 2027-01-01T00:10:00Z twice.
    let first = 1_798_761_020u64;
    let second = 1_798_762_200u64;
    assert_eq!(
        v,
        vec![
            serde_json::json!({"jail": "sshd", "ip": "203.0.113.7", "time": first}),
            // The first ban expired at 00:00:20 by the messages' clock; one
            // more failure (weight 2 after a ban) bans again, and that second
            // ban in sshd is recidive's second "failure".
            serde_json::json!({"jail": "sshd", "ip": "203.0.113.7", "time": second}),
            serde_json::json!({"jail": "recidive", "ip": "203.0.113.7", "time": second}),
            serde_json::json!({"summary": {"lines": 10, "failures": 7, "bans": 3}}),
        ]
    );
    // Human output: each ban with its ban time, then the summary.
    let out = run(&[
        "replay",
        "-c",
        cfg.to_str().unwrap(),
        log.to_str().unwrap(),
        "--year",
        "2026",
        "--unbans",
    ]);
    let text = stdout(&out);
    for needle in [
        "2026-12-31T23:50:20Z  Ban    sshd",
        "2027-01-01T00:00:20Z  Unban  sshd",
        "bantime 20m, ban #2",
        "Failures: 7   Bans: 3   Expired: 1   In force at the end: 2",
        "lines/s",
    ] {
        assert!(text.contains(needle), "{needle:?} in\n{text}");
    }
}

#[test]
fn replay_errors_exit_1_with_a_reason() {
    let (dir, cfg) = config_dir(REPLAY_JAILS);
    let out = run(&[
        "replay",
        "-c",
        cfg.to_str().unwrap(),
        "/nonexistent/messages",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("/nonexistent/messages"),
        "{}",
        stderr(&out)
    );
    std::fs::write(
        dir.path().join("conf.d/60-bad.toml"),
        "[jail.sshd]\nmaxretry = \"lots\"\n",
    )
    .unwrap();
    let out = run(&[
        "replay",
        "-c",
        cfg.to_str().unwrap(),
        fixture("replay-sshd.log").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("60-bad.toml:2:"), "{}", stderr(&out));
}

/// A seeded generator (splitmix64), so the corpus is the same every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One wire-format line (what BusyBox syslogd -R forwards) stamped `ts`:
/// 55% noise, the rest failures for sshd (single-line, session and helper
/// lines), PAM, named and UFW from a skewed pool of IPv4 and IPv6
/// attackers (300, a few of them very busy), some of them ignored
/// (ignoreip 10.0.0.0/8, loopback).
fn corpus_line(r: &mut Rng, ts: &str) -> String {
    let attacker = |r: &mut Rng| -> String {
        let i = r.below(300).min(r.below(300)).min(r.below(300));
        match i % 10 {
            0 => format!("2001:db8:{:x}::{:x}", i / 16, i % 16 + 1),
            1 if i % 100 == 1 => "10.1.2.3".to_string(),
            2 if i % 100 == 2 => "127.0.0.1".to_string(),
            _ => format!("198.18.{}.{}", i / 250, i % 250 + 1),
        }
    };
    // Few pids, reused often, so sessions mix connections as on a busy host.
    let pid = 1000 + r.below(200);
    let port = 1024 + r.below(60000);
    match r.below(100) {
        0..=54 => match r.below(4) {
            0 => format!("<78>{ts} crond[{pid}]: USER root pid {pid} cmd run-parts /etc/periodic/15min"),
            1 => format!("<30>{ts} dhcpcd[{pid}]: eth0: leased 10.0.0.{} for 86400 seconds", r.below(250)),
            2 => format!("<38>{ts} sshd[{pid}]: Accepted publickey for ops from 198.51.100.2 port {port} ssh2"),
            _ => format!("<6>{ts} kernel: [ 123.456] eth0: link up"),
        },
        55..=74 => {
            let ip = attacker(r);
            match r.below(5) {
                0 => format!("<38>{ts} sshd[{pid}]: Failed password for root from {ip} port {port} ssh2"),
                1 => format!("<38>{ts} sshd-session[{pid}]: Invalid user admin from {ip} port {port}"),
                2 => format!("<38>{ts} sshd[{pid}]: Connection from {ip} port {port} on 10.0.0.1 port 22"),
                3 => format!("<38>{ts} sshd[{pid}]: Disconnecting: Too many authentication failures [preauth]"),
                _ => format!("<38>{ts} sshd[{pid}]: Connection closed by authenticating user root {ip} port {port} [preauth]"),
            }
        }
        75..=84 => format!(
            "<85>{ts} login[{pid}]: pam_unix(login:auth): authentication failure; logname=LOGIN uid=0 euid=0 tty=tty1 ruser= rhost={}  user=root",
            attacker(r)
        ),
        85..=92 => format!(
            "<30>{ts} named[77]: client @0x7f00 {}#{port} (example.org): query (cache) 'example.org/A/IN' denied",
            attacker(r)
        ),
        _ => {
            let ip = attacker(r);
            let dst = if ip.contains(':') { "2001:db8::1" } else { "10.0.0.1" };
            format!("<4>{ts} kernel: [ 123.456] [UFW BLOCK] IN=eth0 OUT= MAC=00:00 SRC={ip} DST={dst} LEN=60 PROTO=TCP DPT=23")
        }
    }
}

/// Seconds between two bursts of the paced corpus.
const TICK: u64 = 2;
/// Bursts in the paced corpus.
const TICKS: u64 = 30;
/// Lines per burst (30 × 3,334 = 100,020).
const PER_TICK: usize = 3334;

/// The daemon counts by receive time, replay by message time; the two
/// agree when the lines reach the daemon when their timestamps say. So the
/// 100k lines come in 30 bursts, one every 2 s of real time, each stamped
/// with its burst's time (an even second), and every span in the
/// configuration is an odd number of seconds (findtime 7 s, ban times 5, 15,
/// 25 s with `bantime.multipliers`, recidive 21 s / 9 s): a window edge or
/// an expiry always falls a second away from any line, so the few hundred
/// milliseconds a burst takes to send and receive cannot move a decision
/// across it. Bans, expiries, re-bans with longer ban times and recidive
/// all happen during the run, in every jail, with sessions, ignored
/// addresses, addresses below the threshold and IPv6. The daemon's bans
/// and expiries (from its store's ban log) must be replay's, burst by burst.
#[test]
fn replay_of_100k_lines_bans_what_the_daemon_bans_over_udp() {
    let jails = r#"
[defaults]
findtime = 7
bantime = 5
"bantime.increment" = true
"bantime.multipliers" = "1 3 5"
ignoreip = ["127.0.0.0/8", "::1", "10.0.0.0/8"]
[jail.sshd]
enabled = true
filter = "sshd[mode=aggressive]"
maxretry = 4
[jail.pam-generic]
enabled = true
maxretry = 5
[jail.named-refused]
enabled = true
maxretry = 6
[jail.ufw-port-scan]
enabled = true
maxretry = 8
[jail.recidive]
enabled = true
filter = "recidive"
maxretry = 2
findtime = 21
bantime = 9
"#;
    let mut r = Rng(0x5EED);
    let bursts: Vec<Vec<String>> = (0..TICKS)
        .map(|k| {
            let s = 14 * 3600 + k * TICK;
            let ts = format!("Nov 24 {:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60);
            (0..PER_TICK).map(|_| corpus_line(&mut r, &ts)).collect()
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("messages");
    let text: String = bursts.iter().flatten().map(|l| format!("{l}\n")).collect();
    std::fs::write(&log, text).unwrap();

    // Replay, with the unbans, on one, two and three matcher threads: the
    // input spans several 4 MiB chunks, the output must not change.
    let (_cdir, cfg) = config_dir(jails);
    let replay = |threads: &str| {
        let out = run(&[
            "replay",
            "-c",
            cfg.to_str().unwrap(),
            log.to_str().unwrap(),
            "--json",
            "--unbans",
            "--year",
            "2026",
            "--threads",
            threads,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        json_lines(&out)
    };
    let v = replay("2");
    assert_eq!(replay("1"), v, "--threads 1");
    assert_eq!(replay("3"), v, "--threads 3");
    let summary = v.last().unwrap()["summary"].clone();
    assert_eq!(summary["lines"], 100_020);
    // Message time: 2026-11-24T14:00:00Z is the first burst.
    let base = 1_795_528_800i64;
    let mut replay_bans = Vec::new();
    let mut replay_ends = Vec::new();
    for o in &v[..v.len() - 1] {
        let key = (
            o["jail"].as_str().unwrap().to_string(),
            o["ip"].as_str().unwrap().to_string(),
        );
        let t = o["time"].as_i64().unwrap() - base;
        if o["unban"] == true {
            replay_ends.push((t, key));
        } else {
            assert_eq!(t % TICK as i64, 0, "a ban happens on a line");
            replay_bans.push((t / TICK as i64, key));
        }
    }
    replay_bans.sort();
    replay_ends.sort();
    let jails_banned: BTreeSet<&str> = replay_bans.iter().map(|(_, (j, _))| j.as_str()).collect();
    assert_eq!(
        jails_banned,
        [
            "named-refused",
            "pam-generic",
            "recidive",
            "sshd",
            "ufw-port-scan"
        ]
        .into(),
        "the corpus makes every jail ban"
    );
    assert!(
        replay_ends.len() > 100,
        "bans expire during the run: {}",
        replay_ends.len()
    );
    let rebans = replay_bans.len()
        - replay_bans
            .iter()
            .map(|(_, k)| k)
            .collect::<BTreeSet<_>>()
            .len();
    assert!(
        rebans > 50,
        "addresses are banned again after expiry: {rebans}"
    );
    assert!(!replay_bans
        .iter()
        .any(|(_, (_, ip))| ip == "10.1.2.3" || ip == "127.0.0.1"));

    // The daemon, fed the bursts in real time.
    let d = Daemon::start(jails);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let start = std::time::Instant::now();
    let t0 = std::time::SystemTime::now();
    let mut late = Duration::ZERO;
    for (k, burst) in bursts.iter().enumerate() {
        let at = Duration::from_secs(k as u64 * TICK);
        if let Some(wait) = at.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        // In slices, so the socket buffer never overflows.
        for slice in burst.chunks(350) {
            for l in slice {
                sock.send_to(l.as_bytes(), d.udp[0]).unwrap();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        late = late.max(start.elapsed().saturating_sub(at));
    }
    assert!(
        late < Duration::from_millis(700),
        "a burst finished {late:?} after its time: the machine is too loaded for the clocks to agree"
    );
    let total = (TICKS as usize * PER_TICK) as f64;
    assert!(
        d.wait_for(30, |d| d
            .metric("banstream_messages_total{transport=\"udp\"}")
            >= total),
        "lines lost before the daemon: {}",
        d.metric("banstream_messages_total{transport=\"udp\"}")
    );
    // Replay's clock stops at the last line: compare expiries up to it, once
    // the daemon's clock has passed it too.
    let horizon = ((TICKS - 1) * TICK) as i64;
    let until = Duration::from_secs(horizon as u64 + 2);
    if let Some(wait) = until.checked_sub(start.elapsed()) {
        std::thread::sleep(wait);
    }
    let db = d.path().join("state/banstream.sqlite3");
    let t0_ms = t0
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let read = |kind: &str| -> Vec<(i64, (String, String))> {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.busy_timeout(Duration::from_secs(5)).unwrap();
        let mut q = c
            .prepare("SELECT time, jail, ip FROM events WHERE kind = ?1")
            .unwrap();
        let rows = q
            .query_map([kind], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .unwrap();
        let mut v: Vec<(i64, (String, String))> = rows
            .map(|x| {
                let (t, j, ip) = x.unwrap();
                (t - t0_ms, (j, ip))
            })
            .collect();
        v.sort();
        v
    };
    // The store writes within a second; wait until it holds every ban.
    let want = replay_bans.len();
    let t = std::time::Instant::now();
    while read("ban").len() < want && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(200));
    }
    // Bans: burst by burst (receive time rounded to the burst's 2 s).
    let mut live_bans: Vec<(i64, (String, String))> = read("ban")
        .into_iter()
        .map(|(ms, k)| ((ms + 1000).div_euclid(2000), k))
        .collect();
    live_bans.sort();
    // Expiries: to the second (they fall on odd seconds).
    let mut live_ends: Vec<(i64, (String, String))> = read("expired")
        .into_iter()
        .map(|(ms, k)| ((ms + 500).div_euclid(1000), k))
        .filter(|(s, _)| *s <= horizon)
        .collect();
    live_ends.sort();
    let diff = |a: &[(i64, (String, String))], b: &[(i64, (String, String))]| -> Vec<String> {
        let (sa, sb): (BTreeSet<_>, BTreeSet<_>) = (a.iter().collect(), b.iter().collect());
        sa.symmetric_difference(&sb)
            .take(10)
            .map(|x| format!("{x:?}"))
            .collect()
    };
    println!(
        "100k lines over {} s: {} bans, {} expiries agree",
        TICKS * TICK,
        replay_bans.len(),
        replay_ends.len()
    );
    assert_eq!(
        live_bans.len(),
        replay_bans.len(),
        "bans: {:?}",
        diff(&live_bans, &replay_bans)
    );
    assert_eq!(
        live_bans,
        replay_bans,
        "bans: {:?}",
        diff(&live_bans, &replay_bans)
    );
    assert_eq!(
        live_ends,
        replay_ends,
        "expiries: {:?}",
        diff(&live_ends, &replay_ends)
    );
}

// ---------------------------------------------------------------------- check

#[test]
fn check_lists_every_error_with_file_line_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("banstream.toml");
    std::fs::create_dir(dir.path().join("filters")).unwrap();
    std::fs::write(
        dir.path().join("filters/bad.toml"),
        "programs = [\"x\"]\nfailregex = [\n  '^bad ( <HOST>',\n]\n",
    )
    .unwrap();
    // Key errors in one file: all of them, in line order.
    std::fs::write(
        &f,
        "[defaults]\nmaxretyr = 4\n\n[jail.sshd]\nmaxretry = \"lots\"\nbanactoin = \"x\"\n",
    )
    .unwrap();
    let out = run(&["check", "-c", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("error:")).collect();
    let p = f.display().to_string();
    assert_eq!(errors.len(), 3, "{text}");
    assert!(
        errors[0].contains(&format!("{p}:2:")) && errors[0].contains("maxretyr"),
        "{text}"
    );
    assert!(
        errors[1].contains(&format!("{p}:5:")) && errors[1].contains("maxretry: invalid type"),
        "{text}"
    );
    assert!(
        errors[2].contains(&format!("{p}:6:")) && errors[2].contains("banactoin"),
        "{text}"
    );
    assert!(text.contains("3 error(s)"), "{text}");

    // Errors found while building: each at the file and line that set the key.
    std::fs::write(
        &f,
        "[jail.a]\nfilter = \"nosuch\"\n[jail.b]\nfilter = \"sshd\"\nport = \"nosuchservice\"\n[jail.c]\nfilter = \"sshd\"\nbanaction = \"teleport\"\n[jail.d]\nfilter = \"bad\"\n",
    )
    .unwrap();
    let out = run(&["check", "-c", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    for needle in [
        format!("{p}:2: jail.a.filter: unknown filter \"nosuch\""),
        format!("{p}:5: jail.b.port:"),
        format!("{p}:8: jail.c.action: unknown action \"teleport\""),
        format!(
            "{p}:10: jail.d.filter: {}:3: regex \"^bad ( <HOST>\" does not compile",
            dir.path().join("filters/bad.toml").display()
        ),
    ] {
        assert!(text.contains(&needle), "{needle:?} in\n{text}");
    }
    assert!(text.contains("4 error(s)"), "{text}");

    // A jail defined twice in one file.
    std::fs::write(&f, "[jail.sshd]\nmaxretry = 2\n[jail.sshd]\nbantime = 1\n").unwrap();
    let out = run(&["check", "-c", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains(&format!("{p}:3:"))
            && stdout(&out).contains("[jail.sshd] is defined twice"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn check_warns_about_dangerous_settings_but_passes() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("banstream.toml");
    let g = dir.path().join("greedy.toml");
    std::fs::write(
        &g,
        "programs = []\nfailregex = ['^Failed .* from <HOST>']\n",
    )
    .unwrap();
    std::fs::write(
        &f,
        format!(
            "[listen]\nudp = [\"0.0.0.0:5514\"]\ntcp = [{{ address = \"0.0.0.0:5514\", allow = [\"0.0.0.0/0\"] }}]\n[jail.g]\nfilter = \"{}\"\n[jail.sshd]\nignoreself = false\n",
            g.display()
        ),
    )
    .unwrap();
    let out = run(&["check", "-c", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let text = stdout(&out);
    for needle in [
        "warning: listen.udp[0] (0.0.0.0:5514) listens beyond loopback but has no allow list",
        "warning: listen.tcp[0] (0.0.0.0:5514) accepts syslog from any address",
        "is not anchored to a program",
        "failregex #1 has a greedy .* before the address and no end anchor",
        "warning: jail.sshd: ignoreself = false",
        "OK",
    ] {
        assert!(text.contains(needle), "{needle:?} in\n{text}");
    }
    // The built-in filters draw no greedy-pattern warning.
    let out = run(&["check", "-c", "/dev/null"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(!stdout(&out).contains("greedy"), "{}", stdout(&out));
}

// --------------------------------------------------------------------- reload

fn fail_line(ip: &str) -> String {
    format!("<38>Nov 24 14:00:01 sshd[42]: Failed password for root from {ip} port 4711 ssh2")
}

fn write_test_config(d: &Daemon, toml: &str) {
    std::fs::write(d.path().join("conf.d/50-test.toml"), toml).unwrap();
}

fn jail_status(d: &Daemon, jail: &str) -> Value {
    let out = d.cli(&["status", jail, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

const SSHD5: &str =
    "[jail.sshd]\nenabled = true\nfilter = \"sshd\"\nmaxretry = 5\nbantime = \"1h\"\n";

#[test]
fn reload_keeps_bans_and_counters_and_refuses_a_broken_config() {
    let d = Daemon::start(SSHD5);
    for _ in 0..2 {
        d.send_udp(fail_line("203.0.113.20").as_bytes());
    }
    assert!(d.wait_for(10, |d| jail_status(d, "sshd")["total_failed"] == 2));
    assert!(d.cli(&["ban", "sshd", "203.0.113.21"]).status.success());

    // Add a jail; sshd is unchanged.
    write_test_config(&d, &format!("{SSHD5}[jail.pam-generic]\nenabled = true\n"));
    let out = d.cli(&["reload"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("added: pam-generic"),
        "{}",
        stdout(&out)
    );
    let s = jail_status(&d, "sshd");
    assert_eq!(s["total_failed"], 2, "counters survive: {s}");
    assert_eq!(s["currently_failed"], 1, "{s}");
    assert!(d.is_banned("sshd", "203.0.113.21"), "bans survive");
    // The window carried over: three more failures reach maxretry = 5.
    for _ in 0..3 {
        d.send_udp(fail_line("203.0.113.20").as_bytes());
    }
    assert!(d.wait_for(10, |d| d.is_banned("sshd", "203.0.113.20")));

    // A broken configuration is refused with check's errors; nothing changes.
    write_test_config(&d, "[jail.sshd]\nmaxretry = \"lots\"\n");
    let out = d.cli(&["reload"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("reload refused"), "{err}");
    assert!(
        err.contains("50-test.toml:2:") && err.contains("lots"),
        "{err}"
    );
    let out = d.cli(&["status", "--json"]);
    assert!(out.status.success(), "the daemon runs on");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v["jails"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["enabled"] == true)
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["pam-generic", "sshd"],
        "the running configuration stays"
    );
    assert!(d.is_banned("sshd", "203.0.113.21"));
    // A resolve-level error (unknown filter) is refused too.
    write_test_config(&d, "[jail.sshd]\nfilter = \"nosuch\"\n");
    let out = d.cli(&["reload"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("unknown filter"), "{}", stderr(&out));
    assert_eq!(jail_status(&d, "sshd")["total_failed"], 5);
}

#[test]
fn reload_removing_a_jail_lifts_its_bans_through_its_actions() {
    let d = Daemon::start(&format!("{SSHD5}[jail.pam-generic]\nenabled = true\n"));
    assert!(d
        .cli(&["ban", "pam-generic", "203.0.113.30"])
        .status
        .success());
    assert!(d.cli(&["ban", "sshd", "203.0.113.31"]).status.success());
    write_test_config(&d, SSHD5);
    let out = d.cli(&["reload"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("removed (their bans lifted): pam-generic"),
        "{}",
        stdout(&out)
    );
    assert!(!d.is_banned("pam-generic", "203.0.113.30"));
    assert!(d.is_banned("sshd", "203.0.113.31"));
    assert!(
        d.wait_for(5, |d| d.log_text().lines().any(|l| l
            .contains("unban (log action)")
            && l.contains("203.0.113.30"))),
        "{}",
        d.log_text()
    );
}

#[test]
fn reload_moves_bans_when_a_jails_actions_change() {
    let jail = |name: &str| {
        format!("[jail.sshd]\nenabled = true\nfilter = \"sshd\"\nbantime = \"1h\"\naction = [\"log[name={name}]\"]\n")
    };
    let d = Daemon::start_with(Opts {
        toml: jail("first"),
        dry_run: false,
        ..Default::default()
    });
    assert!(d.cli(&["ban", "sshd", "203.0.113.40"]).status.success());
    write_test_config(&d, &jail("second"));
    let out = d.cli(&["reload"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("actions changed (bans moved): sshd"),
        "{}",
        stdout(&out)
    );
    let moved = |d: &Daemon| {
        let log = d.log_text();
        let unban = log.lines().position(|l| {
            l.contains("unban (log action)")
                && l.contains("action=first")
                && l.contains("203.0.113.40")
        });
        let ban = log.lines().position(|l| {
            l.contains("ban (log action)")
                && !l.contains("unban")
                && l.contains("action=second")
                && l.contains("203.0.113.40")
        });
        matches!((unban, ban), (Some(u), Some(b)) if u < b)
    };
    assert!(d.wait_for(5, moved), "{}", d.log_text());
    assert!(d.is_banned("sshd", "203.0.113.40"), "the ban itself stays");
}

#[test]
fn sighup_reloads_like_the_reload_command() {
    let d = Daemon::start(SSHD5);
    write_test_config(
        &d,
        &format!("{SSHD5}[jail.named-refused]\nenabled = true\n"),
    );
    let pid = nix::unistd::Pid::from_raw(d.pid().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    assert!(d.wait_for(10, |d| d
        .cli(&["status", "named-refused", "--json"])
        .status
        .success()));
    // A broken configuration on SIGHUP: logged, refused, the daemon runs on.
    write_test_config(&d, "[jail.sshd]\nmaxretry = \"lots\"\n");
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    assert!(
        d.wait_for(10, |d| d.log_text().contains("reload refused")),
        "{}",
        d.log_text()
    );
    assert!(d.cli(&["status", "named-refused"]).status.success());
}

// --------------------------------------------------------------------- status

#[test]
fn status_shows_every_jail_and_a_jails_offenders_rates_and_lines() {
    let d = Daemon::start(
        "[jail.sshd]\nenabled = true\nfilter = \"sshd\"\nmaxretry = 3\nbantime = \"1h\"\n[jail.pam-generic]\nenabled = false\n"
    );
    for _ in 0..3 {
        d.send_udp(fail_line("203.0.113.50").as_bytes());
    }
    d.send_udp(fail_line("203.0.113.51").as_bytes());
    assert!(d.wait_for(10, |d| d.is_banned("sshd", "203.0.113.50")));
    assert!(d.wait_for(10, |d| jail_status(d, "sshd")["total_failed"] == 4));

    let out = d.cli(&["status", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let jails = v["jails"].as_array().unwrap();
    let pam = jails.iter().find(|j| j["name"] == "pam-generic").unwrap();
    assert_eq!(pam["enabled"], false, "disabled jails are listed");
    let sshd = jails.iter().find(|j| j["name"] == "sshd").unwrap();
    assert_eq!(sshd["enabled"], true);
    assert_eq!(
        sshd["programs"],
        serde_json::json!(["sshd", "sshd-session"])
    );
    assert_eq!(
        (
            sshd["currently_banned"].clone(),
            sshd["total_failed"].clone()
        ),
        (1.into(), 4.into())
    );

    let s = jail_status(&d, "sshd");
    for key in [
        "currently_failed",
        "total_failed",
        "currently_banned",
        "total_banned",
        "banned",
        "failures_per_minute",
        "top",
    ] {
        assert!(!s[key].is_null(), "{key} in {s}");
    }
    // Four failures within the last ten minutes (they may straddle a minute).
    assert_eq!(s["failures_per_minute"]["10m"], 0.4, "{s}");
    assert_eq!(
        s["top"][0],
        serde_json::json!({"ip": "203.0.113.51", "count": 1})
    );
    let b = &s["banned"][0];
    assert_eq!(b["ip"], "203.0.113.50");
    assert!(b["remaining"].as_u64().unwrap() > 3500);
    let lines = b["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 3, "the lines behind the ban: {b}");
    assert!(lines[0]["line"]
        .as_str()
        .unwrap()
        .starts_with("sshd[42]: Failed password for root from 203.0.113.50"));

    let text = stdout(&d.cli(&["status", "sshd"]));
    for needle in [
        "Currently failed:",
        "Total failed:        4",
        "0.4 (10m avg)",
        "Top offenders:       203.0.113.51 (1)",
        "Currently banned:    1",
        "Banned IP list:      203.0.113.50",
        "left, 3 failures, ban #1",
        "sshd[42]: Failed password for root from 203.0.113.50",
    ] {
        assert!(text.contains(needle), "{needle:?} in\n{text}");
    }
    let out = d.cli(&["status", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no jail named \"nosuch\""),
        "{}",
        stderr(&out)
    );
    let out = d.cli(&["status", "pam-generic"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("disabled"), "{}", stderr(&out));
}

// ------------------------------------------------------ ban / unban / banned

#[test]
fn unban_without_a_jail_lifts_every_jail_and_all_takes_a_jail() {
    let d = Daemon::start(&format!("{SSHD5}[jail.pam-generic]\nenabled = true\n"));
    for (j, ip) in [
        ("sshd", "203.0.113.60"),
        ("pam-generic", "203.0.113.60"),
        ("sshd", "203.0.113.61"),
        ("pam-generic", "203.0.113.62"),
    ] {
        let out = d.cli(&["ban", j, ip]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stdout(&out).starts_with(&format!("banned {ip} in {j} until ")));
    }
    let out = d.cli(&["ban", "sshd", "203.0.113.61"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already banned"), "{}", stderr(&out));

    let out = d.cli(&["unban", "203.0.113.60"]);
    assert!(out.status.success());
    assert_eq!(stdout(&out).trim(), "unbanned 2 ban(s): pam-generic, sshd");
    let out = d.cli(&["unban", "--all", "pam-generic"]);
    assert_eq!(stdout(&out).trim(), "unbanned 1 ban(s)");
    let left: Vec<String> = d
        .banned()
        .iter()
        .map(|b| format!("{} {}", b["jail"], b["ip"]))
        .collect();
    assert_eq!(left, ["\"sshd\" \"203.0.113.61\""]);
    let text = stdout(&d.cli(&["banned"]));
    assert!(
        text.contains("sshd") && text.contains("203.0.113.61"),
        "{text}"
    );
    assert!(d.cli(&["unban", "--all"]).status.success());
    assert_eq!(stdout(&d.cli(&["banned"])).trim(), "no bans in force");
    assert_eq!(stdout(&d.cli(&["banned", "--json"])).trim(), "[]");

    for (args, code, needle) in [
        (vec!["unban"], 2, "usage: unban"),
        (vec!["unban", "a", "b", "c"], 2, ""),
        (vec!["unban", "--all", "nosuch"], 1, "no jail named"),
        (vec!["unban", "sshd", "not-an-ip"], 1, "invalid address"),
        (vec!["ban", "sshd"], 2, ""),
    ] {
        let out = d.cli(&args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn client_commands_without_a_daemon_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("none.sock");
    for args in [
        vec!["status"],
        vec!["banned", "--json"],
        vec!["ban", "sshd", "192.0.2.1"],
        vec!["unban", "--all"],
        vec!["reload"],
    ] {
        let mut a = args.clone();
        a.extend(["--socket", sock.to_str().unwrap()]);
        let out = run(&a);
        assert_eq!(out.status.code(), Some(3), "{args:?}");
        assert!(
            stderr(&out).contains("not running"),
            "{args:?}: {}",
            stderr(&out)
        );
        assert_eq!(stderr(&out).lines().count(), 1);
    }
}
