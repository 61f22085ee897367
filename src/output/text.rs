//! nmap-like text: one block per host, written when the scan ends (a SYN
//! scan in random order finishes every host at once).

use super::hosts::HostTable;
use super::{ResultWriter, RunEnd, RunInfo, done_summary, preamble};
use crate::result::ScanResult;
use std::io::{self, Write};

pub struct TextWriter<W: Write> {
    out: W,
    hosts: HostTable,
    /// Files carry a preamble and a footer like nmap's; standard output does not.
    header: Option<RunInfo>,
    started: bool,
}

impl<W: Write> TextWriter<W> {
    pub fn new(out: W, header: Option<RunInfo>) -> Self {
        TextWriter { out, hosts: HostTable::default(), header, started: false }
    }

    fn preamble(&mut self) -> io::Result<()> {
        if let (Some(info), false) = (&self.header, self.started) {
            writeln!(self.out, "{}", preamble(info))?;
        }
        self.started = true;
        Ok(())
    }
}

impl<W: Write> ResultWriter for TextWriter<W> {
    fn write(&mut self, r: &ScanResult) -> io::Result<()> {
        self.preamble()?;
        self.hosts.add(r);
        Ok(())
    }

    fn finish(&mut self, end: &RunEnd) -> io::Result<()> {
        self.preamble()?;
        for host in self.hosts.views() {
            writeln!(self.out, "prtip scan report for {}", host.ip)?;
            if !host.shown.is_empty() {
                writeln!(self.out, "PORT      STATE     REASON")?;
                for r in &host.shown {
                    writeln!(
                        self.out,
                        "{:<9} {:<9} {}",
                        format!("{}/tcp", r.port),
                        r.state.as_str(),
                        r.reason.as_str()
                    )?;
                }
            }
            for (state, count, reason) in &host.hidden {
                writeln!(self.out, "Not shown: {count} {} tcp ports ({reason})", state.as_str())?;
            }
            writeln!(self.out)?;
        }
        if let Some(info) = &self.header {
            writeln!(self.out, "# {}", done_summary(info, end, self.hosts.up()))?;
        }
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::{PortState, Reason};

    fn result(ip: &str, port: u16, state: PortState, reason: Reason) -> ScanResult {
        ScanResult { ip: ip.parse().unwrap(), port, state, reason, ttl: Some(64), rtt_us: None, time_us: 0 }
    }

    #[test]
    fn groups_by_host_sorts_ports_and_collapses_large_states() {
        let mut buf = Vec::new();
        let mut w = TextWriter::new(&mut buf, None);
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
             PORT      STATE     REASON\n\
             80/tcp    closed    reset\n\
             \n\
             prtip scan report for 10.0.0.2\n\
             PORT      STATE     REASON\n\
             7/tcp     filtered  no-response\n\
             22/tcp    open      syn-ack\n\
             443/tcp   open      syn-ack\n\
             Not shown: 30 closed tcp ports (reset)\n\
             \n"
        );
    }

    #[test]
    fn files_carry_a_preamble_and_footer() {
        let mut buf = Vec::new();
        let info =
            RunInfo { command_line: "prtip -p 22 10.0.0.1".into(), start_us: 0, hosts_total: 1, ..Default::default() };
        let mut w = TextWriter::new(&mut buf, Some(info));
        w.write(&result("10.0.0.1", 22, PortState::Open, Reason::SynAck)).unwrap();
        w.finish(&RunEnd { end_us: 1_500_000, interrupted: true }).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(
            text.starts_with("# prtip 0.1.0 scan initiated 1970-01-01T00:00:00.000000Z as: prtip -p 22 10.0.0.1\n")
        );
        assert!(text.ends_with(
            "# prtip done at 1970-01-01T00:00:01.500000Z (interrupted) -- 1 IP addresses (1 hosts up) scanned in 1.50 seconds\n"
        ));
    }
}
