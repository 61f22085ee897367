//! `prtip --resume`: turns an interrupted scan's checkpoint back into the
//! configuration it ran with, refusing settings that contradict it.

use crate::cli::{Cli, Targets, clap_error_line, normalize_args};
use crate::commands::DEFAULT_DATABASE;
use crate::config::{ConfigError, Resume, ScanConfig};
use crate::store::StoreError;
use crate::store::checkpoint::{self, Checkpoint, CheckpointError};
use crate::store::db::Db;
use crate::target::hosts::{AddrRange, Hosts};
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
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
    #[error("the checkpoint's arguments hold --dry-run or --resume, which no scan that leaves a checkpoint runs with")]
    NotAScansArguments,
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
    #[error("reading the interrupted scan's targets again: {0}")]
    TargetsAgain(ConfigError),
    #[error(
        "the checkpoint's hosts include {range}, which its targets{now} do not name: refused, as it is no checkpoint of that scan"
    )]
    OutsideTargets { range: String, now: String },
    #[error(
        "the interrupted scan read its {what} from standard input: give it again there to resume (prtip --resume ... < FILE)"
    )]
    StandardInput { what: &'static str },
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
    // No scan that leaves a checkpoint runs with these: the checkpoint was made by hand.
    if stored.dry_run || stored.resume.is_some() {
        return Err(ResumeError::NotAScansArguments);
    }
    stored.quiet = given.quiet;
    stored.verbose = given.verbose;
    stored.status_json |= given.status_json;
    let Checkpoint { arguments, seed, hosts, cursor, sent, .. } = checkpoint;
    for (list, what) in [(&stored.input_list, "target list"), (&stored.exclude_file, "exclude file")] {
        if list.as_deref() == Some(Path::new("-")) && std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            return Err(ResumeError::StandardInput { what });
        }
    }
    let now = stored.targets().map_err(ResumeError::TargetsAgain)?;
    let skipped = recheck(&hosts, &now).map_err(|outside| ResumeError::OutsideTargets {
        range: match outside.range.first == outside.range.last {
            true => outside.first().to_string(),
            false => format!("{}-{}", outside.first(), outside.last()),
        },
        now: read_again(&stored, &now),
    })?;
    let mut config = stored.into_config(arguments, Some(hosts))?;
    config.seed = seed;
    // A cursor outside the scan would skip probes or overflow the plan's
    // arithmetic. One of a version that retried in passes (pass 1 or later)
    // starts over; its pass is kept within what that version wrote.
    let per_pass = config.shard.probes_of(config.space.len());
    let inside = cursor.position <= per_pass && cursor.pass <= 2 * config.retries + 2;
    if !inside {
        return Err(ResumeError::Cursor {
            pass: cursor.pass,
            position: cursor.position,
            passes: 2 * config.retries + 3,
            per_pass,
        });
    }
    if database.is_some() {
        config.database = database;
    }
    config.resume = Some(Resume { cursor, sent, prior, scan_id, file, skipped });
    Ok(config)
}

/// Holds a checkpoint's hosts against what its target options name `now`.
/// A host no target names means the checkpoint is not that scan's: the
/// first such range is the error. Otherwise, the saved hosts a fresh scan
/// would not probe now (an exclusion added since, a special-purpose range):
/// they keep their place in the scan, which the cursor counts on, and are skipped.
fn recheck(saved: &Hosts, now: &Targets) -> Result<Hosts, AddrRange> {
    match saved.outside(&now.named).ranges().next() {
        Some(outside) => Err(outside),
        None => Ok(saved.outside(&now.probed)),
    }
}

/// What the targets of a refused checkpoint were read from again, for its error line.
fn read_again(stored: &Cli, now: &Targets) -> String {
    let list = stored.input_list.as_ref().map(|l| format!("{} as it reads now", l.display()));
    let names = now.hostnames.then(|| "hostnames as they resolve now".to_string());
    let parts: Vec<String> = list.into_iter().chain(names).collect();
    if parts.is_empty() { String::new() } else { format!(" ({})", parts.join(", ")) }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::hosts::Family;
    use crate::target::ranges::{Range, RangeSet};
    use clap::Parser;

    fn targets(args: &[&str]) -> Targets {
        Cli::try_parse_from(std::iter::once("prtip").chain(args.iter().copied())).unwrap().targets().unwrap()
    }

    fn v4(ranges: &[(&str, &str)]) -> Hosts {
        let value = |a: &str| u128::from(u32::from(a.parse::<std::net::Ipv4Addr>().unwrap()));
        Hosts::new(
            Family::V4,
            RangeSet::from_ranges(ranges.iter().map(|(a, b)| Range::new(value(a), value(b))).collect()),
        )
    }

    #[test]
    fn saved_hosts_excluded_now_are_skipped_and_kept_in_the_scan() {
        let saved = v4(&[("10.9.0.0", "10.9.0.255")]);
        let now = targets(&["10.9.0.0/24"]);
        assert_eq!(recheck(&saved, &now), Ok(v4(&[])));
        let now = targets(&["10.9.0.0/24", "--exclude", "10.9.0.7,10.9.0.128/25", "--exclude", "10.10.0.1"]);
        assert_eq!(recheck(&saved, &now), Ok(v4(&[("10.9.0.7", "10.9.0.7"), ("10.9.0.128", "10.9.0.255")])));
        // Everything excluded: the resumed scan sends nothing more, and ends.
        let now = targets(&["10.9.0.0/24", "--exclude", "10.9.0.0/16"]);
        assert_eq!(recheck(&saved, &now), Ok(saved.clone()));
    }

    #[test]
    fn saved_hosts_in_a_special_range_a_target_merely_overlaps_are_skipped() {
        // The target crosses into 10.0.0.0/8, which a fresh scan of it leaves out.
        let saved = v4(&[("9.255.255.250", "10.0.0.3")]);
        let now = targets(&["9.255.255.0-10.0.0.255"]);
        assert_eq!(recheck(&saved, &now), Ok(v4(&[("10.0.0.0", "10.0.0.3")])));
        let now = targets(&["9.255.255.0-10.0.0.255", "--no-default-excludes"]);
        assert_eq!(recheck(&saved, &now), Ok(v4(&[])));
    }

    #[test]
    fn saved_hosts_outside_the_targets_refuse_the_checkpoint() {
        let saved = v4(&[("10.9.0.0", "10.9.0.255"), ("10.77.0.1", "10.77.0.2")]);
        let outside = recheck(&saved, &targets(&["10.9.0.0/24"])).unwrap_err();
        assert_eq!((outside.first().to_string(), outside.last().to_string()), ("10.77.0.1".into(), "10.77.0.2".into()));
        // Excluding a host does not make it a target.
        let outside = recheck(&saved, &targets(&["10.9.0.0/24", "--exclude", "10.77.0.0/16"])).unwrap_err();
        assert_eq!(outside.first().to_string(), "10.77.0.1");
        // Targets now of the other family name none of the saved hosts.
        let outside = recheck(&saved, &targets(&["fd00::/64"])).unwrap_err();
        assert_eq!(outside.first().to_string(), "10.9.0.0");
        let error = ResumeError::OutsideTargets {
            range: "10.77.0.1-10.77.0.2".into(),
            now: read_again(
                &Cli::try_parse_from(["prtip", "--input-list", "t.txt"]).unwrap(),
                &Targets { hostnames: true, ..targets(&["10.9.0.0/24"]) },
            ),
        };
        assert_eq!(
            error.to_string(),
            "the checkpoint's hosts include 10.77.0.1-10.77.0.2, which its targets (t.txt as it reads now, hostnames as \
             they resolve now) do not name: refused, as it is no checkpoint of that scan"
        );
    }
}
