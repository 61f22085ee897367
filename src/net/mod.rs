//! Where probes leave from: interface, source address and next-hop MAC,
//! taken from the kernel's routing and neighbour tables unless overridden.

pub mod interface;
pub mod local_ports;
pub mod neighbour;
pub mod netlink;

use crate::wire::sources::Sources;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum NetError {
    #[error("no route to {0}")]
    NoRoute(IpAddr),
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
    #[error("interface {ifname} has no {} address to send from: give one with --source-ip", family_name(.target))]
    NoSourceAddress { ifname: String, target: IpAddr },
    #[error(
        "source address {source_ip} is {} but target {target} is {}: give a --source-ip of the targets' family",
        family_name(.source_ip),
        family_name(.target)
    )]
    SourceFamily { source_ip: IpAddr, target: IpAddr },
    #[error("targets {a} and {b} are of different address families: scan IPv4 and IPv6 separately")]
    MixedFamilies { a: IpAddr, b: IpAddr },
    #[error(
        "interface {ifname} is not Ethernet (link type {link_type}): prtip sends Ethernet frames; scan through an Ethernet interface or loopback"
    )]
    NotEthernet { ifname: String, link_type: u16 },
    #[error("no {} from next hop {hop} on {ifname}: give its MAC with --gateway-mac", answer_name(.hop))]
    NextHopSilent { hop: IpAddr, ifname: String },
    #[error(
        "targets {a} and {b} are reached through different interfaces ({ifa} and {ifb}): scan them separately or name one with --interface"
    )]
    MixedInterfaces { a: IpAddr, b: IpAddr, ifa: String, ifb: String },
    #[error(transparent)]
    Transport(#[from] crate::transport::TransportError),
}

/// Everything the frame template and the transport need about the way out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    pub ifindex: u32,
    pub ifname: String,
    /// Where probes leave from: the route's preferred source unless `--source-ip` gives others.
    pub sources: Sources,
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
    pub source_ip: Option<Sources>,
    pub gateway_mac: Option<[u8; 6]>,
}

fn family_name(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() { "IPv4" } else { "IPv6" }
}

fn answer_name(hop: &IpAddr) -> &'static str {
    if hop.is_ipv4() { "ARP reply" } else { "neighbour advertisement" }
}

/// Finds the way to `targets` (a sample of the scan's addresses, all of one
/// family): all must share it.
pub fn resolve_path(targets: &[IpAddr], overrides: &PathOverrides) -> Result<Path, NetError> {
    let first = targets[0];
    if let Some(&b) = targets.iter().find(|t| t.is_ipv4() != first.is_ipv4()) {
        return Err(NetError::MixedFamilies { a: first, b });
    }
    if let Some(sources) = overrides.source_ip.filter(|s| s.is_ipv4() != first.is_ipv4()) {
        return Err(NetError::SourceFamily { source_ip: sources.first(), target: first });
    }
    let oif = match &overrides.interface {
        Some(name) => Some(interface::index(name)?),
        None => None,
    };
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
    let sources = overrides
        .source_ip
        .or(route.prefsrc.map(Sources::one))
        .ok_or_else(|| NetError::NoSourceAddress { ifname: ifname.clone(), target: first })?;
    let (link_type, src_mac) = interface::hardware_address(&ifname)?;
    if link_type != libc::ARPHRD_ETHER && link_type != libc::ARPHRD_LOOPBACK {
        return Err(NetError::NotEthernet { ifname, link_type });
    }
    // Our own addresses, and hosts on the link itself, each need a next hop
    // of their own: the kernel's IP stack picks it (and resolves it) per probe.
    let via_ip_stack = overrides.gateway_mac.is_none() && (route.local || on_link);
    let next_hop_mac = match (overrides.gateway_mac, route.gateway) {
        (Some(mac), _) => mac,
        (None, Some(gateway)) if !via_ip_stack => match kernel_neighbour(route.ifindex, gateway)? {
            Some(mac) => mac,
            None => neighbour::resolve(route.ifindex, &ifname, src_mac, sources.first(), gateway)?,
        },
        // The IP stack builds its own link header; this MAC is never used.
        (None, _) => [0; 6],
    };
    Ok(Path { ifindex: route.ifindex, ifname, sources, src_mac, next_hop_mac, via_ip_stack })
}

/// The interface of the default route: where a scan of the internet would go.
/// A routing-table lookup of a documentation address (RFC 5737, RFC 3849): nothing is sent.
pub fn default_interface() -> Result<String, NetError> {
    // An IPv6-only host has no IPv4 route: then the interface IPv6 would leave by (RFC 3849).
    let route = query_route(Ipv4Addr::new(198, 51, 100, 1).into(), None)
        .or_else(|_| query_route(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).into(), None))?;
    interface::name(route.ifindex)
}

fn query_route(dst: IpAddr, oif: Option<u32>) -> Result<netlink::Route, NetError> {
    let mut route = None;
    netlink::query(&netlink::route_request(dst, oif), |buf| {
        route = Some(netlink::parse_route(buf, dst)?);
        Ok(true)
    })?;
    route.ok_or(NetError::NoRoute(dst))
}

fn kernel_neighbour(ifindex: u32, ip: IpAddr) -> Result<Option<[u8; 6]>, NetError> {
    let mut found = None;
    netlink::query(&netlink::neighbour_dump_request(ip, ifindex), |buf| {
        let (mac, done) = netlink::parse_neighbours(buf, ip, ifindex)?;
        found = found.or(mac);
        Ok(done)
    })?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_checked_before_asking_the_kernel() {
        let v6: IpAddr = "fd00:b::2".parse().unwrap();
        let v4: IpAddr = Ipv4Addr::new(10, 201, 0, 1).into();
        let wrong_source = PathOverrides { source_ip: Some(Sources::one(v4)), ..Default::default() };
        let e = resolve_path(&[v6], &wrong_source).unwrap_err();
        assert!(matches!(e, NetError::SourceFamily { source_ip, target } if source_ip == v4 && target == v6));
        assert_eq!(
            e.to_string(),
            "source address 10.201.0.1 is IPv4 but target fd00:b::2 is IPv6: give a --source-ip of the targets' family"
        );
        let e = resolve_path(&[v4, v6], &PathOverrides::default()).unwrap_err();
        assert!(matches!(e, NetError::MixedFamilies { a, b } if a == v4 && b == v6));
    }

    #[test]
    fn silence_names_the_protocol_that_went_unanswered() {
        let silent = |hop: &str| NetError::NextHopSilent { hop: hop.parse().unwrap(), ifname: "s0".into() }.to_string();
        assert_eq!(
            silent("10.200.0.2"),
            "no ARP reply from next hop 10.200.0.2 on s0: give its MAC with --gateway-mac"
        );
        assert_eq!(
            silent("fe80::1"),
            "no neighbour advertisement from next hop fe80::1 on s0: give its MAC with --gateway-mac"
        );
    }
}
