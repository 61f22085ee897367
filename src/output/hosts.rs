//! Results grouped per host, with nmap's rule for what a report lists:
//! every open port, and the ports of any other state unless that state
//! covers more than 25 ports of the host, which is summarised instead.

use crate::result::{PortState, ScanResult};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

const COLLAPSE_ABOVE: usize = 25;

#[derive(Debug, Default)]
pub struct HostTable {
    hosts: BTreeMap<Ipv4Addr, Vec<ScanResult>>,
}

/// One host as a report shows it.
pub struct HostView<'a> {
    pub ip: Ipv4Addr,
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
                let count = |s: PortState| ports.iter().filter(|r| r.state == s).count();
                let hidden_state = |s: PortState| s != PortState::Open && count(s) > COLLAPSE_ABOVE;
                let hidden = [PortState::Closed, PortState::Filtered]
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
