//! Route and neighbour look-ups over rtnetlink: what the kernel would do with a
//! packet to an address, and the link-layer address of a next hop.
//!
//! Message building and parsing are pure functions; `query` is the only I/O.

use super::NetError;
use crate::sys;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsFd;

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
    pub gateway: Option<IpAddr>,
    /// The source address the kernel would pick. For IPv6 the kernel has no
    /// preferred source on most routes, but `RTM_GETROUTE` for one
    /// destination runs source address selection (RFC 6724, skipping
    /// tentative addresses) and reports its choice as `RTA_PREFSRC` too:
    /// what `ip -6 route get` shows as `src`.
    pub prefsrc: Option<IpAddr>,
    /// The destination is one of this host's own addresses.
    pub local: bool,
}

fn family(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => libc::AF_INET as u8,
        IpAddr::V6(_) => libc::AF_INET6 as u8,
    }
}

/// Asks how the kernel would route a packet to `dst` alone (a full-length prefix).
pub fn route_request(dst: IpAddr, oif: Option<u32>) -> Vec<u8> {
    let dst_bits = if dst.is_ipv4() { 32 } else { 128 };
    let mut body = vec![family(dst), dst_bits, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let (dst_bytes, len) = crate::wire::addr_bytes(dst);
    push_attr(&mut body, RTA_DST, &dst_bytes[..len]);
    if let Some(oif) = oif {
        push_attr(&mut body, RTA_OIF, &oif.to_ne_bytes());
    }
    message(RTM_GETROUTE, libc::NLM_F_REQUEST as u16, &body)
}

/// Lists interface `ifindex`'s neighbour table of `ip`'s family (ARP or NDP).
pub fn neighbour_dump_request(ip: IpAddr, ifindex: u32) -> Vec<u8> {
    let mut body = vec![family(ip), 0, 0, 0];
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

/// An address attribute of the same family as `like`; None for any other length.
fn addr_like(like: IpAddr, data: &[u8]) -> Option<IpAddr> {
    match like {
        IpAddr::V4(_) => <[u8; 4]>::try_from(data).ok().map(|b| Ipv4Addr::from(b).into()),
        IpAddr::V6(_) => <[u8; 16]>::try_from(data).ok().map(|b| Ipv6Addr::from(b).into()),
    }
}

pub fn parse_route(buf: &[u8], dst: IpAddr) -> Result<Route, NetError> {
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
                RTA_GATEWAY => route.gateway = addr_like(dst, data),
                RTA_PREFSRC => route.prefsrc = addr_like(dst, data),
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
pub fn parse_neighbours(buf: &[u8], ip: IpAddr, ifindex: u32) -> Result<(Option<[u8; 6]>, bool), NetError> {
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
                NDA_DST => dst = addr_like(ip, data),
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
    let fd = sys::socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE).map_err(NetError::Kernel)?;
    // Port 0: the kernel.
    let mut kernel: libc::sockaddr_nl = sys::zeroed();
    kernel.nl_family = libc::AF_NETLINK as u16;
    sys::send_to(fd.as_fd(), request, &kernel).map_err(NetError::Kernel)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = sys::recv(fd.as_fd(), &mut buf, 0).map_err(NetError::Kernel)?;
        if on_reply(&buf[..n])? {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route_reply(family: u8, rtype: u8, attrs_: &[(u16, &[u8])]) -> Vec<u8> {
        let dst_bits = if family == libc::AF_INET as u8 { 32 } else { 128 };
        let mut body = vec![family, dst_bits, 0, 0, 254, 0, 0, rtype, 0, 0, 0, 0];
        for (k, d) in attrs_ {
            push_attr(&mut body, *k, d);
        }
        message(RTM_NEWROUTE, 0, &body)
    }

    const DST: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 201, 0, 1));
    const V4: u8 = libc::AF_INET as u8;
    const V6: u8 = libc::AF_INET6 as u8;

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn request_is_a_well_formed_message() {
        let m = route_request(DST, Some(7));
        assert_eq!(m.len(), 16 + 12 + 8 + 8);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize, m.len());
        assert_eq!(&m[16..18], &[V4, 32][..]);
        assert_eq!(&m[28..36], &[8, 0, 1, 0, 10, 201, 0, 1][..]);
    }

    #[test]
    fn ipv6_request_asks_for_the_whole_address() {
        let dst = v6("fd00:b::2");
        let m = route_request(dst.into(), None);
        assert_eq!(m.len(), 16 + 12 + 20);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize, m.len());
        assert_eq!(&m[16..18], &[V6, 128][..]);
        assert_eq!(&m[28..32], &[20, 0, 1, 0][..]);
        assert_eq!(&m[32..48], &dst.octets()[..]);
        let n = neighbour_dump_request(dst.into(), 3);
        assert_eq!((n[16], &n[20..24]), (V6, &3i32.to_ne_bytes()[..]));
        assert_eq!(neighbour_dump_request(DST, 3)[16], V4);
    }

    #[test]
    fn parses_a_gatewayed_route() {
        let buf = route_reply(
            V4,
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
                gateway: Some(Ipv4Addr::new(10, 200, 0, 2).into()),
                prefsrc: Some(Ipv4Addr::new(10, 200, 0, 1).into()),
                local: false,
            }
        );
    }

    #[test]
    fn parses_a_gatewayed_ipv6_route() {
        let dst = v6("fd00:b::2");
        // What Linux 6.18 answers `ip -6 route get fd00:b::2` behind `via fd00:a::2`,
        // attribute for attribute: table, destination, an all-zero RTA_SRC,
        // the chosen source, priority, gateway, interface, cache info, preference.
        let buf = route_reply(
            V6,
            RTN_UNICAST,
            &[
                (15, &254u32.to_ne_bytes()),
                (RTA_DST, &dst.octets()),
                (2, &[0; 16]),
                (RTA_PREFSRC, &v6("fd00:a::1").octets()),
                (6, &1024u32.to_ne_bytes()),
                (RTA_GATEWAY, &v6("fd00:a::2").octets()),
                (RTA_OIF, &2u32.to_ne_bytes()),
                (12, &[0; 32]),
                (20, &[0]),
            ],
        );
        assert_eq!(
            parse_route(&buf, dst.into()).unwrap(),
            Route {
                ifindex: 2,
                gateway: Some(v6("fd00:a::2").into()),
                prefsrc: Some(v6("fd00:a::1").into()),
                local: false,
            }
        );
    }

    #[test]
    fn addresses_of_the_wrong_length_are_ignored() {
        let dst = v6("fd00:b::2");
        let buf = route_reply(
            V6,
            RTN_UNICAST,
            &[(RTA_OIF, &2u32.to_ne_bytes()), (RTA_GATEWAY, &[10, 200, 0, 2]), (RTA_PREFSRC, &[1; 15])],
        );
        assert_eq!(
            parse_route(&buf, dst.into()).unwrap(),
            Route { ifindex: 2, gateway: None, prefsrc: None, local: false }
        );
        let buf = route_reply(V4, RTN_UNICAST, &[(RTA_OIF, &2u32.to_ne_bytes()), (RTA_GATEWAY, &dst.octets())]);
        assert_eq!(parse_route(&buf, DST).unwrap().gateway, None);
    }

    #[test]
    fn local_routes_are_marked_and_unreachable_ones_refused() {
        let local = route_reply(V4, RTN_LOCAL, &[(RTA_OIF, &1u32.to_ne_bytes())]);
        assert!(parse_route(&local, DST).unwrap().local);
        let unreachable = route_reply(V4, 7, &[(RTA_OIF, &1u32.to_ne_bytes())]);
        assert!(matches!(parse_route(&unreachable, DST), Err(NetError::NoRoute(_))));
        let me = IpAddr::from(v6("fd00:a::1"));
        let local =
            route_reply(V6, RTN_LOCAL, &[(RTA_OIF, &1u32.to_ne_bytes()), (RTA_PREFSRC, &v6("fd00:a::1").octets())]);
        assert!(parse_route(&local, me).unwrap().local);
        let unreachable = route_reply(V6, 7, &[(RTA_OIF, &1u32.to_ne_bytes())]);
        assert!(matches!(parse_route(&unreachable, me), Err(NetError::NoRoute(a)) if a == me));
    }

    #[test]
    fn kernel_errors_and_garbage_do_not_panic() {
        let mut err = message(NLMSG_ERROR, 0, &(-libc::ENETUNREACH).to_ne_bytes());
        assert!(matches!(parse_route(&err, DST), Err(NetError::Kernel(_))));
        err.truncate(10);
        assert!(parse_route(&err, DST).is_err());
        let six = IpAddr::from(v6("fd00:a::2"));
        for n in 0..64 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 37 + n) as u8).collect();
            let _ = parse_route(&junk, DST);
            let _ = parse_neighbours(&junk, DST, 3);
            let _ = parse_route(&junk, six);
            let _ = parse_neighbours(&junk, six, 3);
        }
    }

    fn neigh(family: u8, state: u16, ip: &[u8], mac: [u8; 6]) -> Vec<u8> {
        let mut body = vec![family, 0, 0, 0, 3, 0, 0, 0];
        body.extend_from_slice(&state.to_ne_bytes());
        body.extend_from_slice(&[0, 1]);
        push_attr(&mut body, NDA_DST, ip);
        push_attr(&mut body, NDA_LLADDR, &mac);
        message(RTM_NEWNEIGH, 2, &body)
    }

    #[test]
    fn finds_a_usable_neighbour_only() {
        let gw = IpAddr::V4(Ipv4Addr::new(10, 200, 0, 2));
        let mut buf = neigh(V4, 0x20, &[10, 200, 0, 2], [9; 6]); // failed
        buf.extend(neigh(V4, 0x02, &[10, 200, 0, 3], [8; 6])); // another host
        assert_eq!(parse_neighbours(&buf, gw, 3).unwrap(), (None, false));
        buf.extend(neigh(V4, 0x80, &[10, 200, 0, 2], [7; 6]));
        buf.extend(message(NLMSG_DONE, 2, &[0; 4]));
        assert_eq!(parse_neighbours(&buf, gw, 3).unwrap(), (Some([7; 6]), true));
        assert_eq!(parse_neighbours(&buf, gw, 4).unwrap(), (None, true), "another interface's entry");
    }

    #[test]
    fn finds_a_usable_ipv6_neighbour_only() {
        let gw = v6("fe80::2");
        let mut buf = neigh(V6, 0x01, &gw.octets(), [9; 6]); // incomplete: still soliciting
        buf.extend(neigh(V6, 0x20, &gw.octets(), [9; 6])); // failed
        buf.extend(neigh(V6, 0x02, &v6("fe80::3").octets(), [8; 6])); // another host
        assert_eq!(parse_neighbours(&buf, gw.into(), 3).unwrap(), (None, false));
        // Stale is usable: the kernel itself sends to it, and confirms it meanwhile.
        buf.extend(neigh(V6, 0x04, &gw.octets(), [7; 6]));
        buf.extend(message(NLMSG_DONE, 2, &[0; 4]));
        assert_eq!(parse_neighbours(&buf, gw.into(), 3).unwrap(), (Some([7; 6]), true));
        // The IPv4 address whose bytes begin the IPv6 one is not it.
        assert_eq!(parse_neighbours(&buf, Ipv4Addr::new(0xfe, 0x80, 0, 0).into(), 3).unwrap(), (None, true));
    }
}
