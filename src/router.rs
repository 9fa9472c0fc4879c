//! Stage 3: program → jails. An index, nothing else: an event only reaches
//! the jails subscribed to its program, found with one hash lookup, so a
//! line from cron costs no regex at all.
//!
//! fail2ban filters name their program with a regex (`_daemon`): those
//! jails are found by matching the program name against each such regex
//! once, and the answer is cached per program name. The cache is bounded
//! (cleared when full), since an attacker can invent program names.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use regex::Regex;

/// Program names whose regex routing is remembered at most.
pub const PATTERN_CACHE_CAP: usize = 4096;

/// The routing table.
#[derive(Debug, Default, Clone)]
pub struct Router {
    // A fixed table senders cannot add keys to, so a fast hash will do; it
    // is looked up for every line.
    by_program: HashMap<Box<str>, Vec<usize>, foldhash::fast::RandomState>,
    /// Jails that read every program (filters not anchored to one).
    every: Vec<usize>,
    /// Jails routed by a program regex.
    patterns: Vec<(usize, Regex)>,
    cache: PatternCache,
}

/// Program name → jails matched by regex. A reader-writer lock: replay
/// examines events on several threads.
#[derive(Debug, Default)]
struct PatternCache(RwLock<HashMap<Box<str>, Arc<[usize]>>>);

impl Clone for PatternCache {
    fn clone(&self) -> Self {
        PatternCache::default()
    }
}

impl Router {
    /// Builds the table from each jail's program list (index = jail index).
    /// An empty list subscribes the jail to every program; `None` to none.
    pub fn new<'a>(jails: impl IntoIterator<Item = Option<&'a [String]>>) -> Router {
        let mut r = Router::default();
        for (i, programs) in jails.into_iter().enumerate() {
            let Some(programs) = programs else { continue };
            if programs.is_empty() {
                r.every.push(i);
                continue;
            }
            for p in programs {
                let v = r.by_program.entry(p.as_str().into()).or_default();
                if !v.contains(&i) {
                    v.push(i);
                }
            }
        }
        r
    }

    /// Routes `program` to jail `jail` when it matches `re` (a fail2ban
    /// filter's `_daemon`).
    pub fn add_pattern(&mut self, jail: usize, re: Regex) {
        self.patterns.push((jail, re));
        self.cache = PatternCache::default();
    }

    /// The jails whose program regex matches `program` (cached).
    fn by_pattern(&self, program: &str) -> Arc<[usize]> {
        if let Ok(c) = self.cache.0.read() {
            if let Some(v) = c.get(program) {
                return v.clone();
            }
        }
        let v: Arc<[usize]> = self
            .patterns
            .iter()
            .filter(|(_, re)| crate::filter::daemon_matches(re, program))
            .map(|(i, _)| *i)
            .collect();
        if let Ok(mut c) = self.cache.0.write() {
            if c.len() >= PATTERN_CACHE_CAP {
                c.clear();
            }
            c.insert(program.into(), v.clone());
        }
        v
    }

    /// Calls `f` with each jail index subscribed to `program`.
    pub fn for_each(&self, program: &str, mut f: impl FnMut(usize)) {
        if program.is_empty() {
            // A line with no program cannot be attributed to a daemon.
            return;
        }
        if let Some(v) = self.by_program.get(program) {
            v.iter().copied().for_each(&mut f);
        }
        if !self.patterns.is_empty() {
            self.by_pattern(program).iter().copied().for_each(&mut f);
        }
        self.every.iter().copied().for_each(f);
    }

    /// Whether any jail could be interested in `program`.
    pub fn routes(&self, program: &str) -> bool {
        !program.is_empty()
            && (!self.every.is_empty()
                || self.by_program.contains_key(program)
                || (!self.patterns.is_empty() && !self.by_pattern(program).is_empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_program_only() {
        let j0 = vec!["sshd".to_string(), "sshd-session".to_string()];
        let j1 = vec!["named".to_string()];
        let r = Router::new([Some(j0.as_slice()), None, Some(j1.as_slice())]);
        let mut hits = Vec::new();
        r.for_each("sshd-session", |i| hits.push(i));
        r.for_each("named", |i| hits.push(i));
        r.for_each("cron", |i| hits.push(i));
        r.for_each("", |i| hits.push(i));
        assert_eq!(hits, vec![0, 2]);
        assert!(!r.routes("cron"));
    }

    #[test]
    fn daemon_regexes_route_and_the_cache_stays_bounded() {
        let mut r = Router::new([None, None]);
        r.add_pattern(1, Regex::new(r"^(?:sshd|sshd-session)$").unwrap());
        // fail2ban's stock _daemon = sshd also reaches OpenSSH 9.8+'s sshd-session.
        r.add_pattern(0, Regex::new(r"^sshd$").unwrap());
        let mut hits = Vec::new();
        r.for_each("sshd-session", |i| hits.push(i));
        r.for_each("sshdx", |i| hits.push(i));
        assert_eq!(hits, vec![1, 0]);
        assert!(r.routes("sshd") && !r.routes("cron"));
        for n in 0..(PATTERN_CACHE_CAP * 2) {
            r.routes(&format!("invented-{n}"));
        }
        assert!(r.cache.0.read().unwrap().len() <= PATTERN_CACHE_CAP);
        assert!(r.routes("sshd"));
    }

    #[test]
    fn unanchored_jails_see_every_program_but_not_empty_ones() {
        let any: Vec<String> = vec![];
        let r = Router::new([Some(any.as_slice())]);
        let mut n = 0;
        r.for_each("whatever", |_| n += 1);
        r.for_each("", |_| n += 1);
        assert_eq!(n, 1);
    }
}
