//! `strata`: the Strata command-line tool, for operators and developers (compare
//! `kafka-topics.sh`, `kafka-console-producer.sh`, `kafka-console-consumer.sh`, `rpk`).
//!
//! # Goals and non-goals
//! - Goals: every command talks to the cluster only through `strata-client`; messages
//!   say what went wrong and what to do; exit codes are 0 (success), 1 (runtime error)
//!   and 2 (usage error, from clap).
//!
//! # Layout
//! - `main`: arguments (and the checks of `--bootstrap` and group ids), runtime, exit
//!   codes, `completion`.
//! - `error`: the CLI's error type and how client errors are worded.
//! - `output`: table and JSON rendering.
//! - `topic`, `partition`, `group`, `cluster`, `produce`, `consume`, `bench`: one module
//!   per command.

mod bench;
mod cluster;
mod consume;
mod error;
mod group;
mod output;
mod partition;
mod produce;
mod topic;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use clap_complete::Shell;
use strata_client::protocol::limits::GROUP_ID_BYTES_MAX;

use crate::error::CliError;

/// Manage and exercise a Strata cluster: topics, partition leaders, consumer groups,
/// cluster status, console produce and consume, bench.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about)]
struct Args {
    /// Broker address(es) to bootstrap from, comma-separated `host:port`.
    #[arg(
        short = 'b',
        long,
        visible_alias = "bootstrap-server",
        global = true,
        env = "STRATA_BOOTSTRAP",
        default_value = "127.0.0.1:9400",
        value_name = "HOST:PORT[,HOST:PORT...]",
        value_parser = parse_bootstrap
    )]
    bootstrap: String,
    #[command(subcommand)]
    command: Command,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns for people (`text` is the same).
    #[value(alias = "text")]
    Table,
    /// JSON for scripts.
    Json,
}

/// `--output`, on the commands that print results (`topic`, `partition`, `group`,
/// `cluster`, `bench` and their subcommands); `produce` and `consume` read and write raw
/// lines instead.
#[derive(Debug, Clone, Copy, clap::Args)]
struct OutputArg {
    /// How results are printed: a table for people or JSON for scripts.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, list, describe, alter and delete topics.
    Topic {
        #[command(flatten)]
        output: OutputArg,
        #[command(subcommand)]
        command: topic::TopicCommand,
    },
    /// Elect partition leaders: preferred, or unclean for a partition without one.
    Partition {
        #[command(flatten)]
        output: OutputArg,
        #[command(subcommand)]
        command: partition::PartitionCommand,
    },
    /// List, describe, reset the offsets of, and delete consumer groups.
    Group {
        #[command(flatten)]
        output: OutputArg,
        #[command(subcommand)]
        command: group::GroupCommand,
    },
    /// Show the cluster's state: controller quorum, brokers, partition counts.
    Cluster {
        #[command(flatten)]
        output: OutputArg,
        #[command(subcommand)]
        command: cluster::ClusterCommand,
    },
    /// Produce one record per line of stdin.
    Produce(produce::ProduceArgs),
    /// Print records of a topic, one per line.
    Consume(consume::ConsumeArgs),
    /// Measure throughput and latency.
    Bench {
        #[command(flatten)]
        output: OutputArg,
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
    /// Print a shell completion script, e.g. `strata completion bash > /etc/bash_completion.d/strata`.
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: Shell,
    },
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
        Command::Topic { output, command } => topic::run(bootstrap, output.output, command).await,
        Command::Partition { output, command } => {
            partition::run(bootstrap, output.output, command).await
        }
        Command::Group { output, command } => group::run(bootstrap, output.output, command).await,
        Command::Cluster { output, command } => {
            cluster::run(bootstrap, output.output, command).await
        }
        Command::Produce(produce) => produce::run(bootstrap, produce).await,
        Command::Consume(consume) => consume::run(bootstrap, consume).await,
        Command::Bench { output, command } => bench::run(bootstrap, output.output, command).await,
        Command::Completion { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Args::command(), "strata", &mut script);
            output::print(&String::from_utf8_lossy(&script))
        }
    }
}

/// `--bootstrap`: a comma-separated list of `host:port`, each checked here so that a
/// missing port or a name that does not resolve is an argument error naming the flag,
/// not a connection retried until it times out. Returns the list as given.
fn parse_bootstrap(text: &str) -> Result<String, String> {
    let addresses: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|address| !address.is_empty())
        .collect();
    if addresses.is_empty() {
        return Err("no broker address given: write host:port, e.g. 127.0.0.1:9400".into());
    }
    for address in &addresses {
        check_address(address)?;
    }
    Ok(addresses.join(","))
}

/// One `host:port`: a port from 1 to 65535 and a host name that resolves.
fn check_address(address: &str) -> Result<(), String> {
    let missing_port = || {
        format!(
            "'{address}' has no port: write host:port, e.g. {address}:9400 (9400 is the broker's default)"
        )
    };
    // A bare IPv6 address is all colons; with a port it is written [::1]:9400.
    if address.parse::<std::net::Ipv6Addr>().is_ok() {
        return Err(format!(
            "'{address}' has no port: write an IPv6 address as [{address}]:9400"
        ));
    }
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(missing_port());
    };
    if port.is_empty() {
        return Err(missing_port());
    }
    let port: u16 =
        port.parse().ok().filter(|&port| port != 0).ok_or_else(|| {
            format!("'{address}': the port '{port}' is not a number from 1 to 65535")
        })?;
    let host = host
        .strip_prefix('[')
        .and_then(|host| host.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err(format!(
            "'{address}' has no host: write host:port, e.g. 127.0.0.1:{port}"
        ));
    }
    match std::net::ToSocketAddrs::to_socket_addrs(&(host, port)) {
        Ok(mut resolved) => match resolved.next() {
            Some(_) => Ok(()),
            None => Err(format!(
                "the host name '{host}' did not resolve to any address"
            )),
        },
        Err(error) => Err(format!("the host name '{host}' did not resolve: {error}")),
    }
}

/// A consumer group id: 1 to `GROUP_ID_BYTES_MAX` bytes, checked here so that a bad id
/// is an argument error naming the argument rather than a client configuration error.
pub fn parse_group_id(text: &str) -> Result<String, String> {
    let bytes = text.len();
    if bytes == 0 || bytes > GROUP_ID_BYTES_MAX {
        return Err(format!(
            "a group id is 1 to {GROUP_ID_BYTES_MAX} bytes, this one is {bytes}"
        ));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn bootstrap_has_short_and_kafka_spellings() {
        for flag in ["-b", "--bootstrap", "--bootstrap-server"] {
            let args = Args::try_parse_from(["strata", flag, "127.0.0.1:9500", "topic", "list"])
                .unwrap_or_else(|error| panic!("{flag}: {error}"));
            assert_eq!(args.bootstrap, "127.0.0.1:9500");
        }
    }

    #[test]
    fn output_belongs_to_the_commands_that_print_results() {
        let parse = |argv: &[&str]| Args::try_parse_from(argv);
        assert!(parse(&["strata", "topic", "list", "--output", "json"]).is_ok());
        assert!(parse(&["strata", "topic", "--output", "json", "list"]).is_ok());
        assert!(parse(&["strata", "group", "list", "--output", "json"]).is_ok());
        assert!(parse(&["strata", "cluster", "status", "--output", "json"]).is_ok());
        assert!(parse(&["strata", "partition", "elect", "t", "--output", "json"]).is_ok());
        assert!(parse(&["strata", "cluster", "status", "--output", "text"]).is_ok());
        assert!(parse(&["strata", "bench", "produce", "--output", "json"]).is_ok());
        assert!(parse(&["strata", "--output", "json", "topic", "list"]).is_err());
        assert!(parse(&["strata", "produce", "t", "--output", "json"]).is_err());
        assert!(parse(&["strata", "consume", "t", "--output", "json"]).is_err());
        assert!(parse(&["strata", "bench", "produce", "--json"]).is_err());
    }

    #[test]
    fn bootstrap_addresses_need_a_port_and_a_host() {
        assert_eq!(
            parse_bootstrap(" 127.0.0.1:9400, localhost:9401 ,"),
            Ok("127.0.0.1:9400,localhost:9401".into())
        );
        assert_eq!(parse_bootstrap("[::1]:9400"), Ok("[::1]:9400".into()));
        for (text, message) in [
            ("127.0.0.1", "'127.0.0.1' has no port"),
            ("127.0.0.1:", "'127.0.0.1:' has no port"),
            ("::1", "write an IPv6 address as [::1]:9400"),
            (
                "127.0.0.1:http",
                "the port 'http' is not a number from 1 to 65535",
            ),
            ("127.0.0.1:0", "the port '0' is not a number"),
            (":9400", "has no host"),
            (",", "no broker address given"),
        ] {
            let error = parse_bootstrap(text).expect_err(text);
            assert!(error.contains(message), "{text}: {error}");
        }
    }

    #[test]
    fn group_ids_are_1_to_255_bytes() {
        assert_eq!(parse_group_id("billing"), Ok("billing".into()));
        assert!(parse_group_id(&"g".repeat(GROUP_ID_BYTES_MAX)).is_ok());
        let long = parse_group_id(&"g".repeat(GROUP_ID_BYTES_MAX + 1)).unwrap_err();
        assert_eq!(long, "a group id is 1 to 255 bytes, this one is 256");
        assert!(parse_group_id("").is_err());
    }
}
