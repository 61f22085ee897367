//! Asks the next hop for its MAC when the kernel has no neighbour entry for
//! it: with ARP for IPv4, with neighbour discovery (RFC 4861) for IPv6.

use super::NetError;
use crate::sys;
use crate::transport::TransportError;
use crate::wire::{arp, ndp};
use std::net::IpAddr;
use std::os::fd::AsFd;
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
    let proto = ethertype as u16;
    let fd = sys::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto.to_be()))
        .map_err(|e| TransportError::os("opening a socket to resolve the next hop", e))?;
    sys::bind(fd.as_fd(), &sys::link_address(ifindex, proto))
        .map_err(|e| TransportError::os("binding the next-hop resolution socket", e))?;
    // Room for any frame on a standard MTU: an advertisement may carry options after the one we need.
    let mut buf = [0u8; 1536];
    for _ in 0..ATTEMPTS {
        // The socket is bound, so no address is needed.
        sys::send(fd.as_fd(), request).map_err(|e| TransportError::os("sending a next-hop resolution request", e))?;
        let deadline = Instant::now() + ATTEMPT_WAIT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if !matches!(sys::wait_readable(fd.as_fd(), left.as_millis() as i32 + 1), Ok(true)) {
                continue;
            }
            if let Ok(n @ 1..) = sys::recv(fd.as_fd(), &mut buf, libc::MSG_DONTWAIT)
                && let Some(mac) = answer(&buf[..n])
            {
                return Ok(Some(mac));
            }
        }
    }
    Ok(None)
}
