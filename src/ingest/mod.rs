//! Stage 1: listeners. Sockets, framing, limits and peer allowlists.
//!
//! Each listener yields [`Frame`]s (bytes, peer, receive time) into one
//! bounded queue and knows nothing of syslog. Datagram listeners never block:
//! when the queue is full they drop and count (`reason="queue_full"`).
//! Stream listeners wait, which pushes back on the sender.
//!
//! Listeners are the only cancelled stage: when the token fires they stop
//! accepting and reading, drop their queue sender, and remove their socket
//! files; everything downstream drains in order.

pub mod framing;
mod stream;
mod udp;
mod unix;

use std::net::IpAddr;
use std::path::Path;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use ipnet::IpNet;
use prometheus::IntCounter;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::resolve::ListenSettings;
use crate::syslog::Peer;
use crate::telemetry::{emit_drops, DropReason, Metrics, RateLimiter};

/// The transport a frame came over (the `transport` metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// Unix datagram socket.
    Unix,
    /// Unix stream socket.
    UnixStream,
}

impl Transport {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Unix => "unix",
            Transport::UnixStream => "unix_stream",
        }
    }
}

/// One received message, before parsing.
#[derive(Clone, Debug)]
pub struct Frame {
    /// The raw bytes (framing removed).
    pub data: Bytes,
    /// The sender.
    pub peer: Peer,
    /// The transport.
    pub transport: Transport,
    /// Wall-clock receive time (the clock windows count with).
    pub received: SystemTime,
    /// Monotonic receive time (for the latency histogram).
    pub instant: Instant,
}

/// A listener that could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {what}: {source}")]
pub struct ListenError {
    /// `udp 127.0.0.1:5514`, `unix /run/banstream/log.sock`, ...
    pub what: String,
    /// The OS error.
    pub source: std::io::Error,
}

/// `banstream_messages_total` per transport, looked up once: the label
/// lookup (a hash and a lock) would otherwise be paid per message.
#[derive(Clone)]
struct Received([IntCounter; 4]);

impl Received {
    fn new(m: &Metrics) -> Self {
        let c = |t: Transport| m.messages.with_label_values(&[t.as_str()]);
        Received([
            c(Transport::Udp),
            c(Transport::Tcp),
            c(Transport::Unix),
            c(Transport::UnixStream),
        ])
    }

    fn of(&self, t: Transport) -> &IntCounter {
        &self.0[t as usize]
    }
}

/// What every listener shares.
#[derive(Clone)]
pub(crate) struct Shared {
    pub tx: mpsc::Sender<Frame>,
    pub metrics: Metrics,
    pub limiter: RateLimiter,
    pub cancel: CancellationToken,
    pub max_frame: usize,
    received: Received,
}

impl Shared {
    pub(crate) fn drop_msg(&self, reason: DropReason, detail: &dyn std::fmt::Display) {
        self.drop_many(reason, 1, detail);
    }

    /// Counts `n` messages dropped for one reason, with one (rate-limited) warning.
    pub(crate) fn drop_many(&self, reason: DropReason, n: u64, detail: &dyn std::fmt::Display) {
        emit_drops(&self.metrics, &self.limiter, reason, n, detail);
    }

    /// Queues a datagram frame without waiting.
    pub(crate) fn offer(&self, frame: Frame) {
        self.offer_many(frame.transport, std::iter::once(frame));
    }

    /// Queues datagram frames of one transport without waiting; what does
    /// not fit is dropped. The counters move once per call, not per frame.
    pub(crate) fn offer_many(&self, transport: Transport, frames: impl IntoIterator<Item = Frame>) {
        let (mut queued, mut full) = (0u64, 0u64);
        for f in frames {
            match self.tx.try_send(f) {
                Ok(()) => queued += 1,
                Err(mpsc::error::TrySendError::Full(_)) => full += 1,
                Err(mpsc::error::TrySendError::Closed(_)) => break,
            }
        }
        if queued > 0 {
            self.received.of(transport).inc_by(queued);
        }
        if full > 0 {
            self.drop_many(
                DropReason::QueueFull,
                full,
                &"frame queue full (matcher too slow)",
            );
        }
    }

    /// Queues a stream frame, waiting for room.
    pub(crate) async fn send(&self, frame: Frame) -> bool {
        let t = frame.transport;
        if self.tx.send(frame).await.is_err() {
            return false;
        }
        self.received.of(t).inc();
        true
    }
}

/// Whether `ip` is inside the allowlist.
pub fn allowed(allow: &[IpNet], ip: IpAddr) -> bool {
    let ip = crate::addr::normalize(ip);
    allow.iter().any(|n| n.contains(&ip))
}

/// Binds every configured listener and spawns its task. Binding errors are
/// returned (start fails loudly); per-message problems are only counted.
/// Returns the bound inet addresses (useful when port 0 was asked for).
pub async fn start(
    cfg: &ListenSettings,
    tx: mpsc::Sender<Frame>,
    metrics: Metrics,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> Result<Vec<(Transport, std::net::SocketAddr)>, ListenError> {
    let shared = Shared {
        tx,
        received: Received::new(&metrics),
        metrics,
        limiter: RateLimiter::default(),
        cancel,
        max_frame: cfg.max_frame,
    };
    let mut bound = Vec::new();
    for l in &cfg.udp {
        let a = udp::spawn(l, cfg.recv_buffer, shared.clone(), tracker).await?;
        bound.push((Transport::Udp, a));
    }
    for l in &cfg.tcp {
        let a = stream::spawn_tcp(l, cfg, shared.clone(), tracker).await?;
        bound.push((Transport::Tcp, a));
    }
    for l in &cfg.unix {
        unix::spawn_datagram(l, cfg.recv_buffer, shared.clone(), tracker)?;
    }
    for l in &cfg.unix_stream {
        stream::spawn_unix(l, cfg, shared.clone(), tracker)?;
    }
    Ok(bound)
}

/// Prepares a unix socket path: creates the parent directory and removes a
/// stale socket left by a previous run. Refuses to remove anything that is
/// not a socket.
pub(crate) fn prepare_socket_path(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)?;
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path),
        Ok(_) => Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a socket; not removing it",
                path.display()
            ),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Sets a socket file's permission bits.
pub(crate) fn chmod(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Removes a socket file at shutdown, if it is still a socket.
pub(crate) fn remove_socket(path: &Path) {
    use std::os::unix::fs::FileTypeExt;
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_normalises_mapped_addresses() {
        let allow: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        assert!(allowed(&allow, "127.0.0.1".parse().unwrap()));
        assert!(allowed(&allow, "::ffff:127.0.0.1".parse().unwrap()));
        assert!(allowed(&allow, "::1".parse().unwrap()));
        assert!(!allowed(&allow, "10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn refuses_to_remove_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, "x").unwrap();
        assert!(prepare_socket_path(&p).is_err());
        assert!(p.exists());
        let q = dir.path().join("sub/dir/sock");
        prepare_socket_path(&q).unwrap();
        assert!(q.parent().unwrap().is_dir());
    }
}
