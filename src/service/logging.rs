//! banstream's own log lines: where they go and how they are kept out of
//! banstream's own input.
//!
//! Two targets. `stderr` (the default) is what supervise-daemon and a
//! terminal capture. `syslog` sends each line as one datagram to the local
//! syslog socket, `<PRI>banstream[PID]: message`, like musl's `syslog()`.
//!
//! Two rules make logging safe for a daemon that *is* a syslog destination:
//! - **It never blocks.** Each datagram is sent with `MSG_DONTWAIT`. When
//!   the socket is missing (banstream starts before syslogd), refuses, or
//!   its buffer is full (syslogd is itself waiting on banstream), the line
//!   goes to stderr instead. A syslogd blocked on a TCP connection to
//!   banstream therefore can never stall banstream's logging.
//! - **It never loops.** Every line carries the program name `ident`; the
//!   daemon drops received messages with that program before routing them
//!   (counted as `banstream_messages_dropped_total{reason="own_log"}`) and
//!   logs nothing about them, so a syslogd that forwards everything back to
//!   banstream produces one extra dropped message per line, not a cycle.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Arc;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

use crate::config::raw::RawLog;

/// The default program name of banstream's own lines.
pub const DEFAULT_IDENT: &str = "banstream";
/// The default local syslog socket.
pub const DEFAULT_SOCKET: &str = "/dev/log";

/// Where log lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogTarget {
    /// Standard error, one line per event.
    Stderr,
    /// The local syslog socket.
    Syslog {
        /// The socket (`/dev/log`).
        socket: PathBuf,
        /// Facility number (daemon = 3).
        facility: u8,
    },
}

/// `[log]` without the level, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSettings {
    /// Where lines go.
    pub target: LogTarget,
    /// Program name of banstream's own lines; never routed to a jail.
    pub ident: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            target: LogTarget::Stderr,
            ident: DEFAULT_IDENT.to_string(),
        }
    }
}

/// The syslog facility number for a name.
pub fn facility(name: &str) -> Option<u8> {
    const NAMES: [&str; 12] = [
        "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
        "authpriv", "ftp",
    ];
    let name = name.to_ascii_lowercase();
    if let Some(i) = NAMES.iter().position(|n| *n == name) {
        return u8::try_from(i).ok();
    }
    let n: u8 = name.strip_prefix("local")?.parse().ok()?;
    (n <= 7).then_some(16 + n)
}

impl LogSettings {
    /// Validates `[log]` (the level is handled by the caller).
    pub fn resolve(raw: &RawLog) -> Result<LogSettings, String> {
        let ident = raw.ident.clone().unwrap_or_else(|| DEFAULT_IDENT.into());
        if ident.is_empty()
            || ident.len() > 48
            || !ident
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'[' && b != b':')
        {
            return Err(format!(
                "log.ident {ident:?}: must be 1-48 printable characters without '[' or ':'"
            ));
        }
        let facility_name = raw.facility.as_deref().unwrap_or("daemon");
        let fac = facility(facility_name).ok_or_else(|| {
            format!("log.facility {facility_name:?}: expected daemon, auth, authpriv, user, syslog, local0..local7, ...")
        })?;
        let target = match raw.target.as_deref().unwrap_or("stderr") {
            "stderr" => LogTarget::Stderr,
            "syslog" => LogTarget::Syslog {
                socket: raw
                    .syslog_socket
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET)),
                facility: fac,
            },
            other => {
                return Err(format!(
                    "log.target {other:?}: expected \"stderr\" or \"syslog\""
                ))
            }
        };
        Ok(LogSettings { target, ident })
    }
}

/// Installs the global tracing subscriber for the daemon. `level` is a
/// level or a tracing filter; `RUST_LOG` wins when set.
pub fn init(level: &str, log: &LogSettings) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    match &log.target {
        LogTarget::Stderr => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_target(false)
            .init(),
        LogTarget::Syslog { socket, facility } => {
            let writer = SyslogWriter::new(socket.clone(), *facility, &log.ident);
            // syslogd stamps the time; the severity is in <PRI>.
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(writer)
                .with_ansi(false)
                .with_target(false)
                .with_level(false)
                .without_time()
                .init();
        }
    }
}

struct Inner {
    sock: Option<UnixDatagram>,
    path: PathBuf,
    facility: u8,
    /// `ident[pid]: `
    tag: String,
}

/// A [`MakeWriter`] that sends each formatted event as one syslog datagram.
#[derive(Clone)]
pub struct SyslogWriter {
    inner: Arc<Inner>,
}

impl SyslogWriter {
    /// A writer for `socket` with `facility` and program name `ident`.
    pub fn new(socket: PathBuf, facility: u8, ident: &str) -> SyslogWriter {
        // Unbound and unconnected: each line is sent to the path, so a
        // syslogd that starts (or restarts) later is picked up.
        let sock = UnixDatagram::unbound()
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .ok();
        SyslogWriter {
            inner: Arc::new(Inner {
                sock,
                path: socket,
                facility,
                tag: format!("{ident}[{}]: ", std::process::id()),
            }),
        }
    }
}

fn severity(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

impl<'a> MakeWriter<'a> for SyslogWriter {
    type Writer = SyslogLine;

    fn make_writer(&'a self) -> SyslogLine {
        self.line(6)
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> SyslogLine {
        self.line(severity(meta.level()))
    }
}

impl SyslogWriter {
    fn line(&self, severity: u8) -> SyslogLine {
        let pri = u16::from(self.inner.facility) * 8 + u16::from(severity);
        let mut buf = Vec::with_capacity(256);
        let _ = write!(buf, "<{pri}>{}", self.inner.tag);
        SyslogLine {
            header: buf.len(),
            buf,
            inner: self.inner.clone(),
        }
    }
}

/// One log line being formatted; sent when dropped.
pub struct SyslogLine {
    buf: Vec<u8>,
    header: usize,
    inner: Arc<Inner>,
}

impl Write for SyslogLine {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogLine {
    fn drop(&mut self) {
        while self.buf.last().is_some_and(|b| *b == b'\n') {
            self.buf.pop();
        }
        if self.buf.len() <= self.header {
            return;
        }
        let sent = self
            .inner
            .sock
            .as_ref()
            .is_some_and(|s| s.send_to(&self.buf, &self.inner.path).is_ok());
        if !sent {
            // No syslogd (yet), or it is not reading: never wait for it.
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(&self.buf[self.header..]);
            let _ = err.write_all(b"\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facilities_by_name() {
        assert_eq!(facility("daemon"), Some(3));
        assert_eq!(facility("AUTHPRIV"), Some(10));
        assert_eq!(facility("local7"), Some(23));
        assert_eq!(facility("local8"), None);
        assert_eq!(facility("nope"), None);
    }

    #[test]
    fn resolve_rejects_bad_values() {
        let mut raw = RawLog::default();
        assert_eq!(LogSettings::resolve(&raw).unwrap(), LogSettings::default());
        raw.target = Some("journal".into());
        assert!(LogSettings::resolve(&raw)
            .unwrap_err()
            .contains("log.target"));
        raw.target = Some("syslog".into());
        raw.ident = Some("ban stream".into());
        assert!(LogSettings::resolve(&raw)
            .unwrap_err()
            .contains("log.ident"));
        raw.ident = None;
        raw.facility = Some("local3".into());
        assert_eq!(
            LogSettings::resolve(&raw).unwrap().target,
            LogTarget::Syslog {
                socket: PathBuf::from("/dev/log"),
                facility: 19
            }
        );
    }

    #[test]
    fn one_datagram_per_line_with_pri_and_tag() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let rx = UnixDatagram::bind(&path).unwrap();
        let w = SyslogWriter::new(path, 3, "banstream");
        {
            let mut l = w.line(4);
            l.write_all(b"Ban jail=sshd ip=203.0.113.5\n").unwrap();
        }
        let mut buf = [0u8; 512];
        let n = rx.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        assert_eq!(
            text,
            format!(
                "<28>banstream[{}]: Ban jail=sshd ip=203.0.113.5",
                std::process::id()
            )
        );
    }

    #[test]
    fn a_missing_socket_does_not_block_or_panic() {
        let w = SyslogWriter::new(PathBuf::from("/nonexistent/banstream-test/log"), 3, "b");
        let mut l = w.line(6);
        l.write_all(b"goes to stderr\n").unwrap();
        drop(l);
    }
}
