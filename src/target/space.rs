//! The (host x port) probe space, indexed arithmetically and never materialised.

use super::ranges::RangeSet;
use std::net::Ipv4Addr;

#[derive(Debug, Clone)]
pub struct TargetSpace {
    hosts: RangeSet,
    ports: RangeSet,
}

impl TargetSpace {
    pub fn new(hosts: RangeSet, ports: RangeSet) -> Self {
        TargetSpace { hosts, ports }
    }

    pub fn hosts(&self) -> &RangeSet {
        &self.hosts
    }

    pub fn ports(&self) -> &RangeSet {
        &self.ports
    }

    /// Number of probes in one pass: at most 2^32 * 65535, which fits in u64.
    pub fn len(&self) -> u64 {
        self.hosts.len() * self.ports.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The probe at `index`. Hosts vary fastest, so neighbouring indices name
    /// different hosts on the same port.
    pub fn get(&self, index: u64) -> (Ipv4Addr, u16) {
        let h = self.hosts.len();
        let host = self.hosts.nth(index % h);
        let port = self.ports.nth(index / h);
        (Ipv4Addr::from(host), port as u16)
    }

    pub fn contains(&self, ip: Ipv4Addr, port: u16) -> bool {
        self.hosts.contains(ip.into()) && self.ports.contains(port.into())
    }

    /// The index of a probe, the inverse of `get`.
    pub fn index_of(&self, ip: Ipv4Addr, port: u16) -> Option<u64> {
        let host = self.hosts.rank(ip.into())?;
        let port = self.ports.rank(port.into())?;
        Some(port * self.hosts.len() + host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::ranges::Range;

    #[test]
    fn every_index_names_a_distinct_probe() {
        let hosts = RangeSet::from_ranges(vec![Range::new(10, 12), Range::new(100, 100)]);
        let ports = RangeSet::from_ranges(vec![Range::new(22, 23), Range::new(80, 80)]);
        let space = TargetSpace::new(hosts, ports);
        assert_eq!(space.len(), 12);
        let mut seen: Vec<(Ipv4Addr, u16)> = (0..space.len()).map(|i| space.get(i)).collect();
        assert_eq!(space.get(0), (Ipv4Addr::from(10), 22));
        assert_eq!(space.get(1), (Ipv4Addr::from(11), 22));
        assert_eq!(space.get(11), (Ipv4Addr::from(100), 80));
        assert!(seen.iter().all(|&(ip, p)| space.contains(ip, p)));
        assert!((0..space.len()).all(|i| {
            let (ip, p) = space.get(i);
            space.index_of(ip, p) == Some(i)
        }));
        assert_eq!(space.index_of(Ipv4Addr::from(13), 22), None);
        assert_eq!(space.index_of(Ipv4Addr::from(10), 24), None);
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 12);
        assert!(!space.contains(Ipv4Addr::from(13), 22));
    }

    #[test]
    fn the_whole_internet_on_all_ports_is_just_two_ranges() {
        let space = TargetSpace::new(
            RangeSet::from_ranges(vec![Range::new(0, u32::MAX)]),
            RangeSet::from_ranges(vec![Range::new(1, 65535)]),
        );
        assert_eq!(space.len(), (1u64 << 32) * 65535);
        assert_eq!(space.get(space.len() - 1), (Ipv4Addr::BROADCAST, 65535));
    }
}
