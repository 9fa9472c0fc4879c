//! A jail's `action` references mapped onto banstream's actions.
//!
//! - the firewall actions banstream implements natively keep their
//!   parameters (`iptables-multiport[name=Named, port=53, protocol=udp]`):
//!   iptables-multiport / -new / -allports, iptables-ipset* , nftables*,
//!   ufw;
//! - mail actions (mail*, sendmail*, `%(mta)s-whois...` of `action_mw` and
//!   `action_mwl`) become banstream's own `mail` action ([`mail_action`]);
//!   mail files it has no equivalent for are skipped with a warning and
//!   the jail's other actions run;
//! - every other `action.d` file runs through the `command` backend:
//!   its actionstart / actionstop / actioncheck / actionban / actionunban
//!   become argv vectors after the static tags are substituted. A command
//!   that needs a shell (pipes, redirections, `$(...)`, `&&`, `if`, ...)
//!   cannot be run that way: `check` names the file, the option and why.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::action::{ActionDefaults, CommandTemplates, JailAction};
use crate::filter::NamedOptions;

use super::reader::{get, DefReader, Opts};

/// The action files banstream runs with its own backends.
fn native_kind(name: &str) -> Option<(&'static str, bool)> {
    Some(match name {
        "iptables-multiport" | "iptables-new" | "iptables" => ("iptables-multiport", false),
        "iptables-allports" => ("iptables-allports", true),
        "iptables-ipset" | "iptables-ipset-proto4" | "iptables-ipset-proto6" => {
            ("iptables-ipset", false)
        }
        "iptables-ipset-proto6-allports" => ("iptables-ipset", true),
        "nftables" | "nftables-multiport" => ("nftables", false),
        "nftables-allports" => ("nftables", true),
        "ufw" => ("ufw", false),
        _ => return None,
    })
}

/// Whether an action file is a mail notification.
pub fn is_mail(name: &str) -> bool {
    name.starts_with("mail")
        || name.starts_with("sendmail")
        || name == "complain"
        || name == "xarf-login-attack"
}

/// Mail actions (`sendmail-whois[dest=..., sender=...]`, the mail parts of
/// `action_mw` / `action_mwl`) become banstream's `mail` action, which
/// writes the message itself and hands it to `sendmail -t -i` (never
/// mail(1), so fail2ban's CVE-2021-32749 class of hole cannot happen).
/// `opts` are the action's resolved options; dest, sender and sendername
/// carry over, the rest (mailcmd, grepopts, ...) is dropped on purpose.
/// `None`: a mail file banstream has no equivalent for (complain, xarf);
/// the caller warns and runs the jail's other actions.
pub fn mail_action(file: &str, opts: &Opts, defaults: &ActionDefaults) -> Option<JailAction> {
    let mut options = BTreeMap::new();
    for k in ["dest", "sender", "sendername"] {
        if let Some(v) = get(opts, k).map(str::trim).filter(|v| !v.is_empty()) {
            options.insert(k.to_string(), v.to_string());
        }
    }
    let named = crate::action::mail::from_fail2ban(&NamedOptions {
        name: file.to_string(),
        options,
    })?;
    JailAction::resolve(&named, defaults).ok()
}

/// Tags filled in per ban by the command backend.
const RUNTIME_TAGS: &[&str] = &[
    "ip",
    "fid",
    "failures",
    "time",
    "bantime",
    "bancount",
    "family",
    "ip-rev",
    "ipfailures",
    "ipjailfailures",
];

/// The action options that are commands.
const COMMANDS: &[&str] = &[
    "actionstart",
    "actionstop",
    "actioncheck",
    "actionban",
    "actionunban",
];

/// What mapping one reference gave.
pub enum Mapped {
    /// An action to run.
    Action(JailAction),
    /// Skipped with a warning (mail).
    Skipped(String),
}

/// Maps one action read for a jail. `file` is the action.d base name.
pub fn map(
    file: &str,
    r: &DefReader,
    combined: &Opts,
    defaults: &ActionDefaults,
) -> Result<Mapped, String> {
    let origin = r.origin.display().to_string();
    if let Some((kind, allports)) = native_kind(file) {
        let mut opts = NamedOptions {
            name: kind.to_string(),
            options: BTreeMap::new(),
        };
        for k in ["name", "port", "protocol", "chain", "blocktype"] {
            if let Some(v) = get(combined, k) {
                let v = v.trim();
                if v.is_empty() || v.contains('<') {
                    continue;
                }
                if k == "port" && allports {
                    continue;
                }
                opts.options.insert(k.to_string(), v.to_string());
            }
        }
        // ufw's blocktype is its verb (reject/deny), not an iptables target.
        if kind == "ufw" {
            opts.options.remove("blocktype");
        }
        let mut a = JailAction::resolve(&opts, defaults).map_err(|e| format!("{origin}: {e}"))?;
        if allports {
            a.ports = crate::config::services::PortSpec::All;
        }
        return Ok(Mapped::Action(a));
    }
    if is_mail(file) {
        return Ok(match mail_action(file, combined, defaults) {
            Some(a) => Mapped::Action(a),
            None => Mapped::Skipped(format!(
                "action {file} ({origin}) sends a kind of mail banstream's mail action does not compose; the jail's other actions run"
            )),
        });
    }
    let t = command_templates(&origin, combined)?;
    // The action file runs through the command backend, as if it had been
    // written as `[action.FILE]` in banstream.toml.
    let commands = BTreeMap::from([(file.to_string(), Arc::new(t))]);
    let mut a = JailAction::resolve_with(
        &NamedOptions {
            name: file.to_string(),
            options: BTreeMap::new(),
        },
        defaults,
        &commands,
    )?;
    if let Some(n) = get(combined, "name").filter(|n| crate::jail::JailName::new(n).is_ok()) {
        a.name = n.to_string();
    }
    a.options.insert("file".into(), file.to_string());
    Ok(Mapped::Action(a))
}

/// Builds the command templates of an action file: static tags
/// substituted, each line split into an argv, shell syntax refused.
pub fn command_templates(origin: &str, combined: &Opts) -> Result<CommandTemplates, String> {
    let mut t = CommandTemplates {
        origin: origin.to_string(),
        ..Default::default()
    };
    for (k, v) in combined {
        if COMMANDS.contains(&k.as_str()) || k.starts_with("known/") || k.starts_with("action") {
            continue;
        }
        t.tags.insert(k.clone(), v.clone());
    }
    for key in COMMANDS {
        let Some(text) = get(combined, key) else {
            continue;
        };
        let mut cmds = Vec::new();
        for line in join_continuations(text) {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let argv = split_argv(line).map_err(|why| {
                format!(
                    "{origin}: {key}: {why} in {line:?}; banstream runs commands without a shell"
                )
            })?;
            for arg in &argv {
                let mut pos = 0;
                while let Some((s, e, tag)) = super::tags::next_tag(arg, pos) {
                    pos = e;
                    let _ = s;
                    if !RUNTIME_TAGS.contains(&tag) && !t.tags.contains_key(tag) {
                        return Err(format!(
                            "{origin}: {key}: tag <{tag}> has no value (banstream fills in {} per ban)",
                            RUNTIME_TAGS.iter().map(|x| format!("<{x}>")).collect::<Vec<_>>().join(", ")
                        ));
                    }
                }
            }
            cmds.push(argv);
        }
        // Family variants would need a second command set.
        if combined.iter().any(|(k, v)| {
            k.split_once('?').is_some_and(|(base, _)| {
                text.contains(&format!("<{base}>")) && get(combined, base) != Some(v.as_str())
            })
        }) {
            return Err(format!(
                "{origin}: {key} uses tags with IPv6 variants (tag?family=inet6), which the command backend does not run"
            ));
        }
        match *key {
            "actionstart" => t.start = cmds,
            "actionstop" => t.stop = cmds,
            "actioncheck" => t.check = cmds,
            "actionban" => t.ban = cmds,
            _ => t.unban = cmds,
        }
    }
    Ok(t)
}

fn join_continuations(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cont = false;
    for l in text.lines() {
        if cont {
            if let Some(last) = out.last_mut() {
                last.push(' ');
                last.push_str(l.trim_end_matches('\\'));
            }
        } else {
            out.push(l.trim_end_matches('\\').to_string());
        }
        cont = l.trim_end().ends_with('\\');
    }
    out
}

/// Splits a command line into words the way a shell would for simple
/// commands (single and double quotes, backslash escapes), refusing any
/// shell feature the words would need. Tags (`<ip>`) are plain text here.
pub fn split_argv(line: &str) -> Result<Vec<String>, String> {
    let first = line.split_whitespace().next().unwrap_or("");
    if matches!(
        first,
        "if" | "then"
            | "else"
            | "elif"
            | "fi"
            | "for"
            | "while"
            | "do"
            | "done"
            | "case"
            | "esac"
            | "{"
            | "}"
            | "["
            | "[["
            | "!"
            | "export"
            | "local"
            | "set"
    ) || first.contains('=') && !first.starts_with('-') && !first.starts_with('<')
    {
        return Err(format!("shell syntax ({first:?})"));
    }
    let chars: Vec<char> = line.chars().collect();
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    cur.push(chars[i]);
                    i += 1;
                }
                if i >= chars.len() {
                    return Err("an unterminated quote".into());
                }
            }
            '"' => {
                in_word = true;
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    match chars[i] {
                        '$' | '`' => {
                            return Err(format!(
                                "a shell expansion ({:?} inside double quotes)",
                                chars[i]
                            ))
                        }
                        '\\' if i + 1 < chars.len()
                            && matches!(chars[i + 1], '"' | '\\' | '$' | '`') =>
                        {
                            cur.push(chars[i + 1]);
                            i += 1;
                        }
                        x => cur.push(x),
                    }
                    i += 1;
                }
                if i >= chars.len() {
                    return Err("an unterminated quote".into());
                }
            }
            '\\' if i + 1 < chars.len() => {
                in_word = true;
                cur.push(chars[i + 1]);
                i += 1;
            }
            '|' => return Err("a pipe or `||`".into()),
            '&' => return Err("`&&` or a background `&`".into()),
            ';' => return Err("`;` between commands".into()),
            '>' => return Err("an output redirection".into()),
            '$' => return Err("a shell expansion ($...)".into()),
            '`' => return Err("a command substitution (`...`)".into()),
            '(' | ')' => return Err("a subshell or grouping".into()),
            '*' | '?' if !in_word || !cur.contains('<') => return Err(format!("a glob ({c:?})")),
            '<' => {
                // A tag <name> is text; anything else is a redirection.
                let rest: String = chars[i..].iter().collect();
                match super::tags::next_tag(&rest, 0) {
                    Some((0, e, _)) => {
                        in_word = true;
                        cur.push_str(&rest[..e]);
                        i += rest[..e].chars().count() - 1;
                    }
                    _ => return Err("an input redirection".into()),
                }
            }
            '#' if !in_word => break,
            _ => {
                in_word = true;
                cur.push(c);
            }
        }
        i += 1;
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_and_shell_features() {
        assert_eq!(
            split_argv(r#"ipfw add <blocktype> tcp from <ip> to "my host" 'x y' a\ b"#).unwrap(),
            [
                "ipfw",
                "add",
                "<blocktype>",
                "tcp",
                "from",
                "<ip>",
                "to",
                "my host",
                "x y",
                "a b"
            ]
        );
        for bad in [
            "echo <ip> >> /etc/hosts.deny",
            "a | b",
            "a && b",
            "x=$(id)",
            "echo `id`",
            "if [ -n x ]",
            "a; b",
            "echo \"$HOME\"",
            "rm *",
        ] {
            assert!(split_argv(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn templates_refuse_unknown_tags_and_shell() {
        let combined: Opts = vec![
            ("actionban".into(), "route add <ip> <gw>".into()),
            ("gw".into(), "192.0.2.1".into()),
        ];
        let t = command_templates("route.conf", &combined).unwrap();
        assert_eq!(t.ban, vec![vec!["route", "add", "<ip>", "<gw>"]]);
        assert_eq!(t.tags["gw"], "192.0.2.1");
        let combined: Opts = vec![("actionban".into(), "echo <matches>".into())];
        assert!(command_templates("x", &combined)
            .unwrap_err()
            .contains("<matches>"));
        let combined: Opts = vec![("actionban".into(), "echo <ip> | mail".into())];
        assert!(command_templates("x.conf", &combined)
            .unwrap_err()
            .contains("x.conf: actionban: a pipe"));
    }
}
