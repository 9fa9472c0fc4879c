//! The `mail` action: a message to the admin through the local MTA, run as
//! `MTA -t -i -f SENDER` (argv, never a shell, never mail(1)), with headers
//! banstream composes itself (RFC 5322). Digesting, retries and the sender
//! thread are [`crate::notify`]'s; this file owns the options, the message
//! and the hand-off to sendmail.
//!
//! Options (in brackets, `mail[whois=true, lines=5]`, or from the jail's
//! keys `destemail`, `sender`, `sendername`, `mta`, `notify_interval`,
//! `notify_startstop`; the brackets win):
//!
//! | option | default | meaning |
//! |---|---|---|
//! | `dest` | `root@localhost` | recipients, comma-separated |
//! | `sender` | `banstream@HOSTNAME` | From address and envelope sender (`-f`) |
//! | `sendername` | `banstream` | From display name |
//! | `mta` | `/usr/sbin/sendmail` | a sendmail-compatible program (msmtp, ssmtp, postfix, exim, BusyBox) |
//! | `whois` | `false` | add a whois summary of each address (first 5 of a digest) |
//! | `lines` | `0` | add up to this many (0–20) of the lines that led to each ban (first 20 of a digest) |
//! | `interval` | `1m` | digest: at most one mail per interval per jail |
//! | `startstop` | `false` | also mail when the jail starts and stops |
//! | `timeout` | `30s` | deadline of one sendmail run |
//! | `retries` | `3` | further attempts after a temporary failure |
//!
//! fail2ban's mail actions (`sendmail-whois-lines`, `action_mwl`, ...) map
//! onto this one through [`from_fail2ban`].

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};

use super::{ActionError, Backend, Family, JailAction, Lifecycle, Op, Request, Services};
use crate::ban::BanOrigin;
use crate::filter::NamedOptions;
use crate::notify::process::{self, RunError};
use crate::notify::text::{self, quote, utc};
use crate::notify::{self, Channel, Common, DeliveryError, Entry, Notice, Notifier, What};

/// The `mail` backend.
pub type MailBackend = Notifier<Mail>;

/// Options of `mail` besides the common ones.
const KEYS: &[&str] = &["dest", "sender", "sendername", "mta", "whois"];
/// Default MTA.
pub const DEFAULT_MTA: &str = "/usr/sbin/sendmail";
/// Default deadline of one sendmail run.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Whois lookups per message at most, and their total time.
const WHOIS_PER_MESSAGE: usize = 5;
const WHOIS_BUDGET: Duration = Duration::from_secs(20);
const WHOIS_TIMEOUT: Duration = Duration::from_secs(10);
/// Bans of a digest shown with their matched lines.
const DETAILS_PER_MESSAGE: usize = 20;
/// Programs banstream refuses as `mta`: they interpret `~` escapes in the
/// body (CVE-2021-32749).
const MAIL_READERS: &[&str] = &[
    "mail",
    "mailx",
    "bsd-mailx",
    "s-nail",
    "nail",
    "mutt",
    "heirloom-mailx",
];

/// Settings of one `mail` action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailConfig {
    /// Interval, retries, timeout, lines, start/stop.
    pub common: Common,
    /// Recipients.
    pub dest: Vec<String>,
    /// From address.
    pub sender: String,
    /// From display name.
    pub sendername: String,
    /// The sendmail-compatible program.
    pub mta: String,
    /// Add whois summaries.
    pub whois: bool,
}

/// Whether `a` is a plain mail address (`local@domain` or a bare local
/// user): dot-atom characters only, nothing a header or an argv could
/// misread.
pub fn valid_address(a: &str) -> bool {
    let (local, domain) = match a.split_once('@') {
        Some((l, d)) => (l, Some(d)),
        None => (a, None),
    };
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c);
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with(['-', '.'])
        && local.chars().all(atext);
    let domain_ok = domain.is_none_or(|d| {
        !d.is_empty()
            && d.len() <= 253
            && !d.starts_with(['-', '.'])
            && d.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    });
    local_ok && domain_ok
}

impl MailConfig {
    fn parse(o: &BTreeMap<String, String>) -> Result<MailConfig, String> {
        notify::check_keys("mail", o, KEYS)?;
        let common = Common::parse(o, DEFAULT_TIMEOUT)?;
        let dest: Vec<String> = o
            .get("dest")
            .map(String::as_str)
            .unwrap_or("root@localhost")
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if dest.is_empty() {
            return Err("dest (destemail) is empty".into());
        }
        for d in &dest {
            if !valid_address(d) {
                return Err(format!("dest {d:?} is not a plain mail address"));
            }
        }
        let sender = match o.get("sender") {
            Some(s) => s.trim().to_string(),
            None => format!("banstream@{}", text::hostname()),
        };
        if !valid_address(&sender) {
            return Err(format!("sender {sender:?} is not a plain mail address"));
        }
        let sendername = o
            .get("sendername")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "banstream".into());
        if sendername.chars().any(char::is_control) || sendername.len() > 64 {
            return Err("sendername must be one line of at most 64 bytes".into());
        }
        let mta = o
            .get("mta")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| DEFAULT_MTA.into());
        if mta.is_empty() || mta.contains('\0') || mta.starts_with('-') {
            return Err(format!("mta {mta:?} is not a program"));
        }
        let base = mta.rsplit('/').next().unwrap_or(&mta);
        if MAIL_READERS.contains(&base) {
            return Err(format!(
                "mta {mta:?} is a mail reader; banstream only hands mail to a sendmail-compatible program (sendmail, msmtp, ssmtp), because mail(1) runs `~!` escapes found in the text (CVE-2021-32749)"
            ));
        }
        let whois = match o.get("whois") {
            Some(v) => notify::parse_bool("whois", v)?,
            None => false,
        };
        Ok(MailConfig {
            common,
            dest,
            sender,
            sendername,
            mta,
            whois,
        })
    }
}

/// Checks a `mail` action's options at config load; returns warnings.
pub fn validate(o: &BTreeMap<String, String>) -> Result<Vec<String>, String> {
    let c = MailConfig::parse(o)?;
    let mut warnings = Vec::new();
    if !program_exists(&c.mta) {
        warnings.push(format!(
            "mail: mta {:?} is not installed: mails will fail (and be counted) until it is (apk add msmtp, or set mta)",
            c.mta
        ));
    }
    if c.whois && !program_exists("whois") {
        warnings.push("mail: whois=true but no whois program is installed (apk add whois)".into());
    }
    Ok(warnings)
}

fn program_exists(p: &str) -> bool {
    if p.contains('/') {
        return std::path::Path::new(p).is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(p).is_file()))
}

/// fail2ban's mail actions: (name, whois, lines). The `-lines` and
/// `-matches` variants grep the log for the address; banstream shows the
/// lines it matched instead (10).
pub const FAIL2BAN_ACTIONS: &[(&str, bool, u32)] = &[
    ("sendmail", false, 0),
    ("sendmail-buffered", false, 0),
    ("sendmail-common", false, 0),
    ("mail", false, 0),
    ("mail-buffered", false, 0),
    ("sendmail-whois", true, 0),
    ("mail-whois", true, 0),
    ("mail-whois-common", true, 0),
    ("sendmail-geoip-lines", true, 10),
    ("sendmail-whois-lines", true, 10),
    ("sendmail-whois-matches", true, 10),
    ("sendmail-whois-ipmatches", true, 10),
    ("sendmail-whois-ipjailmatches", true, 10),
    ("mail-whois-lines", true, 10),
];

/// jail.conf's shortcuts that add a mail to the ban action: each stands
/// for `[banaction, <the fail2ban action named here>]`.
pub const FAIL2BAN_SHORTCUTS: &[(&str, &str)] = &[
    ("action_mw", "sendmail-whois"),
    ("action_mwl", "sendmail-whois-lines"),
];

/// The mapping point for the fail2ban-tree reader: turns a fail2ban mail
/// action reference (after `%(...)s` interpolation), such as
/// `sendmail-whois-lines[name=sshd, dest="root", sender="f2b@host", logpath=...]`,
/// into banstream's `mail[dest=..., sender=..., whois=true, lines=10]`.
/// Returns `None` when `r` is not a fail2ban mail action.
///
/// Only `dest`, `sender` and `sendername` carry over; everything else
/// (`name`, `logpath`, `grepopts`, `mailcmd`, `mailargs`, ...) is dropped on
/// purpose: banstream never runs mail(1) or grep. For `action_mw` /
/// `action_mwl` see [`FAIL2BAN_SHORTCUTS`]. The reader then resolves the
/// result like any action (`JailAction::resolve`), and the jail's
/// `destemail`, `sender`, `mta` fill what the brackets leave unset.
pub fn from_fail2ban(r: &NamedOptions) -> Option<NamedOptions> {
    let (_, whois, lines) = FAIL2BAN_ACTIONS
        .iter()
        .find(|(n, _, _)| *n == r.name.trim())?;
    let mut options = BTreeMap::new();
    for k in ["dest", "sender", "sendername"] {
        if let Some(v) = r.options.get(k).map(|v| v.trim()).filter(|v| !v.is_empty()) {
            options.insert(k.to_string(), v.to_string());
        }
    }
    if *whois {
        options.insert("whois".into(), "true".into());
    }
    if *lines > 0 {
        options.insert("lines".into(), lines.to_string());
    }
    Some(NamedOptions {
        name: "mail".into(),
        options,
    })
}

/// The mail channel: composes and hands messages to the MTA.
#[derive(Default)]
pub struct Mail {
    whois: HashMap<IpAddr, (Instant, Result<Vec<String>, String>)>,
}

/// Messages composed by this process (for unique Message-IDs).
static MESSAGES: AtomicU64 = AtomicU64::new(0);

impl Channel for Mail {
    type Config = MailConfig;
    const KIND: &'static str = "mail";

    fn config(o: &BTreeMap<String, String>) -> Result<MailConfig, String> {
        MailConfig::parse(o)
    }

    fn common(c: &MailConfig) -> &Common {
        &c.common
    }

    fn target(c: &MailConfig) -> String {
        c.dest.join(",")
    }

    fn deliver(&mut self, cfg: &MailConfig, notice: &Notice) -> Result<(), DeliveryError> {
        let whois = if cfg.whois {
            self.lookups(notice)
        } else {
            HashMap::new()
        };
        let message = compose(cfg, notice, SystemTime::now(), &whois);
        let mut cmd = Command::new(&cfg.mta);
        cmd.args(["-t", "-i", "-f", &cfg.sender]);
        match process::run(
            &mut cmd,
            Some(message.into_bytes()),
            cfg.common.timeout,
            4096,
        ) {
            Ok(f) if f.status.success() => Ok(()),
            Ok(f) => {
                let err = text::inert(String::from_utf8_lossy(&f.stderr).trim(), 300, 0);
                let why = format!("{} exited with {}: {err}", cfg.mta, f.status);
                // sysexits: usage, data, user, host, permission and config
                // errors will not pass by themselves.
                match f.status.code() {
                    Some(64 | 65 | 67 | 68 | 77 | 78) => Err(DeliveryError::Permanent(why)),
                    _ => Err(DeliveryError::Transient(why)),
                }
            }
            Err(e @ RunError::Spawn { .. }) => Err(DeliveryError::Permanent(e.to_string())),
            Err(e) => Err(DeliveryError::Transient(e.to_string())),
        }
    }
}

impl Mail {
    /// Whois summaries for the first bans of a notice, cached for an hour,
    /// within a total time budget.
    fn lookups(&mut self, notice: &Notice) -> HashMap<IpAddr, Result<Vec<String>, String>> {
        let What::Bans { entries, .. } = &notice.what else {
            return HashMap::new();
        };
        let start = Instant::now();
        self.whois
            .retain(|_, (t, _)| t.elapsed() < Duration::from_secs(3600));
        if self.whois.len() > 1024 {
            self.whois.clear();
        }
        let mut out = HashMap::new();
        for e in entries.iter().take(WHOIS_PER_MESSAGE) {
            if let Some((_, r)) = self.whois.get(&e.ip) {
                out.insert(e.ip, r.clone());
                continue;
            }
            let left = WHOIS_BUDGET.saturating_sub(start.elapsed());
            if left.is_zero() {
                out.insert(e.ip, Err("skipped: whois time budget used up".into()));
                continue;
            }
            let r = notify::whois::lookup("whois", e.ip, left.min(WHOIS_TIMEOUT));
            self.whois.insert(e.ip, (Instant::now(), r.clone()));
            out.insert(e.ip, r);
        }
        out
    }
}

/// Encodes a header's free text: controls removed, and RFC 2047
/// (`=?utf-8?Q?...?=`) when it is not plain ASCII.
fn header_text(s: &str) -> String {
    let clean: String = s.chars().filter(|c| !c.is_control()).collect();
    if clean.is_ascii() {
        return clean;
    }
    let mut words = Vec::new();
    let mut cur = String::new();
    for c in clean.chars() {
        let mut buf = [0u8; 4];
        for b in c.encode_utf8(&mut buf).bytes() {
            match b {
                b' ' => cur.push('_'),
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'!' | b'*' | b'+' | b'-' | b'/' => {
                    cur.push(b as char)
                }
                _ => {
                    let _ = write!(cur, "={b:02X}");
                }
            }
        }
        if cur.len() > 45 {
            words.push(format!("=?utf-8?Q?{cur}?="));
            cur.clear();
        }
    }
    if !cur.is_empty() {
        words.push(format!("=?utf-8?Q?{cur}?="));
    }
    words.join(" ")
}

/// The From display name as a quoted string (or encoded words).
fn display_name(s: &str) -> String {
    let t = header_text(s);
    if t.starts_with("=?") {
        t
    } else {
        format!("\"{}\"", t.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// One header, folded at spaces to lines of at most 78 characters.
fn header(out: &mut String, name: &str, value: &str) {
    let mut line_len = name.len() + 1;
    out.push_str(name);
    out.push(':');
    for word in value.split(' ').filter(|w| !w.is_empty()) {
        if line_len + 1 + word.len() > 78 && line_len > name.len() + 1 {
            out.push_str("\n ");
            line_len = 1;
        } else {
            out.push(' ');
            line_len += 1;
        }
        out.push_str(word);
        line_len += word.len();
    }
    out.push('\n');
}

fn origin(o: BanOrigin) -> &'static str {
    match o {
        BanOrigin::Stream => "failures in the log stream",
        BanOrigin::Manual => "banstream ban (manual)",
        BanOrigin::Restored => "restored at start",
    }
}

fn expires(e: &Entry) -> String {
    e.expires
        .map_or_else(|| "never (permanent ban)".into(), utc)
}

/// The whole message: headers, blank line, body. Lines end with LF, as
/// sendmail expects on its standard input.
pub fn compose(
    cfg: &MailConfig,
    notice: &Notice,
    now: SystemTime,
    whois: &HashMap<IpAddr, Result<Vec<String>, String>>,
) -> String {
    let host = header_text(&notice.host);
    let jail = notice.jail.as_str();
    let subject = match &notice.what {
        What::Bans { entries, .. } if notice.ban_count() == 1 && !entries.is_empty() => {
            format!("[banstream] {jail}: banned {} from {host}", entries[0].ip)
        }
        What::Bans { .. } => format!(
            "[banstream] {jail}: {} addresses banned from {host}",
            notice.ban_count()
        ),
        What::Started => format!("[banstream] {jail}: started on {host}"),
        What::Stopped => format!("[banstream] {jail}: stopped on {host}"),
    };
    let n = MESSAGES.fetch_add(1, Ordering::Relaxed);
    let stamp = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let mut m = String::new();
    header(
        &mut m,
        "From",
        &format!("{} <{}>", display_name(&cfg.sendername), cfg.sender),
    );
    header(&mut m, "To", &cfg.dest.join(", "));
    header(&mut m, "Subject", &header_text(&subject));
    header(&mut m, "Date", &DateTime::<Utc>::from(now).to_rfc2822());
    header(
        &mut m,
        "Message-ID",
        &format!(
            "<{}.{:09}.{}.{n}.banstream@{host}>",
            stamp.as_secs(),
            stamp.subsec_nanos(),
            std::process::id()
        ),
    );
    header(&mut m, "MIME-Version", "1.0");
    header(&mut m, "Content-Type", "text/plain; charset=utf-8");
    header(&mut m, "Content-Transfer-Encoding", "8bit");
    header(&mut m, "Auto-Submitted", "auto-generated");
    header(&mut m, "X-Banstream-Jail", jail);
    m.push('\n');
    match &notice.what {
        What::Started => {
            let _ = writeln!(
                m,
                "The jail {jail} has been started by banstream on {host}."
            );
        }
        What::Stopped => {
            let _ = writeln!(
                m,
                "The jail {jail} has been stopped by banstream on {host}."
            );
        }
        What::Bans { entries, unlisted } if entries.len() == 1 && *unlisted == 0 => {
            single(&mut m, cfg, jail, &host, &entries[0], whois);
        }
        What::Bans { entries, unlisted } => {
            digest(&mut m, cfg, jail, &host, entries, *unlisted, whois);
        }
    }
    let _ = write!(
        m,
        "\n-- \nbanstream {} on {host}. Text taken from the network (log lines, whois)\nis shown after \"|\", with control characters as ^X and long lines cut.\n",
        env!("CARGO_PKG_VERSION")
    );
    m
}

fn single(
    m: &mut String,
    cfg: &MailConfig,
    jail: &str,
    host: &str,
    e: &Entry,
    whois: &HashMap<IpAddr, Result<Vec<String>, String>>,
) {
    let _ = writeln!(
        m,
        "banstream on {host} banned {} in jail {jail} after {} failures.\n",
        e.ip, e.failures
    );
    let _ = writeln!(m, "  Jail:       {jail}");
    let _ = writeln!(m, "  Address:    {}", e.ip);
    let _ = writeln!(m, "  Failures:   {}", e.failures);
    let _ = writeln!(m, "  Ban time:   {}", e.bantime);
    let _ = writeln!(m, "  Banned at:  {}", utc(e.start));
    let _ = writeln!(m, "  Expires:    {}", expires(e));
    let _ = writeln!(m, "  Ban count:  {}", e.ban_count);
    let _ = writeln!(m, "  Origin:     {}", origin(e.origin));
    details(m, cfg, e, whois);
}

fn details(
    m: &mut String,
    cfg: &MailConfig,
    e: &Entry,
    whois: &HashMap<IpAddr, Result<Vec<String>, String>>,
) {
    if cfg.whois {
        let _ = writeln!(m, "\n  Whois summary of {}:", e.ip);
        match whois.get(&e.ip) {
            Some(Ok(lines)) => {
                for l in lines {
                    let _ = writeln!(m, "{}", quote(l, 0));
                }
            }
            Some(Err(why)) => {
                let _ = writeln!(m, "    (no whois: {})", text::inert(why, 200, 0));
            }
            None => {
                let _ = writeln!(m, "    (no whois: only the first {WHOIS_PER_MESSAGE} bans of a digest are looked up)");
            }
        }
    }
    if cfg.common.lines > 0 {
        if e.matches.is_empty() {
            let _ = writeln!(
                m,
                "\n  Lines that matched: none held (a manual ban, or forgotten under load)"
            );
        } else {
            let _ = writeln!(m, "\n  Lines that matched (oldest first):");
            for l in e.matches.iter() {
                let _ = writeln!(m, "{}", quote(&l.text, l.cut));
            }
        }
    }
}

fn digest(
    m: &mut String,
    cfg: &MailConfig,
    jail: &str,
    host: &str,
    entries: &[Entry],
    unlisted: u64,
    whois: &HashMap<IpAddr, Result<Vec<String>, String>>,
) {
    let total = entries.len() as u64 + unlisted;
    let first = entries.iter().map(|e| e.start).min();
    let last = entries.iter().map(|e| e.start).max();
    let _ = writeln!(
        m,
        "banstream on {host} banned {total} addresses in jail {jail}"
    );
    if let (Some(a), Some(b)) = (first, last) {
        let _ = writeln!(m, "between {} and {}.", utc(a), utc(b));
    }
    let _ = writeln!(
        m,
        "\n  {:<39} {:>8}  {:<9} Expires",
        "Address", "Failures", "Ban time"
    );
    for e in entries {
        let _ = writeln!(
            m,
            "  {:<39} {:>8}  {:<9} {}",
            e.ip.to_string(),
            e.failures,
            e.bantime.to_string(),
            expires(e)
        );
    }
    if unlisted > 0 {
        let _ = writeln!(
            m,
            "  ... and {unlisted} more, not listed (see `banstream banned`)"
        );
    }
    if cfg.whois || cfg.common.lines > 0 {
        let shown = entries.len().min(DETAILS_PER_MESSAGE);
        let _ = writeln!(m, "\nDetails of the first {shown}:");
        for e in entries.iter().take(shown) {
            let _ = writeln!(
                m,
                "\n{} ({} failures, {})",
                e.ip,
                e.failures,
                origin(e.origin)
            );
            details(m, cfg, e, whois);
        }
    }
}

impl<C: Channel> Backend for Notifier<C> {
    fn kind(&self) -> &'static str {
        C::KIND
    }

    fn attach(&mut self, services: &Services) {
        self.use_handles(services.metrics.clone(), services.evidence.clone());
    }

    fn init(&mut self) -> Result<(), ActionError> {
        self.spawn().map_err(|message| ActionError {
            backend: C::KIND.into(),
            message,
        })
    }

    fn start(&mut self, _action: &JailAction, _family: Family) -> Result<(), ActionError> {
        Ok(())
    }

    /// Takes the bans of the batch; never fails (see [`crate::notify`]).
    fn apply(&mut self, batch: &[Request]) -> Result<(), ActionError> {
        for r in batch {
            if r.op == Op::Ban && r.action.kind == C::KIND {
                self.take_ban(&r.action.jail, &r.action.options, &r.ban);
            }
        }
        Ok(())
    }

    fn stop(&mut self, _action: &JailAction, _family: Family) -> Result<(), ActionError> {
        Ok(())
    }

    fn lifecycle(&mut self, action: &JailAction, event: Lifecycle) {
        match event {
            Lifecycle::Started => self.jail_started(&action.jail, &action.options),
            Lifecycle::Stopped => self.jail_stopped(&action.jail, &action.options),
        }
    }

    fn reloaded(&mut self) {
        self.forget_configs();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TimeSpec;
    use crate::jail::JailName;
    use crate::notify::MatchedLine;
    use std::sync::Arc;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn entry(ip: &str, lines: &[&str]) -> Entry {
        Entry {
            ip: ip.parse().unwrap(),
            failures: 5,
            bantime: TimeSpec::Finite(Duration::from_secs(600)),
            start: SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600),
            expires: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_226_200)),
            ban_count: 1,
            origin: BanOrigin::Stream,
            matches: Arc::from(
                lines
                    .iter()
                    .map(|l| MatchedLine {
                        text: l.to_string(),
                        cut: 0,
                    })
                    .collect::<Vec<_>>(),
            ),
        }
    }

    fn notice(entries: Vec<Entry>) -> Notice {
        Notice {
            jail: JailName::new("sshd").unwrap(),
            host: "gw1".into(),
            what: What::Bans {
                entries,
                unlisted: 0,
            },
        }
    }

    fn headers(msg: &str) -> &str {
        msg.split("\n\n").next().unwrap()
    }

    #[test]
    fn a_single_ban_is_a_proper_message() {
        let cfg = MailConfig::parse(&opts(&[
            ("dest", "root@example.org, ops@example.org"),
            ("sender", "f2b@gw1.example.org"),
            ("sendername", "Bän Stream"),
            ("lines", "5"),
        ]))
        .unwrap();
        let msg = compose(
            &cfg,
            &notice(vec![entry(
                "192.0.2.1",
                &["sshd[1]: Failed password for root from 192.0.2.1"],
            )]),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_601),
            &HashMap::new(),
        );
        let h = headers(&msg);
        assert!(
            h.contains("\nTo: root@example.org, ops@example.org\n"),
            "{h}"
        );
        assert!(
            h.contains("From: =?utf-8?Q?B=C3=A4n_Stream?= <f2b@gw1.example.org>"),
            "{h}"
        );
        assert!(
            h.contains("\nSubject: [banstream] sshd: banned 192.0.2.1 from gw1\n"),
            "{h}"
        );
        assert!(
            h.contains("\nDate: Thu, 1 Jan 2026 00:00:01 +0000\n"),
            "{h}"
        );
        assert!(h.contains("\nMessage-ID: <1767225601."), "{h}");
        assert!(msg.contains("  Failures:   5\n"), "{msg}");
        assert!(
            msg.contains("  Expires:    2026-01-01 00:10:00 UTC\n"),
            "{msg}"
        );
        assert!(
            msg.contains("  | sshd[1]: Failed password for root from 192.0.2.1\n"),
            "{msg}"
        );
    }

    #[test]
    fn hostile_lines_cannot_inject_headers_or_escapes() {
        let cfg = MailConfig::parse(&opts(&[("lines", "5")])).unwrap();
        let long = "B".repeat(100_000);
        let hostile = [
            "Failed password for ~!touch /tmp/pwned from 192.0.2.1",
            "x\r\nBcc: victim@example.org\r\n\r\n~!id",
            "\n~|sh -c evil",
            long.as_str(),
            ".",
        ];
        let msg = compose(
            &cfg,
            &notice(vec![entry("192.0.2.1", &hostile)]),
            SystemTime::now(),
            &HashMap::new(),
        );
        assert!(!headers(&msg).contains("Bcc"), "{msg}");
        for line in msg.lines() {
            assert!(!line.starts_with('~'), "{line:?}");
            assert!(line != ".", "{line:?}");
            assert!(line.len() < 998, "{}", line.len());
        }
        assert!(
            msg.contains("  | x^M^JBcc: victim@example.org^M^J^M^J~!id\n"),
            "{msg}"
        );
        assert!(msg.contains("[99600 bytes cut]"), "long line not capped");
    }

    #[test]
    fn a_digest_lists_every_ban() {
        let cfg = MailConfig::parse(&opts(&[])).unwrap();
        let entries: Vec<Entry> = (0..1000)
            .map(|i| entry(&format!("198.51.{}.{}", i / 256, i % 256), &[]))
            .collect();
        let msg = compose(&cfg, &notice(entries), SystemTime::now(), &HashMap::new());
        assert!(msg.contains("Subject: [banstream] sshd: 1000 addresses banned from gw1\n"));
        let rows = msg.lines().filter(|l| l.starts_with("  198.51.")).count();
        assert_eq!(rows, 1000);
    }

    #[test]
    fn options_are_validated() {
        assert!(MailConfig::parse(&opts(&[("dest", "root\r\nBcc: x@y")])).is_err());
        assert!(MailConfig::parse(&opts(&[("sender", "-oQ/tmp@x")])).is_err());
        assert!(MailConfig::parse(&opts(&[("mta", "/usr/bin/mail")]))
            .unwrap_err()
            .contains("CVE-2021-32749"));
        assert!(MailConfig::parse(&opts(&[("whios", "true")])).is_err());
        assert!(MailConfig::parse(&opts(&[("dest", "root")])).is_ok());
        assert!(valid_address("a.b+c@mail.example.org"));
        assert!(!valid_address("a b@example.org"));
        assert!(!valid_address("a@exa mple.org"));
    }

    #[test]
    fn fail2ban_mail_actions_map_onto_mail() {
        let r = NamedOptions::parse(
            "sendmail-whois-lines[name=sshd, dest=\"admin@example.org\", sender=\"f2b@example.org\", logpath=/var/log/messages, mailcmd=\"mail -s\"]",
        )
        .unwrap();
        let m = from_fail2ban(&r).unwrap();
        assert_eq!(m.name, "mail");
        assert_eq!(
            m.options,
            opts(&[
                ("dest", "admin@example.org"),
                ("sender", "f2b@example.org"),
                ("whois", "true"),
                ("lines", "10"),
            ])
        );
        assert!(MailConfig::parse(&m.options).is_ok());
        assert!(from_fail2ban(&NamedOptions::parse("iptables-multiport").unwrap()).is_none());
        assert_eq!(
            from_fail2ban(&NamedOptions::parse("mail").unwrap())
                .unwrap()
                .options,
            BTreeMap::new()
        );
    }

    #[test]
    fn long_headers_fold_and_stay_inert() {
        let mut h = String::new();
        header(
            &mut h,
            "To",
            &["someone.with.a.long.name@example.org"; 5].join(", "),
        );
        assert!(h.lines().all(|l| l.len() <= 78), "{h}");
        assert!(h.lines().skip(1).all(|l| l.starts_with(' ')), "{h}");
        assert_eq!(header_text("a\r\nBcc: x"), "aBcc: x");
    }
}
