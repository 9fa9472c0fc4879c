//! fail2ban filters (`filter.d/NAME.conf`) run in-stream.
//!
//! Receives a routed [`Event`] and rebuilds the line fail2ban's regexes are
//! written against: `HOST PROGRAM[PID]: MESSAGE` (the shape `%(__prefix_line)s`
//! of common.conf expects after the date; a line without a hostname, as
//! BusyBox and musl send, gets `localhost` so that filters requiring a
//! hostname token still match). A line with no syslog header at all (a raw
//! log file given to `test-filter`) is used as written, with its date
//! removed by the filter's `datepattern` or fail2ban's default templates.
//!
//! Then, as fail2ban's `Filter.findFailure` does: ignoreregex first when
//! there are few, prefregex (its `<F-CONTENT>` becomes the text the
//! failregexes see), the first failregex that matches decides, an
//! ignoreregex can veto it.
//!
//! Matching one line is stateless ([`Matcher::examine`]). Filters whose
//! meaning spans lines keep per-jail state in a [`State`] through
//! [`Matcher::correlate`]: `<F-MLFID>` filters (sshd) merge the lines of one
//! connection the way fail2ban's `_mergeFailure` does, and the few filters
//! whose regexes span lines (`<SKIPLINES>`, `\n`) keep the last `maxlines`
//! lines per (host, program, pid) instead of one global buffer.

pub mod date;
pub mod pattern;
pub mod state;

use std::cell::RefCell;
use std::time::SystemTime;

use crate::syslog::{Event, Format, Peer};

use super::prefilter::Prefilter;
use super::{HitKind, Verdict};
pub use pattern::{EngineKind, Pattern, Spans};
pub use state::State;

/// A pattern as read from the filter files, with its place for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatternSource {
    /// The regex after interpolation and `<tag>` substitution.
    pub regex: String,
    /// The file it was written in.
    pub file: String,
    /// 1-based line (0 when unknown).
    pub line: usize,
}

/// A filter as fail2ban's configuration reader produces it.
#[derive(Clone, Debug, Default)]
pub struct FilterDef {
    /// The filter's name (`sshd`).
    pub name: String,
    /// Its main file.
    pub origin: String,
    /// `prefregex`.
    pub prefregex: Option<PatternSource>,
    /// `failregex`, in order.
    pub failregex: Vec<PatternSource>,
    /// `ignoreregex`.
    pub ignoreregex: Vec<PatternSource>,
    /// `maxlines` (1: single-line).
    pub maxlines: usize,
    /// `datepattern` (used only for lines without a syslog header).
    pub datepattern: Option<String>,
    /// `usedns`: `yes`, `warn`, `no` or `raw`.
    pub usedns: String,
    /// The `_daemon` regex, when the filter's regexes are anchored to it
    /// through `%(__prefix_line)s`.
    pub daemon: Option<String>,
}

/// A compile problem, naming the file and line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {what} {regex:?} does not compile: {reason}")]
pub struct CompileError {
    /// File of the pattern.
    pub file: String,
    /// Line of the pattern.
    pub line: usize,
    /// `failregex`, `prefregex`, ...
    pub what: &'static str,
    /// The pattern.
    pub regex: String,
    /// Why.
    pub reason: String,
}

/// Lines kept at most for a multi-line filter (fail2ban's `maxlines`).
pub const MAX_LINES: usize = 64;
/// The hostname given to lines that carry none.
pub const NO_HOST: &str = "localhost";

/// A compiled fail2ban filter.
#[derive(Debug)]
pub struct Matcher {
    /// Process-unique: keys this matcher's entry in `LAST_HIT`.
    id: u64,
    def: FilterDef,
    pref: Option<Pattern>,
    fail: Vec<Pattern>,
    ignore: Vec<Pattern>,
    prefilter: Prefilter,
    /// Regexes span lines: buffer per session.
    multiline: bool,
    /// Some regex uses `<F-MLFID>` (or the prefregex does).
    mlfid: bool,
    /// The failregexes / prefregex carry F-NOFAIL, F-MLFFORGET or
    /// F-MLFGAINED markers only meaningful with state.
    daemon_re: Option<regex::Regex>,
    date: date::DateDetector,
}

/// What one line matched, before correlation.
#[derive(Debug, Default, Clone)]
pub struct LineHit {
    /// Index of the failregex.
    pub regex: usize,
    /// ip4/ip6/dns (or F-ID) text, normalised when it is an address.
    pub host: Option<String>,
    /// `<F-USER>` (or an `alt_user`).
    pub user: Option<String>,
    /// `<F-MLFID>` text.
    pub mlfid: Option<String>,
    /// `<F-NOFAIL>` matched.
    pub nofail: bool,
    /// `<F-MLFFORGET>` matched.
    pub forget: bool,
    /// `<F-MLFGAINED>` matched.
    pub gained: bool,
    /// Byte span of the host within the matched text, and which text.
    host_span: Option<(usize, usize)>,
}

/// A line's result before correlation.
#[derive(Debug)]
pub enum LineMatch {
    /// Nothing matched.
    Miss,
    /// A failregex matched but an ignoreregex vetoed it.
    Ignored(usize),
    /// A failregex matched.
    Hit(LineHit),
}

/// The result of correlating a hit with earlier lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Correlated {
    /// Not a failure (a helper line, a pending failure, an ignored one).
    Nothing,
    /// A failure with the host it is attributed to (if any).
    Failure {
        /// Index of the failregex.
        regex: usize,
        /// Host text (an address when it parses as one).
        host: Option<String>,
    },
}

thread_local! {
    /// The last hit `examine` found on this thread, so that `correlate` on
    /// the same event does not match again: (matcher id, message address,
    /// hash of the event's fields, hit).
    static LAST_HIT: RefCell<Option<(usize, usize, usize, LineHit)>> = const { RefCell::new(None) };
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
    static SPANS: RefCell<(Spans, Spans)> = RefCell::new((Spans::default(), Spans::default()));
    static CANDS: RefCell<Vec<bool>> = const { RefCell::new(Vec::new()) };
}

/// Where the parts of a rebuilt line came from, to hand captures back as
/// slices of the event.
struct Layout {
    /// Offset of the message in the rebuilt line.
    msg_at: usize,
    /// For raw lines with the date cut out: (cut start in msg, cut length).
    cut: Option<(usize, usize)>,
    /// Offset and length of the host in the rebuilt line.
    host_at: Option<(usize, usize)>,
}

impl Matcher {
    /// Compiles a filter definition. Errors name the file and line of the
    /// pattern no engine accepts.
    pub fn compile(def: FilterDef) -> Result<Matcher, Vec<CompileError>> {
        let mut errors = Vec::new();
        let multiline = def.maxlines > 1
            && def
                .failregex
                .iter()
                .chain(def.prefregex.iter())
                .any(|p| p.regex.contains("<SKIPLINES>") || p.regex.contains(r"\n"));
        let usedns = def.usedns.clone();
        let mut one = |what: &'static str, p: &PatternSource| -> Option<Pattern> {
            match Pattern::compile(&p.regex, &usedns, multiline) {
                Ok(x) => Some(x),
                Err(reason) => {
                    errors.push(CompileError {
                        file: p.file.clone(),
                        line: p.line,
                        what,
                        regex: p.regex.clone(),
                        reason: reason.lines().next().unwrap_or("").to_string(),
                    });
                    None
                }
            }
        };
        let pref = def.prefregex.as_ref().and_then(|p| one("prefregex", p));
        let fail: Vec<Pattern> = def
            .failregex
            .iter()
            .filter_map(|p| one("failregex", p))
            .collect();
        let ignore: Vec<Pattern> = def
            .ignoreregex
            .iter()
            .filter_map(|p| one("ignoreregex", p))
            .collect();
        if def.failregex.is_empty() {
            errors.push(CompileError {
                file: def.origin.clone(),
                line: 0,
                what: "failregex",
                regex: String::new(),
                reason: "the filter has no failregex".into(),
            });
        }
        // fail2ban refuses a failregex without an address or id group.
        const IDS: [&str; 5] = ["fid", "ip4", "ip6", "dns", "mlfid"];
        let pref_has_id = pref
            .as_ref()
            .is_some_and(|p| IDS.iter().any(|g| p.group(g).is_some()));
        for (p, src) in fail.iter().zip(&def.failregex) {
            if !pref_has_id && !IDS.iter().any(|g| p.group(g).is_some()) {
                errors.push(CompileError {
                    file: src.file.clone(),
                    line: src.line,
                    what: "failregex",
                    regex: src.regex.clone(),
                    reason: "no <HOST>, <ADDR>, <F-ID> or <F-MLFID> group".into(),
                });
            }
        }
        let date = match date::DateDetector::new(def.datepattern.as_deref()) {
            Ok(d) => d,
            Err(reason) => {
                errors.push(CompileError {
                    file: def.origin.clone(),
                    line: 0,
                    what: "datepattern",
                    regex: def.datepattern.clone().unwrap_or_default(),
                    reason,
                });
                date::DateDetector::default()
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let mlfid = pref.iter().chain(&fail).any(|p| p.group("mlfid").is_some());
        let daemon_re = def.daemon.as_deref().and_then(|d| {
            let (t, fancy) = pattern::translate(d);
            if fancy {
                return None;
            }
            regex::Regex::new(&format!(r"^[\[\(]?(?:{t})(?:\(\S+\))?[\]\)]?$")).ok()
        });
        let expanded: Vec<String> = fail
            .iter()
            .map(|p| match p.engine() {
                EngineKind::Regex => p.expanded.clone(),
                // Literals are taken from a skeleton without the fancy parts.
                EngineKind::Fancy => pattern::skeleton(&p.expanded),
            })
            .collect();
        Ok(Matcher {
            id: pattern::unique_id(),
            prefilter: Prefilter::from_patterns(&expanded),
            def,
            pref,
            fail,
            ignore,
            multiline,
            mlfid,
            daemon_re,
            date,
        })
    }

    /// The definition it was built from.
    pub fn def(&self) -> &FilterDef {
        &self.def
    }

    /// The failregexes as read, with the engine each runs in.
    pub fn failregexes(&self) -> impl Iterator<Item = (&str, EngineKind)> {
        self.fail.iter().map(|p| (p.source.as_str(), p.engine()))
    }

    /// Every compiled pattern with its role (for `check`).
    pub fn patterns(&self) -> impl Iterator<Item = (&'static str, &Pattern)> {
        self.pref
            .iter()
            .map(|p| ("prefregex", p))
            .chain(self.fail.iter().map(|p| ("failregex", p)))
            .chain(self.ignore.iter().map(|p| ("ignoreregex", p)))
    }

    /// The program filter (`_daemon`), when the regexes are anchored to it.
    pub fn daemon_regex(&self) -> Option<&regex::Regex> {
        self.daemon_re.as_ref()
    }

    /// The program name the rebuilt line shows: `sshd` for OpenSSH 9.8+'s
    /// `sshd-session` when the filter's `_daemon` knows only `sshd`, so its
    /// `%(__prefix_line)s` matches (see [`crate::filter::program_alias`]).
    fn shown_program<'p>(&self, program: &'p str) -> &'p str {
        match (&self.daemon_re, crate::filter::program_alias(program)) {
            (Some(re), Some(alias)) if !re.is_match(program) && re.is_match(alias) => alias,
            _ => program,
        }
    }

    /// Whether correlation state is needed (mlfid or multi-line).
    pub fn is_stateful(&self) -> bool {
        self.mlfid || self.multiline
    }

    /// Whether the regexes span lines.
    pub fn is_multiline(&self) -> bool {
        self.multiline
    }

    /// Rebuilds the line fail2ban would see for an event into `out`.
    fn build_line(&self, ev: &Event<'_>, out: &mut String) -> Layout {
        out.clear();
        if ev.format == Format::Unparsed || ev.program.is_empty() {
            return self.raw_line(ev.msg, 0, out);
        }
        // A line read from a file whose header does not hold together (no
        // timestamp and no host, or a "host" no host name looks like) is an
        // application's own log line that merely resembles syslog
        // (`t=2020-10-19T17:44:33 lvl=...`, `DATE [WARNING] file.c:12 ...`):
        // read it as written, less its date, as fail2ban reads files.
        if Self::reads_raw(ev) {
            let mut raw = String::with_capacity(ev.program.len() + ev.msg.len() + 64);
            if ev.timestamp.is_some() {
                // What follows the date that fail2ban cuts out.
                raw.push(' ');
            }
            if let Some(h) = ev.host {
                raw.push_str(h);
                raw.push(' ');
            }
            let tag_at = raw.len();
            raw.push_str(ev.program);
            if let Some(pid) = ev.pid {
                raw.push('[');
                raw.push_str(pid);
                raw.push(']');
            }
            let gap = (ev.msg.as_ptr() as usize)
                .saturating_sub(ev.program.as_ptr() as usize + ev.program.len());
            let sep = gap.saturating_sub(raw.len() - tag_at - ev.program.len());
            if sep > 0 {
                raw.push(':');
                raw.extend(std::iter::repeat_n(' ', sep - 1));
            }
            let at = raw.len();
            raw.push_str(ev.msg);
            return self.raw_line(&raw, at, out);
        }
        // As fail2ban sees a syslog line once the date is cut out:
        // " HOST PROGRAM[PID]: MESSAGE". A line received without a host
        // gets `localhost`, so filters that need a host token match; a
        // file line without one is left as written.
        let host = match (ev.host, ev.peer) {
            (Some(h), _) => Some(h),
            (None, Peer::File) => None,
            (None, _) => Some(NO_HOST),
        };
        // The space the cut date leaves behind; a file line without a date
        // (a journal-style `HOST prog[pid]: msg`) had none to cut.
        if ev.timestamp.is_some() || ev.peer != Peer::File {
            out.push(' ');
        }
        let host_at = ev.host.map(|h| (out.len(), h.len()));
        if let Some(host) = host {
            out.push_str(host);
            out.push(' ');
        }
        out.push_str(self.shown_program(ev.program));
        if let Some(pid) = ev.pid {
            out.push('[');
            out.push_str(pid);
            out.push(']');
        }
        out.push_str(": ");
        let msg_at = out.len();
        out.push_str(ev.msg);
        Layout {
            msg_at,
            cut: None,
            host_at,
        }
    }

    /// Whether an event read from a file is taken as written rather than
    /// rebuilt: its header does not hold together (no timestamp and no
    /// host, or a host or program no syslog sender writes), so it is an
    /// application's own log line that merely resembles syslog
    /// (`t=2020-10-19T17:44:33 lvl=...`, `DATE [WARNING] file.c:12 ...`).
    pub fn reads_raw(ev: &Event<'_>) -> bool {
        if ev.peer != Peer::File || ev.format == Format::Rfc5424 {
            return false;
        }
        const ODD: [char; 11] = ['[', ']', '(', ')', '=', '<', '>', '"', '\'', ',', '+'];
        let odd_host = ev.host.is_some_and(|h| h.contains(ODD));
        let odd_program =
            ev.program.contains(ODD) || ev.program.starts_with(|c: char| c.is_ascii_digit());
        (ev.timestamp.is_none() && ev.host.is_none()) || odd_host || odd_program
    }

    /// A raw line (message starting at `msg_at`) with its date cut out.
    fn raw_line(&self, raw: &str, msg_at: usize, out: &mut String) -> Layout {
        match self.date.find(raw) {
            Some((s, e)) => {
                out.push_str(&raw[..s]);
                out.push_str(&raw[e..]);
                // Captures are handed back only when the cut is in the message.
                let ok = s >= msg_at;
                Layout {
                    msg_at: if ok { msg_at } else { usize::MAX },
                    cut: ok.then(|| (s - msg_at, e - s)),
                    host_at: None,
                }
            }
            None => {
                out.push_str(raw);
                Layout {
                    msg_at,
                    cut: None,
                    host_at: None,
                }
            }
        }
    }

    /// Identifies (matcher, event) for the hit cache: the matcher's id,
    /// the message's address, and a hash of the fields the line is built
    /// from (a reused buffer never passes for another line).
    fn event_key(&self, ev: &Event<'_>) -> (usize, usize, usize) {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (ev.host, ev.program, ev.pid, ev.msg, ev.timestamp).hash(&mut h);
        (
            self.id as usize,
            ev.msg.as_ptr() as usize,
            h.finish() as usize,
        )
    }

    /// Hands a span of the rebuilt line back as a slice of the event.
    fn borrow_back<'t>(ev: &Event<'t>, layout: &Layout, (a, b): (usize, usize)) -> Option<&'t str> {
        if let Some((ha, hl)) = layout.host_at {
            if a == ha && b == ha + hl {
                return ev.host;
            }
        }
        if a < layout.msg_at {
            return None;
        }
        let (a, b) = (a - layout.msg_at, b - layout.msg_at);
        match layout.cut {
            None => ev.msg.get(a..b),
            Some((s, _)) if b <= s => ev.msg.get(a..b),
            Some((s, len)) if a >= s => ev.msg.get(a + len..b + len),
            Some(_) => None,
        }
    }

    /// Matches one line of text (fail2ban's `findFailure` for a single
    /// line), without state.
    pub fn match_text(&self, text: &str) -> LineMatch {
        SPANS.with(|cell| {
            let mut guard = cell.borrow_mut();
            let (ps, fs) = &mut *guard;
            self.match_with(text, ps, fs)
        })
    }

    fn match_with(&self, text: &str, ps: &mut Spans, fs: &mut Spans) -> LineMatch {
        // Few ignoreregexes: checked on the whole line first.
        if !self.ignore.is_empty() && self.ignore.len() + 2 < self.fail.len() {
            if let Some(i) = self.ignore.iter().position(|r| r.is_match(text)) {
                return LineMatch::Ignored(i);
            }
        }
        let mut content = text;
        let mut content_at = 0;
        ps.0.clear();
        if let Some(p) = &self.pref {
            if !p.search(text, ps) {
                return LineMatch::Miss;
            }
            if let Some(Some((a, b))) = p.group("content").and_then(|g| ps.0.get(g).copied()) {
                if b > a {
                    content = &text[a..b];
                    content_at = a;
                }
            }
        }
        let found = CANDS.with(|c| {
            let mut cands = c.borrow_mut();
            self.prefilter.candidates(content, &mut cands);
            for (i, re) in self.fail.iter().enumerate() {
                if !cands.get(i).copied().unwrap_or(true) {
                    continue;
                }
                if re.search(content, fs) {
                    return Some(i);
                }
            }
            None
        });
        let Some(i) = found else {
            return LineMatch::Miss;
        };
        if self.ignore.iter().any(|r| r.is_match(content)) {
            return LineMatch::Ignored(i);
        }
        LineMatch::Hit(self.hit(i, text, content, content_at, ps, fs))
    }

    /// Collects the groups of a match: prefregex groups overlaid with the
    /// failregex's (a failregex group that did not take part still
    /// overrides, as a Python dict update does).
    fn hit(
        &self,
        i: usize,
        text: &str,
        content: &str,
        content_at: usize,
        ps: &Spans,
        fs: &Spans,
    ) -> LineHit {
        let re = &self.fail[i];
        let get = |name: &str| -> Option<(usize, usize, bool)> {
            if let Some(g) = re.group(name) {
                return fs
                    .0
                    .get(g)
                    .copied()
                    .flatten()
                    .map(|(a, b)| (a + content_at, b + content_at, true));
            }
            let p = self.pref.as_ref()?;
            let g = p.group(name)?;
            ps.0.get(g).copied().flatten().map(|(a, b)| (a, b, false))
        };
        let _ = content;
        let text_of = |s: Option<(usize, usize, bool)>| s.map(|(a, b, _)| text[a..b].to_string());
        let mut h = LineHit {
            regex: i,
            ..Default::default()
        };
        h.nofail = get("nofail").is_some();
        h.forget = get("mlfforget").is_some();
        h.gained = get("mlfgained").is_some();
        h.mlfid = text_of(get("mlfid"));
        h.user = text_of(get("user")).filter(|u| !u.is_empty()).or_else(|| {
            // alt_user, alt_user_1, ...: the first that matched.
            let mut alts: Vec<&str> = re
                .names
                .iter()
                .flatten()
                .filter(|n| n.starts_with("alt_user"))
                .map(String::as_str)
                .collect();
            alts.sort_unstable();
            alts.into_iter()
                .find_map(|n| text_of(get(n)).filter(|u| !u.is_empty()))
        });
        let cidr = text_of(get("cidr"));
        for g in ["ip4", "ip6", "dns"] {
            if let Some(span) = get(g) {
                let t = &text[span.0..span.1];
                h.host_span = Some((span.0, span.1));
                h.host = Some(match (g, &cidr) {
                    ("dns", _) => t.to_string(),
                    (_, Some(c)) => format!("{}/{c}", normalise(t)),
                    _ => normalise(t),
                });
                break;
            }
        }
        if let Some(fid) = text_of(get("fid")) {
            if h.host.as_deref() != Some(fid.as_str()) {
                h.host_span = get("fid").map(|s| (s.0, s.1));
                h.host = Some(fid);
            }
        }
        h
    }

    /// The stateless step: runs the filter over a routed event. For
    /// multi-line filters every line is handed on (as a helper hit) to
    /// [`Matcher::correlate`], which holds the buffer.
    pub fn examine<'t>(&self, ev: &Event<'t>) -> Verdict<'t> {
        if self.multiline {
            return Verdict::Hit {
                regex: 0,
                host: None,
                // fail2ban filters correlate users in `correlate`, not
                // through the native session table.
                user: None,
                kind: HitKind::NoFail,
            };
        }
        LINE.with(|cell| {
            let mut line = cell.borrow_mut();
            let layout = self.build_line(ev, &mut line);
            match self.match_text(&line) {
                LineMatch::Miss => Verdict::Miss,
                LineMatch::Ignored(i) => Verdict::Ignored { regex: i },
                LineMatch::Hit(h) => {
                    let v = Verdict::Hit {
                        regex: h.regex,
                        host: h.host_span.and_then(|s| Self::borrow_back(ev, &layout, s)),
                        user: None,
                        kind: if h.nofail || h.gained {
                            HitKind::NoFail
                        } else {
                            HitKind::Failure
                        },
                    };
                    let key = self.event_key(ev);
                    LAST_HIT.with(|c| *c.borrow_mut() = Some((key.0, key.1, key.2, h)));
                    v
                }
            }
        })
    }

    /// The stateful step for filters that need it ([`Matcher::is_stateful`]):
    /// merges a hit with the earlier lines of its connection, or runs the
    /// multi-line regexes over the session's buffer.
    pub fn correlate(
        &self,
        st: Option<&mut State>,
        ev: &Event<'_>,
        verdict: Verdict<'_>,
        now: SystemTime,
    ) -> Correlated {
        if matches!(verdict, Verdict::Miss | Verdict::Ignored { .. }) {
            return Correlated::Nothing;
        }
        if self.multiline {
            let mut line = String::new();
            self.build_line(ev, &mut line);
            let Some(st) = st else {
                return Correlated::Nothing;
            };
            // Raw file lines share one buffer, as in fail2ban.
            let key = if ev.program.is_empty() || Self::reads_raw(ev) {
                st.raw_key()
            } else {
                st.session_key(ev)
            };
            let lines = self.def.maxlines.clamp(1, MAX_LINES);
            let hit = st.push_line(key, line, lines, |buf| {
                let mut ps = Spans::default();
                let mut fs = Spans::default();
                match self.match_with(buf, &mut ps, &mut fs) {
                    LineMatch::Hit(h) => {
                        let span = fs.0.first().copied().flatten().unwrap_or((0, 0));
                        let skipped = skipped_spans(&self.fail[h.regex], &fs);
                        Some((h, span, skipped))
                    }
                    LineMatch::Ignored(_) | LineMatch::Miss => None,
                }
            });
            return match hit {
                Some(h) => self.finish(None, h, now),
                None => Correlated::Nothing,
            };
        }
        let key = self.event_key(ev);
        let cached = LAST_HIT.with(|c| {
            let mut c = c.borrow_mut();
            match c.take() {
                Some((a, b, l, h)) if (a, b, l) == key => Some(h),
                other => {
                    *c = other;
                    None
                }
            }
        });
        let hit = match cached {
            Some(h) => h,
            None => {
                let mut line = String::new();
                self.build_line(ev, &mut line);
                match self.match_text(&line) {
                    LineMatch::Hit(h) => h,
                    _ => return Correlated::Nothing,
                }
            }
        };
        self.finish(st, hit, now)
    }

    /// fail2ban's `_mergeFailure` plus the choice of the failure id.
    fn finish(&self, st: Option<&mut State>, hit: LineHit, now: SystemTime) -> Correlated {
        match (hit.mlfid.clone(), st) {
            (Some(id), Some(st)) => st.merge(&id, hit, now),
            _ => {
                if hit.nofail || hit.gained {
                    return Correlated::Nothing;
                }
                match hit.host {
                    Some(h) => Correlated::Failure {
                        regex: hit.regex,
                        host: Some(h),
                    },
                    None => Correlated::Nothing,
                }
            }
        }
    }
}

/// How a `_daemon` routing regex is shown: the bare name when it is one
/// (`sshd`), else `~` and the regex.
pub fn program_label(full: &str) -> String {
    let inner = full
        .strip_prefix(r"^[\[\(]?(?:")
        .and_then(|s| s.strip_suffix(r")(?:\(\S+\))?[\]\)]?$"))
        .unwrap_or(full);
    if !inner.is_empty()
        && inner
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '_' || c == '.' || c == '/')
        && !inner.contains('.')
    {
        inner.to_string()
    } else {
        format!("~{inner}")
    }
}

/// Spans of the `skiplinesN` groups of a multi-line match.
fn skipped_spans(p: &Pattern, s: &Spans) -> Vec<(usize, usize)> {
    p.names
        .iter()
        .enumerate()
        .filter(|(_, n)| n.as_deref().is_some_and(|n| n.starts_with("skiplines")))
        .filter_map(|(i, _)| s.0.get(i).copied().flatten())
        .collect()
}

/// A captured address as fail2ban reports it: the text as written (the
/// jail parses it into an address; `test-filter` shows it).
pub fn normalise(t: &str) -> String {
    t.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syslog::{self, ParseContext};
    use std::time::{Duration, UNIX_EPOCH};

    fn src(r: &str) -> PatternSource {
        PatternSource {
            regex: r.to_string(),
            file: "t.conf".into(),
            line: 1,
        }
    }

    /// A cut-down sshd: mlfid = the prefix of one connection.
    fn sshd() -> Matcher {
        Matcher::compile(FilterDef {
            name: "t".into(),
            origin: "t.conf".into(),
            prefregex: Some(src(r"^<F-MLFID>\s*\S+ sshd\[\d+\]: </F-MLFID><F-CONTENT>.+</F-CONTENT>$")),
            failregex: [
                r"^Failed (?:<F-NOFAIL>publickey</F-NOFAIL>|\S+) for <F-USER>\S+</F-USER> from <HOST>",
                r"^Disconnecting: Too many authentication failures",
                r"^<F-NOFAIL>Connection from</F-NOFAIL> <HOST>",
                r"^<F-MLFFORGET><F-MLFGAINED>Accepted \w+</F-MLFGAINED></F-MLFFORGET> for <F-USER>\S+</F-USER> from <HOST>",
            ]
            .iter()
            .map(|r| src(r))
            .collect(),
            maxlines: 1,
            usedns: "warn".into(),
            daemon: Some("sshd".into()),
            ..Default::default()
        })
        .unwrap()
    }

    fn run(m: &Matcher, lines: &[&str]) -> Vec<Option<String>> {
        let mut st = State::default();
        let t = UNIX_EPOCH + Duration::from_secs(1_795_528_800);
        lines
            .iter()
            .map(|l| {
                let ctx = ParseContext::live(Peer::Inet("127.0.0.1:1".parse().unwrap()), t);
                let ev = syslog::parse(l, &ctx);
                match m.correlate(Some(&mut st), &ev, m.examine(&ev), t) {
                    Correlated::Failure { host, .. } => host,
                    Correlated::Nothing => None,
                }
            })
            .collect()
    }

    #[test]
    fn mlfid_pending_failure_takes_the_address_named_later() {
        let m = sshd();
        assert!(m.is_stateful());
        let r = run(
            &m,
            &[
                "<38>Nov 24 14:00:01 h sshd[9]: Disconnecting: Too many authentication failures",
                "<38>Nov 24 14:00:02 h sshd[9]: Connection from 192.0.2.1 port 22",
                "<38>Nov 24 14:00:03 h sshd[8]: Connection from 192.0.2.2 port 22",
                "<38>Nov 24 14:00:04 h sshd[8]: Disconnecting: Too many authentication failures",
            ],
        );
        assert_eq!(
            r,
            [
                None,
                Some("192.0.2.1".into()),
                None,
                Some("192.0.2.2".into())
            ]
        );
    }

    #[test]
    fn mlfid_helper_lines_count_once_several_users_try() {
        let m = sshd();
        let r = run(
            &m,
            &[
                "<38>Nov 24 14:00:01 h sshd[9]: Failed publickey for root from 192.0.2.3 port 1 ssh2",
                "<38>Nov 24 14:00:02 h sshd[9]: Failed publickey for root from 192.0.2.3 port 1 ssh2",
                "<38>Nov 24 14:00:03 h sshd[9]: Failed publickey for admin from 192.0.2.3 port 1 ssh2",
                // A successful login ends the connection: forgotten.
                "<38>Nov 24 14:00:04 h sshd[7]: Accepted publickey for root from 192.0.2.4 port 1 ssh2",
                "<38>Nov 24 14:00:05 h sshd[7]: Disconnecting: Too many authentication failures",
            ],
        );
        assert_eq!(r, [None, None, Some("192.0.2.3".into()), None, None]);
    }

    #[test]
    fn lines_are_rebuilt_for_the_prefix_and_busybox_gets_a_host() {
        let m = Matcher::compile(FilterDef {
            name: "k".into(),
            origin: "k.conf".into(),
            failregex: vec![src(r"^\s*\S+ kernel: \[UFW BLOCK\] .*SRC=<ADDR> ")],
            maxlines: 1,
            usedns: "no".into(),
            ..Default::default()
        })
        .unwrap();
        let t = UNIX_EPOCH + Duration::from_secs(1_795_528_800);
        let ctx = ParseContext::live(Peer::Inet("127.0.0.1:1".parse().unwrap()), t);
        let ev = syslog::parse(
            "<4>Nov 24 14:00:01 kernel: [UFW BLOCK] IN=eth0 SRC=198.51.100.7 DST=10.0.0.1",
            &ctx,
        );
        assert_eq!(ev.host, None);
        match m.examine(&ev) {
            Verdict::Hit { host, .. } => assert_eq!(host, Some("198.51.100.7")),
            v => panic!("{v:?}"),
        }
    }

    /// A file line without a date, as journal output reads (`HOST
    /// prog[pid]: msg`), is rebuilt without the space a cut date leaves,
    /// so a prefix anchored on `^\S+` (znc-adminlog's journal mode) meets
    /// the host; a dated line keeps it.
    #[test]
    fn a_dateless_file_line_has_no_leading_space() {
        let m = Matcher::compile(FilterDef {
            name: "z".into(),
            origin: "z.conf".into(),
            failregex: vec![src(
                r"^\S+\s+znc\[\d+\]:\s+\[[^]]+\] failed to login from <ADDR>",
            )],
            maxlines: 1,
            usedns: "no".into(),
            ..Default::default()
        })
        .unwrap();
        let t = UNIX_EPOCH + Duration::from_secs(1_795_528_800);
        let ctx = ParseContext {
            received: t,
            peer: Peer::File,
            reference: t,
        };
        // As `test-filter` reads a journal line: the tag parsed, the
        // first word taken as the host.
        let ev = Event {
            host: Some("Test"),
            ..syslog::parse(
                "znc[37232]: [admin] failed to login from 192.0.2.2:65009",
                &ctx,
            )
        };
        assert_eq!((ev.program, ev.timestamp), ("znc", None));
        match m.examine(&ev) {
            Verdict::Hit { host, .. } => assert_eq!(host, Some("192.0.2.2")),
            v => panic!("{v:?}"),
        }
        let mut line = String::new();
        m.build_line(&ev, &mut line);
        assert!(line.starts_with("Test znc[37232]: "), "{line:?}");
        let dated = syslog::parse(
            "Nov 24 14:00:01 Test znc[37232]: [admin] failed to login from 192.0.2.2:65009",
            &ctx,
        );
        m.build_line(&dated, &mut line);
        assert!(line.starts_with(" Test znc[37232]: "), "{line:?}");
    }
}
