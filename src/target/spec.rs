//! Target expressions: addresses, CIDR blocks, dash ranges, hostnames, files.

use super::TargetError;
use super::ranges::Range;
use std::net::{IpAddr, Ipv4Addr};

/// One parsed target expression, before hostnames are resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    Range(Range),
    Hostname(String),
}

/// Parses one target expression.
///
/// Accepted forms: `10.0.0.1`, `10.0.0.0/8` (host bits are ignored, as nmap
/// does), `10.0.0.1-10.0.3.7`, `10.0.0.1-20` (last-octet range) and hostnames.
pub fn parse_target(text: &str) -> Result<TargetSpec, TargetError> {
    let bad = |why: &str| TargetError::Invalid { target: text.to_string(), why: why.to_string() };
    let t = text.trim();
    if t.is_empty() {
        return Err(bad("empty target"));
    }
    if t.contains(':') {
        return Err(TargetError::Ipv6Unsupported(t.to_string()));
    }
    if let Some((addr, prefix)) = t.split_once('/') {
        let base = parse_v4(addr).ok_or_else(|| bad("not an IPv4 address before '/'"))?;
        let bits: u32 = prefix.parse().ok().filter(|b| *b <= 32).ok_or_else(|| bad("prefix length must be 0 to 32"))?;
        let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
        let first = u32::from(base) & mask;
        return Ok(TargetSpec::Range(Range::new(first, first | !mask)));
    }
    if let Some((from, to)) = t.split_once('-') {
        let first = parse_v4(from).ok_or_else(|| bad("range start is not an IPv4 address"))?;
        let last = match parse_v4(to) {
            Some(a) => a,
            None => {
                let octet: u8 = to.parse().map_err(|_| bad("range end is neither an IPv4 address nor a last octet"))?;
                let o = first.octets();
                Ipv4Addr::new(o[0], o[1], o[2], octet)
            }
        };
        let (first, last) = (u32::from(first), u32::from(last));
        if last < first {
            return Err(bad("range ends before it starts"));
        }
        return Ok(TargetSpec::Range(Range::new(first, last)));
    }
    if t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let a = parse_v4(t).ok_or_else(|| bad("not a valid IPv4 address"))?;
        return Ok(TargetSpec::Range(Range::new(a.into(), a.into())));
    }
    if is_hostname(t) {
        return Ok(TargetSpec::Hostname(t.to_string()));
    }
    Err(bad("not an address, CIDR block, range or hostname"))
}

/// Strict dotted-quad parsing: std's parser already refuses leading zeros and short forms.
fn parse_v4(s: &str) -> Option<Ipv4Addr> {
    s.parse().ok()
}

fn is_hostname(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Splits a target list (file contents or a `--exclude` argument) into expressions.
/// Whitespace, commas and newlines separate them; `#` starts a comment.
pub fn split_list(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .flat_map(|line| line.split(|c: char| c.is_whitespace() || c == ','))
        .filter(|t| !t.is_empty())
}

/// Turns parsed expressions into address ranges, one or more per expression,
/// resolving hostnames with `resolve` (injected so that parsing stays free of
/// I/O in tests).
pub fn to_ranges<F>(specs: &[TargetSpec], mut resolve: F) -> Result<Vec<Range>, TargetError>
where
    F: FnMut(&str) -> std::io::Result<Vec<IpAddr>>,
{
    let mut ranges = Vec::with_capacity(specs.len());
    for spec in specs {
        match spec {
            TargetSpec::Range(r) => ranges.push(*r),
            TargetSpec::Hostname(name) => {
                let addrs =
                    resolve(name).map_err(|e| TargetError::Resolve { host: name.clone(), why: e.to_string() })?;
                let v4: Vec<u32> = addrs
                    .iter()
                    .filter_map(|a| match a {
                        IpAddr::V4(v4) => Some(u32::from(*v4)),
                        IpAddr::V6(_) => None,
                    })
                    .collect();
                if v4.is_empty() {
                    return Err(if addrs.is_empty() {
                        TargetError::Resolve { host: name.clone(), why: "no addresses".into() }
                    } else {
                        TargetError::Ipv6Unsupported(name.clone())
                    });
                }
                ranges.extend(v4.into_iter().map(|a| Range::new(a, a)));
            }
        }
    }
    Ok(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(t: &str) -> (Ipv4Addr, Ipv4Addr) {
        match parse_target(t).unwrap() {
            TargetSpec::Range(r) => (r.first.into(), r.last.into()),
            other => panic!("{t}: {other:?}"),
        }
    }

    #[test]
    fn parses_every_form() {
        let a = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(range("10.0.0.1"), (a("10.0.0.1"), a("10.0.0.1")));
        assert_eq!(range("10.1.2.3/16"), (a("10.1.0.0"), a("10.1.255.255")));
        assert_eq!(range("0.0.0.0/0"), (a("0.0.0.0"), a("255.255.255.255")));
        assert_eq!(range("10.0.0.9/32"), (a("10.0.0.9"), a("10.0.0.9")));
        assert_eq!(range("10.0.0.1-10.0.3.7"), (a("10.0.0.1"), a("10.0.3.7")));
        assert_eq!(range("10.0.0.1-20"), (a("10.0.0.1"), a("10.0.0.20")));
        assert_eq!(parse_target("scanme.example").unwrap(), TargetSpec::Hostname("scanme.example".into()));
    }

    #[test]
    fn rejects_malformed_targets() {
        for bad in [
            "",
            "10.0.0.256",
            "10.0.0",
            "10.0.0.1/33",
            "10.0.0.1/",
            "10.0.0.1/x",
            "10.0.0.5-10.0.0.1",
            "10.0.0.1-300",
            "a..b",
            "-host",
            "host_name",
            "1.2.3.4.5",
            "010.0.0.1",
        ] {
            assert!(matches!(parse_target(bad), Err(TargetError::Invalid { .. })), "{bad:?} was accepted");
        }
        assert!(matches!(parse_target("::1"), Err(TargetError::Ipv6Unsupported(_))));
        assert!(matches!(parse_target("2001:db8::/64"), Err(TargetError::Ipv6Unsupported(_))));
    }

    #[test]
    fn splits_lists_and_drops_comments() {
        let text = "10.0.0.1, 10.0.0.2\n# all of it\n  10.1.0.0/16 # tail\n\n";
        assert_eq!(split_list(text).collect::<Vec<_>>(), ["10.0.0.1", "10.0.0.2", "10.1.0.0/16"]);
    }

    #[test]
    fn hostnames_resolve_to_all_their_ipv4_addresses() {
        let specs = [TargetSpec::Hostname("multi".into())];
        let hosts = to_ranges(&specs, |_| {
            Ok(vec!["10.0.0.7".parse().unwrap(), "::1".parse().unwrap(), "10.0.0.3".parse().unwrap()])
        })
        .unwrap();
        let hosts = crate::target::ranges::RangeSet::from_ranges(hosts);
        assert_eq!(
            hosts.iter().map(Ipv4Addr::from).collect::<Vec<_>>(),
            [Ipv4Addr::new(10, 0, 0, 3), Ipv4Addr::new(10, 0, 0, 7)]
        );
        let v6_only = to_ranges(&specs, |_| Ok(vec!["::1".parse().unwrap()]));
        assert!(matches!(v6_only, Err(TargetError::Ipv6Unsupported(_))));
    }
}
