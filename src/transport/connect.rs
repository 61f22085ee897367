//! The connect scan's backend: connection attempts that the kernel makes
//! and ends at their timeouts, through one io_uring.

use crate::sys::connect::Connector;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// Connection attempts in flight; what the connect engine knows of the I/O.
pub trait Connect {
    /// Attempts that may start now.
    fn room(&self) -> usize;
    /// Starts connecting to `to`, given up after `timeout`; its outcome
    /// comes back from `complete` with `token`.
    fn start(&mut self, token: u64, to: SocketAddr, timeout: Duration) -> io::Result<()>;
    /// Hands the attempts started to the kernel: their round trips start now.
    fn submit(&mut self) -> io::Result<()>;
    /// Waits up to `wait` for an attempt to end (not at all for a zero
    /// wait), and hands each that ended to `on`: its token and 0 (connected)
    /// or the error number.
    fn complete(&mut self, wait: Duration, on: &mut dyn FnMut(u64, i32)) -> io::Result<()>;
}

/// Attempts through io_uring: `IORING_OP_CONNECT`, each linked to its timeout.
pub struct UringConnect(Connector);

impl UringConnect {
    /// Room for `capacity` attempts at once.
    pub fn new(capacity: u32) -> io::Result<Self> {
        Connector::new(capacity).map(UringConnect)
    }
}

impl Connect for UringConnect {
    fn room(&self) -> usize {
        self.0.room()
    }

    fn start(&mut self, token: u64, to: SocketAddr, timeout: Duration) -> io::Result<()> {
        self.0.start(token, to, timeout)
    }

    fn submit(&mut self) -> io::Result<()> {
        self.0.submit()
    }

    fn complete(&mut self, wait: Duration, on: &mut dyn FnMut(u64, i32)) -> io::Result<()> {
        self.0.complete(wait, on)
    }
}
