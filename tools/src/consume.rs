//! `strata consume`: prints a topic's records, one per line, like
//! `kafka-console-consumer.sh`. Without `--group` partitions are assigned by hand, so
//! every run reads every chosen partition on its own. With `--group` the run joins that
//! consumer group: the group shares the partitions among its members and remembers, by
//! committed offsets, what was printed.

use std::io::Write;
use std::time::Duration;

use clap::Args;
use strata_client::{
    Admin, AutoOffsetReset, ClientConfig, Consumer, ConsumerConfig, ConsumerRecord, TopicPartition,
};
use tokio::time::Instant;

use crate::error::CliError;

/// How long one poll waits when no `--timeout-ms` bounds it; only the loop's pace.
const POLL_WAIT_MS: u64 = 1_000;

/// Arguments of `strata consume`.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// The topic to read.
    topic: String,
    /// Start at each partition's oldest record instead of only new ones (with --group:
    /// only for partitions the group has no committed offset for).
    #[arg(long, conflicts_with = "offset")]
    from_beginning: bool,
    /// Start at this offset (needs --partition).
    #[arg(long, requires = "partition")]
    offset: Option<u64>,
    /// Read only this partition.
    #[arg(long)]
    partition: Option<u32>,
    /// Join this consumer group and read the partitions it assigns, from its committed
    /// offsets. Printed records are committed as the run goes and when it ends (after
    /// --max-messages, --timeout-ms or Ctrl-C), then the run leaves the group.
    #[arg(long, value_name = "GROUP", conflicts_with_all = ["offset", "partition"])]
    group: Option<String>,
    /// A stable id for static group membership: a run restarted with the same id takes
    /// the partitions of the previous one back without a rebalance.
    #[arg(long, value_name = "ID", requires = "group")]
    instance_id: Option<String>,
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
    if let Some(group) = &args.group {
        return run_in_group(bootstrap, &args, group).await;
    }
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
    print_records(&mut consumer, &args, false).await.0
}

/// Prints what the group assigns, then commits what was printed and leaves the group.
async fn run_in_group(bootstrap: &str, args: &ConsumeArgs, group: &str) -> Result<(), CliError> {
    // A missing topic would only leave the member waiting for partitions: say so.
    let admin = Admin::new(ClientConfig::new(bootstrap))?;
    admin
        .describe_topic(&args.topic)
        .await
        .map_err(|error| CliError::from_client(error, &args.topic))?;
    let mut consumer = Consumer::new(ConsumerConfig {
        auto_offset_reset: if args.from_beginning {
            AutoOffsetReset::Earliest
        } else {
            AutoOffsetReset::Latest
        },
        group_instance_id: args.instance_id.clone(),
        enable_auto_commit: true,
        ..ConsumerConfig::new(bootstrap)
    })?;
    consumer
        .subscribe([args.topic.as_str()], group)
        .map_err(|error| CliError::from_group(error, group))?;
    let (mut result, unprinted) = print_records(&mut consumer, args, true).await;
    // Records returned but not printed are not committed: rewind to them first. Every
    // path from here goes through `close`, which commits and leaves the group; a
    // partition that cannot be rewound is no longer owned, so `close` does not commit
    // it either.
    for (tp, offset) in &unprinted {
        if let Err(error) = consumer.seek(tp, *offset) {
            result = result.and(Err(CliError::from_group(error, group)));
        }
    }
    let closed = consumer
        .close()
        .await
        .map_err(|error| CliError::from_group(error, group));
    result.and(closed)
}

/// The partitions to read: `--partition` (checked to exist) or all of them.
async fn partitions(bootstrap: &str, args: &ConsumeArgs) -> Result<Vec<TopicPartition>, CliError> {
    let admin = Admin::new(ClientConfig::new(bootstrap))?;
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

/// Prints records until `--max-messages`, `--timeout-ms`, an error or (with
/// `until_interrupted`) Ctrl-C. Also returns, per partition, the offset of the first
/// record that `poll` returned but that did not surely reach stdout, so a group run
/// does not commit it.
async fn print_records(
    consumer: &mut Consumer,
    args: &ConsumeArgs,
    until_interrupted: bool,
) -> (Result<(), CliError>, Vec<(TopicPartition, u64)>) {
    let idle_limit = args.timeout_ms.map(Duration::from_millis);
    let mut printed: u64 = 0;
    let mut last_record_at = Instant::now();
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    // One listener for the whole run, so a Ctrl-C while printing is not missed.
    let mut interrupt = std::pin::pin!(interrupted(until_interrupted));
    loop {
        let wait = match idle_limit {
            Some(limit) => {
                let idle = last_record_at.elapsed();
                if idle >= limit {
                    return (Ok(()), Vec::new());
                }
                limit - idle
            }
            None => Duration::from_millis(POLL_WAIT_MS),
        };
        // `poll` is cancel-safe: records of an interrupted poll are not returned, so
        // their positions do not move.
        let polled = tokio::select! {
            polled = consumer.poll(wait) => polled,
            () = &mut interrupt => return (Ok(()), Vec::new()),
        };
        let records = match polled {
            Ok(records) => records,
            Err(error) => return (Err(CliError::from_client(error, &args.topic)), Vec::new()),
        };
        if !records.is_empty() {
            last_record_at = Instant::now();
        }
        for (index, record) in records.iter().enumerate() {
            if let Err(error) = write_record(&mut stdout, args, record) {
                return (Err(CliError::from_stdout(error)), first_offsets(&records));
            }
            printed += 1;
            if args.max_messages == Some(printed) {
                return match stdout.flush() {
                    Ok(()) => (Ok(()), first_offsets(&records[index + 1..])),
                    Err(error) => (Err(CliError::from_stdout(error)), first_offsets(&records)),
                };
            }
        }
        if let Err(error) = stdout.flush() {
            return (Err(CliError::from_stdout(error)), first_offsets(&records));
        }
    }
}

/// Resolves on Ctrl-C (SIGINT) if `enabled`, else never.
async fn interrupted(enabled: bool) {
    if !enabled || tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The first offset of each partition among `records`.
fn first_offsets(records: &[ConsumerRecord]) -> Vec<(TopicPartition, u64)> {
    let mut firsts: Vec<(TopicPartition, u64)> = Vec::new();
    for record in records {
        if !firsts
            .iter()
            .any(|(tp, _)| tp.partition == record.partition && *tp.topic == *record.topic)
        {
            firsts.push((
                TopicPartition::new(&*record.topic, record.partition),
                record.offset,
            ));
        }
    }
    firsts
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

    #[test]
    fn group_flags_exclude_manual_positions() {
        let parse = |argv: &[&str]| {
            let mut full = vec!["consume", "orders"];
            full.extend_from_slice(argv);
            Wrapper::try_parse_from(full).map(|wrapper| wrapper.args)
        };
        assert!(parse(&["--group", "g", "--partition", "0"]).is_err());
        assert!(parse(&["--group", "g", "--partition", "0", "--offset", "3"]).is_err());
        assert!(
            parse(&["--instance-id", "host-1"]).is_err(),
            "needs --group"
        );
        let args = parse(&[
            "--group",
            "g",
            "--instance-id",
            "host-1",
            "--from-beginning",
        ])
        .unwrap();
        assert_eq!(args.group.as_deref(), Some("g"));
        assert_eq!(args.instance_id.as_deref(), Some("host-1"));
    }

    #[test]
    fn unprinted_records_rewind_to_their_first_offset_per_partition() {
        let record = |partition, offset| ConsumerRecord {
            topic: Arc::from("orders"),
            partition,
            offset,
            timestamp: 0,
            key: None,
            value: None,
            headers: Vec::new(),
        };
        let records = [record(1, 10), record(0, 4), record(1, 11), record(0, 5)];
        assert_eq!(
            first_offsets(&records),
            [
                (TopicPartition::new("orders", 1), 10),
                (TopicPartition::new("orders", 0), 4)
            ]
        );
        assert!(first_offsets(&[]).is_empty());
    }
}
