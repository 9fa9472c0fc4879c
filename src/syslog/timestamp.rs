//! Timestamp parsing without allocation: RFC 3164 `Mmm dd HH:MM:SS` (year
//! inferred) and ISO 8601 / RFC 3339. Year-less timestamps are read as UTC,
//! which is what musl's syslog() writes; see the README on time zones.

use std::cell::Cell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's
/// algorithm; exact for all years we can meet).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The (year, month, day) of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Seconds since the epoch as a signed count (negative before 1970).
pub fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

fn from_unix(secs: i64, nanos: u32) -> Option<SystemTime> {
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::new(secs as u64, nanos))
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(secs.unsigned_abs()))?
            .checked_add(Duration::from_nanos(u64::from(nanos)))
    }
}

fn month_from_abbrev(b: &[u8]) -> Option<u32> {
    let m = match [b[0] | 0x20, b[1] | 0x20, b[2] | 0x20] {
        [b'j', b'a', b'n'] => 1,
        [b'f', b'e', b'b'] => 2,
        [b'm', b'a', b'r'] => 3,
        [b'a', b'p', b'r'] => 4,
        [b'm', b'a', b'y'] => 5,
        [b'j', b'u', b'n'] => 6,
        [b'j', b'u', b'l'] => 7,
        [b'a', b'u', b'g'] => 8,
        [b's', b'e', b'p'] => 9,
        [b'o', b'c', b't'] => 10,
        [b'n', b'o', b'v'] => 11,
        [b'd', b'e', b'c'] => 12,
        _ => return None,
    };
    Some(m)
}

#[inline]
fn two_digits(b: &[u8], i: usize) -> Option<u32> {
    let (a, c) = (*b.get(i)?, *b.get(i + 1)?);
    if a.is_ascii_digit() && c.is_ascii_digit() {
        Some(u32::from(a - b'0') * 10 + u32::from(c - b'0'))
    } else {
        None
    }
}

/// Reads optional `.ffffff` at `i`; returns (nanos, bytes used).
fn fraction(b: &[u8], i: usize) -> (u32, usize) {
    if b.get(i) != Some(&b'.') {
        return (0, 0);
    }
    let mut j = i + 1;
    let mut nanos: u64 = 0;
    let mut digits = 0;
    while j < b.len() && b[j].is_ascii_digit() {
        if digits < 9 {
            nanos = nanos * 10 + u64::from(b[j] - b'0');
            digits += 1;
        }
        j += 1;
    }
    if j == i + 1 {
        return (0, 0);
    }
    for _ in digits..9 {
        nanos *= 10;
    }
    (nanos as u32, j - i)
}

/// Parses an RFC 3164 timestamp at the start of `s` (`Mmm dd HH:MM:SS`,
/// day space-padded or zero-padded, optional fraction). The year is the one
/// that puts the time closest to `reference`. Returns the time and the
/// number of bytes consumed.
pub fn parse_bsd(s: &str, reference: SystemTime) -> Option<(SystemTime, usize)> {
    let b = s.as_bytes();
    if b.len() < 14 || b[3] != b' ' {
        return None;
    }
    let month = month_from_abbrev(&b[0..3])?;
    // `Mmm dd`, `Mmm  d`, and the unpadded `Mmm d` some senders write.
    let (day, o) = match (b[4], b[5]) {
        (b' ', d) if d.is_ascii_digit() => (u32::from(d - b'0'), 0),
        (d, b' ') if d.is_ascii_digit() => (u32::from(d - b'0'), 1),
        _ => (two_digits(b, 4)?, 0),
    };
    if b.len() < 15 - o || b[6 - o] != b' ' || b[9 - o] != b':' || b[12 - o] != b':' {
        return None;
    }
    let (hh, mm, ss) = (
        two_digits(b, 7 - o)?,
        two_digits(b, 10 - o)?,
        two_digits(b, 13 - o)?,
    );
    if !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let (nanos, flen) = fraction(b, 15 - o);
    let ref_secs = unix_secs(reference);
    let tod = i64::from(hh) * 3600 + i64::from(mm) * 60 + i64::from(ss);
    let mut best: Option<i64> = None;
    for d in candidate_days(ref_secs.div_euclid(86400), month, day) {
        let t = d * 86400 + tod;
        if best.is_none_or(|b| (t - ref_secs).abs() < (b - ref_secs).abs()) {
            best = Some(t);
        }
    }
    Some((from_unix(best?, nanos)?, 15 - o + flen))
}

/// The day numbers of `month`/`day` in the year before, the year of, and
/// the year after the day `ref_day`. Remembered per thread: consecutive
/// lines of a log share their date, and the calendar arithmetic was a
/// visible part of parsing a line.
fn candidate_days(ref_day: i64, month: u32, day: u32) -> [i64; 3] {
    type Memo = Cell<Option<(i64, u32, u32, [i64; 3])>>;
    thread_local! {
        static LAST: Memo = const { Cell::new(None) };
    }
    LAST.with(|last| match last.get() {
        Some((r, m, d, days)) if (r, m, d) == (ref_day, month, day) => days,
        _ => {
            let (y, _, _) = civil_from_days(ref_day);
            let days = [y - 1, y, y + 1].map(|y| days_from_civil(y, month, day));
            last.set(Some((ref_day, month, day, days)));
            days
        }
    })
}

/// Parses an ISO 8601 / RFC 3339 timestamp at the start of `s`
/// (`YYYY-MM-DDTHH:MM:SS[.f][Z|±HH:MM]`, `T` or a space between date and
/// time). Without a zone it is read as UTC. Returns the time and the bytes used.
pub fn parse_iso(s: &str) -> Option<(SystemTime, usize)> {
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b' ') {
        return None;
    }
    let year = i64::from(two_digits(b, 0)? * 100 + two_digits(b, 2)?);
    let (month, day) = (two_digits(b, 5)?, two_digits(b, 8)?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (hh, mm, ss) = (two_digits(b, 11)?, two_digits(b, 14)?, two_digits(b, 17)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let (nanos, flen) = fraction(b, 19);
    let mut i = 19 + flen;
    let mut offset: i64 = 0;
    match b.get(i) {
        Some(b'Z') | Some(b'z') => i += 1,
        Some(&sign @ (b'+' | b'-')) => {
            let oh = two_digits(b, i + 1)?;
            let om = if b.get(i + 3) == Some(&b':') {
                let v = two_digits(b, i + 4)?;
                i += 6;
                v
            } else {
                let v = two_digits(b, i + 3)?;
                i += 5;
                v
            };
            offset = i64::from(oh) * 3600 + i64::from(om) * 60;
            if sign == b'-' {
                offset = -offset;
            }
        }
        _ => {}
    }
    let secs = days_from_civil(year, month, day) * 86400
        + i64::from(hh) * 3600
        + i64::from(mm) * 60
        + i64::from(ss)
        - offset;
    Some((from_unix(secs, nanos)?, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> SystemTime {
        from_unix(secs, 0).unwrap()
    }

    #[test]
    fn civil_round_trip() {
        for z in [-1000, 0, 1, 59, 365, 10_000, 20_416, 100_000] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(days_from_civil(2026, 11, 24), 20_781);
    }

    #[test]
    fn bsd_year_inference_handles_rollover() {
        // Reference 2027-01-01T00:00:05Z; "Dec 31 23:59:59" belongs to 2026.
        let reference = at(days_from_civil(2027, 1, 1) * 86400 + 5);
        let (t, n) = parse_bsd("Dec 31 23:59:59 host", reference).unwrap();
        assert_eq!(n, 15);
        assert_eq!(unix_secs(t), days_from_civil(2026, 12, 31) * 86400 + 86399);
        // Reference late December; "Jan  1" belongs to the next year.
        let reference = at(days_from_civil(2026, 12, 31) * 86400);
        let (t, _) = parse_bsd("Jan  1 00:00:01 host", reference).unwrap();
        assert_eq!(unix_secs(t), days_from_civil(2027, 1, 1) * 86400 + 1);
    }

    #[test]
    fn bsd_rejects_nonsense_and_reads_fractions() {
        let r = at(0);
        assert!(parse_bsd("Foo 24 14:00:00 x", r).is_none());
        assert!(parse_bsd("Nov 24 25:00:00 x", r).is_none());
        assert!(parse_bsd("Nov 24 14:00", r).is_none());
        let (t, n) = parse_bsd("Jan 1 00:00:01 x", r).unwrap();
        assert_eq!((t, n), (UNIX_EPOCH + Duration::from_secs(1), 14));
        assert!(parse_bsd("Jan 1 0:00:01 x", r).is_none());
        let (t, n) = parse_bsd("Jan  1 00:00:00.250 x", r).unwrap();
        assert_eq!(n, 19);
        assert_eq!(t, UNIX_EPOCH + Duration::from_millis(250));
    }

    #[test]
    fn iso_with_zones() {
        let (t, n) = parse_iso("2026-11-24T14:00:00Z rest").unwrap();
        assert_eq!(n, 20);
        assert_eq!(
            unix_secs(t),
            days_from_civil(2026, 11, 24) * 86400 + 14 * 3600
        );
        let (t, _) = parse_iso("2026-11-24T14:00:00.5-02:00").unwrap();
        assert_eq!(
            t,
            at(days_from_civil(2026, 11, 24) * 86400 + 16 * 3600) + Duration::from_millis(500)
        );
        let (t, n) = parse_iso("2026-11-24 14:00:00 x").unwrap();
        assert_eq!(n, 19);
        assert_eq!(
            unix_secs(t),
            days_from_civil(2026, 11, 24) * 86400 + 14 * 3600
        );
        assert!(parse_iso("2026-13-24T14:00:00Z").is_none());
    }
}
