//! banstream-loadgen: writes a realistic, seeded syslog corpus and sends
//! corpora to a syslog receiver at a given rate.
//!
//! ```text
//! banstream-loadgen corpus --lines 1000000 --format messages > corpus.log
//! banstream-loadgen corpus --lines 1000000 --format wire     > corpus.wire
//! banstream-loadgen send --udp 127.0.0.1:5514 --rate 150000 --seconds 10 corpus.wire
//! banstream-loadgen send --udp 127.0.0.1:5514 --threads 2 --rate 300000 --seconds 10 corpus.wire
//! banstream-loadgen send --tcp 127.0.0.1:5514 --connections 10 --rate 0 corpus.wire
//! banstream-loadgen send --unix /run/banstream/log.sock --rate 50000 --seconds 5 corpus.wire
//! ```
//!
//! The corpus is mostly noise (cron, dhcpcd, nginx, chronyd, accepted
//! logins, kernel link messages) with attacks from a pool of IPv4 and IPv6
//! addresses: sshd and sshd-session failures, PAM failures, named denials
//! and UFW blocks. `messages` is /var/log/messages style (with hostname, no
//! PRI); `wire` is what BusyBox syslogd -R forwards (PRI, no hostname).

use std::io::{BufRead, BufWriter, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// splitmix64: small, fast, seeded.
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
        self.next() % n.max(1)
    }
    fn pick<'a>(&mut self, xs: &'a [&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
    /// Skewed towards small indices: a few attackers are very busy.
    fn skewed(&mut self, n: u64) -> u64 {
        let a = self.below(n);
        let b = self.below(n);
        a.min(b)
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const USERS: &[&str] = &[
    "root", "admin", "test", "oracle", "ubuntu", "git", "postgres", "user", "pi", "guest", "ftp",
    "deploy",
];
const HOSTS: &[&str] = &["alpine1", "web1", "db2", "gw"];

struct Corpus {
    rng: Rng,
    wire: bool,
    attackers_v4: u64,
    attackers_v6: u64,
    /// Seconds since the start of the corpus day (advances slowly).
    clock_ms: u64,
    attack_pct: u64,
}

impl Corpus {
    fn attacker(&mut self) -> String {
        let total = self.attackers_v4 + self.attackers_v6;
        let i = self.rng.skewed(total);
        if i < self.attackers_v4 {
            // 198.18.0.0/15 is reserved for benchmarking.
            format!("198.{}.{}.{}", 18 + (i >> 16) % 2, (i >> 8) & 255, i & 255)
        } else {
            let j = i - self.attackers_v4;
            format!(
                "2001:db8:{:x}:{:x}::{:x}",
                (j >> 16) & 0xffff,
                (j >> 4) & 0xfff,
                j & 0xf | 1
            )
        }
    }

    fn header(&mut self, pri: u8, prog: &str, pid: Option<u64>) -> String {
        let secs = self.clock_ms / 1000;
        let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
        let day = 24 + (secs / 86400) % 5;
        let ts = format!("{} {:>2} {:02}:{:02}:{:02}", MONTHS[10], day, h, m, s);
        let tag = match pid {
            Some(p) => format!("{prog}[{p}]"),
            None => prog.to_string(),
        };
        if self.wire {
            format!("<{pri}>{ts} {tag}: ")
        } else {
            let host = self.rng.pick(HOSTS);
            format!("{ts} {host} {tag}: ")
        }
    }

    fn line(&mut self) -> String {
        self.clock_ms += self.rng.below(40);
        let pid = 1000 + self.rng.below(60000);
        if self.rng.below(100) < self.attack_pct {
            let ip = self.attacker();
            let user = self.rng.pick(USERS).to_string();
            let port = 1024 + self.rng.below(60000);
            match self.rng.below(10) {
                0 | 1 => {
                    let h = self.header(38, "sshd", Some(pid));
                    format!("{h}Failed password for {user} from {ip} port {port} ssh2")
                }
                2 => {
                    let h = self.header(38, "sshd-session", Some(pid));
                    format!("{h}Failed password for invalid user {user} from {ip} port {port} ssh2")
                }
                3 => {
                    let h = self.header(38, "sshd-session", Some(pid));
                    format!("{h}Invalid user {user} from {ip} port {port}")
                }
                4 => {
                    let h = self.header(38, "sshd-session", Some(pid));
                    format!("{h}Connection closed by authenticating user {user} {ip} port {port} [preauth]")
                }
                5 => {
                    let h = self.header(38, "sshd", Some(pid));
                    format!("{h}Did not receive identification string from {ip} port {port}")
                }
                6 => {
                    let prog = if self.rng.below(2) == 0 {
                        "login"
                    } else {
                        "sshd"
                    };
                    let h = self.header(85, prog, Some(pid));
                    format!("{h}pam_unix({prog}:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost={ip}  user={user}")
                }
                7 => {
                    let h = self.header(30, "named", Some(pid));
                    format!("{h}client @0x7f3a2c0{:05x} {ip}#{port} (example.net): query (cache) 'example.net/ANY/IN' denied", self.rng.below(1 << 20))
                }
                _ => {
                    let h = self.header(4, "kernel", None);
                    let (proto, src6) = if ip.contains(':') {
                        ("TCP", true)
                    } else {
                        ("TCP", false)
                    };
                    let dst = if src6 { "2001:db8::1" } else { "203.0.113.1" };
                    format!("{h}[{}.{:06}] [UFW BLOCK] IN=eth0 OUT= MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 SRC={ip} DST={dst} LEN=44 TOS=0x00 PREC=0x00 TTL=242 ID=54321 PROTO={proto} SPT={port} DPT={} WINDOW=1024 RES=0x00 SYN URGP=0", self.clock_ms / 1000, self.rng.below(1_000_000), [22, 23, 80, 443, 3389, 8080][self.rng.below(6) as usize])
                }
            }
        } else {
            let inside = format!("10.0.{}.{}", self.rng.below(4), 1 + self.rng.below(250));
            match self.rng.below(10) {
                0 | 1 => {
                    let h = self.header(78, "crond", Some(pid));
                    format!(
                        "{h}USER root pid {} cmd run-parts /etc/periodic/15min",
                        pid + 1
                    )
                }
                2 => {
                    let h = self.header(30, "dhcpcd", Some(pid));
                    format!("{h}eth0: leased {inside} for 86400 seconds")
                }
                3 | 4 => {
                    let h = self.header(190, "nginx", None);
                    let path = [
                        "/",
                        "/index.html",
                        "/api/v1/items",
                        "/static/app.js",
                        "/login",
                    ][self.rng.below(5) as usize];
                    format!("{h}{inside} - - [24/Nov/2026:14:00:01 +0000] \"GET {path} HTTP/1.1\" 200 {} \"-\" \"Mozilla/5.0\"", self.rng.below(100_000))
                }
                5 => {
                    let h = self.header(38, "sshd-session", Some(pid));
                    let user = self.rng.pick(USERS).to_string();
                    format!("{h}Accepted publickey for {user} from {inside} port {} ssh2: ED25519 SHA256:q2Xw5cK1nVbq5YpP0l5JqM6h8W2s9xRzT4uA7bC3dE0", 1024 + self.rng.below(60000))
                }
                6 => {
                    let h = self.header(86, "sshd-session", Some(pid));
                    format!("{h}pam_unix(sshd:session): session opened for user root(uid=0) by root(uid=0)")
                }
                7 => {
                    let h = self.header(30, "chronyd", Some(pid));
                    format!("{h}Selected source 192.0.2.123 (pool.ntp.org)")
                }
                8 => {
                    let h = self.header(6, "kernel", None);
                    format!(
                        "{h}[{}.{:06}] eth0: Link is Up - 1Gbps/Full - flow control rx/tx",
                        self.clock_ms / 1000,
                        self.rng.below(1_000_000)
                    )
                }
                _ => {
                    let h = self.header(30, "named", Some(pid));
                    format!("{h}client @0x7f3a2c0{:05x} {inside}#53 (example.org): query: example.org IN A + (10.0.0.53)", self.rng.below(1 << 20))
                }
            }
        }
    }
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn opt(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn corpus(args: &[String]) -> std::io::Result<()> {
    let lines: u64 = arg(args, "--lines", 1_000_000);
    let mut c = Corpus {
        rng: Rng(arg(args, "--seed", 42)),
        wire: opt(args, "--format").as_deref() == Some("wire"),
        attackers_v4: arg(args, "--attackers", 5000),
        attackers_v6: arg(args, "--attackers6", 1000),
        clock_ms: 14 * 3600 * 1000,
        attack_pct: arg(args, "--attack-percent", 20),
    };
    let out = std::io::stdout();
    let mut w = BufWriter::with_capacity(1 << 20, out.lock());
    for _ in 0..lines {
        w.write_all(c.line().as_bytes())?;
        w.write_all(b"\n")?;
    }
    w.flush()
}

fn load(path: &str) -> std::io::Result<Vec<Vec<u8>>> {
    let f = std::fs::File::open(path)?;
    let mut out = Vec::new();
    for l in std::io::BufReader::with_capacity(1 << 20, f).split(b'\n') {
        let l = l?;
        if !l.is_empty() {
            out.push(l);
        }
    }
    Ok(out)
}

/// Paces sending: after `sent` messages, sleeps until `sent / rate` seconds have passed.
fn pace(start: Instant, sent: u64, rate: u64) {
    if rate == 0 {
        return;
    }
    let due = Duration::from_secs_f64(sent as f64 / rate as f64);
    let el = start.elapsed();
    if due > el {
        std::thread::sleep(due - el);
    }
}

#[cfg(target_os = "linux")]
fn send_batch_udp(sock: &UdpSocket, msgs: &[&[u8]]) -> usize {
    use std::os::fd::AsRawFd;
    let mut iovs: Vec<libc::iovec> = msgs
        .iter()
        .map(|m| libc::iovec {
            iov_base: m.as_ptr() as *mut libc::c_void,
            iov_len: m.len(),
        })
        .collect();
    // SAFETY: mmsghdr is plain data; zeroed is a valid "no address, no control" header.
    let mut hdrs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .map(|iov| {
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = iov as *mut libc::iovec;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    let mut done = 0;
    while done < hdrs.len() {
        // SAFETY: hdrs and the iovecs they point to live for the call; the socket is connected.
        let n = unsafe {
            libc::sendmmsg(
                sock.as_raw_fd(),
                hdrs[done..].as_mut_ptr(),
                (hdrs.len() - done) as libc::c_uint,
                0,
            )
        };
        if n <= 0 {
            break;
        }
        done += n as usize;
    }
    done
}

/// One UDP sender thread: `total` datagrams at `rate` per second, starting
/// at a different place of the corpus for each thread.
fn send_udp(
    addr: SocketAddr,
    msgs: &[Vec<u8>],
    thread: usize,
    total: u64,
    rate: u64,
    batch: usize,
) -> std::io::Result<u64> {
    let sock = UdpSocket::bind(if addr.is_ipv6() {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    })?;
    sock.connect(addr)?;
    let start = Instant::now();
    let mut sent = 0u64;
    let mut i = thread * 7919;
    let mut chunk: Vec<&[u8]> = Vec::with_capacity(batch);
    while sent < total {
        let n = batch.min((total - sent) as usize);
        chunk.clear();
        chunk.extend((0..n).map(|k| msgs[(i + k) % msgs.len()].as_slice()));
        i += n;
        let done = send_batch_udp(&sock, &chunk) as u64;
        if done == 0 {
            // The receiver is gone (ECONNREFUSED): stop rather than spin.
            break;
        }
        sent += done;
        pace(start, sent, rate);
    }
    Ok(sent)
}

fn send(args: &[String]) -> std::io::Result<()> {
    let file = args.last().cloned().unwrap_or_default();
    let msgs = load(&file)?;
    if msgs.is_empty() {
        return Err(std::io::Error::other("empty corpus"));
    }
    let rate: u64 = arg(args, "--rate", 0);
    let seconds: f64 = arg(args, "--seconds", 0.0);
    let total: u64 = if seconds > 0.0 && rate > 0 {
        (rate as f64 * seconds) as u64
    } else {
        arg(args, "--count", msgs.len() as u64)
    };
    let batch: usize = arg(args, "--batch", 64);
    let start = Instant::now();
    let mut sent: u64 = 0;
    if let Some(addr) = opt(args, "--udp") {
        let addr: SocketAddr = addr.parse().map_err(std::io::Error::other)?;
        // Several sender threads, each with its own socket (source port) and
        // an equal share of the rate: one thread tops out well below what
        // a receiver can take, since on loopback the sender also pays for
        // the kernel's delivery.
        let threads: u64 = arg(args, "--threads", 1).max(1);
        let msgs = std::sync::Arc::new(msgs);
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let msgs = msgs.clone();
                let share = total / threads + u64::from(t < total % threads);
                let rate = rate / threads + u64::from(t < rate % threads);
                std::thread::spawn(move || send_udp(addr, &msgs, t as usize, share, rate, batch))
            })
            .collect();
        for h in handles {
            sent += h
                .join()
                .map_err(|_| std::io::Error::other("sender thread panicked"))??;
        }
    } else if let Some(addr) = opt(args, "--tcp") {
        let addr: SocketAddr = addr.parse().map_err(std::io::Error::other)?;
        let conns: u64 = arg(args, "--connections", 1).max(1);
        let per = total / conns;
        let msgs = std::sync::Arc::new(msgs);
        let handles: Vec<_> = (0..conns)
            .map(|c| {
                let msgs = msgs.clone();
                std::thread::spawn(move || -> std::io::Result<u64> {
                    let s = TcpStream::connect(addr)?;
                    let mut w = BufWriter::with_capacity(1 << 16, s);
                    let crate_rate = rate / conns;
                    let start = Instant::now();
                    for k in 0..per {
                        let m = &msgs[((c * per + k) as usize) % msgs.len()];
                        write!(w, "{} ", m.len())?;
                        w.write_all(m)?;
                        if k % 256 == 255 {
                            pace(start, k + 1, crate_rate);
                        }
                    }
                    w.flush()?;
                    Ok(per)
                })
            })
            .collect();
        for h in handles {
            sent += h
                .join()
                .map_err(|_| std::io::Error::other("sender thread panicked"))??;
        }
    } else if let Some(path) = opt(args, "--unix") {
        let sock = std::os::unix::net::UnixDatagram::unbound()?;
        sock.connect(&path)?;
        let mut i = 0usize;
        while sent < total {
            let m = &msgs[i % msgs.len()];
            i += 1;
            match sock.send(m) {
                Ok(_) => sent += 1,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => return Err(e),
            }
            if sent % 64 == 0 {
                pace(start, sent, rate);
            }
        }
    } else {
        return Err(std::io::Error::other(
            "send needs --udp ADDR, --tcp ADDR or --unix PATH",
        ));
    }
    let el = start.elapsed().as_secs_f64();
    println!(
        "sent {sent} messages in {el:.3} s ({:.0} msgs/s)",
        sent as f64 / el
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("corpus") => corpus(&args),
        Some("send") => send(&args),
        _ => {
            eprintln!("usage: banstream-loadgen corpus [--lines N] [--seed S] [--format messages|wire] [--attackers N] [--attackers6 N] [--attack-percent P]\n       banstream-loadgen send (--udp ADDR [--threads N] | --tcp ADDR [--connections N] | --unix PATH) [--rate R] [--seconds S | --count N] [--batch B] FILE");
            return ExitCode::from(2);
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("banstream-loadgen: {e}");
            ExitCode::from(1)
        }
    }
}
