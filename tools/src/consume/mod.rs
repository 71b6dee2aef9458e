//! `strata consume`: prints a topic's records, one per line, like
//! `kafka-console-consumer.sh` and `kcat -C`. Without `--group` partitions are assigned
//! by hand, so every run reads every chosen partition on its own, from `--offset`. With
//! `--group` the run joins that consumer group: the group shares the partitions among its
//! members and remembers, by committed offsets, what was printed.
//!
//! # Layout
//! - this module: arguments and the read-and-print loop;
//! - `start`: `--offset`, where each partition starts;
//! - `format`: `--format`, how a record is printed, and how bytes are escaped;
//! - `broker_watch`: telling the user while the broker is unreachable (shared with
//!   `produce`).

pub mod broker_watch;
mod format;
mod start;

use std::io::Write;
use std::time::Duration;

use clap::Args;
use strata_client::{
    AutoOffsetReset, Consumer, ConsumerConfig, ConsumerRecord, Error as ClientError, TopicPartition,
};
use tokio::time::Instant;

use crate::error::CliError;
use broker_watch::{BrokerWatch, CHECK_EVERY};
use format::Format;
use start::StartOffset;

/// What `consume --help` says about output, after the options.
const OUTPUT_HELP: &str = "\
Output:
  Each record is printed by --format (default: the value and a newline). Keys, values
  and header values are printed as they are where they are valid UTF-8; every byte
  that is not is printed as \\xNN (two lowercase hex digits). A record without a key
  (or value) prints nothing for it, so a key whose text is `null` prints `null`.

  --format json prints one JSON object per line with the fields topic, partition,
  offset, timestamp, key, value and headers (a list of objects with a key and a value).
  A key or value is null when missing, a string when it is valid UTF-8, and otherwise
  {\"base64\": \"...\"} holding its bytes in standard base64 (RFC 4648), so bytes
  round-trip exactly.

While the broker cannot be reached, a line on stderr says so every few seconds.";

/// Arguments of `strata consume`.
#[derive(Debug, Args)]
#[command(after_help = OUTPUT_HELP)]
pub struct ConsumeArgs {
    /// The topic to read.
    topic: String,
    /// Same as --offset beginning. With --group: where partitions the group has no
    /// committed offset for start.
    #[arg(long, conflicts_with = "offset")]
    from_beginning: bool,
    /// Where each partition read starts: beginning, end (the default), an offset N, -N
    /// (N records before the end) or @TIMESTAMP_MS (the first record at or after that
    /// time, in ms since the Unix epoch).
    #[arg(long, value_name = "POSITION", value_parser = StartOffset::parse, allow_hyphen_values = true)]
    offset: Option<StartOffset>,
    /// Read only this partition.
    #[arg(long)]
    partition: Option<u32>,
    /// Join this consumer group and read the partitions it assigns, from its committed
    /// offsets. Printed records are committed as the run goes and when it ends (after
    /// --max-messages, --timeout-ms, --exit-at-end or Ctrl-C), then the run leaves the
    /// group.
    #[arg(
        long,
        value_name = "GROUP",
        value_parser = crate::parse_group_id,
        conflicts_with_all = ["offset", "partition"]
    )]
    group: Option<String>,
    /// A stable id for static group membership: a run restarted with the same id takes
    /// the partitions of the previous one back without a rebalance.
    #[arg(long, value_name = "ID", requires = "group")]
    instance_id: Option<String>,
    /// Exit after printing this many records.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max_messages: Option<u64>,
    /// Exit (with status 0) once no new record arrived for this long. Also bounds the
    /// wait for an unreachable broker at the start (then the exit status is 1).
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    timeout_ms: Option<u64>,
    /// Exit (with status 0) once every partition read is printed up to its end: the high
    /// watermark when the run started reading it, like `kcat -e`. An empty topic exits
    /// at once. With --group: every partition the group assigned to this run.
    #[arg(long)]
    exit_at_end: bool,
    /// How each record is printed: `json` for one JSON object per line, or a format
    /// string of %t topic, %p partition, %o offset, %k key, %v value, %T timestamp (ms
    /// since the Unix epoch), %h headers (name=value,... ; a header without a value
    /// prints its name only), %% a percent sign, and the escapes \n newline, \t tab,
    /// \\ backslash. Nothing is added: end the format with \n for one record per line.
    /// Example: --format '%p:%o %k=%v\n'.
    #[arg(long, value_name = "FORMAT", value_parser = Format::parse,
        conflicts_with_all = ["print_key", "print_offset", "print_timestamp"])]
    format: Option<Format>,
    /// Print the key and a tab before the value (same as --format '%k\t%v\n'; a record
    /// without a key prints an empty key).
    #[arg(long)]
    print_key: bool,
    /// Print PARTITION:OFFSET and a tab first.
    #[arg(long)]
    print_offset: bool,
    /// Print the timestamp (ms since the Unix epoch) and a tab first.
    #[arg(long)]
    print_timestamp: bool,
}

impl ConsumeArgs {
    fn format(&self) -> Format {
        self.format.clone().unwrap_or_else(|| {
            Format::from_print_flags(self.print_timestamp, self.print_offset, self.print_key)
        })
    }
}

/// Each partition's end, for `--exit-at-end`.
type Ends = Vec<(TopicPartition, u64)>;

/// Prints records until `--max-messages`, `--timeout-ms` or `--exit-at-end` ends the run
/// (or forever).
///
/// # Errors
/// Unknown topic or partition, a topic deleted while it is read, a broker unreachable
/// for all of `--timeout-ms`, a non-retriable fetch error.
pub async fn run(bootstrap: &str, args: ConsumeArgs) -> Result<(), CliError> {
    let mut watch = BrokerWatch::new(bootstrap, &args.topic)?;
    // A missing topic would only leave the run waiting for records: say so.
    let deadline = args
        .timeout_ms
        .map(|ms| Instant::now() + Duration::from_millis(ms));
    let details = watch.wait_for_topic(deadline).await?;
    let partition_count = u32::try_from(details.partitions.len()).unwrap_or(u32::MAX);
    let all: Vec<TopicPartition> = (0..partition_count)
        .map(|partition| TopicPartition::new(&args.topic, partition))
        .collect();
    if let Some(group) = &args.group {
        return run_in_group(bootstrap, &args, group, watch, &all).await;
    }
    let partitions = match args.partition {
        Some(partition) if partition >= partition_count => {
            return Err(CliError::UnknownPartition {
                topic: args.topic.clone(),
                partition,
                partition_count,
            });
        }
        Some(partition) => vec![TopicPartition::new(&args.topic, partition)],
        None => all,
    };
    let start = match (args.offset, args.from_beginning) {
        (Some(start), _) => start,
        (None, true) => StartOffset::Beginning,
        (None, false) => StartOffset::End,
    };
    // An explicit offset outside the log is an error to report, not a cue to jump
    // silently to either end.
    let reset = match start {
        StartOffset::Absolute(_) => AutoOffsetReset::Error,
        StartOffset::End => AutoOffsetReset::Latest,
        _ => AutoOffsetReset::Earliest,
    };
    let mut consumer = Consumer::new(ConsumerConfig {
        auto_offset_reset: reset,
        ..ConsumerConfig::new(bootstrap)
    })?;
    consumer.assign(&partitions);
    let topic_error = |error| CliError::from_client(error, &args.topic);
    // Positions are taken now, so records produced after this command started are
    // printed even if they arrive before the first fetch.
    start
        .apply(&mut consumer, &partitions)
        .await
        .map_err(topic_error)?;
    let ends = if args.exit_at_end {
        let ends = consumer
            .end_offsets(&partitions)
            .await
            .map_err(topic_error)?;
        // Past the end, a position would count as reached: report it as a fetch would.
        if let StartOffset::Absolute(offset) = start
            && let Some((tp, _)) = ends.iter().find(|(_, end)| offset > *end)
        {
            return Err(CliError::OffsetOutOfRange {
                topic: args.topic.clone(),
                partition: tp.partition,
                offset,
            });
        }
        Some(ends)
    } else {
        None
    };
    let mut reader = Reader {
        consumer: &mut consumer,
        args: &args,
        format: args.format(),
        watch,
        ends,
    };
    reader.print_records(false).await.0
}

/// Prints what the group assigns, then commits what was printed and leaves the group.
async fn run_in_group(
    bootstrap: &str,
    args: &ConsumeArgs,
    group: &str,
    watch: BrokerWatch,
    partitions: &[TopicPartition],
) -> Result<(), CliError> {
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
    let ends = if args.exit_at_end {
        let ends = consumer.end_offsets(partitions).await;
        Some(ends.map_err(|error| CliError::from_client(error, &args.topic))?)
    } else {
        None
    };
    consumer
        .subscribe([args.topic.as_str()], group)
        .map_err(|error| CliError::from_group(error, group))?;
    let mut reader = Reader {
        consumer: &mut consumer,
        args,
        format: args.format(),
        watch,
        ends,
    };
    let (mut result, unprinted) = reader.print_records(true).await;
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

/// One run's reading and printing.
struct Reader<'a> {
    consumer: &'a mut Consumer,
    args: &'a ConsumeArgs,
    format: Format,
    watch: BrokerWatch,
    /// With `--exit-at-end`: where each partition ends.
    ends: Option<Ends>,
}

impl Reader<'_> {
    /// Prints records until `--max-messages`, `--timeout-ms`, `--exit-at-end`, an error
    /// or (with `until_interrupted`) Ctrl-C. Also returns, per partition, the offset of
    /// the first record that `poll` returned but that did not surely reach stdout, so a
    /// group run does not commit it.
    async fn print_records(
        &mut self,
        until_interrupted: bool,
    ) -> (Result<(), CliError>, Vec<(TopicPartition, u64)>) {
        let idle_limit = self.args.timeout_ms.map(Duration::from_millis);
        let mut printed: u64 = 0;
        let mut last_record_at = Instant::now();
        let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
        // One listener for the whole run, so a Ctrl-C while printing is not missed.
        let mut interrupt = std::pin::pin!(interrupted(until_interrupted));
        // Whether the group had given this run its partitions before the last poll.
        let mut joined = false;
        loop {
            match self.reached_end(joined).await {
                Ok(false) => {}
                Ok(true) => return (Ok(()), Vec::new()),
                Err(error) => return (Err(error), Vec::new()),
            }
            let idle = last_record_at.elapsed();
            if idle_limit.is_some_and(|limit| idle >= limit) {
                return (Ok(()), Vec::new());
            }
            // Short waits, so a stalled run checks the broker between them.
            let wait = idle_limit.map_or(CHECK_EVERY, |limit| (limit - idle).min(CHECK_EVERY));
            joined = self
                .consumer
                .group_metadata()
                .is_some_and(|group| group.member_epoch > 0);
            // `poll` is cancel-safe: records of an interrupted poll are not returned, so
            // their positions do not move.
            let polled = tokio::select! {
                polled = self.consumer.poll(wait) => polled,
                () = &mut interrupt => return (Ok(()), Vec::new()),
            };
            let records = match polled {
                Ok(records) => records,
                Err(error) => return (Err(self.topic_error(error)), Vec::new()),
            };
            if records.is_empty() {
                let checked = tokio::select! {
                    checked = self.watch.check_if_due() => checked,
                    () = &mut interrupt => return (Ok(()), Vec::new()),
                };
                if let Err(error) = checked {
                    return (Err(error), Vec::new());
                }
                continue;
            }
            last_record_at = Instant::now();
            for (index, record) in records.iter().enumerate() {
                if let Err(error) = self.format.write(&mut stdout, record) {
                    return (Err(CliError::from_stdout(error)), first_offsets(&records));
                }
                printed += 1;
                if self.args.max_messages == Some(printed) {
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

    /// With `--exit-at-end`, whether every partition read is printed up to its end. A
    /// group run reads what the group gave it: nothing until it `joined`, and it may be
    /// given no partition at all.
    async fn reached_end(&mut self, joined: bool) -> Result<bool, CliError> {
        let Some(ends) = &self.ends else {
            return Ok(false);
        };
        let assignment = self.consumer.assignment();
        if assignment.is_empty() {
            return Ok(joined);
        }
        for tp in assignment {
            let end = ends
                .iter()
                .find(|(end_tp, _)| *end_tp == tp)
                .map_or(0, |(_, end)| *end);
            let position = self
                .consumer
                .position(&tp)
                .await
                .map_err(|error| CliError::from_client(error, &self.args.topic))?;
            if position < end {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Words a client error; the topic existed when the run started, so a missing one
    /// was deleted.
    fn topic_error(&self, error: ClientError) -> CliError {
        match CliError::from_client(error, &self.args.topic) {
            CliError::UnknownTopic(topic) => CliError::TopicDeleted(topic),
            error => error,
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
        args.format()
            .write(&mut out, record)
            .expect("write to a Vec");
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
        assert_eq!(line(&["--print-key"], &nulls), "\t\n");
        assert_eq!(line(&["--format", "%o|%k|%v\\n"], &nulls), "17||\n");
    }

    #[test]
    fn group_flags_exclude_manual_positions() {
        let parse = |argv: &[&str]| {
            let mut full = vec!["consume", "orders"];
            full.extend_from_slice(argv);
            Wrapper::try_parse_from(full).map(|wrapper| wrapper.args)
        };
        assert!(parse(&["--group", "g", "--partition", "0"]).is_err());
        assert!(parse(&["--group", "g", "--offset", "beginning"]).is_err());
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
    fn offsets_and_formats_are_checked_by_clap() {
        let parse = |argv: &[&str]| {
            let mut full = vec!["consume", "orders"];
            full.extend_from_slice(argv);
            Wrapper::try_parse_from(full).map(|wrapper| wrapper.args)
        };
        let args = parse(&["--offset", "-3"]).unwrap();
        assert_eq!(args.offset, Some(StartOffset::BeforeEnd(3)));
        let args = parse(&["--offset", "@1700000000000", "--exit-at-end"]).unwrap();
        assert_eq!(args.offset, Some(StartOffset::Timestamp(1_700_000_000_000)));
        assert!(args.exit_at_end);
        let error = parse(&["--offset", "soon"]).unwrap_err().to_string();
        assert!(error.contains("expected beginning, end"), "{error}");
        assert!(parse(&["--offset", "end", "--from-beginning"]).is_err());
        let error = parse(&["--format", "%z"]).unwrap_err().to_string();
        assert!(error.contains("unknown field %z"), "{error}");
        assert!(parse(&["--format", "json", "--print-key"]).is_err());
        assert_eq!(parse(&["--format", "json"]).unwrap().format(), Format::Json);
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
