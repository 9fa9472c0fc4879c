//! Stream listeners: TCP (RFC 6587) and unix stream sockets. One task per
//! connection runs the framer; a semaphore caps connections, and a
//! connection silent for `idle_timeout` is closed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::framing::{Framed, FramingError, SyslogFramer};
use super::{allowed, Frame, ListenError, Shared, Transport};
use crate::config::resolve::{InetListener, ListenSettings, UnixListener as UnixCfg};
use crate::syslog::Peer;
use crate::telemetry::DropReason;

/// At the connection cap, a connection that has sent no frame for this
/// long gives its slot to a new one.
const EVICT_IDLE: Duration = Duration::from_secs(5);

/// Milliseconds since the first call: connection activity stamps.
fn now_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// The open connections of one listener. At the cap, the one that has been
/// silent longest (no frame for [`EVICT_IDLE`] at least) is closed for the
/// newcomer: otherwise any allowed peer (on loopback, any local user) could
/// hold every slot with idle connections and lock the real relay out.
#[derive(Clone, Default)]
struct Slots(Arc<Mutex<SlotTable>>);

#[derive(Default)]
struct SlotTable {
    next: u64,
    live: HashMap<u64, (CancellationToken, Arc<AtomicU64>)>,
}

/// One connection's entry: its stop token and last-frame stamp; dropping
/// it leaves the table.
struct Slot {
    id: u64,
    slots: Slots,
    stop: CancellationToken,
    last: Arc<AtomicU64>,
}

impl Slots {
    fn table(&self) -> std::sync::MutexGuard<'_, SlotTable> {
        // A panic elsewhere cannot leave the table inconsistent: use it.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add(&self, shutdown: &CancellationToken) -> Slot {
        let stop = shutdown.child_token();
        let last = Arc::new(AtomicU64::new(now_ms()));
        let mut t = self.table();
        let id = t.next;
        t.next += 1;
        t.live.insert(id, (stop.clone(), last.clone()));
        Slot {
            id,
            slots: self.clone(),
            stop,
            last,
        }
    }

    /// Closes the connection silent longest, if silent for `idle` at least.
    fn evict_idlest(&self, idle: Duration) -> bool {
        let cutoff = now_ms().saturating_sub(idle.as_millis() as u64);
        let t = self.table();
        let idlest = t
            .live
            .values()
            .filter(|(stop, _)| !stop.is_cancelled())
            .min_by_key(|(_, last)| last.load(Ordering::Relaxed));
        match idlest {
            Some((stop, last)) if last.load(Ordering::Relaxed) <= cutoff => {
                stop.cancel();
                true
            }
            _ => false,
        }
    }
}

impl Slot {
    fn touch(&self) {
        self.last.store(now_ms(), Ordering::Relaxed);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.table().live.remove(&self.id);
    }
}

/// A permit for a new connection: a free one, or the slot of the idlest
/// connection, closed for it (`None`: every connection is busy).
async fn permit(sem: &Arc<Semaphore>, slots: &Slots) -> Option<tokio::sync::OwnedSemaphorePermit> {
    if let Ok(p) = sem.clone().try_acquire_owned() {
        return Some(p);
    }
    if !slots.evict_idlest(EVICT_IDLE) {
        return None;
    }
    // The evicted connection's task ends at once and frees its permit.
    tokio::time::timeout(Duration::from_secs(2), sem.clone().acquire_owned())
        .await
        .ok()?
        .ok()
}

pub(super) async fn spawn_tcp(
    l: &InetListener,
    cfg: &ListenSettings,
    shared: Shared,
    tracker: &TaskTracker,
) -> Result<SocketAddr, ListenError> {
    let what = format!("tcp {}", l.addr);
    let listener = TcpListener::bind(l.addr)
        .await
        .map_err(|source| ListenError {
            what: what.clone(),
            source,
        })?;
    let local = listener
        .local_addr()
        .map_err(|source| ListenError { what, source })?;
    tracing::info!(addr = %local, "listening (tcp)");
    let allow = l.allow.clone();
    let sem = Arc::new(Semaphore::new(cfg.max_connections));
    let idle = cfg.idle_timeout;
    let label = format!("tcp {local}");
    let conns = tracker.clone();
    let slots = Slots::default();
    tracker.spawn(async move {
        loop {
            let (sock, peer) = tokio::select! {
                _ = shared.cancel.cancelled() => break,
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::debug!("tcp accept error: {e}");
                        // EMFILE and friends: back off instead of spinning.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            if !allowed(&allow, peer.ip()) {
                shared.drop_msg(DropReason::NotAllowed, &format_args!("tcp connection from {peer}"));
                continue;
            }
            let Some(permit) = permit(&sem, &slots).await else {
                shared.metrics.connections_rejected.with_label_values(&[&label]).inc();
                if let Some(s) = shared.limiter.check("conn_cap") {
                    tracing::warn!(listener = %label, suppressed = s, "connection limit reached and every connection busy; refusing {peer}");
                }
                continue;
            };
            let _ = sock.set_nodelay(true);
            let sh = shared.clone();
            let slot = slots.add(&shared.cancel);
            conns.spawn(async move {
                read_stream(sock, Peer::Inet(peer), Transport::Tcp, idle, sh, &slot).await;
                drop(slot);
                drop(permit);
            });
        }
    });
    Ok(local)
}

pub(super) fn spawn_unix(
    l: &UnixCfg,
    cfg: &ListenSettings,
    shared: Shared,
    tracker: &TaskTracker,
) -> Result<(), ListenError> {
    let what = format!("unix stream {}", l.path.display());
    super::prepare_socket_path(&l.path).map_err(|source| ListenError {
        what: what.clone(),
        source,
    })?;
    let listener = UnixListener::bind(&l.path).map_err(|source| ListenError {
        what: what.clone(),
        source,
    })?;
    super::chmod(&l.path, l.mode).map_err(|source| ListenError { what, source })?;
    tracing::info!(path = %l.path.display(), "listening (unix stream)");
    let sem = Arc::new(Semaphore::new(cfg.max_connections));
    let idle = cfg.idle_timeout;
    let uids = l.allow_uids.clone();
    let path = l.path.clone();
    let label = format!("unix {}", path.display());
    let conns = tracker.clone();
    let slots = Slots::default();
    tracker.spawn(async move {
        loop {
            let sock = tokio::select! {
                _ = shared.cancel.cancelled() => break,
                r = listener.accept() => match r {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::debug!("unix accept error: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let cred = sock.peer_cred().ok();
            let uid = cred.as_ref().map(|c| c.uid());
            let pid = cred.as_ref().and_then(|c| c.pid()).map(|p| p as u32);
            if !uids.is_empty() && !uid.is_some_and(|u| uids.contains(&u)) {
                shared.drop_msg(
                    DropReason::NotAllowed,
                    &format_args!("unix stream connection from uid {uid:?}"),
                );
                continue;
            }
            let Some(permit) = permit(&sem, &slots).await else {
                shared
                    .metrics
                    .connections_rejected
                    .with_label_values(&[&label])
                    .inc();
                continue;
            };
            let sh = shared.clone();
            let slot = slots.add(&shared.cancel);
            conns.spawn(async move {
                read_stream(
                    sock,
                    Peer::Unix { uid, pid },
                    Transport::UnixStream,
                    idle,
                    sh,
                    &slot,
                )
                .await;
                drop(slot);
                drop(permit);
            });
        }
        super::remove_socket(&path);
    });
    Ok(())
}

/// Bytes read per `read` call at most (the buffer grows for longer frames).
const READ_CHUNK: usize = 64 * 1024;
/// At shutdown, how long a connection is still read, after our half-close,
/// for its peer to close its side.
const CLOSING_GRACE: Duration = Duration::from_secs(1);

/// Reads frames from one connection until EOF, error, idle timeout or shutdown.
///
/// Frames already in the buffer are framed and queued without waiting on
/// anything else: the shutdown and idle-timeout futures are only set up
/// when more bytes must be read, not once per frame.
async fn read_stream<R: AsyncRead + AsyncWrite + Unpin>(
    mut sock: R,
    peer: Peer,
    transport: Transport,
    idle: Duration,
    shared: Shared,
    slot: &Slot,
) {
    let mut framer = SyslogFramer::new(shared.max_frame);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut eof = false;
    let mut closing: Option<tokio::time::Instant> = None;
    loop {
        // Frames in one read share its receive time.
        let received = SystemTime::now();
        let instant = Instant::now();
        loop {
            let item = if eof {
                framer.decode_eof(&mut buf)
            } else {
                framer.decode(&mut buf)
            };
            match item {
                Ok(Some(Framed::Frame(data))) => {
                    if data.is_empty() {
                        shared.drop_msg(DropReason::Empty, &"empty frame");
                        continue;
                    }
                    slot.touch();
                    let frame = Frame {
                        data,
                        peer,
                        transport,
                        received,
                        instant,
                    };
                    if !shared.send(frame).await {
                        return;
                    }
                }
                Ok(Some(Framed::Oversize(n))) => {
                    shared.drop_msg(
                        DropReason::Oversize,
                        &format_args!("{n}-byte frame from {peer:?}"),
                    );
                }
                Ok(None) => break,
                Err(e) => {
                    if matches!(e, FramingError::BadOctetCount(_)) {
                        shared.drop_msg(
                            DropReason::BadFraming,
                            &format_args!("{e} from {peer:?}; closing"),
                        );
                    } else {
                        tracing::debug!(?peer, "stream closed: {e}");
                    }
                    return;
                }
            }
        }
        if eof {
            return;
        }
        buf.reserve(READ_CHUNK.saturating_sub(buf.capacity() - buf.len()));
        let n = match closing {
            None => tokio::select! {
                _ = slot.stop.cancelled() => {
                    if !shared.cancel.is_cancelled() {
                        // Evicted at the cap for a new connection.
                        tracing::debug!(?peer, "closing the idlest connection for a new one");
                        return;
                    }
                    // Shutting down: half-close and read on until the peer
                    // closes. A sender that checks the connection before
                    // each write (rsyslog does) sees our FIN, keeps the
                    // rest queued for the next daemon, and what it wrote
                    // before that is still read here rather than lost in a
                    // closed socket's buffer.
                    let _ = sock.shutdown().await;
                    closing = Some(tokio::time::Instant::now() + CLOSING_GRACE);
                    continue;
                }
                r = tokio::time::timeout(idle, sock.read_buf(&mut buf)) => match r {
                    Err(_) => {
                        tracing::debug!(?peer, "closing idle connection");
                        return;
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(?peer, "stream closed: read error: {e}");
                        return;
                    }
                    Ok(Ok(n)) => n,
                },
            },
            // A peer that keeps its side open does not hold up shutdown.
            Some(deadline) => {
                match tokio::time::timeout_at(deadline, sock.read_buf(&mut buf)).await {
                    Ok(Ok(n)) => n,
                    Err(_) | Ok(Err(_)) => return,
                }
            }
        };
        eof = n == 0;
    }
}
