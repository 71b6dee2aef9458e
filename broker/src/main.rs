//! `strata-broker`: runs a Strata broker until SIGTERM or SIGINT.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use strata_broker::process::{Args, main as run_broker};
use strata_storage::RealIo;

fn main() -> ExitCode {
    run_broker(&Args::parse(), Arc::new(RealIo))
}
