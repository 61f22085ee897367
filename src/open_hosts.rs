//! Hosts that answer SYN-ACK on an implausible share of the ports probed:
//! tarpits, SYN proxies and middleboxes that accept every connection. Such a
//! host is not hundreds of services, and a scan says so rather than list
//! them as if it were; `--max-open-per-host` caps what one host adds.
//!
//! A count per host that had an open port, kept only where it can matter:
//! when at least `FLAG_MIN_OPEN` ports are probed per host, or a cap is set.

use crate::result::ScanResult;
use std::collections::HashMap;
use std::net::IpAddr;

/// The fewest open ports that flag a host, whatever share of its ports they are.
pub const FLAG_MIN_OPEN: u64 = 64;

/// What a flag says of a host, in every output.
pub const FLAG: &str = "most-ports-open";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlaggedHost {
    pub ip: IpAddr,
    /// Open ports found, withheld ones included.
    pub open: u64,
    /// Ports probed on the host.
    pub probed: u64,
    /// Open ports not reported: over `--max-open-per-host`.
    pub withheld: u64,
}

impl FlaggedHost {
    /// Whether it answered SYN-ACK on most of the ports probed, and on enough of them to mean it.
    pub fn most_ports_open(&self) -> bool {
        self.open >= FLAG_MIN_OPEN && self.open * 2 > self.probed
    }

    /// Why the host is flagged, in words: the same in every output.
    pub fn describe(&self) -> String {
        let mut text = format!("SYN-ACK on {} of {} ports probed", self.open, self.probed);
        if self.withheld > 0 {
            text.push_str(&format!("; {} open ports withheld by --max-open-per-host", self.withheld));
        }
        text
    }
}

#[derive(Debug)]
pub struct OpenHosts {
    ports_per_host: u64,
    cap: Option<u64>,
    /// Open ports found per host, withheld ones included.
    open: HashMap<IpAddr, u64>,
}

impl OpenHosts {
    /// None when no host can be flagged (fewer than `FLAG_MIN_OPEN` ports
    /// each) and there is no cap: nothing to count.
    pub fn new(ports_per_host: u64, cap: Option<u64>) -> Option<OpenHosts> {
        (ports_per_host >= FLAG_MIN_OPEN || cap.is_some()).then(|| OpenHosts {
            ports_per_host,
            cap,
            open: HashMap::new(),
        })
    }

    /// Counts for `--max-open-per-host` alone: where the flags are not made.
    pub fn capped(cap: u64) -> OpenHosts {
        OpenHosts { ports_per_host: 0, cap: Some(cap), open: HashMap::new() }
    }

    /// Counts `r` if it is an open port; false when it is one over the cap, not to be reported.
    pub fn shows(&mut self, r: &ScanResult) -> bool {
        !r.state.is_found() || self.admit(r.ip)
    }

    /// Counts an open port of `ip`; false when it is over the cap and is not to be reported.
    pub fn admit(&mut self, ip: IpAddr) -> bool {
        let n = self.open.entry(ip).or_default();
        *n += 1;
        self.cap.is_none_or(|cap| *n <= cap)
    }

    /// Hosts flagged or capped, in address order.
    pub fn flagged(&self) -> Vec<FlaggedHost> {
        let mut hosts: Vec<FlaggedHost> = self
            .open
            .iter()
            .map(|(&ip, &open)| FlaggedHost {
                ip,
                open,
                probed: self.ports_per_host,
                withheld: self.cap.map_or(0, |cap| open.saturating_sub(cap)),
            })
            .filter(|h| h.most_ports_open() || h.withheld > 0)
            .collect();
        hosts.sort_unstable_by_key(|h| h.ip);
        hosts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn a_host_open_on_most_of_many_ports_is_flagged_and_no_other() {
        let mut hosts = OpenHosts::new(100, None).unwrap();
        for _ in 0..64 {
            assert!(hosts.admit(host(1)));
        }
        for _ in 0..50 {
            hosts.admit(host(2));
        }
        for _ in 0..40 {
            hosts.admit(host(3));
        }
        // 64 of 100 is most; 50 of 100 is not.
        assert_eq!(hosts.flagged(), [FlaggedHost { ip: host(1), open: 64, probed: 100, withheld: 0 }]);
        // Most of 65535 ports needs 32768.
        let mut full = OpenHosts::new(65535, None).unwrap();
        (0..32767).for_each(|_| _ = full.admit(host(1)));
        assert!(full.flagged().is_empty());
        full.admit(host(1));
        assert_eq!(full.flagged().len(), 1);
    }

    #[test]
    fn nothing_is_counted_where_no_host_can_be_flagged_or_capped() {
        assert!(OpenHosts::new(63, None).is_none());
        assert!(OpenHosts::new(1, Some(5)).is_some());
        assert!(OpenHosts::new(64, None).is_some());
    }

    #[test]
    fn the_cap_withholds_what_is_over_it_and_says_so() {
        let mut hosts = OpenHosts::new(10, Some(3)).unwrap();
        let admitted: Vec<bool> = (0..5).map(|_| hosts.admit(host(7))).collect();
        assert_eq!(admitted, [true, true, true, false, false]);
        assert!(hosts.admit(host(8)));
        let flagged = hosts.flagged();
        assert_eq!(flagged, [FlaggedHost { ip: host(7), open: 5, probed: 10, withheld: 2 }]);
        assert_eq!(
            flagged[0].describe(),
            "SYN-ACK on 5 of 10 ports probed; 2 open ports withheld by --max-open-per-host"
        );
    }
}
