//! The banner stage's backend over AF_XDP: conversations on connections
//! prtip holds itself. The XDP program keeps every segment to the scan's
//! ports from the kernel, which has no socket for them and would reset
//! them; the receive thread hands each on (a probe's SYN-ACK, validated by
//! its cookie, then the rest), and this completes the handshake its probe
//! began, with no connect of its own. Frames leave through a `Transmit`
//! of their own.
//!
//! A SYN-ACK is not answered until the stage has room for its port's
//! conversation: the handshake stays half open (the peer holds it, and
//! sends its SYN-ACK again after a second), for `HALF_OPEN` at most, and
//! ends with the ACK that carries the conversation's first request, or a
//! bare one where the service speaks first. So the handshakes are paced
//! by the stage, and no peer holds a connection nobody talks on. A
//! handshake that waited too long is reset, and the stage opens that
//! connection with a SYN of its own when its turn comes, as it does any
//! whose SYN-ACK never reached here (a full queue), from one of the scan's
//! ports.
//!
//! At most `MOST_TAKEN` connections and `MOST_HALF_OPEN` handshakes are
//! held, each connection keeping at most `INBOX` unread bytes, so a peer
//! that sends forever, or a /16 of them, holds memory to a fixed cap.

use super::Transmit;
use super::stream::{Conversations, Ended, NO_TCP_STACK};
use crate::engine::banners::BannerStats;
use crate::probe::Templates;
use crate::probe::syn::Outgoing;
use crate::wire::connection::{Answer, Connection, Header};
use crate::wire::field::tcp;
use crate::wire::segment::Segment;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

/// Conversations at once: as many as the connect stage has.
pub const MOST_TAKEN: usize = crate::engine::banners::MAX_CONNECTIONS as usize;
/// Handshakes left half open for the stage: as many as it may have
/// waiting in its queue (some 100 bytes each).
const MOST_HALF_OPEN: usize = crate::engine::banners::QUEUE;
/// How long a handshake waits for the stage. Well within the time servers
/// keep a half-open connection: Linux sends its SYN-ACK again for a
/// minute, Windows for some 20 s.
const HALF_OPEN: Duration = Duration::from_secs(5);
/// Peers that reset their handshake before the stage took it that are
/// remembered: as many as the stage may have waiting.
const REMEMBERED: usize = crate::engine::banners::QUEUE;
/// Segments the receive thread may queue for this backend (some 12 MiB
/// of payloads at most, whoever sends them); more are dropped there, and
/// the peer sends them again.
pub const SEGMENT_QUEUE: usize = 8192;
/// Unread bytes kept per connection: what the window we advertise offers.
const INBOX: usize = 4096;
/// The largest payload we send in one segment: fits any path of IPv6's
/// minimum MTU.
const MSS: usize = 1200;
/// How long sent bytes wait for their acknowledgement before they are sent again.
const RETRANSMIT: Duration = Duration::from_millis(250);
/// How long the acknowledgement of in-order bytes waits for a segment of
/// ours to carry it (as Linux's delayed ACK): most conversations end with
/// our RST before then, and a peer sends nothing again before its own
/// retransmission timeout, 200 ms at the least.
const DELAYED_ACK: Duration = Duration::from_millis(40);

/// The receive thread's side: where it hands segments over, and how far
/// behind the stage is.
#[derive(Clone)]
pub struct Handover {
    pub queue: SyncSender<Handed>,
    waiting: Arc<AtomicUsize>,
    sent: Arc<AtomicU64>,
}

impl Handover {
    /// Whether as many handshakes wait for the stage as it has
    /// conversations: the scan sends no probe more until it takes some, so
    /// that handshakes wait for moments, not for their peers to give up.
    pub fn full(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) >= MOST_TAKEN
    }

    /// The frames the connections sent so far, to be counted against the
    /// scan's `--rate`.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

/// OwnTcp's side of a `Handover`.
pub struct HandedOver {
    segments: Receiver<Handed>,
    waiting: Arc<AtomicUsize>,
    sent: Arc<AtomicU64>,
}

#[cfg(test)]
impl HandedOver {
    pub fn drain(&self) -> Vec<Handed> {
        self.segments.try_iter().collect()
    }
}

/// A queue of `SEGMENT_QUEUE` segments from the receive thread to an `OwnTcp`.
pub fn handover() -> (Handover, HandedOver) {
    let (queue, segments) = std::sync::mpsc::sync_channel(SEGMENT_QUEUE);
    let (waiting, sent) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicU64::new(0)));
    (Handover { queue, waiting: waiting.clone(), sent: sent.clone() }, HandedOver { segments, waiting, sent })
}

/// What the receive thread hands over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handed {
    /// A port's first SYN-ACK, its cookie valid: only such a SYN-ACK
    /// begins a handshake here.
    Answer(Segment),
    /// Any other segment to the scan's ports, checked by the connection it is for.
    Segment(Segment),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Idle,
    /// Our SYN waits for its SYN-ACK until then.
    Connecting {
        until: Instant,
    },
    Connected,
    Sent(usize),
    Receive {
        until: Instant,
    },
}

/// A connection the stage took.
struct Held {
    conn: Connection,
    id: u32,
    step: Step,
    /// When bytes not yet acknowledged (or our SYN) were last sent.
    sent_at: Instant,
    /// The window the last segment we sent advertised.
    advertised: u16,
    /// Taken half open: our ACK goes with the first request, or before the first read.
    ack_owed: bool,
    /// No step taken yet.
    first: bool,
    /// Its first step was a read (the service may speak first), and the
    /// byte past the window is still to be sent.
    probe_owed: bool,
    /// Bytes received wait for their acknowledgement (`DELAYED_ACK`).
    ack_due: bool,
}

impl Held {
    fn new(conn: Connection, id: u32, step: Step, now: Instant, ack_owed: bool) -> Held {
        let advertised = INBOX as u16;
        Held { conn, id, step, sent_at: now, advertised, ack_owed, first: true, probe_owed: false, ack_due: false }
    }

    fn window(&self) -> u16 {
        (INBOX - self.conn.unread().min(INBOX)) as u16
    }

    /// Whether the window opened enough since we last advertised it for
    /// the peer to be told (RFC 1122 4.2.3.3).
    fn window_opened(&self) -> bool {
        usize::from(self.window().saturating_sub(self.advertised)) >= MSS.min(INBOX / 2)
    }
}

/// A probe's SYN-ACK, not answered yet.
struct HalfOpen {
    syn_ack: Segment,
    at: Instant,
}

pub struct OwnTcp {
    segments: Receiver<Handed>,
    /// The handshakes half open, and the frames sent, for the scan's lanes to see.
    waiting: Arc<AtomicUsize>,
    sent: Arc<AtomicU64>,
    tx: Box<dyn Transmit>,
    /// Connections the stage took, by peer.
    held: HashMap<SocketAddr, Held>,
    ids: HashMap<u32, SocketAddr>,
    next_id: u32,
    half_open: Recent<HalfOpen>,
    /// The scan's source ports: those the XDP program steers here.
    ports: (u16, u16),
    /// Peers that reset their handshake before the stage took it: the
    /// stage learns the port refused it.
    reset: Recent<()>,
    /// Taken connections whose step may have ended: only these are looked
    /// at, so a step costs the same with 1,024 connections as with one.
    ready: HashSet<u32>,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    frames: Frames,
    /// Handshakes reset as they waited past `HALF_OPEN`, or past `MOST_HALF_OPEN`.
    expired: u64,
}

/// A map of the last `cap` entries put in; one taken out leaves room.
struct Recent<V> {
    map: HashMap<SocketAddr, (V, u64)>,
    /// Keys in the order put in, each with its number: one put in again
    /// since is not taken out with its older number.
    order: VecDeque<(SocketAddr, u64)>,
    next: u64,
    cap: usize,
}

impl<V> Recent<V> {
    fn new(cap: usize) -> Self {
        Recent { map: HashMap::new(), order: VecDeque::new(), next: 0, cap }
    }

    /// Puts `value` in; returns the entries pushed out.
    fn insert(&mut self, key: SocketAddr, value: V) -> Vec<V> {
        self.map.insert(key, (value, self.next));
        self.order.push_back((key, self.next));
        self.next += 1;
        let mut out = Vec::new();
        // Keys taken out since still have their place: the map never holds more than `cap`.
        while self.order.len() > self.cap {
            if let Some((old, n)) = self.order.pop_front()
                && self.map.get(&old).is_some_and(|&(_, m)| m == n)
                && let Some((v, _)) = self.map.remove(&old)
            {
                out.push(v);
            }
        }
        out
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn get(&self, key: &SocketAddr) -> Option<&V> {
        self.map.get(key).map(|(v, _)| v)
    }

    fn take(&mut self, key: &SocketAddr) -> Option<V> {
        self.map.remove(key).map(|(v, _)| v)
    }

    fn drain(&mut self) -> impl Iterator<Item = V> + '_ {
        self.order.clear();
        self.map.drain().map(|(_, (v, _))| v)
    }
}

/// What is due at a time; checked against the connection when it comes,
/// as the connection may have moved on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// A step of a taken connection ends (its receive's or connect's timeout).
    Step(u32),
    Retransmit(SocketAddr),
    /// In-order bytes received are acknowledged, where nothing of ours carried it.
    Ack(SocketAddr),
    /// A handshake the stage did not take in time is reset.
    Expire(SocketAddr),
}

/// The frames a step writes, sent at its end.
struct Frames {
    templates: Templates,
    out: Vec<Vec<u8>>,
}

impl Frames {
    fn write(&mut self, from: SocketAddr, to: SocketAddr, h: Header, flags: u8, payload: &[u8]) {
        let segment = Outgoing {
            dst: to.ip(),
            sport: from.port(),
            dport: to.port(),
            seq: h.seq,
            ack: h.ack,
            flags,
            window: h.window,
            payload,
        };
        let mut frame = vec![0u8; 128 + payload.len()];
        if let Some(len) = self.templates.write_segment(from.ip(), &segment, &mut frame) {
            frame.truncate(len);
            self.out.push(frame);
        }
    }

    /// The segments of `pieces` of what `h` sent and is not yet
    /// acknowledged; they acknowledge all it received.
    fn data(&mut self, h: &mut Held, pieces: Vec<(Header, std::ops::Range<usize>)>) {
        h.ack_due = false;
        for (header, range) in pieces {
            self.write(h.conn.ours, h.conn.peer, header, tcp::ACK | tcp::PSH, &h.conn.unacked()[range]);
        }
    }

    /// An ACK of everything `h` received in order, with the window it has now.
    fn ack(&mut self, h: &mut Held) {
        h.ack_due = false;
        h.advertised = h.window();
        self.write(h.conn.ours, h.conn.peer, h.conn.ack(h.advertised), tcp::ACK, &[]);
    }

    /// The RST that refuses segment `s`'s SYN-ACK.
    fn refuse(&mut self, s: &Segment) {
        let header = Header { seq: s.ack, ack: 0, window: 0 };
        self.write(s.ours, s.peer, header, tcp::RST, &[]);
    }

    /// The byte past `conn`'s window that tells a peer which acknowledges
    /// everything from a TCP stack: after a request, once the handshake is done.
    fn past_window(&mut self, conn: &mut Connection, window: u16) {
        let header = conn.out_of_window(window);
        self.write(conn.ours, conn.peer, header, tcp::ACK, &[0]);
    }

    fn reset(&mut self, conn: &Connection) {
        let header = conn.ack(0);
        self.write(conn.ours, conn.peer, header, tcp::RST | tcp::ACK, &[]);
    }
}

impl OwnTcp {
    /// Connections from the segments the receive thread queues on
    /// `segments`, with frames written from `templates` and sent through `tx`.
    /// `ports` are the scan's source ports.
    pub fn new(handed: HandedOver, tx: Box<dyn Transmit>, templates: Templates, ports: (u16, u16)) -> OwnTcp {
        OwnTcp {
            segments: handed.segments,
            waiting: handed.waiting,
            sent: handed.sent,
            tx,
            held: HashMap::new(),
            ids: HashMap::new(),
            next_id: 0,
            half_open: Recent::new(MOST_HALF_OPEN),
            ports,
            reset: Recent::new(REMEMBERED),
            ready: HashSet::new(),
            timers: BinaryHeap::new(),
            frames: Frames { templates, out: Vec::new() },
            expired: 0,
        }
    }

    fn take_segment(&mut self, handed: Handed) {
        let (s, answer) = match handed {
            Handed::Answer(s) => (s, true),
            Handed::Segment(s) => (s, false),
        };
        let held = self.held.get_mut(&s.peer).filter(|h| h.conn.ours == s.ours);
        let Some(h) = held else {
            let half_open = self.half_open.get(&s.peer).map(|h| (h.syn_ack.ours == s.ours, h.syn_ack.seq));
            match (half_open, answer && !self.held.contains_key(&s.peer), s.syn, s.rst) {
                // Its SYN-ACK again: answered when the stage takes it.
                (Some((true, _)), _, true, _) => {}
                // RFC 5961: only an RST at exactly the next byte ends it.
                (Some((true, seq)), _, _, true) if s.seq == seq.wrapping_add(1) => {
                    self.half_open.take(&s.peer);
                    self.reset.insert(s.peer, ());
                }
                (None, true, true, _) => self.wait_for_stage(s),
                // A SYN-ACK of no connection (another try's port, or one
                // that ended): reset, or the peer sends it for a minute.
                (_, _, true, _) => self.frames.refuse(&s),
                // A segment of a connection already ended: our RST ends it there too.
                _ => {}
            }
            return;
        };
        let connecting = h.conn.syn_sent;
        let answer = h.conn.on_segment(&s, INBOX);
        self.ready.insert(h.id);
        match answer {
            Answer::Now => {
                self.frames.ack(h);
                if connecting && !h.conn.syn_sent {
                    h.step = Step::Connected;
                }
            }
            Answer::Later if !h.ack_due => {
                h.ack_due = true;
                self.timers.push(Reverse((Instant::now() + DELAYED_ACK, Timer::Ack(s.peer))));
            }
            Answer::Later | Answer::Nothing => {}
        }
    }

    /// A SYN-ACK that the receive thread validated: its handshake waits,
    /// half open, for the stage to take it.
    fn wait_for_stage(&mut self, syn_ack: Segment) {
        let (peer, at) = (syn_ack.peer, Instant::now());
        for pushed_out in self.half_open.insert(peer, HalfOpen { syn_ack, at }) {
            self.expired += 1;
            self.frames.refuse(&pushed_out.syn_ack);
        }
        self.timers.push(Reverse((at + HALF_OPEN, Timer::Expire(peer))));
    }

    /// Where our own SYN to `peer` leaves from: the scan's address for it,
    /// and one of its ports, at random (an RST to a connection that went
    /// before on another port may have been lost).
    fn source_for(&self, peer: SocketAddr) -> SocketAddr {
        let sources = self.frames.templates.sources();
        let (lo, hi) = self.ports;
        let port = lo + (crate::random::u64() % u64::from(hi - lo + 1)) as u16;
        SocketAddr::new(sources.get(sources.pick(peer.ip())), port)
    }

    /// Takes the segments queued, as many as the queue holds at most: a
    /// receive thread that fills it as fast leaves the stage its turn.
    fn take_queued(&mut self) {
        for _ in 0..SEGMENT_QUEUE {
            let Ok(s) = self.segments.try_recv() else { break };
            self.take_segment(s);
        }
        self.waiting.store(self.half_open.len(), Ordering::Relaxed);
    }

    fn flush(&mut self) {
        if self.frames.out.is_empty() {
            return;
        }
        let frames: Vec<&[u8]> = self.frames.out.iter().map(Vec::as_slice).collect();
        // A frame the kernel refused is sent again, or ends by the conversation's timeout.
        let sent = self.tx.transmit(&frames).unwrap_or(0);
        self.sent.fetch_add(sent as u64, Ordering::Relaxed);
        self.frames.out.clear();
    }

    /// Sends again what waits too long for its acknowledgement; resets the
    /// handshakes the stage did not take in time; marks the steps whose time is up.
    fn on_time(&mut self, now: Instant) {
        while let Some(&Reverse((at, timer))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            match timer {
                Timer::Step(id) => {
                    self.ready.insert(id);
                }
                Timer::Retransmit(peer) => {
                    let Some(h) = self.held.get_mut(&peer) else { continue };
                    // A later send set a timer of its own.
                    if !h.conn.syn_sent && h.conn.unacked().is_empty() || h.sent_at + RETRANSMIT > now {
                        continue;
                    }
                    h.sent_at = now;
                    match h.conn.syn_sent {
                        // Until the step's timeout ends the connect.
                        true => self.frames.write(h.conn.ours, h.conn.peer, h.conn.syn(), tcp::SYN, &[]),
                        false => {
                            let pieces = h.conn.unacknowledged(MSS, h.window());
                            self.frames.data(h, pieces);
                        }
                    }
                    self.timers.push(Reverse((now + RETRANSMIT, Timer::Retransmit(peer))));
                }
                Timer::Ack(peer) => {
                    if let Some(h) = self.held.get_mut(&peer).filter(|h| h.ack_due) {
                        self.frames.ack(h);
                    }
                }
                Timer::Expire(peer) => {
                    if self.half_open.get(&peer).is_some_and(|h| h.at + HALF_OPEN <= now)
                        && let Some(h) = self.half_open.take(&peer)
                    {
                        self.expired += 1;
                        self.frames.refuse(&h.syn_ack);
                    }
                }
            }
        }
    }
}

impl Conversations for OwnTcp {
    fn room(&self) -> usize {
        MOST_TAKEN.saturating_sub(self.ids.len())
    }

    /// Takes the handshake a SYN-ACK began, or opens a connection with a
    /// SYN of our own where there is none (ECONNREFUSED: the peer reset it
    /// before the stage took it).
    fn open(&mut self, to: SocketAddr, _from: Option<IpAddr>, timeout: Duration) -> io::Result<u32> {
        self.take_queued();
        // What the queued segments asked for goes now, whether this opens or not.
        self.flush();
        if self.held.contains_key(&to) {
            return Err(io::Error::from_raw_os_error(libc::EALREADY));
        }
        if self.reset.take(&to).is_some() {
            return Err(io::Error::from_raw_os_error(libc::ECONNREFUSED));
        }
        if self.ids.len() >= MOST_TAKEN {
            return Err(io::Error::from_raw_os_error(libc::EAGAIN));
        }
        let id = self.next_id;
        let now = Instant::now();
        let h = match self.half_open.take(&to) {
            Some(half) => {
                let conn = Connection::from_syn_ack(&half.syn_ack);
                self.ready.insert(id);
                Held::new(conn, id, Step::Connected, now, true)
            }
            None => {
                let ours = self.source_for(to);
                let conn = Connection::connecting(to, ours, crate::random::u64() as u32);
                let step = Step::Connecting { until: now + timeout };
                self.frames.write(ours, to, conn.syn(), tcp::SYN, &[]);
                self.timers.push(Reverse((now + timeout, Timer::Step(id))));
                self.timers.push(Reverse((now + RETRANSMIT, Timer::Retransmit(to))));
                Held::new(conn, id, step, now, false)
            }
        };
        tracing::trace!(%to, step = ?h.step, "connection taken");
        self.held.insert(to, h);
        self.next_id = self.next_id.wrapping_add(1);
        self.ids.insert(id, to);
        self.flush();
        Ok(id)
    }

    /// A connect scan's socket: never handed to this backend, which serves SYN scans.
    fn adopt(&mut self, _socket: OwnedFd) -> io::Result<u32> {
        Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
    }

    /// Sends `data`; the first request of a handshake taken half open
    /// carries the ACK that ends it.
    fn send(&mut self, id: u32, data: &[u8], _timeout: Duration) -> io::Result<()> {
        let peer = *self.ids.get(&id).ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))?;
        let h = self.held.get_mut(&peer).expect("a taken connection is held");
        let window = h.window();
        h.advertised = window;
        let pieces = h.conn.send(data, MSS, window);
        h.step = Step::Sent(data.len());
        h.sent_at = Instant::now();
        self.ready.insert(id);
        self.timers.push(Reverse((h.sent_at + RETRANSMIT, Timer::Retransmit(peer))));
        self.frames.data(h, pieces);
        (h.ack_owed, h.first) = (false, false);
        // A service that speaks first stayed quiet, and is asked: after the
        // request (which completes the handshake where its ACK was lost, as
        // a server sending SYN cookies with a full accept queue drops it, and
        // answers anything else with an RST), the byte past the window tells
        // a TCP stack from a middlebox that acknowledges everything. A
        // service that speaks, or that prtip asks first, tells by what it says.
        if std::mem::take(&mut h.probe_owed) && !h.conn.heard() {
            self.frames.past_window(&mut h.conn, window);
        }
        self.flush();
        Ok(())
    }

    fn receive(&mut self, id: u32, timeout: Duration) -> io::Result<()> {
        let peer = *self.ids.get(&id).ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))?;
        let h = self.held.get_mut(&peer).expect("a taken connection is held");
        let until = Instant::now() + timeout;
        h.step = Step::Receive { until };
        // The service may speak first: the bare ACK lets it.
        if std::mem::take(&mut h.first) {
            h.probe_owed = true;
            if std::mem::take(&mut h.ack_owed) {
                self.frames.ack(h);
                self.flush();
            }
        }
        // What came before the read was asked for ends it at once.
        self.ready.insert(id);
        self.timers.push(Reverse((until, Timer::Step(id))));
        Ok(())
    }

    /// Ends the connection with an RST, whatever state it is in.
    fn close(&mut self, id: u32) {
        self.ready.remove(&id);
        if let Some(h) = self.ids.remove(&id).and_then(|peer| self.held.remove(&peer)) {
            self.frames.reset(&h.conn);
            self.flush();
        }
    }

    fn count(&self, stats: &mut BannerStats) {
        stats.handshakes_expired = self.expired;
    }

    fn complete(&mut self, wait: Duration, on: &mut dyn FnMut(u32, Ended)) -> io::Result<()> {
        let now = Instant::now();
        self.take_queued();
        if self.ready.is_empty() {
            let next = self.timers.peek().map(|Reverse((at, _))| *at);
            let until = next.map_or(now + wait, |at| at.min(now + wait));
            match self.segments.recv_timeout(until.saturating_duration_since(now)) {
                Ok(s) => self.take_segment(s),
                // The scan's receive thread ended: segments still held are read all the same.
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
            }
            self.take_queued();
        }
        let now = Instant::now();
        self.on_time(now);
        let ready: Vec<u32> = self.ready.drain().collect();
        for id in ready {
            let Some(&peer) = self.ids.get(&id) else { continue };
            let h = self.held.get_mut(&peer).expect("a taken connection is held");
            let step = h.step;
            let ended = match step {
                Step::Idle => continue,
                // Not a service: whatever it said, the conversation ends here.
                Step::Connected if h.conn.acks_unsent => Ended::Connected(Err(NO_TCP_STACK)),
                Step::Sent(_) if h.conn.acks_unsent => Ended::Sent(Err(NO_TCP_STACK)),
                Step::Receive { .. } if h.conn.acks_unsent => Ended::Received(Err(NO_TCP_STACK)),
                Step::Connecting { .. } if h.conn.reset => Ended::Connected(Err(libc::ECONNREFUSED)),
                Step::Connecting { until } if now >= until => Ended::Connected(Err(libc::ETIMEDOUT)),
                Step::Connecting { .. } => continue,
                Step::Connected => Ended::Connected(Ok(())),
                Step::Sent(n) => Ended::Sent(Ok(n)),
                Step::Receive { .. } if h.conn.unread() > 0 => {
                    let bytes = h.conn.read();
                    h.step = Step::Idle;
                    if h.window_opened() {
                        self.frames.ack(h);
                    }
                    on(id, Ended::Received(Ok(&bytes)));
                    continue;
                }
                Step::Receive { .. } if h.conn.reset => Ended::Received(Err(libc::ECONNRESET)),
                Step::Receive { .. } if h.conn.fin => Ended::Received(Ok(&[])),
                Step::Receive { until } if now >= until => Ended::Received(Err(libc::ECANCELED)),
                Step::Receive { .. } => continue,
            };
            h.step = Step::Idle;
            on(id, ended);
        }
        self.flush();
        self.waiting.store(self.half_open.len(), Ordering::Relaxed);
        Ok(())
    }
}

impl Drop for OwnTcp {
    /// Connections and handshakes still held end with an RST, not with a peer left waiting.
    fn drop(&mut self) {
        for (_, h) in self.held.drain() {
            self.frames.reset(&h.conn);
        }
        let half_open: Vec<HalfOpen> = self.half_open.drain().collect();
        for h in half_open {
            self.frames.refuse(&h.syn_ack);
        }
        self.flush();
        // A stage that failed holds the scan's probes back no longer.
        self.waiting.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::ScanType;
    use crate::transport::TransportError;
    use crate::wire::sources::Sources;
    use etherparse::{SlicedPacket, TransportSlice};
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sent(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Transmit for Sent {
        fn transmit(&mut self, frames: &[&[u8]]) -> Result<usize, TransportError> {
            self.0.lock().unwrap().extend(frames.iter().map(|f| f.to_vec()));
            Ok(frames.len())
        }
    }

    /// A segment sent: its flags as tcpdump spells them, sequence and
    /// acknowledgement numbers, payload.
    #[derive(Debug, PartialEq, Eq)]
    struct Out(&'static str, u32, u32, Vec<u8>);

    impl Sent {
        /// The segments sent since the last call.
        fn take(&self) -> Vec<Out> {
            let frames = std::mem::take(&mut *self.0.lock().unwrap());
            frames
                .iter()
                .map(|f| {
                    let p = SlicedPacket::from_ethernet(f).unwrap();
                    let Some(TransportSlice::Tcp(t)) = p.transport else { panic!("not TCP") };
                    assert_eq!(t.source_port(), 61001);
                    let flags = match (t.syn(), t.rst(), t.ack(), t.psh()) {
                        (true, false, false, false) => "S",
                        (false, true, false, false) => "R",
                        (false, true, true, false) => "R.",
                        (false, false, true, false) => ".",
                        (false, false, true, true) => "P.",
                        other => panic!("unexpected flags {other:?}"),
                    };
                    Out(flags, t.sequence_number(), t.acknowledgment_number(), t.payload().to_vec())
                })
                .collect()
        }
    }

    fn peer() -> SocketAddr {
        "10.201.0.7:22".parse().unwrap()
    }

    fn seg(seq: u32, ack: u32) -> Segment {
        Segment::for_test(seq, ack, b"")
    }

    /// Our probe's cookie was 999: its SYN-ACK acknowledges 1000.
    fn syn_ack() -> Segment {
        Segment { syn: true, ..seg(4999, 1000) }
    }

    fn own_tcp() -> (OwnTcp, Handover, Sent) {
        let (handover, handed) = handover();
        let sent = Sent::default();
        let sources = Sources::one("10.200.0.1".parse().unwrap());
        let templates = Templates::new(ScanType::Syn, [1; 6], [2; 6], sources, &[]).unwrap();
        (OwnTcp::new(handed, Box::new(sent.clone()), templates, (61001, 61001)), handover, sent)
    }

    /// The steps that end within `wait`, as the stage sees them.
    fn ended(own: &mut OwnTcp, wait: Duration) -> Vec<(u32, String)> {
        let mut ended = Vec::new();
        own.complete(wait, &mut |id, e| ended.push((id, format!("{e:?}")))).unwrap();
        ended
    }

    /// A handshake the stage took, its first step a read: the bare ACK went.
    fn listening() -> (OwnTcp, Handover, Sent, u32) {
        let (mut own, handover, sent) = own_tcp();
        handover.queue.send(Handed::Answer(syn_ack())).unwrap();
        let id = own.open(peer(), None, Duration::from_secs(1)).unwrap();
        assert_eq!(ended(&mut own, Duration::ZERO), [(id, "Connected(Ok(()))".to_string())]);
        own.receive(id, Duration::from_secs(1)).unwrap();
        assert_eq!(sent.take(), [Out(".", 1000, 5000, vec![])]);
        (own, handover, sent, id)
    }

    const PAST: u32 = 1000 + (1 << 30);
    const GET: &[u8] = b"GET / HTTP/1.0\r\n\r\n";

    #[test]
    fn a_handshake_waits_for_the_stage_and_its_ack_carries_the_first_request() {
        let (mut own, handover, sent) = own_tcp();
        handover.queue.send(Handed::Answer(syn_ack())).unwrap();
        // Sent again while it waits: still not answered.
        handover.queue.send(Handed::Answer(syn_ack())).unwrap();
        let id = own.open(peer(), None, Duration::from_secs(1)).unwrap();
        assert_eq!(sent.take(), []);
        assert_eq!(ended(&mut own, Duration::ZERO), [(id, "Connected(Ok(()))".to_string())]);
        own.send(id, GET, Duration::from_secs(1)).unwrap();
        // Its answer tells a service from a middlebox: no byte past the window.
        assert_eq!(sent.take(), [Out("P.", 1000, 5000, GET.to_vec())]);
        // The peer's SYN-ACK crossed our request: it is acknowledged again.
        handover.queue.send(Handed::Answer(syn_ack())).unwrap();
        assert_eq!(ended(&mut own, Duration::ZERO), [(id, "Sent(Ok(18))".to_string())]);
        assert_eq!(sent.take(), [Out(".", 1018, 5000, vec![])]);
    }

    #[test]
    fn a_service_that_speaks_first_gets_a_bare_ack_and_a_peer_acknowledging_the_byte_past_its_window_is_no_service() {
        let (mut own, handover, sent, id) = listening();
        // Quiet: asked, and the byte past the window follows the request.
        own.send(id, GET, Duration::from_secs(1)).unwrap();
        let past = PAST + GET.len() as u32;
        assert_eq!(sent.take(), [Out("P.", 1000, 5000, GET.to_vec()), Out(".", past, 5000, vec![0])]);
        assert_eq!(ended(&mut own, Duration::ZERO), [(id, "Sent(Ok(18))".to_string())]);
        own.receive(id, Duration::from_secs(1)).unwrap();
        // A TCP stack drops the byte and acknowledges what it has: nothing ends.
        handover.queue.send(Handed::Segment(seg(5000, 1018))).unwrap();
        assert_eq!(ended(&mut own, Duration::ZERO), []);
        let banner = Segment { payload: b"HTTP/1.1 200 OK\r\n".to_vec(), ..seg(5000, past + 1) };
        handover.queue.send(Handed::Segment(banner)).unwrap();
        assert_eq!(ended(&mut own, Duration::ZERO), [(id, format!("Received(Err({NO_TCP_STACK}))"))]);
    }

    #[test]
    fn a_handshake_reset_before_the_stage_takes_it_is_refused_when_asked_for() {
        let (mut own, handover, sent) = own_tcp();
        handover.queue.send(Handed::Answer(syn_ack())).unwrap();
        // Not at the next byte: not this handshake's (RFC 5961).
        handover.queue.send(Handed::Segment(Segment { rst: true, ..seg(4000, 0) })).unwrap();
        handover.queue.send(Handed::Segment(Segment { rst: true, ..seg(5000, 0) })).unwrap();
        own.take_queued();
        assert_eq!(own.half_open.len(), 0);
        let refused = own.open(peer(), None, Duration::from_secs(1)).unwrap_err();
        assert_eq!(refused.raw_os_error(), Some(libc::ECONNREFUSED));
        assert_eq!(sent.take(), []);
    }

    #[test]
    fn our_syn_of_a_connection_opened_again_is_sent_again_until_its_syn_ack_comes() {
        let (mut own, handover, sent) = own_tcp();
        handover.queue.send(Handed::Answer(syn_ack())).unwrap();
        let first = own.open(peer(), None, Duration::from_secs(1)).unwrap();
        own.close(first);
        let id = own.open(peer(), None, Duration::from_secs(1)).unwrap();
        let frames = sent.take();
        assert_eq!(frames[0], Out("R.", 1000, 5000, vec![]));
        let Out("S", iss, 0, _) = frames[1] else { panic!("no SYN: {frames:?}") };
        own.on_time(Instant::now() + RETRANSMIT);
        own.flush();
        assert_eq!(sent.take(), [Out("S", iss, 0, vec![])]);
        // Only the SYN-ACK of that SYN opens it.
        handover.queue.send(Handed::Segment(Segment { syn: true, ..seg(700, iss.wrapping_add(2)) })).unwrap();
        assert_eq!(ended(&mut own, Duration::ZERO), []);
        handover.queue.send(Handed::Segment(Segment { syn: true, ..seg(700, iss.wrapping_add(1)) })).unwrap();
        assert_eq!(ended(&mut own, Duration::ZERO), [(id, "Connected(Ok(()))".to_string())]);
        assert_eq!(sent.take(), [Out(".", iss.wrapping_add(1), 701, vec![])]);
        own.on_time(Instant::now() + 2 * RETRANSMIT);
        own.flush();
        assert_eq!(sent.take(), [], "answered, the SYN is not sent again");
        // It speaks: no byte past the window after what we send.
        own.receive(id, Duration::from_secs(1)).unwrap();
        handover
            .queue
            .send(Handed::Segment(Segment { payload: b"220 ftp\r\n".to_vec(), ..seg(701, iss.wrapping_add(1)) }))
            .unwrap();
        assert_eq!(
            ended(&mut own, Duration::ZERO),
            [(id, "Received(Ok([50, 50, 48, 32, 102, 116, 112, 13, 10]))".to_string())]
        );
        own.send(id, b"QUIT\r\n", Duration::from_secs(1)).unwrap();
        // The greeting's acknowledgement went with what we sent next.
        assert_eq!(sent.take(), [Out("P.", iss.wrapping_add(1), 710, b"QUIT\r\n".to_vec())]);
        own.on_time(Instant::now() + DELAYED_ACK);
        own.flush();
        assert_eq!(sent.take(), [], "nothing more to acknowledge");
    }

    #[test]
    fn bytes_in_order_are_acknowledged_after_a_while_where_nothing_of_ours_goes_and_again_at_once() {
        let (mut own, handover, sent, id) = listening();
        let greeting = Segment { payload: b"220 ftp\r\n".to_vec(), ..seg(5000, 1000) };
        handover.queue.send(Handed::Segment(greeting.clone())).unwrap();
        assert_eq!(ended(&mut own, Duration::ZERO).len(), 1);
        assert_eq!(sent.take(), []);
        own.on_time(Instant::now() + DELAYED_ACK);
        own.flush();
        assert_eq!(sent.take(), [Out(".", 1000, 5009, vec![])]);
        // Sent again (our acknowledgement was lost): acknowledged at once, and once.
        handover.queue.send(Handed::Segment(greeting)).unwrap();
        own.take_queued();
        own.flush();
        assert_eq!(sent.take(), [Out(".", 1000, 5009, vec![])]);
        own.on_time(Instant::now() + 2 * DELAYED_ACK);
        own.flush();
        assert_eq!(sent.take(), []);
        // The conversation ends before a FIN's acknowledgement is due: the RST alone goes.
        handover.queue.send(Handed::Segment(Segment { fin: true, ..seg(5009, 1000) })).unwrap();
        own.receive(id, Duration::from_secs(1)).unwrap();
        assert_eq!(ended(&mut own, Duration::ZERO), [(id, "Received(Ok([]))".to_string())]);
        own.close(id);
        assert_eq!(sent.take(), [Out("R.", 1000, 5010, vec![])]);
        own.on_time(Instant::now() + 2 * DELAYED_ACK);
        own.flush();
        assert_eq!(sent.take(), []);
    }

    #[test]
    fn handshakes_pace_the_scan_and_one_that_waits_too_long_is_reset_and_opened_again_later() {
        let (mut own, handover, sent) = own_tcp();
        let peer_at = |i: usize| SocketAddr::new(peer().ip(), 1000 + i as u16);
        for i in 0..MOST_TAKEN {
            let full = handover.full();
            own.take_segment(Handed::Answer(Segment { peer: peer_at(i), ..syn_ack() }));
            own.take_queued();
            assert!(!full, "full at {i}");
        }
        assert!(handover.full());
        assert_eq!(sent.take(), []);
        // Its peer keeps it longer than it waited: reset, counted, and opened anew.
        own.on_time(Instant::now() + HALF_OPEN);
        own.take_queued();
        assert!(!handover.full());
        own.flush();
        assert_eq!(sent.take().len(), MOST_TAKEN);
        let mut stats = BannerStats::default();
        own.count(&mut stats);
        assert_eq!(stats.handshakes_expired, MOST_TAKEN as u64);
        own.open(peer_at(7), None, Duration::from_secs(1)).unwrap();
        let frames = sent.take();
        assert!(matches!(frames[..], [Out("S", _, 0, _)]), "{frames:?}");
    }
}
