#![deny(unsafe_code)]

use clap::CommandFactory;
use prtip::cli::{Cli, Command, normalize_args, parse_or_exit};
use prtip::engine::run::StopSignal;
use prtip::scan::Outcome;
use std::io::Write;
use std::process::ExitCode;

static STOP: StopSignal = StopSignal::new();

fn main() -> ExitCode {
    let typed: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let argv = normalize_args(typed.clone());
    let mut cli: Cli = match parse_or_exit(argv.clone()) {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    init_logging(cli.verbose);
    match cli.command.take() {
        Some(Command::Db(args)) => return prtip::commands::db::main(args),
        Some(Command::Report(args)) => return prtip::commands::report::main(args),
        Some(Command::Doctor(args)) => return prtip::commands::doctor::main(args),
        Some(Command::Fleet(args)) => return prtip::commands::fleet::main(args, &STOP),
        Some(Command::Completions { shell }) => {
            let mut cmd = Cli::command();
            cmd.set_bin_name("prtip");
            cmd.build();
            return print_with(|out| clap_complete::Generator::try_generate(&shell, &cmd, out));
        }
        Some(Command::Man) => return print_with(|out| clap_mangen::Man::new(Cli::command()).render(out)),
        None => {}
    }
    let config = if cli.resume.is_some() {
        prtip::resume::config(cli, &argv).map_err(|e| e.to_string())
    } else {
        let arguments = typed.iter().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
        cli.into_config(arguments, None).map_err(|e| e.to_string())
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("prtip: error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = STOP.stop_on_signals() {
        eprintln!("prtip: error: installing signal handlers: {e}");
        return ExitCode::from(1);
    }
    let scan = match prtip::scan::prepare(&config) {
        Ok(scan) => scan,
        Err(e) if e.is_bad_input() => {
            eprintln!("prtip: error: {e}");
            return ExitCode::from(2);
        }
        Err(e) => return failed(&e),
    };
    scan.notes.print();
    match scan.run(&STOP) {
        Ok(report) => {
            report.notes.print();
            match report.outcome {
                Outcome::Completed => ExitCode::SUCCESS,
                Outcome::Interrupted => ExitCode::from(130),
            }
        }
        Err(e) => failed(&e),
    }
}

/// Every error's message already names its cause.
fn failed(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("prtip: error: {e}");
    ExitCode::from(1)
}

/// Writes generated text to standard output; a closed pipe (`| head`) is not an error.
fn print_with(write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match write(&mut out).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("prtip: error: writing to standard output: {e}");
            ExitCode::from(1)
        }
    }
}

/// Diagnostic logs on standard error: none by default (prtip's own lines say
/// what a user needs), `info` with -v, `debug` with -vv, `trace` with -vvv;
/// RUST_LOG, when set, decides instead.
fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "off",
        1 => "prtip=info",
        2 => "prtip=debug",
        _ => "prtip=trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
