//! Naming a service from the first bytes it sent, or answered, whatever port it listens on.

use super::clip;
use std::fmt::Write as _;

/// A service recognised from its first message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identified {
    /// nmap's service name: "ssh", "ftp", "smtp", "pop3", "imap", "mysql", "vnc", "telnet" or "http".
    pub name: &'static str,
    /// The software or protocol version the service announced, when it did.
    pub product: Option<String>,
}

/// Names the service whose first message starts with `bytes`, or None when nothing matches.
/// For http the product is left to `http::parse`, which reads the Server header.
pub fn identify(bytes: &[u8]) -> Option<Identified> {
    let found = |name, product| Some(Identified { name, product });
    if let Some(rest) = bytes.strip_prefix(b"SSH-") {
        return found("ssh", ssh_product(rest));
    }
    if bytes.starts_with(b"HTTP/1.") || bytes.starts_with(b"HTTP/2") {
        return found("http", None);
    }
    if let [0xff, 0xfb..=0xfe, ..] = bytes {
        return found("telnet", None);
    }
    if let Some(rest) = bytes.strip_prefix(b"RFB ") {
        return found("vnc", Some(rfb_version(rest)?));
    }
    if bytes.starts_with(b"220") {
        return greeting_220(bytes);
    }
    if let Some(rest) = bytes.strip_prefix(b"+OK") {
        return found("pop3", text(first_line(rest)));
    }
    if let Some(rest) = strip_prefix_ci(bytes, b"* OK").or_else(|| strip_prefix_ci(bytes, b"* PREAUTH")) {
        return found("imap", imap_product(first_line(rest)));
    }
    mysql(bytes)
}

/// Whether `bytes` already hold the whole first message of service `name`, so reading can stop.
/// Always false for "telnet" (its negotiation has no end to wait for) and for names not listed on
/// [`Identified::name`].
pub fn complete(name: &str, bytes: &[u8]) -> bool {
    match name {
        "http" => super::http::complete(bytes),
        "ssh" | "pop3" | "imap" => bytes.contains(&b'\n'),
        "ftp" | "smtp" => reply_complete(bytes),
        "mysql" => packet_complete(bytes),
        "vnc" => bytes.len() >= 12,
        _ => false,
    }
}

/// The banner as users see it, from at most `cap` bytes of input: printable ASCII as is,
/// `\r` `\n` `\t` and `\\` escaped, any other byte as `\xNN`.
pub fn printable(bytes: &[u8], cap: usize) -> String {
    let mut out = String::with_capacity(bytes.len().min(cap));
    for &b in bytes.iter().take(cap) {
        match b {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out
}

/// `SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3` gives `OpenSSH_9.2p1 Debian-2+deb12u3`.
fn ssh_product(after_ssh: &[u8]) -> Option<String> {
    let line = first_line(after_ssh);
    let dash = line.iter().position(|&b| b == b'-')?;
    text(line.get(dash + 1..)?)
}

/// `003.008` gives `RFB 3.8`; anything but two three-digit numbers is not RFB.
fn rfb_version(rest: &[u8]) -> Option<String> {
    let [a, b, c, b'.', d, e, f, ..] = rest else { return None };
    let number = |digits: [u8; 3]| -> Option<u16> {
        digits.iter().try_fold(0u16, |n, d| d.is_ascii_digit().then(|| n * 10 + u16::from(d - b'0')))
    };
    Some(format!("RFB {}.{}", number([*a, *b, *c])?, number([*d, *e, *f])?))
}

/// FTP and SMTP both greet with 220, so the greeting's words decide which it is.
fn greeting_220(bytes: &[u8]) -> Option<Identified> {
    // `2201...` is some other protocol's bytes, not a reply code.
    if !matches!(bytes.get(3), Some(b' ' | b'-' | b'\r' | b'\n')) {
        return None;
    }
    let first = first_line(bytes).get(4..).unwrap_or_default();
    // SMTP greetings start with the server's host name (RFC 5321), which may well be `ftp.example.org`,
    // so it takes no part in the word test.
    let after_host = skip_word(first);
    let smtp_word = after_host
        .split(|b| !b.is_ascii_alphanumeric())
        .any(|w| w.eq_ignore_ascii_case(b"smtp") || w.eq_ignore_ascii_case(b"esmtp"));
    let has = |hint: &[u8]| bytes.windows(hint.len()).any(|w| w.eq_ignore_ascii_case(hint));
    if !smtp_word && (has(b"ftp") || has(b"filezilla")) {
        return Some(Identified { name: "ftp", product: ftp_product(first) });
    }
    if smtp_word || [b"smtp".as_slice(), b"mail", b"postfix", b"exim", b"sendmail"].iter().any(|h| has(h)) {
        return Some(Identified { name: "smtp", product: text(after_host) });
    }
    None
}

/// vsftpd's `(vsFTPd 3.0.3)` gives `vsftpd 3.0.3`; other greetings are kept as their text.
fn ftp_product(first: &[u8]) -> Option<String> {
    if let Some(at) = first.windows(6).position(|w| w.eq_ignore_ascii_case(b"vsftpd")) {
        let after = first.get(at + 6..).unwrap_or_default();
        let version = after.strip_prefix(b" ").unwrap_or_default();
        let end = version.iter().position(|b| b.is_ascii_whitespace() || *b == b')').unwrap_or(version.len());
        return match version.get(..end).and_then(text) {
            Some(v) => Some(format!("vsftpd {v}")),
            None => Some("vsftpd".to_owned()),
        };
    }
    // Pure-FTPd frames its greeting in dashes.
    let trimmed = first.trim_ascii();
    let start = trimmed.iter().position(|&b| b != b'-').unwrap_or(trimmed.len());
    let end = trimmed.iter().rposition(|&b| b != b'-').map_or(start, |i| i + 1);
    text(trimmed.get(start..end).unwrap_or_default())
}

/// `[CAPABILITY IMAP4rev1 ...] Dovecot (Debian) ready.` gives `Dovecot (Debian) ready.`.
fn imap_product(rest: &[u8]) -> Option<String> {
    let rest = rest.trim_ascii_start();
    let rest = match rest.strip_prefix(b"[") {
        Some(code) => code.iter().position(|&b| b == b']').and_then(|i| code.get(i + 1..)).unwrap_or_default(),
        None => rest,
    };
    text(rest)
}

/// MySQL and MariaDB speak first with a handshake packet, or an error packet to hosts they refuse.
fn mysql(bytes: &[u8]) -> Option<Identified> {
    let Some((0, len, payload)) = mysql_packet(bytes) else { return None };
    let payload = payload.get(..len).unwrap_or(payload);
    match payload {
        [0x0a, rest @ ..] => {
            let version = rest.get(..rest.iter().position(|&b| b == 0)?)?;
            let plausible =
                version.first().is_some_and(u8::is_ascii_digit) && version.iter().all(|b| (0x20..=0x7e).contains(b));
            if !plausible {
                return None;
            }
            let version = clip(String::from_utf8_lossy(version).into_owned());
            let product = if version.contains("MariaDB") {
                // MariaDB 10 prefixes its version with `5.5.5-` only to satisfy old MySQL clients.
                format!("MariaDB {}", version.strip_prefix("5.5.5-").unwrap_or(&version))
            } else {
                format!("MySQL {version}")
            };
            Some(Identified { name: "mysql", product: Some(product) })
        }
        // Before the handshake only these three errors are sent: too many connections,
        // host blocked, host not allowed.
        [0xff, c0, c1, message @ ..]
            if matches!(u16::from_le_bytes([*c0, *c1]), 1040 | 1129 | 1130)
                && message.iter().all(|b| (0x20..=0x7e).contains(b)) =>
        {
            Some(Identified { name: "mysql", product: None })
        }
        _ => None,
    }
}

/// An FTP or SMTP reply ends with a whole line `NNN text`; `NNN-text` lines and lines
/// without a code are continuations.
fn reply_complete(bytes: &[u8]) -> bool {
    let Some(lines) = bytes.strip_suffix(b"\n") else { return false };
    let last = lines.rsplit(|&b| b == b'\n').next().unwrap_or(lines);
    let last = last.strip_suffix(b"\r").unwrap_or(last);
    matches!(last, [a, b, c] | [a, b, c, b' ', ..] if [a, b, c].iter().all(|d| d.is_ascii_digit()))
}

fn packet_complete(bytes: &[u8]) -> bool {
    mysql_packet(bytes).is_some_and(|(_, len, payload)| payload.len() >= len)
}

/// A MySQL packet's sequence id, announced payload length, and the payload bytes that have arrived.
fn mysql_packet(bytes: &[u8]) -> Option<(u8, usize, &[u8])> {
    let [l0, l1, l2, sequence, payload @ ..] = bytes else { return None };
    Some((*sequence, usize::from(*l0) | usize::from(*l1) << 8 | usize::from(*l2) << 16, payload))
}

/// The first line without its line end, or everything when no line end has arrived yet.
fn first_line(bytes: &[u8]) -> &[u8] {
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or(bytes);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn skip_word(line: &[u8]) -> &[u8] {
    let line = line.trim_ascii_start();
    let end = line.iter().position(u8::is_ascii_whitespace).unwrap_or(line.len());
    line.get(end..).unwrap_or_default()
}

fn strip_prefix_ci<'a>(bytes: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let head = bytes.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| bytes.get(prefix.len()..).unwrap_or_default())
}

/// Trimmed, lossily decoded and clipped text, or None when nothing is left.
fn text(bytes: &[u8]) -> Option<String> {
    let bytes = bytes.trim_ascii();
    (!bytes.is_empty()).then(|| clip(String::from_utf8_lossy(bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::banner::TEXT_MAX as PRODUCT_MAX;

    const OPENSSH: &[u8] = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n";
    const VSFTPD: &[u8] = b"220 (vsFTPd 3.0.3)\r\n";
    const POSTFIX: &[u8] = b"220 mail.example.org ESMTP Postfix (Debian/GNU)\r\n";
    const PURE_FTPD: &[u8] = b"220---------- Welcome to Pure-FTPd [privsep] [TLS] ----------\r\n\
220-You are user number 1 of 50 allowed.\r\n220-Local time is now 17:00. Server port: 21.\r\n\
220 You will be disconnected after 15 minutes of inactivity.\r\n";
    const EXIM: &[u8] = b"220-mx.example.org ESMTP Exim 4.96 Thu, 04 Dec 2025 17:00:00 +0000\r\n\
220-We do not authorize the use of this system to transport unsolicited,\r\n220 and/or bulk e-mail.\r\n";
    const DOVECOT_POP3: &[u8] = b"+OK Dovecot (Debian) ready.\r\n";
    const DOVECOT_IMAP: &[u8] = b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ \
STARTTLS AUTH=PLAIN] Dovecot (Debian) ready.\r\n";
    const RFB: &[u8] = b"RFB 003.008\n";

    /// A protocol-10 handshake as MySQL and MariaDB send it, built field by field.
    fn handshake(version: &str, plugin: &str) -> Vec<u8> {
        let mut payload = vec![0x0a];
        payload.extend_from_slice(version.as_bytes());
        payload.push(0);
        payload.extend_from_slice(&42u32.to_le_bytes()); // connection id
        payload.extend_from_slice(b"abcdefgh"); // auth-plugin-data part 1
        payload.push(0); // filler
        payload.extend_from_slice(&0xf7ffu16.to_le_bytes()); // capability flags, low half
        payload.push(0xff); // character set
        payload.extend_from_slice(&0x0002u16.to_le_bytes()); // status flags
        payload.extend_from_slice(&0xdfffu16.to_le_bytes()); // capability flags, high half
        payload.push(21); // auth-plugin-data length
        payload.extend_from_slice(&[0; 10]); // reserved
        payload.extend_from_slice(b"ijklmnopqrst\0"); // auth-plugin-data part 2
        payload.extend_from_slice(plugin.as_bytes());
        payload.push(0);
        packet(&payload)
    }

    fn packet(payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).expect("small payload").to_le_bytes();
        let mut bytes = vec![len[0], len[1], len[2], 0];
        bytes.extend_from_slice(payload);
        bytes
    }

    fn refused() -> Vec<u8> {
        let mut payload = vec![0xff];
        payload.extend_from_slice(&1130u16.to_le_bytes());
        payload.extend_from_slice(b"Host '10.0.0.9' is not allowed to connect to this MySQL server");
        packet(&payload)
    }

    fn id(name: &'static str, product: Option<&str>) -> Option<Identified> {
        Some(Identified { name, product: product.map(str::to_owned) })
    }

    /// Every proper prefix is incomplete, the whole message complete, and none panics.
    fn whole_only_when_all_arrived(name: &str, sample: &[u8]) {
        for len in 0..sample.len() {
            let prefix = &sample[..len];
            let _ = identify(prefix);
            let _ = printable(prefix, len);
            assert!(!complete(name, prefix), "{name} complete at {len} of {}", sample.len());
        }
        assert!(complete(name, sample), "{name} whole");
    }

    #[test]
    fn openssh() {
        assert_eq!(identify(OPENSSH), id("ssh", Some("OpenSSH_9.2p1 Debian-2+deb12u3")));
        assert_eq!(identify(b"SSH-1.99-Cisco-1.25\n"), id("ssh", Some("Cisco-1.25")));
        assert_eq!(identify(b"SSH-2.0"), id("ssh", None));
        assert_eq!(identify(b"SSH-2.0-\r\n"), id("ssh", None));
        whole_only_when_all_arrived("ssh", OPENSSH);
    }

    #[test]
    fn ftp_greetings() {
        assert_eq!(identify(VSFTPD), id("ftp", Some("vsftpd 3.0.3")));
        assert_eq!(identify(b"220 (vsFTPd)\r\n"), id("ftp", Some("vsftpd")));
        assert_eq!(
            identify(b"220 ProFTPD Server (Debian) [::ffff:10.0.0.1]\r\n"),
            id("ftp", Some("ProFTPD Server (Debian) [::ffff:10.0.0.1]"))
        );
        assert_eq!(identify(PURE_FTPD), id("ftp", Some("Welcome to Pure-FTPd [privsep] [TLS]")));
        assert_eq!(identify(b"220 Microsoft FTP Service\r\n"), id("ftp", Some("Microsoft FTP Service")));
        assert_eq!(
            identify(b"220-FileZilla Server 0.9.60 beta\r\n220 Please visit https://example.org/\r\n"),
            id("ftp", Some("FileZilla Server 0.9.60 beta"))
        );
        whole_only_when_all_arrived("ftp", VSFTPD);
        whole_only_when_all_arrived("ftp", PURE_FTPD);
    }

    #[test]
    fn smtp_greetings() {
        assert_eq!(identify(POSTFIX), id("smtp", Some("ESMTP Postfix (Debian/GNU)")));
        assert_eq!(identify(EXIM), id("smtp", Some("ESMTP Exim 4.96 Thu, 04 Dec 2025 17:00:00 +0000")));
        assert_eq!(identify(b"220 ftp.example.org ESMTP\r\n"), id("smtp", Some("ESMTP")));
        assert_eq!(identify(b"220 mail.example.com ready\r\n"), id("smtp", Some("ready")));
        assert_eq!(identify(b"220 mx.example.com\r\n"), None);
        whole_only_when_all_arrived("smtp", POSTFIX);
        whole_only_when_all_arrived("smtp", EXIM);
    }

    #[test]
    fn ambiguous_220() {
        assert_eq!(
            identify(b"220 smtp.example.com Microsoft FTP Service\r\n"),
            id("ftp", Some("smtp.example.com Microsoft FTP Service"))
        );
        assert_eq!(identify(b"220 Welcome\r\n"), None);
        assert_eq!(identify(b"2201 ftp\r\n"), None);
        assert_eq!(identify(b"220"), None);
        assert!(complete("ftp", b"220\r\n"));
        assert!(!complete("ftp", b"220-a\r\nmore text\r\n"));
        assert!(complete("smtp", b"220-a\n220 b\n"));
    }

    #[test]
    fn dovecot() {
        assert_eq!(identify(DOVECOT_POP3), id("pop3", Some("Dovecot (Debian) ready.")));
        assert_eq!(identify(DOVECOT_IMAP), id("imap", Some("Dovecot (Debian) ready.")));
        assert_eq!(
            identify(b"* PREAUTH IMAP4rev1 server logged in as x\r\n"),
            id("imap", Some("IMAP4rev1 server logged in as x"))
        );
        assert_eq!(identify(b"* ok [ALERT\r\n"), id("imap", None));
        assert_eq!(identify(b"+OK\r\n"), id("pop3", None));
        whole_only_when_all_arrived("pop3", DOVECOT_POP3);
        whole_only_when_all_arrived("imap", DOVECOT_IMAP);
    }

    #[test]
    fn mysql_8() {
        let bytes = handshake("8.0.36", "caching_sha2_password");
        assert_eq!(identify(&bytes), id("mysql", Some("MySQL 8.0.36")));
        whole_only_when_all_arrived("mysql", &bytes);
        // A server that goes on talking still has its first packet whole.
        let mut more = bytes.clone();
        more.push(1);
        assert!(complete("mysql", &more));
    }

    #[test]
    fn mariadb() {
        let bytes = handshake("5.5.5-10.11.6-MariaDB-0+deb12u1", "mysql_native_password");
        assert_eq!(identify(&bytes), id("mysql", Some("MariaDB 10.11.6-MariaDB-0+deb12u1")));
        let bytes = handshake("11.4.2-MariaDB-ubu2404", "mysql_native_password");
        assert_eq!(identify(&bytes), id("mysql", Some("MariaDB 11.4.2-MariaDB-ubu2404")));
        whole_only_when_all_arrived("mysql", &bytes);
    }

    #[test]
    fn mysql_refusal_and_lookalikes() {
        let bytes = refused();
        assert_eq!(identify(&bytes), id("mysql", None));
        whole_only_when_all_arrived("mysql", &bytes);
        let mut other_error = bytes.clone();
        other_error[5] = 0x01;
        assert_eq!(identify(&other_error), None);
        assert_eq!(identify(&packet(b"\x0a\0rest")), None);
        assert_eq!(identify(&packet(b"\x0aversion\0")), None);
        assert_eq!(identify(&packet(b"\x0a8.0\x01\0")), None);
        assert_eq!(identify(b"\x05\0\0\x01\x0a8.0\0"), None);
        // The version must end inside the packet its header announces.
        assert_eq!(identify(b"\x03\0\0\0\x0a8.0\0"), None);
    }

    #[test]
    fn vnc() {
        assert_eq!(identify(RFB), id("vnc", Some("RFB 3.8")));
        assert_eq!(identify(b"RFB 003.889\n"), id("vnc", Some("RFB 3.889")));
        assert_eq!(identify(b"RFB 000.000\n"), id("vnc", Some("RFB 0.0")));
        assert_eq!(identify(b"RFB 3.8\n"), None);
        assert_eq!(identify(b"RFB 00a.008\n"), None);
        whole_only_when_all_arrived("vnc", RFB);
    }

    #[test]
    fn telnet_and_http() {
        let telnet = [0xff, 0xfd, 0x18, 0xff, 0xfd, 0x20];
        assert_eq!(identify(&telnet), id("telnet", None));
        assert_eq!(identify(&[0xff, 0xfb]), id("telnet", None));
        assert_eq!(identify(&[0xff, 0xfa]), None);
        assert_eq!(identify(&[0xff]), None);
        assert!(!complete("telnet", &telnet));
        let http = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n\r\n";
        assert_eq!(identify(http), id("http", None));
        assert_eq!(identify(b"HTTP/2 200\r\n"), id("http", None));
        assert_eq!(identify(b"HTTP/3 200\r\n"), None);
        assert!(!complete("http", http));
    }

    #[test]
    fn unknown() {
        assert_eq!(identify(b""), None);
        assert_eq!(identify(b"hello\r\n"), None);
        assert!(!complete("nope", OPENSSH));
        assert!(!complete("", b""));
    }

    #[test]
    fn printable_escapes() {
        assert_eq!(printable(b"SSH-2.0-x\r\n", 64), "SSH-2.0-x\\r\\n");
        assert_eq!(printable(b"a\tb\\c\0\x7f\xff\xc3\xa9", 64), "a\\tb\\\\c\\x00\\x7f\\xff\\xc3\\xa9");
        assert_eq!(printable(b"abcdef", 3), "abc");
        assert_eq!(printable(b"abc", 0), "");
        assert_eq!(printable(b"", 10), "");
    }

    #[test]
    fn long_products_are_clipped() {
        let mut banner = b"SSH-2.0-".to_vec();
        banner.extend_from_slice(&[b'a'; 255]);
        banner.extend_from_slice("é\r\n".as_bytes());
        assert_eq!(identify(&banner).and_then(|i| i.product), Some("a".repeat(255)));
    }

    #[test]
    fn fuzz_never_panics() {
        let mut state = 0x853c_49e6_748f_ea9b_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let samples: Vec<Vec<u8>> = [OPENSSH, VSFTPD, POSTFIX, PURE_FTPD, DOVECOT_POP3, DOVECOT_IMAP, RFB]
            .iter()
            .map(|s| s.to_vec())
            .chain([handshake("8.0.36", "caching_sha2_password"), refused()])
            .collect();
        let names = ["ssh", "ftp", "smtp", "pop3", "imap", "mysql", "vnc", "telnet", "http", "other"];
        for round in 0..100_000 {
            let input: Vec<u8> = if round % 2 == 0 {
                (0..next() % 128).map(|_| next() as u8).collect()
            } else {
                // Damaged real banners reach past the first byte checks.
                let mut v = samples[(next() % samples.len() as u64) as usize].clone();
                for _ in 0..(next() % 3 + 1) {
                    let at = (next() % v.len() as u64) as usize;
                    if let Some(b) = v.get_mut(at) {
                        *b = next() as u8;
                    }
                }
                v.truncate((next() % (v.len() as u64 + 1)) as usize);
                v
            };
            if let Some(found) = identify(&input) {
                assert!(names.contains(&found.name));
                assert!(found.product.is_none_or(|p| p.len() <= PRODUCT_MAX + "MariaDB ".len()));
            }
            for name in names {
                let _ = complete(name, &input);
            }
            let cap = (next() % 200) as usize;
            assert!(printable(&input, cap).len() <= cap * 4);
        }
    }
}
