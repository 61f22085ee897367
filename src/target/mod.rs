//! What to scan: target expressions, ports, and the probe space they span.

pub mod exclude;
pub mod hosts;
pub mod ports;
pub mod ranges;
pub mod space;
pub mod spec;
pub mod top_ports;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum TargetError {
    #[error("invalid target '{target}': {why}")]
    Invalid { target: String, why: String },
    #[error("IPv4 and IPv6 targets cannot be mixed in one scan: run one scan per address family")]
    MixedFamilies,
    #[error(
        "the scan would send {probes} probes, retry passes included; prtip sends at most 2^63 in one scan (at 10 million probes/s that alone is 29,000 years): narrow the prefix or the ports"
    )]
    TooLarge { probes: String },
    #[error("cannot resolve '{host}': {why}")]
    Resolve { host: String, why: String },
    #[error("invalid port specification '{spec}': {why}")]
    Ports { spec: String, why: String },
    #[error("cannot read {what} '{path}': {why}")]
    File { what: &'static str, path: String, why: String },
    /// A bad line of a list file; its text is not repeated (a file given by mistake may hold anything).
    #[error("{what} '{path}', line {line}: {why}")]
    InFile { what: &'static str, path: String, line: usize, why: String },
    #[error("no targets given: name hosts, networks or ranges, or a file with -iL")]
    NoTargets,
    #[error("every target is excluded: nothing left to scan")]
    AllExcluded,
    #[error("-iL - and --exclude-file - cannot both read standard input: give one of them a file")]
    BothStandardInput,
}
