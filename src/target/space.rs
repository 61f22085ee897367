//! The (host x port) probe space, indexed arithmetically and never materialised.

use super::TargetError;
use super::hosts::Hosts;
use super::ranges::RangeSet;
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSpace {
    hosts: Hosts,
    ports: RangeSet<u32>,
    /// hosts x ports, at most `MAX_PROBES`: `new` refuses anything larger.
    len: u64,
}

/// The most probes one scan sends, retry passes included. Far beyond any
/// real scan (29,000 years at 10 million probes/s), and low enough that no
/// position, cursor or lane step near the end of the space can overflow u64.
pub const MAX_PROBES: u64 = 1 << 63;

/// The number of probes of `passes` passes over `hosts` x `ports`, if within `MAX_PROBES`.
pub fn probes_within_bound(hosts: u128, ports: u128, passes: u128) -> Result<u64, TargetError> {
    // A saturated count (the whole IPv6 space) is 2^128 or more.
    let total = hosts.checked_mul(ports).and_then(|n| n.checked_mul(passes)).filter(|_| hosts != u128::MAX);
    match total.and_then(|n| u64::try_from(n).ok()).filter(|&n| n <= MAX_PROBES) {
        Some(n) => Ok(n),
        None => Err(TargetError::TooLarge { probes: total.map_or_else(|| "2^128 or more".into(), |n| n.to_string()) }),
    }
}

impl TargetSpace {
    pub fn new(hosts: Hosts, ports: RangeSet<u32>) -> Result<Self, TargetError> {
        let len = probes_within_bound(hosts.len(), ports.len(), 1)?;
        Ok(TargetSpace { hosts, ports, len })
    }

    pub fn hosts(&self) -> &Hosts {
        &self.hosts
    }

    /// Number of hosts: at most `len`, so it fits in u64.
    pub fn host_count(&self) -> u64 {
        self.hosts.len() as u64
    }

    pub fn port_count(&self) -> u64 {
        self.ports.len() as u64
    }

    /// Number of probes in one pass.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The probe at `index`. Hosts vary fastest, so neighbouring indices name
    /// different hosts on the same port.
    pub fn get(&self, index: u64) -> (IpAddr, u16) {
        let h = self.host_count();
        let host = self.hosts.nth((index % h).into());
        let port = self.ports.nth((index / h).into());
        (host, port as u16)
    }

    pub fn contains(&self, ip: IpAddr, port: u16) -> bool {
        self.hosts.contains(ip) && self.ports.contains(port.into())
    }

    /// The index of a probe, the inverse of `get`.
    pub fn index_of(&self, ip: IpAddr, port: u16) -> Option<u64> {
        let host = self.hosts.rank(ip)? as u64;
        let port = self.ports.rank(port.into())? as u64;
        Some(port * self.host_count() + host)
    }
}

/// An IPv4 space of one host range and one port range, for other modules' tests.
#[cfg(test)]
pub(crate) fn v4_space(hosts: (u32, u32), ports: (u32, u32)) -> TargetSpace {
    use super::hosts::Family;
    use super::ranges::Range;
    let hosts = Hosts::new(Family::V4, RangeSet::from_ranges(vec![Range::new(hosts.0.into(), hosts.1.into())]));
    TargetSpace::new(hosts, RangeSet::from_ranges(vec![Range::new(ports.0, ports.1)])).expect("a small space")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::hosts::Family;
    use crate::target::ranges::Range;

    fn hosts(family: Family, r: &[(u128, u128)]) -> Hosts {
        Hosts::new(family, RangeSet::from_ranges(r.iter().map(|&(a, b)| Range::new(a, b)).collect()))
    }

    fn ports(r: &[(u32, u32)]) -> RangeSet<u32> {
        RangeSet::from_ranges(r.iter().map(|&(a, b)| Range::new(a, b)).collect())
    }

    #[test]
    fn every_index_names_a_distinct_probe() {
        let space = TargetSpace::new(hosts(Family::V4, &[(10, 12), (100, 100)]), ports(&[(22, 23), (80, 80)])).unwrap();
        let ip = |v: u32| IpAddr::from(std::net::Ipv4Addr::from(v));
        assert_eq!(space.len(), 12);
        let mut seen: Vec<(IpAddr, u16)> = (0..space.len()).map(|i| space.get(i)).collect();
        assert_eq!(space.get(0), (ip(10), 22));
        assert_eq!(space.get(1), (ip(11), 22));
        assert_eq!(space.get(11), (ip(100), 80));
        assert!(seen.iter().all(|&(ip, p)| space.contains(ip, p)));
        assert!((0..space.len()).all(|i| {
            let (ip, p) = space.get(i);
            space.index_of(ip, p) == Some(i)
        }));
        assert_eq!(space.index_of(ip(13), 22), None);
        assert_eq!(space.index_of(ip(10), 24), None);
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 12);
        assert!(!space.contains(ip(13), 22));
        // The IPv6 address with the same value is another host.
        assert!(!space.contains("::10".parse().unwrap(), 22));
    }

    #[test]
    fn the_whole_internet_on_all_ports_is_just_two_ranges() {
        let space = TargetSpace::new(hosts(Family::V4, &[(0, u32::MAX.into())]), ports(&[(1, 65535)])).unwrap();
        assert_eq!(space.len(), (1u64 << 32) * 65535);
        assert_eq!(space.get(space.len() - 1), ("255.255.255.255".parse().unwrap(), 65535));
    }

    #[test]
    fn ipv6_spaces_up_to_2_pow_63_probes_are_indexed_and_larger_ones_refused() {
        let base = u128::from("fd00:201::".parse::<std::net::Ipv6Addr>().unwrap());
        let slash65 = (base, base + u128::from(MAX_PROBES - 1));
        let refused = TargetSpace::new(hosts(Family::V6, &[(base, slash65.1 + 1)]), ports(&[(80, 80)]));
        assert!(matches!(refused, Err(TargetError::TooLarge { probes }) if probes == "9223372036854775809"));
        let all = TargetSpace::new(hosts(Family::V6, &[(0, u128::MAX)]), ports(&[(1, 1)]));
        assert!(matches!(all, Err(TargetError::TooLarge { probes }) if probes == "2^128 or more"));
        let passes = probes_within_bound(1 << 64, 1, 2);
        assert!(matches!(passes, Err(TargetError::TooLarge { probes }) if probes == "36893488147419103232"));
        assert_eq!(probes_within_bound(1 << 62, 1, 2).unwrap(), MAX_PROBES);

        let space = TargetSpace::new(hosts(Family::V6, &[slash65]), ports(&[(80, 80)])).unwrap();
        assert_eq!(space.len(), MAX_PROBES);
        let last = space.get(MAX_PROBES - 1);
        assert_eq!(last, ("fd00:201::7fff:ffff:ffff:ffff".parse().unwrap(), 80));
        assert_eq!(space.index_of(last.0, 80), Some(MAX_PROBES - 1));
        let space =
            TargetSpace::new(hosts(Family::V6, &[(base, base + 0xffff)]), ports(&[(22, 22), (443, 443)])).unwrap();
        assert_eq!(space.get(0x1_0001), ("fd00:201::1".parse().unwrap(), 443));
    }
}
