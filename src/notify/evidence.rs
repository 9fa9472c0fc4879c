//! Matched lines for notifications (fail2ban's `<matches>`, `action_mwl`).
//!
//! The engine keeps, for the jails whose notifiers ask for lines, the last
//! few failure lines of each address ([`MatchRecorder`], engine thread, no
//! lock). When an address is banned its lines move to [`Evidence`], a small
//! shared map keyed by (jail, address) that the notifiers read when the ban
//! reaches them. Both are bounded: lines are cut when recorded, and least
//! recently used addresses are forgotten beyond a cap, so a flood of unique
//! addresses holds memory flat (a notification may then say the lines are no
//! longer held).

use std::collections::VecDeque;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;

use crate::jail::{JailName, Observation};
use crate::syslog::Event;

// Memory, worst case (lines=20): 2048 addresses x 20 lines x 512 bytes =
// 20 MiB per jail recording, and as much for the hand-off; 5 MiB each with
// lines=5.

/// Most lines a notifier may ask for per ban (`lines=`).
pub const MAX_LINES: usize = 20;
/// Bytes of a line kept when it is recorded (rendering cuts to
/// [`super::text::MAX_LINE`]; the rest is only counted).
const RECORD_CAP: usize = 512;
/// Addresses whose recent lines a jail keeps.
const ADDRESSES_PER_JAIL: usize = 2048;
/// Banned (jail, address) pairs whose lines wait for the notifiers.
const HANDOFF_CAP: usize = 2048;

/// One failure line as received (foreign text: render it with
/// [`super::text::quote`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatchedLine {
    /// `2026-01-02 03:04:05 UTC host program[pid]: message`, cut to a budget.
    pub text: String,
    /// Bytes cut when it was recorded.
    pub cut: usize,
}

impl MatchedLine {
    /// The line of an event, as a log file would show it (receive time).
    pub fn of(ev: &Event<'_>) -> MatchedLine {
        let mut s = super::text::utc(ev.received);
        if let Some(h) = ev.host {
            s.push(' ');
            s.push_str(h);
        }
        s.push(' ');
        s.push_str(if ev.program.is_empty() {
            "-"
        } else {
            ev.program
        });
        if let Some(p) = ev.pid {
            s.push('[');
            s.push_str(p);
            s.push(']');
        }
        s.push_str(": ");
        s.push_str(ev.msg);
        let mut cut = 0;
        if s.len() > RECORD_CAP {
            let mut end = RECORD_CAP;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            cut = s.len() - end;
            s.truncate(end);
        }
        MatchedLine { text: s, cut }
    }
}

fn cap(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
}

type Handoff = LruCache<(JailName, IpAddr), Arc<[MatchedLine]>>;

/// The lines of banned addresses, waiting for the notifiers. Cloning shares it.
#[derive(Clone)]
pub struct Evidence {
    // A std Mutex: held for one map operation, never across I/O.
    inner: Arc<Mutex<Handoff>>,
}

impl Default for Evidence {
    fn default() -> Self {
        Evidence {
            inner: Arc::new(Mutex::new(LruCache::new(cap(HANDOFF_CAP)))),
        }
    }
}

impl std::fmt::Debug for Evidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Evidence")
    }
}

impl Evidence {
    /// Stores the lines that led to a ban.
    pub fn put(&self, jail: &JailName, ip: IpAddr, lines: Vec<MatchedLine>) {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        m.put((jail.clone(), ip), lines.into());
    }

    /// The lines that led to the ban of `ip` in `jail` (empty when none were
    /// recorded or they were forgotten). Several notifiers may read them.
    pub fn get(&self, jail: &JailName, ip: IpAddr) -> Arc<[MatchedLine]> {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&(jail.clone(), ip))
            .cloned()
            .unwrap_or_else(|| Arc::from(Vec::new()))
    }
}

/// The engine side: the last lines of each address, for the jails that want them.
#[derive(Debug, Default)]
pub struct MatchRecorder {
    /// Lines wanted per jail index (0: none).
    wanted: Vec<usize>,
    recent: Vec<Option<LruCache<IpAddr, VecDeque<MatchedLine>>>>,
    evidence: Evidence,
}

impl MatchRecorder {
    /// Sets how many lines each jail (by index) keeps per address. Called
    /// at start and on reload; lines held so far are dropped.
    pub fn configure(&mut self, wanted: Vec<usize>) {
        self.recent = wanted
            .iter()
            .map(|w| (*w > 0).then(|| LruCache::new(cap(ADDRESSES_PER_JAIL))))
            .collect();
        self.wanted = wanted.into_iter().map(|w| w.min(MAX_LINES)).collect();
    }

    /// The shared handle the notifiers read.
    pub fn evidence(&self) -> Evidence {
        self.evidence.clone()
    }

    /// Records what an event did in jail `index` (named `jail`). Cheap when
    /// the jail wants no lines.
    pub fn observe(&mut self, index: usize, jail: &JailName, obs: &Observation, ev: &Event<'_>) {
        let Some(&want) = self.wanted.get(index) else {
            return;
        };
        if want == 0 {
            return;
        }
        let Some(Some(recent)) = self.recent.get_mut(index) else {
            return;
        };
        let (ip, offense) = match *obs {
            Observation::Counted { ip, .. } => (ip, false),
            Observation::Offense { ip, .. } => (ip, true),
            _ => return,
        };
        let ring = recent.get_or_insert_mut(ip, VecDeque::new);
        if ring.len() == want {
            ring.pop_front();
        }
        ring.push_back(MatchedLine::of(ev));
        if offense {
            if let Some(lines) = recent.pop(&ip) {
                self.evidence.put(jail, ip, lines.into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syslog::{Format, Peer};
    use std::time::{Duration, UNIX_EPOCH};

    fn ev(msg: &str) -> Event<'_> {
        Event {
            received: UNIX_EPOCH + Duration::from_secs(1_767_225_600),
            peer: Peer::File,
            format: Format::Rfc3164,
            host: None,
            program: "sshd",
            pid: Some("42"),
            facility: None,
            severity: None,
            timestamp: None,
            msg,
        }
    }

    #[test]
    fn keeps_the_last_lines_and_hands_them_over_at_the_ban() {
        let jail = JailName::new("sshd").unwrap();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let mut r = MatchRecorder::default();
        r.configure(vec![0, 2]);
        let counted = Observation::Counted { ip, count: 1 };
        // Jail 0 wants nothing.
        r.observe(
            0,
            &jail,
            &Observation::Offense { ip, failures: 1 },
            &ev("x"),
        );
        assert!(r.evidence().get(&jail, ip).is_empty());
        r.observe(1, &jail, &counted, &ev("one"));
        r.observe(1, &jail, &counted, &ev("two"));
        r.observe(
            1,
            &jail,
            &Observation::Offense { ip, failures: 3 },
            &ev("three"),
        );
        let lines = r.evidence().get(&jail, ip);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].text, "2026-01-01 00:00:00 UTC sshd[42]: two");
        assert!(lines[1].text.ends_with(": three"));
        // A second reader sees them too.
        assert_eq!(r.evidence().get(&jail, ip).len(), 2);
    }

    #[test]
    fn huge_lines_are_cut_when_recorded() {
        let big = "A".repeat(100_000);
        let l = MatchedLine::of(&ev(&big));
        assert!(l.text.len() <= RECORD_CAP);
        assert_eq!(
            l.text.len() + l.cut,
            "2026-01-01 00:00:00 UTC sshd[42]: ".len() + 100_000
        );
    }
}
