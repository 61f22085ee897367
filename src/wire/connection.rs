//! One TCP connection that prtip holds itself, from the SYN-ACK of its
//! probe on (banners over AF_XDP): sequence numbers, the in-order bytes
//! received and not yet read, the bytes sent and not yet acknowledged.
//! Pure: segments in, what to send out.

use super::segment::Segment;
use std::net::SocketAddr;

/// Whether sequence number `a` comes after `b` (RFC 1982 arithmetic).
fn after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// What a segment to send says, but for its addresses and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub seq: u32,
    pub ack: u32,
    pub window: u16,
}

/// How a segment taken in is to be acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Not at all: it brought nothing, or is not this connection's.
    Nothing,
    /// At once: a SYN-ACK, or bytes out of order, sent again or past the
    /// limit, whose acknowledgement tells the peer what we have.
    Now,
    /// In-order bytes or FIN, all kept: the acknowledgement may wait for a
    /// segment of ours to carry it.
    Later,
}

#[derive(Debug, Clone)]
pub struct Connection {
    pub peer: SocketAddr,
    pub ours: SocketAddr,
    /// The peer's SYN's sequence number, for its SYN-ACK sent again.
    their_syn: u32,
    snd_una: u32,
    snd_nxt: u32,
    rcv_nxt: u32,
    /// Bytes sent from `snd_una` on, not yet acknowledged.
    unacked: Vec<u8>,
    /// In-order bytes received and not yet read.
    inbox: Vec<u8>,
    /// The peer's FIN was received in order: its stream ended.
    pub fin: bool,
    /// The peer reset the connection.
    pub reset: bool,
    /// Our SYN waits for its SYN-ACK.
    pub syn_sent: bool,
    /// The peer acknowledged the byte `out_of_window` sent: no TCP stack
    /// does, a middlebox that acknowledges everything (and answers on every
    /// port) does.
    pub acks_unsent: bool,
    /// The sequence number of that byte, once sent.
    probe: Option<u32>,
}

/// How far past what we sent the byte `out_of_window` carries lies: outside
/// any receive window, so a TCP stack drops it and acknowledges what it has.
const OUT_OF_WINDOW: u32 = 1 << 30;

impl Connection {
    /// The connection a valid SYN-ACK opened: our ACK's sequence number is
    /// the cookie it acknowledged, plus one.
    pub fn from_syn_ack(s: &Segment) -> Connection {
        Connection {
            peer: s.peer,
            ours: s.ours,
            their_syn: s.seq,
            snd_una: s.ack,
            snd_nxt: s.ack,
            rcv_nxt: s.seq.wrapping_add(1),
            unacked: Vec::new(),
            inbox: Vec::new(),
            fin: false,
            reset: false,
            syn_sent: false,
            acks_unsent: false,
            probe: None,
        }
    }

    /// A connection we open again from `ours`, our SYN's sequence number
    /// `iss` (a conversation that must start over, as TLS).
    pub fn connecting(peer: SocketAddr, ours: SocketAddr, iss: u32) -> Connection {
        Connection {
            peer,
            ours,
            their_syn: 0,
            snd_una: iss,
            snd_nxt: iss.wrapping_add(1),
            rcv_nxt: 0,
            unacked: Vec::new(),
            inbox: Vec::new(),
            fin: false,
            reset: false,
            syn_sent: true,
            acks_unsent: false,
            probe: None,
        }
    }

    /// Our SYN, to be sent.
    pub fn syn(&self) -> Header {
        Header { seq: self.snd_una, ack: 0, window: 0 }
    }

    /// A segment for one byte far past anything sent: a TCP stack drops it,
    /// a peer that acknowledges everything acknowledges it, and is known so.
    pub fn out_of_window(&mut self, window: u16) -> Header {
        let seq = self.snd_nxt.wrapping_add(OUT_OF_WINDOW);
        self.probe = Some(seq);
        self.header_at(seq, window)
    }

    /// Takes in a segment of this connection, keeping at most `limit` bytes
    /// unread; says how it is to be acknowledged. Bytes out of
    /// order are not kept (the ACK tells the peer what is missing), nor is
    /// anything that acknowledges bytes never sent: a peer that
    /// acknowledges everything gets nothing from it.
    pub fn on_segment(&mut self, s: &Segment, limit: usize) -> Answer {
        if self.syn_sent {
            // Only the answer to our SYN counts, which acknowledges it.
            if s.ack != self.snd_nxt {
                return Answer::Nothing;
            }
            self.reset |= s.rst;
            if s.syn && !s.rst {
                (self.syn_sent, self.their_syn, self.rcv_nxt, self.snd_una) =
                    (false, s.seq, s.seq.wrapping_add(1), s.ack);
                return Answer::Now;
            }
            return Answer::Nothing;
        }
        if s.rst {
            // RFC 5961: only an RST at exactly the next expected byte ends it.
            self.reset |= s.seq == self.rcv_nxt;
            return Answer::Nothing;
        }
        if s.syn {
            // Its SYN-ACK again: our ACK was lost.
            return if s.seq == self.their_syn { Answer::Now } else { Answer::Nothing };
        }
        if after(s.ack, self.snd_nxt) {
            // Exactly the probe's acknowledgement, in its place in the peer's
            // stream: nothing else marks a peer, however it strayed here.
            self.acks_unsent |= self.probe.is_some_and(|p| s.ack == p.wrapping_add(1)) && s.seq == self.rcv_nxt;
            return Answer::Nothing;
        }
        if after(s.ack, self.snd_una) {
            let acked = s.ack.wrapping_sub(self.snd_una) as usize;
            self.unacked.drain(..acked.min(self.unacked.len()));
            self.snd_una = s.ack;
        }
        if s.payload.is_empty() && !s.fin {
            return Answer::Nothing;
        }
        let had = self.rcv_nxt.wrapping_sub(s.seq) as i32;
        if had < 0 || had as usize > s.payload.len() {
            return Answer::Now;
        }
        let new = &s.payload[had as usize..];
        let take = new.len().min(limit.saturating_sub(self.inbox.len()));
        self.inbox.extend_from_slice(&new[..take]);
        self.rcv_nxt = self.rcv_nxt.wrapping_add(take as u32);
        let ends = s.fin && take == new.len() && !self.fin;
        if ends {
            self.fin = true;
            self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
        }
        // Only what is new, in order and kept whole may wait: a segment sent
        // again means our acknowledgement was lost.
        match had == 0 && take == new.len() && (take > 0 || ends) {
            true => Answer::Later,
            false => Answer::Now,
        }
    }

    /// The bytes received and not yet read, handed over.
    pub fn read(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.inbox)
    }

    pub fn unread(&self) -> usize {
        self.inbox.len()
    }

    /// Whether the peer sent anything in order (bytes or its FIN).
    pub fn heard(&self) -> bool {
        !self.syn_sent && self.rcv_nxt != self.their_syn.wrapping_add(1)
    }

    /// Queues `data` to be sent; returns the headers of its segments, at
    /// most `mss` bytes each, in the order of `data`.
    pub fn send(&mut self, data: &[u8], mss: usize, window: u16) -> Vec<(Header, std::ops::Range<usize>)> {
        let start = self.unacked.len();
        self.unacked.extend_from_slice(data);
        let seq = self.snd_nxt;
        self.snd_nxt = self.snd_nxt.wrapping_add(data.len() as u32);
        chunks(seq, start, data.len(), mss).map(|(s, r)| (self.header_at(s, window), r)).collect()
    }

    /// The segments of every byte sent and not yet acknowledged, to be sent again.
    pub fn unacknowledged(&self, mss: usize, window: u16) -> Vec<(Header, std::ops::Range<usize>)> {
        chunks(self.snd_una, 0, self.unacked.len(), mss).map(|(s, r)| (self.header_at(s, window), r)).collect()
    }

    /// The bytes sent and not acknowledged; the ranges above index them.
    pub fn unacked(&self) -> &[u8] {
        &self.unacked
    }

    /// An ACK of everything received in order.
    pub fn ack(&self, window: u16) -> Header {
        self.header_at(self.snd_nxt, window)
    }

    fn header_at(&self, seq: u32, window: u16) -> Header {
        Header { seq, ack: self.rcv_nxt, window }
    }
}

/// `len` bytes from sequence number `seq` (at `start` in the unacknowledged
/// bytes) cut into pieces of at most `mss`.
fn chunks(seq: u32, start: usize, len: usize, mss: usize) -> impl Iterator<Item = (u32, std::ops::Range<usize>)> {
    (0..len)
        .step_by(mss.max(1))
        .map(move |off| (seq.wrapping_add(off as u32), start + off..start + (off + mss).min(len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(seq: u32, ack: u32, payload: &[u8]) -> Segment {
        Segment::for_test(seq, ack, payload)
    }

    fn opened() -> Connection {
        // Our cookie was 999: the SYN-ACK acknowledges 1000; the peer's SYN was 4999.
        Connection::from_syn_ack(&Segment { syn: true, ..seg(4999, 1000, b"") })
    }

    #[test]
    fn keeps_in_order_bytes_once_and_acknowledges_them() {
        let mut c = opened();
        assert_eq!(c.ack(100), Header { seq: 1000, ack: 5000, window: 100 });
        assert_eq!(c.on_segment(&seg(5000, 1000, b"SSH-2.0"), 1024), Answer::Later);
        // Sent again with more: only the new part is kept.
        assert_eq!(c.on_segment(&seg(5000, 1000, b"SSH-2.0-x\r\n"), 1024), Answer::Now);
        // Ahead of what we have: nothing kept, but answered with what we have.
        assert_eq!(c.on_segment(&seg(5100, 1000, b"later"), 1024), Answer::Now);
        assert_eq!(c.read(), b"SSH-2.0-x\r\n");
        assert_eq!(c.ack(100).ack, 5011);
        // A FIN after the bytes, sent twice: the stream ends once.
        assert_eq!(c.on_segment(&Segment { fin: true, ..seg(5011, 1000, b"") }, 1024), Answer::Later);
        assert_eq!(c.on_segment(&Segment { fin: true, ..seg(5011, 1000, b"") }, 1024), Answer::Now);
        assert!(c.fin);
        assert_eq!(c.ack(100).ack, 5012);
    }

    #[test]
    fn keeps_no_more_than_its_limit_and_no_fin_past_bytes_it_refused() {
        let mut c = opened();
        assert_eq!(c.on_segment(&Segment { fin: true, ..seg(5000, 1000, b"0123456789") }, 4), Answer::Now);
        assert_eq!((c.unread(), c.fin, c.ack(0).ack), (4, false, 5004));
    }

    #[test]
    fn sends_in_pieces_and_forgets_what_is_acknowledged() {
        let mut c = opened();
        let sent = c.send(b"GET / HTTP/1.0\r\n\r\n", 8, 64);
        let seqs: Vec<(u32, std::ops::Range<usize>)> = sent.iter().map(|(h, r)| (h.seq, r.clone())).collect();
        assert_eq!(seqs, [(1000, 0..8), (1008, 8..16), (1016, 16..18)]);
        assert_eq!(c.on_segment(&seg(5000, 1010, b""), 64), Answer::Nothing);
        assert_eq!(c.unacked(), b"/1.0\r\n\r\n");
        let again: Vec<u32> = c.unacknowledged(8, 64).iter().map(|(h, _)| h.seq).collect();
        assert_eq!(again, [1010]);
    }

    #[test]
    fn ignores_acknowledgements_of_what_was_never_sent_and_resets_out_of_place() {
        let mut c = opened();
        assert_eq!(c.on_segment(&seg(5000, 1001, b"data"), 64), Answer::Nothing);
        assert_eq!(c.unread(), 0);
        assert_eq!(c.on_segment(&Segment { rst: true, ..seg(5001, 1000, b"") }, 64), Answer::Nothing);
        assert!(!c.reset);
        assert_eq!(c.on_segment(&Segment { rst: true, ..seg(5000, 1000, b"") }, 64), Answer::Nothing);
        assert!(c.reset);
    }

    #[test]
    fn a_connection_opened_again_takes_only_the_syn_ack_of_its_syn() {
        let (peer, ours) = ("10.201.0.7:22".parse().unwrap(), "10.200.0.1:61001".parse().unwrap());
        let mut c = Connection::connecting(peer, ours, 70_000);
        assert_eq!(c.syn().seq, 70_000);
        assert_eq!(c.on_segment(&Segment { syn: true, ..seg(300, 1000, b"") }, 64), Answer::Nothing);
        assert!(c.syn_sent);
        assert_eq!(c.on_segment(&Segment { syn: true, ..seg(300, 70_001, b"") }, 64), Answer::Now);
        assert!(!c.syn_sent);
        assert_eq!(c.ack(9), Header { seq: 70_001, ack: 301, window: 9 });
        let mut refused = Connection::connecting(peer, ours, 5);
        assert_eq!(refused.on_segment(&Segment { rst: true, ..seg(0, 6, b"") }, 64), Answer::Nothing);
        assert!(refused.reset);
    }

    #[test]
    fn a_peer_that_acknowledges_the_byte_past_its_window_is_known_so() {
        let mut c = opened();
        // Before the probe, an acknowledgement of it proves nothing.
        assert_eq!(c.on_segment(&seg(5000, 1000 + (1 << 30) + 1, b""), 64), Answer::Nothing);
        assert!(!c.acks_unsent);
        let probe = c.out_of_window(64);
        assert_eq!(probe.seq, 1000 + (1 << 30));
        // A TCP stack acknowledges what it has, however often: nothing is learnt.
        assert_eq!(c.on_segment(&seg(5000, 1000, b""), 64), Answer::Nothing);
        assert!(!c.acks_unsent);
        // An acknowledgement past what was sent, but short of the probe: not
        // proof (a segment of another connection may have strayed here), and not taken.
        assert_eq!(c.on_segment(&seg(5000, 1000 + 100, b""), 64), Answer::Nothing);
        assert!(!c.acks_unsent);
        c.send(b"GET /", 8, 64);
        // Out of place in the peer's stream: not its answer.
        assert_eq!(c.on_segment(&seg(4000, probe.seq + 1, b""), 64), Answer::Nothing);
        assert!(!c.acks_unsent);
        assert_eq!(c.on_segment(&seg(5000, probe.seq + 1, b"any"), 64), Answer::Nothing);
        assert!(c.acks_unsent);
        assert_eq!(c.unread(), 0);
    }

    #[test]
    fn answers_its_syn_ack_sent_again_and_only_its_own() {
        let mut c = opened();
        assert_eq!(c.on_segment(&Segment { syn: true, ..seg(4999, 1000, b"") }, 64), Answer::Now);
        assert_eq!(c.on_segment(&Segment { syn: true, ..seg(7, 1000, b"") }, 64), Answer::Nothing);
    }
}
