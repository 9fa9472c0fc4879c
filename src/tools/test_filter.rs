//! `banstream test-filter FILTER INPUT [--json]`: runs one filter over log
//! lines the way the daemon would (syslog parsing, program routing, session
//! correlation) and reports what matched.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::time::{Instant, SystemTime};

use serde::Serialize;

use crate::addr;
use crate::filter::fail2ban::Correlated;
use crate::filter::{self, Filter, FilterSpec, HitKind, NamedOptions, RegexSpec, Verdict};
use crate::jail::session::Sessions;
use crate::syslog::{self, ParseContext, Peer};

/// Where the filter comes from.
pub fn load_filter(spec: &str, dirs: &[std::path::PathBuf]) -> Result<Filter, filter::FilterError> {
    let is_raw = ["<HOST>", "<ADDR>", "<IP4>", "<IP6>"]
        .iter()
        .any(|t| spec.contains(t))
        && !Path::new(spec).is_file();
    if is_raw {
        let fs = FilterSpec {
            description: None,
            programs: Vec::new(),
            modes: Vec::new(),
            default_mode: None,
            prefix: None,
            failregex: vec![RegexSpec::Plain(spec.to_string())],
            ignoreregex: Vec::new(),
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
    let reference = if Path::new(spec).is_file() {
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

/// One line's result (`--json` prints these).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct LineResult {
    /// 1-based line number in the input.
    pub line: usize,
    /// Whether the line is a failure.
    #[serde(rename = "match")]
    pub matched: bool,
    /// The captured host (text as captured; may be a name).
    pub host: Option<String>,
}

/// Totals for the human report.
#[derive(Debug, Default)]
pub struct Report {
    /// Lines examined (not blank, not comments).
    pub lines: usize,
    /// Failures.
    pub matched: usize,
    /// Lines vetoed by an ignoreregex.
    pub ignored: usize,
    /// Hits per failregex.
    pub per_regex: Vec<usize>,
    /// Seconds spent.
    pub elapsed: f64,
}

/// Runs `filter` over every line of `input`, calling `each` per result.
pub fn run<R: Read>(
    filter: &Filter,
    input: R,
    mut each: impl FnMut(&LineResult, &str),
) -> std::io::Result<Report> {
    let started = Instant::now();
    let mut report = Report {
        per_regex: vec![0; filter.failregex_count()],
        ..Default::default()
    };
    let mut sessions = Sessions::default();
    let mut f2b_state = filter
        .fail2ban()
        .filter(|m| m.is_stateful())
        .map(|_| crate::filter::fail2ban::State::default());
    let mut reference = SystemTime::now();
    let reader = BufReader::with_capacity(1 << 20, input);
    let mut buf = Vec::new();
    let mut reader = reader;
    let mut n = 0;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        n += 1;
        let text = syslog::decode(&buf);
        let line = text.trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        report.lines += 1;
        let ctx = ParseContext {
            received: reference,
            peer: Peer::File,
            reference,
        };
        let ev = syslog::parse(line, &ctx);
        if let Some(t) = ev.timestamp {
            reference = t;
        }
        // A raw line (no syslog header) reaches a fail2ban filter as written.
        let routed = filter.listens_to(ev.program)
            || (filter.fail2ban().is_some()
                && (ev.program.is_empty() || crate::filter::fail2ban::Matcher::reads_raw(&ev)));
        let verdict = if routed {
            filter.examine(&ev)
        } else {
            Verdict::Miss
        };
        let mut result = LineResult {
            line: n,
            matched: false,
            host: None,
        };
        if let Some(m) = filter.fail2ban() {
            if let Verdict::Ignored { .. } = verdict {
                report.ignored += 1;
            }
            if let Correlated::Failure { regex, host } =
                m.correlate(f2b_state.as_mut(), &ev, verdict, reference)
            {
                report.per_regex[regex] += 1;
                report.matched += 1;
                result.matched = true;
                result.host = host;
            }
            each(&result, line);
            continue;
        }
        match verdict {
            Verdict::Miss => {}
            Verdict::Ignored { .. } => report.ignored += 1,
            Verdict::Hit { regex, host, kind } => {
                let key = if filter.uses_sessions() {
                    sessions.key(&ev)
                } else {
                    None
                };
                let ip = host.and_then(addr::parse_host);
                if let (Some(ip), Some(k)) = (ip, key) {
                    sessions.learn(k, ip, reference);
                }
                if kind == HitKind::Failure {
                    report.per_regex[regex] += 1;
                    report.matched += 1;
                    result.matched = true;
                    result.host = match (host, key) {
                        (Some(h), _) => Some(h.to_string()),
                        (None, Some(k)) => {
                            sessions.attribute(k, reference).map(|ip| ip.to_string())
                        }
                        (None, None) => None,
                    };
                }
            }
        }
        each(&result, line);
    }
    report.elapsed = started.elapsed().as_secs_f64();
    Ok(report)
}
