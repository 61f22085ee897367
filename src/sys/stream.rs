//! Many short TCP conversations at once through one io_uring: a connect,
//! then sends and receives, each linked to an `IORING_OP_LINK_TIMEOUT` so
//! that the kernel ends every step that waits too long, and a close with an
//! RST. One step per connection is in flight at a time.

use super::connect::{bind_source, push, require, submit_and_reap, write_sockaddr};
use super::setsockopt;
use io_uring::{IoUring, opcode, squeue, types};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, IntoRawFd, OwnedFd};
use std::time::Duration;

/// User data of the linked timeouts and of the closes and cancels, whose completions
/// say nothing the step's own does not.
const TIMEOUT: u64 = u64::MAX;
const CLOSE: u64 = u64::MAX - 1;
const SQ_ENTRIES: u32 = 256;
/// The most one receive reads.
pub const RECEIVE_BYTES: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Connect = 1,
    Send = 2,
    Receive = 3,
}

/// How a step of a connection ended: its result, or the error number
/// (ECANCELED where its timeout ended it).
#[derive(Debug, PartialEq, Eq)]
pub enum Ended<'a> {
    Connected(Result<(), i32>),
    Sent(Result<usize, i32>),
    /// Bytes received; none at the end of the peer's stream.
    Received(Result<&'a [u8], i32>),
}

struct Slot {
    fd: Option<OwnedFd>,
    addr: libc::sockaddr_in6,
    timeout: types::Timespec,
    out: Vec<u8>,
    buf: Box<[u8]>,
    /// A step is in flight: the kernel may still read or write the above.
    busy: bool,
    /// The user data of the step last queued.
    step: u64,
    /// Closed while its step was in flight: freed when the step ends.
    closing: bool,
}

/// Connections, at most `capacity` of them, each known by its slot number.
pub struct Streams {
    ring: IoUring,
    slots: Vec<Slot>,
    free: Vec<u32>,
}

impl Streams {
    pub fn new(capacity: u32) -> io::Result<Streams> {
        let ring =
            IoUring::builder().setup_cqsize((capacity * 4).next_power_of_two().max(SQ_ENTRIES)).build(SQ_ENTRIES)?;
        let ops = [
            opcode::Connect::CODE,
            opcode::Send::CODE,
            opcode::Recv::CODE,
            opcode::LinkTimeout::CODE,
            opcode::Close::CODE,
            opcode::AsyncCancel::CODE,
        ];
        require(&ring, &ops)?;
        let slots = (0..capacity)
            .map(|_| Slot {
                fd: None,
                addr: super::zeroed(),
                timeout: types::Timespec::new(),
                out: Vec::new(),
                buf: Box::default(),
                busy: false,
                step: 0,
                closing: false,
            })
            .collect();
        Ok(Streams { ring, slots, free: (0..capacity).rev().collect() })
    }

    /// Connections that may be opened now.
    pub fn room(&self) -> usize {
        self.free.len()
    }

    /// Starts connecting to `to` from a fresh socket, from address `from`
    /// (without it, the one the kernel picks); returns the connection's
    /// slot. Fails for want of a socket or of room, or where `from` is not
    /// this host's.
    pub fn open(&mut self, to: SocketAddr, from: Option<IpAddr>, timeout: Duration) -> io::Result<u32> {
        let Some(&slot) = self.free.last() else { return Err(io::Error::from_raw_os_error(libc::EBUSY)) };
        let family = if to.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
        let fd = super::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0)?;
        if let Some(from) = from {
            bind_source(&fd, from)?;
        }
        let s = &mut self.slots[slot as usize];
        let len = write_sockaddr(&mut s.addr, to);
        let connect = opcode::Connect::new(types::Fd(fd.as_raw_fd()), (&raw const s.addr).cast(), len).build();
        s.fd = Some(fd);
        self.free.pop();
        if let Err(e) = self.step(slot, Step::Connect, connect, timeout) {
            self.slots[slot as usize].fd = None;
            self.free.push(slot);
            return Err(e);
        }
        Ok(slot)
    }

    /// Takes in a socket connected elsewhere (a connect scan's); returns its
    /// slot. Without room, the socket is closed with an RST.
    pub fn adopt(&mut self, socket: OwnedFd) -> io::Result<u32> {
        let Some(slot) = self.free.pop() else {
            super::connect::abort(socket);
            return Err(io::Error::from_raw_os_error(libc::EBUSY));
        };
        self.slots[slot as usize].fd = Some(socket);
        Ok(slot)
    }

    /// Sends `data` on a connected slot (as much of it as the kernel takes
    /// at once: `Ended::Sent` says how much).
    pub fn send(&mut self, slot: u32, data: &[u8], timeout: Duration) -> io::Result<()> {
        let s = &mut self.slots[slot as usize];
        let fd = s.fd.as_ref().ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))?.as_raw_fd();
        s.out.clear();
        s.out.extend_from_slice(data);
        let send =
            opcode::Send::new(types::Fd(fd), s.out.as_ptr(), s.out.len() as u32).flags(libc::MSG_NOSIGNAL).build();
        self.step(slot, Step::Send, send, timeout)
    }

    /// Receives what the peer sends next, up to `RECEIVE_BYTES`.
    pub fn receive(&mut self, slot: u32, timeout: Duration) -> io::Result<()> {
        let s = &mut self.slots[slot as usize];
        let fd = s.fd.as_ref().ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))?.as_raw_fd();
        if s.buf.is_empty() {
            s.buf = vec![0; RECEIVE_BYTES].into_boxed_slice();
        }
        let recv = opcode::Recv::new(types::Fd(fd), s.buf.as_mut_ptr(), s.buf.len() as u32).build();
        self.step(slot, Step::Receive, recv, timeout)
    }

    /// Queues one step of `slot`, ended by the kernel after `timeout`.
    fn step(&mut self, slot: u32, step: Step, entry: squeue::Entry, timeout: Duration) -> io::Result<()> {
        let s = &mut self.slots[slot as usize];
        s.timeout = types::Timespec::from(timeout);
        s.step = u64::from(slot) << 8 | step as u64;
        let entry = entry.flags(squeue::Flags::IO_LINK).user_data(s.step);
        let limit = opcode::LinkTimeout::new(&raw const s.timeout).build().user_data(TIMEOUT);
        // SAFETY: the entries point at this slot's address, buffers and
        // timespec, which stay in place (slots never move, nor their boxed
        // buffer or the vector that is not touched again) and unchanged until
        // the step's completion, before which no other step of the slot is
        // queued and its buffers are kept, even if it is closed (`closing`);
        // the kernel holds the socket while the step uses it. A slot still
        // busy when the ring goes is never freed (see Drop).
        unsafe { push(&mut self.ring, &[entry, limit])? };
        s.busy = true;
        Ok(())
    }

    /// Ends a connection with an RST (no TIME_WAIT left per service) and
    /// frees its slot; one with a step in flight has the step cancelled and
    /// keeps its buffers, which the kernel may still use, until the step
    /// ends, and its slot is freed then, its end not reported.
    pub fn close(&mut self, slot: u32) {
        let s = &mut self.slots[slot as usize];
        if s.busy {
            s.closing = true;
            let cancel = opcode::AsyncCancel::new(s.step).build().user_data(CLOSE);
            // SAFETY: a cancel points at nothing. Should it not be queued,
            // the step ends by its timeout instead.
            let _ = unsafe { push(&mut self.ring, &[cancel]) };
        } else {
            s.out = Vec::new();
            s.buf = Box::default();
        }
        if let Some(fd) = s.fd.take() {
            let linger = libc::linger { l_onoff: 1, l_linger: 0 };
            let _ = setsockopt(fd.as_fd(), libc::SOL_SOCKET, libc::SO_LINGER, &linger);
            let close = opcode::Close::new(types::Fd(fd.as_raw_fd())).build().user_data(CLOSE);
            // SAFETY: a close points at nothing; once queued, the descriptor is the kernel's to close.
            if unsafe { push(&mut self.ring, &[close]) }.is_ok() {
                let _ = fd.into_raw_fd();
            }
        }
        if !s.closing {
            self.free.push(slot);
        }
    }

    /// Submits what was queued, waits up to `wait` for a step to end (not at
    /// all for a zero wait, nor with nothing in flight), and hands each that
    /// ended to `on` with its slot.
    pub fn complete(&mut self, wait: Duration, on: &mut dyn FnMut(u32, Ended)) -> io::Result<()> {
        let in_flight = self.free.len() < self.slots.len();
        let ended = submit_and_reap(&mut self.ring, wait, in_flight)?;
        for (data, result) in ended {
            if data == TIMEOUT || data == CLOSE {
                continue;
            }
            let slot = (data >> 8) as u32;
            let s = &mut self.slots[slot as usize];
            s.busy = false;
            if std::mem::take(&mut s.closing) {
                s.out = Vec::new();
                s.buf = Box::default();
                self.free.push(slot);
                continue;
            }
            let ended = match (data & 0xff, result) {
                (_, e) if e < 0 && data & 0xff == Step::Connect as u64 => Ended::Connected(Err(-e)),
                (1, _) => Ended::Connected(Ok(())),
                (2, e) if e < 0 => Ended::Sent(Err(-e)),
                (2, n) => Ended::Sent(Ok(n as usize)),
                (_, e) if e < 0 => Ended::Received(Err(-e)),
                (_, n) => Ended::Received(Ok(&s.buf[..(n as usize).min(s.buf.len())])),
            };
            on(slot, ended);
        }
        Ok(())
    }
}

impl Drop for Streams {
    /// The closes queued by the last reading go to the kernel. A step still
    /// in flight may yet write into its slot after the ring is gone: its
    /// slot is leaked, not freed, as the process is near its end.
    fn drop(&mut self) {
        let _ = self.ring.submit();
        for s in std::mem::take(&mut self.slots) {
            if s.busy {
                std::mem::forget(s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// The steps that end, with their slot, once one has ended, or `until`
    /// says enough, or the waits ran out.
    fn run(streams: &mut Streams, until: &dyn Fn(&Streams) -> bool) -> Vec<(u32, String)> {
        let mut seen = Vec::new();
        for _ in 0..50 {
            if !seen.is_empty() || until(streams) {
                break;
            }
            streams.complete(Duration::from_millis(100), &mut |slot, e| seen.push((slot, format!("{e:?}")))).unwrap();
        }
        seen
    }

    /// Binding sends nothing: no address outside this host is touched.
    #[test]
    fn only_this_hosts_addresses_can_be_connected_from() {
        use super::super::connect::can_connect_from;
        assert!(can_connect_from("127.0.0.2".parse().unwrap()));
        assert!(!can_connect_from("192.0.2.1".parse().unwrap()), "a documentation address (RFC 5737)");
    }

    /// A connection closed while its receive waits on a silent peer: the
    /// receive is cancelled, its end is not reported, and its slot (with
    /// the buffer the kernel was given) is free only after that end.
    #[test]
    fn closing_a_waiting_connection_frees_its_slot_once_the_kernel_lets_go() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let to = listener.local_addr().unwrap();
        let mut streams = Streams::new(1).unwrap();
        let slot = streams.open(to, None, Duration::from_secs(5)).unwrap();
        let seen = run(&mut streams, &|_| false);
        assert_eq!(seen.first(), Some(&(slot, "Connected(Ok(()))".to_string())));
        let (_peer, _) = listener.accept().unwrap();

        streams.receive(slot, Duration::from_secs(3600)).unwrap();
        streams.complete(Duration::ZERO, &mut |_, e| panic!("nothing ends yet: {e:?}")).unwrap();
        streams.close(slot);
        assert_eq!(streams.room(), 0, "the kernel may still write into the slot's buffer");
        let seen = run(&mut streams, &|s| s.room() == 1);
        assert_eq!(streams.room(), 1, "the cancelled receive ended");
        assert!(seen.is_empty(), "{seen:?}");

        // From another of this host's addresses this time: the peer sees it.
        let from: IpAddr = "127.0.0.2".parse().unwrap();
        let again = streams.open(to, Some(from), Duration::from_secs(5)).unwrap();
        assert_eq!(again, slot);
        let seen = run(&mut streams, &|_| false);
        assert_eq!(seen.first(), Some(&(slot, "Connected(Ok(()))".to_string())));
        assert_eq!(listener.accept().unwrap().1.ip(), from);
    }
}
