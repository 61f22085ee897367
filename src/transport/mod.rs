//! How frames leave and arrive. Each backend implements the two small traits
//! below; the engine knows nothing else about it.

pub mod connect;
pub mod filter;
pub mod own_tcp;
pub mod raw;
pub mod stream;
#[allow(unsafe_code)]
pub mod xdp;

use crate::wire::sources::Sources;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TransportError {
    #[error(
        "{what} needs the CAP_NET_RAW capability: run prtip as root, grant it with `setcap cap_net_raw,cap_net_admin,cap_bpf,cap_ipc_lock+ep prtip`, or scan with -sT (a connect scan needs no privilege)"
    )]
    NoPrivilege { what: &'static str },
    #[error("AF_XDP: {what}: {why}")]
    Xdp { what: &'static str, why: String },
    #[error("{ifname} already has an XDP program attached; prtip does not replace it (use --transport raw)")]
    XdpBusy { ifname: String },
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl TransportError {
    /// Wraps an OS error, turning EPERM/EACCES into the capability message.
    pub(crate) fn os(what: &'static str, source: std::io::Error) -> Self {
        match source.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => TransportError::NoPrivilege { what },
            _ => TransportError::Io { what, source },
        }
    }
}

/// The frames a transport's receiving half takes: those to one of `to`, that
/// answer probes of IP protocol `protocol` sent from `ports` (the rest are
/// the kernel's, or dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replies {
    pub to: Sources,
    pub ports: (u16, u16),
    pub protocol: u8,
}

/// The sending half: puts whole Ethernet frames on the wire.
pub trait Transmit: Send {
    /// Sends every frame, in order; returns once each was handed to the kernel
    /// or refused by it, with the number handed over.
    fn transmit(&mut self, frames: &[&[u8]]) -> Result<usize, TransportError>;
}

/// The receiving half: yields frames that may be replies (already narrowed by a kernel filter).
pub trait Receive: Send {
    /// Waits up to `timeout` for frames and passes each to `on_frame`, with the
    /// time it arrived in nanoseconds since the Unix epoch (the kernel's receive
    /// timestamp where there is one). True when the call caught up: every
    /// frame that had arrived when it began was passed on. The engine
    /// concludes a probe silent only once the frames of its reply's time
    /// were all read.
    fn receive(&mut self, timeout: Duration, on_frame: &mut dyn FnMut(&[u8], u64)) -> Result<bool, TransportError>;

    /// Frames lost on this host since the last call.
    fn take_drops(&mut self) -> Drops;

    /// The largest share (0 to 1) of the receive buffer that was waiting to
    /// be read at once since the last call: how far behind the replies the
    /// reading is. 0 where the transport cannot tell.
    fn take_backlog(&mut self) -> f32 {
        0.0
    }
}

/// Frames lost on this host, by what they were: the two call for different
/// remedies (see `engine::loss`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drops {
    /// Replies the kernel dropped before prtip read them.
    pub replies: u64,
    /// Probes the interface dropped as they were sent.
    pub probes: u64,
}

impl Drops {
    pub fn total(self) -> u64 {
        self.replies + self.probes
    }
}

/// Probes the interface dropped as they were sent and the sending halves then
/// sent again: the interface's `tx_dropped` counts them, yet nothing was lost.
#[derive(Debug, Clone, Default)]
pub struct Resent(Arc<AtomicU64>);

impl Resent {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }

    /// Those counted since the last call.
    pub fn take(&self) -> u64 {
        self.0.swap(0, Relaxed)
    }
}

/// A receiving half whose drops also count the frames the interface itself
/// lost, in either direction: a probe that never left is a reply never seen.
pub struct WithLinkDrops<R> {
    pub inner: R,
    pub link: crate::net::interface::LinkDrops,
    pub resent: Resent,
    ledger: Ledger,
}

impl<R> WithLinkDrops<R> {
    pub fn new(inner: R, link: crate::net::interface::LinkDrops, resent: Resent) -> Self {
        WithLinkDrops { inner, link, resent, ledger: Ledger::default() }
    }
}

/// Sets the interface's transmit drops against the frames sent again. The
/// interface counts a drop before its sender learns of it and sends the
/// frame again, and the two counters are read in that order. So a resend
/// read now may be for a drop already taken as lost at the last reading (it
/// pays that first), for a drop in this reading, or for one the interface
/// counted only after it was read (set against the next reading). Every
/// ambiguity is settled towards a loss: retried, never missed.
#[derive(Debug, Default)]
struct Ledger {
    /// Resends left over from the last reading: their drops come in this one.
    early: u64,
    /// Drops taken as lost at the last reading: a late resend pays for one.
    owed: u64,
}

impl Ledger {
    /// Of `dropped` frames counted by the interface since the last reading,
    /// with `resent` counted by the senders after it, those not sent again.
    fn settle(&mut self, dropped: u64, resent: u64) -> u64 {
        let paid = resent.min(self.owed);
        let resent = resent - paid;
        let covered = resent + self.early;
        let lost = dropped.saturating_sub(covered);
        self.early = covered.saturating_sub(dropped).min(resent);
        self.owed = lost;
        lost
    }
}

impl<R: Receive> Receive for WithLinkDrops<R> {
    fn receive(&mut self, timeout: Duration, on_frame: &mut dyn FnMut(&[u8], u64)) -> Result<bool, TransportError> {
        self.inner.receive(timeout, on_frame)
    }

    fn take_drops(&mut self) -> Drops {
        let Drops { replies, probes } = self.inner.take_drops();
        let link = self.link.take();
        let lost = self.ledger.settle(link.outgoing, self.resent.take());
        Drops { replies: replies + link.incoming, probes: probes + lost }
    }

    fn take_backlog(&mut self) -> f32 {
        self.inner.take_backlog()
    }
}

/// Faults of a slow and lossy host, injected for the tests (tests/drops.rs);
/// release builds do not have them. The receiving half pauses after every
/// read: a receive path slower than the replies, so that the kernel's rings
/// overflow for real. Each sending half drops every `drop_every`-th of its
/// first `drop_until` probes after taking them, as an interface whose peer's
/// ring is full does (counted in `tx_dropped`), and the receiving half
/// reports those drops with the kernel's own: drops then happen however the
/// machine's load paces a scan, and stop, as a burst does.
#[cfg(debug_assertions)]
pub mod fault {
    use super::{Drops, Receive, Transmit, TransportError};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use std::time::Duration;

    pub struct StalledRx<R> {
        pub inner: R,
        pub stall: Duration,
        /// Probes the sending halves dropped, not yet reported.
        pub probes_dropped: Arc<AtomicU64>,
    }

    impl<R: Receive> Receive for StalledRx<R> {
        fn receive(&mut self, timeout: Duration, on_frame: &mut dyn FnMut(&[u8], u64)) -> Result<bool, TransportError> {
            let caught_up = self.inner.receive(timeout, on_frame)?;
            std::thread::sleep(self.stall);
            Ok(caught_up)
        }

        fn take_drops(&mut self) -> Drops {
            let mut drops = self.inner.take_drops();
            drops.probes += self.probes_dropped.swap(0, Relaxed);
            drops
        }

        fn take_backlog(&mut self) -> f32 {
            self.inner.take_backlog()
        }
    }

    pub struct LossyTx<T> {
        pub inner: T,
        /// 0 drops nothing.
        pub drop_every: u64,
        pub drop_until: u64,
        pub seen: u64,
        pub probes_dropped: Arc<AtomicU64>,
    }

    impl<T: Transmit> Transmit for LossyTx<T> {
        fn transmit(&mut self, frames: &[&[u8]]) -> Result<usize, TransportError> {
            let mut kept = Vec::with_capacity(frames.len());
            for f in frames {
                self.seen += 1;
                if self.drop_every > 0 && self.seen <= self.drop_until && self.seen.is_multiple_of(self.drop_every) {
                    self.probes_dropped.fetch_add(1, Relaxed);
                } else {
                    kept.push(*f);
                }
            }
            // The dropped ones were taken, as the kernel takes what its interface then drops.
            Ok(self.inner.transmit(&kept)? + (frames.len() - kept.len()))
        }
    }
}

impl<T: Transmit + ?Sized> Transmit for Box<T> {
    fn transmit(&mut self, frames: &[&[u8]]) -> Result<usize, TransportError> {
        (**self).transmit(frames)
    }
}

impl<R: Receive + ?Sized> Receive for Box<R> {
    fn receive(&mut self, timeout: Duration, on_frame: &mut dyn FnMut(&[u8], u64)) -> Result<bool, TransportError> {
        (**self).receive(timeout, on_frame)
    }

    fn take_drops(&mut self) -> Drops {
        (**self).take_drops()
    }

    fn take_backlog(&mut self) -> f32 {
        (**self).take_backlog()
    }
}

#[cfg(test)]
mod tests {
    use super::Ledger;

    /// Readings of (drops, resends) in turn, and what each takes as lost.
    fn settle(readings: &[(u64, u64)]) -> Vec<u64> {
        let mut ledger = Ledger::default();
        readings.iter().map(|&(dropped, resent)| ledger.settle(dropped, resent)).collect()
    }

    #[test]
    fn resends_cover_their_own_drops_and_never_hide_another() {
        // Every drop sent again, and read with its resend.
        assert_eq!(settle(&[(5, 5), (0, 0)]), [0, 0]);
        // A drop whose resend is not counted yet is lost; its late resend
        // pays for it, and hides no drop of the next reading.
        assert_eq!(settle(&[(5, 4), (1, 1)]), [1, 1]);
        assert_eq!(settle(&[(1, 0), (0, 1), (1, 0)]), [1, 0, 1]);
        // A resend read before its drop covers that drop in the next reading...
        assert_eq!(settle(&[(5, 6), (1, 0)]), [0, 0]);
        // ...and no further.
        assert_eq!(settle(&[(5, 6), (0, 0), (1, 0)]), [0, 0, 1]);
    }
}
