//! Asks the next hop for its MAC when the kernel has no neighbour entry for it.

use super::NetError;
use crate::transport::TransportError;
use crate::wire::arp;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

const ATTEMPTS: u32 = 3;
const ATTEMPT_WAIT: Duration = Duration::from_millis(300);

pub fn resolve(
    ifindex: u32,
    ifname: &str,
    src_mac: [u8; 6],
    src_ip: Ipv4Addr,
    hop: Ipv4Addr,
) -> Result<[u8; 6], NetError> {
    tracing::debug!(%hop, ifname, "next hop not in the neighbour table: resolving it with ARP");
    let proto = (libc::ETH_P_ARP as u16).to_be();
    // SAFETY: plain socket(2) call; owned right below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, i32::from(proto)) };
    if fd < 0 {
        return Err(TransportError::last_os("resolving the next hop with ARP").into());
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
        return Err(TransportError::last_os("binding the ARP socket").into());
    }
    let request = arp::request(src_mac, src_ip, hop);
    let mut buf = [0u8; 128];
    for _ in 0..ATTEMPTS {
        // SAFETY: request is a valid buffer; the socket is bound, so no address is needed.
        if unsafe { libc::send(fd.as_raw_fd(), request.as_ptr().cast(), request.len(), 0) } < 0 {
            return Err(TransportError::last_os("sending an ARP request").into());
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
                && let Some(mac) = arp::reply_from(&buf[..n as usize], hop)
            {
                return Ok(mac);
            }
        }
    }
    Err(NetError::NextHopSilent { hop, ifname: ifname.to_string() })
}
