//! End to end: the real binary, real senders (`logger` over UDP, TCP and
//! unix), bans visible through `banned --json` and `/metrics`.

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;

use crate::common::{Daemon, Opts};

fn sshd_jail(extra: &str) -> String {
    let maxretry = if extra.contains("maxretry") {
        ""
    } else {
        "maxretry = 3\n"
    };
    format!("[jail.sshd]\nenabled = true\nfilter = \"sshd\"\n{maxretry}findtime = \"10m\"\nbantime = \"1h\"\n{extra}\n")
}

const FAIL: &str = "Failed password for root from {ip} port 4711 ssh2";

fn fail_line(ip: &str) -> String {
    FAIL.replace("{ip}", ip)
}

#[test]
fn udp_rfc3164_from_logger_bans_ipv4() {
    let d = Daemon::start(&sshd_jail(""));
    let port = d.udp[0].port().to_string();
    for _ in 0..3 {
        d.logger(&[
            "-d",
            "--rfc3164",
            "-n",
            "127.0.0.1",
            "-P",
            &port,
            "-t",
            "sshd",
            "-i",
            &fail_line("203.0.113.10"),
        ]);
    }
    assert!(
        d.wait_for(5, |d| d.is_banned("sshd", "203.0.113.10")),
        "{}",
        d.log_text()
    );
    assert!(d.metric("banstream_bans_total{jail=\"sshd\"}") >= 1.0);
    assert!(d.metric("banstream_failures_total{jail=\"sshd\"}") >= 3.0);
    assert!(d.metric("banstream_messages_total{transport=\"udp\"}") >= 3.0);
    assert_eq!(d.metric("banstream_bans_active{jail=\"sshd\"}"), 1.0);
    // The latency is observed when the action has applied the ban, which
    // happens after the ban is listed: wait for it.
    assert!(
        d.wait_for(5, |d| d.metric("banstream_ban_latency_seconds_count")
            == 1.0)
    );
}

#[test]
fn tcp_octet_counted_from_logger_bans_ipv6() {
    let d = Daemon::start(&sshd_jail(""));
    let port = d.tcp[0].port().to_string();
    for _ in 0..3 {
        d.logger(&[
            "-T",
            "--octet-count",
            "-n",
            "127.0.0.1",
            "-P",
            &port,
            "-t",
            "sshd-session",
            "-i",
            "Invalid user admin from 2001:db8::77 port 2222",
        ]);
    }
    assert!(
        d.wait_for(5, |d| d.is_banned("sshd", "2001:db8::77")),
        "{}",
        d.log_text()
    );
    assert!(d.metric("banstream_messages_total{transport=\"tcp\"}") >= 3.0);
    assert!(d.metric("banstream_bans_total{jail=\"sshd\"}") >= 1.0);
}

#[test]
fn tcp_lf_framed_bans() {
    let d = Daemon::start(&sshd_jail(""));
    let port = d.tcp[0].port().to_string();
    // logger without --octet-count frames with LF.
    for _ in 0..2 {
        d.logger(&[
            "-T",
            "--rfc3164",
            "-n",
            "127.0.0.1",
            "-P",
            &port,
            "-t",
            "sshd",
            "-i",
            &fail_line("198.51.100.20"),
        ]);
    }
    // And a raw LF-framed stream carrying several frames in one write.
    let mut s = TcpStream::connect(d.tcp[0]).unwrap();
    let line = format!(
        "<38>Nov 24 14:00:01 sshd[77]: {}\n",
        fail_line("198.51.100.20")
    );
    s.write_all(line.as_bytes()).unwrap();
    drop(s);
    assert!(
        d.wait_for(5, |d| d.is_banned("sshd", "198.51.100.20")),
        "{}",
        d.log_text()
    );
    assert!(d.metric("banstream_bans_total{jail=\"sshd\"}") >= 1.0);
}

#[test]
fn unix_datagram_from_logger_bans_both_families() {
    let d = Daemon::start(&sshd_jail(""));
    let sock = d.unix[0].display().to_string();
    for _ in 0..3 {
        d.logger(&["-u", &sock, "-t", "sshd", "-i", &fail_line("192.0.2.30")]);
        d.logger(&[
            "-u",
            &sock,
            "-t",
            "sshd",
            "-i",
            &fail_line("2001:db8:1::30"),
        ]);
    }
    assert!(
        d.wait_for(5, |d| d.is_banned("sshd", "192.0.2.30")
            && d.is_banned("sshd", "2001:db8:1::30")),
        "{}",
        d.log_text()
    );
    assert!(d.metric("banstream_messages_total{transport=\"unix\"}") >= 6.0);
    assert_eq!(d.metric("banstream_bans_active{jail=\"sshd\"}"), 2.0);
}

#[test]
fn wrong_program_ignoreip_and_loopback_never_ban() {
    let d = Daemon::start(&sshd_jail("ignoreip = [\"198.51.100.0/24\"]\nmaxretry = 1"));
    let port = d.udp[0].port().to_string();
    let send = |tag: &str, msg: &str| {
        d.logger(&[
            "-d",
            "--rfc3164",
            "-n",
            "127.0.0.1",
            "-P",
            &port,
            "-t",
            tag,
            "-i",
            msg,
        ]);
    };
    for _ in 0..5 {
        send("cron", &fail_line("203.0.113.99"));
        send("sshd", &fail_line("198.51.100.7"));
        send("sshd", &fail_line("127.0.0.1"));
        send("sshd", &fail_line("::1"));
        send("sshd", &fail_line("::ffff:127.0.0.5"));
    }
    // A real failure afterwards proves the lines above were processed.
    send("sshd", &fail_line("203.0.113.100"));
    assert!(
        d.wait_for(5, |d| d.is_banned("sshd", "203.0.113.100")),
        "{}",
        d.log_text()
    );
    let banned = d.banned();
    assert_eq!(banned.len(), 1, "only the real attacker: {banned:?}");
    assert!(d.metric("banstream_ignored_total{jail=\"sshd\"}") >= 15.0);
}

/// Idle connections holding every slot do not lock the real sender out:
/// at the cap, the connection silent longest gives way to the new one.
#[test]
fn idle_connections_at_the_cap_give_way_to_a_sender() {
    let d = Daemon::start_with(Opts {
        toml: sshd_jail(""),
        listen: Some("tcp = [\"127.0.0.1:0\"]\nmax_connections = 4\n".into()),
        ..Default::default()
    });
    let hogs: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(d.tcp[0]).expect("connect"))
        .collect();
    // Longer than EVICT_IDLE (5 s) without a frame.
    std::thread::sleep(std::time::Duration::from_millis(5600));
    let lines: String = (0..3)
        .map(|_| {
            format!(
                "<38>Nov 24 14:00:01 sshd[9]: {}\n",
                fail_line("203.0.113.44")
            )
        })
        .collect();
    d.send_tcp(lines.as_bytes());
    assert!(
        d.wait_for(5, |d| d.is_banned("sshd", "203.0.113.44")),
        "{}",
        d.log_text()
    );
    let rejected = format!(
        "banstream_connections_rejected_total{{listener=\"tcp {}\"}}",
        d.tcp[0]
    );
    assert_eq!(d.metric(&rejected), 0.0);
    drop(hogs);
}

#[test]
fn hostile_frames_keep_the_daemon_alive_and_counted() {
    let d = Daemon::start_with(Opts {
        toml: sshd_jail(""),
        listen: Some("udp = [\"127.0.0.1:0\"]\ntcp = [\"127.0.0.1:0\"]\nunix = [\"log.sock\"]\nmax_frame = 1024\n".into()),
        ..Default::default()
    });
    // Oversize UDP datagram, empty datagram, binary garbage, invalid UTF-8.
    d.send_udp(&vec![b'A'; 4000]);
    d.send_udp(b"");
    let garbage: Vec<u8> = (0..2000u32).map(|i| (i * 7919 % 256) as u8).collect();
    d.send_udp(&garbage[..1000]);
    d.send_udp(b"<38>Nov 24 14:00:01 sshd[1]: Failed password for \xff\xfe\xfd from 203.0.113.1 port 1 ssh2");
    // TCP: an oversize octet-counted frame followed by a valid one on the
    // same connection, a bogus octet count, and garbage.
    let mut big = b"5000 ".to_vec();
    big.extend(vec![b'x'; 5000]);
    let ok = format!("<38>Nov 24 14:00:01 sshd[1]: {}", fail_line("203.0.113.2"));
    big.extend(format!("{} {ok}", ok.len()).as_bytes());
    d.send_tcp(&big);
    d.send_tcp(b"12x3 <13>bogus count\n");
    d.send_tcp(&garbage);
    d.send_tcp(&vec![b'y'; 3000]); // oversize LF frame without LF
                                   // Unix: garbage datagram.
    let u = std::os::unix::net::UnixDatagram::unbound().unwrap();
    u.send_to(&garbage[..500], &d.unix[0]).unwrap();
    // The next real failures still ban.
    for _ in 0..3 {
        d.send_udp(format!("<38>Nov 24 14:00:01 sshd[9]: {}", fail_line("203.0.113.3")).as_bytes());
    }
    assert!(
        d.wait_for(5, |d| d.is_banned("sshd", "203.0.113.3")),
        "{}",
        d.log_text()
    );
    let m = d.metrics();
    let v = |s: &str| crate::common::metric_value(&m, s);
    assert!(
        v("banstream_messages_dropped_total{reason=\"oversize\"}") >= 3.0,
        "{m}"
    );
    assert!(
        v("banstream_messages_dropped_total{reason=\"empty\"}") >= 1.0,
        "{m}"
    );
    assert!(
        v("banstream_messages_dropped_total{reason=\"bad_framing\"}") >= 1.0,
        "{m}"
    );
    // The invalid-UTF-8 line and the frame after the oversize one were read.
    assert!(v("banstream_failures_total{jail=\"sshd\"}") >= 5.0, "{m}");
    assert!(d.cli(&["status"]).status.success());
}

#[test]
fn udp_kernel_drops_are_counted_as_kernel_overflow() {
    // A socket buffer of the kernel's minimum (a few datagrams) and a burst
    // no reader keeps up with: the kernel drops, and every datagram sent is
    // then either received or counted as kernel_overflow.
    let d = Daemon::start_with(Opts {
        toml: sshd_jail(""),
        listen: Some("udp = [\"127.0.0.1:0\"]\nrecv_buffer = 1\n".into()),
        ..Default::default()
    });
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.connect(d.udp[0]).unwrap();
    let line = b"<78>Nov 24 14:00:01 crond[1]: USER root pid 2 cmd run-parts";
    let mut sent = 0u64;
    for _ in 0..20_000 {
        if s.send(line).is_ok() {
            sent += 1;
        }
    }
    let accounted = |d: &Daemon| {
        d.metric("banstream_messages_total{transport=\"udp\"}")
            + d.metric("banstream_messages_dropped_total{reason=\"kernel_overflow\"}")
    };
    // The kernel's counter rides on the next datagram read after a drop:
    // send one more until one gets through and everything adds up.
    let balanced = (0..50).any(|_| {
        if s.send(line).is_ok() {
            sent += 1;
        }
        d.wait_for(1, |d| accounted(d) == sent as f64)
    });
    let m = d.metrics();
    assert!(balanced, "sent {sent}, accounted {}\n{m}", accounted(&d));
    assert!(
        crate::common::metric_value(
            &m,
            "banstream_messages_dropped_total{reason=\"kernel_overflow\"}"
        ) > 0.0,
        "{m}"
    );
}

#[test]
fn peers_outside_the_allowlist_are_dropped() {
    let d = Daemon::start_with(Opts {
        toml: sshd_jail("maxretry = 1"),
        listen: Some("udp = [{ address = \"127.0.0.1:0\", allow = [\"10.0.0.0/8\"] }]\ntcp = [{ address = \"127.0.0.1:0\", allow = [\"10.0.0.0/8\"] }]\n".into()),
        ..Default::default()
    });
    d.send_udp(format!("<38>Nov 24 14:00:01 sshd[9]: {}", fail_line("203.0.113.4")).as_bytes());
    d.send_tcp(
        format!(
            "<38>Nov 24 14:00:01 sshd[9]: {}\n",
            fail_line("203.0.113.4")
        )
        .as_bytes(),
    );
    assert!(d.wait_for(5, |d| d
        .metric("banstream_messages_dropped_total{reason=\"not_allowed\"}")
        >= 2.0));
    assert!(d.banned().is_empty());
}

#[test]
fn sockets_have_safe_modes_and_are_removed_on_exit() {
    let mut d = Daemon::start(&sshd_jail(""));
    let ctl = std::fs::metadata(&d.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(ctl, 0o600, "control socket mode");
    let log = d.unix[0].clone();
    assert!(log.exists());
    assert!(d.stop(), "clean exit:\n{}", d.log_text());
    assert!(!log.exists(), "unix listener socket removed");
    assert!(!d.socket.exists(), "control socket removed");
}
