//! Literal prefilter: before any failregex runs, one Aho-Corasick pass over
//! the message finds which regexes could possibly match, from literals each
//! regex requires. A message with none of them costs one linear scan.

use aho_corasick::{AhoCorasick, MatchKind};
use regex_syntax::hir::{Hir, HirKind};

/// Literals shorter than this are not worth a prefilter entry.
const MIN_LITERAL: usize = 3;

/// Which regexes may match a message.
#[derive(Debug)]
pub struct Prefilter {
    ac: Option<AhoCorasick>,
    /// For each Aho-Corasick pattern, the regex it belongs to.
    owner: Vec<usize>,
    /// Regexes with no usable literal: always candidates.
    always: Vec<bool>,
    /// The literals, one of which each regex requires.
    literals: Vec<Vec<u8>>,
    /// Every regex has a literal.
    complete: bool,
}

impl Prefilter {
    /// Builds the prefilter from each regex's parsed pattern. The automaton
    /// is only built when `search` is set: a filter whose patterns are all
    /// anchored finds its first match another way and needs the literals
    /// alone (for the line gate).
    pub fn new(patterns: &[Hir], search: bool) -> Prefilter {
        let mut lits: Vec<Vec<u8>> = Vec::new();
        let mut owner = Vec::new();
        let mut always = Vec::with_capacity(patterns.len());
        for (i, h) in patterns.iter().enumerate() {
            match required(h) {
                Some(set) => {
                    for l in set {
                        lits.push(l);
                        owner.push(i);
                    }
                    always.push(false);
                }
                None => always.push(true),
            }
        }
        let complete = !lits.is_empty() && !always.iter().any(|a| *a);
        let ac = match search && !lits.is_empty() {
            true => AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .build(&lits)
                .ok(),
            false => None,
        };
        if ac.is_none() {
            always.iter_mut().for_each(|a| *a = true);
        }
        Prefilter {
            ac,
            owner,
            always,
            literals: lits,
            complete,
        }
    }

    /// Builds the prefilter, with its automaton, from pattern texts; a
    /// pattern that does not parse here simply gets no literal.
    pub fn from_patterns(patterns: &[String]) -> Prefilter {
        let hirs: Vec<Hir> = patterns
            .iter()
            .map(|p| regex_syntax::Parser::new().parse(p).unwrap_or(Hir::empty()))
            .collect();
        Prefilter::new(&hirs, true)
    }

    /// Marks in `out` (one flag per regex) the regexes that may match `text`.
    pub fn candidates(&self, text: &str, out: &mut Vec<bool>) {
        out.clear();
        out.extend_from_slice(&self.always);
        if let Some(ac) = &self.ac {
            for m in ac.find_overlapping_iter(text) {
                out[self.owner[m.pattern().as_usize()]] = true;
            }
        }
    }

    /// True when every regex has a literal, so a message without any of them
    /// can be skipped outright.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// When the prefilter is complete, the literals one of which any message
    /// that can match contains.
    pub fn literals(&self) -> Option<&[Vec<u8>]> {
        self.is_complete().then_some(self.literals.as_slice())
    }
}

/// A set of literals one of which must occur in any match of `hir`.
fn required(hir: &Hir) -> Option<Vec<Vec<u8>>> {
    match hir.kind() {
        HirKind::Literal(lit) => (lit.0.len() >= MIN_LITERAL).then(|| vec![lit.0.to_vec()]),
        HirKind::Capture(c) => required(&c.sub),
        HirKind::Repetition(r) if r.min >= 1 => required(&r.sub),
        HirKind::Concat(subs) => {
            // Adjacent literal pieces are merged by the parser; pick the
            // child whose shortest alternative is longest (most selective).
            subs.iter()
                .filter_map(required)
                .max_by_key(|set| set.iter().map(Vec::len).min().unwrap_or(0))
        }
        HirKind::Alternation(subs) => {
            let mut all = Vec::new();
            for s in subs {
                all.extend(required(s)?);
            }
            Some(all)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefilter(patterns: &[&str]) -> Prefilter {
        let hirs: Vec<Hir> = patterns
            .iter()
            .map(|p| regex_syntax::Parser::new().parse(p).unwrap())
            .collect();
        Prefilter::new(&hirs, true)
    }

    fn cands(p: &Prefilter, t: &str) -> Vec<bool> {
        let mut v = Vec::new();
        p.candidates(t, &mut v);
        v
    }

    #[test]
    fn picks_required_literals() {
        let p = prefilter(&[
            r"^Failed \S+ for .* from (?P<host>\S+) port \d+",
            r"^(?:Invalid|Illegal) user .* from (?P<host>\S+)",
            r"^\S+$",
        ]);
        assert_eq!(
            cands(&p, "Failed password for x from 1.2.3.4 port 1"),
            vec![true, false, true]
        );
        assert_eq!(
            cands(&p, "Illegal user x from 1.2.3.4"),
            vec![false, true, true]
        );
        assert!(!p.is_complete());
        assert!(p.literals().is_none());
        let p = prefilter(&[r"^Failed (?P<x>a|b)"]);
        assert!(p.is_complete());
        assert_eq!(p.literals(), Some(&[b"Failed ".to_vec()][..]));
        assert_eq!(cands(&p, "Accepted publickey"), vec![false]);
    }

    #[test]
    fn optional_parts_are_not_required() {
        let p = prefilter(&[r"^(?:error: )?Bad"]);
        assert_eq!(cands(&p, "Bad protocol"), vec![true]);
    }
}
