//! The UDP probe module (`-s udp`, `-sU`): a datagram to each port, with a
//! payload that makes the service there answer (`payload`), or an empty
//! one where prtip knows none; `--udp-payload PORT:HEX` replaces a port's.
//!
//! A reply is ours when it comes from the probed address and port to the
//! source port that probe left from (the engine checks that against the
//! plan), and, where the protocol echoes an identifier (DNS ID, RPC XID,
//! SNMP request-id, NTP origin timestamp, ...), when the echo carries the
//! probe's keyed tag (`CookieKey::tag`). An ICMP error quoting the probe
//! is checked the same way where it quotes the identifier. A UDP reply
//! carries no time of ours: its round trip is measured from the send
//! window's stamp of the try it answers.
//!
//! States, as nmap's: `open` (a datagram came back), `closed` (ICMP port
//! unreachable), `filtered` (another ICMP unreachable), `open|filtered`
//! (nothing through the tries: a service may have ignored the payload).

pub mod payload;

use super::{Matcher, Probe};
use crate::result::{PortState, Reason};
use crate::wire::cookie::CookieKey;
use crate::wire::field::{Field, at, ethernet, ipv4, ipv6, udp};
use crate::wire::reply::{Inbound, Received, Rejection, Reply, ReplyKind};
use crate::wire::{addr_bytes, checksum, field};
use payload::Payload;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// The longest payload prtip sends: a datagram that fits a 1500-byte MTU
/// over IPv6 without fragments.
pub const MAX_PAYLOAD: usize = 1500 - ipv6::HEADER_LEN - udp::HEADER_LEN;
const IP: usize = ethernet::HEADER_LEN;
const TTL: u8 = 64;
/// The ICMP code of a port unreachable (ICMPv6's arrives mapped onto it).
const PORT_UNREACHABLE: u8 = 3;

/// The payload each port of a scan gets: the built-in ones, with the
/// user's overrides on top.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Payloads {
    by_port: BTreeMap<u16, Payload>,
}

impl Payloads {
    /// The built-in payloads, then `overrides` (port, bytes) replacing them.
    pub fn new(overrides: &[(u16, Vec<u8>)]) -> Self {
        let mut by_port: BTreeMap<u16, Payload> =
            (1..=u16::MAX).filter_map(|port| Some((port, payload::builtin(port)?))).collect();
        for (port, bytes) in overrides {
            by_port.insert(*port, payload::custom(bytes.clone()));
        }
        Payloads { by_port }
    }

    fn of(&self, port: u16) -> Option<&Payload> {
        self.by_port.get(&port)
    }

    fn longest(&self) -> usize {
        self.by_port.values().map(|p| p.bytes.len()).max().unwrap_or(0)
    }
}

#[derive(Debug, Clone)]
pub struct UdpTemplate {
    /// The link, IP and UDP headers, addresses and lengths left to each probe.
    head: [u8; IP + ipv6::HEADER_LEN + udp::HEADER_LEN],
    l4: usize,
    src: Field,
    dst: Field,
    payloads: Payloads,
}

impl UdpTemplate {
    pub fn new(src_mac: [u8; 6], dst_mac: [u8; 6], src: IpAddr, payloads: Payloads) -> Self {
        let mut f = [0u8; IP + ipv6::HEADER_LEN + udp::HEADER_LEN];
        f[ethernet::DESTINATION].copy_from_slice(&dst_mac);
        f[ethernet::SOURCE].copy_from_slice(&src_mac);
        let (l4, src_at, dst_at) = match src {
            IpAddr::V4(src) => {
                f[ethernet::ETHERTYPE].copy_from_slice(&ethernet::TYPE_IPV4.to_be_bytes());
                f[IP + ipv4::VERSION_IHL] = 0x45;
                f[IP + ipv4::TTL] = TTL;
                f[IP + ipv4::PROTOCOL] = field::PROTOCOL_UDP;
                f[at(IP, ipv4::SOURCE)].copy_from_slice(&src.octets());
                (IP + ipv4::HEADER_LEN, at(IP, ipv4::SOURCE), at(IP, ipv4::DESTINATION))
            }
            IpAddr::V6(src) => {
                f[ethernet::ETHERTYPE].copy_from_slice(&ethernet::TYPE_IPV6.to_be_bytes());
                f[IP + ipv6::VERSION] = 0x60;
                f[IP + ipv6::NEXT_HEADER] = field::PROTOCOL_UDP;
                f[IP + ipv6::HOP_LIMIT] = TTL;
                f[at(IP, ipv6::SOURCE)].copy_from_slice(&src.octets());
                (IP + ipv6::HEADER_LEN, at(IP, ipv6::SOURCE), at(IP, ipv6::DESTINATION))
            }
        };
        UdpTemplate { head: f, l4, src: src_at, dst: dst_at, payloads }
    }

    /// The longest frame: the headers and the longest payload.
    pub fn max_frame_len(&self) -> usize {
        self.l4 + udp::HEADER_LEN + self.payloads.longest()
    }

    /// Writes the datagram of `probe`, its payload's identifier the probe's
    /// tag under `key`, into `out`; returns the frame's length.
    pub fn write(&self, key: &CookieKey, src: IpAddr, probe: &Probe, out: &mut [u8]) -> usize {
        let l4 = self.l4;
        let data = l4 + udp::HEADER_LEN;
        out[..data].copy_from_slice(&self.head[..data]);
        let payload_len = match self.payloads.of(probe.dport) {
            Some(p) => p.write(key.tag(src, probe.dst, probe.sport, probe.dport), &mut out[data..]),
            None => 0,
        };
        let udp_len = (udp::HEADER_LEN + payload_len) as u16;
        let (bytes, n) = addr_bytes(probe.dst);
        let dst = &bytes[..n];
        out[self.dst.clone()].copy_from_slice(dst);
        out[at(l4, udp::SRC_PORT)].copy_from_slice(&probe.sport.to_be_bytes());
        out[at(l4, udp::DST_PORT)].copy_from_slice(&probe.dport.to_be_bytes());
        out[at(l4, udp::LENGTH)].copy_from_slice(&udp_len.to_be_bytes());
        if n == 4 {
            let total = (ipv4::HEADER_LEN as u16) + udp_len;
            out[at(IP, ipv4::TOTAL_LEN)].copy_from_slice(&total.to_be_bytes());
            let tag = key.tag(src, probe.dst, probe.sport, probe.dport);
            out[at(IP, ipv4::IDENTIFICATION)].copy_from_slice(&(tag as u16).to_be_bytes());
            let ip_sum = checksum::finish(checksum::add(0, &out[IP..l4]));
            out[at(IP, ipv4::CHECKSUM)].copy_from_slice(&ip_sum.to_be_bytes());
        } else {
            out[at(IP, ipv6::PAYLOAD_LEN)].copy_from_slice(&udp_len.to_be_bytes());
        }
        let end = data + payload_len;
        let pseudo = checksum::add(checksum::add(0, &out[self.src.clone()]), dst)
            + u64::from(field::PROTOCOL_UDP)
            + u64::from(udp_len);
        // Zero means "no checksum" to UDP over IPv4 (and is invalid over IPv6): all ones says the sum is zero.
        let sum = match checksum::finish(checksum::add(pseudo, &out[l4..end])) {
            0 => 0xffff,
            s => s,
        };
        out[at(l4, udp::CHECKSUM)].copy_from_slice(&sum.to_be_bytes());
        end
    }

    /// The reply `r` is, if it answers one of our datagrams.
    pub fn recognise(&self, m: &Matcher, r: &Received) -> Result<Reply, Rejection> {
        let (ip, port, from_port, kind) = match r.inbound {
            Inbound::Udp { sport, dport, payload } => {
                if !m.ours(dport) {
                    return Err(Rejection::NotOurs);
                }
                if let Some(p) = self.payloads.of(sport)
                    && !p.answers(m.key.tag(r.to, r.from, dport, sport), payload)
                {
                    return Err(Rejection::BadCookie);
                }
                (r.from, sport, dport, ReplyKind::Datagram)
            }
            Inbound::Unreachable { code, quoted } => {
                if quoted.src != r.to || quoted.protocol != field::PROTOCOL_UDP {
                    return Err(Rejection::NotOurs);
                }
                // RFC 792 guarantees the 8 bytes of the UDP header.
                let head = quoted.l4.get(..udp::HEADER_LEN).ok_or(Rejection::Malformed)?;
                let sport = u16::from_be_bytes([head[0], head[1]]);
                let dport = u16::from_be_bytes([head[2], head[3]]);
                if !m.ours(sport) {
                    return Err(Rejection::NotOurs);
                }
                // Where the quote reaches the identifier, it must be the probe's.
                if let Some(p) = self.payloads.of(dport)
                    && let Some(id) = &p.id
                    && let Some(sent) = quoted.l4.get(udp::HEADER_LEN..).and_then(|d| d.get(id.clone()))
                {
                    let tag = m.key.tag(r.to, quoted.dst, sport, dport).to_be_bytes();
                    if sent != &tag[8 - id.len()..] {
                        return Err(Rejection::BadCookie);
                    }
                }
                (quoted.dst, dport, sport, ReplyKind::Unreachable { code })
            }
            _ => return Err(Rejection::NotOurs),
        };
        Ok(Reply { ip, port, from: r.to, from_port, kind, ttl: r.ttl, sent: None, sent_us: None, ack: 0, window: 0 })
    }
}

/// A datagram is open, a port unreachable closed, another unreachable filtered.
pub fn state(reply: &Reply) -> (PortState, Reason) {
    match reply.kind {
        ReplyKind::Unreachable { code: PORT_UNREACHABLE } => {
            (PortState::Closed, Reason::Unreachable { code: PORT_UNREACHABLE })
        }
        ReplyKind::Unreachable { code } => (PortState::Filtered, Reason::Unreachable { code }),
        // `recognise` gives only datagrams besides.
        _ => (PortState::Open, Reason::UdpResponse),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::reply::parse;
    use crate::wire::sources::Sources;
    use etherparse::{Icmpv4Type, Icmpv6Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
    use std::net::{Ipv4Addr, Ipv6Addr};

    const ME: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
    const TARGET: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 9);
    const ME6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 0, 0, 0, 0, 0, 1);
    const TARGET6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x201, 0, 0, 0, 0, 1, 9);

    fn matcher(me: IpAddr) -> Matcher {
        Matcher { sources: Sources::one(me), src_ports: (61000, 61063), key: CookieKey::new(7, 11) }
    }

    fn template(me: IpAddr) -> UdpTemplate {
        UdpTemplate::new([3; 6], [2; 6], me, Payloads::new(&[(7777, vec![0xca, 0xfe])]))
    }

    fn datagram(me: IpAddr, target: IpAddr, dport: u16) -> Vec<u8> {
        let t = template(me);
        let mut out = vec![0u8; t.max_frame_len()];
        let probe = Probe { dst: target, sport: 61005, dport, send_us: 1_000 };
        let len = t.write(&matcher(me).key, me, &probe, &mut out);
        out.truncate(len);
        out
    }

    fn classify(me: IpAddr, frame: &[u8]) -> Result<Reply, Rejection> {
        template(me).recognise(&matcher(me), &parse(frame, &Sources::one(me))?)
    }

    /// The target's answer: `payload` from the probed port back to ours.
    fn answer(request: &[u8], payload: &[u8]) -> Vec<u8> {
        let p = SlicedPacket::from_ethernet(request).unwrap();
        let Some(TransportSlice::Udp(udp)) = p.transport else { panic!("not UDP") };
        let b = PacketBuilder::ethernet2([2; 6], [3; 6]);
        let mut out = Vec::new();
        match p.net.unwrap() {
            NetSlice::Ipv4(ip) => b
                .ipv4(ip.header().destination(), ip.header().source(), 60)
                .udp(udp.destination_port(), udp.source_port())
                .write(&mut out, payload)
                .unwrap(),
            NetSlice::Ipv6(ip) => b
                .ipv6(ip.header().destination(), ip.header().source(), 60)
                .udp(udp.destination_port(), udp.source_port())
                .write(&mut out, payload)
                .unwrap(),
            _ => panic!("not IP"),
        }
        out
    }

    #[test]
    fn frames_are_exact_with_valid_checksums_in_both_families() {
        for (me, target) in [(IpAddr::from(ME), IpAddr::from(TARGET)), (ME6.into(), TARGET6.into())] {
            for (dport, payload_len) in [(53u16, payload::builtin(53).unwrap().bytes.len()), (7777, 2), (9, 0)] {
                let f = datagram(me, target, dport);
                let p = SlicedPacket::from_ethernet(&f).unwrap();
                let Some(TransportSlice::Udp(udp)) = p.transport.clone() else { panic!("not UDP") };
                assert_eq!((udp.source_port(), udp.destination_port()), (61005, dport));
                assert_eq!(udp.payload().len(), payload_len, "port {dport}");
                let want = match p.net.unwrap() {
                    NetSlice::Ipv4(ip) => {
                        let h = ip.header();
                        assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum());
                        assert_eq!((h.ttl(), h.destination_addr()), (64, TARGET));
                        udp.to_header().calc_checksum_ipv4_raw(h.source(), h.destination(), udp.payload()).unwrap()
                    }
                    NetSlice::Ipv6(ip) => {
                        let h = ip.header();
                        assert_eq!(h.destination_addr(), TARGET6);
                        udp.to_header().calc_checksum_ipv6_raw(h.source(), h.destination(), udp.payload()).unwrap()
                    }
                    _ => panic!("not IP"),
                };
                assert_eq!(udp.checksum(), want, "port {dport}");
            }
        }
        // The override replaced nothing else, and is sent as given.
        let f = datagram(ME.into(), TARGET.into(), 7777);
        assert_eq!(&f[f.len() - 2..], &[0xca, 0xfe]);
    }

    #[test]
    fn a_reply_echoing_the_probes_id_is_open_and_one_with_another_id_is_forged() {
        for (me, target) in [(IpAddr::from(ME), IpAddr::from(TARGET)), (ME6.into(), TARGET6.into())] {
            let req = datagram(me, target, 53);
            let query = &req[req.len() - payload::builtin(53).unwrap().bytes.len()..];
            // A DNS answer repeats the query's ID (and its question).
            let mut reply = query.to_vec();
            reply[2] |= 0x80;
            let r = classify(me, &answer(&req, &reply)).unwrap();
            assert_eq!((r.ip, r.port, r.from_port, r.kind, r.sent), (target, 53, 61005, ReplyKind::Datagram, None));
            assert_eq!(state(&r), (PortState::Open, Reason::UdpResponse));
            reply[1] ^= 1;
            assert_eq!(classify(me, &answer(&req, &reply)), Err(Rejection::BadCookie));
        }
        // Without an identifier, any datagram from the port answers; to a port not ours, none does.
        let req = datagram(ME.into(), TARGET.into(), 9);
        assert_eq!(classify(ME.into(), &answer(&req, b"x")).unwrap().kind, ReplyKind::Datagram);
        let mut foreign = answer(&req, b"x");
        foreign[14 + 20 + 2..14 + 20 + 4].copy_from_slice(&5353u16.to_be_bytes());
        assert_eq!(classify(ME.into(), &foreign), Err(Rejection::NotOurs));
    }

    /// A probe from one of our addresses whose identifier is another's:
    /// its answer, to the first, is no reply; nor is an ICMP error quoting it.
    #[test]
    fn a_reply_to_one_of_our_addresses_with_another_addresses_tag_is_forged() {
        let (me, seven) = (IpAddr::from(ME), IpAddr::from(Ipv4Addr::new(10, 200, 0, 7)));
        let both = Matcher { sources: Sources::new(&[seven, me]).unwrap(), ..matcher(me) };
        let t = template(me);
        let probe = Probe { dst: TARGET.into(), sport: 61005, dport: 53, send_us: 1_000 };
        let mut ours = vec![0u8; t.max_frame_len()];
        let mut theirs = ours.clone();
        let len = t.write(&both.key, me, &probe, &mut ours);
        t.write(&both.key, seven, &probe, &mut theirs);
        ours.truncate(len);
        theirs.truncate(len);
        let of = |req: &[u8]| req[req.len() - payload::builtin(53).unwrap().bytes.len()..].to_vec();
        let classify = |frame: &[u8]| t.recognise(&both, &parse(frame, &both.sources)?);
        assert_eq!(classify(&answer(&ours, &of(&ours))).unwrap().from, me);
        assert_eq!(classify(&answer(&theirs, &of(&theirs))), Err(Rejection::BadCookie));
        assert_eq!(classify(&unreachable(&theirs, 3)), Err(Rejection::BadCookie));
    }

    fn unreachable(request: &[u8], code: u8) -> Vec<u8> {
        let mut out = Vec::new();
        let b = PacketBuilder::ethernet2([2; 6], [3; 6]);
        if request[12..14] == [0x08, 0x00] {
            b.ipv4(TARGET.octets(), ME.octets(), 63)
                .icmpv4(Icmpv4Type::DestinationUnreachable(
                    etherparse::icmpv4::DestUnreachableHeader::from_values(code, 0).unwrap(),
                ))
                .write(&mut out, &request[14..])
                .unwrap();
        } else {
            b.ipv6(TARGET6.octets(), ME6.octets(), 63)
                .icmpv6(Icmpv6Type::DestinationUnreachable(
                    etherparse::icmpv6::DestUnreachableCode::from_u8(code).unwrap(),
                ))
                .write(&mut out, &request[14..])
                .unwrap();
        }
        out
    }

    #[test]
    fn port_unreachable_is_closed_other_unreachables_filtered_and_forged_quotes_nothing() {
        let req = datagram(ME.into(), TARGET.into(), 53);
        let r = classify(ME.into(), &unreachable(&req, 3)).unwrap();
        assert_eq!((r.ip, r.port, r.from_port), (TARGET.into(), 53, 61005));
        assert_eq!(state(&r), (PortState::Closed, Reason::Unreachable { code: 3 }));
        let r = classify(ME.into(), &unreachable(&req, 13)).unwrap();
        assert_eq!(state(&r), (PortState::Filtered, Reason::Unreachable { code: 13 }));
        // ICMPv6's port unreachable (4) is ICMP's 3.
        let req6 = datagram(ME6.into(), TARGET6.into(), 9);
        let r = classify(ME6.into(), &unreachable(&req6, 4)).unwrap();
        assert_eq!(state(&r), (PortState::Closed, Reason::Unreachable { code: 3 }));
        // A quote whose DNS ID is not the probe's, and one of a port outside our range.
        let mut forged = req.clone();
        forged[14 + 20 + 8] ^= 1;
        assert_eq!(classify(ME.into(), &unreachable(&forged, 3)), Err(Rejection::BadCookie));
        let mut other = req.clone();
        other[14 + 20..14 + 22].copy_from_slice(&40000u16.to_be_bytes());
        assert_eq!(classify(ME.into(), &unreachable(&other, 3)), Err(Rejection::NotOurs));
        // A quote of the UDP header alone (RFC 792's minimum) is still checked by port.
        assert!(classify(ME.into(), &unreachable(&req[..14 + 20 + 8], 3)).is_ok());
    }
}
