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

use lru::LruCache;

/// Milliseconds since the epoch: compact and totally ordered.
fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Failure counts per address for one jail.
#[derive(Debug)]
pub struct WindowCounter {
    // Unbounded to the lru crate, capped by `capped_entry`.
    entries: LruCache<IpAddr, VecDeque<u64>>,
    cap: usize,
    evictions: u64,
}

impl WindowCounter {
    /// A counter tracking at most `cap` addresses; it grows as they come.
    pub fn new(cap: usize) -> Self {
        WindowCounter {
            entries: LruCache::unbounded(),
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
        // Sized once for the stamps it will hold (growing 4 → 8 → 16 cost
        // reallocations on busy jails); small windows stay small.
        let new = || VecDeque::with_capacity(keep.min(16));
        let (times, evicted) = super::capped_entry(&mut self.entries, self.cap, key, new);
        self.evictions += u64::from(evicted);
        // Expired entries go first; a time slightly in the past (reordered
        // lines in replay) still counts if it is inside the window.
        while times.front().is_some_and(|t| *t <= horizon) {
            times.pop_front();
        }
        for _ in 0..weight.max(1) {
            if times.len() == keep {
                times.pop_front();
            }
            times.push_back(now_ms);
        }
        times.len() as u32
    }

    /// Forgets an address (after it was banned).
    pub fn reset(&mut self, key: &IpAddr) {
        self.entries.pop(key);
    }

    /// Current count for an address within `findtime` of `now`.
    pub fn count(&self, key: &IpAddr, now: SystemTime, findtime: Duration) -> u32 {
        let horizon = millis(now).saturating_sub(findtime.as_millis() as u64);
        self.entries
            .peek(key)
            .map_or(0, |t| t.iter().filter(|x| **x > horizon).count() as u32)
    }

    /// Addresses with at least one failure inside the window at `now`,
    /// with their counts, most failures first.
    pub fn top(&self, now: SystemTime, findtime: Duration, n: usize) -> Vec<(IpAddr, u32)> {
        let horizon = millis(now).saturating_sub(findtime.as_millis() as u64);
        let mut v: Vec<(IpAddr, u32)> = self
            .entries
            .iter()
            .map(|(k, t)| (*k, t.iter().filter(|x| **x > horizon).count() as u32))
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
        let stale: Vec<IpAddr> = self
            .entries
            .iter()
            .filter(|(_, t)| t.back().is_none_or(|x| *x <= horizon))
            .map(|(k, _)| *k)
            .collect();
        for k in stale {
            self.entries.pop(&k);
        }
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
