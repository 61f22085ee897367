//! Special-purpose address ranges that a wide scan must not probe.
//!
//! The list is the IPv4 part of IANA's special-purpose registry plus multicast
//! and the reserved class E block, as zmap's default blocklist has it. A
//! special range is skipped only where a target merely overlaps it: a target
//! that lies wholly inside one (`10.201.0.0/16`, `127.0.0.1`) was named on
//! purpose and is scanned as named.

use super::ranges::{Range, RangeSet};

/// (first, last, what it is)
const SPECIAL_V4: [(u32, u32, &str); 15] = [
    (0x0000_0000, 0x00ff_ffff, "this network (0.0.0.0/8)"),
    (0x0a00_0000, 0x0aff_ffff, "private use (10.0.0.0/8)"),
    (0x6440_0000, 0x647f_ffff, "shared address space (100.64.0.0/10)"),
    (0x7f00_0000, 0x7fff_ffff, "loopback (127.0.0.0/8)"),
    (0xa9fe_0000, 0xa9fe_ffff, "link local (169.254.0.0/16)"),
    (0xac10_0000, 0xac1f_ffff, "private use (172.16.0.0/12)"),
    (0xc000_0000, 0xc000_00ff, "IETF protocol assignments (192.0.0.0/24)"),
    (0xc000_0200, 0xc000_02ff, "documentation (192.0.2.0/24)"),
    (0xc058_6300, 0xc058_63ff, "6to4 relay anycast (192.88.99.0/24)"),
    (0xc0a8_0000, 0xc0a8_ffff, "private use (192.168.0.0/16)"),
    (0xc612_0000, 0xc613_ffff, "benchmarking (198.18.0.0/15)"),
    (0xc633_6400, 0xc633_64ff, "documentation (198.51.100.0/24)"),
    (0xcb00_7100, 0xcb00_71ff, "documentation (203.0.113.0/24)"),
    (0xe000_0000, 0xefff_ffff, "multicast (224.0.0.0/4)"),
    (0xf000_0000, 0xffff_ffff, "reserved and broadcast (240.0.0.0/4)"),
];

/// What the default exclusions removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Excluded {
    /// Addresses removed, per special range, in the order of the list.
    pub by_range: Vec<(&'static str, u64)>,
}

impl Excluded {
    pub fn total(&self) -> u64 {
        self.by_range.iter().map(|(_, n)| n).sum()
    }
}

/// The addresses of `targets` (each as named, before merging) minus the
/// special ranges each merely overlaps.
pub fn without_special(targets: &[Range]) -> (RangeSet, Excluded) {
    let specials = || SPECIAL_V4.iter().map(|&(a, b, name)| (Range::new(a, b), name));
    let kept: Vec<Range> = targets
        .iter()
        .flat_map(|t| {
            let cut: Vec<Range> =
                specials().filter(|(s, _)| !(s.first <= t.first && t.last <= s.last)).map(|(s, _)| s).collect();
            RangeSet::from_ranges(vec![*t]).subtract(&RangeSet::from_ranges(cut)).ranges().to_vec()
        })
        .collect();
    let kept = RangeSet::from_ranges(kept);
    let removed = RangeSet::from_ranges(targets.to_vec()).subtract(&kept);
    let by_range = specials().map(|(s, name)| (name, removed.intersection_len(s))).filter(|(_, n)| *n > 0).collect();
    (kept, Excluded { by_range })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::spec::{TargetSpec, parse_target};

    fn range(t: &str) -> Range {
        match parse_target(t).unwrap() {
            TargetSpec::Range(r) => r,
            TargetSpec::Hostname(_) => panic!(),
        }
    }

    #[test]
    fn the_whole_space_loses_every_special_range() {
        let (kept, excluded) = without_special(&[range("0.0.0.0/0")]);
        let special: u64 = SPECIAL_V4.iter().map(|&(a, b, _)| u64::from(b - a) + 1).sum();
        assert_eq!(excluded.total(), special);
        assert_eq!(kept.len(), (1u64 << 32) - special);
        assert_eq!(excluded.by_range.len(), SPECIAL_V4.len());
        for &(a, b, _) in &SPECIAL_V4 {
            assert!(!kept.contains(a) && !kept.contains(b));
        }
        assert!(kept.contains(0x0808_0808));
    }

    #[test]
    fn a_target_inside_a_special_range_is_scanned_as_named() {
        for t in ["10.201.0.0/16", "127.0.0.1", "192.168.1.0/24", "224.0.0.1"] {
            let (kept, excluded) = without_special(&[range(t)]);
            assert_eq!(excluded.total(), 0, "{t}");
            assert_eq!(kept.len(), range(t).count(), "{t}");
        }
    }

    #[test]
    fn a_target_crossing_into_a_special_range_keeps_only_the_ordinary_part() {
        let (kept, excluded) = without_special(&[range("126.255.255.0-127.0.0.255")]);
        assert_eq!(kept.ranges(), &[range("126.255.255.0/24")]);
        assert_eq!(excluded.by_range, vec![("loopback (127.0.0.0/8)", 256)]);
    }

    #[test]
    fn a_named_target_survives_a_wider_one_beside_it() {
        let (kept, _) = without_special(&[range("0.0.0.0/0"), range("10.201.0.0/16")]);
        assert!(kept.contains(range("10.201.3.4").first));
        assert!(!kept.contains(range("10.1.0.1").first));
    }
}
