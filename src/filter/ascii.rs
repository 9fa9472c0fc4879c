//! ASCII digit classes for native failregexes.
//!
//! In the `regex` crate `\d` is Unicode: about 70 ranges of digits from
//! every script. Inside a pattern like `port \d+` that multiplies the states
//! of the automata, and the capture engine (which walks them per byte) pays
//! for it on every hit. Every digit a daemon writes into a log line (ports,
//! pids, addresses, counters) is ASCII, so native filters compile `\d` as
//! `[0-9]`. Only digits are narrowed: `\w` and `\s` stay Unicode, because a
//! user name is text an attacker chooses and a pattern that stopped matching
//! a non-ASCII name would let that attacker through unseen.

use regex_syntax::ast::{self, Ast, ClassPerlKind, ClassSetItem, Visitor};

/// Rewrites every `\d` / `\D` of `pattern` to its ASCII form. A pattern the
/// parser rejects is returned unchanged (compiling it reports the error).
pub fn ascii_digits(pattern: &str) -> String {
    let Ok(ast) = ast::parse::Parser::new().parse(pattern) else {
        return pattern.to_string();
    };
    let Ok(mut edits) = ast::visit(&ast, Collect(Vec::new())) else {
        return pattern.to_string();
    };
    if edits.is_empty() {
        return pattern.to_string();
    }
    edits.sort_by_key(|e| e.0);
    let mut out = String::with_capacity(pattern.len() + 8 * edits.len());
    let mut at = 0;
    for (start, end, rep) in edits {
        if start < at || end > pattern.len() {
            return pattern.to_string(); // overlapping spans: do not guess
        }
        out.push_str(&pattern[at..start]);
        out.push_str(rep);
        at = end;
    }
    out.push_str(&pattern[at..]);
    out
}

/// Byte spans of digit classes with their replacements.
struct Collect(Vec<(usize, usize, &'static str)>);

impl Collect {
    fn perl(&mut self, c: &ast::ClassPerl, in_set: bool) {
        if c.kind != ClassPerlKind::Digit {
            return;
        }
        // Inside a bracketed class a nested class keeps the union intact.
        let rep = match (c.negated, in_set) {
            (false, false) => "[0-9]",
            (false, true) => "0-9",
            (true, _) => "[^0-9]",
        };
        self.0.push((c.span.start.offset, c.span.end.offset, rep));
    }
}

impl Visitor for Collect {
    type Output = Vec<(usize, usize, &'static str)>;
    type Err = ();

    fn finish(self) -> Result<Self::Output, ()> {
        Ok(self.0)
    }

    fn visit_pre(&mut self, a: &Ast) -> Result<(), ()> {
        if let Ast::ClassPerl(c) = a {
            self.perl(c, false);
        }
        Ok(())
    }

    fn visit_class_set_item_pre(&mut self, item: &ClassSetItem) -> Result<(), ()> {
        if let ClassSetItem::Perl(c) = item {
            self.perl(c, true);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_become_ascii_inside_and_outside_classes() {
        assert_eq!(ascii_digits(r"port \d+"), "port [0-9]+");
        assert_eq!(ascii_digits(r"[\d.]+ \D"), "[0-9.]+ [^0-9]");
        assert_eq!(ascii_digits(r"[^\D:]"), "[^[^0-9]:]");
        // Escaped backslashes and other classes are left alone.
        assert_eq!(ascii_digits(r"\\d \w \s \S"), r"\\d \w \s \S");
        // Unparseable: unchanged, so the compiler names the real error.
        assert_eq!(ascii_digits(r"(\d"), r"(\d");
    }

    #[test]
    fn rewritten_patterns_mean_the_same_on_ascii() {
        for p in [r"^a \d{1,3}\.\d+ b$", r"x[\d,]+y", r"[^\D]", r"\D+"] {
            let a = regex::Regex::new(p).unwrap();
            let b = regex::Regex::new(&ascii_digits(p)).unwrap();
            for s in ["a 1.22 b", "x1,2y", "7", "ab", "a 999.0 b"] {
                assert_eq!(a.is_match(s), b.is_match(s), "{p} on {s}");
            }
        }
        // A non-ASCII digit is no longer a digit.
        assert!(!regex::Regex::new(&ascii_digits(r"^\d$"))
            .unwrap()
            .is_match("٣"));
    }
}
