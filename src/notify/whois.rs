//! A short whois summary of a banned address (fail2ban's `sendmail-whois`),
//! run as `whois ADDRESS` (argv, no shell) with a timeout and an output
//! budget. Whois output is written by whoever holds the address range, so it
//! is foreign text: the summary is rendered with [`super::text::quote`] like
//! a log line.

use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

use super::process;

/// Output read from whois at most.
const BUDGET: usize = 64 * 1024;
/// Lines kept in a summary.
const MAX_LINES: usize = 16;

/// The fields worth a glance: who holds the range, where, and whom to tell.
const KEYS: &[&str] = &[
    "inetnum",
    "inet6num",
    "netrange",
    "cidr",
    "route",
    "route6",
    "netname",
    "descr",
    "country",
    "org",
    "org-name",
    "orgname",
    "organization",
    "owner",
    "origin",
    "originas",
    "abuse-mailbox",
    "orgabuseemail",
];

/// Runs `program ip` and returns summary lines (foreign text), or why not.
pub fn lookup(program: &str, ip: IpAddr, timeout: Duration) -> Result<Vec<String>, String> {
    let mut cmd = Command::new(program);
    cmd.arg(ip.to_string());
    let f = process::run(&mut cmd, None, timeout, BUDGET).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&f.stdout);
    let lines = summarize(&text);
    if lines.is_empty() {
        return Err(if f.status.success() {
            "whois returned nothing useful".into()
        } else {
            format!("whois failed ({})", f.status)
        });
    }
    Ok(lines)
}

/// Picks the interesting `key: value` lines (first of each distinct line).
pub fn summarize(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        let Some((k, v)) = t.split_once(':') else {
            continue;
        };
        if v.trim().is_empty() || !KEYS.contains(&k.trim().to_ascii_lowercase().as_str()) {
            continue;
        }
        let kept = format!("{}: {}", k.trim(), v.trim());
        if !out.contains(&kept) {
            out.push(kept);
        }
        if out.len() == MAX_LINES {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_useful_fields_once() {
        let text = "% comment\n\ninetnum:        192.0.2.0 - 192.0.2.255\nnetname:        TEST-NET\ndescr:          ~!touch /tmp/pwned\nremarks:        noise\ncountry:        ZZ\ncountry:        ZZ\nabuse-mailbox:  abuse@example.net\n";
        let s = summarize(text);
        assert_eq!(
            s,
            vec![
                "inetnum: 192.0.2.0 - 192.0.2.255",
                "netname: TEST-NET",
                "descr: ~!touch /tmp/pwned",
                "country: ZZ",
                "abuse-mailbox: abuse@example.net",
            ]
        );
    }

    #[test]
    fn a_missing_whois_is_an_error_not_a_panic() {
        let e = lookup(
            "/nonexistent/banstream-whois",
            "192.0.2.1".parse().unwrap(),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(e.contains("cannot run"), "{e}");
    }
}
