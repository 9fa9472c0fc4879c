//! The embedded ban store: SQLite (WAL mode) on its own thread.
//!
//! Place in the flow: beside the actions, after the ban manager. The daemon
//! hands it the manager's decisions ([`Effect`]s) and it writes them away
//! from the per-message path; nothing flows back except, at start, the
//! [`Snapshot`] the daemon restores from, and the acknowledgements of
//! [`Store::sync`].
//!
//! Owns: the database file. Tables: `bans` (in force), `history` (ban count
//! and last ban per address and jail, for `bantime.increment`), `events`
//! (every ban and how it ended: the audit trail and recidive's window), and
//! `schema_version` (migrations run at start).
//!
//! Durability:
//! - The writer commits as soon as it has work, everything queued so far in
//!   one transaction (so a burst of bans costs one fsync, not thousands).
//!   An in-stream ban is durable one or two commits after it is decided
//!   (about 7 ms each on the reference disk, BENCHMARKS.md); the README
//!   promises 1 s. A failing disk is retried, see below.
//! - `synchronous = FULL`: a commit has reached the disk when it returns, so
//!   a manual ban acknowledged through [`Store::sync`] survives a crash or a
//!   power cut.
//! - A failed write (disk full, database locked, I/O error) is counted in
//!   `banstream_store_errors_total`, logged (rate-limited) and retried with
//!   backoff, the batch kept in order; the bans stay in force in memory and
//!   in the firewall meanwhile.
//!
//! A database that cannot be opened, is corrupt, read-only, or newer than
//! this binary fails the start with a [`StoreError`] naming the path and
//! the recovery; banstream never starts with an empty memory in its place.

mod db;
mod schema;
mod writer;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::ban::{Ban, Effect, History, UnbanReason};
use crate::jail::JailName;
use crate::telemetry::Metrics;

pub use db::{ms, time};

/// How long SQLite waits for a lock held by another connection before the
/// write counts as failed (and is retried).
const BUSY_TIMEOUT: Duration = Duration::from_millis(500);

/// Where the README explains recovery.
const RECOVERY: &str = "see \"Recovering the database\" in the README: stop banstream, move the file and its -wal/-shm aside (or repair it with `sqlite3 FILE .recover`), then start again";

/// The store could not be opened at start.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The directory could not be created.
    #[error("database {path}: cannot create the directory {dir}")]
    Directory {
        /// The database file.
        path: PathBuf,
        /// The directory.
        dir: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// SQLite refused to open, lock or write the file.
    #[error("database {path}: cannot {action} (are the file and its directory writable by this user, on a writable filesystem?)")]
    Unwritable {
        /// The database file.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// SQLite could only open the file read-only.
    #[error("database {path} is read-only: fix the permissions of the file and its directory, or the mount")]
    ReadOnly {
        /// The database file.
        path: PathBuf,
    },
    /// The filesystem does not support WAL mode.
    #[error("database {path}: cannot use WAL mode (journal mode stays {mode:?}); put the database on a local filesystem")]
    NoWal {
        /// The database file.
        path: PathBuf,
        /// The mode SQLite kept.
        mode: String,
    },
    /// The file is not a database, or fails its integrity check.
    #[error("database {path} is corrupt: {detail}; banstream will not start with an empty ban list in its place; {RECOVERY}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What SQLite reported.
        detail: String,
    },
    /// Written by a newer banstream.
    #[error("database {path} has schema version {found}, newer than this banstream knows ({known}); run the newer banstream, or {RECOVERY}")]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Its version.
        found: u32,
        /// Ours.
        known: u32,
    },
    /// The writer thread could not start.
    #[error("database {path}: cannot start the writer thread")]
    Thread {
        /// The database file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A write that has not reached the disk yet (it stays queued and is retried).
#[derive(Clone, Debug, thiserror::Error)]
#[error("not yet written to the database ({reason}); the write is retried")]
pub struct NotDurable {
    /// SQLite's error.
    pub reason: String,
}

/// Called once when everything queued before it is committed, or with the
/// error of the first failed attempt.
pub type Ack = Box<dyn FnOnce(Result<(), NotDurable>) + Send>;

/// What the database held at start.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Bans in force (not expired at open).
    pub bans: Vec<Ban>,
    /// Ban history per (jail, address).
    pub history: Vec<(JailName, IpAddr, History)>,
    /// Bans issued since the `log_since` given to [`Store::open`], oldest first.
    pub ban_log: Vec<(JailName, IpAddr, SystemTime)>,
    /// Bans that ended while banstream was down (now logged as expired).
    pub expired_while_down: usize,
    /// The file was created by this open.
    pub created: bool,
}

enum Msg {
    Op(db::Op),
    Sync(Ack),
}

/// The handle the daemon writes through. Dropping it without
/// [`Store::close`] still lets the writer commit what is queued.
pub struct Store {
    tx: mpsc::Sender<Msg>,
    handle: JoinHandle<()>,
    path: PathBuf,
}

fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
    )
}

impl Store {
    /// Opens (or creates) the database at `path`, runs the migrations,
    /// records the bans that expired by `now` as expired, reads the state
    /// (with the ban log from `log_since` on) and starts the writer thread.
    pub fn open(
        path: &Path,
        now: SystemTime,
        log_since: SystemTime,
        metrics: Metrics,
    ) -> Result<(Store, Snapshot), StoreError> {
        let created = !path.exists();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                use std::os::unix::fs::DirBuilderExt as _;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|source| StoreError::Directory {
                        path: path.to_path_buf(),
                        dir: dir.to_path_buf(),
                        source,
                    })?;
            }
        }
        let mut conn = open_connection(path)?;
        let snapshot = load(&mut conn, path, now, log_since, created)?;
        let (tx, rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("store".into())
            .spawn(move || writer::run(conn, rx, metrics))
            .map_err(|source| StoreError::Thread {
                path: path.to_path_buf(),
                source,
            })?;
        Ok((
            Store {
                tx,
                handle,
                path: path.to_path_buf(),
            },
            snapshot,
        ))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn send(&self, m: Msg) {
        // The writer only ends when this handle is closed, so a send cannot
        // fail while we hold it; if it somehow did, the ban stays in memory.
        if self.tx.send(m).is_err() {
            tracing::error!("store writer is gone; this change is not persisted");
        }
    }

    /// Queues a decision of the ban manager. Restored bans are already
    /// stored and are skipped. Never blocks.
    pub fn record(&self, effect: &Effect, now: SystemTime) {
        match effect {
            Effect::Ban(b) if b.origin == crate::ban::BanOrigin::Restored => {}
            Effect::Ban(b) => self.send(Msg::Op(db::Op::Ban(b.clone()))),
            Effect::Unban(b, why) => {
                // An expiry is logged at the ban's end, not when the tick ran.
                let at = match (why, b.expires) {
                    (UnbanReason::Expired, Some(e)) => e.min(now),
                    _ => now,
                };
                self.unban(b.clone(), *why, at)
            }
        }
    }

    /// Queues the end of a ban.
    pub fn unban(&self, ban: Arc<Ban>, why: UnbanReason, at: SystemTime) {
        self.send(Msg::Op(db::Op::Unban(ban, why, at)));
    }

    /// Queues a purge: history whose last ban is older than `history`, ban
    /// log entries older than `log`. Never touches a ban in force (which
    /// includes every permanent ban).
    pub fn purge(&self, history: SystemTime, log: SystemTime) {
        self.send(Msg::Op(db::Op::Purge { history, log }));
    }

    /// Calls `ack` once everything queued before it is committed (or with
    /// the error when the commit fails; the writes stay queued and are
    /// retried). Never blocks.
    pub fn sync(&self, ack: Ack) {
        self.send(Msg::Sync(ack));
    }

    /// Commits what is queued, checkpoints the WAL and closes the file.
    /// Blocks until done.
    pub fn close(self) {
        let Store { tx, handle, path } = self;
        drop(tx);
        if handle.join().is_err() {
            tracing::error!(path = %path.display(), "store writer panicked at close");
        }
    }
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let p = || path.to_path_buf();
    let fail = |action: &'static str| {
        move |e: rusqlite::Error| {
            if is_corruption(&e) {
                StoreError::Corrupt {
                    path: path.to_path_buf(),
                    detail: e.to_string(),
                }
            } else {
                StoreError::Unwritable {
                    path: path.to_path_buf(),
                    action,
                    source: e,
                }
            }
        }
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(fail("open"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(fail("set the busy timeout"))?;
    // A corrupt or foreign file fails here ("file is not a database").
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(fail("switch to WAL mode"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::NoWal { path: p(), mode });
    }
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = OFF;")
        .map_err(fail("set synchronous"))?;
    let check: Vec<String> = {
        let mut st = conn
            .prepare("PRAGMA quick_check")
            .map_err(fail("check integrity"))?;
        let rows = st
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(fail("check integrity"))?;
        rows.collect::<Result<_, _>>()
            .map_err(fail("check integrity"))?
    };
    if check.first().map(String::as_str) != Some("ok") {
        return Err(StoreError::Corrupt {
            path: p(),
            detail: check.into_iter().take(3).collect::<Vec<_>>().join("; "),
        });
    }
    if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
        return Err(StoreError::ReadOnly { path: p() });
    }
    Ok(conn)
}

fn load(
    conn: &mut Connection,
    path: &Path,
    now: SystemTime,
    log_since: SystemTime,
    created: bool,
) -> Result<Snapshot, StoreError> {
    let fail = |action: &'static str| {
        move |e: rusqlite::Error| {
            if is_corruption(&e) {
                StoreError::Corrupt {
                    path: path.to_path_buf(),
                    detail: e.to_string(),
                }
            } else {
                StoreError::Unwritable {
                    path: path.to_path_buf(),
                    action,
                    source: e,
                }
            }
        }
    };
    // IMMEDIATE: take the write lock now, so a database we cannot write
    // fails the start instead of the first ban.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(fail("lock it for writing"))?;
    match schema::migrate(&tx, ms(now)).map_err(fail("migrate the schema"))? {
        schema::Migration::TooNew(found) => {
            return Err(StoreError::TooNew {
                path: path.to_path_buf(),
                found,
                known: schema::CURRENT,
            })
        }
        schema::Migration::Upgraded(0) => {
            tracing::info!(path = %path.display(), version = schema::CURRENT, "database created")
        }
        schema::Migration::Upgraded(from) => {
            tracing::info!(path = %path.display(), from, to = schema::CURRENT, "database schema upgraded")
        }
        schema::Migration::Current => {}
    }
    db::touch(&tx, now).map_err(fail("write"))?;
    let expired_while_down = db::expire_stale(&tx, now).map_err(fail("write"))?;
    let snapshot = Snapshot {
        bans: db::load_bans(&tx).map_err(fail("read the bans"))?,
        history: db::load_history(&tx).map_err(fail("read the history"))?,
        ban_log: db::load_ban_log(&tx, log_since).map_err(fail("read the ban log"))?,
        expired_while_down,
        created,
    };
    tx.commit().map_err(fail("commit"))?;
    Ok(snapshot)
}

#[cfg(test)]
mod tests;
