//! Making foreign text inert before it goes into a mail or a webhook, and
//! the few formatting helpers the notifiers share.
//!
//! Foreign text is everything banstream did not write itself: log lines
//! (user names, tags, anything a client can put in a failed login) and whois
//! output (which the owner of the address range writes). fail2ban's
//! CVE-2021-32749 came from piping such text to mail(1), where a line
//! starting with `~!` runs a command. banstream never uses mail(1), and on
//! top of that every foreign line is rendered by [`quote`]: control
//! characters become visible caret notation (`^M`, `^J`, `^[`), so no
//! CR/LF can end a line or a header; the line is cut to a byte budget; and
//! it starts with a fixed prefix, so no line of a message begins with
//! attacker text (`~`, `.`, `From `, a header name).

use std::time::SystemTime;

use chrono::{DateTime, Utc};

/// Longest piece of foreign text kept per line, in bytes (mail lines must
/// stay well under RFC 5322's 998 octets).
pub const MAX_LINE: usize = 400;

/// The prefix of every line of foreign text in a mail body.
pub const QUOTE: &str = "  | ";

/// Returns `text` with control and invisible formatting characters made
/// visible, cut to at most `max` bytes (at a character boundary) with a
/// marker saying how many bytes were cut. `already_cut` bytes were dropped
/// before (when the line was recorded) and are added to the marker.
pub fn inert(text: &str, max: usize, already_cut: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max) + 16);
    let mut used = 0;
    let mut cut = already_cut;
    for (i, c) in text.char_indices() {
        let mut buf = [0u8; 4];
        let piece: &str = match c {
            '\t' => " ",
            '\u{7f}' => "^?",
            c if (c as u32) < 0x20 => {
                buf[0] = b'^';
                buf[1] = (c as u8) ^ 0x40;
                // Both bytes are ASCII, so this cannot fail.
                std::str::from_utf8(&buf[..2]).unwrap_or("?")
            }
            c if is_invisible(c) => "\u{FFFD}",
            c => c.encode_utf8(&mut buf),
        };
        if used + piece.len() > max {
            cut += text.len() - i;
            break;
        }
        out.push_str(piece);
        used += piece.len();
    }
    if cut > 0 {
        out.push_str(&format!(" [{cut} bytes cut]"));
    }
    out
}

/// C1 controls, line and paragraph separators, bidirectional overrides and
/// zero-width characters: they can break lines in some mail readers or make
/// text display differently from what it is.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{80}'..='\u{9f}'
        | '\u{200b}'..='\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2060}'..='\u{2069}'
        | '\u{feff}')
}

/// One line of foreign text for a mail body: [`QUOTE`] then [`inert`].
pub fn quote(text: &str, already_cut: usize) -> String {
    format!("{QUOTE}{}", inert(text, MAX_LINE, already_cut))
}

/// A time as `2026-01-02 03:04:05 UTC`.
pub fn utc(t: SystemTime) -> String {
    DateTime::<Utc>::from(t)
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string()
}

/// UNIX seconds.
pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// This host's name for subjects and Message-IDs: the kernel's hostname,
/// reduced to the characters a domain name may hold.
pub fn hostname() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let clean: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .take(253)
        .collect();
    if clean.is_empty() {
        "localhost".into()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_visible_and_lines_cannot_break() {
        let s = inert(
            "user ~!id\r\nSubject: x\x1b[31m\x7f\u{2028}\u{202e}",
            400,
            0,
        );
        assert_eq!(s, "user ~!id^M^JSubject: x^[[31m^?\u{FFFD}\u{FFFD}");
        assert!(!s.contains('\n') && !s.contains('\r'));
    }

    #[test]
    fn long_lines_are_cut_at_a_character_boundary() {
        let long = "é".repeat(60_000); // 120,000 bytes
        let s = inert(&long, 401, 0);
        assert!(s.len() < 440, "{}", s.len());
        assert!(s.ends_with(" [119600 bytes cut]"), "{}", &s[s.len() - 30..]);
        assert!(inert("abc", 2, 5).ends_with("[6 bytes cut]"));
    }

    #[test]
    fn quoted_lines_never_start_with_foreign_text() {
        for hostile in ["~!id", ".", "From x", "~|sh", "\n~!x"] {
            let q = quote(hostile, 0);
            assert!(q.starts_with(QUOTE), "{q:?}");
            assert!(!q.contains('\n'));
        }
    }
}
