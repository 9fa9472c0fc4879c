//! Ban time policy: fail2ban's `bantime.*` options with fail2ban's meaning.
//!
//! For an address with `n` previous bans (in this jail, or in every jail
//! with `bantime.overalljails`):
//!
//! ```text
//! n = 0:  bantime
//! n > 0:  multipliers given:  bantime × factor × multipliers[min(n, len-1)]
//!         otherwise:          max(bantime, bantime × 2^min(n, 20) × factor)
//! then    min(·, max(bantime.maxtime, bantime))  and  + random(0..bantime.rndtime)
//! ```
//!
//! and each new failure of such an address counts `min(2^n / 2 + 1, maxretry)`
//! times (1, 2, 3, 5, 9, ...), so a known offender is banned sooner.

use std::time::Duration;

use crate::config::TimeSpec;

/// The resolved `bantime.*` options of a jail.
#[derive(Clone, Debug, PartialEq)]
pub struct BanTimePolicy {
    /// The base ban time (`bantime`).
    pub bantime: TimeSpec,
    /// `bantime.increment`.
    pub increment: bool,
    /// `bantime.factor` (default 1).
    pub factor: f64,
    /// `bantime.multipliers` (empty: the exponential formula).
    pub multipliers: Vec<f64>,
    /// `bantime.maxtime`.
    pub maxtime: Option<Duration>,
    /// `bantime.rndtime`.
    pub rndtime: Option<Duration>,
    /// `bantime.overalljails`.
    pub overalljails: bool,
}

impl Default for BanTimePolicy {
    fn default() -> Self {
        BanTimePolicy {
            bantime: TimeSpec::Finite(Duration::from_secs(600)),
            increment: false,
            factor: 1.0,
            multipliers: Vec::new(),
            maxtime: None,
            rndtime: None,
            overalljails: false,
        }
    }
}

/// The largest ban we represent, so arithmetic never overflows (about 31 years).
const MAX_BAN: f64 = 1e9;

impl BanTimePolicy {
    /// The ban time for an address with `previous` earlier bans. `random`
    /// is a number in [0, 1) used for `rndtime` (passed in so tests and
    /// replay are deterministic).
    pub fn ban_time(&self, previous: u32, random: f64) -> TimeSpec {
        let base = match self.bantime {
            TimeSpec::Forever => return TimeSpec::Forever,
            TimeSpec::Finite(d) => d.as_secs_f64(),
        };
        if !self.increment || previous == 0 {
            return self.bantime;
        }
        let mut t = if self.multipliers.is_empty() {
            let exp = previous.min(20);
            (base * f64::from(1u32 << exp) * self.factor).max(base)
        } else {
            let i = (previous as usize).min(self.multipliers.len() - 1);
            base * self.factor * self.multipliers[i]
        };
        if let Some(max) = self.maxtime {
            // A repeat ban is never shorter than a first one, even when
            // maxtime is below bantime (a recidive jail of 8d under a
            // [defaults] maxtime of 6d).
            t = t.min(max.as_secs_f64().max(base));
        }
        if let Some(rnd) = self.rndtime {
            t += random.clamp(0.0, 1.0) * rnd.as_secs_f64();
        }
        TimeSpec::Finite(Duration::from_secs_f64(t.clamp(0.0, MAX_BAN)))
    }

    /// How many failures one new failure counts as for an address with
    /// `previous` bans (1 when increment is off or there is no history).
    pub fn failure_weight(&self, previous: u32, maxretry: u32) -> u32 {
        if !self.increment || previous == 0 {
            return 1;
        }
        let w = (1u64 << previous.min(20)) / 2 + 1;
        (w.min(u64::from(maxretry.max(1)))) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(t: TimeSpec) -> u64 {
        t.finite().unwrap().as_secs()
    }

    #[test]
    fn exponential_growth_capped() {
        let p = BanTimePolicy {
            bantime: TimeSpec::Finite(Duration::from_secs(960)),
            increment: true,
            maxtime: Some(Duration::from_secs(6 * 86400)),
            ..Default::default()
        };
        assert_eq!(secs(p.ban_time(0, 0.0)), 960);
        assert_eq!(secs(p.ban_time(1, 0.0)), 1920);
        assert_eq!(secs(p.ban_time(2, 0.0)), 3840);
        assert_eq!(secs(p.ban_time(20, 0.0)), 6 * 86400);
        assert_eq!(secs(p.ban_time(1000, 0.0)), 6 * 86400);
    }

    #[test]
    fn factor_scales_both_formulas() {
        let mut p = BanTimePolicy {
            bantime: TimeSpec::Finite(Duration::from_secs(100)),
            increment: true,
            factor: 1.5,
            ..Default::default()
        };
        assert_eq!(secs(p.ban_time(0, 0.0)), 100, "a first ban is bantime");
        assert_eq!(secs(p.ban_time(1, 0.0)), 300);
        assert_eq!(secs(p.ban_time(2, 0.0)), 600);
        p.multipliers = vec![1.0, 5.0];
        assert_eq!(secs(p.ban_time(1, 0.0)), 750);
    }

    #[test]
    fn maxtime_never_shortens_below_bantime() {
        let p = BanTimePolicy {
            bantime: TimeSpec::Finite(Duration::from_secs(8 * 86400)),
            increment: true,
            maxtime: Some(Duration::from_secs(6 * 86400)),
            ..Default::default()
        };
        assert_eq!(secs(p.ban_time(0, 0.0)), 8 * 86400);
        assert_eq!(secs(p.ban_time(1, 0.0)), 8 * 86400);
    }

    #[test]
    fn multipliers_and_rndtime() {
        let p = BanTimePolicy {
            bantime: TimeSpec::Finite(Duration::from_secs(60)),
            increment: true,
            multipliers: vec![1.0, 5.0, 30.0],
            rndtime: Some(Duration::from_secs(100)),
            ..Default::default()
        };
        assert_eq!(secs(p.ban_time(1, 0.0)), 300);
        assert_eq!(secs(p.ban_time(2, 0.0)), 1800);
        assert_eq!(secs(p.ban_time(9, 0.0)), 1800);
        assert_eq!(secs(p.ban_time(1, 0.5)), 350);
    }

    #[test]
    fn off_or_permanent() {
        let p = BanTimePolicy::default();
        assert_eq!(secs(p.ban_time(5, 0.0)), 600);
        let p = BanTimePolicy {
            bantime: TimeSpec::Forever,
            increment: true,
            ..Default::default()
        };
        assert_eq!(p.ban_time(3, 0.0), TimeSpec::Forever);
    }

    #[test]
    fn known_offenders_count_more() {
        let p = BanTimePolicy {
            increment: true,
            ..Default::default()
        };
        let w: Vec<u32> = (0..6).map(|n| p.failure_weight(n, 100)).collect();
        assert_eq!(w, vec![1, 2, 3, 5, 9, 17]);
        assert_eq!(p.failure_weight(10, 3), 3);
    }
}
