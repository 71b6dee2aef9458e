//! `strata`: the Strata command-line tool, for operators and developers (compare
//! `kafka-topics.sh`, `kafka-console-producer.sh`, `kafka-console-consumer.sh`, `rpk`).
//!
//! # Goals and non-goals
//! - Goals: every command talks to the cluster only through `strata-client`; messages
//!   say what went wrong and what to do; exit codes are 0 (success), 1 (runtime error)
//!   and 2 (usage error, from clap).
//! - Not yet: `cluster` commands (need clustering).
//!
//! # Layout
//! - `main`: arguments, runtime, exit codes.
//! - `error`: the CLI's error type and how client errors are worded.
//! - `output`: table and JSON rendering.
//! - `topic`, `group`, `produce`, `consume`, `bench`: one module per command.

mod bench;
mod consume;
mod error;
mod group;
mod output;
mod produce;
mod topic;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::error::CliError;

/// Manage and exercise a Strata cluster: topics, consumer groups, console produce and
/// consume, bench.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about)]
struct Args {
    /// Broker address(es) to bootstrap from, comma-separated `host:port`.
    #[arg(
        long,
        global = true,
        env = "STRATA_BOOTSTRAP",
        default_value = "127.0.0.1:9400"
    )]
    bootstrap: String,
    /// How `topic`, `group` and `bench` commands print their results. `produce` and `consume`
    /// always read and write raw lines.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// JSON for scripts.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, list, describe, alter and delete topics.
    #[command(subcommand)]
    Topic(topic::TopicCommand),
    /// List, describe, reset the offsets of, and delete consumer groups.
    #[command(subcommand)]
    Group(group::GroupCommand),
    /// Produce one record per line of stdin.
    Produce(produce::ProduceArgs),
    /// Print records of a topic, one per line.
    Consume(consume::ConsumeArgs),
    /// Measure throughput and latency.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(args));
    // Blocking stdin reads may still sit on a runtime thread; don't wait for them.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`strata consume ... | head`): not an error.
        Err(CliError::StdoutClosed) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), CliError> {
    let bootstrap = args.bootstrap.as_str();
    match args.command {
        Command::Topic(command) => topic::run(bootstrap, args.output, command).await,
        Command::Group(command) => group::run(bootstrap, args.output, command).await,
        Command::Produce(produce) => produce::run(bootstrap, produce).await,
        Command::Consume(consume) => consume::run(bootstrap, consume).await,
        Command::Bench(command) => bench::run(bootstrap, args.output, command).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn arguments_are_consistent() {
        Args::command().debug_assert();
    }
}
