//! `prtip db`: reads a database a user already has, with the same writers as a scan.

use crate::output::time::parse_rfc3339_us;
use crate::output::{self, Format, RunEnd, RunInfo};
use crate::store::StoreError;
use crate::store::db::{Db, ScanRow};
use crate::store::stored::{self, ScanRef, StoredScans};
use clap::{Args, Subcommand, ValueEnum};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// `prtip db`: read scans stored with --with-db.
#[derive(Debug, Args)]
pub struct DbArgs {
    /// The database file [default: ./prtip.db]
    #[arg(long, global = true, value_name = "PATH")]
    database: Option<PathBuf>,

    #[command(subcommand)]
    command: DbCommand,
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// List the stored scans (and fleets)
    List {
        /// Read a PostgreSQL's scans instead (also from PRTIP_POSTGRES)
        #[arg(long, value_name = "URL", env = "PRTIP_POSTGRES", hide_env_values = true)]
        postgres: Option<String>,
    },
    /// Show one scan's results as text
    Show {
        /// The scan's id, or fleet:ID (fleet:NAME) for a fleet's shards as one scan
        scan_id: ScanRef,
        /// Read a PostgreSQL's scans instead (also from PRTIP_POSTGRES)
        #[arg(long, value_name = "URL", env = "PRTIP_POSTGRES", hide_env_values = true)]
        postgres: Option<String>,

        /// Only open ports
        #[arg(long)]
        open: bool,
    },
    /// Write one scan's results to standard output in a format
    Export {
        /// The scan's id, or fleet:ID (fleet:NAME) for a fleet's shards as one scan
        scan_id: ScanRef,
        /// Read a PostgreSQL's scans instead (also from PRTIP_POSTGRES)
        #[arg(long, value_name = "URL", env = "PRTIP_POSTGRES", hide_env_values = true)]
        postgres: Option<String>,

        #[arg(short = 'o', long = "output-format", value_enum, value_name = "FORMAT")]
        format: ExportFormat,
        /// Only open ports
        #[arg(long)]
        open: bool,
    },
    /// Replay the journal a killed scan left, and check the database; with
    /// --postgres, store what killed scans' journals held in PostgreSQL
    Recover {
        /// The PostgreSQL the scans stored into (also from PRTIP_POSTGRES)
        #[arg(long, value_name = "URL", env = "PRTIP_POSTGRES", hide_env_values = true)]
        postgres: Option<String>,
    },
    /// Merge the databases of a sharded scan's shards (one completed shard
    /// each, --shard 1/N to N/N) into one scan of OUT
    Merge {
        /// The database the merged scan goes to (created if need be)
        out: PathBuf,
        /// The shards' databases
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Text,
    Ndjson,
    Xml,
    Grepable,
    Csv,
}

#[derive(Debug, thiserror::Error)]
enum DbCommandError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing: {0}")]
    Output(#[from] io::Error),
    #[error(transparent)]
    Merge(#[from] super::merge::MergeError),
    #[error("db merge writes to OUT from its INPUTS: --database names neither")]
    MergeDatabase,
}

/// Runs `prtip db`.
pub fn main(args: DbArgs) -> ExitCode {
    super::exit_status(
        run(args),
        |e| match e {
            DbCommandError::Store(e) => e.names_the_wrong_database(),
            DbCommandError::Merge(e) => e.is_bad_input(),
            DbCommandError::MergeDatabase => true,
            DbCommandError::Output(_) => false,
        },
        |e| matches!(e, DbCommandError::Output(e) if e.kind() == io::ErrorKind::BrokenPipe),
    )
}

fn run(cli: DbArgs) -> Result<(), DbCommandError> {
    let mut out = BufWriter::new(io::stdout().lock());
    let postgres = match &cli.command {
        DbCommand::List { postgres }
        | DbCommand::Show { postgres, .. }
        | DbCommand::Export { postgres, .. }
        | DbCommand::Recover { postgres } => crate::cli::postgres_to_read(postgres, cli.database.as_deref())?,
        DbCommand::Merge { .. } => None,
    };
    let read = || stored::open(cli.database.as_deref(), postgres.as_deref());
    let database = cli.database.clone().unwrap_or_else(|| PathBuf::from(super::DEFAULT_DATABASE));
    match &cli.command {
        DbCommand::List { .. } => {
            let db = read()?;
            writeln!(
                out,
                "{:>5}  {:<27}  {:<11}  {:>10}  {:>8}  {:>8}  {:>8}  COMMAND",
                "ID", "STARTED", "STATUS", "PROBES", "OPEN", "CLOSED", "FILTERED"
            )?;
            for (id, s) in db.list()? {
                let id = match id {
                    ScanRef::Scan(id) => id.to_string(),
                    ScanRef::Fleet(fleet) => format!("fleet:{fleet}"),
                };
                writeln!(
                    out,
                    "{:>5}  {:<27}  {:<11}  {:>10}  {:>8}  {:>8}  {:>8}  {}",
                    id, s.started_at, s.status, s.probes_sent, s.open, s.closed, s.filtered, s.command_line
                )?;
            }
        }
        DbCommand::Show { scan_id, open, .. } => export(&*read()?, scan_id, Format::Text, *open, false, &mut out)?,
        DbCommand::Export { scan_id, format, open, .. } => {
            let format = match format {
                ExportFormat::Text => Format::Text,
                ExportFormat::Ndjson => Format::Ndjson,
                ExportFormat::Xml => Format::Xml,
                ExportFormat::Grepable => Format::Grepable,
                ExportFormat::Csv => Format::Csv,
            };
            export(&*read()?, scan_id, format, *open, true, &mut out)?
        }
        DbCommand::Recover { .. } if let Some(url) = &postgres => {
            let recovered = crate::store::recover_postgres(url)?;
            for r in &recovered {
                match r.fleet_shard {
                    true => writeln!(
                        out,
                        "scan {}: {} removed: a fleet shard's, which its next worker scans again from its checkpoint",
                        r.scan_id,
                        r.journal.display()
                    )?,
                    false => writeln!(
                        out,
                        "scan {}: {} results restored from {}",
                        r.scan_id,
                        r.results,
                        r.journal.display()
                    )?,
                }
            }
            writeln!(out, "PostgreSQL: {} journals of killed scans recovered", recovered.len())?;
        }
        DbCommand::Recover { .. } => {
            let db = Db::open_existing(&database)?;
            let ok = db.integrity_ok()?;
            writeln!(
                out,
                "{}: {} results restored for scans that never finished; integrity check {}",
                database.display(),
                db.recovered(),
                if ok { "ok" } else { "FAILED" }
            )?;
            for line in db.damaged() {
                writeln!(out, "{line}")?;
            }
        }
        DbCommand::Merge { .. } if cli.database.is_some() => return Err(DbCommandError::MergeDatabase),
        DbCommand::Merge { out: merged, inputs } => {
            let (id, rows) = super::merge::merge(merged, inputs)?;
            writeln!(out, "{}: scan {id} merged from {} shards, {rows} results", merged.display(), inputs.len())?;
        }
    }
    out.flush()?;
    Ok(())
}

fn export(
    db: &dyn StoredScans,
    scan: &ScanRef,
    format: Format,
    open_only: bool,
    header: bool,
    out: &mut impl Write,
) -> Result<(), DbCommandError> {
    let row = db.scan(scan)?.ok_or_else(|| scan.not_found())?;
    let (mut info, mut end) = run_info(&row, db.config(scan)?);
    end.flagged = db.flagged(scan)?;
    let services = db.services(scan)?;
    info.banners = !services.is_empty();
    let mut writer = output::writer(format, out, &info, header);
    for r in db.results(scan, open_only)? {
        writer.write(&r, services.get(&(r.ip, r.port)))?;
    }
    writer.finish(&end)?;
    Ok(())
}

fn run_info(scan: &ScanRow, config: Option<serde_json::Value>) -> (RunInfo, RunEnd) {
    let start_us = parse_rfc3339_us(&scan.started_at).unwrap_or(0);
    let config = config.unwrap_or_default();
    let info = RunInfo {
        command_line: scan.command_line.clone(),
        // Scans stored before there were other types were SYN scans.
        scan_type: config["scan_type"].as_str().and_then(crate::probe::ScanType::parse).unwrap_or_default(),
        start_us,
        ports: config["ports"].as_str().unwrap_or("").to_string(),
        port_count: config["port_count"].as_u64().unwrap_or(0),
        hosts_total: config["hosts"].as_u64().unwrap_or(0),
        services: std::sync::Arc::new(crate::service_names::ServiceNames::system()),
        banners: false,
    };
    let end = RunEnd {
        end_us: scan.ended_at.as_deref().and_then(parse_rfc3339_us).unwrap_or(start_us),
        interrupted: scan.status != "completed",
        flagged: Vec::new(),
    };
    (info, end)
}
