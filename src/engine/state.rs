//! What the engine remembers while it runs: which probes were answered, and
//! when no more replies can be expected. Memory grows with replies up to a
//! bit per probe of the space, and never with the number of targets alone.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

const SHARDS: usize = 16;

/// What a hash set bucket costs: the u64 and hashbrown's control byte.
const SET_ENTRY_BYTES: usize = 9;

/// The buckets hashbrown allocates for a set of `capacity`: it fills them
/// to 7/8 at most, in powers of two.
fn buckets(capacity: usize) -> usize {
    if capacity < 8 { (capacity + 1).next_power_of_two().max(4) } else { (capacity * 8 / 7).next_power_of_two() }
}

/// The probes (by their index in the target space) that got a valid reply:
/// deduplicates replies and tells retry passes what to skip. Sharded so that
/// the receive thread's inserts and the transmit thread's look-ups rarely
/// meet on one lock.
///
/// Each shard is a hash set while that is smaller than a bitmap of its share
/// of the space, and that bitmap after: a host that answers on every port
/// (a tarpit /24 on all 65,535 ports draws 16.7 million replies) costs at
/// most a bit per probe, 2 MiB there, where a set would take hundreds.
/// Bound: `space / 8` bytes, and a shard's set never grows past its bitmap.
#[derive(Debug)]
pub struct Answered {
    shards: Vec<Mutex<Shard>>,
    /// The u64 words of one shard's bitmap.
    words: usize,
}

#[derive(Debug)]
enum Shard {
    Set(HashSet<u64>),
    Bits { words: Vec<u64>, count: u64 },
}

impl Answered {
    /// For a space of `len` probes.
    pub fn new(len: u64) -> Self {
        let per_shard = len.div_ceil(SHARDS as u64);
        Answered {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::Set(HashSet::new()))).collect(),
            words: usize::try_from(per_shard.div_ceil(64)).unwrap_or(usize::MAX),
        }
    }

    fn shard(&self, index: u64) -> std::sync::MutexGuard<'_, Shard> {
        // Hosts vary fastest in the index: its low bits differ between neighbours.
        self.shards[(index % SHARDS as u64) as usize].lock().expect("answered set lock")
    }

    /// Where `index` is in its shard's bitmap: the word and the bit.
    fn bit(index: u64) -> (usize, u64) {
        let i = index / SHARDS as u64;
        ((i / 64) as usize, 1 << (i % 64))
    }

    /// Records an answer; false if the probe had already answered.
    pub fn insert(&self, index: u64) -> bool {
        let mut shard = self.shard(index);
        if let Shard::Set(set) = &mut *shard
            && set.len() == set.capacity()
            && !set.contains(&index)
            && buckets(set.capacity()) * 2 * SET_ENTRY_BYTES > self.words.saturating_mul(8)
        {
            // The set would double past the bitmap: the bitmap instead.
            let mut words = vec![0u64; self.words];
            for &i in set.iter() {
                let (w, b) = Self::bit(i);
                words[w] |= b;
            }
            *shard = Shard::Bits { words, count: set.len() as u64 };
        }
        match &mut *shard {
            Shard::Set(set) => set.insert(index),
            Shard::Bits { words, count } => {
                let (w, b) = Self::bit(index);
                let new = words[w] & b == 0;
                words[w] |= b;
                *count += u64::from(new);
                new
            }
        }
    }

    /// How many pairs answered.
    pub fn count(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| match &*s.lock().expect("answered set lock") {
                Shard::Set(set) => set.len() as u64,
                Shard::Bits { count, .. } => *count,
            })
            .sum()
    }

    pub fn contains(&self, index: u64) -> bool {
        match &*self.shard(index) {
            Shard::Set(set) => set.contains(&index),
            Shard::Bits { words, .. } => {
                let (w, b) = Self::bit(index);
                words[w] & b != 0
            }
        }
    }

    /// The bytes its sets and bitmaps hold.
    pub fn bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| match &*s.lock().expect("answered set lock") {
                Shard::Set(set) => buckets(set.capacity()) * SET_ENTRY_BYTES,
                Shard::Bits { words, .. } => words.len() * 8,
            })
            .sum()
    }

    /// How many answered probes `f` accepts.
    pub fn count_if(&self, f: impl Fn(u64) -> bool) -> u64 {
        let mut n = 0;
        for (k, shard) in self.shards.iter().enumerate() {
            match &*shard.lock().expect("answered set lock") {
                Shard::Set(set) => n += set.iter().filter(|&&i| f(i)).count() as u64,
                Shard::Bits { words, .. } => {
                    for (w, &word) in words.iter().enumerate() {
                        let mut bits = word;
                        while bits != 0 {
                            let bit = u64::from(bits.trailing_zeros());
                            bits &= bits - 1;
                            n += u64::from(f((w as u64 * 64 + bit) * SHARDS as u64 + k as u64));
                        }
                    }
                }
            }
        }
        n
    }
}

/// The shortest wait for late replies, whatever the round trips seen: a
/// scan of a near and a far host may have measured only the near one.
const MIN_WAIT: Duration = Duration::from_millis(250);

/// How long after the last probe a reply may still arrive: a few times the
/// slowest round trip seen (queueing under load included) and at least
/// `MIN_WAIT`, never more than `max_wait`, and all of `max_wait` when no
/// round trip has been measured.
pub fn reply_timeout(max_rtt: Option<Duration>, max_wait: Duration) -> Duration {
    retry_after(max_rtt, max_wait).max(MIN_WAIT.min(max_wait))
}

/// How long after a pass its silent probes are retried: once the replies
/// are due by the round trips measured so far, without `MIN_WAIT`. Retrying
/// early costs at most a second probe to a far host whose reply was still on
/// its way; that reply still counts, once. Only the end of a scan, where
/// silence becomes a result, waits `reply_timeout`.
pub fn retry_after(max_rtt: Option<Duration>, max_wait: Duration) -> Duration {
    match max_rtt {
        Some(rtt) => (rtt * 3 + Duration::from_millis(20)).min(max_wait),
        None => max_wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_count_once() {
        let a = Answered::new(100);
        assert!(!a.contains(7));
        assert!(a.insert(7));
        assert!(!a.insert(7));
        assert!(a.contains(7));
        assert!(!a.contains(23));
        assert!(a.insert(23));
        assert_eq!(a.count(), 2);
        assert_eq!(a.count_if(|i| i > 10), 1);
    }

    /// A tarpit /24 answering on all 65,536 ports (one pass of `-p-` on
    /// 256 hosts is 16.8 million probes): the record stays within a bit per
    /// probe of the space, and answers nothing twice.
    #[test]
    fn a_host_that_answers_everything_costs_at_most_a_bit_per_probe() {
        let len = 256 * 65536u64;
        let a = Answered::new(len);
        for i in 0..len {
            assert!(a.insert(i));
        }
        assert!(!a.insert(12345) && a.contains(len - 1));
        assert_eq!(a.count(), len);
        assert_eq!(a.count_if(|i| i % 1000 == 7), len / 1000 + u64::from(len % 1000 > 7));
        assert!(a.bytes() <= (len / 8) as usize + SHARDS * 8, "{} bytes", a.bytes());
        // A sparse answer set stays a set, far smaller than the bitmap.
        let sparse = Answered::new(1 << 32);
        for i in (0..100_000u64).map(|i| i * 40_000) {
            assert!(sparse.insert(i));
        }
        assert!(sparse.bytes() < 4 << 20 && sparse.contains(40_000) && !sparse.contains(40_001));
    }

    #[test]
    fn retries_follow_the_round_trips_without_the_floor() {
        let max = Duration::from_secs(2);
        assert_eq!(retry_after(None, max), max);
        assert_eq!(retry_after(Some(Duration::from_micros(100)), max), Duration::from_micros(20_300));
        assert_eq!(retry_after(Some(Duration::from_millis(100)), max), Duration::from_millis(320));
        assert_eq!(retry_after(Some(Duration::from_secs(1)), max), max);
    }

    #[test]
    fn timeout_follows_the_slowest_reply_within_the_bound() {
        let max = Duration::from_secs(2);
        assert_eq!(reply_timeout(None, max), max);
        assert_eq!(reply_timeout(Some(Duration::from_micros(100)), max), MIN_WAIT);
        assert_eq!(reply_timeout(Some(Duration::from_millis(100)), max), Duration::from_millis(320));
        assert_eq!(reply_timeout(Some(Duration::from_secs(1)), max), max);
        assert_eq!(
            reply_timeout(Some(Duration::from_micros(100)), Duration::from_millis(100)),
            Duration::from_millis(100)
        );
    }
}
