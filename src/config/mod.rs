//! Configuration: layered TOML, validated per file, then resolved into the
//! runtime [`Settings`].
//!
//! Layers, later wins key by key (through the `config` crate):
//! 1. the embedded defaults (`conf/banstream.toml`, built in);
//! 2. `-c FILE`, else /etc/banstream/banstream.toml when it exists;
//! 3. `conf.d/*.toml` beside that file (sorted), else /etc/banstream/conf.d;
//! 4. `BANSTREAM_*` environment variables (`BANSTREAM_DEFAULTS__MAXRETRY=3`,
//!    `BANSTREAM_JAIL__SSHD__BANTIME=1h`).
//!
//! Each file is first parsed on its own with `deny_unknown_fields`, so an
//! unknown key or a wrong type is reported with the file and line.

pub mod fail2ban;
pub mod paths;
pub mod raw;
pub mod resolve;
pub mod services;
pub mod timespec;

use std::path::{Path, PathBuf};

pub use raw::RawConfig;
pub use resolve::{JailSettings, Settings};
pub use timespec::TimeSpec;

/// The documented default configuration, compiled in.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../conf/banstream.toml");

/// The system configuration file read when no `-c` is given.
pub const SYSTEM_CONFIG: &str = "/etc/banstream/banstream.toml";

/// Configuration errors. Each names where the problem is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file is not valid TOML, has an unknown key, or a value of the wrong type.
    #[error("{origin}:{line}:{column}: {message}")]
    Parse {
        /// The file.
        origin: String,
        /// 1-based line (0 when unknown).
        line: usize,
        /// 1-based column (0 when unknown).
        column: usize,
        /// What is wrong, including the key.
        message: String,
    },
    /// The merged layers (or an environment variable) are invalid.
    #[error("merged configuration: {0}")]
    Merge(String),
    /// A value that parses but makes no sense (unknown filter, bad port, ...).
    #[error("{origin}: {message}")]
    Invalid {
        /// Where: `jail.sshd.port`, a filter file, ...
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// Several errors at once (`check` lists them all).
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Many(Vec<ConfigError>),
}

/// Where the configuration comes from.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// `-c FILE`. `None`: /etc/banstream/banstream.toml if it exists.
    pub file: Option<PathBuf>,
    /// Read `BANSTREAM_*` variables (off in tests that must not see the environment).
    pub env: bool,
}

/// One layer as read.
#[derive(Clone, Debug)]
pub struct Layer {
    /// File name, or `builtin:banstream.toml`.
    pub origin: String,
    /// Its text.
    pub text: String,
}

/// The merged raw configuration with the layers it came from.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The merged configuration.
    pub raw: RawConfig,
    /// Layers in the order applied.
    pub layers: Vec<Layer>,
    /// The main config file, if any (its directory anchors `conf.d/` and `filters/`).
    pub main_file: Option<PathBuf>,
}

/// Converts a byte offset in `text` to a 1-based (line, column).
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(offset, |i| offset - i - 1) + 1;
    (line, col)
}

/// Parses one file on its own, for precise errors.
pub fn parse_layer(origin: &str, text: &str) -> Result<RawConfig, ConfigError> {
    toml::from_str::<RawConfig>(text).map_err(|e| {
        let (line, column) = e.span().map_or((0, 0), |s| line_col(text, s.start));
        ConfigError::Parse {
            origin: origin.to_string(),
            line,
            column,
            message: e.message().trim().to_string(),
        }
    })
}

fn read(path: &Path) -> Result<Layer, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Layer {
        origin: path.display().to_string(),
        text,
    })
}

/// The `conf.d` directory for a main file: beside it, else the system one.
fn confd_for(main: Option<&Path>) -> PathBuf {
    match main.and_then(Path::parent) {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join("conf.d"),
        Some(_) => PathBuf::from("conf.d"),
        None => PathBuf::from("/etc/banstream/conf.d"),
    }
}

/// Reads and merges every layer. Every file's errors are collected.
pub fn load(opts: &LoadOptions) -> Result<Loaded, ConfigError> {
    let mut layers = vec![Layer {
        origin: "builtin:banstream.toml".into(),
        text: EMBEDDED_DEFAULT.to_string(),
    }];
    let main_file = match &opts.file {
        Some(p) => Some(p.clone()),
        None => Path::new(SYSTEM_CONFIG)
            .is_file()
            .then(|| PathBuf::from(SYSTEM_CONFIG)),
    };
    if let Some(p) = &main_file {
        layers.push(read(p)?);
    }
    let confd = confd_for(main_file.as_deref());
    if let Ok(entries) = std::fs::read_dir(&confd) {
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
            .collect();
        files.sort();
        for f in files {
            layers.push(read(&f)?);
        }
    }
    let mut errors = Vec::new();
    for l in &layers {
        if let Err(e) = parse_layer(&l.origin, &l.text) {
            errors.push(e);
        }
    }
    if !errors.is_empty() {
        return Err(if errors.len() == 1 {
            errors.remove(0)
        } else {
            ConfigError::Many(errors)
        });
    }
    let mut builder = config::Config::builder();
    for l in &layers {
        builder = builder.add_source(config::File::from_str(&l.text, config::FileFormat::Toml));
    }
    if opts.env {
        builder = builder.add_source(
            config::Environment::with_prefix("BANSTREAM")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("defaults.ignoreip"),
        );
    }
    let merged = builder
        .build()
        .map_err(|e| ConfigError::Merge(e.to_string()))?;
    let raw: RawConfig = merged
        .try_deserialize()
        .map_err(|e| ConfigError::Merge(e.to_string()))?;
    Ok(Loaded {
        raw,
        layers,
        main_file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_parses() {
        parse_layer("builtin", EMBEDDED_DEFAULT).unwrap();
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let text = "[defaults]\nmaxretry = 3\nmaxretyr = 4\n";
        let err = parse_layer("/etc/banstream/banstream.toml", text).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("/etc/banstream/banstream.toml:3:"), "{msg}");
        assert!(msg.contains("maxretyr"), "{msg}");
    }

    #[test]
    fn wrong_type_is_an_error() {
        let err = parse_layer("x.toml", "[jail.sshd]\nmaxretry = \"lots\"\n").unwrap_err();
        assert!(err.to_string().starts_with("x.toml:2:"), "{err}");
        let err =
            parse_layer("x.toml", "[jail.sshd]\nbantime = \"forever and ever\"\n").unwrap_err();
        assert!(err.to_string().contains("invalid time span"), "{err}");
    }

    #[test]
    fn layers_merge_and_dotted_keys_survive() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("banstream.toml");
        std::fs::write(
            &main,
            "[defaults]\nmaxretry = 7\n\"bantime.increment\" = true\n[jail.Named-UDP]\nfilter = \"named-refused\"\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("conf.d")).unwrap();
        std::fs::write(
            dir.path().join("conf.d/10-x.toml"),
            "[defaults]\nmaxretry = 9\n",
        )
        .unwrap();
        let l = load(&LoadOptions {
            file: Some(main),
            env: false,
        })
        .unwrap();
        assert_eq!(l.raw.defaults.maxretry, Some(9));
        assert_eq!(l.raw.defaults.bantime_increment, Some(true));
        assert!(
            l.raw.jail.contains_key("Named-UDP"),
            "{:?}",
            l.raw.jail.keys()
        );
        assert!(l.raw.jail.contains_key("sshd"));
        assert_eq!(l.layers.len(), 3);
    }

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }
}
