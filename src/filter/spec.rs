//! The on-disk form of a native filter (`conf/filters/NAME.toml`).
//!
//! ```toml
//! description = "OpenSSH authentication failures"
//! programs = ["sshd", "sshd-session"]   # routing: only these programs' lines
//! modes = ["normal", "ddos", "extra", "aggressive"]
//! default_mode = "normal"
//! failregex = [
//!   '^Failed password for .* from <HOST> port \d+ ssh2$',        # every mode
//!   { regex = '^Did not receive identification string from <HOST>', modes = ["ddos", "aggressive"] },
//!   { regex = '^Connection from <HOST> port \d+', nofail = true },  # names the session's address
//!   { regex = '^Disconnecting: Too many authentication failures', session = true },
//!   { regex = '^Accepted \w+ for (?P<user>\S+) from <HOST>', success = true },
//! ]
//! ignoreregex = []
//! ```

use serde::Deserialize;

/// A native filter file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    /// One line for `check` and `status`.
    #[serde(default)]
    pub description: Option<String>,
    /// Programs whose lines the filter reads (empty: every program, which
    /// is injectable and draws a `check` warning).
    pub programs: Vec<String>,
    /// The modes the filter accepts (`mode=` option); empty means none.
    #[serde(default)]
    pub modes: Vec<String>,
    /// The mode used when the jail names none.
    #[serde(default)]
    pub default_mode: Option<String>,
    /// A pattern inserted after the leading `^` of every failregex, for
    /// prefixes a daemon puts before many messages (sshd's `error: `).
    #[serde(default)]
    pub prefix: Option<String>,
    /// Failure patterns, tried in order; the first match decides.
    pub failregex: Vec<RegexSpec>,
    /// Patterns that veto a failregex match.
    #[serde(default)]
    pub ignoreregex: Vec<RegexSpec>,
    /// Literals a well-formed message holds once at most: a message with
    /// one of them twice is ambiguous (text its sender controls repeats the
    /// address's context), so its failure counts without an address.
    #[serde(default)]
    pub once: Vec<String>,
}

/// One pattern: a plain string, or a table with options.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum RegexSpec {
    /// A pattern active in every mode.
    Plain(String),
    /// A pattern with options.
    Full {
        /// The pattern.
        regex: String,
        /// Modes it is active in (empty: all).
        #[serde(default)]
        modes: Vec<String>,
        /// A helper match that names the session's address but is not a failure.
        #[serde(default)]
        nofail: bool,
        /// A failure whose address comes from an earlier line of the same
        /// (host, program, pid) when the line itself has none.
        #[serde(default)]
        session: bool,
        /// A successful login: drops the session's pending failures, unless
        /// the session tried several user names (group `user`).
        #[serde(default)]
        success: bool,
    },
}

impl RegexSpec {
    /// The pattern text.
    pub fn regex(&self) -> &str {
        match self {
            RegexSpec::Plain(s) => s,
            RegexSpec::Full { regex, .. } => regex,
        }
    }
    /// Modes the pattern is active in (empty: all).
    pub fn modes(&self) -> &[String] {
        match self {
            RegexSpec::Plain(_) => &[],
            RegexSpec::Full { modes, .. } => modes,
        }
    }
    /// Whether this is a helper match.
    pub fn nofail(&self) -> bool {
        matches!(self, RegexSpec::Full { nofail: true, .. })
    }
    /// Whether a missing address is taken from the session.
    pub fn session(&self) -> bool {
        matches!(self, RegexSpec::Full { session: true, .. })
    }
    /// Whether this marks a successful login.
    pub fn success(&self) -> bool {
        matches!(self, RegexSpec::Full { success: true, .. })
    }
}
