//! The result journal: batches appended before they reach SQLite, so that a
//! crash between the two loses nothing that was synced. Encoding is pure.
//!
//! A record is `len: u32 | crc32(payload): u32 | payload`, the payload being
//! `scan_id: i64 | count: u32 | count rows`, all little-endian. A row is the
//! address (4 or 16 bytes) and 20 bytes of port, state and times; a record
//! holds rows of one address family, so its length tells their size.
//! Replay stops at the first record that is short (the tail a crash cut
//! off) or fails its checksum (damage: `tail` tells them apart, and a damaged
//! journal is kept rather than deleted).

use crate::result::{PortState, Reason, ScanResult};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Bytes after the address in every row.
const ROW_REST: usize = 20;
const ROW_V4: usize = 4 + ROW_REST;
const ROW_V6: usize = 16 + ROW_REST;
const HAS_TTL: u8 = 1;
const HAS_RTT: u8 = 2;

/// Appends `rows` as records: one per run of rows of one address family
/// (a scan has one family, so that is one record).
pub fn encode(scan_id: i64, rows: &[ScanResult], out: &mut Vec<u8>) {
    if rows.is_empty() {
        return encode_record(scan_id, rows, out);
    }
    for run in rows.chunk_by(|a, b| a.ip.is_ipv4() == b.ip.is_ipv4()) {
        encode_record(scan_id, run, out);
    }
}

fn encode_record(scan_id: i64, rows: &[ScanResult], out: &mut Vec<u8>) {
    let row = match rows.first() {
        Some(r) if r.ip.is_ipv6() => ROW_V6,
        _ => ROW_V4,
    };
    let payload_len = 12 + rows.len() * row;
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
            Reason::FramesDropped => (4, 0),
            Reason::ZeroWindow => (5, 0),
            Reason::EchoReply => (6, 0),
            Reason::UdpResponse => (7, 0),
            Reason::ConnRefused => (8, 0),
        };
        let state = match r.state {
            PortState::Open => 0,
            PortState::Closed => 1,
            PortState::Filtered => 2,
            PortState::Undecided => 3,
            PortState::Up => 4,
            PortState::Down => 5,
            PortState::Unreachable => 6,
            PortState::OpenFiltered => 7,
        };
        let flags = if r.ttl.is_some() { HAS_TTL } else { 0 } | if r.rtt_us.is_some() { HAS_RTT } else { 0 };
        match r.ip {
            IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
        }
        out.extend_from_slice(&r.port.to_le_bytes());
        out.extend_from_slice(&[state, reason, code, r.ttl.unwrap_or(0), flags, 0]);
        out.extend_from_slice(&(r.rtt_us.unwrap_or(0).min(u64::from(u32::MAX)) as u32).to_le_bytes());
        out.extend_from_slice(&r.time_us.to_le_bytes());
    }
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Every intact record of a journal, in order.
pub fn decode(mut buf: &[u8]) -> impl Iterator<Item = (i64, Vec<ScanResult>)> + '_ {
    std::iter::from_fn(move || {
        let (record, used) = next_record(buf)?;
        buf = &buf[used..];
        Some(record)
    })
}

/// Every row a journal holds for one scan, in order.
pub fn rows_of(buf: &[u8], scan_id: i64) -> impl Iterator<Item = ScanResult> + '_ {
    decode(buf).filter(move |(id, _)| *id == scan_id).flat_map(|(_, rows)| rows)
}

/// How many leading bytes of a journal are intact records: what appending
/// must start after, or a torn tail would hide everything appended later.
pub fn intact_len(buf: &[u8]) -> usize {
    intact(buf).0
}

/// The bytes of a journal's leading intact records, and the rows they hold.
pub fn intact(buf: &[u8]) -> (usize, u64) {
    let (mut at, mut rows) = (0, 0);
    while let Some(((_, record), used)) = next_record(&buf[at..]) {
        at += used;
        rows += record.len() as u64;
    }
    (at, rows)
}

/// The bytes of `buf`'s leading whole records that hold at most `max_rows`
/// rows together (one record at least, however many it holds): a piece
/// of a journal to store at once. Checksums are checked when it is decoded.
pub fn records_up_to(buf: &[u8], max_rows: usize) -> usize {
    let (mut at, mut rows) = (0, 0);
    while let Some(header) = buf.get(at..at + 20) {
        let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
        let count = u32::from_le_bytes(header[16..20].try_into().expect("4 bytes")) as usize;
        if at + 8 + len > buf.len() || (at > 0 && rows + count > max_rows) {
            break;
        }
        rows += count;
        at += 8 + len;
    }
    at
}

/// What follows a journal's intact records: nothing, a last record a crash
/// cut short, or a damaged record (its checksum fails where its bytes are
/// all there), after which replay cannot trust what it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    Clean,
    Torn,
    Damaged { at: usize },
}

pub fn tail(buf: &[u8]) -> Tail {
    let at = intact_len(buf);
    let rest = &buf[at..];
    match rest.get(0..4) {
        None if rest.is_empty() => Tail::Clean,
        None => Tail::Torn,
        Some(len) if 8 + u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize > rest.len() => Tail::Torn,
        Some(_) => Tail::Damaged { at },
    }
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
    let row = match (len - 12).checked_div(count) {
        None if len == 12 => ROW_V4,
        Some(row @ (ROW_V4 | ROW_V6)) if 12 + count * row == len => row,
        _ => return None,
    };
    let rows = payload[12..].chunks_exact(row).filter_map(decode_row).collect();
    Some(((scan_id, rows), 8 + len))
}

fn decode_row(row: &[u8]) -> Option<ScanResult> {
    let (ip, b) = match row.len() {
        ROW_V6 => {
            let (a, rest) = row.split_at(16);
            (IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(a).expect("16 bytes"))), rest)
        }
        _ => (IpAddr::V4(Ipv4Addr::new(row[0], row[1], row[2], row[3])), &row[4..]),
    };
    let state = match b[2] {
        0 => PortState::Open,
        1 => PortState::Closed,
        2 => PortState::Filtered,
        3 => PortState::Undecided,
        4 => PortState::Up,
        5 => PortState::Down,
        6 => PortState::Unreachable,
        7 => PortState::OpenFiltered,
        _ => return None,
    };
    let reason = match b[3] {
        0 => Reason::SynAck,
        1 => Reason::Reset,
        2 => Reason::Unreachable { code: b[4] },
        3 => Reason::NoResponse,
        4 => Reason::FramesDropped,
        5 => Reason::ZeroWindow,
        6 => Reason::EchoReply,
        7 => Reason::UdpResponse,
        8 => Reason::ConnRefused,
        _ => return None,
    };
    let flags = b[6];
    Some(ScanResult {
        ip,
        port: u16::from_le_bytes([b[0], b[1]]),
        state,
        reason,
        ttl: (flags & HAS_TTL != 0).then_some(b[5]),
        rtt_us: (flags & HAS_RTT != 0).then(|| u64::from(u32::from_le_bytes(b[8..12].try_into().expect("4 bytes")))),
        time_us: u64::from_le_bytes(b[12..20].try_into().expect("8 bytes")),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample(n: u16) -> Vec<ScanResult> {
        (0..n)
            .map(|i| ScanResult {
                ip: Ipv4Addr::new(10, 0, (i >> 8) as u8, i as u8).into(),
                port: i,
                state: PortState::ALL[usize::from(i) % PortState::ALL.len()],
                reason: [
                    Reason::SynAck,
                    Reason::ZeroWindow,
                    Reason::Reset,
                    Reason::Unreachable { code: 13 },
                    Reason::NoResponse,
                    Reason::FramesDropped,
                    Reason::EchoReply,
                    Reason::UdpResponse,
                    Reason::ConnRefused,
                ][usize::from(i % 9)],
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
        let back = decode(&buf).collect::<Vec<_>>();
        assert_eq!(back, vec![(7, sample(100)), (8, vec![]), (9, sample(3))]);
    }

    #[test]
    fn round_trips_ipv6_rows_in_records_of_their_own() {
        let v6: Vec<ScanResult> = sample(40)
            .into_iter()
            .map(|r| ScanResult { ip: Ipv6Addr::new(0xfd00, 0x201, 0, 0, 0, 0, 0xffff, r.port).into(), ..r })
            .collect();
        let mut buf = Vec::new();
        encode(7, &v6, &mut buf);
        assert_eq!(buf.len(), 8 + 12 + 40 * ROW_V6);
        let mixed: Vec<ScanResult> = sample(3).into_iter().chain(v6.iter().copied().take(2)).collect();
        encode(8, &mixed, &mut buf);
        assert_eq!(decode(&buf).collect::<Vec<_>>(), vec![(7, v6.clone()), (8, sample(3)), (8, v6[..2].to_vec())]);
        // A record whose length fits neither row size is refused.
        let mut odd = Vec::new();
        encode(9, &v6[..1], &mut odd);
        odd[0] -= 1;
        odd.pop();
        assert!(decode(&odd).next().is_none());
    }

    #[test]
    fn a_cut_or_corrupt_tail_is_dropped_and_nothing_panics() {
        let mut buf = Vec::new();
        encode(1, &sample(10), &mut buf);
        let first = buf.len();
        encode(2, &sample(10), &mut buf);
        for cut in first..buf.len() {
            assert_eq!(decode(&buf[..cut]).collect::<Vec<_>>(), vec![(1, sample(10))], "cut at {cut}");
            assert_eq!(intact_len(&buf[..cut]), first, "cut at {cut}");
            assert_eq!(tail(&buf[..cut]), if cut == first { Tail::Clean } else { Tail::Torn }, "cut at {cut}");
        }
        assert_eq!(intact_len(&buf), buf.len());
        assert_eq!(tail(&buf), Tail::Clean);
        let mut corrupt = buf.clone();
        corrupt[first + 20] ^= 0xff;
        assert_eq!(decode(&corrupt).count(), 1);
        assert_eq!(intact_len(&corrupt), first);
        assert_eq!(tail(&corrupt), Tail::Damaged { at: first }, "a whole record whose checksum fails");
        for n in 0..64 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 31 + 7) as u8).collect();
            assert!(decode(&junk).next().is_none());
            assert_eq!(intact_len(&junk), 0);
        }
    }

    #[test]
    fn pieces_of_a_journal_end_at_records() {
        let rows = |n: u16| -> Vec<ScanResult> {
            (0..n)
                .map(|p| ScanResult {
                    ip: Ipv4Addr::new(10, 0, 0, 1).into(),
                    port: p,
                    state: PortState::Closed,
                    reason: Reason::Reset,
                    ttl: None,
                    rtt_us: None,
                    time_us: 0,
                })
                .collect()
        };
        let mut buf = Vec::new();
        for n in [3, 4, 5] {
            encode(1, &rows(n), &mut buf);
        }
        let record = |n: usize| 8 + 12 + n * ROW_V4;
        assert_eq!(records_up_to(&buf, 7), record(3) + record(4));
        assert_eq!(records_up_to(&buf, 6), record(3));
        // One record at least, and never a record cut short.
        assert_eq!(records_up_to(&buf, 1), record(3));
        assert_eq!(records_up_to(&buf[..record(3) + 5], 100), record(3));
        assert_eq!(records_up_to(&buf, 100), buf.len());
        assert_eq!(records_up_to(&[], 100), 0);
    }
}
