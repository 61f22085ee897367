//! Where probes leave from: interface, source address and next-hop MAC,
//! taken from the kernel's routing and neighbour tables unless overridden.

pub mod arp;
pub mod interface;
pub mod netlink;

use std::net::Ipv4Addr;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum NetError {
    #[error("no route to {0}")]
    NoRoute(Ipv4Addr),
    #[error("the kernel refused a routing query: {0}")]
    Kernel(#[source] std::io::Error),
    #[error("malformed answer from the kernel: {0}")]
    Netlink(String),
    #[error("no such interface '{0}'")]
    NoInterface(String),
    #[error("cannot read the hardware address of {name}: {source}")]
    HardwareAddress {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("interface {0} has no IPv4 address to send from: give one with --source-ip")]
    NoSourceAddress(String),
    #[error(
        "interface {ifname} is not Ethernet (link type {link_type}): prtip sends Ethernet frames; scan through an Ethernet interface or loopback"
    )]
    NotEthernet { ifname: String, link_type: u16 },
    #[error("no ARP reply from next hop {hop} on {ifname}: give its MAC with --gateway-mac")]
    NextHopSilent { hop: Ipv4Addr, ifname: String },
    #[error(
        "targets {a} and {b} are reached through different interfaces ({ifa} and {ifb}): scan them separately or name one with --interface"
    )]
    MixedInterfaces { a: Ipv4Addr, b: Ipv4Addr, ifa: String, ifb: String },
    #[error(transparent)]
    Transport(#[from] crate::transport::TransportError),
}

/// Everything the frame template and the transport need about the way out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    pub ifindex: u32,
    pub ifname: String,
    pub src_ip: Ipv4Addr,
    pub src_mac: [u8; 6],
    pub next_hop_mac: [u8; 6],
    /// Probes go through the kernel's IP stack, which picks each next hop:
    /// for this host's own addresses and for hosts on the link itself.
    pub via_ip_stack: bool,
}

/// User overrides for path discovery.
#[derive(Debug, Clone, Default)]
pub struct PathOverrides {
    pub interface: Option<String>,
    pub source_ip: Option<Ipv4Addr>,
    pub gateway_mac: Option<[u8; 6]>,
}

/// Finds the way to `targets` (a sample of the scan's addresses: all must share it).
pub fn resolve_path(targets: &[Ipv4Addr], overrides: &PathOverrides) -> Result<Path, NetError> {
    let oif = match &overrides.interface {
        Some(name) => Some(interface::index(name)?),
        None => None,
    };
    let first = targets[0];
    let route = query_route(first, oif)?;
    let mut on_link = !route.local && route.gateway.is_none();
    for &other in &targets[1..] {
        let r = query_route(other, oif)?;
        if r.ifindex != route.ifindex {
            return Err(NetError::MixedInterfaces {
                a: first,
                b: other,
                ifa: interface::name(route.ifindex)?,
                ifb: interface::name(r.ifindex)?,
            });
        }
        on_link |= !r.local && r.gateway.is_none();
    }
    let ifname = interface::name(route.ifindex)?;
    let src_ip = overrides.source_ip.or(route.prefsrc).ok_or_else(|| NetError::NoSourceAddress(ifname.clone()))?;
    let (link_type, src_mac) = interface::hardware_address(&ifname)?;
    if link_type != libc::ARPHRD_ETHER && link_type != libc::ARPHRD_LOOPBACK {
        return Err(NetError::NotEthernet { ifname, link_type });
    }
    // Our own addresses, and hosts on the link itself, each need a next hop
    // of their own: the kernel's IP stack picks it (and ARPs) per probe.
    let via_ip_stack = overrides.gateway_mac.is_none() && (route.local || on_link);
    let next_hop_mac = match (overrides.gateway_mac, route.gateway) {
        (Some(mac), _) => mac,
        (None, Some(gateway)) if !via_ip_stack => match neighbour(route.ifindex, gateway)? {
            Some(mac) => mac,
            None => arp::resolve(route.ifindex, &ifname, src_mac, src_ip, gateway)?,
        },
        // The IP stack builds its own link header; this MAC is never used.
        (None, _) => [0; 6],
    };
    Ok(Path { ifindex: route.ifindex, ifname, src_ip, src_mac, next_hop_mac, via_ip_stack })
}

/// The interface of the default route: where a scan of the internet would go.
/// A routing-table lookup of a documentation address (RFC 5737): nothing is sent.
pub fn default_interface() -> Result<String, NetError> {
    interface::name(query_route(Ipv4Addr::new(198, 51, 100, 1), None)?.ifindex)
}

fn query_route(dst: Ipv4Addr, oif: Option<u32>) -> Result<netlink::Route, NetError> {
    let mut route = None;
    netlink::query(&netlink::route_request(dst, oif), |buf| {
        route = Some(netlink::parse_route(buf, dst)?);
        Ok(true)
    })?;
    route.ok_or(NetError::NoRoute(dst))
}

fn neighbour(ifindex: u32, ip: Ipv4Addr) -> Result<Option<[u8; 6]>, NetError> {
    let mut found = None;
    netlink::query(&netlink::neighbour_dump_request(ifindex), |buf| {
        let (mac, done) = netlink::parse_neighbours(buf, ip, ifindex)?;
        found = found.or(mac);
        Ok(done)
    })?;
    Ok(found)
}
