//! The `command` backend: runs a [`CommandTemplates`] action (a
//! `[action.NAME]` table of banstream.toml, or a fail2ban action.d file
//! turned into templates) as argv vectors, never through a shell.
//!
//! Tags are substituted inside single arguments:
//! - per ban: `<ip>`, `<bantime>` (seconds, -1 when permanent),
//!   `<failures>`, `<bancount>`, `<time>` (ban start, Unix seconds);
//! - per action: `<name>`, `<jail>`, `<port>`, `<protocol>`, `<chain>`,
//!   `<blocktype>`, `<family>` (`inet` or `inet6`);
//! - static tags (`tags`, overridden by the jail's options in brackets),
//!   which may refer to other tags.
//!
//! Unknown tags stay as written. A substituted value is never scanned for
//! tags again. When a command hands a script to a shell (`sh -c SCRIPT`,
//! also bash, ash, dash, ksh, zsh, busybox sh), a tag value with a shell
//! metacharacter refuses that command instead of reaching the shell.
//!
//! When a ban or unban command fails, `actioncheck` runs; if it fails too,
//! the action is repaired (actionstop, actionstart) and the command tried
//! once more, like fail2ban does. Requests done before a failure are
//! remembered, so the dispatcher's retry does not run them twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use super::run::{display, run_for};
use super::{ActionError, Backend, CommandTemplates, Family, JailAction, Op, Request};
use crate::ban::Ban;

const KIND: &str = "command";

/// Programs that treat the argument after `-c` as shell code.
const SHELLS: &[&str] = &["sh", "bash", "ash", "dash", "ksh", "mksh", "zsh"];

/// Most levels of static tags referring to static tags.
const MAX_DEPTH: u8 = 8;

/// Whether a tag value may appear inside shell code: letters, digits,
/// space and `._:/@%+=,-`. Everything else (`;&|$\`'"\\<>(){}[]*?~!#` and
/// control characters) could change what the shell runs.
pub fn shell_safe(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b" ._:/@%+=,-".contains(&b))
}

/// The index of the argument a shell will run as code (`sh -c SCRIPT`,
/// `busybox sh -c SCRIPT`, `env VAR=x sh -ec SCRIPT`), if any.
fn shell_script_index(argv: &[String]) -> Option<usize> {
    let base = |s: &str| s.rsplit('/').next().unwrap_or(s).to_string();
    let mut i = 0;
    // Skip launchers and `env`'s assignments to find the program.
    while let Some(a) = argv.get(i) {
        let b = base(a);
        if b == "env" || b == "busybox" || (i > 0 && a.contains('=') && !a.starts_with('-')) {
            i += 1;
        } else {
            break;
        }
    }
    if !SHELLS.contains(&base(argv.get(i)?).as_str()) {
        return None;
    }
    let mut j = i + 1;
    while let Some(a) = argv.get(j) {
        if a == "-o" || a == "+o" {
            j += 2; // `-o pipefail`
            continue;
        }
        if !(a.starts_with('-') || a.starts_with('+')) || a == "--" {
            return None;
        }
        if !a.starts_with("--") && a.contains('c') {
            return Some(j + 1);
        }
        j += 1;
    }
    None
}

/// Tag values for one command.
pub struct Tags<'a> {
    dynamic: BTreeMap<&'static str, String>,
    statics: BTreeMap<&'a str, &'a str>,
}

impl<'a> Tags<'a> {
    /// Tags of an action for a family, plus a ban's when there is one.
    pub fn new(
        t: &'a CommandTemplates,
        a: &'a JailAction,
        family: Family,
        ban: Option<&Ban>,
    ) -> Tags<'a> {
        let mut d: BTreeMap<&'static str, String> = BTreeMap::new();
        d.insert("name", a.name.clone());
        d.insert("jail", a.jail.to_string());
        d.insert("port", a.ports.to_string());
        d.insert("protocol", a.protocol.to_string());
        d.insert("chain", a.chain.clone());
        d.insert("blocktype", a.blocktype.clone());
        d.insert(
            "family",
            match family {
                Family::V4 => "inet",
                Family::V6 => "inet6",
            }
            .into(),
        );
        if let Some(b) = ban {
            d.insert("ip", b.ip.to_string());
            d.insert("bantime", b.bantime.as_secs_i64().to_string());
            d.insert("failures", b.failures.to_string());
            d.insert("bancount", b.ban_count.to_string());
            d.insert(
                "time",
                b.start
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
                    .to_string(),
            );
        }
        let mut statics: BTreeMap<&str, &str> = t
            .tags
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        for (k, v) in &a.options {
            statics.insert(k.as_str(), v.as_str());
        }
        Tags {
            dynamic: d,
            statics,
        }
    }

    /// Substitutes the tags of one argument. With `shell`, a value that is
    /// not [`shell_safe`] is refused.
    pub fn expand(&self, arg: &str, shell: bool) -> Result<String, String> {
        self.expand_depth(arg, shell, 0)
    }

    fn expand_depth(&self, arg: &str, shell: bool, depth: u8) -> Result<String, String> {
        let mut out = String::with_capacity(arg.len());
        let mut rest = arg;
        while let Some(open) = rest.find('<') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let close = after.find('>').filter(|&c| {
                c > 0
                    && after[..c]
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            });
            let Some(close) = close else {
                out.push('<');
                rest = after;
                continue;
            };
            let tag = &after[..close];
            let value = if let Some(v) = self.dynamic.get(tag) {
                Some(v.clone())
            } else if let Some(v) = self.statics.get(tag) {
                if depth >= MAX_DEPTH {
                    return Err(format!("tag <{tag}> refers to itself too deeply"));
                }
                Some(self.expand_depth(v, false, depth + 1)?)
            } else {
                None
            };
            match value {
                Some(v) => {
                    if shell && !shell_safe(&v) {
                        return Err(format!(
                            "tag <{tag}> = {v:?} has shell metacharacters and this argument is shell code; refused"
                        ));
                    }
                    out.push_str(&v);
                }
                None => {
                    out.push('<');
                    out.push_str(tag);
                    out.push('>');
                }
            }
            rest = &after[close + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// One command with its tags substituted.
    pub fn command(&self, template: &[String]) -> Result<Vec<String>, String> {
        let script = shell_script_index(template);
        template
            .iter()
            .enumerate()
            .map(|(i, a)| self.expand(a, Some(i) == script))
            .collect()
    }
}

/// Checks, at configuration time, that every template of `t` expands for
/// action `a`: static tags resolve and no value with a shell metacharacter
/// lands in shell code. Per-ban values (addresses, numbers) cannot carry
/// metacharacters, so a template that passes here cannot be refused later.
pub fn validate(t: &CommandTemplates, a: &JailAction) -> Result<(), String> {
    let probe = Ban {
        jail: a.jail.clone(),
        ip: std::net::IpAddr::from([192, 0, 2, 1]),
        start: UNIX_EPOCH,
        bantime: crate::config::TimeSpec::Forever,
        expires: None,
        failures: 1,
        ban_count: 1,
        origin: crate::ban::BanOrigin::Manual,
    };
    for (key, list) in [
        ("actionstart", &t.start),
        ("actionstop", &t.stop),
        ("actioncheck", &t.check),
        ("actionban", &t.ban),
        ("actionunban", &t.unban),
    ] {
        for (i, tpl) in list.iter().enumerate() {
            for family in [Family::V4, Family::V6] {
                Tags::new(t, a, family, Some(&probe))
                    .command(tpl)
                    .map_err(|e| format!("{}.{key}[{i}]: {e}", t.origin))?;
            }
        }
    }
    Ok(())
}

/// Runs one list of templates in order.
fn run_list(
    t: &CommandTemplates,
    list: &[Vec<String>],
    a: &JailAction,
    family: Family,
    ban: Option<&Ban>,
) -> Result<(), ActionError> {
    let tags = Tags::new(t, a, family, ban);
    for tpl in list {
        let argv = tags.command(tpl).map_err(|e| ActionError {
            backend: KIND.into(),
            message: format!("{} `{}`: {e}", t.origin, display(tpl)),
        })?;
        if argv.first().is_none_or(String::is_empty) {
            continue;
        }
        run_for(KIND, &argv, None).map_err(|mut e| {
            e.message = format!("{}: {}", t.origin, e.message);
            e
        })?;
    }
    Ok(())
}

fn templates(a: &JailAction) -> Result<&Arc<CommandTemplates>, ActionError> {
    a.command.as_ref().ok_or_else(|| ActionError {
        backend: KIND.into(),
        message: format!(
            "jail {}: a command action needs templates ([action.NAME] in banstream.toml)",
            a.jail
        ),
    })
}

/// (ban, action, is-ban) by address: what one request of a batch is.
type RequestKey = (usize, usize, bool);

/// `command`.
#[derive(Default)]
pub struct CommandBackend {
    /// Requests of a failed batch that already ran, keyed by (ban, action,
    /// op) identity, so a retry skips them. The entry holds both `Arc`s: an
    /// address is only an identity while its allocation lives, and a freed
    /// one could come back as another request's.
    done: HashMap<RequestKey, (Arc<Ban>, Arc<JailAction>)>,
}

impl CommandBackend {
    /// The backend.
    pub fn new() -> CommandBackend {
        CommandBackend::default()
    }
}

impl Backend for CommandBackend {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn start(&mut self, a: &JailAction, family: Family) -> Result<(), ActionError> {
        let t = templates(a)?;
        run_list(t, &t.start, a, family, None)
    }

    fn apply(&mut self, batch: &[Request]) -> Result<(), ActionError> {
        for r in batch {
            let key = (
                Arc::as_ptr(&r.ban) as usize,
                Arc::as_ptr(&r.action) as usize,
                r.op == Op::Ban,
            );
            if self.done.contains_key(&key) {
                continue;
            }
            let t = templates(&r.action)?;
            let family = Family::of(r.ban.ip);
            let list = match r.op {
                Op::Ban => &t.ban,
                Op::Unban => &t.unban,
            };
            if let Err(first) = run_list(t, list, &r.action, family, Some(&r.ban)) {
                if t.check.is_empty() || run_list(t, &t.check, &r.action, family, None).is_ok() {
                    return Err(first);
                }
                tracing::warn!(jail = %r.action.jail, "actioncheck failed after `{first}`: restarting the action");
                let _ = run_list(t, &t.stop, &r.action, family, None);
                run_list(t, &t.start, &r.action, family, None)?;
                run_list(t, list, &r.action, family, Some(&r.ban))?;
            }
            self.done.insert(key, (r.ban.clone(), r.action.clone()));
        }
        self.done.clear();
        Ok(())
    }

    fn stop(&mut self, a: &JailAction, family: Family) -> Result<(), ActionError> {
        let t = templates(a)?;
        run_list(t, &t.stop, a, family, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ban::BanOrigin;
    use crate::config::TimeSpec;
    use crate::jail::JailName;
    use std::time::Duration;

    fn setup() -> (CommandTemplates, JailAction, Ban) {
        let mut t = CommandTemplates {
            origin: "test".into(),
            ..Default::default()
        };
        t.tags
            .insert("evil".into(), "x; touch /tmp/pwned $(id)".into());
        t.tags.insert("tool".into(), "fw-<name>".into());
        t.tags.insert("loop".into(), "<loop>".into());
        let mut a = JailAction::log(&JailName::new("sshd").unwrap());
        a.kind = KIND.into();
        a.ports = crate::config::services::PortSpec::parse("ssh").unwrap();
        a.protocol = crate::config::services::Protocol::Tcp;
        let ban = Ban {
            jail: a.jail.clone(),
            ip: "192.0.2.7".parse().unwrap(),
            start: UNIX_EPOCH + Duration::from_secs(1000),
            bantime: TimeSpec::Finite(Duration::from_secs(600)),
            expires: None,
            failures: 3,
            ban_count: 2,
            origin: BanOrigin::Manual,
        };
        (t, a, ban)
    }

    fn sv(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn tags_substitute_inside_single_arguments() {
        let (t, a, ban) = setup();
        let tags = Tags::new(&t, &a, Family::V4, Some(&ban));
        assert_eq!(
            tags.command(&sv(&[
                "<tool>",
                "--ip=<ip>",
                "<port>/<protocol>",
                "<bantime>s",
                "<failures>",
                "<unknown>",
                "a<b",
                "<evil>"
            ]))
            .unwrap(),
            sv(&[
                "fw-sshd",
                "--ip=192.0.2.7",
                "22/tcp",
                "600s",
                "3",
                "<unknown>",
                "a<b",
                "x; touch /tmp/pwned $(id)"
            ])
        );
        assert!(tags.command(&sv(&["<loop>"])).is_err());
    }

    #[test]
    fn metacharacters_never_reach_a_shell() {
        let (t, a, ban) = setup();
        let tags = Tags::new(&t, &a, Family::V4, Some(&ban));
        // The script argument of a shell refuses unsafe values...
        let err = tags
            .command(&sv(&["/bin/sh", "-c", "echo <evil>"]))
            .unwrap_err();
        assert!(err.contains("<evil>"), "{err}");
        assert!(tags
            .command(&sv(&["busybox", "sh", "-ec", "echo <evil>"]))
            .is_err());
        assert!(tags
            .command(&sv(&["env", "bash", "-c", "echo <evil>"]))
            .is_err());
        assert!(tags
            .command(&sv(&["bash", "-o", "pipefail", "-c", "echo <evil>"]))
            .is_err());
        // ...but safe values pass, and positional arguments are data.
        assert_eq!(
            tags.command(&sv(&["sh", "-c", "echo <ip> \"$1\"", "sh", "<evil>"]))
                .unwrap(),
            sv(&[
                "sh",
                "-c",
                "echo 192.0.2.7 \"$1\"",
                "sh",
                "x; touch /tmp/pwned $(id)"
            ])
        );
        assert!(shell_safe("REJECT --reject-with icmp-port-unreachable"));
        assert!(!shell_safe("a`b`"));
        assert!(!shell_safe("a\nb"));
    }

    #[test]
    fn ban_runs_commands_and_a_retry_skips_what_ran() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let gate = dir.path().join("gate");
        let (mut t, mut a, ban) = setup();
        t.ban = vec![sv(&[
            "sh",
            "-c",
            "echo ban $1 >> \"$2\"",
            "sh",
            "<ip>",
            &log.display().to_string(),
        ])];
        // The second request fails until the gate file exists.
        t.unban = vec![sv(&["test", "-e", &gate.display().to_string()])];
        a.command = Some(Arc::new(t));
        let action = Arc::new(a);
        let ban = Arc::new(ban);
        let batch = vec![
            Request {
                op: Op::Ban,
                action: action.clone(),
                ban: ban.clone(),
                received: None,
            },
            Request {
                op: Op::Unban,
                action,
                ban,
                received: None,
            },
        ];
        let mut b = CommandBackend::new();
        assert!(b.apply(&batch).is_err());
        std::fs::write(&gate, "").unwrap();
        b.apply(&batch).unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "ban 192.0.2.7\n");
    }
}
