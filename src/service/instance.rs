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
//! `run --dry-run`, which only logs, takes no such lock. It is taken before
//! the privilege drop (`/run` is root's); a daemon started without root,
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

/// Takes the firewall lock of this network namespace in `dir` (see the
/// module doc) and writes this process's pid into it. `Ok(None)` when the
/// namespace cannot be named.
pub fn firewall(dir: &Path) -> Result<Option<InstanceLock>, LockError> {
    let Some(path) = firewall_lock_file(dir) else {
        return Ok(None);
    };
    let mut held = lock(&path, 0o755).map_err(|e| match e {
        LockError::Held { path, pid } => LockError::FirewallHeld { path, pid },
        e => e,
    })?;
    write_pid(&mut held, &path)?;
    Ok(Some(InstanceLock { _held: vec![held] }))
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
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(nix::libc::O_CLOEXEC | nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(io)?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(held) => Ok(held),
        Err((mut file, Errno::EWOULDBLOCK)) => {
            let mut text = String::new();
            let pid = file
                .read_to_string(&mut text)
                .ok()
                .and_then(|_| text.trim().parse().ok());
            Err(LockError::Held {
                path: path.to_path_buf(),
                pid,
            })
        }
        Err((_, e)) => Err(io(std::io::Error::from(e))),
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
        let first = firewall(dir.path()).unwrap().expect("a namespace to lock");
        let written = std::fs::read_to_string(&path).unwrap();
        assert_eq!(written.trim(), std::process::id().to_string());
        match firewall(dir.path()) {
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
        drop(first);
        assert!(firewall(dir.path()).unwrap().is_some());
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
