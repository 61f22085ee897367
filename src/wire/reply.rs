//! A received frame becomes a validated `Reply`, or nothing.
//!
//! Everything off the wire is hostile until its cookie matches, and a
//! timestamp echo that disagrees with the cookie makes the whole reply a
//! forgery, so a made-up send time can neither add a result nor skew the
//! round-trip times. The TCP
//! checksum is deliberately not checked: veth delivers CHECKSUM_PARTIAL
//! frames whose checksum field holds only the pseudo-header sum.

use super::cookie::{CookieKey, SendTick};
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
    /// Our source port that the probe left from.
    pub from_port: u16,
    pub kind: ReplyKind,
    pub ttl: u8,
    /// The send time the acknowledged (or quoted) sequence number carried.
    pub sent: SendTick,
    /// The send time, to the microsecond (modulo 2^32), that a SYN-ACK's TSecr echoed.
    pub sent_us: Option<u32>,
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
                let seq = tcp.acknowledgment_number().wrapping_sub(1);
                let sent = self.key.check(self.src_ip, target, sport, dport, seq)?;
                let (kind, sent_us) = if tcp.rst() {
                    (ReplyKind::Rst, None)
                } else if tcp.syn() {
                    let echo = tcp.options_iterator().find_map(|o| match o {
                        Ok(TcpOptionElement::Timestamp(_, echo)) => Some(echo),
                        _ => None,
                    });
                    match echo {
                        Some(echo) => (ReplyKind::SynAck, Some(self.key.echoed_send_us(echo, sent)?)),
                        None => (ReplyKind::SynAck, None),
                    }
                } else {
                    return None;
                };
                Some(Reply { ip: target, port: dport, from_port: sport, kind, ttl: header.ttl(), sent, sent_us })
            }
            TransportSlice::Icmpv4(icmp) => {
                let Icmpv4Type::DestinationUnreachable(_) = icmp.icmp_type() else { return None };
                let (target, dport, sport, sent) = self.quoted_probe(icmp.payload())?;
                Some(Reply {
                    ip: target,
                    port: dport,
                    from_port: sport,
                    kind: ReplyKind::Unreachable { code: icmp.code_u8() },
                    ttl: header.ttl(),
                    sent,
                    sent_us: None,
                })
            }
            _ => None,
        }
    }

    /// The destination of the SYN quoted in an ICMP error, if that SYN is ours.
    fn quoted_probe(&self, quoted: &[u8]) -> Option<(Ipv4Addr, u16, u16, SendTick)> {
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
        if !self.ours(sport) {
            return None;
        }
        let sent = self.key.check(self.src_ip, target, sport, dport, seq)?;
        Some((target, dport, sport, sent))
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

    const SENT_US: u64 = 3_000_042;

    fn good_ack(sport: u16) -> u32 {
        matcher().key.seq(ME, TARGET, sport, 443, SENT_US).wrapping_add(1)
    }

    fn good_echo() -> u32 {
        matcher().key.tsval(SENT_US)
    }

    #[test]
    fn syn_ack_with_our_cookie_is_open_and_carries_the_send_time() {
        let r = matcher().classify(&tcp_reply(good_ack(61001), 61001, true, false, Some(good_echo()))).unwrap();
        let sent = SendTick::of(SENT_US);
        let want = Reply {
            ip: TARGET,
            port: 443,
            from_port: 61001,
            kind: ReplyKind::SynAck,
            ttl: 57,
            sent,
            sent_us: Some(3_000_042),
        };
        assert_eq!(r, want);
        // A stack that does not echo timestamps still gives the tick.
        let r = matcher().classify(&tcp_reply(good_ack(61001), 61001, true, false, None)).unwrap();
        assert_eq!((r.sent, r.sent_us), (sent, None));
    }

    #[test]
    fn a_tampered_timestamp_echo_makes_the_reply_a_forgery() {
        for echo in [good_echo().wrapping_sub(500), good_echo().wrapping_add(100), 0, SENT_US as u32] {
            assert_eq!(matcher().classify(&tcp_reply(good_ack(61001), 61001, true, false, Some(echo))), None);
        }
    }

    #[test]
    fn rst_with_our_cookie_is_closed() {
        let r = matcher().classify(&tcp_reply(good_ack(61063), 61063, false, true, None)).unwrap();
        assert_eq!(r.kind, ReplyKind::Rst);
        assert_eq!((r.ip, r.port, r.sent, r.sent_us), (TARGET, 443, SendTick::of(SENT_US), None));
    }

    #[test]
    fn forged_or_foreign_replies_are_nothing() {
        let m = matcher();
        // wrong acknowledgement (off by one, another send time, and plain guesses)
        let moved = good_ack(61001).wrapping_add(1 << 16);
        for ack in [good_ack(61001).wrapping_sub(1), good_ack(61001).wrapping_add(1), moved, 0, 1] {
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
        let seq = m.key.seq(ME, TARGET, 61005, 8443, SENT_US);
        t.write(&Probe { dst: TARGET, sport: 61005, dport: 8443, seq, ip_id: 1, tsval: 2 }, &mut syn);
        let r = m.classify(&icmp_unreachable(&syn, 13)).unwrap();
        let want = (TARGET, 8443, ReplyKind::Unreachable { code: 13 }, 63, SendTick::of(SENT_US));
        assert_eq!((r.ip, r.port, r.kind, r.ttl, r.sent), want);
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
            let mut f = tcp_reply(good_ack(61001), 61001, true, false, Some(good_echo()));
            if pos < f.len() { f[pos] = byte; }
            f.truncate(f.len().saturating_sub(cut));
            if let Some(r) = matcher().classify(&f) {
                // A surviving mutation may only touch fields the cookie does not cover.
                prop_assert_eq!((r.ip, r.port), (TARGET, 443));
            }
        }
    }
}
