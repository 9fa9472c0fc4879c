//! Network namespaces for firewall tests: a victim and an attacker joined by
//! a veth pair with IPv4 and IPv6 addresses. Created by the test, deleted
//! by `Drop` even when the test fails. Threads enter a namespace with
//! setns(CLONE_NEWNET) to bind listeners and open connections there, so no
//! external program is needed for traffic.

#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The victim's addresses (the daemon and the listeners live there).
pub const VICTIM4: &str = "198.18.0.1";
/// The victim's IPv6 address.
pub const VICTIM6: &str = "fd42:6273::1";
/// The attacker's addresses.
pub const ATTACKER4: &str = "198.18.0.2";
/// The attacker's IPv6 address.
pub const ATTACKER6: &str = "fd42:6273::2";

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Runs `ip` with `args`; panics with its stderr on failure.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces and the veth pair between them.
pub struct NetPair {
    /// The victim namespace's name.
    pub victim: String,
    /// The attacker namespace's name.
    pub attacker: String,
}

impl NetPair {
    /// Creates the pair (names carry the branch, the pid and a sequence
    /// number, so parallel tests and other engineers' runs never collide).
    pub fn new() -> NetPair {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let pair = NetPair {
            victim: format!("bs-fw-{pid}-{n}-victim"),
            attacker: format!("bs-fw-{pid}-{n}-attacker"),
        };
        let (vv, va) = (format!("bf{pid}x{n}v"), format!("bf{pid}x{n}a"));
        ip(&["netns", "add", &pair.victim]);
        ip(&["netns", "add", &pair.attacker]);
        ip(&[
            "link",
            "add",
            &vv,
            "netns",
            &pair.victim,
            "type",
            "veth",
            "peer",
            "name",
            &va,
            "netns",
            &pair.attacker,
        ]);
        for (ns, dev, v4, v6) in [
            (&pair.victim, &vv, VICTIM4, VICTIM6),
            (&pair.attacker, &va, ATTACKER4, ATTACKER6),
        ] {
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "addr", "add", &format!("{v4}/24"), "dev", dev]);
            ip(&[
                "-n",
                ns,
                "-6",
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                dev,
                "nodad",
            ]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        pair
    }

    /// `ip netns exec <victim>`: the daemon's `wrap`.
    pub fn wrap(&self) -> Vec<String> {
        ["ip", "netns", "exec", &self.victim]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    /// Runs a program inside the victim namespace.
    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.victim])
            .args(args)
            .output()
            .expect("ip netns exec")
    }

    /// The stdout of a program run in the victim namespace ("" if it failed).
    pub fn exec_text(&self, args: &[&str]) -> String {
        let out = self.exec(args);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A dual-stack TCP listener on `port` in the victim namespace, accepting
    /// and closing connections until dropped.
    pub fn listen(&self, port: u16) -> Listener {
        let l = in_ns(&self.victim, move || {
            TcpListener::bind(SocketAddr::from(([0u16; 8], port))).expect("bind listener")
        });
        let fd = l.as_raw_fd();
        let thread = std::thread::spawn(move || {
            for c in l.incoming() {
                if c.is_err() {
                    break;
                }
            }
        });
        Listener {
            fd,
            thread: Some(thread),
        }
    }

    /// Whether the attacker can open a TCP connection to `dst:port` within
    /// `timeout` (a REJECT refuses at once; a DROP times out).
    pub fn attacker_connects(&self, dst: &str, port: u16, timeout: Duration) -> bool {
        let addr = SocketAddr::new(dst.parse::<IpAddr>().expect("address"), port);
        in_ns(&self.attacker, move || {
            TcpStream::connect_timeout(&addr, timeout).is_ok()
        })
    }

    /// Polls until the attacker's connects to `dst:port` fail; returns how
    /// long that took, or `None` if they still succeed after `limit`.
    pub fn until_blocked(&self, dst: &str, port: u16, limit: Duration) -> Option<Duration> {
        let t = Instant::now();
        while t.elapsed() < limit {
            if !self.attacker_connects(dst, port, Duration::from_millis(150)) {
                return Some(t.elapsed());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    /// Polls until the attacker's connects to `dst:port` succeed.
    pub fn until_open(&self, dst: &str, port: u16, limit: Duration) -> bool {
        let t = Instant::now();
        while t.elapsed() < limit {
            if self.attacker_connects(dst, port, Duration::from_millis(300)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// `GET path` over HTTP inside the victim namespace (the daemon's
    /// loopback listener is only reachable from there).
    pub fn http_get(&self, addr: SocketAddr, path: &str) -> String {
        let path = path.to_string();
        in_ns(&self.victim, move || crate::common::http_get(addr, &path))
    }
}

impl Drop for NetPair {
    fn drop(&mut self) {
        for ns in [&self.victim, &self.attacker] {
            // The firewall lock a daemon took in the namespace (named after
            // its identity, which the bind mount under /run/netns shows):
            // nothing can hold it once the namespace is gone.
            if let Ok(m) = std::fs::metadata(format!("/run/netns/{ns}")) {
                let _ = std::fs::remove_file(banstream::service::instance::firewall_lock_for(
                    std::path::Path::new("/run"),
                    &m,
                ));
            }
            // Deleting a namespace also deletes its end of the veth pair.
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// A listener thread; dropping it shuts the socket down so the thread ends.
pub struct Listener {
    fd: i32,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        // shutdown(2) on the descriptor the thread still owns wakes its
        // accept() with an error, so the thread ends.
        let _ = nix::sys::socket::shutdown(self.fd, nix::sys::socket::Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs `f` on a thread inside the named network namespace.
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("open netns");
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("namespace thread")
}
