//! fail2ban's `<tag>` substitution (`substituteRecursiveTags` in
//! helpers.py) and its option syntax (`name[k=v, k2="a,b"]`, several
//! actions in one multi-line value).

use std::collections::HashSet;

use crate::filter::NamedOptions;

/// Most times one tag may be replaced inside one value (fail2ban's limit,
/// which stops self-referencing definitions).
const MAX_REPLACE: usize = 25;

/// The next `<name>` (no space, `<` or `>` inside) at or after `from`.
pub fn next_tag(s: &str, from: usize) -> Option<(usize, usize, &str)> {
    let b = s.as_bytes();
    let mut i = from;
    while i < b.len() {
        if b[i] == b'<' {
            let mut j = i + 1;
            while j < b.len() && !matches!(b[j], b' ' | b'<' | b'>') && !b[j].is_ascii_whitespace()
            {
                j += 1;
            }
            if j < b.len() && b[j] == b'>' && j > i + 1 {
                return Some((i, j + 1, &s[i + 1..j]));
            }
        }
        i += 1;
    }
    None
}

/// Replaces `<tag>` references between the given values, recursively
/// (`<mdre-<mode>>` resolves inside out). Tags with no value stay as they
/// are (`<HOST>`, `<ip>`). `lookup` supplies values that are not in `tags`
/// (fail2ban's Definition options read on demand). Keys in `ignore` are not
/// substituted and not used as replacements.
pub fn substitute_recursive(
    tags: &mut [(String, String)],
    ignore: &HashSet<String>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), String> {
    let mut done: HashSet<String> = HashSet::new();
    let mut counts: Vec<std::collections::HashMap<String, usize>> =
        vec![Default::default(); tags.len()];
    loop {
        let mut again = false;
        for idx in 0..tags.len() {
            let tag = tags[idx].0.clone();
            if ignore.contains(&tag) || done.contains(&tag) {
                continue;
            }
            let orig = tags[idx].1.clone();
            let mut value = orig.clone();
            let mut pos = 0;
            while let Some((start, end, name)) = next_tag(&value, pos) {
                let name = name.to_string();
                if ignore.contains(&name) {
                    pos = end;
                    continue;
                }
                let n = counts[idx].get(&name).copied().unwrap_or(0);
                if name == tag || n > MAX_REPLACE {
                    return Err(format!(
                        "<{tag}> refers to itself (through <{name}>) and cannot be resolved"
                    ));
                }
                let repl = tags
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.clone())
                    .or_else(|| lookup(&name));
                let Some(repl) = repl else {
                    pos = end;
                    continue;
                };
                value = value.replace(&format!("<{name}>"), &repl);
                *counts[idx].entry(name).or_insert(0) += 1;
                pos = start;
            }
            if value != orig {
                if next_tag(&value, 0).is_some() {
                    again = true;
                }
                tags[idx].1 = value.clone();
            }
            if !value.contains('<') {
                done.insert(tag);
            }
        }
        if !again {
            return Ok(());
        }
    }
}

/// Splits an `action = ...` value into its references: whitespace or new
/// lines separate them, except inside `[...]` options (fail2ban's
/// `splitWithOptions`).
pub fn split_with_options(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    for c in s.chars() {
        if let Some(q) = quote {
            cur.push(c);
            if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' if depth > 0 => {
                quote = Some(c);
                cur.push(c);
            }
            '[' => {
                depth += 1;
                cur.push(c);
            }
            ']' => {
                depth -= 1;
                cur.push(c);
            }
            c if c.is_whitespace() && depth <= 0 => {
                // `name [opts]`: a space before the bracket still belongs.
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    // Re-attach option groups written after a space: `name [k=v]`.
    let mut merged: Vec<String> = Vec::new();
    for part in out {
        match merged.last_mut() {
            Some(prev) if part.starts_with('[') => prev.push_str(&part),
            _ => merged.push(part),
        }
    }
    merged
}

/// Parses one reference, also accepting fail2ban's chained groups
/// (`act[a=1][b=2]`) and newlines inside the brackets.
pub fn extract_options(s: &str) -> Result<NamedOptions, String> {
    let flat: String = s.chars().map(|c| if c == '\n' { ' ' } else { c }).collect();
    let flat = flat.trim();
    // `a][b` separates groups: join them into one.
    let joined = join_groups(flat);
    NamedOptions::parse(&joined).map_err(|e| e.to_string())
}

fn join_groups(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut quote: Option<char> = None;
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            out.push(c);
            i += 1;
            continue;
        }
        if c == '"' || c == '\'' {
            quote = Some(c);
        }
        if c == ']' {
            let mut j = i + 1;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            if j < chars.len() && chars[j] == '[' {
                out.push(',');
                i = j + 1;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut t: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        substitute_recursive(&mut t, &HashSet::new(), &|_| None).unwrap();
        t
    }

    #[test]
    fn nested_tags_resolve_inside_out() {
        let t = sub(&[
            ("failregex", "a <mdre-<mode>> <HOST>"),
            ("mode", "ddos"),
            ("mdre-ddos", "D<x>"),
            ("x", "X"),
        ]);
        assert_eq!(t[0].1, "a DX <HOST>");
        let mut t = vec![("a".to_string(), "<a>".to_string())];
        assert!(substitute_recursive(&mut t, &HashSet::new(), &|_| None).is_err());
    }

    #[test]
    fn action_lists_split() {
        let v = split_with_options(
            "iptables-multiport[name=Named, port=\"53,953\", protocol=udp]\n  sendmail-whois[name=x, dest=\"a b\"]\nufw",
        );
        assert_eq!(v.len(), 3, "{v:?}");
        let o = extract_options(&v[0]).unwrap();
        assert_eq!(o.options["port"], "53,953");
        let o = extract_options("a[x=1][y=2]").unwrap();
        assert_eq!(
            (o.options["x"].as_str(), o.options["y"].as_str()),
            ("1", "2")
        );
    }
}
