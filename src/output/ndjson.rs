//! One JSON object per line and per result, streamed as results arrive.

use super::time::rfc3339_us;
use super::{ResultWriter, RunEnd};
use crate::open_hosts::FLAG;
use crate::probe::ScanType;
use crate::result::ScanResult;
use crate::service_names::ServiceNames;
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
/// table has no name for has a null `service`.
pub fn line(r: &ScanResult, scan_type: ScanType, services: &ServiceNames) -> String {
    let proto = scan_type.protocol();
    let (port, service) = match scan_type.has_ports() {
        true => (
            format!(r#""port":{},"#, r.port),
            format!(r#""service":{},"#, services.name(proto, r.port).map_or("null".into(), |n| format!(r#""{n}""#))),
        ),
        false => (String::new(), String::new()),
    };
    format!(
        r#"{{"ip":"{}",{port}"proto":"{}",{service}"state":"{}","reason":"{}","ttl":{},"rtt_us":{},"time":"{}"}}"#,
        r.ip,
        proto,
        r.state.as_str(),
        r.reason.as_str(),
        opt(r.ttl),
        opt(r.rtt_us),
        rfc3339_us(r.time_us)
    )
}

impl<W: Write> ResultWriter for NdjsonWriter<W> {
    fn write(&mut self, r: &ScanResult) -> io::Result<()> {
        writeln!(self.out, "{}", line(r, self.scan_type, &self.services))
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
        w.write(&ScanResult {
            ip: "10.0.0.1".parse().unwrap(),
            port: 22,
            state: PortState::Open,
            reason: Reason::SynAck,
            ttl: Some(64),
            rtt_us: Some(153),
            time_us: 1_000_000,
        })
        .unwrap();
        w.write(&ScanResult {
            ip: "10.0.0.2".parse().unwrap(),
            port: 443,
            state: PortState::Filtered,
            reason: Reason::NoResponse,
            ttl: None,
            rtt_us: None,
            time_us: 0,
        })
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
