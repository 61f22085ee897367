//! Batches for sendmmsg(2) and recvmmsg(2), kept from call to call: on the
//! hot paths a call allocates nothing once a batch has reached its size.

use super::{check, zeroed};
use std::io;
use std::marker::PhantomData;
use std::mem::{size_of, size_of_val};
use std::os::fd::{AsRawFd, BorrowedFd};

/// SO_TIMESTAMPNS (the 64-bit timespec form on x86_64 and arm64): the
/// socket option that has `RecvBatch` see each frame's kernel timestamp.
pub const SO_TIMESTAMPNS: libc::c_int = 35;
/// Room for one timestamp control message per received frame.
const CONTROL_WORDS: usize = 8;

/// Where one message goes.
#[derive(Clone, Copy)]
pub enum SockAddr {
    Link(libc::sockaddr_ll),
    V4(libc::sockaddr_in),
    V6(libc::sockaddr_in6),
}

impl SockAddr {
    /// The address as msghdr's `msg_name` and `msg_namelen`.
    fn name(&mut self) -> (*mut libc::c_void, u32) {
        match self {
            SockAddr::Link(a) => ((a as *mut libc::sockaddr_ll).cast(), size_of_val(a) as u32),
            SockAddr::V4(a) => ((a as *mut libc::sockaddr_in).cast(), size_of_val(a) as u32),
            SockAddr::V6(a) => ((a as *mut libc::sockaddr_in6).cast(), size_of_val(a) as u32),
        }
    }
}

/// The headers, buffer descriptors and addresses of one sendmmsg call.
#[derive(Default)]
pub struct SendBatch {
    msgs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    dests: Vec<SockAddr>,
}

// SAFETY: the pointers in `msgs` and `iovs` are rewritten by every `prepare`
// and only followed while the `Prepared` it returns borrows their targets.
unsafe impl Send for SendBatch {}

/// A batch pointed at its frames, ready to go out on one socket.
pub struct Prepared<'a> {
    fd: BorrowedFd<'a>,
    msgs: &'a mut [libc::mmsghdr],
    _frames: PhantomData<&'a [&'a [u8]]>,
}

impl SendBatch {
    /// Points one message at each frame, from its byte `skip` on, addressed to `dest(frame)`.
    pub fn prepare<'a>(
        &'a mut self,
        fd: BorrowedFd<'a>,
        frames: &'a [&'a [u8]],
        skip: usize,
        dest: impl Fn(&[u8]) -> SockAddr,
    ) -> Prepared<'a> {
        self.dests.clear();
        self.dests.extend(frames.iter().map(|f| dest(f)));
        self.iovs.clear();
        self.iovs.extend(
            frames
                .iter()
                .map(|f| libc::iovec { iov_base: f[skip..].as_ptr() as *mut libc::c_void, iov_len: f.len() - skip }),
        );
        self.msgs.clear();
        for (iov, dest) in self.iovs.iter_mut().zip(&mut self.dests) {
            let mut m: libc::mmsghdr = zeroed();
            (m.msg_hdr.msg_name, m.msg_hdr.msg_namelen) = dest.name();
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            self.msgs.push(m);
        }
        Prepared { fd, msgs: &mut self.msgs, _frames: PhantomData }
    }
}

impl Prepared<'_> {
    pub fn messages(&self) -> usize {
        self.msgs.len()
    }

    /// Sends the messages from `start` on; returns how many the kernel took.
    pub fn send_from(&mut self, start: usize) -> io::Result<usize> {
        let rest = &mut self.msgs[start..];
        // SAFETY: every header points at its iovec, frame and address, which
        // `self` keeps borrowed (see `SendBatch::prepare`).
        let n = unsafe { libc::sendmmsg(self.fd.as_raw_fd(), rest.as_mut_ptr(), rest.len() as u32, 0) };
        check(n).map(|n| n as usize)
    }
}

/// Buffers for up to `capacity` frames of at most `frame_len` bytes each,
/// with their timestamps, and the headers that point at them.
pub struct RecvBatch {
    frame_len: usize,
    bufs: Vec<u8>,
    // Only the kernel reads these two, through `msgs`: they are here to live as long.
    _control: Vec<[u64; CONTROL_WORDS]>,
    _iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

// SAFETY: the pointers in `iovs` and `msgs` point only into the batch's own
// heap buffers, which move with it and are never reallocated.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    pub fn new(capacity: usize, frame_len: usize) -> RecvBatch {
        let mut bufs = vec![0u8; capacity * frame_len];
        let mut control = vec![[0u64; CONTROL_WORDS]; capacity];
        let mut iovs: Vec<libc::iovec> = bufs
            .chunks_exact_mut(frame_len)
            .map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: frame_len })
            .collect();
        let msgs = iovs
            .iter_mut()
            .zip(&mut control)
            .map(|(iov, c)| {
                let mut m: libc::mmsghdr = zeroed();
                m.msg_hdr.msg_iov = iov;
                m.msg_hdr.msg_iovlen = 1;
                m.msg_hdr.msg_control = c.as_mut_ptr().cast();
                m
            })
            .collect();
        RecvBatch { frame_len, bufs, _control: control, _iovs: iovs, msgs }
    }

    pub fn capacity(&self) -> usize {
        self.msgs.len()
    }

    /// Reads the frames waiting on `fd`, up to a batch, without blocking, and
    /// passes each to `on_frame` with its receive time; returns how many.
    pub fn recv(&mut self, fd: BorrowedFd, on_frame: &mut dyn FnMut(&[u8], u64)) -> io::Result<usize> {
        for m in &mut self.msgs {
            // The kernel shrinks it to the bytes it used.
            m.msg_hdr.msg_controllen = size_of::<[u64; CONTROL_WORDS]>();
        }
        // SAFETY: each header points at its own iovec, frame buffer and
        // control buffer, all owned by `self` and never reallocated.
        let n = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.msgs.as_mut_ptr(),
                self.msgs.len() as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        let n = match check(n) {
            Ok(n) => n as usize,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EINTR)) => return Ok(0),
            Err(e) => return Err(e),
        };
        for (m, buf) in self.msgs[..n].iter().zip(self.bufs.chunks_exact(self.frame_len)) {
            on_frame(&buf[..(m.msg_len as usize).min(self.frame_len)], receive_time_ns(&m.msg_hdr));
        }
        Ok(n)
    }
}

/// The kernel's receive timestamp of a message, or now if it carries none.
fn receive_time_ns(hdr: &libc::msghdr) -> u64 {
    // SAFETY: hdr came back from recvmmsg with its control buffer filled in and
    // msg_controllen set to the bytes used; CMSG_* stay inside that buffer.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == SO_TIMESTAMPNS {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::timespec);
                return ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}
