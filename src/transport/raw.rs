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
use super::{Drops, Receive, Transmit, TransportError};
use std::mem::{size_of, zeroed};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

const RX_BATCH: usize = 64;
const ETH_HEADER: usize = 14;
/// Where the destination address sits in each frame's IP header.
const IPV4_DEST: std::ops::Range<usize> = ETH_HEADER + 16..ETH_HEADER + 20;
const IPV6_DEST: std::ops::Range<usize> = ETH_HEADER + 24..ETH_HEADER + 40;
const RX_BUFFER_BYTES: libc::c_int = 64 << 20;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
/// SO_TIMESTAMPNS (the 64-bit timespec form on x86_64 and arm64).
const SO_TIMESTAMPNS: libc::c_int = 35;
/// Room for one timestamp control message per received frame.
const CONTROL_WORDS: usize = 8;
const COALESCE: Duration = Duration::from_micros(200);

pub struct RawTx {
    fd: OwnedFd,
    route: TxRoute,
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
    bufs: Vec<[u8; SNAP_LEN as usize]>,
}

/// Opens both halves on interface `ifindex`. `next_hop` is the frames' destination
/// MAC, unless `via_ip_stack` sends the probes through the kernel's IP stack.
pub fn open(
    ifindex: u32,
    next_hop: [u8; 6],
    via_ip_stack: bool,
    src_ip: IpAddr,
    src_ports: (u16, u16),
) -> Result<(RawTx, RawRx), TransportError> {
    let family = match src_ip {
        IpAddr::V4(_) => Family::V4,
        IpAddr::V6(_) => Family::V6 { scope_id: ifindex },
    };
    let tx = if via_ip_stack {
        // IPPROTO_RAW implies a header supplied by us, on AF_INET6 as on AF_INET.
        let domain = if matches!(family, Family::V4) { libc::AF_INET } else { libc::AF_INET6 };
        RawTx { fd: new_socket(domain, libc::IPPROTO_RAW)?, route: TxRoute::IpStack(family) }
    } else {
        frame_sender(ifindex, next_hop, src_ip)?
    };

    let rx = new_socket(libc::AF_PACKET, 0)?;
    let prog = reply_filter(src_ip, src_ports);
    let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_ptr() as *mut libc::sock_filter };
    const _: () = assert!(size_of::<Insn>() == size_of::<libc::sock_filter>());
    setsockopt(&rx, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog, "attaching the reply filter")?;
    // Our own SYNs would otherwise be copied back to us on every interface.
    setsockopt(&rx, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, &1i32, "ignoring outgoing frames")?;
    setsockopt(&rx, libc::SOL_SOCKET, SO_TIMESTAMPNS, &1i32, "enabling receive timestamps")?;
    // A burst of replies must not overflow the socket: FORCE needs CAP_NET_ADMIN, so fall back.
    if setsockopt(&rx, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &RX_BUFFER_BYTES, "").is_err() {
        setsockopt(&rx, libc::SOL_SOCKET, libc::SO_RCVBUF, &RX_BUFFER_BYTES, "sizing the receive buffer")?;
    }
    // Bound last: frames only start arriving once the filter is in place.
    // Through the IP stack a probe may leave by another interface than the
    // route's (to this host's own address on a scanned subnet: by `lo`), so
    // replies are read from every interface; the filter still admits only
    // those to our address and ports.
    let rx_ifindex = if via_ip_stack { 0 } else { ifindex };
    bind(&rx, &sockaddr_ll(rx_ifindex, ethertype(src_ip)))?;

    Ok((tx, RawRx { fd: rx, bufs: vec![[0u8; SNAP_LEN as usize]; RX_BATCH] }))
}

/// A sender of whole Ethernet frames to `next_hop` on interface `ifindex`,
/// and nothing else: what an AF_XDP scan sends its RSTs with, since its own
/// rings belong to the transmit threads.
pub fn frame_sender(ifindex: u32, next_hop: [u8; 6], src_ip: IpAddr) -> Result<RawTx, TransportError> {
    link_tx(ifindex, next_hop, ethertype(src_ip))
}

/// The EtherType of frames carrying packets of `ip`'s family.
fn ethertype(ip: IpAddr) -> u16 {
    (if ip.is_ipv4() { libc::ETH_P_IP } else { libc::ETH_P_IPV6 }) as u16
}

fn link_tx(ifindex: u32, next_hop: [u8; 6], ethertype: u16) -> Result<RawTx, TransportError> {
    // Bound with protocol 0, so the kernel never queues received frames on it.
    let fd = new_socket(libc::AF_PACKET, 0)?;
    let mut dest = sockaddr_ll(ifindex, 0);
    bind(&fd, &dest)?;
    dest.sll_protocol = ethertype.to_be();
    dest.sll_halen = 6;
    dest.sll_addr[..6].copy_from_slice(&next_hop);
    Ok(RawTx { fd, route: TxRoute::Link(dest) })
}

fn new_socket(family: i32, protocol: i32) -> Result<OwnedFd, TransportError> {
    // SAFETY: plain socket(2) call; the returned descriptor is owned below.
    let fd = unsafe { libc::socket(family, libc::SOCK_RAW | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return Err(TransportError::last_os("opening a raw packet socket"));
    }
    // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn sockaddr_in(addr: &[u8]) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain data; all-zero is a valid value.
    let mut sa: libc::sockaddr_in = unsafe { zeroed() };
    sa.sin_family = libc::AF_INET as u16;
    sa.sin_addr.s_addr = u32::from_ne_bytes([addr[0], addr[1], addr[2], addr[3]]);
    sa
}

/// The IPv6 destination for a raw socket. The port stays 0: to a raw IPv6
/// socket it is a protocol number (0: the socket's own), and the header we
/// supply already names the protocol.
fn sockaddr_in6(addr: &[u8], scope_id: u32) -> libc::sockaddr_in6 {
    // SAFETY: sockaddr_in6 is plain data; all-zero is a valid value.
    let mut sa: libc::sockaddr_in6 = unsafe { zeroed() };
    sa.sin6_family = libc::AF_INET6 as u16;
    sa.sin6_addr.s6_addr.copy_from_slice(addr);
    // Used by the kernel only for link-local and multicast destinations.
    sa.sin6_scope_id = scope_id;
    sa
}

/// Points a message at its destination address.
fn set_name<T>(m: &mut libc::mmsghdr, sa: &mut T) {
    m.msg_hdr.msg_name = (sa as *mut T).cast();
    m.msg_hdr.msg_namelen = size_of::<T>() as u32;
}

fn sockaddr_ll(ifindex: u32, protocol: u16) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut sa: libc::sockaddr_ll = unsafe { zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_protocol = protocol.to_be();
    sa.sll_ifindex = ifindex as i32;
    sa
}

fn bind(fd: &OwnedFd, sa: &libc::sockaddr_ll) -> Result<(), TransportError> {
    // SAFETY: sa points to a valid sockaddr_ll of the length given.
    let rc = unsafe {
        libc::bind(fd.as_raw_fd(), (sa as *const libc::sockaddr_ll).cast(), size_of::<libc::sockaddr_ll>() as u32)
    };
    if rc < 0 {
        return Err(TransportError::last_os("binding the packet socket to the interface"));
    }
    Ok(())
}

fn setsockopt<T>(fd: &OwnedFd, level: i32, name: i32, value: &T, what: &'static str) -> Result<(), TransportError> {
    // SAFETY: value is a valid T of the length given.
    let rc =
        unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, (value as *const T).cast(), size_of::<T>() as u32) };
    if rc < 0 {
        return Err(TransportError::last_os(what));
    }
    Ok(())
}

impl Transmit for RawTx {
    fn transmit(&mut self, frames: &[&[u8]]) -> Result<usize, TransportError> {
        // The IP route sends the packet without its Ethernet header, to the address inside it.
        let skip = if matches!(self.route, TxRoute::IpStack(_)) { ETH_HEADER } else { 0 };
        let mut iovs: Vec<libc::iovec> = frames
            .iter()
            .map(|f| libc::iovec { iov_base: f[skip..].as_ptr() as *mut libc::c_void, iov_len: f.len() - skip })
            .collect();
        let (mut v4_dests, mut v6_dests): (Vec<libc::sockaddr_in>, Vec<libc::sockaddr_in6>) = match self.route {
            TxRoute::IpStack(Family::V4) => (frames.iter().map(|f| sockaddr_in(&f[IPV4_DEST])).collect(), Vec::new()),
            TxRoute::IpStack(Family::V6 { scope_id }) => {
                (Vec::new(), frames.iter().map(|f| sockaddr_in6(&f[IPV6_DEST], scope_id)).collect())
            }
            TxRoute::Link(_) => (Vec::new(), Vec::new()),
        };
        // SAFETY: mmsghdr is plain data; all-zero is valid and the fields are set below.
        let mut msgs: Vec<libc::mmsghdr> = (0..frames.len()).map(|_| unsafe { zeroed() }).collect();
        for (i, (m, iov)) in msgs.iter_mut().zip(iovs.iter_mut()).enumerate() {
            match &mut self.route {
                TxRoute::Link(dest) => set_name(m, dest),
                TxRoute::IpStack(Family::V4) => set_name(m, &mut v4_dests[i]),
                TxRoute::IpStack(Family::V6 { .. }) => set_name(m, &mut v6_dests[i]),
            }
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
        }
        let (mut done, mut refused) = (0, 0);
        while done < msgs.len() {
            let rest = &mut msgs[done..];
            // SAFETY: every header points at live iovecs, frames and destination addresses.
            let n = unsafe { libc::sendmmsg(self.fd.as_raw_fd(), rest.as_mut_ptr(), rest.len() as u32, 0) };
            if n >= 0 {
                done += n as usize;
                continue;
            }
            let err = std::io::Error::last_os_error();
            match (err.raw_os_error(), &self.route) {
                (Some(libc::EINTR), _) => {}
                // The device queue is full: give the driver a moment rather than drop probes.
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
            let mut iovs: Vec<libc::iovec> = self
                .bufs
                .iter_mut()
                .map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: b.len() })
                .collect();
            let mut control = [[0u64; CONTROL_WORDS]; RX_BATCH];
            // SAFETY: mmsghdr is plain data; each header is pointed at one live buffer below.
            let mut msgs: Vec<libc::mmsghdr> = (0..RX_BATCH).map(|_| unsafe { zeroed() }).collect();
            for ((m, iov), c) in msgs.iter_mut().zip(iovs.iter_mut()).zip(control.iter_mut()) {
                m.msg_hdr.msg_iov = iov;
                m.msg_hdr.msg_iovlen = 1;
                m.msg_hdr.msg_control = c.as_mut_ptr().cast();
                m.msg_hdr.msg_controllen = size_of::<[u64; CONTROL_WORDS]>();
            }
            // SAFETY: RX_BATCH valid headers, non-blocking.
            let n = unsafe {
                libc::recvmmsg(
                    self.fd.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    RX_BATCH as u32,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if n < 0 {
                let err = std::io::Error::last_os_error();
                return match err.raw_os_error() {
                    Some(libc::EAGAIN | libc::EINTR) => Ok(total),
                    _ => Err(TransportError::Io { what: "receiving replies", source: err }),
                };
            }
            let n = n as usize;
            for (m, buf) in msgs[..n].iter().zip(&self.bufs) {
                on_frame(&buf[..(m.msg_len as usize).min(buf.len())], receive_time_ns(&m.msg_hdr));
            }
            total += n;
            if n < RX_BATCH {
                return Ok(total);
            }
        }
    }
}

/// The kernel's receive timestamp of a message, or now if it carries none.
fn receive_time_ns(hdr: &libc::msghdr) -> u64 {
    // SAFETY: hdr came back from recvmmsg with its control buffer filled in and
    // msg_controllen set to the bytes used; CMSG_* stay inside that buffer.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == SO_TIMESTAMPNS {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::timespec);
                return ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

impl Receive for RawRx {
    fn receive(&mut self, timeout: Duration, on_frame: &mut dyn FnMut(&[u8], u64)) -> Result<(), TransportError> {
        if self.drain(on_frame)? > 0 {
            // Replies are flowing: let a batch build up rather than waking for
            // every frame. The socket buffer holds them and each frame keeps
            // its kernel timestamp, so round-trip times lose nothing.
            std::thread::sleep(COALESCE);
            return Ok(());
        }
        let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let ms = timeout.as_millis().clamp(0, i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc < 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                return Ok(());
            }
            return Err(TransportError::Io { what: "waiting for replies", source: err });
        }
        if rc > 0 {
            self.drain(on_frame)?;
        }
        Ok(())
    }

    fn take_drops(&mut self) -> Drops {
        let mut stats = libc::tpacket_stats { tp_packets: 0, tp_drops: 0 };
        let mut len = size_of::<libc::tpacket_stats>() as u32;
        // SAFETY: stats and len are valid for writing; reading resets the kernel's counters.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut stats as *mut libc::tpacket_stats).cast(),
                &mut len,
            )
        };
        Drops { replies: if rc < 0 { 0 } else { u64::from(stats.tp_drops) }, probes: 0 }
    }
}
