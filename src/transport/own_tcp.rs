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
//! again with a SYN of its own when its turn comes.

use super::Transmit;
use super::stream::{Conversations, Ended};
use crate::probe::Templates;
use crate::probe::syn::Outgoing;
use crate::wire::connection::{Connection, Header};
use crate::wire::field::tcp;
use crate::wire::segment::Segment;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Conversations at once: as many as the connect stage has.
pub const MOST_TAKEN: usize = crate::engine::banners::MAX_CONNECTIONS as usize;
/// Connections held at once, taken by the stage or waiting for it.
const MOST_HELD: usize = 2 * MOST_TAKEN;
/// Peers whose connection was closed, refused or let go that are
/// remembered, with the address and port to open it again from: as many
/// as the banner stage may have waiting.
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
    fn window(&self) -> u16 {
        (INBOX - self.conn.unread().min(INBOX)) as u16
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
    /// Our address and port of the last `REMEMBERED` connections closed,
    /// refused or let go, by peer: where a conversation opens its
    /// connection again (with a SYN of its own, once there is room).
    closed: HashMap<SocketAddr, SocketAddr>,
    closed_order: std::collections::VecDeque<SocketAddr>,
    /// Taken connections whose step may have ended: only these are looked
    /// at, so a step costs the same with 8192 connections as with one.
    ready: HashSet<u32>,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    frames: Frames,
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

    fn reset(&mut self, conn: &Connection) {
        let header = conn.ack(0);
        self.write(conn.ours, conn.peer, header, tcp::RST | tcp::ACK, &[]);
    }
}

impl OwnTcp {
    /// Connections from the segments the receive thread queues on
    /// `segments`, with frames written from `templates` and sent through `tx`.
    pub fn new(segments: Receiver<Handed>, tx: Box<dyn Transmit>, templates: Templates, wait: Duration) -> OwnTcp {
        OwnTcp {
            segments,
            tx,
            wait,
            held: HashMap::new(),
            ids: HashMap::new(),
            next_id: 0,
            closed: HashMap::new(),
            closed_order: Default::default(),
            ready: HashSet::new(),
            timers: BinaryHeap::new(),
            frames: Frames { templates, out: Vec::new() },
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
        let limit = if h.id.is_some() { INBOX } else { INBOX / 2 };
        let connecting = h.conn.syn_sent;
        let answer = h.conn.on_segment(&s, limit);
        if let Some(id) = h.id {
            self.ready.insert(id);
        }
        if answer {
            if connecting && !h.conn.syn_sent {
                h.step = Step::Connected;
            }
            let header = h.conn.ack(h.window());
            h.advertised = header.window;
            self.frames.write(h.conn.ours, h.conn.peer, header, tcp::ACK, &[]);
        }
    }

    /// A SYN-ACK that the receive thread validated: the handshake ends now.
    fn open_from(&mut self, s: &Segment) {
        // Connections waiting for the stage leave room for those it takes.
        if self.held.len() - self.ids.len() >= MOST_HELD - MOST_TAKEN {
            self.remember(s.peer, s.ours);
            self.frames.refuse(s);
            return;
        }
        let conn = Connection::from_syn_ack(s);
        let now = Instant::now();
        let h = Held { conn, since: now, id: None, step: Step::Idle, sent_at: now, advertised: INBOX as u16 };
        let header = h.conn.ack(h.window());
        self.frames.write(s.ours, s.peer, header, tcp::ACK, &[]);
        self.held.insert(s.peer, h);
        self.timers.push(Reverse((now + self.wait, Timer::Expire(s.peer))));
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
    /// Remembers where a connection to `peer` left from, for it to be opened again.
    fn remember(&mut self, peer: SocketAddr, ours: SocketAddr) {
        if self.closed.insert(peer, ours).is_none() {
            self.closed_order.push_back(peer);
            if self.closed_order.len() > REMEMBERED
                && let Some(old) = self.closed_order.pop_front()
            {
                self.closed.remove(&old);
            }
        }
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
                    if h.conn.unacked().is_empty() || h.sent_at + RETRANSMIT > now {
                        continue;
                    }
                    h.sent_at = now;
                    self.frames.data(&h.conn, h.conn.unacknowledged(MSS, h.window()));
                    self.timers.push(Reverse((now + RETRANSMIT, Timer::Retransmit(peer))));
                }
                Timer::Expire(peer) => {
                    if self.held.get(&peer).is_some_and(|h| h.id.is_none() && h.since + self.wait <= now)
                        && let Some(h) = self.held.remove(&peer)
                    {
                        self.remember(h.conn.peer, h.conn.ours);
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

    /// Takes the connection to `to` that a SYN-ACK opened, or opens again
    /// one closed, from the address and port it had (ECONNABORTED: there
    /// was none, as it was refused or let go).
    fn open(&mut self, to: SocketAddr, _from: Option<IpAddr>, timeout: Duration) -> io::Result<u32> {
        self.take_queued();
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
                let ours = *self.closed.get(&to).ok_or_else(|| io::Error::from_raw_os_error(libc::ECONNABORTED))?;
                if self.held.len() >= MOST_HELD {
                    return Err(io::Error::from_raw_os_error(libc::EAGAIN));
                }
                let conn = Connection::connecting(to, ours, crate::random::u64() as u32);
                let now = Instant::now();
                let step = Step::Connecting { until: now + timeout };
                let h = Held { conn, since: now, id: Some(id), step, sent_at: now, advertised: INBOX as u16 };
                let header = h.conn.syn();
                self.frames.write(ours, to, header, tcp::SYN, &[]);
                self.held.insert(to, h);
                self.timers.push(Reverse((now + timeout, Timer::Step(id))));
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
        // What came before the read was asked for ends it at once.
        self.ready.insert(id);
        self.timers.push(Reverse((until, Timer::Step(id))));
        Ok(())
    }

    /// Ends the connection with an RST, whatever state it is in.
    fn close(&mut self, id: u32) {
        self.ready.remove(&id);
        if let Some(h) = self.ids.remove(&id).and_then(|peer| self.held.remove(&peer)) {
            self.remember(h.conn.peer, h.conn.ours);
            self.frames.reset(&h.conn);
            self.flush();
        }
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
                Step::Connecting { .. } if h.conn.reset => Ended::Connected(Err(libc::ECONNREFUSED)),
                Step::Connecting { until } if now >= until => Ended::Connected(Err(libc::ETIMEDOUT)),
                Step::Connecting { .. } => continue,
                Step::Connected => Ended::Connected(Ok(())),
                Step::Sent(n) => Ended::Sent(Ok(n)),
                Step::Receive { .. } if h.conn.unread() > 0 => {
                    let bytes = h.conn.read();
                    h.step = Step::Idle;
                    // The window we offered had shrunk: the peer learns it is open again.
                    if usize::from(h.advertised) < INBOX / 2 {
                        let header = h.conn.ack(h.window());
                        h.advertised = header.window;
                        self.frames.write(h.conn.ours, h.conn.peer, header, tcp::ACK, &[]);
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
