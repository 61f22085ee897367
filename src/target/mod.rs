//! What to scan: target expressions, ports, and the probe space they span.

pub mod exclude;
pub mod ports;
pub mod ranges;
pub mod space;
pub mod spec;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum TargetError {
    #[error("invalid target '{target}': {why}")]
    Invalid { target: String, why: String },
    #[error("IPv6 target '{0}' is not supported yet: prtip scans IPv4 only")]
    Ipv6Unsupported(String),
    #[error("cannot resolve '{host}': {why}")]
    Resolve { host: String, why: String },
    #[error("invalid port specification '{spec}': {why}")]
    Ports { spec: String, why: String },
    #[error("cannot read {what} '{path}': {why}")]
    File { what: &'static str, path: String, why: String },
    #[error("no targets given: name hosts, networks or ranges, or a file with -iL")]
    NoTargets,
    #[error("every target is excluded: nothing left to scan")]
    AllExcluded,
}
