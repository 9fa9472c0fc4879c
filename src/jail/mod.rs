//! Stage 4: jails. A [`Jail`] takes the events routed to it, runs its filter,
//! turns the captured text into an address, applies its ignore list and
//! counts failures in its window. It reports an [`Observation`]; deciding
//! the ban belongs to the ban manager.
//!
//! Owns: the window counter and session table of one jail. Receives: events
//! (from the router) and the ban manager's view of an address's history.

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
        }
    }

    /// Keeps the counters of `old` (a reload that left this jail's matching
    /// unchanged).
    pub fn adopt_state(&mut self, old: Jail) {
        self.window = old.window;
        self.sessions = old.sessions;
        self.f2b = old.f2b;
        self.stats = old.stats;
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
        let JailKind::Filter(filter) = &self.settings.kind else {
            return Verdict::Miss;
        };
        if !self.settings.uids.is_empty() {
            if let Peer::Unix { uid: Some(uid), .. } = ev.peer {
                if !self.settings.uids.contains(&uid) {
                    return Verdict::Miss;
                }
            }
        }
        filter.examine(ev)
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
                    Some(ip) => self.count(ip, 1, now, bans),
                    None => {
                        self.stats.unattributed_total += 1;
                        Observation::Unattributed
                    }
                };
            }
        }
        let Verdict::Hit { host, kind, .. } = verdict else {
            return Observation::Nothing;
        };
        let session = if self.uses_sessions() {
            self.sessions.key(ev)
        } else {
            None
        };
        let ip = host.and_then(addr::parse_host);
        let mut weight_extra = 0;
        let ip = match (ip, host, session) {
            (Some(ip), _, Some(key)) => {
                weight_extra = self.sessions.learn(key, ip, now);
                Some(ip)
            }
            (Some(ip), _, None) => Some(ip),
            // A host was captured but is not an address: never guess.
            (None, Some(_), _) => None,
            (None, None, Some(key)) if kind == HitKind::Failure => {
                self.sessions.attribute(key, now)
            }
            (None, None, _) => None,
        };
        if kind == HitKind::NoFail && weight_extra == 0 {
            return Observation::Nothing;
        }
        let Some(ip) = ip else {
            if kind == HitKind::Failure {
                self.stats.unattributed_total += 1;
                return Observation::Unattributed;
            }
            return Observation::Nothing;
        };
        let failures = weight_extra + u32::from(kind == HitKind::Failure);
        self.count(ip, failures, now, bans)
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
        let s = &self.settings;
        let previous = bans.previous_bans(name, ip, false);
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

#[cfg(test)]
mod tests {
    use super::*;

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
