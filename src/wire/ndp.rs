//! Neighbor Solicitation and Advertisement frames (RFC 4861), the IPv6
//! counterpart of ARP, for a next hop the kernel has no entry for.

use super::checksum;
use std::net::Ipv6Addr;

const ETH_LEN: usize = 14;
const IPV6_LEN: usize = 40;
/// Type, code, checksum, 4 bytes of flags or reserved, target address.
const MESSAGE_LEN: usize = 24;
/// A link-layer address option for Ethernet: type, length in 8-byte units, MAC.
const LINK_OPTION_LEN: usize = 8;
const ICMPV6: u8 = 58;
const NEIGHBOR_SOLICITATION: u8 = 135;
const NEIGHBOR_ADVERTISEMENT: u8 = 136;
const SOURCE_LINK_ADDRESS: u8 = 1;
const TARGET_LINK_ADDRESS: u8 = 2;
/// Nodes accept neighbour discovery only with hop limit 255: proof that it
/// was sent on the link itself, not routed in from afar (RFC 4861 7.1).
const LINK_HOP_LIMIT: u8 = 255;

pub const SOLICITATION_FRAME_LEN: usize = ETH_LEN + IPV6_LEN + MESSAGE_LEN + LINK_OPTION_LEN;

/// The solicited-node multicast group of `target` (RFC 4291 2.7.1): only
/// nodes whose addresses end in the same 24 bits listen to it.
fn solicited_node(target: Ipv6Addr) -> Ipv6Addr {
    let t = target.octets();
    Ipv6Addr::from([0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, t[13], t[14], t[15]])
}

/// The ICMPv6 checksum: over a pseudo-header of both addresses, the length and the next header (RFC 8200 8.1).
fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, message: &[u8]) -> u16 {
    let mut sum = checksum::add(0, &src.octets());
    sum = checksum::add(sum, &dst.octets());
    sum = checksum::add(sum, &(message.len() as u32).to_be_bytes());
    sum = checksum::add(sum, &[0, 0, 0, ICMPV6]);
    checksum::finish(checksum::add(sum, message))
}

/// A Neighbor Solicitation from `src_ip` (at `src_mac`) asking for `target`'s link-layer address.
pub fn solicitation(src_mac: [u8; 6], src_ip: Ipv6Addr, target: Ipv6Addr) -> [u8; SOLICITATION_FRAME_LEN] {
    let dst_ip = solicited_node(target);
    let mut f = [0u8; SOLICITATION_FRAME_LEN];
    let d = dst_ip.octets();
    // IPv6 multicast maps to Ethernet 33:33 and the group's last four bytes (RFC 2464 7).
    f[0..6].copy_from_slice(&[0x33, 0x33, d[12], d[13], d[14], d[15]]);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    let ip = &mut f[ETH_LEN..ETH_LEN + IPV6_LEN];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&((MESSAGE_LEN + LINK_OPTION_LEN) as u16).to_be_bytes());
    ip[6] = ICMPV6;
    ip[7] = LINK_HOP_LIMIT;
    ip[8..24].copy_from_slice(&src_ip.octets());
    ip[24..40].copy_from_slice(&d);
    let m = &mut f[ETH_LEN + IPV6_LEN..];
    m[0] = NEIGHBOR_SOLICITATION;
    m[8..24].copy_from_slice(&target.octets());
    // The target learns our MAC from this option and can answer without soliciting us in turn.
    m[24] = SOURCE_LINK_ADDRESS;
    m[25] = 1;
    m[26..32].copy_from_slice(&src_mac);
    let sum = icmpv6_checksum(src_ip, dst_ip, m);
    m[2..4].copy_from_slice(&sum.to_be_bytes());
    f
}

/// The hardware address in a Neighbor Advertisement for `target`, if `frame`
/// is a valid one (RFC 4861 7.1.2) that carries a unicast Ethernet address.
pub fn advertisement_from(frame: &[u8], target: Ipv6Addr) -> Option<[u8; 6]> {
    if frame.get(12..14)? != [0x86, 0xdd] {
        return None;
    }
    let ip = frame.get(ETH_LEN..ETH_LEN + IPV6_LEN)?;
    if ip[0] >> 4 != 6 || ip[6] != ICMPV6 || ip[7] != LINK_HOP_LIMIT {
        return None;
    }
    // The IPv6 length, not the frame's: Ethernet pads short frames.
    let len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    let m = frame.get(ETH_LEN + IPV6_LEN..ETH_LEN + IPV6_LEN + len)?;
    if len < MESSAGE_LEN || m[0] != NEIGHBOR_ADVERTISEMENT || m[1] != 0 || m[8..24] != target.octets() {
        return None;
    }
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[8..24]).ok()?);
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[24..40]).ok()?);
    if icmpv6_checksum(src, dst, m) != 0 {
        return None;
    }
    let mut mac = None;
    let mut options = &m[MESSAGE_LEN..];
    while !options.is_empty() {
        let size = usize::from(*options.get(1)?) * 8;
        // A zero length would loop forever; RFC 4861 says to drop the whole message.
        if size == 0 || size > options.len() {
            return None;
        }
        if options[0] == TARGET_LINK_ADDRESS && size == LINK_OPTION_LEN {
            mac = Some(<[u8; 6]>::try_from(&options[2..8]).ok()?);
        }
        options = &options[size..];
    }
    // A group address would scatter every probe over the link.
    mac.filter(|m| m[0] & 1 == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ME: [u8; 6] = [2, 0, 0, 0, 0xa0, 1];
    const HOP_MAC: [u8; 6] = [2, 0, 0, 0, 0xa0, 2];

    fn me() -> Ipv6Addr {
        "fd00:a::1".parse().unwrap()
    }

    fn hop() -> Ipv6Addr {
        "fd00:a::2:3".parse().unwrap()
    }

    /// An advertisement from the hop to us, as the kernel answers a solicitation, checksummed.
    fn advertisement(options: &[u8]) -> Vec<u8> {
        let mut m = vec![NEIGHBOR_ADVERTISEMENT, 0, 0, 0, 0x60, 0, 0, 0];
        m.extend_from_slice(&hop().octets());
        m.extend_from_slice(options);
        let sum = icmpv6_checksum(hop(), me(), &m);
        m[2..4].copy_from_slice(&sum.to_be_bytes());
        let mut f = Vec::new();
        f.extend_from_slice(&ME);
        f.extend_from_slice(&HOP_MAC);
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&(m.len() as u16).to_be_bytes());
        f.extend_from_slice(&[ICMPV6, 255]);
        f.extend_from_slice(&hop().octets());
        f.extend_from_slice(&me().octets());
        f.extend_from_slice(&m);
        f
    }

    fn tlla(mac: [u8; 6]) -> [u8; 8] {
        [TARGET_LINK_ADDRESS, 1, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]]
    }

    #[test]
    fn solicitation_is_byte_exact() {
        let f = solicitation(ME, me(), hop());
        #[rustfmt::skip]
        let want: [u8; SOLICITATION_FRAME_LEN] = [
            0x33, 0x33, 0xff, 0x02, 0x00, 0x03, 2, 0, 0, 0, 0xa0, 1, 0x86, 0xdd,
            0x60, 0, 0, 0, 0, 32, 58, 255,
            0xfd, 0, 0, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
            0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0x02, 0x00, 0x03,
            135, 0, 0xdd, 0x7c, 0, 0, 0, 0,
            0xfd, 0, 0, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 3,
            1, 1, 2, 0, 0, 0, 0xa0, 1,
        ];
        assert_eq!(f, want);
    }

    #[test]
    fn solicitation_is_what_etherparse_reads_with_a_valid_checksum() {
        use etherparse::{NetSlice, SlicedPacket, TransportSlice, icmpv6::Icmpv6PayloadSlice};
        let f = solicitation(ME, me(), hop());
        let p = SlicedPacket::from_ethernet(&f).unwrap();
        let Some(NetSlice::Ipv6(ip)) = p.net else { panic!("not IPv6") };
        let h = ip.header();
        assert_eq!(
            (h.hop_limit(), h.source_addr(), h.destination_addr()),
            (255, me(), "ff02::1:ff02:3".parse().unwrap())
        );
        let Some(TransportSlice::Icmpv6(icmp)) = p.transport else { panic!("not ICMPv6") };
        assert!(icmp.is_checksum_valid(me().octets(), h.destination_addr().octets()));
        let Ok(Icmpv6PayloadSlice::NeighborSolicitation(ns)) = icmp.payload_slice() else {
            panic!("not a solicitation")
        };
        assert_eq!(ns.target_address(), hop());
        assert_eq!(ns.options(), &[1, 1, 2, 0, 0, 0, 0xa0, 1]);
    }

    #[test]
    fn advertisement_yields_the_target_link_address() {
        let f = advertisement(&tlla(HOP_MAC));
        assert_eq!(advertisement_from(&f, hop()), Some(HOP_MAC));
        // Ethernet padding after the message is not part of it.
        let mut padded = f.clone();
        padded.extend_from_slice(&[0xee; 10]);
        assert_eq!(advertisement_from(&padded, hop()), Some(HOP_MAC));
        // Other options around it are skipped.
        let mut opts = vec![5, 1, 0, 0, 0, 0, 5, 0xdc]; // MTU
        opts.extend_from_slice(&tlla(HOP_MAC));
        assert_eq!(advertisement_from(&advertisement(&opts), hop()), Some(HOP_MAC));
    }

    #[test]
    fn foreign_or_damaged_messages_yield_nothing() {
        let good = advertisement(&tlla(HOP_MAC));
        assert_eq!(advertisement_from(&good, "fd00:a::9".parse().unwrap()), None, "another target");
        assert_eq!(advertisement_from(&solicitation(HOP_MAC, hop(), hop()), hop()), None, "a solicitation");
        assert_eq!(advertisement_from(&advertisement(&[]), hop()), None, "no target link-layer option");
        assert_eq!(advertisement_from(&advertisement(&tlla([1, 0, 0x5e, 0, 0, 1])), hop()), None, "group MAC");
        assert_eq!(advertisement_from(&advertisement(&[2, 0, 0, 0, 0, 0, 0, 0]), hop()), None, "zero-length option");
        assert_eq!(advertisement_from(&advertisement(&[2, 2, 2, 0, 0, 0, 0, 1]), hop()), None, "option past the end");
        let mutate = |at: usize, v: u8| {
            let mut f = good.clone();
            f[at] = v;
            advertisement_from(&f, hop())
        };
        assert_eq!(mutate(21, 64), None, "routed: hop limit below 255");
        assert_eq!(mutate(12, 0x08), None, "not IPv6");
        assert_eq!(mutate(20, 6), None, "not ICMPv6");
        assert_eq!(mutate(55, 1), None, "nonzero code");
        assert_eq!(mutate(60, 1), None, "corrupt: checksum fails");
        assert_eq!(mutate(19, 200), None, "length beyond the frame");
        for n in 0..good.len() {
            assert_eq!(advertisement_from(&good[..n], hop()), None, "truncated to {n}");
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic_or_yield(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(advertisement_from(&bytes, hop()), None);
        }

        #[test]
        fn hostile_options_never_panic_or_invent_a_mac(options in proptest::collection::vec(any::<u8>(), 0..120)) {
            // Checksummed, so that the option walk itself is what meets the bytes.
            if let Some(mac) = advertisement_from(&advertisement(&options), hop()) {
                prop_assert!(options.windows(6).any(|w| w == mac));
            }
        }
    }
}
