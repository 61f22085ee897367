//! The SYN frame: built once per scan, patched per probe; and the RST that
//! closes what a SYN-ACK opened, on the same link and IP header.
//!
//! Layout: Ethernet II, then IPv4 without options (DF set, TTL 64; 70 bytes
//! in all) or IPv6 without extension headers (hop limit 64; 90 bytes), then
//! TCP with MSS and timestamp options. The timestamp option carries the send
//! time (TSval), which a SYN-ACK echoes in TSecr: that gives the round-trip
//! time of an open port without any per-probe memory.

use super::field::{Field, at, ethernet, ipv4, ipv6, tcp};
use super::{addr_bytes, checksum, field};
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

/// Per-probe fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Of the template's address family.
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    /// IPv4 only: IPv6 has no identification field outside fragments.
    pub ip_id: u16,
    pub tsval: u32,
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
        let (l4, len) = (self.tcp, self.tcp + RST_TCP_LEN);
        let out = &mut out[..len];
        out[..l4].copy_from_slice(&self.frame[..l4]);
        let (bytes, n) = addr_bytes(dst);
        let dst_bytes = &bytes[..n];
        out[self.dst.clone()].copy_from_slice(dst_bytes);
        if self.is_ipv4() {
            out[at(IP, ipv4::TOTAL_LEN)].copy_from_slice(&((ipv4::HEADER_LEN + RST_TCP_LEN) as u16).to_be_bytes());
            out[at(IP, ipv4::CHECKSUM)].fill(0);
            let sum = checksum::finish(checksum::add(0, &out[IP..l4]));
            out[at(IP, ipv4::CHECKSUM)].copy_from_slice(&sum.to_be_bytes());
        } else {
            out[at(IP, ipv6::PAYLOAD_LEN)].copy_from_slice(&(RST_TCP_LEN as u16).to_be_bytes());
        }
        let t = &mut out[l4..];
        t.fill(0);
        t[tcp::SRC_PORT].copy_from_slice(&sport.to_be_bytes());
        t[tcp::DST_PORT].copy_from_slice(&dport.to_be_bytes());
        t[tcp::SEQ].copy_from_slice(&seq.to_be_bytes());
        t[tcp::DATA_OFFSET] = ((RST_TCP_LEN / 4) as u8) << 4;
        t[tcp::FLAGS] = tcp::RST;
        let src = &self.frame[self.src.clone()];
        let pseudo =
            checksum::add(checksum::add(0, src), dst_bytes) + u64::from(field::PROTOCOL_TCP) + RST_TCP_LEN as u64;
        let sum = checksum::finish(checksum::add(pseudo, t));
        t[tcp::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
        len
    }

    /// Writes the complete SYN for `probe` into `out`, which must hold `frame_len()` bytes.
    pub fn write(&self, probe: &Probe, out: &mut [u8]) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{SlicedPacket, TransportSlice};
    use std::net::{Ipv4Addr, Ipv6Addr};

    const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
    const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];

    fn probe() -> Probe {
        Probe {
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
        t.write(&Probe { dst: "fd00:201::1:2".parse().unwrap(), ..probe() }, &mut out);
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
                Probe { dst: Ipv6Addr::from(dst).into(), sport, dport: sport ^ 0xffff, seq, ip_id: 0, tsval: !seq };
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
            let pr = Probe { dst: dst.into(), sport, dport: sport ^ 0xffff, seq, ip_id: sport, tsval: !seq };
            t.write(&pr, &mut out);
            let p = SlicedPacket::from_ethernet(&out[..70]).unwrap();
            let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else { panic!() };
            assert_eq!(ip.header().header_checksum(), ip.header().to_header().calc_header_checksum());
            let Some(TransportSlice::Tcp(tcp)) = p.transport else { panic!() };
            assert_eq!(tcp.checksum(), tcp.calc_checksum_ipv4(ip.header().source(), dst.octets()).unwrap());
        }
    }
}
