//! Which failregex matches first: all of a filter's patterns in one lazy
//! DFA, searched once per message.
//!
//! Trying the patterns one by one costs one search each (after a literal
//! prefilter that itself scans the message). When every pattern is anchored
//! at the start of the message, a single leftmost-first pass over all of
//! them answers the question `check` asks: among patterns that all match
//! from position 0, leftmost-first prefers the one listed first, and it
//! reports where that pattern's own leftmost-first match ends.

use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::nfa::thompson::{self, WhichCaptures};
use regex_automata::util::pool::Pool;
use regex_automata::{Anchored, Input, MatchKind};
use regex_syntax::hir::{Hir, Look};

type CachePool = Pool<Cache, Box<dyn Fn() -> Cache + Send + Sync>>;

/// The first-match automaton of a filter's failregexes.
pub struct FirstMatch {
    dfa: DFA,
    caches: CachePool,
    /// Bytes a message can begin with and still match (or make the DFA
    /// give up). Most messages a filter sees start with a byte none of its
    /// patterns can: they are refused here, without touching the DFA, whose
    /// tables are then cold in the cache.
    first: [bool; 256],
}

impl std::fmt::Debug for FirstMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FirstMatch").finish_non_exhaustive()
    }
}

/// What one search found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum First {
    /// No pattern matches.
    None,
    /// Pattern `pattern` matches first; its match ends at `end`.
    Match {
        /// Index of the pattern.
        pattern: usize,
        /// End of its leftmost-first match.
        end: usize,
    },
    /// The DFA gave up (a `\b` next to non-ASCII text, or a cache that
    /// keeps filling): the caller tries the patterns one by one.
    GaveUp,
}

impl FirstMatch {
    /// The automaton for these parsed patterns, or `None` when one of them
    /// is not anchored at the start (or they do not compile together).
    pub fn new(patterns: &[Hir]) -> Option<FirstMatch> {
        if !patterns
            .iter()
            .all(|h| h.properties().look_set_prefix().contains(Look::Start))
        {
            return None;
        }
        let nfa = thompson::Compiler::new()
            .configure(
                thompson::Config::new()
                    .which_captures(WhichCaptures::None)
                    // The `regex` crate's limit: each pattern, compiled alone
                    // later for its captures, fits if they all fit together.
                    .nfa_size_limit(Some(10 << 20)),
            )
            .build_many_from_hir(patterns)
            .ok()?;
        let dfa = DFA::builder()
            .configure(
                DFA::config()
                    .match_kind(MatchKind::LeftmostFirst)
                    .unicode_word_boundary(true),
            )
            .build_from_nfa(nfa)
            .ok()?;
        let d = dfa.clone();
        let caches: CachePool = Pool::new(Box::new(move || d.create_cache()));
        let first = first_bytes(&dfa);
        Some(FirstMatch { dfa, caches, first })
    }

    /// The first pattern matching `msg`.
    pub fn search(&self, msg: &str) -> First {
        if let Some(&b) = msg.as_bytes().first() {
            if !self.first[usize::from(b)] {
                return First::None;
            }
        }
        let mut cache = self.caches.get();
        let input = Input::new(msg).anchored(Anchored::Yes);
        match self.dfa.try_search_fwd(&mut cache, &input) {
            Ok(Some(m)) => First::Match {
                pattern: m.pattern().as_usize(),
                end: m.offset(),
            },
            Ok(None) => First::None,
            Err(_) => First::GaveUp,
        }
    }
}

/// For each byte, whether a message starting with it can match: the DFA's
/// anchored start state does not die on it. A match state is not dead (an
/// empty match at the start keeps its byte), nor is the state that quits on
/// a non-ASCII byte next to `\b`, so refusing the others is exact.
fn first_bytes(dfa: &DFA) -> [bool; 256] {
    let mut first = [true; 256];
    let mut cache = dfa.create_cache();
    let input = Input::new("").anchored(Anchored::Yes);
    let Ok(start) = dfa.start_state_forward(&mut cache, &input) else {
        return first;
    };
    for (b, ok) in (0..=255u8).zip(first.iter_mut()) {
        if let Ok(next) = dfa.next_state(&mut cache, start, b) {
            *ok = !next.is_dead();
        }
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(patterns: &[&str], msg: &str) -> First {
        let hirs: Vec<Hir> = patterns
            .iter()
            .map(|p| regex_syntax::Parser::new().parse(p).unwrap())
            .collect();
        FirstMatch::new(&hirs).unwrap().search(msg)
    }

    #[test]
    fn the_earliest_listed_pattern_wins_with_its_own_end() {
        let m = |pattern, end| First::Match { pattern, end };
        assert_eq!(first(&["^ab", "^a"], "abc"), m(0, 2));
        assert_eq!(first(&["^a", "^ab"], "abc"), m(0, 1));
        assert_eq!(first(&["^abc$", "^ab"], "abd"), m(1, 2));
        assert_eq!(first(&["^x", "^y"], "abd"), First::None);
        // Greedy and lazy repetitions keep their own ends.
        assert_eq!(first(&["^a.*b", "^a"], "a1b2b3"), m(0, 5));
        assert_eq!(first(&["^a.*?b", "^a"], "a1b2b3"), m(0, 3));
    }

    #[test]
    fn the_first_byte_refuses_only_what_cannot_match() {
        let m = |pattern, end| First::Match { pattern, end };
        let pats = [r"^\(?pam_x", r"^[aA]uth"];
        for (msg, want) in [
            ("Accepted x", First::None),
            ("pam_x y", m(0, 5)),
            ("(pam_x", m(0, 6)),
            ("auth", m(1, 4)),
            ("Auth", m(1, 4)),
            ("", First::None),
            ("é", First::None),
        ] {
            assert_eq!(first(&pats, msg), want, "{msg:?}");
        }
        // Patterns that match empty, or give up on non-ASCII, keep every byte.
        assert_eq!(first(&[r"^(?:x)?"], "zzz"), m(0, 0));
        assert_eq!(first(&[r"^\b"], "é"), First::GaveUp);
    }

    #[test]
    fn unanchored_sets_are_refused_and_non_ascii_next_to_b_gives_up() {
        let hir = |p: &str| regex_syntax::Parser::new().parse(p).unwrap();
        assert!(FirstMatch::new(&[hir("^a"), hir("b")]).is_none());
        assert_eq!(first(&[r"^a\b"], "aé"), First::GaveUp);
    }
}
