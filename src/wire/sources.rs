//! The addresses a scan's probes leave from (`--source-ip`, one address, a
//! range or a list), and which of them each target hears from.
//!
//! A target host always hears from the same address, chosen by a hash of
//! its own: its retries and all its ports come from one source, as zmap
//! does it, and spreading needs no state. Replies are recognised by
//! whichever of the addresses they are sent to; the cookies are keyed by it.
//!
//! At most `MAX_SOURCES`: the XDP program and the classic BPF filter compare
//! each reply's destination with every address, and a bounded loop keeps
//! that cheap and acceptable to the verifier.

use std::fmt;
use std::net::IpAddr;

/// The most addresses one scan sends from: as many as the XDP program holds.
pub const MAX_SOURCES: usize = 16;

/// One to `MAX_SOURCES` distinct addresses of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sources {
    addrs: [IpAddr; MAX_SOURCES],
    len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourcesError {
    #[error("no source address")]
    Empty,
    #[error("{} source addresses: prtip sends from at most {MAX_SOURCES}", count_of(*.0))]
    TooMany(u128),
    #[error("source addresses {0} and {1} are of different address families")]
    MixedFamilies(IpAddr, IpAddr),
    #[error("source address {0} is given twice")]
    Repeated(IpAddr),
}

/// A count that saturated is all of IPv6: 2^128 does not fit a u128.
fn count_of(n: u128) -> String {
    if n == u128::MAX { "2^128".into() } else { n.to_string() }
}

impl Sources {
    pub fn one(addr: IpAddr) -> Self {
        Sources { addrs: [addr; MAX_SOURCES], len: 1 }
    }

    pub fn new(addrs: &[IpAddr]) -> Result<Self, SourcesError> {
        let first = *addrs.first().ok_or(SourcesError::Empty)?;
        if addrs.len() > MAX_SOURCES {
            return Err(SourcesError::TooMany(addrs.len() as u128));
        }
        let mut sources = Sources::one(first);
        for &a in &addrs[1..] {
            if a.is_ipv4() != first.is_ipv4() {
                return Err(SourcesError::MixedFamilies(first, a));
            }
            if sources.contains(a) {
                return Err(SourcesError::Repeated(a));
            }
            sources.addrs[sources.len] = a;
            sources.len += 1;
        }
        Ok(sources)
    }

    pub fn as_slice(&self) -> &[IpAddr] {
        &self.addrs[..self.len]
    }

    pub fn count(&self) -> usize {
        self.len
    }

    /// The first address: the one a next hop is asked from.
    pub fn first(&self) -> IpAddr {
        self.addrs[0]
    }

    pub fn is_ipv4(&self) -> bool {
        self.addrs[0].is_ipv4()
    }

    pub fn get(&self, i: usize) -> IpAddr {
        self.as_slice()[i]
    }

    #[inline]
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.index_of(addr).is_some()
    }

    #[inline]
    pub fn index_of(&self, addr: IpAddr) -> Option<usize> {
        self.as_slice().iter().position(|&a| a == addr)
    }

    /// Which address the probes to `dst` leave from, by its index.
    #[inline]
    pub fn pick(&self, dst: IpAddr) -> usize {
        if self.len == 1 {
            return 0;
        }
        let folded = match dst {
            IpAddr::V4(a) => u64::from(u32::from(a)),
            IpAddr::V6(a) => {
                let v = u128::from(a);
                (v >> 64) as u64 ^ v as u64
            }
        };
        (mix(folded) % self.len as u64) as usize
    }
}

/// splitmix64's finaliser: neighbouring addresses land on unrelated sources.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// As `--source-ip` takes them: consecutive addresses as a range.
impl fmt::Display for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = |a: &IpAddr| match a {
            IpAddr::V4(a) => u128::from(u32::from(*a)),
            IpAddr::V6(a) => u128::from(*a),
        };
        let addrs = self.as_slice();
        let mut i = 0;
        while i < addrs.len() {
            let mut last = i;
            while last + 1 < addrs.len() && value(&addrs[last]).checked_add(1) == Some(value(&addrs[last + 1])) {
                last += 1;
            }
            if i > 0 {
                f.write_str(",")?;
            }
            if last > i {
                write!(f, "{}-{}", addrs[i], addrs[last])?;
            } else {
                write!(f, "{}", addrs[i])?;
            }
            i = last + 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn v4(last: u8) -> IpAddr {
        Ipv4Addr::new(10, 200, 0, last).into()
    }

    #[test]
    fn each_target_hears_from_one_source_and_all_are_used_evenly() {
        let addrs: Vec<IpAddr> = (1..=8).map(v4).collect();
        let s = Sources::new(&addrs).unwrap();
        let mut counts = [0u32; 8];
        for host in 0..65536u32 {
            let dst = IpAddr::V4(Ipv4Addr::from(0x0ac9_0000 + host));
            let i = s.pick(dst);
            assert_eq!(i, s.pick(dst));
            counts[i] += 1;
        }
        // 8192 each on average: a fair spread stays well within 5%.
        assert!(counts.iter().all(|&c| (7782..=8602).contains(&c)), "{counts:?}");
        assert_eq!(Sources::one(v4(1)).pick(v4(9)), 0);
    }

    #[test]
    fn a_reply_is_matched_to_the_source_it_came_to() {
        let s = Sources::new(&[v4(1), v4(5), v4(3)]).unwrap();
        assert_eq!((s.index_of(v4(5)), s.index_of(v4(3)), s.index_of(v4(2))), (Some(1), Some(2), None));
        assert_eq!(s.to_string(), "10.200.0.1,10.200.0.5,10.200.0.3");
        let runs = Sources::new(&[v4(1), v4(2), v4(3), v4(9), v4(4), v4(5)]).unwrap();
        assert_eq!(runs.to_string(), "10.200.0.1-10.200.0.3,10.200.0.9,10.200.0.4-10.200.0.5");
        let v6: Vec<IpAddr> = ["fd00::1", "fd00::2", "fd00::1:0"].iter().map(|a| a.parse().unwrap()).collect();
        assert_eq!(Sources::new(&v6).unwrap().to_string(), "fd00::1-fd00::2,fd00::1:0");
        assert_eq!(s.first(), v4(1));
    }

    #[test]
    fn sets_that_cannot_be_sent_from_are_refused() {
        let v6: IpAddr = "fd00:200::1".parse().unwrap();
        let seventeen: Vec<IpAddr> = (1..=17).map(v4).collect();
        assert_eq!(Sources::new(&[]), Err(SourcesError::Empty));
        assert_eq!(Sources::new(&seventeen), Err(SourcesError::TooMany(17)));
        assert_eq!(Sources::new(&[v4(1), v6]), Err(SourcesError::MixedFamilies(v4(1), v6)));
        assert_eq!(Sources::new(&[v4(1), v4(2), v4(1)]), Err(SourcesError::Repeated(v4(1))));
        assert_eq!(Sources::new(&seventeen[..16]).unwrap().count(), 16);
    }
}
