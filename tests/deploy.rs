//! Deployment: the OpenRC service files against the binary's real flags,
//! the privilege drop (`[run] user`), logging to syslog without loops, and
//! the static musl build.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::{bin, have, is_root, Daemon, Opts};

fn example(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(rel)
}

fn help(args: &[&str]) -> String {
    let out = Command::new(bin()).args(args).output().expect("help");
    assert!(out.status.success(), "{args:?}");
    String::from_utf8_lossy(&out.stdout).to_string()
}

// ----------------------------------------------------------------- OpenRC

#[test]
fn openrc_script_parses() {
    let initd = example("openrc/banstream.initd");
    let mode = std::fs::metadata(&initd).unwrap().permissions().mode();
    assert!(mode & 0o111 != 0, "the init script must be executable");
    let text = std::fs::read_to_string(&initd).unwrap();
    assert!(text.starts_with("#!/sbin/openrc-run\n"));
    for f in [&initd, &example("openrc/banstream.confd")] {
        let out = Command::new("sh").arg("-n").arg(f).output().unwrap();
        assert!(
            out.status.success(),
            "sh -n {f:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if have("openrc-run") {
        // openrc-run exits 0 even on a syntax error: read what it says.
        let out = Command::new("openrc-run")
            .arg(&initd)
            .arg("describe")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.trim().is_empty(), "openrc-run describe: {stderr}");
        assert!(stdout.contains("bans attackers in-stream"), "{stdout}");
        assert!(
            stdout.contains("reload: Re-read the configuration (SIGHUP)"),
            "{stdout}"
        );
    } else {
        eprintln!("openrc-run not installed: checked with sh -n only");
    }
}

/// Sources conf.d and init.d in sh, with OpenRC's helpers stubbed, and runs
/// `body` there. Returns (success, stdout).
fn in_service_shell(env: &[(&str, &str)], body: &str) -> (bool, String) {
    let script = format!(
        "ebegin() {{ echo \"ebegin $*\"; }}\neend() {{ echo \"eend $1\"; return $1; }}\n\
         checkpath() {{ echo \"checkpath $*\"; }}\n\
         . '{confd}'\n. '{initd}'\n{body}\n",
        confd = example("openrc/banstream.confd").display(),
        initd = example("openrc/banstream.initd").display(),
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn openrc_script_commands_match_the_binarys_flags() {
    let (ok, out) = in_service_shell(
        &[("RC_SVCNAME", "banstream"), ("daemon_opts", "--dry-run")],
        "printf '%s\\n' \"$command\" \"$command_args\" \"$supervisor\" \"$pidfile\" \"$retry\"",
    );
    assert!(ok, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "/usr/bin/banstream");
    assert_eq!(lines[2], "supervise-daemon");
    assert_eq!(lines[3], "/run/banstream.pid");
    assert!(
        lines[4].starts_with("TERM/"),
        "stop must send SIGTERM first"
    );
    let args: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        args,
        ["run", "-c", "/etc/banstream/banstream.toml", "--dry-run"]
    );
    // Every subcommand and flag the script uses exists in the binary.
    let top = help(&["--help"]);
    for sub in ["run", "check"] {
        assert!(
            top.lines().any(|l| l.trim_start().starts_with(sub)),
            "no `{sub}` subcommand in:\n{top}"
        );
    }
    let run = help(&["run", "--help"]);
    for flag in ["-c, --config", "--dry-run"] {
        assert!(run.contains(flag), "`run` has no {flag}:\n{run}");
    }
    assert!(help(&["check", "--help"]).contains("-c, --config"));

    // The dependencies the issue asks for.
    let (_, deps) = in_service_shell(
        &[],
        "need() { echo need $*; }; after() { echo after $*; }; before() { echo before $*; }; depend",
    );
    assert!(deps.contains("need net"), "{deps}");
    assert!(deps.contains("after firewall"), "{deps}");
    assert!(deps.contains("before logger"), "{deps}");
}

#[test]
fn openrc_checkconfig_runs_banstream_check_and_reload_sends_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[defaults]\nmaxretry = 3\n").unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[defaults]\nmaxretyr = 3\n").unwrap();
    let (ok, out) = in_service_shell(
        &[
            ("daemon_binary", bin()),
            ("cfgfile", good.to_str().unwrap()),
        ],
        "checkconfig",
    );
    assert!(ok && out.contains("eend 0"), "{out}");
    let (ok, out) = in_service_shell(
        &[("daemon_binary", bin()), ("cfgfile", bad.to_str().unwrap())],
        "checkconfig",
    );
    assert!(!ok, "a broken configuration must fail checkconfig: {out}");

    // reload: checkconfig, then supervise-daemon NAME --signal HUP.
    let (ok, out) = in_service_shell(
        &[
            ("daemon_binary", bin()),
            ("cfgfile", good.to_str().unwrap()),
            ("RC_SVCNAME", "banstream"),
        ],
        "supervisor=fake_supervisor; fake_supervisor() { echo \"supervisor $*\"; }; reload",
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("supervisor banstream --signal HUP --pidfile /run/banstream.pid"),
        "{out}"
    );
}

#[test]
fn sighup_reloads_and_sigterm_stops_cleanly_as_the_service_does() {
    let toml = "[jail.sshd]\nenabled = true\nfilter = \"sshd\"\n";
    let mut d = Daemon::start(toml);
    let pid = nix::unistd::Pid::from_raw(d.pid().unwrap() as i32);
    std::fs::write(
        d.path().join("conf.d/50-test.toml"),
        format!("{toml}maxretry = 2\n"),
    )
    .unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    assert!(
        d.wait_for(10, |d| d.log_text().contains("configuration reloaded")),
        "{}",
        d.log_text()
    );
    let out = d.cli(&["status", "sshd", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["maxretry"], 2, "{v}");
    assert!(d.stop(), "SIGTERM must end the daemon with status 0");
    let log = d.log_text();
    assert!(
        log.contains("removing firewall objects") && log.contains("stopped received="),
        "{log}"
    );
}

// ------------------------------------------------------ privileges, logging

/// Ports below 1024 that are free on loopback for both UDP and TCP.
fn privileged_port() -> Option<u16> {
    (700..1000).find(|p| {
        std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", *p)).is_ok()
    })
}

fn status_field(pid: u32, key: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[test]
fn run_user_drops_root_keeps_only_network_capabilities_and_still_bans() {
    crate::require!(is_root(), "needs root to drop privileges");
    let Ok(Some(nobody)) = nix::unistd::User::from_name("nobody") else {
        eprintln!("SKIPPED: no user nobody");
        return;
    };
    let Some(port) = privileged_port() else {
        eprintln!("SKIPPED: no free port below 1024");
        return;
    };
    // The user must be able to reach the directory the harness uses.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // A pid file left root's by an earlier run as root: handed over with
    // the directories, or the user could not take the instance lock.
    std::fs::create_dir(dir.path().join("run")).unwrap();
    std::fs::write(dir.path().join("run/banstream.pid"), "1\n").unwrap();
    let d = Daemon::start_with(Opts {
        toml: "[run]\nuser = \"nobody\"\n[jail.sshd]\nenabled = true\nfilter = \"sshd\"\nmaxretry = 2\n"
            .into(),
        listen: Some(format!(
            "udp = [\"127.0.0.1:{port}\"]\ntcp = [\"127.0.0.1:{port}\"]\nunix = [\"log.sock\"]\n"
        )),
        dir: Some(dir),
        ..Default::default()
    });
    let pid = d.pid().unwrap();
    let uid = nobody.uid.as_raw().to_string();
    assert!(
        status_field(pid, "Uid:")
            .split_whitespace()
            .all(|u| u == uid),
        "real, effective, saved and fs uid: {}",
        status_field(pid, "Uid:")
    );
    // CAP_NET_BIND_SERVICE (10) and CAP_NET_ADMIN (12): 0x1400, and the
    // same in the ambient set, so nft/ipset/iptables children inherit them.
    for set in ["CapEff:", "CapPrm:", "CapAmb:", "CapBnd:"] {
        assert_eq!(
            u64::from_str_radix(&status_field(pid, set), 16).unwrap(),
            0x1400,
            "{set}"
        );
    }
    // Bound port {port} < 1024 after the drop, and the pipeline works.
    assert_eq!(d.udp[0].port(), port);
    for _ in 0..2 {
        d.send_udp(
            b"<38>Nov 24 14:54:38 sshd[1]: Failed password for root from 203.0.113.81 port 22 ssh2",
        );
    }
    assert!(
        d.wait_for(10, |d| d.is_banned("sshd", "203.0.113.81")),
        "{}",
        d.log_text()
    );
    // Its directories were handed over; root still talks to the control socket.
    let meta = std::fs::metadata(d.path().join("run")).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&meta),
        nobody.uid.as_raw()
    );
    assert!(d.log_text().contains("dropped root"), "{}", d.log_text());
    let pidfile = d.path().join("run/banstream.pid");
    assert_eq!(
        std::fs::read_to_string(&pidfile).unwrap().trim(),
        pid.to_string()
    );
    let meta = std::fs::metadata(&pidfile).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&meta),
        nobody.uid.as_raw()
    );
}

#[test]
fn run_user_refuses_ufw_and_unknown_capabilities() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("b.toml");
    std::fs::write(
        &conf,
        "[run]\nuser = \"banstream\"\ncapabilities = [\"sys_admin\"]\n[jail.sshd]\nbanaction = \"ufw\"\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["check", "-c"])
        .arg(&conf)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("sys_admin"), "{text}");
}

#[test]
fn own_log_lines_sent_to_our_own_socket_never_loop() {
    // The worst case: banstream logs to syslog and the "syslog socket" is
    // banstream's own input. Its lines must come back, be dropped unrouted
    // and produce nothing further.
    let dir = tempfile::tempdir().unwrap();
    let filter = dir.path().join("loop.toml");
    // Matches banstream's own "Ban jail=... ip=X" lines, from any program.
    std::fs::write(
        &filter,
        "description = \"would loop\"\nprograms = []\nfailregex = ['ip=<HOST>']\nignoreregex = []\n",
    )
    .unwrap();
    let sock = dir.path().join("run/log.sock");
    let d = Daemon::start_with(Opts {
        toml: format!(
            "[log]\ntarget = \"syslog\"\nsyslog_socket = \"{}\"\n[jail.loop]\nenabled = true\nfilter = \"{}\"\nmaxretry = 2\n",
            sock.display(),
            filter.display()
        ),
        dir: Some(dir),
        ..Default::default()
    });
    for _ in 0..2 {
        d.send_udp(b"<38>Nov 24 14:54:38 tester[1]: probe ip=203.0.113.91");
    }
    assert!(
        d.wait_for(10, |d| d.is_banned("loop", "203.0.113.91")),
        "{}",
        d.log_text()
    );
    let own = "banstream_messages_dropped_total{reason=\"own_log\"}";
    assert!(
        d.wait_for(10, |d| d.metric(own) >= 1.0),
        "banstream's own lines should reach its unix socket"
    );
    std::thread::sleep(Duration::from_millis(500));
    let before = d.metric("banstream_messages_total{transport=\"unix\"}");
    std::thread::sleep(Duration::from_millis(1000));
    let after = d.metric("banstream_messages_total{transport=\"unix\"}");
    assert_eq!(before, after, "own log traffic must die out, not cycle");
    assert_eq!(
        d.metric("banstream_failures_total{jail=\"loop\"}"),
        2.0,
        "banstream's own 'Ban ... ip=' line was counted as a failure"
    );
    // Lines went to syslog, not stderr.
    assert!(!d.log_text().contains("Ban"), "{}", d.log_text());
}

// ------------------------------------------------------------ static build

#[test]
fn static_musl_release_build() {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("x86_64-unknown-linux-musl"))
        .unwrap_or(false);
    crate::require!(
        installed,
        "target x86_64-unknown-linux-musl not installed (rustup target add x86_64-unknown-linux-musl; .ci/run tries)"
    );
    // A full release build of every dependency: minutes on 2 cores. CI
    // (CI=true) runs it; elsewhere ask for it. Not a BANSTREAM_* name:
    // those are configuration layers, which the daemon would refuse.
    crate::require!(
        std::env::var_os("CI").is_some() || std::env::var_os("TEST_STATIC_MUSL").is_some(),
        "the static release build runs in CI, or with TEST_STATIC_MUSL=1"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Its own target directory: the test binary's build holds target/.
    let target_dir = root.join("target/musl");
    let out = Command::new(env!("CARGO"))
        .current_dir(root)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "x86_64-unknown-linux-musl",
        ])
        .env("CARGO_TARGET_DIR", &target_dir)
        // Static linking is what is under test, not the optimiser: without
        // LTO and with parallel codegen the build takes half the time, which
        // keeps CI on two cores well inside its budget. The shipped build
        // (BENCHMARKS.md, "Static Alpine binary") keeps the release profile.
        .env("CARGO_PROFILE_RELEASE_LTO", "false")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16")
        .output()
        .expect("cargo build");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exe = target_dir.join("x86_64-unknown-linux-musl/release/banstream");
    let size = std::fs::metadata(&exe).unwrap().len();
    eprintln!("static musl binary: {} bytes", size);
    // Static: no program interpreter, runs with no libc around it.
    let bytes = std::fs::read(&exe).unwrap();
    assert!(
        !bytes.windows(14).any(|w| w == b"/lib/ld-musl-x"),
        "the binary asks for a dynamic loader"
    );
    if have("file") {
        let f = Command::new("file").arg(&exe).output().unwrap();
        let f = String::from_utf8_lossy(&f.stdout);
        assert!(
            f.contains("statically linked") || f.contains("static-pie"),
            "{f}"
        );
    }
    let v = Command::new(&exe).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("banstream "));
    let c = Command::new(&exe)
        .args(["check", "-c"])
        .arg(root.join("conf/banstream.toml"))
        .output()
        .unwrap();
    assert!(
        c.status.success(),
        "{}{}",
        String::from_utf8_lossy(&c.stdout),
        String::from_utf8_lossy(&c.stderr)
    );
}

// ---------------------------------------------------------------- APKBUILD

#[test]
fn apkbuild_package_installs_a_checkable_service() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let apk = example("alpine/APKBUILD");
    for f in [&apk, &example("alpine/banstream.pre-install")] {
        let out = Command::new("sh").arg("-n").arg(f).output().unwrap();
        assert!(out.status.success(), "sh -n {f:?}");
    }
    // A build directory shaped like the release tarball, with the binary
    // under test standing in for target/release/banstream.
    let tmp = tempfile::tempdir().unwrap();
    let build = tmp.path().join("build");
    std::fs::create_dir_all(build.join("target/release")).unwrap();
    for d in ["conf", "examples", "README.md"] {
        std::os::unix::fs::symlink(root.join(d), build.join(d)).unwrap();
    }
    std::os::unix::fs::symlink(bin(), build.join("target/release/banstream")).unwrap();
    let pkg = tmp.path().join("pkg");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "set -e; . '{}'; cd '{}'; package",
            apk.display(),
            build.display()
        ))
        .env("pkgdir", &pkg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "package(): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "usr/bin/banstream",
        "etc/init.d/banstream",
        "etc/conf.d/banstream",
        "etc/banstream/banstream.toml",
        "etc/banstream/filters/sshd.toml",
        "etc/banstream/filters/ufw-port-scan.toml",
        "var/lib/banstream",
        "usr/share/doc/banstream/examples/rsyslog/banstream-tcp.conf",
    ] {
        assert!(pkg.join(f).exists(), "{f} not packaged");
    }
    let mode = std::fs::metadata(pkg.join("etc/init.d/banstream"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    // The packaged configuration passes `banstream check` with the packaged filters.
    let out = Command::new(pkg.join("usr/bin/banstream"))
        .args(["check", "-c"])
        .arg(pkg.join("etc/banstream/banstream.toml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("etc/banstream/banstream.toml"), "{text}");
}
