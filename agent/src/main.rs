//! `cpe-agent`: the command line of the CPE agent. Parsing and printing only;
//! the work is done by the `cpe_agent` library.
#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(&args);
    cli::run(&args)
}
