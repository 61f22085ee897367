//! Sorted, disjoint inclusive ranges of integers with O(log r) indexing.
//!
//! Hosts (addresses as integers: IPv4 and IPv6 alike, as `u128`) and ports
//! are both kept this way, so a /8, or an IPv6 /64, costs one range, not an
//! entry per address. Counts are `u128` and saturate: only the whole IPv6
//! space (2^128 addresses) reaches the limit, and no scan can be that large.

use std::fmt::Debug;

/// An integer type a `RangeSet` can hold.
pub trait Value: Copy + Ord + Debug {
    fn to_u128(self) -> u128;
    /// `v` must fit: it is always a value of the set or an offset within one of its ranges.
    fn from_u128(v: u128) -> Self;
}

impl Value for u32 {
    fn to_u128(self) -> u128 {
        self.into()
    }

    fn from_u128(v: u128) -> Self {
        v as u32
    }
}

impl Value for u128 {
    fn to_u128(self) -> u128 {
        self
    }

    fn from_u128(v: u128) -> Self {
        v
    }
}

/// An inclusive range `[first, last]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Range<T> {
    pub first: T,
    pub last: T,
}

impl<T: Value> Range<T> {
    pub fn new(first: T, last: T) -> Self {
        debug_assert!(first <= last);
        Range { first, last }
    }

    /// Number of values: never zero, so not `len` (which would ask for an `is_empty`).
    pub fn count(&self) -> u128 {
        (self.last.to_u128() - self.first.to_u128()).saturating_add(1)
    }

    pub fn contains(&self, v: T) -> bool {
        self.first <= v && v <= self.last
    }
}

/// A normalised set of ranges: sorted, merged, non-empty ranges only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSet<T> {
    ranges: Vec<Range<T>>,
    /// `starts[i]` is the number of values in `ranges[..i]`; it makes `nth` a binary search.
    starts: Vec<u128>,
    len: u128,
}

impl<T> Default for RangeSet<T> {
    fn default() -> Self {
        RangeSet { ranges: Vec::new(), starts: Vec::new(), len: 0 }
    }
}

impl<T: Value> RangeSet<T> {
    pub fn from_ranges(mut ranges: Vec<Range<T>>) -> Self {
        ranges.sort_unstable();
        let mut merged: Vec<Range<T>> = Vec::with_capacity(ranges.len());
        for r in ranges {
            match merged.last_mut() {
                // Adjacent ranges merge too: [1,5] and [6,9] are [1,9].
                Some(last) if r.first.to_u128() <= last.last.to_u128().saturating_add(1) => {
                    last.last = last.last.max(r.last);
                }
                _ => merged.push(r),
            }
        }
        let mut starts = Vec::with_capacity(merged.len());
        let mut len = 0u128;
        for r in &merged {
            starts.push(len);
            len = len.saturating_add(r.count());
        }
        RangeSet { ranges: merged, starts, len }
    }

    pub fn ranges(&self) -> &[Range<T>] {
        &self.ranges
    }

    /// Number of values in the set.
    pub fn len(&self) -> u128 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn contains(&self, v: T) -> bool {
        let i = self.ranges.partition_point(|r| r.last < v);
        self.ranges.get(i).is_some_and(|r| r.contains(v))
    }

    /// The `i`-th smallest value. `i` must be below `len()`.
    pub fn nth(&self, i: u128) -> T {
        debug_assert!(i < self.len);
        let k = self.starts.partition_point(|&s| s <= i) - 1;
        T::from_u128(self.ranges[k].first.to_u128() + (i - self.starts[k]))
    }

    /// The position of `v` among the values, the inverse of `nth`.
    pub fn rank(&self, v: T) -> Option<u128> {
        let k = self.ranges.partition_point(|r| r.last < v);
        let r = self.ranges.get(k).filter(|r| r.contains(v))?;
        Some(self.starts[k] + (v.to_u128() - r.first.to_u128()))
    }

    /// How many values of `self` lie in `r`.
    pub fn intersection_len(&self, r: Range<T>) -> u128 {
        let start = self.ranges.partition_point(|x| x.last < r.first);
        self.ranges[start..]
            .iter()
            .take_while(|x| x.first <= r.last)
            .map(|x| Range::new(x.first.max(r.first), x.last.min(r.last)).count())
            .fold(0, u128::saturating_add)
    }

    /// The values of `self` that are not in `other`.
    pub fn subtract(&self, other: &RangeSet<T>) -> RangeSet<T> {
        let mut out = Vec::new();
        let mut cut = other.ranges.iter().peekable();
        for r in &self.ranges {
            // `first` may step one past the largest value: hence the Option.
            let mut first = Some(r.first.to_u128());
            let last = r.last.to_u128();
            while let (Some(c), Some(f)) = (cut.peek(), first) {
                if c.last.to_u128() < f {
                    cut.next();
                    continue;
                }
                if c.first.to_u128() > last {
                    break;
                }
                if c.first.to_u128() > f {
                    out.push(Range::new(T::from_u128(f), T::from_u128(c.first.to_u128() - 1)));
                }
                first = c.last.to_u128().checked_add(1).filter(|f| *f <= last);
                if first.is_none() {
                    break;
                }
                cut.next();
            }
            if let Some(f) = first {
                out.push(Range::new(T::from_u128(f), r.last));
            }
        }
        RangeSet::from_ranges(out)
    }

    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        self.ranges.iter().flat_map(|r| {
            let (first, last) = (r.first.to_u128(), r.last.to_u128());
            (0..=last - first).map(move |o| T::from_u128(first + o))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(v: &[(u32, u32)]) -> RangeSet<u32> {
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
    fn the_ipv6_space_saturates_its_count_and_subtracts_at_the_top() {
        let all = RangeSet::from_ranges(vec![Range::new(0u128, u128::MAX)]);
        assert_eq!(all.len(), u128::MAX);
        let top = RangeSet::from_ranges(vec![Range::new(u128::MAX - 9, u128::MAX)]);
        let rest = all.subtract(&top);
        assert_eq!(rest.ranges(), &[Range::new(0, u128::MAX - 10)]);
        assert_eq!(top.nth(9), u128::MAX);
        assert_eq!(top.rank(u128::MAX), Some(9));
        assert_eq!(all.intersection_len(Range::new(u128::MAX - 1, u128::MAX)), 2);
        assert!(top.subtract(&all).is_empty());
        let merged = RangeSet::from_ranges(vec![Range::new(0u128, 5), Range::new(6, u128::MAX)]);
        assert_eq!(merged.ranges(), &[Range::new(0, u128::MAX)]);
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
                prop_assert_eq!(sa.intersection_len(r), (r.first..=r.last).filter(|v| sa.contains(*v)).count() as u128);
            }
            let listed: Vec<u32> = diff.iter().collect();
            prop_assert_eq!(listed.len() as u128, diff.len());
            for (i, v) in listed.iter().enumerate() {
                prop_assert_eq!(diff.nth(i as u128), *v);
            }
        }
    }
}
