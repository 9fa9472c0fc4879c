//! What a jail remembers beyond counters: failures per minute over the last
//! hour, and the last matched lines of each recently failing address. The
//! lines serve `status JAIL` (why is this address banned?) and the
//! notifiers' `lines=` (`action_mwl`): one record, read by both.
//!
//! Both are bounded: 60 per-minute buckets, and at most [`LINE_ADDRESSES`]
//! addresses × the per-address count the owner asks for (at most
//! [`MAX_LINES_PER_ADDRESS`]) lines of at most [`LINE_BYTES`] bytes (the
//! least recently failing address is forgotten first). Lines are kept only
//! when the owner asks (the daemon does; `replay` does not).

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use super::capped::CappedMap;
use serde::Serialize;

use crate::syslog::Event;

/// Addresses whose recent lines are kept, per jail.
pub const LINE_ADDRESSES: usize = 4096;
/// Lines `status` shows per address.
pub const LINES_PER_ADDRESS: usize = 3;
/// Most lines kept per address (a notifier's `lines=` is capped to this).
pub const MAX_LINES_PER_ADDRESS: usize = 20;
/// Longest line kept (longer ones are cut at a character boundary).
pub const LINE_BYTES: usize = 512;

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Failures per minute over the last hour.
#[derive(Debug, Clone, Copy)]
pub struct MinuteRate {
    /// Failures in each minute, indexed by minute number modulo 60.
    counts: [u32; 60],
    /// The minute number each bucket holds.
    minute: [u64; 60],
}

impl Default for MinuteRate {
    fn default() -> Self {
        MinuteRate {
            counts: [0; 60],
            minute: [u64::MAX; 60],
        }
    }
}

impl MinuteRate {
    /// Adds `n` failures at `now`.
    pub fn add(&mut self, now: SystemTime, n: u32) {
        let m = unix(now) / 60;
        let i = (m % 60) as usize;
        if self.minute[i] != m {
            self.minute[i] = m;
            self.counts[i] = 0;
        }
        self.counts[i] = self.counts[i].saturating_add(n);
    }

    /// Failures in the last `minutes` minutes (the current one included).
    pub fn sum(&self, now: SystemTime, minutes: u64) -> u64 {
        let cur = unix(now) / 60;
        let minutes = minutes.clamp(1, 60);
        (0..60)
            .filter(|&i| {
                let m = self.minute[i];
                m != u64::MAX && m <= cur && cur - m < minutes
            })
            .map(|i| u64::from(self.counts[i]))
            .sum()
    }
}

/// Failures per minute, averaged over three spans.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct RateSummary {
    /// In the current minute.
    #[serde(rename = "1m")]
    pub last_minute: f64,
    /// Average over the last 10 minutes.
    #[serde(rename = "10m")]
    pub last_10m: f64,
    /// Average over the last hour.
    #[serde(rename = "60m")]
    pub last_60m: f64,
}

/// One remembered line (foreign text: whoever renders it makes it inert).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RecentLine {
    /// When it was received, UNIX seconds.
    pub time: u64,
    /// `[host ]program[pid]: message` (cut to [`LINE_BYTES`]).
    pub line: String,
    /// Bytes cut off the end when it was recorded.
    #[serde(skip)]
    pub cut: usize,
}

/// The activity record of one jail.
#[derive(Debug, Default)]
pub struct Activity {
    rate: MinuteRate,
    lines: Option<CappedMap<IpAddr, VecDeque<RecentLine>>>,
    /// Lines kept per address while `lines` is on.
    per_address: usize,
}

fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut i = max;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    &s[..i]
}

impl Activity {
    /// Keeps the last `per_address` matched lines of each address (capped
    /// at [`MAX_LINES_PER_ADDRESS`]); 0 stops keeping lines.
    pub fn keep_lines(&mut self, per_address: usize) {
        self.per_address = per_address.min(MAX_LINES_PER_ADDRESS);
        match (self.per_address > 0, self.lines.is_some()) {
            // Capped in `line`, so the table grows as addresses come.
            (true, false) => self.lines = Some(CappedMap::new()),
            (false, true) => self.lines = None,
            _ => {}
        }
    }

    /// Counts failures at `now`.
    pub fn failures(&mut self, now: SystemTime, n: u32) {
        self.rate.add(now, n);
    }

    /// Remembers the line behind a failure of `ip`.
    pub fn line(&mut self, ip: IpAddr, ev: &Event<'_>, now: SystemTime) {
        let Some(lines) = self.lines.as_mut() else {
            return;
        };
        let mut text = String::with_capacity(
            ev.host.map_or(0, str::len) + ev.program.len() + ev.msg.len().min(LINE_BYTES) + 16,
        );
        if let Some(h) = ev.host {
            text.push_str(h);
            text.push(' ');
        }
        text.push_str(if ev.program.is_empty() {
            "-"
        } else {
            ev.program
        });
        if let Some(pid) = ev.pid {
            text.push('[');
            text.push_str(pid);
            text.push(']');
        }
        text.push_str(": ");
        text.push_str(ev.msg);
        let kept = cut(&text, LINE_BYTES).len();
        let dropped = text.len() - kept;
        text.truncate(kept);
        let (q, _) = lines.entry(LINE_ADDRESSES, ip, VecDeque::new, |_| false);
        while q.len() >= self.per_address.max(1) {
            q.pop_front();
        }
        q.push_back(RecentLine {
            time: unix(now),
            line: text,
            cut: dropped,
        });
    }

    /// The last `n` lines remembered for `ip`, oldest first.
    pub fn last_lines(&self, ip: IpAddr, n: usize) -> Vec<RecentLine> {
        self.lines
            .as_ref()
            .and_then(|l| l.peek(&ip))
            .map(|q| q.iter().skip(q.len().saturating_sub(n)).cloned().collect())
            .unwrap_or_default()
    }

    /// Failures per minute at `now`.
    pub fn rate(&self, now: SystemTime) -> RateSummary {
        RateSummary {
            last_minute: self.rate.sum(now, 1) as f64,
            last_10m: self.rate.sum(now, 10) as f64 / 10.0,
            last_60m: self.rate.sum(now, 60) as f64 / 60.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syslog::{Format, Peer};
    use std::time::Duration;

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn rate_counts_recent_minutes_only() {
        let mut r = MinuteRate::default();
        r.add(at(600), 2);
        r.add(at(659), 1);
        r.add(at(660), 4);
        assert_eq!(r.sum(at(660), 1), 4);
        assert_eq!(r.sum(at(660), 2), 7);
        // An hour later the buckets are stale.
        assert_eq!(r.sum(at(660 + 3600), 60), 0);
        r.add(at(660 + 3600), 1);
        assert_eq!(r.sum(at(660 + 3600), 60), 1);
    }

    #[test]
    fn lines_are_bounded_and_cut() {
        let mut a = Activity::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let long = "é".repeat(400);
        let ev = Event {
            received: at(0),
            peer: Peer::File,
            format: Format::Rfc3164,
            host: None,
            program: "sshd",
            pid: Some("7"),
            facility: None,
            severity: None,
            timestamp: None,
            msg: &long,
        };
        a.line(ip, &ev, at(1));
        assert!(a.last_lines(ip, 3).is_empty(), "off by default");
        a.keep_lines(4);
        for i in 0..6 {
            a.line(ip, &ev, at(i));
        }
        assert_eq!(a.last_lines(ip, 10).len(), 4, "kept per address");
        let l = a.last_lines(ip, LINES_PER_ADDRESS);
        assert_eq!(l.len(), LINES_PER_ADDRESS);
        assert_eq!(l[0].time, 3);
        assert!(l[0].line.starts_with("sshd[7]: é"));
        assert!(l[0].line.len() <= LINE_BYTES);
        assert_eq!(l[0].line.len() + l[0].cut, "sshd[7]: ".len() + long.len());
        a.keep_lines(0);
        assert!(a.last_lines(ip, 3).is_empty());
    }
}
