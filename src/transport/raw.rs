//! AF_PACKET transport: `sendmmsg` batches out, `recvmmsg` batches in, with a
//! classic BPF filter so that only possible replies are copied to userspace.
//!
//! Sending and receiving use two sockets. The sending one is bound with
//! protocol 0, so the kernel never queues received frames on it.
//!
//! Some probes cannot go out as link-layer frames to one next hop: a frame
//! injected on `lo` has no route attached, and the kernel drops it as a
//! martian (drop reason IP_LOCALNET); and hosts on the link itself each have
//! a MAC of their own. Those probes go through a raw IP socket instead, and
//! the kernel routes (and resolves the neighbour for) each one; replies are
//! still read from the packet socket.
//!
//! One scan is one address family, fixed at `open` by the source address:
//! IPv4 frames with `ETH_P_IP`, IPv6 frames with `ETH_P_IPV6`.

use super::filter::{Insn, SNAP_LEN, reply_filter};
use super::{Drops, Receive, Replies, Resent, Transmit, TransportError};
use crate::sys::{self, RecvBatch, SendBatch, SockAddr};
use crate::wire::field::{Field, at, ethernet, ipv4, ipv6};
use std::mem::size_of;
use std::net::IpAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

const RX_BATCH: usize = 64;
const ETH_HEADER: usize = ethernet::HEADER_LEN;
const IPV4_DEST: Field = at(ETH_HEADER, ipv4::DESTINATION);
const IPV6_DEST: Field = at(ETH_HEADER, ipv6::DESTINATION);
const RX_BUFFER_BYTES: libc::c_int = 64 << 20;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const COALESCE: Duration = Duration::from_micros(200);

pub struct RawTx {
    fd: OwnedFd,
    route: TxRoute,
    batch: SendBatch,
    resent: Resent,
}

enum TxRoute {
    /// Whole Ethernet frames to the next hop.
    Link(libc::sockaddr_ll),
    /// The IP packet inside each frame, through the kernel's IP stack.
    IpStack(Family),
}

#[derive(Debug, Clone, Copy)]
enum Family {
    V4,
    /// A link-local destination needs its interface named: the scan's.
    V6 {
        scope_id: u32,
    },
}

pub struct RawRx {
    fd: OwnedFd,
    batch: RecvBatch,
}

/// Opens both halves on interface `ifindex`. `next_hop` is the frames' destination
/// MAC, unless `via_ip_stack` sends the probes through the kernel's IP stack.
pub fn open(
    ifindex: u32,
    next_hop: [u8; 6],
    via_ip_stack: bool,
    replies: Replies,
    resent: &Resent,
) -> Result<(RawTx, RawRx), TransportError> {
    let src_ip = replies.to.first();
    let family = match src_ip {
        IpAddr::V4(_) => Family::V4,
        IpAddr::V6(_) => Family::V6 { scope_id: ifindex },
    };
    let tx = if via_ip_stack {
        // IPPROTO_RAW implies a header supplied by us, on AF_INET6 as on AF_INET.
        let domain = if matches!(family, Family::V4) { libc::AF_INET } else { libc::AF_INET6 };
        RawTx {
            fd: new_socket(domain, libc::IPPROTO_RAW)?,
            route: TxRoute::IpStack(family),
            batch: SendBatch::default(),
            resent: resent.clone(),
        }
    } else {
        frame_sender(ifindex, next_hop, src_ip, resent)?
    };

    let rx = new_socket(libc::AF_PACKET, 0)?;
    let prog = reply_filter(replies);
    let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_ptr() as *mut libc::sock_filter };
    const _: () = assert!(size_of::<Insn>() == size_of::<libc::sock_filter>());
    setsockopt(&rx, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog, "attaching the reply filter")?;
    // Our own SYNs would otherwise be copied back to us on every interface.
    setsockopt(&rx, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, &1i32, "ignoring outgoing frames")?;
    setsockopt(&rx, libc::SOL_SOCKET, sys::SO_TIMESTAMPNS, &1i32, "enabling receive timestamps")?;
    // A burst of replies must not overflow the socket: FORCE needs CAP_NET_ADMIN, so fall back.
    if setsockopt(&rx, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &RX_BUFFER_BYTES, "").is_err() {
        setsockopt(&rx, libc::SOL_SOCKET, libc::SO_RCVBUF, &RX_BUFFER_BYTES, "sizing the receive buffer")?;
    }
    // Bound last: frames only start arriving once the filter is in place.
    // Through the IP stack a probe may leave by another interface than the
    // route's (to this host's own address on a scanned subnet: by `lo`), so
    // replies are read from every interface; the filter still admits only
    // those to our addresses and ports.
    let rx_ifindex = if via_ip_stack { 0 } else { ifindex };
    bind(&rx, &sys::link_address(rx_ifindex, ethertype(src_ip)))?;

    Ok((tx, RawRx { fd: rx, batch: RecvBatch::new(RX_BATCH, SNAP_LEN as usize) }))
}

/// A sender of whole Ethernet frames to `next_hop` on interface `ifindex`,
/// and nothing else: what an AF_XDP scan sends its RSTs with, since its own
/// rings belong to the transmit threads.
pub fn frame_sender(ifindex: u32, next_hop: [u8; 6], src_ip: IpAddr, resent: &Resent) -> Result<RawTx, TransportError> {
    link_tx(ifindex, next_hop, ethertype(src_ip), resent)
}

/// The EtherType of frames carrying packets of `ip`'s family.
fn ethertype(ip: IpAddr) -> u16 {
    (if ip.is_ipv4() { libc::ETH_P_IP } else { libc::ETH_P_IPV6 }) as u16
}

fn link_tx(ifindex: u32, next_hop: [u8; 6], ethertype: u16, resent: &Resent) -> Result<RawTx, TransportError> {
    // Bound with protocol 0, so the kernel never queues received frames on it.
    let fd = new_socket(libc::AF_PACKET, 0)?;
    bind(&fd, &sys::link_address(ifindex, 0))?;
    let mut dest = sys::link_address(ifindex, ethertype);
    dest.sll_halen = 6;
    dest.sll_addr[..6].copy_from_slice(&next_hop);
    Ok(RawTx { fd, route: TxRoute::Link(dest), batch: SendBatch::default(), resent: resent.clone() })
}

fn new_socket(family: i32, protocol: i32) -> Result<OwnedFd, TransportError> {
    sys::socket(family, libc::SOCK_RAW, protocol).map_err(|e| TransportError::os("opening a raw packet socket", e))
}

fn sockaddr_in(addr: &[u8]) -> libc::sockaddr_in {
    let mut sa: libc::sockaddr_in = sys::zeroed();
    sa.sin_family = libc::AF_INET as u16;
    sa.sin_addr.s_addr = u32::from_ne_bytes([addr[0], addr[1], addr[2], addr[3]]);
    sa
}

/// The IPv6 destination for a raw socket. The port stays 0: to a raw IPv6
/// socket it is a protocol number (0: the socket's own), and the header we
/// supply already names the protocol.
fn sockaddr_in6(addr: &[u8], scope_id: u32) -> libc::sockaddr_in6 {
    let mut sa: libc::sockaddr_in6 = sys::zeroed();
    sa.sin6_family = libc::AF_INET6 as u16;
    sa.sin6_addr.s6_addr.copy_from_slice(addr);
    // Used by the kernel only for link-local and multicast destinations.
    sa.sin6_scope_id = scope_id;
    sa
}

fn bind(fd: &OwnedFd, sa: &libc::sockaddr_ll) -> Result<(), TransportError> {
    sys::bind(fd.as_fd(), sa).map_err(|e| TransportError::os("binding the packet socket to the interface", e))
}

fn setsockopt<T>(fd: &OwnedFd, level: i32, name: i32, value: &T, what: &'static str) -> Result<(), TransportError> {
    sys::setsockopt(fd.as_fd(), level, name, value).map_err(|e| TransportError::os(what, e))
}

impl Transmit for RawTx {
    fn transmit(&mut self, frames: &[&[u8]]) -> Result<usize, TransportError> {
        // The IP route sends the packet without its Ethernet header, to the address inside it.
        let skip = if matches!(self.route, TxRoute::IpStack(_)) { ETH_HEADER } else { 0 };
        let route = &self.route;
        let dest = |f: &[u8]| match *route {
            TxRoute::Link(dest) => SockAddr::Link(dest),
            TxRoute::IpStack(Family::V4) => SockAddr::V4(sockaddr_in(&f[IPV4_DEST])),
            TxRoute::IpStack(Family::V6 { scope_id }) => SockAddr::V6(sockaddr_in6(&f[IPV6_DEST], scope_id)),
        };
        let mut batch = self.batch.prepare(self.fd.as_fd(), frames, skip, dest);
        let (mut done, mut refused) = (0, 0);
        while done < batch.messages() {
            let err = match batch.send_from(done) {
                Ok(n) => {
                    done += n;
                    // sendmmsg stops at the first message that fails and, having
                    // sent some, drops the error: on a link-layer socket that is
                    // the interface dropping the frame, which goes again.
                    if done < batch.messages() && matches!(route, TxRoute::Link(_)) {
                        self.resent.add(1);
                    }
                    continue;
                }
                Err(err) => err,
            };
            match (err.raw_os_error(), route) {
                (Some(libc::EINTR), _) => {}
                // The device queue is full: give the driver a moment rather than drop probes.
                // ENOBUFS from a link-layer send: the interface dropped the
                // frame (and counted it in tx_dropped), and it goes again.
                (Some(libc::ENOBUFS), TxRoute::Link(_)) => {
                    self.resent.add(1);
                    std::thread::sleep(Duration::from_micros(50));
                }
                (Some(libc::ENOBUFS | libc::EAGAIN), _) => std::thread::sleep(Duration::from_micros(50)),
                // The IP stack refuses one destination (a broadcast address, a
                // firewall rule, no route): skip that probe, not the scan.
                (
                    Some(libc::EACCES | libc::EPERM | libc::ENETUNREACH | libc::EHOSTUNREACH | libc::EINVAL),
                    TxRoute::IpStack(_),
                ) => {
                    done += 1;
                    refused += 1;
                }
                _ => return Err(TransportError::Io { what: "sending probes", source: err }),
            }
        }
        Ok(done - refused)
    }
}

impl RawRx {
    /// Reads every queued frame without blocking; returns how many there were.
    fn drain(&mut self, on_frame: &mut dyn FnMut(&[u8], u64)) -> Result<usize, TransportError> {
        let mut total = 0;
        loop {
            let n = self
                .batch
                .recv(self.fd.as_fd(), on_frame)
                .map_err(|source| TransportError::Io { what: "receiving replies", source })?;
            total += n;
            if n < self.batch.capacity() {
                return Ok(total);
            }
        }
    }
}

impl Receive for RawRx {
    fn receive(&mut self, timeout: Duration, on_frame: &mut dyn FnMut(&[u8], u64)) -> Result<bool, TransportError> {
        // A drain reads until the socket's buffer is empty: every call catches up.
        if self.drain(on_frame)? > 0 {
            // Replies are flowing: let a batch build up rather than waking for
            // every frame. The socket buffer holds them and each frame keeps
            // its kernel timestamp, so round-trip times lose nothing.
            std::thread::sleep(COALESCE);
            return Ok(true);
        }
        let ms = timeout.as_millis().clamp(0, i32::MAX as u128) as i32;
        match sys::wait_readable(self.fd.as_fd(), ms) {
            Ok(true) => _ = self.drain(on_frame)?,
            Ok(false) => {}
            Err(err) if err.raw_os_error() == Some(libc::EINTR) => {}
            Err(err) => return Err(TransportError::Io { what: "waiting for replies", source: err }),
        }
        Ok(true)
    }

    fn take_drops(&mut self) -> Drops {
        // Reading the statistics resets the kernel's counters.
        let stats = sys::getsockopt::<libc::tpacket_stats>(self.fd.as_fd(), libc::SOL_PACKET, libc::PACKET_STATISTICS);
        Drops { replies: stats.map_or(0, |s| u64::from(s.tp_drops)), probes: 0 }
    }
}
