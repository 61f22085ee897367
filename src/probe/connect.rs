//! The connect scan (`-sT`): no frames of its own, the kernel's handshake
//! through `connect(2)`. What an attempt's outcome, the error number the
//! kernel gave it, says about the port.

use crate::result::{PortState, Reason};

/// What one connection attempt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An answer: the port's state, whatever the tries left.
    Answer(PortState, Reason),
    /// No answer before the attempt's timeout: tried again while tries are
    /// left, then the port is filtered.
    Silent,
    /// This host could not make the attempt (no local port or buffer free):
    /// made again once fewer are in flight, not counted as a try.
    Local,
}

/// The outcome of an attempt that ended with `errno` (0: connected).
pub fn outcome(errno: i32) -> Outcome {
    match errno {
        // Reset (or closed, then reset) after the handshake: a SYN-ACK came,
        // as the kernel answers a reset before it with ECONNREFUSED.
        0 | libc::ECONNRESET | libc::EPIPE => Outcome::Answer(PortState::Open, Reason::SynAck),
        libc::ECONNREFUSED => Outcome::Answer(PortState::Closed, Reason::ConnRefused),
        // The kernel says no more of an ICMP unreachable than this: every
        // host code (host, host-prohibited, admin-prohibited) is
        // EHOSTUNREACH, every network code ENETUNREACH.
        libc::EHOSTUNREACH => Outcome::Answer(PortState::Filtered, Reason::Unreachable { code: 1 }),
        libc::ENETUNREACH => Outcome::Answer(PortState::Filtered, Reason::Unreachable { code: 0 }),
        libc::EADDRNOTAVAIL | libc::ENOBUFS | libc::ENOMEM | libc::EAGAIN => Outcome::Local,
        // ECANCELED (the linked timeout ended it), ETIMEDOUT, a firewall of
        // this host's (EPERM, EACCES: as one on the path would), and what a
        // misbehaving path may answer (EPROTO): no answer that says what the
        // port is.
        _ => Outcome::Silent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_of_connect_are_states_as_nmap_names_them() {
        for open in [0, libc::ECONNRESET, libc::EPIPE] {
            assert_eq!(outcome(open), Outcome::Answer(PortState::Open, Reason::SynAck));
        }
        assert_eq!(outcome(libc::ECONNREFUSED), Outcome::Answer(PortState::Closed, Reason::ConnRefused));
        assert_eq!(outcome(libc::EHOSTUNREACH), Outcome::Answer(PortState::Filtered, Reason::Unreachable { code: 1 }));
        assert_eq!(outcome(libc::ENETUNREACH), Outcome::Answer(PortState::Filtered, Reason::Unreachable { code: 0 }));
        for silent in [libc::ECANCELED, libc::ETIMEDOUT, libc::EPROTO, libc::EPERM] {
            assert_eq!(outcome(silent), Outcome::Silent);
        }
        for local in [libc::EADDRNOTAVAIL, libc::ENOBUFS, libc::EAGAIN] {
            assert_eq!(outcome(local), Outcome::Local);
        }
    }
}
