//! Stage 4: jails. A [`Jail`] takes the events routed to it, runs its filter,
//! turns the captured text into an address, applies its ignore list and
//! counts failures in its window. It reports an [`Observation`]; deciding
//! the ban belongs to the ban manager.
//!
//! Owns: the window counter and session table of one jail. Receives: events
//! (from the router) and the ban manager's view of an address's history.

pub mod activity;
pub mod capped;
pub mod ignore;
pub mod session;
pub mod window;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use crate::addr;
use crate::config::resolve::{JailKind, JailSettings};
use crate::filter::fail2ban::Correlated;
use crate::filter::{HitKind, Verdict};
use crate::syslog::{Event, Peer};

use activity::Activity;
use session::Sessions;
use window::WindowCounter;

/// A jail's name: short, and safe to use in firewall object names.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JailName(Arc<str>);

impl JailName {
    /// Longest jail name accepted (nft and ipset object names derive from it).
    pub const MAX_LEN: usize = 32;

    /// Validates a name: 1..=32 of `A-Z a-z 0-9 _ -`.
    pub fn new(name: &str) -> Result<JailName, String> {
        if name.is_empty() || name.len() > Self::MAX_LEN {
            return Err(format!(
                "jail name {name:?} must be 1 to {} characters",
                Self::MAX_LEN
            ));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(format!(
                "jail name {name:?} may only contain letters, digits, '_' and '-' (it names firewall objects)"
            ));
        }
        Ok(JailName(Arc::from(name)))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JailName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for JailName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

/// What the ban manager tells a jail about an address.
pub trait BanView {
    /// Whether the address is banned in this jail right now.
    fn is_banned(&self, jail: &JailName, ip: IpAddr) -> bool;
    /// How many times the address was banned before (for the failure weight).
    fn previous_bans(&self, jail: &JailName, ip: IpAddr, overall: bool) -> u32;
}

/// What one event did in a jail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observation {
    /// Not a failure for this jail.
    Nothing,
    /// A failure whose address could not be established (a hostname, a
    /// malformed address, a session that never named one): never banned.
    Unattributed,
    /// A failure from an address on the ignore list.
    Ignored(IpAddr),
    /// A failure of an address that is already banned here.
    AlreadyBanned(IpAddr),
    /// A failure was counted; `count` within findtime so far.
    Counted {
        /// The address.
        ip: IpAddr,
        /// Failures within the window.
        count: u32,
    },
    /// The threshold was reached: the ban manager should ban `ip`.
    Offense {
        /// The address.
        ip: IpAddr,
        /// Failures within the window.
        failures: u32,
    },
}

/// Running totals of one jail (for `status`).
#[derive(Clone, Copy, Debug, Default)]
pub struct JailStats {
    /// Failures counted since start.
    pub failures_total: u64,
    /// Failures with no usable address.
    pub unattributed_total: u64,
    /// Failures from ignored addresses.
    pub ignored_total: u64,
}

/// A running jail.
#[derive(Debug)]
pub struct Jail {
    /// Its configuration.
    pub settings: Arc<JailSettings>,
    window: WindowCounter,
    sessions: Sessions,
    /// Correlation state of a fail2ban filter that needs it (mlfid, maxlines).
    f2b: Option<Box<crate::filter::fail2ban::State>>,
    /// Totals.
    pub stats: JailStats,
    /// Failures per minute and recent lines (for status).
    activity: Activity,
}

impl Jail {
    /// A jail with empty counters.
    pub fn new(settings: Arc<JailSettings>) -> Jail {
        let cap = settings.max_tracked;
        Jail {
            settings,
            window: WindowCounter::new(cap),
            sessions: Sessions::default(),
            f2b: None,
            stats: JailStats::default(),
            activity: Activity::default(),
        }
    }

    /// Failures per minute and recent lines.
    pub fn activity(&self) -> &Activity {
        &self.activity
    }

    /// Keeps the last `per_address` lines of each failing address (0: none).
    pub fn keep_lines(&mut self, per_address: usize) {
        self.activity.keep_lines(per_address);
    }

    /// Keeps the counters of `old` (a reload that left this jail's matching
    /// unchanged).
    pub fn adopt_state(&mut self, old: Jail) {
        self.window = old.window;
        self.sessions = old.sessions;
        self.f2b = old.f2b;
        self.stats = old.stats;
        self.activity = old.activity;
    }

    /// The jail's name.
    pub fn name(&self) -> &JailName {
        &self.settings.name
    }

    /// The window counter (read-only, for status).
    pub fn window(&self) -> &WindowCounter {
        &self.window
    }

    /// The stateless part: runs the filter on a routed event. Safe to call
    /// from several threads at once.
    pub fn examine<'t>(&self, ev: &Event<'t>) -> Verdict<'t> {
        examine(&self.settings, ev)
    }

    /// The stateful part: attributes a verdict to an address and counts it.
    pub fn observe(
        &mut self,
        ev: &Event<'_>,
        verdict: Verdict<'_>,
        now: SystemTime,
        bans: &dyn BanView,
    ) -> Observation {
        if let JailKind::Filter(f) = &self.settings.kind {
            if let Some(m) = f.fail2ban() {
                let st = match m.is_stateful() {
                    true => Some(&mut **self.f2b.get_or_insert_with(Default::default)),
                    false => None,
                };
                let host = match m.correlate(st, ev, verdict, now) {
                    Correlated::Nothing => return Observation::Nothing,
                    Correlated::Failure { host, .. } => host,
                };
                return match host.as_deref().and_then(addr::parse_host) {
                    Some(ip) => {
                        let obs = self.count(ip, 1, now, bans);
                        if let Observation::Counted { ip, .. } | Observation::Offense { ip, .. } =
                            obs
                        {
                            self.activity.line(ip, ev, now);
                        }
                        obs
                    }
                    None => {
                        self.stats.unattributed_total += 1;
                        Observation::Unattributed
                    }
                };
            }
        }
        let uses_sessions = self.uses_sessions();
        let verdict = match (verdict, &self.settings.kind) {
            (Verdict::Login { .. }, JailKind::Filter(f)) => {
                // A login counts only in a session already known (see
                // `attribute`); most have none, and then its groups are
                // never read.
                let known = uses_sessions
                    && self
                        .sessions
                        .key(ev)
                        .is_some_and(|k| self.sessions.knows(k));
                if !known {
                    return Observation::Nothing;
                }
                f.resolve(verdict, ev.msg)
            }
            (v, _) => v,
        };
        match attribute(&mut self.sessions, uses_sessions, ev, verdict, now) {
            Attribution::Nothing => Observation::Nothing,
            Attribution::Unattributed { .. } => {
                self.stats.unattributed_total += 1;
                Observation::Unattributed
            }
            Attribution::Failures { ip, count } => {
                let obs = self.count(ip, count, now, bans);
                if let Observation::Counted { ip, .. } | Observation::Offense { ip, .. } = obs {
                    self.activity.line(ip, ev, now);
                }
                obs
            }
        }
    }

    /// Counts `failures` failures of `ip` (also used by recidive, whose
    /// "failures" are bans in other jails).
    pub fn count(
        &mut self,
        ip: IpAddr,
        failures: u32,
        now: SystemTime,
        bans: &dyn BanView,
    ) -> Observation {
        if failures == 0 {
            return Observation::Nothing;
        }
        if self.settings.ignore.contains(ip) {
            self.stats.ignored_total += 1;
            return Observation::Ignored(ip);
        }
        let name = &self.settings.name;
        if bans.is_banned(name, ip) {
            return Observation::AlreadyBanned(ip);
        }
        self.stats.failures_total += u64::from(failures);
        self.activity.failures(now, failures);
        let s = &self.settings;
        // The history only weighs failures with `bantime.increment`.
        let previous = match s.policy.increment {
            true => bans.previous_bans(name, ip, false),
            false => 0,
        };
        let weight = s.policy.failure_weight(previous, s.maxretry) * failures;
        let key = addr::count_key(ip, s.ipv6_prefix);
        let count = self.window.record(key, now, weight, s.maxretry, s.findtime);
        if count >= s.maxretry {
            self.window.reset(&key);
            Observation::Offense {
                ip,
                failures: count,
            }
        } else {
            Observation::Counted { ip, count }
        }
    }

    fn uses_sessions(&self) -> bool {
        matches!(&self.settings.kind, JailKind::Filter(f) if f.uses_sessions())
    }

    /// Housekeeping: forget addresses whose failures left the window.
    pub fn expire(&mut self, now: SystemTime) {
        self.window.expire(now, self.settings.findtime);
    }
}

/// The stateless part of a jail, on its settings alone: the uid check and
/// the filter. [`crate::engine::Matcher`] runs it on several threads. A
/// login comes back as [`Verdict::Login`]: [`Jail::observe`] reads its
/// groups only when its session is known.
pub fn examine<'t>(settings: &JailSettings, ev: &Event<'t>) -> Verdict<'t> {
    let JailKind::Filter(filter) = &settings.kind else {
        return Verdict::Miss;
    };
    // With `uids`, only a line whose sender the kernel proved counts: one
    // from a UDP or TCP peer (even on loopback, where any local user can
    // send) or a unix line without credentials could say anything. Lines
    // read from a file (replay, test-filter) are the admin's own.
    let proven = match ev.peer {
        Peer::Unix { uid: Some(uid), .. } => settings.uids.contains(&uid),
        Peer::Unix { uid: None, .. } | Peer::Inet(_) => false,
        Peer::File => true,
    };
    if !settings.uids.is_empty() && !proven {
        return Verdict::Miss;
    }
    filter.examine_deferring(ev)
}

/// What a verdict amounts to once sessions are taken into account, before
/// ignore lists and counting. Shared by jails and `test-filter`, so the tool
/// reports exactly what the daemon would count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attribution {
    /// Not a failure (a miss, an ignoreregex veto, or a helper line that
    /// resolved nothing).
    Nothing,
    /// A failure without a usable address: a host name, or (`pending`) a
    /// session failure still waiting for its connection to name an address.
    Unattributed {
        /// The failure waits in its session and is counted when the address appears.
        pending: bool,
    },
    /// `count` failures of `ip` (more than one when a line resolves failures
    /// that were pending in its session).
    Failures {
        /// The address.
        ip: IpAddr,
        /// Failures to count.
        count: u32,
    },
}

/// Attributes a verdict: parses the captured host, learns or looks up the
/// session's address (host, program, pid) when the filter correlates lines.
///
/// In a session:
/// - a line naming an address resolves the failures pending for it;
/// - a helper line (nofail) is no failure, unless the session has tried
///   more than one user name: then it counts, with the earlier helper lines
///   that named a user (password spraying over one connection);
/// - a successful login drops what was pending and forgets the session; it
///   is a failure itself when several user names were tried.
pub fn attribute(
    sessions: &mut Sessions,
    uses_sessions: bool,
    ev: &Event<'_>,
    verdict: Verdict<'_>,
    now: SystemTime,
) -> Attribution {
    let Verdict::Hit {
        host, kind, user, ..
    } = verdict
    else {
        return Attribution::Nothing;
    };
    let session = if uses_sessions {
        sessions.key(ev)
    } else {
        None
    };
    // A login is never a failure by itself, and on a connection with no
    // session yet it would only create one to forget it: most accepted
    // logins end here.
    if kind == HitKind::Success && !session.is_some_and(|k| sessions.knows(k)) {
        return Attribution::Nothing;
    }
    let ip = host.and_then(addr::parse_host);
    let (count, found) = match session {
        Some(key) => sessions.hit(key, ip, user, kind, host.is_none(), now),
        None => (u32::from(kind == HitKind::Failure), None),
    };
    let ip = match (ip, host) {
        (Some(ip), _) => Some(ip),
        // A host was captured but is not an address: never guess.
        (None, Some(_)) => None,
        (None, None) => found,
    };
    if count == 0 {
        return Attribution::Nothing;
    }
    match ip {
        Some(ip) => Attribution::Failures { ip, count },
        None => Attribution::Unattributed {
            pending: host.is_none() && session.is_some(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(pid: &'static str) -> Event<'static> {
        Event {
            received: std::time::UNIX_EPOCH,
            peer: Peer::File,
            format: crate::syslog::Format::Rfc3164,
            host: None,
            program: "sshd",
            pid: Some(pid),
            facility: None,
            severity: None,
            timestamp: None,
            msg: "",
        }
    }

    fn hit(
        host: Option<&'static str>,
        user: Option<&'static str>,
        kind: HitKind,
    ) -> Verdict<'static> {
        Verdict::Hit {
            regex: 0,
            host,
            user,
            kind,
        }
    }

    #[test]
    fn sessions_count_several_user_names_and_forget_on_login() {
        let mut s = Sessions::default();
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1000);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a = |s: &mut Sessions, v| attribute(s, true, &ev("7"), v, t);
        // One user, twice: helper lines, nothing counts.
        let pam = |u| hit(Some("192.0.2.1"), Some(u), HitKind::NoFail);
        assert_eq!(a(&mut s, pam("root")), Attribution::Nothing);
        assert_eq!(a(&mut s, pam("root")), Attribution::Nothing);
        // A second name: this line and the two kept ones count.
        assert_eq!(
            a(&mut s, pam("admin")),
            Attribution::Failures { ip, count: 3 }
        );
        // A login after several names is a failure, and ends the session.
        let login = hit(Some("192.0.2.1"), Some("ops"), HitKind::Success);
        assert_eq!(a(&mut s, login), Attribution::Failures { ip, count: 1 });
        assert_eq!(a(&mut s, pam("x")), Attribution::Nothing, "forgotten");
        // A login with the same name drops a pending failure.
        let mut s = Sessions::default();
        let pending = hit(None, None, HitKind::Failure);
        assert_eq!(
            a(&mut s, pending),
            Attribution::Unattributed { pending: true }
        );
        assert_eq!(
            a(&mut s, hit(Some("192.0.2.1"), Some("x"), HitKind::Success)),
            Attribution::Nothing
        );
        let named = hit(Some("192.0.2.1"), None, HitKind::NoFail);
        assert_eq!(
            a(&mut s, named),
            Attribution::Nothing,
            "nothing left pending"
        );
        // Without sessions, helper lines never count.
        let mut s = Sessions::default();
        assert_eq!(
            attribute(&mut s, false, &ev("7"), pam("root"), t),
            Attribution::Nothing
        );
    }

    #[test]
    fn a_deferred_login_observes_what_a_read_one_does() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("banstream.toml");
        std::fs::write(&main, "[jail.sshd]\nfilter = \"sshd[mode=aggressive]\"\n").unwrap();
        let loaded = crate::config::load(&crate::config::LoadOptions {
            file: Some(main),
            env: false,
        })
        .unwrap();
        let settings = crate::config::resolve::resolve(&loaded).unwrap();
        let s = settings
            .jails
            .iter()
            .find(|j| j.name.as_str() == "sshd")
            .unwrap();
        let JailKind::Filter(filter) = &s.kind else {
            panic!("sshd has a filter");
        };
        let (mut deferring, mut reading) = (
            Jail::new(Arc::new(s.clone())),
            Jail::new(Arc::new(s.clone())),
        );
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1000);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let lines = [
            // Helper lines naming two users on one connection.
            ("7", "Failed publickey for root from 192.0.2.1 port 1 ssh2"),
            ("7", "Failed publickey for admin from 192.0.2.1 port 1 ssh2"),
            // Several names, then a login: a failure of the session's address.
            ("7", "Accepted password for ops from 192.0.2.1 port 1 ssh2"),
            // No session: nothing, and its groups are never read.
            ("9", "Accepted publickey for ops from 192.0.2.9 port 2 ssh2"),
            // The login ended session 7.
            ("7", "Accepted password for ops from 192.0.2.1 port 1 ssh2"),
        ];
        let no_bans = crate::ban::BanManager::new();
        let mut logins = 0;
        let mut seen = Vec::new();
        for (pid, msg) in lines {
            let mut e = ev(pid);
            e.msg = msg;
            let deferred = examine(s, &e);
            logins += usize::from(matches!(deferred, Verdict::Login { .. }));
            let a = deferring.observe(&e, deferred, t, &no_bans);
            let b = reading.observe(&e, filter.examine(&e), t, &no_bans);
            assert_eq!(a, b, "{msg}");
            seen.push(a);
        }
        assert_eq!(logins, 3);
        assert_eq!(seen[0], Observation::Nothing);
        assert!(matches!(seen[1], Observation::Counted { count: 2, .. }));
        assert!(
            matches!(seen[2], Observation::Offense { ip: x, failures: 3 } if x == ip("192.0.2.1")),
            "{:?}",
            seen[2]
        );
        assert_eq!(seen[3], Observation::Nothing);
        assert_eq!(seen[4], Observation::Nothing);
    }

    #[test]
    fn jail_names_are_firewall_safe() {
        assert!(JailName::new("sshd-ddos").is_ok());
        assert!(JailName::new("named_refused_udp").is_ok());
        assert!(JailName::new("").is_err());
        assert!(JailName::new("a b").is_err());
        assert!(JailName::new("x;rm").is_err());
        assert!(JailName::new(&"a".repeat(33)).is_err());
    }
}
