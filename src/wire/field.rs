//! Where each field of the headers prtip writes and filters on sits, in
//! bytes from the start of its own header: the frame template, the raw
//! transport and the classic BPF filter all take their offsets from here.

use std::ops::Range;

pub type Field = Range<usize>;

/// IP protocol (IPv4) and next-header (IPv6) numbers.
pub const PROTOCOL_ICMP: u8 = 1;
pub const PROTOCOL_TCP: u8 = 6;
pub const PROTOCOL_UDP: u8 = 17;
pub const PROTOCOL_ICMPV6: u8 = 58;

/// `field` moved `by` bytes on: a field of a header that starts at `by`.
#[inline(always)]
pub const fn at(by: usize, field: Field) -> Field {
    by + field.start..by + field.end
}

pub mod ethernet {
    use super::Field;

    pub const DESTINATION: Field = 0..6;
    pub const SOURCE: Field = 6..12;
    pub const ETHERTYPE: Field = 12..14;
    pub const HEADER_LEN: usize = 14;
    pub const TYPE_IPV4: u16 = 0x0800;
    pub const TYPE_IPV6: u16 = 0x86dd;
}

/// IPv4 without options.
pub mod ipv4 {
    use super::Field;

    pub const VERSION_IHL: usize = 0;
    pub const TOTAL_LEN: Field = 2..4;
    pub const IDENTIFICATION: Field = 4..6;
    /// Flags (DF, MF) and the fragment offset.
    pub const FLAGS_FRAGMENT: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SOURCE: Field = 12..16;
    pub const DESTINATION: Field = 16..20;
    pub const HEADER_LEN: usize = 20;
}

/// IPv6's fixed header.
pub mod ipv6 {
    use super::Field;

    pub const VERSION: usize = 0;
    pub const PAYLOAD_LEN: Field = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SOURCE: Field = 8..24;
    pub const DESTINATION: Field = 24..40;
    pub const HEADER_LEN: usize = 40;
}

/// TCP without options; options follow at `HEADER_LEN`.
pub mod tcp {
    use super::Field;

    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ: Field = 4..8;
    pub const ACK_NUM: Field = 8..12;
    /// The header's length in 32-bit words, in the high four bits.
    pub const DATA_OFFSET: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: Field = 14..16;
    pub const CHECKSUM: Field = 16..18;
    pub const HEADER_LEN: usize = 20;
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// UDP.
pub mod udp {
    use super::Field;

    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
    pub const HEADER_LEN: usize = 8;
}

/// ICMP and ICMPv6 share these; an echo's identifier and sequence number
/// fill the bytes an error leaves unused.
pub mod icmp {
    use super::Field;

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    pub const IDENTIFIER: Field = 4..6;
    pub const SEQUENCE: Field = 6..8;
    pub const HEADER_LEN: usize = 8;
    pub const V4_ECHO_REPLY: u8 = 0;
    pub const V4_DESTINATION_UNREACHABLE: u8 = 3;
    pub const V4_ECHO_REQUEST: u8 = 8;
    pub const V6_DESTINATION_UNREACHABLE: u8 = 1;
    pub const V6_ECHO_REQUEST: u8 = 128;
    pub const V6_ECHO_REPLY: u8 = 129;
}
