//! The result journal: batches appended before they reach SQLite, so that a
//! crash between the two loses nothing that was synced. Encoding is pure.
//!
//! A record is `len: u32 | crc32(payload): u32 | payload`, the payload being
//! `scan_id: i64 | count: u32 | count x 24-byte rows`, all little-endian.
//! Replay stops at the first record that is short or fails its checksum: the
//! tail a crash cut off.

use crate::result::{PortState, Reason, ScanResult};
use std::net::Ipv4Addr;

const ROW: usize = 24;
const HAS_TTL: u8 = 1;
const HAS_RTT: u8 = 2;

pub fn encode(scan_id: i64, rows: &[ScanResult], out: &mut Vec<u8>) {
    let payload_len = 12 + rows.len() * ROW;
    let start = out.len();
    out.extend_from_slice(&(payload_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&scan_id.to_le_bytes());
    out.extend_from_slice(&(rows.len() as u32).to_le_bytes());
    for r in rows {
        let (reason, code) = match r.reason {
            Reason::SynAck => (0, 0),
            Reason::Reset => (1, 0),
            Reason::Unreachable { code } => (2, code),
            Reason::NoResponse => (3, 0),
        };
        let state = match r.state {
            PortState::Open => 0,
            PortState::Closed => 1,
            PortState::Filtered => 2,
        };
        let flags = if r.ttl.is_some() { HAS_TTL } else { 0 } | if r.rtt_us.is_some() { HAS_RTT } else { 0 };
        out.extend_from_slice(&r.ip.octets());
        out.extend_from_slice(&r.port.to_le_bytes());
        out.extend_from_slice(&[state, reason, code, r.ttl.unwrap_or(0), flags, 0]);
        out.extend_from_slice(&(r.rtt_us.unwrap_or(0).min(u64::from(u32::MAX)) as u32).to_le_bytes());
        out.extend_from_slice(&r.time_us.to_le_bytes());
    }
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Every intact record of a journal, in order.
pub fn decode(mut buf: &[u8]) -> Vec<(i64, Vec<ScanResult>)> {
    let mut records = Vec::new();
    while let Some((record, used)) = next_record(buf) {
        records.push(record);
        buf = &buf[used..];
    }
    records
}

/// How many leading bytes of a journal are intact records: what appending
/// must start after, or a torn tail would hide everything appended later.
pub fn intact_len(buf: &[u8]) -> usize {
    let mut at = 0;
    while let Some((_, used)) = next_record(&buf[at..]) {
        at += used;
    }
    at
}

/// The first record of `buf` and the bytes it takes, if it is whole and its checksum holds.
fn next_record(buf: &[u8]) -> Option<((i64, Vec<ScanResult>), usize)> {
    let len = u32::from_le_bytes(buf.get(0..4)?.try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(buf.get(4..8)?.try_into().expect("4 bytes"));
    let payload = buf.get(8..8 + len)?;
    if len < 12 || crc32fast::hash(payload) != crc {
        return None;
    }
    let scan_id = i64::from_le_bytes(payload[0..8].try_into().expect("8 bytes"));
    let count = u32::from_le_bytes(payload[8..12].try_into().expect("4 bytes")) as usize;
    if 12 + count * ROW != len {
        return None;
    }
    let rows = payload[12..].chunks_exact(ROW).filter_map(decode_row).collect();
    Some(((scan_id, rows), 8 + len))
}

fn decode_row(b: &[u8]) -> Option<ScanResult> {
    let state = match b[6] {
        0 => PortState::Open,
        1 => PortState::Closed,
        2 => PortState::Filtered,
        _ => return None,
    };
    let reason = match b[7] {
        0 => Reason::SynAck,
        1 => Reason::Reset,
        2 => Reason::Unreachable { code: b[8] },
        3 => Reason::NoResponse,
        _ => return None,
    };
    let flags = b[10];
    Some(ScanResult {
        ip: Ipv4Addr::new(b[0], b[1], b[2], b[3]),
        port: u16::from_le_bytes([b[4], b[5]]),
        state,
        reason,
        ttl: (flags & HAS_TTL != 0).then_some(b[9]),
        rtt_us: (flags & HAS_RTT != 0).then(|| u64::from(u32::from_le_bytes(b[12..16].try_into().expect("4 bytes")))),
        time_us: u64::from_le_bytes(b[16..24].try_into().expect("8 bytes")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample(n: u16) -> Vec<ScanResult> {
        (0..n)
            .map(|i| ScanResult {
                ip: Ipv4Addr::new(10, 0, (i >> 8) as u8, i as u8),
                port: i,
                state: [PortState::Open, PortState::Closed, PortState::Filtered][usize::from(i % 3)],
                reason: [Reason::SynAck, Reason::Reset, Reason::Unreachable { code: 13 }, Reason::NoResponse]
                    [usize::from(i % 4)],
                ttl: (i % 2 == 0).then_some(64),
                rtt_us: (i % 5 == 0).then_some(u64::from(i) * 10),
                time_us: 1_700_000_000_000_000 + u64::from(i),
            })
            .collect()
    }

    #[test]
    fn round_trips_records() {
        let mut buf = Vec::new();
        encode(7, &sample(100), &mut buf);
        encode(8, &[], &mut buf);
        encode(9, &sample(3), &mut buf);
        let back = decode(&buf);
        assert_eq!(back, vec![(7, sample(100)), (8, vec![]), (9, sample(3))]);
    }

    #[test]
    fn a_cut_or_corrupt_tail_is_dropped_and_nothing_panics() {
        let mut buf = Vec::new();
        encode(1, &sample(10), &mut buf);
        let first = buf.len();
        encode(2, &sample(10), &mut buf);
        for cut in first..buf.len() {
            assert_eq!(decode(&buf[..cut]), vec![(1, sample(10))], "cut at {cut}");
            assert_eq!(intact_len(&buf[..cut]), first, "cut at {cut}");
        }
        assert_eq!(intact_len(&buf), buf.len());
        let mut corrupt = buf.clone();
        corrupt[first + 20] ^= 0xff;
        assert_eq!(decode(&corrupt).len(), 1);
        assert_eq!(intact_len(&corrupt), first);
        for n in 0..64 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 31 + 7) as u8).collect();
            assert!(decode(&junk).is_empty());
            assert_eq!(intact_len(&junk), 0);
        }
    }
}
