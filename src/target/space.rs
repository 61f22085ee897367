//! The (host x port) probe space, indexed arithmetically and never materialised.

use super::TargetError;
use super::hosts::Hosts;
use super::ranges::RangeSet;
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSpace {
    hosts: Hosts,
    ports: RangeSet<u32>,
    /// hosts x ports, which fits in u64: `new` refuses anything larger.
    len: u64,
}

impl TargetSpace {
    pub fn new(hosts: Hosts, ports: RangeSet<u32>) -> Result<Self, TargetError> {
        let len = hosts.len().checked_mul(ports.len());
        match len.and_then(|n| u64::try_from(n).ok()) {
            Some(len) => Ok(TargetSpace { hosts, ports, len }),
            None => {
                Err(TargetError::TooLarge { probes: len.map_or_else(|| "more than 2^128".into(), |n| n.to_string()) })
            }
        }
    }

    pub fn hosts(&self) -> &Hosts {
        &self.hosts
    }

    pub fn ports(&self) -> &RangeSet<u32> {
        &self.ports
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
    fn ipv6_spaces_up_to_2_pow_64_minus_1_probes_are_indexed_and_larger_ones_refused() {
        let base = u128::from("fd00:201::".parse::<std::net::Ipv6Addr>().unwrap());
        let slash64 = (base, base + u128::from(u64::MAX));
        let refused = TargetSpace::new(hosts(Family::V6, &[slash64]), ports(&[(80, 80)]));
        assert!(matches!(refused, Err(TargetError::TooLarge { probes }) if probes == "18446744073709551616"));
        let all = TargetSpace::new(hosts(Family::V6, &[(0, u128::MAX)]), ports(&[(1, 65535)]));
        assert!(matches!(all, Err(TargetError::TooLarge { probes }) if probes == "more than 2^128"));

        let space = TargetSpace::new(hosts(Family::V6, &[(base, slash64.1 - 1)]), ports(&[(80, 80)])).unwrap();
        assert_eq!(space.len(), u64::MAX);
        let last = space.get(u64::MAX - 1);
        assert_eq!(last, ("fd00:201::ffff:ffff:ffff:fffe".parse().unwrap(), 80));
        assert_eq!(space.index_of(last.0, 80), Some(u64::MAX - 1));
        let space =
            TargetSpace::new(hosts(Family::V6, &[(base, base + 0xffff)]), ports(&[(22, 22), (443, 443)])).unwrap();
        assert_eq!(space.get(0x1_0001), ("fd00:201::1".parse().unwrap(), 443));
    }
}
