//! fail2ban's option syntax: `name[key=value, key2="a,b"]`, used for filter
//! and action references (`sshd[mode=aggressive]`,
//! `iptables-multiport[name=Named, port=53, protocol=udp]`).

use std::collections::BTreeMap;
use std::fmt;

/// A name with its bracketed options.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NamedOptions {
    /// The name before the brackets.
    pub name: String,
    /// Options in the order they were given (later duplicates win).
    pub options: BTreeMap<String, String>,
}

/// Why an option string could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid reference {input:?}: {reason}")]
pub struct OptionsError {
    /// The text as written.
    pub input: String,
    /// What is wrong.
    pub reason: String,
}

impl NamedOptions {
    /// Parses `name` or `name[k=v, ...]`. Values may be quoted with `"` or
    /// `'` to contain commas or brackets.
    pub fn parse(input: &str) -> Result<NamedOptions, OptionsError> {
        let err = |reason: &str| OptionsError {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let s = input.trim();
        let Some(open) = s.find('[') else {
            if s.is_empty() {
                return Err(err("empty name"));
            }
            return Ok(NamedOptions {
                name: s.to_string(),
                options: BTreeMap::new(),
            });
        };
        let name = s[..open].trim();
        if name.is_empty() {
            return Err(err("empty name"));
        }
        let body = s[open + 1..]
            .strip_suffix(']')
            .ok_or_else(|| err("missing closing ']'"))?;
        let mut options = BTreeMap::new();
        let chars: Vec<char> = body.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            while i < chars.len() && (chars[i].is_whitespace() || chars[i] == ',') {
                i += 1;
            }
            if i >= chars.len() {
                break;
            }
            let kstart = i;
            while i < chars.len() && chars[i] != '=' && chars[i] != ',' {
                i += 1;
            }
            let key: String = chars[kstart..i]
                .iter()
                .collect::<String>()
                .trim()
                .to_string();
            if key.is_empty() {
                return Err(err("option without a name"));
            }
            if i >= chars.len() || chars[i] != '=' {
                return Err(err(&format!("option {key:?} has no '=value'")));
            }
            i += 1;
            while i < chars.len() && chars[i] == ' ' {
                i += 1;
            }
            let mut value = String::new();
            if i < chars.len() && (chars[i] == '"' || chars[i] == '\'') {
                let q = chars[i];
                i += 1;
                let vstart = i;
                while i < chars.len() && chars[i] != q {
                    i += 1;
                }
                if i >= chars.len() {
                    return Err(err("unterminated quote"));
                }
                value.extend(&chars[vstart..i]);
                i += 1;
            } else {
                // Unquoted: up to the next comma that is not inside brackets.
                let mut depth = 0i32;
                while i < chars.len() {
                    match chars[i] {
                        '[' => depth += 1,
                        ']' => depth -= 1,
                        ',' if depth <= 0 => break,
                        _ => {}
                    }
                    value.push(chars[i]);
                    i += 1;
                }
                value = value.trim().to_string();
            }
            options.insert(key, value);
        }
        Ok(NamedOptions {
            name: name.to_string(),
            options,
        })
    }
}

impl fmt::Display for NamedOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if !self.options.is_empty() {
            f.write_str("[")?;
            for (i, (k, v)) in self.options.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                if v.contains([',', ']', '[', '"']) {
                    write!(f, "{k}='{v}'")?;
                } else {
                    write!(f, "{k}={v}")?;
                }
            }
            f.write_str("]")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_with_options() {
        let n = NamedOptions::parse("sshd").unwrap();
        assert_eq!(n.name, "sshd");
        assert!(n.options.is_empty());
        let n = NamedOptions::parse("sshd[mode=aggressive]").unwrap();
        assert_eq!(n.options["mode"], "aggressive");
        let n =
            NamedOptions::parse(r#"iptables-multiport[name=Named, port="53,953", protocol=udp]"#)
                .unwrap();
        assert_eq!(n.name, "iptables-multiport");
        assert_eq!(n.options["port"], "53,953");
        assert_eq!(n.options["protocol"], "udp");
        assert_eq!(n.options["name"], "Named");
    }

    #[test]
    fn errors() {
        assert!(NamedOptions::parse("").is_err());
        assert!(NamedOptions::parse("x[mode=a").is_err());
        assert!(NamedOptions::parse("x[mode]").is_err());
        assert!(NamedOptions::parse("x[a='b]").is_err());
    }

    #[test]
    fn display_round_trips() {
        let n = NamedOptions::parse(r#"a[port="1,2", x=y]"#).unwrap();
        assert_eq!(NamedOptions::parse(&n.to_string()).unwrap(), n);
    }
}
