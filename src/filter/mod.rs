//! Stage 4a: compiled filters. A [`Filter`] decides whether a message body is
//! a failure and captures the address text it names.
//!
//! Receives the message body of an event already routed to the filter's
//! program, and returns a [`Verdict`]. Owns no state: the same compiled
//! filter runs on many threads (replay) and never changes after a reload has
//! built it.
//!
//! Patterns are `regex` patterns with placeholders:
//! - `<HOST>`: an IPv4, IPv6 or hostname token (hostnames are captured so
//!   `test-filter` can show them, but never banned: banstream does not
//!   resolve names an attacker chose);
//! - `<ADDR>`: an IPv4 or IPv6 address; `<IP4>`, `<IP6>`: one family only.
//!
//! A filter read from a fail2ban tree (`filter.d/NAME.conf`) wraps a
//! [`fail2ban::Matcher`] instead: same [`Filter::examine`] entry point, its
//! programs given by a `_daemon` regex ([`Filter::program_pattern`]).
//!
//! Built-in filters are anchored (`^...$`) to the message body of their
//! program, so that text an attacker controls (user names, URLs) sits at a
//! position the address capture cannot reach. `check` warns about filters
//! that are not anchored.

mod ascii;
pub mod builtin;
pub mod fail2ban;
mod first;
mod locate;
pub mod options;
mod prefilter;
pub mod spec;

use std::cell::RefCell;
use std::sync::OnceLock;

use regex::Regex;
use regex_syntax::hir::Hir;

pub use options::NamedOptions;
pub use spec::{FilterSpec, RegexSpec};

use prefilter::Prefilter;

/// The older program name a program also answers to. OpenSSH 9.8 and
/// later log authentication as `sshd-session`; filters and `_daemon`
/// patterns written for `sshd` (fail2ban's stock sshd.conf among them)
/// must still see those lines.
pub fn program_alias(program: &str) -> Option<&'static str> {
    (program == "sshd-session").then_some("sshd")
}

/// Whether a `_daemon` pattern accepts `program`, directly or through its
/// [`program_alias`].
pub fn daemon_matches(re: &Regex, program: &str) -> bool {
    re.is_match(program) || program_alias(program).is_some_and(|a| re.is_match(a))
}

/// What a failregex match means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HitKind {
    /// A failure: counts towards the threshold.
    Failure,
    /// Not a failure, but it names the address of the session (host,
    /// program, pid), so later host-less failure lines of the same session
    /// can be attributed (fail2ban's `<F-NOFAIL>`).
    NoFail,
    /// A successful login: the session's pending failures are dropped and
    /// the session forgotten, unless the session tried several user names,
    /// which makes it a failure (fail2ban's `<F-MLFGAINED>`).
    Success,
}

/// The outcome of running a filter over one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict<'t> {
    /// No failregex matched.
    Miss,
    /// A failregex matched, but so did an ignoreregex.
    Ignored {
        /// Index of the failregex that matched.
        regex: usize,
    },
    /// A failregex matched.
    Hit {
        /// Index of the failregex that matched (for per-regex counts).
        regex: usize,
        /// The captured host text, if the regex has a placeholder.
        host: Option<&'t str>,
        /// The user name, if the regex captures one (group `user`, else
        /// `alt_user`): sessions use it to notice several names tried.
        user: Option<&'t str>,
        /// Failure or helper match.
        kind: HitKind,
    },
    /// A success failregex (a login) matched `msg[..end]`, its groups not
    /// read yet. Only [`Filter::examine_deferring`] returns it: a login
    /// counts only in a session already known, and most logins have none,
    /// so the jail reads the groups ([`Filter::resolve`]) only for those.
    Login {
        /// Index of the failregex that matched.
        regex: usize,
        /// End of its match.
        end: usize,
    },
}

/// One compiled failregex.
#[derive(Debug)]
struct FailRegex {
    /// The pattern with its placeholders expanded.
    expanded: String,
    /// The capture engine. Compiled on first need when the filter has a
    /// combined automaton (`Filter::all`, which vouches that it compiles):
    /// the locators answer for most lines, and idle memory stays small.
    re: OnceLock<Option<Regex>>,
    /// Find the groups without the capture engine, where the pattern's
    /// shape allows: `Some` only when every group the verdict reads
    /// (`host`, `user`, `alt_user`) has a locator. Built when the pattern
    /// first matches: most patterns of a filter rarely do.
    locators: OnceLock<Option<Locators>>,
    kind: HitKind,
    /// The pattern as written (for `test-filter` and `check`).
    source: String,
}

/// The locators of one pattern's groups (`None`: the pattern has no such group).
#[derive(Debug)]
struct Locators {
    host: Option<locate::GroupLocator>,
    user: Option<locate::GroupLocator>,
    alt_user: Option<locate::GroupLocator>,
}

impl Locators {
    /// Locators for every group of `hir` a verdict reads, or `None` when one
    /// of them cannot have one.
    fn new(hir: &Hir) -> Option<Locators> {
        let one = |name: &str| match locate::has_group(hir, name) {
            false => Some(None),
            true => locate::GroupLocator::new(hir, name).map(Some),
        };
        Some(Locators {
            host: one("host")?,
            user: one("user")?,
            alt_user: one("alt_user")?,
        })
    }

    /// `(host, user)` of a message whose leftmost-first match by the
    /// pattern ends at `end`, as the capture engine would give them; `None`
    /// when a locator cannot decide.
    /// `host: false` leaves the host out (a message whose host is void).
    #[allow(clippy::type_complexity)]
    fn locate<'t>(
        &self,
        msg: &'t str,
        end: usize,
        host: bool,
    ) -> Option<(Option<&'t str>, Option<&'t str>)> {
        let group = |l: &Option<locate::GroupLocator>| -> Option<Option<&'t str>> {
            match l.as_ref().map(|l| l.locate(msg, end)) {
                None | Some(Some(None)) => Some(None),
                Some(Some(Some((s, e)))) => msg.get(s..e).map(Some),
                Some(None) => None,
            }
        };
        let host = match host {
            true => group(&self.host)?,
            false => None,
        };
        // As `by_captures`: `user`, else `alt_user`, empty meaning none.
        let user = match group(&self.user)?.filter(|u| !u.is_empty()) {
            Some(u) => Some(u),
            None => group(&self.alt_user)?.filter(|u| !u.is_empty()),
        };
        Some((host, user))
    }
}

impl FailRegex {
    /// The locators of the pattern's groups.
    fn locators(&self) -> Option<&Locators> {
        self.locators
            .get_or_init(|| {
                let hir = regex_syntax::Parser::new().parse(&self.expanded).ok()?;
                Locators::new(&hir)
            })
            .as_ref()
    }

    /// The capture engine (`None` only if the pattern, which the combined
    /// automaton accepted, still fails to compile alone).
    fn re(&self) -> Option<&Regex> {
        self.re
            .get_or_init(|| Regex::new(&self.expanded).ok())
            .as_ref()
    }
}

/// A compiled filter.
#[derive(Debug)]
pub struct Filter {
    name: String,
    programs: Vec<String>,
    fail: Vec<FailRegex>,
    /// All failregexes in one automaton, when every one is anchored at the
    /// start of the message: one pass names the first that matches.
    all: Option<first::FirstMatch>,
    ignore: Vec<Regex>,
    prefilter: Prefilter,
    /// Correlate host-less lines with earlier lines of the same session.
    sessions: bool,
    /// A fail2ban filter (filter.d/NAME.conf): when set, it does the matching.
    f2b: Option<Box<fail2ban::Matcher>>,
    /// The spec's `once` literals: a hit in a message holding one of them
    /// twice has no address.
    once: Vec<memchr::memmem::Finder<'static>>,
}

/// A filter that failed to build; names the source and the line.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// A pattern that does not compile.
    #[error("{origin}:{line}: regex {pattern:?} does not compile: {reason}")]
    Regex {
        /// File (or `builtin:NAME`) the pattern came from.
        origin: String,
        /// 1-based line of the pattern in that file (0 when unknown).
        line: usize,
        /// The pattern as written.
        pattern: String,
        /// The compiler's message.
        reason: String,
    },
    /// A structural problem (unknown mode, missing placeholder, ...).
    #[error("{origin}: {reason}")]
    Invalid {
        /// File (or `builtin:NAME`).
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// The filter file could not be read or parsed.
    #[error("{origin}: {reason}")]
    Load {
        /// File (or `builtin:NAME`).
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// No built-in or file filter with this name.
    #[error("unknown filter {name:?} (built-in filters: {known})")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The names that exist.
        known: String,
    },
}

/// The regex fragment for each placeholder. One named group `host`.
///
/// ASCII classes, not `\d` and `\w`: those are Unicode classes in the regex
/// crate, and each placeholder holds several of them, so every compiled
/// pattern carried a large UTF-8 automaton (about 0.25 MB each, 10 MB for
/// the default jails). Addresses and host names in logs are ASCII.
const IP4: &str = r"(?:[0-9]{1,3}\.){3}[0-9]{1,3}";
// The dotted tail is tried first, so `::ffff:1.2.3.4` is not cut to `::ffff:1`
// when nothing after the placeholder anchors the match.
const IP6: &str = r"(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:[0-9]{1,3}\.){3}[0-9]{1,3}|[0-9A-Fa-f]{1,4})?";
const DNS: &str = r"[0-9A-Za-z_-]+(?:\.[0-9A-Za-z_-]+)*";

/// Replaces `<HOST>`, `<ADDR>`, `<IP4>` and `<IP6>` with a capture group
/// named `host`. Returns the expanded pattern and how many placeholders it had.
pub fn expand_placeholders(pattern: &str) -> (String, usize) {
    let host = format!(r"\[?(?P<host>{IP4}|{IP6}|{DNS})\]?");
    let addr = format!(r"\[?(?P<host>{IP4}|{IP6})\]?");
    let ip4 = format!(r"(?P<host>{IP4})");
    let ip6 = format!(r"\[?(?P<host>{IP6})\]?");
    let mut out = String::with_capacity(pattern.len() + 64);
    let mut count = 0;
    let mut rest = pattern;
    while let Some(i) = rest.find('<') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let (rep, len) = if tail.starts_with("<HOST>") {
            (host.as_str(), 6)
        } else if tail.starts_with("<ADDR>") {
            (addr.as_str(), 6)
        } else if tail.starts_with("<IP4>") {
            (ip4.as_str(), 5)
        } else if tail.starts_with("<IP6>") {
            (ip6.as_str(), 5)
        } else {
            ("<", 1)
        };
        if len > 1 {
            count += 1;
        }
        out.push_str(rep);
        rest = &tail[len..];
    }
    out.push_str(rest);
    (out, count)
}

thread_local! {
    static CANDIDATES: RefCell<Vec<bool>> = const { RefCell::new(Vec::new()) };
}

impl Filter {
    /// Compiles a filter from its spec with the given options (`mode=...`).
    /// `origin` names the file for errors; `source_text` (the file's text)
    /// lets errors point at the line of a bad pattern.
    pub fn compile(
        name: &str,
        spec: &FilterSpec,
        opts: &NamedOptions,
        origin: &str,
        source_text: Option<&str>,
    ) -> Result<Filter, FilterError> {
        let invalid = |reason: String| FilterError::Invalid {
            origin: origin.to_string(),
            reason,
        };
        let mut mode = spec.default_mode.clone();
        for (k, v) in &opts.options {
            match k.as_str() {
                "mode" => mode = Some(v.clone()),
                other => {
                    return Err(invalid(format!(
                        "filter {name:?} has no option {other:?} (it takes: mode)"
                    )))
                }
            }
        }
        if let Some(m) = &mode {
            if !spec.modes.is_empty() && !spec.modes.iter().any(|x| x == m) {
                return Err(invalid(format!(
                    "filter {name:?} has no mode {m:?} (modes: {})",
                    spec.modes.join(", ")
                )));
            }
        }
        let line_of = |pattern: &str| -> usize {
            source_text
                .and_then(|t| t.lines().position(|l| l.contains(pattern)).map(|n| n + 1))
                .unwrap_or(0)
        };
        // `written` is the pattern as in the file (for the error).
        let regex_error = |written: &str, reason: String| FilterError::Regex {
            origin: origin.to_string(),
            line: line_of(written),
            pattern: written.to_string(),
            reason,
        };
        let compile = |written: &str, expanded: &str| -> Result<Regex, FilterError> {
            Regex::new(expanded).map_err(|e| regex_error(written, e.to_string()))
        };
        // `full` is what is compiled (with the filter's prefix). The parse
        // uses the `regex` crate's defaults; on an error the crate's own
        // message is reported.
        let parse = |written: &str, full: &str| -> Result<(Hir, String, usize), FilterError> {
            let (expanded, n) = expand_placeholders(&ascii::ascii_digits(full));
            match regex_syntax::Parser::new().parse(&expanded) {
                Ok(hir) => Ok((hir, expanded, n)),
                Err(e) => Err(match Regex::new(&expanded) {
                    Err(re) => regex_error(written, re.to_string()),
                    Ok(_) => regex_error(written, e.to_string()),
                }),
            }
        };
        let active = |r: &RegexSpec| match (&mode, r.modes()) {
            (_, []) => true,
            (Some(m), ms) => ms.iter().any(|x| x == m),
            (None, _) => false,
        };
        let mut fail = Vec::new();
        let mut hirs = Vec::new();
        let mut written = Vec::new();
        let mut sessions = false;
        for r in spec.failregex.iter().filter(|r| active(r)) {
            let (hir, expanded, n) = match (&spec.prefix, r.regex().strip_prefix('^')) {
                (Some(pre), Some(body)) => parse(r.regex(), &format!("^{pre}{body}"))?,
                _ => parse(r.regex(), r.regex())?,
            };
            if n > 1 {
                return Err(regex_error(
                    r.regex(),
                    "more than one <HOST>/<ADDR> placeholder".into(),
                ));
            }
            if n == 0 && (r.success() || !r.session()) {
                return Err(regex_error(r.regex(), "no <HOST> or <ADDR> placeholder (set session = true to take the address from an earlier line of the same process)".into()));
            }
            sessions |= r.session() || r.success();
            fail.push(FailRegex {
                locators: OnceLock::new(),
                re: OnceLock::new(),
                expanded,
                kind: if r.success() {
                    HitKind::Success
                } else if r.nofail() {
                    HitKind::NoFail
                } else {
                    HitKind::Failure
                },
                source: r.regex().to_string(),
            });
            hirs.push(hir);
            written.push(r.regex());
        }
        if fail.is_empty() {
            return Err(invalid(format!(
                "filter {name:?} has no failregex for this mode"
            )));
        }
        // The embedded filters compile (a test builds each in every mode).
        let all = match origin.starts_with("builtin:") {
            true => first::FirstMatch::known_good(&hirs),
            false => first::FirstMatch::new(&hirs),
        };
        if all.is_none() {
            // Every pattern compiles now, so an error names its pattern.
            for (f, w) in fail.iter().zip(&written) {
                let re = compile(w, &f.expanded)?;
                let _ = f.re.set(Some(re));
            }
        }
        let mut ignore = Vec::new();
        for r in spec.ignoreregex.iter().filter(|r| active(r)) {
            let (_, expanded, _) = parse(r.regex(), r.regex())?;
            ignore.push(compile(r.regex(), &expanded)?);
        }
        Ok(Filter {
            name: name.to_string(),
            programs: spec.programs.clone(),
            prefilter: Prefilter::new(&hirs, all.is_none()),
            fail,
            all,
            ignore,
            sessions,
            f2b: None,
            once: spec
                .once
                .iter()
                .filter(|l| !l.is_empty())
                .map(|l| memchr::memmem::Finder::new(l.as_bytes()).into_owned())
                .collect(),
        })
    }

    /// Wraps a compiled fail2ban filter. Its programs come from its
    /// `_daemon` regex ([`Filter::program_pattern`]); [`Filter::programs`]
    /// then holds only its label.
    pub fn from_fail2ban(m: fail2ban::Matcher) -> Filter {
        Filter {
            name: m.def().name.clone(),
            // A label only: routing uses the regex.
            programs: m
                .daemon_regex()
                .map(|re| vec![fail2ban::program_label(re.as_str())])
                .unwrap_or_default(),
            fail: Vec::new(),
            all: None,
            ignore: Vec::new(),
            prefilter: Prefilter::new(&[], false),
            sessions: false,
            f2b: Some(Box::new(m)),
            once: Vec::new(),
        }
    }

    /// The fail2ban matcher, for filters read from a fail2ban tree.
    pub fn fail2ban(&self) -> Option<&fail2ban::Matcher> {
        self.f2b.as_deref()
    }

    /// The program regex of a fail2ban filter anchored to its `_daemon`.
    pub fn program_pattern(&self) -> Option<&Regex> {
        self.f2b.as_ref().and_then(|m| m.daemon_regex())
    }

    /// Whether a program's lines reach this filter (names, a `_daemon`
    /// regex, or every program when neither is set).
    pub fn listens_to(&self, program: &str) -> bool {
        match (self.program_pattern(), self.programs.is_empty()) {
            (Some(re), _) => daemon_matches(re, program),
            (None, true) => true,
            (None, false) => self.programs.iter().any(|p| p == program),
        }
    }

    /// The filter's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The programs whose messages this filter reads. Empty means every
    /// program (injectable: `check` warns).
    pub fn programs(&self) -> &[String] {
        &self.programs
    }

    /// The failregexes as written, in order.
    pub fn failregex_sources(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        match &self.f2b {
            Some(m) => Box::new(m.failregexes().map(|(s, _)| s)),
            None => Box::new(self.fail.iter().map(|f| f.source.as_str())),
        }
    }

    /// Number of failregexes.
    pub fn failregex_count(&self) -> usize {
        match &self.f2b {
            Some(m) => m.failregexes().count(),
            None => self.fail.len(),
        }
    }

    /// Whether host-less failure lines are attributed through their session.
    pub fn uses_sessions(&self) -> bool {
        self.sessions
    }

    /// Literals one of which every message this filter can match contains,
    /// or `None` when some pattern has no such literal (or the filter is a
    /// fail2ban one, which reads more than the message). `replay` uses them
    /// to skip lines without parsing them.
    pub fn required_literals(&self) -> Option<&[Vec<u8>]> {
        if self.f2b.is_some() {
            return None;
        }
        self.prefilter.literals()
    }

    /// Runs the filter over a routed event: the entry point jails and
    /// `test-filter` use. Native filters read the message body; filters
    /// that need more of the line (fail2ban's prefix) read the event.
    pub fn examine<'t>(&self, ev: &crate::syslog::Event<'t>) -> Verdict<'t> {
        if let Some(m) = &self.f2b {
            return m.examine(ev);
        }
        self.check(ev.msg)
    }

    /// [`Filter::examine`], except that a login found by the combined
    /// automaton comes back as [`Verdict::Login`], its groups unread: the
    /// jail reads them only when the login's session is known.
    pub fn examine_deferring<'t>(&self, ev: &crate::syslog::Event<'t>) -> Verdict<'t> {
        if let Some(m) = &self.f2b {
            return m.examine(ev);
        }
        self.check_with(ev.msg, true)
    }

    /// The full verdict of a [`Verdict::Login`] on `msg`; any other verdict
    /// unchanged.
    pub fn resolve<'t>(&self, v: Verdict<'t>, msg: &'t str) -> Verdict<'t> {
        match v {
            Verdict::Login { regex, end } => self.verdict(regex, msg, end),
            v => v,
        }
    }

    /// Runs the filter over a message body. The first failregex that
    /// matches decides, as in fail2ban.
    pub fn check<'t>(&self, msg: &'t str) -> Verdict<'t> {
        self.check_with(msg, false)
    }

    fn check_with<'t>(&self, msg: &'t str, defer_logins: bool) -> Verdict<'t> {
        match self.all.as_ref().map(|a| a.search(msg)) {
            Some(first::First::Match { pattern, end }) => {
                let login = self
                    .fail
                    .get(pattern)
                    .is_some_and(|f| f.kind == HitKind::Success);
                if defer_logins && login {
                    return Verdict::Login {
                        regex: pattern,
                        end,
                    };
                }
                return self.verdict(pattern, msg, end);
            }
            Some(first::First::None) => return Verdict::Miss,
            Some(first::First::GaveUp) => {
                // One by one, in order, with the capture engine.
                for (i, f) in self.fail.iter().enumerate() {
                    if let Some(m) = f.re().and_then(|re| re.find(msg)) {
                        return self.verdict(i, msg, m.end());
                    }
                }
                return Verdict::Miss;
            }
            None => {}
        }
        CANDIDATES.with(|cell| {
            let mut cands = cell.borrow_mut();
            self.prefilter.candidates(msg, &mut cands);
            if self.prefilter.is_complete() && !cands.iter().any(|c| *c) {
                return Verdict::Miss;
            }
            for (i, f) in self.fail.iter().enumerate() {
                if let Some(m) = cands[i].then(|| f.re()?.find(msg)).flatten() {
                    return self.verdict(i, msg, m.end());
                }
            }
            Verdict::Miss
        })
    }

    /// Whether `msg` holds one of the `once` literals twice: where the
    /// sender's own text repeats the address's context, no pattern can tell
    /// which address sshd or PAM wrote, so a hit counts without one.
    fn ambiguous(&self, msg: &str) -> bool {
        self.once
            .iter()
            .any(|f| f.find_iter(msg.as_bytes()).nth(1).is_some())
    }

    /// The verdict of failregex `i`, whose leftmost-first match in `msg`
    /// ends at `end`: its groups from the locators where they can decide,
    /// else from the capture engine.
    fn verdict<'t>(&self, i: usize, msg: &'t str, end: usize) -> Verdict<'t> {
        let Some(f) = self.fail.get(i) else {
            return Verdict::Miss;
        };
        // Decided first: a crafted message repeating the address's context
        // leaves no single host to locate, and would otherwise send every
        // such line through the DFAs and the capture engine for a host
        // that is then dropped.
        let ambiguous = self.ambiguous(msg);
        let located = f.locators().and_then(|l| l.locate(msg, end, !ambiguous));
        let Some((host, user)) = located.or_else(|| {
            let caps = f.re()?.captures(msg)?;
            let named = |g: &str| caps.name(g).map(|m| m.as_str()).filter(|u| !u.is_empty());
            Some((
                caps.name("host").map(|m| m.as_str()),
                named("user").or_else(|| named("alt_user")),
            ))
        }) else {
            return Verdict::Miss;
        };
        if self.ignore.iter().any(|r| r.is_match(msg)) {
            return Verdict::Ignored { regex: i };
        }
        let host = host.filter(|_| !ambiguous);
        Verdict::Hit {
            regex: i,
            host,
            user,
            kind: f.kind,
        }
    }

    /// The verdict of failregex `i` from the capture engine alone (`None`:
    /// no match): what `check` must agree with.
    #[cfg(test)]
    fn by_captures<'t>(&self, i: usize, msg: &'t str) -> Option<Verdict<'t>> {
        let f = self.fail.get(i)?;
        let caps = f.re()?.captures(msg)?;
        if self.ignore.iter().any(|r| r.is_match(msg)) {
            return Some(Verdict::Ignored { regex: i });
        }
        let named = |g: &str| caps.name(g).map(|m| m.as_str()).filter(|u| !u.is_empty());
        Some(Verdict::Hit {
            regex: i,
            host: caps
                .name("host")
                .map(|m| m.as_str())
                .filter(|_| !self.ambiguous(msg)),
            user: named("user").or_else(|| named("alt_user")),
            kind: f.kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `check` returned before the host locator: captures only.
    fn check_by_captures<'t>(f: &Filter, msg: &'t str) -> Verdict<'t> {
        (0..f.fail.len())
            .find_map(|i| f.by_captures(i, msg))
            .unwrap_or(Verdict::Miss)
    }

    #[test]
    fn the_host_locator_changes_no_verdict() {
        let mut lines: Vec<String> = [
            include_str!("../../tests/fixtures/injection-sshd.log"),
            include_str!("../../tests/fixtures/injection-pam.log"),
            include_str!("../../tests/fixtures/tools-sshd.log"),
            include_str!("../../tests/fixtures/replay-sshd.log"),
        ]
        .iter()
        .flat_map(|t| t.lines())
        .map(|l| {
            let ctx = crate::syslog::ParseContext::live(
                crate::syslog::Peer::File,
                std::time::SystemTime::now(),
            );
            crate::syslog::parse(l, &ctx).msg.to_string()
        })
        .collect();
        lines.extend(
            [
                "Failed password for root from 203.0.113.9 port 4711 ssh2",
                "Failed password for invalid user a from 10.0.0.1 port 22 ssh2 from 203.0.113.9 port 4711 ssh2",
                "Invalid user from 1.2.3.4 port 5 from 2001:db8::1 port 22",
                "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=198.51.100.7  user=root",
                "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser=x rhost=1.1.1.1 rhost=198.51.100.7",
                "client @0x7f 203.0.113.5#53211 (example.com): query 'example.com/A/IN' denied",
                "[UFW BLOCK] IN=eth0 OUT= MAC=52:54 SRC=198.18.6.248 DST=203.0.113.1 LEN=44 PROTO=TCP SPT=1 DPT=22",
                "[ 50400.642142] [UFW BLOCK] IN=eth0 OUT= SRC=2001:db8::9 DST=2001:db8::1 LEN=44",
                "Received disconnect from 203.0.113.9 port 4711:11: Bye Bye [preauth]",
                "Connection closed by authenticating user root 203.0.113.9 port 4711 [preauth]",
            ]
            .map(String::from),
        );
        let mut located = 0;
        for name in builtin::names() {
            let Ok((origin, text)) = builtin::find(name, &[]) else {
                continue; // recidive reads bans, not lines
            };
            let spec = builtin::parse_spec(&origin, &text).unwrap();
            let modes = if spec.modes.is_empty() {
                vec![String::new()]
            } else {
                spec.modes.iter().map(|m| format!("mode={m}")).collect()
            };
            for m in modes {
                let f = Filter::compile(
                    name,
                    &spec,
                    &NamedOptions::parse(&format!("{name}[{m}]")).unwrap(),
                    &origin,
                    None,
                )
                .unwrap();
                located += f.fail.iter().filter(|r| r.locators().is_some()).count();
                let all = f.all.as_ref();
                assert!(all.is_some(), "{name}: built-in patterns are anchored");
                if name == "sshd" {
                    // Split by first byte, so each automaton stays small.
                    let groups = all.map_or(0, |a| a.groups());
                    assert!(groups > 3, "sshd[{m}]: {groups} groups");
                }
                for l in &lines {
                    assert_eq!(f.check(l), check_by_captures(&f, l), "{name}[{m}] on {l:?}");
                }
            }
        }
        assert!(
            located > 20,
            "most built-in patterns get a locator ({located})"
        );
    }

    fn filter(toml: &str, opts: &str) -> Filter {
        let spec: FilterSpec = toml::from_str(toml).unwrap();
        Filter::compile(
            "t",
            &spec,
            &NamedOptions::parse(opts).unwrap(),
            "t.toml",
            Some(toml),
        )
        .unwrap()
    }

    #[test]
    fn placeholders_expand_to_one_group() {
        let (p, n) = expand_placeholders("from <HOST> port");
        assert_eq!(n, 1);
        let re = Regex::new(&p).unwrap();
        for h in ["1.2.3.4", "2001:db8::1", "::ffff:1.2.3.4", "example.com"] {
            // Unanchored after the placeholder: the longest address must still win.
            let (p2, _) = expand_placeholders("^from <HOST>");
            let re2 = Regex::new(&p2).unwrap();
            assert_eq!(&re2.captures(&format!("from {h} port")).unwrap()["host"], h);
            let line = format!("from {h} port");
            assert_eq!(&re.captures(&line).unwrap()["host"], h);
        }
        let (p, _) = expand_placeholders("from <ADDR> port");
        let re = Regex::new(&p).unwrap();
        assert!(re.captures("from example.com port").is_none());
        assert_eq!(
            &re.captures("from [2001:db8::1] port").unwrap()["host"],
            "2001:db8::1"
        );
    }

    #[test]
    fn modes_select_regexes_and_ignoreregex_wins() {
        let t = r#"
programs = ["p"]
modes = ["normal", "ddos"]
default_mode = "normal"
failregex = [
  '^fail from <HOST>$',
  { regex = '^flood from <HOST>$', modes = ["ddos"] },
]
ignoreregex = ['^fail from 10\.']
"#;
        let f = filter(t, "t");
        assert_eq!(f.failregex_count(), 1);
        assert!(matches!(
            f.check("fail from 1.2.3.4"),
            Verdict::Hit {
                host: Some("1.2.3.4"),
                ..
            }
        ));
        assert!(matches!(
            f.check("fail from 10.0.0.1"),
            Verdict::Ignored { .. }
        ));
        assert_eq!(f.check("flood from 1.2.3.4"), Verdict::Miss);
        let f = filter(t, "t[mode=ddos]");
        assert_eq!(f.failregex_count(), 2);
        assert!(matches!(
            f.check("flood from 1.2.3.4"),
            Verdict::Hit { regex: 1, .. }
        ));
    }

    #[test]
    fn errors_name_file_and_line() {
        let t = "programs = [\"p\"]\nfailregex = [\n  '^bad ( <HOST>',\n]\n";
        let spec: FilterSpec = toml::from_str(t).unwrap();
        let err = Filter::compile(
            "t",
            &spec,
            &NamedOptions::default(),
            "/etc/banstream/filters/t.toml",
            Some(t),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("/etc/banstream/filters/t.toml:3: regex"),
            "{msg}"
        );
        let spec: FilterSpec = toml::from_str("programs=[]\nfailregex=['^no host$']").unwrap();
        assert!(Filter::compile("t", &spec, &NamedOptions::default(), "x", None).is_err());
        let spec: FilterSpec =
            toml::from_str("programs=[]\nmodes=['a']\nfailregex=['^<HOST>$']").unwrap();
        let err = Filter::compile(
            "t",
            &spec,
            &NamedOptions::parse("t[mode=b]").unwrap(),
            "x",
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("no mode \"b\""));
    }
}
