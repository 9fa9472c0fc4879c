//! A hash table held to a cap by evicting entries not used for longest:
//! the window counter's, session and recent-line tables.
//!
//! A linked LRU list (the `lru` crate) keeps each entry in its own node and
//! relinks neighbours on every touch: several cache misses per failure
//! counted, which profiles of `replay` showed. Here entries live in one
//! dense vector behind a table of indices (`indexmap`; entries inline in a
//! hash table would cost twice the memory at a million addresses, since
//! such a table is up to half empty after it grows).
//!
//! Eviction is the CLOCK approximation of LRU: a hand walks the vector; an
//! entry touched since the hand last passed gets a second chance (its mark
//! is cleared), one that was not is evicted, and so is one its owner calls
//! dead (a session silent past its lifetime, a window with no failure left:
//! both read the same as no entry), without counting it. New entries join
//! behind the hand, so each lives until the hand comes round (but once per
//! round, when the hand reaches the end of the vector first). Every
//! insertion at the cap costs O(1) on average and never more than one walk
//! of the marks: no pause to sort or rebuild the table under a flood of new
//! addresses. Memory stays flat: the table never grows past the cap.

use std::hash::Hash;

use indexmap::map::Entry;
use indexmap::{Equivalent, IndexMap};

#[derive(Debug)]
struct Slot<V> {
    /// Touched since the hand last passed.
    marked: bool,
    value: V,
}

/// A hash table of at most `cap` entries (the cap is given per insertion,
/// so a reload can change it).
#[derive(Debug)]
pub struct CappedMap<K, V> {
    // foldhash, seeded per table: keys are addresses and keyed session
    // hashes, and a per-process seed keeps crafted collisions out.
    map: IndexMap<K, Slot<V>, foldhash::fast::RandomState>,
    /// The CLOCK hand: the next index to look at.
    hand: usize,
}

impl<K, V> Default for CappedMap<K, V> {
    fn default() -> Self {
        CappedMap {
            map: IndexMap::default(),
            hand: 0,
        }
    }
}

impl<K: Hash + Eq, V> CappedMap<K, V> {
    /// An empty table; it grows as keys come.
    pub fn new() -> Self {
        Self::default()
    }

    /// The entry of `key`, created by `new` if absent, marked as touched.
    /// A new key at `cap` entries first makes room (see the module doc);
    /// the count says how many live entries went (dead ones are not
    /// counted).
    pub fn entry(
        &mut self,
        cap: usize,
        key: K,
        new: impl FnOnce() -> V,
        dead: impl Fn(&V) -> bool,
    ) -> (&mut V, usize) {
        let cap = cap.max(1);
        let mut evicted = 0;
        if self.map.len() >= cap && !self.map.contains_key(&key) {
            while self.map.len() >= cap {
                evicted += self.evict_one(&dead);
            }
        }
        let slot = match self.map.entry(key) {
            Entry::Occupied(o) => {
                let slot = o.into_mut();
                slot.marked = true;
                slot
            }
            Entry::Vacant(v) => v.insert(Slot {
                marked: false,
                value: new(),
            }),
        };
        (&mut slot.value, evicted)
    }

    /// Moves the hand until it evicts one entry; returns 1 if it was live.
    fn evict_one(&mut self, dead: &impl Fn(&V) -> bool) -> usize {
        // Each pass over a marked entry clears it, so this ends within one
        // walk of the table.
        loop {
            if self.hand >= self.map.len() {
                self.hand = 0;
            }
            let Some((_, slot)) = self.map.get_index_mut(self.hand) else {
                return 0; // empty: nothing to evict
            };
            let is_dead = dead(&slot.value);
            if slot.marked && !is_dead {
                slot.marked = false;
                self.hand += 1;
                continue;
            }
            // The last entry (usually the newest) takes this place; the
            // hand steps past it, so it waits a whole round. (Only when the
            // hand stands on the last entry itself does a new entry go
            // first: once per round.)
            self.map.swap_remove_index(self.hand);
            self.hand += 1;
            return usize::from(!is_dead);
        }
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

    const LIVE: fn(&u32) -> bool = |_| false;

    #[test]
    fn an_entry_touched_again_outlives_one_that_was_not() {
        let mut m = CappedMap::new();
        assert_eq!(m.entry(2, "a", || 1, |_| false).1, 0);
        assert_eq!(m.entry(2, "b", || 2, |_| false).1, 0);
        *m.entry(2, "a", || 0, |_| false).0 += 10; // touches a
        assert_eq!(m.entry(2, "c", || 3, |_| false).1, 1);
        assert_eq!(m.len(), 2);
        assert!(!m.contains("b"), "b was not touched again");
        assert_eq!(m.peek("a"), Some(&11));
        // Touching an existing key at the cap evicts nothing.
        assert_eq!(m.entry(2, "c", || 0, |_| false).1, 0);
    }

    #[test]
    fn a_flood_stays_at_the_cap_and_keeps_the_recent_and_the_hot() {
        let mut m = CappedMap::new();
        let cap = 1000;
        let (mut evicted, mut new_lost) = (0, 0);
        for i in 0..100_000u32 {
            evicted += m.entry(cap, i, || i, LIVE).1;
            assert!(m.len() <= cap);
            // A new entry outlives the next insertion but once per round.
            if i > 0 && !m.contains(&(i - 1)) {
                new_lost += 1;
            }
            // One old key stays hot all along.
            m.entry(cap, u32::MAX, || 0, LIVE);
        }
        assert_eq!(evicted + m.len(), 100_001);
        assert!(new_lost <= 100_000 / cap + 1, "{new_lost}");
        assert!(m.contains(&u32::MAX));
        assert!(m.contains(&99_998) && m.contains(&99_999));
        assert!(!m.contains(&0));
        // The allocation does not grow past what the cap needed.
        assert!(m.map.capacity() < 4 * cap, "{}", m.map.capacity());
    }

    #[test]
    fn dead_entries_go_uncounted() {
        let mut m = CappedMap::new();
        for i in 0..64u32 {
            m.entry(64, i, || i, LIVE);
        }
        // The hand meets 0 first: dead, so it goes without being counted.
        assert_eq!(m.entry(64, 100, || 100, |v| *v < 32).1, 0);
        assert_eq!(m.len(), 64);
        assert!(!m.contains(&0) && m.contains(&100));
        // Live and unmarked: counted.
        assert_eq!(m.entry(64, 101, || 101, LIVE).1, 1);
        assert_eq!(m.len(), 64);
    }

    #[test]
    fn a_lowered_cap_evicts_down_to_it() {
        let mut m = CappedMap::new();
        for i in 0..100u32 {
            m.entry(100, i, || i, LIVE);
        }
        assert_eq!(m.entry(10, 1000, || 0, LIVE).1, 91);
        assert_eq!(m.len(), 10);
        assert!(m.contains(&1000));
        let kept = *m.iter().find(|(k, _)| **k != 1000).unwrap().0;
        m.retain(|k, _| *k != kept);
        assert!(!m.contains(&kept));
        assert_eq!(m.remove(&1000), Some(0));
        assert_eq!(m.iter().count(), 8);
    }
}
