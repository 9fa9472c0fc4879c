//! Finding a capture group (`host`, `user`) of a matching failregex with
//! DFAs instead of the capture engine.
//!
//! A hit needs the address the pattern captured. The `regex` crate gets
//! capture groups from a backtracker that walks the whole NFA per byte; for
//! the built-in patterns that is several times the cost of deciding the
//! match, and it dominated replay profiles.
//!
//! A failregex `^A(?P<g>G)B$` (anchored at the start, the group at the top
//! level; other groups are read as plain groups) splits into three parts.
//! Every match of the whole pattern is a pair of positions `(s, e)` such
//! that `^A` matches `msg[..s]`, `G` matches `msg[s..e]` and `B$` matches
//! `msg[e..]`. One forward DFA pass over `^A` (reporting every end) gives
//! the candidate starts, one reverse DFA pass over `B$` (reporting every
//! start) the candidate ends. A pattern without `$` is read up to the end
//! of its leftmost-first match, with look-arounds still seeing the bytes
//! after it (as `regex-automata` does for a search span). When exactly one
//! pair is valid, it is the capture every engine must report; whenever
//! there are several (a user name with "from 1.2.3.4 port 22" in it, say),
//! the caller falls back to the capture engine, so the priority rules of the
//! pattern still decide. The answer is therefore always the one
//! `Regex::captures` gives.

use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::hybrid::LazyStateID;
use regex_automata::nfa::thompson::{self, WhichCaptures};
use regex_automata::util::pool::Pool;
use regex_automata::{Anchored, Input, MatchKind};
use std::sync::OnceLock;

use regex_syntax::hir::literal::{ExtractKind, Extractor};
use regex_syntax::hir::{Capture, Class, Hir, HirKind, Look, Repetition};

/// Candidate pairs checked before giving up on a line.
const MAX_PAIRS: usize = 16;
/// Bytes kept of each literal that ends a group's head.
const HEAD_SUFFIX_BYTES: usize = 6;
/// More literals than this, and the head pass finds the group's start.
const MAX_HEAD_SUFFIXES: usize = 4;

type CachePool = Pool<(Cache, Cache), Box<dyn Fn() -> (Cache, Cache) + Send + Sync>>;
type LocatorPool =
    Pool<(Cache, Cache, Cache), Box<dyn Fn() -> (Cache, Cache, Cache) + Send + Sync>>;

/// Lazy DFAs (built as lines need states, like the `regex` crate's own)
/// locating one capture group of one pattern.
pub struct Locator {
    /// `^A`, forward, every match end.
    head: DFA,
    /// `B$`, reverse, every match start.
    tail: DFA,
    /// Per-thread caches of the head, tail and group DFAs.
    caches: LocatorPool,
    /// `G`, reverse, every match start: the group's candidate starts, read
    /// back from a candidate end (a short walk: groups are one token).
    group_rev: DFA,
    /// Literals one of which ends every match of `^A` (`None`: no such
    /// finite set). A start not preceded by one cannot be the group's.
    head_suffixes: Option<Vec<Vec<u8>>>,
    /// `^G$`, for lines with more than one candidate pair.
    group_hir: Hir,
    /// Built on first need: most lines have one candidate pair, and
    /// compiling it costs more than the two DFAs.
    group: OnceLock<Option<regex_automata::meta::Regex>>,
    /// The group read as a token, without any DFA, when the pattern's
    /// shape allows ([`Token`]).
    token: Option<Token>,
}

/// Locating a group that is a token: no byte the group can hold can begin
/// the tail (an address before `" port"`, `"#53"` or `"]"`).
///
/// Every valid pair `(s, e)` then has `msg[..s]` ending with one of the
/// head's suffix literals, and `e` is the first byte from `s` on that the
/// group cannot hold (or the match's end): the group matches `msg[s..e]`,
/// and the tail's first byte is not one of the group's. Each start thus
/// has one candidate end, and checks that every valid pair passes (the
/// group's and the tail's emptiness, the tail's first literal) leave most
/// lines with one candidate. Since the whole pattern matched, that one is
/// the valid pair; with several (a user name holding `" from 1.2.3.4
/// port"`), the DFAs decide. This is how the address is read after a
/// literal without walking any automaton.
struct Token {
    /// One finder per literal ending every head match (none empty).
    suffixes: Vec<memchr::memmem::Finder<'static>>,
    /// Bytes a match of the group can contain.
    chars: [bool; 256],
    /// The group can match the empty string.
    group_nullable: bool,
    /// The tail can match the empty string.
    tail_nullable: bool,
    /// Bytes a match of the tail can begin with.
    tail_first: [bool; 256],
    /// Literals one of which begins every match of the tail (`None`: no
    /// such short set).
    tail_prefixes: Option<Vec<Vec<u8>>>,
}

impl Token {
    /// The token reading of group `g`, given the literals ending every
    /// match of the head and the `tail` after the group, when no byte the
    /// group can hold can begin the tail.
    fn new(head_suffixes: Option<&[Vec<u8>]>, g: &Hir, tail: &Hir) -> Option<Token> {
        let suffixes = head_suffixes?;
        if suffixes.is_empty() || suffixes.iter().any(Vec::is_empty) {
            return None;
        }
        let mut chars = [false; 256];
        held_bytes(g, &mut chars);
        let mut first = [false; 256];
        let tail_nullable = super::first::add_start_bytes(tail, &mut first);
        if (0..256).any(|b| chars[b] && first[b]) {
            return None;
        }
        // The tail's first literals, bounded as the head's last ones are.
        let mut prefixes = Extractor::new().kind(ExtractKind::Prefix).extract(tail);
        prefixes.keep_first_bytes(HEAD_SUFFIX_BYTES);
        let tail_prefixes = prefixes
            .literals()
            .map(distinct)
            .filter(|l| l.len() <= MAX_HEAD_SUFFIXES && l.iter().all(|l| !l.is_empty()));
        Some(Token {
            suffixes: suffixes
                .iter()
                .map(|l| memchr::memmem::Finder::new(l).into_owned())
                .collect(),
            chars,
            group_nullable: g.properties().minimum_len() == Some(0),
            tail_nullable,
            tail_first: first,
            tail_prefixes,
        })
    }

    /// The one candidate pair in `hay[..end]`, or `None` when there is not
    /// exactly one.
    fn locate(&self, hay: &[u8], end: usize) -> Option<(usize, usize)> {
        let within = hay.get(..end)?;
        let mut found: Option<(usize, usize)> = None;
        for f in &self.suffixes {
            // Overlapping occurrences count too (" from from ").
            let mut at = 0;
            while let Some(i) = f.find(&within[at..]) {
                let s = at + i + f.needle().len();
                at += i + 1;
                let e = within[s..]
                    .iter()
                    .position(|b| !self.chars[usize::from(*b)])
                    .map_or(end, |n| s + n);
                let fits = (e > s || self.group_nullable)
                    && match within.get(e..) {
                        Some([]) | None => self.tail_nullable,
                        Some(rest) => {
                            self.tail_first[usize::from(rest[0])]
                                && self
                                    .tail_prefixes
                                    .as_ref()
                                    .is_none_or(|ps| ps.iter().any(|p| rest.starts_with(p)))
                        }
                    };
                if fits && found != Some((s, e)) {
                    if found.is_some() {
                        return None;
                    }
                    found = Some((s, e));
                }
            }
        }
        found
    }
}

/// The distinct byte strings of extracted literals.
fn distinct(lits: &[regex_syntax::hir::literal::Literal]) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = lits.iter().map(|l| l.as_bytes().to_vec()).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Marks every byte a match of `h` can contain (any byte of a non-ASCII
/// character: its UTF-8 encoding is not worked out).
fn held_bytes(h: &Hir, out: &mut [bool; 256]) {
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => {}
        HirKind::Literal(l) => l.0.iter().for_each(|b| out[usize::from(*b)] = true),
        HirKind::Class(c) => class_bytes(c, out),
        HirKind::Repetition(r) => held_bytes(&r.sub, out),
        HirKind::Capture(c) => held_bytes(&c.sub, out),
        HirKind::Concat(v) | HirKind::Alternation(v) => v.iter().for_each(|h| held_bytes(h, out)),
    }
}

/// Marks the bytes of a class (every byte from 0x80 up for a class holding
/// a non-ASCII character).
fn class_bytes(c: &Class, out: &mut [bool; 256]) {
    let mut mark = |lo: u32, hi: u32| {
        for b in lo..=hi.min(0x7f) {
            out[b as usize] = true;
        }
        if hi >= 0x80 {
            out[0x80..].iter_mut().for_each(|x| *x = true);
        }
    };
    match c {
        Class::Unicode(u) => u
            .iter()
            .for_each(|r| mark(u32::from(r.start()), u32::from(r.end()))),
        Class::Bytes(b) => b
            .iter()
            .for_each(|r| mark(u32::from(r.start()), u32::from(r.end()))),
    }
}

impl std::fmt::Debug for Locator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Locator").finish_non_exhaustive()
    }
}

/// `hir` with every capture group but `name` turned into a plain group.
fn keep_group(hir: &Hir, name: &str) -> Hir {
    match hir.kind() {
        HirKind::Capture(c) if c.name.as_deref() == Some(name) => Hir::capture(Capture {
            index: c.index,
            name: c.name.clone(),
            sub: Box::new(keep_group(&c.sub, name)),
        }),
        HirKind::Capture(c) => keep_group(&c.sub, name),
        HirKind::Concat(v) => Hir::concat(v.iter().map(|h| keep_group(h, name)).collect()),
        HirKind::Alternation(v) => {
            Hir::alternation(v.iter().map(|h| keep_group(h, name)).collect())
        }
        HirKind::Repetition(r) => Hir::repetition(Repetition {
            sub: Box::new(keep_group(&r.sub, name)),
            ..r.clone()
        }),
        _ => hir.clone(),
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
        .configure(
            // `\b` is read on ASCII; a non-ASCII byte next to one makes the
            // DFA give up, and the capture engine decides.
            DFA::config()
                .match_kind(MatchKind::All)
                .unicode_word_boundary(true),
        )
        .build_from_nfa(nfa)
        .ok()
}

/// The state after `byte` (or the end of input): the unchecked table
/// lookup when the state is known, the full transition otherwise.
#[inline(always)]
fn next(dfa: &DFA, cache: &mut Cache, sid: LazyStateID, byte: Option<u8>) -> Option<LazyStateID> {
    if let (Some(b), false) = (byte, sid.is_tagged()) {
        let n = dfa.next_state_untagged(cache, sid, b);
        if !n.is_unknown() {
            return Some(n);
        }
    }
    match byte {
        Some(b) => dfa.next_state(cache, sid, b).ok(),
        None => dfa.next_eoi_state(cache, sid).ok(),
    }
}

/// Runs a DFA over `hay[..end]`, forwards from 0 or backwards from `end`,
/// and writes every position where a match ends (forward) or starts
/// (backward) into `out`; returns how many, or `None` when there are more
/// than it holds or the DFA gave up. Look-arounds see the whole of `hay`:
/// the forward pass ends on the byte after `end` when there is one, and the
/// backward pass starts from a state that has seen it.
fn run(
    dfa: &DFA,
    cache: &mut Cache,
    sid: LazyStateID,
    hay: &[u8],
    end: usize,
    forward: bool,
    out: &mut [usize; MAX_PAIRS],
) -> Option<usize> {
    let bytes = hay.get(..end)?;
    if forward {
        // Being in a match state after the byte at i: a match ended at i.
        let pass = walk(dfa, cache, sid, bytes.iter().copied().enumerate(), out)?;
        finish(dfa, cache, pass, hay.get(end).copied(), end, out)
    } else {
        // Backwards, a match state after the byte at i: one began at i + 1.
        let steps = bytes.iter().copied().enumerate().rev();
        let pass = walk(dfa, cache, sid, steps.map(|(i, b)| (i + 1, b)), out)?;
        finish(dfa, cache, pass, None, 0, out)
    }
}

/// How a pass over the bytes ended: dead (with `n` positions found) or
/// still going in `sid`.
enum Pass {
    Dead(usize),
    Going(LazyStateID, usize),
}

/// Feeds `(position, byte)` steps to the DFA, recording the position of
/// each step that lands in a match state (reported one byte late).
#[inline(always)]
fn walk(
    dfa: &DFA,
    cache: &mut Cache,
    mut sid: LazyStateID,
    steps: impl Iterator<Item = (usize, u8)>,
    out: &mut [usize; MAX_PAIRS],
) -> Option<Pass> {
    let mut n = 0;
    for (at, b) in steps {
        sid = next(dfa, cache, sid, Some(b))?;
        if sid.is_tagged() {
            if sid.is_match() {
                *out.get_mut(n)? = at;
                n += 1;
            } else if sid.is_dead() {
                return Some(Pass::Dead(n));
            } else if sid.is_quit() {
                return None;
            }
        }
    }
    Some(Pass::Going(sid, n))
}

/// The last step of a pass: the byte after the span (forward, when there
/// is one) or the end of input; a match then is at `at`.
fn finish(
    dfa: &DFA,
    cache: &mut Cache,
    pass: Pass,
    last: Option<u8>,
    at: usize,
    out: &mut [usize; MAX_PAIRS],
) -> Option<usize> {
    let (sid, mut n) = match pass {
        Pass::Dead(n) => return Some(n),
        Pass::Going(sid, n) => (sid, n),
    };
    let sid = next(dfa, cache, sid, last)?;
    if sid.is_quit() {
        return None;
    }
    if sid.is_match() {
        *out.get_mut(n)? = at;
        n += 1;
    }
    Some(n)
}

impl Locator {
    /// Builds the locator of group `name` in a parsed pattern, or `None`
    /// when the pattern does not have the `^A(?P<name>G)B` shape (or its
    /// parts would need too large a DFA).
    pub fn new(pattern: &Hir, name: &str) -> Option<Locator> {
        let hir = keep_group(pattern, name);
        let HirKind::Concat(parts) = hir.kind() else {
            return None;
        };
        let is_look = |h: &Hir, l: Look| matches!(h.kind(), HirKind::Look(x) if *x == l);
        if !is_look(parts.first()?, Look::Start) {
            return None;
        }
        let k = parts.iter().position(
            |p| matches!(p.kind(), HirKind::Capture(c) if c.name.as_deref() == Some(name)),
        )?;
        let HirKind::Capture(cap) = parts[k].kind() else {
            return None;
        };
        let tail = parts[k + 1..].to_vec();
        let head_hir = Hir::concat(parts[..k].to_vec());
        // The last few bytes of each suffix are enough to tell the
        // group's start from the starts inside it, and keep the set small
        // (a head without wildcards otherwise lists every spelling of it).
        let mut suffixes = Extractor::new()
            .kind(ExtractKind::Suffix)
            .extract(&head_hir);
        suffixes.keep_last_bytes(HEAD_SUFFIX_BYTES);
        // Optional parts before the group (sshd's prefix) repeat each
        // suffix once per path, not always side by side.
        let head_suffixes: Option<Vec<Vec<u8>>> = suffixes
            .literals()
            .map(distinct)
            .filter(|lits| lits.len() <= MAX_HEAD_SUFFIXES);
        let tail = Hir::concat(tail);
        let token = Token::new(head_suffixes.as_deref(), &cap.sub, &tail);
        let head = dfa(&head_hir, false)?;
        let tail = dfa(&tail, true)?;
        let group_rev = dfa(&cap.sub, true)?;
        let group_hir = Hir::concat(vec![
            Hir::look(Look::Start),
            (*cap.sub).clone(),
            Hir::look(Look::End),
        ]);
        let (h, t, g) = (head.clone(), tail.clone(), group_rev.clone());
        let caches: LocatorPool = Pool::new(Box::new(move || {
            (h.create_cache(), t.create_cache(), g.create_cache())
        }));
        Some(Locator {
            head,
            tail,
            caches,
            group_rev,
            head_suffixes,
            group_hir,
            group: OnceLock::new(),
            token,
        })
    }

    /// The one pair left when candidate ends are read back through the
    /// group and each start must follow one of the head's suffix literals;
    /// `None` when not exactly one is (the head pass then decides).
    ///
    /// Every valid pair is among those candidates (the group matches
    /// `msg[s..e]`, the tail `msg[e..end]`, and a head match ending at `s`
    /// ends with one of the literals), and the whole pattern matched, so a
    /// single candidate is the valid pair. This spares the head pass, the
    /// longest walk: the group is a token, read back in a few bytes.
    fn by_group(&self, gc: &mut Cache, hay: &[u8], ends: &[usize]) -> Option<(usize, usize)> {
        let suffixes = self.head_suffixes.as_ref()?;
        let mut found = None;
        for &e in ends {
            let input = Input::new(hay).range(..e).anchored(Anchored::Yes);
            let sid = self.group_rev.start_state_reverse(gc, &input).ok()?;
            let mut starts = [0usize; MAX_PAIRS];
            let n = run(&self.group_rev, gc, sid, hay, e, false, &mut starts)?;
            for &s in &starts[..n] {
                let before = hay.get(..s)?;
                // The last byte first: most starts inside a token fail it.
                let ends = |l: &Vec<u8>| {
                    l.last().is_none_or(|b| before.last() == Some(b)) && before.ends_with(l)
                };
                if suffixes.iter().any(ends) {
                    if found.is_some() {
                        return None;
                    }
                    found = Some((s, e));
                }
            }
        }
        found
    }

    /// The byte range of the group in `msg`, given that the whole pattern
    /// matches `msg[..end]` (the end its leftmost-first match reports);
    /// `None` when the DFAs cannot decide it alone.
    pub fn locate(&self, msg: &str, end: usize) -> Option<(usize, usize)> {
        let hay = msg.as_bytes();
        if end > hay.len() {
            return None;
        }
        if let Some(pair) = self.token.as_ref().and_then(|t| t.locate(hay, end)) {
            return Some(pair);
        }
        let mut guard = self.caches.get();
        let (hc, tc, gc) = &mut *guard;
        let input = Input::new(hay).range(..end).anchored(Anchored::Yes);
        let mut ends = [0usize; MAX_PAIRS];
        let sid = self.tail.start_state_reverse(tc, &input).ok()?;
        let ne = run(&self.tail, tc, sid, hay, end, false, &mut ends)?;
        if let Some(pair) = self.by_group(gc, hay, &ends[..ne]) {
            return Some(pair);
        }
        // The group starts before it ends: the head pass can stop at the
        // last candidate end (the tail is usually short, the head long).
        let limit = ends[..ne].iter().copied().max()?;
        let mut starts = [0usize; MAX_PAIRS];
        let sid = self.head.start_state_forward(hc, &input).ok()?;
        let ns = run(&self.head, hc, sid, hay, limit, true, &mut starts)?;
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
        let group = self
            .group
            .get_or_init(|| {
                regex_automata::meta::Builder::new()
                    .configure(
                        regex_automata::meta::Config::new().which_captures(WhichCaptures::None),
                    )
                    .build_from_hir(&self.group_hir)
                    .ok()
            })
            .as_ref()?;
        let mut found = None;
        for &s in starts {
            for &e in ends.iter().filter(|e| **e >= s) {
                let part = msg.get(s..e)?;
                if group.is_match(Input::new(part).anchored(Anchored::Yes)) {
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

/// Whether `hir` has a capture group named `name`.
pub fn has_group(hir: &Hir, name: &str) -> bool {
    match hir.kind() {
        HirKind::Capture(c) => c.name.as_deref() == Some(name) || has_group(&c.sub, name),
        HirKind::Concat(v) | HirKind::Alternation(v) => v.iter().any(|h| has_group(h, name)),
        HirKind::Repetition(r) => has_group(&r.sub, name),
        _ => false,
    }
}

/// Whether the DFA matches exactly `hay[..end]` from its start (`None`:
/// it gave up). Look-arounds see the byte after `end`, as in [`run`].
fn ends_at(dfa: &DFA, cache: &mut Cache, hay: &[u8], end: usize) -> Option<bool> {
    let input = Input::new(hay).range(..end).anchored(Anchored::Yes);
    let mut sid = dfa.start_state_forward(cache, &input).ok()?;
    for &b in hay.get(..end)? {
        sid = next(dfa, cache, sid, Some(b))?;
        if sid.is_tagged() {
            if sid.is_dead() {
                return Some(false);
            } else if sid.is_quit() {
                return None;
            }
        }
    }
    let sid = next(dfa, cache, sid, hay.get(end).copied())?;
    (!sid.is_quit()).then_some(sid.is_match())
}

/// A group inside an optional part at the top level of the pattern,
/// `^A(?:P(?P<g>G)Q)?B`, like the user name at the end of PAM's line.
///
/// The match is a path through the pattern either with the optional part
/// (`^APGQB`) or without it (`^AB`). When only one of the two matches the
/// matched span, the match took that path whatever the priorities: without
/// it, the group is absent; with it, the group is where the [`Locator`] of
/// `^AP(?P<g>G)QB` finds it. When both match, the capture engine decides.
pub struct OptionalLocator {
    /// The group in the pattern with the optional part made mandatory.
    taken: Locator,
    /// `^APGQB` and `^AB`, forward, every match end.
    with: DFA,
    without: DFA,
    caches: CachePool,
}

impl std::fmt::Debug for OptionalLocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OptionalLocator").finish_non_exhaustive()
    }
}

impl OptionalLocator {
    /// The locator of group `name` when it lies in a top-level `(?:...)?`
    /// of an anchored pattern, else `None`.
    pub fn new(pattern: &Hir, name: &str) -> Option<OptionalLocator> {
        let hir = keep_group(pattern, name);
        let HirKind::Concat(parts) = hir.kind() else {
            return None;
        };
        if !matches!(parts.first()?.kind(), HirKind::Look(Look::Start)) {
            return None;
        }
        let k = parts.iter().position(|p| {
            matches!(p.kind(), HirKind::Repetition(r)
                if r.min == 0 && r.max == Some(1) && has_group(&r.sub, name))
        })?;
        let HirKind::Repetition(opt) = parts[k].kind() else {
            return None;
        };
        let mut with = parts[..k].to_vec();
        with.push((*opt.sub).clone());
        with.extend_from_slice(&parts[k + 1..]);
        let with = Hir::concat(with);
        let mut without = parts[..k].to_vec();
        without.extend_from_slice(&parts[k + 1..]);
        let taken = Locator::new(&with, name)?;
        let with = dfa(&with, false)?;
        let without = dfa(&Hir::concat(without), false)?;
        let (w, o) = (with.clone(), without.clone());
        let caches: CachePool = Pool::new(Box::new(move || (w.create_cache(), o.create_cache())));
        Some(OptionalLocator {
            taken,
            with,
            without,
            caches,
        })
    }

    /// As [`Locator::locate`], with `Some(None)` when the group is not
    /// part of the match.
    pub fn locate(&self, msg: &str, end: usize) -> Option<Option<(usize, usize)>> {
        let hay = msg.as_bytes();
        let mut guard = self.caches.get();
        let (wc, oc) = &mut *guard;
        // The whole pattern matched, so one path does: when the path
        // without the part does not, the one with it is the match.
        if !ends_at(&self.without, oc, hay, end)? {
            drop(guard);
            return self.taken.locate(msg, end).map(Some);
        }
        let with = ends_at(&self.with, wc, hay, end)?;
        drop(guard);
        // Both paths match: which one the match took depends on the
        // pattern's priorities.
        (!with).then_some(None)
    }
}

/// A locator of either shape.
#[derive(Debug)]
pub enum GroupLocator {
    /// The group at the top level.
    Plain(Box<Locator>),
    /// The group in a top-level optional part.
    Optional(Box<OptionalLocator>),
}

impl GroupLocator {
    /// The locator of group `name` of `pattern`, if it has one of the shapes.
    pub fn new(pattern: &Hir, name: &str) -> Option<GroupLocator> {
        Locator::new(pattern, name)
            .map(|l| GroupLocator::Plain(Box::new(l)))
            .or_else(|| {
                OptionalLocator::new(pattern, name).map(|l| GroupLocator::Optional(Box::new(l)))
            })
    }

    /// The group's byte range (`Some(None)`: not part of the match), given
    /// that the pattern's leftmost-first match is `msg[..end]`; `None` when
    /// the DFAs cannot decide.
    pub fn locate(&self, msg: &str, end: usize) -> Option<Option<(usize, usize)>> {
        match self {
            GroupLocator::Plain(l) => l.locate(msg, end).map(Some),
            GroupLocator::Optional(l) => l.locate(msg, end),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pattern: &str) -> Hir {
        regex_syntax::Parser::new().parse(pattern).unwrap()
    }

    fn locator(pattern: &str, group: &str) -> Option<Locator> {
        Locator::new(&parse(pattern), group)
    }

    /// The locator of `group` agrees with the capture engine whenever it
    /// answers; returns how often it answered.
    fn agree_on(pattern: &str, group: &str, lines: &[&str]) -> usize {
        let re = regex::Regex::new(pattern).unwrap();
        let loc = locator(pattern, group).expect("pattern has the locator shape");
        let mut answered = 0;
        for l in lines {
            let Some(c) = re.captures(l) else { continue };
            let g = c.name(group).unwrap();
            if let Some((s, e)) = loc.locate(l, c.get(0).unwrap().end()) {
                assert_eq!((s, e), (g.start(), g.end()), "{pattern} on {l:?}");
                answered += 1;
            }
        }
        answered
    }

    fn agree(pattern: &str, lines: &[&str]) -> usize {
        agree_on(pattern, "host", lines)
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
    fn patterns_without_dollar_read_the_whole_message() {
        let p = format!(r"^\[UFW BLOCK\] IN=\S* OUT=\S*(?: [A-Z]+=\S*)*? SRC={HOST} DST=\S+");
        let n = agree(
            &p,
            &[
                "[UFW BLOCK] IN=eth0 OUT= MAC=52:54 SRC=198.18.6.248 DST=203.0.113.1 LEN=44",
                "[UFW BLOCK] IN=eth0 OUT= SRC=2001:db8::9 DST=2001:db8::1 LEN=44 SRC=1.2.3.4 DST=x",
            ],
        );
        assert!(n >= 1, "{n}");
        // A look-around after the group sees the real end of the message.
        let p = format!(r"^Accepted \w+ for (?P<user>\S+) from {HOST}(?:\s|$)");
        let lines = [
            "Accepted publickey for root from 203.0.113.9 port 22 ssh2",
            "Accepted password for x from 2001:db8::1",
            "Accepted password for x from 10.0.0.1 port 1 from 10.0.0.2",
        ];
        assert_eq!(agree(&p, &lines), 3);
        assert_eq!(agree_on(&p, "user", &lines), 3);
        let n = agree(
            &format!(r"^a {HOST} b\b"),
            &[
                "a 1.2.3.4 b",
                "a 1.2.3.4 bc d b",
                "a 1.2.3.4 b é",
                "a 1.2.3.4 bé b",
            ],
        );
        assert!(n >= 1, "{n}");
    }

    #[test]
    fn other_shapes_keep_the_capture_engine() {
        assert!(
            locator(r"x (?P<host>\S+)$", "host").is_none(),
            "not start-anchored"
        );
        assert!(
            locator(r"^a(?:(?P<host>\S+) b)?$", "host").is_none(),
            "nested group"
        );
        assert!(
            locator(r"^a (?P<host>\S+) b$", "user").is_none(),
            "no such group"
        );
        assert!(locator(r"^a (?P<host>\S+) b$", "host").is_some());
        // Other groups are read as plain groups: each group has its locator.
        let p = r"^(?P<user>\S+) (?:x(?P<other>y))? (?P<host>\S+)$";
        assert_eq!(agree_on(p, "user", &["root  1.2.3.4", "a xy b"]), 2);
        assert_eq!(agree_on(p, "host", &["root  1.2.3.4", "a xy b"]), 2);
    }

    #[test]
    fn optional_groups_are_located_when_only_one_path_matches() {
        let p = format!(
            r"^pam_unix\(sshd:auth\): authentication failure;(?:\s+(?:logname|e?uid|tty)=\S*){{0,4}}\s+ruser=(?P<alt_user>\S*)\s+rhost={HOST}(?:\s+user=(?P<user>\S*))?(?: (?:port \d+|on \S+|\[preauth\])){{0,3}}\s*$"
        );
        let re = regex::Regex::new(&p).unwrap();
        let loc = GroupLocator::new(&parse(&p), "user").expect("optional shape");
        assert!(matches!(loc, GroupLocator::Optional(_)));
        let head = "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh";
        let lines = [
            format!("{head} ruser= rhost=198.51.100.7  user=root"),
            format!("{head} ruser= rhost=198.51.100.7"),
            format!("{head} ruser= rhost=198.51.100.7 user="),
            format!("{head} ruser=x rhost=2001:db8::1 user=a port 22"),
            format!("{head} ruser=on rhost=1.1.1.1 user=on on x port 2 [preauth]"),
        ];
        let mut answered = 0;
        for l in &lines {
            let c = re.captures(l).unwrap();
            let want = c.name("user").map(|m| (m.start(), m.end()));
            if let Some(got) = loc.locate(l, c.get(0).unwrap().end()) {
                assert_eq!(got, want, "{l}");
                answered += 1;
            }
        }
        assert!(answered >= 4, "{answered}");
        // Both paths match "a b": the priorities decide, so the locator must not.
        let p = r"^a(?: (?P<user>\S+))?(?: \S+)?$";
        let loc = GroupLocator::new(&parse(p), "user").unwrap();
        assert_eq!(loc.locate("a b", 3), None);
        assert_eq!(loc.locate("a", 1), Some(None));
    }

    #[test]
    fn ambiguity_is_left_to_the_capture_engine() {
        // Greedy and lazy heads pick different hosts: the locator must not.
        for p in [
            r"^u .* from (?P<host>\S+).*$",
            r"^u .*? from (?P<host>\S+).*$",
        ] {
            let loc = locator(p, "host").unwrap();
            let l = "u from 1.1.1.1 from 2.2.2.2";
            assert_eq!(loc.locate(l, l.len()), None);
            assert_eq!(
                agree(p, &["u x from 1.1.1.1 y"]),
                0,
                "single parse but .* tail: many ends"
            );
        }
        // The look-around at the match's end sees the byte after it. The
        // DFAs give up on `\b` beside "é"; the token reading needs no
        // look-around and answers all three.
        assert_eq!(
            agree(r"^a (?P<host>\S+?)\b", &["a foo.bar baz", "a x", "a é.b"]),
            3
        );
        // Without `$`, the match's end decides the group's.
        assert_eq!(agree(r"^u (?P<host>\S+)", &["u abc"]), 1);
    }

    /// The token reading of a locator, alone.
    fn token_pair(pattern: &str, line: &str, end: usize) -> Option<(usize, usize)> {
        let loc = locator(pattern, "host").unwrap();
        loc.token
            .as_ref()
            .expect("token shape")
            .locate(line.as_bytes(), end)
    }

    #[test]
    fn an_address_after_a_literal_is_read_as_a_token() {
        let sshd =
            format!(r"^Failed \S+ for .* from {HOST}(?: on \S+)? port [0-9]+(?: ssh[0-9]*)?\s*$");
        let l = "Failed password for invalid user x from 2001:db8::7 port 22 ssh2";
        assert_eq!(token_pair(&sshd, l, l.len()), Some((40, 51)));
        let l = "Failed password for x from [192.0.2.1] port 22";
        assert_eq!(token_pair(&sshd, l, l.len()), Some((28, 37)));
        // A user name repeating the context leaves two candidates.
        let l = "Failed password for a from 10.0.0.1 port 22 from 192.0.2.1 port 22";
        assert_eq!(token_pair(&sshd, l, l.len()), None);
        // Only starts whose token the tail can follow are candidates.
        let named =
            format!(r"^client(?: @\S+)? {HOST}#[0-9]+(?: \([^)]*\))?: query '[^']*' denied\s*$");
        let l = "client @0x7f3a2c0c09ec 10.0.3.59#53 (example.com): query 'x/A/IN' denied";
        assert_eq!(token_pair(&named, l, l.len()), Some((23, 32)));
        let ufw = format!(r"^\[UFW BLOCK\] IN=\S* OUT=\S*(?: [A-Z]+=\S*)*? SRC={HOST} DST=\S+");
        let l = "[UFW BLOCK] IN=eth0 OUT= MAC=52:54 SRC=198.18.6.248 DST=203.0.113.1 LEN=44";
        assert_eq!(token_pair(&ufw, l, 67), Some((39, 51)));
        // A group that can hold the tail's first byte is no token.
        assert!(locator(r"^u .* from (?P<host>.+) port$", "host")
            .unwrap()
            .token
            .is_none());
        assert!(locator(r"^u (?:a|) (?P<host>\S+) x$", "host")
            .unwrap()
            .token
            .is_some());
    }

    /// Lines tried (more with `BANSTREAM_TOKEN_ROUNDS`, for a longer search).
    static ROUNDS: std::sync::LazyLock<usize> = std::sync::LazyLock::new(|| {
        std::env::var("BANSTREAM_TOKEN_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20_000)
    });

    #[test]
    fn the_token_reading_agrees_with_the_capture_engine_on_crafted_lines() {
        // Lines built from the pieces an attacker would repeat; every
        // answer must be the capture engine's.
        let pieces = [
            " from ",
            "1.2.3.4",
            "2001:db8::1",
            " port ",
            "22",
            "[",
            "]",
            " ",
            "x",
            "é",
            "#53",
            "client ",
            "@0x1",
            " user ",
            "from",
            ":",
            ".",
            " ssh2",
        ];
        let patterns = [
            format!(r"^Failed \S+ for .* from {HOST}(?: on \S+)? port [0-9]+(?: ssh[0-9]*)?\s*$"),
            format!(r"^Invalid user (?P<user>\S*) from {HOST}(?: port \d+)?"),
            format!(r"^client(?: @\S+)? {HOST}#[0-9]+(?: \([^)]*\))?"),
            format!(r"^(?:x )?\S*? ?from {HOST}\b"),
        ];
        let mut seed: u64 = 42;
        let mut next = |n: usize| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize % n
        };
        let heads = [
            "Failed password for ",
            "Invalid user ",
            "client ",
            "x from ",
            "",
        ];
        let compiled: Vec<(regex::Regex, Locator)> = patterns
            .iter()
            .map(|p| (regex::Regex::new(p).unwrap(), locator(p, "host").unwrap()))
            .collect();
        let (mut lines, mut answered) = (0, 0);
        for _ in 0..*ROUNDS {
            let mut l = heads[next(heads.len())].to_string();
            for _ in 0..next(12) {
                l.push_str(pieces[next(pieces.len())]);
            }
            // Half the lines end as a real one would.
            if next(2) == 0 {
                l.push_str([" from 1.2.3.4 port 22", " 2001:db8::1#53", " from [::1]"][next(3)]);
            }
            for (re, loc) in &compiled {
                let Some(c) = re.captures(&l) else { continue };
                lines += 1;
                let g = c.name("host").unwrap();
                let end = c.get(0).unwrap().end();
                if let Some(pair) = loc.token.as_ref().and_then(|t| t.locate(l.as_bytes(), end)) {
                    assert_eq!(pair, (g.start(), g.end()), "{re} on {l:?}");
                    answered += 1;
                }
                if let Some(pair) = loc.locate(&l, end) {
                    assert_eq!(pair, (g.start(), g.end()), "{re} on {l:?}");
                }
            }
        }
        assert!(
            lines > 2_000 && answered > lines / 2,
            "{lines} matched, {answered} read as tokens"
        );
    }
}
