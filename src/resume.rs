//! `prtip --resume`: turns an interrupted scan's checkpoint back into the
//! configuration it ran with, refusing settings that contradict it.

use crate::cli::{Cli, clap_error_line, normalize_args};
use crate::commands::DEFAULT_DATABASE;
use crate::config::{ConfigError, Resume, ScanConfig};
use crate::store::StoreError;
use crate::store::checkpoint::{self, Checkpoint, CheckpointError};
use crate::store::db::Db;
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};
use std::ffi::OsString;
use std::path::PathBuf;
use thiserror::Error;

/// Options that may differ from the interrupted run's: they change what is
/// printed on standard error, not what is scanned or stored.
const FREE: [&str; 4] = ["resume", "verbose", "quiet", "status_json"];
/// Also free when the checkpoint is in a database: they name it.
const FREE_WITH_DB: [&str; 2] = ["database", "with_db"];

#[derive(Debug, Error)]
pub enum ResumeError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the checkpoint's arguments no longer parse: {0}")]
    Arguments(String),
    #[error("{option} {given} contradicts the interrupted scan's {stored}: leave it out to resume")]
    Contradicts { option: String, given: String, stored: String },
    #[error("{option} contradicts the interrupted scan, which ran without it: leave it out to resume")]
    FlagContradicts { option: String },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "the checkpoint's position (pass {pass}, probe {position}) lies outside its scan ({passes} passes of {per_pass} probes)"
    )]
    Cursor { pass: u32, position: u64, passes: u32, per_pass: u64 },
}

/// The configuration that finishes the scan `given` names with `--resume`.
/// `argv` is the command line `given` was parsed from, two-letter options normalized.
pub fn config(given: Cli, argv: &[OsString]) -> Result<ScanConfig, ResumeError> {
    let which = given.resume.clone().unwrap_or_default();
    let (checkpoint, prior, scan_id, file, database) = match which.parse::<i64>() {
        Ok(id) => {
            let path = given.database.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_DATABASE));
            let db = Db::open_existing(&path)?;
            (db.checkpoint(id)?, db.results(id, false)?, Some(id), None, Some(path))
        }
        Err(_) => {
            let path = if which.is_empty() { checkpoint::newest(&checkpoint::dir())? } else { PathBuf::from(which) };
            if checkpoint::in_use(&path) {
                return Err(CheckpointError::InUse(path).into());
            }
            let (checkpoint, prior) = checkpoint::load(&path)?;
            (checkpoint, prior, None, Some(path), None)
        }
    };
    let stored_argv =
        normalize_args(std::iter::once(OsString::from("prtip")).chain(checkpoint.arguments.iter().map(OsString::from)));
    let stored_matches =
        Cli::command().try_get_matches_from(&stored_argv).map_err(|e| ResumeError::Arguments(clap_error_line(&e)))?;
    let given_matches =
        Cli::command().try_get_matches_from(argv).map_err(|e| ResumeError::Arguments(clap_error_line(&e)))?;
    refuse_contradictions(&given_matches, &stored_matches, database.is_some())?;

    let mut stored = Cli::from_arg_matches(&stored_matches).map_err(|e| ResumeError::Arguments(clap_error_line(&e)))?;
    stored.quiet = given.quiet;
    stored.verbose = given.verbose;
    stored.status_json |= given.status_json;
    let Checkpoint { arguments, seed, hosts, cursor, sent } = checkpoint;
    let mut config = stored.into_config(arguments, Some(hosts))?;
    config.seed = seed;
    // A cursor outside the scan would skip probes or overflow the plan's arithmetic.
    let per_pass = config.shard.probes_of(config.space.len());
    let inside = cursor.position <= per_pass
        && (cursor.pass <= config.retries || (cursor.pass == config.retries + 1 && cursor.position == 0));
    if !inside {
        return Err(ResumeError::Cursor {
            pass: cursor.pass,
            position: cursor.position,
            passes: config.retries + 1,
            per_pass,
        });
    }
    if database.is_some() {
        config.database = database;
    }
    config.resume = Some(Resume { cursor, sent, prior, scan_id, file });
    Ok(config)
}

/// Every option given with `--resume` must say what the interrupted run said.
fn refuse_contradictions(given: &clap::ArgMatches, stored: &clap::ArgMatches, in_db: bool) -> Result<(), ResumeError> {
    let raw = |m: &clap::ArgMatches, id: &str| -> Vec<OsString> {
        m.try_get_raw(id).ok().flatten().map(|v| v.map(OsString::from).collect()).unwrap_or_default()
    };
    let cmd = Cli::command();
    // Groups are skipped: their values are their members'.
    for arg in given.ids().filter_map(|id| cmd.get_arguments().find(|a| a.get_id() == id)) {
        let id = arg.get_id().as_str();
        let free = FREE.contains(&id) || (in_db && FREE_WITH_DB.contains(&id));
        if free || given.value_source(id) != Some(ValueSource::CommandLine) {
            continue;
        }
        let (g, s) = (raw(given, id), raw(stored, id));
        if g != s {
            let option = arg.get_long().map_or_else(|| id.to_uppercase(), |l| format!("--{l}"));
            if !arg.get_action().takes_values() {
                return Err(ResumeError::FlagContradicts { option });
            }
            let text = |v: &[OsString]| {
                let joined = v.iter().map(|s| s.to_string_lossy()).collect::<Vec<_>>().join(" ");
                if joined.is_empty() { "(not given)".to_string() } else { joined }
            };
            return Err(ResumeError::Contradicts { option, given: text(&g), stored: text(&s) });
        }
    }
    Ok(())
}
