//! Finding the date in a raw log line, so that it can be cut out before the
//! filter runs, as fail2ban's `DateDetector` does. In-stream the syslog
//! header carries the time and the message has no date to remove; this is
//! for lines without a syslog header (`test-filter` on an application's own
//! log file, `replay` of one).
//!
//! Supported: fail2ban's default templates (line-begin anchored ones tried
//! first), `{^LN-BEG}`, `{NONE}`, `EPOCH`, `LEPOCH`, `TAI64N`, `{DATE}` and
//! `%`-directives in `datepattern` (several patterns, one per line). The
//! date's value is not needed (the clock is the syslog header's or the
//! receive time), only its place.

use regex::Regex;

/// The date templates of one filter.
#[derive(Debug, Default)]
pub struct DateDetector {
    templates: Vec<Template>,
    /// All templates in one automaton: one pass finds which can match.
    set: Option<regex::RegexSet>,
}

#[derive(Debug)]
struct Template {
    re: Regex,
    /// Not inside a word at the start (fail2ban's `(?=^|\b|\W)`).
    word_begin: bool,
    /// Not inside a word at the end (fail2ban's `(?=\b|\W|$)`).
    word_end: bool,
}

const DEFAULTS: &[&str] = &[
    r"%ExY(?P<_sep>[-/.])%m(?P=_sep)%d(?:T|  ?)%H:%M:%S(?:[.,]%f)?(?:\s*%z)?",
    r"(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?",
    r"(?:%a )?%b %d %ExY %k:%M:%S(?:\.%f)?",
    r"%d(?P<_sep>[-/])%m(?P=_sep)(?:%ExY|%Exy) %k:%M:%S",
    r"%d(?P<_sep>[-/])%b(?P=_sep)%ExY[ :]?%H:%M:%S(?:\.%f)?(?: %z)?",
    r"%m/%d/%ExY:%H:%M:%S",
    r"%m-%d-%ExY %k:%M:%S(?:\.%f)?",
    "EPOCH",
    r"{^LN-BEG}%H:%M:%S",
    r"^<%m/%d/%Exy@%H:%M:%S>",
    r"%Exy%Exm%Exd  ?%H:%M:%S",
    r"%b %d, %ExY %I:%M:%S %p",
    r"^%b-%d-%Exy %k:%M:%S",
    r"%ExY%Exm%Exd(?:T|  ?)%ExH%ExM%ExS(?:[.,]%f)?(?:\s*%z)?",
    r"(?:%Z )?(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?",
    r"(?:%z )?(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?",
    "TAI64N",
];

fn directive(d: &str) -> Option<&'static str> {
    Some(match d {
        "a" => r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)",
        "A" => r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)",
        "b" => r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)",
        "B" => {
            r"(?:January|February|March|April|May|June|July|August|September|October|November|December)"
        }
        "p" => r"(?:AM|PM)",
        "f" => r"[0-9]{1,6}",
        "j" => r"(?:36[0-6]|3[0-5]\d|[1-2]\d\d|0[1-9]\d|00[1-9]|[1-9]\d|0[1-9]|[1-9])",
        "y" | "Exy" => r"\d{2}",
        "Y" => r"\d{4}",
        "ExY" => r"20\d\d",
        "I" => r"(?:1[0-2]|0[1-9]|[1-9])",
        "U" | "W" => r"(?:5[0-3]|[0-4]\d|\d)",
        "w" => r"[0-6]",
        "k" => r" ?[0-2]?\d",
        "l" => r" ?1?\d",
        "Z" => r"(?:Z|[A-Z]{3,5})",
        "z" => r"(?:Z|UTC|GMT|[+-][01]\d(?::?\d{2})?)",
        "ExZ" => r"[A-Z](?:[A-Z]{2,4})?",
        "Exz" => r"(?:(?:[A-Z](?:[A-Z]{2,4})?)?[+-][01]\d(?::?\d{2})?|[A-Z](?:[A-Z]{2,4})?)",
        "d" => r"(?:[1-2]\d|[0 ]?[1-9]|3[0-1])",
        "m" => r"(?:0?[1-9]|1[0-2])",
        "H" => r"(?:[0-1]?\d|2[0-3])",
        "M" => r"[0-5]?\d",
        "S" => r"(?:[0-5]?\d|6[0-1])",
        "Exd" => r"(?:[1-2]\d|0[1-9]|3[0-1])",
        "Exm" => r"(?:0[1-9]|1[0-2])",
        "ExH" => r"(?:[0-1]\d|2[0-3])",
        "Exk" => r" ?(?:[0-1]?\d|2[0-3])",
        "Exl" => r" ?(?:1[0-2]|\d)",
        "ExM" => r"[0-5]\d",
        "ExS" => r"(?:[0-5]\d|6[0-1])",
        "%" => "%",
        _ => return None,
    })
}

/// Expands `%`-directives; `(?P<_sep>..)(?P=_sep)` becomes a plain class
/// (the separator is not checked twice).
fn expand(p: &str) -> Result<String, String> {
    let p = p
        .replace("(?P<_sep>[-/.])", "[-/.]")
        .replace("(?P<_sep>[-/])", "[-/]")
        .replace("(?P=_sep)", "[-/.]");
    let mut out = String::new();
    let mut rest = p.as_str();
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let t = &rest[i + 1..];
        let key = [
            "ExY", "Exy", "ExZ", "Exz", "Exd", "Exm", "ExH", "Exk", "Exl", "ExM", "ExS",
        ]
        .iter()
        .find(|k| t.starts_with(**k))
        .map(|k| k.to_string())
        .or_else(|| t.chars().next().map(|c| c.to_string()))
        .ok_or("a datepattern ends with '%'")?;
        let r = directive(&key).ok_or_else(|| format!("unknown date directive %{key}"))?;
        out.push_str(r);
        rest = &t[key.len()..];
    }
    out.push_str(rest);
    Ok(out)
}

fn template(p: &str, line_begin: bool) -> Result<Vec<Template>, String> {
    let p = p.trim();
    // `{DATE}` stands for each default template.
    if p.contains("{DATE}") {
        let mut out = Vec::new();
        for d in DEFAULTS {
            if d.starts_with('^') || d.starts_with('{') || !d.contains('%') {
                continue;
            }
            out.extend(template(&p.replace("{DATE}", d), line_begin)?);
        }
        return Ok(out);
    }
    let mut p = p.to_string();
    let mut anchored = line_begin;
    if let Some(r) = p.strip_prefix("{^LN-BEG}") {
        anchored = true;
        p = r.to_string();
    }
    let unbound = p.starts_with("{UNB}");
    if unbound {
        p = p["{UNB}".len()..].to_string();
    }
    let body = match p.as_str() {
        "EPOCH" => r"\d{10,11}(?:\.\d{3,6})?".to_string(),
        "LEPOCH" => r"\d{10,11}(?:\d{3}(?:\.\d{1,6}|\d{3})?)?".to_string(),
        "TAI64N" => r"@[0-9a-fA-F]{24}".to_string(),
        _ => expand(&p)?,
    };
    let no_begin = body.starts_with('^') || body.starts_with("**") || unbound;
    let no_end = body.ends_with('$') || body.ends_with("**") || unbound;
    let body = body
        .trim_start_matches("**")
        .trim_end_matches("**")
        .to_string();
    let body = if has_group(&body) {
        body
    } else {
        format!("({body})")
    };
    let mut re = String::new();
    if ["a", "A", "b", "B", "p"]
        .iter()
        .any(|d| p.contains(&format!("%{d}")))
    {
        re.push_str("(?i)");
    }
    if anchored && !no_begin {
        re.push_str(r"^(?:\W{0,2})?");
    }
    re.push_str(&body);
    let (rust, fancy) = super::pattern::translate(&re);
    if fancy {
        return Err(format!(
            "datepattern {p:?} needs look-around, which is not supported"
        ));
    }
    let re = Regex::new(&rust).map_err(|e| format!("datepattern {p:?}: {e}"))?;
    Ok(vec![Template {
        re,
        word_begin: !anchored && !no_begin,
        word_end: !no_end,
    }])
}

fn is_word(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || c == '_')
}

impl Template {
    /// The date's span: group 1, with fail2ban's word bounds checked.
    fn find(&self, line: &str) -> Option<(usize, usize)> {
        let mut at = 0;
        while at <= line.len() {
            let c = self.re.captures_at(line, at)?;
            let whole = c.get(0)?;
            let (s, e) = (whole.start(), whole.end());
            let begin_ok = !self.word_begin
                || s == 0
                || !(is_word(line[..s].chars().next_back()) && is_word(line[s..].chars().next()));
            let end_ok = !(self.word_end
                && is_word(line[..e].chars().next_back())
                && is_word(line[e..].chars().next()));
            if begin_ok && end_ok {
                let g = c.get(1).unwrap_or(whole);
                return Some((g.start(), g.end()));
            }
            at = s + line[s..].chars().next().map_or(1, char::len_utf8);
        }
        None
    }
}

/// Whether a pattern has a capturing group of its own.
fn has_group(p: &str) -> bool {
    let b = p.as_bytes();
    (0..b.len())
        .any(|i| b[i] == b'(' && (i == 0 || b[i - 1] != b'\\') && b.get(i + 1) != Some(&b'?'))
}

impl DateDetector {
    /// The templates for a `datepattern` (`None`: fail2ban's defaults).
    pub fn new(datepattern: Option<&str>) -> Result<DateDetector, String> {
        let mut templates = Vec::new();
        let pats: Vec<&str> = match datepattern {
            Some(d) => d.lines().map(str::trim).filter(|l| !l.is_empty()).collect(),
            None => Vec::new(),
        };
        let defaults = |line_begin: bool, t: &mut Vec<Template>| -> Result<(), String> {
            // Anchored variants first, as fail2ban prefers them.
            for p in DEFAULTS {
                if !p.starts_with('^') && !p.starts_with("{^LN-BEG}") {
                    t.extend(template(p, true)?);
                }
            }
            if !line_begin {
                for p in DEFAULTS {
                    t.extend(template(p, false)?);
                }
            }
            Ok(())
        };
        if pats.is_empty() {
            defaults(false, &mut templates)?;
        }
        for p in pats {
            match p {
                "{NONE}" => {}
                "{^LN-BEG}" => defaults(true, &mut templates)?,
                _ => templates.extend(template(p, false)?),
            }
        }
        let set = regex::RegexSet::new(templates.iter().map(|t| t.re.as_str())).ok();
        Ok(DateDetector { templates, set })
    }

    /// The byte span of the date in `line`, if one is found.
    pub fn find(&self, line: &str) -> Option<(usize, usize)> {
        match &self.set {
            Some(set) => set
                .matches(line)
                .iter()
                .find_map(|i| self.templates[i].find(line)),
            None => self.templates.iter().find_map(|t| t.find(line)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_templates_find_common_dates() {
        let d = DateDetector::new(None).unwrap();
        for (line, date) in [
            ("2005-01-23 21:59:59 x", "2005-01-23 21:59:59"),
            (
                "[Sat Jun 01 02:17:42 2013] [error] x",
                "Sat Jun 01 02:17:42 2013",
            ),
            (
                "1.2.3.4 - - [31/Oct/2006:09:22:55 -0000] \"GET",
                "31/Oct/2006:09:22:55 -0000",
            ),
            ("Jan 23 21:59:59 host x", "Jan 23 21:59:59"),
        ] {
            let (s, e) = d.find(line).unwrap_or_else(|| panic!("{line}"));
            assert_eq!(&line[s..e], date);
        }
        let d = DateDetector::new(Some("{NONE}")).unwrap();
        assert_eq!(d.find("2005-01-23 21:59:59 x"), None);
        let d = DateDetector::new(Some(r"^%Y/%m/%d %H:%M:%S")).unwrap();
        let l = "2019/01/02 03:04:05 msg";
        assert_eq!(d.find(l), Some((0, 19)));
    }
}
