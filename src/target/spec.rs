//! Target expressions: addresses, CIDR blocks, dash ranges, hostnames, files.

use super::TargetError;
use super::hosts::{AddrRange, Family, value};
use super::ranges::Range;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr};

/// One parsed target expression, before hostnames are resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    Range(AddrRange),
    Hostname(String),
}

/// Parses one target expression.
///
/// Accepted forms: `10.0.0.1`, `10.0.0.0/8` (host bits are ignored, as nmap
/// does), `10.0.0.1-10.0.3.7`, `10.0.0.1-20` (last-octet range), the same
/// for IPv6 (`fd00::1`, `fd00::/112`, `fd00::1-fd00::ff`) and hostnames.
pub fn parse_target(text: &str) -> Result<TargetSpec, TargetError> {
    let bad = |why: &str| TargetError::Invalid { target: text.to_string(), why: why.to_string() };
    let t = text.trim();
    if t.is_empty() {
        return Err(bad("empty target"));
    }
    let spec = |first: IpAddr, last: IpAddr| {
        let ((family, first), (_, last)) = (value(first), value(last));
        TargetSpec::Range(AddrRange { family, range: Range::new(first, last) })
    };
    if let Some((addr, prefix)) = t.split_once('/') {
        let base = parse_addr(addr).ok_or_else(|| bad("not an IP address before '/'"))?;
        let (family, base) = value(base);
        let bits: u32 = prefix.parse().ok().filter(|b| *b <= family.bits()).ok_or_else(|| match family {
            Family::V4 => bad("prefix length must be 0 to 32"),
            Family::V6 => bad("prefix length must be 0 to 128"),
        })?;
        let host_bits = family.bits() - bits;
        let host_mask = u128::MAX.checked_shr(128 - host_bits).unwrap_or(0);
        let first = base & !host_mask;
        return Ok(TargetSpec::Range(AddrRange { family, range: Range::new(first, first | host_mask) }));
    }
    if let Some((from, to)) = t.split_once('-') {
        let first = parse_addr(from).ok_or_else(|| bad("range start is not an IP address"))?;
        let last = match (first, parse_addr(to)) {
            (_, Some(a)) => a,
            (IpAddr::V4(f), None) => {
                let octet: u8 = to.parse().map_err(|_| bad("range end is neither an IPv4 address nor a last octet"))?;
                let o = f.octets();
                IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], octet))
            }
            (IpAddr::V6(_), None) => return Err(bad("range end is not an IPv6 address")),
        };
        if Family::of(first) != Family::of(last) {
            return Err(bad("a range cannot go from an IPv4 to an IPv6 address"));
        }
        if last < first {
            return Err(bad("range ends before it starts"));
        }
        return Ok(spec(first, last));
    }
    if t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let a = parse_addr(t).filter(IpAddr::is_ipv4).ok_or_else(|| bad("not a valid IPv4 address"))?;
        return Ok(spec(a, a));
    }
    if t.contains(':') {
        let a = parse_addr(t).ok_or_else(|| bad("not a valid IPv6 address"))?;
        return Ok(spec(a, a));
    }
    if is_hostname(t) {
        return Ok(TargetSpec::Hostname(t.to_string()));
    }
    Err(bad("not an address, CIDR block, range or hostname"))
}

/// Strict parsing: std's parser already refuses leading zeros, short IPv4
/// forms and IPv6 zone indices (a scan names global addresses, not links).
fn parse_addr(s: &str) -> Option<IpAddr> {
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
    text.lines().flat_map(split_line)
}

fn split_line(line: &str) -> impl Iterator<Item = &str> {
    line.split('#').next().unwrap_or("").split(|c: char| c.is_whitespace() || c == ',').filter(|t| !t.is_empty())
}

/// The longest line a list file may have: far more than a line of targets
/// needs, and a file with none (`/dev/zero`) is refused, not read whole.
pub const MAX_LIST_LINE: usize = 1 << 20;

/// Parses a list file (`-iL`, `--exclude-file`) as it is read. An error
/// names the line, and says what is wrong without repeating the line: a
/// file given by mistake may hold anything, secrets included.
pub fn parse_list_file(
    mut file: impl std::io::BufRead,
    what: &'static str,
    path: &str,
) -> Result<Vec<TargetSpec>, TargetError> {
    let mut specs = Vec::new();
    let mut bytes = Vec::new();
    for n in 0.. {
        let in_file = |why: String| TargetError::InFile { what, path: path.to_string(), line: n + 1, why };
        bytes.clear();
        let read = std::io::BufRead::read_until(&mut (&mut file).take(MAX_LIST_LINE as u64 + 1), b'\n', &mut bytes);
        read.map_err(|e| TargetError::File { what, path: path.to_string(), why: e.to_string() })?;
        if bytes.is_empty() {
            break;
        }
        if bytes.len() > MAX_LIST_LINE {
            return Err(in_file(format!("longer than {MAX_LIST_LINE} bytes: not a list of targets")));
        }
        let line = std::str::from_utf8(&bytes).map_err(|_| in_file("not UTF-8 text".into()))?;
        for t in split_line(line) {
            let spec = parse_target(t).map_err(|e| match e {
                TargetError::Invalid { why, .. } => in_file(why),
                other => other,
            })?;
            specs.push(spec);
        }
    }
    Ok(specs)
}

/// Which of a hostname's addresses an expression stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostnameAddresses {
    /// Its IPv4 addresses, or its IPv6 ones if it has no IPv4 one, as nmap
    /// (without -6) and masscan do: what a target hostname is scanned as.
    PreferIpv4,
    /// All of them: an exclusion must hold whichever family the scan has.
    All,
}

/// Turns parsed expressions into address ranges, one or more per expression,
/// resolving hostnames with `resolve` (injected so that parsing stays free of
/// I/O in tests).
pub fn to_ranges<F>(
    specs: &[TargetSpec],
    which: HostnameAddresses,
    mut resolve: F,
) -> Result<Vec<AddrRange>, TargetError>
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
                let only = match which {
                    HostnameAddresses::PreferIpv4 if addrs.iter().any(IpAddr::is_ipv4) => Some(Family::V4),
                    HostnameAddresses::PreferIpv4 => Some(Family::V6),
                    HostnameAddresses::All => None,
                };
                let before = ranges.len();
                ranges.extend(
                    addrs
                        .iter()
                        .map(|a| value(*a))
                        .filter(|(f, _)| only.is_none_or(|o| o == *f))
                        .map(|(family, v)| AddrRange { family, range: Range::new(v, v) }),
                );
                if ranges.len() == before {
                    return Err(TargetError::Resolve { host: name.clone(), why: "no addresses".into() });
                }
            }
        }
    }
    Ok(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(t: &str) -> (IpAddr, IpAddr) {
        match parse_target(t).unwrap() {
            TargetSpec::Range(r) => (r.first(), r.last()),
            other => panic!("{t}: {other:?}"),
        }
    }

    #[test]
    fn parses_every_form() {
        let a = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(range("10.0.0.1"), (a("10.0.0.1"), a("10.0.0.1")));
        assert_eq!(range("10.1.2.3/16"), (a("10.1.0.0"), a("10.1.255.255")));
        assert_eq!(range("0.0.0.0/0"), (a("0.0.0.0"), a("255.255.255.255")));
        assert_eq!(range("10.0.0.9/32"), (a("10.0.0.9"), a("10.0.0.9")));
        assert_eq!(range("10.0.0.1-10.0.3.7"), (a("10.0.0.1"), a("10.0.3.7")));
        assert_eq!(range("10.0.0.1-20"), (a("10.0.0.1"), a("10.0.0.20")));
        assert_eq!(parse_target("scanme.example").unwrap(), TargetSpec::Hostname("scanme.example".into()));
        assert_eq!(range("fd00:201::5"), (a("fd00:201::5"), a("fd00:201::5")));
        assert_eq!(range("fd00:201::1234/112"), (a("fd00:201::"), a("fd00:201::ffff")));
        assert_eq!(range("::/0"), (a("::"), a("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert_eq!(range("fd00::9/128"), (a("fd00::9"), a("fd00::9")));
        assert_eq!(range("fd00::1-fd00::1:0"), (a("fd00::1"), a("fd00::1:0")));
        assert_eq!(range("::ffff:10.0.0.1"), (a("::ffff:10.0.0.1"), a("::ffff:10.0.0.1")));
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
            "fd00::/129",
            "fd00::g",
            "fe80::1%eth0",
            "fd00::5-fd00::1",
            "fd00::1-ff",
            "10.0.0.1-fd00::1",
            "fd00::1-10.0.0.1",
            ":::",
        ] {
            assert!(matches!(parse_target(bad), Err(TargetError::Invalid { .. })), "{bad:?} was accepted");
        }
    }

    #[test]
    fn splits_lists_and_drops_comments() {
        let text = "10.0.0.1, 10.0.0.2\n# all of it\n  10.1.0.0/16 # tail\n\n";
        assert_eq!(split_list(text).collect::<Vec<_>>(), ["10.0.0.1", "10.0.0.2", "10.1.0.0/16"]);
    }

    #[test]
    fn hostnames_resolve_to_their_ipv4_addresses_or_else_their_ipv6_ones() {
        let specs = [TargetSpec::Hostname("multi".into())];
        let listed = |addrs: &[&str]| {
            let addrs: Vec<IpAddr> = addrs.iter().map(|a| a.parse().unwrap()).collect();
            to_ranges(&specs, HostnameAddresses::PreferIpv4, |_| Ok(addrs.clone()))
                .map(|r| r.iter().map(AddrRange::first).collect::<Vec<_>>())
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(listed(&["10.0.0.7", "::1", "10.0.0.3"]).unwrap(), [ip("10.0.0.7"), ip("10.0.0.3")]);
        let all = to_ranges(&specs, HostnameAddresses::All, |_| Ok(vec![ip("10.0.0.7"), ip("::1")])).unwrap();
        assert_eq!(all.iter().map(AddrRange::first).collect::<Vec<_>>(), [ip("10.0.0.7"), ip("::1")]);
        assert_eq!(listed(&["fd00::1", "fd00::2"]).unwrap(), [ip("fd00::1"), ip("fd00::2")]);
        assert!(matches!(listed(&[]), Err(TargetError::Resolve { .. })));
    }
}
