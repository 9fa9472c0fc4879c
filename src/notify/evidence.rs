//! Matched lines for notifications (fail2ban's `<matches>`, `action_mwl`).
//!
//! The lines themselves are recorded once, by the jail
//! ([`crate::jail::activity::Activity`], which `status` reads too). When an
//! address is banned in a jail whose notifiers want lines, [`MatchRecorder`]
//! copies that address's last lines into [`Evidence`], a small shared map
//! keyed by (jail, address) that the notifiers read when the ban reaches
//! them. It is bounded: least recently used entries are forgotten beyond a
//! cap, so a flood of unique addresses holds memory flat (a notification may
//! then say the lines are no longer held).

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use lru::LruCache;

use crate::jail::activity::{Activity, RecentLine, MAX_LINES_PER_ADDRESS};
use crate::jail::{JailName, Observation};

/// Most lines a notifier may ask for per ban (`lines=`).
pub const MAX_LINES: usize = MAX_LINES_PER_ADDRESS;
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

impl From<&RecentLine> for MatchedLine {
    fn from(r: &RecentLine) -> MatchedLine {
        let when = UNIX_EPOCH + Duration::from_secs(r.time);
        MatchedLine {
            text: format!("{} {}", super::text::utc(when), r.line),
            cut: r.cut,
        }
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

/// The engine side: at a ban, hands the address's last lines to the
/// notifiers of the jails that want them.
#[derive(Debug, Default)]
pub struct MatchRecorder {
    /// Lines wanted per jail index (0: none).
    wanted: Vec<usize>,
    evidence: Evidence,
}

impl MatchRecorder {
    /// Sets how many lines each jail (by index) hands over per ban. Called
    /// at start and on reload.
    pub fn configure(&mut self, wanted: Vec<usize>) {
        self.wanted = wanted.into_iter().map(|w| w.min(MAX_LINES)).collect();
    }

    /// Lines jail `index` hands over per ban (0: none).
    pub fn wanted(&self, index: usize) -> usize {
        self.wanted.get(index).copied().unwrap_or(0)
    }

    /// The shared handle the notifiers read.
    pub fn evidence(&self) -> Evidence {
        self.evidence.clone()
    }

    /// Looks at what an event did in jail `index` (named `jail`, whose
    /// record is `activity`): at a ban, the address's last lines go to the
    /// notifiers. Cheap when the jail wants no lines.
    pub fn observe(
        &mut self,
        index: usize,
        jail: &JailName,
        obs: &Observation,
        activity: &Activity,
    ) {
        let want = self.wanted(index);
        if want == 0 {
            return;
        }
        if let Observation::Offense { ip, .. } = *obs {
            let lines = activity.last_lines(ip, want);
            self.evidence
                .put(jail, ip, lines.iter().map(MatchedLine::from).collect());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syslog::{Event, Format, Peer};
    use std::time::SystemTime;

    fn at() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_767_225_600)
    }

    fn ev(msg: &str) -> Event<'_> {
        Event {
            received: at(),
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
    fn hands_the_last_lines_over_at_the_ban() {
        let jail = JailName::new("sshd").unwrap();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let mut activity = Activity::default();
        activity.keep_lines(3);
        let mut r = MatchRecorder::default();
        r.configure(vec![0, 2]);
        for m in ["one", "two", "three"] {
            activity.line(ip, &ev(m), at());
        }
        let counted = Observation::Counted { ip, count: 1 };
        let offense = Observation::Offense { ip, failures: 3 };
        // Jail 0 wants nothing; a count hands nothing over.
        r.observe(0, &jail, &offense, &activity);
        r.observe(1, &jail, &counted, &activity);
        assert!(r.evidence().get(&jail, ip).is_empty());
        r.observe(1, &jail, &offense, &activity);
        let lines = r.evidence().get(&jail, ip);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].text, "2026-01-01 00:00:00 UTC sshd[42]: two");
        assert!(lines[1].text.ends_with(": three"));
        // A second reader sees them too.
        assert_eq!(r.evidence().get(&jail, ip).len(), 2);
    }

    #[test]
    fn huge_lines_arrive_cut_with_the_count() {
        let big = "A".repeat(100_000);
        let mut activity = Activity::default();
        activity.keep_lines(1);
        let ip: IpAddr = "192.0.2.8".parse().unwrap();
        activity.line(ip, &ev(&big), at());
        let l = MatchedLine::from(&activity.last_lines(ip, 1)[0]);
        assert!(
            l.text.len() <= "2026-01-01 00:00:00 UTC ".len() + crate::jail::activity::LINE_BYTES
        );
        assert_eq!(
            l.text.len() + l.cut,
            "2026-01-01 00:00:00 UTC sshd[42]: ".len() + 100_000
        );
    }
}
