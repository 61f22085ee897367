//! The banner stage's backend: short conversations with open ports, each
//! step ended by the kernel at its timeout, through one io_uring.

use crate::engine::banners::BannerStats;
pub use crate::sys::stream::Ended;
use crate::sys::stream::Streams;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::time::Duration;

/// A step's error that is no errno (the kernel's are positive): the peer
/// acknowledged a byte it never had, as no TCP stack does.
pub const NO_TCP_STACK: i32 = -1;

/// Connections, each known by a number while it lasts; what the banner
/// stage knows of the I/O. One step per connection at a time.
pub trait Conversations {
    /// Connections that may be opened now.
    fn room(&self) -> usize;
    /// Starts connecting to `to`, from address `from` if given; returns the
    /// connection's number.
    fn open(&mut self, to: SocketAddr, from: Option<IpAddr>, timeout: Duration) -> io::Result<u32>;
    /// Takes in a socket already connected; returns the connection's number.
    fn adopt(&mut self, socket: OwnedFd) -> io::Result<u32>;
    fn send(&mut self, id: u32, data: &[u8], timeout: Duration) -> io::Result<()>;
    fn receive(&mut self, id: u32, timeout: Duration) -> io::Result<()>;
    /// Ends a connection between steps; its number may be given out again.
    fn close(&mut self, id: u32);
    /// Waits up to `wait` for steps to end, and hands each to `on`. A step
    /// ends with `NO_TCP_STACK` where the peer is none (it acknowledged
    /// bytes never sent).
    fn complete(&mut self, wait: Duration, on: &mut dyn FnMut(u32, Ended)) -> io::Result<()>;
    /// Adds what the backend counted itself to the stage's counts.
    fn count(&self, _stats: &mut BannerStats) {}
}

impl Conversations for Streams {
    fn room(&self) -> usize {
        Streams::room(self)
    }

    fn open(&mut self, to: SocketAddr, from: Option<IpAddr>, timeout: Duration) -> io::Result<u32> {
        Streams::open(self, to, from, timeout)
    }

    fn adopt(&mut self, socket: OwnedFd) -> io::Result<u32> {
        Streams::adopt(self, socket)
    }

    fn send(&mut self, id: u32, data: &[u8], timeout: Duration) -> io::Result<()> {
        Streams::send(self, id, data, timeout)
    }

    fn receive(&mut self, id: u32, timeout: Duration) -> io::Result<()> {
        Streams::receive(self, id, timeout)
    }

    fn close(&mut self, id: u32) {
        Streams::close(self, id)
    }

    fn complete(&mut self, wait: Duration, on: &mut dyn FnMut(u32, Ended)) -> io::Result<()> {
        Streams::complete(self, wait, on)
    }
}
