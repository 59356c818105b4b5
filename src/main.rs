use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = match herdsman::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Help and version are not errors; every usage error exits 1, like any other bad input.
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    // The daemon (and `run`, which holds one) keeps SIGPIPE ignored and treats a closed output as an error.
    let client = !matches!(
        cli.command,
        herdsman::cli::Command::Daemon { .. }
            | herdsman::cli::Command::Run { .. }
            | herdsman::cli::Command::Controller { .. }
    );
    if client {
        // A client writing to a closed pipe (`herdsman schema | head`) ends quietly, as Unix tools do. The
        // daemon keeps SIGPIPE ignored: a client that goes away must not kill it.
        // SAFETY: setting a signal disposition before any thread is started.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("HERDSMAN_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match herdsman::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if client
                && e.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            // Not eprintln!, which panics when stderr is gone (a terminal that hung up).
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            ExitCode::from(1)
        }
    }
}
