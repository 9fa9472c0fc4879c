//! `banstream test-filter FILTER INPUT [--json]`: runs one filter over log
//! lines the way the daemon would (syslog parsing, program routing, session
//! correlation) and reports what matched.
//!
//! Receives a compiled [`Filter`] and lines (a file, stdin or one literal
//! line); gives one [`LineResult`] per line that is not blank and not a `#`
//! comment, and a [`Report`] with the totals. The attribution of a hit to an
//! address is [`crate::jail::attribute`], the same function jails use, so a
//! line the tool calls a failure is a failure the daemon counts.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::time::{Instant, SystemTime};

use serde::Serialize;

use crate::filter::fail2ban::{Correlated, Matcher, State};
use crate::filter::{self, Filter, FilterSpec, NamedOptions, RegexSpec, Verdict};
use crate::jail::session::Sessions;
use crate::jail::{attribute, Attribution};
use crate::syslog::{self, Event, Format, ParseContext, Peer};

/// The placeholders that make FILTER a raw regex rather than a name.
const PLACEHOLDERS: [&str; 4] = ["<HOST>", "<ADDR>", "<IP4>", "<IP6>"];

/// Loads FILTER: a raw regex with a placeholder, a filter file, or a
/// built-in (or filter-directory) name with options, `sshd[mode=aggressive]`.
pub fn load_filter(spec: &str, dirs: &[std::path::PathBuf]) -> Result<Filter, filter::FilterError> {
    let is_file = Path::new(spec).is_file();
    if !is_file && PLACEHOLDERS.iter().any(|t| spec.contains(t)) {
        let fs = FilterSpec {
            description: None,
            programs: Vec::new(),
            modes: Vec::new(),
            default_mode: None,
            prefix: None,
            failregex: vec![RegexSpec::Plain(spec.to_string())],
            ignoreregex: Vec::new(),
            once: Vec::new(),
        };
        return Filter::compile(
            "regex",
            &fs,
            &NamedOptions::default(),
            "command line",
            Some(spec),
        );
    }
    if let Some(f) = fail2ban_conf(spec) {
        return f;
    }
    let reference = if is_file {
        NamedOptions {
            name: spec.to_string(),
            options: Default::default(),
        }
    } else {
        NamedOptions::parse(spec).map_err(|e| filter::FilterError::Invalid {
            origin: "command line".into(),
            reason: e.to_string(),
        })?
    };
    filter::builtin::load(&reference, dirs)
}

/// A fail2ban filter file (`filter.d/NAME.conf`, optionally with options:
/// `sshd.conf[mode=aggressive]`) goes to the fail2ban reader.
fn fail2ban_conf(spec: &str) -> Option<Result<Filter, filter::FilterError>> {
    let (path, opts) = match spec.find('[') {
        Some(i) if spec.ends_with(']') => (&spec[..i], &spec[i..]),
        _ => (spec, ""),
    };
    let p = Path::new(path);
    if !(p.is_file() && (path.ends_with(".conf") || path.ends_with(".local"))) {
        return None;
    }
    let opts = match NamedOptions::parse(&format!("x{opts}")) {
        Ok(o) => o.options.into_iter().collect::<Vec<_>>(),
        Err(e) => {
            return Some(Err(filter::FilterError::Invalid {
                origin: "command line".into(),
                reason: e.to_string(),
            }))
        }
    };
    Some(
        crate::config::fail2ban::load_filter_file(p, &opts).map_err(|reason| {
            filter::FilterError::Load {
                origin: path.to_string(),
                reason,
            }
        }),
    )
}

/// One line's result. `--json` prints `{"line", "match", "host"}`.
#[derive(Debug, Serialize, PartialEq, Eq, Clone)]
pub struct LineResult {
    /// 1-based line number in the input.
    pub line: usize,
    /// Whether the line is a failure the daemon would count.
    #[serde(rename = "match")]
    pub matched: bool,
    /// The address (normalised: `::ffff:1.2.3.4` is `1.2.3.4`), or the
    /// captured text when it is not an address (a host name, never banned).
    pub host: Option<String>,
    /// What happened, for the human report.
    #[serde(skip)]
    pub outcome: Outcome,
}

/// How a line was classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// From a program the filter does not read (the daemon never shows it the line).
    NotRouted,
    /// No failregex matched.
    Missed,
    /// A failregex matched but an ignoreregex vetoed it.
    Ignored {
        /// The failregex.
        regex: usize,
    },
    /// A failregex matched but the line is not a failure by itself: a helper
    /// naming the connection's address, or a session failure waiting for one.
    Helper {
        /// The failregex.
        regex: usize,
        /// A failure waiting for its session to name an address.
        pending: bool,
    },
    /// A failure (possibly of a host name, which is never banned).
    Failure {
        /// The failregex.
        regex: usize,
        /// How many failures the line counts (more than one when it names
        /// the address of failures pending in its session).
        count: u32,
    },
}

/// Totals for the human report.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Lines examined (not blank, not comments).
    pub lines: usize,
    /// Lines from programs the filter does not read.
    pub not_routed: usize,
    /// Failure lines.
    pub matched: usize,
    /// Lines vetoed by an ignoreregex.
    pub ignored: usize,
    /// Helper lines (matched a nofail or session pattern, no failure by themselves).
    pub helpers: usize,
    /// Failure lines whose host is not an address (never banned).
    pub unattributed: usize,
    /// Failure lines per failregex.
    pub per_regex: Vec<usize>,
    /// Hits per ignoreregex veto, by failregex.
    pub ignored_per_regex: Vec<usize>,
    /// Distinct addresses among the failures.
    pub addresses: usize,
    /// Seconds spent.
    pub elapsed: f64,
}

impl Report {
    /// Lines that are not failures and were not vetoed.
    pub fn missed(&self) -> usize {
        self.lines - self.matched - self.ignored
    }

    /// Lines per second.
    pub fn rate(&self) -> f64 {
        if self.elapsed > 0.0 {
            self.lines as f64 / self.elapsed
        } else {
            0.0
        }
    }
}

/// Runs a filter line by line, keeping the session state the daemon keeps.
pub struct Tester<'f> {
    filter: &'f Filter,
    /// `--program` override; `None`: route as the daemon does.
    programs: Option<Vec<String>>,
    sessions: Sessions,
    /// Multi-line state of a stateful fail2ban filter.
    f2b_state: Option<State>,
    reference: SystemTime,
    report: Report,
    addresses: std::collections::HashSet<std::net::IpAddr>,
    started: Instant,
}

impl<'f> Tester<'f> {
    /// A tester for `filter`. `programs` replaces the filter's own routing
    /// (`--program`); an empty list reads every line, as a raw regex does.
    pub fn new(filter: &'f Filter, programs: Option<Vec<String>>) -> Tester<'f> {
        let n = filter.failregex_count();
        Tester {
            filter,
            programs,
            sessions: Sessions::default(),
            f2b_state: filter
                .fail2ban()
                .filter(|m| m.is_stateful())
                .map(|_| State::default()),
            reference: SystemTime::now(),
            report: Report {
                per_regex: vec![0; n],
                ignored_per_regex: vec![0; n],
                ..Default::default()
            },
            addresses: Default::default(),
            started: Instant::now(),
        }
    }

    /// The programs lines are routed from (empty: every line, or the
    /// `_daemon` pattern of a fail2ban filter).
    pub fn programs(&self) -> &[String] {
        self.programs.as_deref().unwrap_or(self.filter.programs())
    }

    /// Whether the daemon would show this event to the filter.
    fn routed(&self, ev: &Event<'_>) -> bool {
        match &self.programs {
            Some(p) => p.is_empty() || p.iter().any(|x| x == ev.program),
            // A raw line (no syslog header) reaches a fail2ban filter as written.
            None => {
                self.filter.listens_to(ev.program)
                    || (self.filter.fail2ban().is_some()
                        && (ev.program.is_empty() || Matcher::reads_raw(ev)))
            }
        }
    }

    /// Examines line `n` (1-based). `None` for blank lines and `#` comments.
    pub fn line(&mut self, n: usize, text: &str) -> Option<LineResult> {
        let line = text.trim_end_matches(['\n', '\r']);
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            return None;
        }
        self.report.lines += 1;
        let ctx = ParseContext {
            received: self.reference,
            peer: Peer::File,
            reference: self.reference,
        };
        let ev = parse_line(line, &ctx);
        if let Some(t) = ev.timestamp {
            self.reference = t;
        }
        let now = ev.timestamp.unwrap_or(self.reference);
        let mut result = LineResult {
            line: n,
            matched: false,
            host: None,
            outcome: Outcome::Missed,
        };
        if !self.routed(&ev) {
            self.report.not_routed += 1;
            result.outcome = Outcome::NotRouted;
            return Some(result);
        }
        let verdict = self.filter.examine(&ev);
        if let Some(m) = self.filter.fail2ban() {
            return Some(self.fail2ban_line(m, &ev, verdict, now, result));
        }
        let (regex, host) = match verdict {
            Verdict::Miss => return Some(result),
            Verdict::Ignored { regex } => {
                self.report.ignored += 1;
                self.report.ignored_per_regex[regex] += 1;
                result.outcome = Outcome::Ignored { regex };
                return Some(result);
            }
            Verdict::Hit { regex, host, .. } => (regex, host),
            // `examine` reads every group: only jails defer a login's.
            Verdict::Login { .. } => return Some(result),
        };
        let uses_sessions = self.filter.uses_sessions();
        match attribute(&mut self.sessions, uses_sessions, &ev, verdict, now) {
            Attribution::Nothing => {
                self.report.helpers += 1;
                result.outcome = Outcome::Helper {
                    regex,
                    pending: false,
                };
            }
            Attribution::Unattributed { pending: true } => {
                self.report.helpers += 1;
                result.outcome = Outcome::Helper {
                    regex,
                    pending: true,
                };
            }
            Attribution::Unattributed { pending: false } => {
                self.report.matched += 1;
                self.report.unattributed += 1;
                self.report.per_regex[regex] += 1;
                result.matched = true;
                result.host = host.map(str::to_string);
                result.outcome = Outcome::Failure { regex, count: 1 };
            }
            Attribution::Failures { ip, count } => {
                self.report.matched += 1;
                self.report.per_regex[regex] += 1;
                self.addresses.insert(ip);
                result.matched = true;
                result.host = Some(ip.to_string());
                result.outcome = Outcome::Failure { regex, count };
            }
        }
        Some(result)
    }

    /// A fail2ban filter's verdict goes through its own correlation (its
    /// multi-line state), the same step a jail runs.
    fn fail2ban_line(
        &mut self,
        m: &Matcher,
        ev: &Event<'_>,
        verdict: Verdict<'_>,
        now: SystemTime,
        mut result: LineResult,
    ) -> LineResult {
        if let Verdict::Ignored { regex } = verdict {
            self.report.ignored += 1;
            self.report.ignored_per_regex[regex] += 1;
            result.outcome = Outcome::Ignored { regex };
        }
        match m.correlate(self.f2b_state.as_mut(), ev, verdict, now) {
            Correlated::Failure { regex, host } => {
                self.report.matched += 1;
                self.report.per_regex[regex] += 1;
                match host.as_deref().and_then(crate::addr::parse_host) {
                    Some(ip) => {
                        self.addresses.insert(ip);
                        result.host = Some(ip.to_string());
                    }
                    None => {
                        self.report.unattributed += 1;
                        result.host = host;
                    }
                }
                result.matched = true;
                result.outcome = Outcome::Failure { regex, count: 1 };
            }
            Correlated::Nothing => {
                if let Verdict::Hit { regex, .. } = verdict {
                    self.report.helpers += 1;
                    result.outcome = Outcome::Helper {
                        regex,
                        pending: false,
                    };
                }
            }
        }
        result
    }

    /// The totals so far.
    pub fn finish(mut self) -> Report {
        self.report.addresses = self.addresses.len();
        self.report.elapsed = self.started.elapsed().as_secs_f64();
        self.report
    }
}

/// Parses one input line as the daemon would. One more shape is accepted
/// here, never from the network: `HOST TAG[PID]: MSG` without a timestamp,
/// which is how fail2ban and `journalctl -o cat`-style exports present
/// journal entries. The daemon files such a frame as unparsed because it
/// will not guess that a first word is a host.
pub fn parse_line<'a>(line: &'a str, ctx: &ParseContext) -> Event<'a> {
    let ev = syslog::parse(line, ctx);
    if ev.format != Format::Unparsed {
        return ev;
    }
    let t = line.trim_start();
    if let Some((host, rest)) = t.split_once(' ') {
        if !host.is_empty() && !host.starts_with('<') {
            let inner = syslog::parse(rest, ctx);
            if inner.format == Format::Rfc3164 && inner.host.is_none() && inner.pid.is_some() {
                return Event {
                    host: Some(host),
                    ..inner
                };
            }
        }
    }
    ev
}

/// Runs `filter` over every line of `input`, calling `each` per result with
/// the line's text; `each` returns false to stop early (the reader of the
/// output went away).
pub fn run<R: Read>(
    filter: &Filter,
    programs: Option<Vec<String>>,
    input: R,
    mut each: impl FnMut(&LineResult, &str) -> bool,
) -> std::io::Result<Report> {
    let mut tester = Tester::new(filter, programs);
    let mut reader = BufReader::with_capacity(1 << 20, input);
    let mut buf = Vec::with_capacity(4096);
    let mut n = 0;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        n += 1;
        let text = syslog::decode(&buf);
        if let Some(r) = tester.line(n, &text) {
            if !each(&r, text.trim_end_matches(['\n', '\r'])) {
                break;
            }
        }
    }
    Ok(tester.finish())
}

/// What the human report shows besides the totals.
#[derive(Debug, Clone, Copy, Default)]
pub struct Show {
    /// Each failure line with its address.
    pub matched: bool,
    /// Each missed line of a routed program.
    pub missed: bool,
    /// Each line vetoed by an ignoreregex.
    pub ignored: bool,
}

/// Prints one line of the human report (the lines asked for with [`Show`]).
pub fn print_line(
    out: &mut dyn Write,
    show: Show,
    r: &LineResult,
    text: &str,
) -> std::io::Result<()> {
    match r.outcome {
        Outcome::Failure { count, .. } if show.matched => {
            let extra = if count > 1 {
                format!(" (+{} pending)", count - 1)
            } else {
                String::new()
            };
            writeln!(
                out,
                "{:>7} {:<39} {text}{extra}",
                r.line,
                r.host.as_deref().unwrap_or("-")
            )
        }
        Outcome::Missed | Outcome::Helper { .. } if show.missed => {
            writeln!(out, "{:>7} {:<39} {text}", r.line, "missed")
        }
        Outcome::Ignored { .. } if show.ignored => {
            writeln!(out, "{:>7} {:<39} {text}", r.line, "ignored")
        }
        _ => Ok(()),
    }
}

/// Prints the totals, fail2ban-regex style.
pub fn print_report(
    out: &mut dyn Write,
    filter: &Filter,
    spec: &str,
    programs: &[String],
    r: &Report,
) -> std::io::Result<()> {
    writeln!(out)?;
    writeln!(out, "Filter:    {spec} ({})", filter.name())?;
    writeln!(
        out,
        "Programs:  {}",
        if programs.is_empty() {
            "any (not anchored to a program)".to_string()
        } else {
            programs.join(", ")
        }
    )?;
    writeln!(out)?;
    writeln!(out, "Failregex: {} total", r.matched)?;
    writeln!(out, "|-  #) [# of hits] regular expression")?;
    for (i, src) in filter.failregex_sources().enumerate() {
        let ign = r.ignored_per_regex.get(i).copied().unwrap_or(0);
        let ign = if ign > 0 {
            format!(" ({ign} ignored)")
        } else {
            String::new()
        };
        writeln!(
            out,
            "|  {:>2}) [{}]{ign} {src}",
            i + 1,
            r.per_regex.get(i).copied().unwrap_or(0)
        )?;
    }
    writeln!(out, "`-")?;
    writeln!(out)?;
    writeln!(
        out,
        "Lines: {} lines, {} ignored, {} matched, {} missed",
        r.lines,
        r.ignored,
        r.matched,
        r.missed()
    )?;
    writeln!(
        out,
        "       {} from other programs, {} helper lines (nofail/pending)",
        r.not_routed, r.helpers
    )?;
    writeln!(
        out,
        "Addresses: {} distinct; {} failures named a host that is not an address (never banned)",
        r.addresses, r.unattributed
    )?;
    writeln!(out, "Speed: {:.0} lines/s ({:.3} s)", r.rate(), r.elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sshd(mode: &str) -> Filter {
        load_filter(&format!("sshd[mode={mode}]"), &[]).unwrap()
    }

    fn results(f: &Filter, text: &str) -> Vec<LineResult> {
        let mut v = Vec::new();
        run(f, None, text.as_bytes(), |r, _| {
            v.push(r.clone());
            true
        })
        .unwrap();
        v
    }

    #[test]
    fn line_numbers_skip_blank_and_comments_but_count_them() {
        let f = sshd("normal");
        let text = "# c\n\nNov 24 14:00:01 sshd[1]: Failed password for root from 192.0.2.1 port 1 ssh2\n   \nNov 24 14:00:02 cron[2]: hello\n";
        let r = results(&f, text);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].line, r[0].matched), (3, true));
        assert_eq!(r[0].host.as_deref(), Some("192.0.2.1"));
        assert_eq!(
            (r[1].line, r[1].matched, r[1].outcome),
            (5, false, Outcome::NotRouted)
        );
    }

    #[test]
    fn pending_session_failure_matches_on_the_line_that_names_the_address() {
        let f = sshd("normal");
        let text = "Nov 23 21:50:19 sshd[8148]: Disconnecting: Too many authentication failures for root [preauth]\n\
                    Nov 23 21:50:37 sshd[8148]: Connection closed by 198.51.100.1 [preauth]\n\
                    Nov 23 21:50:38 sshd[8149]: Connection closed by 198.51.100.2 [preauth]\n";
        let r = results(&f, text);
        assert!(!r[0].matched);
        assert!(matches!(
            r[0].outcome,
            Outcome::Helper { pending: true, .. }
        ));
        assert!(r[1].matched);
        assert_eq!(r[1].host.as_deref(), Some("198.51.100.1"));
        assert!(!r[2].matched, "another pid: nothing pending");
    }

    #[test]
    fn mapped_addresses_are_normalised_and_names_kept_as_text() {
        let f = sshd("normal");
        let text = "Jan  5 01:31:41 www sshd[1643]: ROOT LOGIN REFUSED FROM ::ffff:192.0.2.4\n\
                    May 29 20:56:52 imago sshd[28732]: error: PAM: Authentication failure for x from example.com\n";
        let r = results(&f, text);
        assert_eq!(r[0].host.as_deref(), Some("192.0.2.4"));
        assert_eq!(r[1].host.as_deref(), Some("example.com"));
        assert!(r[1].matched);
    }

    #[test]
    fn journal_shape_is_read_in_the_tool() {
        let f = load_filter("named-refused", &[]).unwrap();
        let r = results(
            &f,
            "atom named[1806]: client @0x7fb13400eec0 192.0.2.1#61977 (.): query (cache) './ANY/IN' denied\n",
        );
        assert!(r[0].matched, "{r:?}");
    }

    #[test]
    fn raw_regex_reads_every_line() {
        let f = load_filter("^hello <HOST>$", &[]).unwrap();
        let r = results(
            &f,
            "hello 192.0.2.9\nNov 24 14:00:01 anything[3]: hello 192.0.2.8\n",
        );
        assert_eq!(r[0].host.as_deref(), Some("192.0.2.9"));
        assert_eq!(r[1].host.as_deref(), Some("192.0.2.8"));
    }

    #[test]
    fn report_counts_add_up() {
        let f = sshd("normal");
        let mut t = Tester::new(&f, None);
        t.line(
            1,
            "Nov 24 14:00:01 sshd[1]: Failed password for root from 192.0.2.1 port 1 ssh2",
        );
        t.line(
            2,
            "Nov 24 14:00:01 sshd[1]: Accepted password for root from 192.0.2.1 port 1 ssh2",
        );
        t.line(3, "Nov 24 14:00:01 su[1]: whatever");
        let r = t.finish();
        assert_eq!((r.lines, r.matched, r.missed(), r.not_routed), (3, 1, 2, 1));
        assert_eq!(r.per_regex.iter().sum::<usize>(), 1);
        assert_eq!(r.addresses, 1);
    }
}
