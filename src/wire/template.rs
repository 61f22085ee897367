//! The SYN frame: built once per scan, patched per probe.
//!
//! Layout (70 bytes): Ethernet II, IPv4 without options (DF set, TTL 64), TCP
//! with MSS and timestamp options. The timestamp option carries the send time
//! (TSval), which a SYN-ACK echoes in TSecr: that gives the round-trip time
//! of an open port without any per-probe memory.

use super::checksum;
use std::net::Ipv4Addr;

pub const SYN_FRAME_LEN: usize = 70;
const IP: usize = 14;
const TCP: usize = 34;
const TCP_LEN: u16 = 36;
const TTL: u8 = 64;
const WINDOW: u16 = 64240;
const MSS: u16 = 1460;

/// Per-probe fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ip_id: u16,
    pub tsval: u32,
}

#[derive(Debug, Clone)]
pub struct SynTemplate {
    frame: [u8; SYN_FRAME_LEN],
    /// Sums of the parts of each header that no probe changes.
    ip_sum: u64,
    tcp_sum: u64,
}

impl SynTemplate {
    pub fn new(src_mac: [u8; 6], dst_mac: [u8; 6], src: Ipv4Addr) -> Self {
        let mut f = [0u8; SYN_FRAME_LEN];
        f[0..6].copy_from_slice(&dst_mac);
        f[6..12].copy_from_slice(&src_mac);
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[IP] = 0x45;
        f[IP + 2..IP + 4].copy_from_slice(&(20 + TCP_LEN).to_be_bytes());
        f[IP + 6] = 0x40; // don't fragment
        f[IP + 8] = TTL;
        f[IP + 9] = 6;
        f[IP + 12..IP + 16].copy_from_slice(&src.octets());
        f[TCP + 12] = ((TCP_LEN / 4) as u8) << 4;
        f[TCP + 13] = 0x02; // SYN
        f[TCP + 14..TCP + 16].copy_from_slice(&WINDOW.to_be_bytes());
        f[TCP + 20..TCP + 24].copy_from_slice(&[2, 4, (MSS >> 8) as u8, MSS as u8]);
        f[TCP + 24..TCP + 28].copy_from_slice(&[1, 1, 8, 10]); // NOP, NOP, timestamp kind and length
        // Variable fields are still zero here, so these sums cover only the constant parts.
        let ip_sum = checksum::add(0, &f[IP..TCP]);
        let mut tcp_sum = checksum::add(0, &src.octets());
        tcp_sum += 6 + u64::from(TCP_LEN);
        tcp_sum = checksum::add(tcp_sum, &f[TCP..]);
        SynTemplate { frame: f, ip_sum, tcp_sum }
    }

    /// Writes the complete SYN for `probe` into `out`, which must hold `SYN_FRAME_LEN` bytes.
    pub fn write(&self, probe: &Probe, out: &mut [u8]) {
        let out = &mut out[..SYN_FRAME_LEN];
        out.copy_from_slice(&self.frame);
        let dst = probe.dst.octets();
        out[IP + 4..IP + 6].copy_from_slice(&probe.ip_id.to_be_bytes());
        out[IP + 16..IP + 20].copy_from_slice(&dst);
        out[TCP..TCP + 2].copy_from_slice(&probe.sport.to_be_bytes());
        out[TCP + 2..TCP + 4].copy_from_slice(&probe.dport.to_be_bytes());
        out[TCP + 4..TCP + 8].copy_from_slice(&probe.seq.to_be_bytes());
        out[TCP + 28..TCP + 32].copy_from_slice(&probe.tsval.to_be_bytes());

        let dst_sum = checksum::add(0, &dst);
        let ip_sum = self.ip_sum + dst_sum + u64::from(probe.ip_id);
        out[IP + 10..IP + 12].copy_from_slice(&checksum::finish(ip_sum).to_be_bytes());
        let tcp_sum = self.tcp_sum
            + dst_sum
            + u64::from(probe.sport)
            + u64::from(probe.dport)
            + u64::from(probe.seq >> 16)
            + u64::from(probe.seq & 0xffff)
            + u64::from(probe.tsval >> 16)
            + u64::from(probe.tsval & 0xffff);
        out[TCP + 16..TCP + 18].copy_from_slice(&checksum::finish(tcp_sum).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{SlicedPacket, TransportSlice};

    const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
    const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];

    fn probe() -> Probe {
        Probe {
            dst: Ipv4Addr::new(10, 201, 0, 1),
            sport: 61000,
            dport: 443,
            seq: 0xdead_beef,
            ip_id: 0x1234,
            tsval: 0x0102_0304,
        }
    }

    #[test]
    fn builds_the_exact_frame() {
        let t = SynTemplate::new(SRC_MAC, DST_MAC, Ipv4Addr::new(10, 200, 0, 1));
        let mut out = [0u8; SYN_FRAME_LEN];
        t.write(&probe(), &mut out);
        #[rustfmt::skip]
        let expected: [u8; SYN_FRAME_LEN] = [
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
    fn checksums_hold_for_extreme_field_values() {
        let t = SynTemplate::new([0xff; 6], [0xff; 6], Ipv4Addr::new(255, 255, 255, 255));
        for (dst, sport, seq) in [
            (Ipv4Addr::new(0, 0, 0, 0), 0u16, 0u32),
            (Ipv4Addr::new(255, 255, 255, 255), 65535, u32::MAX),
            (Ipv4Addr::new(1, 2, 3, 4), 1, 0x8000_0000),
        ] {
            let mut out = [0u8; SYN_FRAME_LEN];
            let pr = Probe { dst, sport, dport: sport ^ 0xffff, seq, ip_id: sport, tsval: !seq };
            t.write(&pr, &mut out);
            let p = SlicedPacket::from_ethernet(&out).unwrap();
            let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else { panic!() };
            assert_eq!(ip.header().header_checksum(), ip.header().to_header().calc_header_checksum());
            let Some(TransportSlice::Tcp(tcp)) = p.transport else { panic!() };
            assert_eq!(tcp.checksum(), tcp.calc_checksum_ipv4(ip.header().source(), dst.octets()).unwrap());
        }
    }
}
