//! The send rate, adapted to what this host's receive path keeps up with.
//! Pure: time and counters come in as arguments.
//!
//! A scanner that sends faster than it can take the replies in loses them,
//! and silence from a lost reply looks like a filtered port. So when the
//! kernel reports frames dropped on this host, or the receive path falls
//! behind (half of its buffer waiting: drops are near), the rate is cut to
//! seven tenths of what it was (with no limit in force, of the fastest rate
//! measured). While neither happens it grows every `STEP_NS`: by half its
//! distance to the rate it was cut from, which is what this host kept up
//! with until a moment ago, and past that rate by a sixteenth a step, up
//! to the user's `--rate`, or back to no limit when there is none (as
//! TCP's CUBIC returns to its last window fast and probes beyond it
//! slowly). A fixed rate never changes.

/// How long a lowered rate is kept before it may grow: replies already in
/// flight at the old rate keep arriving, and dropping, for a while.
pub const HOLD_NS: u64 = 100_000_000;
/// How often the rate grows while nothing is lost.
pub const STEP_NS: u64 = 100_000_000;
/// The send rate is measured over at least this long.
const MEASURE_NS: u64 = 10_000_000;
/// What a cut keeps of the rate, in tenths (CUBIC's 0.7): a drop on this
/// host costs a retry, not a result, so a scan gives up less speed for it
/// than halving would.
const KEEP_TENTHS: u64 = 7;
/// Never below this many probes a second: a scan must end.
pub const MIN_RATE: u64 = 1_000;
/// The share of its receive buffer waiting to be read at which the receive
/// path counts as falling behind: half of AF_XDP's 16,384-frame ring is
/// 10 ms of replies at 800,000/s, time for a thread that waited for a core.
pub const BEHIND: f32 = 0.5;

/// Why the rate is what it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RateReason {
    /// As configured: `--rate`, or no limit.
    #[default]
    Configured,
    /// Lowered: this many frames were dropped on this host.
    Dropped(u64),
    /// Lowered: the receive path fell behind the replies.
    Behind,
    /// Raised again: nothing was lost for a while.
    Recovering,
}

impl RateReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RateReason::Configured => "configured",
            RateReason::Dropped(_) => "frames dropped",
            RateReason::Behind => "receive path behind",
            RateReason::Recovering => "no drops",
        }
    }
}

#[derive(Debug, Clone)]
pub struct RateControl {
    /// `--rate`; 0 for none.
    ceiling: u64,
    adaptive: bool,
    /// The rate in force; 0 for no limit.
    current: u64,
    reason: RateReason,
    /// When the rate last went down, and last changed.
    cut_ns: Option<u64>,
    changed_ns: u64,
    /// Probes sent by `window_ns`, to measure the send rate.
    window_ns: u64,
    window_sent: u64,
    /// The highest send rate measured over a `MEASURE_NS` window.
    peak: u64,
    /// The rate the last cut was made from; 0 before any.
    cut_from: u64,
}

impl RateControl {
    pub fn new(ceiling: u64, adaptive: bool, now_ns: u64, sent: u64) -> Self {
        RateControl {
            ceiling,
            adaptive,
            current: ceiling,
            reason: RateReason::Configured,
            cut_ns: None,
            changed_ns: now_ns,
            window_ns: now_ns,
            window_sent: sent,
            peak: 0,
            cut_from: 0,
        }
    }

    /// The rate in force, probes a second; 0 for no limit.
    pub fn rate(&self) -> u64 {
        self.current
    }

    pub fn reason(&self) -> RateReason {
        self.reason
    }

    /// Takes what happened since the last call: `sent` probes so far, `lost`
    /// frames dropped on this host, and the largest `backlog` of the receive
    /// path (see `BEHIND`). Returns the new rate when it changes.
    pub fn update(&mut self, now_ns: u64, sent: u64, lost: u64, backlog: f32) -> Option<u64> {
        let elapsed = now_ns.saturating_sub(self.window_ns);
        if elapsed >= MEASURE_NS {
            let measured = ((sent.saturating_sub(self.window_sent)) as u128 * 1_000_000_000 / elapsed as u128) as u64;
            self.peak = self.peak.max(measured);
            self.window_ns = now_ns;
            self.window_sent = sent;
        }
        if !self.adaptive {
            return None;
        }
        if lost > 0 || backlog >= BEHIND {
            if self.cut_ns.is_some_and(|t| now_ns.saturating_sub(t) < HOLD_NS) {
                return None;
            }
            // Not from the rate of the last moment: a sender waiting between
            // passes measures next to nothing, and says nothing of what fits.
            let base = match (self.current, self.peak) {
                (0, 0) => return None,
                (0, peak) => peak,
                (limit, _) => limit,
            };
            // Never above the rate in force: below MIN_RATE, a --rate stands.
            let floor = if self.current > 0 { MIN_RATE.min(self.current) } else { MIN_RATE };
            let cut = (base / 10 * KEEP_TENTHS).max(floor);
            self.cut_from = base;
            self.reason = if lost > 0 { RateReason::Dropped(lost) } else { RateReason::Behind };
            self.cut_ns = Some(now_ns);
            self.changed_ns = now_ns;
            return (cut != std::mem::replace(&mut self.current, cut)).then_some(cut);
        }
        if self.current == 0
            || self.current == self.ceiling
            || now_ns.saturating_sub(self.changed_ns) < STEP_NS
            || self.cut_ns.is_some_and(|t| now_ns.saturating_sub(t) < HOLD_NS)
        {
            return None;
        }
        let regain = self.cut_from.saturating_sub(self.current) / 2;
        let raised = self.current + regain.max(self.current / 16).max(MIN_RATE);
        self.current = match self.ceiling {
            0 if raised > self.peak + self.peak / 4 => 0,
            0 => raised,
            c => raised.min(c),
        };
        self.reason = if self.current == self.ceiling { RateReason::Configured } else { RateReason::Recovering };
        self.changed_ns = now_ns;
        Some(self.current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// What a sender can do at most, whatever the rate allows.
    const SENDER: u64 = 1_000_000;

    /// Feeds `update` every 10 ms with a sender that sends at the rate (at
    /// most `SENDER`) and a receive path that drops frames whenever more than
    /// `capacity` probes a second go out.
    fn run(ctl: &mut RateControl, capacity: u64, from_ms: u64, to_ms: u64, sent: &mut u64) -> Vec<u64> {
        let mut rates = Vec::new();
        let mut t = from_ms;
        while t < to_ms {
            t += 10;
            let rate = match ctl.rate() {
                0 => SENDER,
                r => r.min(SENDER),
            };
            *sent += rate / 100;
            let lost = if rate > capacity { (rate - capacity) / 100 } else { 0 };
            if let Some(r) = ctl.update(t * MS, *sent, lost, 0.0) {
                rates.push(r);
            }
        }
        rates
    }

    #[test]
    fn cuts_on_drops_and_climbs_back_to_the_ceiling() {
        let mut sent = 0;
        let mut ctl = RateControl::new(800_000, true, 0, 0);
        // The receive path keeps up with 500k: the rate falls below it, then hovers around it.
        let rates = run(&mut ctl, 500_000, 0, 3_000, &mut sent);
        assert_eq!(rates[0], 560_000, "seven tenths of the 800k in force");
        assert!(rates.iter().all(|&r| (MIN_RATE..=800_000).contains(&r)));
        assert!(rates.iter().skip(1).any(|&r| r > 500_000), "it grows again");
        let cuts = rates.windows(2).filter(|w| w[1] < w[0]).count();
        assert!(cuts >= 2, "and is cut again where it drops: {rates:?}");
        // Hovering, it sends most of what the receive path keeps up with.
        assert!(sent > 500_000 * 3 * 80 / 100, "{sent} probes in 3 s: {rates:?}");
        // Once the receive path keeps up with anything, it returns to the ceiling.
        let rates = run(&mut ctl, 10_000_000, 3_000, 6_000, &mut sent);
        assert_eq!(rates.last(), Some(&800_000));
        assert_eq!(ctl.reason(), RateReason::Configured);
    }

    #[test]
    fn without_a_ceiling_it_cuts_from_the_measured_rate_and_returns_to_no_limit() {
        let mut sent = 0;
        let mut ctl = RateControl::new(0, true, 0, 0);
        let rates = run(&mut ctl, 600_000, 0, 50, &mut sent);
        // Unlimited, the sender does a million; the first loss cuts that.
        assert_eq!(rates, [700_000]);
        assert_eq!(ctl.reason(), RateReason::Dropped(4_000));
        let rates = run(&mut ctl, 100_000_000, 50, 5_000, &mut sent);
        assert_eq!(rates.last(), Some(&0), "back to no limit: {rates:?}");
    }

    #[test]
    fn a_sender_idle_between_passes_is_cut_from_its_fastest_not_from_its_pause() {
        let mut ctl = RateControl::new(0, true, 0, 0);
        // 50 ms at 800k/s, then 40 ms of waiting for replies, then a drop.
        for t in 1..=5 {
            assert_eq!(ctl.update(t * 10 * MS, t * 8_000, 0, 0.0), None);
        }
        for t in 6..=9 {
            assert_eq!(ctl.update(t * 10 * MS, 40_000, 0, 0.0), None);
        }
        assert_eq!(ctl.update(100 * MS, 40_000, 2, 0.0), Some(560_000));
    }

    #[test]
    fn regrows_fast_to_the_rate_it_was_cut_from_and_slowly_past_it() {
        let mut ctl = RateControl::new(2_000_000, true, 0, 0);
        assert_eq!(ctl.update(10 * MS, 20_000, 1, 0.0), Some(1_400_000));
        assert_eq!(ctl.update(60 * MS, 20_000, 0, 0.0), None, "held after a cut");
        // Half the way back each step, then a sixteenth a step.
        let steps: Vec<_> = (1..=5).filter_map(|i| ctl.update((10 + 100 * i) * MS, 20_000, 0, 0.0)).collect();
        assert_eq!(steps, [1_700_000, 1_850_000, 1_965_625, 2_000_000]);
        assert_eq!(ctl.reason(), RateReason::Configured);
    }

    #[test]
    fn one_cut_per_hold_and_never_below_the_minimum() {
        let mut ctl = RateControl::new(2_000, true, 0, 0);
        assert_eq!(ctl.update(20 * MS, 80, 5, 0.0), Some(1_400));
        assert_eq!(ctl.update(30 * MS, 100, 5, 0.0), None, "drops of frames already in flight");
        assert_eq!(ctl.update(130 * MS, 300, 5, 0.0), Some(MIN_RATE));
        assert_eq!(ctl.update(240 * MS, 400, 5, 0.0), None, "already at the minimum");
        assert_eq!(ctl.rate(), MIN_RATE);
    }

    /// A `--rate` below the minimum is never exceeded: drops leave it as it is.
    #[test]
    fn a_rate_below_the_minimum_stands() {
        let mut sent = 0;
        let mut ctl = RateControl::new(100, true, 0, 0);
        assert!(run(&mut ctl, 0, 0, 2_000, &mut sent).is_empty(), "every frame dropped");
        assert_eq!(ctl.rate(), 100);
        // With no --rate, the minimum holds, however slow the sending measured.
        let mut ctl = RateControl::new(0, true, 0, 0);
        assert_eq!(ctl.update(20 * MS, 10, 0, 0.0), None, "500 probes a second");
        assert_eq!(ctl.update(30 * MS, 15, 5, 0.0), Some(MIN_RATE));
    }

    #[test]
    fn a_receive_path_falling_behind_lowers_the_rate_before_anything_drops() {
        let mut ctl = RateControl::new(400_000, true, 0, 0);
        assert_eq!(ctl.update(10 * MS, 4_000, 0, BEHIND / 2.0), None, "a little waiting is normal");
        assert_eq!(ctl.update(20 * MS, 8_000, 0, BEHIND), Some(280_000));
        assert_eq!(ctl.reason(), RateReason::Behind);
    }

    #[test]
    fn a_fixed_rate_never_changes() {
        let mut sent = 0;
        let mut ctl = RateControl::new(800_000, false, 0, 0);
        assert!(run(&mut ctl, 100_000, 0, 2_000, &mut sent).is_empty());
        assert_eq!((ctl.rate(), ctl.reason()), (800_000, RateReason::Configured));
    }
}
