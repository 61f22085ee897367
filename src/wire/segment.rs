//! A TCP segment of a connection prtip holds itself (banners over AF_XDP):
//! what the receive thread hands on to those connections, owned, so that it
//! can cross to their thread.

use super::reply::{Inbound, Received, parse};
use super::sources::Sources;
use std::net::SocketAddr;

/// A received segment with its ACK bit set (every segment of a connection
/// but the first SYN has it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The target's address and port.
    pub peer: SocketAddr,
    /// Ours.
    pub ours: SocketAddr,
    pub seq: u32,
    pub ack: u32,
    pub syn: bool,
    pub fin: bool,
    pub rst: bool,
    pub window: u16,
    pub payload: Vec<u8>,
}

impl Segment {
    /// The segment `frame` carries, if it is TCP with its ACK bit set to one
    /// of `ours` and one of `ports`.
    pub fn in_frame(frame: &[u8], ours: &Sources, ports: (u16, u16)) -> Option<Segment> {
        Segment::of(&parse(frame, ours).ok()?, ports)
    }

    /// The segment `received` carries, if it is TCP with its ACK bit set to
    /// one of `ports`.
    fn of(received: &Received, (lo, hi): (u16, u16)) -> Option<Segment> {
        let Inbound::Tcp(tcp) = &received.inbound else { return None };
        if !tcp.ack() || !(lo..=hi).contains(&tcp.destination_port()) {
            return None;
        }
        Some(Segment {
            peer: SocketAddr::new(received.from, tcp.source_port()),
            ours: SocketAddr::new(received.to, tcp.destination_port()),
            seq: tcp.sequence_number(),
            ack: tcp.acknowledgment_number(),
            syn: tcp.syn(),
            fin: tcp.fin(),
            rst: tcp.rst(),
            window: tcp.window_size(),
            payload: tcp.payload().to_vec(),
        })
    }
}

#[cfg(test)]
impl Segment {
    /// A segment from 10.201.0.7:22 to 10.200.0.1:61001 with its ACK bit
    /// (and no other) set, for the tests of the connections that take it.
    pub fn for_test(seq: u32, ack: u32, payload: &[u8]) -> Segment {
        Segment {
            peer: "10.201.0.7:22".parse().unwrap(),
            ours: "10.200.0.1:61001".parse().unwrap(),
            seq,
            ack,
            syn: false,
            fin: false,
            rst: false,
            window: 512,
            payload: payload.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn frame(dport: u16, ack: bool, payload: &[u8]) -> Vec<u8> {
        let b = etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4([10, 201, 0, 7], [10, 200, 0, 1], 64)
            .tcp(22, dport, 1000, 512);
        let b = if ack { b.ack(77).psh() } else { b.syn() };
        let mut f = Vec::new();
        b.write(&mut f, payload).unwrap();
        f
    }

    #[test]
    fn takes_segments_with_their_ack_bit_set_to_our_ports_only() {
        let ours = Sources::one(IpAddr::V4(Ipv4Addr::new(10, 200, 0, 1)));
        let f = frame(61001, true, b"SSH-2.0-x\r\n");
        let s = Segment::in_frame(&f, &ours, (61000, 61063)).unwrap();
        assert_eq!(s.peer, "10.201.0.7:22".parse().unwrap());
        assert_eq!(s.ours, "10.200.0.1:61001".parse().unwrap());
        assert_eq!((s.seq, s.ack, s.syn, s.fin, s.rst, s.window), (1000, 77, false, false, false, 512));
        assert_eq!(s.payload, b"SSH-2.0-x\r\n");
        let other_port = frame(60999, true, b"");
        assert_eq!(Segment::in_frame(&other_port, &ours, (61000, 61063)), None);
        let no_ack = frame(61001, false, b"");
        assert_eq!(Segment::in_frame(&no_ack, &ours, (61000, 61063)), None);
    }
}
