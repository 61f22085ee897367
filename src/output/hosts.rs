//! Results grouped per host, with nmap's rule for what a report lists:
//! every open port, and the ports of any other state unless that state
//! covers more than 25 ports of the host, which is summarised instead.

use super::{ResultWriter, RunEnd};
use crate::banner::Service;
use crate::result::{PortState, ScanResult};
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::IpAddr;

const COLLAPSE_ABOVE: usize = 25;

/// The states a report may summarise, in the order it lists them.
const SUMMARISED: [PortState; 4] =
    [PortState::Closed, PortState::Filtered, PortState::OpenFiltered, PortState::Undecided];

/// What a report keeps of each host until the scan ends: every open port,
/// and of each other state its count, its lowest port, and its ports only
/// while there are few enough to be listed. So a host that answers RST on
/// all 65,535 ports costs a few results, not 65,535.
#[derive(Debug, Default)]
pub struct HostTable {
    hosts: BTreeMap<IpAddr, Host>,
}

#[derive(Debug, Default)]
struct Host {
    open: Vec<(ScanResult, Option<Box<Service>>)>,
    others: [StateGroup; 4],
    /// Whether it sent any reply (silence has no TTL; an ICMP unreachable
    /// for an echo came from a router, not the host).
    answered: bool,
}

#[derive(Debug, Default)]
struct StateGroup {
    count: usize,
    /// Its ports while `count` is at most `COLLAPSE_ABOVE`.
    listed: Vec<ScanResult>,
    /// The one with the lowest port, whose reason a summary line names.
    lowest: Option<ScanResult>,
}

/// One host as a report shows it.
pub struct HostView<'a> {
    pub ip: IpAddr,
    /// Listed ports, in port order, with what answers there where banners were asked.
    pub shown: Vec<(&'a ScanResult, Option<&'a Service>)>,
    /// Summarised states: (state, count, the reason of its lowest port).
    pub hidden: Vec<(PortState, usize, &'static str)>,
}

impl HostTable {
    pub fn add(&mut self, r: &ScanResult, service: Option<&Service>) {
        let host = self.hosts.entry(r.ip).or_default();
        host.answered |= r.ttl.is_some() && r.state != PortState::Unreachable;
        let Some(i) = SUMMARISED.iter().position(|&s| s == r.state) else {
            host.open.push((*r, service.map(|s| Box::new(s.clone()))));
            return;
        };
        let group = &mut host.others[i];
        group.count += 1;
        if group.lowest.is_none_or(|l| r.port < l.port) {
            group.lowest = Some(*r);
        }
        if group.count <= COLLAPSE_ABOVE {
            group.listed.push(*r);
        } else {
            group.listed = Vec::new();
        }
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Hosts in address order.
    pub fn views(&self) -> Vec<HostView<'_>> {
        self.hosts
            .iter()
            .map(|(ip, host)| {
                let mut shown: Vec<(&ScanResult, Option<&Service>)> =
                    host.open.iter().map(|(r, s)| (r, s.as_deref())).collect();
                let mut hidden = Vec::new();
                for (state, group) in SUMMARISED.iter().zip(&host.others) {
                    if group.count > COLLAPSE_ABOVE {
                        let reason = group.lowest.map_or("", |r| r.reason.as_str());
                        hidden.push((*state, group.count, reason));
                    } else {
                        shown.extend(group.listed.iter().map(|r| (r, None)));
                    }
                }
                shown.sort_unstable_by_key(|(r, _)| r.port);
                HostView { ip: *ip, shown, hidden }
            })
            .collect()
    }

    /// Hosts that answered at all (any reply but silence): nmap's "up".
    pub fn up(&self) -> usize {
        self.hosts.values().filter(|h| h.answered).count()
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
    fn write(&mut self, r: &ScanResult, service: Option<&Service>) -> io::Result<()> {
        self.start()?;
        self.hosts.add(r, service);
        Ok(())
    }

    fn finish(&mut self, end: &RunEnd) -> io::Result<()> {
        self.start()?;
        self.report.body(&mut self.out, &mut self.hosts, end)?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::Reason;

    fn result(port: u16, state: PortState, reason: Reason) -> ScanResult {
        let ttl = (reason != Reason::NoResponse).then_some(64);
        ScanResult { ip: "10.0.0.1".parse().unwrap(), port, state, reason, ttl, rtt_us: None, time_us: 0 }
    }

    #[test]
    fn a_host_keeps_its_open_ports_and_only_what_summarises_the_rest() {
        let mut table = HostTable::default();
        // Ports arrive in a random order; the summary names the lowest port's reason.
        for port in (1..=5000u16).rev() {
            let r = match port % 1000 {
                0 => result(port, PortState::Open, Reason::SynAck),
                1..=499 => result(port, PortState::Closed, Reason::Reset),
                500 => result(port, PortState::Filtered, Reason::Unreachable { code: 13 }),
                _ => result(port, PortState::Filtered, Reason::NoResponse),
            };
            table.add(&r, None);
        }
        table.add(&result(9000, PortState::Undecided, Reason::FramesDropped), None);
        let host = &table.hosts[&"10.0.0.1".parse().unwrap()];
        assert!(host.others.iter().take(2).all(|g| g.listed.is_empty()), "summarised states keep no list");
        let views = table.views();
        let ports: Vec<u16> = views[0].shown.iter().map(|(r, _)| r.port).collect();
        assert_eq!(ports, [1000, 2000, 3000, 4000, 5000, 9000]);
        assert_eq!(
            views[0].hidden,
            [(PortState::Closed, 2495, "reset"), (PortState::Filtered, 2500, "admin-prohibited")]
        );
        assert_eq!(table.up(), 1);
    }
}
