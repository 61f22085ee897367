//! The TCP SYN probe module: the SYN frame, built once per scan and
//! patched per probe; the RST that closes what a SYN-ACK opened, on the
//! same link and IP header; how a SYN-ACK, an RST or an ICMP error is
//! recognised as the answer to one of our SYNs; and what each means.
//!
//! The SYN's sequence number is the cookie (`wire::cookie`): a SYN-ACK and
//! an RST acknowledge it, and an ICMP error quotes it.
//!
//! Layout: Ethernet II, then IPv4 without options (DF set, TTL 64; 70 bytes
//! in all) or IPv6 without extension headers (hop limit 64; 90 bytes), then
//! TCP with MSS and timestamp options. The timestamp option carries the send
//! time (TSval), which a SYN-ACK echoes in TSecr: that gives the round-trip
//! time of an open port without any per-probe memory.

use super::{Matcher, Probe};
use crate::result::{PortState, Reason};
use crate::wire::cookie::CookieKey;
use crate::wire::field::{Field, at, ethernet, ipv4, ipv6, tcp};
use crate::wire::reply::{Inbound, Received, Rejection, Reply, ReplyKind};
use crate::wire::{addr_bytes, checksum, field};
use etherparse::TcpOptionElement;
use std::net::IpAddr;

/// Room for the longer of the two frames (and for any RST, which is shorter).
pub const SYN_FRAME_LEN: usize = IP + ipv6::HEADER_LEN + TCP_LEN as usize;
/// A TCP header without options: what an RST carries.
const RST_TCP_LEN: usize = tcp::HEADER_LEN;
const IP: usize = ethernet::HEADER_LEN;
/// The SYN's TCP header with its options (below).
const TCP_LEN: u16 = 36;
/// The SYN's options, after its TCP header: MSS, then NOP, NOP and a
/// timestamp (its kind and length, TSval, TSecr).
const MSS_OPTION: Field = 20..24;
const TIMESTAMP_OPTION: Field = 24..28;
const TSVAL: Field = 28..32;
const TTL: u8 = 64;
const WINDOW: u16 = 64240;
const MSS: u16 = 1460;
const DONT_FRAGMENT: u8 = 0x40;

/// A SYN's per-probe fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynProbe {
    /// Of the template's address family.
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    /// IPv4 only: IPv6 has no identification field outside fragments.
    pub ip_id: u16,
    pub tsval: u32,
}

/// A segment of a connection prtip holds itself, to be written into a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outgoing<'a> {
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub payload: &'a [u8],
}

#[derive(Debug, Clone)]
pub struct SynTemplate {
    frame: [u8; SYN_FRAME_LEN],
    /// Where the TCP header starts: the frame is `tcp + TCP_LEN` bytes long.
    tcp: usize,
    /// Where the source and destination addresses are in the frame.
    src: Field,
    dst: Field,
    /// Sums of the parts of each header that no probe changes (the IPv4
    /// header's only; IPv6 has no header checksum).
    ip_sum: u64,
    tcp_sum: u64,
}

impl SynTemplate {
    pub fn new(src_mac: [u8; 6], dst_mac: [u8; 6], src: IpAddr) -> Self {
        let mut f = [0u8; SYN_FRAME_LEN];
        f[ethernet::DESTINATION].copy_from_slice(&dst_mac);
        f[ethernet::SOURCE].copy_from_slice(&src_mac);
        let (l4, src_at, dst_at) = match src {
            IpAddr::V4(src) => {
                f[ethernet::ETHERTYPE].copy_from_slice(&ethernet::TYPE_IPV4.to_be_bytes());
                f[IP + ipv4::VERSION_IHL] = 0x45;
                f[at(IP, ipv4::TOTAL_LEN)].copy_from_slice(&(ipv4::HEADER_LEN as u16 + TCP_LEN).to_be_bytes());
                f[IP + ipv4::FLAGS_FRAGMENT.start] = DONT_FRAGMENT;
                f[IP + ipv4::TTL] = TTL;
                f[IP + ipv4::PROTOCOL] = field::PROTOCOL_TCP;
                f[at(IP, ipv4::SOURCE)].copy_from_slice(&src.octets());
                (IP + ipv4::HEADER_LEN, at(IP, ipv4::SOURCE), at(IP, ipv4::DESTINATION))
            }
            IpAddr::V6(src) => {
                f[ethernet::ETHERTYPE].copy_from_slice(&ethernet::TYPE_IPV6.to_be_bytes());
                f[IP + ipv6::VERSION] = 0x60;
                f[at(IP, ipv6::PAYLOAD_LEN)].copy_from_slice(&TCP_LEN.to_be_bytes());
                f[IP + ipv6::NEXT_HEADER] = field::PROTOCOL_TCP;
                f[IP + ipv6::HOP_LIMIT] = TTL;
                f[at(IP, ipv6::SOURCE)].copy_from_slice(&src.octets());
                (IP + ipv6::HEADER_LEN, at(IP, ipv6::SOURCE), at(IP, ipv6::DESTINATION))
            }
        };
        f[l4 + tcp::DATA_OFFSET] = ((TCP_LEN / 4) as u8) << 4;
        f[l4 + tcp::FLAGS] = tcp::SYN;
        f[at(l4, tcp::WINDOW)].copy_from_slice(&WINDOW.to_be_bytes());
        f[at(l4, MSS_OPTION)].copy_from_slice(&[2, 4, (MSS >> 8) as u8, MSS as u8]);
        f[at(l4, TIMESTAMP_OPTION)].copy_from_slice(&[1, 1, 8, 10]); // NOP, NOP, timestamp kind and length
        // Variable fields are still zero here, so these sums cover only the constant parts.
        let ip_sum = if src.is_ipv4() { checksum::add(0, &f[IP..l4]) } else { 0 };
        let mut tcp_sum = checksum::add(0, &f[src_at.clone()]);
        tcp_sum += u64::from(field::PROTOCOL_TCP) + u64::from(TCP_LEN);
        tcp_sum = checksum::add(tcp_sum, &f[l4..l4 + usize::from(TCP_LEN)]);
        SynTemplate { frame: f, tcp: l4, src: src_at, dst: dst_at, ip_sum, tcp_sum }
    }

    /// Bytes in each frame: 70 for IPv4, 90 for IPv6.
    pub fn frame_len(&self) -> usize {
        self.tcp + usize::from(TCP_LEN)
    }

    #[inline(always)]
    fn is_ipv4(&self) -> bool {
        self.dst.len() == 4
    }

    /// Writes an RST from `sport` to `dst:dport` with sequence number `seq`
    /// into `out` (which must hold `SYN_FRAME_LEN` bytes); returns its length.
    /// With `seq` the acknowledgement number of a SYN-ACK, the target drops
    /// the half-open connection at once instead of retrying its SYN-ACK for a
    /// minute, as it would for a scanner whose kernel never sees the SYN-ACK
    /// (AF_XDP) and so sends no RST itself.
    pub fn write_reset(&self, dst: IpAddr, sport: u16, dport: u16, seq: u32, out: &mut [u8]) -> usize {
        let rst = Outgoing { dst, sport, dport, seq, ack: 0, flags: tcp::RST, window: 0, payload: &[] };
        self.write_segment(&rst, out)
    }

    /// Bytes in the frame of a segment carrying `payload` bytes.
    pub fn segment_len(&self, payload: usize) -> usize {
        self.tcp + RST_TCP_LEN + payload
    }

    /// Writes `segment` (a header without options) from this template's
    /// address into `out`, which must hold `segment_len` bytes of it;
    /// returns its length. The segments of a connection prtip holds itself.
    pub fn write_segment(&self, segment: &Outgoing, out: &mut [u8]) -> usize {
        let (l4, len) = (self.tcp, self.segment_len(segment.payload.len()));
        let ip_payload = RST_TCP_LEN + segment.payload.len();
        let out = &mut out[..len];
        out[..l4].copy_from_slice(&self.frame[..l4]);
        let (bytes, n) = addr_bytes(segment.dst);
        let dst_bytes = &bytes[..n];
        out[self.dst.clone()].copy_from_slice(dst_bytes);
        if self.is_ipv4() {
            out[at(IP, ipv4::TOTAL_LEN)].copy_from_slice(&((ipv4::HEADER_LEN + ip_payload) as u16).to_be_bytes());
            out[at(IP, ipv4::CHECKSUM)].fill(0);
            let sum = checksum::finish(checksum::add(0, &out[IP..l4]));
            out[at(IP, ipv4::CHECKSUM)].copy_from_slice(&sum.to_be_bytes());
        } else {
            out[at(IP, ipv6::PAYLOAD_LEN)].copy_from_slice(&(ip_payload as u16).to_be_bytes());
        }
        let t = &mut out[l4..];
        t[..RST_TCP_LEN].fill(0);
        t[tcp::SRC_PORT].copy_from_slice(&segment.sport.to_be_bytes());
        t[tcp::DST_PORT].copy_from_slice(&segment.dport.to_be_bytes());
        t[tcp::SEQ].copy_from_slice(&segment.seq.to_be_bytes());
        t[tcp::ACK_NUM].copy_from_slice(&segment.ack.to_be_bytes());
        t[tcp::DATA_OFFSET] = ((RST_TCP_LEN / 4) as u8) << 4;
        t[tcp::FLAGS] = segment.flags;
        t[tcp::WINDOW].copy_from_slice(&segment.window.to_be_bytes());
        t[RST_TCP_LEN..].copy_from_slice(segment.payload);
        let src = &self.frame[self.src.clone()];
        let pseudo =
            checksum::add(checksum::add(0, src), dst_bytes) + u64::from(field::PROTOCOL_TCP) + ip_payload as u64;
        let sum = checksum::finish(checksum::add(pseudo, t));
        t[tcp::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
        len
    }

    /// Writes the SYN of `probe` from `src`, its cookie under `key`, into
    /// `out`; returns its length.
    #[inline]
    pub fn write_probe(&self, key: &CookieKey, src: IpAddr, probe: &Probe, out: &mut [u8]) -> usize {
        let seq = key.seq(src, probe.dst, probe.sport, probe.dport, probe.send_us);
        let tsval = key.tsval(probe.send_us);
        let syn = SynProbe { dst: probe.dst, sport: probe.sport, dport: probe.dport, seq, ip_id: seq as u16, tsval };
        self.write(&syn, out);
        self.frame_len()
    }

    /// Writes the complete SYN for `probe` into `out`, which must hold `frame_len()` bytes.
    pub fn write(&self, probe: &SynProbe, out: &mut [u8]) {
        let out = &mut out[..self.frame_len()];
        out.copy_from_slice(&self.frame[..self.frame_len()]);
        let (bytes, n) = addr_bytes(probe.dst);
        let dst = &bytes[..n];
        debug_assert_eq!(dst.len(), self.dst.len(), "a probe of the template's address family");
        out[self.dst.clone()].copy_from_slice(dst);
        let l4 = self.tcp;
        out[at(l4, tcp::SRC_PORT)].copy_from_slice(&probe.sport.to_be_bytes());
        out[at(l4, tcp::DST_PORT)].copy_from_slice(&probe.dport.to_be_bytes());
        out[at(l4, tcp::SEQ)].copy_from_slice(&probe.seq.to_be_bytes());
        out[at(l4, TSVAL)].copy_from_slice(&probe.tsval.to_be_bytes());

        let dst_sum = checksum::add(0, dst);
        if self.is_ipv4() {
            out[at(IP, ipv4::IDENTIFICATION)].copy_from_slice(&probe.ip_id.to_be_bytes());
            let ip_sum = self.ip_sum + dst_sum + u64::from(probe.ip_id);
            out[at(IP, ipv4::CHECKSUM)].copy_from_slice(&checksum::finish(ip_sum).to_be_bytes());
        }
        let tcp_sum = self.tcp_sum
            + dst_sum
            + u64::from(probe.sport)
            + u64::from(probe.dport)
            + u64::from(probe.seq >> 16)
            + u64::from(probe.seq & 0xffff)
            + u64::from(probe.tsval >> 16)
            + u64::from(probe.tsval & 0xffff);
        out[at(l4, tcp::CHECKSUM)].copy_from_slice(&checksum::finish(tcp_sum).to_be_bytes());
    }
}

/// The reply `r` is, if it answers one of our SYNs: a SYN-ACK or an RST
/// that acknowledges its cookie (a SYN-ACK's timestamp echo must agree with
/// it), or an ICMP error quoting it.
pub fn recognise(m: &Matcher, r: &Received) -> Result<Reply, Rejection> {
    use Rejection::{BadCookie, Malformed, NotOurs};
    match &r.inbound {
        Inbound::Tcp(tcp) => {
            let (sport, dport) = (tcp.destination_port(), tcp.source_port());
            if !m.ours(sport) || !tcp.ack() {
                return Err(NotOurs);
            }
            let seq = tcp.acknowledgment_number().wrapping_sub(1);
            let sent = m.key.check(r.to, r.from, sport, dport, seq).ok_or(BadCookie)?;
            let (kind, sent_us) = if tcp.rst() {
                (ReplyKind::Rst, None)
            } else if tcp.syn() {
                let echo = tcp.options_iterator().find_map(|o| match o {
                    Ok(TcpOptionElement::Timestamp(_, echo)) => Some(echo),
                    _ => None,
                });
                match echo {
                    Some(echo) => (ReplyKind::SynAck, Some(m.key.echoed_send_us(echo, sent).ok_or(BadCookie)?)),
                    None => (ReplyKind::SynAck, None),
                }
            } else {
                return Err(NotOurs);
            };
            let (ack, window) = (tcp.acknowledgment_number(), tcp.window_size());
            Ok(Reply {
                ip: r.from,
                port: dport,
                from: r.to,
                from_port: sport,
                kind,
                ttl: r.ttl,
                sent: Some(sent),
                sent_us,
                ack,
                window,
            })
        }
        &Inbound::Unreachable { code, quoted } => {
            if quoted.src != r.to || quoted.protocol != field::PROTOCOL_TCP {
                return Err(NotOurs);
            }
            // RFC 792 guarantees only the first 8 bytes of the TCP header: ports and sequence number.
            let tcp = quoted.l4.get(..8).ok_or(Malformed)?;
            let sport = u16::from_be_bytes([tcp[0], tcp[1]]);
            let dport = u16::from_be_bytes([tcp[2], tcp[3]]);
            let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
            if !m.ours(sport) {
                return Err(NotOurs);
            }
            let sent = m.key.check(r.to, quoted.dst, sport, dport, seq).ok_or(BadCookie)?;
            Ok(Reply {
                ip: quoted.dst,
                port: dport,
                from: r.to,
                from_port: sport,
                kind: ReplyKind::Unreachable { code },
                ttl: r.ttl,
                sent: Some(sent),
                sent_us: None,
                ack: 0,
                window: 0,
            })
        }
        _ => Err(NotOurs),
    }
}

/// A SYN-ACK is open (`zero-window` when it offers no window), an RST
/// closed, an ICMP unreachable filtered.
pub fn state(reply: &Reply) -> (PortState, Reason) {
    match reply.kind {
        ReplyKind::SynAck if reply.window == 0 => (PortState::Open, Reason::ZeroWindow),
        ReplyKind::SynAck => (PortState::Open, Reason::SynAck),
        ReplyKind::Rst => (PortState::Closed, Reason::Reset),
        ReplyKind::Unreachable { code } => (PortState::Filtered, Reason::Unreachable { code }),
        // Not a reply `recognise` gives.
        ReplyKind::EchoReply | ReplyKind::Datagram => (PortState::Filtered, Reason::NoResponse),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{SlicedPacket, TransportSlice};
    use std::net::{Ipv4Addr, Ipv6Addr};

    const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
    const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];

    fn probe() -> SynProbe {
        SynProbe {
            dst: Ipv4Addr::new(10, 201, 0, 1).into(),
            sport: 61000,
            dport: 443,
            seq: 0xdead_beef,
            ip_id: 0x1234,
            tsval: 0x0102_0304,
        }
    }

    #[test]
    fn builds_the_exact_frame() {
        let t = SynTemplate::new(SRC_MAC, DST_MAC, Ipv4Addr::new(10, 200, 0, 1).into());
        assert_eq!(t.frame_len(), 70);
        let mut out = [0u8; 70];
        t.write(&probe(), &mut out);
        #[rustfmt::skip]
        let expected: [u8; 70] = [
            // Ethernet
            0x02, 0, 0, 0, 0, 2,  0x02, 0, 0, 0, 0, 1,  0x08, 0x00,
            // IPv4: len 56, id 0x1234, DF, TTL 64, TCP, checksum, 10.200.0.1 -> 10.201.0.1
            0x45, 0x00, 0x00, 0x38, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00,
            10, 200, 0, 1,  10, 201, 0, 1,
            // TCP: 61000 -> 443, seq, ack 0, offset 9, SYN, window 64240, checksum, urgent 0
            0xee, 0x48, 0x01, 0xbb,  0xde, 0xad, 0xbe, 0xef,  0, 0, 0, 0,
            0x90, 0x02, 0xfa, 0xf0,  0x00, 0x00, 0x00, 0x00,
            // MSS 1460, NOP, NOP, timestamp (TSval 0x01020304, TSecr 0)
            0x02, 0x04, 0x05, 0xb4,  0x01, 0x01, 0x08, 0x0a,  0x01, 0x02, 0x03, 0x04,  0, 0, 0, 0,
        ];
        // Everything but the checksums is compared byte for byte...
        let mut without_sums = out;
        without_sums[24..26].fill(0);
        without_sums[50..52].fill(0);
        assert_eq!(without_sums, expected);
        // ...and the checksums against an independent implementation.
        let p = SlicedPacket::from_ethernet(&out).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else { panic!("not IPv4") };
        assert_eq!(ip.header().header_checksum(), ip.header().to_header().calc_header_checksum());
        let Some(TransportSlice::Tcp(tcp)) = p.transport else { panic!("not TCP") };
        let want = tcp.calc_checksum_ipv4(ip.header().source(), ip.header().destination()).unwrap();
        assert_eq!(tcp.checksum(), want);
    }

    #[test]
    fn builds_the_exact_ipv6_frame() {
        let t = SynTemplate::new(SRC_MAC, DST_MAC, "fd00:200::1".parse().unwrap());
        assert_eq!(t.frame_len(), 90);
        let mut out = [0xaau8; SYN_FRAME_LEN];
        t.write(&SynProbe { dst: "fd00:201::1:2".parse().unwrap(), ..probe() }, &mut out);
        #[rustfmt::skip]
        let expected: [u8; SYN_FRAME_LEN] = [
            // Ethernet
            0x02, 0, 0, 0, 0, 2,  0x02, 0, 0, 0, 0, 1,  0x86, 0xdd,
            // IPv6: version 6, no traffic class or flow label, payload 36, TCP, hop limit 64
            0x60, 0, 0, 0,  0x00, 0x24, 0x06, 0x40,
            0xfd, 0x00, 0x02, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
            0xfd, 0x00, 0x02, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0, 0x02,
            // TCP: 61000 -> 443, seq, ack 0, offset 9, SYN, window 64240, checksum, urgent 0
            0xee, 0x48, 0x01, 0xbb,  0xde, 0xad, 0xbe, 0xef,  0, 0, 0, 0,
            0x90, 0x02, 0xfa, 0xf0,  0x00, 0x00, 0x00, 0x00,
            // MSS 1460, NOP, NOP, timestamp (TSval 0x01020304, TSecr 0)
            0x02, 0x04, 0x05, 0xb4,  0x01, 0x01, 0x08, 0x0a,  0x01, 0x02, 0x03, 0x04,  0, 0, 0, 0,
        ];
        let mut without_sum = out;
        without_sum[70..72].fill(0);
        assert_eq!(without_sum, expected);
        let p = SlicedPacket::from_ethernet(&out).unwrap();
        let Some(etherparse::NetSlice::Ipv6(ip)) = p.net else { panic!("not IPv6") };
        let Some(TransportSlice::Tcp(tcp)) = p.transport else { panic!("not TCP") };
        let want = tcp.calc_checksum_ipv6(ip.header().source(), ip.header().destination()).unwrap();
        assert_eq!(tcp.checksum(), want);
    }

    #[test]
    fn resets_are_exact_for_both_families() {
        let t = SynTemplate::new(SRC_MAC, DST_MAC, Ipv4Addr::new(10, 200, 0, 1).into());
        let mut out = [0xaau8; SYN_FRAME_LEN];
        let len = t.write_reset(Ipv4Addr::new(10, 201, 0, 1).into(), 61000, 443, 0xdead_bef0, &mut out);
        #[rustfmt::skip]
        let expected: [u8; 54] = [
            0x02, 0, 0, 0, 0, 2,  0x02, 0, 0, 0, 0, 1,  0x08, 0x00,
            // IPv4: len 40, id 0, DF, TTL 64, TCP, checksum, 10.200.0.1 -> 10.201.0.1
            0x45, 0x00, 0x00, 0x28, 0x00, 0x00, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00,
            10, 200, 0, 1,  10, 201, 0, 1,
            // TCP: 61000 -> 443, seq, ack 0, offset 5, RST, window 0, checksum, urgent 0
            0xee, 0x48, 0x01, 0xbb,  0xde, 0xad, 0xbe, 0xf0,  0, 0, 0, 0,
            0x50, 0x04, 0x00, 0x00,  0x00, 0x00, 0x00, 0x00,
        ];
        assert_eq!(len, 54);
        let mut without_sums = [0u8; 54];
        without_sums.copy_from_slice(&out[..54]);
        without_sums[24..26].fill(0);
        without_sums[50..52].fill(0);
        assert_eq!(without_sums, expected);
        let p = SlicedPacket::from_ethernet(&out[..len]).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else { panic!("not IPv4") };
        assert_eq!(ip.header().header_checksum(), ip.header().to_header().calc_header_checksum());
        let Some(TransportSlice::Tcp(tcp)) = p.transport else { panic!("not TCP") };
        assert!(tcp.rst() && !tcp.syn() && !tcp.ack() && tcp.payload().is_empty());
        assert_eq!(tcp.checksum(), tcp.calc_checksum_ipv4(ip.header().source(), ip.header().destination()).unwrap());

        let t = SynTemplate::new(SRC_MAC, DST_MAC, "fd00:200::1".parse().unwrap());
        let mut out = [0xaau8; SYN_FRAME_LEN];
        let len = t.write_reset("fd00:201::5".parse().unwrap(), 61000, 22, 7, &mut out);
        assert_eq!(len, 74);
        let p = SlicedPacket::from_ethernet(&out[..len]).unwrap();
        let Some(etherparse::NetSlice::Ipv6(ip)) = p.net else { panic!("not IPv6") };
        assert_eq!(ip.header().payload_length(), 20);
        assert_eq!(ip.header().destination_addr(), "fd00:201::5".parse::<Ipv6Addr>().unwrap());
        let Some(TransportSlice::Tcp(tcp)) = p.transport else { panic!("not TCP") };
        assert!(tcp.rst() && !tcp.ack());
        assert_eq!((tcp.source_port(), tcp.destination_port(), tcp.sequence_number()), (61000, 22, 7));
        assert_eq!(tcp.checksum(), tcp.calc_checksum_ipv6(ip.header().source(), ip.header().destination()).unwrap());
    }

    #[test]
    fn ipv6_checksums_hold_for_extreme_field_values() {
        let t = SynTemplate::new([0xff; 6], [0xff; 6], Ipv6Addr::from(u128::MAX).into());
        for (dst, sport, seq) in [(0u128, 0u16, 0u32), (u128::MAX, 65535, u32::MAX), (1 << 127 | 5, 1, 0x8000_0000)] {
            let mut out = [0u8; SYN_FRAME_LEN];
            let pr =
                SynProbe { dst: Ipv6Addr::from(dst).into(), sport, dport: sport ^ 0xffff, seq, ip_id: 0, tsval: !seq };
            t.write(&pr, &mut out);
            let p = SlicedPacket::from_ethernet(&out).unwrap();
            let Some(etherparse::NetSlice::Ipv6(ip)) = p.net else { panic!() };
            let Some(TransportSlice::Tcp(tcp)) = p.transport else { panic!() };
            assert_eq!(tcp.checksum(), tcp.calc_checksum_ipv6(ip.header().source(), dst.to_be_bytes()).unwrap());
        }
    }

    #[test]
    fn checksums_hold_for_extreme_field_values() {
        let t = SynTemplate::new([0xff; 6], [0xff; 6], Ipv4Addr::new(255, 255, 255, 255).into());
        for (dst, sport, seq) in [
            (Ipv4Addr::new(0, 0, 0, 0), 0u16, 0u32),
            (Ipv4Addr::new(255, 255, 255, 255), 65535, u32::MAX),
            (Ipv4Addr::new(1, 2, 3, 4), 1, 0x8000_0000),
        ] {
            let mut out = [0u8; SYN_FRAME_LEN];
            let pr = SynProbe { dst: dst.into(), sport, dport: sport ^ 0xffff, seq, ip_id: sport, tsval: !seq };
            t.write(&pr, &mut out);
            let p = SlicedPacket::from_ethernet(&out[..70]).unwrap();
            let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else { panic!() };
            assert_eq!(ip.header().header_checksum(), ip.header().to_header().calc_header_checksum());
            let Some(TransportSlice::Tcp(tcp)) = p.transport else { panic!() };
            assert_eq!(tcp.checksum(), tcp.calc_checksum_ipv4(ip.header().source(), dst.octets()).unwrap());
        }
    }
}

#[cfg(test)]
mod replies {
    use super::super::Matcher;
    use super::*;
    use crate::wire::cookie::SendTick;
    use crate::wire::reply::{
        Rejection::{BadCookie, Malformed, NotOurs},
        parse,
    };
    use crate::wire::sources::Sources;
    use etherparse::{Icmpv4Type, Icmpv6Type, PacketBuilder};
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    type ReplyMatcher = Matcher;

    trait Classify {
        fn classify(&self, frame: &[u8]) -> Result<Reply, Rejection>;
    }

    impl Classify for Matcher {
        fn classify(&self, frame: &[u8]) -> Result<Reply, Rejection> {
            recognise(self, &parse(frame, &self.sources)?)
        }
    }

    const ME: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
    const TARGET: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 9);

    fn matcher() -> ReplyMatcher {
        ReplyMatcher { sources: Sources::one(ME.into()), src_ports: (61000, 61063), key: CookieKey::new(7, 11) }
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
            from: ME.into(),
            from_port: 61001,
            kind: ReplyKind::SynAck,
            ttl: 57,
            sent: Some(sent),
            sent_us: Some(3_000_042),
            ack: good_ack(61001),
            window: 64000,
        };
        assert_eq!(r, want);
        // A stack that does not echo timestamps still gives the tick.
        let r = matcher().classify(&tcp_reply(good_ack(61001), 61001, true, false, None)).unwrap();
        assert_eq!((r.sent, r.sent_us), (Some(sent), None));
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
        assert_eq!((r.ip, r.port, r.sent, r.sent_us), (TARGET.into(), 443, Some(SendTick::of(SENT_US)), None));
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
        let seven = IpAddr::from(Ipv4Addr::new(10, 200, 0, 7));
        let other = ReplyMatcher { sources: Sources::one(seven), ..m };
        assert_eq!(other.classify(&tcp_reply(good_ack(61001), 61001, true, false, None)), Err(NotOurs));
        // to one of our addresses, with the cookie of a probe from another of them
        let both = ReplyMatcher { sources: Sources::new(&[seven, ME.into()]).unwrap(), ..m };
        let from_seven = m.key.seq(seven, TARGET.into(), 61001, 443, SENT_US).wrapping_add(1);
        assert_eq!(both.classify(&tcp_reply(from_seven, 61001, true, false, None)), Err(BadCookie));
        let reply = both.classify(&tcp_reply(good_ack(61001), 61001, true, false, None)).unwrap();
        assert_eq!(reply.from, IpAddr::from(ME));
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
        t.write(&SynProbe { dst, sport: 61005, dport: 8443, seq, ip_id: 1, tsval: 2 }, &mut syn);
        let r = m.classify(&icmp_unreachable(&syn, 13)).unwrap();
        let want = (dst, 8443, ReplyKind::Unreachable { code: 13 }, 63, Some(SendTick::of(SENT_US)));
        assert_eq!((r.ip, r.port, r.kind, r.ttl, r.sent), want);
        // quoting a SYN whose cookie is wrong
        t.write(&SynProbe { dst, sport: 61005, dport: 8443, seq: seq ^ 1, ip_id: 1, tsval: 2 }, &mut syn);
        assert_eq!(m.classify(&icmp_unreachable(&syn, 13)), Err(BadCookie));
    }

    const ME6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 0, 0, 0, 0, 0, 1);
    const TARGET6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x201, 0, 0, 0, 0, 1, 9);

    fn matcher6() -> ReplyMatcher {
        ReplyMatcher { sources: Sources::one(ME6.into()), ..matcher() }
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
            from: ME6.into(),
            from_port: 61001,
            kind: ReplyKind::SynAck,
            ttl: 58,
            sent: Some(SendTick::of(SENT_US)),
            sent_us: Some(SENT_US as u32),
            ack: m.key.seq(ME6.into(), TARGET6.into(), 61001, 443, SENT_US).wrapping_add(1),
            window: 64000,
        };
        assert_eq!(r, want);
        let r = m.classify(&tcp6_reply(&m, 61001, false, true)).unwrap();
        assert_eq!((r.kind, r.ip), (ReplyKind::Rst, TARGET6.into()));
        // Addressed to another of our addresses, or checked by an IPv4 scan: nothing.
        let other = ReplyMatcher { sources: Sources::one(Ipv6Addr::new(0xfd00, 0x200, 0, 0, 0, 0, 0, 2).into()), ..m };
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
        t.write(&SynProbe { dst, sport: 61005, dport: 8443, seq, ip_id: 0, tsval: 2 }, &mut syn);
        let r = m.classify(&icmp6_unreachable(&syn, 1)).unwrap();
        // ICMPv6's administratively prohibited is ICMP's code 13.
        let want = (dst, 8443, ReplyKind::Unreachable { code: 13 }, 63, Some(SendTick::of(SENT_US)));
        assert_eq!((r.ip, r.port, r.kind, r.ttl, r.sent), want);
        let port = m.classify(&icmp6_unreachable(&syn, 4)).unwrap();
        assert_eq!(port.kind, ReplyKind::Unreachable { code: 3 }, "port unreachable");
        // A quote cut inside the TCP ports, a wrong cookie, and a neighbour solicitation: nothing.
        assert_eq!(m.classify(&icmp6_unreachable(&syn[..14 + 40 + 6], 1)), Err(Malformed));
        t.write(&SynProbe { dst, sport: 61005, dport: 8443, seq: seq ^ 1, ip_id: 0, tsval: 2 }, &mut syn);
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
