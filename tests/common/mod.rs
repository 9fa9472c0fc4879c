//! Test harness: starts the real `banstream` binary on free ports with a
//! private runtime directory, and talks to it over its sockets.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_banstream")
}

/// Whether we are root (firewall and namespace tests need it).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Skips the calling test with a printed reason when `cond` is false.
#[macro_export]
macro_rules! require {
    ($cond:expr, $why:expr) => {
        if !$cond {
            eprintln!("SKIPPED {}: {}", module_path!(), $why);
            return;
        }
    };
}

/// Whether a program is on PATH.
pub fn have(prog: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {prog}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A running daemon.
pub struct Daemon {
    child: Option<Child>,
    /// Private directory (config, runtime, state, log); `None` only after `into_dir`.
    dir: Option<tempfile::TempDir>,
    /// The config file.
    pub config: PathBuf,
    /// Control socket.
    pub socket: PathBuf,
    /// Bound UDP listeners.
    pub udp: Vec<SocketAddr>,
    /// Bound TCP listeners.
    pub tcp: Vec<SocketAddr>,
    /// Unix datagram sockets.
    pub unix: Vec<PathBuf>,
    /// HTTP address.
    pub http: Option<SocketAddr>,
    /// stderr of the daemon.
    pub log: PathBuf,
}

/// How to start a daemon.
pub struct Opts {
    /// TOML appended to the generated base config.
    pub toml: String,
    /// `--dry-run`.
    pub dry_run: bool,
    /// Extra `[listen]` lines replacing the default UDP+TCP+unix listeners.
    pub listen: Option<String>,
    /// Wrap the command (e.g. `ip netns exec NAME`).
    pub wrap: Vec<String>,
    /// Reuse this directory (restart tests).
    pub dir: Option<tempfile::TempDir>,
    /// Keep the four jails the embedded defaults enable.
    pub default_jails: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            toml: String::new(),
            dry_run: true,
            listen: None,
            wrap: Vec::new(),
            dir: None,
            default_jails: false,
        }
    }
}

/// The embedded defaults enable four jails; the harness disables them in the
/// main file so a test only sees the jails it configures (with `enabled = true`)
/// in its own `conf.d` layer.
pub const QUIET_DEFAULTS: &str = r#"
[jail.sshd]
enabled = false
[jail.pam-generic]
enabled = false
[jail.named-refused]
enabled = false
[jail.ufw-port-scan]
enabled = false
"#;

impl Daemon {
    /// Starts with default options plus `toml`.
    pub fn start(toml: &str) -> Daemon {
        Self::start_with(Opts {
            toml: toml.to_string(),
            ..Default::default()
        })
    }

    /// Writes the configuration for `opts` into its directory (without starting).
    pub fn write_config(dir: &Path, opts: &Opts) -> PathBuf {
        let mut listen = opts.listen.clone().unwrap_or_else(|| {
            "udp = [\"127.0.0.1:0\"]\ntcp = [\"127.0.0.1:0\"]\nunix = [\"log.sock\"]\n".to_string()
        });
        // Listener kinds the test leaves out are off, not the embedded
        // defaults (which would bind 127.0.0.1:5514 in every test at once).
        for key in ["udp", "tcp", "unix", "unix_stream"] {
            let set = listen.lines().any(|l| {
                l.trim_start()
                    .strip_prefix(key)
                    .is_some_and(|r| r.trim_start().starts_with('='))
            });
            if !set {
                listen.push_str(&format!("\n{key} = []\n"));
            }
        }
        let text = format!(
            "[paths]\nruntime_dir = \"{run}\"\nstate_dir = \"{state}\"\n\n[listen]\n{listen}\n[http]\nlisten = \"127.0.0.1:0\"\n\n[log]\nlevel = \"debug\"\n\n{quiet}\n",
            run = dir.join("run").display(),
            state = dir.join("state").display(),
            quiet = if opts.default_jails { "" } else { QUIET_DEFAULTS },
        );
        let config = dir.join("banstream.toml");
        std::fs::write(&config, text).expect("write config");
        // The test's own settings go in a later layer, so they win key by key.
        let confd = dir.join("conf.d");
        std::fs::create_dir_all(&confd).expect("conf.d");
        std::fs::write(confd.join("50-test.toml"), &opts.toml).expect("write test config");
        config
    }

    /// Starts the daemon and waits until its control socket answers.
    pub fn start_with(mut opts: Opts) -> Daemon {
        let dir = opts
            .dir
            .take()
            .unwrap_or_else(|| tempfile::tempdir().expect("tempdir"));
        let config = Self::write_config(dir.path(), &opts);
        let log = dir.path().join("daemon.log");
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let mut args: Vec<String> = std::mem::take(&mut opts.wrap);
        args.push(bin().to_string());
        args.extend([
            "run".to_string(),
            "-c".to_string(),
            config.display().to_string(),
        ]);
        if opts.dry_run {
            args.push("--dry-run".into());
        }
        let child = Command::new(&args[0])
            .args(&args[1..])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(logf))
            .spawn()
            .expect("spawn banstream");
        let mut d = Daemon {
            child: Some(child),
            socket: dir.path().join("run/banstream.sock"),
            config,
            udp: vec![],
            tcp: vec![],
            unix: vec![],
            http: None,
            log,
            dir: Some(dir),
        };
        d.wait_ready();
        d
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("banstream exited early ({st}):\n{}", self.log_text());
                }
            }
            let out = self.cli(&["status", "--json"]);
            if out.status.success() {
                let v: Value = serde_json::from_slice(&out.stdout).expect("status json");
                for l in v["listeners"].as_array().cloned().unwrap_or_default() {
                    let a: SocketAddr = l["address"].as_str().unwrap().parse().unwrap();
                    match l["transport"].as_str() {
                        Some("udp") => self.udp.push(a),
                        Some("tcp") => self.tcp.push(a),
                        _ => {}
                    }
                }
                self.unix = v["unix"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|p| PathBuf::from(p.as_str().unwrap()))
                    .collect();
                self.http = v["http"].as_str().map(|s| s.parse().unwrap());
                return;
            }
            if Instant::now() > deadline {
                panic!("banstream did not become ready:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The private directory.
    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("daemon directory").path()
    }

    /// Kills the daemon (SIGKILL unless already stopped) and hands back its
    /// directory, so a restart can reuse state and sockets.
    pub fn into_dir(mut self) -> tempfile::TempDir {
        self.kill();
        self.dir.take().expect("daemon directory")
    }

    /// The daemon's stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs a client command against this daemon.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(bin())
            .args(args)
            .arg("--socket")
            .arg(&self.socket)
            .output()
            .expect("run banstream client")
    }

    /// `banned --json`.
    pub fn banned(&self) -> Vec<Value> {
        let out = self.cli(&["banned", "--json"]);
        assert!(
            out.status.success(),
            "banned failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout)
            .expect("banned json")
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Whether `ip` is banned in `jail`.
    pub fn is_banned(&self, jail: &str, ip: &str) -> bool {
        self.banned()
            .iter()
            .any(|b| b["jail"] == jail && b["ip"] == ip)
    }

    /// Waits up to `secs` for `cond`.
    pub fn wait_for(&self, secs: u64, mut cond: impl FnMut(&Daemon) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if cond(self) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        cond(self)
    }

    /// `GET /metrics`.
    pub fn metrics(&self) -> String {
        http_get(self.http.expect("http enabled"), "/metrics")
    }

    /// The value of one metric sample line (`name{labels}`), 0 when absent.
    pub fn metric(&self, sample: &str) -> f64 {
        metric_value(&self.metrics(), sample)
    }

    /// Sends SIGTERM and waits for exit; returns whether it exited cleanly.
    pub fn stop(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        let pid = nix::unistd::Pid::from_raw(c.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return st.success();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL (crash) and reap; keeps the directory for a restart.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The daemon's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Sends a UDP datagram to the first UDP listener.
    pub fn send_udp(&self, bytes: &[u8]) {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.send_to(bytes, self.udp[0]).unwrap();
    }

    /// Opens a TCP connection to the first TCP listener and writes `bytes`.
    pub fn send_tcp(&self, bytes: &[u8]) {
        let mut s = TcpStream::connect(self.tcp[0]).unwrap();
        let _ = s.write_all(bytes);
        let _ = s.flush();
    }

    /// Runs `logger` with `args` (the message last); asserts it succeeded.
    pub fn logger(&self, args: &[&str]) {
        let out = Command::new("logger").args(args).output().expect("logger");
        assert!(
            out.status.success(),
            "logger {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A minimal HTTP GET.
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect http");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    match body.find("\r\n\r\n") {
        Some(i) => body[i + 4..].to_string(),
        None => body,
    }
}

/// Parses one sample value out of Prometheus text.
pub fn metric_value(text: &str, sample: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(sample) && l[sample.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Path of a fixture file.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}
