//! `targeting`: see `targeting --help`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = jobs::cli::Cli::parse();
    match jobs::cli::main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The one place a failure is reported: one line, secrets already redacted.
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
