//! Never lose a ban: the store across SIGKILL and restarts, bans that end
//! while the daemon is down, growing ban times, recidive (in-stream and
//! across a restart), and a database that is broken at start or fails
//! during operation.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, TransactionBehavior};

use crate::common::{bin, is_root, Daemon, Opts};

/// The database of a harness daemon (`[paths] state_dir` is `DIR/state`).
fn db_path(dir: &Path) -> PathBuf {
    dir.join("state/banstream.sqlite3")
}

/// One integer from the database (read from a separate connection, as an
/// admin's `sqlite3` would).
fn query(db: &Path, sql: &str) -> i64 {
    let c = Connection::open(db).expect("open database");
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c.query_row(sql, [], |r| r.get::<_, Option<i64>>(0))
        .expect("query")
        .unwrap_or(-1)
}

/// Waits up to `secs` for `sql` to yield `want`.
fn wait_db(db: &Path, sql: &str, want: i64, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if query(db, sql) == want {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn rows_for(ip: &str) -> String {
    format!("SELECT COUNT(*) FROM bans WHERE ip = '{ip}'")
}

fn bantime_s(db: &Path, jail: &str, ip: &str) -> i64 {
    query(
        db,
        &format!("SELECT bantime FROM bans WHERE jail = '{jail}' AND ip = '{ip}'"),
    ) / 1000
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn fail(d: &Daemon, ip: &str) {
    d.send_udp(
        format!("<38>Nov 24 14:00:01 sshd[77]: Failed password for root from {ip} port 4711 ssh2")
            .as_bytes(),
    );
}

fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `expires` of `ip` in `jail` from `banned --json`.
fn expires(d: &Daemon, jail: &str, ip: &str) -> Option<u64> {
    d.banned()
        .iter()
        .find(|b| b["jail"] == jail && b["ip"] == ip)
        .and_then(|b| b["expires"].as_u64())
}

/// Restarts on the same directory (after a SIGKILL by `into_dir`).
fn restart(d: Daemon, toml: &str) -> Daemon {
    let dir = d.into_dir();
    Daemon::start_with(Opts {
        toml: toml.to_string(),
        dir: Some(dir),
        ..Default::default()
    })
}

/// The daemon log written after `from` bytes (the log file is appended to
/// across restarts).
fn log_since(d: &Daemon, from: usize) -> String {
    d.log_text().get(from..).unwrap_or_default().to_string()
}

const SSHD: &str =
    "[jail.sshd]\nenabled = true\nfilter = \"sshd\"\nmaxretry = 2\nbantime = \"1h\"\n";

#[test]
fn an_address_added_to_ignoreip_is_freed_by_a_restart_and_by_a_reload() {
    let (freed, kept, later) = ("203.0.113.50", "203.0.113.51", "203.0.113.52");
    let d = Daemon::start(SSHD);
    for ip in [freed, kept, later] {
        ok(d.cli(&["ban", "sshd", ip]));
    }
    let db = db_path(d.path());
    assert!(wait_db(&db, "SELECT COUNT(*) FROM bans", 3, 10));
    // The fail2ban way to undo a wrong ban: add the address to ignoreip
    // and restart. The store's ban must not come back.
    let d = restart(d, &format!("{SSHD}ignoreip = [\"{freed}\"]\n"));
    assert!(
        !d.is_banned("sshd", freed),
        "a ban of an ignored address was restored\n{}",
        d.log_text()
    );
    assert!(d.is_banned("sshd", kept) && d.is_banned("sshd", later));
    assert!(
        wait_db(&db, &rows_for(freed), 0, 10),
        "the store still holds the freed ban"
    );
    let ignored =
        |ip: &str| format!("SELECT COUNT(*) FROM events WHERE kind = 'ignored' AND ip = '{ip}'");
    assert!(wait_db(&db, &ignored(freed), 1, 10), "logged as ignored");
    // The same through a reload (fail2ban-client reload).
    std::fs::write(
        d.path().join("conf.d/50-test.toml"),
        format!("{SSHD}ignoreip = [\"{freed}\", \"{later}\"]\n"),
    )
    .expect("config");
    ok(d.cli(&["reload"]));
    assert!(
        d.wait_for(5, |d| !d.is_banned("sshd", later)),
        "reload left a ban of a newly ignored address\n{}",
        d.log_text()
    );
    assert!(
        d.is_banned("sshd", kept),
        "only ignored addresses are freed"
    );
    assert!(wait_db(&db, &ignored(later), 1, 10));
}

#[test]
fn bans_survive_sigkill_and_come_back_in_the_firewall() {
    let d = Daemon::start(SSHD);
    let db = db_path(d.path());
    for ip in ["203.0.113.1", "2001:db8::7"] {
        fail(&d, ip);
        fail(&d, ip);
    }
    ok(d.cli(&["ban", "sshd", "198.51.100.3"]));
    // Acknowledged means durable: no waiting for the manual ban.
    assert_eq!(query(&db, &rows_for("198.51.100.3")), 1);
    // In-stream bans are durable within the bound the README states (1 s).
    assert!(
        wait_db(&db, "SELECT COUNT(*) FROM bans", 3, 5),
        "{}",
        d.log_text()
    );
    let before: Vec<_> = ["203.0.113.1", "2001:db8::7", "198.51.100.3"]
        .iter()
        .map(|ip| expires(&d, "sshd", ip).expect("banned before the crash"))
        .collect();
    let log_len = d.log_text().len();

    let d = restart(d, SSHD);
    let after: Vec<_> = ["203.0.113.1", "2001:db8::7", "198.51.100.3"]
        .iter()
        .map(|ip| expires(&d, "sshd", ip).expect("banned after the restart"))
        .collect();
    assert_eq!(before, after, "restored with their remaining time");
    let log = log_since(&d, log_len);
    for ip in ["203.0.113.1", "2001:db8::7", "198.51.100.3"] {
        assert!(
            log.lines()
                .any(|l| l.contains("ban (log action)") && l.contains(ip)),
            "{ip} not re-applied to the (dry-run) firewall:\n{log}"
        );
    }
    assert!(log.contains("restored=3"), "{log}");
    // A restored ban is not a new ban.
    assert_eq!(d.metric("banstream_bans_total{jail=\"sshd\"}"), 0.0);
    assert_eq!(d.metric("banstream_bans_active{jail=\"sshd\"}"), 3.0);
}

#[test]
fn a_clean_stop_closes_the_database_and_the_bans_come_back() {
    let mut d = Daemon::start(SSHD);
    let db = db_path(d.path());
    ok(d.cli(&["ban", "sshd", "203.0.113.9"]));
    assert!(d.stop(), "clean exit: {}", d.log_text());
    // Closed: the WAL was checkpointed into the database file.
    let wal = db.with_extension("sqlite3-wal");
    assert!(
        std::fs::metadata(&wal).map_or(true, |m| m.len() == 0),
        "{} left with content",
        wal.display()
    );
    let d = restart(d, SSHD);
    assert!(d.is_banned("sshd", "203.0.113.9"));
}

/// A ban of a jail the configuration no longer has stays in the store;
/// a reload that adds the jail back puts it in force again, as a restart
/// would.
#[test]
fn a_reload_adding_a_jail_back_restores_its_stored_bans() {
    let mut d = Daemon::start(SSHD);
    ok(d.cli(&["ban", "sshd", "203.0.113.61"]));
    assert!(d.stop(), "clean exit: {}", d.log_text());
    let d = restart(d, "[jail.sshd]\nenabled = false\n");
    assert!(!d.is_banned("sshd", "203.0.113.61"));
    std::fs::write(d.path().join("conf.d/50-test.toml"), SSHD).expect("config");
    ok(d.cli(&["reload"]));
    assert!(
        d.wait_for(5, |d| d.is_banned("sshd", "203.0.113.61")),
        "the stored ban did not come back with its jail\n{}",
        d.log_text()
    );
}

#[test]
fn a_ban_that_ends_while_down_stays_ended_and_is_logged_as_expired() {
    let toml = "[jail.short]\nenabled = true\nfilter = \"sshd\"\nbantime = \"2s\"\n[jail.long]\nenabled = true\nfilter = \"sshd\"\nbantime = -1\n";
    let d = Daemon::start(toml);
    let db = db_path(d.path());
    ok(d.cli(&["ban", "short", "203.0.113.20"]));
    ok(d.cli(&["ban", "long", "203.0.113.21"]));
    let end = expires(&d, "short", "203.0.113.20").unwrap();
    assert_eq!(expires(&d, "long", "203.0.113.21"), None, "permanent");
    let dir = d.into_dir();
    // The downtime outlasts the short ban.
    while now_s() <= end {
        std::thread::sleep(Duration::from_millis(100));
    }
    let d = Daemon::start_with(Opts {
        toml: toml.into(),
        dir: Some(dir),
        ..Default::default()
    });
    let banned = d.banned();
    assert_eq!(banned.len(), 1, "{banned:?}");
    assert_eq!(banned[0]["ip"], "203.0.113.21", "the permanent ban is back");
    assert_eq!(query(&db, &rows_for("203.0.113.20")), 0);
    assert_eq!(
        query(
            &db,
            "SELECT COUNT(*) FROM events WHERE ip = '203.0.113.20' AND kind = 'expired'"
        ),
        1
    );
    assert!(d.log_text().contains("expired_while_down=1"));
}

#[test]
fn increments_double_each_ban_capped_by_maxtime_across_a_restart() {
    let toml = "[jail.sshd]\nenabled = true\nfilter = \"sshd\"\nbantime = \"1h\"\n\"bantime.increment\" = true\n\"bantime.maxtime\" = \"3h\"\n";
    let ip = "203.0.113.30";
    let d = Daemon::start(toml);
    let db = db_path(d.path());
    ok(d.cli(&["ban", "sshd", ip]));
    assert_eq!(bantime_s(&db, "sshd", ip), 3600);
    ok(d.cli(&["unban", "sshd", ip]));
    ok(d.cli(&["ban", "sshd", ip]));
    assert_eq!(bantime_s(&db, "sshd", ip), 7200, "second ban: 2x");
    ok(d.cli(&["unban", "sshd", ip]));
    // The history survives a crash: the third ban still counts two before it.
    let d = restart(d, toml);
    ok(d.cli(&["ban", "sshd", ip]));
    assert_eq!(
        bantime_s(&db, "sshd", ip),
        3 * 3600,
        "third ban: 4x = 4h, capped by maxtime 3h"
    );
    let exp = expires(&d, "sshd", ip).unwrap();
    assert!(exp.abs_diff(now_s() + 3 * 3600) <= 5, "{exp}");
    assert_eq!(
        query(
            &db,
            &format!("SELECT count FROM history WHERE ip = '{ip}' AND jail = 'sshd'")
        ),
        3
    );
}

#[test]
fn overalljails_lengthens_the_next_ban_in_another_jail() {
    let toml = "[defaults]\nbantime = \"1h\"\n\"bantime.increment\" = true\n\"bantime.overalljails\" = true\n[jail.first]\nenabled = true\nfilter = \"sshd\"\n[jail.second]\nenabled = true\nfilter = \"sshd\"\n[jail.own]\nenabled = true\nfilter = \"sshd\"\n\"bantime.overalljails\" = false\n";
    let ip = "203.0.113.40";
    let d = Daemon::start(toml);
    let db = db_path(d.path());
    ok(d.cli(&["ban", "first", ip]));
    assert_eq!(bantime_s(&db, "first", ip), 3600);
    ok(d.cli(&["ban", "second", ip]));
    assert_eq!(
        bantime_s(&db, "second", ip),
        7200,
        "the ban in `first` counts"
    );
    ok(d.cli(&["ban", "own", ip]));
    assert_eq!(
        bantime_s(&db, "own", ip),
        3600,
        "without overalljails only the jail's own bans count"
    );
}

/// The seed's jail.local [DEFAULT], its sshd jail and its relapse jail, as written.
const SEED: &str = r#"
[defaults]
bantime = "16m"
findtime = "10m"
maxretry = 2
ignoreip = ["127.0.0.1"]
ignoreself = true
"bantime.increment" = true
"bantime.maxtime" = "6d"
"bantime.overalljails" = true
banaction = "iptables-multiport"

[jail.sshd]
enabled = true
mode = "aggressive"
port = "ssh,19226"
maxretry = 2

[jail.recidive]
enabled = true
bantime = "8d"
findtime = "1d"
"#;

/// Bans `ip` in sshd the way an attacker does: failures over syslog.
fn sshd_ban(d: &Daemon, ip: &str, failures: usize) {
    for _ in 0..failures {
        fail(d, ip);
    }
    assert!(
        d.wait_for(5, |d| d.is_banned("sshd", ip)),
        "{}",
        d.log_text()
    );
}

#[test]
fn seed_relapse_jail_bans_an_address_banned_twice_in_sshd() {
    let ip = "203.0.113.50";
    let d = Daemon::start(SEED);
    let db = db_path(d.path());
    sshd_ban(&d, ip, 2);
    assert!(!d.is_banned("recidive", ip), "one ban is not a relapse");
    assert_eq!(bantime_s_eventually(&db, "sshd", ip), 16 * 60);
    ok(d.cli(&["unban", "sshd", ip]));
    // A known offender: one failure now weighs maxretry (2).
    sshd_ban(&d, ip, 1);
    assert!(
        d.wait_for(5, |d| d.is_banned("recidive", ip)),
        "{}",
        d.log_text()
    );
    let exp = expires(&d, "recidive", ip).unwrap();
    assert!(exp.abs_diff(now_s() + 8 * 86400) <= 5, "8d: {exp}");
    assert_eq!(
        bantime_s_eventually(&db, "sshd", ip),
        32 * 60,
        "second sshd ban: 2 x 16m"
    );
}

fn bantime_s_eventually(db: &Path, jail: &str, ip: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM bans WHERE jail = '{jail}' AND ip = '{ip}'");
    assert!(wait_db(db, &sql, 1, 5), "{jail} {ip} not stored");
    bantime_s(db, jail, ip)
}

#[test]
fn recidive_window_and_history_survive_a_restart() {
    let ip = "203.0.113.51";
    let d = Daemon::start(SEED);
    let db = db_path(d.path());
    sshd_ban(&d, ip, 2);
    assert!(wait_db(&db, &rows_for(ip), 1, 5));
    // Crash, restart: the first sshd ban is back, and recidive remembers it.
    let d = restart(d, SEED);
    assert!(d.is_banned("sshd", ip));
    assert!(!d.is_banned("recidive", ip));
    ok(d.cli(&["unban", "sshd", ip]));
    // One failure is enough (history: one ban before), and it is the
    // second ban within recidive's findtime (the first came from the log).
    sshd_ban(&d, ip, 1);
    assert!(
        d.wait_for(5, |d| d.is_banned("recidive", ip)),
        "recidive forgot the ban before the restart:\n{}",
        d.log_text()
    );
}

/// Runs `banstream run` on a directory prepared by the harness and expects
/// it to fail at start; returns its stderr.
fn start_fails(dir: &Path, toml: &str) -> String {
    let config = Daemon::write_config(
        dir,
        &Opts {
            toml: toml.to_string(),
            ..Default::default()
        },
    );
    let mut child = Command::new(bin())
        .args(["run", "--dry-run", "-c"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn banstream");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("banstream did not fail at start");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "started anyway: {err}");
    assert!(
        !dir.join("run/banstream.sock").exists(),
        "the control socket opened before the store"
    );
    err
}

#[test]
fn an_unwritable_database_path_fails_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-directory");
    std::fs::write(&blocker, "x").unwrap();
    let path = blocker.join("banstream.sqlite3");
    let err = start_fails(
        dir.path(),
        &format!("{SSHD}[database]\npath = \"{}\"\n", path.display()),
    );
    assert!(err.contains(&path.display().to_string()), "{err}");
}

#[test]
fn a_corrupt_database_fails_the_start_with_the_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_path(dir.path());
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    let garbage: Vec<u8> = (0..16384u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&db, &garbage).unwrap();
    let err = start_fails(dir.path(), SSHD);
    assert!(err.contains(&db.display().to_string()), "{err}");
    assert!(err.contains("corrupt"), "{err}");
    assert!(err.contains("README"), "{err}");
    assert_eq!(
        std::fs::read(&db).unwrap(),
        garbage,
        "the damaged file is left for recovery"
    );
}

#[test]
fn a_locked_database_is_logged_counted_and_retried_while_bans_hold() {
    let d = Daemon::start(SSHD);
    let db = db_path(d.path());
    let mut other = Connection::open(&db).unwrap();
    let lock = other
        .transaction_with_behavior(TransactionBehavior::Exclusive)
        .unwrap();
    // A manual ban is not acknowledged as durable, but it is in force.
    let out = d.cli(&["ban", "sshd", "203.0.113.60"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in force") && err.contains("locked"), "{err}");
    fail(&d, "203.0.113.61");
    fail(&d, "203.0.113.61");
    assert!(d.wait_for(5, |d| d.is_banned("sshd", "203.0.113.61")));
    assert!(d.is_banned("sshd", "203.0.113.60"));
    assert!(
        d.wait_for(5, |d| d.metric("banstream_store_errors_total") >= 2.0),
        "{}",
        d.log_text()
    );
    assert!(d.log_text().contains("database write failed"));
    lock.rollback().unwrap();
    drop(other);
    // The retry lands both, without any help.
    assert!(
        wait_db(&db, "SELECT COUNT(*) FROM bans", 2, 20),
        "{}",
        d.log_text()
    );
    assert!(d.log_text().contains("succeed again"));
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, size: &str) -> Result<Mount, String> {
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Mount(at.to_path_buf()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let st = Command::new("umount").arg(&self.0).status();
        if !st.is_ok_and(|s| s.success()) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// Fills the filesystem holding `file` until it is full.
fn fill(file: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(file).unwrap();
    let chunk = vec![0u8; 4096];
    while f.write_all(&chunk).and_then(|_| f.sync_data()).is_ok() {}
}

#[test]
fn a_full_disk_is_logged_counted_and_retried_while_bans_hold() {
    crate::require!(is_root(), "mounting a tiny tmpfs needs root");
    let outer = tempfile::tempdir().unwrap();
    let mnt = outer.path().join("store-full");
    let _mount = match Mount::tmpfs(&mnt, "256k") {
        Ok(m) => m,
        Err(e) => {
            eprintln!("SKIPPED persistence: cannot mount a tmpfs here: {e}");
            return;
        }
    };
    let db = mnt.join("banstream.sqlite3");
    let d = Daemon::start(&format!("{SSHD}[database]\npath = \"{}\"\n", db.display()));
    let filler = mnt.join("filler");
    fill(&filler);
    for i in 1..=5 {
        ok_or_not_durable(d.cli(&["ban", "sshd", &format!("203.0.113.{}", 100 + i)]));
    }
    assert!(
        d.wait_for(10, |d| d.metric("banstream_store_errors_total") >= 1.0),
        "the full disk was never hit:\n{}",
        d.log_text()
    );
    let log = d.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("database write failed") && l.contains("full")),
        "{log}"
    );
    assert_eq!(d.banned().len(), 5, "every ban stays in force");
    std::fs::remove_file(&filler).unwrap();
    assert!(
        wait_db(&db, "SELECT COUNT(*) FROM bans", 5, 30),
        "{}",
        d.log_text()
    );
    drop(d);
}

/// A manual ban either is durable, or says it is in force but not yet written.
fn ok_or_not_durable(out: std::process::Output) {
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("in force"), "{err}");
    }
}

#[test]
fn recidive_does_not_punish_twice_for_the_same_bans_after_a_restart() {
    // Without increment on recidive, so a known offender's single ban
    // weighs one (with it, it would weigh maxretry: fail2ban's rule).
    let toml = format!("{SEED}\"bantime.increment\" = false\n");
    let ip = "203.0.113.52";
    let d = Daemon::start(&toml);
    sshd_ban(&d, ip, 2);
    ok(d.cli(&["unban", "sshd", ip]));
    sshd_ban(&d, ip, 1);
    assert!(d.wait_for(5, |d| d.is_banned("recidive", ip)));
    // The admin lets it go.
    ok(d.cli(&["unban", ip]));
    let db = db_path(d.path());
    assert!(wait_db(&db, &rows_for(ip), 0, 5));
    let d = restart(d, &toml);
    assert!(d.banned().is_empty(), "{:?}", d.banned());
    // One new sshd ban: the two before were already punished by recidive.
    sshd_ban(&d, ip, 1);
    assert!(
        !d.wait_for(1, |d| d.is_banned("recidive", ip)),
        "recidive counted bans its earlier ban already covered"
    );
}

#[test]
fn an_acknowledged_unban_survives_a_crash() {
    let toml = "[jail.sshd]\nenabled = true\nfilter = \"sshd\"\nbantime = \"1h\"\n";
    let d = Daemon::start(toml);
    ok(d.cli(&["ban", "sshd", "203.0.113.61"]));
    ok(d.cli(&["ban", "sshd", "203.0.113.62"]));
    ok(d.cli(&["unban", "203.0.113.61"]));
    // SIGKILL right after the acknowledgement: the unban was on disk.
    let d = restart(d, toml);
    assert!(!d.is_banned("sshd", "203.0.113.61"), "{:?}", d.banned());
    assert!(d.is_banned("sshd", "203.0.113.62"));
    ok(d.cli(&["unban", "--all"]));
    let d = restart(d, toml);
    assert!(d.banned().is_empty(), "{:?}", d.banned());
}
