//! UDP listener (RFC 5426): one datagram is one message. The receive loop
//! only copies bytes and checks the peer; parsing happens downstream.

use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio_util::task::TaskTracker;

use super::{allowed, Frame, ListenError, Shared, Transport};
use crate::config::resolve::InetListener;
use crate::syslog::Peer;
use crate::telemetry::DropReason;

/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;

fn bind(addr: SocketAddr, recv_buffer: usize) -> std::io::Result<std::net::UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // Accept v4-mapped peers too when bound to [::].
        let _ = s.set_only_v6(false);
    }
    s.set_reuse_address(true)?;
    // Ask for a large buffer; the kernel caps it at net.core.rmem_max unless
    // we are root, where SO_RCVBUFFORCE can exceed it.
    if s.set_recv_buffer_size(recv_buffer).is_ok() {
        let _ = force_rcvbuf(&s, recv_buffer);
    }
    s.bind(&addr.into())?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

fn force_rcvbuf(s: &Socket, size: usize) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let v: libc::c_int = size.min(i32::MAX as usize) as libc::c_int;
    // SAFETY: setsockopt with a valid fd and a pointer to a live c_int of the given size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &v as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

pub(super) async fn spawn(
    l: &InetListener,
    recv_buffer: usize,
    shared: Shared,
    tracker: &TaskTracker,
) -> Result<SocketAddr, ListenError> {
    let what = format!("udp {}", l.addr);
    let std_sock = bind(l.addr, recv_buffer).map_err(|source| ListenError {
        what: what.clone(),
        source,
    })?;
    let sock = UdpSocket::from_std(std_sock).map_err(|source| ListenError {
        what: what.clone(),
        source,
    })?;
    let local = sock
        .local_addr()
        .map_err(|source| ListenError { what, source })?;
    let allow = l.allow.clone();
    tracing::info!(addr = %local, "listening (udp)");
    tracker.spawn(async move {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let (n, peer) = tokio::select! {
                _ = shared.cancel.cancelled() => break,
                r = sock.recv_from(&mut buf) => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::debug!("udp recv error: {e}");
                        continue;
                    }
                },
            };
            let received = SystemTime::now();
            let instant = Instant::now();
            if !allowed(&allow, peer.ip()) {
                shared.drop_msg(
                    DropReason::NotAllowed,
                    &format_args!("udp datagram from {peer}"),
                );
                continue;
            }
            if n == 0 {
                shared.drop_msg(
                    DropReason::Empty,
                    &format_args!("empty datagram from {peer}"),
                );
                continue;
            }
            if n > shared.max_frame {
                shared.drop_msg(
                    DropReason::Oversize,
                    &format_args!("{n}-byte datagram from {peer}"),
                );
                continue;
            }
            shared.offer(Frame {
                data: Bytes::copy_from_slice(&buf[..n]),
                peer: Peer::Inet(peer),
                transport: Transport::Udp,
                received,
                instant,
            });
        }
    });
    Ok(local)
}
