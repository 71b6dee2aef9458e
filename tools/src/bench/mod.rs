//! `strata bench`: throughput and latency of producing, consuming, and both at once
//! (compare `kafka-producer-perf-test.sh` and `kafka-consumer-perf-test.sh`).
//!
//! - `produce`: `--producers` producers, each its own `Producer` (own connections),
//!   send keyless records; latency is from the `send` call to the acknowledgement.
//! - `consume`: `--consumers` consumers split the partitions and read from the log
//!   start; no latency (the records were written before the run).
//! - `e2e`: consumers take their positions at the log end, then producers write;
//!   latency is from each record's send, stamped in microseconds into the first 8 bytes
//!   of its value (as `nats-bench` does), to its receipt by a consumer.
//! - `metadata`: how long the cluster takes to create topics and to show them on every
//!   broker ([`metadata`]).
//!
//! Paced runs (`--rate`) also report the send delay: how late each send went out against
//! the schedule (the OpenMessaging Benchmark's publish delay). Latency is timed from the
//! actual send, so a run that could not hold its rate shows there. Every report also says
//! where the machine's CPU time went during the run (busy, steal, iowait, from
//! `/proc/stat`) and how many cores' worth the load tool itself used, over the same
//! window as the run's throughput: setup (topic, connections) is left out.

mod cpu;
mod metadata;
mod report;
mod stamp;
mod workers;

use std::time::Duration;

use clap::{Args, Subcommand};
use strata_client::{Admin, ClientConfig, NewTopic, ProducerConfig};

use crate::Output;
use crate::error::CliError;
use crate::produce::AcksArg;

/// Records a run sends when neither `--messages` nor `--duration` is given.
const MESSAGES_DEFAULT: u64 = 100_000;
/// Producers or consumers of one run.
const WORKERS_MAX: u32 = 256;
/// Largest `--batch-bytes`: the client's default `request_partition_bytes_max`, which a
/// batch may not exceed.
const BATCH_BYTES_MAX: u32 = 4 << 20;
/// Partitions of a topic the bench creates when `--partitions` is not given.
const PARTITIONS_DEFAULT: u32 = 3;

/// The `bench` subcommands.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Producer throughput and send-to-acknowledgement latency.
    Produce {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        producer: ProducerArgs,
    },
    /// Consumer throughput, reading the topic from its start.
    Consume {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        consumer: ConsumerArgs,
    },
    /// Produce and consume at once; latency from each record's send (stamped into the
    /// first 8 bytes of its value) to its receipt.
    E2e {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        producer: ProducerArgs,
        #[command(flatten)]
        consumer: ConsumerArgs,
    },
    /// Time to create a topic of many partitions and to create small topics one after
    /// another, until every broker's metadata shows them.
    Metadata(metadata::MetadataArgs),
}

/// Arguments every bench takes.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// The topic; `produce` and `e2e` create it with --partitions if it does not exist.
    #[arg(long, default_value = "strata-bench")]
    topic: String,
    /// Records to send (or read), in total [default: 100000 for produce and e2e, all
    /// the topic holds for consume; --duration replaces it].
    #[arg(long, conflicts_with = "duration", value_parser = clap::value_parser!(u64).range(1..))]
    messages: Option<u64>,
    /// Run for this long instead of a record count: 500ms, 10s, 2m.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Partitions of the topic, if the bench creates it [default: 3].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    partitions: Option<u32>,
}

/// Arguments of the producing side.
#[derive(Debug, Args)]
pub struct ProducerArgs {
    /// Bytes of each record's value.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    message_bytes: u32,
    /// Concurrent producers, each with its own connections.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(WORKERS_MAX)))]
    producers: u32,
    /// A batch is sealed before it grows past this many bytes [default: the client's].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(BATCH_BYTES_MAX)))]
    batch_bytes: Option<u32>,
    /// How long a batch waits for more records [default: the client's].
    #[arg(long)]
    linger_ms: Option<u64>,
    /// When the broker acknowledges a write.
    #[arg(long, value_enum, default_value_t = AcksArg::All)]
    acks: AcksArg,
    /// Produce without idempotence: one request in flight per partition, and a retry may
    /// write a batch twice.
    #[arg(long)]
    no_idempotence: bool,
    /// Records per second over all producers [default: as fast as possible].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    rate: Option<u64>,
}

/// Arguments of the consuming side.
#[derive(Debug, Args)]
pub struct ConsumerArgs {
    /// Concurrent consumers; the topic's partitions are split among them.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(WORKERS_MAX)))]
    consumers: u32,
}

/// When a run stops sending (or reading).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// After this many records in total.
    Messages(u64),
    /// After this long.
    Duration(Duration),
}

impl CommonArgs {
    fn budget(&self) -> Budget {
        match (self.messages, self.duration) {
            (_, Some(duration)) => Budget::Duration(duration),
            (Some(messages), None) => Budget::Messages(messages),
            (None, None) => Budget::Messages(MESSAGES_DEFAULT),
        }
    }
}

/// Runs one bench and prints its report.
///
/// # Errors
/// Topic setup failures, invalid producer settings, undelivered or missing records.
pub async fn run(bootstrap: &str, output: Output, command: BenchCommand) -> Result<(), CliError> {
    let (common, outcome) = match command {
        BenchCommand::Produce { common, producer } => {
            ensure_topic(bootstrap, &common, Create::IfMissing).await?;
            let config = producer_config(bootstrap, &producer);
            let outcome =
                workers::produce(&config, &common.topic, &producer, common.budget()).await?;
            (common, outcome)
        }
        BenchCommand::Consume { common, consumer } => {
            let partitions = ensure_topic(bootstrap, &common, Create::No).await?;
            let outcome = workers::consume(bootstrap, &common, &consumer, partitions).await?;
            (common, outcome)
        }
        BenchCommand::E2e {
            common,
            producer,
            consumer,
        } => {
            workers::check_stampable(&producer)?;
            if producer.rate.is_none() {
                eprintln!("{}", unpaced_e2e_warning(&common, &producer));
            }
            let partitions = ensure_topic(bootstrap, &common, Create::IfMissing).await?;
            let config = producer_config(bootstrap, &producer);
            let outcome = workers::e2e(&config, &common, &producer, &consumer, partitions).await?;
            (common, outcome)
        }
        BenchCommand::Metadata(args) => return metadata::run(bootstrap, output, args).await,
    };
    outcome.finish(&common.topic, output == Output::Json)
}

/// What `bench e2e` without `--rate` tells the user first: its producers send as fast as
/// they can, so its latencies are mostly time spent queued, and how much it will write.
fn unpaced_e2e_warning(common: &CommonArgs, producer: &ProducerArgs) -> String {
    let topic = &common.topic;
    let written = match common.budget() {
        Budget::Messages(messages) => format!(
            "about {} ({messages} records of {} bytes)",
            amount(messages.saturating_mul(u64::from(producer.message_bytes))),
            producer.message_bytes
        ),
        Budget::Duration(duration) => format!(
            "as much as the broker takes in {:?} ({} bytes a record)",
            duration, producer.message_bytes
        ),
    };
    format!(
        "warning: without --rate, bench e2e sends as fast as it can, so its latencies \
         measure queueing in the client and broker, not the latency of a sustainable load; \
         give --rate RECORDS_PER_SECOND to measure latency.\n\
         note: this run writes {written} to topic '{topic}', kept on disk until retention \
         removes it or `strata topic delete {topic}`."
    )
}

/// The producer settings of a run.
fn producer_config(bootstrap: &str, args: &ProducerArgs) -> ProducerConfig {
    let defaults = ProducerConfig::new(bootstrap);
    ProducerConfig {
        acks: args.acks.into(),
        linger_ms: args.linger_ms.unwrap_or(defaults.linger_ms),
        batch_bytes_max: args
            .batch_bytes
            .map_or(defaults.batch_bytes_max, |bytes| bytes as usize),
        idempotence: !args.no_idempotence,
        ..defaults
    }
}

/// Whether a bench may create its topic: writers may, a reader of an existing log may not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Create {
    IfMissing,
    No,
}

/// The topic's partition count, creating the topic first if it does not exist and
/// `create` allows it.
async fn ensure_topic(
    bootstrap: &str,
    common: &CommonArgs,
    create: Create,
) -> Result<u32, CliError> {
    let admin = Admin::new(ClientConfig::new(bootstrap))?;
    let topic = &common.topic;
    let existing = match admin.describe_topic(topic).await {
        Ok(description) => Some(description),
        Err(error) => match CliError::from_client(error, topic) {
            CliError::UnknownTopic(_) if create == Create::IfMissing => None,
            error => return Err(error),
        },
    };
    if let Some(description) = existing {
        let count = u32::try_from(description.partitions.len()).unwrap_or(u32::MAX);
        return match common.partitions {
            Some(wanted) if wanted != count => Err(CliError::Bench(format!(
                "topic '{topic}' exists with {count} partitions, not {wanted}; \
                 drop --partitions or pick another --topic"
            ))),
            _ => Ok(count),
        };
    }
    let count = common.partitions.unwrap_or(PARTITIONS_DEFAULT);
    admin
        .create_topic(NewTopic::new(topic, count))
        .await
        .map_err(|error| CliError::from_client(error, topic))?;
    Ok(count)
}

/// Bytes for people, in powers of 1000 as the reports count them: `12.8 kB`, `2.1 GB`.
fn amount(bytes: u64) -> String {
    let bytes_f = bytes as f64;
    match bytes {
        0..1_000 => format!("{bytes} bytes"),
        1_000..1_000_000 => format!("{:.1} kB", bytes_f / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", bytes_f / 1e6),
        _ => format!("{:.1} GB", bytes_f / 1e9),
    }
}

/// `500ms`, `10s`, `2m`, or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("expected a duration such as 500ms, 10s or 2m, got '{text}'"))?;
    let duration = match unit {
        "ms" => Duration::from_millis(number),
        "" | "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number.saturating_mul(60)),
        _ => return Err(format!("unknown unit '{unit}' in '{text}': use ms, s or m")),
    };
    if duration.is_zero() {
        return Err("the duration must be positive".into());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_bytes_limit_matches_the_client() {
        let defaults = ProducerConfig::default();
        assert_eq!(
            BATCH_BYTES_MAX as usize,
            defaults.request_partition_bytes_max
        );
    }

    #[test]
    fn amounts_are_in_powers_of_1000() {
        assert_eq!(amount(999), "999 bytes");
        assert_eq!(amount(12_800), "12.8 kB");
        assert_eq!(amount(104_857_600), "104.9 MB");
        assert_eq!(amount(2_147_483_648), "2.1 GB");
    }

    #[test]
    fn durations_take_ms_s_and_m() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("1h").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
