//! One daemon per control socket and per database.
//!
//! A second `banstream run` on the same configuration (an init script and
//! a manual start, say) used to get a long way before failing: it re-applied
//! the stored bans, replaced the running daemon's control and log sockets
//! with its own, and, once a listener failed to bind, stopped the firewall
//! objects it had started: the very sets holding the running daemon's bans.
//! Now, before anything touches the firewall, the store or a socket, `run`
//! takes an exclusive `flock` on two lock files, and a second daemon stops
//! there, touching nothing:
//!
//! - the pid file beside the control socket (`banstream.sock` →
//!   `banstream.pid`), holding the owner's pid for scripts and humans;
//! - `<database>.lock` beside the database, so two configurations that
//!   share one store are refused as well.
//!
//! With `[run] user`, the locks are taken right after the drop (the drop
//! only chowns directories it created itself, so root must not create them
//! first) and before the runtime starts; lock files an earlier run as root
//! left are handed to the user with the database files.
//!
//! A third lock covers what those two cannot: two daemons of different
//! configurations in one network namespace (a trial run of a new
//! configuration beside the service, say). Both would edit the same
//! firewall objects (the `banstream` nftables table, the `f2b-<jail>` sets
//! and chains), and the one that stops first removes them, bans of the other
//! included, while that one still reports them in force. So a daemon whose
//! jails edit the firewall, started as root, also locks
//! `/run/banstream-firewall-net-<device>-<inode>.lock`, named after its
//! network namespace (the identity of `/proc/self/ns/net`): daemons in
//! different namespaces (containers, the tests' own) never meet, and
//! `run --dry-run`, which only logs, takes no such lock. The file is opened
//! before the privilege drop (`/run` is root's) and kept open by every
//! daemon but a dry run, whether its jails edit the firewall or not: a
//! daemon that starts with only `log` or notification actions takes the
//! lock on that open file when a reload first gives a jail a firewall
//! action (`flock` needs no privilege on an open file), and the reload is
//! refused while another daemon holds it. A daemon started without root,
//! or unable to write `/run`, runs without it.
//!
//! The kernel drops a `flock` when its holder exits, however it exits, so a
//! crash leaves no lock behind, only a file that the next start reuses. The
//! files are never removed: unlinking a lock file races with a daemon that
//! has just opened it and would let two daemons hold "the" lock at once.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// The locks of a running daemon, held until it is dropped (or the
/// process ends).
#[derive(Debug)]
pub struct InstanceLock {
    _held: Vec<Flock<File>>,
}

/// Why the locks could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock.
    #[error("another banstream is already running{} (lock {path} is held); stop it first, or give this one its own control_socket and database", pid.map(|p| format!(" as pid {p}")).unwrap_or_default())]
    Held {
        /// The lock file.
        path: PathBuf,
        /// The pid the holder wrote into it, when it is a pid file.
        pid: Option<u32>,
    },
    /// Another daemon edits the firewall of this network namespace.
    #[error("another banstream is already running{} and edits the firewall of this network namespace (lock {path} is held); one daemon per namespace edits its firewall: stop that one first, or try this configuration with `banstream run --dry-run`", pid.map(|p| format!(" as pid {p}")).unwrap_or_default())]
    FirewallHeld {
        /// The lock file.
        path: PathBuf,
        /// The pid the holder wrote into it.
        pid: Option<u32>,
    },
    /// The lock file could not be created, opened or locked.
    #[error("lock file {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The pid file of the daemon whose control socket is `socket`.
pub fn pid_file(socket: &Path) -> PathBuf {
    socket.with_extension("pid")
}

/// The lock file of the database `database`.
pub fn database_lock(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes both locks for the daemon with control socket `socket` and
/// database `database`, and writes this process's pid into the pid file.
/// A missing parent directory is created with the mode its owner would
/// give it: 0755 for the sockets' directory, 0700 for the store's.
pub fn acquire(socket: &Path, database: &Path) -> Result<InstanceLock, LockError> {
    let path = pid_file(socket);
    let mut pid_lock = lock(&path, 0o755)?;
    let db_lock = lock(&database_lock(database), 0o700)?;
    // Only once both are held: a refused start leaves the pid alone.
    write_pid(&mut pid_lock, &path)?;
    Ok(InstanceLock {
        _held: vec![pid_lock, db_lock],
    })
}

/// The firewall lock file, in `dir` (`/run` for the daemon), of the
/// network namespace whose nsfs file (`/proc/PID/ns/net`, or its bind
/// mount under `/run/netns`) has metadata `ns`.
pub fn firewall_lock_for(dir: &Path, ns: &std::fs::Metadata) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    dir.join(format!(
        "banstream-firewall-net-{}-{}.lock",
        ns.dev(),
        ns.ino()
    ))
}

/// The firewall lock file of the network namespace this process is in;
/// `None` when the namespace cannot be read (no `/proc`).
fn firewall_lock_file(dir: &Path) -> Option<PathBuf> {
    let ns = std::fs::metadata("/proc/self/ns/net").ok()?;
    Some(firewall_lock_for(dir, &ns))
}

/// The firewall lock file of this network namespace, open, and locked
/// once [`FirewallLock::hold`] succeeds (see the module doc).
#[derive(Debug)]
pub struct FirewallLock {
    path: PathBuf,
    /// `None` only for the moment `hold` has the file in hand.
    file: Option<Held>,
}

/// The open lock file, locked or not.
#[derive(Debug)]
enum Held {
    Open(File),
    /// Held until dropped (the kernel releases the lock with the file).
    Locked {
        _held: Flock<File>,
    },
}

impl FirewallLock {
    /// Takes the lock (at once if this daemon holds it already) and writes
    /// this process's pid into the file. The file stays open when another
    /// daemon holds the lock, so a later call may still take it.
    pub fn hold(&mut self) -> Result<(), LockError> {
        let file = match self.file.take() {
            Some(Held::Open(f)) => f,
            Some(held @ Held::Locked { .. }) => {
                self.file = Some(held);
                return Ok(());
            }
            None => {
                return Err(LockError::Io {
                    path: self.path.clone(),
                    source: std::io::Error::other("the lock file was lost"),
                })
            }
        };
        match try_lock(file, &self.path) {
            Ok(mut held) => {
                let written = write_pid(&mut held, &self.path);
                self.file = Some(Held::Locked { _held: held });
                written
            }
            Err((file, e)) => {
                self.file = Some(Held::Open(file));
                Err(match e {
                    LockError::Held { path, pid } => LockError::FirewallHeld { path, pid },
                    e => e,
                })
            }
        }
    }

    /// [`FirewallLock::hold`] where only another daemon holding the lock is
    /// an error: any other failure (its pid not written, a file that cannot
    /// be locked) is logged and costs the guard, not the start or reload.
    pub fn hold_unless_taken(&mut self) -> Result<(), LockError> {
        match self.hold() {
            Err(e @ LockError::FirewallHeld { .. }) => Err(e),
            Err(e) => {
                warn_unguarded(&e);
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }

    /// Whether this daemon holds the lock.
    #[cfg(test)]
    fn is_held(&self) -> bool {
        matches!(self.file, Some(Held::Locked { .. }))
    }
}

/// Logs that the daemon runs without the firewall lock, and why (a
/// read-only `/run` in some containers costs the guard, not the service).
pub fn warn_unguarded(e: &LockError) {
    tracing::warn!(error = %e, "running without the firewall lock of this network namespace");
}

/// Opens (creating) the firewall lock file of this network namespace in
/// `dir`, without locking it. `Ok(None)` when the namespace cannot be
/// named.
pub fn firewall(dir: &Path) -> Result<Option<FirewallLock>, LockError> {
    let Some(path) = firewall_lock_file(dir) else {
        return Ok(None);
    };
    let file = open_lock_file(&path, 0o755)?;
    Ok(Some(FirewallLock {
        path,
        file: Some(Held::Open(file)),
    }))
}

/// Replaces the content of a held lock file with this process's pid.
fn write_pid(file: &mut Flock<File>, path: &Path) -> Result<(), LockError> {
    let io = |source| LockError::Io {
        path: path.to_path_buf(),
        source,
    };
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(**file, "{}", std::process::id()).map_err(io)
}

/// Opens (creating) `path`, and its directory with `dir_mode`, and takes
/// an exclusive lock on it without waiting.
fn lock(path: &Path, dir_mode: u32) -> Result<Flock<File>, LockError> {
    let file = open_lock_file(path, dir_mode)?;
    try_lock(file, path).map_err(|(_, e)| e)
}

/// Opens (creating) the lock file `path`, and its directory with
/// `dir_mode`.
fn open_lock_file(path: &Path, dir_mode: u32) -> Result<File, LockError> {
    let io = |source| LockError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(dir_mode)
                .create(dir)
                .map_err(io)?;
        }
    }
    // Readable by all: the pid is no secret, and status scripts read it.
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(nix::libc::O_CLOEXEC | nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(io)
}

/// Takes an exclusive lock on the open lock file `file` without waiting;
/// on failure the file comes back with the error (naming the holder's pid
/// when the file holds one).
fn try_lock(file: File, path: &Path) -> Result<Flock<File>, (File, LockError)> {
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(held) => Ok(held),
        Err((mut file, Errno::EWOULDBLOCK)) => {
            // From the start: an earlier refused attempt read to the end.
            let mut text = String::new();
            let pid = file
                .rewind()
                .and_then(|()| file.read_to_string(&mut text))
                .ok()
                .and_then(|_| text.trim().parse().ok());
            let e = LockError::Held {
                path: path.to_path_buf(),
                pid,
            };
            Err((file, e))
        }
        Err((file, e)) => {
            let e = LockError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::from(e),
            };
            Err((file, e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_until_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("run/banstream.sock");
        let db = dir.path().join("state/banstream.sqlite3");
        let first = acquire(&socket, &db).unwrap();
        assert_eq!(pid_file(&socket), dir.path().join("run/banstream.pid"));
        // The directories get the modes the sockets and the store give them
        // (the store keeps its own private).
        use std::os::unix::fs::PermissionsExt;
        let mode = |d: &str| {
            std::fs::metadata(dir.path().join(d))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!((mode("run"), mode("state")), (0o755, 0o700));
        let written = std::fs::read_to_string(pid_file(&socket)).unwrap();
        assert_eq!(written.trim(), std::process::id().to_string());
        // flock locks belong to the open file, so a second open in this
        // process is refused just as another process would be.
        match acquire(&socket, &db) {
            Err(LockError::Held { path, pid }) => {
                assert_eq!(path, pid_file(&socket));
                assert_eq!(pid, Some(std::process::id()));
            }
            other => panic!("expected Held, got {other:?}"),
        }
        // Another socket on the same database is refused by the database lock.
        let other = dir.path().join("run2/other.sock");
        match acquire(&other, &db) {
            Err(LockError::Held { path, .. }) => assert_eq!(path, database_lock(&db)),
            other => panic!("expected Held, got {other:?}"),
        }
        let msg = acquire(&socket, &db).unwrap_err().to_string();
        assert!(
            msg.contains("already running") && msg.contains("pid"),
            "{msg}"
        );
        drop(first);
        // Released: the files stay and are reused.
        let again = acquire(&socket, &db).unwrap();
        assert!(database_lock(&db).exists());
        drop(again);
    }

    #[test]
    fn the_firewall_lock_is_one_per_network_namespace_and_names_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let Some(path) = firewall_lock_file(dir.path()) else {
            eprintln!("skipped: /proc/self/ns/net cannot be read");
            return;
        };
        // The name carries the namespace's identity, so daemons in other
        // namespaces lock other files.
        use std::os::unix::fs::MetadataExt;
        let ns = std::fs::metadata("/proc/self/ns/net").unwrap();
        assert!(path
            .to_string_lossy()
            .ends_with(&format!("-{}-{}.lock", ns.dev(), ns.ino())));
        let mut first = firewall(dir.path()).unwrap().expect("a namespace to lock");
        // Opened, not locked: a daemon without firewall actions keeps it
        // so, and another may still take it.
        assert!(!first.is_held());
        let mut second = firewall(dir.path()).unwrap().expect("opened twice");
        first.hold().unwrap();
        first.hold().unwrap(); // held already: nothing to do
        assert!(first.is_held());
        let written = std::fs::read_to_string(&path).unwrap();
        assert_eq!(written.trim(), std::process::id().to_string());
        // Refused twice over (the pid is read again from the start), and
        // the file stays open for a later attempt.
        for _ in 0..2 {
            match second.hold() {
                Err(e @ LockError::FirewallHeld { .. }) => {
                    let msg = e.to_string();
                    assert!(
                        msg.contains("already running")
                            && msg.contains(&format!("pid {}", std::process::id()))
                            && msg.contains("firewall of this network namespace")
                            && msg.contains("--dry-run"),
                        "{msg}"
                    );
                }
                other => panic!("expected FirewallHeld, got {other:?}"),
            }
            assert!(!second.is_held());
        }
        drop(first);
        second.hold().unwrap();
        assert!(second.is_held());
    }

    #[test]
    fn a_lock_file_that_cannot_be_created_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        // A regular file where the directory should be.
        let blocker = dir.path().join("run");
        std::fs::write(&blocker, "").unwrap();
        let err = acquire(&blocker.join("banstream.sock"), &dir.path().join("db")).unwrap_err();
        assert!(matches!(err, LockError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("banstream.pid"), "{err}");
    }
}
