//! What prtip and its XDP program (bpf/prtip.bpf.c) must agree on. build.rs
//! compiles this file too and hands its values to clang as -D defines: the
//! program sizes its XSKMAP with `MAX_QUEUES` and its address arrays with
//! `MAX_SOURCES`, and asserts at compile time that its `struct
//! prtip_config` has the size and field offsets of `ProgramConfig`.

/// The size of the program's XSKMAP: queues beyond it are not served.
pub const MAX_QUEUES: u32 = 64;

/// The most source addresses a scan has (`wire::sources::MAX_SOURCES`).
pub const MAX_SOURCES: usize = 16;

/// The program's `struct prtip_config`: its parameters, in a one-entry array map.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgramConfig {
    /// The scan's IPv4 addresses (network byte order), the first `sources` of them in use.
    pub src_ip: [[u8; 4]; MAX_SOURCES],
    /// The scan's source ports, in host byte order.
    pub port_lo: u16,
    pub port_hi: u16,
    /// The scan's IPv6 addresses (network byte order), the first `sources` of them in use.
    pub src_ip6: [[u8; 16]; MAX_SOURCES],
    /// 4 or 6: which of the two address arrays the scan uses.
    pub family: u8,
    /// The IP protocol of the probes (TCP, UDP, ICMP or ICMPv6): whose replies are steered.
    pub protocol: u8,
    /// How many addresses the scan sends from: 1 to `MAX_SOURCES`.
    pub sources: u8,
    /// 1 where prtip holds TCP connections itself (banners over AF_XDP):
    /// every segment with its ACK bit set to the scan's ports is steered,
    /// not only SYN-ACKs and RSTs.
    pub segments: u8,
}

// The sum of its fields' sizes: no padding, so every byte of it is a field's.
const _: () = assert!(size_of::<ProgramConfig>() == 4 * MAX_SOURCES + 2 + 2 + 16 * MAX_SOURCES + 1 + 1 + 1 + 1);
