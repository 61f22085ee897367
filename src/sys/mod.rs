//! Every system call prtip makes itself, and with them its `unsafe`: the
//! rest of the crate denies `unsafe_code`, except `transport::xdp`, whose
//! rings xsk-rs only offers through unsafe calls. Each function here is safe
//! whatever its arguments; the `SAFETY:` comment on each block says why.

pub mod connect;
mod mmsg;
pub mod stream;

pub use mmsg::{RecvBatch, SO_TIMESTAMPNS, SendBatch, SockAddr};

use std::ffi::CStr;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

/// Plain data: valid all-zero and for whatever bytes the kernel writes into it.
///
/// # Safety
///
/// Only for C structs of integers, arrays of them and raw pointers.
pub unsafe trait Plain: Sized {}

// SAFETY: each is a C struct (or union) of integers, integer arrays and raw pointers, or an integer array.
unsafe impl Plain for libc::sockaddr_ll {}
// SAFETY: as above.
unsafe impl Plain for libc::sockaddr_in {}
// SAFETY: as above.
unsafe impl Plain for libc::sockaddr_in6 {}
// SAFETY: as above.
unsafe impl Plain for libc::sockaddr_nl {}
// SAFETY: as above.
unsafe impl Plain for libc::mmsghdr {}
// SAFETY: as above.
unsafe impl Plain for libc::tpacket_stats {}
// SAFETY: as above.
unsafe impl Plain for libc::ifreq {}
// SAFETY: as above.
unsafe impl Plain for libc::utsname {}
// SAFETY: as above.
unsafe impl Plain for u32 {}
// SAFETY: as above.
unsafe impl<const N: usize> Plain for [u64; N] {}

/// A value of `T` with every byte zero.
pub fn zeroed<T: Plain>() -> T {
    // SAFETY: all-zero is a valid `T` (`Plain`).
    unsafe { std::mem::zeroed() }
}

/// The result of a call that returns -1 and sets errno on failure.
fn check<T: Default + PartialOrd>(rc: T) -> io::Result<T> {
    if rc < T::default() { Err(io::Error::last_os_error()) } else { Ok(rc) }
}

/// A socket, closed on exec and when dropped.
pub fn socket(domain: libc::c_int, kind: libc::c_int, protocol: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes any arguments and touches no memory of ours.
    let fd = check(unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, protocol) })?;
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The address of interface `ifindex` for packet sockets, for frames of
/// `ethertype` (0: none received).
pub fn link_address(ifindex: u32, ethertype: u16) -> libc::sockaddr_ll {
    let mut sa: libc::sockaddr_ll = zeroed();
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_protocol = ethertype.to_be();
    sa.sll_ifindex = ifindex as i32;
    sa
}

/// Binds a socket to an address of type `A` (a `sockaddr_*`).
pub fn bind<A: Plain>(fd: BorrowedFd, addr: &A) -> io::Result<()> {
    // SAFETY: addr is a valid A of the length given; the kernel only reads it.
    check(unsafe { libc::bind(fd.as_raw_fd(), (addr as *const A).cast(), size_of::<A>() as u32) })?;
    Ok(())
}

/// Sets a socket option to `value`. The kernel only reads `value`; the
/// pointers some options carry (a filter program) it reads with checked
/// copies, which fail with EFAULT rather than touch memory unchecked.
pub fn setsockopt<T>(fd: BorrowedFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: value is a valid T of the length given, and the kernel only reads it.
    check(unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, (value as *const T).cast(), size_of::<T>() as u32) })?;
    Ok(())
}

/// Reads a socket option; bytes the kernel leaves out stay zero.
pub fn getsockopt<T: Plain>(fd: BorrowedFd, level: libc::c_int, name: libc::c_int) -> io::Result<T> {
    let mut value: T = zeroed();
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: value is valid for writing len bytes, and any bytes make a valid T (`Plain`).
    check(unsafe { libc::getsockopt(fd.as_raw_fd(), level, name, (&mut value as *mut T).cast(), &mut len) })?;
    Ok(value)
}

/// Sends one datagram on a bound or connected socket.
pub fn send(fd: BorrowedFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for reading its length.
    check(unsafe { libc::send(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), 0) }).map(|n| n as usize)
}

/// Has the kernel send what an AF_XDP socket's TX ring holds. Without
/// MSG_DONTWAIT a copy-mode socket refuses (EOPNOTSUPP).
pub fn wake_tx(fd: BorrowedFd) -> io::Result<()> {
    // SAFETY: an empty send reads no memory.
    check(unsafe { libc::send(fd.as_raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT) }).map(|_| ())
}

/// Sends one datagram to `addr` (a `sockaddr_*`).
pub fn send_to<A: Plain>(fd: BorrowedFd, buf: &[u8], addr: &A) -> io::Result<usize> {
    // SAFETY: buf and addr are valid for reading the lengths given.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            0,
            (addr as *const A).cast(),
            size_of::<A>() as u32,
        )
    };
    check(n).map(|n| n as usize)
}

/// Receives one datagram into `buf`; returns its length (truncated to `buf`).
pub fn recv(fd: BorrowedFd, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: buf is valid for writing its length.
    check(unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags) }).map(|n| n as usize)
}

/// Waits up to `timeout_ms` for `fd` to become readable; false on timeout.
pub fn wait_readable(fd: BorrowedFd, timeout_ms: libc::c_int) -> io::Result<bool> {
    let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    check(unsafe { libc::poll(&mut pfd, 1, timeout_ms) }).map(|n| n > 0)
}

/// The index of the interface named `name`, or None if there is none.
pub fn interface_index(name: &CStr) -> Option<u32> {
    // SAFETY: name is a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (i != 0).then_some(i)
}

/// The name of interface `index`, or None if there is none.
pub fn interface_name(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf holds IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success buf holds a NUL-terminated name.
    Some(unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned())
}

/// The link type (`ARPHRD_*`) and hardware address of interface `name`.
pub fn hardware_address(name: &str) -> io::Result<(u16, [u8; 6])> {
    let fd = socket(libc::AF_INET, libc::SOCK_DGRAM, 0)?;
    let mut req: libc::ifreq = zeroed();
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes().take(libc::IF_NAMESIZE - 1)) {
        *dst = src as libc::c_char;
    }
    // SAFETY: req is a valid ifreq naming the interface, NUL-terminated.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) })?;
    // SAFETY: SIOCGIFHWADDR filled the hardware-address member of the union.
    let addr = unsafe { req.ifr_ifru.ifru_hwaddr };
    Ok((addr.sa_family, std::array::from_fn(|i| addr.sa_data[i] as u8)))
}

/// Fills `buf` from the kernel's random pool. Without flags getrandom(2)
/// blocks only before the pool is initialised at boot, and a request of up
/// to 256 bytes is never cut short.
pub fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    // SAFETY: buf is valid for writing its length.
    let n = check(unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) })?;
    if n as usize != buf.len() {
        return Err(io::Error::other("getrandom(2) returned fewer bytes than asked for"));
    }
    Ok(())
}

/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> io::Result<String> {
    let mut u: libc::utsname = zeroed();
    // SAFETY: u is valid for writing.
    check(unsafe { libc::uname(&mut u) })?;
    // SAFETY: on success release is NUL-terminated within its array.
    Ok(unsafe { CStr::from_ptr(u.release.as_ptr()) }.to_string_lossy().into_owned())
}

/// Has this thread's timers fire on time rather than up to 50 µs late,
/// which at a million packets per second is a burst.
pub fn reduce_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK only changes this thread's timer rounding and reads no memory.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
}

/// Adds one to `count` each time the process receives `signal`.
pub fn count_signal(signal: libc::c_int, count: &'static AtomicU32) -> io::Result<()> {
    // SAFETY: the handler only increments an atomic counter, which is async-signal-safe.
    unsafe { signal_hook::low_level::register(signal, || _ = count.fetch_add(1, Ordering::Relaxed)) }?;
    Ok(())
}

/// Takes an exclusive lock on the open file `fd` without waiting: false
/// if another process holds it. The kernel drops it when its holder dies.
pub fn try_lock_exclusive(fd: BorrowedFd) -> io::Result<bool> {
    // SAFETY: flock on a descriptor the caller keeps open; it reads no memory.
    if unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) { Ok(false) } else { Err(e) }
}

/// Makes the descriptor's reads and writes wait again (clears `O_NONBLOCK`).
pub fn set_blocking(fd: BorrowedFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor the caller keeps open; it reads no memory.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The user this process acts as.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}
