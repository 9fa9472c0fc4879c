//! In-stream multi-line correlation. Some daemons name the client address
//! on one line and report the failure on another line of the same process
//! ("Connection from A" ... "Disconnecting: Too many authentication
//! failures"). Instead of buffering raw lines as fail2ban's `maxlines`
//! does, a jail remembers per (host, program, pid) the address last named,
//! the failures still waiting for one, and whether more than one user name
//! was tried (with the helper lines that did not count yet).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lru::LruCache;

use crate::syslog::Event;

/// Sessions a jail remembers at most.
pub const SESSION_CAP: usize = 16_384;
/// A session not heard from for this long is forgotten.
pub const SESSION_TTL: Duration = Duration::from_secs(600);
/// Failures that may wait for an address in one session.
const MAX_PENDING: u32 = 64;

#[derive(Debug, Clone, Copy)]
struct Session {
    ip: Option<IpAddr>,
    pending: u32,
    last_ms: u64,
    /// Hash of the first user name seen.
    user: Option<u64>,
    /// A second, different user name was seen.
    several_users: bool,
    /// Helper lines with a user name that have not counted yet.
    quiet: u32,
}

impl Session {
    fn new(now_ms: u64) -> Session {
        Session {
            ip: None,
            pending: 0,
            last_ms: now_ms,
            user: None,
            several_users: false,
            quiet: 0,
        }
    }
}

/// The session table of one jail.
#[derive(Debug)]
pub struct Sessions {
    map: LruCache<u64, Session>,
    /// Keyed hashing, so a sender cannot craft colliding session keys.
    hasher: RandomState,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            // Capped in `touch` (see `capped_entry`).
            map: LruCache::unbounded(),
            hasher: RandomState::new(),
        }
    }
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Sessions {
    /// The session key of an event, or `None` when the line has no pid (then
    /// nothing can be correlated safely).
    pub fn key(&self, ev: &Event<'_>) -> Option<u64> {
        let pid = ev.pid?;
        Some(self.hasher.hash_one((ev.host, ev.program, pid)))
    }

    /// The live session of `key` at `now` (a new one if it was unknown or
    /// silent for longer than [`SESSION_TTL`]).
    fn touch(&mut self, key: u64, now: SystemTime) -> &mut Session {
        let now_ms = ms(now);
        let (s, _) = super::capped_entry(&mut self.map, SESSION_CAP, key, || Session::new(now_ms));
        if now_ms.saturating_sub(s.last_ms) > SESSION_TTL.as_millis() as u64 {
            *s = Session::new(now_ms);
        }
        s.last_ms = now_ms;
        s
    }

    /// Records that the session named `ip`; returns how many failures were
    /// waiting for it.
    pub fn learn(&mut self, key: u64, ip: IpAddr, now: SystemTime) -> u32 {
        let s = self.touch(key, now);
        s.ip = Some(ip);
        std::mem::take(&mut s.pending)
    }

    /// A host-less failure of the session: returns the address if known,
    /// otherwise keeps the failure pending.
    pub fn attribute(&mut self, key: u64, now: SystemTime) -> Option<IpAddr> {
        let s = self.touch(key, now);
        match s.ip {
            Some(ip) => Some(ip),
            None => {
                s.pending = (s.pending + 1).min(MAX_PENDING);
                None
            }
        }
    }

    /// Records a user name the session tried; returns whether it has now
    /// tried more than one.
    pub fn note_user(&mut self, key: u64, user: &str, now: SystemTime) -> bool {
        let h = self.hasher.hash_one(user);
        let s = self.touch(key, now);
        match s.user {
            None => s.user = Some(h),
            Some(first) if first != h => s.several_users = true,
            Some(_) => {}
        }
        s.several_users
    }

    /// Whether the session has tried more than one user name.
    pub fn several_users(&mut self, key: u64, now: SystemTime) -> bool {
        self.touch(key, now).several_users
    }

    /// Keeps a helper line with a user name for later counting.
    pub fn add_quiet(&mut self, key: u64, now: SystemTime) {
        let s = self.touch(key, now);
        s.quiet = (s.quiet + 1).min(MAX_PENDING);
    }

    /// Takes the helper lines kept for counting.
    pub fn take_quiet(&mut self, key: u64, now: SystemTime) -> u32 {
        std::mem::take(&mut self.touch(key, now).quiet)
    }

    /// Forgets a session (a successful login ends what it was waiting for).
    pub fn forget(&mut self, key: u64) {
        self.map.pop(&key);
    }

    /// Sessions remembered.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no session is remembered.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_failures_wait_for_an_address() {
        let mut s = Sessions::default();
        let now = UNIX_EPOCH + Duration::from_secs(100);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(s.attribute(7, now), None);
        assert_eq!(s.attribute(7, now), None);
        assert_eq!(s.learn(7, ip, now), 2);
        assert_eq!(s.attribute(7, now), Some(ip));
        // Long silence: the session is forgotten.
        let later = now + SESSION_TTL + Duration::from_secs(1);
        assert_eq!(s.attribute(7, later), None);
    }

    #[test]
    fn several_user_names_are_noticed_and_forget_clears() {
        let mut s = Sessions::default();
        let now = UNIX_EPOCH + Duration::from_secs(100);
        assert!(!s.note_user(9, "root", now));
        assert!(!s.note_user(9, "root", now));
        s.add_quiet(9, now);
        assert!(s.note_user(9, "admin", now));
        assert_eq!(s.take_quiet(9, now), 1);
        assert_eq!(s.take_quiet(9, now), 0);
        s.forget(9);
        assert!(!s.several_users(9, now));
    }
}
