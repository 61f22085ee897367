//! What a scan learns about one (address, port).

use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortState {
    Open,
    Closed,
    Filtered,
    /// No answer, but replies may have been lost on this side (receive or
    /// transmit drops) on the last attempt: silence proves nothing.
    Undecided,
}

impl PortState {
    pub fn as_str(self) -> &'static str {
        match self {
            PortState::Open => "open",
            PortState::Closed => "closed",
            PortState::Filtered => "filtered",
            PortState::Undecided => "undecided",
        }
    }
}

/// Why a port got its state, in nmap's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    SynAck,
    Reset,
    Unreachable {
        code: u8,
    },
    NoResponse,
    /// Silent while this host dropped frames (see `PortState::Undecided`).
    FramesDropped,
}

impl Reason {
    /// Whether a reply came: false for the reasons of silence.
    pub fn is_reply(self) -> bool {
        !matches!(self, Reason::NoResponse | Reason::FramesDropped)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::SynAck => "syn-ack",
            Reason::Reset => "reset",
            Reason::Unreachable { .. } => "host-unreach",
            Reason::NoResponse => "no-response",
            Reason::FramesDropped => "frames-dropped",
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
