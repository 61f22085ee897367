//! How long the engine waits for replies: pure functions of the round
//! trips measured so far and `--wait`.

use std::time::Duration;

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

/// How long after a try its silent probe is retried: once the replies
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
