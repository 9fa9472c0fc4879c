//! Default directories. As root: /run/banstream and /var/lib/banstream.
//! As another user (trying banstream out): `$XDG_RUNTIME_DIR/banstream`
//! (else /tmp/banstream-UID) and `$XDG_STATE_HOME/banstream` (else
//! ~/.local/state/banstream), so the default config runs unprivileged.
//! Relative paths in the config are resolved against these.

use std::path::{Path, PathBuf};

/// The runtime directory of a system service.
pub const SYSTEM_RUNTIME_DIR: &str = "/run/banstream";
/// The state directory of a system service.
pub const SYSTEM_STATE_DIR: &str = "/var/lib/banstream";

fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

fn env_dir(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
}

/// Where sockets go by default.
pub fn default_runtime_dir() -> PathBuf {
    let uid = euid();
    if uid == 0 {
        return PathBuf::from(SYSTEM_RUNTIME_DIR);
    }
    env_dir("XDG_RUNTIME_DIR")
        .map(|d| d.join("banstream"))
        .unwrap_or_else(|| PathBuf::from(format!("/tmp/banstream-{uid}")))
}

/// Where the database goes by default.
pub fn default_state_dir() -> PathBuf {
    let uid = euid();
    if uid == 0 {
        return PathBuf::from(SYSTEM_STATE_DIR);
    }
    if let Some(d) = env_dir("XDG_STATE_HOME") {
        return d.join("banstream");
    }
    if let Some(h) = env_dir("HOME") {
        return h.join(".local/state/banstream");
    }
    PathBuf::from(format!("/tmp/banstream-{uid}"))
}

/// `path` if absolute, else `base/path`.
pub fn under(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}
