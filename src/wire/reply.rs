//! A received frame becomes a validated `Reply`, or the `Rejection` that says why not.
//!
//! Everything off the wire is hostile until its cookie matches, and a
//! timestamp echo that disagrees with the cookie makes the whole reply a
//! forgery, so a made-up send time can neither add a result nor skew the
//! round-trip times. The TCP
//! checksum is deliberately not checked: veth delivers CHECKSUM_PARTIAL
//! frames whose checksum field holds only the pseudo-header sum.

use super::cookie::{CookieKey, SendTick};
use etherparse::{
    Icmpv4Type, Icmpv6Type, IpNumber, Ipv4HeaderSlice, Ipv6HeaderSlice, NetSlice, SlicedPacket, TcpOptionElement,
    TransportSlice,
};
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// SYN-ACK: the port is open.
    SynAck,
    /// RST: the port is closed.
    Rst,
    /// ICMP (or ICMPv6) destination unreachable quoting our probe: filtered.
    /// The code is ICMP's; an ICMPv6 code comes as the ICMP code that means
    /// the same (`icmp_code_of_icmpv6`), so that one name fits both.
    Unreachable { code: u8 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// The probed address and port (the reply's source, or the quoted destination).
    pub ip: IpAddr,
    pub port: u16,
    /// Our source port that the probe left from.
    pub from_port: u16,
    pub kind: ReplyKind,
    /// TTL or hop limit of the reply.
    pub ttl: u8,
    /// The send time the acknowledged (or quoted) sequence number carried.
    pub sent: SendTick,
    /// The send time, to the microsecond (modulo 2^32), that a SYN-ACK's TSecr echoed.
    pub sent_us: Option<u32>,
    /// A TCP reply's acknowledgement number (0 for ICMP): an RST with it as
    /// its sequence number closes the connection a SYN-ACK half opened.
    pub ack: u32,
    /// A TCP reply's receive window (0 for ICMP). A SYN-ACK that offers none
    /// takes no data: SYN proxies and tarpits answer so.
    pub window: u16,
}

/// Why a frame is not a reply to this scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Cut short, fragmented, or otherwise not parseable as far as it must be.
    Malformed,
    /// To another address or port, not an answer to a SYN (no ACK; an ICMP
    /// type other than unreachable), or an ICMP error quoting another packet.
    NotOurs,
    /// Its acknowledgement (or quoted sequence) number does not carry our
    /// cookie, or its timestamp echo contradicts it: another scan's, or forged.
    BadCookie,
}

/// The ICMP destination-unreachable code (RFC 792, 1812) that says what an
/// ICMPv6 one (RFC 4443) says: no route is a network unreachable, an
/// administrative or policy refusal is administratively prohibited, an
/// unreachable address is a host unreachable, and a port is a port.
pub fn icmp_code_of_icmpv6(code: u8) -> u8 {
    match code {
        0 => 0,
        1 | 5 | 6 => 13,
        3 => 1,
        4 => 3,
        // 2, beyond the scope of the source address, and codes yet to come.
        _ => 1,
    }
}

/// What a frame must match to be a reply to this scan.
#[derive(Debug, Clone, Copy)]
pub struct ReplyMatcher {
    pub src_ip: IpAddr,
    pub src_ports: (u16, u16),
    pub key: CookieKey,
}

impl ReplyMatcher {
    fn ours(&self, port: u16) -> bool {
        self.src_ports.0 <= port && port <= self.src_ports.1
    }

    pub fn classify(&self, frame: &[u8]) -> Result<Reply, Rejection> {
        use Rejection::{BadCookie, Malformed, NotOurs};
        let packet = SlicedPacket::from_ethernet(frame).map_err(|_| Malformed)?;
        let (from, to, ttl) = match &packet.net {
            Some(NetSlice::Ipv4(ip)) if !ip.is_payload_fragmented() => {
                let h = ip.header();
                (IpAddr::V4(h.source_addr()), IpAddr::V4(h.destination_addr()), h.ttl())
            }
            Some(NetSlice::Ipv6(ip)) if !ip.is_payload_fragmented() => {
                let h = ip.header();
                (IpAddr::V6(h.source_addr()), IpAddr::V6(h.destination_addr()), h.hop_limit())
            }
            _ => return Err(Malformed),
        };
        if to != self.src_ip {
            return Err(NotOurs);
        }
        let (quoted, code) = match packet.transport.ok_or(Malformed)? {
            TransportSlice::Tcp(tcp) => {
                let (sport, dport) = (tcp.destination_port(), tcp.source_port());
                if !self.ours(sport) || !tcp.ack() {
                    return Err(NotOurs);
                }
                let seq = tcp.acknowledgment_number().wrapping_sub(1);
                let sent = self.key.check(self.src_ip, from, sport, dport, seq).ok_or(BadCookie)?;
                let (kind, sent_us) = if tcp.rst() {
                    (ReplyKind::Rst, None)
                } else if tcp.syn() {
                    let echo = tcp.options_iterator().find_map(|o| match o {
                        Ok(TcpOptionElement::Timestamp(_, echo)) => Some(echo),
                        _ => None,
                    });
                    match echo {
                        Some(echo) => (ReplyKind::SynAck, Some(self.key.echoed_send_us(echo, sent).ok_or(BadCookie)?)),
                        None => (ReplyKind::SynAck, None),
                    }
                } else {
                    return Err(NotOurs);
                };
                let (ack, window) = (tcp.acknowledgment_number(), tcp.window_size());
                return Ok(Reply { ip: from, port: dport, from_port: sport, kind, ttl, sent, sent_us, ack, window });
            }
            TransportSlice::Icmpv4(icmp) => match icmp.icmp_type() {
                Icmpv4Type::DestinationUnreachable(_) => (self.quoted_probe(icmp.payload())?, icmp.code_u8()),
                _ => return Err(NotOurs),
            },
            TransportSlice::Icmpv6(icmp) => match icmp.icmp_type() {
                Icmpv6Type::DestinationUnreachable(_) => {
                    (self.quoted_probe(icmp.payload())?, icmp_code_of_icmpv6(icmp.code_u8()))
                }
                _ => return Err(NotOurs),
            },
            _ => return Err(NotOurs),
        };
        let (target, dport, sport, sent) = quoted;
        Ok(Reply {
            ip: target,
            port: dport,
            from_port: sport,
            kind: ReplyKind::Unreachable { code },
            ttl,
            sent,
            sent_us: None,
            ack: 0,
            window: 0,
        })
    }

    /// The destination of the SYN quoted in an ICMP error, if that SYN is ours.
    fn quoted_probe(&self, quoted: &[u8]) -> Result<(IpAddr, u16, u16, SendTick), Rejection> {
        let (source, target, protocol, header_len) = match self.src_ip {
            IpAddr::V4(_) => {
                let ip = Ipv4HeaderSlice::from_slice(quoted).map_err(|_| Rejection::Malformed)?;
                (IpAddr::V4(ip.source_addr()), IpAddr::V4(ip.destination_addr()), ip.protocol(), ip.slice().len())
            }
            // Our SYNs carry no extension headers: TCP follows the fixed header.
            IpAddr::V6(_) => {
                let ip = Ipv6HeaderSlice::from_slice(quoted).map_err(|_| Rejection::Malformed)?;
                (IpAddr::V6(ip.source_addr()), IpAddr::V6(ip.destination_addr()), ip.next_header(), 40)
            }
        };
        if source != self.src_ip || protocol != IpNumber::TCP {
            return Err(Rejection::NotOurs);
        }
        // RFC 792 guarantees only the first 8 bytes of the TCP header: ports and sequence number.
        let tcp = quoted.get(header_len..header_len + 8).ok_or(Rejection::Malformed)?;
        let sport = u16::from_be_bytes([tcp[0], tcp[1]]);
        let dport = u16::from_be_bytes([tcp[2], tcp[3]]);
        let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
        if !self.ours(sport) {
            return Err(Rejection::NotOurs);
        }
        let sent = self.key.check(self.src_ip, target, sport, dport, seq).ok_or(Rejection::BadCookie)?;
        Ok((target, dport, sport, sent))
    }
}

#[cfg(test)]
mod tests {
    use super::Rejection::{BadCookie, Malformed, NotOurs};
    use super::*;
    use crate::wire::template::{Probe, SYN_FRAME_LEN, SynTemplate};
    use etherparse::PacketBuilder;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const ME: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
    const TARGET: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 9);

    fn matcher() -> ReplyMatcher {
        ReplyMatcher { src_ip: ME.into(), src_ports: (61000, 61063), key: CookieKey::new(7, 11) }
    }

    fn tcp_reply(ack: u32, dport: u16, syn: bool, rst: bool, ts: Option<u32>) -> Vec<u8> {
        tcp_reply_window(ack, dport, syn, rst, ts, 64000)
    }

    fn tcp_reply_window(ack: u32, dport: u16, syn: bool, rst: bool, ts: Option<u32>, window: u16) -> Vec<u8> {
        let mut b = PacketBuilder::ethernet2([2; 6], [3; 6])
            .ipv4(TARGET.octets(), ME.octets(), 57)
            .tcp(443, dport, 12345, window)
            .ack(ack);
        if syn {
            b = b.syn();
        }
        if rst {
            b = b.rst();
        }
        if let Some(ts) = ts {
            b = b.options(&[TcpOptionElement::Timestamp(99, ts)]).unwrap();
        }
        let mut out = Vec::new();
        b.write(&mut out, &[]).unwrap();
        out
    }

    const SENT_US: u64 = 3_000_042;

    fn good_ack(sport: u16) -> u32 {
        matcher().key.seq(ME.into(), TARGET.into(), sport, 443, SENT_US).wrapping_add(1)
    }

    fn good_echo() -> u32 {
        matcher().key.tsval(SENT_US)
    }

    #[test]
    fn syn_ack_with_our_cookie_is_open_and_carries_the_send_time() {
        let r = matcher().classify(&tcp_reply(good_ack(61001), 61001, true, false, Some(good_echo()))).unwrap();
        let sent = SendTick::of(SENT_US);
        let want = Reply {
            ip: TARGET.into(),
            port: 443,
            from_port: 61001,
            kind: ReplyKind::SynAck,
            ttl: 57,
            sent,
            sent_us: Some(3_000_042),
            ack: good_ack(61001),
            window: 64000,
        };
        assert_eq!(r, want);
        // A stack that does not echo timestamps still gives the tick.
        let r = matcher().classify(&tcp_reply(good_ack(61001), 61001, true, false, None)).unwrap();
        assert_eq!((r.sent, r.sent_us), (sent, None));
        // A SYN proxy's SYN-ACK offers no window.
        let r = matcher().classify(&tcp_reply_window(good_ack(61001), 61001, true, false, None, 0)).unwrap();
        assert_eq!((r.kind, r.window), (ReplyKind::SynAck, 0));
    }

    #[test]
    fn a_tampered_timestamp_echo_makes_the_reply_a_forgery() {
        for echo in [good_echo().wrapping_sub(500), good_echo().wrapping_add(100), 0, SENT_US as u32] {
            assert_eq!(matcher().classify(&tcp_reply(good_ack(61001), 61001, true, false, Some(echo))), Err(BadCookie));
        }
    }

    #[test]
    fn rst_with_our_cookie_is_closed() {
        let r = matcher().classify(&tcp_reply(good_ack(61063), 61063, false, true, None)).unwrap();
        assert_eq!(r.kind, ReplyKind::Rst);
        assert_eq!((r.ip, r.port, r.sent, r.sent_us), (TARGET.into(), 443, SendTick::of(SENT_US), None));
    }

    #[test]
    fn forged_or_foreign_replies_are_nothing() {
        let m = matcher();
        // wrong acknowledgement (off by one, another send time, and plain guesses)
        let moved = good_ack(61001).wrapping_add(1 << 16);
        for ack in [good_ack(61001).wrapping_sub(1), good_ack(61001).wrapping_add(1), moved, 0, 1] {
            assert_eq!(m.classify(&tcp_reply(ack, 61001, true, false, None)), Err(BadCookie));
        }
        // right cookie for another port pair
        assert_eq!(m.classify(&tcp_reply(good_ack(61002), 61001, true, false, None)), Err(BadCookie));
        // a destination port outside our range
        assert_eq!(m.classify(&tcp_reply(good_ack(60999), 60999, true, false, None)), Err(NotOurs));
        // a bare ACK or a SYN without ACK
        let mut bare = tcp_reply(good_ack(61001), 61001, false, false, None);
        assert_eq!(m.classify(&bare), Err(NotOurs));
        bare[14 + 20 + 13] = 0x02; // SYN only, ACK bit cleared
        assert_eq!(m.classify(&bare), Err(NotOurs));
        // addressed to someone else
        let other = ReplyMatcher { src_ip: Ipv4Addr::new(10, 200, 0, 7).into(), ..m };
        assert_eq!(other.classify(&tcp_reply(good_ack(61001), 61001, true, false, None)), Err(NotOurs));
        // cut inside its IP header
        assert_eq!(m.classify(&tcp_reply(good_ack(61001), 61001, true, false, None)[..14 + 12]), Err(Malformed));
    }

    fn icmp_unreachable(quoted_syn: &[u8], code: u8) -> Vec<u8> {
        let ip_and_more = &quoted_syn[14..14 + 20 + 8];
        let b = PacketBuilder::ethernet2([2; 6], [3; 6]).ipv4([10, 200, 0, 2], ME.octets(), 63).icmpv4(
            Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::from_values(code, 0).unwrap(),
            ),
        );
        let mut out = Vec::new();
        b.write(&mut out, ip_and_more).unwrap();
        out
    }

    #[test]
    fn icmp_unreachable_quoting_our_syn_is_filtered() {
        let m = matcher();
        let t = SynTemplate::new([3; 6], [2; 6], ME.into());
        let mut syn = [0u8; SYN_FRAME_LEN];
        let seq = m.key.seq(ME.into(), TARGET.into(), 61005, 8443, SENT_US);
        let dst = TARGET.into();
        t.write(&Probe { dst, sport: 61005, dport: 8443, seq, ip_id: 1, tsval: 2 }, &mut syn);
        let r = m.classify(&icmp_unreachable(&syn, 13)).unwrap();
        let want = (dst, 8443, ReplyKind::Unreachable { code: 13 }, 63, SendTick::of(SENT_US));
        assert_eq!((r.ip, r.port, r.kind, r.ttl, r.sent), want);
        // quoting a SYN whose cookie is wrong
        t.write(&Probe { dst, sport: 61005, dport: 8443, seq: seq ^ 1, ip_id: 1, tsval: 2 }, &mut syn);
        assert_eq!(m.classify(&icmp_unreachable(&syn, 13)), Err(BadCookie));
    }

    const ME6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 0, 0, 0, 0, 0, 1);
    const TARGET6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x201, 0, 0, 0, 0, 1, 9);

    fn matcher6() -> ReplyMatcher {
        ReplyMatcher { src_ip: ME6.into(), ..matcher() }
    }

    fn tcp6_reply(m: &ReplyMatcher, sport: u16, syn: bool, rst: bool) -> Vec<u8> {
        let ack = m.key.seq(ME6.into(), TARGET6.into(), sport, 443, SENT_US).wrapping_add(1);
        let mut b = PacketBuilder::ethernet2([2; 6], [3; 6])
            .ipv6(TARGET6.octets(), ME6.octets(), 58)
            .tcp(443, sport, 12345, 64000)
            .ack(ack);
        if syn {
            b = b.syn().options(&[TcpOptionElement::Timestamp(99, m.key.tsval(SENT_US))]).unwrap();
        }
        if rst {
            b = b.rst();
        }
        let mut out = Vec::new();
        b.write(&mut out, &[]).unwrap();
        out
    }

    #[test]
    fn ipv6_syn_ack_and_rst_with_our_cookie_are_open_and_closed() {
        let m = matcher6();
        let r = m.classify(&tcp6_reply(&m, 61001, true, false)).unwrap();
        let want = Reply {
            ip: TARGET6.into(),
            port: 443,
            from_port: 61001,
            kind: ReplyKind::SynAck,
            ttl: 58,
            sent: SendTick::of(SENT_US),
            sent_us: Some(SENT_US as u32),
            ack: m.key.seq(ME6.into(), TARGET6.into(), 61001, 443, SENT_US).wrapping_add(1),
            window: 64000,
        };
        assert_eq!(r, want);
        let r = m.classify(&tcp6_reply(&m, 61001, false, true)).unwrap();
        assert_eq!((r.kind, r.ip), (ReplyKind::Rst, TARGET6.into()));
        // Addressed to another of our addresses, or checked by an IPv4 scan: nothing.
        let other = ReplyMatcher { src_ip: Ipv6Addr::new(0xfd00, 0x200, 0, 0, 0, 0, 0, 2).into(), ..m };
        assert_eq!(other.classify(&tcp6_reply(&m, 61001, true, false)), Err(NotOurs));
        assert_eq!(matcher().classify(&tcp6_reply(&m, 61001, true, false)), Err(NotOurs));
        // A right cookie for another port pair.
        let mut f = tcp6_reply(&m, 61002, true, false);
        f[14 + 40 + 2..14 + 40 + 4].copy_from_slice(&61001u16.to_be_bytes());
        assert_eq!(m.classify(&f), Err(BadCookie));
    }

    fn icmp6_unreachable(quoted_syn: &[u8], code: u8) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2; 6], [3; 6])
            .ipv6([0xfd, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2], ME6.octets(), 63)
            .icmpv6(Icmpv6Type::DestinationUnreachable(
                etherparse::icmpv6::DestUnreachableCode::from_u8(code).unwrap(),
            ));
        let mut out = Vec::new();
        b.write(&mut out, &quoted_syn[14..]).unwrap();
        out
    }

    #[test]
    fn icmpv6_unreachable_quoting_our_syn_is_filtered_and_nothing_else_is() {
        let m = matcher6();
        let t = SynTemplate::new([3; 6], [2; 6], ME6.into());
        let mut syn = [0u8; SYN_FRAME_LEN];
        let seq = m.key.seq(ME6.into(), TARGET6.into(), 61005, 8443, SENT_US);
        let dst = TARGET6.into();
        t.write(&Probe { dst, sport: 61005, dport: 8443, seq, ip_id: 0, tsval: 2 }, &mut syn);
        let r = m.classify(&icmp6_unreachable(&syn, 1)).unwrap();
        // ICMPv6's administratively prohibited is ICMP's code 13.
        let want = (dst, 8443, ReplyKind::Unreachable { code: 13 }, 63, SendTick::of(SENT_US));
        assert_eq!((r.ip, r.port, r.kind, r.ttl, r.sent), want);
        let port = m.classify(&icmp6_unreachable(&syn, 4)).unwrap();
        assert_eq!(port.kind, ReplyKind::Unreachable { code: 3 }, "port unreachable");
        // A quote cut inside the TCP ports, a wrong cookie, and a neighbour solicitation: nothing.
        assert_eq!(m.classify(&icmp6_unreachable(&syn[..14 + 40 + 6], 1)), Err(Malformed));
        t.write(&Probe { dst, sport: 61005, dport: 8443, seq: seq ^ 1, ip_id: 0, tsval: 2 }, &mut syn);
        assert_eq!(m.classify(&icmp6_unreachable(&syn, 1)), Err(BadCookie));
        let mut ns = Vec::new();
        PacketBuilder::ethernet2([2; 6], [3; 6])
            .ipv6(TARGET6.octets(), ME6.octets(), 255)
            .icmpv6(Icmpv6Type::Unknown { type_u8: 135, code_u8: 0, bytes5to8: [0; 4] })
            .write(&mut ns, &ME6.octets())
            .unwrap();
        assert_eq!(m.classify(&ns), Err(NotOurs));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic_or_become_results(frame in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert!(matcher().classify(&frame).is_err());
        }

        #[test]
        fn mutated_replies_never_panic(pos in 0usize..80, byte in any::<u8>(), cut in 0usize..80) {
            let mut f = tcp_reply(good_ack(61001), 61001, true, false, Some(good_echo()));
            if pos < f.len() { f[pos] = byte; }
            f.truncate(f.len().saturating_sub(cut));
            if let Ok(r) = matcher().classify(&f) {
                // A surviving mutation may only touch fields the cookie does not cover.
                prop_assert_eq!((r.ip, r.port), (TARGET.into(), 443));
            }
        }

        #[test]
        fn mutated_ipv6_replies_never_panic(pos in 0usize..100, byte in any::<u8>(), cut in 0usize..100) {
            let m = matcher6();
            let mut f = tcp6_reply(&m, 61001, true, false);
            if pos < f.len() { f[pos] = byte; }
            f.truncate(f.len().saturating_sub(cut));
            if let Ok(r) = m.classify(&f) {
                prop_assert_eq!((r.ip, r.port), (IpAddr::V6(TARGET6), 443));
            }
            prop_assert!(matcher().classify(&f).is_err());
        }
    }
}
