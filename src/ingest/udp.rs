//! UDP listener (RFC 5426): one datagram is one message.
//!
//! The receive loop takes up to [`BATCH`] datagrams per `recvmmsg` call,
//! checks each one's peer and size, copies the accepted ones into one shared
//! buffer and queues them. Parsing happens downstream. With `SO_RXQ_OVFL`
//! the kernel tells how many datagrams it dropped because the socket buffer
//! was full; they are counted as `reason="kernel_overflow"`.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::time::{Instant, SystemTime};

use bytes::BytesMut;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio_util::task::TaskTracker;

use super::{allowed, Frame, ListenError, Shared, Transport};
use crate::config::resolve::InetListener;
use crate::syslog::Peer;
use crate::telemetry::DropReason;

/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;

/// Datagrams taken per `recvmmsg` call.
const BATCH: usize = 64;

/// Control-message room per datagram, in `u64`s so that it is aligned for
/// `cmsghdr`. One `SO_RXQ_OVFL` message (a `u32`) needs 16 bytes on 64-bit
/// Linux; the rest is slack for the 32-bit layouts.
const CTRL_WORDS: usize = 4;

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
        let _ = set_int(&s, libc::SO_RCVBUFFORCE, recv_buffer);
    }
    // Have the kernel attach its drop counter to each datagram: without it a
    // full socket buffer loses messages without a trace.
    if let Err(e) = set_int(&s, libc::SO_RXQ_OVFL, 1) {
        tracing::warn!(%addr, "SO_RXQ_OVFL unavailable, kernel drops will not be counted: {e}");
    }
    s.bind(&addr.into())?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// A `SOL_SOCKET` option socket2 does not wrap.
fn set_int(s: &Socket, opt: libc::c_int, value: usize) -> std::io::Result<()> {
    let v: libc::c_int = value.min(i32::MAX as usize) as libc::c_int;
    // SAFETY: setsockopt with a valid fd and a pointer to a live c_int of the given size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
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

/// The kernel's drop counter (`SO_RXQ_OVFL`) is cumulative per socket and
/// comes stamped on the datagrams that follow a drop; this turns readings
/// into increments.
#[derive(Debug, Default)]
struct OverflowDelta {
    last: u32,
}

impl OverflowDelta {
    /// Datagrams dropped since the previous reading. The counter wraps at
    /// 2^32; a reading older than the last one (never expected: the queue
    /// is FIFO) counts nothing rather than four billion.
    fn update(&mut self, reading: u32) -> u64 {
        let d = reading.wrapping_sub(self.last);
        if d > i32::MAX as u32 {
            return 0;
        }
        self.last = reading;
        u64::from(d)
    }
}

/// What `recvmmsg` said about one datagram.
#[derive(Clone, Copy, Debug, Default)]
struct Meta {
    /// Its full length (`MSG_TRUNC` asks for it even when cut).
    len: usize,
    /// Longer than its slot.
    truncated: bool,
    /// The kernel's drop counter, when attached.
    overflow: Option<u32>,
}

/// Buffers for one `recvmmsg` call, reused for every batch. The headers
/// pointing into them are built on the stack for each call, so this holds
/// no raw pointers and moves freely between threads.
struct RecvBatch {
    /// Bytes per datagram slot.
    slot: usize,
    data: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    ctrl: Vec<[u64; CTRL_WORDS]>,
    meta: [Meta; BATCH],
}

impl RecvBatch {
    fn new(slot: usize) -> Self {
        // SAFETY: sockaddr_storage is plain data; all zeroes is a valid value.
        let zero: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        RecvBatch {
            slot,
            data: vec![0; slot * BATCH],
            addrs: vec![zero; BATCH],
            ctrl: vec![[0; CTRL_WORDS]; BATCH],
            meta: [Meta::default(); BATCH],
        }
    }

    /// One `recvmmsg` without waiting: the number of datagrams read, or
    /// `WouldBlock` when there were none.
    fn recv(&mut self, fd: libc::c_int) -> std::io::Result<usize> {
        // SAFETY: iovec and mmsghdr are plain data; zeroed is "no buffer".
        let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for (i, ((v, h), (buf, (addr, ctrl)))) in iov
            .iter_mut()
            .zip(hdrs.iter_mut())
            .zip(
                self.data
                    .chunks_exact_mut(self.slot)
                    .zip(self.addrs.iter_mut().zip(self.ctrl.iter_mut())),
            )
            .enumerate()
        {
            debug_assert!(i < BATCH);
            v.iov_base = buf.as_mut_ptr().cast();
            v.iov_len = buf.len();
            let m = &mut h.msg_hdr;
            m.msg_name = (addr as *mut libc::sockaddr_storage).cast();
            m.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            m.msg_iov = v;
            m.msg_iovlen = 1;
            m.msg_control = ctrl.as_mut_ptr().cast();
            m.msg_controllen = std::mem::size_of::<[u64; CTRL_WORDS]>() as _;
        }
        // SAFETY: every header points into buffers owned by self (or iov on
        // this stack frame) that outlive the call, with their true sizes.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                // c_int on glibc, c_uint on musl.
                (libc::MSG_DONTWAIT | libc::MSG_TRUNC) as _,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let n = n as usize;
        for (meta, h) in self.meta.iter_mut().zip(&hdrs).take(n) {
            *meta = Meta {
                len: h.msg_len as usize,
                truncated: h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
                overflow: overflow_reading(&h.msg_hdr),
            };
        }
        Ok(n)
    }

    /// The bytes of datagram `i` (at most its slot).
    fn bytes(&self, i: usize) -> &[u8] {
        let start = i * self.slot;
        &self.data[start..start + self.meta[i].len.min(self.slot)]
    }
}

/// The `SO_RXQ_OVFL` counter in a received header's control messages.
fn overflow_reading(m: &libc::msghdr) -> Option<u32> {
    let mut found = None;
    // SAFETY: the kernel filled msg_control/msg_controllen; the CMSG macros
    // walk within them, and the data of an SO_RXQ_OVFL message is a u32.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(m);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SO_RXQ_OVFL {
                found = Some(std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const u32));
            }
            c = libc::CMSG_NXTHDR(m, c);
        }
    }
    found
}

/// The peer of a received datagram.
fn peer_addr(a: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(a.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let s = unsafe { &*(a as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(s.sin_addr.s_addr)),
                u16::from_be(s.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let s = unsafe { &*(a as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(s.sin6_addr.s6_addr),
                u16::from_be(s.sin6_port),
                s.sin6_flowinfo,
                s.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// The per-listener receive state: buffers, the kernel drop counter and a
/// reusable list of accepted datagrams.
struct Receiver {
    batch: RecvBatch,
    overflow: OverflowDelta,
    accepted: Vec<(usize, usize, SocketAddr)>,
    allow: Vec<ipnet::IpNet>,
}

impl Receiver {
    /// Checks and queues the `n` datagrams just received. They share one
    /// receive time (they were read by one call) and one buffer.
    fn deliver(&mut self, n: usize, shared: &Shared) {
        let received = SystemTime::now();
        let instant = Instant::now();
        if let Some(r) = self.batch.meta[..n].iter().rev().find_map(|m| m.overflow) {
            let lost = self.overflow.update(r);
            if lost > 0 {
                shared.drop_many(
                    DropReason::KernelOverflow,
                    lost,
                    &format_args!(
                        "the kernel dropped {lost} datagrams: socket buffer full \
                         (raise listen.recv_buffer, or the matcher is too slow)"
                    ),
                );
            }
        }
        self.accepted.clear();
        let mut total = 0;
        for i in 0..n {
            let meta = self.batch.meta[i];
            let Some(peer) = peer_addr(&self.batch.addrs[i]) else {
                continue;
            };
            if !allowed(&self.allow, peer.ip()) {
                shared.drop_msg(
                    DropReason::NotAllowed,
                    &format_args!("udp datagram from {peer}"),
                );
                continue;
            }
            if meta.len == 0 {
                shared.drop_msg(
                    DropReason::Empty,
                    &format_args!("empty datagram from {peer}"),
                );
                continue;
            }
            if meta.truncated || meta.len > shared.max_frame {
                shared.drop_msg(
                    DropReason::Oversize,
                    &format_args!("{}-byte datagram from {peer}", meta.len),
                );
                continue;
            }
            self.accepted.push((i, meta.len, peer));
            total += meta.len;
        }
        if self.accepted.is_empty() {
            return;
        }
        // One allocation per batch: each frame is a slice of it.
        let mut buf = BytesMut::with_capacity(total);
        for &(i, _, _) in &self.accepted {
            buf.extend_from_slice(self.batch.bytes(i));
        }
        let buf = buf.freeze();
        let mut at = 0;
        shared.offer_many(
            Transport::Udp,
            self.accepted.iter().map(|&(_, len, peer)| {
                let data = buf.slice(at..at + len);
                at += len;
                Frame {
                    data,
                    peer: Peer::Inet(peer),
                    transport: Transport::Udp,
                    received,
                    instant,
                }
            }),
        );
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
    tracing::info!(addr = %local, "listening (udp)");
    // A datagram longer than max_frame is dropped anyway: slots need be no
    // larger (MSG_TRUNC still reports its real length).
    let slot = shared.max_frame.clamp(1, MAX_DATAGRAM);
    let mut rx = Receiver {
        batch: RecvBatch::new(slot),
        overflow: OverflowDelta::default(),
        accepted: Vec::with_capacity(BATCH),
        allow: l.allow.clone(),
    };
    tracker.spawn(async move {
        let fd = sock.as_raw_fd();
        loop {
            let r = tokio::select! {
                _ = shared.cancel.cancelled() => break,
                r = sock.async_io(Interest::READABLE, || rx.batch.recv(fd)) => r,
            };
            match r {
                Ok(n) => rx.deliver(n, &shared),
                Err(e) => tracing::debug!("udp recv error: {e}"),
            }
        }
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_counts_deltas_of_the_cumulative_counter() {
        let mut o = OverflowDelta::default();
        assert_eq!(o.update(5), 5);
        assert_eq!(o.update(5), 0);
        assert_eq!(o.update(12), 7);
        // A stale reading counts nothing and is not taken as the new base.
        assert_eq!(o.update(3), 0);
        assert_eq!(o.update(13), 1);
        // The counter wraps at 2^32.
        let mut o = OverflowDelta { last: u32::MAX - 1 };
        assert_eq!(o.update(3), 5);
    }

    #[test]
    fn recvmmsg_reads_a_batch_with_peers_lengths_and_the_drop_counter() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let s = Socket::from(rx.try_clone().unwrap());
        // A tiny buffer and no reader: the kernel must drop some.
        s.set_recv_buffer_size(1).unwrap();
        set_int(&s, libc::SO_RXQ_OVFL, 1).unwrap();
        rx.set_nonblocking(true).unwrap();
        let to = rx.local_addr().unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let from = tx.local_addr().unwrap();
        for _ in 0..200 {
            tx.send_to(&[b'x'; 300], to).unwrap();
        }
        let mut b = RecvBatch::new(100);
        let mut o = OverflowDelta::default();
        let (mut got, mut lost) = (0, 0);
        loop {
            match b.recv(rx.as_raw_fd()) {
                Ok(n) => {
                    for i in 0..n {
                        assert_eq!(peer_addr(&b.addrs[i]), Some(from));
                        assert_eq!(b.meta[i].len, 300);
                        assert!(b.meta[i].truncated);
                        assert_eq!(b.bytes(i).len(), 100);
                    }
                    if let Some(r) = b.meta[..n].iter().rev().find_map(|m| m.overflow) {
                        lost += o.update(r);
                    }
                    got += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(got > 0 && got < 200, "received {got}");
        // The last drop happened after the last datagram queued: the counter
        // reaches us on the next one.
        tx.send_to(b"<13>last", to).unwrap();
        let n = b.recv(rx.as_raw_fd()).unwrap();
        assert_eq!(n, 1);
        assert_eq!(b.bytes(0), b"<13>last");
        lost += o.update(b.meta[0].overflow.unwrap());
        assert_eq!(got + lost, 200);
    }
}
