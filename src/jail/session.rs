//! In-stream multi-line correlation. Some daemons name the client address
//! on one line and report the failure on another line of the same process
//! ("Connection from A" ... "Disconnecting: Too many authentication
//! failures"). Instead of buffering raw lines as fail2ban's `maxlines`
//! does, a jail remembers per (host, program, pid) the address last named,
//! the failures still waiting for one, and whether more than one user name
//! was tried (with the helper lines that did not count yet).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::capped::CappedMap;

use crate::filter::HitKind;
use crate::syslog::Event;

/// Sessions a jail remembers at most.
pub const SESSION_CAP: usize = 16_384;
/// A session not heard from for this long is forgotten. sshd's
/// LoginGraceTime (120 s by default) bounds the unauthenticated part of a
/// connection, where failures happen: a pid silent for longer is more
/// likely a new connection that reused it than the same client, and an
/// address-less failure must not be charged to the old one's address.
pub const SESSION_TTL: Duration = Duration::from_secs(180);
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
    fn learn(&mut self, ip: IpAddr) -> u32 {
        self.ip = Some(ip);
        std::mem::take(&mut self.pending)
    }

    fn attribute(&mut self) -> Option<IpAddr> {
        if self.ip.is_none() {
            self.pending = (self.pending + 1).min(MAX_PENDING);
        }
        self.ip
    }

    fn note_user(&mut self, hash: u64) -> bool {
        match self.user {
            None => self.user = Some(hash),
            Some(first) if first != hash => self.several_users = true,
            Some(_) => {}
        }
        self.several_users
    }

    fn add_quiet(&mut self) {
        self.quiet = (self.quiet + 1).min(MAX_PENDING);
    }

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
    map: CappedMap<u64, Session>,
    /// Keyed hashing, so a sender cannot craft colliding session keys.
    hasher: RandomState,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            // Capped in `touch`.
            map: CappedMap::new(),
            hasher: RandomState::new(),
        }
    }
}

/// Header bytes a session key is hashed from in one write.
const KEY_BYTES: usize = 192;

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
        // The fields in one write: SipHash's cost per call was most of the
        // work for fields this short. 0xff never occurs in UTF-8, so the
        // joined bytes name one (host, program, pid) only.
        let host = ev.host.map(str::as_bytes);
        let parts = [
            host.unwrap_or_default(),
            ev.program.as_bytes(),
            pid.as_bytes(),
        ];
        let mut buf = [0u8; KEY_BYTES];
        let mut n = 0;
        for (i, p) in parts.iter().enumerate() {
            let Some(slot) = buf.get_mut(n..n + p.len() + 1) else {
                // Longer than any real header: hashed field by field.
                return Some(self.hasher.hash_one((ev.host, ev.program, pid)));
            };
            slot[..p.len()].copy_from_slice(p);
            slot[p.len()] = if i == 0 && host.is_none() { 0xfe } else { 0xff };
            n += p.len() + 1;
        }
        let mut h = self.hasher.build_hasher();
        h.write(&buf[..n]);
        Some(h.finish())
    }

    /// Whether a session of `key` is remembered (live or not).
    pub fn knows(&self, key: u64) -> bool {
        self.map.contains(&key)
    }

    /// The live session of `key` at `now` (a new one if it was unknown or
    /// silent for longer than [`SESSION_TTL`]).
    fn touch(&mut self, key: u64, now: SystemTime) -> &mut Session {
        let now_ms = ms(now);
        let ttl = SESSION_TTL.as_millis() as u64;
        // A session silent past its lifetime reads as a new one (so the
        // table may also evict it at its cap without counting it).
        let stale = move |s: &Session| now_ms.saturating_sub(s.last_ms) > ttl;
        let (s, _) = self
            .map
            .entry(SESSION_CAP, key, || Session::new(now_ms), stale);
        if stale(s) {
            *s = Session::new(now_ms);
        }
        s.last_ms = now_ms;
        s
    }

    // The steps one at a time, for the tests: `hit` runs them on one
    // lookup.

    /// Records that the session named `ip`; returns how many failures were
    /// waiting for it.
    #[cfg(test)]
    pub fn learn(&mut self, key: u64, ip: IpAddr, now: SystemTime) -> u32 {
        self.touch(key, now).learn(ip)
    }

    /// A host-less failure of the session: returns the address if known,
    /// otherwise keeps the failure pending.
    #[cfg(test)]
    pub fn attribute(&mut self, key: u64, now: SystemTime) -> Option<IpAddr> {
        self.touch(key, now).attribute()
    }

    /// Records a user name the session tried; returns whether it has now
    /// tried more than one.
    #[cfg(test)]
    pub fn note_user(&mut self, key: u64, user: &str, now: SystemTime) -> bool {
        let h = self.hasher.hash_one(user);
        self.touch(key, now).note_user(h)
    }

    /// Whether the session has tried more than one user name.
    #[cfg(test)]
    pub fn several_users(&mut self, key: u64, now: SystemTime) -> bool {
        self.touch(key, now).several_users
    }

    /// Keeps a helper line with a user name for later counting.
    #[cfg(test)]
    pub fn add_quiet(&mut self, key: u64, now: SystemTime) {
        self.touch(key, now).add_quiet();
    }

    /// Takes the helper lines kept for counting.
    #[cfg(test)]
    pub fn take_quiet(&mut self, key: u64, now: SystemTime) -> u32 {
        std::mem::take(&mut self.touch(key, now).quiet)
    }

    /// What one matched line does to its session, with a single lookup:
    /// the steps above in the order [`super::attribute`] documents. `ip` is
    /// the address the line named; `hostless` says it captured no host, so a
    /// failure takes the session's address. Returns the failures to count
    /// and, for a host-less line, the session's address.
    pub fn hit(
        &mut self,
        key: u64,
        ip: Option<IpAddr>,
        user: Option<&str>,
        kind: HitKind,
        hostless: bool,
        now: SystemTime,
    ) -> (u32, Option<IpAddr>) {
        let user_hash = user.map(|u| self.hasher.hash_one(u));
        let s = self.touch(key, now);
        let mut count = u32::from(kind == HitKind::Failure);
        if let Some(ip) = ip {
            let resolved = s.learn(ip);
            // A login drops what was pending (fail2ban's MLFGAINED).
            if kind != HitKind::Success {
                count += resolved;
            }
        }
        let several = match user_hash {
            Some(h) => s.note_user(h),
            None => s.several_users,
        };
        match kind {
            HitKind::Failure => {}
            HitKind::NoFail | HitKind::Success if several => {
                count += std::mem::take(&mut s.quiet) + 1;
            }
            HitKind::NoFail => {
                if user.is_some() {
                    s.add_quiet();
                }
            }
            HitKind::Success => {}
        }
        let found = match (hostless, count > 0) {
            (true, true) => s.attribute(),
            _ => None,
        };
        if kind == HitKind::Success {
            // A login ends what the connection was waiting for.
            self.forget(key);
        }
        (count, found)
    }

    /// Forgets a session (a successful login ends what it was waiting for).
    pub fn forget(&mut self, key: u64) {
        self.map.remove(&key);
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
    fn session_keys_tell_every_header_apart() {
        let s = Sessions::default();
        let key = |host: Option<&'static str>, program: &'static str, pid: Option<&'static str>| {
            s.key(&Event {
                received: UNIX_EPOCH,
                peer: crate::syslog::Peer::File,
                format: crate::syslog::Format::Rfc3164,
                host,
                program,
                pid,
                facility: None,
                severity: None,
                timestamp: None,
                msg: "",
            })
        };
        let long = Box::leak("h".repeat(300).into_boxed_str());
        let keys = [
            key(None, "sshd", Some("7")),
            key(Some(""), "sshd", Some("7")),
            key(Some("gw"), "sshd", Some("7")),
            key(Some("gw"), "sshd", Some("77")),
            key(Some("gws"), "shd", Some("7")),
            key(Some("gw"), "sshd-session", Some("7")),
            key(Some(long), "sshd", Some("7")),
        ];
        for (i, a) in keys.iter().enumerate() {
            assert!(a.is_some());
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // Stable per table, the long header's included; no pid, no session.
        assert_eq!(key(Some("gw"), "sshd", Some("7")), keys[2]);
        assert_eq!(key(Some(long), "sshd", Some("7")), keys[6]);
        assert_eq!(key(Some("gw"), "sshd", None), None);
    }

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
