//! The SQL: reading the state at start, writing a batch of changes in one
//! transaction, purging. Times are UNIX milliseconds, durations
//! milliseconds, addresses their canonical text.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, Transaction};

use crate::ban::{Ban, BanOrigin, History, UnbanReason};
use crate::config::TimeSpec;
use crate::jail::JailName;

/// UNIX milliseconds of a time (times before 1970 clamp to 0).
pub fn ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The time of UNIX milliseconds.
pub fn time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

fn span_ms(t: TimeSpec) -> i64 {
    match t {
        TimeSpec::Forever => -1,
        TimeSpec::Finite(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
    }
}

fn span(ms: i64) -> TimeSpec {
    if ms < 0 {
        TimeSpec::Forever
    } else {
        TimeSpec::Finite(Duration::from_millis(ms as u64))
    }
}

fn origin_text(o: BanOrigin) -> &'static str {
    match o {
        BanOrigin::Stream => "stream",
        BanOrigin::Manual => "manual",
        BanOrigin::Restored => "restored",
    }
}

fn origin(s: &str) -> BanOrigin {
    match s {
        "manual" => BanOrigin::Manual,
        _ => BanOrigin::Stream,
    }
}

/// The `events.kind` of an unban.
pub fn reason_text(r: UnbanReason) -> &'static str {
    match r {
        UnbanReason::Expired => "expired",
        UnbanReason::Manual => "unban",
        UnbanReason::JailRemoved => "jail_removed",
        UnbanReason::Ignored => "ignored",
    }
}

/// One change to write.
#[derive(Clone, Debug)]
pub enum Op {
    /// A new ban (in force, history, log).
    Ban(Arc<Ban>),
    /// A ban lifted at a time.
    Unban(Arc<Ban>, UnbanReason, SystemTime),
    /// Forget history last touched before `history`, and log entries before
    /// `log`; never anything of a ban in force.
    Purge {
        /// History cutoff.
        history: SystemTime,
        /// Ban log cutoff.
        log: SystemTime,
    },
}

/// Writes `ops` in order inside `tx`.
pub fn apply(tx: &Transaction<'_>, ops: &[Op]) -> rusqlite::Result<()> {
    for op in ops {
        match op {
            Op::Ban(b) => {
                let ip = b.ip.to_string();
                let jail = b.jail.as_str();
                let start = ms(b.start);
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO bans (jail, ip, start, bantime, expires, failures, ban_count, origin)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![
                    jail,
                    ip,
                    start,
                    span_ms(b.bantime),
                    b.expires.map(ms),
                    b.failures,
                    b.ban_count,
                    origin_text(b.origin),
                ])?;
                // The manager's count is the truth (it already includes this ban).
                tx.prepare_cached(
                    "INSERT INTO history (ip, jail, count, last) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (ip, jail) DO UPDATE SET count = excluded.count, last = MAX(last, excluded.last)",
                )?
                .execute(params![ip, jail, b.ban_count, start])?;
                tx.prepare_cached(
                    "INSERT INTO events (time, jail, ip, kind, bantime) VALUES (?1, ?2, ?3, 'ban', ?4)",
                )?
                .execute(params![start, jail, ip, span_ms(b.bantime)])?;
            }
            Op::Unban(b, why, at) => {
                let ip = b.ip.to_string();
                let jail = b.jail.as_str();
                tx.prepare_cached("DELETE FROM bans WHERE jail = ?1 AND ip = ?2")?
                    .execute(params![jail, ip])?;
                tx.prepare_cached(
                    "INSERT INTO events (time, jail, ip, kind) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![ms(*at), jail, ip, reason_text(*why)])?;
            }
            Op::Purge { history, log } => purge(tx, *history, *log)?,
        }
    }
    Ok(())
}

fn purge(tx: &Transaction<'_>, history: SystemTime, log: SystemTime) -> rusqlite::Result<()> {
    let h = tx.execute(
        "DELETE FROM history WHERE last < ?1
           AND NOT EXISTS (SELECT 1 FROM bans b WHERE b.jail = history.jail AND b.ip = history.ip)",
        [ms(history)],
    )?;
    let e = tx.execute(
        "DELETE FROM events WHERE time < ?1
           AND NOT EXISTS (SELECT 1 FROM bans b WHERE b.jail = events.jail AND b.ip = events.ip)",
        [ms(log)],
    )?;
    if h + e > 0 {
        tracing::info!(
            history = h,
            events = e,
            "purged ban history older than dbpurgeage"
        );
    }
    Ok(())
}

/// A row that could not be read back (logged and left in place).
fn bad_row(table: &str, what: &str) {
    tracing::warn!(table, "store: skipping an unreadable row: {what}");
}

/// Jail names seen while reading, so 100,000 rows share a handful of names.
#[derive(Default)]
struct Names(HashMap<String, JailName>);

impl Names {
    fn get(&mut self, table: &str, jail: &str) -> Option<JailName> {
        if let Some(j) = self.0.get(jail) {
            return Some(j.clone());
        }
        match JailName::new(jail) {
            Ok(j) => {
                self.0.insert(jail.to_string(), j.clone());
                Some(j)
            }
            Err(e) => {
                bad_row(table, &e);
                None
            }
        }
    }
}

fn parse_key(names: &mut Names, table: &str, jail: &str, ip: &str) -> Option<(JailName, IpAddr)> {
    let j = names.get(table, jail)?;
    match ip.parse::<IpAddr>() {
        Ok(a) => Some((j, a)),
        Err(_) => {
            bad_row(table, &format!("address {ip:?}"));
            None
        }
    }
}

/// Moves the bans that ended by `now` (the daemon was down) to the log as
/// expired, at their expiry time. Returns how many.
pub fn expire_stale(tx: &Transaction<'_>, now: SystemTime) -> rusqlite::Result<usize> {
    let now = ms(now);
    tx.execute(
        "INSERT INTO events (time, jail, ip, kind)
         SELECT expires, jail, ip, 'expired' FROM bans WHERE expires IS NOT NULL AND expires <= ?1",
        [now],
    )?;
    tx.execute(
        "DELETE FROM bans WHERE expires IS NOT NULL AND expires <= ?1",
        [now],
    )
}

/// Every ban in force.
pub fn load_bans(c: &Connection) -> rusqlite::Result<Vec<Ban>> {
    let mut st = c.prepare(
        "SELECT jail, ip, start, bantime, expires, failures, ban_count, origin FROM bans ORDER BY start",
    )?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, Option<i64>>(4)?,
            r.get::<_, u32>(5)?,
            r.get::<_, u32>(6)?,
            r.get::<_, String>(7)?,
        ))
    })?;
    let mut out = Vec::new();
    let mut names = Names::default();
    for row in rows {
        let (jail, ip, start, bantime, expires, failures, ban_count, o) = row?;
        let Some((jail, ip)) = parse_key(&mut names, "bans", &jail, &ip) else {
            continue;
        };
        out.push(Ban {
            jail,
            ip,
            start: time(start),
            bantime: span(bantime),
            expires: expires.map(time),
            failures,
            ban_count,
            origin: origin(&o),
        });
    }
    Ok(out)
}

/// Every history row.
pub fn load_history(c: &Connection) -> rusqlite::Result<Vec<(JailName, IpAddr, History)>> {
    let mut st = c.prepare("SELECT jail, ip, count, last FROM history")?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, u32>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    let mut names = Names::default();
    for row in rows {
        let (jail, ip, count, last) = row?;
        if let Some((jail, ip)) = parse_key(&mut names, "history", &jail, &ip) {
            out.push((
                jail,
                ip,
                History {
                    count,
                    last: Some(time(last)),
                },
            ));
        }
    }
    Ok(out)
}

/// Bans logged since `since`, oldest first.
pub fn load_ban_log(
    c: &Connection,
    since: SystemTime,
) -> rusqlite::Result<Vec<(JailName, IpAddr, SystemTime)>> {
    let mut st = c.prepare(
        "SELECT jail, ip, time FROM events WHERE kind = 'ban' AND time >= ?1 ORDER BY time, id",
    )?;
    let rows = st.query_map([ms(since)], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    let mut names = Names::default();
    for row in rows {
        let (jail, ip, t) = row?;
        if let Some((jail, ip)) = parse_key(&mut names, "events", &jail, &ip) {
            out.push((jail, ip, time(t)));
        }
    }
    Ok(out)
}

/// Records this start in `meta` (also proves the file is writable).
pub fn touch(tx: &Transaction<'_>, now: SystemTime) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('last_open', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [ms(now).to_string()],
    )?;
    Ok(())
}
