//! A received frame becomes a validated `Reply`, or nothing.
//!
//! Everything off the wire is hostile until its cookie matches. The TCP
//! checksum is deliberately not checked: veth delivers CHECKSUM_PARTIAL
//! frames whose checksum field holds only the pseudo-header sum.

use super::cookie::CookieKey;
use etherparse::{Icmpv4Type, Ipv4HeaderSlice, NetSlice, SlicedPacket, TcpOptionElement, TransportSlice};
use std::net::Ipv4Addr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// SYN-ACK: the port is open.
    SynAck,
    /// RST: the port is closed.
    Rst,
    /// ICMP destination unreachable quoting our probe: filtered.
    Unreachable { code: u8 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// The probed address and port (the reply's source, or the quoted destination).
    pub ip: Ipv4Addr,
    pub port: u16,
    pub kind: ReplyKind,
    pub ttl: u8,
    /// The TSecr of a SYN-ACK: our TSval echoed back.
    pub ts_echo: Option<u32>,
}

/// What a frame must match to be a reply to this scan.
#[derive(Debug, Clone, Copy)]
pub struct ReplyMatcher {
    pub src_ip: Ipv4Addr,
    pub src_ports: (u16, u16),
    pub key: CookieKey,
}

impl ReplyMatcher {
    fn ours(&self, port: u16) -> bool {
        self.src_ports.0 <= port && port <= self.src_ports.1
    }

    pub fn classify(&self, frame: &[u8]) -> Option<Reply> {
        let packet = SlicedPacket::from_ethernet(frame).ok()?;
        let Some(NetSlice::Ipv4(ip)) = &packet.net else { return None };
        let header = ip.header();
        if header.destination_addr() != self.src_ip || ip.is_payload_fragmented() {
            return None;
        }
        match packet.transport? {
            TransportSlice::Tcp(tcp) => {
                let (sport, dport) = (tcp.destination_port(), tcp.source_port());
                if !self.ours(sport) || !tcp.ack() {
                    return None;
                }
                let target = header.source_addr();
                let seq = self.key.seq(self.src_ip, target, sport, dport);
                if tcp.acknowledgment_number() != seq.wrapping_add(1) {
                    return None;
                }
                let (kind, ts_echo) = if tcp.rst() {
                    (ReplyKind::Rst, None)
                } else if tcp.syn() {
                    let echo = tcp.options_iterator().find_map(|o| match o {
                        Ok(TcpOptionElement::Timestamp(_, echo)) => Some(echo),
                        _ => None,
                    });
                    (ReplyKind::SynAck, echo)
                } else {
                    return None;
                };
                Some(Reply { ip: target, port: dport, kind, ttl: header.ttl(), ts_echo })
            }
            TransportSlice::Icmpv4(icmp) => {
                let Icmpv4Type::DestinationUnreachable(_) = icmp.icmp_type() else { return None };
                let (target, dport) = self.quoted_probe(icmp.payload())?;
                Some(Reply {
                    ip: target,
                    port: dport,
                    kind: ReplyKind::Unreachable { code: icmp.code_u8() },
                    ttl: header.ttl(),
                    ts_echo: None,
                })
            }
            _ => None,
        }
    }

    /// The destination of the SYN quoted in an ICMP error, if that SYN is ours.
    fn quoted_probe(&self, quoted: &[u8]) -> Option<(Ipv4Addr, u16)> {
        let ip = Ipv4HeaderSlice::from_slice(quoted).ok()?;
        if ip.source_addr() != self.src_ip || ip.protocol() != etherparse::IpNumber::TCP {
            return None;
        }
        // RFC 792 guarantees only the first 8 bytes of the TCP header: ports and sequence number.
        let tcp = quoted.get(ip.slice().len()..ip.slice().len() + 8)?;
        let sport = u16::from_be_bytes([tcp[0], tcp[1]]);
        let dport = u16::from_be_bytes([tcp[2], tcp[3]]);
        let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
        let target = ip.destination_addr();
        (self.ours(sport) && seq == self.key.seq(self.src_ip, target, sport, dport)).then_some((target, dport))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::template::{Probe, SYN_FRAME_LEN, SynTemplate};
    use etherparse::PacketBuilder;
    use proptest::prelude::*;

    const ME: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
    const TARGET: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 9);

    fn matcher() -> ReplyMatcher {
        ReplyMatcher { src_ip: ME, src_ports: (61000, 61063), key: CookieKey::new(7, 11) }
    }

    fn tcp_reply(ack: u32, dport: u16, syn: bool, rst: bool, ts: Option<u32>) -> Vec<u8> {
        let mut b = PacketBuilder::ethernet2([2; 6], [3; 6])
            .ipv4(TARGET.octets(), ME.octets(), 57)
            .tcp(443, dport, 12345, 64000)
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

    fn good_ack(sport: u16) -> u32 {
        matcher().key.seq(ME, TARGET, sport, 443).wrapping_add(1)
    }

    #[test]
    fn syn_ack_with_our_cookie_is_open_and_carries_the_echo() {
        let r = matcher().classify(&tcp_reply(good_ack(61001), 61001, true, false, Some(4242))).unwrap();
        assert_eq!(r, Reply { ip: TARGET, port: 443, kind: ReplyKind::SynAck, ttl: 57, ts_echo: Some(4242) });
    }

    #[test]
    fn rst_with_our_cookie_is_closed() {
        let r = matcher().classify(&tcp_reply(good_ack(61063), 61063, false, true, None)).unwrap();
        assert_eq!(r.kind, ReplyKind::Rst);
        assert_eq!((r.ip, r.port), (TARGET, 443));
    }

    #[test]
    fn forged_or_foreign_replies_are_nothing() {
        let m = matcher();
        // wrong acknowledgement (off by one, and plain guesses)
        for ack in [good_ack(61001).wrapping_sub(1), good_ack(61001).wrapping_add(1), 0, 1] {
            assert_eq!(m.classify(&tcp_reply(ack, 61001, true, false, None)), None);
        }
        // right cookie for another port pair
        assert_eq!(m.classify(&tcp_reply(good_ack(61002), 61001, true, false, None)), None);
        // a destination port outside our range
        assert_eq!(m.classify(&tcp_reply(good_ack(60999), 60999, true, false, None)), None);
        // a bare ACK or a SYN without ACK
        let mut bare = tcp_reply(good_ack(61001), 61001, false, false, None);
        assert_eq!(m.classify(&bare), None);
        bare[14 + 20 + 13] = 0x02; // SYN only, ACK bit cleared
        assert_eq!(m.classify(&bare), None);
        // addressed to someone else
        let other = ReplyMatcher { src_ip: Ipv4Addr::new(10, 200, 0, 7), ..m };
        assert_eq!(other.classify(&tcp_reply(good_ack(61001), 61001, true, false, None)), None);
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
        let t = SynTemplate::new([3; 6], [2; 6], ME);
        let mut syn = [0u8; SYN_FRAME_LEN];
        let seq = m.key.seq(ME, TARGET, 61005, 8443);
        t.write(&Probe { dst: TARGET, sport: 61005, dport: 8443, seq, ip_id: 1, tsval: 2 }, &mut syn);
        let r = m.classify(&icmp_unreachable(&syn, 13)).unwrap();
        assert_eq!((r.ip, r.port, r.kind, r.ttl), (TARGET, 8443, ReplyKind::Unreachable { code: 13 }, 63));
        // quoting a SYN whose cookie is wrong
        t.write(&Probe { dst: TARGET, sport: 61005, dport: 8443, seq: seq ^ 1, ip_id: 1, tsval: 2 }, &mut syn);
        assert_eq!(m.classify(&icmp_unreachable(&syn, 13)), None);
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic_or_become_results(frame in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(matcher().classify(&frame), None);
        }

        #[test]
        fn mutated_replies_never_panic(pos in 0usize..80, byte in any::<u8>(), cut in 0usize..80) {
            let mut f = tcp_reply(good_ack(61001), 61001, true, false, Some(1));
            if pos < f.len() { f[pos] = byte; }
            f.truncate(f.len().saturating_sub(cut));
            if let Some(r) = matcher().classify(&f) {
                // A surviving mutation may only touch fields the cookie does not cover.
                prop_assert_eq!((r.ip, r.port), (TARGET, 443));
            }
        }
    }
}
