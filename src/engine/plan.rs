//! The probe sequence of a scan: which (address, port) comes at each position
//! of each pass, and from which source port. Pure.

use crate::permute::Permutation;
use crate::target::hosts::Hosts;
use crate::target::space::TargetSpace;
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

/// How far a scan got: in pass `pass`, this shard's first `position`
/// positions were sent. A resumed scan starts there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub pass: u32,
    pub position: u64,
}

/// Past this many probes to skipped hosts, a shard of a scan does not count
/// which are its own (it would take seconds before the first probe).
const SKIPPED_COUNT_LIMIT: u128 = 1 << 22;

/// Hosts of a resumed scan that are no longer probed: an exclusion given
/// since names them. They keep their place in the space and the order, which
/// the cursor counts on, but nothing is sent to them, and their probes
/// without an answer are neither waited for nor reported silent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    hosts: Hosts,
    /// This shard's probes per pass to them; None where there are too many to count.
    probes: Option<u64>,
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
    /// The longest wait for late replies after the last probe of a pass.
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

    /// Sends nothing to `hosts`, which must be hosts of the space. Set after
    /// the shard, whose share of their probes it counts.
    pub fn skipping(self, hosts: Hosts) -> Self {
        if hosts.is_empty() {
            return ScanPlan { skipped: None, ..self };
        }
        // At most the space's hosts, so the product fits the space's u64 length.
        let all = hosts.len() * u128::from(self.space.port_count());
        let probes = if self.shard == Shard::WHOLE {
            Some(all as u64)
        } else if all <= SKIPPED_COUNT_LIMIT {
            let host_count = self.space.host_count();
            let ranks: Vec<u64> = hosts
                .ranges()
                .flat_map(|r| (r.range.first..=r.range.last).map(move |v| r.family.addr(v)))
                .filter_map(|ip| self.space.hosts().rank(ip))
                .map(|rank| rank as u64)
                .collect();
            let ours = (0..self.space.port_count())
                .flat_map(|port| ranks.iter().map(move |host| port * host_count + host))
                .filter(|&index| self.rank_of(index).is_some())
                .count();
            Some(ours as u64)
        } else {
            None
        };
        ScanPlan { skipped: Some(Skipped { hosts, probes }), ..self }
    }

    /// Whether nothing is sent to `ip`.
    #[inline]
    pub fn skips(&self, ip: IpAddr) -> bool {
        self.skipped.as_ref().is_some_and(|s| s.hosts.contains(ip))
    }

    /// How many of this shard's probes in a pass are skipped, if known: none without skipped hosts.
    pub fn skipped_probes(&self) -> Option<u64> {
        self.skipped.as_ref().map_or(Some(0), |s| s.probes)
    }

    /// Probes this shard sends in one pass.
    pub fn probes_per_pass(&self) -> u64 {
        self.shard.probes_of(self.space.len())
    }

    /// This shard's positions in the order, each once.
    pub fn positions(&self) -> impl Iterator<Item = u64> + use<> {
        (self.shard.index..self.space.len()).step_by(self.shard.count as usize)
    }

    /// What transmit lane `lane` of `lanes` sends in one pass: the `j`-th
    /// positions of this shard with `j = lane (mod lanes)` and `j >= from`,
    /// as `(j, position)`. The lanes together send the shard's positions once.
    pub fn lane_positions(&self, lane: u64, lanes: u64, from: u64) -> impl Iterator<Item = (u64, u64)> + use<> {
        let first = from + (lane + lanes - from % lanes) % lanes;
        let (index, count, len) = (self.shard.index, self.shard.count, self.space.len());
        (first..)
            .step_by(lanes as usize)
            .map(move |j| (j, j.saturating_mul(count).saturating_add(index)))
            .take_while(move |&(_, pos)| pos < len)
    }

    /// A cursor as one number that grows as the scan goes on, so that one
    /// atomic can hold it.
    pub fn linear(&self, c: Cursor) -> u64 {
        u64::from(c.pass) * self.probes_per_pass() + c.position
    }

    pub fn cursor_at(&self, linear: u64) -> Cursor {
        match self.probes_per_pass() {
            0 => Cursor::default(),
            n => Cursor { pass: (linear / n) as u32, position: linear % n },
        }
    }

    /// The last pass a scan may send: `retries` passes over the silent
    /// probes, then up to as many loss passes, each over the silent probes
    /// whose try in the pass before may have lost its reply to a drop on
    /// this host (`engine::loss`): such a try does not spend the budget.
    pub fn last_pass(&self) -> u32 {
        self.retries * 2
    }

    /// The cursor after the last probe of the last regular pass: where a
    /// completed scan stands, loss passes or not.
    pub fn end(&self) -> Cursor {
        Cursor { pass: self.retries, position: self.probes_per_pass() }
    }

    /// The probe at position `pos` of every pass: its space index, address and port.
    pub fn target(&self, pos: u64) -> (u64, IpAddr, u16) {
        let index = self.order.get(pos);
        let (ip, port) = self.space.get(index);
        (index, ip, port)
    }

    /// The source port of probe `index` in pass `pass`. Retries use another port,
    /// so that a target sees a new connection attempt rather than a duplicate SYN.
    pub fn source_port(&self, index: u64, pass: u32) -> u16 {
        let count = u64::from(self.src_ports.1 - self.src_ports.0) + 1;
        // A loss pass reuses an earlier pass's port, so `pass_from` takes its replies as that pass's.
        let pass = pass % (self.retries + 1);
        self.src_ports.0 + (index.wrapping_add(u64::from(pass)).wrapping_add(self.port_salt) % count) as u16
    }

    /// The first pass that sends probe `index` from `sport`, if any does: a
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

    /// Every pass that sends probe `index` from `sport`, in order: a loss
    /// pass repeats its regular pass's port, and a range of fewer ports than
    /// tries gives several regular passes the same one.
    pub fn passes_from(&self, index: u64, sport: u16) -> impl Iterator<Item = u32> + '_ {
        let first = self.pass_from(index, sport).unwrap_or(u32::MAX);
        (first..=self.last_pass()).filter(move |&pass| self.source_port(index, pass) == sport)
    }

    /// Where probe `index` stands in this shard's share of the order (the
    /// `j` of `lane_positions`), if this shard sends it at all.
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
            for (j, pos) in plan.lane_positions(0, 1, 0) {
                assert_eq!(plan.rank_of(plan.target(pos).0), Some(j));
                ranked += 1;
            }
            assert_eq!(ranked, plan.probes_per_pass());
            let others = (0..space.len()).filter(|&i| plan.rank_of(i).is_none()).count() as u64;
            assert_eq!(others, space.len() - plan.probes_per_pass(), "{shard:?}");
        }
    }

    #[test]
    fn lanes_from_a_cursor_continue_the_shard_between_them() {
        let space = crate::target::space::v4_space((1, 50), (1, 3));
        let whole = ScanPlan::new(space, 5, (61000, 61000), 2, 0, Duration::from_secs(1));
        for count in [1u64, 3, 7] {
            for index in 0..count {
                let plan = whole.clone().with_shard(Shard { index, count });
                let all: Vec<u64> = plan.positions().collect();
                for lanes in [1u64, 2, 3, 8] {
                    for from in [0, 1, 5, all.len() as u64, all.len() as u64 + 3] {
                        let mut got: Vec<(u64, u64)> =
                            (0..lanes).flat_map(|lane| plan.lane_positions(lane, lanes, from)).collect();
                        got.sort();
                        let expect: Vec<(u64, u64)> =
                            all.iter().enumerate().map(|(j, &p)| (j as u64, p)).skip(from as usize).collect();
                        assert_eq!(got, expect, "{index}/{count}, {lanes} lanes from {from}");
                    }
                }
                for linear in 0..=plan.linear(plan.end()) {
                    assert_eq!(plan.linear(plan.cursor_at(linear)), linear);
                }
            }
        }
    }

    fn hosts(ranges: &[(u128, u128)]) -> Hosts {
        use crate::target::hosts::Family;
        use crate::target::ranges::{Range, RangeSet};
        Hosts::new(Family::V4, RangeSet::from_ranges(ranges.iter().map(|&(a, b)| Range::new(a, b)).collect()))
    }

    #[test]
    fn skipped_hosts_are_known_by_address_and_their_probes_counted_per_shard() {
        let space = crate::target::space::v4_space((1, 40), (1, 7));
        let whole = ScanPlan::new(space, 3, (61000, 61003), 1, 0, Duration::from_secs(1));
        assert_eq!((whole.skipped_probes(), whole.skips(IpAddr::from([0, 0, 0, 5]))), (Some(0), false));
        assert!(whole.clone().skipping(hosts(&[])).skipped.is_none(), "nothing to skip costs nothing per probe");
        let skipped = hosts(&[(5, 9), (40, 40)]);
        for count in [1u64, 2, 3, 8] {
            for index in 0..count {
                let plan = whole.clone().with_shard(Shard { index, count }).skipping(skipped.clone());
                let by_walking = plan.positions().filter(|&pos| plan.skips(plan.target(pos).1)).count() as u64;
                assert_eq!(plan.skipped_probes(), Some(by_walking), "{}/{count}", index + 1);
            }
        }
        let plan = whole.skipping(skipped);
        assert_eq!(plan.skipped_probes(), Some(6 * 7));
        for (host, skips) in [(4u8, false), (5, true), (9, true), (10, false), (40, true)] {
            assert_eq!(plan.skips(IpAddr::from([0, 0, 0, host])), skips, "0.0.0.{host}");
        }
        // A shard does not count its share of more than SKIPPED_COUNT_LIMIT skipped probes.
        let space = crate::target::space::v4_space((1, 1 << 23), (80, 80));
        let shard = ScanPlan::new(space, 3, (61000, 61003), 1, 0, Duration::from_secs(1))
            .with_shard(Shard { index: 0, count: 2 });
        assert_eq!(shard.skipping(hosts(&[(1, 1 << 23)])).skipped_probes(), None);
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
                    assert_eq!(probes.len() as u64, plan.probes_per_pass(), "{hosts}x{ports} {index}/{count}");
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
