//! `strata-recorded-broker`: `strata-broker`, with the same flags and environment, over an
//! I/O layer that writes to a sync log what every fsync made durable, so that after a
//! `SIGKILL` `strata_tests::power_loss::apply` can drop what a power loss would have.
//! A test build only: the production `strata-broker` carries no such layer.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use strata_broker::process;
use strata_storage::RealIo;
use strata_tests::power_loss::{self, SyncRecorder};

/// A Strata broker that records every fsync to a sync log, for power-loss tests.
#[derive(Debug, Parser)]
#[command(name = "strata-recorded-broker", version)]
struct Flags {
    /// The sync log to write (replaced if it exists); `power_loss::apply` reads it.
    #[arg(long, env = power_loss::SYNC_LOG_VARIABLE, value_name = "PATH")]
    sync_log: PathBuf,
    #[command(flatten)]
    broker: process::Args,
}

fn main() -> ExitCode {
    let args = Flags::parse();
    // A configuration error is reported by the broker itself, as strata-broker reports it.
    let Ok(config) = args.broker.config() else {
        return process::main(&args.broker, Arc::new(RealIo));
    };
    match SyncRecorder::create(&args.sync_log, &config.data_dir) {
        Ok(recorder) => process::main(&args.broker, Arc::new(recorder)),
        Err(error) => {
            eprintln!(
                "strata-recorded-broker: cannot start the sync log {}: {error}",
                args.sync_log.display()
            );
            ExitCode::FAILURE
        }
    }
}
