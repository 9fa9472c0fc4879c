//! fail2ban's configuration files as Python's `configparser` reads them,
//! with fail2ban's additions (`configparserinc.py`, `configreader.py`):
//!
//! - one file: `[section]` headers, `key = value` or `key: value` (keys
//!   lowercased), `#` / `;` comment lines, inline ` ;` comments, values
//!   continued on lines indented deeper than the key (blank lines inside a
//!   value kept, comment lines skipped);
//! - a base name `X`: `X.conf`, `X.d/*.conf` (sorted), `X.local`,
//!   `X.d/*.local` (sorted); each file followed by its `.local` sibling, and
//!   preceded / followed by its `[INCLUDES] before` / `after` files
//!   (relative to the including file, recursively);
//! - merging: `[DEFAULT]` key by key; a section read again is updated key by
//!   key, and the values it replaces are kept as `KNOWN/<section>` (for
//!   `%(known/x)s`); conditional sections `[Init?family=inet6]` merge into
//!   `[Init]` as keys `x?family=inet6`;
//! - interpolation: `%(name)s`, `%%`, `%(__name__)s` (the section),
//!   `%(section/option)s`, `%(known/option)s`, `%(default/option)s`, up to
//!   ten levels deep.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One value with where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value {
    /// The text (continuation lines joined with `\n`).
    pub text: String,
    /// The file.
    pub file: Arc<Path>,
    /// 1-based line of the key.
    pub line: usize,
}

/// An ordered key → value map (insertion order, like a Python dict).
#[derive(Clone, Debug, Default)]
pub struct Section {
    keys: Vec<String>,
    map: HashMap<String, Value>,
}

impl Section {
    /// The value of a key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key)
    }
    /// Sets a key (keeping its first position).
    pub fn insert(&mut self, key: String, v: Value) {
        if !self.map.contains_key(&key) {
            self.keys.push(key.clone());
        }
        self.map.insert(key, v);
    }
    /// Removes a key.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let v = self.map.remove(key)?;
        self.keys.retain(|k| k != key);
        Some(v)
    }
    /// Keys in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(String::as_str)
    }
    /// (key, value) in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.keys
            .iter()
            .filter_map(|k| self.map.get(k).map(|v| (k.as_str(), v)))
    }
    /// Whether the key is set.
    pub fn contains(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }
}

/// A configuration problem with its place.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct IniError {
    /// The file.
    pub file: String,
    /// 1-based line (0: the file as a whole).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// One parsed file.
#[derive(Clone, Debug, Default)]
pub struct IniFile {
    /// `[DEFAULT]`.
    pub defaults: Section,
    /// Other sections in file order.
    pub sections: Vec<(String, Section)>,
}

impl IniFile {
    fn section(&self, name: &str) -> Option<&Section> {
        self.sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s)
    }
}

/// Parses one file's text the way Python's `configparser` does (strict:
/// a section or key repeated within one file is an error).
pub fn parse_file(path: &Path, text: &str) -> Result<IniFile, IniError> {
    let file: Arc<Path> = Arc::from(path);
    let err = |line: usize, message: String| IniError {
        file: path.display().to_string(),
        line,
        message,
    };
    let mut out = IniFile::default();
    // Current section: None (before any header), Some(None) = DEFAULT,
    // Some(Some(i)) = out.sections[i].
    let mut cur: Option<Option<usize>> = None;
    // The option being read: (key, lines, line number).
    let mut opt: Option<(String, Vec<String>, usize)> = None;
    let mut indent_level = 0usize;
    let mut seen_sections: Vec<String> = Vec::new();
    let mut seen_keys: Vec<String> = Vec::new();

    let finish = |out: &mut IniFile,
                  cur: Option<Option<usize>>,
                  opt: Option<(String, Vec<String>, usize)>| {
        if let (Some(c), Some((k, lines, line))) = (cur, opt) {
            let text = lines.join("\n").trim_end().to_string();
            let v = Value {
                text,
                file: file.clone(),
                line,
            };
            match c {
                None => out.defaults.insert(k, v),
                Some(i) => out.sections[i].1.insert(k, v),
            }
        }
    };

    for (n, raw_line) in text.lines().enumerate() {
        let lineno = n + 1;
        let line = raw_line.strip_suffix('\r').unwrap_or(raw_line);
        let comment_start = comment_start(line);
        let value = match comment_start {
            Some(c) => line[..c].trim(),
            None => line.trim(),
        };
        if value.is_empty() {
            // A blank line continues a value (kept as an empty line); a
            // comment line is skipped without ending it.
            if comment_start.is_none() {
                if let Some((_, lines, _)) = opt.as_mut() {
                    lines.push(String::new());
                }
            }
            continue;
        }
        let cur_indent = line.len() - line.trim_start().len();
        if opt.is_some() && cur_indent > indent_level {
            if let Some((_, lines, _)) = opt.as_mut() {
                lines.push(value.to_string());
            }
            continue;
        }
        indent_level = cur_indent;
        if let Some(header) = section_header(value) {
            finish(&mut out, cur, opt.take());
            if seen_sections.iter().any(|s| s == header) {
                return Err(err(lineno, format!("section [{header}] appears twice")));
            }
            seen_sections.push(header.to_string());
            seen_keys.clear();
            cur = Some(if header == "DEFAULT" {
                None
            } else {
                out.sections.push((header.to_string(), Section::default()));
                Some(out.sections.len() - 1)
            });
            continue;
        }
        if cur.is_none() {
            return Err(err(
                lineno,
                format!("{value:?} comes before any [section] header"),
            ));
        }
        let Some(d) = value.find(['=', ':']) else {
            return Err(err(
                lineno,
                format!("{value:?} is not `key = value` (continuation lines must be indented)"),
            ));
        };
        let key = value[..d].trim_end().to_lowercase();
        if key.is_empty() {
            return Err(err(lineno, format!("{value:?} has no key before '='")));
        }
        finish(&mut out, cur, opt.take());
        if seen_keys.contains(&key) {
            return Err(err(
                lineno,
                format!("key {key:?} appears twice in this section"),
            ));
        }
        seen_keys.push(key.clone());
        let v = value[d + 1..].trim().to_string();
        opt = Some((key, vec![v], lineno));
    }
    finish(&mut out, cur, opt.take());
    Ok(out)
}

/// `[name]` at the start of a (stripped) line: Python's `\[(?P<header>.+)\]`.
fn section_header(value: &str) -> Option<&str> {
    let rest = value.strip_prefix('[')?;
    let close = rest.rfind(']')?;
    let name = &rest[..close];
    (!name.is_empty()).then_some(name)
}

/// Where a comment starts: a line whose first non-blank is `#` or `;`, or
/// an inline `;` preceded by whitespace (or at column 0).
fn comment_start(line: &str) -> Option<usize> {
    let t = line.trim();
    if t.starts_with('#') || t.starts_with(';') {
        return Some(0);
    }
    let b = line.as_bytes();
    for (i, c) in line.char_indices() {
        if c == ';' && (i == 0 || (b[i - 1] as char).is_ascii_whitespace()) {
            return Some(i);
        }
    }
    None
}

/// The merged configuration of one base name (`jail`, `filter.d/sshd`, ...).
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// `[DEFAULT]`.
    pub defaults: Section,
    /// Sections in order of first appearance, including `KNOWN/<name>`.
    sections: Vec<(String, Section)>,
    /// Files read, in order.
    pub files: Vec<PathBuf>,
}

/// Conditional section names: `Init?family=inet6`.
fn split_conditional(name: &str) -> Option<(&str, &str)> {
    let q = name.find('?')?;
    let base = &name[..q];
    (!base.is_empty() && base.chars().all(|c| c.is_alphanumeric() || c == '_'))
        .then(|| (base, &name[q..]))
}

/// Reads files, caching parses (filters share common.conf).
#[derive(Default)]
pub struct Reader {
    cache: HashMap<PathBuf, Option<Arc<IniFile>>>,
    /// Problems found (a file that does not parse is reported and skipped,
    /// as fail2ban skips it with an error).
    pub errors: Vec<IniError>,
}

impl Reader {
    /// Parses a file (once). `None` when it does not exist or cannot be read.
    fn file(&mut self, path: &Path) -> Option<Arc<IniFile>> {
        if let Some(c) = self.cache.get(path) {
            return c.clone();
        }
        let parsed = if path.is_file() {
            match std::fs::read(path) {
                Ok(bytes) => {
                    let text = String::from_utf8_lossy(&bytes);
                    match parse_file(path, &text) {
                        Ok(f) => Some(Arc::new(f)),
                        Err(e) => {
                            self.errors.push(e);
                            None
                        }
                    }
                }
                Err(e) => {
                    self.errors.push(IniError {
                        file: path.display().to_string(),
                        line: 0,
                        message: format!("cannot read: {e}"),
                    });
                    None
                }
            }
        } else {
            None
        };
        self.cache.insert(path.to_path_buf(), parsed.clone());
        parsed
    }

    /// `X.conf`, `X.d/*.conf`, `X.local`, `X.d/*.local`: the files of a base
    /// name that exist.
    pub fn base_files(base: &Path) -> Vec<PathBuf> {
        let with = |ext: &str| {
            let mut p = base.as_os_str().to_owned();
            p.push(ext);
            PathBuf::from(p)
        };
        let dir = with(".d");
        let glob = |ext: &str| -> Vec<PathBuf> {
            let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map(|rd| {
                    rd.filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| {
                            p.file_name()
                                .and_then(|n| n.to_str())
                                .is_some_and(|n| n.ends_with(ext) && !n.starts_with('.'))
                        })
                        .collect()
                })
                .unwrap_or_default();
            v.sort();
            v
        };
        let mut files = vec![with(".conf")];
        files.extend(glob(".conf"));
        files.push(with(".local"));
        files.extend(glob(".local"));
        files.into_iter().filter(|p| p.exists()).collect()
    }

    /// Each file followed by its `.local` sibling when that exists and is
    /// not already listed.
    fn with_local(files: &[PathBuf]) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for f in files {
            out.push(f.clone());
            let local = f.with_extension("local");
            if local != *f && !files.contains(&local) && local.is_file() {
                out.push(local);
            }
        }
        out
    }

    fn includes(&mut self, files: &[PathBuf], seen: &[PathBuf]) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for f in Self::with_local(files) {
            out.extend(self.includes_one(&f, seen));
        }
        out
    }

    fn includes_one(&mut self, resource: &Path, seen: &[PathBuf]) -> Vec<PathBuf> {
        let Some(parsed) = self.file(resource) else {
            return Vec::new();
        };
        let dir = resource.parent().unwrap_or(Path::new(""));
        let mut before = Vec::new();
        let mut after = Vec::new();
        if let Some(inc) = parsed.section("INCLUDES") {
            for (key, list) in [("before", &mut before), ("after", &mut after)] {
                let Some(v) = inc.get(key) else { continue };
                // Interpolated within the including file only.
                let single = Config::from_file(&parsed, resource);
                let text = single
                    .get("INCLUDES", key, &[])
                    .unwrap_or_else(|_| v.text.clone());
                for name in text.split('\n').map(str::trim).filter(|s| !s.is_empty()) {
                    let r = if Path::new(name).is_absolute() {
                        PathBuf::from(name)
                    } else {
                        dir.join(name)
                    };
                    if seen.contains(&r) {
                        continue;
                    }
                    if seen.len() > 32 {
                        self.errors.push(IniError {
                            file: resource.display().to_string(),
                            line: v.line,
                            message: "includes nest more than 32 deep".into(),
                        });
                        continue;
                    }
                    let mut s = seen.to_vec();
                    s.push(resource.to_path_buf());
                    list.extend(self.includes(&[r], &s));
                }
            }
        }
        let mut out = before;
        out.push(resource.to_path_buf());
        out.extend(after);
        out
    }

    /// Reads a base name (`DIR/jail`, `DIR/filter.d/sshd`) with its
    /// includes and merges it.
    pub fn read(&mut self, base: &Path) -> Config {
        let files = Self::base_files(base);
        self.read_files(&files)
    }

    /// Reads explicit files (a filter given by path) with their includes.
    pub fn read_files(&mut self, files: &[PathBuf]) -> Config {
        let all = self.includes(files, &[]);
        let mut cfg = Config::default();
        for f in all {
            if let Some(parsed) = self.file(&f) {
                cfg.merge(&parsed);
                cfg.files.push(f);
            }
        }
        cfg
    }
}

/// Why a value could not be produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GetError {
    /// No such section.
    NoSection(String),
    /// No such option.
    NoOption(String),
    /// A `%(...)s` reference that cannot be resolved, or bad `%` syntax.
    Interpolation {
        /// The option being read.
        option: String,
        /// Where it was written.
        place: String,
        /// What is wrong.
        reason: String,
    },
}

impl std::fmt::Display for GetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GetError::NoSection(s) => write!(f, "no section [{s}]"),
            GetError::NoOption(o) => write!(f, "no option {o:?}"),
            GetError::Interpolation {
                option,
                place,
                reason,
            } => write!(f, "{place}: {option}: {reason}"),
        }
    }
}

const MAX_DEPTH: usize = 10;

impl Config {
    fn from_file(f: &IniFile, path: &Path) -> Config {
        let mut c = Config::default();
        c.merge(f);
        c.files.push(path.to_path_buf());
        c
    }

    fn merge(&mut self, f: &IniFile) {
        for (k, v) in f.defaults.iter() {
            self.defaults.insert(k.to_string(), v.clone());
        }
        for (name, sec) in &f.sections {
            let (name, sec) = match split_conditional(name) {
                Some((base, cond)) => {
                    let mut s = Section::default();
                    for (k, v) in sec.iter() {
                        s.insert(format!("{k}{cond}"), v.clone());
                    }
                    (base.to_string(), s)
                }
                None => (name.clone(), sec.clone()),
            };
            if let Some(existing) = self.section_mut(&name) {
                let mut known = Section::default();
                for (k, v) in existing.iter() {
                    if sec.contains(k) {
                        known.insert(k.to_string(), v.clone());
                    }
                }
                for (k, v) in sec.iter() {
                    existing.insert(k.to_string(), v.clone());
                }
                let kn = format!("KNOWN/{name}");
                match self.section_mut(&kn) {
                    Some(ks) => {
                        for (k, v) in known.iter() {
                            ks.insert(k.to_string(), v.clone());
                        }
                    }
                    None => self.sections.push((kn, known)),
                }
            } else {
                self.sections.push((name, sec));
            }
        }
    }

    /// A section.
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s)
    }

    fn section_mut(&mut self, name: &str) -> Option<&mut Section> {
        self.sections
            .iter_mut()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s)
    }

    /// Section names in order, without `KNOWN/...`.
    pub fn sections(&self) -> impl Iterator<Item = &str> {
        self.sections
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| !n.starts_with("KNOWN/"))
    }

    /// Whether a section exists.
    pub fn has_section(&self, name: &str) -> bool {
        self.section(name).is_some()
    }

    /// Adds options to a section (as `pref + key`), creating it: fail2ban's
    /// `merge_section` (filter options become `known/...` of the jail).
    pub fn merge_section(&mut self, name: &str, opts: &[(String, String)], pref: &str) {
        let file: Arc<Path> = Arc::from(Path::new("<merged>"));
        if self.section(name).is_none() {
            self.sections.push((name.to_string(), Section::default()));
        }
        if let Some(s) = self.section_mut(name) {
            for (k, v) in opts {
                let key = if pref.is_empty() || k.starts_with(pref) {
                    k.clone()
                } else {
                    format!("{pref}{k}")
                };
                s.insert(
                    key,
                    Value {
                        text: v.clone(),
                        file: file.clone(),
                        line: 0,
                    },
                );
            }
        }
    }

    /// Adds `[DEFAULT]` values.
    pub fn merge_defaults(&mut self, opts: &[(&str, &str)]) {
        let file: Arc<Path> = Arc::from(Path::new("<builtin>"));
        for (k, v) in opts {
            self.defaults.insert(
                (*k).to_string(),
                Value {
                    text: (*v).to_string(),
                    file: file.clone(),
                    line: 0,
                },
            );
        }
    }

    /// The raw value of an option (vars first, then the section, then
    /// `[DEFAULT]`), with where it was written.
    pub fn raw(
        &self,
        section: &str,
        option: &str,
        vars: &[(String, String)],
    ) -> Result<Value, GetError> {
        let option = option.to_lowercase();
        let sec = if section == "DEFAULT" {
            None
        } else {
            Some(
                self.section(section)
                    .ok_or_else(|| GetError::NoSection(section.to_string()))?,
            )
        };
        if let Some((_, v)) = vars.iter().rev().find(|(k, _)| k.to_lowercase() == option) {
            return Ok(Value {
                text: v.clone(),
                file: Arc::from(Path::new("<jail options>")),
                line: 0,
            });
        }
        if let Some(v) = sec.and_then(|s| s.get(&option)) {
            return Ok(v.clone());
        }
        self.defaults
            .get(&option)
            .cloned()
            .ok_or(GetError::NoOption(option))
    }

    /// An option's own keys in a section (without `[DEFAULT]`).
    pub fn options(&self, section: &str) -> Vec<String> {
        self.section(section)
            .map(|s| s.keys().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// Whether the option is set in the section itself or in `[DEFAULT]`.
    pub fn has_option(&self, section: &str, option: &str) -> bool {
        let o = option.to_lowercase();
        self.section(section).is_some_and(|s| s.contains(&o)) || self.defaults.contains(&o)
    }

    /// The interpolated value of an option: Python's `get(section, option,
    /// vars=vars)`.
    pub fn get(
        &self,
        section: &str,
        option: &str,
        vars: &[(String, String)],
    ) -> Result<String, GetError> {
        let raw = self.raw(section, option, vars)?;
        let place = if raw.line > 0 {
            format!("{}:{}", raw.file.display(), raw.line)
        } else {
            raw.file.display().to_string()
        };
        let mut out = String::new();
        let mut extra: Vec<(String, String)> = Vec::new();
        self.interpolate(section, &raw.text, vars, &mut extra, &mut out, 1)
            .map_err(|reason| GetError::Interpolation {
                option: option.to_string(),
                place,
                reason,
            })?;
        Ok(out)
    }

    /// fail2ban's `get_ex`: `section/option` names are looked up in that
    /// section first (`known/x`: the value the jail had before the filter's
    /// or the local file's override).
    pub fn get_ex(
        &self,
        section: &str,
        option: &str,
        vars: &[(String, String)],
    ) -> Result<String, GetError> {
        if let Some((sec, opt)) = split_sec_opt(option) {
            let lower = sec.to_lowercase();
            let candidates: Vec<String> = if lower == "known" {
                vec![format!("KNOWN/{section}"), section.to_string()]
            } else if lower == "default" {
                vec!["DEFAULT".to_string()]
            } else {
                vec![sec.to_string()]
            };
            for c in candidates {
                if let Ok(v) = self.get(&c, opt, &[]) {
                    return Ok(v);
                }
            }
        }
        self.get(section, option, vars)
    }

    /// The map lookup of interpolation: vars, section, defaults, the extra
    /// `section/option` values, and `__name__`.
    fn lookup(
        &self,
        section: &str,
        var: &str,
        vars: &[(String, String)],
        extra: &[(String, String)],
    ) -> Option<String> {
        if var == "__name__" {
            return Some(section.to_string());
        }
        if let Some((_, v)) = vars.iter().rev().find(|(k, _)| k.to_lowercase() == var) {
            return Some(v.clone());
        }
        if let Some((_, v)) = extra.iter().rev().find(|(k, _)| k == var) {
            return Some(v.clone());
        }
        if section != "DEFAULT" {
            if let Some(v) = self.section(section).and_then(|s| s.get(var)) {
                return Some(v.text.clone());
            }
        }
        self.defaults.get(var).map(|v| v.text.clone())
    }

    /// `%(section/option)s` references in `rest` that the map does not have:
    /// resolved to raw values (fail2ban's `_map_section_options`).
    fn map_section_options(
        &self,
        section: &str,
        rest: &str,
        vars: &[(String, String)],
        extra: &mut Vec<(String, String)>,
    ) {
        if !rest.contains('/') || !rest.contains("%(") {
            return;
        }
        let mut s = rest;
        while let Some(p) = s.find("%(") {
            let after = &s[p + 2..];
            let Some(close) = after.find(")s") else { break };
            let name = &after[..close];
            s = &after[close..];
            let Some((sec, opt)) = split_sec_opt(name) else {
                continue;
            };
            if !sec
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
                || opt.contains(')')
            {
                continue;
            }
            if self
                .lookup(section, &name.to_lowercase(), vars, extra)
                .is_some()
            {
                continue;
            }
            let lower = sec.to_lowercase();
            let mut v = None;
            let mut use_default = lower == "default";
            if lower == "known" {
                match self
                    .section(&format!("KNOWN/{section}"))
                    .and_then(|s| s.get(opt))
                {
                    Some(x) => v = Some(x.text.clone()),
                    None => use_default = true,
                }
            } else if !use_default {
                match self.section(sec) {
                    None => continue,
                    Some(s) => match s.get(opt) {
                        Some(x) => v = Some(x.text.clone()),
                        None => use_default = true,
                    },
                }
            }
            if use_default {
                v = self.defaults.get(opt).map(|x| x.text.clone());
            }
            if let Some(v) = v {
                extra.push((name.to_lowercase(), v));
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn interpolate(
        &self,
        section: &str,
        value: &str,
        vars: &[(String, String)],
        extra: &mut Vec<(String, String)>,
        out: &mut String,
        depth: usize,
    ) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "interpolation nests more than {MAX_DEPTH} levels (a value refers to itself?)"
            ));
        }
        self.map_section_options(section, value, vars, extra);
        let mut rest = value;
        while !rest.is_empty() {
            let Some(p) = rest.find('%') else {
                out.push_str(rest);
                return Ok(());
            };
            out.push_str(&rest[..p]);
            rest = &rest[p..];
            match rest.as_bytes().get(1) {
                Some(b'%') => {
                    out.push('%');
                    rest = &rest[2..];
                }
                Some(b'(') => {
                    let body = &rest[2..];
                    let close = body
                        .find(')')
                        .filter(|&c| c > 0 && body[c..].starts_with(")s"))
                        .ok_or_else(|| {
                            format!("bad interpolation reference {:?}", truncate(rest))
                        })?;
                    let var = body[..close].to_lowercase();
                    rest = &body[close + 2..];
                    let v = self.lookup(section, &var, vars, extra).ok_or_else(|| {
                        format!("%({var})s is not defined (in section [{section}] or [DEFAULT])")
                    })?;
                    if v.contains('%') {
                        self.interpolate(section, &v, vars, extra, out, depth + 1)?;
                    } else {
                        out.push_str(&v);
                    }
                }
                _ => {
                    return Err(format!(
                        "'%' must be followed by '%' or '(' (write %% for a literal %), found {:?}",
                        truncate(rest)
                    ))
                }
            }
        }
        Ok(())
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// `section/option` (fail2ban's `^([\w\-]+)/([^\s>]+)$`).
fn split_sec_opt(name: &str) -> Option<(&str, &str)> {
    let (sec, opt) = name.split_once('/')?;
    if sec.is_empty()
        || opt.is_empty()
        || !sec
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
        || opt.contains(|c: char| c.is_whitespace() || c == '>')
    {
        return None;
    }
    Some((sec, opt))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        let f = parse_file(Path::new("t.conf"), text).unwrap();
        Config::from_file(&f, Path::new("t.conf"))
    }

    #[test]
    fn values_comments_and_continuations() {
        let c = cfg("[DEFAULT]\na = 1 ; inline\nb = x;y\n[S]\nKey: v1\n  v2\n# comment inside\n\n  v3\nnext = n\n");
        assert_eq!(c.get("S", "a", &[]).unwrap(), "1");
        assert_eq!(c.get("S", "b", &[]).unwrap(), "x;y");
        assert_eq!(c.get("S", "key", &[]).unwrap(), "v1\nv2\n\nv3");
        assert_eq!(c.get("S", "next", &[]).unwrap(), "n");
    }

    #[test]
    fn interpolation_forms() {
        let c = cfg("[DEFAULT]\nd = D\nx = %(__name__)s-%(d)s\n[lt_file]\np = P<%(d)s>\n[S]\ny = %(x)s %(lt_file/p)s %(default/d)s 100%%\n");
        assert_eq!(c.get("S", "y", &[]).unwrap(), "S-D P<D> D 100%");
        let vars = vec![("d".to_string(), "V".to_string())];
        assert_eq!(c.get("S", "x", &vars).unwrap(), "S-V");
        let c = cfg("[S]\na = %(a)s\nb = %(nope)s\nc = 5%\n");
        assert!(c.get("S", "a", &[]).is_err());
        assert!(c
            .get("S", "b", &[])
            .unwrap_err()
            .to_string()
            .contains("nope"));
        assert!(c.get("S", "c", &[]).is_err());
    }

    #[test]
    fn known_values_and_conditional_sections() {
        let a = parse_file(Path::new("a.conf"), "[j]\nport = 22\n[Init]\nx = 1\n").unwrap();
        let b = parse_file(
            Path::new("a.local"),
            "[j]\nport = %(known/port)s,2222\n[Init?family=inet6]\nx = 6\n",
        )
        .unwrap();
        let mut c = Config::default();
        c.merge(&a);
        c.merge(&b);
        assert_eq!(c.get("j", "port", &[]).unwrap(), "22,2222");
        assert_eq!(c.get("Init", "x?family=inet6", &[]).unwrap(), "6");
        assert_eq!(c.get("Init", "x", &[]).unwrap(), "1");
        assert!(!c.sections().any(|s| s.starts_with("KNOWN")));
    }

    #[test]
    fn errors_have_lines() {
        let e = parse_file(Path::new("x.conf"), "[a]\nk = 1\nk = 2\n").unwrap_err();
        assert_eq!((e.line, e.file.as_str()), (3, "x.conf"));
        let e = parse_file(Path::new("x.conf"), "k = 1\n").unwrap_err();
        assert_eq!(e.line, 1);
        let e = parse_file(Path::new("x.conf"), "[a]\nnot a key\n").unwrap_err();
        assert_eq!(e.line, 2);
    }

    #[test]
    fn read_order_and_includes() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::write(p.join("common.conf"), "[DEFAULT]\nc = common\nv = 0\n").unwrap();
        std::fs::write(p.join("common.local"), "[DEFAULT]\nc = common-local\n").unwrap();
        std::fs::write(
            p.join("x.conf"),
            "[INCLUDES]\nbefore = common.conf\n[Definition]\nv = 1\n",
        )
        .unwrap();
        std::fs::create_dir(p.join("x.d")).unwrap();
        std::fs::write(p.join("x.d/b.conf"), "[Definition]\nv = 2\n").unwrap();
        std::fs::write(p.join("x.d/a.local"), "[Definition]\nv = 4\n").unwrap();
        std::fs::write(p.join("x.local"), "[Definition]\nv = 3\nw = %(known/v)s\n").unwrap();
        let mut r = Reader::default();
        let c = r.read(&p.join("x"));
        let names: Vec<String> = c
            .files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "common.conf",
                "common.local",
                "x.conf",
                "b.conf",
                "x.local",
                "a.local"
            ]
        );
        assert_eq!(c.get("Definition", "v", &[]).unwrap(), "4");
        assert_eq!(c.get("Definition", "c", &[]).unwrap(), "common-local");
        assert_eq!(c.get("Definition", "w", &[]).unwrap(), "3");
    }
}
