//! What a TLS server's leaf certificate says about it, read from its DER bytes.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use x509_parser::extensions::GeneralName;
use x509_parser::time::ASN1Time;

/// The fields of a certificate that a scan reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Certificate {
    /// Subject distinguished name, such as `CN=prtip.test, O=prtip`.
    pub subject: String,
    /// Issuer distinguished name, written like `subject`.
    pub issuer: String,
    /// Subject alternative names: DNS names and URIs as written, IP addresses as text, emails as `email:...`.
    pub san: Vec<String>,
    /// Start of validity, RFC 3339 in UTC.
    pub not_before: String,
    /// End of validity, RFC 3339 in UTC.
    pub not_after: String,
    /// Lowercase hex SHA-256 of the whole input, as `openssl x509 -fingerprint -sha256` gives without colons.
    pub sha256: String,
}

/// Reads `der`; a certificate that cannot be parsed still gets its `sha256`, its other fields left empty.
pub fn parse(der: &[u8]) -> Certificate {
    let sha256 = hex(ring::digest::digest(&ring::digest::SHA256, der).as_ref());
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Certificate { sha256, ..Certificate::default() };
    };
    // A malformed or repeated SAN extension does not make the rest of the certificate unreadable.
    let san = match cert.subject_alternative_name() {
        Ok(Some(ext)) => ext.value.general_names.iter().filter_map(general_name).collect(),
        _ => Vec::new(),
    };
    let validity = cert.validity();
    Certificate {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        san,
        not_before: rfc3339(&validity.not_before),
        not_after: rfc3339(&validity.not_after),
        sha256,
    }
}

/// Other kinds of name (directory names, other names, ...) are left out: scan output has no use for them.
fn general_name(name: &GeneralName<'_>) -> Option<String> {
    match name {
        GeneralName::DNSName(dns) => Some((*dns).to_owned()),
        GeneralName::URI(uri) => Some((*uri).to_owned()),
        GeneralName::RFC822Name(email) => Some(format!("email:{email}")),
        GeneralName::IPAddress(raw) => {
            let ip = match *raw {
                [a, b, c, d] => IpAddr::V4(Ipv4Addr::new(*a, *b, *c, *d)),
                _ => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(*raw).ok()?)),
            };
            Some(ip.to_string())
        }
        _ => None,
    }
}

fn rfc3339(time: &ASN1Time) -> String {
    let secs = time.timestamp();
    let (days, day_secs) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = crate::output::time::civil_from_days(days);
    let (hour, minute, second) = (day_secs / 3600, day_secs % 3600 / 60, day_secs % 60);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::str::FromStr;

    /// A scratch directory of this test's own, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("prtip-cert-{}-{tag}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("create scratch dir");
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn openssl(args: &[&str], dir: &Path) -> String {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("openssl output is UTF-8")
    }

    /// A fresh self-signed certificate from openssl, as DER, and openssl's own reading of it.
    fn generate(tag: &str, key: &[&str], san: &str) -> (Vec<u8>, Certificate) {
        let scratch = Scratch::new(tag);
        let dir = scratch.0.as_path();
        let mut args = vec!["req", "-x509"];
        args.extend_from_slice(key);
        let ext = format!("subjectAltName={san}");
        args.extend_from_slice(&[
            "-nodes",
            "-keyout",
            "K",
            "-out",
            "C",
            "-days",
            "30",
            "-subj",
            "/CN=prtip.test/O=prtip",
            "-addext",
            &ext,
        ]);
        openssl(&args, dir);
        openssl(&["x509", "-in", "C", "-outform", "DER", "-out", "D"], dir);
        let der = std::fs::read(dir.join("D")).expect("read DER");
        let text = openssl(
            &[
                "x509",
                "-in",
                "C",
                "-noout",
                "-subject",
                "-issuer",
                "-dates",
                "-fingerprint",
                "-sha256",
                "-ext",
                "subjectAltName",
            ],
            dir,
        );
        (der, from_openssl(&text))
    }

    fn from_openssl(text: &str) -> Certificate {
        let mut want = Certificate::default();
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            let line = line.trim();
            if let Some(v) = line.strip_prefix("subject=") {
                want.subject = v.trim().replace(" = ", "=");
            } else if let Some(v) = line.strip_prefix("issuer=") {
                want.issuer = v.trim().replace(" = ", "=");
            } else if let Some(v) = line.strip_prefix("notBefore=") {
                want.not_before = openssl_date(v);
            } else if let Some(v) = line.strip_prefix("notAfter=") {
                want.not_after = openssl_date(v);
            } else if let Some((_, v)) = line.split_once("Fingerprint=") {
                want.sha256 = v.replace(':', "").to_lowercase();
            } else if line.starts_with("X509v3 Subject Alternative Name") {
                let names = lines.next().expect("SAN values line");
                want.san = names.trim().split(", ").map(openssl_san).collect();
            }
        }
        want
    }

    fn openssl_san(entry: &str) -> String {
        let (kind, value) = entry.split_once(':').expect("kind:value");
        match kind {
            "IP Address" => IpAddr::from_str(value).expect("IP").to_string(),
            "email" => format!("email:{value}"),
            _ => value.to_owned(),
        }
    }

    /// `Dec  4 17:00:00 2026 GMT` to `2026-12-04T17:00:00Z`.
    fn openssl_date(text: &str) -> String {
        let parts: Vec<&str> = text.split_whitespace().collect();
        let [mon, day, time, year, "GMT"] = parts.as_slice() else { panic!("unexpected date {text:?}") };
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
        let month = months.iter().position(|m| m == mon).expect("month") + 1;
        let day: u32 = day.parse().expect("day");
        format!("{year}-{month:02}-{day:02}T{time}Z")
    }

    #[test]
    fn matches_openssl_rsa() {
        let (der, want) = generate("rsa", &["-newkey", "rsa:2048"], "DNS:prtip.test,IP:10.0.0.1");
        assert_eq!(want.san, ["prtip.test", "10.0.0.1"]);
        assert_eq!(want.subject, "CN=prtip.test, O=prtip");
        assert_eq!(want.sha256.len(), 64);
        assert!(want.not_before.len() == 20 && want.not_after.len() == 20, "{want:?}");
        assert_eq!(parse(&der), want);
    }

    #[test]
    fn matches_openssl_every_san_kind() {
        let (der, want) = generate(
            "ec",
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
            "DNS:prtip.test,DNS:*.prtip.test,IP:10.0.0.1,IP:fd00::1,email:ops@prtip.test,URI:https://prtip.test/x",
        );
        assert_eq!(
            want.san,
            ["prtip.test", "*.prtip.test", "10.0.0.1", "fd00::1", "email:ops@prtip.test", "https://prtip.test/x"]
        );
        assert_eq!(parse(&der), want);
    }

    #[test]
    fn garbage_keeps_only_the_hash() {
        let got = parse(b"not a certificate");
        let want = Certificate {
            sha256: "47209c9b7af839de69e9a9cd625e9182c1ad63dae79ed88a2dd680fe34218620".to_owned(),
            ..Certificate::default()
        };
        assert_eq!(got, want);
        assert_eq!(parse(b"").sha256, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn dates_around_the_calendar() {
        use crate::output::time::civil_from_days;
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_791), (2026, 12, 4));
        let t = ASN1Time::from_timestamp(1_796_403_600).expect("timestamp");
        assert_eq!(rfc3339(&t), "2026-12-04T17:00:00Z");
        let t = ASN1Time::from_timestamp(-2_208_988_800).expect("timestamp");
        assert_eq!(rfc3339(&t), "1900-01-01T00:00:00Z");
    }

    #[test]
    fn fuzz_never_panics() {
        let (der, _) = generate("fuzz", &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], "DNS:a,IP:10.0.0.1");
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..100_000 {
            let input: Vec<u8> = if round % 2 == 0 {
                // Flipped bytes and cut tails of a real certificate reach deep into the parser.
                let mut v = der.clone();
                for _ in 0..(next() % 4 + 1) {
                    let at = (next() % v.len() as u64) as usize;
                    if let Some(b) = v.get_mut(at) {
                        *b = next() as u8;
                    }
                }
                v.truncate((next() % (der.len() as u64 + 1)) as usize);
                v
            } else {
                (0..next() % 300).map(|_| next() as u8).collect()
            };
            let got = parse(&input);
            assert_eq!(got.sha256.len(), 64);
        }
    }
}
