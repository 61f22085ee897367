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
//! is in flight, 16 bytes a probe, so memory is bounded by the send rate
//! times how long a probe stays (its retries' waits and the reply timeout),
//! not by the number of targets or of replies.
//!
//! Retries need no queue: the tries of one rank (every probe's second try,
//! say) go out in the order of the tries before them, which is the probes'
//! order, so one cursor per rank of try finds the next that is due.
//!
//! Silence proves nothing while this host drops frames: a try sent while
//! frames were being lost (`mark_lost`) is tried again without spending the
//! retry budget, up to `retries` such tries; a probe whose last try was lost
//! so is concluded undecided rather than silent.

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
    /// In the window, `tries` sent so far, the first and the latest stamped
    /// at those send times (microseconds on the scan's wall clock, modulo
    /// 2^32: the tick and the timestamp echo a reply brings back are less).
    Sent { tries: u32, first_us: u32, last_us: u32, answered: bool },
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
#[repr(u8)]
enum State {
    InFlight,
    /// Its last try was lost on this host and is to be sent again at once.
    Resend,
    Answered,
    Skipped,
}

/// One probe in the window: 16 bytes.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Send stamps of the first and the latest try (µs, wall clock, mod 2^32).
    first_us: u32,
    last_us: u32,
    /// When the latest try was sent or, answered, when the reply was read:
    /// milliseconds on the caller's clock, mod 2^32 (49 days).
    at_ms: u32,
    /// Tries sent, and of those, the ones that replaced a lost try.
    tries: u8,
    free_tries: u8,
    state: State,
}

/// Milliseconds of `ns`, modulo 2^32: a slot's times. A window holds
/// nothing for 49 days, so differences of two are unambiguous.
fn ms(ns: u64) -> u32 {
    (ns / 1_000_000) as u32
}

/// Milliseconds from `from_ms` to `to` (ns) as the slots count them; 0 if
/// `to` is before.
fn since(to: u64, from_ms: u32) -> u64 {
    let diff = ms(to).wrapping_sub(from_ms);
    if diff > u32::MAX / 2 { 0 } else { u64::from(diff) }
}

/// Whether `wait` (ns) has passed by `now` since `from_ms`: both times are
/// whole milliseconds, so a wait ends a millisecond late, never early.
fn waited(now: u64, from_ms: u32, wait: u64) -> bool {
    since(now, from_ms) > wait.div_ceil(1_000_000)
}

/// The time (ns, on `now`'s clock) at which `waited` first holds.
fn wait_end(now: u64, from_ms: u32, wait: u64) -> u64 {
    let left = (wait.div_ceil(1_000_000) + 1).saturating_sub(since(now, from_ms));
    (now / 1_000_000 + left) * 1_000_000
}

/// Whether a try sent at `sent_ns` has had `wait` by `now` as the window
/// counts it (in whole milliseconds), so that `settle` concludes it.
pub fn timed_out(now: u64, sent_ns: u64, wait: u64) -> bool {
    waited(now, ms(sent_ns), wait)
}

/// Fresh probes passed over at most between two `allow_skips`.
const SKIPS_PER_CALL: usize = 4096;

/// Drop spans kept at most: the oldest go first, as the tries they may
/// concern are the first to leave the window.
const MAX_LOSSES: usize = 4096;

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
    /// Per rank of try `a` (index `a - 1`), the seq below which every probe
    /// was given its try `a`, or passed over.
    cursors: Vec<u64>,
    /// Spans of time (ms, not wrapped) in which this host lost frames: a
    /// try sent in one may have lost its reply. Sorted, disjoint.
    losses: Vec<(u64, u64)>,
    /// Probes whose last try was lost after it timed out, to send again at once.
    resend: VecDeque<u64>,
    /// The seq below which every probe was looked at for a last try lost
    /// after it timed out, since the latest drop span was marked.
    resend_scan: u64,
    /// Fresh probes `next` may still pass over before `allow_skips` again.
    skips_left: usize,
    /// Nothing more is sent: no retry, no resend.
    stopped: bool,
    /// When the last try of anything was sent (ns).
    last_send: u64,
}

impl Window {
    /// A window over a lane of `total` probes, starting at `start` (a
    /// resumed scan's), with `retries` retries per silent probe.
    pub fn new(total: u64, start: u64, retries: u32, capacity: usize) -> Self {
        let start = start.min(total);
        // A try is regular or replaces a lost one: at most 2 x retries after the first.
        let retries = retries.min(u32::from(u8::MAX) / 2);
        Window {
            total,
            lead: start,
            trail: start,
            slots: VecDeque::new(),
            capacity: capacity.max(1),
            retries,
            cursors: vec![start; 2 * retries as usize],
            losses: Vec::new(),
            resend: VecDeque::new(),
            resend_scan: start,
            skips_left: SKIPS_PER_CALL,
            stopped: false,
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
            + self.losses.capacity() * size_of::<(u64, u64)>()
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

    /// Whether a try sent at `at_ms` may have lost its reply on this host.
    /// The spans' times are whole; a slot's, modulo 2^32: the span that
    /// counts is the one nearest the newest.
    fn lost(&self, at_ms: u32) -> bool {
        let Some(&(_, newest)) = self.losses.last() else { return false };
        // The slot's time as whole milliseconds, at most 2^31 before the newest span's end.
        let behind = u64::from((newest as u32).wrapping_sub(at_ms));
        let at = newest.checked_sub(behind).filter(|_| behind <= u64::from(u32::MAX / 2));
        let Some(at) = at else { return false };
        let i = self.losses.partition_point(|&(_, to)| to < at);
        self.losses.get(i).is_some_and(|&(from, _)| from <= at)
    }

    /// Whether this probe has regular tries left.
    fn budget_left(&self, slot: &Slot) -> bool {
        u32::from(slot.tries - slot.free_tries) <= self.retries
    }

    /// Whether this probe's latest try may be followed by another when it
    /// times out: regular tries left, or free ones for a lost try.
    fn retriable(&self, slot: &Slot) -> bool {
        self.budget_left(slot) || u32::from(slot.free_tries) < self.retries && self.lost(slot.at_ms)
    }

    /// The next try to send at `now` (ns), stamped `stamp_us`: a retry that
    /// is due first, then a fresh probe while the window has room. Fresh
    /// probes that `skip` names are passed over, never sent, at most
    /// `SKIPS_PER_CALL` between calls to `allow_skips` (the caller holds a
    /// lock the receive side waits on). None: nothing to send now;
    /// `fresh_waiting` says whether fresh probes are left to try at once.
    pub fn next(&mut self, now: u64, stamp_us: u64, t: Timeouts, mut skip: impl FnMut(u64) -> bool) -> Option<Try> {
        if let Some(attempt) = self.due_retry(now, t) {
            return Some(self.record(attempt, now, stamp_us));
        }
        while self.lead < self.total && self.slots.len() < self.capacity && self.skips_left > 0 {
            let seq = self.lead;
            self.lead += 1;
            let state = if skip(seq) { State::Skipped } else { State::InFlight };
            self.skips_left -= usize::from(state == State::Skipped);
            self.slots.push_back(Slot { first_us: 0, last_us: 0, at_ms: 0, tries: 0, free_tries: 0, state });
            if state == State::InFlight {
                return Some(self.record(Try { seq, attempt: 0 }, now, stamp_us));
            }
        }
        None
    }

    /// Lets `next` pass over `SKIPS_PER_CALL` more skipped probes: once per
    /// hold of the lock the window is behind.
    pub fn allow_skips(&mut self) {
        self.skips_left = SKIPS_PER_CALL;
    }

    /// Whether fresh probes are left that the window has room for.
    pub fn fresh_waiting(&self) -> bool {
        !self.stopped && self.lead < self.total && self.slots.len() < self.capacity
    }

    /// Records a try as sent.
    fn record(&mut self, t: Try, now: u64, stamp_us: u64) -> Try {
        let lost = t.attempt > 0 && self.slot(t.seq).is_some_and(|s| self.lost(s.at_ms));
        let retries = self.retries;
        let slot = self.slot_mut(t.seq).expect("a try of a probe in the window");
        // A try that replaces a lost one does not spend the budget.
        if lost && u32::from(slot.free_tries) < retries {
            slot.free_tries += 1;
        }
        slot.tries = t.attempt as u8 + 1;
        slot.state = State::InFlight;
        slot.at_ms = ms(now);
        if t.attempt == 0 {
            slot.first_us = stamp_us as u32;
        }
        slot.last_us = stamp_us as u32;
        self.last_send = now;
        t
    }

    /// The next probe at or after the cursor of try rank `a` that waits for
    /// that try: sent `a` tries, unanswered. Passes over the others.
    fn candidate(&mut self, a: usize) -> Option<u64> {
        // A rank of try follows the one before it; the first follows the fresh probes.
        let bound = if a == 1 { self.lead } else { self.cursors[a - 2] };
        let cursor = &mut self.cursors[a - 1];
        *cursor = (*cursor).max(self.trail);
        while *cursor < bound {
            let i = (*cursor - self.trail) as usize;
            let slot = self.slots[i];
            if slot.state == State::InFlight && usize::from(slot.tries) == a {
                return Some(*cursor);
            }
            *cursor += 1;
        }
        None
    }

    /// A retry due at `now`, if any: one of a try lost after it timed out
    /// first, then the first that is due of each rank of try.
    fn due_retry(&mut self, now: u64, t: Timeouts) -> Option<Try> {
        if self.stopped {
            return None;
        }
        while let Some(seq) = self.resend.pop_front() {
            if let Some(slot) = self.slot(seq).filter(|s| s.state == State::Resend) {
                return Some(Try { seq, attempt: u32::from(slot.tries) });
            }
        }
        for a in 1..=self.cursors.len() {
            while let Some(seq) = self.candidate(a) {
                let slot = *self.slot(seq).expect("a candidate is in the window");
                if !waited(now, slot.at_ms, t.retry_after) {
                    break;
                }
                self.cursors[a - 1] += 1;
                if self.retriable(&slot) {
                    return Some(Try { seq, attempt: a as u32 });
                }
                // No try left: it waits at its place for its result (`settle`).
            }
        }
        None
    }

    /// When something is next due after `now` (ns): a retry, or the result
    /// of the probe at the trail.
    pub fn next_due(&mut self, now: u64, t: Timeouts) -> Option<u64> {
        let mut due = None::<u64>;
        for a in 1..=self.cursors.len() {
            // One with no try left only waits, at its place, for its result.
            if let Some(slot) = self.candidate(a).and_then(|seq| self.slot(seq)).filter(|s| self.retriable(s)) {
                let d = wait_end(now, slot.at_ms, t.retry_after);
                due = Some(due.map_or(d, |x| x.min(d)));
            }
        }
        if let Some(front) = self.slots.front().filter(|s| s.state == State::InFlight && !self.budget_left(s)) {
            let d = wait_end(now, front.at_ms, t.reply_timeout);
            due = Some(due.map_or(d, |x| x.min(d)));
        }
        due
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
                State::InFlight | State::Resend | State::Answered => Lookup::Sent {
                    tries: u32::from(slot.tries),
                    first_us: slot.first_us,
                    last_us: slot.last_us,
                    answered: slot.state == State::Answered,
                },
            },
        }
    }

    /// A valid reply to probe `seq`, read at `now` (ns).
    pub fn answer(&mut self, seq: u64, now: u64) -> Verdict {
        match self.slot_mut(seq) {
            Some(slot) if matches!(slot.state, State::InFlight | State::Resend) => {
                slot.state = State::Answered;
                slot.at_ms = ms(now);
                Verdict::New
            }
            Some(Slot { state: State::Answered, .. }) => Verdict::Duplicate,
            _ => Verdict::Late,
        }
    }

    /// Records that this host lost frames: the tries sent from `since` to
    /// `now` (ns) may have lost their replies, or been lost themselves.
    pub fn mark_lost(&mut self, since: u64, now: u64) {
        let (mut from, mut to) = (since / 1_000_000, (now / 1_000_000).max(since / 1_000_000));
        // A span reaching back over the last ones absorbs them: the spans stay disjoint.
        while let Some(&(f, t)) = self.losses.last() {
            if t.saturating_add(1) < from {
                break;
            }
            (from, to) = (from.min(f), to.max(t));
            self.losses.pop();
        }
        self.losses.push((from, to));
        if self.losses.len() > MAX_LOSSES {
            self.losses.remove(0);
        }
        // Tries looked at before may have been sent in the new span.
        self.resend_scan = self.trail;
    }

    /// Concludes what is due by `caught_up` (ns): the time before which
    /// every reply that arrived has been read and handed on. The probe at
    /// the trail leaves the window once its last try's silence had the reply
    /// timeout by then (it goes to `silent`, while it holds fewer than
    /// `room`), or once its reply was read before then; the trail moves on
    /// past it. Every probe whose last try timed out but was sent while this
    /// host lost frames is sent again (`resend_lost`).
    ///
    /// `room` is what the caller's results may still grow by: a silent
    /// probe waits in the window, 16 bytes, rather than as a result
    /// nobody takes yet.
    pub fn settle(&mut self, caught_up: u64, t: Timeouts, silent: &mut Vec<Silent>, room: usize) {
        self.resend_lost(caught_up, t);
        while let Some(&front) = self.slots.front() {
            match front.state {
                State::Skipped => {}
                State::Answered if since(caught_up, front.at_ms) > 0 => {}
                State::Answered | State::Resend => return,
                State::InFlight => {
                    // With regular tries left, its retry comes (its rank's cursor
                    // stops at it); a stopped window keeps it unconcluded.
                    if self.budget_left(&front) || !waited(caught_up, front.at_ms, t.reply_timeout) {
                        return;
                    }
                    if self.resendable(&front) {
                        // Marked lost since `resend_lost` looked at it: sent again before it is concluded.
                        self.slots[0].state = State::Resend;
                        self.resend.push_back(self.trail);
                        return;
                    }
                    if silent.len() >= room {
                        return;
                    }
                    silent.push(Silent { seq: self.trail, undecided: self.lost(front.at_ms) });
                }
            }
            self.slots.pop_front();
            self.trail += 1;
        }
    }

    /// Whether a probe whose regular tries are spent, and whose last one
    /// timed out, is to be sent again: that try was sent while this host
    /// lost frames, and free tries are left.
    fn resendable(&self, slot: &Slot) -> bool {
        !self.stopped && u32::from(slot.free_tries) < self.retries && self.lost(slot.at_ms)
    }

    /// Marks for resending, all at once, the probes from the trail on whose
    /// regular tries are spent and whose last try timed out by `caught_up`
    /// while it was in a span of lost frames (found lost only after its
    /// retry cursor passed it). Resent one by one as each reached the
    /// trail, a drop episode's silent probes would each hold the trail a
    /// reply timeout. Each probe is looked at once per drop span marked;
    /// the look stops at the first probe whose tries are not spent or
    /// whose last try has not timed out.
    fn resend_lost(&mut self, caught_up: u64, t: Timeouts) {
        if self.stopped || self.losses.is_empty() {
            return;
        }
        let mut seq = self.resend_scan.max(self.trail);
        while let Some(&slot) = self.slot(seq) {
            if slot.state == State::InFlight {
                if self.budget_left(&slot) || !waited(caught_up, slot.at_ms, t.reply_timeout) {
                    break;
                }
                if self.resendable(&slot) {
                    self.slot_mut(seq).expect("in the window").state = State::Resend;
                    self.resend.push_back(seq);
                }
            }
            seq += 1;
        }
        self.resend_scan = seq;
    }

    /// Stops where it stands: nothing more is sent, and a probe with tries
    /// left is not concluded (a resumed scan sends it again from the trail).
    pub fn stop(&mut self) {
        self.total = self.lead;
        self.stopped = true;
        self.resend.clear();
        for slot in &mut self.slots {
            if slot.state == State::Resend {
                slot.state = State::InFlight;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashMap};

    const MS: u64 = 1_000_000;
    const T: Timeouts = Timeouts { retry_after: 50 * MS, reply_timeout: 250 * MS };

    fn all_sent(w: &mut Window, now: u64) -> Vec<Try> {
        std::iter::from_fn(|| w.next(now, now / 1000, T, |_| false)).collect()
    }

    fn settled(w: &mut Window, caught_up: u64) -> Vec<Silent> {
        let mut silent = Vec::new();
        w.settle(caught_up, T, &mut silent, usize::MAX);
        silent
    }

    #[test]
    fn silent_probes_wait_in_the_window_while_the_caller_has_no_room() {
        let mut w = Window::new(4, 0, 0, 16);
        assert_eq!(all_sent(&mut w, 0).len(), 4);
        let after = 300 * MS;
        let mut silent = Vec::new();
        w.settle(after, T, &mut silent, 0);
        assert!(silent.is_empty());
        assert_eq!((w.trail(), w.len()), (0, 4), "nothing concluded, nothing lost");
        w.settle(after, T, &mut silent, 1);
        assert_eq!(silent, [Silent { seq: 0, undecided: false }]);
        silent.clear();
        // An answer that comes meanwhile is still an answer.
        assert_eq!(w.answer(2, after), Verdict::New);
        w.settle(after + MS, T, &mut silent, 1);
        assert_eq!(silent, [Silent { seq: 1, undecided: false }]);
        assert_eq!(w.trail(), 3, "the answered probe needs no room; the next silent one waits for it");
        silent.clear();
        w.settle(after + 2 * MS, T, &mut silent, usize::MAX);
        assert_eq!(silent, [Silent { seq: 3, undecided: false }]);
        assert!(w.is_done());
    }

    /// The stop path asks `timed_out` whether `settle` will conclude the last
    /// try: it must not say so a millisecond early.
    #[test]
    fn a_try_times_out_when_the_window_concludes_it() {
        let t = Timeouts { retry_after: 250 * MS + 300_000, reply_timeout: 250 * MS + 300_000 };
        let mut w = Window::new(1, 0, 0, 16);
        let sent = 1_000 * MS + 100_000;
        w.next(sent, 0, t, |_| false);
        let mut silent = Vec::new();
        // 251.4 ms later: past the timeout and a millisecond in ns, not in whole milliseconds.
        let early = 1_251 * MS + 500_000;
        assert!(!timed_out(early, sent, t.reply_timeout));
        w.settle(early, t, &mut silent, usize::MAX);
        assert!(silent.is_empty());
        let due = 1_252 * MS;
        assert!(timed_out(due, sent, t.reply_timeout));
        w.settle(due, t, &mut silent, usize::MAX);
        assert_eq!(silent.len(), 1);
    }

    #[test]
    fn a_slot_is_16_bytes() {
        assert_eq!(size_of::<Slot>(), 16);
    }

    #[test]
    fn a_silent_probe_is_retried_once_its_try_times_out_then_concluded_after_the_reply_timeout() {
        let mut w = Window::new(2, 0, 1, 16);
        assert_eq!(all_sent(&mut w, 0), [Try { seq: 0, attempt: 0 }, Try { seq: 1, attempt: 0 }]);
        assert_eq!(w.answer(1, 10 * MS), Verdict::New);
        assert_eq!(w.next(50 * MS, 0, T, |_| false), None, "due after 50 ms, not at it");
        assert_eq!(w.next_due(50 * MS, T), Some(51 * MS));
        assert_eq!(w.next(51 * MS, 0, T, |_| false), Some(Try { seq: 0, attempt: 1 }));
        assert_eq!(w.next(60 * MS, 0, T, |_| false), None);
        assert_eq!(w.next_due(60 * MS, T), Some(302 * MS), "the result of the last try");
        assert!(settled(&mut w, 301 * MS).is_empty());
        assert_eq!(w.trail(), 0);
        assert_eq!(settled(&mut w, 302 * MS), [Silent { seq: 0, undecided: false }]);
        assert_eq!(w.trail(), 2);
        assert!(w.is_done());
        assert_eq!(w.answer(0, 303 * MS), Verdict::Late);
        assert_eq!(w.lookup(0), Lookup::Left);
    }

    #[test]
    fn an_answer_leaves_the_window_only_once_it_was_handed_on() {
        let mut w = Window::new(1, 0, 0, 16);
        all_sent(&mut w, 0);
        assert_eq!(w.answer(0, 5 * MS), Verdict::New);
        assert_eq!(w.answer(0, 6 * MS), Verdict::Duplicate);
        assert!(settled(&mut w, 5 * MS).is_empty());
        assert_eq!(w.trail(), 0, "the reply was read at 5 ms: the reading of it may still be under way");
        assert!(settled(&mut w, 6 * MS).is_empty());
        assert_eq!(w.trail(), 1);
    }

    #[test]
    fn the_window_holds_at_most_its_capacity_and_fresh_probes_wait() {
        let mut w = Window::new(10, 0, 0, 3);
        assert_eq!(all_sent(&mut w, 0).len(), 3);
        w.answer(0, MS);
        settled(&mut w, 2 * MS);
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
        assert!(settled(&mut w, 2 * MS).is_empty());
        assert!(w.is_done());
    }

    #[test]
    fn a_try_sent_while_frames_were_lost_is_tried_again_for_free_and_undecided_when_the_free_tries_run_out() {
        // One retry: two regular tries, and one free try for a lost one.
        let mut w = Window::new(1, 0, 1, 16);
        all_sent(&mut w, 0);
        w.mark_lost(0, 5 * MS);
        assert_eq!(w.next(60 * MS, 0, T, |_| false), Some(Try { seq: 0, attempt: 1 }), "free");
        assert_eq!(w.next(120 * MS, 0, T, |_| false), Some(Try { seq: 0, attempt: 2 }), "the regular retry");
        w.mark_lost(110 * MS, 125 * MS);
        assert_eq!(w.next(180 * MS, 0, T, |_| false), None, "no free try left");
        assert_eq!(settled(&mut w, 400 * MS), [Silent { seq: 0, undecided: true }]);
    }

    #[test]
    fn without_retries_a_lost_try_is_undecided() {
        let mut w = Window::new(1, 0, 0, 16);
        all_sent(&mut w, 0);
        w.mark_lost(0, 10 * MS);
        assert_eq!(settled(&mut w, 260 * MS), [Silent { seq: 0, undecided: true }]);
    }

    #[test]
    fn a_last_try_lost_after_it_timed_out_is_sent_again() {
        let mut w = Window::new(1, 0, 1, 16);
        all_sent(&mut w, 0);
        assert_eq!(w.next(60 * MS, 0, T, |_| false), Some(Try { seq: 0, attempt: 1 }));
        // Frames lost from before that try until its result is due.
        w.mark_lost(55 * MS, 320 * MS);
        assert!(settled(&mut w, 321 * MS).is_empty());
        assert_eq!(w.next(321 * MS, 0, T, |_| false), Some(Try { seq: 0, attempt: 2 }));
        assert_eq!(settled(&mut w, 580 * MS), [Silent { seq: 0, undecided: false }]);
    }

    /// A drop episode found after it ended leaves many silent probes whose
    /// last try may have lost its reply: all go again at once, and are
    /// concluded one reply timeout later, not one reply timeout each as
    /// they reach the trail in turn (which held a multiport scan's end for
    /// minutes).
    #[test]
    fn every_last_try_found_lost_after_it_timed_out_is_sent_again_at_once() {
        let n = 1000;
        let mut w = Window::new(n, 0, 1, 4096);
        assert_eq!(all_sent(&mut w, 0).len(), n as usize);
        let retries = all_sent(&mut w, 60 * MS);
        assert!(retries.len() == n as usize && retries.iter().all(|t| t.attempt == 1));
        // The retries' replies were lost, which is only read at 400 ms, after they timed out.
        w.mark_lost(55 * MS, 399 * MS);
        assert!(settled(&mut w, 400 * MS).is_empty());
        let resent = all_sent(&mut w, 400 * MS);
        assert_eq!(resent.len(), n as usize, "every one at once");
        assert!(resent.iter().all(|t| t.attempt == 2));
        assert!(settled(&mut w, 650 * MS).is_empty());
        let silent = settled(&mut w, 651 * MS);
        assert_eq!(silent.len(), n as usize);
        assert!(silent.iter().all(|s| !s.undecided), "the resends were not lost");
        assert!(w.is_done());
    }

    #[test]
    fn only_tries_sent_while_frames_were_lost_are_marked() {
        let mut w = Window::new(3, 0, 0, 16);
        w.next(0, 0, T, |_| false);
        w.next(20 * MS, 0, T, |_| false);
        w.next(40 * MS, 0, T, |_| false);
        w.mark_lost(10 * MS, 30 * MS);
        let silent = settled(&mut w, 400 * MS);
        let undecided: Vec<bool> = silent.iter().map(|s| s.undecided).collect();
        assert_eq!(undecided, [false, true, false]);
    }

    /// A reading of lost replies reaches back a reply timeout, over spans
    /// of lost probes marked since: it takes them in, and every try sent in
    /// any of them counts as lost.
    #[test]
    fn drop_spans_that_reach_back_over_others_absorb_them() {
        let mut w = Window::new(4, 0, 0, 16);
        for at in [800, 890, 990, 2000] {
            w.next(at * MS, 0, T, |_| false);
        }
        w.mark_lost(880 * MS, 900 * MS);
        w.mark_lost(980 * MS, 1000 * MS);
        w.mark_lost(750 * MS, 1010 * MS);
        assert_eq!(w.losses, [(750, 1010)]);
        let silent = settled(&mut w, 3000 * MS);
        let undecided: Vec<bool> = silent.iter().map(|s| s.undecided).collect();
        assert_eq!(undecided, [true, true, true, false]);
    }

    /// Skipped probes are passed over a bounded number at a time: the lane
    /// holds the window's lock meanwhile, which the receive side waits on.
    #[test]
    fn a_long_run_of_skipped_probes_is_passed_over_in_parts() {
        let n = 3 * SKIPS_PER_CALL as u64;
        let mut w = Window::new(n + 1, 0, 0, n as usize + 1);
        let mut calls = 0;
        let sent = loop {
            calls += 1;
            w.allow_skips();
            if let Some(t) = w.next(0, 0, T, |seq| seq < n) {
                break t;
            }
            assert!(w.fresh_waiting(), "call {calls}: more to pass over");
        };
        assert_eq!((sent.seq, calls), (n, 4));
    }

    #[test]
    fn a_resumed_window_starts_at_its_trail_and_a_stopped_one_keeps_what_has_tries_left() {
        let mut w = Window::new(10, 7, 1, 16);
        assert_eq!(w.trail(), 7);
        assert_eq!(all_sent(&mut w, 0).iter().map(|t| t.seq).collect::<Vec<_>>(), [7, 8, 9]);
        w.answer(7, MS);
        w.stop();
        assert!(settled(&mut w, 10_000 * MS).is_empty(), "an interrupted probe with a retry left is not concluded");
        assert_eq!(w.trail(), 8);
        assert_eq!(w.next(10_000 * MS, 0, T, |_| false), None);
        // Without retries, a stopped window still concludes what had its only try's wait.
        let mut w = Window::new(2, 0, 0, 16);
        all_sent(&mut w, 0);
        w.stop();
        assert_eq!(settled(&mut w, 260 * MS).len(), 2);
    }

    #[test]
    fn lookups_tell_unsent_from_left_and_carry_the_send_stamps() {
        let mut w = Window::new(3, 0, 1, 16);
        w.next(0, 100, T, |_| false);
        assert_eq!(w.lookup(1), Lookup::Unsent);
        w.next(60 * MS, 200, T, |_| false);
        assert_eq!(w.lookup(0), Lookup::Sent { tries: 2, first_us: 100, last_us: 200, answered: false });
        w.answer(0, 61 * MS);
        settled(&mut w, 62 * MS);
        assert_eq!(w.lookup(0), Lookup::Left);
    }

    /// splitmix64: the simulations' randomness, seeded, so a failure repeats.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let z = (self.0 ^ (self.0 >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) % n
        }
    }

    /// What a probe's target does to every try: answers (after a round
    /// trip, maybe late, maybe twice) or stays silent; and whether this host
    /// drops frames while the try is out.
    #[derive(Debug, Clone, Copy)]
    struct Fate {
        answers: bool,
        rtt_ms: u64,
        /// The first tries this many get no reply (lost on the way).
        lost_tries: u32,
        copies: u32,
    }

    /// One lane over a network of `n` probes, under a test clock that moves
    /// a millisecond per step: the network loses, repeats, reorders and
    /// delays replies, some past the reply timeout. Returns what the window
    /// concluded, how many tries it sent, and how long it took (ms).
    fn simulate(seed: u64, n: u64, retries: u32, capacity: usize) -> (HashMap<u64, Outcome>, Vec<Fate>, u64, u64) {
        let mut rng = Rng(seed);
        let fates: Vec<Fate> = (0..n)
            .map(|_| Fate {
                answers: rng.below(3) > 0,
                // Mostly within the timeouts; a tenth slower than the reply timeout.
                rtt_ms: if rng.below(10) == 0 { 260 + rng.below(200) } else { 1 + rng.below(120) },
                lost_tries: if rng.below(4) == 0 { 1 + rng.below(2) as u32 } else { 0 },
                copies: rng.below(3) as u32,
            })
            .collect();
        let mut w = Window::new(n, 0, retries, capacity);
        // Replies on their way, by the millisecond they arrive.
        let mut wire: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        let mut outcome: HashMap<u64, Outcome> = HashMap::new();
        let mut tries_of: HashMap<u64, u32> = HashMap::new();
        let mut sent = 0;
        let mut now_ms = 0;
        while !w.is_done() {
            now_ms += 1;
            let now = now_ms * MS;
            // Replies due by now arrive in a random order, then the window concludes.
            let mut due: Vec<u64> = Vec::new();
            while let Some((&at, _)) = wire.first_key_value() {
                if at > now_ms {
                    break;
                }
                due.extend(wire.pop_first().expect("first").1);
            }
            for k in (1..due.len()).rev() {
                due.swap(k, rng.below(k as u64 + 1) as usize);
            }
            for seq in due {
                match w.answer(seq, now) {
                    Verdict::New => assert!(outcome.insert(seq, Outcome::Answered).is_none(), "{seq} answered twice"),
                    Verdict::Duplicate | Verdict::Late => {}
                }
            }
            // The caller's results have room for a few, or for everything.
            let room = [1, 3, usize::MAX][rng.below(3) as usize];
            let mut silent = Vec::new();
            w.settle(now, T, &mut silent, room);
            for s in silent {
                let o = if s.undecided { Outcome::Undecided } else { Outcome::Silent };
                assert!(outcome.insert(s.seq, o).is_none(), "{} concluded twice", s.seq);
            }
            // This host drops frames now and then.
            if rng.below(400) == 0 {
                w.mark_lost(now.saturating_sub(T.reply_timeout), now);
            }
            let mut sent_now = 0;
            for _ in 0..rng.below(4) {
                let Some(t) = w.next(now, now / 1000, T, |_| false) else { break };
                sent += 1;
                sent_now += 1;
                let tries = tries_of.entry(t.seq).or_default();
                *tries += 1;
                let f = fates[t.seq as usize];
                if f.answers && *tries > f.lost_tries {
                    for copy in 0..=f.copies {
                        wire.entry(now_ms + f.rtt_ms + u64::from(copy) * 7).or_default().push(t.seq);
                    }
                }
            }
            assert!(w.len() <= capacity);
            // Nothing to do until the next reply or the window's next deadline: the clock jumps there.
            let full = w.len() == capacity || w.lead == w.total;
            if sent_now == 0 && full {
                let next_reply = wire.first_key_value().map(|(&at, _)| at);
                let next_due = w.next_due(now, T).map(|ns| ns.div_ceil(MS));
                if let Some(next) = [next_reply, next_due].into_iter().flatten().min() {
                    now_ms = now_ms.max(next.saturating_sub(1));
                }
            }
        }
        (outcome, fates, sent, now_ms)
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Outcome {
        Answered,
        Silent,
        Undecided,
    }

    /// Over thousands of probes and a faulty network, every probe is
    /// concluded exactly once: answered when a reply came within the reply
    /// timeout of a try, otherwise silent or (tries lost on this host)
    /// undecided; never answered without a reply, never twice.
    #[test]
    fn every_probe_is_concluded_once_whatever_the_network_does() {
        for (seed, n, retries, capacity) in
            [(1u64, 3000, 1u32, 64usize), (2, 3000, 0, 1000), (3, 3000, 2, 300), (4, 200, 1, 5)]
        {
            let (outcome, fates, sent, took_ms) = simulate(seed, n, retries, capacity);
            // A probe holds its place some 400 ms at most: a window that waits
            // for nothing (a probe no try or result will come for) shows here.
            assert!(took_ms < n * 100, "seed {seed}: {took_ms} ms for {n} probes");
            assert_eq!(outcome.len() as u64, n, "seed {seed}: every probe concluded");
            for (seq, f) in fates.iter().enumerate() {
                let o = outcome[&(seq as u64)];
                // A reply within the timeouts to a try that got one is an answer:
                // with no retry the first try must be the one.
                let answerable = f.answers && f.rtt_ms < 250 && f.lost_tries <= retries;
                if answerable {
                    assert_eq!(o, Outcome::Answered, "seed {seed}: probe {seq} {f:?}");
                }
                if !f.answers || f.lost_tries > 2 * retries {
                    assert_ne!(o, Outcome::Answered, "seed {seed}: probe {seq} answered without a reply");
                }
            }
            assert!(sent >= n && sent <= n * (2 * u64::from(retries) + 1), "seed {seed}: {sent} tries");
        }
    }
}
