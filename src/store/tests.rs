use std::sync::mpsc as std_mpsc;
use std::time::UNIX_EPOCH;

use super::*;
use crate::ban::BanOrigin;
use crate::config::TimeSpec;

fn t(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(s)
}

fn ban(jail: &str, ip: &str, start: u64, secs: Option<u64>, count: u32) -> Arc<Ban> {
    Arc::new(Ban {
        jail: JailName::new(jail).unwrap(),
        ip: ip.parse().unwrap(),
        start: t(start),
        bantime: secs.map_or(TimeSpec::Forever, |s| {
            TimeSpec::Finite(Duration::from_secs(s))
        }),
        expires: secs.map(|s| t(start + s)),
        failures: 3,
        ban_count: count,
        origin: BanOrigin::Stream,
    })
}

fn open(path: &Path, now: u64) -> (Store, Snapshot, Metrics) {
    let m = Metrics::new();
    let (s, snap) = Store::open(path, t(now), t(0), m.clone()).unwrap();
    (s, snap, m)
}

/// Waits for everything queued to be committed; returns the outcome.
fn sync(s: &Store) -> Result<(), NotDurable> {
    let (tx, rx) = std_mpsc::channel();
    s.sync(Box::new(move |r| {
        let _ = tx.send(r);
    }));
    rx.recv_timeout(Duration::from_secs(30)).unwrap()
}

fn count(path: &Path, sql: &str) -> i64 {
    let c = Connection::open(path).unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn bans_history_and_log_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/bans.sqlite3");
    let (s, snap, _) = open(&path, 1000);
    assert!(snap.created && snap.bans.is_empty());
    let a = ban("sshd", "192.0.2.1", 1000, Some(600), 1);
    let b = ban("sshd", "2001:db8::1", 1001, None, 2);
    let c = ban("pam", "192.0.2.3", 1002, Some(60), 1);
    for x in [&a, &b, &c] {
        s.record(&Effect::Ban(x.clone()), t(1002));
    }
    s.record(&Effect::Unban(c.clone(), UnbanReason::Manual), t(1003));
    sync(&s).unwrap();
    s.close();

    let (s, snap, _) = open(&path, 1100);
    assert!(!snap.created);
    let mut got: Vec<(String, Option<SystemTime>)> = snap
        .bans
        .iter()
        .map(|b| (b.ip.to_string(), b.expires))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("192.0.2.1".into(), Some(t(1600))),
            ("2001:db8::1".into(), None)
        ]
    );
    let permanent = snap.bans.iter().find(|b| b.expires.is_none()).unwrap();
    assert_eq!(permanent.bantime, TimeSpec::Forever);
    assert_eq!(permanent.ban_count, 2);
    assert_eq!(
        snap.history.len(),
        3,
        "the unbanned address keeps its history"
    );
    assert_eq!(snap.ban_log.len(), 3);
    assert_eq!(snap.expired_while_down, 0);
    s.close();
    assert_eq!(
        count(&path, "SELECT COUNT(*) FROM events WHERE kind = 'unban'"),
        1
    );
    assert_eq!(
        count(&path, "SELECT MAX(version) FROM schema_version"),
        i64::from(schema::CURRENT)
    );
}

#[test]
fn bans_that_ended_while_down_are_logged_as_expired_not_restored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let (s, _, _) = open(&path, 1000);
    s.record(
        &Effect::Ban(ban("sshd", "192.0.2.1", 1000, Some(10), 1)),
        t(1000),
    );
    s.record(
        &Effect::Ban(ban("sshd", "192.0.2.2", 1000, Some(1000), 1)),
        t(1000),
    );
    s.close();
    let (s, snap, _) = open(&path, 1011);
    assert_eq!(snap.expired_while_down, 1);
    assert_eq!(snap.bans.len(), 1);
    assert_eq!(snap.bans[0].ip.to_string(), "192.0.2.2");
    s.close();
    assert_eq!(
        count(
            &path,
            "SELECT COUNT(*) FROM events WHERE kind = 'expired' AND ip = '192.0.2.1' AND time = 1010000"
        ),
        1
    );
}

#[test]
fn purge_keeps_bans_in_force_and_permanent_bans() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let (s, _, _) = open(&path, 0);
    let old = ban("sshd", "192.0.2.1", 100, Some(10), 1);
    s.record(&Effect::Ban(old.clone()), t(100));
    s.record(&Effect::Unban(old, UnbanReason::Expired), t(110));
    s.record(&Effect::Ban(ban("sshd", "192.0.2.2", 100, None, 1)), t(100));
    s.record(
        &Effect::Ban(ban("sshd", "192.0.2.3", 100, Some(100_000), 1)),
        t(100),
    );
    s.record(
        &Effect::Ban(ban("sshd", "192.0.2.4", 90_000, Some(10), 1)),
        t(90_000),
    );
    s.purge(t(86_400), t(86_400));
    sync(&s).unwrap();
    s.close();
    let (s, snap, _) = open(&path, 90_001);
    let mut h: Vec<String> = snap.history.iter().map(|x| x.1.to_string()).collect();
    h.sort();
    assert_eq!(h, ["192.0.2.2", "192.0.2.3", "192.0.2.4"]);
    s.close();
    assert_eq!(
        count(&path, "SELECT COUNT(*) FROM events WHERE ip = '192.0.2.1'"),
        0
    );
}

#[test]
fn a_corrupt_file_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bans.sqlite3");
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let err = Store::open(&path, t(0), t(0), Metrics::new())
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("README"), "{msg}");
}

#[test]
fn an_unwritable_path_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "x").unwrap();
    let path = file.join("bans.sqlite3");
    let err = Store::open(&path, t(0), t(0), Metrics::new())
        .err()
        .unwrap();
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    open(&path, 0).0.close();
    Connection::open(&path)
        .unwrap()
        .execute(
            "INSERT INTO schema_version (version, applied) VALUES (?1, 0)",
            [schema::CURRENT + 1],
        )
        .unwrap();
    let err = Store::open(&path, t(0), t(0), Metrics::new())
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::TooNew { .. }), "{err}");
}

#[test]
fn a_locked_database_is_counted_and_retried_until_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let (s, _, metrics) = open(&path, 0);
    let mut other = Connection::open(&path).unwrap();
    let lock = other
        .transaction_with_behavior(TransactionBehavior::Exclusive)
        .unwrap();
    s.record(
        &Effect::Ban(ban("sshd", "192.0.2.9", 10, Some(600), 1)),
        t(10),
    );
    let err = sync(&s).unwrap_err();
    assert!(err.reason.contains("locked"), "{err}");
    assert!(metrics.store_errors.get() >= 1);
    assert!(sync(&s).is_err(), "still locked");
    lock.rollback().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while sync(&s).is_err() {
        assert!(std::time::Instant::now() < deadline, "never retried");
        std::thread::sleep(Duration::from_millis(50));
    }
    s.close();
    assert_eq!(
        count(&path, "SELECT COUNT(*) FROM bans WHERE ip = '192.0.2.9'"),
        1
    );
}

#[test]
fn a_read_only_file_is_refused() {
    if nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED store: root writes read-only files anyway");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    open(&path, 0).0.close();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
    let err = Store::open(&path, t(0), t(0), Metrics::new())
        .err()
        .unwrap();
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}
