//! `strata consume`: prints a topic's records, one per line, like
//! `kafka-console-consumer.sh`. Partitions are assigned by hand (there are no consumer
//! groups yet), so every run reads every chosen partition on its own.

use std::io::Write;
use std::time::Duration;

use clap::Args;
use strata_client::{AutoOffsetReset, Consumer, ConsumerConfig, ConsumerRecord, TopicPartition};
use tokio::time::Instant;

use crate::error::CliError;

/// How long one poll waits when no `--timeout-ms` bounds it; only the loop's pace.
const POLL_WAIT_MS: u64 = 1_000;

/// Arguments of `strata consume`.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// The topic to read.
    topic: String,
    /// Start at each partition's oldest record instead of only new ones.
    #[arg(long, conflicts_with = "offset")]
    from_beginning: bool,
    /// Start at this offset (needs --partition).
    #[arg(long, requires = "partition")]
    offset: Option<u64>,
    /// Read only this partition.
    #[arg(long)]
    partition: Option<u32>,
    /// Exit after printing this many records.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max_messages: Option<u64>,
    /// Exit (with status 0) once no new record arrived for this long.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    timeout_ms: Option<u64>,
    /// Print the key (or `null`) and a tab before the value.
    #[arg(long)]
    print_key: bool,
    /// Print PARTITION:OFFSET and a tab first.
    #[arg(long)]
    print_offset: bool,
    /// Print the timestamp (ms since the Unix epoch) and a tab first.
    #[arg(long)]
    print_timestamp: bool,
}

/// Prints records until `--max-messages` or `--timeout-ms` ends the run (or forever).
///
/// # Errors
/// Unknown topic or partition, unreachable broker, a non-retriable fetch error.
pub async fn run(bootstrap: &str, args: ConsumeArgs) -> Result<(), CliError> {
    let partitions = partitions(bootstrap, &args).await?;
    // An explicit offset outside the log is an error to report, not a cue to jump
    // silently to either end.
    let reset = match (args.offset, args.from_beginning) {
        (Some(_), _) => AutoOffsetReset::Error,
        (None, true) => AutoOffsetReset::Earliest,
        (None, false) => AutoOffsetReset::Latest,
    };
    let mut consumer = Consumer::new(ConsumerConfig {
        auto_offset_reset: reset,
        ..ConsumerConfig::new(bootstrap)
    })?;
    consumer.assign(&partitions);
    let topic_error = |error| CliError::from_client(error, &args.topic);
    match args.offset {
        Some(offset) => {
            for tp in &partitions {
                consumer.seek(tp, offset).map_err(topic_error)?;
            }
        }
        // Take the position now, so records produced after this command started
        // are printed even if they arrive before the first fetch.
        None if !args.from_beginning => {
            consumer
                .seek_to_end(&partitions)
                .await
                .map_err(topic_error)?;
        }
        None => {}
    }
    print_records(&mut consumer, &args).await
}

/// The partitions to read: `--partition` (checked to exist) or all of them.
async fn partitions(bootstrap: &str, args: &ConsumeArgs) -> Result<Vec<TopicPartition>, CliError> {
    let admin = strata_client::Admin::new(strata_client::ClientConfig::new(bootstrap))?;
    let description = admin
        .describe_topic(&args.topic)
        .await
        .map_err(|error| CliError::from_client(error, &args.topic))?;
    let partition_count = u32::try_from(description.partitions.len()).unwrap_or(u32::MAX);
    match args.partition {
        Some(partition) if partition >= partition_count => Err(CliError::UnknownPartition {
            topic: args.topic.clone(),
            partition,
            partition_count,
        }),
        Some(partition) => Ok(vec![TopicPartition::new(&args.topic, partition)]),
        None => Ok((0..partition_count)
            .map(|partition| TopicPartition::new(&args.topic, partition))
            .collect()),
    }
}

async fn print_records(consumer: &mut Consumer, args: &ConsumeArgs) -> Result<(), CliError> {
    let idle_limit = args.timeout_ms.map(Duration::from_millis);
    let mut printed: u64 = 0;
    let mut last_record_at = Instant::now();
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    loop {
        let wait = match idle_limit {
            Some(limit) => {
                let idle = last_record_at.elapsed();
                if idle >= limit {
                    return Ok(());
                }
                limit - idle
            }
            None => Duration::from_millis(POLL_WAIT_MS),
        };
        let records = consumer
            .poll(wait)
            .await
            .map_err(|error| CliError::from_client(error, &args.topic))?;
        if !records.is_empty() {
            last_record_at = Instant::now();
        }
        for record in &records {
            write_record(&mut stdout, args, record).map_err(CliError::from_stdout)?;
            printed += 1;
            if args.max_messages == Some(printed) {
                return stdout.flush().map_err(CliError::from_stdout);
            }
        }
        stdout.flush().map_err(CliError::from_stdout)?;
    }
}

/// One record as a line: `[timestamp\t][partition:offset\t][key\t]value\n`, with
/// `null` for a null key or value.
fn write_record(
    out: &mut impl Write,
    args: &ConsumeArgs,
    record: &ConsumerRecord,
) -> std::io::Result<()> {
    if args.print_timestamp {
        write!(out, "{}\t", record.timestamp)?;
    }
    if args.print_offset {
        write!(out, "{}:{}\t", record.partition, record.offset)?;
    }
    if args.print_key {
        out.write_all(record.key.as_deref().unwrap_or(b"null"))?;
        out.write_all(b"\t")?;
    }
    out.write_all(record.value.as_deref().unwrap_or(b"null"))?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: ConsumeArgs,
    }

    fn line(flags: &[&str], record: &ConsumerRecord) -> String {
        let mut argv = vec!["consume", "orders"];
        argv.extend_from_slice(flags);
        let args = Wrapper::parse_from(argv).args;
        let mut out = Vec::new();
        write_record(&mut out, &args, record).expect("write to a Vec");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn fields_come_in_a_fixed_order_separated_by_tabs() {
        let record = ConsumerRecord {
            topic: Arc::from("orders"),
            partition: 2,
            offset: 17,
            timestamp: 1_700_000_000_000,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"v")),
            headers: Vec::new(),
        };
        assert_eq!(line(&[], &record), "v\n");
        assert_eq!(line(&["--print-key"], &record), "k\tv\n");
        assert_eq!(
            line(
                &["--print-offset", "--print-key", "--print-timestamp"],
                &record
            ),
            "1700000000000\t2:17\tk\tv\n"
        );
        let nulls = ConsumerRecord {
            key: None,
            value: None,
            ..record
        };
        assert_eq!(line(&["--print-key"], &nulls), "null\tnull\n");
    }
}
