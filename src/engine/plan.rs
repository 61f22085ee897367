//! The probe sequence of a scan: which (address, port) comes at each position
//! of the order, and from which source port each try leaves. Pure.

use crate::permute::Permutation;
use crate::target::hosts::Hosts;
use crate::target::space::TargetSpace;
use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

/// One of `count` disjoint parts of a scan (`--shard index+1/count`): the
/// positions `index`, `index + count`, ... of the shared, seeded order.
/// Shards on machines that use the same seed together send every probe once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// How many of `n` positions fall to this shard.
    pub fn probes_of(&self, n: u64) -> u64 {
        if n > self.index { (n - self.index - 1) / self.count + 1 } else { 0 }
    }
}

/// How far a scan got: this shard's probes of rank below `position` are
/// concluded, their results stored. A resumed scan starts there. `pass` is
/// 0 in every checkpoint this version writes; one from a version that
/// retried in passes has a later pass, and resumes from the beginning with
/// the results it stored skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub pass: u32,
    pub position: u64,
}

/// Hosts of a resumed scan that are no longer probed: an exclusion given
/// since names them. They keep their place in the space and the order, which
/// the cursor counts on, but nothing is sent to them, and their probes
/// without an answer are neither waited for nor reported silent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    hosts: Hosts,
}

impl Skipped {
    pub fn hosts(&self) -> &Hosts {
        &self.hosts
    }
}

#[derive(Debug, Clone)]
pub struct ScanPlan {
    pub space: TargetSpace,
    pub order: Permutation,
    /// Inclusive range of source ports; replies must come back to one of them.
    pub src_ports: (u16, u16),
    /// Extra passes over the probes that got no answer.
    pub retries: u32,
    /// Packets per second; 0 is no limit.
    pub rate: u64,
    /// Keep `rate` whatever this host drops, rather than adapting to it.
    pub fixed_rate: bool,
    /// The longest wait for a try's reply (`engine::state`).
    pub max_wait: Duration,
    pub shard: Shard,
    /// Where transmission starts: the beginning, or where an interrupted scan stopped.
    pub start: Cursor,
    /// None unless a resumed scan skips hosts: a scan without skips then pays
    /// one test of an empty option per probe.
    pub skipped: Option<Skipped>,
    /// Shifts every source port by a per-seed amount. A target may still hold
    /// half-open connections from an earlier scan (one killed before it sent
    /// its RSTs, or whose RST was lost); a SYN on the same 4-tuple would only
    /// draw that old SYN-ACK again.
    port_salt: u64,
}

impl ScanPlan {
    pub fn new(
        space: TargetSpace,
        seed: u64,
        src_ports: (u16, u16),
        retries: u32,
        rate: u64,
        max_wait: Duration,
    ) -> Self {
        let order = Permutation::new(space.len(), seed);
        let port_salt = seed.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15;
        ScanPlan {
            space,
            order,
            src_ports,
            retries,
            rate,
            fixed_rate: false,
            max_wait,
            shard: Shard::WHOLE,
            start: Cursor::default(),
            skipped: None,
            port_salt,
        }
    }

    pub fn with_shard(self, shard: Shard) -> Self {
        ScanPlan { shard, ..self }
    }

    pub fn with_fixed_rate(self, fixed_rate: bool) -> Self {
        ScanPlan { fixed_rate, ..self }
    }

    pub fn starting_at(self, start: Cursor) -> Self {
        ScanPlan { start, ..self }
    }

    /// Sends nothing to `hosts`, which must be hosts of the space.
    pub fn skipping(self, hosts: Hosts) -> Self {
        let skipped = (!hosts.is_empty()).then_some(Skipped { hosts });
        ScanPlan { skipped, ..self }
    }

    /// Whether nothing is sent to `ip`.
    #[inline]
    pub fn skips(&self, ip: IpAddr) -> bool {
        self.skipped.as_ref().is_some_and(|s| s.hosts.contains(ip))
    }

    /// Whether the probe of rank `rank` is passed over: its host is skipped,
    /// or an earlier run of a resumed scan concluded it (`prior` holds
    /// their space indices). A scan with neither looks nothing up.
    #[inline]
    pub fn passes_over(&self, rank: u64, prior: &HashSet<u64>) -> bool {
        (self.skipped.is_some() || !prior.is_empty()) && {
            let (index, ip, _) = self.target(self.position_of_rank(rank));
            self.skips(ip) || prior.contains(&index)
        }
    }

    /// This shard's probes: each is sent once, and retried while silent.
    pub fn probe_count(&self) -> u64 {
        self.shard.probes_of(self.space.len())
    }

    /// This shard's positions in the order, each once.
    pub fn positions(&self) -> impl Iterator<Item = u64> + use<> {
        (self.shard.index..self.space.len()).step_by(self.shard.count as usize)
    }

    /// The position in the order of this shard's `j`-th probe (its rank).
    pub fn position_of_rank(&self, j: u64) -> u64 {
        j.saturating_mul(self.shard.count).saturating_add(self.shard.index)
    }

    /// The probe at position `pos` of the order: its space index, address and port.
    pub fn target(&self, pos: u64) -> (u64, IpAddr, u16) {
        let index = self.order.get(pos);
        let (ip, port) = self.space.get(index);
        (index, ip, port)
    }

    /// The source port of try `attempt` (0 is the first) of probe `index`.
    /// Retries use another port, so that a target sees a new connection
    /// attempt rather than a duplicate SYN.
    pub fn source_port(&self, index: u64, attempt: u32) -> u16 {
        let count = u64::from(self.src_ports.1 - self.src_ports.0) + 1;
        // A try sent again for a lost one (`engine::window`) reuses a regular try's port.
        let attempt = attempt % (self.retries + 1);
        self.src_ports.0 + (index.wrapping_add(u64::from(attempt)).wrapping_add(self.port_salt) % count) as u16
    }

    /// The first try that sends probe `index` from `sport`, if any does: a
    /// reply to any other port of the range is not to one of our probes.
    pub fn pass_from(&self, index: u64, sport: u16) -> Option<u32> {
        let count = u64::from(self.src_ports.1 - self.src_ports.0) + 1;
        if !(self.src_ports.0..=self.src_ports.1).contains(&sport) {
            return None;
        }
        let first = u64::from(self.source_port(index, 0) - self.src_ports.0);
        let offset = (u64::from(sport - self.src_ports.0) + count - first) % count;
        (offset <= u64::from(self.retries)).then_some(offset as u32)
    }

    /// The tries of probe `index` among its first `tries` that left from
    /// `sport`, in order: a try sent again for a lost one repeats a regular
    /// try's port, and a range of fewer ports than tries gives several
    /// tries the same one.
    pub fn tries_from(&self, index: u64, sport: u16, tries: u32) -> impl Iterator<Item = u32> + '_ {
        let first = self.pass_from(index, sport).unwrap_or(u32::MAX);
        (first..tries).filter(move |&attempt| self.source_port(index, attempt) == sport)
    }

    /// Where probe `index` stands in this shard's share of the order (its
    /// rank), if this shard sends it at all.
    pub fn rank_of(&self, index: u64) -> Option<u64> {
        let pos = self.order.position_of(index);
        let from_first = pos.checked_sub(self.shard.index)?;
        (from_first % self.shard.count == 0).then_some(from_first / self.shard.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_ports_stay_in_range_and_change_between_passes() {
        let space = crate::target::space::v4_space((1, 100), (80, 80));
        let plan = ScanPlan::new(space, 1, (61000, 61003), 2, 0, Duration::from_secs(1));
        for i in 0..100 {
            let p0 = plan.source_port(i, 0);
            assert!((61000..=61003).contains(&p0));
            assert_ne!(p0, plan.source_port(i, 1));
        }
        for i in 0..1000u64 {
            let used: Vec<u16> = (0..=plan.retries).map(|pass| plan.source_port(i, pass)).collect();
            for sport in 60990..=61100u16 {
                let first = used.iter().position(|&p| p == sport).map(|pass| pass as u32);
                assert_eq!(plan.pass_from(i, sport), first, "probe {i} port {sport}");
            }
        }
        let single = ScanPlan { src_ports: (40000, 40000), ..plan };
        assert_eq!(single.source_port(7, 3), 40000);
        assert_eq!((single.pass_from(7, 40000), single.pass_from(7, 40001)), (Some(0), None));
    }

    #[test]
    fn every_probe_of_a_shard_has_its_rank_and_no_other_does() {
        let space = crate::target::space::v4_space((1, 100), (1, 10));
        for shard in [Shard::WHOLE, Shard { index: 1, count: 3 }] {
            let plan = ScanPlan::new(space.clone(), 9, (61000, 61003), 1, 0, Duration::from_secs(1)).with_shard(shard);
            let mut ranked = 0;
            for (j, pos) in plan.positions().enumerate() {
                assert_eq!(plan.rank_of(plan.target(pos).0), Some(j as u64));
                assert_eq!(plan.position_of_rank(j as u64), pos);
                ranked += 1;
            }
            assert_eq!(ranked, plan.probe_count());
            let others = (0..space.len()).filter(|&i| plan.rank_of(i).is_none()).count() as u64;
            assert_eq!(others, space.len() - plan.probe_count(), "{shard:?}");
        }
    }

    #[test]
    fn the_tries_from_a_port_are_those_it_was_given_to() {
        let space = crate::target::space::v4_space((1, 100), (80, 80));
        let plan = ScanPlan::new(space, 1, (61000, 61001), 2, 0, Duration::from_secs(1));
        for index in 0..100 {
            for sport in [60999u16, 61000, 61001] {
                let expect: Vec<u32> = (0..5).filter(|&a| plan.source_port(index, a) == sport).collect();
                assert_eq!(plan.tries_from(index, sport, 5).collect::<Vec<_>>(), expect, "{index} {sport}");
                let first_two: Vec<u32> = expect.iter().copied().filter(|&a| a < 2).collect();
                assert_eq!(plan.tries_from(index, sport, 2).collect::<Vec<_>>(), first_two);
            }
            // The fourth try (sent again for a lost one) leaves from the first's port.
            assert_eq!(plan.source_port(index, 3), plan.source_port(index, 0));
        }
    }

    fn hosts(ranges: &[(u128, u128)]) -> Hosts {
        use crate::target::hosts::Family;
        use crate::target::ranges::{Range, RangeSet};
        Hosts::new(Family::V4, RangeSet::from_ranges(ranges.iter().map(|&(a, b)| Range::new(a, b)).collect()))
    }

    #[test]
    fn skipped_hosts_are_known_by_address() {
        let space = crate::target::space::v4_space((1, 40), (1, 7));
        let whole = ScanPlan::new(space, 3, (61000, 61003), 1, 0, Duration::from_secs(1));
        assert!(!whole.skips(IpAddr::from([0, 0, 0, 5])));
        assert!(whole.clone().skipping(hosts(&[])).skipped.is_none(), "nothing to skip costs nothing per probe");
        let plan = whole.skipping(hosts(&[(5, 9), (40, 40)]));
        for (host, skips) in [(4u8, false), (5, true), (9, true), (10, false), (40, true)] {
            assert_eq!(plan.skips(IpAddr::from([0, 0, 0, host])), skips, "0.0.0.{host}");
        }
    }

    #[test]
    fn shards_are_disjoint_and_cover_every_probe_once() {
        for (hosts, ports) in [(1u32, 1u32), (7, 3), (256, 1), (100, 13), (1, 1000)] {
            let space = crate::target::space::v4_space((1000, 1000 + hosts - 1), (1, ports));
            let whole = ScanPlan::new(space, 77, (61000, 61063), 1, 0, Duration::from_secs(1));
            for count in [1u64, 2, 3, 5, 8, 64] {
                let mut seen = std::collections::HashSet::new();
                let mut total = 0;
                for index in 0..count {
                    let plan = whole.clone().with_shard(Shard { index, count });
                    let probes: Vec<_> = plan.positions().map(|p| plan.target(p)).collect();
                    assert_eq!(probes.len() as u64, plan.probe_count(), "{hosts}x{ports} {index}/{count}");
                    total += probes.len();
                    for (_, ip, port) in probes {
                        assert!(seen.insert((ip, port)), "{ip}:{port} in two shards");
                    }
                }
                assert_eq!(total as u64, whole.space.len(), "{hosts}x{ports} over {count} shards");
            }
        }
    }
}
