//! One JSON object per line and per result, streamed as results arrive.

use super::time::rfc3339_us;
use super::{ResultWriter, RunEnd};
use crate::banner::Service;
use crate::banner::identify::printable;
use crate::open_hosts::FLAG;
use crate::probe::ScanType;
use crate::result::ScanResult;
use crate::service_names::ServiceNames;
use serde_json::json;
use std::io::{self, Write};
use std::sync::Arc;

pub struct NdjsonWriter<W: Write> {
    out: W,
    scan_type: ScanType,
    services: Arc<ServiceNames>,
}

impl<W: Write> NdjsonWriter<W> {
    pub fn new(out: W, scan_type: ScanType, services: Arc<ServiceNames>) -> Self {
        NdjsonWriter { out, scan_type, services }
    }
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "null".to_string(), |v| v.to_string())
}

/// A result's object; an echo's has no port, nor a service. A port the
/// table has no name for has a null `service`, unless banners identified
/// it; where banners were asked, the port's object also has what they saw.
pub fn line(r: &ScanResult, scan_type: ScanType, services: &ServiceNames, service: Option<&Service>) -> String {
    let proto = scan_type.protocol();
    let (port, name) = match scan_type.has_ports() {
        true => {
            let name = service.and_then(|s| s.name.as_deref()).or_else(|| services.name(proto, r.port));
            (format!(r#""port":{},"#, r.port), format!(r#""service":{},"#, json!(name)))
        }
        false => (String::new(), String::new()),
    };
    let grabbed = service.map_or(String::new(), banner_fields);
    format!(
        r#"{{"ip":"{}",{port}"proto":"{}",{name}"state":"{}","reason":"{}","ttl":{},"rtt_us":{},"time":"{}"{grabbed}}}"#,
        r.ip,
        proto,
        r.state.as_str(),
        r.reason.as_str(),
        opt(r.ttl),
        opt(r.rtt_us),
        rfc3339_us(r.time_us)
    )
}

/// `product`, `banner` (escaped as `identify::printable` does), `tls` (the
/// leaf certificate) and `http`, each null where there is none, and how the
/// conversation went (`grab`).
fn banner_fields(s: &Service) -> String {
    let banner = (!s.banner.is_empty()).then(|| printable(&s.banner, s.banner.len()));
    let tls = s.tls.as_ref().map(|t| {
        let leaf = t.chain.first();
        json!({
            "version": t.version,
            "subject": leaf.map(|c| &c.subject),
            "issuer": leaf.map(|c| &c.issuer),
            "san": leaf.map(|c| &c.san),
            "not_before": leaf.map(|c| &c.not_before),
            "not_after": leaf.map(|c| &c.not_after),
            "sha256": leaf.map(|c| &c.sha256),
            "chain": t.chain.len(),
        })
    });
    let http = s
        .http
        .as_ref()
        .map(|h| json!({"status": h.status, "server": h.server, "title": h.title, "location": h.location}));
    format!(
        r#","product":{},"banner":{},"tls":{},"http":{},"grab":"{}""#,
        json!(s.product),
        json!(banner),
        json!(tls),
        json!(http),
        s.status.as_str()
    )
}

impl<W: Write> ResultWriter for NdjsonWriter<W> {
    fn write(&mut self, r: &ScanResult, service: Option<&Service>) -> io::Result<()> {
        writeln!(self.out, "{}", line(r, self.scan_type, &self.services, service))
    }

    /// Flagged hosts last, one object each, told apart from results by `flag`.
    fn finish(&mut self, end: &RunEnd) -> io::Result<()> {
        for h in &end.flagged {
            writeln!(
                self.out,
                r#"{{"ip":"{}","flag":"{FLAG}","open":{},"probed":{},"withheld":{}}}"#,
                h.ip, h.open, h.probed, h.withheld
            )?;
        }
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::{PortState, Reason};

    #[test]
    fn writes_one_object_per_line() {
        let mut buf = Vec::new();
        let services = Arc::new(ServiceNames::parse("ssh 22/tcp\n"));
        let mut w = NdjsonWriter::new(&mut buf, ScanType::Syn, services);
        w.write(
            &ScanResult {
                ip: "10.0.0.1".parse().unwrap(),
                port: 22,
                state: PortState::Open,
                reason: Reason::SynAck,
                ttl: Some(64),
                rtt_us: Some(153),
                time_us: 1_000_000,
            },
            None,
        )
        .unwrap();
        w.write(
            &ScanResult {
                ip: "10.0.0.2".parse().unwrap(),
                port: 443,
                state: PortState::Filtered,
                reason: Reason::NoResponse,
                ttl: None,
                rtt_us: None,
                time_us: 0,
            },
            None,
        )
        .unwrap();
        w.finish(&RunEnd::default()).unwrap();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            concat!(
                r#"{"ip":"10.0.0.1","port":22,"proto":"tcp","service":"ssh","state":"open","reason":"syn-ack","ttl":64,"rtt_us":153,"time":"1970-01-01T00:00:01.000000Z"}"#,
                "\n",
                r#"{"ip":"10.0.0.2","port":443,"proto":"tcp","service":null,"state":"filtered","reason":"no-response","ttl":null,"rtt_us":null,"time":"1970-01-01T00:00:00.000000Z"}"#,
                "\n"
            )
        );
    }
}
