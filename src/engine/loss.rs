//! Which probes may have lost their replies on this host. Pure.
//!
//! When the kernel drops frames on the scanning host (an AF_XDP RX ring or
//! fill ring that ran out, a socket buffer that overflowed, the interface's
//! own receive or transmit drops), some probe or its reply was lost, and
//! which one cannot be known. Every probe whose reply could have been due
//! while the frames were lost is marked, as a span of the send order; such a
//! probe's silence proves nothing. It is retried like any silent probe, and
//! if its last attempt is marked too, the scan reports it `undecided` rather
//! than `filtered`.

use std::collections::VecDeque;

/// Spans of linear cursors (`ScanPlan::linear`), sorted, disjoint and
/// half-open: probes sent at those places may have lost their replies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LossLog {
    spans: Vec<(u64, u64)>,
}

impl LossLog {
    /// Marks `[lo, hi)`, merging it with the spans it touches.
    pub fn mark(&mut self, lo: u64, hi: u64) {
        if lo >= hi {
            return;
        }
        // Spans come mostly in send order: the merge usually touches the last ones only.
        let first = self.spans.partition_point(|&(_, end)| end < lo);
        let last = self.spans.partition_point(|&(start, _)| start <= hi);
        let (mut lo, mut hi) = (lo, hi);
        if first < last {
            lo = lo.min(self.spans[first].0);
            hi = hi.max(self.spans[last - 1].1);
        }
        self.spans.splice(first..last, [(lo, hi)]);
    }

    pub fn contains(&self, linear: u64) -> bool {
        let i = self.spans.partition_point(|&(_, end)| end <= linear);
        self.spans.get(i).is_some_and(|&(start, _)| start <= linear)
    }

    /// The first marked place at or after `linear`.
    pub fn first_from(&self, linear: u64) -> Option<u64> {
        let i = self.spans.partition_point(|&(_, end)| end <= linear);
        self.spans.get(i).map(|&(start, _)| start.max(linear))
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

/// Where transmission was at past times, to find what was in flight when
/// frames were lost. Holds only as far back as a reply can take.
#[derive(Debug)]
pub struct SendHistory {
    /// Samples, oldest first.
    samples: VecDeque<Sample>,
    /// The cursor before the oldest sample kept.
    floor: u64,
    /// Stamps of samples before this time are on another scale: the wall
    /// clock was set since.
    stamps_since_ns: u64,
}

/// How far the stamping (wall) clock may move apart from the monotonic one
/// between two samples before it counts as set: NTP slews far less.
const CLOCK_SET_US: u64 = 1_000;

/// Where transmission was at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// The engine's monotonic time, ns.
    pub at_ns: u64,
    /// The same moment on the clock that stamps probes' send times, us.
    pub stamp_us: u64,
    /// Every place below this had been sent.
    pub sent: u64,
    /// No place at or above this had been stamped.
    pub bound: u64,
}

impl SendHistory {
    /// From the scan's start (time 0) at linear cursor `start`, before any probe was stamped.
    pub fn new(start: u64) -> Self {
        let first = Sample { at_ns: 0, stamp_us: 0, sent: start, bound: start };
        SendHistory { samples: VecDeque::from([first]), floor: start, stamps_since_ns: 0 }
    }

    /// Records a sample; forgets what is older than `keep_ns` before it,
    /// keeping one sample at or before that edge.
    pub fn sample(&mut self, sample: Sample, keep_ns: u64) {
        if let Some(last) = self.samples.back() {
            let mono_us = sample.at_ns.saturating_sub(last.at_ns) / 1000;
            if sample.stamp_us.abs_diff(last.stamp_us.saturating_add(mono_us)) > CLOCK_SET_US {
                self.stamps_since_ns = sample.at_ns;
            }
        }
        self.samples.push_back(sample);
        let edge = sample.at_ns.saturating_sub(keep_ns);
        while self.samples.get(1).is_some_and(|s| s.at_ns <= edge) {
            if let Some(s) = self.samples.pop_front() {
                self.floor = s.sent;
            }
        }
    }

    /// A cursor below which every probe was sent at or before `at_ns`: a
    /// probe sent after `at_ns` is at or above it.
    pub fn sent_by(&self, at_ns: u64) -> u64 {
        let i = self.samples.partition_point(|s| s.at_ns <= at_ns);
        i.checked_sub(1).map_or(self.floor, |i| self.samples[i].sent)
    }

    /// When the probe at `linear` was stamped, on the stamping clock: after
    /// the first time and by the second, or by `now_us` if no sample has
    /// seen it sent yet. None when that is older than the samples kept.
    pub fn send_window(&self, linear: u64, now_us: u64) -> Option<(u64, u64)> {
        // Both cursors only grow: the samples are sorted by each.
        let after = self.samples.partition_point(|s| s.bound <= linear).checked_sub(1)?;
        if self.samples[after].at_ns < self.stamps_since_ns {
            return None;
        }
        let by = self.first_sent_past(linear);
        Some((self.samples[after].stamp_us, by.map_or(now_us, |s| s.stamp_us)))
    }

    /// When the probe at `linear` had been sent by (within a sampling
    /// interval of when it was), if it had by the last sample kept. One sent
    /// before everything kept is older than that: no time is known for it.
    pub fn sent_before(&self, linear: u64) -> Option<u64> {
        if linear < self.floor {
            return None;
        }
        self.first_sent_past(linear).map(|s| s.at_ns)
    }

    /// The first sample by which the probe at `linear` had been sent.
    fn first_sent_past(&self, linear: u64) -> Option<&Sample> {
        // `sent` only grows: the samples are sorted by it.
        self.samples.get(self.samples.partition_point(|s| s.sent <= linear))
    }
}

/// What frames lost since `since_ns` may have belonged to: every probe sent
/// from `reach_ns` before `since_ns` up to `sent_now`, the highest place sent
/// by now. For a lost reply the reach is the reply timeout (its probe may be
/// that old); for a probe dropped as it was sent, about nothing.
pub fn in_flight(history: &SendHistory, since_ns: u64, reach_ns: u64, sent_now: u64) -> (u64, u64) {
    (history.sent_by(since_ns.saturating_sub(reach_ns)), sent_now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_merge_and_answer_membership() {
        let mut l = LossLog::default();
        assert!(l.is_empty() && !l.contains(0) && l.first_from(0).is_none());
        l.mark(10, 20);
        l.mark(30, 40);
        l.mark(5, 5);
        assert_eq!(l.spans, [(10, 20), (30, 40)]);
        assert!(!l.contains(9) && l.contains(10) && l.contains(19) && !l.contains(20) && l.contains(35));
        assert_eq!(l.first_from(0), Some(10));
        assert_eq!(l.first_from(15), Some(15));
        assert_eq!(l.first_from(20), Some(30));
        assert_eq!(l.first_from(40), None);
        // Touching and overlapping spans merge, whatever order they come in.
        l.mark(20, 30);
        assert_eq!(l.spans, [(10, 40)]);
        l.mark(0, 3);
        l.mark(45, 50);
        l.mark(2, 47);
        assert_eq!(l.spans, [(0, 50)]);
        l.mark(60, 70);
        l.mark(55, 58);
        assert_eq!(l.spans, [(0, 50), (55, 58), (60, 70)]);
    }

    /// A sample at `t` ns.
    fn at(t: u64, sent: u64, bound: u64) -> Sample {
        Sample { at_ns: t, stamp_us: t / 1000, sent, bound }
    }

    #[test]
    fn a_loss_marks_everything_whose_reply_could_have_been_due() {
        let mut h = SendHistory::new(100);
        let keep = 1_000;
        for (t, linear) in [(0, 100), (100, 200), (200, 300), (300, 400)] {
            h.sample(at(t, linear, linear + 64), keep);
        }
        assert_eq!(h.sent_by(150), 200);
        // Frames lost between 250 and 300 ns with replies taking up to 120 ns:
        // probes sent from 130 ns on (at or above cursor 200) were in flight.
        assert_eq!(in_flight(&h, 250, 120, 420), (200, 420));
        assert_eq!(in_flight(&h, 250, 10_000, 420), (100, 420), "back to where the run started");
        // Samples older than the edge go, but for the last one before it.
        h.sample(at(5_000, 900, 964), keep);
        assert_eq!(h.samples, [at(300, 400, 464), at(5_000, 900, 964)]);
        assert_eq!(h.sent_by(4_500), 400);
        assert_eq!(h.sent_by(200), 300, "before what is kept: the floor");
        // When a place was sent by: the first sample past it; none for what is older or not sent yet.
        assert_eq!(h.sent_before(450), Some(5_000));
        assert_eq!(h.sent_before(300), Some(300));
        assert_eq!(h.sent_before(299), None, "older than what is kept");
        assert_eq!(h.sent_before(900), None, "not sent by the last sample");
    }

    #[test]
    fn a_probe_was_stamped_between_the_cursors_that_bracket_it() {
        // Times in microseconds; the stamping clock reads 5 us ahead of the engine's.
        let at_us = |t: u64, sent: u64, bound: u64| Sample { at_ns: t * 1000, stamp_us: t + 5, sent, bound };
        let mut h = SendHistory::new(0);
        let keep = 1_000_000;
        // (time, everything below sent, nothing at or above stamped)
        for (t, sent, bound) in [(10, 0, 64), (20, 100, 164), (30, 300, 364)] {
            h.sample(at_us(t, sent, bound), keep);
        }
        // Place 50: maybe stamped from the start (bound 64 > 50 at 10), sent by 20.
        assert_eq!(h.send_window(50, 99), Some((0, 25)));
        // Place 200: not stamped at 20 (bound 164), sent by 30.
        assert_eq!(h.send_window(200, 99), Some((25, 35)));
        // Place 400: not stamped at 30, not seen sent: by now.
        assert_eq!(h.send_window(400, 99), Some((35, 99)));
        // Once the samples that bracket it are gone, nothing is known.
        h.sample(at_us(2_000, 500, 564), keep);
        assert_eq!(h.send_window(50, 2_100), None);
        assert_eq!(h.send_window(550, 2_100), Some((35, 2_100)));
        // The wall clock set back 3 ms: a place that may have been stamped
        // before that is not dated; one stamped since is.
        h.sample(Sample { at_ns: 4_000_000, stamp_us: 4_005 - 3_000, sent: 600, bound: 664 }, 10 * keep);
        assert_eq!(h.send_window(650, 1_100), None);
        assert_eq!(h.send_window(700, 1_100), Some((1_005, 1_100)));
    }
}
