//! nmap-like text: one block per host, written when the scan ends (a SYN
//! scan in random order finishes every host at once).

use super::hosts::{HostReport, HostTable};
use super::{RunEnd, RunInfo, done_summary, preamble};
use crate::open_hosts::FLAG;
use crate::probe::ScanType;
use crate::service_names::ServiceNames;
use std::io::{self, Write};
use std::sync::Arc;

pub struct Text {
    pub scan_type: ScanType,
    pub services: Arc<ServiceNames>,
    /// Files carry a preamble and a footer like nmap's; standard output does not.
    pub header: Option<RunInfo>,
}

impl HostReport for Text {
    fn preamble(&self, out: &mut dyn Write) -> io::Result<()> {
        match &self.header {
            Some(info) => writeln!(out, "{}", preamble(info)),
            None => Ok(()),
        }
    }

    fn body(&self, out: &mut dyn Write, hosts: &mut HostTable, end: &RunEnd) -> io::Result<()> {
        for host in hosts.views() {
            writeln!(out, "prtip scan report for {}", host.ip)?;
            let proto = self.scan_type.protocol();
            if !self.scan_type.has_ports() {
                // An echo scan has one result per host: the host's state.
                for r in &host.shown {
                    let rtt = r.rtt_us.map_or(String::new(), |us| format!(", {:.6}s latency", us as f64 / 1e6));
                    writeln!(out, "Host is {} ({}{rtt}).", r.state.as_str(), r.reason.as_str())?;
                }
            } else if !host.shown.is_empty() {
                // Room for open|filtered where a UDP scan has it.
                let width = if self.scan_type == ScanType::Udp { 13 } else { 9 };
                let service = |port| self.services.name_or_unknown(proto, port);
                let names = host.shown.iter().map(|r| service(r.port).len());
                let named = names.max().unwrap_or(0).max("SERVICE".len());
                writeln!(out, "{:<9} {:<width$} {:<named$} REASON", "PORT", "STATE", "SERVICE")?;
                for r in &host.shown {
                    let port = format!("{}/{proto}", r.port);
                    let (state, reason) = (r.state.as_str(), r.reason.as_str());
                    writeln!(out, "{port:<9} {state:<width$} {:<named$} {reason}", service(r.port))?;
                }
            }
            for (state, count, reason) in &host.hidden {
                writeln!(out, "Not shown: {count} {} {proto} ports ({reason})", state.as_str())?;
            }
            if let Some(flag) = end.flag_of(host.ip) {
                writeln!(
                    out,
                    "Warning: {FLAG}: {} (a tarpit, SYN proxy or middlebox that accepts every connection?)",
                    flag.describe()
                )?;
            }
            writeln!(out)?;
        }
        if let Some(info) = &self.header {
            writeln!(out, "# {}", done_summary(info, end, hosts.up()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::ResultWriter;
    use crate::output::hosts::PerHostWriter;
    use crate::result::{PortState, Reason, ScanResult};

    fn result(ip: &str, port: u16, state: PortState, reason: Reason) -> ScanResult {
        ScanResult { ip: ip.parse().unwrap(), port, state, reason, ttl: Some(64), rtt_us: None, time_us: 0 }
    }

    #[test]
    fn groups_by_host_sorts_ports_and_collapses_large_states() {
        let mut buf = Vec::new();
        let services = Arc::new(ServiceNames::parse("ssh 22/tcp\nhttp 80/tcp\nhttps 443/tcp\n"));
        let mut w = PerHostWriter::new(&mut buf, Text { scan_type: ScanType::Syn, services, header: None });
        for port in 100..130 {
            w.write(&result("10.0.0.2", port, PortState::Closed, Reason::Reset)).unwrap();
        }
        w.write(&result("10.0.0.2", 443, PortState::Open, Reason::SynAck)).unwrap();
        w.write(&result("10.0.0.2", 22, PortState::Open, Reason::SynAck)).unwrap();
        w.write(&result("10.0.0.2", 7, PortState::Filtered, Reason::NoResponse)).unwrap();
        w.write(&result("10.0.0.1", 80, PortState::Closed, Reason::Reset)).unwrap();
        w.finish(&RunEnd::default()).unwrap();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "prtip scan report for 10.0.0.1\n\
             PORT      STATE     SERVICE REASON\n\
             80/tcp    closed    http    reset\n\
             \n\
             prtip scan report for 10.0.0.2\n\
             PORT      STATE     SERVICE REASON\n\
             7/tcp     filtered  unknown no-response\n\
             22/tcp    open      ssh     syn-ack\n\
             443/tcp   open      https   syn-ack\n\
             Not shown: 30 closed tcp ports (reset)\n\
             \n"
        );
    }

    #[test]
    fn files_carry_a_preamble_and_footer() {
        let mut buf = Vec::new();
        let info =
            RunInfo { command_line: "prtip -p 22 10.0.0.1".into(), start_us: 0, hosts_total: 1, ..Default::default() };
        let mut w = PerHostWriter::new(
            &mut buf,
            Text { scan_type: ScanType::Syn, services: Arc::default(), header: Some(info) },
        );
        w.write(&result("10.0.0.1", 22, PortState::Open, Reason::SynAck)).unwrap();
        w.finish(&RunEnd { end_us: 1_500_000, interrupted: true, flagged: Vec::new() }).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(
            text.starts_with("# prtip 0.1.0 scan initiated 1970-01-01T00:00:00.000000Z as: prtip -p 22 10.0.0.1\n")
        );
        assert!(text.ends_with(
            "# prtip done at 1970-01-01T00:00:01.500000Z (interrupted) -- 1 IP addresses (1 hosts up) scanned in 1.50 seconds\n"
        ));
    }
}
