//! The configuration exactly as written: every TOML table and key, with
//! `deny_unknown_fields` so a typo is an error that names the key. These
//! `///` lines are the reference for each key; README.md repeats them.
//!
//! Everything is optional here; [`super::resolve`] applies defaults and
//! builds the runtime objects.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::timespec::TimeSpec;

/// The whole file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Where syslog arrives.
    #[serde(default)]
    pub listen: RawListen,
    /// The HTTP endpoint (`/metrics`, `/api/...`).
    #[serde(default)]
    pub http: RawHttp,
    /// The control socket the CLI talks to.
    #[serde(default)]
    pub control: RawControl,
    /// The embedded ban store.
    #[serde(default)]
    pub database: RawDatabase,
    /// Directories.
    #[serde(default)]
    pub paths: RawPaths,
    /// banstream's own logging.
    #[serde(default)]
    pub log: RawLog,
    /// Running as a service: the user to drop to after start-up.
    #[serde(default)]
    pub run: RawRun,
    /// Values every jail inherits.
    #[serde(default)]
    pub defaults: RawJail,
    /// The jails, by name.
    #[serde(default)]
    pub jail: BTreeMap<String, RawJail>,
    /// An existing fail2ban tree to run as well.
    #[serde(default)]
    pub fail2ban: Option<RawFail2ban>,
    /// Command actions by name, usable in a jail's `banaction` / `action`.
    #[serde(default)]
    pub action: BTreeMap<String, RawCommandAction>,
}

/// `[action.NAME]`: a command action. Each hook is a list of commands, each
/// command an argv array (`[["ipset", "add", "blocklist", "<ip>"]]`), run
/// without a shell. Any other key is a static tag usable as `<key>`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RawCommandAction {
    /// Run once per jail and address family before its first ban.
    #[serde(default)]
    pub actionstart: Option<Vec<Vec<String>>>,
    /// Run at shutdown (or when a reload removes the jail) for each family started.
    #[serde(default)]
    pub actionstop: Option<Vec<Vec<String>>>,
    /// Run when a ban or unban command fails; if it fails too, the action is restarted.
    #[serde(default)]
    pub actioncheck: Option<Vec<Vec<String>>>,
    /// Run per ban.
    #[serde(default)]
    pub actionban: Option<Vec<Vec<String>>>,
    /// Run per unban.
    #[serde(default)]
    pub actionunban: Option<Vec<Vec<String>>>,
    /// Static tags: any other key, a string or number (`dest = "root"`).
    #[serde(flatten)]
    pub tags: BTreeMap<String, RawTag>,
}

/// A static tag value.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum RawTag {
    /// Text.
    Text(String),
    /// A whole number.
    Number(i64),
    /// true / false.
    Bool(bool),
}

impl RawTag {
    /// The value as substituted.
    pub fn as_text(&self) -> String {
        match self {
            RawTag::Text(t) => t.clone(),
            RawTag::Number(n) => n.to_string(),
            RawTag::Bool(b) => b.to_string(),
        }
    }
}

/// `[listen]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListen {
    /// UDP listeners (RFC 5426): `"127.0.0.1:5514"` or `{ address = "...", allow = ["10.0.0.0/8"] }`.
    /// Default allowlist: loopback only.
    #[serde(default)]
    pub udp: Vec<RawInet>,
    /// TCP listeners (RFC 6587, octet-counted or LF-framed, detected per frame). Same forms as `udp`.
    #[serde(default)]
    pub tcp: Vec<RawInet>,
    /// Unix datagram sockets (like /dev/log): a path or `{ path = "...", mode = "0660", allow_uids = [0] }`.
    /// Relative paths are under `[paths].runtime_dir`.
    #[serde(default)]
    pub unix: Vec<RawUnix>,
    /// Unix stream sockets, framed like TCP. Same forms as `unix`.
    #[serde(default)]
    pub unix_stream: Vec<RawUnix>,
    /// Largest frame accepted, in bytes (default 8192). Longer frames are
    /// discarded to their end and counted as `reason="oversize"`.
    #[serde(default)]
    pub max_frame: Option<usize>,
    /// Most TCP / unix stream connections open at once per listener (default 256).
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// A stream connection that sends nothing for this long is closed (default 5m).
    #[serde(default)]
    pub idle_timeout: Option<TimeSpec>,
    /// SO_RCVBUF for UDP and unix datagram sockets, in bytes (default 8 MiB; the kernel may cap it at net.core.rmem_max).
    #[serde(default)]
    pub recv_buffer: Option<usize>,
    /// Frames queued between the sockets and the matcher (default 65536).
    /// When full, datagrams are dropped and counted as `reason="queue_full"`;
    /// streams wait.
    #[serde(default)]
    pub queue: Option<usize>,
}

/// An inet listener: a bare address or a table.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum RawInet {
    /// `"ip:port"`.
    Addr(String),
    /// With options.
    Full {
        /// `"ip:port"`.
        address: String,
        /// Peer networks allowed to send (CIDR or address); default loopback.
        #[serde(default)]
        allow: Option<Vec<String>>,
    },
}

/// A unix listener: a bare path or a table.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum RawUnix {
    /// The socket path.
    Path(PathBuf),
    /// With options.
    Full {
        /// The socket path.
        path: PathBuf,
        /// Permission bits, octal string (default "0666" for datagram sockets
        /// like /dev/log, "0660" for stream sockets).
        #[serde(default)]
        mode: Option<String>,
        /// Only these uids may send (kernel-verified credentials); empty: any.
        #[serde(default)]
        allow_uids: Option<Vec<u32>>,
    },
}

/// `[http]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// Address for `/metrics` and the API; `""` disables (default "127.0.0.1:9640").
    #[serde(default)]
    pub listen: Option<String>,
}

/// `[control]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawControl {
    /// Control socket path, mode 0600 (default "banstream.sock" under the runtime dir).
    #[serde(default)]
    pub socket: Option<PathBuf>,
}

/// `[database]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDatabase {
    /// SQLite file (default "banstream.sqlite3" under the state dir).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Ban history older than this is purged (default 1d; fail2ban's dbpurgeage).
    #[serde(default)]
    pub dbpurgeage: Option<TimeSpec>,
}

/// `[paths]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPaths {
    /// Sockets live here (default /run/banstream as root, else $XDG_RUNTIME_DIR/banstream or /tmp/banstream-UID).
    #[serde(default)]
    pub runtime_dir: Option<PathBuf>,
    /// The database lives here (default /var/lib/banstream as root, else $XDG_STATE_HOME/banstream or ~/.local/state/banstream).
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// Directories searched for `NAME.toml` filters before the built-ins
    /// (default: `filters/` beside the config file, and /etc/banstream/filters).
    #[serde(default)]
    pub filter_dirs: Option<Vec<PathBuf>>,
}

/// `[log]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// error, warn, info, debug or trace, or a tracing filter (default "info"; RUST_LOG wins).
    #[serde(default)]
    pub level: Option<String>,
    /// Where log lines go: "stderr" (default; supervise-daemon captures it) or "syslog".
    #[serde(default)]
    pub target: Option<String>,
    /// With `target = "syslog"`: the local syslog socket (default "/dev/log").
    /// Lines that cannot be sent (no syslogd yet, buffer full) go to stderr.
    #[serde(default)]
    pub syslog_socket: Option<PathBuf>,
    /// With `target = "syslog"`: the facility (default "daemon").
    #[serde(default)]
    pub facility: Option<String>,
    /// The program name banstream logs as (default "banstream"). Messages
    /// received with this program are never routed to a jail, so banstream's
    /// own lines cannot loop back into its input.
    #[serde(default)]
    pub ident: Option<String>,
}

/// `[run]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRun {
    /// Started as root, drop to this user once the configuration is read
    /// (default: stay as started). The runtime and state directories are
    /// created and given to it first.
    #[serde(default)]
    pub user: Option<String>,
    /// Group to drop to (default: the user's primary group).
    #[serde(default)]
    pub group: Option<String>,
    /// Capabilities kept after the drop, in the ambient set so that the
    /// firewall commands banstream runs inherit them (default
    /// ["net_admin", "net_bind_service"]; add "net_raw" for iptables-legacy).
    #[serde(default)]
    pub capabilities: Option<Vec<String>>,
}

/// `[fail2ban]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFail2ban {
    /// The fail2ban configuration directory whose enabled jails run in-stream.
    pub dir: PathBuf,
}

/// `port = "ssh,19226"`, `port = 22` or `port = ["ssh", 19226]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum RawPorts {
    /// One number.
    Number(u16),
    /// A fail2ban-style list.
    Text(String),
    /// A TOML list of numbers and names.
    List(Vec<RawPortItem>),
}

/// One element of a port list.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum RawPortItem {
    /// A number.
    Number(u16),
    /// A name or range.
    Text(String),
}

impl RawPorts {
    /// The fail2ban text form.
    pub fn as_text(&self) -> String {
        match self {
            RawPorts::Number(n) => n.to_string(),
            RawPorts::Text(t) => t.clone(),
            RawPorts::List(l) => l
                .iter()
                .map(|i| match i {
                    RawPortItem::Number(n) => n.to_string(),
                    RawPortItem::Text(t) => t.clone(),
                })
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

/// `bantime.multipliers`: `"1 5 30 60"` or `[1, 5, 30, 60]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum RawMultipliers {
    /// Space-separated, as in jail.conf.
    Text(String),
    /// A TOML list.
    List(Vec<f64>),
}

/// A jail, or `[defaults]`. Keys keep fail2ban's names, including the
/// dotted `bantime.*` ones (write them quoted: `"bantime.increment" = true`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJail {
    /// Whether the jail runs (default true for jails in banstream.toml).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Filter reference: a built-in name, a name found in `filter_dirs`, or a path; options in brackets (`sshd[mode=aggressive]`). Default: the jail's name.
    #[serde(default)]
    pub filter: Option<String>,
    /// Programs routed to this jail, replacing the filter's list.
    #[serde(default)]
    pub programs: Option<Vec<String>>,
    /// fail2ban's `mode`, passed to the filter when the reference has none.
    #[serde(default)]
    pub mode: Option<String>,
    /// Failures within `findtime` that trigger a ban (default 5).
    #[serde(default)]
    pub maxretry: Option<u32>,
    /// The sliding window (default 10m).
    #[serde(default)]
    pub findtime: Option<TimeSpec>,
    /// Ban length (default 10m; -1 is permanent).
    #[serde(default)]
    pub bantime: Option<TimeSpec>,
    /// Grow the ban time for addresses banned before.
    #[serde(default, rename = "bantime.increment")]
    pub bantime_increment: Option<bool>,
    /// Multiplier in the growth formula (default 1).
    #[serde(default, rename = "bantime.factor")]
    pub bantime_factor: Option<f64>,
    /// Explicit multipliers per ban count (`1 5 30 60 300 720 1440 2880`); replaces the exponential formula.
    #[serde(default, rename = "bantime.multipliers")]
    pub bantime_multipliers: Option<RawMultipliers>,
    /// Upper bound of a grown ban time.
    #[serde(default, rename = "bantime.maxtime")]
    pub bantime_maxtime: Option<TimeSpec>,
    /// Random extra time added to a grown ban (up to this much).
    #[serde(default, rename = "bantime.rndtime")]
    pub bantime_rndtime: Option<TimeSpec>,
    /// Count an address's previous bans in every jail, not only this one.
    #[serde(default, rename = "bantime.overalljails")]
    pub bantime_overalljails: Option<bool>,
    /// Addresses and CIDR networks never banned; `file:/path` reads one per line.
    #[serde(default)]
    pub ignoreip: Option<Vec<String>>,
    /// Never ban the host's own addresses (default true).
    #[serde(default)]
    pub ignoreself: Option<bool>,
    /// Ports the ban covers: `"ssh,19226"`, `"1000:2000"`, `"all"` (default all).
    #[serde(default)]
    pub port: Option<RawPorts>,
    /// tcp, udp or all (default tcp).
    #[serde(default)]
    pub protocol: Option<String>,
    /// Firewall backend: nftables, iptables-multiport, iptables-allports, iptables-ipset, ufw, log (default nftables).
    #[serde(default)]
    pub banaction: Option<String>,
    /// Full action list, replacing `banaction` (each an action reference with options).
    #[serde(default)]
    pub action: Option<Vec<String>>,
    /// iptables chain the jail's chain is jumped to from (default INPUT).
    #[serde(default)]
    pub chain: Option<String>,
    /// What a banned packet gets: REJECT (default), DROP, or a REJECT variant.
    #[serde(default)]
    pub blocktype: Option<String>,
    /// Count IPv6 failures per network of this many bits (default 128: per address).
    #[serde(default)]
    pub ipv6_prefix: Option<u8>,
    /// Most addresses a jail tracks at once; the stalest are evicted beyond it (default 100000).
    #[serde(default)]
    pub max_tracked: Option<usize>,
    /// Only count lines that arrived over a unix socket from these uids, as the kernel proves them (UDP/TCP lines and lines without credentials do not count). Empty: any.
    #[serde(default)]
    pub uids: Option<Vec<u32>>,
    /// Mail recipients of the `mail` action, comma-separated (default "root@localhost").
    #[serde(default)]
    pub destemail: Option<String>,
    /// From address of the `mail` action (default "banstream@HOSTNAME").
    #[serde(default)]
    pub sender: Option<String>,
    /// From display name of the `mail` action (default "banstream").
    #[serde(default)]
    pub sendername: Option<String>,
    /// The sendmail-compatible program the `mail` action runs as `MTA -t -i -f SENDER`
    /// (default "/usr/sbin/sendmail"; e.g. "/usr/bin/msmtp"). Never mail(1).
    #[serde(default)]
    pub mta: Option<String>,
    /// Digest interval of the `mail` and `webhook` actions: at most one
    /// notification per interval per jail, listing every ban in it (default 1m; 0: one per ban).
    #[serde(default)]
    pub notify_interval: Option<TimeSpec>,
    /// Notify when the jail starts and stops, like fail2ban's actionstart/actionstop mails (default false).
    #[serde(default)]
    pub notify_startstop: Option<bool>,
    /// fail2ban keys with no meaning in-stream: accepted and ignored.
    #[serde(default)]
    pub logpath: Option<toml::Value>,
    /// Ignored in-stream (see `logpath`).
    #[serde(default)]
    pub backend: Option<toml::Value>,
    /// Ignored in-stream (see `logpath`).
    #[serde(default)]
    pub logencoding: Option<toml::Value>,
}
