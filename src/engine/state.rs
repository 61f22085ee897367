//! What the engine remembers while it runs: which probes were answered, and
//! when no more replies can be expected. Memory grows with replies, never
//! with the number of targets.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::Duration;

const SHARDS: usize = 16;

/// The (address, port) pairs that got a valid reply: deduplicates replies and
/// tells retry passes what to skip. Sharded so that the receive thread's
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
    fn key(ip: Ipv4Addr, port: u16) -> u64 {
        (u64::from(u32::from(ip)) << 16) | u64::from(port)
    }

    fn shard(&self, key: u64) -> &Mutex<HashSet<u64>> {
        // Low address bits and the port vary most between probes.
        &self.shards[((key ^ (key >> 16)) as usize) % SHARDS]
    }

    /// Records an answer; false if the pair had already answered.
    pub fn insert(&self, ip: Ipv4Addr, port: u16) -> bool {
        let key = Self::key(ip, port);
        self.shard(key).lock().expect("answered set lock").insert(key)
    }

    /// How many pairs answered.
    pub fn count(&self) -> u64 {
        self.shards.iter().map(|s| s.lock().expect("answered set lock").len() as u64).sum()
    }

    pub fn contains(&self, ip: Ipv4Addr, port: u16) -> bool {
        let key = Self::key(ip, port);
        self.shard(key).lock().expect("answered set lock").contains(&key)
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
    match max_rtt {
        Some(rtt) => (rtt * 3 + Duration::from_millis(20)).max(MIN_WAIT).min(max_wait),
        None => max_wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_count_once() {
        let a = Answered::default();
        let ip = Ipv4Addr::new(10, 0, 0, 1);
        assert!(!a.contains(ip, 80));
        assert!(a.insert(ip, 80));
        assert!(!a.insert(ip, 80));
        assert!(a.contains(ip, 80));
        assert!(!a.contains(ip, 81));
        assert!(a.insert(Ipv4Addr::new(10, 0, 0, 2), 80));
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
