//! The sliding-window failure counter of one jail: exact per address within
//! `findtime`, bounded in memory.
//!
//! Pure: every call takes `now`, so tests and replay drive time themselves.
//! At most `maxretry` timestamps are kept per address (older ones can never
//! matter again), and at most `cap` addresses are tracked; beyond that the
//! address updated longest ago is evicted and counted, so a flood of unique
//! addresses holds memory flat.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::capped::CappedMap;

/// Milliseconds since the epoch: compact and totally ordered.
fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Stamps kept in the table entry itself: a `maxretry` up to this needs no
/// allocation per address (and no second cache miss per failure).
const INLINE: usize = 8;

/// The failure times of one address, oldest first; at most `keep` are kept.
#[derive(Debug)]
enum Stamps {
    Inline { t: [u64; INLINE], len: u8 },
    Heap(VecDeque<u64>),
}

impl Stamps {
    fn new(keep: usize) -> Stamps {
        match keep <= INLINE {
            true => Stamps::Inline {
                t: [0; INLINE],
                len: 0,
            },
            false => Stamps::Heap(VecDeque::with_capacity(keep.min(64))),
        }
    }

    fn len(&self) -> usize {
        match self {
            Stamps::Inline { len, .. } => usize::from(*len),
            Stamps::Heap(q) => q.len(),
        }
    }

    fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        let (inline, heap) = match self {
            Stamps::Inline { t, len } => (&t[..usize::from(*len)], None),
            Stamps::Heap(q) => (&[][..], Some(q)),
        };
        inline
            .iter()
            .copied()
            .chain(heap.into_iter().flat_map(|q| q.iter().copied()))
    }

    fn first(&self) -> Option<u64> {
        self.iter().next()
    }

    fn last(&self) -> Option<u64> {
        match self {
            Stamps::Inline { t, len } => t[..usize::from(*len)].last().copied(),
            Stamps::Heap(q) => q.back().copied(),
        }
    }

    fn pop_front(&mut self) {
        match self {
            Stamps::Inline { t, len } => {
                if *len > 0 {
                    t.copy_within(1..usize::from(*len), 0);
                    *len -= 1;
                }
            }
            Stamps::Heap(q) => {
                q.pop_front();
            }
        }
    }

    /// Appends `at`, dropping the oldest when `keep` are held.
    fn push(&mut self, at: u64, keep: usize) {
        while self.len() >= keep.max(1) {
            self.pop_front();
        }
        match self {
            Stamps::Inline { t, len } if usize::from(*len) < INLINE => {
                t[usize::from(*len)] = at;
                *len += 1;
            }
            Stamps::Inline { .. } => {
                // A reload raised maxretry past what fits inline.
                let mut q: VecDeque<u64> = self.iter().collect();
                q.push_back(at);
                *self = Stamps::Heap(q);
            }
            Stamps::Heap(q) => q.push_back(at),
        }
    }
}

/// Failure counts per address for one jail.
#[derive(Debug)]
pub struct WindowCounter {
    entries: CappedMap<IpAddr, Stamps>,
    cap: usize,
    evictions: u64,
}

impl WindowCounter {
    /// A counter tracking at most `cap` addresses; it grows as they come.
    pub fn new(cap: usize) -> Self {
        WindowCounter {
            entries: CappedMap::new(),
            cap: cap.max(1),
            evictions: 0,
        }
    }

    /// Records `weight` failures of `key` at `now` and returns how many fall
    /// within `findtime` (capped at `maxretry`).
    pub fn record(
        &mut self,
        key: IpAddr,
        now: SystemTime,
        weight: u32,
        maxretry: u32,
        findtime: Duration,
    ) -> u32 {
        let now_ms = millis(now);
        let horizon = now_ms.saturating_sub(findtime.as_millis() as u64);
        let keep = maxretry.max(1) as usize;
        let new = || Stamps::new(keep);
        // An address with no failure left in the window counts as none.
        let dead = |t: &Stamps| t.last().is_none_or(|x| x <= horizon);
        let (times, evicted) = self.entries.entry(self.cap, key, new, dead);
        self.evictions += evicted as u64;
        // Expired entries go first; a time slightly in the past (reordered
        // lines in replay) still counts if it is inside the window.
        while times.first().is_some_and(|t| t <= horizon) {
            times.pop_front();
        }
        for _ in 0..weight.max(1) {
            times.push(now_ms, keep);
        }
        times.len() as u32
    }

    /// Forgets an address (after it was banned).
    pub fn reset(&mut self, key: &IpAddr) {
        self.entries.remove(key);
    }

    /// Current count for an address within `findtime` of `now`.
    pub fn count(&self, key: &IpAddr, now: SystemTime, findtime: Duration) -> u32 {
        let horizon = millis(now).saturating_sub(findtime.as_millis() as u64);
        self.entries
            .peek(key)
            .map_or(0, |t| t.iter().filter(|x| *x > horizon).count() as u32)
    }

    /// Addresses with at least one failure inside the window at `now`,
    /// with their counts, most failures first.
    pub fn top(&self, now: SystemTime, findtime: Duration, n: usize) -> Vec<(IpAddr, u32)> {
        let horizon = millis(now).saturating_sub(findtime.as_millis() as u64);
        let mut v: Vec<(IpAddr, u32)> = self
            .entries
            .iter()
            .map(|(k, t)| (*k, t.iter().filter(|x| *x > horizon).count() as u32))
            .filter(|(_, c)| *c > 0)
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }

    /// Number of addresses currently tracked (fail2ban's "currently failed",
    /// counting entries not yet expired lazily).
    pub fn tracked(&self) -> usize {
        self.entries.len()
    }

    /// Addresses evicted because the cap was reached.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Drops addresses whose newest failure left the window (periodic
    /// housekeeping so "currently failed" stays honest).
    pub fn expire(&mut self, now: SystemTime, findtime: Duration) {
        let horizon = millis(now).saturating_sub(findtime.as_millis() as u64);
        self.entries
            .retain(|_, t| t.last().is_some_and(|x| x > horizon));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }
    const FT: Duration = Duration::from_secs(600);

    #[test]
    fn counts_exactly_within_findtime() {
        let mut w = WindowCounter::new(10);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(w.record(ip, t(1000), 1, 3, FT), 1);
        assert_eq!(w.record(ip, t(1300), 1, 3, FT), 2);
        // 1000 is exactly findtime before 1600: out of the window.
        assert_eq!(w.record(ip, t(1600), 1, 3, FT), 2);
        assert_eq!(w.record(ip, t(1601), 1, 3, FT), 3);
        assert_eq!(w.count(&ip, t(1601), FT), 3);
        w.reset(&ip);
        assert_eq!(w.count(&ip, t(1601), FT), 0);
    }

    #[test]
    fn stamps_past_the_inline_size_move_to_the_heap() {
        let mut w = WindowCounter::new(10);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for i in 0..8 {
            assert_eq!(w.record(ip, t(100 + i), 1, 8, FT), i as u32 + 1);
        }
        assert_eq!(w.record(ip, t(110), 1, 8, FT), 8, "held to maxretry");
        // A reload raised maxretry: the same entry keeps counting up.
        assert_eq!(w.record(ip, t(111), 1, 12, FT), 9);
        assert_eq!(w.record(ip, t(112), 3, 12, FT), 12);
        assert_eq!(w.count(&ip, t(112), FT), 12);
        // And lowered it again.
        assert_eq!(w.record(ip, t(113), 1, 3, FT), 3);
        let mut s = Stamps::new(3);
        for at in [5, 6, 7, 8] {
            s.push(at, 3);
        }
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![6, 7, 8]);
        s.pop_front();
        assert_eq!((s.first(), s.last(), s.len()), (Some(7), Some(8), 2));
    }

    #[test]
    fn weight_counts_several() {
        let mut w = WindowCounter::new(10);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(w.record(ip, t(1), 3, 5, FT), 3);
        assert_eq!(w.record(ip, t(2), 9, 5, FT), 5);
    }

    #[test]
    fn cap_evicts_stalest_and_counts() {
        let mut w = WindowCounter::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let c: IpAddr = "192.0.2.3".parse().unwrap();
        w.record(a, t(1), 1, 5, FT);
        w.record(b, t(2), 1, 5, FT);
        w.record(a, t(3), 1, 5, FT);
        w.record(c, t(4), 1, 5, FT);
        assert_eq!(w.tracked(), 2);
        assert_eq!(w.evictions(), 1);
        assert_eq!(w.count(&b, t(4), FT), 0);
        assert_eq!(w.count(&a, t(4), FT), 2);
    }

    #[test]
    fn expire_and_top() {
        let mut w = WindowCounter::new(10);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        w.record(a, t(1), 1, 5, FT);
        w.record(b, t(700), 1, 5, FT);
        w.record(b, t(701), 1, 5, FT);
        assert_eq!(w.top(t(701), FT, 5), vec![(b, 2)]);
        w.expire(t(701), FT);
        assert_eq!(w.tracked(), 1);
    }
}
