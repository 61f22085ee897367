//! The send window of one transmit lane. Pure: the caller passes the time in.
//!
//! A lane sends its probes (`seq` 0, 1, 2, ... of its share of the order)
//! once each, in order, and keeps every probe it sent in the window until
//! the probe is concluded: answered, or silent through all its tries. A
//! probe's retry is sent when its own try times out (`Timeouts::retry_after`),
//! between fresh probes; its silence becomes a result once its last try had
//! `Timeouts::reply_timeout` to be answered. Replies are deduplicated exactly
//! while their probe is in the window; one that comes after its probe left
//! is late, and not a result (the probe was concluded without it).
//!
//! The window's trailing edge (`trail`) is where a resumed scan starts: every
//! probe before it is concluded and reported. What the window holds is what
//! is in flight, so memory is bounded by the send rate times how long a probe
//! stays (its retries' waits and the reply timeout), not by the number of
//! targets or of replies.
//!
//! Silence proves nothing while this host drops frames: tries whose replies
//! may have been dropped (`mark_lost`) are tried again without spending the
//! retry budget, up to `retries` such tries; a probe whose last try is marked
//! is concluded undecided rather than silent.

use std::collections::VecDeque;

/// How long a try waits for its reply, in nanoseconds, by the round trips
/// measured so far (`engine::state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// After this, an unanswered try with budget left is tried again.
    pub retry_after: u64,
    /// After this, the last try's silence is the probe's result.
    pub reply_timeout: u64,
}

/// A try to send: the `attempt`-th (0 is the first) of the lane's probe `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Try {
    pub seq: u64,
    pub attempt: u32,
}

/// A probe that left the window without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Silent {
    pub seq: u64,
    /// Its last try may have lost its reply on this host.
    pub undecided: bool,
}

/// Where a reply's probe stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Not sent yet: a reply to it is a forgery.
    Unsent,
    /// Concluded and out of the window: the reply is late.
    Left,
    /// Never sent, and never will be (a skipped host, a prior answer).
    Skipped,
    /// In flight, `tries` sent so far, the first and the latest stamped at
    /// those send times (microseconds on the scan's wall clock).
    Sent { tries: u32, first_us: u64, last_us: u64, answered: bool },
}

/// What became of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The first answer to its probe: a result.
    New,
    Duplicate,
    /// Its probe left the window (or was never sent): not a result.
    Late,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    InFlight,
    /// Answered at this time (ns), when the receive side read the reply.
    Answered(u64),
    Concluded,
    Skipped,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    state: State,
    /// Tries sent, and of those, the ones sent for a try marked lost.
    tries: u32,
    free_tries: u32,
    /// The latest try may have lost its reply (or was lost itself).
    lost: bool,
    first_us: u64,
    last_us: u64,
}

/// A try sent: its probe, which try, and when (ns).
#[derive(Debug, Clone, Copy)]
struct Sent {
    seq: u64,
    attempt: u32,
    at: u64,
}

#[derive(Debug)]
pub struct Window {
    /// The lane's probe count, and how many of them were sent a first try.
    total: u64,
    lead: u64,
    /// The seq of `slots[0]`.
    trail: u64,
    slots: VecDeque<Slot>,
    /// The most slots held at once: fresh probes wait while it is full.
    capacity: usize,
    retries: u32,
    /// Tries that may still be retried, in send order (so in deadline order).
    waiting: VecDeque<Sent>,
    /// Last tries waiting for their reply timeout, in send order.
    settling: VecDeque<Sent>,
    /// Tries to send again at once: marked lost after they timed out.
    resend: VecDeque<u64>,
    /// The last probe sent anything, and when (ns).
    last_send: u64,
}

impl Window {
    /// A window over a lane of `total` probes, starting at `start` (a
    /// resumed scan's), with `retries` retries per silent probe.
    pub fn new(total: u64, start: u64, retries: u32, capacity: usize) -> Self {
        let start = start.min(total);
        Window {
            total,
            lead: start,
            trail: start,
            slots: VecDeque::new(),
            capacity: capacity.max(1),
            retries,
            waiting: VecDeque::new(),
            settling: VecDeque::new(),
            resend: VecDeque::new(),
            last_send: 0,
        }
    }

    /// Every probe before this is concluded.
    pub fn trail(&self) -> u64 {
        self.trail
    }

    /// Every probe was sent and concluded (or skipped).
    pub fn is_done(&self) -> bool {
        self.lead == self.total && self.slots.is_empty()
    }

    /// Probes held: sent and not yet out of the window.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The bytes the window holds.
    pub fn bytes(&self) -> usize {
        self.slots.capacity() * size_of::<Slot>()
            + (self.waiting.capacity() + self.settling.capacity()) * size_of::<Sent>()
            + self.resend.capacity() * size_of::<u64>()
    }

    /// When the last try of anything was sent (ns).
    pub fn last_send(&self) -> u64 {
        self.last_send
    }

    fn slot(&self, seq: u64) -> Option<&Slot> {
        self.slots.get(usize::try_from(seq.checked_sub(self.trail)?).ok()?)
    }

    fn slot_mut(&mut self, seq: u64) -> Option<&mut Slot> {
        self.slots.get_mut(usize::try_from(seq.checked_sub(self.trail)?).ok()?)
    }

    /// The next try to send at `now` (ns), stamped `stamp_us`: a retry that
    /// is due first, then a fresh probe while the window has room. Fresh
    /// probes that `skip` names are passed over, never sent. None: nothing
    /// to send before `next_due`.
    pub fn next(&mut self, now: u64, stamp_us: u64, t: Timeouts, mut skip: impl FnMut(u64) -> bool) -> Option<Try> {
        if let Some(attempt) = self.due_retry(now, t) {
            return Some(self.record(attempt, now, stamp_us));
        }
        while self.lead < self.total && self.slots.len() < self.capacity {
            let seq = self.lead;
            self.lead += 1;
            if skip(seq) {
                self.slots.push_back(Slot {
                    state: State::Skipped,
                    tries: 0,
                    free_tries: 0,
                    lost: false,
                    first_us: 0,
                    last_us: 0,
                });
                continue;
            }
            self.slots.push_back(Slot {
                state: State::InFlight,
                tries: 0,
                free_tries: 0,
                lost: false,
                first_us: stamp_us,
                last_us: stamp_us,
            });
            return Some(self.record(Try { seq, attempt: 0 }, now, stamp_us));
        }
        None
    }

    /// Records a try as sent.
    fn record(&mut self, t: Try, now: u64, stamp_us: u64) -> Try {
        let retries = self.retries;
        let slot = self.slot_mut(t.seq).expect("a try of a probe in the window");
        if t.attempt > 0 && slot.lost && slot.free_tries < retries {
            // A retry for a try marked lost does not spend the budget.
            slot.free_tries += 1;
        }
        slot.tries = t.attempt + 1;
        slot.lost = false;
        slot.last_us = stamp_us;
        let sent = Sent { seq: t.seq, attempt: t.attempt, at: now };
        // With retries, every try waits to be retried, and those that cannot
        // be go on to wait for their result: both queues stay in send order.
        if retries > 0 {
            self.waiting.push_back(sent);
        } else {
            self.settling.push_back(sent);
        }
        self.last_send = now;
        t
    }

    /// Whether `sent` is still its probe's latest try, unanswered.
    fn current(&self, sent: &Sent) -> bool {
        self.slot(sent.seq).is_some_and(|s| s.state == State::InFlight && s.tries == sent.attempt + 1)
    }

    /// Whether the latest try of this probe may be retried when it times out.
    fn retriable(&self, slot: &Slot) -> bool {
        let spent = slot.tries - slot.free_tries;
        spent <= self.retries || slot.lost && slot.free_tries < self.retries
    }

    /// Moves the tries timed out by `now` that cannot be retried on to wait
    /// for their result, and drops the stale ones (answered, or retried).
    fn expire(&mut self, now: u64, t: Timeouts) {
        while let Some(&sent) = self.waiting.front() {
            if self.current(&sent) {
                let slot = self.slot(sent.seq).expect("current");
                if now < sent.at.saturating_add(t.retry_after) || self.retriable(slot) {
                    return;
                }
                self.settling.push_back(sent);
            }
            self.waiting.pop_front();
        }
    }

    /// A retry due at `now`, if any.
    fn due_retry(&mut self, now: u64, t: Timeouts) -> Option<Try> {
        while let Some(seq) = self.resend.pop_front() {
            if let Some(slot) = self.slot(seq).filter(|s| s.state == State::InFlight) {
                return Some(Try { seq, attempt: slot.tries });
            }
        }
        self.expire(now, t);
        let sent = *self.waiting.front()?;
        if now < sent.at.saturating_add(t.retry_after) {
            return None;
        }
        self.waiting.pop_front();
        Some(Try { seq: sent.seq, attempt: sent.attempt + 1 })
    }

    /// When something is next due: a retry, or a last try's result (ns).
    pub fn next_due(&self, t: Timeouts) -> Option<u64> {
        let retry = self.waiting.front().map(|s| s.at.saturating_add(t.retry_after));
        let result = self.settling.front().map(|s| s.at.saturating_add(t.reply_timeout));
        match (retry, result) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Where probe `seq` stands, for checking a reply to it.
    pub fn lookup(&self, seq: u64) -> Lookup {
        if seq >= self.lead {
            return Lookup::Unsent;
        }
        match self.slot(seq) {
            None => Lookup::Left,
            Some(slot) => match slot.state {
                State::Skipped => Lookup::Skipped,
                State::InFlight | State::Answered(_) | State::Concluded => Lookup::Sent {
                    tries: slot.tries,
                    first_us: slot.first_us,
                    last_us: slot.last_us,
                    answered: matches!(slot.state, State::Answered(_)),
                },
            },
        }
    }

    /// A valid reply to probe `seq`, read at `now` (ns).
    pub fn answer(&mut self, seq: u64, now: u64) -> Verdict {
        match self.slot_mut(seq) {
            Some(slot) if slot.state == State::InFlight => {
                slot.state = State::Answered(now);
                Verdict::New
            }
            Some(Slot { state: State::Answered(_), .. }) => Verdict::Duplicate,
            _ => Verdict::Late,
        }
    }

    /// Marks the unanswered tries sent at or after `since` (ns): their
    /// replies, or they themselves, may have been dropped on this host.
    pub fn mark_lost(&mut self, since: u64) {
        let recent = |q: &VecDeque<Sent>| q.iter().rev().take_while(|s| s.at >= since).copied().collect::<Vec<_>>();
        for sent in recent(&self.waiting).into_iter().chain(recent(&self.settling)) {
            if self.current(&sent) {
                self.slot_mut(sent.seq).expect("current").lost = true;
            }
        }
    }

    /// Concludes what is due by `caught_up` (ns): the time before which
    /// every reply that arrived has been read and handed on. A last try's
    /// silence needs its reply timeout to have passed by then, and an
    /// answered probe its reply handed on; the window then moves past them.
    /// The probes concluded silent go to `silent`.
    pub fn settle(&mut self, caught_up: u64, t: Timeouts, silent: &mut Vec<Silent>) {
        self.expire(caught_up, t);
        while let Some(&sent) = self.settling.front() {
            if !self.current(&sent) {
                self.settling.pop_front();
                continue;
            }
            if caught_up < sent.at.saturating_add(t.reply_timeout) {
                break;
            }
            self.settling.pop_front();
            let retries = self.retries;
            let slot = self.slot_mut(sent.seq).expect("current");
            if slot.lost && slot.free_tries < retries {
                self.resend.push_back(sent.seq);
                continue;
            }
            slot.state = State::Concluded;
            silent.push(Silent { seq: sent.seq, undecided: slot.lost });
        }
        while let Some(front) = self.slots.front() {
            match front.state {
                State::Concluded | State::Skipped => {}
                State::Answered(at) if at < caught_up => {}
                State::InFlight | State::Answered(_) => break,
            }
            self.slots.pop_front();
            self.trail += 1;
        }
    }

    /// Stops where it stands: nothing more is sent, and what is in flight is
    /// not concluded (a resumed scan sends it again from the trail).
    pub fn stop(&mut self) {
        self.total = self.lead;
        self.waiting.clear();
        self.resend.clear();
        self.settling.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const T: Timeouts = Timeouts { retry_after: 50 * MS, reply_timeout: 250 * MS };

    fn all_sent(w: &mut Window, now: u64) -> Vec<Try> {
        std::iter::from_fn(|| w.next(now, now / 1000, T, |_| false)).collect()
    }

    #[test]
    fn a_silent_probe_is_retried_once_its_try_times_out_then_concluded_after_the_reply_timeout() {
        let mut w = Window::new(2, 0, 1, 16);
        assert_eq!(all_sent(&mut w, 0), [Try { seq: 0, attempt: 0 }, Try { seq: 1, attempt: 0 }]);
        assert_eq!(w.answer(1, 10 * MS), Verdict::New);
        assert_eq!(w.next(49 * MS, 0, T, |_| false), None);
        assert_eq!(w.next_due(T), Some(50 * MS));
        assert_eq!(w.next(50 * MS, 0, T, |_| false), Some(Try { seq: 0, attempt: 1 }));
        assert_eq!(w.next(60 * MS, 0, T, |_| false), None);
        let mut silent = Vec::new();
        w.settle(299 * MS, T, &mut silent);
        assert!(silent.is_empty());
        assert_eq!(w.trail(), 0);
        w.settle(300 * MS, T, &mut silent);
        assert_eq!(silent, [Silent { seq: 0, undecided: false }]);
        assert_eq!(w.trail(), 2);
        assert!(w.is_done());
        assert_eq!(w.answer(0, 301 * MS), Verdict::Late);
    }

    #[test]
    fn an_answer_leaves_the_window_only_once_it_was_handed_on() {
        let mut w = Window::new(1, 0, 0, 16);
        all_sent(&mut w, 0);
        assert_eq!(w.answer(0, 5 * MS), Verdict::New);
        assert_eq!(w.answer(0, 6 * MS), Verdict::Duplicate);
        let mut silent = Vec::new();
        w.settle(5 * MS, T, &mut silent);
        assert_eq!(w.trail(), 0, "the reply was read at 5 ms: the reading of it may still be under way");
        w.settle(5 * MS + 1, T, &mut silent);
        assert_eq!((w.trail(), silent.len()), (1, 0));
    }

    #[test]
    fn the_window_holds_at_most_its_capacity_and_fresh_probes_wait() {
        let mut w = Window::new(10, 0, 0, 3);
        assert_eq!(all_sent(&mut w, 0).len(), 3);
        w.answer(0, MS);
        let mut silent = Vec::new();
        w.settle(2 * MS, T, &mut silent);
        assert_eq!(all_sent(&mut w, 2 * MS), [Try { seq: 3, attempt: 0 }]);
        assert_eq!(w.len(), 3);
    }

    #[test]
    fn skipped_probes_are_never_sent_nor_concluded() {
        let mut w = Window::new(5, 0, 1, 16);
        let sent: Vec<u64> = std::iter::from_fn(|| w.next(0, 0, T, |seq| seq % 2 == 1)).map(|t| t.seq).collect();
        assert_eq!(sent, [0, 2, 4]);
        assert_eq!(w.lookup(1), Lookup::Skipped);
        for seq in [0, 2, 4] {
            w.answer(seq, MS);
        }
        let mut silent = Vec::new();
        w.settle(2 * MS, T, &mut silent);
        assert!(silent.is_empty());
        assert!(w.is_done());
    }

    #[test]
    fn a_try_marked_lost_is_tried_again_for_free_and_undecided_when_the_free_tries_run_out() {
        // One retry: two regular tries, and one free try for a lost one.
        let mut w = Window::new(1, 0, 1, 16);
        all_sent(&mut w, 0);
        w.mark_lost(0);
        assert_eq!(w.next(50 * MS, 0, T, |_| false), Some(Try { seq: 0, attempt: 1 }), "free");
        assert_eq!(w.next(100 * MS, 0, T, |_| false), Some(Try { seq: 0, attempt: 2 }), "the regular retry");
        w.mark_lost(100 * MS);
        assert_eq!(w.next(150 * MS, 0, T, |_| false), None, "no free try left");
        let mut silent = Vec::new();
        w.settle(350 * MS, T, &mut silent);
        assert_eq!(silent, [Silent { seq: 0, undecided: true }]);
    }

    #[test]
    fn without_retries_a_lost_try_is_undecided() {
        let mut w = Window::new(1, 0, 0, 16);
        all_sent(&mut w, 0);
        w.mark_lost(0);
        let mut silent = Vec::new();
        w.settle(250 * MS, T, &mut silent);
        assert_eq!(silent, [Silent { seq: 0, undecided: true }]);
    }

    #[test]
    fn a_last_try_marked_lost_while_settling_is_sent_again() {
        let mut w = Window::new(1, 0, 1, 16);
        all_sent(&mut w, 0);
        assert_eq!(w.next(50 * MS, 0, T, |_| false), Some(Try { seq: 0, attempt: 1 }));
        w.mark_lost(50 * MS);
        let mut silent = Vec::new();
        w.settle(300 * MS, T, &mut silent);
        assert!(silent.is_empty());
        assert_eq!(w.next(300 * MS, 0, T, |_| false), Some(Try { seq: 0, attempt: 2 }));
        w.settle(550 * MS, T, &mut silent);
        assert_eq!(silent, [Silent { seq: 0, undecided: false }]);
    }

    #[test]
    fn only_tries_sent_since_the_loss_are_marked() {
        let mut w = Window::new(2, 0, 0, 16);
        w.next(0, 0, T, |_| false);
        w.next(20 * MS, 0, T, |_| false);
        w.mark_lost(10 * MS);
        let mut silent = Vec::new();
        w.settle(270 * MS, T, &mut silent);
        assert_eq!(silent, [Silent { seq: 0, undecided: false }, Silent { seq: 1, undecided: true }]);
    }

    #[test]
    fn a_resumed_window_starts_at_its_trail_and_a_stopped_one_keeps_what_was_in_flight() {
        let mut w = Window::new(10, 7, 0, 16);
        assert_eq!(w.trail(), 7);
        assert_eq!(all_sent(&mut w, 0).iter().map(|t| t.seq).collect::<Vec<_>>(), [7, 8, 9]);
        w.answer(7, MS);
        w.stop();
        let mut silent = Vec::new();
        w.settle(u64::MAX, T, &mut silent);
        assert!(silent.is_empty(), "an interrupted probe is not concluded");
        assert_eq!(w.trail(), 8);
        assert_eq!(w.next(u64::MAX, 0, T, |_| false), None);
    }

    #[test]
    fn lookups_tell_unsent_from_left_and_carry_the_send_stamps() {
        let mut w = Window::new(3, 0, 1, 16);
        w.next(0, 100, T, |_| false);
        assert_eq!(w.lookup(1), Lookup::Unsent);
        w.next(50 * MS, 200, T, |_| false);
        assert_eq!(w.lookup(0), Lookup::Sent { tries: 2, first_us: 100, last_us: 200, answered: false });
        w.answer(0, 51 * MS);
        let mut silent = Vec::new();
        w.settle(52 * MS, T, &mut silent);
        assert_eq!(w.lookup(0), Lookup::Left);
    }
}
