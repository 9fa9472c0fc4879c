//! The filters shipped in `conf/filters/`, embedded so the default config
//! needs no installed files, and the lookup that lets a file in a
//! configured filter directory override a built-in of the same name.

use std::path::{Path, PathBuf};

use super::{Filter, FilterError, FilterSpec, NamedOptions};

/// (name, file text) of every embedded filter.
pub const BUILTIN: &[(&str, &str)] = &[
    ("sshd", include_str!("../../conf/filters/sshd.toml")),
    (
        "pam-generic",
        include_str!("../../conf/filters/pam-generic.toml"),
    ),
    (
        "named-refused",
        include_str!("../../conf/filters/named-refused.toml"),
    ),
    (
        "named-ratelimit",
        include_str!("../../conf/filters/named-ratelimit.toml"),
    ),
    (
        "ufw-port-scan",
        include_str!("../../conf/filters/ufw-port-scan.toml"),
    ),
    ("dropbear", include_str!("../../conf/filters/dropbear.toml")),
];

/// Names that are filters but not regex filters: `recidive` is fed by
/// banstream's own bans.
pub const SPECIAL: &[&str] = &["recidive"];

/// The names a jail may use without a file.
pub fn names() -> Vec<&'static str> {
    BUILTIN
        .iter()
        .map(|(n, _)| *n)
        .chain(SPECIAL.iter().copied())
        .collect()
}

/// Finds the text of a filter: an explicit path (`/x/y.toml`, `./y.toml`),
/// else `DIR/NAME.toml` in the first directory that has it, else the
/// built-in. Returns (origin for messages, text).
pub fn find(name: &str, dirs: &[PathBuf]) -> Result<(String, String), FilterError> {
    if name.contains('/') || name.ends_with(".toml") {
        let text = std::fs::read_to_string(name).map_err(|e| FilterError::Load {
            origin: name.to_string(),
            reason: format!("cannot read filter file: {e}"),
        })?;
        return Ok((name.to_string(), text));
    }
    for d in dirs {
        let p = d.join(format!("{name}.toml"));
        if p.is_file() {
            let text = std::fs::read_to_string(&p).map_err(|e| FilterError::Load {
                origin: p.display().to_string(),
                reason: format!("cannot read filter file: {e}"),
            })?;
            return Ok((p.display().to_string(), text));
        }
    }
    match BUILTIN.iter().find(|(n, _)| *n == name) {
        Some((n, text)) => Ok((format!("builtin:{n}"), (*text).to_string())),
        None => Err(FilterError::Unknown {
            name: name.to_string(),
            known: names().join(", "),
        }),
    }
}

/// Parses a filter file's text.
pub fn parse_spec(origin: &str, text: &str) -> Result<FilterSpec, FilterError> {
    toml::from_str(text).map_err(|e| FilterError::Load {
        origin: origin.to_string(),
        reason: e.to_string().trim_end().replace('\n', " "),
    })
}

/// Loads and compiles a filter reference such as `sshd[mode=aggressive]`.
pub fn load(reference: &NamedOptions, dirs: &[PathBuf]) -> Result<Filter, FilterError> {
    let (origin, text) = find(&reference.name, dirs)?;
    let spec = parse_spec(&origin, &text)?;
    let name = Path::new(&reference.name)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or(&reference.name);
    Filter::compile(name, &spec, reference, &origin, Some(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_compiles_in_every_mode() {
        for (name, text) in BUILTIN {
            let spec = parse_spec(name, text).unwrap();
            let modes: Vec<Option<String>> = if spec.modes.is_empty() {
                vec![None]
            } else {
                spec.modes.iter().cloned().map(Some).collect()
            };
            for m in modes {
                let mut opts = NamedOptions::parse(name).unwrap();
                if let Some(m) = m {
                    opts.options.insert("mode".into(), m);
                }
                let f = Filter::compile(name, &spec, &opts, name, Some(text))
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(
                    !f.programs().is_empty(),
                    "{name} must be anchored to programs"
                );
            }
        }
    }

    #[test]
    fn dropbear_never_reads_an_ipv6_port_as_part_of_the_address() {
        let f = load(&NamedOptions::parse("dropbear").unwrap(), &[]).unwrap();
        let host = |msg: &str| match f.check(msg) {
            super::super::Verdict::Hit { host, .. } => host.map(str::to_string),
            v => panic!("{msg}: {v:?}"),
        };
        let bad = |from: &str| format!("Bad password attempt for 'root' from {from}");
        assert_eq!(host(&bad("2001:db8::1:22")).as_deref(), Some("2001:db8::1"));
        assert_eq!(
            host(&bad("2001:db8::1:54321")).as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(host(&bad("192.0.2.6:2222")).as_deref(), Some("192.0.2.6"));
        assert_eq!(host(&bad("192.0.2.5")).as_deref(), Some("192.0.2.5"));
    }

    #[test]
    fn unknown_name_lists_the_known_ones() {
        let err = load(&NamedOptions::parse("nope").unwrap(), &[]).unwrap_err();
        assert!(err.to_string().contains("sshd"), "{err}");
    }
}
