//! Digest scheduling: at most one notification per interval per key
//! (jail and destination), listing everything that happened meanwhile.
//!
//! Pure: every call takes `now`, so the tests drive time themselves. The
//! first ban of a quiet key opens a digest due one interval later; bans
//! arriving before it is due are folded into it. A new digest can only open
//! after the previous one was taken, so two messages of one key are always
//! at least an interval apart, and a flood makes one message per interval,
//! not one per ban. Memory is bounded: beyond `cap` entries a digest only
//! counts what it no longer lists.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A digest being gathered.
#[derive(Debug)]
pub struct Open<E> {
    /// When it is to be sent.
    pub due: Instant,
    /// What it lists, oldest first.
    pub entries: Vec<E>,
    /// Entries folded in beyond the cap: counted, not listed.
    pub unlisted: u64,
}

/// What [`Digests::add`] did with an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Added {
    /// It opened a new digest.
    Opened,
    /// It joined an open digest.
    Folded,
    /// It joined an open digest that is full: counted, not listed.
    Unlisted,
}

/// The open digests.
#[derive(Debug)]
pub struct Digests<K, E> {
    open: HashMap<K, Open<E>>,
    cap: usize,
}

impl<K: Hash + Eq + Clone, E> Digests<K, E> {
    /// No digest open; each lists at most `cap` entries.
    pub fn new(cap: usize) -> Self {
        Digests {
            open: HashMap::new(),
            cap: cap.max(1),
        }
    }

    /// Adds an entry for `key` whose interval is `interval`.
    pub fn add(&mut self, key: K, entry: E, interval: Duration, now: Instant) -> Added {
        if let Some(d) = self.open.get_mut(&key) {
            if d.entries.len() < self.cap {
                d.entries.push(entry);
                return Added::Folded;
            }
            d.unlisted += 1;
            return Added::Unlisted;
        }
        self.open.insert(
            key,
            Open {
                due: now + interval,
                entries: vec![entry],
                unlisted: 0,
            },
        );
        Added::Opened
    }

    /// Entries listed in the open digest of `key`.
    pub fn listed(&self, key: &K) -> usize {
        self.open.get(key).map_or(0, |d| d.entries.len())
    }

    /// When the next digest is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.open.values().map(|d| d.due).min()
    }

    /// Removes and returns the digests due at `now`, oldest first.
    pub fn take_due(&mut self, now: Instant) -> Vec<(K, Open<E>)> {
        let keys: Vec<K> = self
            .open
            .iter()
            .filter(|(_, d)| d.due <= now)
            .map(|(k, _)| k.clone())
            .collect();
        let mut out: Vec<(K, Open<E>)> = keys
            .into_iter()
            .filter_map(|k| self.take(&k).map(|d| (k, d)))
            .collect();
        out.sort_by_key(|(_, d)| d.due);
        out
    }

    /// Removes and returns the digest of `key` now, whether due or not
    /// (the jail stopped, or banstream is shutting down).
    pub fn take(&mut self, key: &K) -> Option<Open<E>> {
        self.open.remove(key)
    }

    /// Removes and returns every open digest, due or not (banstream is
    /// shutting down): oldest first, and by key among those due at once,
    /// so the messages go out in the same order on every run.
    pub fn take_all(&mut self) -> Vec<(K, Open<E>)>
    where
        K: Ord,
    {
        let mut out: Vec<(K, Open<E>)> = self.open.drain().collect();
        out.sort_by(|(ka, a), (kb, b)| a.due.cmp(&b.due).then_with(|| ka.cmp(kb)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn a_flood_makes_one_digest_per_interval() {
        let t0 = Instant::now();
        let mut d: Digests<&str, u32> = Digests::new(10_000);
        assert_eq!(d.add("sshd", 0, MIN, t0), Added::Opened);
        for i in 1..1000 {
            let now = t0 + Duration::from_millis(i * 10);
            assert_eq!(d.add("sshd", i as u32, MIN, now), Added::Folded);
        }
        assert_eq!(d.add("named", 7, MIN, t0), Added::Opened);
        assert!(d.take_due(t0 + Duration::from_secs(59)).is_empty());
        let due = d.take_due(t0 + MIN);
        assert_eq!(due.len(), 2);
        let sshd = due.iter().find(|(k, _)| *k == "sshd").unwrap();
        assert_eq!(sshd.1.entries.len(), 1000);
        assert_eq!(sshd.1.entries[999], 999);
        // The next ban right after opens a digest a full interval later.
        let t1 = t0 + MIN + Duration::from_secs(1);
        d.add("sshd", 1000, MIN, t1);
        assert_eq!(d.next_due(), Some(t1 + MIN));
    }

    #[test]
    fn beyond_the_cap_entries_are_counted_not_listed() {
        let t0 = Instant::now();
        let mut d: Digests<&str, u32> = Digests::new(3);
        for i in 0..5 {
            d.add("a", i, MIN, t0);
        }
        let (_, open) = d.take_due(t0 + MIN).pop().unwrap();
        assert_eq!(open.entries, vec![0, 1, 2]);
        assert_eq!(open.unlisted, 2);
    }

    #[test]
    fn taking_all_goes_by_due_time_then_key() {
        let mut d: Digests<&str, u32> = Digests::new(3);
        let t0 = Instant::now();
        for (k, at) in [
            ("sshd", 2),
            ("named", 1),
            ("pam", 2),
            ("ufw", 0),
            ("dropbear", 2),
        ] {
            d.add(k, 1, MIN, t0 + Duration::from_secs(at));
        }
        let order: Vec<&str> = d.take_all().into_iter().map(|(k, _)| k).collect();
        assert_eq!(order, ["ufw", "named", "dropbear", "pam", "sshd"]);
        assert_eq!(d.next_due(), None);
    }

    #[test]
    fn zero_interval_sends_at_once() {
        let t0 = Instant::now();
        let mut d: Digests<&str, u32> = Digests::new(3);
        d.add("a", 1, Duration::ZERO, t0);
        assert_eq!(d.take_due(t0).len(), 1);
    }
}
