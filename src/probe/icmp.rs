//! The ICMP echo probe module (`-s icmp`, nmap's `-sn -PE`, zmap's
//! `icmp_echo_time`): one echo request to each host, ICMPv6's on IPv6.
//!
//! The echo's identifier is one of our source ports, so the same range
//! steers the replies as for the other modules; its sequence number is the
//! low half of the keyed cookie (`wire::cookie`, over the addresses, the
//! identifier and the send time), and its payload carries the whole cookie
//! and the send time to the microsecond (a keyed TSval). An echo reply
//! returns all three: the reply is ours if the cookie is (16 bits of MAC,
//! and the time must agree with it, 16 more), and its round trip is exact.
//! An ICMP error quoting the request is ours on the same terms, when it
//! quotes the payload (routers quote as much as fits 576 bytes, RFC 1812).
//!
//! States: `up` (echo reply), `unreachable` (a destination unreachable
//! quoting our request, with its code), `down` (nothing through the tries).

use super::{Matcher, Probe};
use crate::result::{PortState, Reason};
use crate::wire::cookie::CookieKey;
use crate::wire::field::{Field, at, ethernet, icmp, ipv4, ipv6};
use crate::wire::reply::{Inbound, Received, Rejection, Reply, ReplyKind};
use crate::wire::{addr_bytes, checksum, field};
use std::net::IpAddr;

/// The echo's payload: the cookie, then the TSval.
const PAYLOAD_LEN: usize = 8;
const ECHO_LEN: usize = icmp::HEADER_LEN + PAYLOAD_LEN;
const IP: usize = ethernet::HEADER_LEN;
/// Room for the longer of the two frames.
pub const FRAME_LEN: usize = IP + ipv6::HEADER_LEN + ECHO_LEN;
const TTL: u8 = 64;

#[derive(Debug, Clone)]
pub struct EchoTemplate {
    frame: [u8; FRAME_LEN],
    /// Where the ICMP header starts: the frame is `l4 + ECHO_LEN` bytes long.
    l4: usize,
    src: Field,
    dst: Field,
}

impl EchoTemplate {
    pub fn new(src_mac: [u8; 6], dst_mac: [u8; 6], src: IpAddr) -> Self {
        let mut f = [0u8; FRAME_LEN];
        f[ethernet::DESTINATION].copy_from_slice(&dst_mac);
        f[ethernet::SOURCE].copy_from_slice(&src_mac);
        let (l4, src_at, dst_at) = match src {
            IpAddr::V4(src) => {
                f[ethernet::ETHERTYPE].copy_from_slice(&ethernet::TYPE_IPV4.to_be_bytes());
                f[IP + ipv4::VERSION_IHL] = 0x45;
                f[at(IP, ipv4::TOTAL_LEN)].copy_from_slice(&((ipv4::HEADER_LEN + ECHO_LEN) as u16).to_be_bytes());
                f[IP + ipv4::TTL] = TTL;
                f[IP + ipv4::PROTOCOL] = field::PROTOCOL_ICMP;
                f[at(IP, ipv4::SOURCE)].copy_from_slice(&src.octets());
                f[IP + ipv4::HEADER_LEN + icmp::TYPE] = icmp::V4_ECHO_REQUEST;
                (IP + ipv4::HEADER_LEN, at(IP, ipv4::SOURCE), at(IP, ipv4::DESTINATION))
            }
            IpAddr::V6(src) => {
                f[ethernet::ETHERTYPE].copy_from_slice(&ethernet::TYPE_IPV6.to_be_bytes());
                f[IP + ipv6::VERSION] = 0x60;
                f[at(IP, ipv6::PAYLOAD_LEN)].copy_from_slice(&(ECHO_LEN as u16).to_be_bytes());
                f[IP + ipv6::NEXT_HEADER] = field::PROTOCOL_ICMPV6;
                f[IP + ipv6::HOP_LIMIT] = TTL;
                f[at(IP, ipv6::SOURCE)].copy_from_slice(&src.octets());
                f[IP + ipv6::HEADER_LEN + icmp::TYPE] = icmp::V6_ECHO_REQUEST;
                (IP + ipv6::HEADER_LEN, at(IP, ipv6::SOURCE), at(IP, ipv6::DESTINATION))
            }
        };
        EchoTemplate { frame: f, l4, src: src_at, dst: dst_at }
    }

    fn is_ipv4(&self) -> bool {
        self.dst.len() == 4
    }

    pub fn frame_len(&self) -> usize {
        self.l4 + ECHO_LEN
    }

    /// Writes the echo request of `probe` (its port is ignored: an echo
    /// goes to a host) into `out`; returns its length.
    pub fn write(&self, key: &CookieKey, src: IpAddr, probe: &Probe, out: &mut [u8]) -> usize {
        let len = self.frame_len();
        let out = &mut out[..len];
        out.copy_from_slice(&self.frame[..len]);
        let (bytes, n) = addr_bytes(probe.dst);
        let dst = &bytes[..n];
        out[self.dst.clone()].copy_from_slice(dst);
        let cookie = key.seq(src, probe.dst, probe.sport, 0, probe.send_us);
        let l4 = self.l4;
        out[at(l4, icmp::IDENTIFIER)].copy_from_slice(&probe.sport.to_be_bytes());
        out[at(l4, icmp::SEQUENCE)].copy_from_slice(&(cookie as u16).to_be_bytes());
        let payload = l4 + icmp::HEADER_LEN;
        out[payload..payload + 4].copy_from_slice(&cookie.to_be_bytes());
        out[payload + 4..payload + 8].copy_from_slice(&key.tsval(probe.send_us).to_be_bytes());
        let mut sum = checksum::add(0, &out[l4..len]);
        if self.is_ipv4() {
            out[at(IP, ipv4::IDENTIFICATION)].copy_from_slice(&(cookie as u16).to_be_bytes());
            let ip_sum = checksum::finish(checksum::add(0, &out[IP..l4]));
            out[at(IP, ipv4::CHECKSUM)].copy_from_slice(&ip_sum.to_be_bytes());
        } else {
            // ICMPv6 sums a pseudo-header too (RFC 4443 2.3); ICMP does not.
            sum = checksum::add(sum, &out[self.src.clone()]);
            sum = checksum::add(sum, dst) + ECHO_LEN as u64 + u64::from(field::PROTOCOL_ICMPV6);
        }
        out[at(l4, icmp::CHECKSUM)].copy_from_slice(&checksum::finish(sum).to_be_bytes());
        len
    }
}

/// The send time an echo's identifier, sequence number and payload carry,
/// if they are ours for `target`: its tick and its microseconds.
fn check_echo(
    m: &Matcher,
    me: IpAddr,
    target: IpAddr,
    id: u16,
    seq: u16,
    payload: &[u8],
) -> Result<(crate::wire::cookie::SendTick, u32), Rejection> {
    let payload = payload.get(..PAYLOAD_LEN).ok_or(Rejection::Malformed)?;
    let cookie = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
    let tsval = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
    if seq != cookie as u16 {
        return Err(Rejection::BadCookie);
    }
    let sent = m.key.check(me, target, id, 0, cookie).ok_or(Rejection::BadCookie)?;
    let sent_us = m.key.echoed_send_us(tsval, sent).ok_or(Rejection::BadCookie)?;
    Ok((sent, sent_us))
}

/// The reply `r` is, if it answers one of our echo requests: an echo reply
/// from the host we sent it to, or an ICMP error quoting the request.
pub fn recognise(m: &Matcher, r: &Received) -> Result<Reply, Rejection> {
    let (ip, id, kind, (sent, sent_us)) = match r.inbound {
        Inbound::Echo { id, seq, payload } => {
            if !m.ours(id) {
                return Err(Rejection::NotOurs);
            }
            (r.from, id, ReplyKind::EchoReply, check_echo(m, r.to, r.from, id, seq, payload)?)
        }
        Inbound::Unreachable { code, quoted } => {
            let request = if r.to.is_ipv4() { icmp::V4_ECHO_REQUEST } else { icmp::V6_ECHO_REQUEST };
            let protocol = if r.to.is_ipv4() { field::PROTOCOL_ICMP } else { field::PROTOCOL_ICMPV6 };
            if quoted.src != r.to || quoted.protocol != protocol || quoted.l4.first() != Some(&request) {
                return Err(Rejection::NotOurs);
            }
            let head = quoted.l4.get(..icmp::HEADER_LEN).ok_or(Rejection::Malformed)?;
            let id = u16::from_be_bytes([head[4], head[5]]);
            let seq = u16::from_be_bytes([head[6], head[7]]);
            if !m.ours(id) {
                return Err(Rejection::NotOurs);
            }
            let payload = &quoted.l4[icmp::HEADER_LEN..];
            (quoted.dst, id, ReplyKind::Unreachable { code }, check_echo(m, r.to, quoted.dst, id, seq, payload)?)
        }
        _ => return Err(Rejection::NotOurs),
    };
    Ok(Reply {
        ip,
        port: 0,
        from: r.to,
        from_port: id,
        kind,
        ttl: r.ttl,
        sent: Some(sent),
        sent_us: Some(sent_us),
        ack: 0,
        window: 0,
    })
}

/// An echo reply is up, a destination unreachable is unreachable.
pub fn state(reply: &Reply) -> (PortState, Reason) {
    match reply.kind {
        ReplyKind::Unreachable { code } => (PortState::Unreachable, Reason::Unreachable { code }),
        // `recognise` gives only these two kinds.
        _ => (PortState::Up, Reason::EchoReply),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::cookie::SendTick;
    use crate::wire::reply::parse;
    use crate::wire::sources::Sources;
    use etherparse::{IcmpEchoHeader, Icmpv4Type, Icmpv6Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const ME: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
    const TARGET: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 9);
    const ME6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 0, 0, 0, 0, 0, 1);
    const TARGET6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x201, 0, 0, 0, 0, 1, 9);
    const SENT_US: u64 = 3_000_042;

    fn matcher(me: IpAddr) -> Matcher {
        Matcher { sources: Sources::one(me), src_ports: (61000, 61063), key: CookieKey::new(7, 11) }
    }

    fn request(me: IpAddr, target: IpAddr) -> Vec<u8> {
        let t = EchoTemplate::new([3; 6], [2; 6], me);
        let mut out = [0u8; FRAME_LEN];
        let m = matcher(me);
        let len = t.write(&m.key, me, &Probe { dst: target, sport: 61005, dport: 0, send_us: SENT_US }, &mut out);
        out[..len].to_vec()
    }

    fn classify(m: &Matcher, frame: &[u8]) -> Result<Reply, Rejection> {
        recognise(m, &parse(frame, &m.sources)?)
    }

    /// What the target's kernel answers: the request's identifier, sequence and payload.
    fn echo_reply(request: &[u8]) -> Vec<u8> {
        let p = SlicedPacket::from_ethernet(request).unwrap();
        let mut out = Vec::new();
        match (p.net.unwrap(), p.transport.unwrap()) {
            (NetSlice::Ipv4(ip), TransportSlice::Icmpv4(icmp)) => {
                let Icmpv4Type::EchoRequest(echo) = icmp.icmp_type() else { panic!("not an echo request") };
                let h = ip.header();
                PacketBuilder::ethernet2([2; 6], [3; 6])
                    .ipv4(h.destination(), h.source(), 61)
                    .icmpv4_echo_reply(echo.id, echo.seq)
                    .write(&mut out, icmp.payload())
                    .unwrap();
            }
            (NetSlice::Ipv6(ip), TransportSlice::Icmpv6(icmp)) => {
                let Icmpv6Type::EchoRequest(echo) = icmp.icmp_type() else { panic!("not an echo request") };
                let h = ip.header();
                PacketBuilder::ethernet2([2; 6], [3; 6])
                    .ipv6(h.destination(), h.source(), 61)
                    .icmpv6_echo_reply(echo.id, echo.seq)
                    .write(&mut out, icmp.payload())
                    .unwrap();
            }
            _ => panic!("not an echo request"),
        }
        out
    }

    #[test]
    fn builds_the_exact_ipv4_request() {
        let f = request(ME.into(), TARGET.into());
        let m = matcher(ME.into());
        let cookie = m.key.seq(ME.into(), TARGET.into(), 61005, 0, SENT_US);
        let tsval = m.key.tsval(SENT_US);
        let (c, t) = (cookie.to_be_bytes(), tsval.to_be_bytes());
        #[rustfmt::skip]
        let want: [u8; 50] = [
            2, 2, 2, 2, 2, 2,  3, 3, 3, 3, 3, 3,  0x08, 0x00,
            // IPv4: len 36, id = cookie's low half, no DF, TTL 64, ICMP, checksum, 10.200.0.1 -> 10.201.0.9
            0x45, 0x00, 0x00, 0x24, c[2], c[3], 0x00, 0x00, 0x40, 0x01, 0x00, 0x00,
            10, 200, 0, 1,  10, 201, 0, 9,
            // echo request, code 0, checksum, identifier 61005, sequence = cookie's low half
            0x08, 0x00, 0x00, 0x00,  0xee, 0x4d, c[2], c[3],
            // payload: the cookie, the TSval
            c[0], c[1], c[2], c[3],  t[0], t[1], t[2], t[3],
        ];
        let mut without_sums = f.clone();
        without_sums[24..26].fill(0);
        without_sums[36..38].fill(0);
        assert_eq!(without_sums, want);
        let p = SlicedPacket::from_ethernet(&f).unwrap();
        let Some(NetSlice::Ipv4(ip)) = p.net else { panic!("not IPv4") };
        assert_eq!(ip.header().header_checksum(), ip.header().to_header().calc_header_checksum());
        let Some(TransportSlice::Icmpv4(icmp)) = p.transport else { panic!("not ICMP") };
        assert_eq!(icmp.checksum(), icmp.header().icmp_type.calc_checksum(icmp.payload()));
    }

    #[test]
    fn builds_an_ipv6_request_with_its_pseudo_header_sum() {
        let f = request(ME6.into(), TARGET6.into());
        assert_eq!(f.len(), 14 + 40 + 16);
        let p = SlicedPacket::from_ethernet(&f).unwrap();
        let Some(NetSlice::Ipv6(ip)) = p.net else { panic!("not IPv6") };
        assert_eq!((ip.header().payload_length(), ip.header().hop_limit()), (16, 64));
        assert_eq!(ip.header().destination_addr(), TARGET6);
        let Some(TransportSlice::Icmpv6(icmp)) = p.transport else { panic!("not ICMPv6") };
        let Icmpv6Type::EchoRequest(IcmpEchoHeader { id, .. }) = icmp.icmp_type() else { panic!("not a request") };
        assert_eq!(id, 61005);
        let want = icmp.header().icmp_type.calc_checksum(ME6.octets(), TARGET6.octets(), icmp.payload()).unwrap();
        assert_eq!(icmp.checksum(), want);
    }

    #[test]
    fn an_echo_reply_is_up_with_the_exact_send_time() {
        for (me, target) in [(IpAddr::from(ME), IpAddr::from(TARGET)), (ME6.into(), TARGET6.into())] {
            let m = matcher(me);
            let r = classify(&m, &echo_reply(&request(me, target))).unwrap();
            let want = Reply {
                ip: target,
                port: 0,
                from: me,
                from_port: 61005,
                kind: ReplyKind::EchoReply,
                ttl: 61,
                sent: Some(SendTick::of(SENT_US)),
                sent_us: Some(SENT_US as u32),
                ack: 0,
                window: 0,
            };
            assert_eq!(r, want);
            assert_eq!(state(&r), (PortState::Up, Reason::EchoReply));
        }
    }

    /// A request from one of our addresses whose cookie is another's: its
    /// reply, to the first, is no reply.
    #[test]
    fn an_echo_reply_to_one_of_our_addresses_with_another_addresses_cookie_is_forged() {
        let (me, seven) = (IpAddr::from(ME), IpAddr::from(Ipv4Addr::new(10, 200, 0, 7)));
        let both = Matcher { sources: Sources::new(&[seven, me]).unwrap(), ..matcher(me) };
        let t = EchoTemplate::new([3; 6], [2; 6], me);
        let probe = Probe { dst: TARGET.into(), sport: 61005, dport: 0, send_us: SENT_US };
        let mut ours = [0u8; FRAME_LEN];
        let mut theirs = [0u8; FRAME_LEN];
        let len = t.write(&both.key, me, &probe, &mut ours);
        t.write(&both.key, seven, &probe, &mut theirs);
        assert_eq!(classify(&both, &echo_reply(&ours[..len])).unwrap().from, me);
        assert_eq!(classify(&both, &echo_reply(&theirs[..len])), Err(Rejection::BadCookie));
    }

    #[test]
    fn forged_or_foreign_echo_replies_are_nothing() {
        let m = matcher(ME.into());
        let good = echo_reply(&request(ME.into(), TARGET.into()));
        let l4 = 14 + 20;
        // Each of the sequence, the cookie and the TSval changed; and another host's reply.
        for (at, what) in [(l4 + 7, "sequence"), (l4 + 9, "cookie"), (l4 + 14, "tsval")] {
            let mut f = good.clone();
            f[at] ^= 0x10;
            assert_eq!(classify(&m, &f), Err(Rejection::BadCookie), "{what}");
        }
        let mut other_host = good.clone();
        other_host[14 + 15] = 10;
        assert_eq!(classify(&m, &other_host), Err(Rejection::BadCookie));
        // An identifier outside our range: someone's ping.
        let mut foreign = good.clone();
        foreign[l4 + 4..l4 + 6].copy_from_slice(&1234u16.to_be_bytes());
        assert_eq!(classify(&m, &foreign), Err(Rejection::NotOurs));
        // A reply without our payload.
        let mut short = Vec::new();
        PacketBuilder::ethernet2([2; 6], [3; 6])
            .ipv4(TARGET.octets(), ME.octets(), 61)
            .icmpv4_echo_reply(61005, 7)
            .write(&mut short, &[1, 2, 3])
            .unwrap();
        assert_eq!(classify(&m, &short), Err(Rejection::Malformed));
        // The v4 reply read by a v6 scan, and a request sent to us.
        assert_eq!(classify(&matcher(ME6.into()), &good), Err(Rejection::NotOurs));
        let mut req = Vec::new();
        PacketBuilder::ethernet2([2; 6], [3; 6])
            .ipv4(TARGET.octets(), ME.octets(), 61)
            .icmpv4_echo_request(61005, 7)
            .write(&mut req, &good[l4 + 8..])
            .unwrap();
        assert_eq!(classify(&m, &req), Err(Rejection::NotOurs));
    }

    fn unreachable(request: &[u8], code: u8) -> Vec<u8> {
        let mut out = Vec::new();
        let quoted = &request[14..];
        if request[12..14] == [0x08, 0x00] {
            PacketBuilder::ethernet2([2; 6], [3; 6])
                .ipv4([10, 200, 0, 254], ME.octets(), 63)
                .icmpv4(Icmpv4Type::DestinationUnreachable(
                    etherparse::icmpv4::DestUnreachableHeader::from_values(code, 0).unwrap(),
                ))
                .write(&mut out, quoted)
                .unwrap();
        } else {
            PacketBuilder::ethernet2([2; 6], [3; 6])
                .ipv6([0xfd, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xfe], ME6.octets(), 63)
                .icmpv6(Icmpv6Type::DestinationUnreachable(
                    etherparse::icmpv6::DestUnreachableCode::from_u8(code).unwrap(),
                ))
                .write(&mut out, quoted)
                .unwrap();
        }
        out
    }

    #[test]
    fn an_icmp_error_quoting_our_request_is_unreachable_and_one_quoting_another_is_nothing() {
        let m = matcher(ME.into());
        let req = request(ME.into(), TARGET.into());
        let r = classify(&m, &unreachable(&req, 1)).unwrap();
        assert_eq!((r.ip, r.port, r.kind, r.ttl), (TARGET.into(), 0, ReplyKind::Unreachable { code: 1 }, 63));
        assert_eq!(state(&r), (PortState::Unreachable, Reason::Unreachable { code: 1 }));
        let m6 = matcher(ME6.into());
        let r = classify(&m6, &unreachable(&request(ME6.into(), TARGET6.into()), 3)).unwrap();
        assert_eq!((r.ip, r.kind), (TARGET6.into(), ReplyKind::Unreachable { code: 1 }));
        // A request we never sent (its cookie changed), and one cut before its payload.
        let mut forged = req.clone();
        forged[14 + 20 + 9] ^= 1;
        assert_eq!(classify(&m, &unreachable(&forged, 1)), Err(Rejection::BadCookie));
        assert_eq!(classify(&m, &unreachable(&req[..14 + 20 + 8], 1)), Err(Rejection::Malformed));
    }

    proptest! {
        #[test]
        fn mutated_echo_replies_never_panic_or_change_their_target(
            pos in 0usize..60, byte in any::<u8>(), cut in 0usize..60, v6 in any::<bool>()
        ) {
            let (me, target) = if v6 { (IpAddr::from(ME6), IpAddr::from(TARGET6)) } else { (ME.into(), TARGET.into()) };
            let m = matcher(me);
            let mut f = echo_reply(&request(me, target));
            if pos < f.len() { f[pos] = byte; }
            f.truncate(f.len().saturating_sub(cut));
            if let Ok(r) = classify(&m, &f) {
                prop_assert_eq!((r.ip, r.port, r.from_port), (target, 0, 61005));
            }
        }
    }
}
