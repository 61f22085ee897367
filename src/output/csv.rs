//! CSV with a header row, streamed.

use super::time::rfc3339_us;
use super::{ResultWriter, RunEnd};
use crate::open_hosts::FLAG;
use crate::probe::ScanType;
use crate::result::ScanResult;
use crate::service_names::ServiceNames;
use std::io::{self, Write};
use std::sync::Arc;

pub const HEADER: &str = "ip,port,proto,service,state,reason,ttl,rtt_us,time";

pub struct CsvWriter<W: Write> {
    out: W,
    started: bool,
    scan_type: ScanType,
    services: Arc<ServiceNames>,
}

impl<W: Write> CsvWriter<W> {
    pub fn new(out: W, scan_type: ScanType, services: Arc<ServiceNames>) -> Self {
        CsvWriter { out, started: false, scan_type, services }
    }

    fn header(&mut self) -> io::Result<()> {
        if !self.started {
            writeln!(self.out, "{HEADER}")?;
            self.started = true;
        }
        Ok(())
    }
}

impl<W: Write> ResultWriter for CsvWriter<W> {
    fn write(&mut self, r: &ScanResult) -> io::Result<()> {
        self.header()?;
        // No field can hold a comma or a quote (service names with one are
        // not taken), so none needs quoting; an echo has no port nor service.
        let proto = self.scan_type.protocol();
        let (port, service) = match self.scan_type.has_ports() {
            true => (r.port.to_string(), self.services.name(proto, r.port).unwrap_or("")),
            false => (String::new(), ""),
        };
        writeln!(
            self.out,
            "{},{port},{proto},{service},{},{},{},{},{}",
            r.ip,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::{PortState, Reason};

    #[test]
    fn writes_a_header_even_without_rows() {
        let mut buf = Vec::new();
        CsvWriter::new(&mut buf, ScanType::Syn, Arc::default()).finish(&RunEnd::default()).unwrap();
        assert_eq!(String::from_utf8(buf).unwrap(), format!("{HEADER}\n"));
        let mut buf = Vec::new();
        let mut w = CsvWriter::new(&mut buf, ScanType::Syn, Arc::new(ServiceNames::parse("ssh 22/tcp\n")));
        let r = ScanResult {
            ip: "10.0.0.1".parse().unwrap(),
            port: 22,
            state: PortState::Open,
            reason: Reason::SynAck,
            ttl: Some(64),
            rtt_us: None,
            time_us: 0,
        };
        w.write(&r).unwrap();
        w.finish(&RunEnd::default()).unwrap();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            format!("{HEADER}\n10.0.0.1,22,tcp,ssh,open,syn-ack,64,,1970-01-01T00:00:00.000000Z\n")
        );
    }
}
