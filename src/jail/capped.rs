//! A hash table held to a cap by evicting the entries touched longest ago:
//! the window counter's, session and recent-line tables.
//!
//! A linked LRU list (the `lru` crate) keeps each entry in its own node and
//! relinks neighbours on every touch: several cache misses per failure
//! counted, which profiles of `replay` showed. Here entries live in one
//! dense vector behind a table of indices (`indexmap`; entries inline in a
//! hash table would cost twice the memory at a million addresses, since
//! such a table is up to half empty after it grows) and carry the tick of
//! their last touch. When a new
//! key arrives at the cap, entries the owner calls dead (a session silent
//! past its lifetime, a window with no failure left in it: both read the
//! same as no entry) go first; if that frees less than a sixteenth of the
//! table, the stalest entries make up the rest, found by selection on the
//! ticks: the same entries an LRU list would have evicted, in one pass
//! instead of one unlink per key. Memory stays flat: the table never grows
//! past the cap.

use std::hash::Hash;

use indexmap::{Equivalent, IndexMap};

/// Entries evicted at once at the cap: this fraction of it (at least one).
const EVICT_DIVISOR: usize = 16;

#[derive(Debug)]
struct Slot<V> {
    touched: u64,
    value: V,
}

/// A hash table of at most `cap` entries (the cap is given per insertion,
/// so a reload can change it).
#[derive(Debug)]
pub struct CappedMap<K, V> {
    // foldhash, seeded per table: keys are addresses and keyed session
    // hashes, and a per-process seed keeps crafted collisions out.
    map: IndexMap<K, Slot<V>, foldhash::fast::RandomState>,
    clock: u64,
}

impl<K, V> Default for CappedMap<K, V> {
    fn default() -> Self {
        CappedMap {
            map: IndexMap::default(),
            clock: 0,
        }
    }
}

impl<K: Hash + Eq, V> CappedMap<K, V> {
    /// An empty table; it grows as keys come.
    pub fn new() -> Self {
        Self::default()
    }

    /// The entry of `key`, created by `new` if absent, marked as touched
    /// now. A new key at `cap` entries first makes room: entries `dead`
    /// accepts go, then the stalest live ones as needed; the count says how
    /// many live ones went.
    pub fn entry(
        &mut self,
        cap: usize,
        key: K,
        new: impl FnOnce() -> V,
        dead: impl Fn(&V) -> bool,
    ) -> (&mut V, usize) {
        self.clock += 1;
        let evicted = match self.map.len() >= cap.max(1) && !self.map.contains_key(&key) {
            true => self.evict(cap.max(1), dead),
            false => 0,
        };
        let slot = self.map.entry(key).or_insert_with(|| Slot {
            touched: 0,
            value: new(),
        });
        slot.touched = self.clock;
        (&mut slot.value, evicted)
    }

    /// Makes room for one more entry under `cap` and a sixteenth of it:
    /// dead entries first, then the stalest; returns how many live ones went.
    fn evict(&mut self, cap: usize, dead: impl Fn(&V) -> bool) -> usize {
        let want = (self.map.len() + 1).saturating_sub(cap) + (cap / EVICT_DIVISOR).max(1) - 1;
        let before = self.map.len();
        self.map.retain(|_, s| !dead(&s.value));
        let n = want
            .saturating_sub(before - self.map.len())
            .min(self.map.len());
        if n == 0 {
            return 0;
        }
        let mut ticks: Vec<u64> = self.map.values().map(|s| s.touched).collect();
        // Ticks are unique (one per touch), so exactly `n` are at or below.
        let (_, last, _) = ticks.select_nth_unstable(n - 1);
        let last = *last;
        self.map.retain(|_, s| s.touched > last);
        n
    }

    /// Whether `key` has an entry.
    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.map.contains_key(key)
    }

    /// The entry of `key`, without touching it.
    pub fn peek<Q>(&self, key: &Q) -> Option<&V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.map.get(key).map(|s| &s.value)
    }

    /// Removes the entry of `key`.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        // The last entry takes the removed one's place: O(1).
        self.map.swap_remove(key).map(|s| s.value)
    }

    /// Keeps only the entries `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &V) -> bool) {
        self.map.retain(|k, s| keep(k, &s.value));
    }

    /// The entries, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter().map(|(k, s)| (k, &s.value))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_caps_evict_exactly_the_stalest() {
        let mut m = CappedMap::new();
        assert_eq!(m.entry(2, "a", || 1, |_| false).1, 0);
        assert_eq!(m.entry(2, "b", || 2, |_| false).1, 0);
        *m.entry(2, "a", || 0, |_| false).0 += 10; // touches a
        assert_eq!(m.entry(2, "c", || 3, |_| false).1, 1);
        assert_eq!(m.len(), 2);
        assert!(!m.contains("b"), "b was touched longest ago");
        assert_eq!(m.peek("a"), Some(&11));
        // Touching an existing key at the cap evicts nothing.
        assert_eq!(m.entry(2, "c", || 0, |_| false).1, 0);
    }

    #[test]
    fn a_flood_stays_at_the_cap_and_keeps_the_recent() {
        let mut m = CappedMap::new();
        let cap = 1000;
        let mut evicted = 0;
        for i in 0..100_000u32 {
            evicted += m.entry(cap, i, || i, |_| false).1;
            assert!(m.len() <= cap);
            // One old key stays hot all along.
            m.entry(cap, u32::MAX, || 0, |_| false);
        }
        assert_eq!(evicted + m.len(), 100_001);
        assert!(m.contains(&u32::MAX));
        assert!(m.contains(&99_999));
        assert!(!m.contains(&0));
        // The allocation does not grow past what the cap needed.
        assert!(m.map.capacity() < 4 * cap, "{}", m.map.capacity());
    }

    #[test]
    fn dead_entries_go_first_and_are_not_counted() {
        let mut m = CappedMap::new();
        for i in 0..64u32 {
            m.entry(64, i, || i, |_| false);
        }
        // Odd values are dead: 32 go, none of them counted, and the
        // stalest live entry (0) stays.
        assert_eq!(m.entry(64, 100, || 100, |v| v % 2 == 1).1, 0);
        assert_eq!(m.len(), 33);
        assert!(m.contains(&0) && !m.contains(&1));
        // Too few dead ones: the stalest live make up the batch of 4.
        for i in 200..231u32 {
            m.entry(64, i, || i, |_| false);
        }
        assert_eq!(m.len(), 64);
        assert_eq!(m.entry(64, 300, || 300, |v| *v == 2).1, 3);
        assert!(!m.contains(&2) && !m.contains(&0) && !m.contains(&4) && !m.contains(&6));
        assert!(m.contains(&8) && m.contains(&300));
    }

    #[test]
    fn a_lowered_cap_evicts_down_to_it() {
        let mut m = CappedMap::new();
        for i in 0..100u32 {
            m.entry(100, i, || i, |_| false);
        }
        assert_eq!(m.entry(10, 1000, || 0, |_| false).1, 91);
        assert_eq!(m.len(), 10);
        assert!(m.contains(&99) && m.contains(&1000) && !m.contains(&90));
        m.retain(|k, _| *k != 99);
        assert!(!m.contains(&99));
        assert_eq!(m.remove(&1000), Some(0));
        assert_eq!(m.iter().count(), 8);
    }
}
