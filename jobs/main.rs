//! `targeting`: see `targeting --help`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = jobs::cli::Cli::parse();
    match jobs::cli::main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The one place a failure is reported: one line, secrets already redacted; broken
            // campaign files get one line per problem (plus a rule and its caret).
            match e.downcast_ref::<jobs::cli::CampaignProblems>() {
                Some(p) => {
                    eprintln!("error: {} problem(s) in campaign files:\n{p}", p.0.len());
                }
                None => eprintln!("error: {}", format!("{e:#}").replace('\n', " ")),
            }
            ExitCode::FAILURE
        }
    }
}
