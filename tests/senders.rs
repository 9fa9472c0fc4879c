//! Real senders in front of the real binary: a private rsyslogd, BusyBox
//! syslogd and syslog-ng run the configs shipped in examples/, programs log
//! through them the way they do on a host, and the bans land.
//!
//! No system path is touched: rsyslogd and syslog-ng get their own config,
//! socket, pid file and work directory; BusyBox syslogd (whose /dev/log is
//! compiled in) runs in a private mount namespace with a tmpfs on /dev.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{have, is_root, Daemon, Opts};

fn example(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(rel)
}

/// A port that was free a moment ago (for restarts on a fixed port).
fn free_port() -> u16 {
    let s = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let p = s.local_addr().expect("addr").port();
    drop(s);
    p
}

/// Reads an example, pointing it at `port`.
fn example_at(rel: &str, port: u16) -> String {
    let text = std::fs::read_to_string(example(rel)).expect("read example");
    assert!(text.contains("5514"), "{rel} should target port 5514");
    text.replace("5514", &port.to_string())
}

fn sshd_jail(maxretry: u32) -> String {
    format!(
        "[jail.sshd]\nenabled = true\nfilter = \"sshd\"\nmaxretry = {maxretry}\nbantime = \"1h\"\n\
         [jail.ufw-port-scan]\nenabled = true\nmaxretry = 2\n\
         [jail.pam-generic]\nenabled = true\nmaxretry = 2\n"
    )
}

fn start_listening(listen: &str, toml: &str, dir: Option<tempfile::TempDir>) -> Daemon {
    Daemon::start_with(Opts {
        toml: toml.to_string(),
        listen: Some(format!("{listen}\nunix = []\n")),
        dir,
        ..Default::default()
    })
}

/// A killed-on-drop child process.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_path(p: &Path, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if p.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

// ---------------------------------------------------------------- rsyslog

/// A private rsyslogd: own config, pid file, work directory and imuxsock
/// socket; the example files included after the private header.
struct Rsyslog {
    _proc: Proc,
    socket: PathBuf,
    dir: tempfile::TempDir,
}

impl Rsyslog {
    fn start(transport: &str, port: u16) -> Rsyslog {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::create_dir(d.join("work")).expect("work dir");
        let fwd = d.join("60-banstream.conf");
        std::fs::write(
            &fwd,
            example_at(&format!("rsyslog/banstream-{transport}.conf"), port),
        )
        .expect("write");
        let socket = d.join("log.sock");
        let conf = d.join("rsyslog.conf");
        std::fs::write(
            &conf,
            format!(
                "global(workDirectory=\"{work}\")\n\
                 module(load=\"imuxsock\" SysSock.Use=\"off\")\n\
                 input(type=\"imuxsock\" Socket=\"{sock}\" CreatePath=\"on\")\n\
                 include(file=\"{fwd}\")\n\
                 include(file=\"{filter}\")\n",
                work = d.join("work").display(),
                sock = socket.display(),
                fwd = fwd.display(),
                filter = example("rsyslog/banstream-filter.conf").display(),
            ),
        )
        .expect("write rsyslog.conf");
        let check = Command::new("rsyslogd")
            .arg("-N1")
            .arg("-f")
            .arg(&conf)
            .output()
            .expect("rsyslogd -N1");
        assert!(
            check.status.success(),
            "rsyslogd -N1: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let child = Command::new("rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(d.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(d.join("rsyslogd.err")).expect("stderr file"),
            ))
            .spawn()
            .expect("spawn rsyslogd");
        let proc = Proc(child);
        assert!(wait_path(&socket, 10), "rsyslogd did not create {socket:?}");
        Rsyslog {
            _proc: proc,
            socket,
            dir,
        }
    }

    /// `logger -u SOCKET -t TAG [-i] MSG`, as a program on the host would log.
    fn log(&self, tag: &str, msg: &str) {
        let out = Command::new("logger")
            .arg("-u")
            .arg(&self.socket)
            .args(["-t", tag, "-i", msg])
            .output()
            .expect("logger");
        assert!(
            out.status.success(),
            "logger: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("rsyslogd.err")).unwrap_or_default()
    }
}

fn require_rsyslog() -> bool {
    have("rsyslogd") && have("logger")
}

/// Drives the sshd, pam and UFW jails through `rs` and checks the filter
/// stanza kept everything else out.
fn bans_through(rs: &Rsyslog, d: &Daemon, transport: &str) {
    // Not forwarded: the filter stanza keeps cron and banstream's own lines out.
    rs.log(
        "cron",
        "Failed password for root from 203.0.113.99 port 1 ssh2",
    );
    rs.log("banstream", "Ban jail=sshd ip=203.0.113.98");
    for _ in 0..3 {
        rs.log(
            "sshd",
            "Failed password for root from 203.0.113.11 port 4711 ssh2",
        );
    }
    for _ in 0..2 {
        rs.log(
            "kernel",
            "[UFW BLOCK] IN=eth0 OUT= MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 SRC=198.51.100.21 DST=192.0.2.1 LEN=60 TOS=0x00 PREC=0x00 TTL=49 ID=1 DF PROTO=TCP SPT=5555 DPT=23 WINDOW=64240 RES=0x00 SYN URGP=0",
        );
        rs.log(
            "login",
            "pam_unix(login:auth): authentication failure; logname=LOGIN uid=0 euid=0 tty=tty1 ruser= rhost=192.0.2.77  user=root",
        );
    }
    let ok = d.wait_for(15, |d| {
        d.is_banned("sshd", "203.0.113.11")
            && d.is_banned("ufw-port-scan", "198.51.100.21")
            && d.is_banned("pam-generic", "192.0.2.77")
    });
    assert!(
        ok,
        "bans over {transport}: {:?}\ndaemon:\n{}\nrsyslogd:\n{}",
        d.banned(),
        d.log_text(),
        rs.stderr()
    );
    let sample = format!("banstream_messages_total{{transport=\"{transport}\"}}");
    assert_eq!(
        d.metric(&sample),
        7.0,
        "only the 7 filtered lines are forwarded"
    );
    assert!(!d.is_banned("sshd", "203.0.113.99"));
}

#[test]
fn rsyslog_tcp_octet_counted_rfc5424_example_bans() {
    crate::require!(require_rsyslog(), "rsyslogd or logger not installed");
    let d = start_listening("tcp = [\"127.0.0.1:0\"]", &sshd_jail(3), None);
    let rs = Rsyslog::start("tcp", d.tcp[0].port());
    bans_through(&rs, &d, "tcp");
}

#[test]
fn rsyslog_udp_traditional_format_example_bans() {
    crate::require!(require_rsyslog(), "rsyslogd or logger not installed");
    let d = start_listening("udp = [\"127.0.0.1:0\"]", &sshd_jail(3), None);
    let rs = Rsyslog::start("udp", d.udp[0].port());
    bans_through(&rs, &d, "udp");
}

#[test]
fn rsyslog_tls_example_validates() {
    crate::require!(have("rsyslogd"), "rsyslogd not installed");
    // The TLS file cannot be exercised (banstream has no TLS listener);
    // rsyslogd -N1 checks its syntax and that the ruleset resolves.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for f in ["ca.pem", "client-cert.pem", "client-key.pem"] {
        std::fs::write(d.join(f), "").unwrap();
    }
    let tls = std::fs::read_to_string(example("rsyslog/banstream-tls.conf"))
        .unwrap()
        .replace("/etc/ssl/banstream/", &format!("{}/", d.display()));
    std::fs::write(d.join("60.conf"), tls).unwrap();
    std::fs::create_dir(d.join("work")).unwrap();
    let conf = d.join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            "global(workDirectory=\"{}/work\")\nmodule(load=\"imuxsock\" SysSock.Use=\"off\")\ninput(type=\"imuxsock\" Socket=\"{}/s\")\ninclude(file=\"{}/60.conf\")\ninclude(file=\"{}\")\n",
            d.display(),
            d.display(),
            d.display(),
            example("rsyslog/banstream-filter.conf").display()
        ),
    )
    .unwrap();
    let out = Command::new("rsyslogd")
        .arg("-N1")
        .arg("-f")
        .arg(&conf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends `n` numbered sshd lines through rsyslog, one every `gap`.
fn send_numbered(rs_socket: PathBuf, from: usize, n: usize, gap: Duration) {
    for i in from..from + n {
        let out = Command::new("logger")
            .arg("-u")
            .arg(&rs_socket)
            .args([
                "-t",
                "sshd",
                "-i",
                &format!("Connection closed by 192.0.2.1 port {i} [preauth]"),
            ])
            .output()
            .expect("logger");
        assert!(out.status.success());
        std::thread::sleep(gap);
    }
}

/// The `received=N` of a stopped daemon's last line.
fn received_at_stop(log: &str) -> usize {
    log.lines()
        .rev()
        .find(|l| l.contains(" stopped"))
        .and_then(|l| l.split("received=").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no 'stopped received=N' line in:\n{log}"))
}

#[test]
fn rsyslog_disk_assisted_queue_delivers_everything_across_a_banstream_restart() {
    crate::require!(require_rsyslog(), "rsyslogd or logger not installed");
    const TOTAL: usize = 300;
    let port = free_port();
    let listen = format!("tcp = [\"127.0.0.1:{port}\"]");
    let jail = sshd_jail(1_000_000);
    let mut a = start_listening(&listen, &jail, None);
    let rs = Rsyslog::start("tcp", port);
    let tcp = "banstream_messages_total{transport=\"tcp\"}";

    // Programs keep logging through rsyslog the whole time: 300 lines,
    // one every 10 ms, while banstream stops and comes back.
    let sock = rs.socket.clone();
    let sender =
        std::thread::spawn(move || send_numbered(sock, 0, TOTAL, Duration::from_millis(10)));
    assert!(
        a.wait_for(10, |d| d.metric(tcp) >= 50.0),
        "{}",
        a.log_text()
    );
    assert!(a.stop(), "banstream did not stop cleanly");
    let first = received_at_stop(&a.log_text());
    let log_len = a.log_text().len();
    // Down for 1.5 s: rsyslog cannot connect and queues.
    std::thread::sleep(Duration::from_millis(1500));
    let dir = a.into_dir();
    let b = start_listening(&listen, &jail, Some(dir));
    sender.join().expect("sender");
    // rsyslog retries every 2 s (longer after repeated failures).
    let delivered = b.wait_for(60, |d| first + d.metric(tcp) as usize >= TOTAL);
    let second = b.metric(tcp) as usize;
    eprintln!(
        "rsyslog restart: sent {TOTAL}, first run received {first}, second run received {second}, lost {}",
        TOTAL as i64 - (first + second) as i64
    );
    assert!(
        delivered,
        "lost {} of {TOTAL} across the restart\ndaemon:\n{}\nrsyslogd:\n{}",
        TOTAL - first - second,
        &b.log_text()[log_len.min(b.log_text().len())..],
        rs.stderr()
    );
    assert!(
        first < TOTAL && second > 0,
        "the restart happened while messages were flowing ({first}/{second})"
    );
    // rsyslog may resend a message it could not confirm; it must not lose one.
    assert!(first + second >= TOTAL);
}

// ---------------------------------------------------------- BusyBox syslogd

/// BusyBox syslogd in a private mount namespace: a tmpfs on /dev holds its
/// own /dev/log (the path is compiled into BusyBox), the host's /dev is
/// untouched. Programs log with `nsenter -t PID -m`.
struct BusyBox {
    proc: Proc,
    dir: tempfile::TempDir,
    /// Everything syslogd forwards also reaches this socket (a second -R).
    probe: UdpSocket,
}

/// `SYSLOGD_OPTS` from the shipped /etc/conf.d/syslog, pointed at `port`.
fn syslogd_opts(port: u16) -> Vec<String> {
    let text = example_at("busybox-syslogd/conf.d/syslog", port);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("SYSLOGD_OPTS="))
        .expect("SYSLOGD_OPTS line");
    line.trim_matches('"')
        .split_whitespace()
        .map(String::from)
        .collect()
}

impl BusyBox {
    fn start(port: u16) -> BusyBox {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let probe = UdpSocket::bind("127.0.0.1:0").expect("probe");
        probe
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut opts = syslogd_opts(port);
        opts.extend([
            "-R".into(),
            probe.local_addr().unwrap().to_string(),
            "-O".into(),
            d.join("messages").display().to_string(),
        ]);
        std::fs::create_dir(d.join("hostdev")).unwrap();
        // Devices the programs need are bind-mounted back from the host.
        let script = format!(
            "set -e\n\
             mount --make-rprivate /\n\
             mount --rbind /dev '{dev}'\n\
             mount -t tmpfs -o mode=755 banstream-test /dev\n\
             for n in null zero urandom random; do touch /dev/$n; mount --bind '{dev}'/$n /dev/$n; done\n\
             umount -l '{dev}'\n\
             exec busybox syslogd -n {opts}\n",
            dev = d.join("hostdev").display(),
            opts = opts.join(" "),
        );
        let child = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(d.join("err")).unwrap()))
            .spawn()
            .expect("unshare");
        let bb = BusyBox {
            proc: Proc(child),
            dir,
            probe,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !bb.ns(&["test", "-S", "/dev/log"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "syslogd did not create its /dev/log: {}",
                std::fs::read_to_string(bb.dir.path().join("err")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        while bb.probe.recv(&mut [0u8; 2048]).is_ok() {
            // "syslogd started" and anything else before the test's lines.
            if bb
                .probe
                .set_read_timeout(Some(Duration::from_millis(200)))
                .is_err()
            {
                break;
            }
        }
        bb.probe
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        bb
    }

    /// Runs a command inside syslogd's mount namespace, in UTC like musl.
    fn ns(&self, args: &[&str]) -> std::process::Output {
        Command::new("nsenter")
            .arg("-t")
            .arg(self.proc.0.id().to_string())
            .arg("-m")
            .args(args)
            .env("TZ", "UTC")
            .output()
            .expect("nsenter")
    }

    /// Logs like a musl program: `<PRI>Mmm dd HH:MM:SS tag[pid]: msg`, UTC,
    /// no hostname (util-linux logger on /dev/log writes exactly that).
    fn log(&self, tag: &str, msg: &str) {
        let out = self.ns(&["logger", "-t", tag, "-i", msg]);
        assert!(out.status.success(), "{out:?}");
    }

    /// Logs like BusyBox klogd relays the kernel: tag "kernel", no pid.
    fn log_kernel(&self, msg: &str) {
        let out = self.ns(&["busybox", "logger", "-t", "kernel", msg]);
        assert!(out.status.success(), "{out:?}");
    }

    /// The next datagram syslogd forwarded.
    fn forwarded(&self) -> Vec<u8> {
        let mut buf = vec![0u8; 65536];
        let n = self.probe.recv(&mut buf).expect("a forwarded datagram");
        buf.truncate(n);
        buf
    }

    fn local_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("messages")).unwrap_or_default()
    }
}

fn require_busybox() -> bool {
    is_root() && have("unshare") && have("nsenter") && have("busybox") && have("logger")
}

const UFW: &str = "[UFW BLOCK] IN=eth0 OUT= MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 SRC={src} DST=192.0.2.1 LEN=60 TOS=0x00 PREC=0x00 TTL=49 ID=54321 DF PROTO=TCP SPT=51234 DPT=22 WINDOW=64240 RES=0x00 SYN URGP=0";

#[test]
fn busybox_syslogd_remote_example_bans_musl_style_lines() {
    crate::require!(
        require_busybox(),
        "needs root, unshare, nsenter, busybox and logger"
    );
    let d = start_listening("udp = [\"127.0.0.1:0\"]", &sshd_jail(3), None);
    let bb = BusyBox::start(d.udp[0].port());
    for _ in 0..3 {
        bb.log(
            "sshd-session",
            "Failed password for invalid user admin from 203.0.113.31 port 5022 ssh2",
        );
    }
    let first = bb.forwarded();
    let text = String::from_utf8_lossy(&first);
    // What BusyBox forwards: the musl-style line as read, no hostname.
    assert!(
        text.starts_with("<13>") && text.contains(" sshd-session[") && text.ends_with('\n'),
        "{text:?}"
    );
    for _ in 0..2 {
        bb.log_kernel(&UFW.replace("{src}", "198.51.100.31"));
    }
    assert!(
        d.wait_for(10, |d| d.is_banned("sshd", "203.0.113.31")
            && d.is_banned("ufw-port-scan", "198.51.100.31")),
        "{:?}\n{}",
        d.banned(),
        d.log_text()
    );
    // -L: the local log is kept as well.
    assert!(
        bb.local_log().contains("203.0.113.31"),
        "{}",
        bb.local_log()
    );
}

#[test]
fn busybox_read_buffer_cuts_long_lines_and_never_bans_a_cut_address() {
    crate::require!(
        require_busybox(),
        "needs root, unshare, nsenter, busybox and logger"
    );
    let d = start_listening("udp = [\"127.0.0.1:0\"]", &sshd_jail(3), None);
    let bb = BusyBox::start(d.udp[0].port());

    // Measure this BusyBox's read buffer: log 4000 bytes, see what arrives.
    bb.log_kernel(&"B".repeat(4000));
    let cut = bb.forwarded();
    let kept = cut.len() - 1; // the '\n' BusyBox appends
    eprintln!("busybox syslogd forwards at most {kept} bytes of a message (+ '\\n')");
    assert!(kept < 4000, "BusyBox should cut long lines");

    // A long UFW line: SRC= comes early, so a cut tail does not matter.
    let long = format!(
        "{} {}",
        UFW.replace("{src}", "198.51.100.41"),
        "X".repeat(3000)
    );
    for _ in 0..2 {
        bb.log_kernel(&long);
    }
    assert!(
        d.wait_for(10, |d| d.is_banned("ufw-port-scan", "198.51.100.41")),
        "{}",
        d.log_text()
    );

    // A cut inside the address: "SRC=198.51.100.47" arrives as
    // "SRC=198.51.100.4", a valid but wrong address. The filter needs the
    // DST= that follows SRC, so the cut line must not ban 198.51.100.4.
    for _ in 0..2 {
        bb.forwarded(); // the two long UFW lines
    }
    // "<13>Mmm dd HH:MM:SS kernel: " comes before the message.
    let header = cut.iter().position(|&b| b == b'B').expect("header");
    let prefix = "[UFW BLOCK] IN=eth0 OUT= MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 PHYSIN=";
    let addr_at = kept - header; // message bytes that survive
    let pad = addr_at - prefix.len() - " SRC=198.51.100.4".len();
    let cut_line = format!(
        "{prefix}{} SRC=198.51.100.47 DST=192.0.2.1 LEN=60",
        "p".repeat(pad)
    );
    for _ in 0..3 {
        bb.log_kernel(&cut_line);
    }
    let got = bb.forwarded();
    let got = String::from_utf8_lossy(&got);
    assert!(
        got.trim_end().ends_with("SRC=198.51.100.4"),
        "the cut should land inside the address: ...{:?}",
        &got[got.len().saturating_sub(40)..]
    );

    // Alpine's 256-byte buffer, reproduced byte for byte: what its syslogd
    // forwards is the first 255 bytes of the datagram plus '\n'.
    let alpine = |line: &str| {
        let mut b = format!("<4>Nov 24 14:54:38 kernel: {line}").into_bytes();
        b.truncate(255);
        b.push(b'\n');
        b
    };
    let v4 = alpine(&UFW.replace("{src}", "198.51.100.42"));
    let v6 = alpine(
        &UFW.replace("{src}", "2001:0db8:0000:0000:0000:0000:0000:0042")
            .replace(
                "DST=192.0.2.1",
                "DST=2001:0db8:0000:0000:0000:0000:0000:0001",
            ),
    );
    for _ in 0..2 {
        d.send_udp(&v4);
        d.send_udp(&v6);
    }
    assert!(
        d.wait_for(10, |d| d.is_banned("ufw-port-scan", "198.51.100.42")
            && d.is_banned("ufw-port-scan", "2001:db8::42")),
        "{:?}\n{}",
        d.banned(),
        d.log_text()
    );
    assert!(
        !d.is_banned("ufw-port-scan", "198.51.100.4"),
        "a cut address was banned: {:?}",
        d.banned()
    );
}

// --------------------------------------------------------------- syslog-ng

/// syslog-ng conflicts with rsyslog as a Debian package (both provide
/// system-log-daemon), so .ci/run unpacks syslog-ng-core privately into
/// target/ci-tools/syslog-ng instead of installing it.
fn syslog_ng_root() -> Option<PathBuf> {
    let root = std::env::var_os("BANSTREAM_SYSLOG_NG_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ci-tools/syslog-ng"));
    root.join("usr/sbin/syslog-ng").is_file().then_some(root)
}

struct SyslogNg {
    _proc: Proc,
    socket: PathBuf,
    dir: tempfile::TempDir,
}

impl SyslogNg {
    fn command(root: &Path) -> (Command, String) {
        let lib = root.join("usr/lib/syslog-ng");
        let version = std::fs::read_dir(&lib)
            .ok()
            .and_then(|r| {
                r.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .find(|n| n.chars().next().is_some_and(|c| c.is_ascii_digit()))
            })
            .expect("syslog-ng module directory");
        let mut c = Command::new(root.join("usr/sbin/syslog-ng"));
        c.env("LD_LIBRARY_PATH", &lib)
            .arg(format!("--module-path={}", lib.join(&version).display()));
        (c, version)
    }

    fn start(root: &Path, port: u16) -> SyslogNg {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let (_, version) = Self::command(root);
        let socket = d.join("log.sock");
        // The example, pointed at the test port, its disk buffer kept in
        // the test directory instead of /var/lib/syslog-ng.
        let example = example_at("syslog-ng/banstream.conf", port).replace(
            "disk-buffer(reliable(yes)",
            &format!("disk-buffer(dir(\"{}\") reliable(yes)", d.display()),
        );
        std::fs::write(d.join("banstream.conf"), example).unwrap();
        let conf = d.join("syslog-ng.conf");
        std::fs::write(
            &conf,
            format!(
                "@version: {version}\noptions {{ stats-freq(0); }};\nsource s_sys {{ unix-dgram(\"{}\"); }};\n@include \"{}\"\n",
                socket.display(),
                d.join("banstream.conf").display()
            ),
        )
        .unwrap();
        let (mut check, _) = Self::command(root);
        let out = check
            .arg("-f")
            .arg(&conf)
            .arg("--syntax-only")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "syslog-ng --syntax-only: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (mut run, _) = Self::command(root);
        let child = run
            .arg("-F")
            .arg("-f")
            .arg(&conf)
            .arg(format!("--persist-file={}", d.join("persist").display()))
            .arg(format!("--pidfile={}", d.join("pid").display()))
            .arg(format!("--control={}", d.join("ctl").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(d.join("err")).unwrap()))
            .spawn()
            .expect("spawn syslog-ng");
        let proc = Proc(child);
        assert!(
            wait_path(&socket, 10),
            "syslog-ng did not create its socket"
        );
        SyslogNg {
            _proc: proc,
            socket,
            dir,
        }
    }
}

#[test]
fn syslog_ng_example_bans_over_tcp_rfc5424() {
    let root = syslog_ng_root();
    crate::require!(
        root.is_some() && have("logger"),
        "syslog-ng not unpacked in target/ci-tools/syslog-ng (.ci/run does it) or logger missing"
    );
    let root = root.unwrap();
    let d = start_listening("tcp = [\"127.0.0.1:0\"]", &sshd_jail(3), None);
    let sng = SyslogNg::start(&root, d.tcp[0].port());
    let log = |tag: &str, msg: &str| {
        let out = Command::new("logger")
            .arg("-u")
            .arg(&sng.socket)
            .args(["-t", tag, "-i", msg])
            .output()
            .unwrap();
        assert!(out.status.success());
    };
    log(
        "cron",
        "Failed password for root from 203.0.113.69 port 1 ssh2",
    );
    log("banstream", "Ban jail=sshd ip=203.0.113.68");
    for _ in 0..3 {
        log(
            "sshd-session",
            "Failed password for root from 203.0.113.61 port 4711 ssh2",
        );
    }
    for _ in 0..2 {
        log(
            "login",
            "pam_unix(login:auth): authentication failure; logname=LOGIN uid=0 euid=0 tty=tty1 ruser= rhost=192.0.2.61  user=root",
        );
    }
    assert!(
        d.wait_for(15, |d| d.is_banned("sshd", "203.0.113.61")
            && d.is_banned("pam-generic", "192.0.2.61")),
        "{:?}\n{}\nsyslog-ng:\n{}",
        d.banned(),
        d.log_text(),
        std::fs::read_to_string(sng.dir.path().join("err")).unwrap_or_default()
    );
    assert_eq!(
        d.metric("banstream_messages_total{transport=\"tcp\"}"),
        5.0,
        "cron and banstream lines are not forwarded"
    );
}
