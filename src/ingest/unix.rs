//! Unix datagram listener, like /dev/log. With SO_PASSCRED the kernel
//! attaches the sender's real uid and pid to each datagram, which the
//! listener's `allow_uids` and a jail's `uids` can rely on.

use std::io::IoSliceMut;
use std::os::fd::AsRawFd;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use nix::sys::socket::{self, sockopt, ControlMessageOwned, MsgFlags, UnixAddr};
use tokio::io::Interest;
use tokio::net::UnixDatagram;
use tokio_util::task::TaskTracker;

use super::{Frame, ListenError, Shared, Transport};
use crate::config::resolve::UnixListener;
use crate::syslog::Peer;
use crate::telemetry::DropReason;

const MAX_DATAGRAM: usize = 65_535;

pub(super) fn spawn_datagram(
    l: &UnixListener,
    recv_buffer: usize,
    shared: Shared,
    tracker: &TaskTracker,
) -> Result<(), ListenError> {
    let what = format!("unix {}", l.path.display());
    let err = |source| ListenError {
        what: what.clone(),
        source,
    };
    super::prepare_socket_path(&l.path).map_err(err)?;
    let sock = UnixDatagram::bind(&l.path).map_err(err)?;
    super::chmod(&l.path, l.mode).map_err(err)?;
    socket::setsockopt(&sock, sockopt::PassCred, &true).map_err(|e| err(e.into()))?;
    let _ = socket::setsockopt(&sock, sockopt::RcvBuf, &recv_buffer);
    tracing::info!(path = %l.path.display(), "listening (unix datagram)");
    let uids = l.allow_uids.clone();
    let path = l.path.clone();
    tracker.spawn(async move {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let r = tokio::select! {
                _ = shared.cancel.cancelled() => break,
                r = sock.async_io(Interest::READABLE, || recv_with_creds(&sock, &mut buf)) => r,
            };
            let (n, uid, pid, truncated) = match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!("unix recv error: {e}");
                    continue;
                }
            };
            let received = SystemTime::now();
            let instant = Instant::now();
            if !uids.is_empty() && !uid.is_some_and(|u| uids.contains(&u)) {
                shared.drop_msg(
                    DropReason::NotAllowed,
                    &format_args!("unix datagram from uid {uid:?}"),
                );
                continue;
            }
            if n == 0 {
                shared.drop_msg(DropReason::Empty, &"empty unix datagram");
                continue;
            }
            if truncated || n > shared.max_frame {
                shared.drop_msg(
                    DropReason::Oversize,
                    &format_args!("{n}-byte unix datagram"),
                );
                continue;
            }
            shared.offer(Frame {
                data: Bytes::copy_from_slice(&buf[..n]),
                peer: Peer::Unix { uid, pid },
                transport: Transport::Unix,
                received,
                instant,
            });
        }
        super::remove_socket(&path);
    });
    Ok(())
}

/// One recvmsg with the credentials message.
fn recv_with_creds(
    sock: &UnixDatagram,
    buf: &mut [u8],
) -> std::io::Result<(usize, Option<u32>, Option<u32>, bool)> {
    let mut cmsg = nix::cmsg_space!(libc::ucred);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = socket::recvmsg::<UnixAddr>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_DONTWAIT,
    )
    .map_err(std::io::Error::from)?;
    let (mut uid, mut pid) = (None, None);
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmCredentials(cred) = c {
                uid = Some(cred.uid());
                pid = u32::try_from(cred.pid()).ok();
            }
        }
    }
    let truncated = msg.flags.contains(MsgFlags::MSG_TRUNC);
    Ok((msg.bytes, uid, pid, truncated))
}
