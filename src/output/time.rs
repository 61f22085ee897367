//! RFC 3339 timestamps in UTC, without a calendar dependency.

/// Formats microseconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub fn rfc3339_us(us: u64) -> String {
    let mut s = String::with_capacity(27);
    write_rfc3339_us(&mut s, us);
    s
}

/// `rfc3339_us` into a reused buffer, digit by digit: it runs for every stored result.
pub fn write_rfc3339_us(out: &mut String, us: u64) {
    fn digits(out: &mut String, v: u64, n: u32) {
        for i in (0..n).rev() {
            out.push(char::from(b'0' + (v / 10u64.pow(i) % 10) as u8));
        }
    }
    let secs = us / 1_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    let fields = [(y.clamp(0, 9999) as u64, 4, '-'), (u64::from(m), 2, '-'), (u64::from(d), 2, 'T')];
    for (v, n, sep) in fields.into_iter().chain([(rem / 3600, 2, ':'), (rem / 60 % 60, 2, ':'), (rem % 60, 2, '.')]) {
        digits(out, v, n);
        out.push(sep);
    }
    digits(out, us % 1_000_000, 6);
    out.push('Z');
}

/// Parses what `rfc3339_us` writes (UTC, `Z`, up to six fraction digits).
pub fn parse_rfc3339_us(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let rest = s.get(19..)?.strip_suffix('Z')?;
    let frac = match rest.strip_prefix('.') {
        Some(f) if !f.is_empty() && f.len() <= 6 => f.parse::<u64>().ok()? * 10u64.pow(6 - f.len() as u32),
        Some(_) => return None,
        None if rest.is_empty() => 0,
        None => return None,
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let days = days_from_civil(y as i64, mo as u32, d as u32);
    u64::try_from(days).ok().map(|days| (days * 86_400 + h * 3600 + mi * 60 + sec) * 1_000_000 + frac)
}

/// Howard Hinnant's civil-to-days algorithm, the inverse of `civil_from_days`.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_us(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339_us(951_782_400_000_001), "2000-02-29T00:00:00.000001Z");
        assert_eq!(rfc3339_us(1_795_912_496_123_456), "2026-11-29T00:34:56.123456Z");
        assert_eq!(rfc3339_us(4_102_444_799_999_999), "2099-12-31T23:59:59.999999Z");
    }

    #[test]
    fn parses_what_it_formats() {
        for us in [0, 951_782_400_000_001, 1_795_912_496_123_456, 4_102_444_799_999_999] {
            assert_eq!(parse_rfc3339_us(&rfc3339_us(us)), Some(us));
        }
        assert_eq!(parse_rfc3339_us("2026-11-29T00:34:56Z"), Some(1_795_912_496_000_000));
        for bad in
            ["", "2026-13-01T00:00:00Z", "2026-11-29 00:34:56Z", "2026-11-29T00:34:56", "2026-11-29T00:34:56.1234567Z"]
        {
            assert_eq!(parse_rfc3339_us(bad), None, "{bad}");
        }
    }
}
