//! Special-purpose address ranges that a wide scan must not probe.
//!
//! IPv4: IANA's special-purpose registry plus multicast and the reserved
//! class E block, as zmap's default blocklist has it. IPv6: IANA's
//! special-purpose registry, multicast, and the space outside 2000::/3 that
//! the address-space registry reserves. A special range is skipped only where
//! a target merely overlaps it: a target that lies wholly inside one
//! (`10.201.0.0/16`, `127.0.0.1`, `fd00:201::/112`) was named on purpose and
//! is scanned as named.

use super::hosts::{AddrRange, Family};
use super::ranges::{Range, RangeSet};
use super::spec::{TargetSpec, parse_target};

/// (range, what it is): the range is written out so that it can be read and
/// checked against the registries.
const SPECIAL_V4: [(&str, &str); 15] = [
    ("0.0.0.0/8", "this network"),
    ("10.0.0.0/8", "private use"),
    ("100.64.0.0/10", "shared address space"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link local"),
    ("172.16.0.0/12", "private use"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "6to4 relay anycast"),
    ("192.168.0.0/16", "private use"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved and broadcast"),
];

const SPECIAL_V6: [(&str, &str); 17] = [
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::ffff:0:0/96", "IPv4-mapped"),
    ("64:ff9b::/96", "IPv4-IPv6 translation"),
    ("64:ff9b:1::/48", "local-use IPv4-IPv6 translation"),
    ("100::/64", "discard only"),
    ("100:0:0:1::/64", "dummy prefix"),
    ("2001::/23", "IETF protocol assignments"),
    ("2001:db8::/32", "documentation"),
    ("2002::/16", "6to4"),
    ("3fff::/20", "documentation"),
    ("5f00::/16", "segment routing SIDs"),
    ("fc00::/7", "unique local"),
    ("fe80::/10", "link local"),
    ("ff00::/8", "multicast"),
    ("::/3", "reserved outside global unicast"),
    ("4000::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "reserved outside global unicast"),
];

/// What the default exclusions removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Excluded {
    /// Addresses removed in all.
    pub total: u128,
    /// Addresses removed, per special range ("what (range)"), in the order
    /// of the list. IPv6 ranges overlap (the reserved space holds others),
    /// so these may add up to more than `total`.
    pub by_range: Vec<(String, u128)>,
}

fn specials(family: Family) -> impl Iterator<Item = (Range<u128>, String)> {
    let table: &'static [(&str, &str)] = match family {
        Family::V4 => &SPECIAL_V4,
        Family::V6 => &SPECIAL_V6,
    };
    table.iter().map(|&(expr, what)| match parse_target(expr) {
        Ok(TargetSpec::Range(r)) => (r.range, format!("{what} ({expr})")),
        _ => unreachable!("the special range {expr} is a valid address range"),
    })
}

/// The addresses of `targets` (each as named, before merging; all of
/// `family`) minus the special ranges each merely overlaps.
pub fn without_special(family: Family, targets: &[AddrRange]) -> (RangeSet<u128>, Excluded) {
    let specials: Vec<(Range<u128>, String)> = specials(family).collect();
    let targets: Vec<Range<u128>> = targets.iter().map(|t| t.range).collect();
    let kept: Vec<Range<u128>> = targets
        .iter()
        .flat_map(|t| {
            let cut: Vec<Range<u128>> =
                specials.iter().filter(|(s, _)| !(s.first <= t.first && t.last <= s.last)).map(|(s, _)| *s).collect();
            RangeSet::from_ranges(vec![*t]).subtract(&RangeSet::from_ranges(cut)).ranges().to_vec()
        })
        .collect();
    let kept = RangeSet::from_ranges(kept);
    let removed = RangeSet::from_ranges(targets).subtract(&kept);
    let by_range =
        specials.into_iter().map(|(s, name)| (name, removed.intersection_len(s))).filter(|(_, n)| *n > 0).collect();
    (kept, Excluded { total: removed.len(), by_range })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(t: &str) -> AddrRange {
        match parse_target(t).unwrap() {
            TargetSpec::Range(r) => r,
            TargetSpec::Hostname(_) => panic!(),
        }
    }

    fn v4(t: &str) -> u128 {
        range(t).range.first
    }

    #[test]
    fn the_whole_ipv4_space_loses_every_special_range() {
        let (kept, excluded) = without_special(Family::V4, &[range("0.0.0.0/0")]);
        let special: u128 = specials(Family::V4).map(|(r, _)| r.count()).sum();
        assert_eq!(excluded.total, special);
        assert_eq!(excluded.by_range.iter().map(|(_, n)| n).sum::<u128>(), special);
        assert_eq!(kept.len(), (1u128 << 32) - special);
        assert_eq!(excluded.by_range.len(), SPECIAL_V4.len());
        for (r, _) in specials(Family::V4) {
            assert!(!kept.contains(r.first) && !kept.contains(r.last));
        }
        assert!(kept.contains(v4("8.8.8.8")));
    }

    #[test]
    fn the_whole_ipv6_space_keeps_only_ordinary_global_unicast() {
        let (kept, excluded) = without_special(Family::V6, &[range("::/0")]);
        // Global unicast (2000::/3) minus the special ranges inside it.
        let inside: u128 =
            ["2001::/23", "2001:db8::/32", "2002::/16", "3fff::/20"].iter().map(|t| range(t).range.count()).sum();
        assert_eq!(kept.len(), (1u128 << 125) - inside);
        assert_eq!(excluded.total, u128::MAX - kept.len() + 1);
        for t in ["::1", "fe80::1", "fd00::1", "ff02::1", "2001:db8::1", "64:ff9b::1", "4000::1", "::ffff:1.2.3.4"] {
            assert!(!kept.contains(range(t).range.first), "{t}");
        }
        assert!(kept.contains(range("2a00:1450::1").range.first));
        assert!(kept.contains(range("2001:200::1").range.first));
    }

    #[test]
    fn a_target_inside_a_special_range_is_scanned_as_named() {
        for t in ["10.201.0.0/16", "127.0.0.1", "192.168.1.0/24", "224.0.0.1"] {
            let (kept, excluded) = without_special(Family::V4, &[range(t)]);
            assert_eq!(excluded.total, 0, "{t}");
            assert_eq!(kept.len(), range(t).range.count(), "{t}");
        }
        for t in ["fd00:201::/112", "::1", "fe80::/64", "2001:db8::/48", "ff02::1"] {
            let (kept, excluded) = without_special(Family::V6, &[range(t)]);
            assert_eq!(excluded.total, 0, "{t}");
            assert_eq!(kept.len(), range(t).range.count(), "{t}");
        }
    }

    #[test]
    fn a_target_crossing_into_a_special_range_keeps_only_the_ordinary_part() {
        let (kept, excluded) = without_special(Family::V4, &[range("126.255.255.0-127.0.0.255")]);
        assert_eq!(kept.ranges(), &[range("126.255.255.0/24").range]);
        assert_eq!(excluded.by_range, vec![("loopback (127.0.0.0/8)".to_string(), 256)]);
        let (kept, excluded) =
            without_special(Family::V6, &[range("2001:db7:ffff:ffff:ffff:ffff:ffff:ff00-2001:db8::ff")]);
        assert_eq!(kept.ranges(), &[range("2001:db7:ffff:ffff:ffff:ffff:ffff:ff00/120").range]);
        assert_eq!(excluded.by_range, vec![("documentation (2001:db8::/32)".to_string(), 256)]);
    }

    #[test]
    fn a_named_target_survives_a_wider_one_beside_it() {
        let (kept, _) = without_special(Family::V4, &[range("0.0.0.0/0"), range("10.201.0.0/16")]);
        assert!(kept.contains(v4("10.201.3.4")));
        assert!(!kept.contains(v4("10.1.0.1")));
    }
}
