//! Many TCP connects at once through one io_uring: each an
//! `IORING_OP_CONNECT` linked to an `IORING_OP_LINK_TIMEOUT`, so that the
//! kernel ends every attempt by itself and no attempt needs a timer here.

use super::{check, setsockopt};
use io_uring::{IoUring, opcode, squeue, types};
use std::io;
use std::mem::size_of;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, IntoRawFd, OwnedFd};
use std::time::Duration;

/// The user data of the linked timeouts and of the closes: their
/// completions say nothing the connect's own does not.
const TIMEOUT: u64 = u64::MAX;
const CLOSE: u64 = u64::MAX - 1;
/// Submission entries: a batch of attempts (two entries each) and the
/// closes of those that ended go in one system call.
const SQ_ENTRIES: u32 = 256;

/// One attempt in flight: its socket, and the address and timeout the
/// kernel reads when the entries are submitted.
struct Slot {
    token: u64,
    fd: Option<OwnedFd>,
    addr: libc::sockaddr_in6,
    timeout: types::Timespec,
}

/// Connection attempts in flight, at most `capacity` of them.
pub struct Connector {
    ring: IoUring,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Connected sockets are handed over (to the banner stage), not closed.
    hand_over: bool,
}

impl Connector {
    pub fn new(capacity: u32, hand_over: bool) -> io::Result<Connector> {
        // Room for the completions of every attempt in flight and of as many closes.
        let ring =
            IoUring::builder().setup_cqsize((capacity * 4).next_power_of_two().max(SQ_ENTRIES)).build(SQ_ENTRIES)?;
        // A kernel without these would fail each attempt with EINVAL, which
        // would read as silence: refused here instead, before anything is sent.
        require(&ring, &[opcode::Connect::CODE, opcode::LinkTimeout::CODE, opcode::Close::CODE])?;
        let slots = (0..capacity)
            .map(|_| Slot { token: 0, fd: None, addr: super::zeroed(), timeout: types::Timespec::new() })
            .collect();
        Ok(Connector { ring, slots, free: (0..capacity).rev().collect(), hand_over })
    }

    /// Attempts that may start now.
    pub fn room(&self) -> usize {
        self.free.len()
    }

    /// Starts connecting to `to` from a fresh socket, given up by the kernel
    /// after `timeout`; the outcome comes back from `complete` with `token`.
    /// Fails only for want of a socket (the descriptor limit) or of room.
    pub fn start(&mut self, token: u64, to: SocketAddr, timeout: Duration) -> io::Result<()> {
        let Some(&slot) = self.free.last() else { return Err(io::Error::from_raw_os_error(libc::EBUSY)) };
        let family = if to.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
        // A blocking socket: io_uring waits for the handshake itself.
        let fd = super::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0)?;
        let s = &mut self.slots[slot as usize];
        let len = write_sockaddr(&mut s.addr, to);
        s.timeout = types::Timespec::from(timeout);
        s.token = token;
        let connect = opcode::Connect::new(types::Fd(fd.as_raw_fd()), (&raw const s.addr).cast(), len)
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(u64::from(slot));
        let limit = opcode::LinkTimeout::new(&raw const s.timeout).build().user_data(TIMEOUT);
        // SAFETY: the entries point at this slot's address and timespec, which
        // stay in place (the slots never move) and unchanged until the slot is
        // freed, after the connect's completion; the socket stays open as long.
        // Where they could not be queued, the slot stays free and the socket
        // is closed here.
        unsafe { push(&mut self.ring, &[connect, limit])? };
        self.slots[slot as usize].fd = Some(fd);
        self.free.pop();
        Ok(())
    }

    /// Hands what was started to the kernel: an attempt's round trip starts here.
    pub fn submit(&mut self) -> io::Result<()> {
        self.ring.submit().map(drop)
    }

    /// Submits what was started, waits up to `wait` for at least one attempt
    /// to end (not at all for a zero wait, nor with none in flight), and
    /// hands each that ended to `on`: its token and 0 (connected) or the
    /// error number, and the connected socket where sockets are handed over;
    /// otherwise a connected socket is closed with an RST.
    pub fn complete(&mut self, wait: Duration, on: &mut dyn FnMut(u64, i32, Option<OwnedFd>)) -> io::Result<()> {
        let in_flight = self.free.len() < self.slots.len();
        let ended = submit_and_reap(&mut self.ring, wait, in_flight)?;
        for (data, result) in ended {
            if data == TIMEOUT || data == CLOSE {
                continue;
            }
            let s = &mut self.slots[data as usize];
            let mut fd = s.fd.take();
            let token = s.token;
            if result == 0 && self.hand_over {
                self.free.push(data as u32);
                on(token, 0, fd);
                continue;
            }
            if result == 0
                && let Some(fd) = &fd
            {
                // No TIME_WAIT left behind per open port: a scan of many opens
                // would otherwise run out of local ports.
                let linger = libc::linger { l_onoff: 1, l_linger: 0 };
                let _ = setsockopt(fd.as_fd(), libc::SOL_SOCKET, libc::SO_LINGER, &linger);
            }
            if let Some(fd) = fd.take() {
                // Closed by the next submit, with the next batch: no system
                // call of its own (or by one now, where the queue is full).
                let close = opcode::Close::new(types::Fd(fd.as_raw_fd())).build().user_data(CLOSE);
                // SAFETY: a close points at nothing; once queued, the descriptor is the kernel's to close.
                if unsafe { push(&mut self.ring, &[close]) }.is_ok() {
                    let _ = fd.into_raw_fd();
                }
            }
            self.free.push(data as u32);
            on(token, -result, None);
        }
        Ok(())
    }
}

impl Drop for Connector {
    /// The closes queued by the last reading go to the kernel: no socket
    /// outlives the scan, nor an open port's connection its RST.
    fn drop(&mut self) {
        let _ = self.ring.submit();
    }
}

/// Closes a connected socket with an RST: no TIME_WAIT left behind.
pub fn abort(fd: OwnedFd) {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    let _ = setsockopt(fd.as_fd(), libc::SOL_SOCKET, libc::SO_LINGER, &linger);
}

/// Submits what is queued, waits up to `wait` for a completion (not at all
/// for a zero wait, nor with nothing `in_flight`, nor with completions
/// already there), and takes every completion: (user data, result).
pub(super) fn submit_and_reap(ring: &mut IoUring, wait: Duration, in_flight: bool) -> io::Result<Vec<(u64, i32)>> {
    let submitted = if wait.is_zero() || !in_flight || !ring.completion().is_empty() {
        ring.submit()
    } else {
        let ts = types::Timespec::from(wait);
        ring.submitter().submit_with_args(1, &types::SubmitArgs::new().timespec(&ts))
    };
    match submitted {
        Ok(_) => {}
        Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR | libc::EBUSY)) => {}
        Err(e) => return Err(e),
    }
    Ok(ring.completion().map(|c| (c.user_data(), c.result())).collect())
}

/// Refuses a ring whose kernel lacks one of `ops` or timed waits (5.11+).
pub(super) fn require(ring: &IoUring, ops: &[u8]) -> io::Result<()> {
    let mut probe = io_uring::Probe::new();
    ring.submitter().register_probe(&mut probe)?;
    if !ring.params().is_feature_ext_arg() || !ops.iter().all(|&op| probe.is_supported(op)) {
        return Err(io::Error::other(
            "this kernel's io_uring lacks connect, send, receive, linked timeouts or timed waits (5.11+)",
        ));
    }
    Ok(())
}

/// Queues `entries` together, submitting what is queued first where they
/// would not fit.
///
/// # Safety
///
/// What the entries point at must stay valid until they complete.
/// Fails with EBUSY, queueing none of them, where the queue stays full.
pub(super) unsafe fn push(ring: &mut IoUring, entries: &[squeue::Entry]) -> io::Result<()> {
    let free = |ring: &mut IoUring| {
        let sq = ring.submission();
        sq.capacity() - sq.len()
    };
    if free(ring) < entries.len() {
        match ring.submit() {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY | libc::EAGAIN)) => {}
            Err(e) => return Err(e),
        }
        if free(ring) < entries.len() {
            return Err(io::Error::from_raw_os_error(libc::EBUSY));
        }
    }
    let mut sq = ring.submission();
    for e in entries {
        // SAFETY: the caller's promise; there is room for every entry.
        unsafe { sq.push(e).map_err(|_| io::Error::from_raw_os_error(libc::EBUSY))? };
    }
    Ok(())
}

/// Whether a connection can leave from address `from`: whether it is this host's.
pub fn can_connect_from(from: IpAddr) -> bool {
    let family = if from.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    super::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0).is_ok_and(|fd| bind_source(&fd, from).is_ok())
}

/// Binds a socket about to connect to address `from`, its port left to
/// the connect: a bind picks a port before it knows the destination, and
/// would draw every connection from one address's ephemeral range alone.
pub(super) fn bind_source(fd: &OwnedFd, from: IpAddr) -> io::Result<()> {
    setsockopt(fd.as_fd(), libc::SOL_IP, libc::IP_BIND_ADDRESS_NO_PORT, &1i32)?;
    // An IPv4 address in the larger sockaddr_in6: bind takes any length from sockaddr_in's up.
    let mut addr = super::zeroed();
    write_sockaddr(&mut addr, SocketAddr::new(from, 0));
    super::bind(fd.as_fd(), &addr)
}

/// Writes `to` into `out` as the kernel's sockaddr; returns its length.
pub(super) fn write_sockaddr(out: &mut libc::sockaddr_in6, to: SocketAddr) -> libc::socklen_t {
    match to {
        SocketAddr::V4(a) => {
            let mut v4: libc::sockaddr_in = super::zeroed();
            v4.sin_family = libc::AF_INET as libc::sa_family_t;
            v4.sin_port = a.port().to_be();
            v4.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            // SAFETY: a sockaddr_in is smaller than a sockaddr_in6 and both are plain data.
            unsafe { std::ptr::write((out as *mut libc::sockaddr_in6).cast::<libc::sockaddr_in>(), v4) };
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            *out = super::zeroed();
            out.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            out.sin6_port = a.port().to_be();
            out.sin6_addr.s6_addr = a.ip().octets();
            out.sin6_scope_id = a.scope_id();
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Raises this process's limit on open descriptors to the most it may
/// have; returns the limit now in force.
pub fn raise_open_files() -> io::Result<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit, which `lim` is.
    check(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) })?;
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        // SAFETY: setrlimit reads one rlimit, which `raised` is.
        if check(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) }).is_ok() {
            lim = raised;
        }
    }
    Ok(lim.rlim_cur)
}

/// Counts the descriptors open in this process now.
pub fn open_files() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count().saturating_sub(1))
}
