//! nmap's grepable format (`-oG`): one line per host.

use super::hosts::HostTable;
use super::{ResultWriter, RunEnd, RunInfo, done_summary, preamble};
use crate::result::ScanResult;
use std::io::{self, Write};

pub struct GrepableWriter<W: Write> {
    out: W,
    hosts: HostTable,
    info: RunInfo,
    started: bool,
}

impl<W: Write> GrepableWriter<W> {
    pub fn new(out: W, info: RunInfo) -> Self {
        GrepableWriter { out, hosts: HostTable::default(), info, started: false }
    }

    fn preamble(&mut self) -> io::Result<()> {
        if !self.started {
            writeln!(self.out, "{}", preamble(&self.info))?;
            writeln!(self.out, "# Ports scanned: TCP({};{})", self.info.port_count, self.info.ports)?;
            self.started = true;
        }
        Ok(())
    }
}

impl<W: Write> ResultWriter for GrepableWriter<W> {
    fn write(&mut self, r: &ScanResult) -> io::Result<()> {
        self.preamble()?;
        self.hosts.add(r);
        Ok(())
    }

    fn finish(&mut self, end: &RunEnd) -> io::Result<()> {
        self.preamble()?;
        for host in self.hosts.views() {
            let ports: Vec<String> =
                host.shown.iter().map(|r| format!("{}/{}/tcp//////", r.port, r.state.as_str())).collect();
            let mut line = format!("Host: {} ()\tPorts: {}", host.ip, ports.join(", "));
            for (state, count, _) in &host.hidden {
                line.push_str(&format!("\tIgnored State: {} ({count})", state.as_str()));
            }
            writeln!(self.out, "{line}")?;
        }
        writeln!(self.out, "# {}", done_summary(&self.info, end, self.hosts.up()))?;
        self.out.flush()
    }
}
