//! The database schema and its migrations, run in order at start inside the
//! start-up transaction. Each migration is applied once and recorded in
//! `schema_version`; a database newer than this binary is refused rather
//! than guessed at.

use rusqlite::{params, Transaction};

/// The migrations, in order: version `i + 1` is `MIGRATIONS[i]`. Append
/// only: a released migration is never edited.
const MIGRATIONS: &[&str] = &[
    // 1: bans in force, ban history per (address, jail), the ban log.
    r#"
    CREATE TABLE schema_version (
        version INTEGER PRIMARY KEY,
        applied INTEGER NOT NULL            -- UNIX milliseconds
    );
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    -- One row per ban in force (the firewall's content after a restore).
    CREATE TABLE bans (
        jail      TEXT NOT NULL,
        ip        TEXT NOT NULL,            -- canonical IpAddr text
        start     INTEGER NOT NULL,         -- UNIX milliseconds
        bantime   INTEGER NOT NULL,         -- milliseconds, -1 permanent
        expires   INTEGER,                  -- UNIX milliseconds, NULL permanent
        failures  INTEGER NOT NULL,
        ban_count INTEGER NOT NULL,
        origin    TEXT NOT NULL,            -- stream, manual
        PRIMARY KEY (jail, ip)
    ) WITHOUT ROWID;
    CREATE INDEX bans_expires ON bans (expires);
    -- How often an address was banned in a jail, and when last (bantime.increment).
    CREATE TABLE history (
        ip    TEXT NOT NULL,
        jail  TEXT NOT NULL,
        count INTEGER NOT NULL,
        last  INTEGER NOT NULL,             -- UNIX milliseconds
        PRIMARY KEY (ip, jail)
    ) WITHOUT ROWID;
    CREATE INDEX history_last ON history (last);
    -- Every ban and its end: the audit trail, and recidive's window at start.
    CREATE TABLE events (
        id      INTEGER PRIMARY KEY,
        time    INTEGER NOT NULL,           -- UNIX milliseconds
        jail    TEXT NOT NULL,
        ip      TEXT NOT NULL,
        kind    TEXT NOT NULL,              -- ban, unban, expired, jail_removed
        bantime INTEGER                     -- for kind = ban
    );
    CREATE INDEX events_time ON events (time);
    "#,
];

/// The schema version this binary writes.
pub const CURRENT: u32 = MIGRATIONS.len() as u32;

/// What [`migrate`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Migration {
    /// Already current.
    Current,
    /// Upgraded from this version (0: a new database).
    Upgraded(u32),
    /// Written by a newer banstream.
    TooNew(u32),
}

/// The recorded version (0 for a database without the table).
fn version(tx: &Transaction<'_>) -> rusqlite::Result<u32> {
    let has: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version')",
        [],
        |r| r.get(0),
    )?;
    if !has {
        return Ok(0);
    }
    tx.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        [],
        |r| r.get(0),
    )
}

/// Brings the schema to [`CURRENT`], inside the caller's transaction.
pub fn migrate(tx: &Transaction<'_>, now_ms: i64) -> rusqlite::Result<Migration> {
    let found = version(tx)?;
    if found > CURRENT {
        return Ok(Migration::TooNew(found));
    }
    if found == CURRENT {
        return Ok(Migration::Current);
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_version (version, applied) VALUES (?1, ?2)",
            params![i as u32 + 1, now_ms],
        )?;
    }
    Ok(Migration::Upgraded(found))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_refuses_newer() {
        let mut c = rusqlite::Connection::open_in_memory().unwrap();
        let tx = c.transaction().unwrap();
        assert_eq!(migrate(&tx, 1).unwrap(), Migration::Upgraded(0));
        assert_eq!(migrate(&tx, 2).unwrap(), Migration::Current);
        tx.execute(
            "INSERT INTO schema_version (version, applied) VALUES (?1, 3)",
            [CURRENT + 1],
        )
        .unwrap();
        assert_eq!(migrate(&tx, 4).unwrap(), Migration::TooNew(CURRENT + 1));
    }
}
