//! `targeting`: see `targeting --help`.

use std::process::ExitCode;

use clap::Parser;

/// Heaps glibc's allocator may keep. By default every thread that allocates gets a heap of its
/// own, up to eight per core, and memory freed into one is not reused by the others: a nightly
/// run at 1M users, whose frames are built on one thread and dropped on another, peaked at
/// 1.1–1.3 GB that way against 0.79 GB with two, and spent less system time too (fewer pages
/// faulted in afresh). Small allocations still come from each thread's cache without a lock.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const HEAPS: libc::c_int = 2;

fn main() -> ExitCode {
    // Before any other thread starts, so that none has made a heap of its own yet.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a parameter of the allocator; no other thread exists yet.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, HEAPS);
    }
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
            // Codes a scheduler can act on: see `jobs/cli/exit.rs` and the README.
            ExitCode::from(jobs::cli::exit::code(&e))
        }
    }
}
