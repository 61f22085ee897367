//! Route and neighbour look-ups over rtnetlink: what the kernel would do with a
//! packet to an address, and the link-layer address of a next hop.
//!
//! Message building and parsing are pure functions; `query` is the only I/O.

use super::NetError;
use std::mem::size_of;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NLMSG_HDR: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const RTM_NEWNEIGH: u16 = 28;
const RTM_GETNEIGH: u16 = 30;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PREFSRC: u16 = 7;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
const RTN_UNICAST: u8 = 1;
const RTN_LOCAL: u8 = 2;
/// A subnet's broadcast address: on the link, like a unicast route without a gateway.
const RTN_BROADCAST: u8 = 3;
/// Neighbour states whose link-layer address can be used (reachable, stale, delay, probe, noarp, permanent).
const NUD_USABLE: u16 = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80;

/// What the kernel's routing table says about one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub ifindex: u32,
    pub gateway: Option<Ipv4Addr>,
    pub prefsrc: Option<Ipv4Addr>,
    /// The destination is one of this host's own addresses.
    pub local: bool,
}

pub fn route_request(dst: Ipv4Addr, oif: Option<u32>) -> Vec<u8> {
    let mut body = vec![libc::AF_INET as u8, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    push_attr(&mut body, RTA_DST, &dst.octets());
    if let Some(oif) = oif {
        push_attr(&mut body, RTA_OIF, &oif.to_ne_bytes());
    }
    message(RTM_GETROUTE, libc::NLM_F_REQUEST as u16, &body)
}

pub fn neighbour_dump_request(ifindex: u32) -> Vec<u8> {
    let mut body = vec![libc::AF_INET as u8, 0, 0, 0];
    body.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    body.extend_from_slice(&[0; 4]);
    message(RTM_GETNEIGH, (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16, &body)
}

fn message(kind: u16, flags: u16, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(NLMSG_HDR + body.len());
    m.extend_from_slice(&((NLMSG_HDR + body.len()) as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // sequence number
    m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    m.extend_from_slice(body);
    m
}

fn push_attr(buf: &mut Vec<u8>, kind: u16, data: &[u8]) {
    buf.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(data);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

/// Splits a datagram into (type, body) messages; an error message becomes `Err`.
fn messages(buf: &[u8]) -> impl Iterator<Item = Result<(u16, &[u8]), NetError>> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.len() < NLMSG_HDR {
            return None;
        }
        let len = u32::from_ne_bytes(rest[0..4].try_into().ok()?) as usize;
        if len < NLMSG_HDR || len > rest.len() {
            rest = &[];
            return Some(Err(NetError::Netlink("truncated netlink message".into())));
        }
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        let body = &rest[NLMSG_HDR..len];
        rest = &rest[len.next_multiple_of(4).min(rest.len())..];
        if kind == NLMSG_ERROR {
            let errno = body.get(..4).map_or(0, |b| i32::from_ne_bytes(b.try_into().expect("four bytes")));
            if errno != 0 {
                return Some(Err(NetError::Kernel(std::io::Error::from_raw_os_error(-errno))));
            }
        }
        Some(Ok((kind, body)))
    })
}

fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        if len < 4 || len > buf.len() {
            return None;
        }
        let item = (u16::from_ne_bytes([buf[2], buf[3]]), &buf[4..len]);
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
        Some(item)
    })
}

fn v4(data: &[u8]) -> Option<Ipv4Addr> {
    <[u8; 4]>::try_from(data).ok().map(Ipv4Addr::from)
}

pub fn parse_route(buf: &[u8], dst: Ipv4Addr) -> Result<Route, NetError> {
    for msg in messages(buf) {
        let (kind, body) = msg?;
        if kind != RTM_NEWROUTE || body.len() < 12 {
            continue;
        }
        let rtype = body[7];
        if rtype != RTN_UNICAST && rtype != RTN_LOCAL && rtype != RTN_BROADCAST {
            return Err(NetError::NoRoute(dst));
        }
        let mut route = Route { ifindex: 0, gateway: None, prefsrc: None, local: rtype == RTN_LOCAL };
        for (kind, data) in attrs(&body[12..]) {
            match kind {
                RTA_OIF => route.ifindex = data.try_into().map(u32::from_ne_bytes).unwrap_or(0),
                RTA_GATEWAY => route.gateway = v4(data),
                RTA_PREFSRC => route.prefsrc = v4(data),
                _ => {}
            }
        }
        if route.ifindex == 0 {
            return Err(NetError::NoRoute(dst));
        }
        return Ok(route);
    }
    Err(NetError::NoRoute(dst))
}

/// Looks for a usable entry for `ip` on interface `ifindex` in one datagram
/// of a neighbour dump (which may list every interface's entries).
/// Returns `(found, done)`: done is true once the dump's last message was seen.
pub fn parse_neighbours(buf: &[u8], ip: Ipv4Addr, ifindex: u32) -> Result<(Option<[u8; 6]>, bool), NetError> {
    let mut found = None;
    for msg in messages(buf) {
        let (kind, body) = msg?;
        if kind == NLMSG_DONE {
            return Ok((found, true));
        }
        if kind != RTM_NEWNEIGH || body.len() < 12 {
            continue;
        }
        let state = u16::from_ne_bytes([body[8], body[9]]);
        let on = u32::from_ne_bytes([body[4], body[5], body[6], body[7]]);
        if state & NUD_USABLE == 0 || on != ifindex {
            continue;
        }
        let (mut dst, mut mac) = (None, None);
        for (kind, data) in attrs(&body[12..]) {
            match kind {
                NDA_DST => dst = v4(data),
                NDA_LLADDR => mac = <[u8; 6]>::try_from(data).ok(),
                _ => {}
            }
        }
        if dst == Some(ip) && mac.is_some() {
            found = mac;
        }
    }
    Ok((found, false))
}

/// Sends one request and feeds every reply datagram to `on_reply` until it returns `true`.
pub fn query(request: &[u8], mut on_reply: impl FnMut(&[u8]) -> Result<bool, NetError>) -> Result<(), NetError> {
    // SAFETY: plain socket(2) call; the descriptor is owned right below.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
    if fd < 0 {
        return Err(NetError::Kernel(std::io::Error::last_os_error()));
    }
    // SAFETY: fd is fresh and owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_nl is plain data; zero means "the kernel".
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: the buffers and the address are valid for the lengths given.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            request.as_ptr().cast(),
            request.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if sent < 0 {
        return Err(NetError::Kernel(std::io::Error::last_os_error()));
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: buf is valid for writing buf.len() bytes.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(NetError::Kernel(std::io::Error::last_os_error()));
        }
        if on_reply(&buf[..n as usize])? {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route_reply(rtype: u8, attrs_: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = vec![2, 32, 0, 0, 254, 0, 0, rtype, 0, 0, 0, 0];
        for (k, d) in attrs_ {
            push_attr(&mut body, *k, d);
        }
        message(RTM_NEWROUTE, 0, &body)
    }

    const DST: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 1);

    #[test]
    fn request_is_a_well_formed_message() {
        let m = route_request(DST, Some(7));
        assert_eq!(m.len(), 16 + 12 + 8 + 8);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize, m.len());
        assert_eq!(&m[28..36], &[8, 0, 1, 0, 10, 201, 0, 1][..]);
    }

    #[test]
    fn parses_a_gatewayed_route() {
        let buf = route_reply(
            RTN_UNICAST,
            &[
                (RTA_DST, &[10, 201, 0, 1]),
                (RTA_OIF, &3u32.to_ne_bytes()),
                (RTA_GATEWAY, &[10, 200, 0, 2]),
                (RTA_PREFSRC, &[10, 200, 0, 1]),
            ],
        );
        assert_eq!(
            parse_route(&buf, DST).unwrap(),
            Route {
                ifindex: 3,
                gateway: Some(Ipv4Addr::new(10, 200, 0, 2)),
                prefsrc: Some(Ipv4Addr::new(10, 200, 0, 1)),
                local: false,
            }
        );
    }

    #[test]
    fn local_routes_are_marked_and_unreachable_ones_refused() {
        let local = route_reply(RTN_LOCAL, &[(RTA_OIF, &1u32.to_ne_bytes())]);
        assert!(parse_route(&local, DST).unwrap().local);
        let unreachable = route_reply(7, &[(RTA_OIF, &1u32.to_ne_bytes())]);
        assert!(matches!(parse_route(&unreachable, DST), Err(NetError::NoRoute(_))));
    }

    #[test]
    fn kernel_errors_and_garbage_do_not_panic() {
        let mut err = message(NLMSG_ERROR, 0, &(-libc::ENETUNREACH).to_ne_bytes());
        assert!(matches!(parse_route(&err, DST), Err(NetError::Kernel(_))));
        err.truncate(10);
        assert!(parse_route(&err, DST).is_err());
        for n in 0..64 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 37 + n) as u8).collect();
            let _ = parse_route(&junk, DST);
            let _ = parse_neighbours(&junk, DST, 3);
        }
    }

    #[test]
    fn finds_a_usable_neighbour_only() {
        let neigh = |state: u16, ip: [u8; 4], mac: [u8; 6]| {
            let mut body = vec![2, 0, 0, 0, 3, 0, 0, 0];
            body.extend_from_slice(&state.to_ne_bytes());
            body.extend_from_slice(&[0, 1]);
            push_attr(&mut body, NDA_DST, &ip);
            push_attr(&mut body, NDA_LLADDR, &mac);
            message(RTM_NEWNEIGH, 2, &body)
        };
        let gw = Ipv4Addr::new(10, 200, 0, 2);
        let mut buf = neigh(0x20, [10, 200, 0, 2], [9; 6]); // failed
        buf.extend(neigh(0x02, [10, 200, 0, 3], [8; 6])); // another host
        assert_eq!(parse_neighbours(&buf, gw, 3).unwrap(), (None, false));
        buf.extend(neigh(0x80, [10, 200, 0, 2], [7; 6]));
        buf.extend(message(NLMSG_DONE, 2, &[0; 4]));
        assert_eq!(parse_neighbours(&buf, gw, 3).unwrap(), (Some([7; 6]), true));
        assert_eq!(parse_neighbours(&buf, gw, 4).unwrap(), (None, true), "another interface's entry");
    }
}
