//! Asks the next hop for its MAC when the kernel has no neighbour entry for
//! it: with ARP for IPv4, with neighbour discovery (RFC 4861) for IPv6.

use super::NetError;
use crate::transport::TransportError;
use crate::wire::{arp, ndp};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

const ATTEMPTS: u32 = 3;
const ATTEMPT_WAIT: Duration = Duration::from_millis(300);

pub fn resolve(ifindex: u32, ifname: &str, src_mac: [u8; 6], src_ip: IpAddr, hop: IpAddr) -> Result<[u8; 6], NetError> {
    let answer = match (src_ip, hop) {
        (IpAddr::V4(src), IpAddr::V4(h)) => {
            tracing::debug!(%hop, ifname, "next hop not in the neighbour table: resolving it with ARP");
            ask(ifindex, libc::ETH_P_ARP, &arp::request(src_mac, src, h), |f| arp::reply_from(f, h))?
        }
        (IpAddr::V6(src), IpAddr::V6(h)) => {
            tracing::debug!(%hop, ifname, "next hop not in the neighbour table: soliciting it");
            // Every IPv6 frame on the link reaches this socket: the
            // advertisement comes back to our unicast address like any packet.
            ask(ifindex, libc::ETH_P_IPV6, &ndp::solicitation(src_mac, src, h), |f| ndp::advertisement_from(f, h))?
        }
        _ => return Err(NetError::SourceFamily { source_ip: src_ip, target: hop }),
    };
    answer.ok_or_else(|| NetError::NextHopSilent { hop, ifname: ifname.to_string() })
}

/// Sends `request` on a packet socket for `ethertype` up to `ATTEMPTS` times
/// and returns the first MAC that `answer` finds in a received frame.
fn ask(
    ifindex: u32,
    ethertype: i32,
    request: &[u8],
    answer: impl Fn(&[u8]) -> Option<[u8; 6]>,
) -> Result<Option<[u8; 6]>, NetError> {
    let proto = (ethertype as u16).to_be();
    // SAFETY: plain socket(2) call; owned right below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, i32::from(proto)) };
    if fd < 0 {
        return Err(TransportError::last_os("opening a socket to resolve the next hop").into());
    }
    // SAFETY: fd is fresh and owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; all-zero is valid.
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_protocol = proto;
    sa.sll_ifindex = ifindex as i32;
    let sa_len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
    // SAFETY: sa is a valid sockaddr_ll.
    if unsafe { libc::bind(fd.as_raw_fd(), (&sa as *const libc::sockaddr_ll).cast(), sa_len) } < 0 {
        return Err(TransportError::last_os("binding the next-hop resolution socket").into());
    }
    // Room for any frame on a standard MTU: an advertisement may carry options after the one we need.
    let mut buf = [0u8; 1536];
    for _ in 0..ATTEMPTS {
        // SAFETY: request is a valid buffer; the socket is bound, so no address is needed.
        if unsafe { libc::send(fd.as_raw_fd(), request.as_ptr().cast(), request.len(), 0) } < 0 {
            return Err(TransportError::last_os("sending a next-hop resolution request").into());
        }
        let deadline = Instant::now() + ATTEMPT_WAIT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd.
            if unsafe { libc::poll(&mut pfd, 1, left.as_millis() as i32 + 1) } <= 0 {
                continue;
            }
            // SAFETY: buf is valid for writing its length.
            let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
            if n > 0
                && let Some(mac) = answer(&buf[..n as usize])
            {
                return Ok(Some(mac));
            }
        }
    }
    Ok(None)
}
