//! ipset in-process: set additions and deletions sent straight to the
//! kernel over netfilter netlink, the protocol the `ipset` program speaks.
//! Starting `ipset restore` for every batch costs milliseconds (tens under
//! load) and its per-line parsing about 50 µs per element; one netlink
//! message carries hundreds of elements and costs microseconds. Sets are
//! still created, listed and destroyed with the `ipset` program (rare).
//!
//! Only ADD and DEL are spoken. Neither sets `NLM_F_EXCL`, so the kernel
//! behaves as with `-exist`: adding a present element refreshes its
//! timeout, deleting an absent one is not an error.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// nfnetlink subsystem of ipset.
const NFNL_SUBSYS_IPSET: u16 = 6;
/// Commands (linux/netfilter/ipset/ip_set.h).
const IPSET_CMD_ADD: u16 = 9;
const IPSET_CMD_DEL: u16 = 10;
/// Protocol version sent; the kernel accepts 6 and 7.
const IPSET_PROTOCOL: u8 = 7;
/// Top-level attributes.
const IPSET_ATTR_PROTOCOL: u16 = 1;
const IPSET_ATTR_SETNAME: u16 = 2;
const IPSET_ATTR_DATA: u16 = 7;
const IPSET_ATTR_ADT: u16 = 8;
/// Required with ADT (the kernel reports the failing element by it).
const IPSET_ATTR_LINENO: u16 = 9;
/// Attributes inside DATA and inside IP.
const IPSET_ATTR_IP: u16 = 1;
const IPSET_ATTR_TIMEOUT: u16 = 6;
const IPSET_ATTR_IPADDR_IPV4: u16 = 1;
const IPSET_ATTR_IPADDR_IPV6: u16 = 2;
const NLA_F_NESTED: u16 = 1 << 15;
const NLA_F_NET_BYTEORDER: u16 = 1 << 14;
const NLMSG_ERROR: u16 = 2;
/// Largest message sent (elements beyond it go in the next message).
const MAX_MESSAGE: usize = 32 * 1024;

/// An element operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetOp {
    /// Add (or refresh) with a timeout in seconds (0: none).
    Add(u32),
    /// Delete.
    Del,
}

/// A netfilter netlink socket for ipset commands.
pub struct IpsetNl {
    fd: OwnedFd,
    seq: u32,
}

fn attr(buf: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

/// Opens a nested attribute; returns where its length goes.
fn nest_start(buf: &mut Vec<u8>, kind: u16) -> usize {
    let at = buf.len();
    buf.extend_from_slice(&0u16.to_ne_bytes());
    buf.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
    at
}

fn nest_end(buf: &mut [u8], at: usize) {
    let len = (buf.len() - at) as u16;
    buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
}

/// One element: DATA { IP { IPADDR }, [TIMEOUT] }.
fn element(buf: &mut Vec<u8>, ip: IpAddr, op: SetOp) {
    let data = nest_start(buf, IPSET_ATTR_DATA);
    let inner = nest_start(buf, IPSET_ATTR_IP);
    match ip {
        IpAddr::V4(a) => attr(
            buf,
            IPSET_ATTR_IPADDR_IPV4 | NLA_F_NET_BYTEORDER,
            &a.octets(),
        ),
        IpAddr::V6(a) => attr(
            buf,
            IPSET_ATTR_IPADDR_IPV6 | NLA_F_NET_BYTEORDER,
            &a.octets(),
        ),
    }
    nest_end(buf, inner);
    if let SetOp::Add(t) = op {
        attr(
            buf,
            IPSET_ATTR_TIMEOUT | NLA_F_NET_BYTEORDER,
            &t.to_be_bytes(),
        );
    }
    nest_end(buf, data);
}

/// The messages for `elems` of one set and one family: as few as fit in
/// [`MAX_MESSAGE`] each, elements in an ADT list.
pub fn messages(set: &str, v6: bool, elems: &[(IpAddr, SetOp)], seq: &mut u32) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = elems;
    while let Some(&(_, first_op)) = rest.first() {
        // One command per message: a run of adds or a run of deletes.
        let cmd = match first_op {
            SetOp::Add(_) => IPSET_CMD_ADD,
            SetOp::Del => IPSET_CMD_DEL,
        };
        let mut buf = Vec::with_capacity(MAX_MESSAGE + 64);
        buf.extend_from_slice(&[0u8; 16]); // nlmsghdr, filled in below
        let family = if v6 { libc::AF_INET6 } else { libc::AF_INET } as u8;
        buf.extend_from_slice(&[family, 0, 0, 0]); // nfgenmsg: family, V0, res_id 0
        attr(&mut buf, IPSET_ATTR_PROTOCOL, &[IPSET_PROTOCOL]);
        let mut name = set.as_bytes().to_vec();
        name.push(0);
        attr(&mut buf, IPSET_ATTR_SETNAME, &name);
        attr(&mut buf, IPSET_ATTR_LINENO, &0u32.to_ne_bytes());
        let adt = nest_start(&mut buf, IPSET_ATTR_ADT);
        let mut n = 0;
        for &(ip, op) in rest {
            if std::mem::discriminant(&op) != std::mem::discriminant(&first_op)
                || buf.len() > MAX_MESSAGE
            {
                break;
            }
            element(&mut buf, ip, op);
            n += 1;
        }
        nest_end(&mut buf, adt);
        *seq = seq.wrapping_add(1);
        let len = buf.len() as u32;
        let kind = (NFNL_SUBSYS_IPSET << 8) | cmd;
        let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
        buf[0..4].copy_from_slice(&len.to_ne_bytes());
        buf[4..6].copy_from_slice(&kind.to_ne_bytes());
        buf[6..8].copy_from_slice(&flags.to_ne_bytes());
        buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        // Port id 0: the kernel fills in ours.
        out.push(buf);
        rest = &rest[n..];
    }
    out
}

/// The error code of an ack for `seq` in `buf`, if `buf` holds it.
fn ack(buf: &[u8], seq: u32) -> Option<i32> {
    let mut at = 0;
    while at + 20 <= buf.len() {
        let len = u32::from_ne_bytes(buf[at..at + 4].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().ok()?);
        let s = u32::from_ne_bytes(buf[at + 8..at + 12].try_into().ok()?);
        if kind == NLMSG_ERROR && s == seq {
            return Some(i32::from_ne_bytes(buf[at + 16..at + 20].try_into().ok()?));
        }
        if len < 16 {
            return None;
        }
        at += len.next_multiple_of(4);
    }
    None
}

impl IpsetNl {
    /// Opens the socket (in the current network namespace).
    pub fn open() -> io::Result<IpsetNl> {
        // SAFETY: plain socket(2); the descriptor is owned right away.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_NETFILTER,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // An ack that never comes must not hang the worker.
        let tv = libc::timeval {
            tv_sec: 5,
            tv_usec: 0,
        };
        // SAFETY: `tv` outlives the call; the size matches.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const libc::timeval as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(IpsetNl { fd, seq: 0 })
    }

    /// Applies `elems` (in order) to `set`, all of one family. `Err` names
    /// the kernel's refusal.
    pub fn apply(&mut self, set: &str, v6: bool, elems: &[(IpAddr, SetOp)]) -> io::Result<()> {
        for msg in messages(set, v6, elems, &mut self.seq) {
            self.send(&msg)?;
            let seq = u32::from_ne_bytes([msg[8], msg[9], msg[10], msg[11]]);
            self.wait_ack(seq, set)?;
        }
        Ok(())
    }

    fn send(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: an all-zero sockaddr_nl is the kernel (pid 0, no groups).
        let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        to.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `msg` and `to` outlive the call; sizes match.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr() as *const libc::c_void,
                msg.len(),
                0,
                &to as *const libc::sockaddr_nl as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn wait_ack(&self, seq: u32, set: &str) -> io::Result<()> {
        let mut buf = vec![0u8; 8192];
        loop {
            // SAFETY: `buf` is writable for its length during the call.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            match ack(&buf[..n as usize], seq) {
                Some(0) => return Ok(()),
                Some(code) => {
                    return Err(io::Error::other(format!(
                        "kernel refused an ipset command on {set}: error {}{}",
                        -code,
                        if -code < 4096 {
                            format!(" ({})", io::Error::from_raw_os_error(-code))
                        } else {
                            " (ipset protocol error)".to_string()
                        }
                    )))
                }
                // An ack of an older message (after a timeout): keep reading.
                None => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_message_per_run_of_one_command_with_an_adt_list() {
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let mut seq = 0;
        let m = messages(
            "f2b-x",
            false,
            &[(a, SetOp::Add(60)), (b, SetOp::Add(0)), (a, SetOp::Del)],
            &mut seq,
        );
        assert_eq!(m.len(), 2);
        assert_eq!(seq, 2);
        let len = u32::from_ne_bytes(m[0][0..4].try_into().unwrap()) as usize;
        assert_eq!(len, m[0].len());
        assert_eq!(u16::from_ne_bytes([m[0][4], m[0][5]]), (6 << 8) | 9);
        assert_eq!(u16::from_ne_bytes([m[1][4], m[1][5]]), (6 << 8) | 10);
        // Header 16 + nfgenmsg 4 + protocol 8 + name "f2b-x\0" 12 + lineno 8
        // + ADT 4 + two elements of DATA 4 + IP 4 + IPv4 8 + timeout 8.
        assert_eq!(len, 16 + 4 + 8 + 12 + 8 + 4 + 2 * 24);
        // The address, network order, right after its attribute header.
        let at = 16 + 4 + 8 + 12 + 8 + 4 + 4 + 4 + 4;
        assert_eq!(&m[0][at..at + 4], &[192, 0, 2, 1]);
    }

    #[test]
    fn large_batches_are_split() {
        let elems: Vec<(IpAddr, SetOp)> = (0..5000u32)
            .map(|i| (IpAddr::from(std::net::Ipv4Addr::from(i)), SetOp::Add(1)))
            .collect();
        let mut seq = 0;
        let m = messages("s", false, &elems, &mut seq);
        assert!(m.len() > 1);
        assert!(m.iter().all(|x| x.len() <= MAX_MESSAGE + 64));
    }

    #[test]
    fn ack_is_found_by_sequence() {
        let mut buf = vec![0u8; 36];
        buf[0..4].copy_from_slice(&36u32.to_ne_bytes());
        buf[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        buf[8..12].copy_from_slice(&7u32.to_ne_bytes());
        buf[16..20].copy_from_slice(&(-2i32).to_ne_bytes());
        assert_eq!(ack(&buf, 7), Some(-2));
        assert_eq!(ack(&buf, 8), None);
    }
}
