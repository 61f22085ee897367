//! CSV with a header row, streamed.

use super::time::rfc3339_us;
use super::{ResultWriter, RunEnd};
use crate::banner::Service;
use crate::banner::identify::printable;
use crate::open_hosts::FLAG;
use crate::probe::ScanType;
use crate::result::ScanResult;
use crate::service_names::ServiceNames;
use std::io::{self, Write};
use std::sync::Arc;

pub const HEADER: &str = "ip,port,proto,service,state,reason,ttl,rtt_us,time";
/// The columns a scan with `--banners` adds, after `HEADER`'s.
pub const BANNER_HEADER: &str = ",product,grab,http_status,http_server,http_title,http_location,\
tls_version,tls_subject,tls_issuer,tls_san,tls_not_before,tls_not_after,tls_sha256,banner";

pub struct CsvWriter<W: Write> {
    out: W,
    started: bool,
    scan_type: ScanType,
    services: Arc<ServiceNames>,
    banners: bool,
}

impl<W: Write> CsvWriter<W> {
    pub fn new(out: W, scan_type: ScanType, services: Arc<ServiceNames>, banners: bool) -> Self {
        CsvWriter { out, started: false, scan_type, services, banners }
    }

    fn header(&mut self) -> io::Result<()> {
        if !self.started {
            let banner = if self.banners { BANNER_HEADER } else { "" };
            writeln!(self.out, "{HEADER}{banner}")?;
            self.started = true;
        }
        Ok(())
    }
}

impl<W: Write> ResultWriter for CsvWriter<W> {
    fn write(&mut self, r: &ScanResult, service: Option<&Service>) -> io::Result<()> {
        self.header()?;
        // No field of `HEADER` can hold a comma or a quote (service names
        // with one are not taken), so none needs quoting; an echo has no
        // port nor service. What services say is quoted (RFC 4180).
        let proto = self.scan_type.protocol();
        let (port, name) = match self.scan_type.has_ports() {
            true => {
                let identified = service.and_then(|s| s.name.as_deref());
                (r.port.to_string(), identified.or_else(|| self.services.name(proto, r.port)).unwrap_or(""))
            }
            false => (String::new(), ""),
        };
        let banner = match (self.banners, service) {
            (false, _) => String::new(),
            (true, None) => ",".repeat(BANNER_HEADER.matches(',').count()),
            (true, Some(s)) => banner_columns(s),
        };
        writeln!(
            self.out,
            "{},{port},{proto},{},{},{},{},{},{}{banner}",
            r.ip,
            quoted(name),
            r.state.as_str(),
            r.reason.as_str(),
            r.ttl.map_or(String::new(), |t| t.to_string()),
            r.rtt_us.map_or(String::new(), |t| t.to_string()),
            rfc3339_us(r.time_us)
        )
    }

    /// Flagged hosts last, one row each: no port, state `flagged`.
    fn finish(&mut self, end: &RunEnd) -> io::Result<()> {
        self.header()?;
        for h in &end.flagged {
            writeln!(self.out, "{},,{},,flagged,{FLAG},,,{}", h.ip, self.scan_type.protocol(), rfc3339_us(end.end_us))?;
        }
        self.out.flush()
    }
}

/// `BANNER_HEADER`'s columns of a port, each with its leading comma.
fn banner_columns(s: &Service) -> String {
    let leaf = s.tls.as_ref().and_then(|t| t.chain.first());
    let http = s.http.as_ref();
    let text = |v: Option<&str>| v.map_or(String::new(), quoted);
    let columns = [
        text(s.product.as_deref()),
        s.status.as_str().to_string(),
        http.map_or(String::new(), |h| h.status.to_string()),
        text(http.and_then(|h| h.server.as_deref())),
        text(http.and_then(|h| h.title.as_deref())),
        text(http.and_then(|h| h.location.as_deref())),
        text(s.tls.as_ref().map(|t| t.version)),
        text(leaf.map(|c| c.subject.as_str())),
        text(leaf.map(|c| c.issuer.as_str())),
        text(leaf.map(|c| c.san.join(" ")).as_deref()),
        text(leaf.map(|c| c.not_before.as_str())),
        text(leaf.map(|c| c.not_after.as_str())),
        text(leaf.map(|c| c.sha256.as_str())),
        match s.banner.is_empty() {
            true => String::new(),
            false => quoted(&printable(&s.banner, s.banner.len())),
        },
    ];
    columns.iter().map(|c| format!(",{c}")).collect()
}

/// A field as RFC 4180 has it: quoted, with quotes doubled, where it holds
/// a comma, a quote or a line break.
fn quoted(field: &str) -> String {
    match field.contains([',', '"', '\n', '\r']) {
        true => format!("\"{}\"", field.replace('"', "\"\"")),
        false => field.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::{PortState, Reason};

    #[test]
    fn banner_columns_are_quoted_where_a_service_put_a_comma_or_a_quote() {
        use crate::banner::{Service, http::Head};
        let mut buf = Vec::new();
        let mut w = CsvWriter::new(&mut buf, ScanType::Syn, Arc::default(), true);
        let r = ScanResult {
            ip: "10.0.0.1".parse().unwrap(),
            port: 8800,
            state: PortState::Open,
            reason: Reason::SynAck,
            ttl: Some(64),
            rtt_us: None,
            time_us: 0,
        };
        let s = Service {
            name: Some("http".into()),
            product: Some("nginx".into()),
            banner: b"HTTP/1.1 200 OK\r\n".to_vec(),
            http: Some(Head {
                status: 200,
                server: Some("nginx".into()),
                location: None,
                title: Some("a, \"b\"".into()),
            }),
            ..Service::default()
        };
        w.write(&r, Some(&s)).unwrap();
        w.write(&ScanResult { port: 23, state: PortState::Closed, reason: Reason::Reset, ..r }, None).unwrap();
        w.finish(&RunEnd::default()).unwrap();
        let text = String::from_utf8(buf).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], format!("{HEADER}{BANNER_HEADER}"));
        assert_eq!(
            lines[1],
            r#"10.0.0.1,8800,tcp,http,open,syn-ack,64,,1970-01-01T00:00:00.000000Z,nginx,grabbed,200,nginx,"a, ""b""",,,,,,,,,HTTP/1.1 200 OK\r\n"#
        );
        assert_eq!(lines[2].matches(',').count(), lines[0].matches(',').count(), "{}", lines[2]);
    }

    #[test]
    fn writes_a_header_even_without_rows() {
        let mut buf = Vec::new();
        CsvWriter::new(&mut buf, ScanType::Syn, Arc::default(), false).finish(&RunEnd::default()).unwrap();
        assert_eq!(String::from_utf8(buf).unwrap(), format!("{HEADER}\n"));
        let mut buf = Vec::new();
        let mut w = CsvWriter::new(&mut buf, ScanType::Syn, Arc::new(ServiceNames::parse("ssh 22/tcp\n")), false);
        let r = ScanResult {
            ip: "10.0.0.1".parse().unwrap(),
            port: 22,
            state: PortState::Open,
            reason: Reason::SynAck,
            ttl: Some(64),
            rtt_us: None,
            time_us: 0,
        };
        w.write(&r, None).unwrap();
        w.finish(&RunEnd::default()).unwrap();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            format!("{HEADER}\n10.0.0.1,22,tcp,ssh,open,syn-ack,64,,1970-01-01T00:00:00.000000Z\n")
        );
    }
}
