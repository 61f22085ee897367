//! Decimal text for addresses and ports without `core::fmt`, whose
//! per-argument dispatch costs more than the rest of a dry-run line: a dry run
//! prints tens of millions of lines a second, and the store writes an address
//! per row. IPv6 addresses are written in hex, compressed as RFC 5952 and
//! `Display` have it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Somewhere ASCII text can be appended.
pub trait Ascii {
    fn push_ascii(&mut self, bytes: &[u8]);
}

impl Ascii for Vec<u8> {
    fn push_ascii(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Ascii for String {
    fn push_ascii(&mut self, bytes: &[u8]) {
        self.extend(bytes.iter().map(|&b| char::from(b)));
    }
}

/// The text of every octet value: three bytes, of which the first `len` are used.
struct Octet {
    digits: [u8; 3],
    len: usize,
}

const OCTETS: [Octet; 256] = {
    let mut table = [const { Octet { digits: [0; 3], len: 0 } }; 256];
    let mut v = 0;
    while v < 256 {
        let (h, t, o) = ((v / 100) as u8, (v / 10 % 10) as u8, (v % 10) as u8);
        table[v] = if v >= 100 {
            Octet { digits: [b'0' + h, b'0' + t, b'0' + o], len: 3 }
        } else if v >= 10 {
            Octet { digits: [b'0' + t, b'0' + o, 0], len: 2 }
        } else {
            Octet { digits: [b'0' + o, 0, 0], len: 1 }
        };
        v += 1;
    }
    table
};

/// Appends the address as its `Display` writes it.
pub fn push_ip(out: &mut impl Ascii, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => push_ipv4(out, a),
        IpAddr::V6(a) => push_ipv6(out, a),
    }
}

/// Appends the address as RFC 5952 (and `Display`) write it: lowercase hex
/// groups without leading zeros, the longest run of two or more zero groups
/// (the first of equals) as `::`.
fn push_ipv6(out: &mut impl Ascii, ip: Ipv6Addr) {
    if ip.to_ipv4_mapped().is_some() {
        // `::ffff:a.b.c.d`: rare in a scan, so left to `Display`.
        let text = ip.to_string();
        return out.push_ascii(text.as_bytes());
    }
    let groups = ip.segments();
    let (mut run, mut best) = ((0, 0), (0, 0));
    for (i, g) in groups.iter().enumerate() {
        if *g == 0 {
            run = if run.1 == 0 { (i, 1) } else { (run.0, run.1 + 1) };
            if run.1 > best.1 {
                best = run;
            }
        } else {
            run = (0, 0);
        }
    }
    let mut text = [0u8; 39];
    let mut len = 0;
    let mut i = 0;
    while i < 8 {
        if best.1 >= 2 && i == best.0 {
            text[len..len + 2].copy_from_slice(b"::");
            len += 2;
            i += best.1;
            continue;
        }
        if i > 0 && !(best.1 >= 2 && i == best.0 + best.1) {
            text[len] = b':';
            len += 1;
        }
        let g = groups[i];
        let digits = (4 - g.leading_zeros() / 4).max(1) as usize;
        for d in (0..digits).rev() {
            text[len] = b"0123456789abcdef"[usize::from((g >> (4 * d)) & 0xf)];
            len += 1;
        }
        i += 1;
    }
    out.push_ascii(&text[..len]);
}

/// Appends the address in dotted-quad form, as `Ipv4Addr`'s `Display` writes it.
fn push_ipv4(out: &mut impl Ascii, ip: Ipv4Addr) {
    let mut text = [0u8; 15];
    let mut len = 0;
    for (i, o) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            text[len] = b'.';
            len += 1;
        }
        let octet = &OCTETS[usize::from(o)];
        text[len..len + 3].copy_from_slice(&octet.digits);
        len += octet.len;
    }
    out.push_ascii(&text[..len]);
}

/// Appends the number in decimal, without leading zeros.
pub fn push_u16(out: &mut impl Ascii, v: u16) {
    let mut text = [0u8; 5];
    let mut start = text.len();
    let mut v = v;
    loop {
        start -= 1;
        text[start] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.push_ascii(&text[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn addresses_read_as_display_writes_them() {
        let mut v = Vec::new();
        let mut s = String::new();
        for raw in (0..=u32::MAX).step_by(9_973).chain([0, u32::MAX, 0x0a00_0001, 0x6400_0a09]) {
            let ip = IpAddr::from(Ipv4Addr::from(raw));
            v.clear();
            s.clear();
            push_ip(&mut v, ip);
            push_ip(&mut s, ip);
            assert_eq!(v, ip.to_string().as_bytes());
            assert_eq!(s, ip.to_string());
        }
        for ip in ["::", "fd00:201::5", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::ffff:10.0.0.1", "1:0:2::3"] {
            let ip: IpAddr = ip.parse().unwrap();
            v.clear();
            push_ip(&mut v, ip);
            assert_eq!(v, ip.to_string().as_bytes());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// Zero groups are drawn often, so that runs of every length and position occur.
        #[test]
        fn ipv6_addresses_read_as_display_writes_them(
            groups in proptest::array::uniform8(prop_oneof![Just(0u16), Just(0), Just(1), Just(0xffff), 0u16..0x100, any::<u16>()]),
        ) {
            let ip = Ipv6Addr::from(groups);
            let mut v = Vec::new();
            push_ip(&mut v, ip.into());
            prop_assert_eq!(String::from_utf8(v).unwrap(), ip.to_string());
        }
    }

    #[test]
    fn ports_read_as_display_writes_them() {
        let mut v = Vec::new();
        for port in 0..=u16::MAX {
            v.clear();
            push_u16(&mut v, port);
            assert_eq!(v, port.to_string().as_bytes());
        }
    }
}
