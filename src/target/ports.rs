//! Port specifications: `22`, `1-1000`, `80,443,8000-8100`, `-` (all), `-1024`, `60000-`.

use super::TargetError;
use super::ranges::{Range, RangeSet};

/// The ports of `text` for a scan of TCP ports, or of UDP ports with
/// `udp`: nmap's `T:` or `U:` prefix may name the scan's own protocol.
pub fn parse_ports(text: &str, udp: bool) -> Result<RangeSet<u32>, TargetError> {
    let bad = |why: String| TargetError::Ports { spec: text.to_string(), why };
    let (ours, theirs) = if udp { ("U:", ["T:", "S:"]) } else { ("T:", ["U:", "S:"]) };
    let mut ranges = Vec::new();
    for item in text.split(',') {
        let item = item.trim();
        let item = item.strip_prefix(ours).unwrap_or(item);
        if item.is_empty() {
            return Err(bad("empty port in list".into()));
        }
        if theirs.iter().any(|p| item.starts_with(p)) {
            let scan = if udp { "a UDP scan (-sU) probes UDP ports" } else { "a TCP scan probes TCP ports" };
            return Err(bad(format!("{scan}; one scan has one protocol")));
        }
        let (first, last) = match item.split_once('-') {
            Some((a, b)) => (
                if a.is_empty() { 1 } else { port(a).map_err(&bad)? },
                if b.is_empty() { 65535 } else { port(b).map_err(&bad)? },
            ),
            None => {
                let p = port(item).map_err(&bad)?;
                (p, p)
            }
        };
        if last < first {
            return Err(bad(format!("range {item} ends before it starts")));
        }
        ranges.push(Range::new(first.into(), last.into()));
    }
    Ok(RangeSet::from_ranges(ranges))
}

fn port(s: &str) -> Result<u16, String> {
    match s.parse::<u32>() {
        Ok(0) => Err("port 0 cannot be scanned".into()),
        Ok(p) if p <= 65535 => Ok(p as u16),
        Ok(p) => Err(format!("port {p} is above 65535")),
        Err(_) => Err(format!("'{s}' is not a port number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports(s: &str) -> Vec<u32> {
        parse_ports(s, false).unwrap().iter().collect()
    }

    #[test]
    fn parses_lists_ranges_and_open_ends() {
        assert_eq!(ports("22"), [22]);
        assert_eq!(ports("80,443,8000-8002"), [80, 443, 8000, 8001, 8002]);
        assert_eq!(ports("T:22,21-23"), [21, 22, 23]);
        assert_eq!(parse_ports("-", false).unwrap().len(), 65535);
        assert_eq!(parse_ports("-1024", false).unwrap().len(), 1024);
        assert_eq!(parse_ports("U:53,161", true).unwrap().iter().collect::<Vec<_>>(), [53, 161]);
        assert_eq!(ports("65534-"), [65534, 65535]);
    }

    #[test]
    fn rejects_malformed_ports() {
        for bad in ["", "0", "65536", "1-0", "80,", "a", "1-2-3", "U:53", "22 23", "-5-"] {
            assert!(parse_ports(bad, false).is_err(), "{bad:?} was accepted");
        }
        assert!(parse_ports("T:80", true).is_err() && parse_ports("S:80", true).is_err());
    }
}
