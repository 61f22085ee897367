//! The ports this host uses itself: its listening TCP sockets, and the range
//! its kernel picks the source ports of its own connections from. A scan's
//! source ports must stay clear of both, or its replies and the host's own
//! traffic get mixed up. Parsing is pure; `used` reads the files of the
//! current network namespace.

use std::collections::BTreeSet;

/// What `used` found, for the ports of one scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalPorts {
    /// The kernel's range for the source ports of its own connections.
    pub ephemeral: Option<(u16, u16)>,
    /// Ports a TCP socket listens on.
    pub listening: BTreeSet<u16>,
}

impl LocalPorts {
    /// Why `range` would mix a scan with this host's own traffic, if it would.
    pub fn clash(&self, (lo, hi): (u16, u16)) -> Option<String> {
        if let Some((a, b)) = self.ephemeral.filter(|&(a, b)| a <= hi && lo <= b) {
            return Some(format!("the kernel's own connections take their source ports from {a}-{b}"));
        }
        let taken: Vec<String> = self.listening.range(lo..=hi).map(u16::to_string).collect();
        (!taken.is_empty()).then(|| format!("this host listens on {}", taken.join(", ")))
    }
}

/// The listening ports in the text of `/proc/net/tcp` or `/proc/net/tcp6`:
/// lines of `sl local_address rem_address st ...`, the local port in hex
/// after the colon, state `0A` for LISTEN. Lines that do not parse are skipped.
pub fn parse_listening(text: &str) -> impl Iterator<Item = u16> + '_ {
    text.lines().skip(1).filter_map(|line| {
        let mut fields = line.split_whitespace();
        let local = fields.nth(1)?;
        let state = fields.nth(1)?;
        let port = local.rsplit_once(':')?.1;
        (state == "0A").then(|| u16::from_str_radix(port, 16).ok()).flatten()
    })
}

/// `net.ipv4.ip_local_port_range`: two numbers (it serves IPv6 too).
pub fn parse_port_range(text: &str) -> Option<(u16, u16)> {
    let mut n = text.split_whitespace().map(str::parse::<u16>);
    match (n.next()?, n.next()?) {
        (Ok(a), Ok(b)) if a <= b => Some((a, b)),
        _ => None,
    }
}

/// The ports this host uses in the current network namespace; what cannot be
/// read is left out (a scan then goes ahead as before).
pub fn used() -> LocalPorts {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let mut listening = BTreeSet::new();
    for path in ["/proc/net/tcp", "/proc/net/tcp6"] {
        listening.extend(parse_listening(&read(path)));
    }
    LocalPorts { ephemeral: parse_port_range(&read("/proc/sys/net/ipv4/ip_local_port_range")), listening }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 20811 1 0000000000000000 100 0 0 10 0
   1: 0100007F:EE4A 0100007F:0016 01 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000 20 4 30 10 -1
   2: garbage
";

    #[test]
    fn listening_ports_and_the_ephemeral_range_are_read_and_clash_with_a_range_that_overlaps() {
        assert_eq!(parse_listening(TCP).collect::<Vec<_>>(), [22], "only LISTEN, whatever else is there");
        assert_eq!(parse_port_range("32768\t60999\n"), Some((32768, 60999)));
        assert_eq!((parse_port_range("60999 32768"), parse_port_range("x y")), (None, None));
        let used = LocalPorts { ephemeral: Some((32768, 60999)), listening: [22, 61010].into() };
        assert_eq!(used.clash((61000, 61009)), None);
        assert!(used.clash((61000, 61063)).unwrap().contains("listens on 61010"));
        assert!(used.clash((40000, 40000)).unwrap().contains("32768-60999"));
        assert!(used.clash((60999, 61000)).is_some(), "one port in common is a clash");
        assert_eq!(LocalPorts::default().clash((1, 65535)), None);
    }
}
