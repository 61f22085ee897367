//! The subcommands other than the scan itself: each reads what a scan
//! left (`db`, `report`) or what the machine offers (`doctor`), and ends
//! with the exit status `exit_status` gives.

pub mod db;
pub mod doctor;
pub mod fleet;
pub mod merge;
pub mod report;

use std::process::ExitCode;

/// The database `--with-db`, `db` and `report` use when no `--database` is given.
pub const DEFAULT_DATABASE: &str = "prtip.db";

/// How a command that reads or prints ends: 0; 2 when the user named
/// something wrong (`usage`); 1 otherwise, with the error on one line. A
/// closed standard output (`| head`) is not an error.
pub fn exit_status<E: std::fmt::Display>(
    result: Result<(), E>,
    usage: impl Fn(&E) -> bool,
    broken_pipe: impl Fn(&E) -> bool,
) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("prtip: error: {e}");
            ExitCode::from(if usage(&e) { 2 } else { 1 })
        }
    }
}
