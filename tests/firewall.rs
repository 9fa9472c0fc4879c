//! Real bans, proven in network namespaces: for each firewall backend an
//! attacker namespace connects to a victim namespace where the daemon runs;
//! syslog failures (sent with `logger` to the daemon's unix socket) must cut
//! it off within a second for IPv4 and IPv6, `unban` must restore it, a
//! SIGKILL and restart must not duplicate anything, and stopping the daemon
//! must leave the firewall as it was. The same for ufw, on a private copy
//! of /etc/ufw. Also: bulk loads through the set backends, ipset's
//! `ipset restore` path (taken when netlink is refused), a failing firewall
//! command, a second daemon on the same configuration, and a command action
//! fed hostile tag values.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::common::{have, is_root, Daemon, Opts};
use crate::netns::{NetPair, ATTACKER4, ATTACKER6, VICTIM4, VICTIM6};
use crate::require;

/// The port the jail covers.
const COVERED: u16 = 2222;
/// A port it does not cover.
const OTHER: u16 = 8080;

fn tools(kind: &str) -> Vec<&'static str> {
    let mut t = vec!["ip", "logger"];
    match kind {
        "nftables" => t.push("nft"),
        "ufw" => t.extend(["ufw", "iptables", "ip6tables", "iptables-save"]),
        "iptables-ipset" => t.extend([
            "ipset",
            "iptables",
            "ip6tables",
            "iptables-save",
            "ip6tables-save",
        ]),
        _ => t.extend([
            "iptables",
            "ip6tables",
            "iptables-restore",
            "ip6tables-restore",
            "iptables-save",
            "ip6tables-save",
        ]),
    }
    t
}

/// Skips (with the reason) unless root with every tool of `kind`.
fn missing(kind: &str) -> Option<String> {
    if !is_root() {
        return Some("needs root for network namespaces and firewalls".into());
    }
    tools(kind)
        .into_iter()
        .find(|t| !have(t))
        .map(|t| format!("{t} is not installed"))
}

fn jail(kind: &str, extra: &str) -> String {
    format!(
        "[jail.sshd]\nenabled = true\nfilter = \"sshd\"\nmaxretry = 2\nbantime = \"1h\"\nport = \"{COVERED}\"\nbanaction = \"{kind}\"\n{extra}\n"
    )
}

fn start(net: &NetPair, toml: &str, dir: Option<tempfile::TempDir>, wrap: Vec<String>) -> Daemon {
    Daemon::start_with(Opts {
        toml: toml.to_string(),
        dry_run: false,
        listen: Some("unix = [\"log.sock\"]\n".into()),
        wrap: if wrap.is_empty() { net.wrap() } else { wrap },
        dir,
        default_jails: false,
    })
}

fn fail(d: &Daemon, ip: &str) {
    let sock = d.unix[0].display().to_string();
    d.logger(&[
        "-u",
        &sock,
        "-t",
        "sshd",
        "-i",
        &format!("Failed password for root from {ip} port 4711 ssh2"),
    ]);
}

fn cli_ok(d: &Daemon, args: &[&str]) {
    let out = d.cli(args);
    assert!(
        out.status.success(),
        "banstream {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Everything the firewall holds in the victim namespace.
fn dump(net: &NetPair) -> String {
    let mut s = String::new();
    for cmd in [
        &["iptables-save"][..],
        &["ip6tables-save"],
        &["ipset", "list"],
        &["nft", "list", "ruleset"],
    ] {
        if have(cmd[0]) {
            s.push_str(&format!("### {}\n{}\n", cmd.join(" "), net.exec_text(cmd)));
        }
    }
    s
}

fn section<'a>(dump: &'a str, name: &str) -> &'a str {
    let start = dump
        .find(&format!("### {name}\n"))
        .map_or(dump.len(), |i| i + name.len() + 5);
    let rest = &dump[start..];
    &rest[..rest.find("\n### ").unwrap_or(rest.len())]
}

fn assert_clean(net: &NetPair, when: &str) {
    let d = dump(net);
    assert!(
        !d.contains("f2b-") && !d.contains("banstream"),
        "{when}: banstream objects left in the firewall:\n{d}"
    );
}

/// Objects that must exist exactly once after a restart (a duplicate means
/// adoption failed).
fn assert_no_duplicates(kind: &str, net: &NetPair) {
    let d = dump(net);
    let v4 = section(&d, "iptables-save");
    let v6 = section(&d, "ip6tables-save");
    let once = |hay: &str, needle: &str| {
        assert_eq!(
            hay.matches(needle).count(),
            1,
            "{needle:?} must appear exactly once in:\n{d}"
        );
    };
    match kind {
        "nftables" => {
            let nft = section(&d, "nft list ruleset");
            once(nft, "table inet banstream");
            for fam in ["v4", "v6"] {
                once(nft, &format!("set f2b-sshd-{fam} {{"));
                once(nft, &format!("chain f2b-sshd-{fam} {{"));
                once(nft, &format!("@f2b-sshd-{fam} "));
            }
            once(nft, &format!("{ATTACKER4} "));
            once(nft, &format!("{ATTACKER6} "));
        }
        "iptables-ipset" => {
            once(v4, "--match-set f2b-sshd src");
            once(v6, "--match-set f2b-sshd6 src");
            let sets = net.exec_text(&["ipset", "list", "-n"]);
            assert_eq!(
                sets.lines().filter(|l| l.starts_with("f2b-sshd")).count(),
                2,
                "{sets}"
            );
            once(section(&d, "ipset list"), &format!("{ATTACKER4} timeout"));
            once(section(&d, "ipset list"), &format!("{ATTACKER6} timeout"));
        }
        _ => {
            once(v4, ":f2b-sshd ");
            once(v6, ":f2b-sshd ");
            once(v4, "-j f2b-sshd");
            once(v6, "-j f2b-sshd");
            once(v4, &format!("-s {ATTACKER4}/32"));
            once(v6, &format!("-s {ATTACKER6}/128"));
            once(v4, "-A f2b-sshd -j RETURN");
        }
    }
}

/// The whole life of one backend: ban both families from syslog, port
/// coverage, unban, crash, adopt, stop.
fn round_trip(kind: &str) {
    let net = NetPair::new();
    let _covered = net.listen(COVERED);
    let _other = net.listen(OTHER);
    let allports = kind == "iptables-allports";
    let open = Duration::from_secs(2);
    for dst in [VICTIM4, VICTIM6] {
        assert!(
            net.until_open(dst, COVERED, open),
            "{kind}: no path to {dst} before the ban"
        );
    }
    let d = start(&net, &jail(kind, ""), None, Vec::new());
    for (attacker, dst) in [(ATTACKER4, VICTIM4), (ATTACKER6, VICTIM6)] {
        assert!(net.attacker_connects(dst, COVERED, open));
        fail(&d, attacker);
        fail(&d, attacker); // the triggering message
        let took = net.until_blocked(dst, COVERED, Duration::from_secs(5));
        let took = took.unwrap_or_else(|| {
            panic!(
                "{kind}: {attacker} still connects 5 s after its ban\n{}\n{}",
                dump(&net),
                d.log_text()
            )
        });
        eprintln!("{kind}: {attacker} blocked {took:?} after the triggering message");
        assert!(
            took < Duration::from_secs(1),
            "{kind}: {attacker} blocked only after {took:?}"
        );
        // A port-limited jail leaves other ports reachable; allports does not.
        assert_eq!(
            net.attacker_connects(dst, OTHER, Duration::from_millis(500)),
            !allports,
            "{kind}: port {OTHER} reachability for banned {attacker}"
        );
    }
    assert!(d.is_banned("sshd", ATTACKER4) && d.is_banned("sshd", ATTACKER6));

    // unban restores the connection.
    cli_ok(&d, &["unban", ATTACKER4]);
    cli_ok(&d, &["unban", "sshd", ATTACKER6]);
    for dst in [VICTIM4, VICTIM6] {
        assert!(
            net.until_open(dst, COVERED, Duration::from_secs(3)),
            "{kind}: unban did not restore {dst}\n{}",
            dump(&net)
        );
    }

    // Ban again, crash, restart: the leftovers are adopted, not duplicated.
    cli_ok(&d, &["ban", "sshd", ATTACKER4]);
    cli_ok(&d, &["ban", "sshd", ATTACKER6]);
    for dst in [VICTIM4, VICTIM6] {
        assert!(net
            .until_blocked(dst, COVERED, Duration::from_secs(3))
            .is_some());
    }
    let dir = d.into_dir(); // SIGKILL
    assert!(
        !net.attacker_connects(VICTIM4, COVERED, Duration::from_millis(300)),
        "{kind}: the ban must outlive a crash"
    );
    let mut d = start(&net, &jail(kind, ""), Some(dir), Vec::new());
    // The store restores both bans at start and re-applies them over the
    // leftovers of the crashed run.
    assert!(
        d.is_banned("sshd", ATTACKER4) && d.is_banned("sshd", ATTACKER6),
        "{kind}: bans restored from the store"
    );
    // A marker ban queued behind them: once it is in the firewall, so are they.
    cli_ok(&d, &["ban", "sshd", "198.18.0.99"]);
    let marker = |n: &NetPair| dump(n).contains("198.18.0.99");
    let t = Instant::now();
    while !marker(&net) && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        marker(&net),
        "{kind}: marker ban never applied\n{}",
        d.log_text()
    );
    assert_no_duplicates(kind, &net);
    assert!(!net.attacker_connects(VICTIM6, COVERED, Duration::from_millis(300)));

    // Stopping removes everything banstream created.
    assert!(d.stop(), "{kind}: unclean exit\n{}", d.log_text());
    assert_clean(&net, kind);
    assert!(net.until_open(VICTIM4, COVERED, Duration::from_secs(2)));
    assert!(net.until_open(VICTIM6, COVERED, Duration::from_secs(2)));
}

#[test]
fn iptables_multiport_bans_unbans_adopts_and_cleans_up() {
    let kind = "iptables-multiport";
    require!(missing(kind).is_none(), missing(kind).unwrap_or_default());
    round_trip(kind);
}

#[test]
fn iptables_allports_bans_unbans_adopts_and_cleans_up() {
    let kind = "iptables-allports";
    require!(missing(kind).is_none(), missing(kind).unwrap_or_default());
    round_trip(kind);
}

#[test]
fn iptables_ipset_bans_unbans_adopts_and_cleans_up() {
    let kind = "iptables-ipset";
    require!(missing(kind).is_none(), missing(kind).unwrap_or_default());
    round_trip(kind);
}

#[test]
fn nftables_bans_unbans_adopts_and_cleans_up() {
    let kind = "nftables";
    require!(missing(kind).is_none(), missing(kind).unwrap_or_default());
    round_trip(kind);
}

/// A daemon in a fresh namespace with `kind`, a listener on the covered
/// port, and ATTACKER4 banned (its packets already dropped).
fn serving_with_a_ban(kind: &str) -> (NetPair, crate::netns::Listener, Daemon) {
    let net = NetPair::new();
    let covered = net.listen(COVERED);
    let d = start(&net, &jail(kind, ""), None, Vec::new());
    cli_ok(&d, &["ban", "sshd", ATTACKER4]);
    assert!(net
        .until_blocked(VICTIM4, COVERED, Duration::from_secs(3))
        .is_some());
    (net, covered, d)
}

/// Bans ATTACKER4 in the sshd jail of `kind`, kills the daemon (SIGKILL:
/// its firewall objects stay, the ban with them) and starts it again on
/// `toml`, under which that ban must go: the address gets through again
/// within 5 s, or the test fails saying `why`.
fn restarted_after_a_crash(
    kind: &str,
    toml: &str,
    why: &str,
) -> (NetPair, crate::netns::Listener, Daemon) {
    let (net, covered, d) = serving_with_a_ban(kind);
    let dir = d.into_dir();
    assert!(!net.attacker_connects(VICTIM4, COVERED, Duration::from_millis(300)));
    let d = start(&net, toml, Some(dir), Vec::new());
    assert!(
        net.until_open(VICTIM4, COVERED, Duration::from_secs(5)),
        "{why}\n{}\n{}",
        dump(&net),
        d.log_text()
    );
    (net, covered, d)
}

/// Two failures of `attacker` on `d`'s log socket (the jail's maxretry)
/// block it from `victim`'s covered port within 3 s.
fn bans_from_its_log(net: &NetPair, d: &Daemon, (attacker, victim): (&str, &str), why: &str) {
    fail(d, attacker);
    fail(d, attacker);
    assert!(
        net.until_blocked(victim, COVERED, Duration::from_secs(3))
            .is_some(),
        "{why}\n{}",
        d.log_text()
    );
}

/// ATTACKER4 still cannot reach the covered port.
fn still_banned(net: &NetPair, why: &str) {
    assert!(
        !net.attacker_connects(VICTIM4, COVERED, Duration::from_millis(500)),
        "{why}\n{}",
        dump(net)
    );
}

#[test]
fn a_second_daemon_on_the_same_config_is_refused_and_the_first_keeps_its_bans() {
    let kind = "nftables";
    require!(missing(kind).is_none(), missing(kind).unwrap_or_default());
    let (net, _covered, d) = serving_with_a_ban(kind);
    // The same configuration again, in the same namespace (an init script
    // plus a manual start). Before the instance lock it replaced both
    // sockets, and on its way out removed the sets holding these bans.
    let err = refused_in(&net, &d.config);
    let pid = d.pid().expect("pid").to_string();
    assert!(
        err.contains("already running") && err.contains(&pid),
        "the error names the running daemon's pid {pid}: {err}"
    );
    // The first one is untouched: its ban holds, its control socket answers
    // and its log socket still feeds it.
    still_banned(&net, "the running daemon's ban was removed");
    cli_ok(&d, &["status"]);
    bans_from_its_log(
        &net,
        &d,
        (ATTACKER6, VICTIM6),
        "the running daemon's log socket no longer reaches it",
    );
}

/// Runs `banstream run -c config` in the victim's namespace, expects it to
/// exit with an error within 10 s, and returns its stderr.
fn refused_in(net: &NetPair, config: &std::path::Path) -> String {
    let mut second = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &net.victim,
            crate::common::bin(),
            "run",
            "-c",
        ])
        .arg(config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("second daemon");
    let t = Instant::now();
    let status = loop {
        if let Some(st) = second.try_wait().expect("wait") {
            break st;
        }
        if t.elapsed() > Duration::from_secs(10) {
            let _ = second.kill();
            panic!("a second daemon in the namespace kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().expect("stderr"), &mut err)
        .expect("stderr");
    assert!(!status.success(), "the second daemon must fail: {err}");
    err
}

/// A daemon of another configuration (in `dir`) with an nftables jail,
/// started in the namespace where `holder` edits the firewall, is refused
/// with an error naming the namespace's firewall and `holder`'s pid.
fn another_firewall_daemon_is_refused(net: &NetPair, holder: &Daemon, dir: &std::path::Path) {
    let config = Daemon::write_config(
        dir,
        &Opts {
            toml: jail("nftables", ""),
            dry_run: false,
            listen: Some("unix = [\"log.sock\"]\n".into()),
            default_jails: false,
            ..Default::default()
        },
    );
    let err = refused_in(net, &config);
    let pid = holder.pid().expect("pid").to_string();
    assert!(
        err.contains("firewall of this network namespace") && err.contains(&pid),
        "the error names the namespace's firewall and the holder's pid {pid}: {err}"
    );
}

#[test]
fn a_daemon_of_another_configuration_in_the_namespace_is_refused_and_the_first_keeps_its_bans() {
    let kind = "nftables";
    require!(missing(kind).is_none(), missing(kind).unwrap_or_default());
    let (net, _covered, d) = serving_with_a_ban(kind);
    // A trial run of another configuration beside the service: its own
    // sockets and database, so the instance locks do not meet, but the
    // same `banstream` table. Without the namespace's firewall lock it
    // adopted the table, and removed it, these bans included, on its way
    // out.
    let other = tempfile::tempdir().expect("tempdir");
    another_firewall_daemon_is_refused(&net, &d, other.path());
    still_banned(&net, "the running daemon's ban was removed");
    // A dry run only logs: it may run beside the service, and its stop
    // leaves the firewall alone.
    let dry = Daemon::start_with(Opts {
        toml: jail(kind, ""),
        dry_run: true,
        listen: Some("unix = [\"log.sock\"]\n".into()),
        wrap: net.wrap(),
        dir: Some(other),
        default_jails: false,
    });
    cli_ok(&dry, &["ban", "sshd", ATTACKER6]);
    drop(dry);
    still_banned(&net, "a dry run's stop removed the running daemon's ban");
    assert!(
        net.attacker_connects(VICTIM6, COVERED, Duration::from_secs(2)),
        "a dry run's ban reached the firewall\n{}",
        dump(&net)
    );
    // The first daemon still bans from its log socket.
    bans_from_its_log(&net, &d, (ATTACKER6, VICTIM6), "");
}

#[test]
fn a_reload_that_first_edits_the_firewall_takes_the_namespace_lock_or_is_refused() {
    let kind = "nftables";
    require!(missing(kind).is_none(), missing(kind).unwrap_or_default());
    let (net, _covered, mut d) = serving_with_a_ban(kind);
    // Another configuration beside the service that only logs: it edits no
    // firewall, so it starts. It runs as nobody, so the lock it takes
    // later is taken after the privilege drop, on the file root opened.
    let as_nobody = |action: &str| format!("[run]\nuser = \"nobody\"\n{}", jail(action, ""));
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let l = start(&net, &as_nobody("log"), Some(dir), Vec::new());
    assert!(l.log_text().contains("dropped root"), "{}", l.log_text());
    // A reload giving it a firewall action would share the service's
    // table (and remove it on the way out): refused while the service
    // runs, naming it, and the log-only configuration stays.
    std::fs::write(l.path().join("conf.d/50-test.toml"), as_nobody(kind)).expect("config");
    let out = l.cli(&["reload"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let pid = d.pid().expect("pid").to_string();
    assert!(
        !out.status.success()
            && err.contains("reload refused")
            && err.contains("firewall of this network namespace")
            && err.contains(&pid),
        "the reload must be refused, naming the service's pid {pid}: {err}"
    );
    cli_ok(&l, &["status"]);
    fail(&l, ATTACKER6);
    fail(&l, ATTACKER6);
    assert!(
        l.wait_for(5, |l| l.is_banned("sshd", ATTACKER6)),
        "the log-only configuration no longer bans\n{}",
        l.log_text()
    );
    assert!(
        net.attacker_connects(VICTIM6, COVERED, Duration::from_secs(2)),
        "a refused reload's action reached the firewall\n{}",
        dump(&net)
    );
    still_banned(&net, "the refused reload removed the service's ban");
    // Once the service is gone, the same reload goes through and takes
    // the lock: this daemon now bans in the firewall, and a third one with
    // a firewall action is refused, naming it.
    assert!(d.stop());
    assert!(
        net.attacker_connects(VICTIM4, COVERED, Duration::from_secs(2)),
        "the stopped service's ban stayed\n{}",
        dump(&net)
    );
    let out = l.cli(&["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    bans_from_its_log(&net, &l, (ATTACKER4, VICTIM4), "");
    let other = tempfile::tempdir().expect("tempdir");
    another_firewall_daemon_is_refused(&net, &l, other.path());
}

/// A private ufw configuration for a namespace: `ip netns exec NS` binds
/// each entry of /etc/netns/NS/ over its namesake in /etc, so ufw (and the
/// daemon's ufw commands) in NS read and write a copy of /etc/ufw, and the
/// host's ufw is never touched. Removed on drop.
struct PrivateUfw(std::path::PathBuf);

impl PrivateUfw {
    fn new(ns: &str) -> PrivateUfw {
        let dir = std::path::PathBuf::from(format!("/etc/netns/{ns}"));
        std::fs::create_dir_all(&dir).expect("/etc/netns/NS");
        let copied = std::process::Command::new("cp")
            .args(["-a", "/etc/ufw"])
            .arg(dir.join("ufw"))
            .status()
            .expect("cp");
        assert!(copied.success(), "copy /etc/ufw");
        PrivateUfw(dir)
    }
}

impl Drop for PrivateUfw {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn ufw_bans_unbans_survives_a_crash_and_cleans_up() {
    let kind = "ufw";
    require!(missing(kind).is_none(), missing(kind).unwrap_or_default());
    let host_conf = std::fs::read_to_string("/etc/ufw/ufw.conf").expect("/etc/ufw/ufw.conf");
    let net = NetPair::new();
    let _etc = PrivateUfw::new(&net.victim);
    let ufw = |args: &[&str]| -> String {
        let argv: Vec<&str> = std::iter::once("ufw").chain(args.iter().copied()).collect();
        let out = net.exec(&argv);
        assert!(
            out.status.success(),
            "ufw {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The admin's firewall, as the field guide sets it up: ufw enabled,
    // denying by default, with the services it runs allowed.
    ufw(&["allow", &format!("{COVERED}/tcp")]);
    ufw(&["allow", &format!("{OTHER}/tcp")]);
    ufw(&["--force", "enable"]);
    assert_eq!(
        std::fs::read_to_string("/etc/ufw/ufw.conf").expect("ufw.conf"),
        host_conf,
        "the host's ufw must not change"
    );
    let _covered = net.listen(COVERED);
    let _other = net.listen(OTHER);
    for dst in [VICTIM4, VICTIM6] {
        assert!(
            net.until_open(dst, COVERED, Duration::from_secs(2)),
            "ufw: no path to {dst} before the ban"
        );
    }
    let d = start(&net, &jail(kind, ""), None, Vec::new());
    for (attacker, dst) in [(ATTACKER4, VICTIM4), (ATTACKER6, VICTIM6)] {
        fail(&d, attacker);
        fail(&d, attacker);
        // ufw is a Python program rewriting its files per rule: slower
        // than the kernel backends, so a longer allowance.
        let took = net.until_blocked(dst, COVERED, Duration::from_secs(10));
        assert!(
            took.is_some(),
            "ufw: {attacker} still connects 10 s after its ban\n{}\n{}",
            ufw(&["status", "numbered"]),
            d.log_text()
        );
        eprintln!("ufw: {attacker} blocked {took:?} after the triggering message");
        assert!(
            net.attacker_connects(dst, OTHER, Duration::from_millis(500)),
            "ufw: the jail covers port {COVERED} only"
        );
    }
    let status = ufw(&["status"]);
    for ip in [ATTACKER4, ATTACKER6] {
        assert!(
            status
                .lines()
                .any(|l| l.contains(ip) && l.ends_with("# banstream sshd")),
            "ufw: no marked rule for {ip}:\n{status}"
        );
    }

    cli_ok(&d, &["unban", ATTACKER4]);
    assert!(
        net.until_open(VICTIM4, COVERED, Duration::from_secs(10)),
        "ufw: unban did not restore {VICTIM4}\n{}",
        ufw(&["status", "numbered"])
    );
    assert!(!ufw(&["status"]).contains(ATTACKER4));

    // A crash leaves the rule in place; the restart re-applies the stored
    // ban without a second copy of it.
    let dir = d.into_dir(); // SIGKILL
    assert!(
        !net.attacker_connects(VICTIM6, COVERED, Duration::from_millis(300)),
        "ufw: the ban must outlive a crash"
    );
    let mut d = start(&net, &jail(kind, ""), Some(dir), Vec::new());
    cli_ok(&d, &["ban", "sshd", "198.18.0.99"]);
    let t = Instant::now();
    while !ufw(&["status"]).contains("198.18.0.99") && t.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = ufw(&["status"]);
    assert!(
        status.contains("198.18.0.99"),
        "ufw: marker ban never applied\n{status}\n{}",
        d.log_text()
    );
    assert_eq!(
        status.lines().filter(|l| l.contains(ATTACKER6)).count(),
        1,
        "ufw: the restored ban is in ufw once:\n{status}"
    );

    // Stopping removes banstream's rules and only those.
    assert!(d.stop(), "ufw: unclean exit\n{}", d.log_text());
    let status = ufw(&["status"]);
    assert!(
        !status.contains("banstream"),
        "ufw: banstream rules left:\n{status}"
    );
    assert!(
        status.contains(&format!("{COVERED}/tcp")) && status.contains("ALLOW"),
        "ufw: the admin's own rules must stay:\n{status}"
    );
    assert!(net.until_open(VICTIM6, COVERED, Duration::from_secs(2)));
}

#[test]
fn ipset_restore_path_bans_and_unbans_when_netlink_is_refused() {
    use banstream::action::ipset::IpsetBackend;
    use banstream::action::{Backend, Family, JailAction, Op, Request};
    use banstream::ban::{Ban, BanOrigin};
    use banstream::config::services::{PortSpec, Protocol};
    use banstream::config::TimeSpec;
    use banstream::jail::JailName;
    use std::sync::Arc;

    let kind = "iptables-ipset";
    require!(missing(kind).is_none(), missing(kind).unwrap_or_default());
    let net = NetPair::new();
    let _covered = net.listen(COVERED);
    for dst in [VICTIM4, VICTIM6] {
        assert!(net.until_open(dst, COVERED, Duration::from_secs(2)));
    }
    let jail = JailName::new("sshd").expect("jail name");
    let mut a = JailAction::log(&jail);
    a.kind = kind.into();
    a.ports = PortSpec::parse(&COVERED.to_string()).expect("port");
    a.protocol = Protocol::Tcp;
    let action = Arc::new(a);
    let req = |op: Op, ip: &str| {
        let now = std::time::SystemTime::now();
        Request {
            op,
            action: action.clone(),
            ban: Arc::new(Ban {
                jail: jail.clone(),
                ip: ip.parse().expect("address"),
                start: now,
                bantime: TimeSpec::Finite(Duration::from_secs(3600)),
                expires: Some(now + Duration::from_secs(3600)),
                failures: 2,
                ban_count: 1,
                origin: BanOrigin::Manual,
            }),
            received: None,
        }
    };
    // The backend's commands run from a thread inside the victim namespace
    // (a child process inherits the namespace of the thread that forks it).
    let victim = net.victim.clone();
    let step = move |mut b: IpsetBackend, f: Box<dyn FnOnce(&mut IpsetBackend) + Send>| {
        crate::netns::in_ns(&victim, move || {
            f(&mut b);
            b
        })
    };
    let bans = vec![req(Op::Ban, ATTACKER4), req(Op::Ban, ATTACKER6)];
    let action2 = action.clone();
    let b = step(
        IpsetBackend::restore_only(),
        Box::new(move |b| {
            b.init().expect("init");
            b.start(&action2, Family::V4).expect("start v4");
            b.start(&action2, Family::V6).expect("start v6");
            b.apply(&bans).expect("ipset restore batch");
        }),
    );
    for dst in [VICTIM4, VICTIM6] {
        assert!(
            net.until_blocked(dst, COVERED, Duration::from_secs(3))
                .is_some(),
            "ipset restore: {dst} still reachable after the ban\n{}",
            dump(&net)
        );
    }
    let sets = net.exec_text(&["ipset", "list"]);
    assert!(
        sets.contains(ATTACKER4) && sets.contains(ATTACKER6),
        "the bans are set elements:\n{sets}"
    );
    let unban = vec![req(Op::Unban, ATTACKER4)];
    let b = step(
        b,
        Box::new(move |b| b.apply(&unban).expect("ipset restore unban")),
    );
    assert!(
        net.until_open(VICTIM4, COVERED, Duration::from_secs(3)),
        "ipset restore: unban did not restore {VICTIM4}\n{}",
        dump(&net)
    );
    assert!(!net.attacker_connects(VICTIM6, COVERED, Duration::from_millis(300)));
    let action3 = action.clone();
    let _ = step(
        b,
        Box::new(move |b| {
            b.stop(&action3, Family::V4).expect("stop v4");
            b.stop(&action3, Family::V6).expect("stop v6");
        }),
    );
    assert_clean(&net, "ipset restore path stopped");
}

#[test]
fn an_address_the_host_gains_while_running_is_never_banned() {
    require!(
        is_root() && have("ip") && have("logger"),
        "needs root, ip and logger for a network namespace"
    );
    let net = NetPair::new();
    // The log action: the ban decision is what is tested here.
    let d = start(&net, &jail("log", ""), None, Vec::new());
    // Addresses the host gains after the configuration (and its list of
    // the host's addresses) was read: a new DHCP lease, an IPv6 privacy
    // address.
    let (own4, own6, other) = ("198.51.100.77", "2001:db8:77::7", "198.51.100.78");
    for (a, fam) in [(format!("{own4}/32"), "-4"), (format!("{own6}/128"), "-6")] {
        let out = net.exec(&["ip", fam, "addr", "add", &a, "dev", "lo", "nodad"]);
        assert!(
            out.status.success(),
            "ip addr add {a}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for ip in [own4, own6, other] {
        fail(&d, ip);
        fail(&d, ip);
    }
    // Lines are applied in order: once the last address is banned, the
    // host's own two have been decided.
    assert!(
        d.wait_for(5, |d| d.is_banned("sshd", other)),
        "the control address must be banned\n{}",
        d.log_text()
    );
    for ip in [own4, own6] {
        assert!(
            !d.is_banned("sshd", ip),
            "{ip} is this host's address now and was banned"
        );
    }
    // The daemon's HTTP listener is inside the namespace.
    let metrics = net.http_get(d.http.expect("http"), "/metrics");
    assert!(
        crate::common::metric_value(&metrics, "banstream_ignored_total{jail=\"sshd\"}") >= 2.0,
        "the refused bans are counted as ignored\n{metrics}"
    );
    let out = d.cli(&["ban", "sshd", own4]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("never banned"),
        "a manual ban of the host's address is refused too: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_crash_leftover_of_a_now_ignored_address_is_removed_at_restart() {
    let kind = "nftables";
    require!(missing(kind).is_none(), missing(kind).unwrap_or_default());
    // The admin puts the address on ignoreip before starting again.
    let toml = jail(kind, &format!("ignoreip = [\"{ATTACKER4}\"]"));
    let (net, _covered, mut d) = restarted_after_a_crash(
        kind,
        &toml,
        "the crashed run's ban of a now ignored address is still in the kernel",
    );
    assert!(!d.is_banned("sshd", ATTACKER4));
    assert!(d.stop(), "unclean exit\n{}", d.log_text());
    assert_clean(&net, "after the restart");
}

#[test]
fn a_crash_leftover_of_a_removed_jail_is_removed_at_restart() {
    let kind = "nftables";
    require!(missing(kind).is_none(), missing(kind).unwrap_or_default());
    // The admin replaced the jail before starting again: nothing would ever
    // lift what the crashed run left for it.
    let toml = jail(kind, "").replace("[jail.sshd]", "[jail.other]");
    let (net, _covered, mut d) = restarted_after_a_crash(
        kind,
        &toml,
        "the crashed run's ban in a jail no longer configured is still in the kernel",
    );
    let table = net.exec_text(&["nft", "list", "table", "inet", "banstream"]);
    assert!(
        !table.contains("f2b-sshd"),
        "sshd's objects are left:\n{table}"
    );
    assert!(
        d.log_text().contains("no longer configured"),
        "the removal is logged\n{}",
        d.log_text()
    );
    // The configured jail still bans.
    bans_from_its_log(&net, &d, (ATTACKER4, VICTIM4), "the other jail must ban");
    assert!(d.stop(), "unclean exit\n{}", d.log_text());
    assert_clean(&net, "after the restart");
}

/// Sends `n` failure lines for distinct addresses straight to the daemon's
/// unix socket (one datagram each, as syslogd would).
fn flood(d: &Daemon, n: u32) {
    let s = UnixDatagram::unbound().expect("socket");
    for i in 0..n {
        let line = format!(
            "<38>Nov 24 14:00:01 sshd[7]: Failed password for root from 198.19.{}.{} port 4711 ssh2",
            i / 250,
            i % 250 + 1
        );
        s.send_to(line.as_bytes(), &d.unix[0]).expect("send");
    }
}

fn bulk(kind: &str) {
    const N: u32 = 20_000;
    let net = NetPair::new();
    let mut d = start(
        &net,
        &format!(
            "[jail.bulk]\nenabled = true\nfilter = \"sshd\"\nmaxretry = 1\nbantime = \"1h\"\nport = \"{COVERED}\"\nbanaction = \"{kind}\"\n"
        ),
        None,
        Vec::new(),
    );
    let count = |net: &NetPair| -> usize {
        match kind {
            "nftables" => {
                let out = net.exec_text(&[
                    "nft",
                    "-j",
                    "list",
                    "set",
                    "inet",
                    "banstream",
                    "f2b-bulk-v4",
                ]);
                serde_json::from_str::<serde_json::Value>(&out)
                    .ok()
                    .and_then(|v| {
                        v["nftables"].as_array()?.iter().find_map(|i| {
                            i.get("set")
                                .map(|s| s["elem"].as_array().map_or(0, Vec::len))
                        })
                    })
                    .unwrap_or(0)
            }
            _ => net
                .exec_text(&["ipset", "list", "-t", "f2b-bulk"])
                .lines()
                .find_map(|l| l.strip_prefix("Number of entries: "))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0),
        }
    };
    // A ban observes the latency histogram once its batch is in the kernel:
    // poll that (cheap) rather than listing 20,000 elements over and over.
    let applied = |d: &Daemon| {
        let text = net.http_get(d.http.expect("http"), "/metrics");
        crate::common::metric_value(&text, "banstream_ban_latency_seconds_count")
    };
    let t = Instant::now();
    flood(&d, N);
    let sent = t.elapsed();
    while applied(&d) < f64::from(N) && t.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = t.elapsed();
    let n = count(&net);
    assert_eq!(
        n,
        N as usize,
        "{kind}: {n} of {N} bans in the kernel\n{}",
        d.log_text()
    );
    assert_eq!(d.banned().len(), N as usize);
    let t = Instant::now();
    assert!(d.stop(), "{}", d.log_text());
    let stop = t.elapsed();
    eprintln!(
        "BENCH {kind}: {N} bans sent in {sent:?}, all in the kernel after {took:?}; stop (teardown) took {stop:?}"
    );
    assert_clean(&net, kind);
}

#[test]
fn bulk_20000_bans_through_nftables() {
    require!(
        missing("nftables").is_none(),
        missing("nftables").unwrap_or_default()
    );
    bulk("nftables");
}

#[test]
fn bulk_20000_bans_through_ipset() {
    let kind = "iptables-ipset";
    require!(missing(kind).is_none(), missing(kind).unwrap_or_default());
    bulk(kind);
}

#[test]
fn failing_firewall_command_is_counted_retried_and_the_ban_kept() {
    // ipset, because its commands are separate programs a wrapper can
    // intercept (nftables runs in-process through libnftables).
    let kind = "iptables-ipset";
    require!(missing(kind).is_none(), missing(kind).unwrap_or_default());
    let net = NetPair::new();
    let _l = net.listen(COVERED);
    // A wrapper `ipset` first on PATH that fails while a flag file exists.
    let bin = tempfile::tempdir().expect("tempdir");
    let flag = bin.path().join("fail");
    let real = String::from_utf8_lossy(
        &std::process::Command::new("sh")
            .args(["-c", "command -v ipset"])
            .output()
            .expect("sh")
            .stdout,
    )
    .trim()
    .to_string();
    let wrapper = bin.path().join("ipset");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nif [ -e '{}' ]; then echo 'injected failure' >&2; exit 1; fi\nexec '{real}' \"$@\"\n",
            flag.display()
        ),
    )
    .expect("wrapper");
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let path = format!(
        "PATH={}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut wrap = net.wrap();
    wrap.extend(["env".to_string(), path]);
    let mut d = start(&net, &jail(kind, ""), None, wrap);
    std::fs::write(&flag, "").expect("flag");
    fail(&d, ATTACKER4);
    fail(&d, ATTACKER4);
    assert!(
        d.wait_for(5, |d| d.is_banned("sshd", ATTACKER4)),
        "ban not decided"
    );
    let errors = |d: &Daemon| {
        let text = net.http_get(d.http.expect("http"), "/metrics");
        crate::common::metric_value(
            &text,
            "banstream_action_errors_total{action=\"iptables-ipset\",jail=\"sshd\"}",
        )
    };
    let t = Instant::now();
    while errors(&d) < 3.0 && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let failed = errors(&d);
    assert!(
        failed >= 3.0,
        "failures not counted and retried: {failed}\n{}",
        d.log_text()
    );
    assert!(
        net.attacker_connects(VICTIM4, COVERED, Duration::from_millis(500)),
        "nothing can be in the kernel while ipset fails"
    );
    std::fs::remove_file(&flag).expect("unflag");
    assert!(
        // The retry delay doubles up to 30 s, so allow for one full delay.
        net.until_blocked(VICTIM4, COVERED, Duration::from_secs(40))
            .is_some(),
        "the ban was lost after the firewall recovered\n{}",
        d.log_text()
    );
    let log = d.log_text();
    let logged = log.matches("action failed, will retry").count();
    assert!(
        log.contains("injected failure"),
        "the error must carry nft's stderr:\n{log}"
    );
    assert!(
        logged >= 1 && (logged as f64) < failed,
        "a burst of {failed} failures must be logged once, not {logged} times:\n{log}"
    );
    // The recovery line is written once apply has returned, which can be
    // a moment after the kernel already drops the packets.
    assert!(
        d.wait_for(10, |d| d.log_text().contains("action recovered")),
        "{}",
        d.log_text()
    );
    assert!(d.stop());
    assert_clean(&net, "after recovery");
}

#[test]
fn command_action_keeps_shell_metacharacters_inert() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let p = |n: &str| dir.path().join(n).display().to_string();
    let note = format!(
        "x'; touch {}; $(touch {}) `touch {}` | touch {} && touch {} > {}",
        p("pwned1"),
        p("pwned2"),
        p("pwned3"),
        p("pwned4"),
        p("pwned5"),
        p("pwned6")
    );
    let toml = format!(
        r#"
[action.record]
actionstart = [["mkdir", "-p", "<out>"]]
actionban = [
  ["sh", "-c", "printf '%s\n' \"$1\" >> \"$2\"", "sh", "<note> <ip> <bantime>", "<out>/notes"],
  ["touch", "<out>/ban-<ip>"],
]
actionunban = [["rm", "-f", "<out>/ban-<ip>"]]
out = "{out}"
note = {note:?}

[jail.cmd]
enabled = true
filter = "sshd"
bantime = "1h"
banaction = "record"
"#,
        out = out.display(),
    );
    let mut d = Daemon::start_with(Opts {
        toml: toml.clone(),
        dry_run: false,
        ..Default::default()
    });
    cli_ok(&d, &["ban", "cmd", "192.0.2.44"]);
    let banned = out.join("ban-192.0.2.44");
    assert!(
        d.wait_for(10, |_| banned.exists()),
        "actionban did not run\n{}",
        d.log_text()
    );
    let notes = std::fs::read_to_string(out.join("notes")).unwrap_or_default();
    assert_eq!(
        notes,
        format!("{note} 192.0.2.44 3600\n"),
        "the value must arrive verbatim"
    );
    cli_ok(&d, &["unban", "192.0.2.44"]);
    assert!(
        d.wait_for(10, |_| !banned.exists()),
        "actionunban did not run"
    );
    assert!(d.stop());
    for i in 1..=6 {
        assert!(
            !dir.path().join(format!("pwned{i}")).exists(),
            "a tag value was run by a shell (pwned{i})"
        );
    }

    // The same value inside shell code is refused when the config is checked.
    let bad = toml.replace(
        "[\"touch\", \"<out>/ban-<ip>\"],",
        "[\"sh\", \"-c\", \"echo <note> >> <out>/unsafe\"],",
    );
    assert_ne!(bad, toml);
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, &bad).expect("config");
    let check = std::process::Command::new(crate::common::bin())
        .args(["check", "-c"])
        .arg(&cfg)
        .output()
        .expect("check");
    let err = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        !check.status.success(),
        "check accepted shell code with a hostile tag"
    );
    assert!(
        err.contains("action.record.actionban[1]") && err.contains("<note>"),
        "{err}"
    );
}

/// Two jails on the same objects, as the seed guide's named-refused-udp
/// and -tcp (`iptables-multiport[name=Named]`): an unban in one, or a
/// reload removing one, must not take the other's ban out of the kernel.
#[test]
fn jails_sharing_a_chain_keep_each_others_bans() {
    let kind = "iptables-multiport";
    require!(missing(kind).is_none(), missing(kind).unwrap_or_default());
    let net = NetPair::new();
    let _covered = net.listen(COVERED);
    let shared = |j: &str| {
        format!(
            "[jail.{j}]\nenabled = true\nfilter = \"sshd\"\nmaxretry = 2\nbantime = \"1h\"\nport = \"{COVERED}\"\naction = [\"iptables-multiport[name=shared]\"]\n"
        )
    };
    let d = start(&net, &(shared("sshd") + &shared("web")), None, Vec::new());
    cli_ok(&d, &["ban", "sshd", ATTACKER4]);
    cli_ok(&d, &["ban", "web", ATTACKER4]);
    assert!(net
        .until_blocked(VICTIM4, COVERED, Duration::from_secs(3))
        .is_some());
    // web still holds the ban: the shared chain keeps the address.
    cli_ok(&d, &["unban", "sshd", ATTACKER4]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !net.attacker_connects(VICTIM4, COVERED, Duration::from_secs(1)),
        "sshd's unban lifted web's ban:\n{}",
        dump(&net)
    );
    // A reload removing sshd stops its action, which removes the chain:
    // web's ban goes in again.
    cli_ok(&d, &["ban", "sshd", ATTACKER4]);
    std::fs::write(d.path().join("conf.d/50-test.toml"), shared("web")).expect("config");
    cli_ok(&d, &["reload"]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        net.until_blocked(VICTIM4, COVERED, Duration::from_secs(3))
            .is_some(),
        "the reload removing sshd took web's ban out of the kernel:\n{}",
        dump(&net)
    );
    assert!(d.is_banned("web", ATTACKER4));
    // And web's own unban lifts it.
    cli_ok(&d, &["unban", "web", ATTACKER4]);
    assert!(
        net.until_open(VICTIM4, COVERED, Duration::from_secs(3)),
        "{}",
        dump(&net)
    );
}

/// The kinds of `kinds` whose tools are installed (the others are skipped
/// with the reason).
fn installed<'a>(kinds: &[&'a str]) -> Vec<&'a str> {
    kinds
        .iter()
        .copied()
        .filter(|kind| match missing(kind) {
            Some(why) => {
                eprintln!("{kind}: skipped, {why}");
                false
            }
            None => true,
        })
        .collect()
}

/// A jail of the sshd filter whose action is `kind[name=shared]`.
fn sharing(kind: &str, jail: &str, port: u16, bantime: &str) -> String {
    format!(
        "[jail.{jail}]\nenabled = true\nfilter = \"sshd\"\nmaxretry = 2\nbantime = \"{bantime}\"\nport = \"{port}\"\naction = [\"{kind}[name=shared]\"]\n"
    )
}

/// Jails sharing `name=` with different ports (the seed guide's
/// named-refused-udp and -tcp differ in protocol): each start keeps the
/// other jails' rules on the shared objects instead of replacing them.
#[test]
fn jails_sharing_objects_with_different_ports_each_keep_their_rule() {
    let net = NetPair::new();
    let _covered = net.listen(COVERED);
    let _other = net.listen(OTHER);
    let kinds = installed(&["iptables-multiport", "iptables-ipset", "nftables"]);
    for &kind in &kinds {
        let config = sharing(kind, "sshd", COVERED, "1h") + &sharing(kind, "web", OTHER, "1h");
        let d = start(&net, &config, None, Vec::new());
        cli_ok(&d, &["ban", "sshd", ATTACKER4]);
        assert!(
            net.until_blocked(VICTIM4, COVERED, Duration::from_secs(3))
                .is_some(),
            "{kind}: sshd's ban does not drop:\n{}",
            dump(&net)
        );
        // web's first IPv4 ban starts its rule on the shared objects.
        cli_ok(&d, &["ban", "web", "192.0.2.77"]);
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            !net.attacker_connects(VICTIM4, COVERED, Duration::from_secs(1)),
            "{kind}: web's start replaced sshd's rule:\n{}",
            dump(&net)
        );
        // And web's rule covers its own port.
        cli_ok(&d, &["ban", "web", ATTACKER4]);
        assert!(
            net.until_blocked(VICTIM4, OTHER, Duration::from_secs(3))
                .is_some(),
            "{kind}: web's ban does not drop on its port:\n{}",
            dump(&net)
        );
        let mut d = d;
        assert!(d.stop(), "{kind}: the daemon did not stop cleanly");
        assert_clean(&net, kind);
    }
    require!(!kinds.is_empty(), "none of the firewall tools is installed");
}

/// One kernel element serves every jail sharing a set: a shorter ban in
/// one jail must not write its timeout over a longer ban of the other.
#[test]
fn a_shorter_ban_in_a_sharing_jail_keeps_the_longer_one_in_the_kernel() {
    let net = NetPair::new();
    let _covered = net.listen(COVERED);
    let kinds = installed(&["nftables", "iptables-ipset"]);
    for &kind in &kinds {
        let config = sharing(kind, "sshd", COVERED, "-1") + &sharing(kind, "web", COVERED, "2s");
        let mut d = start(&net, &config, None, Vec::new());
        cli_ok(&d, &["ban", "sshd", ATTACKER4]);
        cli_ok(&d, &["ban", "web", ATTACKER4]);
        assert!(
            net.until_blocked(VICTIM4, COVERED, Duration::from_secs(3))
                .is_some(),
            "{kind}: not banned:\n{}",
            dump(&net)
        );
        // web's ban (and a kernel timeout of its length) is over.
        std::thread::sleep(Duration::from_millis(4500));
        assert!(d.is_banned("sshd", ATTACKER4) && !d.is_banned("web", ATTACKER4));
        assert!(
            !net.attacker_connects(VICTIM4, COVERED, Duration::from_secs(1)),
            "{kind}: web's 2 s timeout lifted sshd's permanent ban:\n{}",
            dump(&net)
        );
        assert!(d.stop(), "{kind}: the daemon did not stop cleanly");
        assert_clean(&net, kind);
    }
    require!(!kinds.is_empty(), "none of the firewall tools is installed");
}

#[test]
fn reload_removing_a_jail_removes_its_firewall_objects() {
    require!(
        missing("nftables").is_none(),
        missing("nftables").unwrap_or_default()
    );
    let net = NetPair::new();
    let both = format!(
        "{}\n[jail.web]\nenabled = true\nfilter = \"sshd\"\nmaxretry = 2\nport = \"{OTHER}\"\nbanaction = \"nftables\"\n",
        jail("nftables", "")
    );
    let mut d = start(&net, &both, None, Vec::new());
    cli_ok(&d, &["ban", "sshd", ATTACKER4]);
    cli_ok(&d, &["ban", "web", ATTACKER4]);
    let has = |n: &NetPair, what: &str| n.exec_text(&["nft", "list", "ruleset"]).contains(what);
    assert!(d.wait_for(5, |_| has(&net, "chain f2b-web-v4")
        && has(&net, "chain f2b-sshd-v4")));
    std::fs::write(d.path().join("conf.d/50-test.toml"), jail("nftables", "")).expect("config");
    cli_ok(&d, &["reload"]);
    assert!(
        d.wait_for(5, |_| !has(&net, "f2b-web")),
        "the removed jail's set and chain are still there:\n{}",
        dump(&net)
    );
    assert!(
        has(&net, "chain f2b-sshd-v4"),
        "the remaining jail lost its chain"
    );
    assert!(d.stop());
    assert_clean(&net, "after reload and stop");
}
