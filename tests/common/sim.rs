//! A simulated Internet behind the transport traits, for benches/sim.rs and
//! tests/sim.rs: it answers the engine's SYNs at CPU speed and knows the
//! truth, so that a sweep of any size is checked exactly. Not a transport a
//! user can choose; IPv4 only.
//!
//! The fate of each (address, port) is a pure keyed hash of the pair: 2%
//! open (SYN-ACK), 30% closed (RST), 1% unreachable (ICMP administratively
//! prohibited, quoting the SYN), the rest silent; a round trip from 1 ms to
//! 1 s, evenly spread on a log scale; 1% of replies come twice, and 0.5%
//! come just after the scan's wait. Every try of a probe meets the same
//! fate. A reply waits as a 32-byte record in a ring of slots, one per
//! millisecond of the longest round trip, and becomes a frame only when
//! delivered, so the simulator holds what is in flight, never the scan.

use etherparse::{
    EtherType, Ethernet2Header, Ethernet2HeaderSlice, Icmpv4Header, Icmpv4Type, IpNumber, Ipv4Header, Ipv4HeaderSlice,
    TcpHeader, TcpHeaderSlice, TcpOptionElement, icmpv4::DestUnreachableHeader,
};
use prtip::engine::plan::ScanPlan;
use prtip::engine::run::{Observer, ScanStats, StopSignal, Wire, run};
use prtip::engine::time::SystemClocks;
use prtip::probe::{ScanType, Templates};
use prtip::result::{PortState, Reason, ScanResult};
use prtip::target::space::TargetSpace;
use prtip::transport::{Drops, Receive, Transmit, TransportError};
use prtip::wire::cookie::CookieKey;
use prtip::wire::sources::Sources;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Shares of the pairs, per 10,000.
const OPEN: u64 = 200;
const CLOSED: u64 = 3000;
const UNREACHABLE: u64 = 100;
/// Shares of the answering pairs, per 1,000.
const LATE: u64 = 5;
const COPIED: u64 = 10;
const MIN_RTT: Duration = Duration::from_millis(1);
const MAX_RTT: Duration = Duration::from_millis(1000);
/// How long after the scan's wait a late reply comes: 1 to 5 ms, while the
/// probe's retry (sent a wait after its first try at the latest) still holds
/// it in the send window, so that the reply is still its answer. The
/// retry's own late reply comes after the probe left: late, not a result.
const LATE_FROM_US: u64 = 1_000;
const LATE_SPREAD_US: u64 = 4_000;
/// A copy comes up to this long after the reply it repeats.
const COPY_WITHIN_US: u64 = 100_000;
/// At most this many frames are handed over per `receive` call, as a
/// socket's batch would be.
const RX_BATCH: usize = 4096;
/// How far behind its replies the receiving half may fall before the
/// sending half waits for it, as a receive ring of some thousands of frames
/// would allow. Without a bound, a receiver slower than the replies would
/// leave them piling up in the ring: memory growing with the scan.
const RX_LAG: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Open,
    Closed,
    Unreachable,
}

/// What becomes of every probe to one (address, port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fate {
    answer: Option<Answer>,
    /// Past the scan's wait when `late`.
    rtt_us: u64,
    late: bool,
    /// When a copy of the reply follows, how long after it.
    copy_after_us: Option<u64>,
}

/// splitmix64's finalizer: a bijection of u64 whose every output bit depends on every input bit.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The fate of `addr:port` in the Internet keyed `key`, for a scan waiting `wait`.
fn fate(key: u64, wait: Duration, addr: Ipv4Addr, port: u16) -> Fate {
    let h = mix(key ^ mix((u64::from(u32::from(addr)) << 16) | u64::from(port)));
    let answer = match h % 10_000 {
        n if n < OPEN => Some(Answer::Open),
        n if n < OPEN + CLOSED => Some(Answer::Closed),
        n if n < OPEN + CLOSED + UNREACHABLE => Some(Answer::Unreachable),
        _ => None,
    };
    // Further draws from the same pair, independent of the first.
    let (timing, delays) = (mix(h), mix(h ^ 1));
    let share = timing % 1000;
    let late = answer.is_some() && share < LATE;
    let rtt_us = if late {
        wait.as_micros() as u64 + LATE_FROM_US + delays % LATE_SPREAD_US
    } else {
        let (min, max) = (MIN_RTT.as_secs_f64(), MAX_RTT.as_secs_f64());
        let u = (timing >> 32) as f64 / (1u64 << 32) as f64;
        (min * (u * (max / min).ln()).exp() * 1e6) as u64
    };
    let copied = answer.is_some() && (LATE..LATE + COPIED).contains(&share);
    Fate { answer, rtt_us, late, copy_after_us: copied.then_some(1 + (delays >> 32) % COPY_WITHIN_US) }
}

/// How many pairs of a space meet each fate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Truth {
    pub open: u64,
    pub closed: u64,
    pub unreachable: u64,
    pub silent: u64,
    /// Of the answering pairs, those whose reply comes after the wait.
    pub late: u64,
}

/// A reply on its way: the frame is built from it when it is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pending {
    /// Wall clock, ns since the Unix epoch.
    due_ns: u64,
    target: u32,
    seq: u32,
    tsval: u32,
    port: u16,
    sport: u16,
    answer: Answer,
    late: bool,
    copy: bool,
}

/// The replies on their way, by the millisecond they are due in: a ring of
/// slots, one per millisecond up to the latest a reply can be due, so that
/// scheduling and delivery cost the same whatever is in flight (a binary
/// heap's pops took a fifth of a sweep's time, in cache misses).
struct Wheel {
    slots: Vec<Vec<Pending>>,
    /// The first millisecond (since the Unix epoch) not delivered yet.
    next_ms: u64,
    len: usize,
}

impl Wheel {
    fn new(span: Duration) -> Self {
        let slots = (span.as_millis() as usize + 2).next_power_of_two();
        Wheel { slots: vec![Vec::new(); slots], next_ms: wall_ns() / 1_000_000, len: 0 }
    }

    fn slot(&mut self, ms: u64) -> &mut Vec<Pending> {
        let n = self.slots.len();
        &mut self.slots[(ms % n as u64) as usize]
    }

    fn push(&mut self, p: Pending, now_ms: u64) {
        if self.len == 0 {
            // Nothing waits: the ring may start again from now.
            self.next_ms = self.next_ms.max(now_ms);
        }
        // A reply due in a millisecond already delivered goes with the next.
        let ms = (p.due_ns / 1_000_000).max(self.next_ms);
        assert!(ms - self.next_ms < self.slots.len() as u64, "a reply due beyond the ring");
        self.slot(ms).push(p);
        self.len += 1;
    }

    /// Whether the receiving half is more than `RX_LAG` behind the replies.
    fn behind(&self, now_ms: u64) -> bool {
        self.len > 0 && self.next_ms + (RX_LAG.as_millis() as u64) < now_ms
    }

    /// Moves the replies of the milliseconds wholly past by `now_ms` into
    /// `due`, whole slots, until it holds `RX_BATCH` or more.
    fn take_due(&mut self, now_ms: u64, due: &mut Vec<Pending>) {
        while self.next_ms < now_ms && due.len() < RX_BATCH {
            let ms = self.next_ms;
            // The slot's buffer goes too: kept, every slot would hold its
            // busiest millisecond's worth, and memory would follow the
            // ring, not what is in flight.
            let slot = std::mem::take(self.slot(ms));
            self.len -= slot.len();
            due.extend_from_slice(&slot);
            self.next_ms += 1;
        }
    }
}

/// What the simulator delivered: each frame a valid reply to one probe.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub frames: u64,
    pub syn_acks: u64,
    /// Second copies of a reply.
    pub copies: u64,
    /// Replies after the wait, copies included.
    pub late: u64,
}

struct Internet {
    key: u64,
    wait: Duration,
    /// The scanner's address, from its first SYN.
    scanner: OnceLock<Ipv4Addr>,
    pending: Mutex<Wheel>,
    syns: AtomicU64,
    most_in_flight: AtomicU64,
    resets: AtomicU64,
    /// A `Delivered`'s fields, in its order.
    delivered: [AtomicU64; 4],
}

/// The simulated Internet: hand `transmitter()`, `receiver()` and `resets()` to the engine.
#[derive(Clone)]
pub struct SimNet(Arc<Internet>);

impl SimNet {
    pub fn new(key: u64, wait: Duration) -> Self {
        SimNet(Arc::new(Internet {
            key,
            wait,
            scanner: OnceLock::new(),
            // Room for the slowest reply's copy, due while the receiving half is behind.
            pending: Mutex::new(Wheel::new(
                wait.max(MAX_RTT) + Duration::from_micros(LATE_FROM_US + LATE_SPREAD_US + COPY_WITHIN_US) + RX_LAG,
            )),
            syns: AtomicU64::new(0),
            most_in_flight: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            delivered: Default::default(),
        }))
    }

    pub fn transmitter(&self) -> SimTx {
        SimTx { net: self.0.clone(), batch: Vec::new() }
    }

    pub fn receiver(&self) -> SimRx {
        SimRx { net: self.0.clone(), due: Vec::new(), frame: Vec::new() }
    }

    /// Where the engine's RSTs (for SYN-ACKs) go: they are only counted.
    pub fn resets(&self) -> Box<dyn Transmit> {
        Box::new(Resets(self.0.clone()))
    }

    pub fn syns(&self) -> u64 {
        self.0.syns.load(Relaxed)
    }

    pub fn resets_received(&self) -> u64 {
        self.0.resets.load(Relaxed)
    }

    pub fn delivered(&self) -> Delivered {
        let [frames, syn_acks, copies, late] = self.0.delivered.each_ref().map(|n| n.load(Relaxed));
        Delivered { frames, syn_acks, copies, late }
    }

    /// The most replies that waited at once: what the simulator's memory follows.
    #[allow(dead_code)] // benches/sim.rs reports it; tests/sim.rs has no use for it
    pub fn most_in_flight(&self) -> u64 {
        self.0.most_in_flight.load(Relaxed)
    }

    /// Runs `plan` through the engine over this network, from 192.0.2.1, one
    /// transmit lane: what a sweep counted, and the results it gave.
    pub fn sweep(&self, plan: &ScanPlan) -> (ScanStats, Tally) {
        let me = Ipv4Addr::new(192, 0, 2, 1);
        let sources = Sources::one(me.into());
        let templates = Templates::new(ScanType::Syn, [2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], sources, &[]);
        let wire = Wire { templates: templates.expect("a SYN scan has frames"), key: CookieKey::new(1, 2) };
        let mut tally = Tally::default();
        let stop = StopSignal::new();
        let mut resets = self.resets();
        let stats = run(
            plan,
            &wire,
            &mut [self.transmitter()],
            &mut self.receiver(),
            Some(&mut *resets),
            None,
            &stop,
            &Default::default(),
            &mut tally,
            &SystemClocks::new(),
        )
        .expect("the scan runs");
        (stats, tally)
    }

    /// Whether a scan over this network found exactly the truth: one result
    /// per probe, each in its true state, nothing lost on this host, and
    /// every other frame delivered counted as a duplicate or, once its probe
    /// was concluded, late.
    pub fn exact(&self, truth: &Truth, tally: &Tally, space: &TargetSpace, s: &ScanStats) -> bool {
        let delivered = self.delivered();
        let answered = tally.open + tally.closed + tally.unreachable;
        Truth { late: truth.late, ..tally.found() } == *truth
            && tally.other == 0
            && tally.results() == space.len()
            && s.undecided == 0
            && s.sent == self.syns()
            && s.duplicates + s.late == delivered.frames - answered
            && s.resets + s.resets_skipped == delivered.syn_acks
            && s.resets == self.resets_received()
    }

    /// The fates of every pair of `space` (IPv4), counted.
    pub fn truth(&self, space: &TargetSpace) -> Truth {
        let mut t = Truth::default();
        for i in 0..space.len() {
            let (IpAddr::V4(addr), port) = space.get(i) else { panic!("the simulated Internet is IPv4") };
            let f = fate(self.0.key, self.0.wait, addr, port);
            *match f.answer {
                Some(Answer::Open) => &mut t.open,
                Some(Answer::Closed) => &mut t.closed,
                Some(Answer::Unreachable) => &mut t.unreachable,
                None => &mut t.silent,
            } += 1;
            t.late += u64::from(f.late);
        }
        t
    }
}

fn wall_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_nanos() as u64
}

/// The sending half: schedules the replies each SYN's fate calls for.
pub struct SimTx {
    net: Arc<Internet>,
    /// This call's replies, put in the ring under one lock.
    batch: Vec<Pending>,
}

impl Transmit for SimTx {
    fn transmit(&mut self, frames: &[&[u8]]) -> Result<usize, TransportError> {
        let now = wall_ns();
        let net = &*self.net;
        for f in frames {
            // Header slices at the offsets the engine's frames have: a whole
            // `SlicedPacket` took a sixth of a sweep's time.
            let eth = Ethernet2HeaderSlice::from_slice(f).expect("the engine's SYN parses");
            assert_eq!(eth.ether_type(), EtherType::IPV4, "the simulated Internet is IPv4");
            let ip = Ipv4HeaderSlice::from_slice(&f[Ethernet2Header::LEN..]).expect("an IPv4 header");
            let (scanner, target) = (ip.source_addr(), ip.destination_addr());
            assert_eq!(*net.scanner.get_or_init(|| scanner), scanner, "one scanner address");
            assert_eq!(ip.protocol(), IpNumber::TCP, "not TCP");
            let syn = TcpHeaderSlice::from_slice(&f[Ethernet2Header::LEN + ip.slice().len()..]).expect("a TCP header");
            assert!(syn.syn() && !syn.ack(), "not a SYN");
            let tsval = syn
                .options_iterator()
                .find_map(|o| match o {
                    Ok(TcpOptionElement::Timestamp(tsval, _)) => Some(tsval),
                    _ => None,
                })
                .expect("the SYN carries a timestamp");
            let port = syn.destination_port();
            let fate = fate(net.key, net.wait, target, port);
            let Some(answer) = fate.answer else { continue };
            let reply = Pending {
                due_ns: now + fate.rtt_us * 1000,
                target: target.into(),
                seq: syn.sequence_number(),
                tsval,
                port,
                sport: syn.source_port(),
                answer,
                late: fate.late,
                copy: false,
            };
            self.batch.push(reply);
            if let Some(after_us) = fate.copy_after_us {
                self.batch.push(Pending { due_ns: reply.due_ns + after_us * 1000, copy: true, ..reply });
            }
        }
        net.syns.fetch_add(frames.len() as u64, Relaxed);
        // The replies keep the due times set above: the receiving half
        // stamps them so, and round trips stay what their fates say.
        let (mut pending, now_ms) = loop {
            let pending = net.pending.lock().expect("pending lock");
            let now_ms = wall_ns() / 1_000_000;
            if !pending.behind(now_ms) {
                break (pending, now_ms);
            }
            drop(pending);
            std::thread::sleep(Duration::from_micros(100));
        };
        for p in self.batch.drain(..) {
            pending.push(p, now_ms);
        }
        net.most_in_flight.fetch_max(pending.len as u64, Relaxed);
        Ok(frames.len())
    }
}

/// The receiving half: hands over the replies whose time has come, each
/// stamped with its due time, as a NIC stamps a frame when it arrives
/// however late it is read.
pub struct SimRx {
    net: Arc<Internet>,
    due: Vec<Pending>,
    frame: Vec<u8>,
}

impl Receive for SimRx {
    fn receive(&mut self, timeout: Duration, on_frame: &mut dyn FnMut(&[u8], u64)) -> Result<bool, TransportError> {
        let deadline = wall_ns() + timeout.as_nanos() as u64;
        loop {
            let now = wall_ns();
            self.net.pending.lock().expect("pending lock").take_due(now / 1_000_000, &mut self.due);
            if !self.due.is_empty() || now >= deadline {
                break;
            }
            // Until the next millisecond's replies are all due, or the deadline.
            let until = deadline.min((now / 1_000_000 + 1) * 1_000_000);
            std::thread::sleep(Duration::from_nanos(until - now));
        }
        let scanner = *self.net.scanner.get().unwrap_or(&Ipv4Addr::UNSPECIFIED);
        let mut counts = [0u64; 4];
        for p in self.due.drain(..) {
            self.frame.clear();
            write_reply(&p, scanner, &mut self.frame);
            on_frame(&self.frame, p.due_ns);
            for (n, yes) in counts.iter_mut().zip([true, p.answer == Answer::Open, p.copy, p.late]) {
                *n += u64::from(yes);
            }
        }
        for (total, n) in self.net.delivered.iter().zip(counts) {
            total.fetch_add(n, Relaxed);
        }
        Ok(true)
    }

    fn take_drops(&mut self) -> Drops {
        Drops::default()
    }
}

/// The frame of a reply: a SYN-ACK echoing the SYN's TSval, an RST, or an
/// ICMP error from the target quoting the SYN's IP header and first 8 TCP
/// bytes. Written header by header: etherparse's `PacketBuilder` copies its
/// whole state at each step, a tenth of a sweep's time.
fn write_reply(p: &Pending, scanner: Ipv4Addr, out: &mut Vec<u8>) {
    let (from, to) = (Ipv4Addr::from(p.target).octets(), scanner.octets());
    let ethernet =
        Ethernet2Header { source: [2, 0, 0, 0, 0, 2], destination: [2, 0, 0, 0, 0, 1], ether_type: EtherType::IPV4 };
    let ip = |payload_len: usize, protocol| {
        let mut ip = Ipv4Header::new(payload_len as u16, 57, protocol, from, to).expect("a short packet");
        ip.header_checksum = ip.calc_header_checksum();
        ip
    };
    let written = match p.answer {
        Answer::Open | Answer::Closed => {
            let mut tcp = TcpHeader::new(p.port, p.sport, 0, 0);
            tcp.ack = true;
            tcp.acknowledgment_number = p.seq.wrapping_add(1);
            if p.answer == Answer::Open {
                (tcp.syn, tcp.sequence_number, tcp.window_size) = (true, p.tsval.rotate_left(7), 65535);
                let options = [TcpOptionElement::MaximumSegmentSize(1460), TcpOptionElement::Timestamp(1, p.tsval)];
                tcp.set_options(&options).expect("options fit");
            } else {
                tcp.rst = true;
            }
            tcp.checksum = tcp.calc_checksum_ipv4_raw(from, to, &[]).expect("a short segment");
            ethernet
                .write(out)
                .and_then(|()| ip(tcp.header_len(), IpNumber::TCP).write(out))
                .and_then(|()| tcp.write(out))
        }
        Answer::Unreachable => {
            // The SYN's own header: TCP with MSS and timestamp options is 36 bytes.
            let syn_ip = Ipv4Header::new(36, 64, IpNumber::TCP, to, from).expect("a SYN's length");
            let mut quoted = [0u8; Ipv4Header::MIN_LEN + 8];
            quoted[..Ipv4Header::MIN_LEN].copy_from_slice(&syn_ip.to_bytes());
            quoted[20..22].copy_from_slice(&p.sport.to_be_bytes());
            quoted[22..24].copy_from_slice(&p.port.to_be_bytes());
            quoted[24..28].copy_from_slice(&p.seq.to_be_bytes());
            let prohibited = DestUnreachableHeader::from_values(13, 0).expect("a known code");
            let icmp = Icmpv4Header::with_checksum(Icmpv4Type::DestinationUnreachable(prohibited), &quoted);
            ethernet
                .write(out)
                .and_then(|()| ip(icmp.header_len() + quoted.len(), IpNumber::ICMP).write(out))
                .and_then(|()| icmp.write(out))
                .and_then(|()| std::io::Write::write_all(out, &quoted))
        }
    };
    written.expect("a reply frame");
}

struct Resets(Arc<Internet>);

impl Transmit for Resets {
    fn transmit(&mut self, frames: &[&[u8]]) -> Result<usize, TransportError> {
        self.0.resets.fetch_add(frames.len() as u64, Relaxed);
        Ok(frames.len())
    }
}

/// An observer that keeps only counts, as a sweep of billions of probes must.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub open: u64,
    pub closed: u64,
    /// Filtered by an ICMP unreachable.
    pub unreachable: u64,
    /// Filtered: silent through every try.
    pub silent: u64,
    /// Any other state: undecided, which only drops on this host cause (never here).
    pub other: u64,
}

impl Observer for Tally {
    fn results(&mut self, batch: Vec<ScanResult>) {
        for r in batch {
            *match (r.state, r.reason) {
                (PortState::Open, _) => &mut self.open,
                (PortState::Closed, _) => &mut self.closed,
                (PortState::Filtered, Reason::NoResponse) => &mut self.silent,
                (PortState::Filtered, _) => &mut self.unreachable,
                _ => &mut self.other,
            } += 1;
        }
    }
}

impl Tally {
    pub fn results(&self) -> u64 {
        self.open + self.closed + self.unreachable + self.silent + self.other
    }

    /// What the scan found, in the truth's terms but for the late replies,
    /// which are no state.
    pub fn found(&self) -> Truth {
        Truth { open: self.open, closed: self.closed, unreachable: self.unreachable, silent: self.silent, late: 0 }
    }
}
