//! nmap's grepable format (`-oG`): one line per host.

use super::hosts::{HostReport, HostTable};
use super::{RunEnd, RunInfo, done_summary, preamble};
use crate::open_hosts::FLAG;
use std::io::{self, Write};

pub struct Grepable {
    pub info: RunInfo,
}

impl HostReport for Grepable {
    fn preamble(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "{}", preamble(&self.info))?;
        writeln!(out, "# Ports scanned: TCP({};{})", self.info.port_count, self.info.ports)
    }

    fn body(&self, out: &mut dyn Write, hosts: &mut HostTable, end: &RunEnd) -> io::Result<()> {
        for host in hosts.views() {
            let ports: Vec<String> =
                host.shown.iter().map(|r| format!("{}/{}/tcp//////", r.port, r.state.as_str())).collect();
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
