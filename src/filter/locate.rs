//! Finding the `host` group of a matching failregex with DFAs instead of
//! the capture engine.
//!
//! A hit needs the address the pattern captured. The `regex` crate gets
//! capture groups from a backtracker that walks the whole NFA per byte; for
//! the built-in patterns that is several times the cost of deciding the
//! match, and it dominated replay profiles.
//!
//! A failregex `^A(?P<host>H)B$` (anchored at both ends, the host group at
//! the top level, no other capture group) splits into three parts. Every
//! match of the whole pattern is a pair of positions `(s, e)` such that
//! `^A` matches `msg[..s]`, `H` matches `msg[s..e]` and `B$` matches
//! `msg[e..]`. One forward DFA pass over `^A` (reporting every end) gives
//! the candidate starts, one reverse DFA pass over `B$` (reporting every
//! start) the candidate ends. When exactly one pair is valid, it is the
//! capture every engine must report; whenever there are several (a user
//! name with "from 1.2.3.4 port 22" in it, say), the caller falls back to
//! the capture engine, so the priority rules of the pattern still decide.
//! The answer is therefore always the one `Regex::captures` gives.

use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::hybrid::LazyStateID;
use regex_automata::nfa::thompson::{self, WhichCaptures};
use regex_automata::util::pool::Pool;
use regex_automata::{Anchored, Input, MatchKind};
use std::sync::OnceLock;

use regex_syntax::hir::{Hir, HirKind, Look};

/// Candidate pairs checked before giving up on a line.
const MAX_PAIRS: usize = 16;

type CachePool = Pool<(Cache, Cache), Box<dyn Fn() -> (Cache, Cache) + Send + Sync>>;

/// Lazy DFAs (built as lines need states, like the `regex` crate's own)
/// locating the host group of one pattern.
pub struct HostLocator {
    /// `^A`, forward, every match end.
    head: DFA,
    /// `B$`, reverse, every match start.
    tail: DFA,
    /// Per-thread caches of the two DFAs.
    caches: CachePool,
    /// `^H$`, for lines with more than one candidate pair.
    host_hir: Hir,
    /// Built on first need: most lines have one candidate pair, and
    /// compiling it costs more than the two DFAs.
    host: OnceLock<Option<regex_automata::meta::Regex>>,
    /// Whether the pattern ends in `$`; if not, [`HostLocator::locate`]
    /// takes the message cut at the end of the match.
    end_anchored: bool,
}

impl std::fmt::Debug for HostLocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostLocator")
            .field("end_anchored", &self.end_anchored)
            .finish_non_exhaustive()
    }
}

fn dfa(hir: &Hir, reverse: bool) -> Option<DFA> {
    let nfa = thompson::Compiler::new()
        .configure(
            thompson::Config::new()
                .reverse(reverse)
                .which_captures(WhichCaptures::None),
        )
        .build_from_hir(hir)
        .ok()?;
    DFA::builder()
        .configure(DFA::config().match_kind(MatchKind::All))
        .build_from_nfa(nfa)
        .ok()
}

/// Where one DFA pass stands after a byte.
enum Step {
    Match,
    Dead,
    Go,
}

fn step(dfa: &DFA, cache: &mut Cache, sid: &mut LazyStateID, byte: Option<u8>) -> Option<Step> {
    *sid = match byte {
        Some(b) => dfa.next_state(cache, *sid, b).ok()?,
        None => dfa.next_eoi_state(cache, *sid).ok()?,
    };
    Some(if !sid.is_tagged() {
        Step::Go
    } else if sid.is_match() {
        Step::Match
    } else if sid.is_dead() {
        Step::Dead
    } else if sid.is_quit() {
        return None;
    } else {
        Step::Go
    })
}

/// Runs a DFA over all of `hay` (backwards when not `forward`) and writes
/// every position where a match ends (forward) or starts (backward) into
/// `out`; returns how many, or `None` when there are more than it holds or
/// the DFA gave up.
fn run(
    dfa: &DFA,
    cache: &mut Cache,
    mut sid: LazyStateID,
    hay: &[u8],
    forward: bool,
    out: &mut [usize; MAX_PAIRS],
) -> Option<usize> {
    let mut n = 0;
    let mut push = |at: usize| -> Option<()> {
        *out.get_mut(n)? = at;
        n += 1;
        Some(())
    };
    // Match states are reported one byte late: being in one after reading
    // the byte at i means a match ended at i (forward) or began at i + 1
    // (backward); the end-of-input step reports the last position.
    let len = hay.len();
    for k in 0..len {
        let i = if forward { k } else { len - 1 - k };
        match step(dfa, cache, &mut sid, Some(hay[i]))? {
            Step::Match => push(if forward { i } else { i + 1 })?,
            Step::Dead => return Some(n),
            Step::Go => {}
        }
    }
    if matches!(step(dfa, cache, &mut sid, None)?, Step::Match) {
        push(if forward { len } else { 0 })?;
    }
    Some(n)
}

impl HostLocator {
    /// Builds the locator for an expanded pattern, or `None` when the
    /// pattern does not have the `^A(?P<host>H)B$` shape (or its parts
    /// would need too large a DFA).
    pub fn new(pattern: &str) -> Option<HostLocator> {
        let hir = regex_syntax::ParserBuilder::new()
            .build()
            .parse(pattern)
            .ok()?;
        if hir.properties().explicit_captures_len() != 1 {
            return None;
        }
        let HirKind::Concat(parts) = hir.kind() else {
            return None;
        };
        let is_look = |h: &Hir, l: Look| matches!(h.kind(), HirKind::Look(x) if *x == l);
        if !is_look(parts.first()?, Look::Start) {
            return None;
        }
        let end_anchored = is_look(parts.last()?, Look::End);
        let k = parts.iter().position(
            |p| matches!(p.kind(), HirKind::Capture(c) if c.name.as_deref() == Some("host")),
        )?;
        let HirKind::Capture(cap) = parts[k].kind() else {
            return None;
        };
        let tail_hir = Hir::concat(parts[k + 1..].to_vec());
        // Without `$` the message is cut at the match's end, which a
        // look-around in the tail would see as the end of the text.
        if !end_anchored && !tail_hir.properties().look_set().is_empty() {
            return None;
        }
        let head = dfa(&Hir::concat(parts[..k].to_vec()), false)?;
        let tail = dfa(&tail_hir, true)?;
        let host_hir = Hir::concat(vec![
            Hir::look(Look::Start),
            (*cap.sub).clone(),
            Hir::look(Look::End),
        ]);
        let (h, t) = (head.clone(), tail.clone());
        let caches: CachePool = Pool::new(Box::new(move || (h.create_cache(), t.create_cache())));
        Some(HostLocator {
            head,
            tail,
            caches,
            host_hir,
            host: OnceLock::new(),
            end_anchored,
        })
    }

    /// Whether the pattern ends in `$`.
    pub fn end_anchored(&self) -> bool {
        self.end_anchored
    }

    /// The byte range of the host group in `msg`, all of which the whole
    /// pattern is known to match (for a pattern without `$`: `msg` cut at
    /// the end of the match); `None` when the DFAs cannot decide it alone.
    pub fn locate(&self, msg: &str) -> Option<(usize, usize)> {
        let hay = msg.as_bytes();
        let mut guard = self.caches.get();
        let (hc, tc) = &mut *guard;
        let input = Input::new(hay).anchored(Anchored::Yes);
        let mut starts = [0usize; MAX_PAIRS];
        let sid = self.head.start_state_forward(hc, &input).ok()?;
        let ns = run(&self.head, hc, sid, hay, true, &mut starts)?;
        let mut ends = [0usize; MAX_PAIRS];
        let sid = self.tail.start_state_reverse(tc, &input).ok()?;
        let ne = run(&self.tail, tc, sid, hay, false, &mut ends)?;
        drop(guard);
        let (starts, ends) = (&starts[..ns], &ends[..ne]);
        // The whole pattern matched, so some pair is valid: with a single
        // candidate of each, it is that one.
        if let ([s], [e]) = (starts, ends) {
            return (s <= e).then_some((*s, *e));
        }
        if starts.len() * ends.len() > MAX_PAIRS {
            return None;
        }
        let host = self
            .host
            .get_or_init(|| {
                regex_automata::meta::Builder::new()
                    .configure(
                        regex_automata::meta::Config::new().which_captures(WhichCaptures::None),
                    )
                    .build_from_hir(&self.host_hir)
                    .ok()
            })
            .as_ref()?;
        let mut found = None;
        for &s in starts {
            for &e in ends.iter().filter(|e| **e >= s) {
                let part = msg.get(s..e)?;
                if host.is_match(Input::new(part).anchored(Anchored::Yes)) {
                    if found.is_some() {
                        return None; // ambiguous: the capture engine decides
                    }
                    found = Some((s, e));
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The locator agrees with the capture engine whenever it answers.
    fn agree(pattern: &str, lines: &[&str]) -> usize {
        let re = regex::Regex::new(pattern).unwrap();
        let loc = HostLocator::new(pattern).expect("pattern has the locator shape");
        let mut answered = 0;
        for l in lines {
            let Some(c) = re.captures(l) else { continue };
            let host = c.name("host").unwrap();
            let cut = &l[..c.get(0).unwrap().end()];
            if let Some((s, e)) = loc.locate(cut) {
                assert_eq!((s, e), (host.start(), host.end()), "{pattern} on {l:?}");
                answered += 1;
            }
        }
        answered
    }

    const HOST: &str = r"\[?(?P<host>(?:[0-9]{1,3}\.){3}[0-9]{1,3}|(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:[0-9]{1,3}\.){3}[0-9]{1,3}|[0-9A-Fa-f]{1,4})?|[\w-]+(?:\.[\w-]+)*)\]?";

    #[test]
    fn finds_the_host_of_ordinary_lines_and_agrees_on_hostile_ones() {
        let p = format!(
            r"^Failed \S+ for .* from {HOST}(?: on \S+)? port [0-9]+(?: on \S+)?(?: ssh[0-9]*)?\s*$"
        );
        let n = agree(
            &p,
            &[
                "Failed password for root from 203.0.113.9 port 4711 ssh2",
                "Failed password for invalid user x from 2001:db8::7 port 22 ssh2",
                "Failed password for x from [2001:db8::7] port 22",
                // The user name carries a victim's address.
                "Failed password for invalid user a from 10.0.0.1 port 22 ssh2 from 203.0.113.9 port 4711 ssh2",
                "Failed password for from 1.2.3.4 port 1 from 5.6.7.8 port 2",
            ],
        );
        assert!(n >= 3, "the plain lines are located without captures ({n})");
    }

    #[test]
    fn patterns_without_dollar_read_up_to_the_match_end() {
        let p = format!(r"^\[UFW BLOCK\] IN=\S* OUT=\S*(?: [A-Z]+=\S*)*? SRC={HOST} DST=\S+");
        let n = agree(
            &p,
            &[
                "[UFW BLOCK] IN=eth0 OUT= MAC=52:54 SRC=198.18.6.248 DST=203.0.113.1 LEN=44",
                "[UFW BLOCK] IN=eth0 OUT= SRC=2001:db8::9 DST=2001:db8::1 LEN=44 SRC=1.2.3.4 DST=x",
            ],
        );
        assert!(n >= 1, "{n}");
        assert!(!HostLocator::new(&p).unwrap().end_anchored());
        assert!(
            HostLocator::new(r"^a (?P<host>\S+) b\b").is_none(),
            "look-around at the cut"
        );
    }

    #[test]
    fn other_shapes_keep_the_capture_engine() {
        assert!(
            HostLocator::new(r"x (?P<host>\S+)$").is_none(),
            "not start-anchored"
        );
        assert!(
            HostLocator::new(r"^(?P<user>\S+) (?P<host>\S+)$").is_none(),
            "two groups"
        );
        assert!(
            HostLocator::new(r"^a(?:(?P<host>\S+) b)?$").is_none(),
            "nested group"
        );
        assert!(HostLocator::new(r"^a (?P<host>\S+) b$").is_some());
    }

    #[test]
    fn ambiguity_is_left_to_the_capture_engine() {
        // Greedy and lazy heads pick different hosts: the locator must not.
        for p in [
            r"^u .* from (?P<host>\S+).*$",
            r"^u .*? from (?P<host>\S+).*$",
        ] {
            let loc = HostLocator::new(p).unwrap();
            assert_eq!(loc.locate("u from 1.1.1.1 from 2.2.2.2"), None);
            assert_eq!(
                agree(p, &["u x from 1.1.1.1 y"]),
                0,
                "single parse but .* tail: many ends"
            );
        }
    }
}
