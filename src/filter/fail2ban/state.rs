//! Per-jail correlation state of fail2ban filters, bounded.
//!
//! - `<F-MLFID>` filters: one entry per multi-line failure id (for sshd,
//!   the `host sshd[pid]: ` prefix, i.e. one connection), merged the way
//!   fail2ban's `Filter._mergeFailure` does: the address named by any line
//!   of the connection, the users tried, a failure still waiting for an
//!   address (`mlfpending`), `<F-NOFAIL>` helper lines, `<F-MLFGAINED>`
//!   (a successful login resets pending failures) and `<F-MLFFORGET>` (the
//!   connection ended). Entries live five minutes from their first line,
//!   as in fail2ban.
//! - multi-line filters: the last `maxlines` lines per (host, program, pid).

use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::num::NonZeroUsize;
use std::time::{Duration, SystemTime};

use lru::LruCache;

use super::{Correlated, LineHit};
use crate::syslog::Event;

/// Connections remembered at most per jail.
pub const MLFID_CAP: usize = 16_384;
/// An entry lives this long after its first line (fail2ban's mlfidCache).
pub const MLFID_TTL: Duration = Duration::from_secs(300);
/// Sessions with a line buffer, at most, per jail.
pub const BUFFER_CAP: usize = 4096;
/// Users remembered per connection.
const MAX_USERS: usize = 16;

#[derive(Debug, Clone)]
struct Entry {
    host: Option<String>,
    users: Vec<String>,
    nofail: bool,
    gained: bool,
    pending: bool,
    expires: SystemTime,
}

/// The state of one jail's fail2ban filter.
#[derive(Debug)]
pub struct State {
    mlfid: LruCache<u64, Entry>,
    buffers: LruCache<u64, VecDeque<String>>,
    /// Keyed hashing: a sender cannot craft colliding ids.
    hasher: RandomState,
}

impl Default for State {
    fn default() -> Self {
        State {
            mlfid: LruCache::new(NonZeroUsize::new(MLFID_CAP).unwrap_or(NonZeroUsize::MIN)),
            buffers: LruCache::new(NonZeroUsize::new(BUFFER_CAP).unwrap_or(NonZeroUsize::MIN)),
            hasher: RandomState::new(),
        }
    }
}

/// What a multi-line search found: the hit, the span of the whole match
/// and the spans of its skipped lines, in the joined buffer.
pub type BufferHit = (LineHit, (usize, usize), Vec<(usize, usize)>);

impl State {
    /// The (host, program, pid) key of an event.
    pub fn session_key(&self, ev: &Event<'_>) -> u64 {
        self.hasher.hash_one((ev.host, ev.program, ev.pid))
    }

    /// The key of lines without a syslog header.
    pub fn raw_key(&self) -> u64 {
        self.hasher.hash_one((None::<&str>, "", None::<&str>))
    }

    /// Connections remembered.
    pub fn len(&self) -> usize {
        self.mlfid.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.mlfid.is_empty() && self.buffers.is_empty()
    }

    /// fail2ban's `_mergeFailure` followed by its choice of the failure id.
    pub fn merge(&mut self, mlfid: &str, hit: LineHit, now: SystemTime) -> Correlated {
        let key = self.hasher.hash_one(mlfid);
        let mut nofail = hit.nofail || hit.gained;
        let (mut f_nofail, mut f_gained) = (nofail, hit.gained);
        let gained_now = hit.gained;
        if self.mlfid.peek(&key).is_some_and(|e| e.expires <= now) {
            self.mlfid.pop(&key);
        }
        let mut users: Vec<String> = Vec::new();
        let merged: Entry = match self.mlfid.get_mut(&key) {
            Some(e) => {
                if let Some(u) = &hit.user {
                    if !e.users.contains(u) && e.users.len() < MAX_USERS {
                        e.users.push(u.clone());
                    }
                }
                users = e.users.clone();
                let had_flag = e.nofail || e.gained;
                e.nofail = false;
                e.gained = false;
                if gained_now {
                    e.pending = false;
                }
                let _ = had_flag;
                if hit.host.is_some() {
                    e.host = hit.host.clone();
                }
                if f_nofail {
                    e.nofail = true;
                }
                if f_gained {
                    e.gained = true;
                }
                let snapshot = e.clone();
                if hit.forget {
                    self.mlfid.pop(&key);
                }
                snapshot
            }
            None => {
                if let Some(u) = &hit.user {
                    users.push(u.clone());
                }
                let e = Entry {
                    host: hit.host.clone(),
                    users: users.clone(),
                    nofail: f_nofail,
                    gained: f_gained,
                    pending: false,
                    expires: now + MLFID_TTL,
                };
                if !hit.forget {
                    self.mlfid.put(key, e.clone());
                }
                e
            }
        };
        // Pending failures or several users: not a helper line any more.
        if merged.pending || users.len() > 1 {
            f_nofail = false;
            f_gained = false;
            if let Some(e) = self.mlfid.get_mut(&key) {
                e.pending = false;
                e.nofail = false;
                e.gained = false;
            }
        }
        nofail &= f_nofail || f_gained;
        if nofail {
            return Correlated::Nothing;
        }
        match merged.host {
            Some(h) => Correlated::Failure {
                regex: hit.regex,
                host: Some(h),
            },
            None => {
                if let Some(e) = self.mlfid.get_mut(&key) {
                    e.pending = true;
                }
                Correlated::Nothing
            }
        }
    }

    /// Adds a line to the session's buffer (keeping `max` lines) and runs
    /// `search` over the joined buffer; on a match the matched lines leave
    /// the buffer (lines a `<SKIPLINES>` skipped stay), as in fail2ban.
    pub fn push_line(
        &mut self,
        key: u64,
        line: String,
        max: usize,
        search: impl Fn(&str) -> Option<BufferHit>,
    ) -> Option<LineHit> {
        let buf = self.buffers.get_or_insert_mut(key, VecDeque::new);
        buf.push_back(line);
        while buf.len() > max {
            buf.pop_front();
        }
        let mut joined = String::new();
        let mut starts = Vec::with_capacity(buf.len());
        for l in buf.iter() {
            starts.push(joined.len());
            joined.push_str(l);
            joined.push('\n');
        }
        let (hit, (ms, me), skipped) = search(&joined)?;
        let line_of = |off: usize| starts.iter().rposition(|s| *s <= off).unwrap_or(0);
        let first = line_of(ms);
        let last = line_of(me.saturating_sub(1).max(ms));
        let mut keep: VecDeque<String> = VecDeque::new();
        for (i, l) in buf.iter().enumerate() {
            let start = starts[i];
            let inside = i >= first && i <= last;
            let was_skipped = skipped
                .iter()
                .any(|(a, b)| start >= *a && start + l.len() < *b);
            if !inside || was_skipped {
                keep.push_back(l.clone());
            }
        }
        *buf = keep;
        Some(hit)
    }
}
