//! What the engine remembers while it runs: which probes were answered, and
//! when no more replies can be expected. Memory grows with replies, never
//! with the number of targets.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

const SHARDS: usize = 16;

/// The probes (by their index in the target space) that got a valid reply:
/// deduplicates replies and tells retry passes what to skip. Sharded so that the receive thread's
/// inserts and the transmit thread's look-ups rarely meet on one lock.
#[derive(Debug)]
pub struct Answered {
    shards: Vec<Mutex<HashSet<u64>>>,
}

impl Default for Answered {
    fn default() -> Self {
        Answered { shards: (0..SHARDS).map(|_| Mutex::new(HashSet::new())).collect() }
    }
}

impl Answered {
    fn shard(&self, index: u64) -> &Mutex<HashSet<u64>> {
        // Hosts vary fastest in the index: its low bits differ between neighbours.
        &self.shards[(index % SHARDS as u64) as usize]
    }

    /// Records an answer; false if the probe had already answered.
    pub fn insert(&self, index: u64) -> bool {
        self.shard(index).lock().expect("answered set lock").insert(index)
    }

    /// How many pairs answered.
    pub fn count(&self) -> u64 {
        self.shards.iter().map(|s| s.lock().expect("answered set lock").len() as u64).sum()
    }

    pub fn contains(&self, index: u64) -> bool {
        self.shard(index).lock().expect("answered set lock").contains(&index)
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
        let a = Answered::default();
        assert!(!a.contains(7));
        assert!(a.insert(7));
        assert!(!a.insert(7));
        assert!(a.contains(7));
        assert!(!a.contains(23));
        assert!(a.insert(23));
        assert_eq!(a.count(), 2);
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
