//! The RFC 3164 family: everything after `<PRI>` that is not RFC 5424.
//!
//! Shapes accepted (timestamp optional only when a tag follows directly):
//!
//! ```text
//! TIMESTAMP tag[pid]: msg                 BusyBox / musl (no hostname)
//! TIMESTAMP tag: msg                      pid-less tags: kernel:, named:
//! TIMESTAMP host tag[pid]: msg            RFC 3164, rsyslog traditional forward
//! TIMESTAMP host facility.level tag: msg  BusyBox syslogd's file layout
//! tag[pid]: msg                           senders that omit the timestamp
//! ```
//!
//! The tag must end in `:` or carry `[pid]`; that marker is what separates
//! it from a hostname. A line without one is left unparsed rather than
//! guessed at, because a guessed program could route to the wrong jail.

use std::time::SystemTime;

use super::timestamp;

/// The header fields of a parsed line.
pub(super) struct Header<'a> {
    pub host: Option<&'a str>,
    pub program: &'a str,
    pub pid: Option<&'a str>,
    pub timestamp: Option<SystemTime>,
    pub msg: &'a str,
}

/// The longest program name accepted; real tags are far shorter (RFC 3164
/// says 32), and a longer "tag" is noise or an attack.
const MAX_PROGRAM: usize = 128;

pub(super) fn parse(s: &str, reference: SystemTime) -> Option<Header<'_>> {
    let s = s.trim_start_matches(' ');
    let (ts, rest) = match timestamp::parse_bsd(s, reference).or_else(|| timestamp::parse_iso(s)) {
        Some((t, n)) => {
            let rest = &s[n..];
            if !(rest.is_empty() || rest.starts_with(' ')) {
                return None;
            }
            (Some(t), rest.trim_start_matches(' '))
        }
        None => (None, s),
    };
    let first = token(rest);
    // An empty tag, as musl's syslog() writes without openlog (`: msg`, or
    // `[pid]: msg` with LOG_PID): the message has no program. Read as a
    // host, it would make the message's own first word the program, and
    // whoever wrote that text could pose as sshd.
    let pid = first
        .strip_prefix('[')
        .and_then(|p| p.strip_suffix("]:"))
        .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if first == ":" || pid.is_some() {
        return Some(Header {
            host: None,
            program: "",
            pid,
            timestamp: ts,
            msg: rest[first.len()..].trim_start_matches(' '),
        });
    }
    // An IPv6 host would pass for a tag ending in `:` (`fe80::1%eth0` as the
    // program `fe80`); any other first word that is not a tag fails
    // `scan_tag` anyway, so only those are parsed, zone and brackets allowed.
    if !first.bytes().any(|b| b == b':') || crate::addr::parse_host(first).is_none() {
        if let Some(tag) = scan_tag(rest) {
            return Some(Header {
                host: None,
                program: tag.program,
                pid: tag.pid,
                timestamp: ts,
                msg: tag.rest,
            });
        }
    }
    // Without a timestamp we do not guess that the first word is a host.
    ts?;
    if first.is_empty() {
        return None;
    }
    let host = first;
    let mut after = rest[first.len()..].trim_start_matches(' ');
    let level = token(after);
    if is_facility_level(level) {
        after = after[level.len()..].trim_start_matches(' ');
    }
    let tag = scan_tag(after)?;
    Some(Header {
        host: Some(host),
        program: tag.program,
        pid: tag.pid,
        timestamp: ts,
        msg: tag.rest,
    })
}

fn token(s: &str) -> &str {
    // A byte loop: tokens here (hosts, tags) are a few bytes, shorter than
    // a vectorised search takes to set up.
    match s.bytes().position(|b| b == b' ') {
        Some(i) => s.get(..i).unwrap_or(s),
        None => s,
    }
}

struct Tag<'a> {
    program: &'a str,
    pid: Option<&'a str>,
    rest: &'a str,
}

/// Reads `name[pid]:`, `name:` or `name[pid]` at the start of `s`.
fn scan_tag(s: &str) -> Option<Tag<'_>> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && !matches!(b[i], b'[' | b':' | b' ') {
        if b[i] < 0x20 || b[i] == 0x7f {
            return None;
        }
        i += 1;
    }
    if i == 0 || i > MAX_PROGRAM {
        return None;
    }
    let program = &s[..i];
    let mut pid = None;
    if b.get(i) == Some(&b'[') {
        // Up to the first `]`: at most 32 bytes, none a space. One bounded
        // pass; two searches cost more to set up than to run on a pid.
        let open = i + 1;
        let mut close = open;
        loop {
            match b.get(close) {
                Some(b']') => break,
                Some(b' ') | None => return None,
                Some(_) if close - open == 32 => return None,
                Some(_) => close += 1,
            }
        }
        if close == open {
            return None;
        }
        pid = Some(&s[open..close]);
        i = close + 1;
    }
    match b.get(i) {
        Some(b':') => i += 1,
        Some(b' ') | None if pid.is_some() => {}
        _ => return None,
    }
    Some(Tag {
        program,
        pid,
        rest: s[i..].trim_start_matches(' '),
    })
}

/// BusyBox syslogd writes `facility.level` between host and tag in its log
/// file (unless run with -S).
fn is_facility_level(tok: &str) -> bool {
    // A byte search: `split_once` on a char costs more to set up than to
    // run on a token this short, and most lines have a tag here.
    let Some(dot) = tok.bytes().position(|b| b == b'.') else {
        return false;
    };
    let (fac, lvl) = (&tok[..dot], &tok[dot + 1..]);
    let fac_ok = matches!(
        fac,
        "kern"
            | "user"
            | "mail"
            | "daemon"
            | "auth"
            | "syslog"
            | "lpr"
            | "news"
            | "uucp"
            | "cron"
            | "authpriv"
            | "ftp"
            | "ntp"
            | "security"
            | "console"
            | "local0"
            | "local1"
            | "local2"
            | "local3"
            | "local4"
            | "local5"
            | "local6"
            | "local7"
    );
    fac_ok
        && matches!(
            lvl,
            "emerg"
                | "alert"
                | "crit"
                | "err"
                | "error"
                | "warn"
                | "warning"
                | "notice"
                | "info"
                | "debug"
                | "panic"
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn p(s: &str) -> Option<Header<'_>> {
        parse(s, UNIX_EPOCH)
    }

    #[test]
    fn tag_forms() {
        let h = p("Jan  1 00:00:00 sshd[1]: x").unwrap();
        assert_eq!(
            (h.host, h.program, h.pid, h.msg),
            (None, "sshd", Some("1"), "x")
        );
        let h = p("Jan  1 00:00:00 kernel: [UFW BLOCK] x").unwrap();
        assert_eq!((h.host, h.program, h.pid), (None, "kernel", None));
        let h = p("Jan  1 00:00:00 h postfix/smtpd[9]: x").unwrap();
        assert_eq!((h.host, h.program), (Some("h"), "postfix/smtpd"));
        let h = p("sshd[5]: no timestamp").unwrap();
        assert_eq!((h.program, h.timestamp), ("sshd", None));
        let h = p("Jan  1 00:00:00 sshd[1]:x").unwrap();
        assert_eq!(h.msg, "x");
    }

    #[test]
    fn an_empty_tag_leaves_the_message_without_a_program() {
        for (line, pid) in [
            ("Nov 24 14:00:01 : sshd[1]: Failed password for root", None),
            (
                "Nov 24 14:00:01 [77]: sshd[1]: Failed password for root",
                Some("77"),
            ),
        ] {
            let h = p(line).unwrap();
            assert_eq!((h.host, h.program, h.pid), (None, "", pid), "{line}");
            assert_eq!(h.msg, "sshd[1]: Failed password for root");
        }
        // A bracketed name is a program (fail2ban's samples have `[sshd]:`).
        let h = p("Mar  3 00:17:22 [sshd]: User root from 192.0.2.1");
        assert!(h.is_none_or(|h| !h.program.is_empty()));
    }

    #[test]
    fn ipv6_hostname_is_not_a_tag() {
        let h = p("Jan  1 00:00:00 2001:db8::1 sshd[1]: x").unwrap();
        assert_eq!((h.host, h.program), (Some("2001:db8::1"), "sshd"));
        // With a zone (std's parser refuses it) or in brackets.
        for host in ["fe80::1%eth0", "[2001:db8::2]"] {
            let line = format!("Jan  1 00:00:00 {host} sshd[1]: x");
            let h = p(&line).unwrap();
            assert_eq!(
                (h.host, h.program, h.msg),
                (Some(host), "sshd", "x"),
                "{line}"
            );
        }
    }

    #[test]
    fn no_marker_no_program() {
        assert!(p("Jan  1 00:00:00 host prog message").is_none());
        assert!(p("just words").is_none());
        assert!(p("Jan  1 00:00:00").is_none());
        assert!(p("Jan  1 00:00:00 host sshd[unterminated: x").is_none());
        let long = format!("{}: x", "a".repeat(200));
        assert!(p(&long).is_none());
    }

    #[test]
    fn a_pid_is_1_to_32_bytes_without_a_space() {
        let pid32 = "9".repeat(32);
        let line = format!("sshd[{pid32}]: x");
        let h = p(&line).unwrap();
        assert_eq!(
            (h.program, h.pid, h.msg),
            ("sshd", Some(pid32.as_str()), "x")
        );
        for bad in [
            format!("sshd[{}]: x", "9".repeat(33)),
            "sshd[]: x".to_string(),
            "sshd[1 2]: x".to_string(),
            "sshd[12".to_string(),
        ] {
            assert!(p(&bad).is_none(), "{bad}");
        }
        // Without a colon after it, the pid alone marks the tag.
        let h = p("Jan  1 00:00:00 h sshd[7] x").unwrap();
        assert_eq!((h.program, h.pid, h.msg), ("sshd", Some("7"), "x"));
    }
}
