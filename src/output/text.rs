//! nmap-like text: one block per host, ports in order, with a state that
//! covers many ports summarised as "Not shown" (nmap collapses above 25).

use super::ResultWriter;
use crate::result::{PortState, Reason, ScanResult};
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::Ipv4Addr;

const COLLAPSE_ABOVE: usize = 25;

pub struct TextWriter<W: Write> {
    out: W,
    hosts: BTreeMap<Ipv4Addr, Vec<(u16, PortState, Reason)>>,
}

impl<W: Write> TextWriter<W> {
    pub fn new(out: W) -> Self {
        TextWriter { out, hosts: BTreeMap::new() }
    }
}

impl<W: Write> ResultWriter for TextWriter<W> {
    fn write(&mut self, r: &ScanResult) -> io::Result<()> {
        self.hosts.entry(r.ip).or_default().push((r.port, r.state, r.reason));
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        for (ip, ports) in &mut self.hosts {
            ports.sort_unstable_by_key(|p| p.0);
            writeln!(self.out, "prtip scan report for {ip}")?;
            let count = |s: PortState| ports.iter().filter(|p| p.1 == s).count();
            let hidden = |s: PortState| s != PortState::Open && count(s) > COLLAPSE_ABOVE;
            let shown: Vec<_> = ports.iter().filter(|p| !hidden(p.1)).collect();
            if !shown.is_empty() {
                writeln!(self.out, "PORT      STATE     REASON")?;
                for (port, state, reason) in shown {
                    writeln!(self.out, "{:<9} {:<9} {}", format!("{port}/tcp"), state.as_str(), reason.as_str())?;
                }
            }
            for state in [PortState::Closed, PortState::Filtered] {
                if hidden(state) {
                    let reason = ports.iter().find(|p| p.1 == state).map_or("", |p| p.2.as_str());
                    writeln!(self.out, "Not shown: {} {} tcp ports ({reason})", count(state), state.as_str())?;
                }
            }
            writeln!(self.out)?;
        }
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(ip: &str, port: u16, state: PortState, reason: Reason) -> ScanResult {
        ScanResult { ip: ip.parse().unwrap(), port, state, reason, ttl: Some(64), rtt_us: None, time_us: 0 }
    }

    #[test]
    fn groups_by_host_sorts_ports_and_collapses_large_states() {
        let mut buf = Vec::new();
        let mut w = TextWriter::new(&mut buf);
        for port in 100..130 {
            w.write(&result("10.0.0.2", port, PortState::Closed, Reason::Reset)).unwrap();
        }
        w.write(&result("10.0.0.2", 443, PortState::Open, Reason::SynAck)).unwrap();
        w.write(&result("10.0.0.2", 22, PortState::Open, Reason::SynAck)).unwrap();
        w.write(&result("10.0.0.2", 7, PortState::Filtered, Reason::NoResponse)).unwrap();
        w.write(&result("10.0.0.1", 80, PortState::Closed, Reason::Reset)).unwrap();
        w.finish().unwrap();
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
}
