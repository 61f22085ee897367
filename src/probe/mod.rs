//! Probe modules, one per scan type, as zmap's `probe_modules/`: each
//! builds its frames from a template, recognises the replies to them by
//! their keyed cookies, and says what state each reply (or silence) means.
//! The engine, the transports' steering, the outputs and the store handle
//! every module alike through `Module`.

pub mod connect;
pub mod icmp;
pub mod syn;
pub mod udp;

use crate::result::{PortState, Reason};
use crate::wire::cookie::CookieKey;
use crate::wire::field;
use crate::wire::reply::{self, Rejection, Reply};
use crate::wire::sources::Sources;
use std::net::IpAddr;

/// The probe a scan sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ScanType {
    /// TCP SYN (`-sS`).
    #[default]
    Syn,
    /// ICMP or ICMPv6 echo request (`-sn`, `-PE`): is the host up?
    Icmp,
    /// UDP datagram with a payload for its port (`-sU`).
    Udp,
    /// TCP connect through the kernel (`-sT`): needs no privilege.
    Connect,
}

impl ScanType {
    /// `-s`'s value: the name, or nmap's letter after `-s` (`-sS`, `-sU`, `-sn`).
    pub fn parse(text: &str) -> Option<ScanType> {
        match text {
            "syn" | "S" => Some(ScanType::Syn),
            "icmp" | "n" | "PE" => Some(ScanType::Icmp),
            "udp" | "U" => Some(ScanType::Udp),
            "connect" | "T" => Some(ScanType::Connect),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ScanType::Syn => "syn",
            ScanType::Icmp => "icmp",
            ScanType::Udp => "udp",
            ScanType::Connect => "connect",
        }
    }

    /// The protocol the outputs name (ndjson `proto`, nmap XML `protocol`).
    pub fn protocol(self) -> &'static str {
        match self {
            ScanType::Syn | ScanType::Connect => "tcp",
            ScanType::Icmp => "icmp",
            ScanType::Udp => "udp",
        }
    }

    /// Whether the scan sends frames of its own (and needs CAP_NET_RAW):
    /// a connect scan leaves them to the kernel.
    pub fn sends_frames(self) -> bool {
        self != ScanType::Connect
    }

    /// Whether the probes go to ports: an echo goes to a host.
    pub fn has_ports(self) -> bool {
        self != ScanType::Icmp
    }

    /// The IP protocol number of the probes of an IPv4 (`v6` false) or IPv6 scan.
    pub fn ip_protocol(self, v6: bool) -> u8 {
        match (self, v6) {
            (ScanType::Syn | ScanType::Connect, _) => field::PROTOCOL_TCP,
            (ScanType::Udp, _) => field::PROTOCOL_UDP,
            (ScanType::Icmp, false) => field::PROTOCOL_ICMP,
            (ScanType::Icmp, true) => field::PROTOCOL_ICMPV6,
        }
    }

    /// The state of a probe that got no reply through its tries.
    pub fn silent_state(self) -> PortState {
        match self {
            ScanType::Syn | ScanType::Connect => PortState::Filtered,
            ScanType::Icmp => PortState::Down,
            ScanType::Udp => PortState::OpenFiltered,
        }
    }
}

/// One probe: where it goes, from which of our ports, and when it leaves
/// (microseconds on the scan's clock, which its cookie carries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub send_us: u64,
}

/// What a frame must match to be a reply to this scan.
#[derive(Debug, Clone, Copy)]
pub struct Matcher {
    /// The addresses the probes left from.
    pub sources: Sources,
    pub src_ports: (u16, u16),
    pub key: CookieKey,
}

impl Matcher {
    pub fn ours(&self, port: u16) -> bool {
        self.src_ports.0 <= port && port <= self.src_ports.1
    }
}

/// A scan's probe module, with its frame template.
#[derive(Debug, Clone)]
pub enum Module {
    Syn(syn::SynTemplate),
    Icmp(icmp::EchoTemplate),
    Udp(udp::UdpTemplate),
}

impl Module {
    /// The module of `scan_type`, its frames from `src` over the link from
    /// `src_mac` to `dst_mac`; `udp_payloads` replace a UDP scan's own.
    /// None for a connect scan, which has no frames.
    pub fn new(
        scan_type: ScanType,
        src_mac: [u8; 6],
        dst_mac: [u8; 6],
        src: IpAddr,
        udp_payloads: &[(u16, Vec<u8>)],
    ) -> Option<Self> {
        Some(match scan_type {
            ScanType::Syn => Module::Syn(syn::SynTemplate::new(src_mac, dst_mac, src)),
            ScanType::Icmp => Module::Icmp(icmp::EchoTemplate::new(src_mac, dst_mac, src)),
            ScanType::Udp => {
                Module::Udp(udp::UdpTemplate::new(src_mac, dst_mac, src, udp::Payloads::new(udp_payloads)))
            }
            ScanType::Connect => return None,
        })
    }

    pub fn scan_type(&self) -> ScanType {
        match self {
            Module::Syn(_) => ScanType::Syn,
            Module::Icmp(_) => ScanType::Icmp,
            Module::Udp(_) => ScanType::Udp,
        }
    }

    /// The longest frame this module writes: a sender's buffers need no more.
    pub fn max_frame_len(&self) -> usize {
        match self {
            Module::Syn(_) => syn::SYN_FRAME_LEN,
            Module::Icmp(_) => icmp::FRAME_LEN,
            Module::Udp(t) => t.max_frame_len(),
        }
    }

    /// Writes the frame of `probe` into `out` (at least `max_frame_len()`
    /// bytes); returns its length.
    #[inline]
    pub fn write(&self, key: &CookieKey, src: IpAddr, probe: &Probe, out: &mut [u8]) -> usize {
        match self {
            Module::Syn(t) => t.write_probe(key, src, probe, out),
            Module::Icmp(t) => t.write(key, src, probe, out),
            Module::Udp(t) => t.write(key, src, probe, out),
        }
    }

    /// The reply `frame` is, if it answers a probe of this module.
    pub fn classify(&self, m: &Matcher, frame: &[u8]) -> Result<Reply, Rejection> {
        let received = reply::parse(frame, &m.sources)?;
        match self {
            Module::Syn(_) => syn::recognise(m, &received),
            Module::Icmp(_) => icmp::recognise(m, &received),
            Module::Udp(t) => t.recognise(m, &received),
        }
    }

    /// What a reply says about its probe's target.
    pub fn state(&self, reply: &Reply) -> (PortState, Reason) {
        match self {
            Module::Syn(_) => syn::state(reply),
            Module::Icmp(_) => icmp::state(reply),
            Module::Udp(_) => udp::state(reply),
        }
    }

    /// Writes the frame that closes what `reply` opened, if anything must
    /// be closed (a SYN-ACK half opens a connection); returns its length.
    fn write_close(&self, reply: &Reply, out: &mut [u8]) -> Option<usize> {
        match self {
            Module::Syn(t) if reply.kind == reply::ReplyKind::SynAck => {
                Some(t.write_reset(reply.ip, reply.from_port, reply.port, reply.ack, out))
            }
            _ => None,
        }
    }
}

/// A scan's module with a frame template for each of its source addresses:
/// a template's checksums are summed once, its address among them.
#[derive(Debug, Clone)]
pub struct Templates {
    sources: Sources,
    /// In the order of `sources`.
    modules: Vec<Module>,
}

impl Templates {
    /// The templates of `scan_type` for each of `sources`, over the link
    /// from `src_mac` to `dst_mac`; None for a connect scan, which has no frames.
    pub fn new(
        scan_type: ScanType,
        src_mac: [u8; 6],
        dst_mac: [u8; 6],
        sources: Sources,
        udp_payloads: &[(u16, Vec<u8>)],
    ) -> Option<Self> {
        let modules = sources
            .as_slice()
            .iter()
            .map(|&src| Module::new(scan_type, src_mac, dst_mac, src, udp_payloads))
            .collect::<Option<Vec<_>>>()?;
        Some(Templates { sources, modules })
    }

    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    /// The module itself: what every template has in common.
    pub fn module(&self) -> &Module {
        &self.modules[0]
    }

    /// Writes the frame of `probe` from the source its target hears from.
    #[inline]
    pub fn write(&self, key: &CookieKey, probe: &Probe, out: &mut [u8]) -> usize {
        let i = self.sources.pick(probe.dst);
        self.modules[i].write(key, self.sources.get(i), probe, out)
    }

    /// Writes the frame that closes what `reply` opened, from the address
    /// the reply came to, if anything must be closed; returns its length.
    pub fn write_close(&self, reply: &Reply, out: &mut [u8]) -> Option<usize> {
        self.modules[self.sources.index_of(reply.from)?].write_close(reply, out)
    }

    /// Writes `segment` from our address `from` into `out`; returns its
    /// length, or None where the scan sends no TCP or not from `from`.
    pub fn write_segment(&self, from: IpAddr, segment: &syn::Outgoing, out: &mut [u8]) -> Option<usize> {
        match &self.modules[self.sources.index_of(from)?] {
            Module::Syn(t) => Some(t.write_segment(segment, out)),
            _ => None,
        }
    }
}
