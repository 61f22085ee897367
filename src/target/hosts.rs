//! The addresses one scan probes: a single address family, kept as integer
//! ranges (`u128`, so that IPv4 and IPv6 share one representation).

use super::ranges::{Range, RangeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    /// Address width in bits.
    pub fn bits(self) -> u32 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    /// The address whose integer value is `v`, which must fit the family.
    pub fn addr(self, v: u128) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(Ipv4Addr::from(v as u32)),
            Family::V6 => IpAddr::V6(Ipv6Addr::from(v)),
        }
    }
}

/// An address as an integer, with its family.
pub fn value(ip: IpAddr) -> (Family, u128) {
    match ip {
        IpAddr::V4(a) => (Family::V4, u32::from(a).into()),
        IpAddr::V6(a) => (Family::V6, u128::from(a)),
    }
}

/// A range of addresses of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrRange {
    pub family: Family,
    pub range: Range<u128>,
}

impl AddrRange {
    pub fn first(&self) -> IpAddr {
        self.family.addr(self.range.first)
    }

    pub fn last(&self) -> IpAddr {
        self.family.addr(self.range.last)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hosts {
    family: Family,
    set: RangeSet<u128>,
}

impl Hosts {
    pub fn new(family: Family, set: RangeSet<u128>) -> Self {
        Hosts { family, set }
    }

    pub fn family(&self) -> Family {
        self.family
    }

    pub fn len(&self) -> u128 {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// The `i`-th smallest address; `i` must be below `len()`.
    pub fn nth(&self, i: u128) -> IpAddr {
        self.family.addr(self.set.nth(i))
    }

    /// The position of `ip` among the addresses, the inverse of `nth`.
    pub fn rank(&self, ip: IpAddr) -> Option<u128> {
        let (family, v) = value(ip);
        if family != self.family {
            return None;
        }
        self.set.rank(v)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let (family, v) = value(ip);
        family == self.family && self.set.contains(v)
    }

    /// The ranges, as address pairs.
    pub fn ranges(&self) -> impl Iterator<Item = AddrRange> + '_ {
        self.set.ranges().iter().map(|&range| AddrRange { family: self.family, range })
    }

    /// The addresses of `self` that are not in `other`: all of them when
    /// `other` is of the other family.
    pub fn outside(&self, other: &Hosts) -> Hosts {
        if other.family != self.family {
            return self.clone();
        }
        Hosts::new(self.family, self.set.subtract(&other.set))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_through_their_values() {
        for ip in ["10.201.0.1", "0.0.0.0", "255.255.255.255", "fd00:201::5", "::", "ffff::ffff"] {
            let ip: IpAddr = ip.parse().unwrap();
            let (family, v) = value(ip);
            assert_eq!(family.addr(v), ip);
        }
        // An IPv4 address and the IPv6 address with the same value are different hosts.
        let hosts = Hosts::new(Family::V6, RangeSet::from_ranges(vec![Range::new(0, 0xffff_ffff)]));
        assert!(hosts.contains("::10.0.0.1".parse().unwrap()));
        assert!(!hosts.contains("10.0.0.1".parse().unwrap()));
        assert_eq!(hosts.rank("10.0.0.1".parse().unwrap()), None);
        assert_eq!(hosts.nth(5), "::5".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn outside_keeps_what_the_other_set_lacks_and_all_of_another_family() {
        let v4 = |r: &[(u128, u128)]| {
            Hosts::new(Family::V4, RangeSet::from_ranges(r.iter().map(|&(a, b)| Range::new(a, b)).collect()))
        };
        let saved = v4(&[(10, 20), (30, 30)]);
        assert_eq!(saved.outside(&v4(&[(0, 100)])), v4(&[]));
        assert_eq!(saved.outside(&v4(&[(12, 13), (30, 40)])), v4(&[(10, 11), (14, 20)]));
        let v6 = Hosts::new(Family::V6, RangeSet::from_ranges(vec![Range::new(0, 100)]));
        assert_eq!(saved.outside(&v6), saved);
    }
}
