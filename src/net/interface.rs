//! Interface names, indexes and hardware addresses.

use super::NetError;
use crate::sys;
use std::ffi::CString;

pub fn index(name: &str) -> Result<u32, NetError> {
    let none = || NetError::NoInterface(name.to_string());
    sys::interface_index(&CString::new(name).map_err(|_| none())?).ok_or_else(none)
}

pub fn name(index: u32) -> Result<String, NetError> {
    sys::interface_name(index).ok_or_else(|| NetError::NoInterface(format!("#{index}")))
}

/// How many receive and transmit queues interface `index` (named `name`)
/// has, as sysfs lists them; None where sysfs does not show it (`sysfs_dir`).
pub fn queues(name: &str, index: u32) -> Option<(u32, u32)> {
    let dir = sysfs_dir(name, index)?;
    let count = |prefix: &str| {
        std::fs::read_dir(format!("{dir}/queues"))
            .ok()
            .map(|d| d.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().starts_with(prefix)).count())
            .map_or(1, |n| n.max(1) as u32)
    };
    Some((count("rx-"), count("tx-")))
}

/// The sysfs directory of interface `index` (named `name`), or None where
/// sysfs describes another interface or none: it shows the network namespace
/// it was mounted in (`ip netns exec` mounts the namespace's own, `nsenter`
/// and `unshare` do not).
fn sysfs_dir(name: &str, index: u32) -> Option<String> {
    let dir = format!("/sys/class/net/{name}");
    let shown: u32 = std::fs::read_to_string(format!("{dir}/ifindex")).ok()?.trim().parse().ok()?;
    (shown == index).then_some(dir)
}

/// The link type (`ARPHRD_*`) and hardware address of an interface.
pub fn hardware_address(name: &str) -> Result<(u16, [u8; 6]), NetError> {
    sys::hardware_address(name).map_err(|source| NetError::HardwareAddress { name: name.to_string(), source })
}

/// The interface's own counters of frames it lost on this host: probes it
/// could not queue (`tx_dropped`: on a veth, the peer's ring was full) and
/// replies its hardware had no room for. Not `rx_dropped`, which also counts
/// frames that no protocol wanted (LLDP and the like) and so grows on a
/// quiet network too.
pub struct LinkDrops {
    outgoing: Counters,
    incoming: Counters,
}

/// Frames an interface lost since the last look, by direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkLost {
    pub outgoing: u64,
    pub incoming: u64,
}

const OUTGOING_DROPS: [&str; 1] = ["tx_dropped"];
const INCOMING_DROPS: [&str; 3] = ["rx_missed_errors", "rx_fifo_errors", "rx_over_errors"];

/// Some of an interface's statistics files, summed, and their sum last seen.
struct Counters {
    files: Vec<std::fs::File>,
    seen: u64,
}

impl Counters {
    fn open(dir: &str, names: &[&str]) -> Counters {
        let files = names.iter().filter_map(|c| std::fs::File::open(format!("{dir}/statistics/{c}")).ok()).collect();
        let mut counters = Counters { files, seen: 0 };
        counters.seen = counters.total();
        counters
    }

    fn total(&self) -> u64 {
        use std::os::unix::fs::FileExt;
        let mut buf = [0u8; 24];
        self.files
            .iter()
            .filter_map(|f| {
                let n = f.read_at(&mut buf, 0).ok()?;
                std::str::from_utf8(&buf[..n]).ok()?.trim().parse::<u64>().ok()
            })
            .sum()
    }

    fn take(&mut self) -> u64 {
        let total = self.total();
        let new = total.saturating_sub(self.seen);
        self.seen = total;
        new
    }
}

impl LinkDrops {
    /// The counters of `name` as sysfs shows them, or None where it shows
    /// another interface (see `sysfs_dir`).
    pub fn open(name: &str, index: u32) -> Option<LinkDrops> {
        let dir = sysfs_dir(name, index)?;
        Some(LinkDrops {
            outgoing: Counters::open(&dir, &OUTGOING_DROPS),
            incoming: Counters::open(&dir, &INCOMING_DROPS),
        })
    }

    /// Frames lost since the last call.
    pub fn take(&mut self) -> LinkLost {
        LinkLost { outgoing: self.outgoing.take(), incoming: self.incoming.take() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_are_counted_only_for_the_interface_sysfs_shows() {
        let lo = index("lo").unwrap();
        assert_eq!(queues("lo", lo), Some((1, 1)));
        // Another namespace's interface of the same name, as sysfs mounted elsewhere would show it.
        assert_eq!(queues("lo", lo + 1_000_000), None);
        assert_eq!(queues("prtip-no-such-if", 7), None);
    }
}
