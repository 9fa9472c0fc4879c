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
use regex_syntax::hir::{Class, Hir, HirKind, Look};
use std::sync::OnceLock;

type CachePool = Pool<Cache, Box<dyn Fn() -> Cache + Send + Sync>>;

/// A `route` entry for messages no pattern can match.
const REFUSED: u8 = u8::MAX;
/// More groups than this, and the patterns share one automaton.
const MAX_GROUPS: usize = 32;

/// The first-match automaton of a filter's failregexes.
///
/// The patterns are grouped by the bytes a match can begin with, one
/// automaton per group: a message starting with `F` only meets the
/// patterns that can start with `F` (sshd's forty-odd patterns split into
/// groups of a few). A smaller automaton has fewer states and byte
/// classes, so its tables stay in the CPU cache; one over all patterns
/// missed it on most steps. A pattern that can start anywhere is in every
/// group, so each group still answers "which listed pattern matches
/// first" exactly for the messages routed to it.
pub struct FirstMatch {
    /// For each first byte, and at index 256 for the empty message, the
    /// group that reads such messages ([`REFUSED`]: no pattern can match).
    /// Most messages a filter sees start with a byte none of its patterns
    /// can: they are refused here, without touching any DFA.
    route: [u8; 257],
    groups: Vec<Group>,
    /// The patterns of the groups built on first need (none when every
    /// group was built at once).
    hirs: Vec<Hir>,
}

/// Patterns sharing an automaton.
struct Group {
    /// The filter's index of each pattern of the group, in order.
    patterns: Vec<usize>,
    /// Built at once for the smallest groups that cover every pattern
    /// (so each pattern is known to compile); the others, such as the
    /// group of all patterns that sshd's optional prefixes make, on the
    /// first message that needs them.
    automaton: OnceLock<Option<Automaton>>,
}

/// One group's DFA.
struct Automaton {
    dfa: DFA,
    caches: CachePool,
    /// Whether a message starting with each byte can match (or make the
    /// DFA give up): the anchored start state does not die on it.
    first: [bool; 256],
}

impl std::fmt::Debug for FirstMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FirstMatch")
            .field("groups", &self.groups.len())
            .finish_non_exhaustive()
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
    /// is not anchored at the start (or one does not compile). Every
    /// pattern is compiled here, in a group or alone, within the `regex`
    /// crate's size limit, so each compiles later for its captures.
    pub fn new(patterns: &[Hir]) -> Option<FirstMatch> {
        FirstMatch::build(patterns, true)
    }

    /// As [`FirstMatch::new`], for patterns known to compile (the built-in
    /// filters, which a test compiles in every mode): no automaton is built
    /// before a message needs it, so start-up (serial, before any line is
    /// read) compiles none that a log never uses.
    pub fn known_good(patterns: &[Hir]) -> Option<FirstMatch> {
        FirstMatch::build(patterns, false)
    }

    fn build(patterns: &[Hir], check: bool) -> Option<FirstMatch> {
        if !patterns
            .iter()
            .all(|h| h.properties().look_set_prefix().contains(Look::Start))
        {
            return None;
        }
        let starts: Vec<Option<[bool; 256]>> = patterns.iter().map(start_bytes).collect();
        // The patterns that can match a message starting with `b` (index
        // 256: the empty message, which only a pattern without a first
        // byte can match).
        let subset = |b: usize| -> Vec<usize> {
            (0..patterns.len())
                .filter(|&i| starts[i].is_none_or(|s| s.get(b).copied().unwrap_or(false)))
                .collect()
        };
        let mut sets: Vec<Vec<usize>> = Vec::new();
        let mut at = [None; 257];
        for (b, a) in at.iter_mut().enumerate() {
            let set = subset(b);
            if set.is_empty() {
                continue;
            }
            *a = Some(match sets.iter().position(|s| *s == set) {
                Some(i) => i,
                None => {
                    sets.push(set);
                    sets.len() - 1
                }
            });
        }
        let mut route = [REFUSED; 257];
        if sets.len() > MAX_GROUPS {
            // Too fragmented to pay for: one automaton reads everything.
            sets = vec![(0..patterns.len()).collect()];
            route = [0; 257];
        } else {
            for (r, a) in route.iter_mut().zip(at) {
                // Below MAX_GROUPS, so never REFUSED itself.
                *r = a.and_then(|i| u8::try_from(i).ok()).unwrap_or(REFUSED);
            }
        }
        let groups: Vec<Group> = sets
            .into_iter()
            .map(|patterns| Group {
                patterns,
                automaton: OnceLock::new(),
            })
            .collect();
        // With `check`, the groups of at most half the patterns are built
        // now, the smallest first, while they add a pattern not yet in a
        // built one; a pattern left out is compiled alone, so each is known
        // to compile. Larger groups (sshd's optional prefixes make one of all
        // its patterns) wait for a message that needs them; should one not
        // compile together, its messages go one pattern at a time.
        let mut order: Vec<usize> = (0..groups.len()).collect();
        order.sort_by_key(|&g| groups[g].patterns.len());
        let mut covered = vec![!check; patterns.len()];
        for g in order {
            let group = &groups[g];
            let small = group.patterns.len() <= (patterns.len() / 2).max(1);
            if !small || group.patterns.iter().all(|&i| covered[i]) {
                continue;
            }
            group.build(patterns)?;
            for &i in &group.patterns {
                covered[i] = true;
            }
        }
        for (i, hir) in patterns.iter().enumerate() {
            if !covered[i] {
                nfa(&[hir])?;
            }
        }
        let lazy = groups.iter().any(|g| g.automaton.get().is_none());
        Some(FirstMatch {
            route,
            groups,
            hirs: if lazy { patterns.to_vec() } else { Vec::new() },
        })
    }

    /// The first pattern matching `msg`.
    pub fn search(&self, msg: &str) -> First {
        let at = msg.as_bytes().first().map_or(256, |&b| usize::from(b));
        let Some(group) = self.groups.get(usize::from(self.route[at])) else {
            return First::None;
        };
        let Some(a) = group.build(&self.hirs) else {
            return First::GaveUp;
        };
        if at < 256 && !a.first[at] {
            return First::None;
        }
        let mut cache = a.caches.get();
        let input = Input::new(msg).anchored(Anchored::Yes);
        match a.dfa.try_search_fwd(&mut cache, &input) {
            Ok(Some(m)) => match group.patterns.get(m.pattern().as_usize()) {
                Some(&pattern) => First::Match {
                    pattern,
                    end: m.offset(),
                },
                None => First::GaveUp,
            },
            Ok(None) => First::None,
            Err(_) => First::GaveUp,
        }
    }

    /// How many automata the patterns were split into.
    #[cfg(test)]
    pub(crate) fn groups(&self) -> usize {
        self.groups.len()
    }

    /// How many of them are built.
    #[cfg(test)]
    fn built(&self) -> usize {
        self.groups
            .iter()
            .filter(|g| g.automaton.get().is_some())
            .count()
    }
}

impl Group {
    /// The group's automaton, built on first call from `hirs` (the
    /// filter's patterns); `None` when it does not compile.
    fn build(&self, hirs: &[Hir]) -> Option<&Automaton> {
        self.automaton
            .get_or_init(|| {
                let mine: Option<Vec<&Hir>> = self.patterns.iter().map(|&i| hirs.get(i)).collect();
                Automaton::new(&mine?)
            })
            .as_ref()
    }
}

impl Automaton {
    fn new(hirs: &[&Hir]) -> Option<Automaton> {
        let nfa = nfa(hirs)?;
        let dfa = DFA::builder()
            .configure(
                DFA::config()
                    .match_kind(MatchKind::LeftmostFirst)
                    .unicode_word_boundary(true),
            )
            .build_from_nfa(nfa)
            .ok()?;
        let first = first_bytes(&dfa);
        let d = dfa.clone();
        let caches: CachePool = Pool::new(Box::new(move || d.create_cache()));
        Some(Automaton { dfa, caches, first })
    }
}

/// The patterns' NFA, within the `regex` crate's size limit: each pattern,
/// compiled alone later for its captures, fits if they fit together.
fn nfa(hirs: &[&Hir]) -> Option<thompson::NFA> {
    thompson::Compiler::new()
        .configure(
            thompson::Config::new()
                .which_captures(WhichCaptures::None)
                .nfa_size_limit(Some(10 << 20)),
        )
        .build_many_from_hir(hirs)
        .ok()
}

/// For each byte, whether a message starting with it can match: the DFA's
/// anchored start state does not die on it. A match state is not dead (an
/// empty match at the start keeps its byte), nor is the state that quits
/// on a non-ASCII byte next to `\b`, so refusing the others is exact. (A
/// cache of its own, freed here: the pool fills only once messages come.)
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

/// The bytes a match of `hir` can begin with; `None` when it can match
/// the empty string (then any message may match it).
fn start_bytes(hir: &Hir) -> Option<[bool; 256]> {
    let mut bytes = [false; 256];
    (!add_start_bytes(hir, &mut bytes)).then_some(bytes)
}

/// Adds the bytes a match of `hir` can begin with to `set`; returns whether
/// it can match the empty string (so what follows it can begin a match
/// too). A superset is safe (a pattern only meets more messages), so a
/// non-ASCII character adds every byte a multi-byte UTF-8 sequence can
/// begin with.
pub(super) fn add_start_bytes(hir: &Hir, set: &mut [bool; 256]) -> bool {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => true,
        HirKind::Literal(lit) => match lit.0.first() {
            Some(&b) => {
                set[usize::from(b)] = true;
                false
            }
            None => true,
        },
        HirKind::Class(Class::Bytes(c)) => {
            for r in c.ranges() {
                for b in r.start()..=r.end() {
                    set[usize::from(b)] = true;
                }
            }
            c.ranges().is_empty()
        }
        HirKind::Class(Class::Unicode(c)) => {
            for r in c.ranges() {
                let (lo, hi) = (u32::from(r.start()), u32::from(r.end()));
                for b in lo.min(0x80)..hi.saturating_add(1).min(0x80) {
                    set[b as usize] = true;
                }
                if hi >= 0x80 {
                    set[0xC2..=0xF4].fill(true);
                }
            }
            c.ranges().is_empty()
        }
        HirKind::Repetition(r) => add_start_bytes(&r.sub, set) || r.min == 0,
        HirKind::Capture(c) => add_start_bytes(&c.sub, set),
        HirKind::Concat(parts) => parts.iter().all(|h| add_start_bytes(h, set)),
        HirKind::Alternation(alts) => {
            let mut empty = false;
            for h in alts {
                empty |= add_start_bytes(h, set);
            }
            empty
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hirs(patterns: &[&str]) -> Vec<Hir> {
        patterns
            .iter()
            .map(|p| regex_syntax::Parser::new().parse(p).unwrap())
            .collect()
    }

    fn first(patterns: &[&str], msg: &str) -> First {
        FirstMatch::new(&hirs(patterns)).unwrap().search(msg)
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
    fn patterns_are_grouped_by_first_byte_and_keep_their_order() {
        let m = |pattern, end| First::Match { pattern, end };
        // Within a group the listed order decides: `^F.*` comes before
        // `^Fail`, so it takes "Fail x" (and `^Failed` still takes "Failed").
        let pats = [r"^Failed", r"^Invalid", r"^F.*", r"^Fail", r"^(?:x|y)z"];
        let fm = FirstMatch::new(&hirs(&pats)).unwrap();
        // F: 0, 2, 3; I: 1; x and y: 4.
        assert_eq!(fm.groups(), 3);
        for (msg, want) in [
            ("Failed x", m(0, 6)),
            ("Fail x", m(2, 6)),
            ("Invalid", m(1, 7)),
            ("yz", m(4, 2)),
            ("nvalid", First::None),
            ("", First::None),
        ] {
            assert_eq!(fm.search(msg), want, "{msg:?}");
        }
        // A pattern that can match empty is in every group, the empty
        // message's included.
        let fm = FirstMatch::new(&hirs(&[r"^a", r"^(?:b)?"])).unwrap();
        assert_eq!(fm.search(""), m(1, 0));
        assert_eq!(fm.search("a"), m(0, 1));
        assert_eq!(fm.search("c"), m(1, 0));
    }

    #[test]
    fn groups_that_only_repeat_covered_patterns_are_built_on_first_need() {
        let m = |pattern, end| First::Match { pattern, end };
        // An optional prefix, as sshd's: `p` starts both patterns.
        let fm = FirstMatch::new(&hirs(&[r"^(?:p )?a", r"^(?:p )?b"])).unwrap();
        assert_eq!((fm.groups(), fm.built()), (3, 2));
        assert_eq!(fm.search("b"), m(1, 1));
        assert_eq!(fm.built(), 2);
        assert_eq!(fm.search("p b"), m(1, 3));
        assert_eq!(fm.search("p c"), First::None);
        assert_eq!(fm.built(), 3);
    }

    #[test]
    fn known_good_patterns_build_only_what_messages_need() {
        let pats = hirs(&[r"^(?:p )?a", r"^(?:p )?b", r"^c"]);
        let (checked, lazy) = (
            FirstMatch::new(&pats).unwrap(),
            FirstMatch::known_good(&pats).unwrap(),
        );
        assert_eq!((lazy.groups(), lazy.built()), (checked.groups(), 0));
        for msg in ["a", "b", "p b", "p c", "c", "x", ""] {
            assert_eq!(lazy.search(msg), checked.search(msg), "{msg:?}");
        }
        // "a", "b" and "p ..." met their groups; "c"'s too; none for "x".
        assert_eq!(lazy.built(), 4);
    }

    #[test]
    fn too_many_groups_share_one_automaton_built_on_first_need() {
        let pats: Vec<String> = (b'A'..=b'Z')
            .chain(b'a'..=b'z')
            .map(|c| format!("^{}x", c as char))
            .collect();
        let refs: Vec<&str> = pats.iter().map(String::as_str).collect();
        let fm = FirstMatch::new(&hirs(&refs)).unwrap();
        assert_eq!((fm.groups(), fm.built()), (1, 0));
        assert_eq!(
            fm.search("qx"),
            First::Match {
                pattern: 42,
                end: 2
            }
        );
        assert_eq!(fm.search("0x"), First::None);
        assert_eq!(fm.built(), 1);
    }

    #[test]
    fn unanchored_sets_are_refused_and_non_ascii_next_to_b_gives_up() {
        assert!(FirstMatch::new(&hirs(&["^a", "b"])).is_none());
        assert_eq!(first(&[r"^a\b"], "aé"), First::GaveUp);
    }
}
