//! The banner stage's backend over AF_XDP: conversations on connections
//! prtip holds itself. The XDP program keeps every segment to the scan's
//! ports from the kernel, which has no socket for them and would reset
//! them; the receive thread hands each on (a probe's SYN-ACK, validated by
//! its cookie, then the rest), and this completes the handshake at once,
//! in the scan's pass, with no connect of its own. Frames leave through a
//! `Transmit` of their own.
//!
//! A connection is kept from its SYN-ACK until the stage has asked what
//! answers there, or for `wait` where the stage does not take it; at most
//! `MOST_HELD` at once, each keeping at most `INBOX` unread bytes, so a
//! peer that sends forever, or a /16 of them, holds memory to a fixed cap.
//! A SYN-ACK past the cap is reset, and the stage opens that connection
//! again with a SYN of its own when its turn comes, as it does any whose
//! SYN-ACK never reached here (a full queue), from one of the scan's ports.

use super::Transmit;
use super::stream::{Conversations, Ended};
use crate::engine::banners::BannerStats;
use crate::probe::Templates;
use crate::probe::syn::Outgoing;
use crate::wire::connection::{Connection, Header};
use crate::wire::field::tcp;
use crate::wire::segment::Segment;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Conversations at once: as many as the connect stage has.
pub const MOST_TAKEN: usize = crate::engine::banners::MAX_CONNECTIONS as usize;
/// Connections held at once, taken by the stage or waiting for it. Few
/// wait: a server behind many addresses (as the lab's) has room for only
/// so many connections that say nothing, as it has for a connect stage's.
const MOST_HELD: usize = 2 * MOST_TAKEN;
/// Peers that reset their connection before the stage took it that are
/// remembered: as many as the banner stage may have waiting.
const REMEMBERED: usize = crate::engine::banners::QUEUE;
/// Segments the receive thread may queue for this backend (some 12 MiB
/// of payloads at most, whoever sends them); more are dropped there, and
/// the peer sends them again.
pub const SEGMENT_QUEUE: usize = 8192;
/// Unread bytes kept per connection: what the window we advertise offers.
const INBOX: usize = 4096;
/// Unread bytes kept per connection the stage has not taken yet (a
/// server's greeting fits): its window closes there, and a peer that
/// sends forever waits for the stage like any other.
const UNTAKEN_INBOX: usize = 1024;
/// The largest payload we send in one segment: fits any path of IPv6's
/// minimum MTU.
const MSS: usize = 1200;
/// How long sent bytes wait for their acknowledgement before they are sent again.
const RETRANSMIT: Duration = Duration::from_millis(250);

/// What the receive thread hands over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handed {
    /// A SYN-ACK (or RST) whose cookie was valid: only such a SYN-ACK
    /// opens a connection here.
    Answer(Segment),
    /// Any other segment to the scan's ports, checked by the connection it is for.
    Segment(Segment),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Idle,
    /// Our SYN of a connection opened again waits until then.
    Connecting {
        until: Instant,
    },
    Connected,
    Sent(usize),
    Receive {
        until: Instant,
    },
}

struct Held {
    conn: Connection,
    since: Instant,
    /// The stage's number for it, once the stage took it.
    id: Option<u32>,
    step: Step,
    /// When bytes not yet acknowledged were last sent.
    sent_at: Instant,
    /// The window the last segment we sent advertised.
    advertised: u16,
}

impl Held {
    fn inbox(&self) -> usize {
        if self.id.is_some() { INBOX } else { UNTAKEN_INBOX }
    }

    fn window(&self) -> u16 {
        (self.inbox() - self.conn.unread().min(self.inbox())) as u16
    }

    /// Whether the window opened enough since we last advertised it for
    /// the peer to be told (RFC 1122 4.2.3.3).
    fn window_opened(&self) -> bool {
        usize::from(self.window().saturating_sub(self.advertised)) >= MSS.min(self.inbox() / 2)
    }
}

pub struct OwnTcp {
    segments: Receiver<Handed>,
    tx: Box<dyn Transmit>,
    /// How long a connection waits for the stage to take it.
    wait: Duration,
    held: HashMap<SocketAddr, Held>,
    ids: HashMap<u32, SocketAddr>,
    next_id: u32,
    /// The scan's source ports: those the XDP program steers here.
    ports: (u16, u16),
    /// Peers that reset their connection before the stage took it: the
    /// stage learns the port refused it. Any other connection not held
    /// when the stage asks for it is opened with a SYN of our own.
    reset: Recent,
    /// Taken connections whose step may have ended: only these are looked
    /// at, so a step costs the same with 8192 connections as with one.
    ready: HashSet<u32>,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    frames: Frames,
    /// SYN-ACKs reset as `MOST_HELD` connections were held, and
    /// connections let go as the stage did not take them in time.
    refused: u64,
    expired: u64,
}

/// A set of the last `cap` peers put in; one taken out leaves room.
struct Recent {
    map: HashMap<SocketAddr, u64>,
    /// Keys in the order put in, each with its number: one put in again
    /// since is not taken out with its older number.
    order: VecDeque<(SocketAddr, u64)>,
    next: u64,
    cap: usize,
}

impl Recent {
    fn new(cap: usize) -> Self {
        Recent { map: HashMap::new(), order: VecDeque::new(), next: 0, cap }
    }

    fn insert(&mut self, key: SocketAddr) {
        self.map.insert(key, self.next);
        self.order.push_back((key, self.next));
        self.next += 1;
        // Keys taken out since still have their place: the map never holds more than `cap`.
        while self.order.len() > self.cap {
            if let Some((old, n)) = self.order.pop_front()
                && self.map.get(&old) == Some(&n)
            {
                self.map.remove(&old);
            }
        }
    }

    fn take(&mut self, key: &SocketAddr) -> bool {
        self.map.remove(key).is_some()
    }
}

/// What is due at a time; checked against the connection when it comes,
/// as the connection may have moved on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// A step of a taken connection ends (its receive's or connect's timeout).
    Step(u32),
    Retransmit(SocketAddr),
    /// A connection the stage did not take is let go.
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

    /// The segments of `pieces` of what `conn` sent and is not yet acknowledged.
    fn data(&mut self, conn: &Connection, pieces: Vec<(Header, std::ops::Range<usize>)>) {
        for (header, range) in pieces {
            self.write(conn.ours, conn.peer, header, tcp::ACK | tcp::PSH, &conn.unacked()[range]);
        }
    }

    /// The RST that refuses segment `s`'s SYN-ACK.
    fn refuse(&mut self, s: &Segment) {
        let header = Header { seq: s.ack, ack: 0, window: 0 };
        self.write(s.ours, s.peer, header, tcp::RST, &[]);
    }

    /// The ACK that ends `conn`'s handshake, and the byte past its window
    /// that tells a peer which acknowledges everything from a TCP stack.
    fn established(&mut self, conn: &Connection, window: u16) {
        self.write(conn.ours, conn.peer, conn.ack(window), tcp::ACK, &[]);
        self.write(conn.ours, conn.peer, conn.out_of_window(window), tcp::ACK, &[0]);
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
    pub fn new(
        segments: Receiver<Handed>,
        tx: Box<dyn Transmit>,
        templates: Templates,
        ports: (u16, u16),
        wait: Duration,
    ) -> OwnTcp {
        OwnTcp {
            segments,
            tx,
            wait,
            held: HashMap::new(),
            ids: HashMap::new(),
            next_id: 0,
            ports,
            reset: Recent::new(REMEMBERED),
            ready: HashSet::new(),
            timers: BinaryHeap::new(),
            frames: Frames { templates, out: Vec::new() },
            refused: 0,
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
            match (answer && !self.held.contains_key(&s.peer), s.syn) {
                (true, true) => self.open_from(&s),
                // A SYN-ACK of no connection held (another try's port, or
                // one that ended): reset, or the peer sends it for a minute.
                (_, true) => self.frames.refuse(&s),
                // A segment of a connection already ended: our RST ends it there too.
                (_, false) => {}
            }
            return;
        };
        let connecting = h.conn.syn_sent;
        let answer = h.conn.on_segment(&s, h.inbox());
        match h.id {
            Some(id) => {
                self.ready.insert(id);
            }
            // Reset before the stage took it: it learns so when it comes.
            None if h.conn.reset => {
                self.held.remove(&s.peer);
                self.reset.insert(s.peer);
                return;
            }
            None => {}
        }
        if answer {
            h.advertised = h.window();
            if connecting && !h.conn.syn_sent {
                h.step = Step::Connected;
                self.frames.established(&h.conn, h.advertised);
            } else {
                self.frames.write(h.conn.ours, h.conn.peer, h.conn.ack(h.advertised), tcp::ACK, &[]);
            }
        }
    }

    /// A SYN-ACK that the receive thread validated: the handshake ends now.
    fn open_from(&mut self, s: &Segment) {
        // Connections waiting for the stage leave room for those it takes.
        if self.held.len() - self.ids.len() >= MOST_HELD - MOST_TAKEN {
            self.refused += 1;
            self.frames.refuse(s);
            return;
        }
        let conn = Connection::from_syn_ack(s);
        let now = Instant::now();
        let mut h = Held { conn, since: now, id: None, step: Step::Idle, sent_at: now, advertised: 0 };
        h.advertised = h.window();
        self.frames.established(&h.conn, h.advertised);
        self.held.insert(s.peer, h);
        self.timers.push(Reverse((now + self.wait, Timer::Expire(s.peer))));
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

    fn take_queued(&mut self) {
        while let Ok(s) = self.segments.try_recv() {
            self.take_segment(s);
        }
    }

    fn flush(&mut self) {
        if self.frames.out.is_empty() {
            return;
        }
        let frames: Vec<&[u8]> = self.frames.out.iter().map(Vec::as_slice).collect();
        // A frame the kernel refused is sent again, or ends by the conversation's timeout.
        let _ = self.tx.transmit(&frames);
        self.frames.out.clear();
    }
    /// Sends again what waits too long for its acknowledgement; lets go
    /// of connections the stage never took; marks the steps whose time is up.
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
                        false => self.frames.data(&h.conn, h.conn.unacknowledged(MSS, h.window())),
                    }
                    self.timers.push(Reverse((now + RETRANSMIT, Timer::Retransmit(peer))));
                }
                Timer::Expire(peer) => {
                    if self.held.get(&peer).is_some_and(|h| h.id.is_none() && h.since + self.wait <= now)
                        && let Some(h) = self.held.remove(&peer)
                    {
                        self.expired += 1;
                        self.frames.reset(&h.conn);
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

    /// Takes the connection to `to` that a SYN-ACK opened, or opens one
    /// with a SYN of our own where none is held (ECONNREFUSED: the peer
    /// reset the one it had before the stage took it).
    fn open(&mut self, to: SocketAddr, _from: Option<IpAddr>, timeout: Duration) -> io::Result<u32> {
        self.take_queued();
        // What the queued segments asked for goes now, whether this opens or not.
        self.flush();
        let id = self.next_id;
        let step = match self.held.get_mut(&to) {
            Some(h) if h.id.is_none() && !h.conn.reset => {
                h.id = Some(id);
                h.step = Step::Connected;
                self.ready.insert(id);
                Step::Connected
            }
            Some(_) => return Err(io::Error::from_raw_os_error(libc::ECONNABORTED)),
            None => {
                if self.reset.take(&to) {
                    return Err(io::Error::from_raw_os_error(libc::ECONNREFUSED));
                }
                if self.held.len() >= MOST_HELD {
                    return Err(io::Error::from_raw_os_error(libc::EAGAIN));
                }
                let ours = self.source_for(to);
                let conn = Connection::connecting(to, ours, crate::random::u64() as u32);
                let now = Instant::now();
                let step = Step::Connecting { until: now + timeout };
                let h = Held { conn, since: now, id: Some(id), step, sent_at: now, advertised: INBOX as u16 };
                let header = h.conn.syn();
                self.frames.write(ours, to, header, tcp::SYN, &[]);
                self.held.insert(to, h);
                self.timers.push(Reverse((now + timeout, Timer::Step(id))));
                self.timers.push(Reverse((now + RETRANSMIT, Timer::Retransmit(to))));
                step
            }
        };
        tracing::trace!(%to, ?step, "connection taken");
        self.next_id = self.next_id.wrapping_add(1);
        self.ids.insert(id, to);
        self.flush();
        Ok(id)
    }

    /// A connect scan's socket: never handed to this backend, which serves SYN scans.
    fn adopt(&mut self, _socket: OwnedFd) -> io::Result<u32> {
        Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
    }

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
        self.frames.data(&h.conn, pieces);
        self.flush();
        Ok(())
    }

    fn receive(&mut self, id: u32, timeout: Duration) -> io::Result<()> {
        let peer = *self.ids.get(&id).ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))?;
        let h = self.held.get_mut(&peer).expect("a taken connection is held");
        let until = Instant::now() + timeout;
        h.step = Step::Receive { until };
        // Taken, it keeps more than it offered while it waited.
        if h.window_opened() {
            h.advertised = h.window();
            self.frames.write(h.conn.ours, h.conn.peer, h.conn.ack(h.advertised), tcp::ACK, &[]);
            self.flush();
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
        stats.held_refused = self.refused;
        stats.held_expired = self.expired;
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
                Step::Connected if h.conn.acks_unsent => Ended::Connected(Err(libc::EPROTO)),
                Step::Sent(_) if h.conn.acks_unsent => Ended::Sent(Err(libc::EPROTO)),
                Step::Receive { .. } if h.conn.acks_unsent => Ended::Received(Err(libc::EPROTO)),
                Step::Connecting { .. } if h.conn.reset => Ended::Connected(Err(libc::ECONNREFUSED)),
                Step::Connecting { until } if now >= until => Ended::Connected(Err(libc::ETIMEDOUT)),
                Step::Connecting { .. } => continue,
                Step::Connected => Ended::Connected(Ok(())),
                Step::Sent(n) => Ended::Sent(Ok(n)),
                Step::Receive { .. } if h.conn.unread() > 0 => {
                    let bytes = h.conn.read();
                    h.step = Step::Idle;
                    if h.window_opened() {
                        h.advertised = h.window();
                        self.frames.write(h.conn.ours, h.conn.peer, h.conn.ack(h.advertised), tcp::ACK, &[]);
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
        Ok(())
    }
}

impl Drop for OwnTcp {
    /// Connections still held end with an RST, not with a peer left waiting.
    fn drop(&mut self) {
        for (_, h) in self.held.drain() {
            self.frames.reset(&h.conn);
        }
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::ScanType;
    use crate::transport::TransportError;
    use crate::wire::sources::Sources;
    use etherparse::{SlicedPacket, TransportSlice};
    use std::sync::mpsc::{self, SyncSender};
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
                    assert_eq!((t.source_port(), t.destination_port()), (61001, 22));
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
        Segment {
            peer: peer(),
            ours: "10.200.0.1:61001".parse().unwrap(),
            seq,
            ack,
            syn: false,
            fin: false,
            rst: false,
            window: 512,
            payload: Vec::new(),
        }
    }

    /// Our probe's cookie was 999: its SYN-ACK acknowledges 1000.
    fn syn_ack() -> Segment {
        Segment { syn: true, ..seg(4999, 1000) }
    }

    fn own_tcp() -> (OwnTcp, SyncSender<Handed>, Sent) {
        let (handed, segments) = mpsc::sync_channel(64);
        let sent = Sent::default();
        let sources = Sources::one("10.200.0.1".parse().unwrap());
        let templates = Templates::new(ScanType::Syn, [1; 6], [2; 6], sources, &[]).unwrap();
        let ports = (61001, 61001);
        (OwnTcp::new(segments, Box::new(sent.clone()), templates, ports, Duration::from_secs(5)), handed, sent)
    }

    /// The steps that end within `wait`, as the stage sees them.
    fn ended(own: &mut OwnTcp, wait: Duration) -> Vec<(u32, String)> {
        let mut ended = Vec::new();
        own.complete(wait, &mut |id, e| ended.push((id, format!("{e:?}")))).unwrap();
        ended
    }

    const PAST: u32 = 1000 + (1 << 30);

    #[test]
    fn a_syn_ack_is_acknowledged_with_a_byte_past_the_window_and_a_peer_acknowledging_it_is_no_service() {
        let (mut own, handed, sent) = own_tcp();
        handed.send(Handed::Answer(syn_ack())).unwrap();
        let id = own.open(peer(), None, Duration::from_secs(1)).unwrap();
        assert_eq!(sent.take(), [Out(".", 1000, 5000, vec![]), Out(".", PAST, 5000, vec![0])]);
        assert_eq!(ended(&mut own, Duration::ZERO), [(id, "Connected(Ok(()))".to_string())]);
        own.receive(id, Duration::from_secs(1)).unwrap();
        // A TCP stack drops the byte and acknowledges what it has: nothing ends.
        handed.send(Handed::Segment(seg(5000, 1000))).unwrap();
        assert_eq!(ended(&mut own, Duration::ZERO), []);
        handed.send(Handed::Segment(Segment { payload: b"SSH-2.0-x\r\n".to_vec(), ..seg(5000, PAST + 1) })).unwrap();
        assert_eq!(ended(&mut own, Duration::ZERO), [(id, format!("Received(Err({}))", libc::EPROTO))]);
    }

    #[test]
    fn a_connection_reset_before_the_stage_takes_it_is_let_go_and_refused_when_asked_for() {
        let (mut own, handed, sent) = own_tcp();
        handed.send(Handed::Answer(syn_ack())).unwrap();
        handed.send(Handed::Segment(Segment { rst: true, ..seg(5000, 0) })).unwrap();
        own.take_queued();
        assert!(own.held.is_empty());
        let refused = own.open(peer(), None, Duration::from_secs(1)).unwrap_err();
        assert_eq!(refused.raw_os_error(), Some(libc::ECONNREFUSED));
        // The handshake's ACK and probe byte only: an RST ends nothing twice.
        assert_eq!(sent.take().len(), 2);
    }

    #[test]
    fn our_syn_of_a_connection_opened_again_is_sent_again_until_its_syn_ack_comes() {
        let (mut own, handed, sent) = own_tcp();
        handed.send(Handed::Answer(syn_ack())).unwrap();
        let first = own.open(peer(), None, Duration::from_secs(1)).unwrap();
        own.close(first);
        let id = own.open(peer(), None, Duration::from_secs(1)).unwrap();
        let frames = sent.take();
        let Out("S", iss, 0, _) = frames[frames.len() - 1] else { panic!("no SYN: {frames:?}") };
        assert_eq!(frames[frames.len() - 2].0, "R.");
        own.on_time(Instant::now() + RETRANSMIT);
        own.flush();
        assert_eq!(sent.take(), [Out("S", iss, 0, vec![])]);
        // Only the SYN-ACK of that SYN opens it.
        handed.send(Handed::Segment(Segment { syn: true, ..seg(700, iss.wrapping_add(2)) })).unwrap();
        assert_eq!(ended(&mut own, Duration::ZERO), []);
        handed.send(Handed::Segment(Segment { syn: true, ..seg(700, iss.wrapping_add(1)) })).unwrap();
        assert_eq!(ended(&mut own, Duration::ZERO), [(id, "Connected(Ok(()))".to_string())]);
        assert_eq!(
            sent.take(),
            [Out(".", iss.wrapping_add(1), 701, vec![]), Out(".", iss.wrapping_add(1 + (1 << 30)), 701, vec![0])]
        );
        own.on_time(Instant::now() + 2 * RETRANSMIT);
        own.flush();
        assert_eq!(sent.take(), []);
    }

    #[test]
    fn syn_acks_past_the_connections_held_are_reset_counted_and_opened_again_later() {
        let (mut own, handed, sent) = own_tcp();
        let waiting = MOST_HELD - MOST_TAKEN;
        for i in 0..=waiting {
            let peer = SocketAddr::new(peer().ip(), 1000 + i as u16);
            let s = Segment { peer, ..syn_ack() };
            own.take_segment(Handed::Answer(s));
        }
        let _ = handed;
        assert_eq!(own.held.len(), waiting);
        let mut stats = BannerStats::default();
        own.count(&mut stats);
        assert_eq!((stats.held_refused, stats.held_expired), (1, 0));
        own.flush();
        let frames = std::mem::take(&mut *sent.0.lock().unwrap());
        assert_eq!(frames.len(), 2 * waiting + 1, "an ACK and a byte past the window each, and one RST");
        // Its turn come, it is opened with a SYN of our own.
        let last = SocketAddr::new(peer().ip(), 1000 + waiting as u16);
        own.open(last, None, Duration::from_secs(1)).unwrap();
        let frames = std::mem::take(&mut *sent.0.lock().unwrap());
        let p = SlicedPacket::from_ethernet(&frames[0]).unwrap();
        let Some(TransportSlice::Tcp(syn)) = p.transport else { panic!("not TCP") };
        assert_eq!((frames.len(), syn.syn(), syn.ack(), syn.destination_port()), (1, true, false, last.port()));
    }
}
