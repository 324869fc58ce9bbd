//! `cpe-provision`: the carrier's command line for institution certificates.
//!
//! A thin shell over the `cpe_provision` library: parse arguments, read the
//! clock, read and write files, print what was done. Exit status 0 on
//! success, 1 on a refusal or any other error (the message says what to do
//! next), 2 when the command could not run: a usage error (from clap) or a
//! store that cannot be opened.
#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

use clap::Parser;
use time::OffsetDateTime;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli::run(cli, OffsetDateTime::now_utc()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            if err.downcast_ref::<cli::support::CouldNotRun>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
