//! A received frame, parsed as far as every probe module needs: who sent
//! it to our address, and what it carries (a TCP segment, a UDP datagram,
//! an echo reply, or an ICMP error with the packet it quotes). Whether it
//! answers one of our probes is the probe module's to decide (`probe`).
//!
//! Everything off the wire is hostile until its cookie matches. The TCP and
//! UDP checksums are deliberately not checked: veth delivers
//! CHECKSUM_PARTIAL frames whose checksum field holds only the
//! pseudo-header sum.

use super::cookie::SendTick;
use crate::wire::sources::Sources;
use etherparse::{Icmpv4Type, Icmpv6Type, Ipv4HeaderSlice, Ipv6HeaderSlice, NetSlice, SlicedPacket, TransportSlice};
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// SYN-ACK: the port is open.
    SynAck,
    /// RST: the port is closed.
    Rst,
    /// ICMP (or ICMPv6) destination unreachable quoting our probe.
    /// The code is ICMP's; an ICMPv6 code comes as the ICMP code that means
    /// the same (`icmp_code_of_icmpv6`), so that one name fits both.
    Unreachable { code: u8 },
    /// An ICMP (ICMPv6) echo reply: the host is up.
    EchoReply,
    /// A UDP datagram from the probed port: a service answered.
    Datagram,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// The probed address and port (the reply's source, or the quoted
    /// destination; 0 for an echo, which has no port).
    pub ip: IpAddr,
    pub port: u16,
    /// Our address and source port that the probe left from (the port is an
    /// echo's identifier).
    pub from: IpAddr,
    pub from_port: u16,
    pub kind: ReplyKind,
    /// TTL or hop limit of the reply.
    pub ttl: u8,
    /// The send time the reply's cookie carried, where the probe type has
    /// one; without it, only the send window knows when the probe left.
    pub sent: Option<SendTick>,
    /// The send time, to the microsecond (modulo 2^32), that a TCP
    /// timestamp or an echo's payload brought back.
    pub sent_us: Option<u32>,
    /// A TCP reply's acknowledgement number (0 otherwise): an RST with it as
    /// its sequence number closes the connection a SYN-ACK half opened.
    pub ack: u32,
    /// A TCP reply's receive window (0 otherwise). A SYN-ACK that offers none
    /// takes no data: SYN proxies and tarpits answer so.
    pub window: u16,
}

/// Why a frame is not a reply to this scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Cut short, fragmented, or otherwise not parseable as far as it must be.
    Malformed,
    /// To another address or port, not an answer to our probe type, or an
    /// ICMP error quoting another packet.
    NotOurs,
    /// It does not carry our cookie, or its time echo contradicts it:
    /// another scan's, or forged.
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

/// What a frame to our address carries above IP.
#[derive(Debug, Clone)]
pub enum Inbound<'a> {
    Tcp(etherparse::TcpSlice<'a>),
    Udp {
        sport: u16,
        dport: u16,
        payload: &'a [u8],
    },
    /// An ICMP or ICMPv6 echo reply.
    Echo {
        id: u16,
        seq: u16,
        payload: &'a [u8],
    },
    /// A destination unreachable, its code as ICMP's, and what it quotes.
    Unreachable {
        code: u8,
        quoted: Quoted<'a>,
    },
    /// Any other ICMP message, or another protocol.
    Other,
}

/// The packet an ICMP error quotes: its addresses, its protocol, and the
/// bytes after its IP header (RFC 792 promises only eight of them).
#[derive(Debug, Clone, Copy)]
pub struct Quoted<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: u8,
    pub l4: &'a [u8],
}

/// A frame to one of our addresses, parsed.
#[derive(Debug, Clone)]
pub struct Received<'a> {
    pub from: IpAddr,
    /// Which of our addresses.
    pub to: IpAddr,
    pub ttl: u8,
    pub inbound: Inbound<'a>,
}

/// Parses `frame` as far as any probe module needs; frames to addresses
/// other than `ours` are `NotOurs`.
pub fn parse<'a>(frame: &'a [u8], ours: &Sources) -> Result<Received<'a>, Rejection> {
    use Rejection::{Malformed, NotOurs};
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
    if !ours.contains(to) {
        return Err(NotOurs);
    }
    let inbound = match packet.transport.ok_or(Malformed)? {
        TransportSlice::Tcp(tcp) => Inbound::Tcp(tcp),
        TransportSlice::Udp(udp) => {
            Inbound::Udp { sport: udp.source_port(), dport: udp.destination_port(), payload: udp.payload() }
        }
        TransportSlice::Icmpv4(icmp) => match icmp.icmp_type() {
            Icmpv4Type::EchoReply(echo) => Inbound::Echo { id: echo.id, seq: echo.seq, payload: icmp.payload() },
            Icmpv4Type::DestinationUnreachable(_) => {
                Inbound::Unreachable { code: icmp.code_u8(), quoted: quoted(icmp.payload(), to)? }
            }
            _ => Inbound::Other,
        },
        TransportSlice::Icmpv6(icmp) => match icmp.icmp_type() {
            Icmpv6Type::EchoReply(echo) => Inbound::Echo { id: echo.id, seq: echo.seq, payload: icmp.payload() },
            Icmpv6Type::DestinationUnreachable(_) => {
                Inbound::Unreachable { code: icmp_code_of_icmpv6(icmp.code_u8()), quoted: quoted(icmp.payload(), to)? }
            }
            _ => Inbound::Other,
        },
        _ => Inbound::Other,
    };
    Ok(Received { from, to, ttl, inbound })
}

/// The packet an ICMP error quotes, of the family of `me`.
fn quoted(bytes: &[u8], me: IpAddr) -> Result<Quoted<'_>, Rejection> {
    let (src, dst, protocol, header_len) = match me {
        IpAddr::V4(_) => {
            let ip = Ipv4HeaderSlice::from_slice(bytes).map_err(|_| Rejection::Malformed)?;
            (IpAddr::V4(ip.source_addr()), IpAddr::V4(ip.destination_addr()), ip.protocol().0, ip.slice().len())
        }
        // Our probes carry no extension headers: their header follows the fixed one.
        IpAddr::V6(_) => {
            let ip = Ipv6HeaderSlice::from_slice(bytes).map_err(|_| Rejection::Malformed)?;
            (IpAddr::V6(ip.source_addr()), IpAddr::V6(ip.destination_addr()), ip.next_header().0, 40)
        }
    };
    let l4 = bytes.get(header_len..).ok_or(Rejection::Malformed)?;
    Ok(Quoted { src, dst, protocol, l4 })
}
