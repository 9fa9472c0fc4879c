//! Time spans as admins write them: `600`, `10m`, `1d12h`, `1 hour 30 min`,
//! `6mo`, and `-1` for "forever".
//!
//! The units and their lengths are fail2ban's (`mo` is a twelfth of an
//! average year, 30.4375 days), so a value copied from a jail.local means the
//! same thing here.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A configured span: a finite duration or forever (`-1`, or any negative value).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimeSpec {
    /// A finite span.
    Finite(Duration),
    /// No end: a permanent ban.
    Forever,
}

impl TimeSpec {
    /// The finite length, or `None` for forever.
    pub fn finite(self) -> Option<Duration> {
        match self {
            TimeSpec::Finite(d) => Some(d),
            TimeSpec::Forever => None,
        }
    }

    /// Whole seconds as fail2ban prints them (`-1` for forever).
    pub fn as_secs_i64(self) -> i64 {
        match self {
            TimeSpec::Finite(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            TimeSpec::Forever => -1,
        }
    }
}

/// Why a time span could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid time span {input:?}: {reason} (use seconds or units s, m, h, d, w, mo, y, e.g. \"10m\" or \"1d12h\"; -1 means forever)")]
pub struct TimeSpecError {
    /// The text as written.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

const MINUTE: f64 = 60.0;
const HOUR: f64 = 3600.0;
const DAY: f64 = 86400.0;
const YEAR: f64 = (365.0 * 3.0 + 366.0) * DAY / 4.0;

fn unit_seconds(unit: &str) -> Option<f64> {
    let u = unit.to_ascii_lowercase();
    Some(match u.as_str() {
        "" | "s" | "ss" | "sec" | "secs" | "second" | "seconds" => 1.0,
        "m" | "mm" | "mi" | "min" | "mins" | "minute" | "minutes" => MINUTE,
        "h" | "hh" | "ho" | "hou" | "hour" | "hours" => HOUR,
        "d" | "dd" | "da" | "day" | "days" => DAY,
        "w" | "ww" | "we" | "wee" | "week" | "weeks" => 7.0 * DAY,
        "mo" | "mon" | "month" | "months" => YEAR / 12.0,
        "y" | "yy" | "ye" | "yea" | "year" | "years" => YEAR,
        _ => return None,
    })
}

impl TimeSpec {
    /// Parses a span. Terms are summed; a `-` before a term subtracts it
    /// (`1y-6mo`), as in fail2ban. A negative total means forever.
    pub fn parse(input: &str) -> Result<TimeSpec, TimeSpecError> {
        let err = |reason| TimeSpecError {
            input: input.to_string(),
            reason,
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(err("empty"));
        }
        let bytes = s.as_bytes();
        let mut i = 0;
        let mut total = 0.0f64;
        let mut terms = 0;
        while i < bytes.len() {
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            if i >= bytes.len() {
                break;
            }
            let mut sign = 1.0;
            if bytes[i] == b'+' || bytes[i] == b'-' {
                if bytes[i] == b'-' {
                    sign = -1.0;
                }
                i += 1;
                while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                    i += 1;
                }
            }
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                i += 1;
            }
            if start == i {
                return Err(err("expected a number"));
            }
            let num: f64 = s[start..i].parse().map_err(|_| err("bad number"))?;
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            let ustart = i;
            while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                i += 1;
            }
            let unit = unit_seconds(&s[ustart..i]).ok_or_else(|| err("unknown unit"))?;
            total += sign * num * unit;
            terms += 1;
        }
        if terms == 0 {
            return Err(err("empty"));
        }
        if total < 0.0 {
            return Ok(TimeSpec::Forever);
        }
        if !total.is_finite() || total > 1e15 {
            return Err(err("too large"));
        }
        Ok(TimeSpec::Finite(Duration::from_secs_f64(total)))
    }
}

impl fmt::Display for TimeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimeSpec::Forever => write!(f, "-1"),
            TimeSpec::Finite(d) => {
                let mut s = d.as_secs();
                if s == 0 {
                    return write!(f, "{}ms", d.as_millis());
                }
                let mut out = String::new();
                for (unit, len) in [
                    ("w", 604800),
                    ("d", 86400),
                    ("h", 3600),
                    ("m", 60),
                    ("s", 1),
                ] {
                    if s >= len {
                        out.push_str(&format!("{}{}", s / len, unit));
                        s %= len;
                    }
                }
                f.write_str(&out)
            }
        }
    }
}

impl Serialize for TimeSpec {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for TimeSpec {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = TimeSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a time span such as 600, \"10m\", \"1d12h\" or -1")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<TimeSpec, E> {
                if v < 0 {
                    Ok(TimeSpec::Forever)
                } else {
                    Ok(TimeSpec::Finite(Duration::from_secs(v as u64)))
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<TimeSpec, E> {
                Ok(TimeSpec::Finite(Duration::from_secs(v)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<TimeSpec, E> {
                if v < 0.0 {
                    Ok(TimeSpec::Forever)
                } else if v.is_finite() && v < 1e15 {
                    Ok(TimeSpec::Finite(Duration::from_secs_f64(v)))
                } else {
                    Err(E::custom("time span out of range"))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TimeSpec, E> {
                TimeSpec::parse(v).map_err(E::custom)
            }
        }
        de.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: &str) -> u64 {
        TimeSpec::parse(s).unwrap().finite().unwrap().as_secs()
    }

    #[test]
    fn units_and_combinations() {
        assert_eq!(secs("600"), 600);
        assert_eq!(secs("10m"), 600);
        assert_eq!(secs("16m"), 960);
        assert_eq!(secs("1h"), 3600);
        assert_eq!(secs("1d"), 86400);
        assert_eq!(secs("1w"), 604800);
        assert_eq!(secs("1d12h"), 129600);
        assert_eq!(secs("1 hour 30 min"), 5400);
        assert_eq!(secs("6d"), 518400);
        assert_eq!(secs("1y-6mo"), 15778800);
        assert_eq!(secs("6 months"), 15778800);
    }

    #[test]
    fn forever_and_errors() {
        assert_eq!(TimeSpec::parse("-1"), Ok(TimeSpec::Forever));
        assert!(TimeSpec::parse("lots").is_err());
        assert!(TimeSpec::parse("10 parsecs").is_err());
        assert!(TimeSpec::parse("").is_err());
    }

    #[test]
    fn display_round_trips() {
        for s in ["10m", "1d12h", "2w3d", "-1", "45s"] {
            let t = TimeSpec::parse(s).unwrap();
            assert_eq!(TimeSpec::parse(&t.to_string()).unwrap(), t);
        }
    }
}
