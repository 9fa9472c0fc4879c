//! Stage 2 of the flow: bytes + peer → [`Event`].
//!
//! Receives a frame's bytes with its peer and receive time (from `ingest`, or
//! a log file line in `replay`/`test-filter`) and produces an [`Event`] that
//! borrows from those bytes. Parsing never fails and never panics: a line with
//! no recognisable header becomes an event with an empty program, which no
//! jail subscribes to, so it can never cause a ban.
//!
//! Formats handled (see the tests in each submodule):
//! - RFC 5424, via `syslog_loose`, including rsyslog's template whose MSG
//!   starts with a space;
//! - RFC 3164 with or without hostname; BusyBox/musl `<PRI>Mmm dd HH:MM:SS
//!   tag[pid]: msg`; pid-less tags (`kernel:`, `named:`); rsyslog's
//!   traditional forward format; /var/log/messages lines without PRI,
//!   including BusyBox's `host facility.level tag:` file layout and ISO 8601
//!   timestamps. These go through our own parser: `syslog_loose` files a
//!   pid-less tag as the hostname and reads `[UFW BLOCK]` as structured data.

mod rfc3164;
mod rfc5424;
pub mod timestamp;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::SystemTime;

/// Who sent a frame, as far as the transport can prove it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// A UDP or TCP peer.
    Inet(SocketAddr),
    /// A unix socket peer, with kernel-verified credentials when available.
    Unix {
        /// The sender's uid (SCM_CREDENTIALS / SO_PEERCRED).
        uid: Option<u32>,
        /// The sender's pid.
        pid: Option<u32>,
    },
    /// A line read from a file (replay, test-filter).
    File,
}

/// Which header layout a line had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// RFC 5424 (`<PRI>1 TIMESTAMP ...`).
    Rfc5424,
    /// RFC 3164 or one of its relatives (BusyBox, rsyslog traditional, file lines).
    Rfc3164,
    /// No header could be recognised; the whole line is the message.
    Unparsed,
}

/// One syslog message, borrowing its text from the frame it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Event<'a> {
    /// When banstream received the frame (the clock live windows use).
    pub received: SystemTime,
    /// The sender.
    pub peer: Peer,
    /// The header layout.
    pub format: Format,
    /// Hostname from the header, when the line has one.
    pub host: Option<&'a str>,
    /// The program (tag / APP-NAME). Empty when unknown.
    pub program: &'a str,
    /// The pid (or RFC 5424 PROCID), when present.
    pub pid: Option<&'a str>,
    /// Facility number (0..=23) from PRI.
    pub facility: Option<u8>,
    /// Severity number (0..=7) from PRI.
    pub severity: Option<u8>,
    /// The timestamp the sender claims. Only replay uses it as a clock:
    /// live windows count by `received`, which an attacker cannot forge.
    pub timestamp: Option<SystemTime>,
    /// The message body after the tag, with leading whitespace removed.
    pub msg: &'a str,
}

/// What the parser needs besides the text.
#[derive(Clone, Copy, Debug)]
pub struct ParseContext {
    /// Receive time of the frame.
    pub received: SystemTime,
    /// The sender.
    pub peer: Peer,
    /// The time a year-less RFC 3164 timestamp is placed near: the receive
    /// time live, the previous line's time in replay. The year chosen is the
    /// one that puts the timestamp closest to this, which handles Dec → Jan.
    pub reference: SystemTime,
}

impl ParseContext {
    /// A context for a frame received now from `peer`.
    pub fn live(peer: Peer, received: SystemTime) -> Self {
        ParseContext {
            received,
            peer,
            reference: received,
        }
    }
}

/// Turns raw bytes into text. Invalid UTF-8 is replaced with U+FFFD rather
/// than rejected: the valid parts of a hostile line are still worth reading,
/// and the replacement can never form an address.
pub fn decode(bytes: &[u8]) -> Cow<'_, str> {
    // Checking first is the fast path: from_utf8 validates ASCII a word at
    // a time, the lossy walk a byte at a time.
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// Parses one frame or log line. Never fails.
pub fn parse<'a>(text: &'a str, ctx: &ParseContext) -> Event<'a> {
    let line = trim_frame(text);
    let (pri, rest) = split_pri(line);
    let (facility, severity) = match pri {
        Some(p) => (Some(p >> 3), Some(p & 7)),
        None => (None, None),
    };
    if pri.is_some() && rest.len() > 2 && rest.as_bytes()[0] == b'1' && rest.as_bytes()[1] == b' ' {
        if let Some(ev) = rfc5424::parse(line, ctx) {
            return ev;
        }
    }
    match rfc3164::parse(rest, ctx.reference) {
        Some(h) => Event {
            received: ctx.received,
            peer: ctx.peer,
            format: Format::Rfc3164,
            host: h.host,
            program: h.program,
            pid: h.pid,
            facility,
            severity,
            timestamp: h.timestamp,
            msg: h.msg,
        },
        None => Event {
            received: ctx.received,
            peer: ctx.peer,
            format: Format::Unparsed,
            host: None,
            program: "",
            pid: None,
            facility,
            severity,
            timestamp: None,
            msg: rest,
        },
    }
}

/// Drops the framing leftovers a sender may append: CR, LF and NUL.
fn trim_frame(text: &str) -> &str {
    text.trim_end_matches(['\n', '\r', '\0'])
        .trim_start_matches(['\n', '\r', '\0', ' '])
}

/// Splits `<PRI>` off the front. A malformed PRI is treated as no PRI, so the
/// line is still read as a bare log line.
fn split_pri(line: &str) -> (Option<u8>, &str) {
    let b = line.as_bytes();
    if b.first() != Some(&b'<') {
        return (None, line);
    }
    let mut v: u32 = 0;
    let mut i = 1;
    while i < b.len() && i <= 4 && b[i].is_ascii_digit() {
        v = v * 10 + u32::from(b[i] - b'0');
        i += 1;
    }
    if i == 1 || i > 4 || i >= b.len() || b[i] != b'>' || v > 191 {
        return (None, line);
    }
    (Some(v as u8), &line[i + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    pub(crate) fn ctx() -> ParseContext {
        // 2026-11-24T14:00:00Z
        let t = UNIX_EPOCH + Duration::from_secs(1_795_528_800);
        ParseContext::live(Peer::File, t)
    }

    #[test]
    fn pri_is_split_and_validated() {
        assert_eq!(split_pri("<34>x"), (Some(34), "x"));
        assert_eq!(split_pri("<191>x"), (Some(191), "x"));
        assert_eq!(split_pri("<192>x"), (None, "<192>x"));
        assert_eq!(split_pri("<>x"), (None, "<>x"));
        assert_eq!(split_pri("<1234>x"), (None, "<1234>x"));
        assert_eq!(split_pri("<3"), (None, "<3"));
    }

    #[test]
    fn busybox_musl_no_hostname() {
        let e = parse("<38>Nov 24 14:00:01 sshd[2211]: Failed password for root from 203.0.113.9 port 4711 ssh2", &ctx());
        assert_eq!(e.host, None);
        assert_eq!(e.program, "sshd");
        assert_eq!(e.pid, Some("2211"));
        assert_eq!(e.facility, Some(4));
        assert_eq!(e.severity, Some(6));
        assert_eq!(
            e.msg,
            "Failed password for root from 203.0.113.9 port 4711 ssh2"
        );
        assert_eq!(e.format, Format::Rfc3164);
    }

    #[test]
    fn pidless_kernel_and_named_tags_are_programs() {
        let e = parse(
            "<4>Nov 24 14:00:01 kernel: [UFW BLOCK] IN=eth0 OUT= SRC=198.51.100.7 DST=10.0.0.1",
            &ctx(),
        );
        assert_eq!(e.program, "kernel");
        assert_eq!(e.host, None);
        assert_eq!(e.pid, None);
        assert_eq!(
            e.msg,
            "[UFW BLOCK] IN=eth0 OUT= SRC=198.51.100.7 DST=10.0.0.1"
        );
        let e = parse("<30>Nov 24 14:00:01 named: client @0x7f 198.51.100.8#5353 (x.example): query (cache) 'x.example/A/IN' denied", &ctx());
        assert_eq!(e.program, "named");
        assert_eq!(e.host, None);
        let e = parse(
            "<4>Nov 24 14:00:01 gw kernel: [ 1234.5678] [UFW BLOCK] SRC=198.51.100.7",
            &ctx(),
        );
        assert_eq!(e.program, "kernel");
        assert_eq!(e.host, Some("gw"));
        assert_eq!(e.msg, "[ 1234.5678] [UFW BLOCK] SRC=198.51.100.7");
    }

    #[test]
    fn rfc3164_with_hostname_rsyslog_traditional_forward() {
        let e = parse("<38>Nov 24 14:00:01 web1 sshd-session[99]: Invalid user admin from 2001:db8::7 port 2222", &ctx());
        assert_eq!(e.host, Some("web1"));
        assert_eq!(e.program, "sshd-session");
        assert_eq!(e.pid, Some("99"));
        assert_eq!(e.msg, "Invalid user admin from 2001:db8::7 port 2222");
    }

    #[test]
    fn rfc5424_and_rsyslog_template_leading_space() {
        let e = parse("<38>1 2026-11-24T14:00:01.123456+00:00 web1 sshd 2211 - - Failed password for root from 203.0.113.9 port 4711 ssh2", &ctx());
        assert_eq!(e.format, Format::Rfc5424);
        assert_eq!(e.host, Some("web1"));
        assert_eq!(e.program, "sshd");
        assert_eq!(e.pid, Some("2211"));
        assert_eq!(
            e.msg,
            "Failed password for root from 203.0.113.9 port 4711 ssh2"
        );
        let e = parse("<38>1 2026-11-24T14:00:01+00:00 web1 sshd 2211 - -  Failed password for x from 203.0.113.9 port 1 ssh2", &ctx());
        assert_eq!(e.msg, "Failed password for x from 203.0.113.9 port 1 ssh2");
        let e = parse(
            "<38>1 2026-11-24T14:00:01Z web1 sshd - - [origin ip=\"10.0.0.1\"] \u{feff}hello",
            &ctx(),
        );
        assert_eq!(e.pid, None);
        assert_eq!(e.msg, "hello");
        assert_eq!(
            e.timestamp,
            Some(UNIX_EPOCH + Duration::from_secs(1_795_528_801))
        );
    }

    #[test]
    fn file_lines_without_pri() {
        let e = parse(
            "Nov 24 14:00:01 alpine sshd[2211]: Connection closed by 1.2.3.4 port 1 [preauth]",
            &ctx(),
        );
        assert_eq!(e.facility, None);
        assert_eq!(e.host, Some("alpine"));
        assert_eq!(e.program, "sshd");
        // BusyBox syslogd's file layout carries facility.level after the host.
        let e = parse(
            "Nov 24 14:00:01 alpine auth.info sshd[2211]: Connection closed",
            &ctx(),
        );
        assert_eq!(e.host, Some("alpine"));
        assert_eq!(e.program, "sshd");
        assert_eq!(e.msg, "Connection closed");
        // rsyslog's high-precision file format.
        let e = parse(
            "2026-11-24T14:00:01.5+01:00 alpine named[7]: client 1.2.3.4#53: rate limit drop",
            &ctx(),
        );
        assert_eq!(e.program, "named");
        assert_eq!(
            e.timestamp,
            Some(UNIX_EPOCH + Duration::from_millis(1_795_525_201_500))
        );
    }

    #[test]
    fn garbage_never_gets_a_program() {
        for line in [
            "",
            "\0\0\0",
            "<",
            "<13>",
            "hello world",
            "<13>1 garbage",
            "\u{fffd}\u{fffd}",
            "Nov 99 99:99:99 x y: z",
        ] {
            let e = parse(line, &ctx());
            assert_eq!(e.program, "", "{line:?}");
        }
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let bytes = b"<38>Nov 24 14:00:01 sshd[1]: Failed password for \xff\xfe from 203.0.113.9 port 1 ssh2";
        let text = decode(bytes);
        let e = parse(&text, &ctx());
        assert_eq!(e.program, "sshd");
        assert!(e.msg.contains('\u{fffd}'));
    }
}
