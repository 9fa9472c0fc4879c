//! Dropping root: `[run] user = "banstream"`.
//!
//! Started as root (OpenRC does), banstream prepares its directories, then
//! becomes the dedicated user and keeps only the capabilities it needs:
//! - `CAP_NET_ADMIN` to change the firewall (nft, ipset, iptables-nft use
//!   netlink, which asks for nothing else);
//! - `CAP_NET_BIND_SERVICE` to bind port 514 (the listeners are bound
//!   after the drop);
//! - optionally `CAP_NET_RAW`, which iptables-legacy needs for its raw
//!   socket.
//!
//! The kept capabilities go into the *ambient* set, so the `nft`,
//! `iptables` and `ipset` children the backends spawn inherit them (a plain
//! permitted/effective capability is lost at `execve` of an unprivileged
//! binary). Every other capability leaves the bounding set, so neither
//! banstream nor a child can regain it.
//!
//! Capabilities are per thread on Linux: [`drop_to`] refuses to run once a
//! second thread exists, and `main` calls it before the async runtime
//! starts, so every thread inherits the reduced sets.
//!
//! What stays the admin's job: the configuration must be readable by the
//! user (for `reload`), unix listeners must live in a directory it can
//! write (the runtime directory), and actions that insist on uid 0 (`ufw`,
//! which checks its uid) cannot be used with a `user`.

use std::collections::HashSet;
use std::ffi::CString;
use std::path::{Path, PathBuf};

use caps::{CapSet, Capability, CapsHashSet};
use nix::unistd::{Gid, Group, Uid, User};

use crate::config::raw::RawRun;

/// Capabilities kept by default.
pub const DEFAULT_CAPABILITIES: &[&str] = &["net_admin", "net_bind_service"];

/// Capabilities `[run] capabilities` may name: the ones a syslog listener
/// and firewall commands can need, nothing that gives root back.
const ALLOWED: &[Capability] = &[
    Capability::CAP_NET_ADMIN,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_NET_RAW,
];

/// `[run]`, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSettings {
    /// The user to become.
    pub user: String,
    /// The group to become (default: the user's primary group).
    pub group: Option<String>,
    /// Capabilities kept (ambient, so children inherit them).
    pub capabilities: Vec<Capability>,
}

impl RunSettings {
    /// Validates `[run]`; `None` when no user is set (stay as started).
    pub fn resolve(raw: &RawRun) -> Result<Option<RunSettings>, String> {
        let Some(user) = raw.user.clone().filter(|u| !u.is_empty()) else {
            if raw.group.is_some() || raw.capabilities.is_some() {
                return Err("run.group and run.capabilities need run.user".into());
            }
            return Ok(None);
        };
        let names: Vec<String> = match &raw.capabilities {
            Some(l) => l.clone(),
            None => DEFAULT_CAPABILITIES.iter().map(|s| s.to_string()).collect(),
        };
        let mut capabilities = Vec::new();
        for n in &names {
            let cap: Capability = caps::to_canonical(n)
                .parse()
                .map_err(|_| format!("run.capabilities: {n:?} is not a capability"))?;
            if !ALLOWED.contains(&cap) {
                return Err(format!(
                    "run.capabilities: {n:?} is not needed by banstream; allowed: net_admin, net_bind_service, net_raw"
                ));
            }
            if !capabilities.contains(&cap) {
                capabilities.push(cap);
            }
        }
        Ok(Some(RunSettings {
            user,
            group: raw.group.clone().filter(|g| !g.is_empty()),
            capabilities,
        }))
    }
}

/// What the user must own or be able to write before the drop.
#[derive(Clone, Debug, Default)]
pub struct ServicePaths {
    /// Directories banstream owns outright (runtime and state): created if
    /// missing and given to the user.
    pub own_dirs: Vec<PathBuf>,
    /// Directories that must exist and be writable (socket and database
    /// parents): created and given to the user only if missing.
    pub need_dirs: Vec<PathBuf>,
    /// Existing files given to the user (the database and its journals).
    pub own_files: Vec<PathBuf>,
    /// Make `/run/xtables.lock` usable by the group (iptables-legacy locks it).
    pub xtables_lock: bool,
}

/// Why the drop failed. Each is fatal: banstream never runs half-dropped.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// The user or group does not exist.
    #[error("run.{key}: no {key} named {name:?} (create it: addgroup -S banstream && adduser -S -D -H -h /var/lib/banstream -s /sbin/nologin -G banstream banstream)")]
    Unknown {
        /// "user" or "group".
        key: &'static str,
        /// The name.
        name: String,
    },
    /// Started as someone else than root or the target user.
    #[error("run.user = {user:?} needs banstream to be started as root (running as uid {uid})")]
    NotRoot {
        /// The target user.
        user: String,
        /// The current uid.
        uid: u32,
    },
    /// Threads already exist (capabilities would only change in one).
    #[error("privileges must be dropped before any thread starts ({0} threads running)")]
    Threads(usize),
    /// A directory or file could not be prepared.
    #[error("{path}: {what}: {source}")]
    Path {
        /// The path.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// A system call failed.
    #[error("{what}: {message}")]
    Sys {
        /// What was being done.
        what: &'static str,
        /// The error.
        message: String,
    },
}

/// The identity after the drop.
#[derive(Clone, Debug)]
pub struct Dropped {
    /// User name.
    pub user: String,
    /// Its uid.
    pub uid: u32,
    /// The gid.
    pub gid: u32,
    /// Capabilities kept.
    pub capabilities: Vec<Capability>,
}

fn sys(what: &'static str) -> impl Fn(nix::Error) -> PrivilegeError {
    move |e| PrivilegeError::Sys {
        what,
        message: e.to_string(),
    }
}

fn capsys(what: &'static str) -> impl Fn(caps::errors::CapsError) -> PrivilegeError {
    move |e| PrivilegeError::Sys {
        what,
        message: e.to_string(),
    }
}

/// The number of threads in this process.
fn threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(1)
}

fn chown(path: &Path, uid: Uid, gid: Gid) -> Result<(), PrivilegeError> {
    nix::unistd::chown(path, Some(uid), Some(gid)).map_err(|e| PrivilegeError::Path {
        path: path.to_path_buf(),
        what: "cannot give it to the service user",
        source: e.into(),
    })
}

fn mkdir(path: &Path) -> Result<bool, PrivilegeError> {
    use std::os::unix::fs::DirBuilderExt;
    if path.is_dir() {
        return Ok(false);
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(path)
        .map_err(|source| PrivilegeError::Path {
            path: path.to_path_buf(),
            what: "cannot create the directory",
            source,
        })?;
    Ok(true)
}

/// Prepares `paths` for the user, then becomes it, keeping only
/// `run.capabilities` (permitted, effective, inheritable and ambient).
/// Call it while the process has one thread. A no-op when already running
/// as that user.
pub fn drop_to(run: &RunSettings, paths: &ServicePaths) -> Result<Dropped, PrivilegeError> {
    let user = User::from_name(&run.user)
        .map_err(sys("looking up the user"))?
        .ok_or_else(|| PrivilegeError::Unknown {
            key: "user",
            name: run.user.clone(),
        })?;
    let gid = match &run.group {
        None => user.gid,
        Some(g) => {
            Group::from_name(g)
                .map_err(sys("looking up the group"))?
                .ok_or_else(|| PrivilegeError::Unknown {
                    key: "group",
                    name: g.clone(),
                })?
                .gid
        }
    };
    let dropped = Dropped {
        user: run.user.clone(),
        uid: user.uid.as_raw(),
        gid: gid.as_raw(),
        capabilities: run.capabilities.clone(),
    };
    let me = nix::unistd::geteuid();
    if me == user.uid {
        return Ok(dropped);
    }
    if !me.is_root() {
        return Err(PrivilegeError::NotRoot {
            user: run.user.clone(),
            uid: me.as_raw(),
        });
    }
    let n = threads();
    if n > 1 {
        return Err(PrivilegeError::Threads(n));
    }

    for d in &paths.own_dirs {
        mkdir(d)?;
        chown(d, user.uid, gid)?;
    }
    for d in &paths.need_dirs {
        if mkdir(d)? {
            chown(d, user.uid, gid)?;
        }
    }
    for f in &paths.own_files {
        if f.exists() {
            chown(f, user.uid, gid)?;
        }
    }
    if paths.xtables_lock {
        prepare_xtables_lock(gid)?;
    }

    let keep: CapsHashSet = run.capabilities.iter().copied().collect();
    // Out of the bounding set first, while CAP_SETPCAP is still ours.
    for cap in caps::runtime::thread_all_supported() {
        if !keep.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap).map_err(capsys("dropping capabilities"))?;
        }
    }
    caps::securebits::set_keepcaps(true).map_err(capsys("PR_SET_KEEPCAPS"))?;
    let cname = CString::new(run.user.as_str()).map_err(|_| PrivilegeError::Unknown {
        key: "user",
        name: run.user.clone(),
    })?;
    nix::unistd::initgroups(&cname, gid).map_err(sys("initgroups"))?;
    nix::unistd::setresgid(gid, gid, gid).map_err(sys("setresgid"))?;
    nix::unistd::setresuid(user.uid, user.uid, user.uid).map_err(sys("setresuid"))?;
    caps::set(None, CapSet::Permitted, &keep).map_err(capsys("capset permitted"))?;
    caps::set(None, CapSet::Effective, &keep).map_err(capsys("capset effective"))?;
    caps::set(None, CapSet::Inheritable, &keep).map_err(capsys("capset inheritable"))?;
    for cap in &run.capabilities {
        caps::raise(None, CapSet::Ambient, *cap).map_err(capsys("raising ambient capabilities"))?;
    }
    caps::securebits::set_keepcaps(false).map_err(capsys("PR_SET_KEEPCAPS"))?;

    // Belt and braces: root must be out of reach now.
    if nix::unistd::setuid(Uid::from_raw(0)).is_ok() || nix::unistd::geteuid().is_root() {
        return Err(PrivilegeError::Sys {
            what: "verifying the drop",
            message: "uid 0 is still reachable".into(),
        });
    }
    let effective: HashSet<Capability> =
        caps::read(None, CapSet::Effective).map_err(capsys("reading capabilities"))?;
    if effective != keep {
        return Err(PrivilegeError::Sys {
            what: "verifying the drop",
            message: format!("effective capabilities are {effective:?}"),
        });
    }
    Ok(dropped)
}

/// iptables-legacy takes `/run/xtables.lock` (O_CREAT, mode 0600 as root).
/// Sharing the system's lock keeps banstream serialized with the admin's
/// own iptables runs, so the file is made writable by the service group.
fn prepare_xtables_lock(gid: Gid) -> Result<(), PrivilegeError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let path = Path::new("/run/xtables.lock");
    let err = |what, source| PrivilegeError::Path {
        path: path.to_path_buf(),
        what,
        source,
    };
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o660)
        .open(path)
        .map_err(|e| err("cannot create the iptables lock", e))?;
    nix::unistd::chown(path, None, Some(gid))
        .map_err(|e| err("cannot give the iptables lock to the group", e.into()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| err("cannot make the iptables lock group-writable", e))
}

/// Capability names as written in the config (`net_admin`).
pub fn cap_names(caps: &[Capability]) -> Vec<String> {
    caps.iter()
        .map(|c| {
            c.to_string()
                .trim_start_matches("CAP_")
                .to_ascii_lowercase()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_user_means_no_drop() {
        assert_eq!(RunSettings::resolve(&RawRun::default()).unwrap(), None);
        let raw = RawRun {
            group: Some("x".into()),
            ..Default::default()
        };
        assert!(RunSettings::resolve(&raw).is_err());
    }

    #[test]
    fn default_capabilities_and_names() {
        let raw = RawRun {
            user: Some("banstream".into()),
            ..Default::default()
        };
        let r = RunSettings::resolve(&raw).unwrap().unwrap();
        assert_eq!(
            r.capabilities,
            vec![Capability::CAP_NET_ADMIN, Capability::CAP_NET_BIND_SERVICE]
        );
        assert_eq!(
            cap_names(&r.capabilities),
            ["net_admin", "net_bind_service"]
        );
    }

    #[test]
    fn only_network_capabilities_may_be_kept() {
        let raw = RawRun {
            user: Some("banstream".into()),
            capabilities: Some(vec!["CAP_NET_RAW".into(), "net_admin".into()]),
            ..Default::default()
        };
        let r = RunSettings::resolve(&raw).unwrap().unwrap();
        assert_eq!(
            r.capabilities,
            vec![Capability::CAP_NET_RAW, Capability::CAP_NET_ADMIN]
        );
        for bad in ["sys_admin", "setuid", "dac_override", "nonsense"] {
            let raw = RawRun {
                user: Some("banstream".into()),
                capabilities: Some(vec![bad.into()]),
                ..Default::default()
            };
            assert!(RunSettings::resolve(&raw).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_user_is_named() {
        let run = RunSettings {
            user: "no-such-user-banstream-test".into(),
            group: None,
            capabilities: vec![],
        };
        let e = drop_to(&run, &ServicePaths::default()).unwrap_err();
        assert!(e.to_string().contains("no user named"), "{e}");
    }

    #[test]
    fn refuses_with_threads_running() {
        // The test harness runs many threads: a real drop must refuse here.
        if !nix::unistd::geteuid().is_root() || User::from_name("nobody").ok().flatten().is_none() {
            eprintln!("SKIPPED refuses_with_threads_running: needs root and user nobody");
            return;
        }
        let _t = std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_secs(2)));
        let run = RunSettings {
            user: "nobody".into(),
            group: None,
            capabilities: vec![],
        };
        let e = drop_to(&run, &ServicePaths::default()).unwrap_err();
        assert!(matches!(e, PrivilegeError::Threads(_)), "{e}");
        assert!(nix::unistd::geteuid().is_root());
    }
}
