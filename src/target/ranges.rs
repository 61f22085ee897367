//! Sorted, disjoint inclusive ranges of `u32` with O(log r) indexing.
//!
//! Hosts (IPv4 addresses as integers) and ports are both kept this way, so a
//! /8 costs one range, not sixteen million entries.

/// An inclusive range `[first, last]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Range {
    pub first: u32,
    pub last: u32,
}

impl Range {
    pub fn new(first: u32, last: u32) -> Self {
        debug_assert!(first <= last);
        Range { first, last }
    }

    /// Number of values: never zero, so not `len` (which would ask for an `is_empty`).
    pub fn count(&self) -> u64 {
        u64::from(self.last - self.first) + 1
    }

    pub fn contains(&self, v: u32) -> bool {
        self.first <= v && v <= self.last
    }
}

/// A normalised set of ranges: sorted, merged, non-empty ranges only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet {
    ranges: Vec<Range>,
    /// `starts[i]` is the number of values in `ranges[..i]`; it makes `nth` a binary search.
    starts: Vec<u64>,
    len: u64,
}

impl RangeSet {
    pub fn from_ranges(mut ranges: Vec<Range>) -> Self {
        ranges.sort_unstable();
        let mut merged: Vec<Range> = Vec::with_capacity(ranges.len());
        for r in ranges {
            match merged.last_mut() {
                // Adjacent ranges merge too: [1,5] and [6,9] are [1,9].
                Some(last) if u64::from(r.first) <= u64::from(last.last) + 1 => {
                    last.last = last.last.max(r.last);
                }
                _ => merged.push(r),
            }
        }
        let mut starts = Vec::with_capacity(merged.len());
        let mut len = 0u64;
        for r in &merged {
            starts.push(len);
            len += r.count();
        }
        RangeSet { ranges: merged, starts, len }
    }

    pub fn ranges(&self) -> &[Range] {
        &self.ranges
    }

    /// Number of values in the set.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn contains(&self, v: u32) -> bool {
        let i = self.ranges.partition_point(|r| r.last < v);
        self.ranges.get(i).is_some_and(|r| r.contains(v))
    }

    /// The `i`-th smallest value. `i` must be below `len()`.
    pub fn nth(&self, i: u64) -> u32 {
        debug_assert!(i < self.len);
        let k = self.starts.partition_point(|&s| s <= i) - 1;
        // The offset is below the range's length, which fits in u32 + 1.
        self.ranges[k].first + (i - self.starts[k]) as u32
    }

    /// The position of `v` among the values, the inverse of `nth`.
    pub fn rank(&self, v: u32) -> Option<u64> {
        let k = self.ranges.partition_point(|r| r.last < v);
        let r = self.ranges.get(k).filter(|r| r.contains(v))?;
        Some(self.starts[k] + u64::from(v - r.first))
    }

    /// How many values of `self` lie in `r`.
    pub fn intersection_len(&self, r: Range) -> u64 {
        let start = self.ranges.partition_point(|x| x.last < r.first);
        self.ranges[start..]
            .iter()
            .take_while(|x| x.first <= r.last)
            .map(|x| Range::new(x.first.max(r.first), x.last.min(r.last)).count())
            .sum()
    }

    /// The values of `self` that are not in `other`.
    pub fn subtract(&self, other: &RangeSet) -> RangeSet {
        let mut out = Vec::new();
        let mut cut = other.ranges.iter().peekable();
        for r in &self.ranges {
            let mut first = u64::from(r.first);
            let last = u64::from(r.last);
            while let Some(c) = cut.peek() {
                if u64::from(c.last) < first {
                    cut.next();
                    continue;
                }
                if u64::from(c.first) > last {
                    break;
                }
                if u64::from(c.first) > first {
                    out.push(Range::new(first as u32, c.first - 1));
                }
                first = u64::from(c.last) + 1;
                if first > last {
                    break;
                }
                cut.next();
            }
            if first <= last {
                out.push(Range::new(first as u32, last as u32));
            }
        }
        RangeSet::from_ranges(out)
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.ranges.iter().flat_map(|r| r.first..=r.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(v: &[(u32, u32)]) -> RangeSet {
        RangeSet::from_ranges(v.iter().map(|&(a, b)| Range::new(a, b)).collect())
    }

    #[test]
    fn merges_overlapping_and_adjacent() {
        let s = set(&[(10, 20), (1, 5), (6, 8), (15, 30), (40, 40)]);
        assert_eq!(s.ranges(), &[Range::new(1, 8), Range::new(10, 30), Range::new(40, 40)]);
        assert_eq!(s.len(), 8 + 21 + 1);
    }

    #[test]
    fn full_u32_space_has_2_pow_32_values() {
        let s = set(&[(0, u32::MAX)]);
        assert_eq!(s.len(), 1 << 32);
        assert_eq!(s.nth(0), 0);
        assert_eq!(s.nth((1 << 32) - 1), u32::MAX);
    }

    #[test]
    fn nth_walks_ranges_in_order() {
        let s = set(&[(1, 3), (10, 11), (100, 100)]);
        let all: Vec<u32> = (0..s.len()).map(|i| s.nth(i)).collect();
        assert_eq!(all, vec![1, 2, 3, 10, 11, 100]);
    }

    #[test]
    fn subtract_cuts_middles_edges_and_wholes() {
        let s = set(&[(0, 100), (200, 300), (u32::MAX - 2, u32::MAX)]);
        let cut = set(&[(0, 9), (50, 59), (100, 250), (u32::MAX, u32::MAX)]);
        assert_eq!(
            s.subtract(&cut).ranges(),
            &[Range::new(10, 49), Range::new(60, 99), Range::new(251, 300), Range::new(u32::MAX - 2, u32::MAX - 1)]
        );
        assert!(s.subtract(&set(&[(0, u32::MAX)])).is_empty());
    }

    proptest! {
        #[test]
        fn subtract_and_contains_agree_with_brute_force(
            a in proptest::collection::vec((0u32..300, 0u32..40), 0..8),
            b in proptest::collection::vec((0u32..300, 0u32..40), 0..8),
        ) {
            let mk = |v: &Vec<(u32, u32)>| set(&v.iter().map(|&(x, l)| (x, x + l)).collect::<Vec<_>>());
            let (sa, sb) = (mk(&a), mk(&b));
            let diff = sa.subtract(&sb);
            for v in 0..400 {
                prop_assert_eq!(diff.contains(v), sa.contains(v) && !sb.contains(v));
            }
            for (a, l) in &b {
                let r = Range::new(*a, a + l);
                prop_assert_eq!(sa.intersection_len(r), (r.first..=r.last).filter(|v| sa.contains(*v)).count() as u64);
            }
            let listed: Vec<u32> = diff.iter().collect();
            prop_assert_eq!(listed.len() as u64, diff.len());
            for (i, v) in listed.iter().enumerate() {
                prop_assert_eq!(diff.nth(i as u64), *v);
            }
        }
    }
}
