//! The connect scan's backend: connection attempts that the kernel makes
//! and ends at their timeouts, through one io_uring.

use crate::sys::connect::Connector;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
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
    /// or the error number, and the connected socket where the backend
    /// hands them over (for `--banners`) rather than closing them.
    fn complete(&mut self, wait: Duration, on: &mut dyn FnMut(u64, i32, Option<OwnedFd>)) -> io::Result<()>;
}

/// Attempts through io_uring: `IORING_OP_CONNECT`, each linked to its timeout.
impl Connect for Connector {
    fn room(&self) -> usize {
        Connector::room(self)
    }

    fn start(&mut self, token: u64, to: SocketAddr, timeout: Duration) -> io::Result<()> {
        Connector::start(self, token, to, timeout)
    }

    fn submit(&mut self) -> io::Result<()> {
        Connector::submit(self)
    }

    fn complete(&mut self, wait: Duration, on: &mut dyn FnMut(u64, i32, Option<OwnedFd>)) -> io::Result<()> {
        Connector::complete(self, wait, on)
    }
}
