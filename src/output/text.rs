//! nmap-like text: one block per host, written when the scan ends (a SYN
//! scan in random order finishes every host at once).

use super::hosts::{HostReport, HostTable};
use super::{RunEnd, RunInfo, done_summary, preamble};
use super::{scripts, service_name};
use crate::banner::Service;
use crate::open_hosts::FLAG;
use crate::probe::ScanType;
use crate::result::ScanResult;
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
                for (r, _) in &host.shown {
                    let rtt = r.rtt_us.map_or(String::new(), |us| format!(", {:.6}s latency", us as f64 / 1e6));
                    writeln!(out, "Host is {} ({}{rtt}).", r.state.as_str(), r.reason.as_str())?;
                }
            } else if !host.shown.is_empty() {
                // Room for open|filtered where a UDP scan has it.
                let width = if self.scan_type == ScanType::Udp { 13 } else { 9 };
                let service = |(r, s): &(&ScanResult, Option<&Service>)| -> String {
                    service_name(*s, self.services.name(proto, r.port)).map_or("unknown".into(), |n| n.into_owned())
                };
                let named = host.shown.iter().map(|p| service(p).len()).max().unwrap_or(0).max("SERVICE".len());
                let versions = host.shown.iter().any(|(_, s)| s.is_some_and(|s| s.product.is_some()));
                let reasoned = if versions { "REASON     VERSION" } else { "REASON" };
                writeln!(out, "{:<9} {:<width$} {:<named$} {reasoned}", "PORT", "STATE", "SERVICE")?;
                for p in &host.shown {
                    let (r, s) = p;
                    let port = format!("{}/{proto}", r.port);
                    let (state, reason) = (r.state.as_str(), r.reason.as_str());
                    let line = match s.and_then(|s| s.product.as_deref()) {
                        Some(product) => {
                            format!("{port:<9} {state:<width$} {:<named$} {reason:<10} {product}", service(p))
                        }
                        None => format!("{port:<9} {state:<width$} {:<named$} {reason}", service(p)),
                    };
                    writeln!(out, "{}", line.trim_end())?;
                    let scripts = s.map(scripts).unwrap_or_default();
                    for (i, (id, output)) in scripts.iter().enumerate() {
                        let bar = if i + 1 == scripts.len() { "|_" } else { "| " };
                        writeln!(out, "{bar}{id}: {output}")?;
                    }
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
            w.write(&result("10.0.0.2", port, PortState::Closed, Reason::Reset), None).unwrap();
        }
        w.write(&result("10.0.0.2", 443, PortState::Open, Reason::SynAck), None).unwrap();
        w.write(&result("10.0.0.2", 22, PortState::Open, Reason::SynAck), None).unwrap();
        w.write(&result("10.0.0.2", 7, PortState::Filtered, Reason::NoResponse), None).unwrap();
        w.write(&result("10.0.0.1", 80, PortState::Closed, Reason::Reset), None).unwrap();
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
    fn what_banners_saw_names_the_service_and_follows_the_port() {
        use crate::banner::{Service, Tls, cert::Certificate, http::Head};
        let mut buf = Vec::new();
        let services = Arc::new(ServiceNames::parse("ssh 22/tcp\nhttps 443/tcp\n"));
        let mut w = PerHostWriter::new(&mut buf, Text { scan_type: ScanType::Syn, services, header: None });
        let https = Service {
            name: Some("http".into()),
            product: Some("nginx/1.22.1".into()),
            tls: Some(Tls {
                version: "TLSv1.3",
                chain: vec![Certificate {
                    subject: "CN=a".into(),
                    issuer: "CN=b".into(),
                    san: vec!["a".into()],
                    not_before: "2026-01-01T00:00:00Z".into(),
                    not_after: "2027-01-01T00:00:00Z".into(),
                    sha256: "ff".into(),
                }],
            }),
            http: Some(Head {
                status: 200,
                server: Some("nginx/1.22.1".into()),
                location: None,
                title: Some("T".into()),
            }),
            ..Service::default()
        };
        let ssh = Service { name: Some("ssh".into()), banner: b"SSH-2.0-X\r\n".to_vec(), ..Service::default() };
        w.write(&result("10.0.0.2", 443, PortState::Open, Reason::SynAck), Some(&https)).unwrap();
        w.write(&result("10.0.0.2", 2222, PortState::Open, Reason::SynAck), Some(&ssh)).unwrap();
        w.finish(&RunEnd::default()).unwrap();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "prtip scan report for 10.0.0.2\n\
             PORT      STATE     SERVICE  REASON     VERSION\n\
             443/tcp   open      ssl/http syn-ack    nginx/1.22.1\n\
             | http-title: T\n\
             | http-server-header: nginx/1.22.1\n\
             |_ssl-cert: Subject: CN=a; Subject Alternative Name: a; Issuer: CN=b; Not valid before: 2026-01-01T00:00:00Z; Not valid after: 2027-01-01T00:00:00Z; SHA-256: ff\n\
             2222/tcp  open      ssh      syn-ack\n\
             |_banner: SSH-2.0-X\\r\\n\n\
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
        w.write(&result("10.0.0.1", 22, PortState::Open, Reason::SynAck), None).unwrap();
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
