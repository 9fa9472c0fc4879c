//! Client commands against a running daemon: output shapes, exit codes and
//! errors on bad input.

use serde_json::Value;

use crate::common::{bin, Daemon};

fn daemon() -> Daemon {
    Daemon::start(
        "[jail.sshd]\nenabled = true\nfilter = \"sshd\"\nbantime = \"1h\"\n[jail.recid]\nenabled = true\nfilter = \"recidive\"\nbantime = -1\nmaxretry = 2\n",
    )
}

#[test]
fn ban_banned_unban_round_trip() {
    let d = daemon();
    let out = d.cli(&["ban", "sshd", "203.0.113.5"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = d.cli(&["ban", "sshd", "2001:db8::5"]);
    assert!(out.status.success());
    let b = d.banned();
    assert_eq!(b.len(), 2);
    for item in &b {
        let keys: Vec<&String> = item.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["expires", "ip", "jail"], "DESIGN.md shape");
        assert!(item["expires"].as_u64().unwrap() > 0);
    }
    let out = d.cli(&["unban", "203.0.113.5"]);
    assert!(out.status.success());
    assert_eq!(d.banned().len(), 1);
    let out = d.cli(&["unban", "--all"]);
    assert!(out.status.success());
    assert!(d.banned().is_empty());
}

#[test]
fn invalid_addresses_and_unknown_jails_are_refused() {
    let d = daemon();
    for (args, needle) in [
        (vec!["ban", "sshd", "1.2.3.4; rm -rf /"], "invalid address"),
        (vec!["ban", "sshd", "example.com"], "invalid address"),
        (vec!["ban", "sshd", "127.0.0.1"], "never banned"),
        (vec!["ban", "nosuchjail", "203.0.113.5"], "no jail"),
        (vec!["unban", "203.0.113.77"], "not banned"),
    ] {
        let out = d.cli(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one-line reason: {err}");
    }
    assert!(d.banned().is_empty());
}

#[test]
fn status_shapes() {
    let d = daemon();
    d.cli(&["ban", "sshd", "203.0.113.6"]);
    let out = d.cli(&["status", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    // Every configured jail is listed; the harness disables the defaults.
    let names = |enabled: bool| -> Vec<String> {
        v["jails"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| j["enabled"] == enabled)
            .map(|j| j["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(true), ["recid", "sshd"]);
    assert_eq!(
        names(false),
        ["named-refused", "pam-generic", "ufw-port-scan"]
    );
    let out = d.cli(&["status", "sshd", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["currently_banned"], 1);
    assert_eq!(v["banned"][0]["ip"], "203.0.113.6");
    assert!(v["banned"][0]["remaining"].as_u64().unwrap() > 3500);
    let out = d.cli(&["status", "sshd"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Currently banned:    1") && text.contains("203.0.113.6"),
        "{text}"
    );
}

#[test]
fn recidive_bans_after_repeated_bans() {
    let d = daemon();
    // Two bans in sshd within recidive's findtime trigger recidive.
    d.cli(&["ban", "sshd", "203.0.113.8"]);
    d.cli(&["unban", "sshd", "203.0.113.8"]);
    d.cli(&["ban", "sshd", "203.0.113.8"]);
    assert!(d.wait_for(5, |d| d.is_banned("recid", "203.0.113.8")));
    let b = d.banned();
    let r = b.iter().find(|x| x["jail"] == "recid").unwrap();
    assert!(r["expires"].is_null(), "permanent recidive ban");
}

#[test]
fn client_reports_a_missing_daemon() {
    let out = std::process::Command::new(bin())
        .args(["status", "--socket", "/nonexistent/banstream.sock"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not running"));
}

#[test]
fn check_reports_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("banstream.toml");
    std::fs::write(&f, "[defaults]\nmaxretry = 3\nmaxretyr = 4\n").unwrap();
    let out = std::process::Command::new(bin())
        .args(["check", "-c"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("{}:3:", f.display())) && text.contains("maxretyr"),
        "{text}"
    );
    // A regex that does not compile: the error names the filter file and line.
    std::fs::create_dir(dir.path().join("filters")).unwrap();
    let bad = dir.path().join("filters/bad.toml");
    std::fs::write(
        &bad,
        "programs = [\"x\"]\nfailregex = [\n  '^ok <HOST>$',\n  '^bad ( <HOST>',\n]\n",
    )
    .unwrap();
    std::fs::write(&f, "[jail.x]\nfilter = \"bad\"\n").unwrap();
    let out = std::process::Command::new(bin())
        .args(["check", "-c"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("{}:4: regex", bad.display())),
        "{text}"
    );
    std::fs::write(&f, "[jail.sshd]\nmaxretry = 2\n").unwrap();
    let out = std::process::Command::new(bin())
        .args(["check", "-c"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
