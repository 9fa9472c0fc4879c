//! Notifications end to end: the real daemon, a real MTA hop (msmtp) into
//! an SMTP sink on loopback, and a webhook receiver on loopback, both run by
//! the test. Guards: headers and body of the delivered mail, hostile text
//! arriving inert, one digest per jail under a flood, webhook JSON, retries
//! and timeouts, and failures that are counted, logged once, and never
//! delay a ban.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{have, Daemon, Opts};
use crate::require;

/// One message the SMTP sink accepted.
#[derive(Clone, Debug)]
struct Delivered {
    from: String,
    rcpt: Vec<String>,
    /// The DATA, dot-unstuffed, lines joined with "\n".
    data: String,
}

impl Delivered {
    fn headers(&self) -> &str {
        self.data.split("\n\n").next().unwrap_or("")
    }
    fn body(&self) -> &str {
        self.data.split_once("\n\n").map_or("", |(_, b)| b)
    }
}

/// A minimal SMTP server on 127.0.0.1 that stores what it is given.
struct SmtpSink {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Delivered>>>,
}

impl SmtpSink {
    fn start() -> SmtpSink {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let g = g.clone();
                std::thread::spawn(move || {
                    let _ = smtp_session(conn, &g);
                });
            }
        });
        SmtpSink { addr, got }
    }

    fn wait(&self, n: usize, secs: u64) -> Vec<Delivered> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.got.lock().unwrap().len() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.got.lock().unwrap().clone()
    }
}

fn smtp_session(conn: TcpStream, got: &Mutex<Vec<Delivered>>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut w = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    w.write_all(b"220 sink.test ESMTP\r\n")?;
    let (mut from, mut rcpt) = (String::new(), Vec::new());
    let mut line = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let cmd = String::from_utf8_lossy(&line).trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            w.write_all(b"250-sink.test\r\n250-8BITMIME\r\n250 SIZE 10000000\r\n")?;
        } else if upper.starts_with("HELO") {
            w.write_all(b"250 sink.test\r\n")?;
        } else if upper.starts_with("MAIL FROM:") {
            from = cmd[10..].trim().trim_matches(['<', '>']).to_string();
            rcpt.clear();
            w.write_all(b"250 ok\r\n")?;
        } else if upper.starts_with("RCPT TO:") {
            rcpt.push(cmd[8..].trim().trim_matches(['<', '>']).to_string());
            w.write_all(b"250 ok\r\n")?;
        } else if upper == "DATA" {
            w.write_all(b"354 go ahead\r\n")?;
            let mut lines = Vec::new();
            loop {
                line.clear();
                if r.read_until(b'\n', &mut line)? == 0 {
                    return Ok(());
                }
                let l = String::from_utf8_lossy(&line);
                let l = l.strip_suffix("\r\n").unwrap_or(&l).to_string();
                if l == "." {
                    break;
                }
                lines.push(l.strip_prefix('.').map(str::to_string).unwrap_or(l));
            }
            got.lock().unwrap().push(Delivered {
                from: from.clone(),
                rcpt: rcpt.clone(),
                data: lines.join("\n"),
            });
            w.write_all(b"250 queued\r\n")?;
        } else if upper == "QUIT" {
            w.write_all(b"221 bye\r\n")?;
            return Ok(());
        } else if upper == "RSET" || upper == "NOOP" {
            w.write_all(b"250 ok\r\n")?;
        } else {
            w.write_all(b"502 not implemented\r\n")?;
        }
    }
}

/// One request the webhook receiver got.
#[derive(Clone, Debug)]
struct HttpReq {
    path: String,
    headers: HashMap<String, String>,
    body: Value,
}

/// A minimal HTTP receiver on 127.0.0.1: answers with the scripted statuses
/// (the last one repeats), or never answers (`hang`).
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<HttpReq>>>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    fn start(script: Vec<u16>, hang: bool) -> Receiver {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (g, s) = (got.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let (g, s, script) = (g.clone(), s.clone(), script.clone());
                std::thread::spawn(move || {
                    let _ = http_session(conn, &g, &script, hang, &s);
                });
            }
        });
        Receiver { addr, got, stop }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn wait(&self, n: usize, secs: u64) -> Vec<HttpReq> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.got.lock().unwrap().len() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.got.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn http_session(
    conn: TcpStream,
    got: &Mutex<Vec<HttpReq>>,
    script: &[u16],
    hang: bool,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut w = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    let mut first = String::new();
    r.read_line(&mut first)?;
    let path = first.split(' ').nth(1).unwrap_or("").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    let n = {
        let mut g = got.lock().unwrap();
        g.push(HttpReq {
            path,
            headers,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        });
        g.len()
    };
    if hang {
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        return Ok(());
    }
    let status = script.get(n - 1).or(script.last()).copied().unwrap_or(200);
    write!(
        w,
        "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
}

/// A directory with a HOME holding an msmtprc that relays to `sink`, and a
/// bin/ with a fake `whois` printing hostile text.
fn mail_env(sink: &SmtpSink) -> (tempfile::TempDir, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let rc = home.join(".msmtprc");
    std::fs::write(
        &rc,
        format!(
            "defaults\nauth off\ntls off\n\naccount default\nhost 127.0.0.1\nport {}\nfrom fallback@banstream.invalid\n",
            sink.addr.port()
        ),
    )
    .unwrap();
    set_mode(&rc, 0o600);
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let whois = bin.join("whois");
    std::fs::write(
        &whois,
        "#!/bin/sh\nprintf '%% fake whois for %s\\n' \"$1\"\nprintf 'inetnum:  203.0.113.0 - 203.0.113.255\\nnetname:  TEST-NET-3\\n'\nprintf 'descr:    ~!touch /tmp/pwned-by-whois\\r\\n'\nprintf 'descr:    evil\\033[2J\\n'\nprintf 'country:  ZZ\\n'\n",
    )
    .unwrap();
    set_mode(&whois, 0o755);
    let path = format!(
        "PATH={}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let wrap = vec![
        "env".to_string(),
        format!("HOME={}", home.display()),
        format!("XDG_CONFIG_HOME={}", dir.path().join("xdg").display()),
        path,
    ];
    (dir, wrap)
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

const LISTEN: &str = "udp = [\"127.0.0.1:0\"]\ntcp = [\"127.0.0.1:0\"]\nmax_frame = 1048576\n";

fn start(toml: &str, wrap: Vec<String>) -> Daemon {
    Daemon::start_with(Opts {
        toml: toml.to_string(),
        dry_run: false,
        listen: Some(LISTEN.to_string()),
        wrap,
        ..Default::default()
    })
}

fn fail_line(user: &str, ip: &str) -> Vec<u8> {
    format!("<38>Jan  1 00:00:00 sshd[4242]: Failed password for invalid user {user} from {ip} port 22 ssh2").into_bytes()
}

fn mail_metric(d: &Daemon, kind: &str, result: &str) -> f64 {
    d.metric(&format!(
        "banstream_notifications_total{{kind=\"{kind}\",result=\"{result}\"}}"
    ))
}

/// Every ban so far was applied by the first action within 1 s (the
/// notifiers' timeouts in these tests are 3 s and more, so a ban held up by
/// a notification would land outside).
fn bans_applied_promptly(d: &Daemon, n: f64) {
    let count = d.metric("banstream_ban_latency_seconds_count");
    let fast = d.metric("banstream_ban_latency_seconds_bucket{le=\"1\"}");
    let sum = d.metric("banstream_ban_latency_seconds_sum");
    eprintln!(
        "ban latency (message received -> log action applied): mean {:.3} ms over {n} bans",
        sum / count.max(1.0) * 1000.0
    );
    assert_eq!(count, n, "every ban applied");
    assert_eq!(fast, n, "every ban applied within 1 s");
}

#[test]
fn mail_goes_through_msmtp_with_proper_headers_and_inert_hostile_text() {
    require!(
        have("msmtp"),
        "msmtp is not installed (apt-get install msmtp)"
    );
    let sink = SmtpSink::start();
    let (_env, wrap) = mail_env(&sink);
    let d = start(
        r#"
[defaults]
destemail = "admin@example.org"
sender = "banstream@gw.example.org"
mta = "msmtp"
notify_interval = "1s"

[jail.sshd]
enabled = true
filter = "sshd[mode=aggressive]"
maxretry = 3
action = ["log", "mail[whois=true, lines=5]"]
"#,
        wrap,
    );
    let failures = |d: &Daemon| d.metric("banstream_failures_total{jail=\"sshd\"}");
    // A 100 KB user name, over TCP (LF framing); it does not trigger the ban,
    // so the latency below is that of a normal line.
    let mut big = fail_line(&"A".repeat(100_000), "203.0.113.10");
    big.push(b'\n');
    d.send_tcp(&big);
    assert!(d.wait_for(10, |d| failures(d) >= 1.0));
    d.send_udp(&fail_line("~!touch /tmp/banstream-pwned", "203.0.113.10"));
    assert!(d.wait_for(10, |d| failures(d) >= 2.0));
    d.send_udp(&fail_line(
        "x\rBcc: victim@example.org\r\rSubject: pwned",
        "203.0.113.10",
    ));
    assert!(d.wait_for(10, |d| d.is_banned("sshd", "203.0.113.10")));

    let got = sink.wait(1, 30);
    assert_eq!(got.len(), 1, "one mail:\n{}", d.log_text());
    let m = &got[0];
    assert_eq!(m.from, "banstream@gw.example.org");
    assert_eq!(m.rcpt, vec!["admin@example.org"], "no injected recipient");
    let h = m.headers();
    for needle in [
        "From: \"banstream\" <banstream@gw.example.org>",
        "\nTo: admin@example.org\n",
        "\nSubject: [banstream] sshd: banned 203.0.113.10 from ",
        "\nDate: ",
        "\nMessage-ID: <",
        "\nContent-Type: text/plain; charset=utf-8\n",
    ] {
        assert!(h.contains(needle), "missing {needle:?} in\n{h}");
    }
    assert!(
        !h.contains("Bcc") && !h.contains("pwned"),
        "injected header:\n{h}"
    );
    assert_eq!(h.matches("\nSubject:").count(), 1);
    let b = m.body();
    for needle in [
        "  Address:    203.0.113.10\n",
        "  Failures:   3\n",
        "  Ban time:   10m\n",
        "  Expires:    20",
        // whois, quoted and inert
        "  | netname: TEST-NET-3\n",
        "  | descr: ~!touch /tmp/pwned-by-whois\n",
        "  | descr: evil^[[2J\n",
        // matched lines, quoted and inert
        "invalid user ~!touch /tmp/banstream-pwned from 203.0.113.10",
        "invalid user x^MBcc: victim@example.org^M^MSubject: pwned from",
        "bytes cut]",
    ] {
        assert!(b.contains(needle), "missing {needle:?} in\n{b}");
    }
    for line in m.data.lines() {
        assert!(
            !line.starts_with('~'),
            "line starts with an escape: {line:?}"
        );
        assert!(line.len() <= 998, "line of {} bytes", line.len());
        if line.contains("~!") {
            assert!(
                line.starts_with("  | "),
                "foreign text not quoted: {line:?}"
            );
        }
    }
    assert!(m.data.len() < 20_000, "the 100 KB line was capped");
    assert!(!Path::new("/tmp/banstream-pwned").exists());
    assert!(d.wait_for(5, |d| mail_metric(d, "mail", "sent") == 1.0));
    bans_applied_promptly(&d, 1.0);
}

#[test]
fn a_flood_of_1000_bans_makes_one_digest_per_jail() {
    require!(
        have("msmtp"),
        "msmtp is not installed (apt-get install msmtp)"
    );
    let sink = SmtpSink::start();
    let (_env, wrap) = mail_env(&sink);
    let d = start(
        r#"
[defaults]
mta = "msmtp"
notify_interval = "10s"
maxretry = 1

[jail.flood-a]
enabled = true
filter = "sshd"
action = ["log", "mail"]

[jail.flood-b]
enabled = true
filter = "sshd"
action = ["log", "mail[dest=ops@example.org]"]
"#,
        wrap,
    );
    let t = Instant::now();
    for i in 0..1000u32 {
        let ip = format!("198.18.{}.{}", i / 250, i % 250 + 1);
        d.send_udp(&fail_line("root", &ip));
        std::thread::sleep(Duration::from_millis(4));
    }
    assert!(
        d.wait_for(20, |d| d.metric("banstream_bans_total{jail=\"flood-a\"}")
            == 1000.0
            && d.metric("banstream_bans_total{jail=\"flood-b\"}") == 1000.0),
        "bans: {}",
        d.metrics()
    );
    eprintln!("1000 bans in 2 jails sent and applied in {:?}", t.elapsed());
    let got = sink.wait(2, 40);
    assert_eq!(got.len(), 2, "one digest per jail");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(sink.got.lock().unwrap().len(), 2, "and nothing more");
    for jail in ["flood-a", "flood-b"] {
        let m = got
            .iter()
            .find(|m| m.headers().contains(&format!("X-Banstream-Jail: {jail}")))
            .unwrap_or_else(|| panic!("no digest for {jail}"));
        assert!(
            m.headers().contains(&format!(
                "Subject: [banstream] {jail}: 1000 addresses banned from"
            )),
            "{}",
            m.headers()
        );
        let rows = m
            .body()
            .lines()
            .filter(|l| l.starts_with("  198.18."))
            .count();
        assert_eq!(rows, 1000, "{jail}: every ban listed");
    }
    assert_eq!(
        got.iter()
            .find(|m| m.headers().contains("flood-b"))
            .unwrap()
            .rcpt,
        vec!["ops@example.org"]
    );
    assert_eq!(mail_metric(&d, "mail", "sent"), 2.0);
    assert_eq!(mail_metric(&d, "mail", "suppressed"), 1998.0);
}

#[test]
fn start_and_stop_mails_are_off_by_default_and_sent_when_asked() {
    require!(
        have("msmtp"),
        "msmtp is not installed (apt-get install msmtp)"
    );
    let sink = SmtpSink::start();
    let (_env, wrap) = mail_env(&sink);
    let mut d = start(
        r#"
[defaults]
mta = "msmtp"

[jail.loud]
enabled = true
filter = "sshd"
notify_startstop = true
action = ["log", "mail"]

[jail.quiet]
enabled = true
filter = "sshd"
action = ["log", "mail"]
"#,
        wrap,
    );
    let got = sink.wait(1, 20);
    assert_eq!(got.len(), 1);
    assert!(got[0]
        .headers()
        .contains("Subject: [banstream] loud: started on "));
    assert!(d.stop(), "clean shutdown");
    let got = sink.wait(2, 20);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[1]
        .headers()
        .contains("Subject: [banstream] loud: stopped on "));
    assert!(got.iter().all(|m| !m.headers().contains("quiet")));
}

#[test]
fn webhook_posts_json_retries_on_500_and_sends_the_token() {
    let r = Receiver::start(vec![500, 500, 200], false);
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cr3t-token\n").unwrap();
    let d = start(
        &format!(
            r#"
[jail.sshd]
enabled = true
filter = "sshd"
maxretry = 1
notify_interval = "1s"
action = ["log", 'webhook[url="{}", token_file="{}", retries=3, lines=3]']
"#,
            r.url(),
            token.display()
        ),
        Vec::new(),
    );
    d.send_udp(&fail_line("~!id", "203.0.113.20"));
    let got = r.wait(3, 30);
    assert_eq!(got.len(), 3, "two 500s then a 200:\n{}", d.log_text());
    assert!(d.wait_for(5, |d| mail_metric(d, "webhook", "sent") == 1.0));
    assert_eq!(mail_metric(&d, "webhook", "failed"), 0.0);
    for q in &got {
        assert_eq!(q.path, "/hook");
        assert_eq!(q.headers["authorization"], "Bearer s3cr3t-token");
        assert_eq!(q.headers["content-type"], "application/json");
        assert_eq!(q.body, got[0].body, "a retry sends the same document");
    }
    let j = &got[0].body;
    assert_eq!(j["event"], "ban");
    assert_eq!(j["jail"], "sshd");
    assert_eq!(j["ip"], "203.0.113.20");
    assert_eq!(j["failures"], 1);
    assert_eq!(j["bantime"], 600);
    assert!(j["expires"].as_u64().unwrap() > 1_700_000_000);
    assert!(j["host"].as_str().is_some_and(|h| !h.is_empty()));
    assert_eq!(j["count"], 1);
    assert_eq!(j["bans"].as_array().unwrap().len(), 1);
    let m = j["matches"][0].as_str().unwrap();
    assert!(
        m.contains("sshd[4242]: Failed password for invalid user ~!id from 203.0.113.20"),
        "{m}"
    );
    bans_applied_promptly(&d, 1.0);

    // A rotated token is read again at reload (the options did not change).
    std::fs::write(&token, "rotated-token\n").unwrap();
    let out = d.cli(&["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    d.send_udp(&fail_line("root", "203.0.113.21"));
    let got = r.wait(4, 30);
    assert_eq!(got.len(), 4, "one more notice:\n{}", d.log_text());
    assert_eq!(got[3].body["ip"], "203.0.113.21");
    assert_eq!(got[3].headers["authorization"], "Bearer rotated-token");
}

#[test]
fn a_hung_webhook_never_delays_a_ban() {
    let r = Receiver::start(vec![], true);
    let mut d = start(
        &format!(
            r#"
[jail.sshd]
enabled = true
filter = "sshd"
maxretry = 1
notify_interval = "0s"
action = ["log", 'webhook[url="{}", timeout=3s, retries=1]']
"#,
            r.url()
        ),
        Vec::new(),
    );
    let t = Instant::now();
    for i in 1..=20 {
        d.send_udp(&fail_line("root", &format!("198.51.100.{i}")));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        d.wait_for(10, |d| d.metric("banstream_bans_total{jail=\"sshd\"}")
            == 20.0),
        "{}\n{}",
        d.metrics(),
        d.log_text()
    );
    eprintln!(
        "20 bans applied in {:?} while the webhook hangs (3 s timeout per attempt)",
        t.elapsed()
    );
    assert!(!r.wait(1, 10).is_empty(), "the webhook was called");
    bans_applied_promptly(&d, 20.0);
    assert!(d.stop(), "shutdown is not held hostage by a hung webhook");
}

#[test]
fn a_missing_sendmail_and_an_unreachable_webhook_are_counted_and_logged_once() {
    // A port nobody listens on.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let d = start(
        &format!(
            r#"
[jail.sshd]
enabled = true
filter = "sshd"
maxretry = 1
mta = "/nonexistent/banstream-test/sendmail"
notify_interval = "0s"
action = ["log", "mail", 'webhook[url="http://{closed}/hook", retries=0]']
"#
        ),
        Vec::new(),
    );
    for i in 1..=5 {
        d.send_udp(&fail_line("root", &format!("198.51.100.{}", 100 + i)));
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(d.wait_for(15, |d| mail_metric(d, "mail", "failed") >= 3.0
        && mail_metric(d, "webhook", "failed") >= 3.0));
    assert_eq!(d.metric("banstream_bans_total{jail=\"sshd\"}"), 5.0);
    bans_applied_promptly(&d, 5.0);
    assert!(d.metric("banstream_action_errors_total{action=\"mail\",jail=\"sshd\"}") >= 3.0);
    let log = d.log_text();
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("notification failed"))
        .collect();
    assert_eq!(errors.len(), 2, "once per kind per burst:\n{log}");
    assert!(
        errors.iter().any(|l| l.contains("nonexistent")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|l| l.contains(&closed.to_string())),
        "{errors:?}"
    );
    // `check` warns about the missing MTA before any of this happens.
    let out = std::process::Command::new(crate::common::bin())
        .args(["check", "-c"])
        .arg(&d.config)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("is not installed"), "{text}");
}

#[test]
fn mail_options_are_checked_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("banstream.toml");
    std::fs::write(
        &f,
        format!(
            "{}\n[jail.a]\nfilter = \"sshd\"\naction = [\"mail[mta=/usr/bin/mail]\"]\n[jail.b]\nfilter = \"sshd\"\ndestemail = \"root\\r\\nBcc: x@example.org\"\naction = [\"mail\"]\n[jail.c]\nfilter = \"sshd\"\naction = [\"webhook[url=ftp://example.org/]\"]\n[jail.d]\nfilter = \"sshd\"\naction = [\"mail[whios=true]\"]\n",
            crate::common::QUIET_DEFAULTS
        ),
    )
    .unwrap();
    let out = std::process::Command::new(crate::common::bin())
        .args(["check", "-c"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        err.contains("jail.a.action") && err.contains("CVE-2021-32749"),
        "{err}"
    );
    assert!(
        err.contains("jail.b.action") && err.contains("not a plain mail address"),
        "{err}"
    );
    assert!(
        err.contains("jail.c.action") && err.contains("http"),
        "{err}"
    );
    assert!(
        err.contains("jail.d.action") && err.contains("whios"),
        "{err}"
    );
}
