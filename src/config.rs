//! ScanConfig: everything a scan needs, checked once before anything is sent.

use crate::net::PathOverrides;
use crate::target::TargetError;
use crate::target::space::TargetSpace;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(
        "scan type '{0}' is not supported: prtip does syn (-sS), connect (-sT), icmp (-sn, -PE) and udp (-sU) scans"
    )]
    ScanType(String),
    #[error(
        "{0} does not apply to a connect scan (-sT): this host's TCP stack picks the interface, addresses and ports of its connections"
    )]
    NotForConnect(&'static str),
    #[error("--banners asks open TCP ports what answers there: it needs a SYN (-sS) or connect (-sT) scan")]
    BannersNeedTcp,
    #[error("--banner-timeout '{0}': give seconds from 0.1 to 60")]
    BannerTimeout(String),
    #[error("an ICMP echo scan (-s icmp) probes hosts, not ports: drop -p and --top-ports")]
    PortsWithoutPorts,
    #[error("{0}")]
    TopPorts(String),
    #[error("{0}")]
    UdpPayload(String),
    #[error("--udp-payload is for UDP scans: add -s udp (-sU)")]
    UdpPayloadWithoutUdp,
    #[error("invalid --source-ip '{given}': {why}")]
    SourceIp { given: String, why: String },
    #[error("invalid source port '{0}': give a port or a range such as 61000-61063 (1-65535)")]
    SourcePort(String),
    #[error("invalid MAC address '{0}': expected six hex bytes such as 02:00:5e:10:00:01")]
    Mac(String),
    #[error(
        "--gateway-mac {0} is not one host's address (broadcast, multicast or all zeros): give the next hop's own MAC"
    )]
    NotUnicastMac(String),
    #[error(
        "--wait 0 leaves no time for replies, so --retries {0} would resend at once: drop --retries or give --wait a time"
    )]
    RetriesWithoutWait(u32),
    #[error("{first} and {second} both name {path}: give each its own file")]
    SameFile { first: String, second: String, path: String },
    #[error("--wait must be between 0 and 3600 seconds, not '{0}'")]
    Wait(String),
    #[error("--rate must be at most {max} packets per second, not {got}")]
    Rate { got: u64, max: u64 },
    #[error("--retries must be at most {max}, not {got}")]
    Retries { got: u32, max: u32 },
    #[error("--seed must be a number, not '{0}'")]
    Seed(String),
    #[error("invalid shard '{0}': give I/N with 1 <= I <= N, such as 1/4")]
    Shard(String),
    #[error("this scan would send {probes} probes, more than --max-probes {max}")]
    TooManyProbes { probes: u64, max: u64 },
    #[error("--queues must be between 1 and 64, not {0}")]
    Queues(u32),
    #[error("--queues uses AF_XDP queues; raw sockets send from one thread (drop --queues or --transport raw)")]
    QueuesNeedXdp,
    #[error("--store-silent stores into a database: add --with-db or --postgres")]
    StoreSilentWithoutDb,
    #[error(
        "--dry-run sends nothing, so there is nothing to store or write: drop --with-db, --database and -o FILE options"
    )]
    DryRunWithStorage,
    #[error("--dry-run sends nothing, so {0} has nothing to act on: drop it")]
    DryRunWith(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportChoice {
    /// AF_XDP where it can be used, raw sockets (with a notice) where not.
    Auto,
    Xdp,
    Raw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Text,
    Ndjson,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

/// What a resumed scan takes over from the run it finishes.
#[derive(Debug, Clone)]
pub struct Resume {
    pub cursor: crate::engine::plan::Cursor,
    /// Probes the earlier runs sent.
    pub sent: u64,
    /// The results the earlier runs received.
    pub prior: Vec<crate::result::ScanResult>,
    /// The interrupted scan in the database, when it was stored in one.
    pub scan_id: Option<i64>,
    /// Its checkpoint file, when it was not.
    pub file: Option<std::path::PathBuf>,
    /// The checkpoint's hosts that the exclusions and special-purpose ranges
    /// name now: they keep their place in the scan, and nothing more is sent to them.
    pub skipped: crate::target::hosts::Hosts,
}

#[derive(Debug, Clone)]
pub struct ScanConfig {
    /// The command line as given, for the database and report headers.
    pub command_line: String,
    /// The probe module.
    pub scan_type: crate::probe::ScanType,
    /// `--udp-payload`s: (port, bytes) replacing the built-in payloads.
    pub udp_payloads: Vec<(u16, Vec<u8>)>,
    /// The arguments after the program name, as given: what `--resume` parses again.
    pub arguments: Vec<String>,
    /// Set when this run finishes an interrupted scan.
    pub resume: Option<Resume>,
    /// The port list as given (or the default), for reports.
    pub ports_spec: String,
    /// SQLite database to store results in.
    pub database: Option<std::path::PathBuf>,
    /// PostgreSQL to store results in (`--postgres`).
    pub postgres: Option<String>,
    /// The fleet scan's shard this run works on (`prtip fleet work`).
    pub fleet: Option<crate::store::FleetShard>,
    /// Store probes that got no answer as rows too.
    pub store_silent: bool,
    /// Output files, written by the storage task.
    pub files: Vec<crate::output::OutputFile>,
    /// The targets (exclusions applied) and ports.
    pub space: TargetSpace,
    /// Addresses named as targets but removed by --exclude and --exclude-file.
    pub excluded: u128,
    /// Addresses skipped as special-purpose (see `target::exclude`).
    pub special: crate::target::exclude::Excluded,
    pub transport: TransportChoice,
    pub path: PathOverrides,
    /// AF_XDP queues to send on (one thread each); None: as many as the interface has, up to the cores.
    pub queues: Option<u32>,
    pub src_ports: (u16, u16),
    pub rate: u64,
    /// Keep the rate whatever this host drops (`--fixed-rate`).
    pub fixed_rate: bool,
    /// Source ports may be ones this host uses itself.
    pub allow_port_overlap: bool,
    pub retries: u32,
    pub max_wait: Duration,
    pub seed: u64,
    pub shard: crate::engine::plan::Shard,
    /// Refuse to start a scan of more probes than this.
    pub max_probes: Option<u64>,
    pub dry_run: bool,
    pub format: OutputFormat,
    pub open_only: bool,
    /// `--banners`: what answers on open ports, and how long to ask.
    pub banners: Option<BannerOptions>,
    /// Targets given by name: their addresses' names.
    pub hostnames: std::collections::HashMap<std::net::IpAddr, String>,
    /// Report at most this many open ports of one host.
    pub max_open_per_host: Option<u64>,
    pub verbosity: Verbosity,
    /// Machine-readable progress lines on standard error.
    pub status_json: bool,
    /// Print the round-trip percentile table on standard error.
    pub latency_table: bool,
    /// Write the round-trip percentile table to this file.
    pub latency_file: Option<std::path::PathBuf>,
}

/// How `--banners` talks to open ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BannerOptions {
    /// The longest one port's conversation lasts.
    pub timeout: Duration,
    /// Bytes kept of what a service says.
    pub bytes: usize,
}

pub const DEFAULT_BANNER_TIMEOUT: Duration = Duration::from_secs(5);
/// A conversation takes a connect, a wait for a greeting, and an answer.
const BANNER_TIMEOUT: std::ops::RangeInclusive<Duration> = Duration::from_millis(100)..=Duration::from_secs(60);

/// `--banner-timeout`: seconds, 0.1 to 60.
pub fn parse_banner_timeout(text: &str) -> Result<Duration, ConfigError> {
    let bad = || ConfigError::BannerTimeout(text.to_string());
    let secs: f64 = text.trim().parse().map_err(|_| bad())?;
    let t = Duration::try_from_secs_f64(secs).map_err(|_| bad())?;
    if !BANNER_TIMEOUT.contains(&t) {
        return Err(bad());
    }
    Ok(t)
}

pub const MAX_RETRIES: u32 = 20;
/// Far above any NIC's packet rate, and low enough that pacing arithmetic stays exact.
pub const MAX_RATE: u64 = 100_000_000;

pub fn parse_source_ports(text: &str) -> Result<(u16, u16), ConfigError> {
    let bad = || ConfigError::SourcePort(text.to_string());
    let port = |s: &str| s.trim().parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad);
    let (a, b) = match text.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => (port(text)?, port(text)?),
    };
    if b < a {
        return Err(bad());
    }
    Ok((a, b))
}

/// `I/N`, 1-based as masscan writes it, into a 0-based shard.
pub fn parse_shard(text: &str) -> Result<crate::engine::plan::Shard, ConfigError> {
    let bad = || ConfigError::Shard(text.to_string());
    let (i, n) = text.split_once('/').ok_or_else(bad)?;
    let (i, n): (u64, u64) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
    if i == 0 || n == 0 || i > n || n > 1 << 20 {
        return Err(bad());
    }
    Ok(crate::engine::plan::Shard { index: i - 1, count: n })
}

pub fn parse_mac(text: &str) -> Result<[u8; 6], ConfigError> {
    let parts: Vec<&str> = text.split([':', '-']).collect();
    if parts.len() != 6 {
        return Err(ConfigError::Mac(text.to_string()));
    }
    let mut mac = [0u8; 6];
    for (byte, part) in mac.iter_mut().zip(parts) {
        if part.len() != 2 {
            return Err(ConfigError::Mac(text.to_string()));
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| ConfigError::Mac(text.to_string()))?;
    }
    // The group bit is set on broadcast and multicast addresses: every probe would go to many hosts, or none.
    if mac[0] & 1 == 1 || mac == [0; 6] {
        return Err(ConfigError::NotUnicastMac(text.to_string()));
    }
    Ok(mac)
}

pub fn parse_wait(text: &str) -> Result<Duration, ConfigError> {
    text.parse::<f64>()
        .ok()
        .filter(|s| (0.0..=3600.0).contains(s))
        .map(Duration::from_secs_f64)
        .ok_or_else(|| ConfigError::Wait(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_ports() {
        assert_eq!(parse_source_ports("40000").unwrap(), (40000, 40000));
        assert_eq!(parse_source_ports("61000-61063").unwrap(), (61000, 61063));
        for bad in ["0", "70000", "5-4", "a", "", "1-"] {
            assert!(parse_source_ports(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shards() {
        use crate::engine::plan::Shard;
        assert_eq!(parse_shard("1/1").unwrap(), Shard { index: 0, count: 1 });
        assert_eq!(parse_shard("3/4").unwrap(), Shard { index: 2, count: 4 });
        for bad in ["0/4", "5/4", "1/0", "1", "a/b", "1/2/3", ""] {
            assert!(parse_shard(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn macs() {
        assert_eq!(parse_mac("02:00:5e:10:00:0A").unwrap(), [2, 0, 0x5e, 0x10, 0, 10]);
        assert_eq!(parse_mac("02-00-5e-10-00-0a").unwrap(), [2, 0, 0x5e, 0x10, 0, 10]);
        for bad in ["02:00:5e:10:00", "02:00:5e:10:00:0g", "2:0:5e:10:0:a", ""] {
            assert!(matches!(parse_mac(bad), Err(ConfigError::Mac(_))), "{bad}");
        }
        for group in ["ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:01", "33:33:00:00:00:01", "00:00:00:00:00:00"] {
            assert!(matches!(parse_mac(group), Err(ConfigError::NotUnicastMac(_))), "{group}");
        }
    }

    #[test]
    fn waits() {
        assert_eq!(parse_wait("0.25").unwrap(), Duration::from_millis(250));
        for bad in ["-1", "nan", "inf", "3601", "x"] {
            assert!(parse_wait(bad).is_err(), "{bad}");
        }
    }
}
