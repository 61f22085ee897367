use prtip::cli::{Cli, normalize_args, parse_or_exit};
use prtip::engine::run::StopSignal;
use prtip::scan::{Outcome, execute};
use std::process::ExitCode;

static STOP: StopSignal = StopSignal::new();

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "db") {
        return prtip::db_command::main(&args[2..]);
    }
    if args.get(1).is_some_and(|a| a == "report") {
        return prtip::report_command::main(&args[2..]);
    }
    let command_line = args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ");
    let cli: Cli = match parse_or_exit(normalize_args(args)) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let config = match cli.into_config(command_line) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("prtip: error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = install_signal_handlers() {
        eprintln!("prtip: error: installing signal handlers: {e}");
        return ExitCode::from(1);
    }
    match execute(&config, &STOP) {
        Ok(Outcome::Completed) => ExitCode::SUCCESS,
        Ok(Outcome::Interrupted) => ExitCode::from(130),
        Err(e) => {
            // Every error's message already names its cause.
            eprintln!("prtip: error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Ctrl-C or SIGTERM stops sending; a second one also stops waiting for replies.
fn install_signal_handlers() -> std::io::Result<()> {
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // SAFETY: the handler only increments an atomic counter, which is async-signal-safe.
        unsafe { signal_hook::low_level::register(signal, || STOP.request()) }?;
    }
    Ok(())
}
