//! fail2ban's `DefinitionInitConfigReader` for filters and actions: the
//! `[Definition]` options interpolated with the jail's options, `[Init]`
//! defaults overridden by the options given in the reference
//! (`sshd[mode=aggressive]`), then `<tag>` substitution between them.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::ini::{Config, GetError, Reader};
use super::tags;

/// Options as (key, value) in insertion order.
pub type Opts = Vec<(String, String)>;

/// Sets `k` in an ordered option list.
pub fn set(opts: &mut Opts, k: &str, v: String) {
    match opts.iter_mut().find(|(x, _)| x == k) {
        Some(e) => e.1 = v,
        None => opts.push((k.to_string(), v)),
    }
}

/// Looks `k` up in an ordered option list.
pub fn get<'a>(opts: &'a Opts, k: &str) -> Option<&'a str> {
    opts.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str())
}

/// `a` overlaid with `b` (b wins).
pub fn merged(a: &Opts, b: &Opts) -> Opts {
    let mut out = a.clone();
    for (k, v) in b {
        set(&mut out, k, v.clone());
    }
    out
}

/// A filter or action file being read for one jail.
pub struct DefReader {
    /// The merged files.
    pub cfg: Config,
    /// The main file (for messages).
    pub origin: PathBuf,
    /// `[Init]` values and the reference's options (fail2ban's `_initOpts`).
    pub init: Opts,
    /// The jail options plus init options used as interpolation variables.
    pub vars: Opts,
    /// The `[Definition]` options read.
    pub opts: Opts,
    cache: std::cell::RefCell<HashMap<String, Option<String>>>,
    /// Interpolation errors (reported by `check`, the option is skipped).
    pub errors: Vec<String>,
}

impl DefReader {
    /// Reads `DIR/KIND.d/NAME` (or a path) with its includes. `None` when no
    /// file exists.
    pub fn read(
        reader: &mut Reader,
        dir: &Path,
        kind: &str,
        name: &str,
        init: Opts,
    ) -> Option<DefReader> {
        let base = if Path::new(name).is_absolute() {
            PathBuf::from(name)
        } else {
            dir.join(kind).join(name)
        };
        // A path given with its extension (`test-filter x/y.conf`).
        let cfg = if base
            .extension()
            .is_some_and(|e| e == "conf" || e == "local")
            && base.is_file()
        {
            reader.read_files(std::slice::from_ref(&base))
        } else {
            reader.read(&base)
        };
        if cfg.files.is_empty() {
            return None;
        }
        let origin = cfg
            .files
            .iter()
            .find(|f| {
                f.starts_with(base.parent().unwrap_or(dir)) && f.file_stem() == base.file_stem()
            })
            .cloned()
            .unwrap_or_else(|| cfg.files[0].clone());
        Some(DefReader {
            cfg,
            origin,
            init,
            vars: Vec::new(),
            opts: Vec::new(),
            cache: Default::default(),
            errors: Vec::new(),
        })
    }

    /// fail2ban's `getOptions(pOpts, all)`: reads the `[Definition]` keys
    /// `wanted` (those not given as variables), then the `[Init]` section,
    /// then, with `all`, every other `[Definition]` key.
    pub fn get_options(&mut self, jail_opts: &Opts, wanted: &[&str], all: bool) {
        let vars = merged(jail_opts, &self.init);
        self.opts.clear();
        for w in wanted {
            if get(&vars, w).is_some() {
                continue;
            }
            match self.cfg.get("Definition", w, &vars) {
                Ok(v) => set(&mut self.opts, w, v),
                Err(GetError::NoOption(_)) | Err(GetError::NoSection(_)) => {}
                Err(e) => self.errors.push(e.to_string()),
            }
        }
        self.vars = vars;
        if self.cfg.has_section("Init") {
            for opt in self.cfg.options("Init") {
                if opt == "__name__" {
                    continue;
                }
                let v = match self.cfg.get("Init", &opt, &[]) {
                    Ok(v) => v,
                    Err(e) => {
                        self.errors.push(e.to_string());
                        continue;
                    }
                };
                if !opt.starts_with("known/") {
                    set(&mut self.init, &format!("known/{opt}"), v.clone());
                }
                if get(&self.init, &opt).is_none() {
                    set(&mut self.init, &opt, v);
                }
            }
        }
        if all && self.cfg.has_section("Definition") {
            for opt in self.cfg.options("Definition") {
                if opt == "__name__" || get(&self.opts, &opt).is_some() {
                    continue;
                }
                match self.cfg.get("Definition", &opt, &[]) {
                    Ok(v) => set(&mut self.opts, &opt, v),
                    Err(e) => self.errors.push(e.to_string()),
                }
            }
        }
        // Cached on-demand lookups depend on the variables.
        self.cache.borrow_mut().clear();
    }

    fn comb_option(&self, name: &str) -> Option<String> {
        if let Some(v) = self.cache.borrow().get(name) {
            return v.clone();
        }
        let v = self.cfg.get_ex("Definition", name, &self.vars).ok();
        self.cache.borrow_mut().insert(name.to_string(), v.clone());
        v
    }

    /// fail2ban's `getCombined`: Definition options overlaid with the init
    /// options, `<tag>`s substituted.
    pub fn combined(&self, ignore: &[&str]) -> Result<Opts, String> {
        let mut opts = merged(&self.opts, &self.init);
        let mut ign: HashSet<String> = ignore.iter().map(|s| s.to_string()).collect();
        for (k, _) in &opts {
            if let Some(q) = k.find('?') {
                if k[..q].chars().all(|c| c.is_alphanumeric() || c == '_') && q > 0 {
                    ign.insert(k[..q].to_string());
                }
            }
        }
        tags::substitute_recursive(&mut opts, &ign, &|n| self.comb_option(n))?;
        Ok(opts)
    }

    /// The file and line where `[Definition] key` was written.
    pub fn place(&self, key: &str) -> (PathBuf, usize) {
        match self.cfg.raw("Definition", key, &[]) {
            Ok(v) if v.line > 0 => (v.file.to_path_buf(), v.line),
            _ => (self.origin.clone(), 0),
        }
    }
}
