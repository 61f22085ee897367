//! What a scan learns about one (address, port), or one host for an echo scan.

use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortState {
    Open,
    Closed,
    Filtered,
    /// No answer, but replies may have been lost on this side (receive or
    /// transmit drops) on the last attempt: silence proves nothing.
    Undecided,
    /// An echo scan's host that answered.
    Up,
    /// An echo scan's host that stayed silent.
    Down,
    /// An echo scan's host that an ICMP destination unreachable was sent for.
    Unreachable,
    /// A UDP port that stayed silent: a service may have ignored the
    /// datagram, or a firewall dropped it.
    OpenFiltered,
}

impl PortState {
    pub const ALL: [PortState; 8] = [
        PortState::Open,
        PortState::Closed,
        PortState::Filtered,
        PortState::Undecided,
        PortState::Up,
        PortState::Down,
        PortState::Unreachable,
        PortState::OpenFiltered,
    ];

    /// Whether the state is the one a scan looks for (`--open` keeps
    /// only these): an open port, or a host that is up.
    pub fn is_found(self) -> bool {
        matches!(self, PortState::Open | PortState::Up)
    }

    /// Its name in every output, and in the database's `scan_results` view.
    pub fn as_str(self) -> &'static str {
        match self {
            PortState::Open => "open",
            PortState::Closed => "closed",
            PortState::Filtered => "filtered",
            PortState::Undecided => "undecided",
            PortState::Up => "up",
            PortState::Down => "down",
            PortState::Unreachable => "unreachable",
            PortState::OpenFiltered => "open|filtered",
        }
    }

    pub fn parse(text: &str) -> Option<PortState> {
        PortState::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The number the database stores (never renumber: stored rows keep it).
    pub fn code(self) -> i64 {
        match self {
            PortState::Open => 1,
            PortState::Closed => 2,
            PortState::Filtered => 3,
            PortState::Undecided => 4,
            PortState::Up => 5,
            PortState::Down => 6,
            PortState::Unreachable => 7,
            PortState::OpenFiltered => 8,
        }
    }

    pub fn from_code(code: i64) -> Option<PortState> {
        PortState::ALL.into_iter().find(|s| s.code() == code)
    }
}

/// Why a port got its state, in nmap's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    SynAck,
    /// A SYN-ACK that offers no receive window: what SYN proxies and tarpits
    /// send, with no service behind them yet, and often none at all.
    ZeroWindow,
    Reset,
    Unreachable {
        code: u8,
    },
    NoResponse,
    /// Silent while this host dropped frames (see `PortState::Undecided`).
    FramesDropped,
    EchoReply,
    UdpResponse,
    /// A connect scan's connection refused: the port's RST, as the kernel saw it.
    ConnRefused,
}

/// nmap's names for the codes of an ICMP destination unreachable (ICMPv6
/// codes arrive mapped onto these by `wire::reply`).
fn unreachable_name(code: u8) -> &'static str {
    match code {
        0 => "net-unreach",
        1 => "host-unreach",
        2 => "proto-unreach",
        3 => "port-unreach",
        4 => "frag-needed",
        5 => "source-route-failed",
        6 => "net-unknown",
        7 => "host-unknown",
        8 => "host-isolated",
        9 => "net-prohibited",
        10 => "host-prohibited",
        11 => "net-tos-unreach",
        12 => "host-tos-unreach",
        13 => "admin-prohibited",
        14 => "precedence-violation",
        15 => "precedence-cutoff",
        _ => "unreach",
    }
}

/// The first database code of an ICMP unreachable: it keeps the ICMP code as `UNREACHABLE_CODES + code`.
const UNREACHABLE_CODES: i64 = 256;

impl Reason {
    /// Every reason but the ICMP unreachables, which carry a code.
    pub const WITHOUT_CODE: [Reason; 8] = [
        Reason::SynAck,
        Reason::ZeroWindow,
        Reason::Reset,
        Reason::NoResponse,
        Reason::FramesDropped,
        Reason::EchoReply,
        Reason::UdpResponse,
        Reason::ConnRefused,
    ];

    /// Whether a reply came: false for the reasons of silence.
    pub fn is_reply(self) -> bool {
        !matches!(self, Reason::NoResponse | Reason::FramesDropped)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::SynAck => "syn-ack",
            Reason::ZeroWindow => "zero-window",
            Reason::Reset => "reset",
            Reason::Unreachable { code } => unreachable_name(code),
            Reason::NoResponse => "no-response",
            Reason::FramesDropped => "frames-dropped",
            Reason::EchoReply => "echo-reply",
            Reason::UdpResponse => "udp-response",
            Reason::ConnRefused => "conn-refused",
        }
    }

    /// Reads `as_str`'s text back; where several ICMP codes share a text, the
    /// host unreachable (code 1) is the one meant.
    pub fn parse(text: &str) -> Option<Reason> {
        let unreachable = std::iter::once(1).chain(0..=u8::MAX).map(|code| Reason::Unreachable { code });
        Reason::WITHOUT_CODE.into_iter().chain(unreachable).find(|r| r.as_str() == text)
    }

    /// The number the database stores (never renumber: stored rows keep it).
    pub fn code(self) -> i64 {
        match self {
            Reason::SynAck => 1,
            Reason::Reset => 2,
            Reason::NoResponse => 3,
            Reason::FramesDropped => 4,
            Reason::ZeroWindow => 5,
            Reason::EchoReply => 6,
            Reason::UdpResponse => 7,
            Reason::ConnRefused => 8,
            Reason::Unreachable { code } => UNREACHABLE_CODES + i64::from(code),
        }
    }

    pub fn from_code(code: i64) -> Option<Reason> {
        match u8::try_from(code - UNREACHABLE_CODES) {
            Ok(code) => Some(Reason::Unreachable { code }),
            Err(_) => Reason::WITHOUT_CODE.into_iter().find(|r| r.code() == code),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanResult {
    pub ip: IpAddr,
    pub port: u16,
    pub state: PortState,
    pub reason: Reason,
    /// TTL of the reply, if there was one.
    pub ttl: Option<u8>,
    /// Round-trip time in microseconds, where the reply carried our send time back.
    pub rtt_us: Option<u64>,
    /// When the reply arrived (or the scan gave up), in microseconds since the Unix epoch.
    pub time_us: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_reasons_read_back_from_their_text_and_their_codes() {
        for s in PortState::ALL {
            assert_eq!(PortState::parse(s.as_str()), Some(s));
            assert_eq!(PortState::from_code(s.code()), Some(s));
        }
        let unreachable = (0..=u8::MAX).map(|code| Reason::Unreachable { code });
        for r in Reason::WITHOUT_CODE.into_iter().chain(unreachable) {
            assert_eq!(Reason::from_code(r.code()), Some(r));
            assert_eq!(Reason::parse(r.as_str()).map(Reason::as_str), Some(r.as_str()));
        }
        assert_eq!(Reason::parse("host-unreach"), Some(Reason::Unreachable { code: 1 }));
        assert_eq!(Reason::Unreachable { code: 13 }.as_str(), "admin-prohibited");
        assert_eq!(Reason::Unreachable { code: 3 }.as_str(), "port-unreach");
        assert_eq!((PortState::parse("upp"), Reason::parse("syn")), (None, None));
        assert_eq!(PortState::parse("open|filtered"), Some(PortState::OpenFiltered));
        assert_eq!((PortState::from_code(0), Reason::from_code(9), Reason::from_code(512)), (None, None, None));
    }
}
