//! The command line, turned into a checked `ScanConfig`.

use crate::commands::DEFAULT_DATABASE;
use crate::commands::db::DbArgs;
use crate::commands::doctor::DoctorArgs;
use crate::commands::report::ReportArgs;
use crate::config::{
    BannerOptions, ConfigError, DEFAULT_BANNER_TIMEOUT, MAX_RATE, MAX_RETRIES, OutputFormat, ScanConfig,
    TransportChoice, Verbosity, parse_banner_timeout, parse_mac, parse_shard, parse_source_ports, parse_wait,
};
use crate::engine::plan::Shard;
use crate::net::PathOverrides;
use crate::output::{Format, OutputFile};
use crate::probe::ScanType;
use crate::target::TargetError;
use crate::target::exclude::{Excluded, without_special};
use crate::target::hosts::{AddrRange, Family, Hosts};
use crate::target::ports::parse_ports;
use crate::target::ranges::{Range, RangeSet};
use crate::target::space::{TargetSpace, probes_within_bound};
use crate::target::spec::{HostnameAddresses, TargetSpec, parse_list_file, parse_target, split_list, to_ranges};
use crate::wire::sources::{MAX_SOURCES, Sources, SourcesError};
use clap::{Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::net::{IpAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub const DEFAULT_PORTS: &str = "1-1000";
pub const DEFAULT_SOURCE_PORTS: &str = "61000-61063";
const DEFAULT_RETRIES: u32 = 1;
/// `prtip --version`: the release, the commit it was built from, and what the build can do.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("PRTIP_GIT_REV"),
    "); transports: af_xdp (XDP program built in), raw"
);

#[derive(Debug, Parser)]
#[command(
    name = "prtip",
    version = VERSION,
    about = "Stateless scanner: TCP SYN, ICMP echo and UDP",
    max_term_width = 80,
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  prtip -s syn -p 1-10000 127.0.0.1\n  prtip -sS -p 22 -iL targets.txt --exclude 10.201.3.0/24 --rate 10000\n  prtip -p 80,443 10.201.0.0/16 -o ndjson --open\n  prtip report 1 --plot rtt.svg\n\nExit status: 0 done, 1 runtime error, 2 bad usage, 130 interrupted."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Hosts, networks (10.0.0.0/24), ranges (10.0.0.1-10.0.3.7) or hostnames
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,

    /// Scan type: syn (-sS), connect (-sT, needs no privilege), icmp (echo
    /// requests to hosts: -sn, -PE) or udp (-sU)
    #[arg(short = 's', long = "scan-type", value_name = "TYPE", default_value = "syn", help_heading = "Scan")]
    pub scan_type: String,

    /// Ports: 22, 1-1024, 80,443,8000-8100, or - for all (-p-) [default: 1-1000]
    #[arg(short = 'p', long, value_name = "PORTS", allow_hyphen_values = true, help_heading = "Scan")]
    pub ports: Option<String>,

    /// Scan the N most common ports of the scan's protocol (nmap's table when
    /// nmap is installed, otherwise prtip's built-in list)
    #[arg(long, value_name = "N", conflicts_with = "ports", help_heading = "Scan")]
    pub top_ports: Option<usize>,

    /// UDP scans: send HEX as the payload to PORT instead of prtip's own (may repeat)
    #[arg(long, value_name = "PORT:HEX", help_heading = "Scan")]
    pub udp_payload: Vec<String>,

    /// Read targets from FILE (also written -iL); - reads standard input
    #[arg(long = "input-list", value_name = "FILE", help_heading = "Targets")]
    pub input_list: Option<PathBuf>,

    /// Exclude hosts, networks or ranges (comma-separated; may repeat)
    #[arg(long, value_name = "LIST", help_heading = "Targets")]
    pub exclude: Vec<String>,

    /// Exclude the targets listed in FILE
    #[arg(long, value_name = "FILE", help_heading = "Targets")]
    pub exclude_file: Option<PathBuf>,

    /// Also probe special-purpose ranges (private, loopback, multicast, ...) that a wider target overlaps
    #[arg(long, help_heading = "Targets")]
    pub no_default_excludes: bool,

    /// How probes are sent and replies received
    #[arg(long, value_enum, default_value = "auto", help_heading = "Network")]
    pub transport: TransportArg,

    /// Interface to send on [default: from the routing table]
    #[arg(short = 'i', long, value_name = "IF", help_heading = "Network")]
    pub interface: Option<String>,

    /// AF_XDP: send on this many queues, a thread each [default: the interface's queues, at most one per core]
    #[arg(long, value_name = "N", help_heading = "Network")]
    pub queues: Option<u32>,

    /// Source address, or up to 16 as a range, CIDR block or list (10.0.0.1-10.0.0.8,10.0.0.20): each target host hears from one [default: the route's preferred source]
    #[arg(long, value_name = "ADDRS", help_heading = "Network")]
    pub source_ip: Option<String>,

    /// Source port or range that replies come back to
    #[arg(long, value_name = "RANGE", default_value = DEFAULT_SOURCE_PORTS, help_heading = "Network")]
    pub source_port: String,

    /// Use --source-port even where this host listens or picks its own
    /// connections' ports (their traffic and the scan's then mix)
    #[arg(long, help_heading = "Network")]
    pub allow_port_overlap: bool,

    /// Next-hop MAC address [default: from the neighbour table, or ARP or
    /// neighbour discovery]
    #[arg(long, value_name = "MAC", help_heading = "Network")]
    pub gateway_mac: Option<String>,

    /// Packets per second at most; 0 sends as fast as the transport allows.
    /// The rate is lowered while this host drops frames, and raised again after
    #[arg(long, value_name = "PPS", default_value_t = 0, help_heading = "Timing")]
    pub rate: u64,

    /// Keep --rate even while this host drops frames (probes whose replies
    /// may have been lost are still retried, and reported undecided if
    /// their last try was too)
    #[arg(long, help_heading = "Timing")]
    pub fixed_rate: bool,

    /// Extra attempts for probes that got no answer [default: 1; 0 with --wait 0]
    #[arg(long, value_name = "N", help_heading = "Timing")]
    pub retries: Option<u32>,

    /// Longest wait for late replies, in seconds (the wait adapts to round trips seen)
    #[arg(long, value_name = "SECS", default_value = "2", help_heading = "Timing")]
    pub wait: String,

    /// Seed of the probe order (the same seed gives the same order)
    #[arg(long, value_name = "N", help_heading = "Timing")]
    pub seed: Option<String>,

    /// Send only part I of N of the scan; shards with the same --seed split it exactly
    #[arg(long, value_name = "I/N", help_heading = "Timing")]
    pub shard: Option<String>,

    /// Refuse to start if the scan (this shard) would send more than N probes
    #[arg(long, value_name = "N", help_heading = "Timing")]
    pub max_probes: Option<u64>,

    /// Print the probes that would be sent, and send nothing
    #[arg(long, help_heading = "Output")]
    pub dry_run: bool,

    /// Ask every open port what answers there (SYN and connect scans): its
    /// banner, HTTP head and TLS certificate, through a connection of this host's own
    #[arg(long, help_heading = "Services")]
    pub banners: bool,

    /// The longest one port's conversation lasts, connect included, in seconds [default: 5]
    #[arg(long, value_name = "SECS", requires = "banners", help_heading = "Services")]
    pub banner_timeout: Option<String>,

    /// Bytes kept of what a service says
    #[arg(long, value_name = "N", default_value_t = 4096, requires = "banners",
          value_parser = clap::value_parser!(u32).range(1..=65536), help_heading = "Services")]
    pub banner_bytes: u32,

    /// Finish an interrupted scan; FROM is its checkpoint file or its scan id in --database [default: the newest checkpoint]
    #[arg(long, value_name = "FROM", num_args = 0..=1, default_missing_value = "", conflicts_with = "dry_run", help_heading = "Scan")]
    pub resume: Option<String>,

    /// Store results in a SQLite database (see --database)
    #[arg(long, help_heading = "Storage")]
    pub with_db: bool,

    /// The database file; implies --with-db [default: ./prtip.db]
    #[arg(long, value_name = "PATH", help_heading = "Storage")]
    pub database: Option<PathBuf>,

    /// Also store probes that got no answer as rows (they are always counted on the scan)
    #[arg(long, help_heading = "Storage")]
    pub store_silent: bool,

    /// Store results in PostgreSQL too (a libpq connection string or URL;
    /// also from PRTIP_POSTGRES)
    #[arg(long, value_name = "URL", env = "PRTIP_POSTGRES", hide_env_values = true, help_heading = "Storage")]
    pub postgres: Option<String>,

    /// Write nmap-like text to FILE (also written -oN)
    #[arg(long = "output-normal", value_name = "FILE", help_heading = "Output files")]
    pub output_normal: Option<PathBuf>,

    /// Write one JSON object per result to FILE (also written -oJ)
    #[arg(long = "output-json", value_name = "FILE", help_heading = "Output files")]
    pub output_json: Option<PathBuf>,

    /// Write nmap XML to FILE (also written -oX)
    #[arg(long = "output-xml", value_name = "FILE", help_heading = "Output files")]
    pub output_xml: Option<PathBuf>,

    /// Write nmap grepable output to FILE (also written -oG)
    #[arg(long = "output-grepable", value_name = "FILE", help_heading = "Output files")]
    pub output_grepable: Option<PathBuf>,

    /// Write CSV with a header to FILE (also written -oC)
    #[arg(long = "output-csv", value_name = "FILE", help_heading = "Output files")]
    pub output_csv: Option<PathBuf>,

    /// Write every file format to BASE.nmap, .xml, .gnmap, .json and .csv (also written -oA)
    #[arg(long = "output-all", value_name = "BASE", help_heading = "Output files")]
    pub output_all: Option<PathBuf>,

    /// Format of the results on standard output
    #[arg(
        short = 'o',
        long = "output-format",
        value_enum,
        value_name = "FORMAT",
        default_value = "text",
        help_heading = "Output"
    )]
    pub output_format: FormatArg,

    /// Report only open ports: on standard output, in files and in the database
    #[arg(long, help_heading = "Output")]
    pub open: bool,

    /// Report at most N open ports of any one host (a tarpit answers on all); the rest are counted, not reported
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), help_heading = "Output")]
    pub max_open_per_host: Option<u64>,

    /// Print the round-trip percentile distribution (HdrHistogram .hgrm format) on standard error
    #[arg(long, help_heading = "Output")]
    pub latency: bool,

    /// Write the round-trip percentile distribution (.hgrm) to FILE
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub latency_file: Option<PathBuf>,

    /// Progress as JSON lines on standard error, once a second (with -q, nothing else)
    #[arg(long, help_heading = "Output")]
    pub status_json: bool,

    /// No banner, progress or summary on standard error
    #[arg(short, long, conflicts_with = "verbose", help_heading = "Output")]
    pub quiet: bool,

    /// More detail on standard error; -vv adds debug logs (RUST_LOG overrides)
    #[arg(short, long, action = clap::ArgAction::Count, help_heading = "Output")]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read scans stored with --with-db: list, show, export, recover, merge
    Db(DbArgs),
    /// Round-trip reports of stored scans: percentiles, comparisons, plots
    Report(ReportArgs),
    /// Check what this machine supports: capabilities, XDP, AF_XDP, io_uring
    Doctor(DoctorArgs),
    /// One scan across many machines sharing PostgreSQL: create, work, status
    Fleet(crate::commands::fleet::FleetArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff; view with `prtip man | man -l -`)
    Man,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TransportArg {
    Auto,
    Xdp,
    Raw,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Text,
    Ndjson,
}

/// Parses `argv` with clap, or says why not in one line: `Err` holds the exit
/// status (0 after --help and --version, 2 for bad usage).
pub fn parse_or_exit<T: Parser>(argv: impl IntoIterator<Item = OsString>) -> Result<T, ExitCode> {
    T::try_parse_from(argv).map_err(|e| {
        if !e.use_stderr() {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        eprintln!("prtip: error: {}", clap_error_line(&e));
        ExitCode::from(2)
    })
}

/// The first of `flags` given.
fn first_given(flags: impl IntoIterator<Item = (bool, &'static str)>) -> Option<&'static str> {
    flags.into_iter().find_map(|(given, flag)| given.then_some(flag))
}

/// Which PostgreSQL a command that reads scans reads, if any: the one
/// `--postgres` names, or PRTIP_POSTGRES where `database` names no SQLite
/// file (clap merges the two: a file named on the command line wins over
/// the environment); both typed are refused.
pub fn postgres_to_read(
    postgres: &Option<String>,
    database: Option<&Path>,
) -> Result<Option<String>, crate::store::StoreError> {
    match (database, postgres_typed(postgres)) {
        (Some(_), true) => Err(crate::store::StoreError::TwoStores),
        (Some(_), false) => Ok(None),
        (None, _) => Ok(postgres.clone()),
    }
}

/// Whether `--postgres` was given on the command line, not only in PRTIP_POSTGRES.
pub fn postgres_typed(postgres: &Option<String>) -> bool {
    postgres.is_some() && std::env::var("PRTIP_POSTGRES").ok() != *postgres
}

/// The one line that says what is wrong with a command line, without clap's
/// "error: ": its first line and the indented lines right below it (the
/// arguments missing, the values possible), joined.
pub fn clap_error_line(e: &clap::Error) -> String {
    if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        // clap's help, whose first line is the command's description.
        let about = e.render().to_string();
        return format!("a subcommand is required ({})", about.lines().next().unwrap_or("see --help").trim());
    }
    let text = e.render().to_string();
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("invalid arguments");
    let mut line = first.strip_prefix("error: ").unwrap_or(first).to_string();
    for more in lines.take_while(|l| l.starts_with(' ') && !l.trim().is_empty()) {
        line.push(' ');
        line.push_str(more.trim());
    }
    line
}

/// nmap's two-letter options, which clap cannot express, and their long forms.
const TWO_LETTER: [(&str, &str); 8] = [
    ("-iL", "--input-list"),
    ("-PE", "--scan-type=icmp"),
    ("-oN", "--output-normal"),
    ("-oJ", "--output-json"),
    ("-oX", "--output-xml"),
    ("-oG", "--output-grepable"),
    ("-oC", "--output-csv"),
    ("-oA", "--output-all"),
];

/// Rewrites nmap's two-letter options into their long forms.
pub fn normalize_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    args.into_iter()
        .map(|a| match TWO_LETTER.iter().find(|(short, _)| a == *short) {
            Some((_, long)) => OsString::from(*long),
            None => a,
        })
        .collect()
}

impl Cli {
    /// The flags that choose the path and the transport of the frames a
    /// scan sends itself, each with whether it was given.
    fn path_flags(&self) -> [(bool, &'static str); 6] {
        [
            (self.transport != TransportArg::Auto, "--transport"),
            (self.interface.is_some(), "--interface"),
            (self.queues.is_some(), "--queues"),
            (self.source_ip.is_some(), "--source-ip"),
            (self.gateway_mac.is_some(), "--gateway-mac"),
            (self.fixed_rate, "--fixed-rate"),
        ]
    }

    /// The first flag given that only a scan sending frames of its own uses.
    fn frames_only_flag(&self) -> Option<&'static str> {
        let ports = [
            (self.source_port != DEFAULT_SOURCE_PORTS, "--source-port"),
            (self.allow_port_overlap, "--allow-port-overlap"),
        ];
        first_given(self.path_flags().into_iter().chain(ports))
    }

    /// Checks everything and resolves hostnames; fails on the first bad input.
    /// `arguments` are what the user typed after the program name, kept for
    /// the records and for `--resume`; `resolved` are the hosts of a scan
    /// being resumed, which are not resolved again.
    pub fn into_config(self, arguments: Vec<String>, resolved: Option<Hosts>) -> Result<ScanConfig, ConfigError> {
        let command_line =
            std::iter::once("prtip").chain(arguments.iter().map(String::as_str)).collect::<Vec<_>>().join(" ");
        let scan_type =
            ScanType::parse(&self.scan_type).ok_or_else(|| ConfigError::ScanType(self.scan_type.clone()))?;
        let (ports_spec, ports) = self.ports(scan_type)?;
        let udp_payloads = self
            .udp_payload
            .iter()
            .map(|text| crate::probe::udp::payload::parse_override(text).map_err(ConfigError::UdpPayload))
            .collect::<Result<Vec<_>, _>>()?;
        if !udp_payloads.is_empty() && scan_type != ScanType::Udp {
            return Err(ConfigError::UdpPayloadWithoutUdp);
        }
        for (i, (port, _)) in udp_payloads.iter().enumerate() {
            if udp_payloads[..i].iter().any(|(p, _)| p == port) {
                return Err(ConfigError::UdpPayload(format!("--udp-payload {port}: given twice")));
            }
            if !ports.contains(u32::from(*port)) {
                return Err(ConfigError::UdpPayload(format!(
                    "--udp-payload {port}: port {port} is not among the ports scanned"
                )));
            }
        }
        if scan_type == ScanType::Connect {
            self.frames_only_flag().map_or(Ok(()), |flag| Err(ConfigError::NotForConnect(flag)))?;
        }
        if self.banners && !matches!(scan_type, ScanType::Syn | ScanType::Connect) {
            return Err(ConfigError::BannersNeedTcp);
        }
        let banners = match self.banners {
            true => Some(BannerOptions {
                timeout: match &self.banner_timeout {
                    Some(t) => parse_banner_timeout(t)?,
                    None => DEFAULT_BANNER_TIMEOUT,
                },
                bytes: self.banner_bytes as usize,
            }),
            false => None,
        };
        if let Some((port, bytes)) = udp_payloads.iter().find(|(_, b)| b.len() > crate::probe::udp::MAX_PAYLOAD) {
            return Err(ConfigError::UdpPayload(format!(
                "--udp-payload {port}: {} bytes, more than the {} a datagram carries unfragmented",
                bytes.len(),
                crate::probe::udp::MAX_PAYLOAD
            )));
        }
        let database = match (&self.database, self.with_db) {
            (Some(p), _) => Some(p.clone()),
            (None, true) => Some(PathBuf::from(DEFAULT_DATABASE)),
            (None, false) => None,
        };
        if self.store_silent && database.is_none() && self.postgres.is_none() {
            return Err(ConfigError::StoreSilentWithoutDb);
        }
        let files = self.output_files();
        if self.dry_run && (database.is_some() || !files.is_empty()) {
            return Err(ConfigError::DryRunWithStorage);
        }
        let acting_on_replies = [
            (self.latency_file.is_some(), "--latency-file"),
            (self.latency, "--latency"),
            (self.status_json, "--status-json"),
            (self.open, "--open"),
            (self.max_open_per_host.is_some(), "--max-open-per-host"),
            (self.banners, "--banners"),
            (postgres_typed(&self.postgres), "--postgres"),
        ];
        // Nor does the path or the transport: the probe list is the same whatever they are.
        if self.dry_run
            && let Some(flag) = first_given(acting_on_replies.into_iter().chain(self.path_flags()))
        {
            return Err(ConfigError::DryRunWith(flag));
        }
        one_file_each(&database, &files, &self.latency_file)?;

        let (hosts, excluded, special, names) = match resolved {
            Some(hosts) => (hosts, 0, Excluded::default(), self.targets().map(|t| t.names).unwrap_or_default()),
            None => {
                let Targets { probed, excluded, special, names, .. } = self.targets()?;
                if probed.is_empty() {
                    return Err(TargetError::AllExcluded.into());
                }
                (probed, excluded, special, names)
            }
        };

        let source_ip = match &self.source_ip {
            Some(s) => Some(parse_source_ip(s, hosts.family())?),
            None => None,
        };
        let gateway_mac = self.gateway_mac.as_deref().map(parse_mac).transpose()?;
        if self.rate > MAX_RATE {
            return Err(ConfigError::Rate { got: self.rate, max: MAX_RATE });
        }
        let max_wait = parse_wait(&self.wait)?;
        let retries = match (self.retries, max_wait.is_zero()) {
            (Some(n), _) if n > MAX_RETRIES => return Err(ConfigError::Retries { got: n, max: MAX_RETRIES }),
            (Some(n), true) if n > 0 => return Err(ConfigError::RetriesWithoutWait(n)),
            (Some(n), _) => n,
            (None, true) => 0,
            (None, false) => DEFAULT_RETRIES,
        };
        if let Some(n) = self.queues {
            if !(1..=crate::transport::xdp::MAX_QUEUES).contains(&n) {
                return Err(ConfigError::Queues(n));
            }
            if self.transport == TransportArg::Raw && n > 1 {
                return Err(ConfigError::QueuesNeedXdp);
            }
        }
        let shard = self.shard.as_deref().map(parse_shard).transpose()?.unwrap_or(Shard::WHOLE);
        probes_within_bound(hosts.len(), ports.len(), u128::from(retries) + 1)?;
        let space = TargetSpace::new(hosts, ports)?;
        let per_pass = shard.probes_of(space.len());
        if let Some(max) = self.max_probes
            && per_pass > max
        {
            return Err(ConfigError::TooManyProbes { probes: per_pass, max });
        }
        let seed = match &self.seed {
            Some(s) => s.parse().map_err(|_| ConfigError::Seed(s.clone()))?,
            None => crate::random::u64(),
        };
        Ok(ScanConfig {
            command_line,
            scan_type,
            udp_payloads,
            ports_spec,
            database,
            postgres: self.postgres,
            fleet: None,
            store_silent: self.store_silent,
            files,
            excluded,
            special,
            arguments,
            resume: None,
            space,
            transport: match self.transport {
                TransportArg::Auto => TransportChoice::Auto,
                TransportArg::Xdp => TransportChoice::Xdp,
                TransportArg::Raw => TransportChoice::Raw,
            },
            path: PathOverrides { interface: self.interface, source_ip, gateway_mac },
            queues: self.queues,
            src_ports: parse_source_ports(&self.source_port)?,
            allow_port_overlap: self.allow_port_overlap,
            rate: self.rate,
            fixed_rate: self.fixed_rate,
            retries,
            max_wait,
            seed,
            shard,
            max_probes: self.max_probes,
            dry_run: self.dry_run,
            format: match self.output_format {
                FormatArg::Text => OutputFormat::Text,
                FormatArg::Ndjson => OutputFormat::Ndjson,
            },
            open_only: self.open,
            banners,
            hostnames: names.into_iter().collect(),
            max_open_per_host: self.max_open_per_host,
            status_json: self.status_json,
            latency_table: self.latency,
            latency_file: self.latency_file,
            verbosity: if self.quiet {
                Verbosity::Quiet
            } else if self.verbose > 0 {
                Verbosity::Verbose
            } else {
                Verbosity::Normal
            },
        })
    }
}

impl Cli {
    /// The ports to probe, as written for reports and as a set: `-p`,
    /// `--top-ports`, or the default; the single port 0 for an echo scan,
    /// whose probes go to hosts.
    fn ports(&self, scan_type: ScanType) -> Result<(String, RangeSet<u32>), ConfigError> {
        if !scan_type.has_ports() {
            if self.ports.is_some() || self.top_ports.is_some() {
                return Err(ConfigError::PortsWithoutPorts);
            }
            return Ok((String::new(), RangeSet::from_ranges(vec![Range::new(0, 0)])));
        }
        if let Some(n) = self.top_ports {
            let protocol = match scan_type {
                ScanType::Udp => crate::target::top_ports::Protocol::Udp,
                _ => crate::target::top_ports::Protocol::Tcp,
            };
            let (list, source) = crate::target::top_ports::top_ports(protocol, n).map_err(ConfigError::TopPorts)?;
            tracing::info!(?source, n, "top ports");
            let spec = list.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
            let ports = parse_ports(&spec, scan_type == ScanType::Udp)?;
            return Ok((spec, ports));
        }
        let spec = self.ports.clone().unwrap_or_else(|| DEFAULT_PORTS.to_string());
        let ports = parse_ports(&spec, scan_type == ScanType::Udp)?;
        Ok((spec, ports))
    }

    /// The output files asked for, `-oA`'s five included.
    fn output_files(&self) -> Vec<OutputFile> {
        let mut files: Vec<OutputFile> = [
            (Format::Text, &self.output_normal),
            (Format::Ndjson, &self.output_json),
            (Format::Xml, &self.output_xml),
            (Format::Grepable, &self.output_grepable),
            (Format::Csv, &self.output_csv),
        ]
        .into_iter()
        .filter_map(|(format, path)| path.clone().map(|path| OutputFile { format, path }))
        .collect();
        if let Some(base) = &self.output_all {
            files.extend(OutputFile::all(base));
        }
        files
    }

    /// What the target options name now: target lists and exclusion files
    /// read, hostnames resolved. A fresh scan probes `probed`; `--resume`
    /// holds a checkpoint's hosts against both sets.
    pub fn targets(&self) -> Result<Targets, ConfigError> {
        // Commas separate targets on the command line as in files (masscan's style).
        let mut targets = parse_all(self.targets.iter().flat_map(|t| split_list(t)))?;
        let stdin = Some(Path::new("-"));
        if self.input_list.as_deref() == stdin && self.exclude_file.as_deref() == stdin {
            return Err(TargetError::BothStandardInput.into());
        }
        if let Some(file) = &self.input_list {
            targets.extend(read_list(file, "target list")?);
        }
        if targets.is_empty() {
            return Err(TargetError::NoTargets.into());
        }
        let mut names = Vec::new();
        let named_ranges = ranges_of(&targets, HostnameAddresses::PreferIpv4, &mut names)?;
        let family = named_ranges[0].family;
        if named_ranges.iter().any(|r| r.family != family) {
            return Err(TargetError::MixedFamilies.into());
        }
        let named = RangeSet::from_ranges(named_ranges.iter().map(|r| r.range).collect());
        let (allowed, special) = if self.no_default_excludes {
            (named.clone(), Excluded::default())
        } else {
            without_special(family, &named_ranges)
        };

        let mut exclusions = parse_all(self.exclude.iter().flat_map(|e| split_list(e)))?;
        if let Some(file) = &self.exclude_file {
            exclusions.extend(read_list(file, "exclude file")?);
        }
        // Exclusions of the other family cannot overlap the targets.
        let excluded_set = RangeSet::from_ranges(
            ranges_of(&exclusions, HostnameAddresses::All, &mut Vec::new())?
                .into_iter()
                .filter(|r| r.family == family)
                .map(|r| r.range)
                .collect(),
        );
        let probed = allowed.subtract(&excluded_set);
        let excluded = allowed.len() - probed.len();
        Ok(Targets {
            named: Hosts::new(family, named),
            probed: Hosts::new(family, probed),
            excluded,
            special,
            hostnames: targets.iter().any(|t| matches!(t, TargetSpec::Hostname(_))),
            names,
        })
    }
}

/// What the target options name, read and resolved at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Targets {
    /// Every address the targets name.
    pub named: Hosts,
    /// What a scan of them probes: `named` without the special-purpose
    /// ranges a target merely overlaps, and without the exclusions.
    pub probed: Hosts,
    /// Addresses removed by --exclude and --exclude-file.
    pub excluded: u128,
    /// Addresses removed as special-purpose.
    pub special: Excluded,
    /// Whether a target is a hostname, whose addresses may differ from one resolution to the next.
    pub hostnames: bool,
    /// The addresses of the targets given by name, and their names (for
    /// TLS's SNI and HTTP's Host where banners are asked).
    pub names: Vec<(IpAddr, String)>,
}

/// Refuses two outputs, or an output and the database, that name one file:
/// each would overwrite the other.
fn one_file_each(
    database: &Option<PathBuf>,
    files: &[OutputFile],
    latency_file: &Option<PathBuf>,
) -> Result<(), ConfigError> {
    let named: Vec<(String, &Path)> = database
        .iter()
        .map(|p| ("--database".to_string(), p.as_path()))
        .chain(files.iter().map(|f| (format!("-o{}", f.format.letter()), f.path.as_path())))
        .chain(latency_file.iter().map(|p| ("--latency-file".to_string(), p.as_path())))
        .collect();
    for (i, (first, a)) in named.iter().enumerate() {
        if let Some((second, _)) = named[i + 1..].iter().find(|(_, b)| same_file(a, b)) {
            let (first, second, path) = (first.clone(), second.clone(), a.display().to_string());
            return Err(ConfigError::SameFile { first, second, path });
        }
    }
    Ok(())
}

/// Whether two paths name one file: the same inode where both exist, the same absolute path where not.
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => (x.dev(), x.ino()) == (y.dev(), y.ino()),
        (Err(_), Err(_)) => std::path::absolute(a).ok() == std::path::absolute(b).ok(),
        _ => false,
    }
}

/// The addresses `--source-ip` names (comma-separated addresses, ranges
/// and CIDR blocks), which must be of the targets' family.
fn parse_source_ip(s: &str, family: Family) -> Result<Sources, ConfigError> {
    let invalid = |why: String| ConfigError::SourceIp { given: s.to_string(), why };
    let mut ranges = Vec::new();
    for part in s.split(',') {
        let spec = parse_target(part).map_err(|e| match e {
            TargetError::Invalid { why, .. } => invalid(format!("'{part}': {why}")),
            other => other.into(),
        })?;
        match spec {
            TargetSpec::Range(r) if r.family == family => ranges.push(r),
            TargetSpec::Range(_) => {
                return Err(invalid(format!("the targets are {} addresses, so these must be too", family.name())));
            }
            TargetSpec::Hostname(_) => return Err(invalid("give addresses, not names".into())),
        }
    }
    // Saturated, a count of all of IPv6 (2^128) reads as u128::MAX.
    let count = ranges.iter().fold(0u128, |n, r| n.saturating_add((r.range.last - r.range.first).saturating_add(1)));
    if count > MAX_SOURCES as u128 {
        return Err(invalid(SourcesError::TooMany(count).to_string()));
    }
    let addrs: Vec<IpAddr> =
        ranges.iter().flat_map(|r| (r.range.first..=r.range.last).map(|v| r.family.addr(v))).collect();
    let nowhere = |a: &IpAddr| a.is_unspecified() || a.is_multicast() || matches!(a, IpAddr::V4(v) if v.is_broadcast());
    if let Some(a) = addrs.iter().find(|a| nowhere(a)) {
        return Err(invalid(format!("{a} is no host's address: replies cannot come back to it")));
    }
    Sources::new(&addrs).map_err(|e| invalid(e.to_string()))
}

/// The ranges `specs` name, hostnames resolved; each name's addresses go to `names`.
fn ranges_of(
    specs: &[TargetSpec],
    which: HostnameAddresses,
    names: &mut Vec<(IpAddr, String)>,
) -> Result<Vec<AddrRange>, TargetError> {
    to_ranges(specs, which, |name| {
        let addrs = (name, 0).to_socket_addrs().map(|addrs| addrs.map(|a| a.ip()).collect::<Vec<IpAddr>>())?;
        names.extend(addrs.iter().map(|a| (*a, name.to_string())));
        Ok(addrs)
    })
}

fn read_list(path: &Path, what: &'static str) -> Result<Vec<TargetSpec>, TargetError> {
    let shown = path.display().to_string();
    if path == Path::new("-") {
        return parse_list_file(std::io::stdin().lock(), what, &shown);
    }
    let file =
        std::fs::File::open(path).map_err(|e| TargetError::File { what, path: shown.clone(), why: e.to_string() })?;
    parse_list_file(std::io::BufReader::new(file), what, &shown)
}

fn parse_all<'a>(exprs: impl Iterator<Item = &'a str>) -> Result<Vec<TargetSpec>, TargetError> {
    exprs.map(parse_target).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_ip_takes_addresses_ranges_and_lists_of_the_targets_family() {
        let got = parse_source_ip("10.200.0.1-10.200.0.3,10.200.0.9,10.200.0.12/31", Family::V4).unwrap();
        assert_eq!(got.count(), 6);
        assert_eq!(got.to_string(), "10.200.0.1-10.200.0.3,10.200.0.9,10.200.0.12-10.200.0.13");
        assert_eq!(parse_source_ip("fd00:200::1", Family::V6).unwrap().to_string(), "fd00:200::1");
        let refused = |s: &str, family| parse_source_ip(s, family).unwrap_err().to_string();
        assert_eq!(
            refused("10.0.0.0/24", Family::V4),
            "invalid --source-ip '10.0.0.0/24': 256 source addresses: prtip sends from at most 16"
        );
        assert_eq!(
            refused("::/0", Family::V6),
            "invalid --source-ip '::/0': 2^128 source addresses: prtip sends from at most 16"
        );
        assert_eq!(
            refused("10.0.0.1,10.0.0.1", Family::V4),
            "invalid --source-ip '10.0.0.1,10.0.0.1': source address 10.0.0.1 is given twice"
        );
        assert_eq!(
            refused("fd00::1", Family::V4),
            "invalid --source-ip 'fd00::1': the targets are IPv4 addresses, so these must be too"
        );
        assert_eq!(refused("10.0.0.1,", Family::V4), "invalid --source-ip '10.0.0.1,': '': empty target");
        assert_eq!(
            refused("10.0.0.1,localhost", Family::V4),
            "invalid --source-ip '10.0.0.1,localhost': give addresses, not names"
        );
    }
}
