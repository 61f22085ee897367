//! Results grouped per host, with nmap's rule for what a report lists:
//! every open port, and the ports of any other state unless that state
//! covers more than 25 ports of the host, which is summarised instead.

use super::{ResultWriter, RunEnd};
use crate::result::{PortState, ScanResult};
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::IpAddr;

const COLLAPSE_ABOVE: usize = 25;

#[derive(Debug, Default)]
pub struct HostTable {
    hosts: BTreeMap<IpAddr, Vec<ScanResult>>,
}

/// One host as a report shows it.
pub struct HostView<'a> {
    pub ip: IpAddr,
    /// Listed ports, in port order.
    pub shown: Vec<&'a ScanResult>,
    /// Summarised states: (state, count, the reason of the first such port).
    pub hidden: Vec<(PortState, usize, &'static str)>,
}

impl HostTable {
    pub fn add(&mut self, r: &ScanResult) {
        self.hosts.entry(r.ip).or_default().push(*r);
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Hosts in address order.
    pub fn views(&mut self) -> Vec<HostView<'_>> {
        self.hosts
            .iter_mut()
            .map(|(ip, ports)| {
                ports.sort_unstable_by_key(|r| r.port);
                // Counted once: a full port scan of a host is 65535 entries.
                let (closed, filtered, undecided) = ports.iter().fold((0, 0, 0), |(c, f, u), r| match r.state {
                    PortState::Closed => (c + 1, f, u),
                    PortState::Filtered => (c, f + 1, u),
                    PortState::Undecided => (c, f, u + 1),
                    PortState::Open => (c, f, u),
                });
                let count = |s: PortState| match s {
                    PortState::Closed => closed,
                    PortState::Filtered => filtered,
                    PortState::Undecided => undecided,
                    PortState::Open => 0,
                };
                let hidden_state = |s: PortState| s != PortState::Open && count(s) > COLLAPSE_ABOVE;
                let hidden = [PortState::Closed, PortState::Filtered, PortState::Undecided]
                    .into_iter()
                    .filter(|s| hidden_state(*s))
                    .map(|s| {
                        let reason = ports.iter().find(|r| r.state == s).map_or("", |r| r.reason.as_str());
                        (s, count(s), reason)
                    })
                    .collect();
                HostView { ip: *ip, shown: ports.iter().filter(|r| !hidden_state(r.state)).collect(), hidden }
            })
            .collect()
    }

    /// Hosts that answered at all (any reply but silence): nmap's "up".
    pub fn up(&self) -> usize {
        self.hosts.values().filter(|v| v.iter().any(|r| r.ttl.is_some())).count()
    }
}

/// A report written per host when the scan ends (a SYN scan in random order
/// finishes every host at once): text, grepable, XML. It says how it opens
/// and how it writes the hosts; `PerHostWriter` does the rest.
pub trait HostReport {
    /// Written before the first result, or at the end if there was none.
    fn preamble(&self, out: &mut dyn Write) -> io::Result<()>;
    /// The hosts and whatever closes the report.
    fn body(&self, out: &mut dyn Write, hosts: &mut HostTable, end: &RunEnd) -> io::Result<()>;
}

pub struct PerHostWriter<W: Write, R: HostReport> {
    out: W,
    report: R,
    hosts: HostTable,
    started: bool,
}

impl<W: Write, R: HostReport> PerHostWriter<W, R> {
    pub fn new(out: W, report: R) -> Self {
        PerHostWriter { out, report, hosts: HostTable::default(), started: false }
    }

    fn start(&mut self) -> io::Result<()> {
        if !self.started {
            self.started = true;
            self.report.preamble(&mut self.out)?;
        }
        Ok(())
    }
}

impl<W: Write, R: HostReport> ResultWriter for PerHostWriter<W, R> {
    fn write(&mut self, r: &ScanResult) -> io::Result<()> {
        self.start()?;
        self.hosts.add(r);
        Ok(())
    }

    fn finish(&mut self, end: &RunEnd) -> io::Result<()> {
        self.start()?;
        self.report.body(&mut self.out, &mut self.hosts, end)?;
        self.out.flush()
    }
}
