//! AF_XDP transport: probes leave through an XSK TX ring, and our XDP program
//! (bpf/prtip.bpf.c) steers the replies to this scan into the XSK RX ring,
//! passing every other frame to the kernel.
//!
//! The program is attached through a BPF link: the kernel detaches it when
//! the link's last descriptor closes, so it never outlives prtip, whatever
//! way prtip ends (kill -9 included). An interface that already has an XDP
//! program refuses the link with EBUSY, and prtip leaves that program alone.
//!
//! One AF_XDP socket per receive queue of the interface, since a reply may
//! arrive on any of them; the first `--queues` of them also send, one
//! transmit thread each. Each socket has a UMEM of its own: a sending
//! socket lends up to `RX_FRAMES` to the fill ring for replies and carries
//! probes in up to `TX_FRAMES` more (fewer for a scan that can draw fewer
//! replies, see `sending_frames`); a receive-only socket lends all of its
//! `RX_ONLY_FRAMES`. The fill ring holds all of its frames at once
//! (xsk-rs produces all or nothing), so no reply is dropped for want of a
//! frame while prtip keeps up.

mod abi;

pub use abi::MAX_QUEUES;

use super::{Drops, Receive, Replies, Resent, Transmit, TransportError};
use crate::sys;
use abi::{MAX_SOURCES, ProgramConfig};
use libbpf_rs::{Link, MapCore, MapFlags, Object, ObjectBuilder};
use std::collections::VecDeque;
use std::ffi::CString;
use std::io::Write;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use xsk_rs::config::{FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem};

static PROGRAM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/prtip.bpf.o"));

// abi.rs builds alone (build.rs reads it), so it states the number itself.
const _: () = assert!(MAX_SOURCES == crate::wire::sources::MAX_SOURCES, "the XDP program holds every source address");

/// Replies a sending socket can hold before prtip reads them.
const RX_FRAMES: u32 = 16384;
/// The smallest frame AF_XDP takes; a SYN and its replies need far less.
const FRAME_SIZE: u32 = 2048;
/// Probes in flight on a sending socket.
const TX_FRAMES: u32 = 4096;
const RX_ONLY_FRAMES: u32 = 1024;
/// The fewest frames of either half of a sending socket's UMEM.
const MIN_FRAMES: u32 = 512;
const RX_BATCH: usize = 256;
// A read takes up to a batch of the ring's frames.
const _: () = assert!(MIN_FRAMES as usize >= RX_BATCH);
/// How long a sender waits for a driver that had no room for a frame.
const DRIVER_FULL_PAUSE: Duration = Duration::from_micros(20);
const KICK_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a bind waits for a queue that a closed socket still holds.
const QUEUE_RELEASE_WAIT: Duration = Duration::from_secs(1);
const QUEUE_RELEASE_POLL: Duration = Duration::from_millis(5);

/// Keeps the XDP program attached; dropping it (or dying) detaches it.
pub struct XdpAttachment {
    _link: Link,
    _object: Object,
    /// The kernel granted zero-copy (drivers with support do; veth never does).
    pub zero_copy: bool,
}

const XDP_OPTIONS: libc::c_int = 8;
const XDP_OPTIONS_ZEROCOPY: u32 = 1;

/// Whether a bound AF_XDP socket runs in zero-copy mode. Binding without a
/// mode flag lets the kernel take zero-copy where the driver offers it.
fn zero_copy(fd: BorrowedFd) -> bool {
    sys::getsockopt::<u32>(fd, SOL_XDP, XDP_OPTIONS).is_ok_and(|flags| flags & XDP_OPTIONS_ZEROCOPY != 0)
}

/// The descriptor of a socket xsk-rs owns, which offers only the raw one.
fn borrowed(fd: &impl AsRawFd) -> BorrowedFd<'_> {
    // SAFETY: `fd` owns the descriptor and stays borrowed as long as the result.
    unsafe { BorrowedFd::borrow_raw(fd.as_raw_fd()) }
}

pub struct XdpTx {
    umem: Umem,
    tx: TxQueue,
    completions: CompQueue,
    free: Vec<FrameDesc>,
    done: Vec<FrameDesc>,
    /// The TX ring's size, which is also the number of frames for probes.
    ring: u32,
    /// In zero-copy mode a kick only wakes the driver: EBUSY says nothing about a frame.
    zero_copy: bool,
    resent: Resent,
}

/// The receiving halves of every queue's socket, read by one thread.
pub struct XdpRx {
    queues: Vec<QueueRx>,
    /// The most replies seen waiting in one RX ring, as a share of its size, since `take_backlog`.
    backlog: f32,
}

struct QueueRx {
    umem: Umem,
    rx: RxQueue,
    fill: FillQueue,
    descs: Vec<FrameDesc>,
    /// The RX ring's size.
    ring: u32,
    /// Frames the kernel reported dropped so far (rx_dropped + rx_ring_full).
    lost: u64,
}

const SOL_XDP: libc::c_int = 283;
const XDP_STATISTICS: libc::c_int = 7;

fn fail(what: &'static str, e: impl std::fmt::Display) -> TransportError {
    let text = e.to_string();
    xdp_error(what, text)
}

/// An error with its causes, for the crates whose Display leaves them out.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

fn fail_chain(what: &'static str, e: &dyn std::error::Error) -> TransportError {
    xdp_error(what, chain(e))
}

fn xdp_error(what: &'static str, text: String) -> TransportError {
    if text.contains("Operation not permitted") || text.contains("EPERM") {
        return TransportError::NoPrivilege { what };
    }
    TransportError::Xdp { what, why: text }
}

/// How an XDP program is attached to an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    /// In the driver: the fast path.
    Native,
    /// In the kernel's generic hook, after the driver allocated an skb: slower.
    Generic,
    Offloaded,
    /// Several programs at once.
    Multi,
}

/// What the kernel reports about XDP on an interface (netlink; kernel 6.3 or
/// later reports the driver's features).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XdpSupport {
    /// The program already attached, if any: its id and mode.
    pub attached: Option<(u32, AttachMode)>,
    /// The driver runs XDP programs itself (otherwise only the generic hook).
    pub native: bool,
    /// The driver offers AF_XDP zero-copy.
    pub zero_copy: bool,
}

const NETDEV_XDP_ACT_BASIC: u64 = 1;
const NETDEV_XDP_ACT_XSK_ZEROCOPY: u64 = 1 << 3;

pub fn support(ifindex: u32) -> Result<XdpSupport, TransportError> {
    let mut opts = libbpf_rs::libbpf_sys::bpf_xdp_query_opts {
        sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_xdp_query_opts>() as _,
        ..Default::default()
    };
    // SAFETY: opts is a valid, sized bpf_xdp_query_opts that the call fills in.
    let rc = unsafe { libbpf_rs::libbpf_sys::bpf_xdp_query(ifindex as i32, 0, &mut opts) };
    if rc != 0 {
        return Err(xdp_error("querying the interface", std::io::Error::from_raw_os_error(-rc).to_string()));
    }
    let mode = match opts.attach_mode as u32 {
        libbpf_rs::libbpf_sys::XDP_ATTACHED_DRV => Some(AttachMode::Native),
        libbpf_rs::libbpf_sys::XDP_ATTACHED_SKB => Some(AttachMode::Generic),
        libbpf_rs::libbpf_sys::XDP_ATTACHED_HW => Some(AttachMode::Offloaded),
        libbpf_rs::libbpf_sys::XDP_ATTACHED_MULTI => Some(AttachMode::Multi),
        _ => None,
    };
    let id = [opts.prog_id, opts.drv_prog_id, opts.skb_prog_id, opts.hw_prog_id].into_iter().find(|&id| id != 0);
    Ok(XdpSupport {
        attached: mode.map(|m| (id.unwrap_or(0), m)),
        native: opts.feature_flags & NETDEV_XDP_ACT_BASIC != 0,
        zero_copy: opts.feature_flags & NETDEV_XDP_ACT_XSK_ZEROCOPY != 0,
    })
}

/// How many receive and transmit queues an interface has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queues {
    pub rx: u32,
    pub tx: u32,
}

/// Loads and attaches the XDP program on `ifindex` and binds an AF_XDP socket
/// to every one of the interface's `queues.rx` receive queues, so that
/// replies to the scan's addresses and ports come to prtip whichever queue they
/// arrive on; the first `tx_queues` sockets also send. With `segments`,
/// every TCP segment with its ACK bit set to the scan's ports comes to
/// prtip: it holds those connections itself (banners over AF_XDP).
pub fn open(
    ifname: &str,
    ifindex: u32,
    queues: Queues,
    replies: Replies,
    draw: Draw,
    tx_queues: u32,
    resent: &Resent,
) -> Result<(Vec<XdpTx>, XdpRx, XdpAttachment), TransportError> {
    let Queues { rx: rx_count, tx: tx_count } = queues;
    // A reply hashed to a queue without a socket would go to the kernel, which answers it with an RST.
    if rx_count > MAX_QUEUES {
        return Err(xdp_error(
            "counting queues",
            format!("{ifname} has {rx_count} receive queues; prtip's XDP program serves at most {MAX_QUEUES}"),
        ));
    }
    if tx_queues == 0 || tx_queues > rx_count.min(tx_count) {
        return Err(xdp_error(
            "choosing queues",
            format!(
                "{ifname} has {rx_count} receive and {tx_count} transmit queues: --queues must be 1 to {}",
                rx_count.min(tx_count)
            ),
        ));
    }
    // Failures are reported once, as prtip's own one-line errors.
    libbpf_rs::set_print(None);
    // The sockets' UMEMs (filled page by page) and binds take as long as the
    // program's load and attachment (two RCU grace periods on a veth): done
    // side by side, a scan starts some 20 ms sooner. Binding a socket does
    // not touch another program that may own the interface; if one does, the
    // attachment's error is the one reported, and the sockets are closed.
    // Binds the queues not bound yet, in order, up to the first that fails.
    let open_rest = |sockets: &mut Vec<OpenedQueue>| -> Result<(), QueueError> {
        for queue in sockets.len() as u32..rx_count {
            sockets.push(open_queue(ifname, queue, queue < tx_queues, draw, resent)?);
        }
        Ok(())
    };
    let (attached, sockets) = std::thread::scope(|s| {
        let sockets = s.spawn(|| {
            let mut sockets = Vec::new();
            let bound = open_rest(&mut sockets);
            (sockets, bound)
        });
        let attached = load_and_attach(ifname, ifindex, program_config(replies, draw == Draw::Segments));
        (attached, sockets.join())
    });
    let (object, link) = attached?;
    let (mut sockets, mut bound) =
        sockets.map_err(|_| fail("binding the AF_XDP sockets", "the thread binding them panicked"))?;
    // The program is ours, so no other scan has this interface: a queue
    // held is one a socket closed a moment ago still holds (the kernel lets
    // go of it in a work item after the socket's last reference goes). The
    // queues already bound stay bound: closed, they too would be held.
    let since = Instant::now();
    loop {
        match bound {
            Ok(()) => break,
            Err(QueueError::Held(queue)) if since.elapsed() < QUEUE_RELEASE_WAIT => {
                tracing::debug!(ifname, queue, "queue still held, binding again");
                std::thread::sleep(QUEUE_RELEASE_POLL);
                bound = open_rest(&mut sockets);
            }
            Err(QueueError::Held(queue)) => {
                return Err(fail(
                    "binding the AF_XDP socket",
                    format!("queue {queue} of {ifname} is held by another AF_XDP socket"),
                ));
            }
            Err(QueueError::Failed(e)) => return Err(e),
        }
    }
    let map = |name: &str| object.maps().find(|m| m.name() == name);
    let xsks = map("prtip_xsks").ok_or_else(|| fail("configuring the XDP program", "no prtip_xsks map"))?;
    let mut txs = Vec::new();
    let mut rxs = Vec::new();
    let mut zero_copy = true;
    for (queue, (tx, rx, fd)) in (0..rx_count).zip(sockets) {
        // Until a queue's socket is in the map, the redirect falls back to
        // XDP_PASS; no probe has left yet.
        xsks.update(&queue.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
            .map_err(|e| fail("registering the AF_XDP socket", e))?;
        let queue_zero_copy = self::zero_copy(borrowed(rx.rx.fd()));
        zero_copy &= queue_zero_copy;
        txs.extend(tx.map(|tx| XdpTx { zero_copy: queue_zero_copy, ..tx }));
        rxs.push(rx);
    }
    tracing::info!(
        ifname,
        ifindex,
        rx_queues = rx_count,
        tx_queues,
        zero_copy,
        "XDP program attached, AF_XDP sockets bound"
    );
    Ok((txs, XdpRx { queues: rxs, backlog: 0.0 }, XdpAttachment { _link: link, _object: object, zero_copy }))
}

/// Loads the program, configures it and attaches it through a BPF link. An
/// interface that already has a program refuses with EBUSY.
fn load_and_attach(ifname: &str, ifindex: u32, config: ConfigBytes) -> Result<(Object, Link), TransportError> {
    let object = ObjectBuilder::default()
        .open_memory(PROGRAM)
        .and_then(|o| o.load())
        .map_err(|e| fail_chain("loading the XDP program", &e))?;
    object
        .maps()
        .find(|m| m.name() == "prtip_config")
        .ok_or_else(|| fail("configuring the XDP program", "no prtip_config map"))?
        .update(&0u32.to_ne_bytes(), &config, MapFlags::ANY)
        .map_err(|e| fail("configuring the XDP program", e))?;
    let link = object
        .progs_mut()
        .find(|p| p.name() == "prtip_steer")
        .ok_or_else(|| fail("attaching the XDP program", "no prtip_steer program"))?
        .attach_xdp(ifindex as i32)
        .map_err(|e| {
            let text = chain(&e);
            if text.contains("busy") {
                TransportError::XdpBusy { ifname: ifname.to_string() }
            } else {
                xdp_error("attaching the XDP program", text)
            }
        })?;
    Ok((object, link))
}

/// A `ProgramConfig` as the map takes it.
type ConfigBytes = [u8; size_of::<ProgramConfig>()];

/// The program's parameters: the scan's addresses in the array of their
/// family, the rest left zero, the family that says which is in use, and
/// the probes' protocol.
fn program_config(Replies { to, ports: (port_lo, port_hi), protocol }: Replies, segments: bool) -> ConfigBytes {
    let (mut src_ip, mut src_ip6) = ([[0; 4]; MAX_SOURCES], [[0; 16]; MAX_SOURCES]);
    for (i, addr) in to.as_slice().iter().enumerate() {
        match addr {
            IpAddr::V4(ip) => src_ip[i] = ip.octets(),
            IpAddr::V6(ip) => src_ip6[i] = ip.octets(),
        }
    }
    let family = if to.is_ipv4() { 4 } else { 6 };
    let sources = to.count() as u8;
    let config =
        ProgramConfig { src_ip, port_lo, port_hi, src_ip6, family, protocol, sources, segments: u8::from(segments) };
    // SAFETY: ProgramConfig has no padding (abi.rs asserts it), so each of its bytes is initialised.
    unsafe { std::mem::transmute::<ProgramConfig, ConfigBytes>(config) }
}

/// What a scan can draw into its sockets, which bounds what their rings
/// need to hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Draw {
    /// Replies to probes: at most this many over the whole scan, every try
    /// of every probe answered once.
    Replies(u64),
    /// Every segment of the connections prtip holds itself (banners over
    /// AF_XDP): as many as the peers send.
    Segments,
}

/// A sending socket's frames for replies and for probes. A scan that can
/// draw fewer replies than `RX_FRAMES` gets a ring that holds all of them
/// at once, and as many frames for its probes, at most `TX_FRAMES`: the
/// kernel zeroes and describes every frame of a UMEM before the socket is
/// bound (40 MiB, the larger part of AF_XDP's start), and a small scan
/// would never use most of them. Ring sizes are powers of two.
fn sending_frames(draw: Draw) -> (u32, u32) {
    match draw {
        Draw::Segments => (RX_FRAMES, TX_FRAMES),
        Draw::Replies(n) => {
            let fit = |most: u32| u32::try_from(n).unwrap_or(u32::MAX).clamp(MIN_FRAMES, most).next_power_of_two();
            (fit(RX_FRAMES), fit(TX_FRAMES))
        }
    }
}

type OpenedQueue = (Option<XdpTx>, QueueRx, std::os::fd::RawFd);

/// Why a queue's socket was not bound.
enum QueueError {
    /// Another socket holds the queue (EBUSY).
    Held(u32),
    Failed(TransportError),
}

impl From<TransportError> for QueueError {
    fn from(e: TransportError) -> Self {
        QueueError::Failed(e)
    }
}

/// Binds a socket with a UMEM of its own to `queue`; with `send`, part of
/// its frames carry probes. Returns its halves and its descriptor. A UMEM
/// whose bind failed is not bound again (libxdp makes a UMEM's first
/// socket of the UMEM's own descriptor), so a try after `Held` opens anew.
fn open_queue(ifname: &str, queue: u32, send: bool, draw: Draw, resent: &Resent) -> Result<OpenedQueue, QueueError> {
    // A receive-only socket never sends: its TX and completion rings stay small.
    let (rx_frames, tx_ring) = if send { sending_frames(draw) } else { (RX_ONLY_FRAMES, 64) };
    let frames = if send { rx_frames + tx_ring } else { rx_frames };
    let size = |n: u32| QueueSize::new(n).map_err(|e| fail("sizing the AF_XDP rings", e));
    let umem_config = UmemConfig::builder()
        .frame_size(FrameSize::new(FRAME_SIZE).map_err(|e| fail("sizing the UMEM frames", e))?)
        .fill_queue_size(size(rx_frames)?)
        .comp_queue_size(size(tx_ring)?)
        .build()
        .map_err(|e| fail("configuring the UMEM", e))?;
    let (umem, descs) = Umem::new(umem_config, frames.try_into().expect("non-zero"), false)
        .map_err(|e| fail_chain("creating the AF_XDP UMEM", &e))?;
    let socket_config = SocketConfig::builder()
        .rx_queue_size(size(rx_frames)?)
        .tx_queue_size(size(tx_ring)?)
        // Our own program steers; libxdp must not load its default one.
        .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
        .build();
    let name = CString::new(ifname).map_err(|e| fail("naming the interface", e))?;
    // SAFETY: the UMEM is not shared with another socket on this interface and queue.
    let (tx, rx, rings) = match unsafe { Socket::new(socket_config, &umem, &Interface::new(name), queue) } {
        Ok(socket) => socket,
        Err(e) if os_error(&e) == Some(libc::EBUSY) => return Err(QueueError::Held(queue)),
        Err(e) => return Err(fail_chain("binding the AF_XDP socket", &e).into()),
    };
    let (mut fill, completions) = rings.ok_or_else(|| fail("binding the AF_XDP socket", "no fill ring"))?;
    let fd = tx.fd().as_raw_fd();
    let (rx_descs, tx_descs) = descs.split_at(rx_frames as usize);
    // SAFETY: these frames belong to this UMEM and are in no other ring.
    if unsafe { fill.produce(rx_descs) } != rx_descs.len() {
        return Err(fail("priming the fill ring", "the ring took fewer frames than it holds").into());
    }
    let sender = send.then(|| XdpTx {
        umem: umem.clone(),
        tx,
        completions,
        free: tx_descs.to_vec(),
        done: tx_descs.to_vec(),
        ring: tx_ring,
        zero_copy: false,
        resent: resent.clone(),
    });
    Ok((sender, QueueRx { umem, rx, fill, descs: rx_descs[..RX_BATCH].to_vec(), ring: rx_frames, lost: 0 }, fd))
}

/// The system error behind a crate's error, where it has one.
fn os_error(e: &dyn std::error::Error) -> Option<i32> {
    e.source()?.downcast_ref::<std::io::Error>()?.raw_os_error()
}

impl XdpTx {
    /// Takes back the frames the kernel has finished sending (or dropped).
    fn reap(&mut self) {
        // SAFETY: completed frames belong to this UMEM's TX half.
        let n = unsafe { self.completions.consume(&mut self.done) };
        self.free.extend_from_slice(&self.done[..n]);
    }

    /// Writes the frames `order` names into free UMEM frames and puts them
    /// on the TX ring; returns how many of them went.
    fn produce(&mut self, frames: &[&[u8]], order: &[usize]) -> Result<usize, TransportError> {
        let n = order.len().min(self.free.len());
        if n == 0 {
            return Ok(0);
        }
        let start = self.free.len() - n;
        for (desc, &i) in self.free[start..].iter_mut().zip(order) {
            // SAFETY: the frame is free: in no ring, and owned by this UMEM.
            let mut data = unsafe { self.umem.data_mut(desc) };
            let mut cursor = data.cursor();
            // Completions reset a descriptor's length: write it anew each time.
            cursor.set_pos(0);
            cursor.write_all(frames[i]).map_err(|e| TransportError::Io { what: "writing a probe frame", source: e })?;
        }
        // SAFETY: the descriptors are free frames of this UMEM, written above.
        let produced = unsafe { self.tx.produce(&self.free[start..]) };
        if produced != n {
            return Ok(0);
        }
        self.free.truncate(start);
        Ok(n)
    }

    /// Frames still on the TX ring, not yet taken by the kernel.
    fn in_ring(&mut self) -> usize {
        self.ring.saturating_sub(self.tx.nb_free_exact()) as usize
    }
}

/// After a copy-mode kick, of the frames on the ring not known taken before
/// it, of which the kernel published `published` as taken: how many it took,
/// and the position of the one the driver dropped if the kick said so (see
/// `XdpTx::transmit`).
fn after_kick(dropped_one: bool, published: usize) -> (usize, Option<usize>) {
    match (dropped_one, published) {
        (false, p) => (p, None),
        (true, 0) => (1, Some(0)),
        (true, p) => (p, Some(p - 1)),
    }
}

impl Transmit for XdpTx {
    /// Puts the frames on the TX ring and has the kernel take every one of
    /// them: in copy mode a kick sends at most 32 frames, and a frame left in
    /// the ring is never sent. In copy mode the kernel sends each frame
    /// through the driver as it takes it; when the driver drops one (a veth
    /// whose peer's ring is full) the kick fails with EBUSY and stops there.
    /// That frame is sent again after a pause, as the raw transport does on
    /// ENOBUFS, so no probe is lost.
    ///
    /// Which frame it was: the kernel takes frames in ring order, but
    /// publishes how far it got only at the end of a kick that sent one. So
    /// an EBUSY kick whose published position moved sent frames and then
    /// dropped the last one it took; one whose position did not move sent
    /// nothing and dropped the first frame it took, the one after those
    /// known taken. A kick that returns anything else dropped nothing.
    fn transmit(&mut self, frames: &[&[u8]]) -> Result<usize, TransportError> {
        // Frames to put on the ring, and those on it not known taken, in ring order.
        let mut todo: VecDeque<usize> = (0..frames.len()).collect();
        let mut on_ring: VecDeque<usize> = VecDeque::new();
        let mut progress = Instant::now();
        while !todo.is_empty() || !on_ring.is_empty() {
            self.reap();
            let n = self.produce(frames, todo.make_contiguous())?;
            on_ring.extend(todo.drain(..n));
            let dropped_one = match sys::wake_tx(borrowed(self.tx.fd())) {
                Ok(()) => false,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => !self.zero_copy,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::ENOBUFS | libc::ENETDOWN)) => false,
                Err(e) => return Err(TransportError::Io { what: "sending probes through AF_XDP", source: e }),
            };
            let published = on_ring.len() - self.in_ring().min(on_ring.len());
            let (taken, dropped) = after_kick(dropped_one, published);
            let dropped = dropped.and_then(|at| on_ring.get(at).copied());
            on_ring.drain(..taken.min(on_ring.len()));
            if taken > usize::from(dropped.is_some()) {
                progress = Instant::now();
            }
            if let Some(i) = dropped {
                self.resent.add(1);
                todo.push_front(i);
                // The driver's queue is full: let it drain rather than drop the next frame too.
                std::thread::sleep(DRIVER_FULL_PAUSE);
            }
            // A link that is down takes nothing (the kick reports no error for it).
            if progress.elapsed() > KICK_TIMEOUT {
                return Err(TransportError::Xdp {
                    what: "sending probes",
                    why: "the interface takes no frames (is it down?)".into(),
                });
            }
        }
        Ok(frames.len())
    }
}

impl QueueRx {
    /// Hands every frame waiting in the RX ring to `on_frame` and refills.
    fn drain(&mut self, n: usize, on_frame: &mut dyn FnMut(&[u8], u64)) {
        if n == 0 {
            return;
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        for desc in &self.descs[..n] {
            // SAFETY: the kernel handed this frame to us and it is in no ring until refilled.
            let data = unsafe { self.umem.data(desc) };
            on_frame(data.contents(), now);
        }
        // SAFETY: the frames just read go back to the fill ring, which has room for all of them.
        while unsafe { self.fill.produce(&self.descs[..n]) } != n {
            std::thread::yield_now();
        }
    }

    fn take_drops(&mut self) -> u64 {
        // struct xdp_statistics: rx_dropped, rx_invalid_descs, tx_invalid_descs,
        // rx_ring_full, rx_fill_ring_empty_descs, tx_ring_empty_descs.
        let Ok(stats) = sys::getsockopt::<[u64; 6]>(borrowed(self.rx.fd()), SOL_XDP, XDP_STATISTICS) else {
            return 0;
        };
        // The kernel's counters only grow; report what is new since the last call.
        let lost = stats[0] + stats[3];
        let new = lost.saturating_sub(self.lost);
        self.lost = lost;
        new
    }
}

/// How long the receive side sleeps when every RX ring is empty: short, since
/// a reply's arrival time is taken when it is read.
const RX_IDLE: Duration = Duration::from_micros(50);

impl Receive for XdpRx {
    /// Reads the RX rings without a system call, sleeping `RX_IDLE` while they
    /// are empty. Not `poll`: in copy mode `xsk_poll` also drives the socket's
    /// transmission under the socket's mutex, so the receive thread would wait
    /// for the transmit thread's sends while replies pile up in its ring
    /// (perf showed it spinning on that mutex, replies dropped).
    fn receive(&mut self, timeout: Duration, on_frame: &mut dyn FnMut(&[u8], u64)) -> Result<bool, TransportError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let (mut got, mut full) = (0, false);
            for q in &mut self.queues {
                // SAFETY: `descs` receive frames of this UMEM, returned to the fill ring by drain.
                let n = unsafe { q.rx.consume(&mut q.descs) };
                q.drain(n, on_frame);
                got += n;
                if n == RX_BATCH {
                    // A full batch: more may be waiting. Reads the producer's position, no system call.
                    self.backlog = self.backlog.max(q.rx.nb_avail_exact() as f32 / q.ring as f32);
                    full = true;
                }
            }
            // A ring that gave less than a batch was empty at that moment.
            if got > 0 || std::time::Instant::now() >= deadline {
                return Ok(!full);
            }
            std::thread::sleep(RX_IDLE);
        }
    }

    fn take_drops(&mut self) -> Drops {
        Drops { replies: self.queues.iter_mut().map(QueueRx::take_drops).sum(), probes: 0 }
    }

    fn take_backlog(&mut self) -> f32 {
        std::mem::take(&mut self.backlog)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::sources::Sources;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn a_scan_that_draws_few_replies_gets_rings_that_hold_them_all_and_no_more() {
        // A single host's 1,000 ports, tried twice.
        assert_eq!(sending_frames(Draw::Replies(2_000)), (2048, 2048));
        assert_eq!(sending_frames(Draw::Replies(0)), (MIN_FRAMES, MIN_FRAMES));
        assert_eq!(sending_frames(Draw::Replies(1)), (512, 512));
        assert_eq!(sending_frames(Draw::Replies(4096)), (4096, 4096));
        assert_eq!(sending_frames(Draw::Replies(4097)), (8192, TX_FRAMES));
        assert_eq!(sending_frames(Draw::Replies(16_384)), (RX_FRAMES, TX_FRAMES));
        // A /16 on one port, tried twice, and a sweep past u32.
        assert_eq!(sending_frames(Draw::Replies(131_072)), (RX_FRAMES, TX_FRAMES));
        assert_eq!(sending_frames(Draw::Replies(u64::MAX)), (RX_FRAMES, TX_FRAMES));
        assert_eq!(sending_frames(Draw::Segments), (RX_FRAMES, TX_FRAMES));
    }

    /// The kernel's side of copy-mode kicks (net/xdp/xsk.c, __xsk_generic_xmit):
    /// frames taken in ring order, the position published at the end of a
    /// kick that sent one (and at its start when it had read every frame it
    /// knew of), EBUSY when the driver dropped the last one taken.
    struct Kernel {
        taken: usize,
        published: usize,
    }

    impl Kernel {
        /// Takes `sent` frames the driver sends and then, with `drop`, one it drops.
        fn kick(&mut self, refresh: bool, sent: usize, drop: bool) -> bool {
            if refresh {
                self.published = self.taken;
            }
            self.taken += sent + usize::from(drop);
            if sent > 0 {
                self.published = self.taken;
            }
            drop
        }
    }

    #[test]
    fn the_frame_a_kick_dropped_is_found_whatever_the_kick_sent() {
        // (published first?, frames sent, then one dropped?) per kick, over a ring of frames 0, 1, 2, ...
        let kicks = [
            (true, 3, true),
            (false, 0, true),
            (true, 0, true),
            (false, 2, false),
            (false, 0, true),
            (true, 4, true),
            (false, 5, false),
            (true, 1, true),
            (false, 0, false),
            (true, 0, true),
        ];
        let mut kernel = Kernel { taken: 0, published: 0 };
        let mut known = 0;
        let mut found = Vec::new();
        let mut dropped = Vec::new();
        for (refresh, sent, drop) in kicks {
            if drop {
                dropped.push(kernel.taken + sent);
            }
            let busy = kernel.kick(refresh, sent, drop);
            let (taken, at) = after_kick(busy, kernel.published.saturating_sub(known));
            found.extend(at.map(|at| known + at));
            known += taken;
        }
        assert_eq!(found, dropped);
        assert_eq!(known, kernel.taken);
    }

    #[test]
    fn program_config_fills_the_array_of_the_family_in_use() {
        let two = [Ipv4Addr::new(10, 200, 0, 1), Ipv4Addr::new(10, 200, 0, 9)].map(IpAddr::V4);
        let to = Sources::new(&two).unwrap();
        let v4 = program_config(Replies { to, ports: (61000, 61063), protocol: 6 }, false);
        // 16 IPv4 addresses, the ports, 16 IPv6 addresses, then family, protocol, count and the segments flag.
        let mut expected = [0u8; 328];
        expected[..4].copy_from_slice(&[10, 200, 0, 1]);
        expected[4..8].copy_from_slice(&[10, 200, 0, 9]);
        expected[64..66].copy_from_slice(&61000u16.to_ne_bytes());
        expected[66..68].copy_from_slice(&61063u16.to_ne_bytes());
        expected[324..327].copy_from_slice(&[4, 6, 2]);
        assert_eq!(v4, expected);

        let ip6: Ipv6Addr = "fd00:200::1".parse().unwrap();
        let to = Sources::one(IpAddr::V6(ip6));
        let v6 = program_config(Replies { to, ports: (61000, 61063), protocol: 17 }, true);
        expected[..8].fill(0);
        expected[68..84].copy_from_slice(&ip6.octets());
        expected[324..328].copy_from_slice(&[6, 17, 1, 1]);
        assert_eq!(v6, expected);
    }
}
