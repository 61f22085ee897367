//! nmap's grepable format (`-oG`): one line per host.

use super::hosts::{HostReport, HostTable};
use super::service_name;
use super::{RunEnd, RunInfo, done_summary, preamble};
use crate::open_hosts::FLAG;
use crate::probe::ScanType;
use std::io::{self, Write};

pub struct Grepable {
    pub info: RunInfo,
}

impl HostReport for Grepable {
    fn preamble(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "{}", preamble(&self.info))?;
        match self.info.scan_type {
            ScanType::Icmp => Ok(()),
            ScanType::Syn | ScanType::Connect => {
                writeln!(out, "# Ports scanned: TCP({};{})", self.info.port_count, self.info.ports)
            }
            ScanType::Udp => writeln!(out, "# Ports scanned: UDP({};{})", self.info.port_count, self.info.ports),
        }
    }

    fn body(&self, out: &mut dyn Write, hosts: &mut HostTable, end: &RunEnd) -> io::Result<()> {
        let proto = self.info.scan_type.protocol();
        for host in hosts.views() {
            if !self.info.scan_type.has_ports() {
                // nmap's ping-scan line: the host's status alone.
                for (r, _) in &host.shown {
                    let status = if r.state.is_found() { "Up" } else { "Down" };
                    writeln!(out, "Host: {} ()\tStatus: {status}", host.ip)?;
                }
                continue;
            }
            // nmap's fields: port/state/protocol/owner/service/rpc info/version/.
            let ports: Vec<String> = host
                .shown
                .iter()
                .map(|(r, s)| {
                    let service = service_name(*s, self.info.services.name(proto, r.port)).unwrap_or_default();
                    // nmap's field separator cannot appear inside a field.
                    let version = s.and_then(|s| s.product.as_deref()).unwrap_or("").replace(['/', ','], " ");
                    format!("{}/{}/{proto}//{service}//{version}/", r.port, r.state.as_str())
                })
                .collect();
            let mut line = format!("Host: {} ()\tPorts: {}", host.ip, ports.join(", "));
            for (state, count, _) in &host.hidden {
                line.push_str(&format!("\tIgnored State: {} ({count})", state.as_str()));
            }
            if let Some(flag) = end.flag_of(host.ip) {
                line.push_str(&format!("\tFlag: {FLAG} ({})", flag.describe()));
            }
            writeln!(out, "{line}")?;
        }
        writeln!(out, "# {}", done_summary(&self.info, end, hosts.up()))
    }
}
