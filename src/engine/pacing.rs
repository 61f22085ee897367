//! Transmit pacing: a virtual-schedule (GCRA) rate limiter with an injected clock.
//!
//! Each packet owns a slot `1/rate` long on a virtual timeline. A sender that
//! falls behind (a long sleep, a busy core) may catch up by at most `burst`
//! packets, so the long-run rate holds even when the sleeps overshoot.

/// Picoseconds, so that `1e12 / rate` is exact enough at a million packets/s.
const PS_PER_NS: u128 = 1000;

#[derive(Debug, Clone)]
pub struct Pacer {
    /// Slot length; `None` means no limit.
    interval_ps: Option<u128>,
    burst: u128,
    /// Start of the next free slot, in picoseconds of the caller's clock.
    next_ps: u128,
}

impl Pacer {
    /// `rate` in packets per second, 0 for no limit. `now_ns` is the caller's clock.
    pub fn new(rate: u64, now_ns: u64) -> Self {
        Pacer::share(rate, 1, now_ns)
    }

    /// One of `senders` that share `rate` evenly: each gets a fraction of a
    /// packet a second where the rate is below their number, so that
    /// together they never exceed it.
    pub fn share(rate: u64, senders: u64, now_ns: u64) -> Self {
        let senders = u128::from(senders.max(1));
        // At least 1 ps: a rate beyond 10^12 cannot divide by zero.
        let interval_ps = (rate > 0).then(|| (1_000_000_000_000u128 * senders / u128::from(rate)).max(1));
        // About half a millisecond of packets, so that a batch can go in one call
        // without letting a stall turn into a flood.
        let burst = (u128::from(rate) / senders / 2000).clamp(4, 256);
        Pacer { interval_ps, burst, next_ps: u128::from(now_ns) * PS_PER_NS }
    }

    /// How many of `want` packets may be sent at `now_ns`; the caller must send that many.
    pub fn grant(&mut self, now_ns: u64, want: u32) -> u32 {
        let Some(interval) = self.interval_ps else { return want };
        let now = u128::from(now_ns) * PS_PER_NS;
        if now < self.next_ps {
            return 0;
        }
        // A long stall does not earn more than `burst` packets.
        let earliest = now.saturating_sub(interval * (self.burst - 1));
        self.next_ps = self.next_ps.max(earliest);
        let due = (now - self.next_ps) / interval + 1;
        let n = due.min(u128::from(want)).min(self.burst) as u32;
        self.next_ps += interval * u128::from(n);
        n
    }

    /// Gives back `n` of the packets the last grant allowed, unsent: the
    /// sender had nothing more to send.
    pub fn unused(&mut self, n: u32) {
        if let Some(interval) = self.interval_ps {
            self.next_ps = self.next_ps.saturating_sub(interval * u128::from(n));
        }
    }

    /// Counts `n` packets another sender sent at `now_ns` against the rate:
    /// the slots they took are not granted again.
    pub fn charge(&mut self, now_ns: u64, n: u64) {
        if let Some(interval) = self.interval_ps {
            let earliest = (u128::from(now_ns) * PS_PER_NS).saturating_sub(interval * (self.burst - 1));
            self.next_ps = self.next_ps.max(earliest) + interval * u128::from(n);
        }
    }

    /// Nanoseconds from `now_ns` until `grant` will allow at least one packet.
    pub fn wait_ns(&self, now_ns: u64) -> u64 {
        let now = u128::from(now_ns) * PS_PER_NS;
        (self.next_ps.saturating_sub(now)).div_ceil(PS_PER_NS) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a sender for one simulated second: every wait overshoots by `overshoot_ns`
    /// (a sleeping thread wakes late) and every send costs `send_cost_ns`.
    fn sent_in_one_second(rate: u64, overshoot_ns: u64, send_cost_ns: u64) -> u64 {
        let mut now = 5_000_000_000u64;
        let end = now + 1_000_000_000;
        let mut p = Pacer::new(rate, now);
        let mut sent = 0u64;
        while now < end {
            let n = p.grant(now, 64);
            if n == 0 {
                now += p.wait_ns(now).max(1) + overshoot_ns;
            } else {
                sent += u64::from(n);
                now += send_cost_ns * u64::from(n);
            }
        }
        sent
    }

    #[test]
    fn holds_the_rate_within_five_percent_from_1k_to_1m() {
        for rate in [1_000u64, 2_500, 10_000, 77_777, 100_000, 333_333, 500_000, 1_000_000] {
            for (overshoot, cost) in [(0, 0), (60_000, 0), (3_000, 150), (150_000, 50)] {
                let sent = sent_in_one_second(rate, overshoot, cost);
                let err = (sent as f64 - rate as f64).abs() / rate as f64;
                assert!(err <= 0.05, "rate {rate} overshoot {overshoot} cost {cost}: sent {sent}");
            }
        }
    }

    /// Senders sharing a rate below their number: together, the rate.
    #[test]
    fn senders_sharing_a_rate_send_it_together() {
        for (rate, senders) in [(2u64, 4u64), (3, 4), (10, 3), (1_000_000, 3)] {
            let mut now = 5_000_000_000u64;
            let end = now + 10_000_000_000;
            let mut pacers: Vec<Pacer> = (0..senders).map(|_| Pacer::share(rate, senders, now)).collect();
            let mut sent = 0u64;
            while now < end {
                sent += pacers.iter_mut().map(|p| u64::from(p.grant(now, 64))).sum::<u64>();
                now += pacers.iter().map(|p| p.wait_ns(now)).min().unwrap().max(1);
            }
            // Each sender's first packet goes at once.
            assert!(sent.abs_diff(rate * 10) <= senders + rate / 100, "{senders} sharing {rate}/s: {sent} in 10 s");
        }
    }

    #[test]
    fn a_stall_earns_at_most_one_burst() {
        let mut p = Pacer::new(1_000_000, 0);
        assert_eq!(p.grant(0, 1000), 1);
        // After a full second of silence only the burst may go at once.
        assert_eq!(p.grant(1_000_000_000, 1000), 256);
        assert_eq!(p.grant(1_000_000_000, 1000), 0);
        assert_eq!(p.wait_ns(1_000_000_000), 1000);
    }

    #[test]
    fn unused_packets_are_granted_again() {
        let mut p = Pacer::new(1_000_000, 0);
        assert_eq!(p.grant(10_000, 64), 11);
        p.unused(5);
        assert_eq!(p.grant(10_000, 64), 5);
    }

    #[test]
    fn no_limit_grants_everything() {
        let mut p = Pacer::new(0, 0);
        assert_eq!(p.grant(0, 64), 64);
        assert_eq!(p.wait_ns(0), 0);
    }

    #[test]
    fn packets_another_sender_sent_count_against_the_rate() {
        let mut now = 5_000_000_000u64;
        let end = now + 1_000_000_000;
        let mut p = Pacer::new(100_000, now);
        let (mut sent, mut ours) = (0u64, 0u64);
        while now < end {
            let n = p.grant(now, 64);
            sent += u64::from(n);
            ours += u64::from(n);
            // Another sender sends one packet for every four of ours.
            if ours >= 4 {
                p.charge(now, ours / 4);
                ours %= 4;
            }
            now += p.wait_ns(now).max(1);
        }
        assert!((79_000..=81_000).contains(&sent), "{sent}");
        // Unlimited, nothing is charged.
        let mut free = Pacer::new(0, now);
        free.charge(now, 1_000_000);
        assert_eq!(free.grant(now, 64), 64);
    }
}
