//! The HTTP probe: the request sent, and what is read back from the start of the answer.

use std::net::IpAddr;

use super::{TEXT_MAX as VALUE_MAX, clip};

/// Body bytes after which waiting for more is not worth it.
const BODY_ENOUGH: usize = 16 * 1024;

/// The request sent to every HTTP port. `host` is the Host header's value as [`host_header`] formats it.
/// Control characters in `host` are dropped so that no caller's input can add header lines.
pub fn request(host: &str) -> Vec<u8> {
    let host: String = host.chars().filter(|c| !c.is_control()).collect();
    format!("GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: prtip\r\nAccept: */*\r\nConnection: close\r\n\r\n")
        .into_bytes()
}

/// The Host header's value for a target given by name.
pub fn host_header_name(name: &str, port: u16) -> String {
    if port == 80 || port == 443 { name.to_string() } else { format!("{name}:{port}") }
}

/// The Host header's value for `ip:port`: IPv6 bracketed, the port left out when it is 80 or 443.
pub fn host_header(ip: IpAddr, port: u16) -> String {
    let host = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    if port == 80 || port == 443 { host } else { format!("{host}:{port}") }
}

/// What the head of an HTTP answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Status code from the status line.
    pub status: u16,
    /// First Server header, trimmed.
    pub server: Option<String>,
    /// First Location header, trimmed.
    pub location: Option<String>,
    /// Text of the page's first `<title>`, entities decoded and whitespace collapsed.
    pub title: Option<String>,
}

/// Reads the start of an answer: None until a whole `HTTP/x NNN` status line has arrived,
/// then whatever complete header lines and body have arrived with it.
pub fn parse(bytes: &[u8]) -> Option<Head> {
    let split = split(bytes)?;
    Some(Head {
        status: split.status,
        server: field(&split.fields, "server").map(value_text),
        location: field(&split.fields, "location").map(value_text),
        title: split.body.and_then(title),
    })
}

/// Whether reading can stop: the head has ended and the body holds the end of the title,
/// or all of a Content-Length or chunked body, or the status has no body, or the body is large enough.
pub fn complete(bytes: &[u8]) -> bool {
    let Some(split) = split(bytes) else { return false };
    let Some(body) = split.body else { return false };
    if matches!(split.status, 100..=199 | 204 | 304) || body.len() >= BODY_ENOUGH || find_ci(body, b"</title").is_some()
    {
        return true;
    }
    if let Some(length) = field(&split.fields, "content-length") {
        // An unreadable length is as good as none: the byte cap, EOF or deadline will end the read.
        if let Some(length) = std::str::from_utf8(length).ok().and_then(|s| s.parse::<u64>().ok()) {
            return body.len() as u64 >= length;
        }
    }
    field(&split.fields, "transfer-encoding").is_some_and(|te| find_ci(te, b"chunked").is_some())
        && (body == b"0\r\n\r\n" || body.ends_with(b"\n0\r\n\r\n"))
}

/// The parts of an answer's head that have arrived.
struct Split<'a> {
    status: u16,
    /// Whole header lines without their line ends; a line still arriving is left out so no value is cut short.
    fields: Vec<&'a [u8]>,
    /// Everything after the blank line that ends the head, once that line has arrived.
    body: Option<&'a [u8]>,
}

fn split(bytes: &[u8]) -> Option<Split<'_>> {
    let mut rest = bytes;
    let status = status(next_line(&mut rest)?)?;
    let mut fields = Vec::new();
    while let Some(line) = next_line(&mut rest) {
        if line.is_empty() {
            return Some(Split { status, fields, body: Some(rest) });
        }
        fields.push(line);
    }
    Some(Split { status, fields, body: None })
}

/// Takes the next whole line off `rest`, without its `\n` or `\r\n`, since servers use both.
fn next_line<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let end = rest.iter().position(|&b| b == b'\n')?;
    let (line, tail) = rest.split_at(end);
    *rest = tail.get(1..).unwrap_or_default();
    Some(line.strip_suffix(b"\r").unwrap_or(line))
}

/// `HTTP/1.1 200 OK` gives 200; the reason phrase is optional.
fn status(line: &[u8]) -> Option<u16> {
    let rest = line.strip_prefix(b"HTTP/")?;
    let space = rest.iter().position(|&b| b == b' ')?;
    let (version, rest) = rest.split_at(space);
    if version.is_empty() || !version.iter().all(|b| b.is_ascii_digit() || *b == b'.') {
        return None;
    }
    match rest.trim_ascii_start() {
        [a, b, c] | [a, b, c, b' ', ..] if [a, b, c].iter().all(|d| d.is_ascii_digit()) => {
            Some(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => None,
    }
}

/// The trimmed value of the first header called `name`.
fn field<'a>(fields: &[&'a [u8]], name: &str) -> Option<&'a [u8]> {
    fields.iter().find_map(|line| {
        let colon = line.iter().position(|&b| b == b':')?;
        let (key, value) = line.split_at(colon);
        let value = value.get(1..).unwrap_or_default();
        key.trim_ascii().eq_ignore_ascii_case(name.as_bytes()).then(|| value.trim_ascii())
    })
}

fn value_text(value: &[u8]) -> String {
    clip(String::from_utf8_lossy(value).into_owned())
}

fn title(body: &[u8]) -> Option<String> {
    let mut from = 0;
    let name_end = loop {
        let at = from + find_ci(body.get(from..)?, b"<title")?;
        let end = at + b"<title".len();
        // `<titlebar>` is another tag; `<title lang="en">` is still the title.
        match body.get(end) {
            Some(b) if *b == b'>' || b.is_ascii_whitespace() => break end,
            Some(_) => from = end,
            None => return None,
        }
    };
    let after_name = body.get(name_end..)?;
    let open_end = after_name.iter().position(|&b| b == b'>')? + 1;
    let text = after_name.get(open_end..)?;
    let raw = text.get(..find_ci(text, b"</title")?)?;
    let decoded = decode_entities(&String::from_utf8_lossy(raw));
    let mut out = String::new();
    // Control characters count as whitespace so that a hostile title cannot carry them into outputs.
    for word in decoded.split(|c: char| c.is_whitespace() || c.is_control()).filter(|w| !w.is_empty()) {
        if out.len() > VALUE_MAX {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    let mut out = clip(out);
    out.truncate(out.trim_end().len());
    // An empty title says nothing a missing one does not.
    (!out.is_empty()).then_some(out)
}

/// Decodes the entities a title commonly holds; anything else is kept as written.
fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some((before, after)) = rest.split_once('&') {
        out.push_str(before);
        // Looking only a few characters ahead for the `;` keeps a title full of bare `&` linear.
        let decoded = after.char_indices().take(12).find(|&(_, c)| c == ';').and_then(|(semi, _)| {
            let name = after.get(..semi)?;
            Some((entity(name)?, after.get(semi + 1..)?))
        });
        match decoded {
            Some((c, tail)) => {
                out.push(c);
                rest = tail;
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn entity(name: &str) -> Option<char> {
    match name {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        "nbsp" => Some(' '),
        _ => {
            let number = name.strip_prefix('#')?;
            let code = match number.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => number.parse().ok()?,
            };
            char::from_u32(code)
        }
    }
}

/// Position of `needle` in `hay`, ASCII case ignored.
fn find_ci(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const NGINX: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Thu, 04 Dec 2025 17:00:00 GMT\r\n\
Content-Type: text/html\r\nContent-Length: 615\r\nLast-Modified: Tue, 03 Dec 2025 10:00:00 GMT\r\n\
Connection: close\r\nETag: \"674ed8d0-267\"\r\nAccept-Ranges: bytes\r\n\r\n\
<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n<style>\nhtml { color-scheme: light dark; }\n";

    const MOVED: &[u8] = b"HTTP/1.1 301 Moved Permanently\r\nServer: nginx/1.22.1\r\n\
Content-Type: text/html\r\nContent-Length: 169\r\nConnection: close\r\nLocation: https://prtip.test/\r\n\r\n\
<html>\r\n<head><title>301 Moved Permanently</title></head>\r\n<body>\r\n<center><h1>301 Moved Permanently</h1></center>\r\n\
<hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n";

    fn head(status: u16, server: Option<&str>, location: Option<&str>, title: Option<&str>) -> Head {
        Head {
            status,
            server: server.map(str::to_owned),
            location: location.map(str::to_owned),
            title: title.map(str::to_owned),
        }
    }

    #[test]
    fn request_bytes() {
        assert_eq!(
            request("10.0.0.1:8080"),
            b"GET / HTTP/1.1\r\nHost: 10.0.0.1:8080\r\nUser-Agent: prtip\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(
            request("evil\r\nX-Injected: 1"),
            b"GET / HTTP/1.1\r\nHost: evilX-Injected: 1\r\nUser-Agent: prtip\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn host_headers() {
        let v4 = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let v6 = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1));
        assert_eq!(host_header(v4, 80), "10.0.0.1");
        assert_eq!(host_header(v4, 443), "10.0.0.1");
        assert_eq!(host_header(v4, 8080), "10.0.0.1:8080");
        assert_eq!(host_header(v6, 80), "[fd00::1]");
        assert_eq!(host_header(v6, 443), "[fd00::1]");
        assert_eq!(host_header(v6, 8080), "[fd00::1]:8080");
    }

    #[test]
    fn nginx_welcome() {
        assert_eq!(parse(NGINX), Some(head(200, Some("nginx/1.22.1"), None, Some("Welcome to nginx!"))));
        assert!(complete(NGINX));
    }

    #[test]
    fn nginx_redirect() {
        let want = head(301, Some("nginx/1.22.1"), Some("https://prtip.test/"), Some("301 Moved Permanently"));
        assert_eq!(parse(MOVED), Some(want));
    }

    #[test]
    fn every_prefix_of_a_redirect() {
        let status_end = MOVED.iter().position(|&b| b == b'\n').unwrap_or_default() + 1;
        let title_end = find_ci(MOVED, b"</title").unwrap_or_default() + b"</title".len();
        let server_end = find_ci(MOVED, b"Server: nginx/1.22.1\r\n").unwrap_or_default() + 22;
        let location_end = find_ci(MOVED, b"prtip.test/\r\n").unwrap_or_default() + 13;
        for len in 0..=MOVED.len() {
            let prefix = &MOVED[..len];
            let got = parse(prefix);
            assert_eq!(got.is_some(), len >= status_end, "len {len}");
            if let Some(got) = got {
                assert_eq!(got.status, 301);
                assert_eq!(got.server.is_some(), len >= server_end, "len {len}");
                assert_eq!(got.location.is_some(), len >= location_end, "len {len}");
                assert_eq!(got.title.is_some(), len >= title_end, "len {len}");
            }
            assert_eq!(complete(prefix), len >= title_end, "len {len}");
        }
    }

    #[test]
    fn every_prefix_of_a_body_without_title() {
        let answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"a\": true}";
        for len in 0..answer.len() {
            assert!(!complete(&answer[..len]), "len {len}");
        }
        assert!(complete(answer));
        assert_eq!(parse(answer), Some(head(200, None, None, None)));
    }

    #[test]
    fn completeness_rules() {
        assert!(!complete(b"HTTP/1.1 200 OK\r\nServer: x\r\n"));
        assert!(complete(b"HTTP/1.1 204 No Content\r\n\r\n"));
        assert!(complete(b"HTTP/1.1 304 Not Modified\n\n"));
        assert!(complete(b"HTTP/1.1 100 Continue\r\n\r\n"));
        assert!(!complete(b"HTTP/1.1 200 OK\r\n\r\n<html>"));
        assert!(complete(b"HTTP/1.1 200 OK\r\n\r\n<html><TITLE>x</TITLE>"));
        assert!(!complete(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabcd"));
        assert!(complete(b"HTTP/1.1 200 OK\r\ncontent-length:  5 \r\n\r\nabcde"));
        assert!(!complete(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\nabcde"));
        assert!(!complete(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n"));
        assert!(complete(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n0\r\n\r\n"));
        assert!(complete(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"));
        let mut big = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        big.resize(big.len() + BODY_ENOUGH - 1, b'a');
        assert!(!complete(&big));
        big.push(b'a');
        assert!(complete(&big));
        assert!(!complete(b"SSH-2.0-OpenSSH_9.2p1\r\n\r\n"));
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse(b"HTTP/1.0 404 Not Found\r\n").map(|h| h.status), Some(404));
        assert_eq!(parse(b"HTTP/2 200\r\n").map(|h| h.status), Some(200));
        assert_eq!(parse(b"HTTP/1.1 418\n").map(|h| h.status), Some(418));
        assert_eq!(parse(b"HTTP/1.1 200 OK"), None);
        assert_eq!(parse(b"HTTP/1.1 2000 OK\r\n"), None);
        assert_eq!(parse(b"HTTP/1.1 20 OK\r\n"), None);
        assert_eq!(parse(b"HTTP/x 200 OK\r\n"), None);
        assert_eq!(parse(b"HTTP/ 200 OK\r\n"), None);
        assert_eq!(parse(b"FTP/1.1 200 OK\r\n"), None);
        assert_eq!(parse(b""), None);
    }

    #[test]
    fn header_values() {
        let answer = b"HTTP/1.1 302 Found\r\nSERVER:   Apache/2.4.62 (Debian)  \r\nserver: second\r\n\
location:\t/login\xff\r\nLocation: /other\r\n\r\n";
        let want = head(302, Some("Apache/2.4.62 (Debian)"), Some("/login\u{fffd}"), None);
        assert_eq!(parse(answer), Some(want));
        let mut long = b"HTTP/1.1 200 OK\r\nServer: ".to_vec();
        long.extend_from_slice(&[b'a'; 255]);
        long.extend_from_slice("é and more".as_bytes());
        long.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse(&long).and_then(|h| h.server), Some("a".repeat(255)));
    }

    #[test]
    fn titles() {
        let body = |b: &str| parse(format!("HTTP/1.1 200 OK\r\n\r\n{b}").as_bytes()).and_then(|h| h.title);
        assert_eq!(
            body("<TITLE lang=\"en\">\n  Tom &amp; Jerry &lt;3&gt;\n\t</Title>"),
            Some("Tom & Jerry <3>".into())
        );
        assert_eq!(
            body("<title>&quot;a&#39;b&#x27;c&apos;&#65;&nbsp;d&unknown; &amp e&#;&#99999999;</title>").as_deref(),
            Some("\"a'b'c'A d&unknown; &amp e&#;&#99999999;")
        );
        assert_eq!(body("<titlebar>no</titlebar><title>yes</title>"), Some("yes".into()));
        assert_eq!(body("<title>first</title><title>second</title>"), Some("first".into()));
        assert_eq!(body("<title>cut before the end"), None);
        assert_eq!(body("<title>  </title>"), None);
        assert_eq!(body("<title>a\u{0}b&#1;c</title>"), Some("a b c".into()));
        assert_eq!(body("<title"), None);
        assert_eq!(body("no title here"), None);
        let cut = "abc ".repeat(64);
        assert_eq!(body(&format!("<title>{}</title>", "abc ".repeat(100))).as_deref(), Some(cut.trim_end()));
        assert_eq!(body(&format!("<title>{}</title>", "é".repeat(200))).map(|t| t.len()), Some(VALUE_MAX));
        // The title is read from the body only.
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\nX: <title>h</title>\r\n\r\n").and_then(|h| h.title), None);
    }

    #[test]
    fn fuzz_never_panics() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet: &[&[u8]] = &[
            b"HTTP/1.1 ",
            b"200",
            b"\r\n",
            b"\n",
            b"<title>",
            b"</title>",
            b"&amp;",
            b"&#",
            b";",
            b":",
            b"Content-Length: 3",
        ];
        for round in 0..100_000 {
            let input: Vec<u8> = match round % 3 {
                0 => (0..next() % 200).map(|_| next() as u8).collect(),
                1 => {
                    let mut v = MOVED.to_vec();
                    for _ in 0..(next() % 4 + 1) {
                        let at = (next() % v.len() as u64) as usize;
                        if let Some(b) = v.get_mut(at) {
                            *b = next() as u8;
                        }
                    }
                    v.truncate((next() % (MOVED.len() as u64 + 1)) as usize);
                    v
                }
                _ => (0..next() % 20)
                    .flat_map(|_| alphabet[(next() % alphabet.len() as u64) as usize].to_vec())
                    .collect(),
            };
            let _ = parse(&input);
            let _ = complete(&input);
            let text = String::from_utf8_lossy(&input);
            assert_eq!(request(&text).iter().filter(|&&b| b == b'\n').count(), 6);
            let ip = if next() % 2 == 0 {
                IpAddr::V4(Ipv4Addr::from(next() as u32))
            } else {
                IpAddr::V6(Ipv6Addr::from(u128::from(next()) << 64 | u128::from(next())))
            };
            assert!(!host_header(ip, next() as u16).is_empty());
        }
    }
}
