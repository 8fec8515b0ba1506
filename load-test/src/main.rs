//! `load-test [URL] [OPTIONS]`: parses the options, runs, and turns the verdict into the exit status.

use std::process::ExitCode;

use clap::Parser;
use load_test::{Options, Outcome};

/// Exit status when some check failed (contract, audit, validation phase or SLA).
const CHECKS_FAILED: u8 = 1;
/// Exit status when the run could not be made (clap uses 2 for bad options too).
const COULD_NOT_RUN: u8 = 2;

#[tokio::main]
async fn main() -> ExitCode {
    let options = Options::parse();
    match load_test::run(options).await {
        Ok(Outcome::Passed) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::from(CHECKS_FAILED),
        Err(error) => {
            eprintln!("load-test: {error}");
            ExitCode::from(COULD_NOT_RUN)
        }
    }
}
