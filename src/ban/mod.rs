//! Stage 5: the ban manager, the one owner of ban state.
//!
//! Receives offenses (from jails), manual bans and unbans (from the control
//! socket) and the clock; decides ban times with the jail's policy; keeps
//! the active bans, their expiry order and each address's ban history.
//! Everything it decides comes back as [`Effect`]s for the caller to apply
//! (firewall actions, store, notifications): the manager itself does no I/O,
//! so the daemon and `replay` share it and tests drive it with any clock.

pub mod policy;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::addr;
use crate::config::TimeSpec;
use crate::jail::{BanView, JailName};

use policy::BanTimePolicy;

/// Where a ban came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BanOrigin {
    /// A jail's threshold was crossed in-stream.
    Stream,
    /// `banstream ban`.
    Manual,
    /// Restored from the store at start.
    Restored,
}

/// One ban in force.
#[derive(Clone, Debug, PartialEq)]
pub struct Ban {
    /// The jail.
    pub jail: JailName,
    /// The banned address.
    pub ip: IpAddr,
    /// When it started.
    pub start: SystemTime,
    /// The length decided (after increments).
    pub bantime: TimeSpec,
    /// When it ends (`None`: permanent).
    pub expires: Option<SystemTime>,
    /// Failures that led to it.
    pub failures: u32,
    /// Which ban of this address this is (1 = first).
    pub ban_count: u32,
    /// How it came about.
    pub origin: BanOrigin,
}

impl Ban {
    /// Time left at `now` (`None`: permanent).
    pub fn remaining(&self, now: SystemTime) -> Option<Duration> {
        self.expires
            .map(|e| e.duration_since(now).unwrap_or(Duration::ZERO))
    }
}

/// Why a ban ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnbanReason {
    /// Its time ran out.
    Expired,
    /// `banstream unban`.
    Manual,
    /// Its jail was removed by a reload.
    JailRemoved,
    /// Its jail must not ban the address now: `ignoreip` changed (by a
    /// reload, or before a restart), or it became one of the host's.
    Ignored,
}

/// What the caller must carry out.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Apply a ban.
    Ban(Arc<Ban>),
    /// Lift a ban.
    Unban(Arc<Ban>, UnbanReason),
}

/// Why a ban was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BanError {
    /// Loopback, multicast, the host itself, or on the jail's ignore list.
    #[error("{0} is never banned (loopback, ignoreip or one of this host's addresses)")]
    Ignored(IpAddr),
    /// Already banned in that jail.
    #[error("{ip} is already banned in {jail}")]
    AlreadyBanned {
        /// The jail.
        jail: JailName,
        /// The address.
        ip: IpAddr,
    },
    /// No such jail.
    #[error("no jail named {0:?}")]
    NoSuchJail(String),
    /// Not banned (unban).
    #[error("{0} is not banned")]
    NotBanned(IpAddr),
}

/// Past bans of an address in one jail.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct History {
    /// Bans so far.
    pub count: u32,
    /// When the last one started.
    pub last: Option<SystemTime>,
}

/// The ban manager.
#[derive(Debug, Default)]
pub struct BanManager {
    // foldhash, seeded per map like the window's tables: SipHash over the
    // jail name was a visible cost of every failure counted.
    active: HashMap<(JailName, IpAddr), Arc<Ban>, foldhash::fast::RandomState>,
    /// Expiry order; entries whose ban was lifted or replaced are skipped.
    expiry: BinaryHeap<Reverse<(SystemTime, JailName, IpAddr)>>,
    history: HashMap<IpAddr, Vec<(JailName, History)>, foldhash::fast::RandomState>,
    /// Bans per jail in force (for metrics and status).
    per_jail: HashMap<JailName, usize>,
    /// Totals since start per jail: (bans, unbans).
    totals: HashMap<JailName, (u64, u64)>,
}

/// What the manager needs to know about a jail to ban in it.
pub struct BanRequest<'a> {
    /// The jail.
    pub jail: &'a JailName,
    /// Its policy.
    pub policy: &'a BanTimePolicy,
    /// The address.
    pub ip: IpAddr,
    /// Failures behind it.
    pub failures: u32,
    /// The jail refuses this address (ignore list).
    pub ignored: bool,
    /// How it came about.
    pub origin: BanOrigin,
    /// A number in [0,1) for `bantime.rndtime`.
    pub random: f64,
}

impl BanView for BanManager {
    fn is_banned(&self, jail: &JailName, ip: IpAddr) -> bool {
        self.active.contains_key(&(jail.clone(), ip))
    }

    fn previous_bans(&self, jail: &JailName, ip: IpAddr, overall: bool) -> u32 {
        let Some(h) = self.history.get(&ip) else {
            return 0;
        };
        if overall {
            h.iter().map(|(_, x)| x.count).sum()
        } else {
            h.iter()
                .find(|(j, _)| j == jail)
                .map_or(0, |(_, x)| x.count)
        }
    }
}

impl BanManager {
    /// An empty manager.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bans `req.ip` in `req.jail` at `now`.
    pub fn ban(&mut self, req: BanRequest<'_>, now: SystemTime) -> Result<Arc<Ban>, BanError> {
        let ip = addr::normalize(req.ip);
        if req.ignored || addr::is_unbannable(ip) {
            return Err(BanError::Ignored(ip));
        }
        let key = (req.jail.clone(), ip);
        if self.active.contains_key(&key) {
            return Err(BanError::AlreadyBanned {
                jail: req.jail.clone(),
                ip,
            });
        }
        let previous = self.previous_bans(req.jail, ip, req.policy.overalljails);
        let bantime = req.policy.ban_time(previous, req.random);
        let ban = Ban {
            jail: req.jail.clone(),
            ip,
            start: now,
            bantime,
            expires: bantime.finite().and_then(|d| now.checked_add(d)),
            failures: req.failures,
            ban_count: self.previous_bans(req.jail, ip, false) + 1,
            origin: req.origin,
        };
        self.record_history(req.jail, ip, now);
        Ok(self.insert(ban))
    }

    fn record_history(&mut self, jail: &JailName, ip: IpAddr, at: SystemTime) {
        let h = self.history.entry(ip).or_default();
        match h.iter_mut().find(|(j, _)| j == jail) {
            Some((_, x)) => {
                x.count += 1;
                x.last = Some(at);
            }
            None => h.push((
                jail.clone(),
                History {
                    count: 1,
                    last: Some(at),
                },
            )),
        }
    }

    fn insert(&mut self, ban: Ban) -> Arc<Ban> {
        let ban = Arc::new(ban);
        if let Some(e) = ban.expires {
            self.expiry.push(Reverse((e, ban.jail.clone(), ban.ip)));
        }
        *self.per_jail.entry(ban.jail.clone()).or_default() += 1;
        self.totals.entry(ban.jail.clone()).or_default().0 += 1;
        self.active.insert((ban.jail.clone(), ban.ip), ban.clone());
        ban
    }

    /// Puts back a ban read from the store (its history is loaded separately
    /// with [`BanManager::load_history`]). Returns `None` if it has expired
    /// by `now`, or is already present.
    pub fn restore(&mut self, mut ban: Ban, now: SystemTime) -> Option<Arc<Ban>> {
        if ban.expires.is_some_and(|e| e <= now) {
            return None;
        }
        if self.active.contains_key(&(ban.jail.clone(), ban.ip)) {
            return None;
        }
        ban.origin = BanOrigin::Restored;
        let b = self.insert(ban);
        // Restoring is not a new ban: keep totals meaning "issued since start".
        if let Some(t) = self.totals.get_mut(&b.jail) {
            t.0 -= 1;
        }
        Some(b)
    }

    /// Seeds the history of an address in a jail (from the store).
    pub fn load_history(&mut self, jail: &JailName, ip: IpAddr, history: History) {
        let h = self.history.entry(ip).or_default();
        match h.iter_mut().find(|(j, _)| j == jail) {
            Some((_, x)) => *x = history,
            None => h.push((jail.clone(), history)),
        }
    }

    fn remove(&mut self, jail: &JailName, ip: IpAddr) -> Option<Arc<Ban>> {
        let b = self.active.remove(&(jail.clone(), ip))?;
        if let Some(n) = self.per_jail.get_mut(jail) {
            *n = n.saturating_sub(1);
        }
        self.totals.entry(jail.clone()).or_default().1 += 1;
        Some(b)
    }

    /// Lifts `ip` in `jail`, or in every jail when `jail` is `None`.
    pub fn unban(
        &mut self,
        jail: Option<&JailName>,
        ip: IpAddr,
    ) -> Result<Vec<Arc<Ban>>, BanError> {
        let ip = addr::normalize(ip);
        let mut jails: Vec<JailName> = match jail {
            Some(j) => vec![j.clone()],
            None => self
                .active
                .keys()
                .filter(|(_, i)| *i == ip)
                .map(|(j, _)| j.clone())
                .collect(),
        };
        jails.sort();
        let out: Vec<Arc<Ban>> = jails.iter().filter_map(|j| self.remove(j, ip)).collect();
        if out.is_empty() {
            return Err(BanError::NotBanned(ip));
        }
        Ok(out)
    }

    /// Lifts every ban (of one jail, or all), by jail and then address: the
    /// unbans (and what reports them) come out in the same order every time.
    pub fn unban_all(&mut self, jail: Option<&JailName>) -> Vec<Arc<Ban>> {
        let mut keys: Vec<(JailName, IpAddr)> = self
            .active
            .keys()
            .filter(|(j, _)| jail.is_none_or(|x| x == j))
            .cloned()
            .collect();
        keys.sort();
        keys.into_iter()
            .filter_map(|(j, ip)| self.remove(&j, ip))
            .collect()
    }

    /// Removes and returns the bans that have expired by `now`.
    pub fn expire(&mut self, now: SystemTime) -> Vec<Arc<Ban>> {
        let mut out = Vec::new();
        while let Some(Reverse((t, _, _))) = self.expiry.peek() {
            if *t > now {
                break;
            }
            let Some(Reverse((t, jail, ip))) = self.expiry.pop() else {
                break;
            };
            let current = self
                .active
                .get(&(jail.clone(), ip))
                .is_some_and(|b| b.expires == Some(t));
            if current {
                if let Some(b) = self.remove(&jail, ip) {
                    out.push(b);
                }
            }
        }
        out
    }

    /// When the next ban expires.
    pub fn next_expiry(&mut self) -> Option<SystemTime> {
        // Drop stale heads so the timer does not wake for lifted bans.
        while let Some(Reverse((t, jail, ip))) = self.expiry.peek() {
            let live = self
                .active
                .get(&(jail.clone(), *ip))
                .is_some_and(|b| b.expires == Some(*t));
            if live {
                return Some(*t);
            }
            self.expiry.pop();
        }
        None
    }

    /// The active ban of `ip` in `jail`.
    pub fn get(&self, jail: &JailName, ip: IpAddr) -> Option<&Arc<Ban>> {
        self.active.get(&(jail.clone(), ip))
    }

    /// Every active ban, in (jail, address) order.
    pub fn active(&self) -> Vec<Arc<Ban>> {
        let mut v: Vec<Arc<Ban>> = self.active.values().cloned().collect();
        v.sort_by(|a, b| a.jail.cmp(&b.jail).then(a.ip.cmp(&b.ip)));
        v
    }

    /// Active bans of one jail.
    pub fn active_in(&self, jail: &JailName) -> Vec<Arc<Ban>> {
        let mut v: Vec<Arc<Ban>> = self
            .active
            .values()
            .filter(|b| &b.jail == jail)
            .cloned()
            .collect();
        v.sort_by_key(|b| b.ip);
        v
    }

    /// Bans in force in a jail.
    pub fn count_in(&self, jail: &JailName) -> usize {
        self.per_jail.get(jail).copied().unwrap_or(0)
    }

    /// (bans issued, bans lifted) since start in a jail.
    pub fn totals(&self, jail: &JailName) -> (u64, u64) {
        self.totals.get(jail).copied().unwrap_or((0, 0))
    }

    /// Number of bans in force.
    pub fn len(&self) -> usize {
        self.active.len()
    }

    /// Whether no ban is in force.
    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    /// The history of an address (all jails).
    pub fn history_of(&self, ip: IpAddr) -> Vec<(JailName, History)> {
        self.history.get(&ip).cloned().unwrap_or_default()
    }

    /// Forgets history entries whose last ban is older than `cutoff`, except
    /// for addresses banned right now (a purge never touches a ban in force).
    pub fn purge_history(&mut self, cutoff: SystemTime) {
        let active = &self.active;
        self.history.retain(|ip, v| {
            v.retain(|(j, h)| {
                active.contains_key(&(j.clone(), *ip)) || h.last.is_none_or(|l| l >= cutoff)
            });
            !v.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn t(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    fn req<'a>(jail: &'a JailName, policy: &'a BanTimePolicy, ip: &str) -> BanRequest<'a> {
        BanRequest {
            jail,
            policy,
            ip: ip.parse().unwrap(),
            failures: 3,
            ignored: false,
            origin: BanOrigin::Stream,
            random: 0.0,
        }
    }

    #[test]
    fn ban_expire_and_unban() {
        let j = JailName::new("sshd").unwrap();
        let p = BanTimePolicy::default();
        let mut m = BanManager::new();
        let b = m.ban(req(&j, &p, "192.0.2.1"), t(1000)).unwrap();
        assert_eq!(b.expires, Some(t(1600)));
        assert!(matches!(
            m.ban(req(&j, &p, "192.0.2.1"), t(1001)),
            Err(BanError::AlreadyBanned { .. })
        ));
        m.ban(req(&j, &p, "192.0.2.2"), t(1100)).unwrap();
        assert_eq!(m.next_expiry(), Some(t(1600)));
        assert!(m.expire(t(1599)).is_empty());
        let gone = m.expire(t(1600));
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].ip.to_string(), "192.0.2.1");
        assert_eq!(
            m.unban(None, "192.0.2.2".parse().unwrap()).unwrap().len(),
            1
        );
        assert!(m.is_empty());
        assert_eq!(m.next_expiry(), None);
        assert_eq!(m.totals(&j), (2, 2));
    }

    #[test]
    fn unbanning_everything_goes_by_jail_then_address() {
        let p = BanTimePolicy::default();
        let mut m = BanManager::new();
        let names = ["sshd", "named", "ufw"].map(|n| JailName::new(n).unwrap());
        for ip in ["192.0.2.9", "2001:db8::1", "192.0.2.10", "198.51.100.1"] {
            for j in &names {
                m.ban(req(j, &p, ip), t(1000)).unwrap();
            }
        }
        let one: Vec<String> = m
            .unban(None, "192.0.2.9".parse().unwrap())
            .unwrap()
            .iter()
            .map(|b| b.jail.to_string())
            .collect();
        assert_eq!(one, ["named", "sshd", "ufw"]);
        let all: Vec<String> = m
            .unban_all(None)
            .iter()
            .map(|b| format!("{} {}", b.jail, b.ip))
            .collect();
        assert_eq!(
            all,
            [
                "named 192.0.2.10",
                "named 198.51.100.1",
                "named 2001:db8::1",
                "sshd 192.0.2.10",
                "sshd 198.51.100.1",
                "sshd 2001:db8::1",
                "ufw 192.0.2.10",
                "ufw 198.51.100.1",
                "ufw 2001:db8::1",
            ]
        );
        assert!(m.is_empty());
    }

    #[test]
    fn never_bans_loopback_or_ignored() {
        let j = JailName::new("sshd").unwrap();
        let p = BanTimePolicy::default();
        let mut m = BanManager::new();
        assert!(matches!(
            m.ban(req(&j, &p, "127.0.0.1"), t(0)),
            Err(BanError::Ignored(_))
        ));
        assert!(matches!(
            m.ban(req(&j, &p, "::1"), t(0)),
            Err(BanError::Ignored(_))
        ));
        let mut r = req(&j, &p, "192.0.2.1");
        r.ignored = true;
        assert!(m.ban(r, t(0)).is_err());
    }

    #[test]
    fn increment_doubles_and_overall_counts_other_jails() {
        let a = JailName::new("a").unwrap();
        let b = JailName::new("b").unwrap();
        let p = BanTimePolicy {
            increment: true,
            overalljails: true,
            ..Default::default()
        };
        let mut m = BanManager::new();
        let first = m.ban(req(&a, &p, "192.0.2.1"), t(0)).unwrap();
        assert_eq!(first.bantime, TimeSpec::Finite(Duration::from_secs(600)));
        m.expire(t(600));
        let second = m.ban(req(&b, &p, "192.0.2.1"), t(700)).unwrap();
        assert_eq!(second.bantime, TimeSpec::Finite(Duration::from_secs(1200)));
        assert_eq!(second.ban_count, 1);
    }

    #[test]
    fn restore_skips_expired_and_purge_keeps_active() {
        let j = JailName::new("sshd").unwrap();
        let mut m = BanManager::new();
        let ban = Ban {
            jail: j.clone(),
            ip: "192.0.2.9".parse().unwrap(),
            start: t(0),
            bantime: TimeSpec::Finite(Duration::from_secs(10)),
            expires: Some(t(10)),
            failures: 1,
            ban_count: 1,
            origin: BanOrigin::Stream,
        };
        assert!(m.restore(ban.clone(), t(11)).is_none());
        assert!(m.restore(ban.clone(), t(5)).is_some());
        m.load_history(
            &j,
            ban.ip,
            History {
                count: 3,
                last: Some(t(0)),
            },
        );
        m.purge_history(t(100));
        assert_eq!(m.previous_bans(&j, ban.ip, false), 3);
    }
}
