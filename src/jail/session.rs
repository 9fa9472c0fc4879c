//! In-stream multi-line correlation. Some daemons name the client address
//! on one line and report the failure on another line of the same process
//! ("Connection from A" ... "Disconnecting: Too many authentication
//! failures"). Instead of buffering raw lines as fail2ban's `maxlines`
//! does, a jail remembers per (host, program, pid) the address last named
//! and the failures still waiting for one.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::num::NonZeroUsize;
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
            map: LruCache::new(NonZeroUsize::new(SESSION_CAP).unwrap_or(NonZeroUsize::MIN)),
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

    /// Records that the session named `ip`; returns how many failures were
    /// waiting for it.
    pub fn learn(&mut self, key: u64, ip: IpAddr, now: SystemTime) -> u32 {
        let now_ms = ms(now);
        let s = self.map.get_or_insert_mut(key, || Session {
            ip: None,
            pending: 0,
            last_ms: now_ms,
        });
        let expired = now_ms.saturating_sub(s.last_ms) > SESSION_TTL.as_millis() as u64;
        let pending = if expired { 0 } else { s.pending };
        *s = Session {
            ip: Some(ip),
            pending: 0,
            last_ms: now_ms,
        };
        pending
    }

    /// A host-less failure of the session: returns the address if known,
    /// otherwise keeps the failure pending.
    pub fn attribute(&mut self, key: u64, now: SystemTime) -> Option<IpAddr> {
        let now_ms = ms(now);
        let s = self.map.get_or_insert_mut(key, || Session {
            ip: None,
            pending: 0,
            last_ms: now_ms,
        });
        if now_ms.saturating_sub(s.last_ms) > SESSION_TTL.as_millis() as u64 {
            *s = Session {
                ip: None,
                pending: 0,
                last_ms: now_ms,
            };
        }
        s.last_ms = now_ms;
        match s.ip {
            Some(ip) => Some(ip),
            None => {
                s.pending = (s.pending + 1).min(MAX_PENDING);
                None
            }
        }
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
}
