//! `prtip fleet`: one scan across many machines that share a PostgreSQL.
//! `create` records the scan, its seed and its hosts (resolved once, so
//! every worker scans the same ones) as N shards; `work`, run on each
//! machine, leases shards and scans them into PostgreSQL until none is
//! left; `status` shows where each shard stands.

use crate::cli::{Cli, clap_error_line, normalize_args};
use crate::config::{ConfigError, Resume, ScanConfig};
use crate::engine::run::StopSignal;
use crate::scan::{Outcome, ScanError};
use crate::store::StoreError;
use crate::store::checkpoint;
use crate::store::fleet::{self, Fleet, Lease, Next};
use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Subcommand};
use std::ffi::OsString;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Scan options a fleet cannot take: the fleet decides shards and where
/// results go, and each worker runs to its end.
const NOT_IN_A_FLEET: [&str; 15] = [
    "shard",
    "resume",
    "with_db",
    "database",
    "postgres",
    "dry_run",
    "max_probes",
    "output_normal",
    "output_json",
    "output_xml",
    "output_grepable",
    "output_csv",
    "output_all",
    "latency_file",
    "seed",
];

/// The options a worker may add, as they depend on its machine.
const PER_WORKER: [&str; 12] = [
    "transport",
    "interface",
    "queues",
    "source_ip",
    "source_port",
    "gateway_mac",
    "rate",
    "fixed_rate",
    "status_json",
    "quiet",
    "verbose",
    "output_format",
];

/// How long a worker keeps trying to reach PostgreSQL between shards.
const UNREACHABLE_FOR: Duration = Duration::from_secs(60);

#[derive(Debug, Args)]
pub struct FleetArgs {
    /// The PostgreSQL the fleet shares (also from PRTIP_POSTGRES)
    #[arg(long, global = true, value_name = "URL", env = "PRTIP_POSTGRES", hide_env_values = true)]
    postgres: Option<String>,

    #[command(subcommand)]
    command: FleetCommand,
}

#[derive(Debug, Subcommand)]
enum FleetCommand {
    /// Record a scan split into shards for workers to lease; its options
    /// come after `--`, as for a scan
    Create {
        /// Shards: at least as many as the workers that will share the scan
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=65_536))]
        shards: u32,
        /// How long a lease holds without renewal: a dead worker's shard
        /// waits that long for another worker
        #[arg(long, value_name = "SECS", default_value = "60", value_parser = lease_seconds)]
        lease: f64,
        /// A name for the fleet, unique in the database: a second create
        /// of one name fails, and workers may use it for --fleet
        #[arg(long, value_name = "NAME", value_parser = fleet_name)]
        name: Option<String>,
        /// The seed of the scan's order and cookies (random if not given)
        #[arg(long, value_name = "N")]
        seed: Option<u64>,
        /// The scan: targets and options
        #[arg(last = true, required = true, value_name = "SCAN")]
        scan: Vec<String>,
    },
    /// Lease shards and scan them, until every shard is done; this
    /// machine's own options (--interface, --source-ip, --transport,
    /// --rate, ...) come after `--`
    Work {
        /// Only this fleet's shards: its id or name
        #[arg(long, value_name = "FLEET")]
        fleet: Option<String>,
        #[arg(last = true, value_name = "OPTIONS")]
        options: Vec<String>,
    },
    /// Show each shard: its state, worker, lease, probes sent, results, rate
    Status {
        /// Only this fleet: its id or name
        #[arg(long, value_name = "FLEET")]
        fleet: Option<String>,
    },
}

fn lease_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if (1.0..=3600.0).contains(&s) => Ok(s),
        _ => Err("a lease is 1 to 3600 seconds".into()),
    }
}

fn fleet_name(text: &str) -> Result<String, String> {
    let ok = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
    match text {
        t if t.is_empty() || t.len() > 64 || !t.chars().all(ok) => {
            Err("a fleet's name is 1 to 64 letters, digits, '-', '_' or '.'".into())
        }
        t if t.chars().all(|c| c.is_ascii_digit()) => {
            Err("a fleet's name is not all digits, which is how scan ids are written".into())
        }
        t => Ok(t.to_string()),
    }
}

#[derive(Debug, thiserror::Error)]
enum FleetError {
    #[error("fleet commands need --postgres URL (or PRTIP_POSTGRES)")]
    NoPostgres,
    #[error("{0}")]
    Arguments(String),
    #[error("{0} is decided by the fleet, not by the scan's options")]
    NotInAFleet(String),
    #[error("{0} is the fleet's to decide: a worker adds only options of its own machine")]
    NotPerWorker(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error("the fleet's hosts do not read back: {0}")]
    Hosts(String),
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
}

impl FleetError {
    fn is_bad_input(&self) -> bool {
        match self {
            FleetError::Store(e) => e.names_the_wrong_database(),
            FleetError::Scan(e) => e.is_bad_input(),
            FleetError::Hosts(_) | FleetError::Signals(_) => false,
            _ => true,
        }
    }
}

pub fn main(args: FleetArgs, stop: &'static StopSignal) -> ExitCode {
    let result = match (&args.postgres, args.command) {
        (None, _) => Err(FleetError::NoPostgres),
        (Some(url), FleetCommand::Create { shards, lease, name, seed, scan }) => {
            create(url, shards, lease, name, seed, scan)
        }
        (Some(url), FleetCommand::Status { fleet }) => status(url, fleet.as_deref()),
        (Some(url), FleetCommand::Work { fleet, options }) => match work(url, fleet.as_deref(), &options, stop) {
            Ok(Outcome::Completed) => Ok(()),
            Ok(Outcome::Interrupted) => return ExitCode::from(130),
            Err(e) => Err(e),
        },
    };
    super::exit_status(result, FleetError::is_bad_input, |_| false)
}

/// The options given in `args` (clap's ids), which `args` must parse as a scan's.
fn given(args: &[String]) -> Result<(clap::ArgMatches, Vec<String>), FleetError> {
    let argv = normalize_args(std::iter::once(OsString::from("prtip")).chain(args.iter().map(OsString::from)));
    let matches = Cli::command().try_get_matches_from(&argv).map_err(|e| FleetError::Arguments(clap_error_line(&e)))?;
    if matches.subcommand().is_some() {
        return Err(FleetError::Arguments("a fleet's scan is a scan, not a subcommand".into()));
    }
    let cmd = Cli::command();
    // Groups are skipped: their values are their members'.
    let ids = matches
        .ids()
        .map(|id| id.as_str().to_string())
        .filter(|id| cmd.get_arguments().any(|a| a.get_id() == id))
        .filter(|id| matches.value_source(id) == Some(ValueSource::CommandLine))
        .collect();
    Ok((matches, ids))
}

fn option_name(id: &str) -> String {
    Cli::command()
        .get_arguments()
        .find(|a| a.get_id() == id)
        .and_then(|a| a.get_long())
        .map_or_else(|| id.to_string(), |l| format!("--{l}"))
}

fn create(
    url: &str,
    shards: u32,
    lease: f64,
    name: Option<String>,
    seed: Option<u64>,
    scan: Vec<String>,
) -> Result<(), FleetError> {
    let (matches, ids) = given(&scan)?;
    if let Some(id) = ids.iter().find(|id| NOT_IN_A_FLEET.contains(&id.as_str())) {
        return Err(FleetError::NotInAFleet(option_name(id)));
    }
    let cli = Cli::from_arg_matches(&matches).map_err(|e| FleetError::Arguments(clap_error_line(&e)))?;
    let mut config = cli.into_config(scan.clone(), None)?;
    if let Some(seed) = seed {
        config.seed = seed;
    }
    let fleet = Fleet {
        id: 0,
        name,
        arguments: scan,
        hosts: checkpoint::hosts_json(config.space.hosts()),
        seed: config.seed,
        shards,
        lease: Duration::from_secs_f64(lease),
    };
    let probes = config.space.len();
    let id = fleet::create(url, &fleet, probes)?;
    println!(
        "fleet {id}: {probes} probes in {shards} shards (seed {}); run `prtip fleet work --fleet {id}` on each machine",
        fleet.seed
    );
    Ok(())
}

/// Leases and scans shards until every one is done, or a scan is stopped.
fn work(url: &str, only: Option<&str>, options: &[String], stop: &'static StopSignal) -> Result<Outcome, FleetError> {
    let (_, ids) = given(options)?;
    if let Some(id) = ids.iter().find(|id| !PER_WORKER.contains(&id.as_str())) {
        return Err(FleetError::NotPerWorker(option_name(id)));
    }
    stop.stop_on_signals().map_err(FleetError::Signals)?;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let worker = format!("{}:{}", host.trim(), std::process::id());
    let mut unreachable_since: Option<Instant> = None;
    let mut only_id = None;
    loop {
        if stop.stop_sending() {
            return Ok(Outcome::Interrupted);
        }
        let leased = match (only, only_id) {
            (Some(which), None) => fleet::resolve(url, which).and_then(|id| {
                only_id = Some(id);
                fleet::lease(url, only_id, &worker)
            }),
            _ => fleet::lease(url, only_id, &worker),
        };
        let next = match leased {
            Ok(next) => next,
            // The server restarting: a worker between shards waits for it.
            Err(e @ StoreError::Postgres(_)) => {
                let since = *unreachable_since.get_or_insert_with(Instant::now);
                if since.elapsed() > UNREACHABLE_FOR {
                    return Err(e.into());
                }
                pause(Duration::from_secs(1), stop);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        unreachable_since = None;
        match next {
            Next::AllDone => {
                eprintln!("prtip: fleet: every shard is done");
                return Ok(Outcome::Completed);
            }
            Next::Wait(until) => pause(until.clamp(Duration::from_millis(100), Duration::from_secs(1)), stop),
            Next::Leased(lease) => {
                match scan_shard(url, *lease, options, &worker, stop) {
                    Ok(Outcome::Completed) => {}
                    Ok(Outcome::Interrupted) => return Ok(Outcome::Interrupted),
                    // This worker was too slow for its lease: the shard is
                    // another's now, and there are others to take.
                    Err(FleetError::Scan(ScanError::Store(e @ StoreError::LeaseLost { .. }))) => {
                        stop.clear_abandoned();
                        eprintln!("prtip: {e}; taking the next shard");
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

fn pause(time: Duration, stop: &StopSignal) {
    let end = Instant::now() + time;
    while Instant::now() < end && !stop.stop_sending() {
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn scan_shard(
    url: &str,
    lease: Lease,
    options: &[String],
    worker: &str,
    stop: &'static StopSignal,
) -> Result<Outcome, FleetError> {
    let (fleet_id, shard_no, lease_no) = (lease.fleet.id, lease.shard, lease.lease_no);
    // A shard this worker cannot scan (its options, its interface) is held
    // by no one: the next worker takes it at once.
    let release = |e: FleetError| {
        if let Err(why) = fleet::release(url, fleet_id, shard_no, lease_no) {
            eprintln!("prtip: fleet {fleet_id}: shard {shard_no} stays leased until its lease runs out: {why}");
        }
        e
    };
    let config = shard_scan(url, lease, options, worker).map_err(release)?;
    let scan = crate::scan::prepare(&config).map_err(|e| release(e.into()))?;
    scan.notes.print();
    let report = scan.run(stop)?;
    report.notes.print();
    Ok(report.outcome)
}

/// The configuration that scans a leased shard with this worker's `options`.
fn shard_scan(url: &str, lease: Lease, options: &[String], worker: &str) -> Result<ScanConfig, FleetError> {
    let Lease { fleet, shard, lease_no, scan_id, checkpoint, prior } = lease;
    let mut arguments = fleet.arguments.clone();
    arguments.extend(options.iter().cloned());
    arguments.extend(["--shard".into(), format!("{shard}/{}", fleet.shards), "--seed".into(), fleet.seed.to_string()]);
    let (matches, _) = given(&arguments)?;
    let cli = Cli::from_arg_matches(&matches).map_err(|e| FleetError::Arguments(clap_error_line(&e)))?;
    let hosts = checkpoint::hosts_from_json(&fleet.hosts).map_err(FleetError::Hosts)?;
    let now = cli.targets()?;
    let skipped = hosts.outside(&now.probed);
    let mut config = cli.into_config(arguments, Some(hosts))?;
    config.seed = fleet.seed;
    config.postgres = Some(url.to_string());
    config.fleet = Some(crate::store::FleetShard {
        fleet_id: fleet.id,
        shard,
        scan_id,
        worker: worker.to_string(),
        lease: fleet.lease,
        lease_no,
    });
    let (id, of) = (fleet.id, fleet.shards);
    match checkpoint {
        Some((cursor, sent)) => {
            eprintln!(
                "prtip: fleet {id}: resuming shard {shard}/{of} at probe {} of pass {}, after {sent} probes and {} results",
                cursor.position,
                cursor.pass,
                prior.len()
            );
            config.resume = Some(Resume { cursor, sent, prior, scan_id: None, file: None, skipped });
        }
        None => eprintln!("prtip: fleet {id}: scanning shard {shard}/{of}"),
    }
    Ok(config)
}

fn status(url: &str, only: Option<&str>) -> Result<(), FleetError> {
    let only = only.map(|which| fleet::resolve(url, which)).transpose()?;
    let shards = fleet::status(url, only)?;
    println!(
        "{:>5}  {:>9}  {:<6}  {:<24}  {:>7}  {:>6}  {:>6}  {:>12}  {:>10}  {:>10}",
        "FLEET", "SHARD", "STATUS", "WORKER", "LEASE", "LEASES", "SCAN", "SENT", "RESULTS", "PROBES/S"
    );
    for s in shards {
        let lease = match (s.status.as_str(), s.lease_left) {
            ("leased", Some(left)) if left < 0.0 => "expired".to_string(),
            ("leased", Some(left)) => format!("{left:.0} s"),
            _ => "-".to_string(),
        };
        let rate = s.seconds.filter(|&t| t > 0.0).map_or("-".to_string(), |t| format!("{:.0}", s.sent as f64 / t));
        println!(
            "{:>5}  {:>9}  {:<6}  {:<24}  {:>7}  {:>6}  {:>6}  {:>12}  {:>10}  {:>10}",
            s.fleet_id,
            format!("{}/{}", s.shard, s.shards),
            s.status,
            s.worker.as_deref().unwrap_or("-"),
            lease,
            s.leases,
            s.scan_id.map_or("-".to_string(), |id| id.to_string()),
            s.sent,
            s.results,
            rate
        );
    }
    Ok(())
}
