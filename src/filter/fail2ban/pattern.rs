//! One fail2ban regex, compiled: tag expansion (`<HOST>`, `<F-USER>...`,
//! fail2ban's `failregex.py`), translation from Python's `re` dialect, and
//! the choice of engine.
//!
//! Engine choice, per pattern: the `regex` crate (linear time) whenever the
//! translated pattern compiles there; otherwise `fancy-regex`, which adds
//! the Python features stock filters use (look-around, back-references,
//! `(?P=name)`, conditionals `(?(name)...)`) and delegates every part
//! without them to `regex`. fancy-regex was chosen over PCRE2 with JIT
//! after measuring both on the stock filters (BENCHMARKS.md): the fallback
//! patterns run within a few percent of each other there, and fancy-regex
//! needs no C library.

use std::fmt;

/// IPv4 as fail2ban writes it (`IPAddr.IP_4_RE`).
const IP4: &str = r"(?:\d{1,3}\.){3}\d{1,3}";
/// IPv6 as fail2ban writes it, with its `(?<=:):` rewritten to `:`: every
/// repetition before it ends with `:`, so the look-behind always holds and
/// the pattern stays in the linear-time engine.
const IP6: &str = r"(?:[0-9a-fA-F]{1,4}::?|::){1,7}(?:[0-9a-fA-F]{1,4}|:)";

fn r_ip4() -> String {
    format!(r"(?:::f{{4,6}}:)?(?P<ip4>{IP4})")
}
fn r_ip6() -> String {
    format!(r"(?P<ip6>{IP6})")
}
const R_DNS: &str = r"(?P<dns>[\w\-.^_]*\w)";
fn r_addr() -> String {
    format!(r"\[?(?:{}|{})\]?", r_ip4(), r_ip6())
}
fn r_host() -> String {
    format!(r"(?:{}|{R_DNS})", r_addr())
}
const R_CIDR: &str = r"(?P<cidr>\d+)";
fn r_subnet() -> String {
    format!(r"\[?(?:{}|{})(?:/{R_CIDR})?\]?", r_ip4(), r_ip6())
}

/// Replaces fail2ban's tags with regex groups: `<HOST>` (address or name;
/// address only with `usedns = no`), `<ADDR>`, `<IP4>`, `<IP6>`, `<DNS>`,
/// `<CIDR>`, `<SUBNET>`, `<F-ID/>`, `<F-PORT/>`, `<SKIPLINES>`, and
/// `<F-NAME>...</F-NAME>` as the group `name` (`F-ID` → `fid`). Unknown
/// tags stay as written (literal text).
pub fn expand_tags(regex: &str, usedns: &str) -> String {
    let mut out = String::with_capacity(regex.len() + 128);
    let mut open: Vec<String> = Vec::new();
    let mut nl = 0;
    let mut rest = regex;
    while let Some(i) = rest.find('<') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        // fail2ban's FTAG_CRE: </?[\w\-]+/?>
        let Some(len) = ftag_len(tail) else {
            out.push('<');
            rest = &tail[1..];
            continue;
        };
        let body = &tail[1..len - 1];
        let tag = body;
        let repl: Option<String> = match tag {
            "HOST" => Some(if usedns == "no" { r_addr() } else { r_host() }),
            "SKIPLINES" => {
                let s = format!(r"\n(?P<skiplines{nl}>(?:(?:.*\n)*?))");
                nl += 1;
                Some(s)
            }
            "IP4" | "F-IP4/" => Some(r_ip4()),
            "IP6" | "F-IP6/" => Some(r_ip6()),
            "ADDR" | "F-ADDR/" => Some(r_addr()),
            "CIDR" | "F-CIDR/" => Some(R_CIDR.to_string()),
            "SUBNET" | "F-SUBNET/" => Some(r_subnet()),
            // With usedns = no a name is never a failure: the tag matches nothing.
            "DNS" | "F-DNS/" if usedns == "no" => Some(r"(?P<dns>[^\s\S])".to_string()),
            "DNS" | "F-DNS/" => Some(R_DNS.to_string()),
            "F-ID/" => Some(r"(?P<fid>\S+)".to_string()),
            "F-PORT/" => Some(r"(?P<fport>\w+)".to_string()),
            _ => None,
        };
        if let Some(r) = repl {
            out.push_str(&r);
            rest = &tail[len..];
            continue;
        }
        // <F-NAME> / </F-NAME> (upper case names only, as fail2ban).
        let (close, name) = match tag.strip_prefix('/') {
            Some(n) => (true, n),
            None => (false, tag),
        };
        let custom = name.strip_prefix("F-").filter(|n| {
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' || c == '-')
        });
        match custom {
            Some(n) if close => {
                if let Some(pos) = open.iter().position(|o| o == n) {
                    open.remove(pos);
                    out.push(')');
                } else {
                    out.push_str(&tail[..len]);
                }
            }
            Some(n) => {
                open.push(n.to_string());
                out.push_str(&format!("(?P<{}>", group_name(n)));
            }
            None => out.push_str(&tail[..len]),
        }
        rest = &tail[len..];
    }
    out.push_str(rest);
    out
}

/// Length of a tag `</?[\w\-]+/?>` at the start of `s`.
fn ftag_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 1;
    if b.get(i) == Some(&b'/') {
        i += 1;
    }
    let start = i;
    i += s[i..]
        .char_indices()
        .find(|(_, c)| !(c.is_alphanumeric() || *c == '_' || *c == '-'))
        .map(|(j, _)| j)
        .unwrap_or(s.len() - i);
    if i == start {
        return None;
    }
    if b.get(i) == Some(&b'/') {
        i += 1;
    }
    (b.get(i) == Some(&b'>')).then_some(i + 1)
}

/// fail2ban's `mapTag2Opt`: `F-ID` → `fid`, `F-PORT` → `fport`, others
/// lowercased.
fn group_name(tag: &str) -> String {
    let l = tag.to_lowercase();
    match l.as_str() {
        "id" => "fid".into(),
        "port" => "fport".into(),
        _ => l,
    }
}

/// Which engine runs a pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineKind {
    /// The `regex` crate: linear time.
    Regex,
    /// `fancy-regex`: backtracking for the Python-only features.
    Fancy,
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EngineKind::Regex => "regex",
            EngineKind::Fancy => "fancy-regex",
        })
    }
}

/// Translates a Python `re` pattern into the `regex` crate's dialect.
/// Returns the translation and whether it needs a backtracking engine
/// (look-around, back-references, conditionals, atomic groups).
pub fn translate(py: &str) -> (String, bool) {
    let c: Vec<char> = py.chars().collect();
    let mut out = String::with_capacity(py.len() + 16);
    let mut fancy = false;
    let mut i = 0;
    // Inside a character class: Some(position after the opening bracket
    // and an optional ^).
    let mut class_start: Option<usize> = None;
    while i < c.len() {
        let ch = c[i];
        if let Some(start) = class_start {
            match ch {
                '\\' if i + 1 < c.len() => {
                    push_escape(&mut out, c[i + 1], true, &mut fancy);
                    i += 2;
                }
                ']' if i == start => {
                    out.push_str(r"\]");
                    i += 1;
                }
                ']' => {
                    out.push(']');
                    class_start = None;
                    i += 1;
                }
                '[' | '&' | '~' => {
                    out.push('\\');
                    out.push(ch);
                    i += 1;
                }
                '-' if c.get(i + 1) == Some(&'-') => {
                    out.push_str(r"\-\-");
                    i += 2;
                }
                _ => {
                    out.push(ch);
                    i += 1;
                }
            }
            continue;
        }
        match ch {
            '\\' if i + 1 < c.len() => {
                let n = c[i + 1];
                if n.is_ascii_digit() && n != '0' {
                    fancy = true;
                    out.push('\\');
                    out.push(n);
                } else {
                    push_escape(&mut out, n, false, &mut fancy);
                }
                i += 2;
            }
            '[' => {
                out.push('[');
                i += 1;
                if c.get(i) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                class_start = Some(i);
            }
            '(' if c.get(i + 1) == Some(&'?') => {
                let rest: String = c[i..c.len().min(i + 4)].iter().collect();
                if rest.starts_with("(?#") {
                    // A comment: dropped.
                    while i < c.len() && c[i] != ')' {
                        i += 1;
                    }
                    i += 1;
                } else if rest.starts_with("(?=")
                    || rest.starts_with("(?!")
                    || rest.starts_with("(?<=")
                    || rest.starts_with("(?<!")
                    || rest.starts_with("(?>")
                {
                    fancy = true;
                    out.push_str("(?");
                    i += 2;
                } else if rest.starts_with("(?P=") {
                    fancy = true;
                    out.push_str("(?P=");
                    i += 4;
                } else if rest.starts_with("(?(") {
                    // Conditional on a group: fancy-regex writes names as <name>.
                    fancy = true;
                    let close = c[i + 3..].iter().position(|x| *x == ')').map(|p| p + i + 3);
                    match close {
                        Some(e) => {
                            let name: String = c[i + 3..e].iter().collect();
                            if name.chars().all(|x| x.is_ascii_digit()) || name.starts_with('<') {
                                out.push_str(&format!("(?({name})"));
                            } else {
                                out.push_str(&format!("(?(<{name}>)"));
                            }
                            i = e + 1;
                        }
                        None => {
                            out.push_str("(?(");
                            i += 3;
                        }
                    }
                } else {
                    out.push_str("(?");
                    i += 2;
                }
            }
            '{' => match quantifier(&c[i..]) {
                Some((q, len)) => {
                    out.push_str(&q);
                    i += len;
                    // Possessive quantifier.
                    if c.get(i) == Some(&'+') {
                        fancy = true;
                    }
                }
                None => {
                    out.push_str(r"\{");
                    i += 1;
                }
            },
            '}' => {
                out.push_str(r"\}");
                i += 1;
            }
            '*' | '+' | '?' => {
                out.push(ch);
                i += 1;
                if c.get(i) == Some(&'+') && ch != '?' {
                    fancy = true;
                }
            }
            _ => {
                out.push(ch);
                i += 1;
            }
        }
    }
    (out, fancy)
}

/// A pattern the linear engine can parse that every match of a
/// backtracking pattern also matches: look-arounds dropped (they consume
/// nothing), back-references and conditions loosened to `.*?` and an
/// alternation, atomic groups made plain. Used only to find the literals a
/// line must contain (the prefilter); `(?:)` when that fails.
pub fn skeleton(fancy: &str) -> String {
    let c: Vec<char> = fancy.chars().collect();
    let mut out = String::with_capacity(fancy.len());
    let mut i = 0;
    let mut in_class = false;
    while i < c.len() {
        let rest: String = c[i..c.len().min(i + 4)].iter().collect();
        if in_class {
            if c[i] == '\\' && i + 1 < c.len() {
                out.push(c[i]);
                out.push(c[i + 1]);
                i += 2;
                continue;
            }
            if c[i] == ']' {
                in_class = false;
            }
            out.push(c[i]);
            i += 1;
            continue;
        }
        if c[i] == '\\' && i + 1 < c.len() {
            if c[i + 1].is_ascii_digit() && c[i + 1] != '0' {
                out.push_str("(?s:.*?)");
            } else {
                out.push(c[i]);
                out.push(c[i + 1]);
            }
            i += 2;
            continue;
        }
        if c[i] == '[' {
            in_class = true;
            out.push('[');
            i += 1;
            if c.get(i) == Some(&'^') {
                out.push('^');
                i += 1;
            }
            if c.get(i) == Some(&']') {
                out.push_str("\\]");
                i += 1;
            }
            continue;
        }
        let look = ["(?=", "(?!", "(?<=", "(?<!"]
            .iter()
            .find(|p| rest.starts_with(**p));
        if let Some(p) = look {
            // Skip the whole group.
            let mut depth = 0i32;
            let mut j = i;
            let mut cls = false;
            while j < c.len() {
                match c[j] {
                    '\\' => j += 1,
                    '[' if !cls => cls = true,
                    ']' if cls => cls = false,
                    '(' if !cls => depth += 1,
                    ')' if !cls => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            let _ = p;
            i = j + 1;
            continue;
        }
        if rest.starts_with("(?P=") {
            let close = c[i..]
                .iter()
                .position(|x| *x == ')')
                .map_or(c.len(), |p| p + i);
            out.push_str("(?s:.*?)");
            i = close + 1;
            continue;
        }
        if rest.starts_with("(?(") {
            // (?(cond)yes|no): either branch.
            let close = c[i + 3..]
                .iter()
                .position(|x| *x == ')')
                .map_or(c.len(), |p| p + i + 3);
            out.push_str("(?:");
            i = close + 1;
            continue;
        }
        if rest.starts_with("(?>") {
            out.push_str("(?:");
            i += 3;
            continue;
        }
        out.push(c[i]);
        i += 1;
    }
    match regex_syntax::Parser::new().parse(&out) {
        Ok(_) => out,
        Err(_) => String::from("(?:)"),
    }
}

/// `{n}`, `{n,}`, `{n,m}`, `{,m}` at the start of `c`: the translated
/// quantifier and its length, or `None` for a literal brace (Python).
fn quantifier(c: &[char]) -> Option<(String, usize)> {
    let end = c.iter().position(|x| *x == '}')?;
    let body: String = c[1..end].iter().collect();
    let ok = |s: &str| !s.is_empty() && s.chars().all(|x| x.is_ascii_digit());
    let q = match body.split_once(',') {
        None if ok(&body) => format!("{{{body}}}"),
        Some((a, b)) if ok(a) && (b.is_empty() || ok(b)) => format!("{{{a},{b}}}"),
        Some(("", b)) if ok(b) => format!("{{0,{b}}}"),
        _ => return None,
    };
    Some((q, end + 1))
}

fn push_escape(out: &mut String, n: char, in_class: bool, fancy: &mut bool) {
    match n {
        'Z' if !in_class => out.push_str(r"\z"),
        '<' | '>' | '\'' | '"' | '/' | ':' | '!' | '@' | '%' | ',' | ';' | '=' | '_' | '`' => {
            out.push(n)
        }
        ' ' => out.push_str(r"\x20"),
        'G' => {
            *fancy = true;
            out.push_str(r"\G");
        }
        _ => {
            out.push('\\');
            out.push(n);
        }
    }
}

/// A compiled pattern in one of the two engines.
pub enum Compiled {
    /// Linear-time engine.
    Regex(regex::Regex),
    /// Backtracking engine.
    Fancy(fancy_regex::Regex),
}

/// Byte spans of a match's groups (index = group number).
#[derive(Clone, Debug, Default)]
pub struct Spans(pub Vec<Option<(usize, usize)>>);

/// A process-unique number for a compiled regex. Per-thread caches key on
/// it: an address would be reused by the next regex allocated where a
/// dropped one lived (a reload, the next filter), and that one would read
/// the dropped one's entry.
pub(crate) fn unique_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A compiled pattern with its group names.
pub struct Pattern {
    /// Key of this pattern's capture slots in the per-thread cache.
    id: u64,
    /// The engine.
    pub compiled: Compiled,
    /// The pattern as written in the filter (after interpolation, before tag expansion).
    pub source: String,
    /// What was compiled.
    pub expanded: String,
    /// Group names by index.
    pub names: Vec<Option<String>>,
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?}, {})", self.source, self.engine())
    }
}

thread_local! {
    static LOCS: std::cell::RefCell<std::collections::HashMap<u64, regex::CaptureLocations>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// Backtracking budget per match: a pathological pattern gives up rather
/// than stalling the pipeline.
const BACKTRACK_LIMIT: usize = 1_000_000;

impl Pattern {
    /// Expands tags, translates, and compiles with the first engine that
    /// accepts the pattern. `multiline` turns on `^`/`$` at line breaks.
    pub fn compile(source: &str, usedns: &str, multiline: bool) -> Result<Pattern, String> {
        let expanded = expand_tags(source, usedns);
        let expanded = glob_flags_to_local(&expanded);
        let (mut rust, needs_fancy) = translate(&expanded);
        if multiline {
            rust = format!("(?m){rust}");
        }
        if !needs_fancy {
            if let Ok(re) = regex::RegexBuilder::new(&rust)
                .size_limit(64 << 20)
                .dfa_size_limit(16 << 20)
                .build()
            {
                let names = re.capture_names().map(|n| n.map(str::to_string)).collect();
                return Ok(Pattern {
                    id: unique_id(),
                    compiled: Compiled::Regex(re),
                    source: source.to_string(),
                    expanded: rust,
                    names,
                });
            }
        }
        let re = fancy_regex::RegexBuilder::new(&rust)
            .backtrack_limit(BACKTRACK_LIMIT)
            .delegate_size_limit(64 << 20)
            .build()
            .map_err(|e| e.to_string())?;
        let names = re.capture_names().map(|n| n.map(str::to_string)).collect();
        Ok(Pattern {
            id: unique_id(),
            compiled: Compiled::Fancy(re),
            source: source.to_string(),
            expanded: rust,
            names,
        })
    }

    /// The engine in use.
    pub fn engine(&self) -> EngineKind {
        match self.compiled {
            Compiled::Regex(_) => EngineKind::Regex,
            Compiled::Fancy(_) => EngineKind::Fancy,
        }
    }

    /// Index of a named group.
    pub fn group(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n.as_deref() == Some(name))
    }

    /// Searches `text`; fills `spans` with the groups of the first match.
    pub fn search(&self, text: &str, spans: &mut Spans) -> bool {
        spans.0.clear();
        match &self.compiled {
            Compiled::Regex(re) => LOCS.with(|cell| {
                // Capture slots reused per pattern and thread.
                let mut cache = cell.borrow_mut();
                if cache.len() > 4096 {
                    cache.clear();
                }
                let locs = cache
                    .entry(self.id)
                    .or_insert_with(|| re.capture_locations());
                if re.captures_read(locs, text).is_none() {
                    return false;
                }
                for g in 0..locs.len() {
                    spans.0.push(locs.get(g));
                }
                true
            }),
            Compiled::Fancy(re) => match re.captures(text) {
                Ok(Some(caps)) => {
                    for g in 0..caps.len() {
                        spans.0.push(caps.get(g).map(|m| (m.start(), m.end())));
                    }
                    true
                }
                // No match, or the backtracking budget ran out.
                _ => false,
            },
        }
    }

    /// Whether `text` contains a match.
    pub fn is_match(&self, text: &str) -> bool {
        match &self.compiled {
            Compiled::Regex(re) => re.is_match(text),
            Compiled::Fancy(re) => re.is_match(text).unwrap_or(false),
        }
    }
}

/// fail2ban maps a global flag group at the start of a group to a local one:
/// `((?i)x)` → `((?i:x)`, `(?:(?i)x)` → `(?i:x)`.
fn glob_flags_to_local(p: &str) -> String {
    let b = p.as_bytes();
    let mut out = String::with_capacity(p.len());
    let mut i = 0;
    while i < p.len() {
        let escaped = i > 0 && b[i - 1] == b'\\';
        if b[i] == b'(' && !escaped {
            let mut j = i + 1;
            if p[j..].starts_with("?:") {
                j += 2;
            }
            if p[j..].starts_with("(?") {
                let k = j + 2;
                let letters = p[k..]
                    .bytes()
                    .take_while(|x| x.is_ascii_lowercase())
                    .count();
                if letters > 0 && p[k + letters..].starts_with(')') {
                    out.push_str(&p[j..k + letters]);
                    out.push(':');
                    i = k + letters + 1;
                    continue;
                }
            }
        }
        let ch = p[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pattern compiled where a dropped one lived gets its own capture
    /// slots: the per-thread cache once keyed them by the regex's address,
    /// so a reload (or the next filter) could read a stale, shorter slot
    /// list and lose the `<HOST>` group.
    #[test]
    fn a_new_pattern_never_reuses_a_dropped_patterns_capture_slots() {
        // The same binding in a loop: the same place in memory each turn.
        for i in 0..64 {
            let source = ["^a", "^(x)(y)? from <HOST>$"][i % 2];
            let p = Pattern::compile(source, "no", false).unwrap();
            if i % 2 == 0 {
                assert!(p.search("a", &mut Spans::default()));
            } else {
                assert_eq!(
                    host_of(&p, "xy from 192.0.2.7").as_deref(),
                    Some("192.0.2.7")
                );
            }
        }
    }

    fn host_of(p: &Pattern, text: &str) -> Option<String> {
        let mut s = Spans::default();
        if !p.search(text, &mut s) {
            return None;
        }
        for g in ["ip4", "ip6", "dns"] {
            if let Some(Some((a, b))) = p.group(g).and_then(|i| s.0.get(i).copied()) {
                return Some(text[a..b].to_string());
            }
        }
        None
    }

    #[test]
    fn host_tags_and_usedns() {
        let p = Pattern::compile("from <HOST> port", "warn", false).unwrap();
        assert_eq!(p.engine(), EngineKind::Regex);
        assert_eq!(
            host_of(&p, "from ::ffff:1.2.3.4 port").as_deref(),
            Some("1.2.3.4")
        );
        assert_eq!(
            host_of(&p, "from 2001:db8::1 port").as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(host_of(&p, "from [::1] port").as_deref(), Some("::1"));
        assert_eq!(
            host_of(&p, "from example.com port").as_deref(),
            Some("example.com")
        );
        let p = Pattern::compile("from <HOST> port", "no", false).unwrap();
        assert_eq!(host_of(&p, "from example.com port"), None);
        let p = Pattern::compile("from <DNS> port", "no", false).unwrap();
        assert!(!p.is_match("from example.com port"));
        let p = Pattern::compile("from <DNS> port", "warn", false).unwrap();
        assert_eq!(
            host_of(&p, "from example.com port").as_deref(),
            Some("example.com")
        );
    }

    #[test]
    fn python_features_fall_back_to_fancy() {
        let p = Pattern::compile(
            r"^Failed (?P<cond_inv>invalid user )?<F-USER>(?P<cond_user>\S+)|(?(cond_inv)(?:(?! from ).)*?|[^:]+)</F-USER> from <HOST>(?(cond_user): |$)",
            "warn",
            false,
        )
        .unwrap();
        assert_eq!(p.engine(), EngineKind::Fancy);
        assert_eq!(
            host_of(&p, "Failed invalid user a b from 1.2.3.4").as_deref(),
            Some("1.2.3.4")
        );
        let p = Pattern::compile(r"(?P<x>\d+) (?P=x) <ADDR>", "warn", false).unwrap();
        assert_eq!(host_of(&p, "12 12 1.2.3.4").as_deref(), Some("1.2.3.4"));
        assert_eq!(host_of(&p, "12 13 1.2.3.4"), None);
    }

    #[test]
    fn python_literals_translate() {
        for (py, text, m) in [
            (r"a{x}", "a{x}", true),
            (r"a{,2}b", "aab", true),
            (r"[[]x", "[x", true),
            (r"[]a]", "]", true),
            (r"x\Z", "x", true),
            (r"\<b\>", "<b>", true),
            (r"a\ b", "a b", true),
            (r"((?i)abc)", "ABC", true),
            (r"a(?#comment)b", "ab", true),
        ] {
            let p = Pattern::compile(py, "warn", false).unwrap_or_else(|e| panic!("{py}: {e}"));
            assert_eq!(p.is_match(text), m, "{py} on {text}");
        }
    }

    #[test]
    fn skeletons_keep_the_literals_and_parse() {
        let p = Pattern::compile(
            r"^Failed (?P<cond_inv>invalid user )?<F-USER>(?P<cond_user>\S+)|(?(cond_inv)(?:(?! from ).)*?|[^:]+)</F-USER> from <HOST>(?(cond_user): |$)",
            "warn",
            false,
        )
        .unwrap();
        let s = skeleton(&p.expanded);
        assert!(s.contains("Failed") && s.contains(" from "), "{s}");
        assert!(regex::Regex::new(&s).is_ok(), "{s}");
        assert_eq!(skeleton(r"(?P<x>a)(?P=x)b(?<=b)"), "(?P<x>a)(?s:.*?)b");
    }

    #[test]
    fn custom_tags_become_groups() {
        let e = expand_tags("<F-USER>x</F-USER> <F-NOFAIL>y</F-NOFAIL> <F-ID/> <unknown> <F-ALT_USER1>z</F-ALT_USER1>", "warn");
        assert!(e.contains("(?P<user>x)"), "{e}");
        assert!(e.contains("(?P<nofail>y)"), "{e}");
        assert!(e.contains(r"(?P<fid>\S+)"), "{e}");
        assert!(e.contains("<unknown>"), "{e}");
        assert!(e.contains("(?P<alt_user1>z)"), "{e}");
    }
}
