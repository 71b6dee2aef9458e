//! `strata produce`: one record per line of stdin, like `kafka-console-producer.sh`.

use std::collections::VecDeque;

use clap::{Args, ValueEnum};
use strata_client::{Acks, DeliveryFuture, Producer, ProducerConfig, ProducerRecord};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::error::CliError;

/// Records awaiting their acknowledgement before reading more of stdin. Bounds the
/// memory held by delivery handles; the producer's own buffer bounds the record bytes.
const DELIVERIES_PENDING_MAX: usize = 4096;

/// When the broker acknowledges a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AcksArg {
    /// No acknowledgement: fastest, and a lost record goes unnoticed.
    None,
    /// Once the leader appended the record.
    Leader,
    /// Once every in-sync replica has it and the durability policy is met.
    All,
}

impl From<AcksArg> for Acks {
    fn from(acks: AcksArg) -> Self {
        match acks {
            AcksArg::None => Acks::None,
            AcksArg::Leader => Acks::Leader,
            AcksArg::All => Acks::All,
        }
    }
}

/// Arguments of `strata produce`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// The topic to write to.
    topic: String,
    /// Split each line at the first SEP into key and value; a line without SEP is a
    /// keyless record.
    #[arg(long, value_name = "SEP", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    key_separator: Option<String>,
    /// When the broker acknowledges a record.
    #[arg(long, value_enum, default_value_t = AcksArg::All)]
    acks: AcksArg,
    /// Write every record to this partition instead of choosing by key.
    #[arg(long)]
    partition: Option<u32>,
}

/// Reads stdin to its end, producing a record per line; prints nothing on success.
///
/// # Errors
/// The first record that could not be queued or delivered, or a stdin read error.
pub async fn run(bootstrap: &str, args: ProduceArgs) -> Result<(), CliError> {
    let config = ProducerConfig {
        acks: args.acks.into(),
        ..ProducerConfig::new(bootstrap)
    };
    let line_bytes_max = config.record_bytes_max;
    let producer = Producer::new(config)?;
    let result = produce_lines(&producer, &args, line_bytes_max).await;
    producer.close().await;
    result
}

async fn produce_lines(
    producer: &Producer,
    args: &ProduceArgs,
    line_bytes_max: usize,
) -> Result<(), CliError> {
    let mut stdin = BufReader::new(tokio::io::stdin());
    let mut pending: VecDeque<DeliveryFuture> = VecDeque::new();
    let mut line = Vec::new();
    let mut line_count: u64 = 0;
    while read_line(&mut stdin, &mut line, line_count + 1, line_bytes_max).await? {
        line_count += 1;
        let delivery = producer
            .send(record(args, &line))
            .await
            .map_err(|error| CliError::from_client(error, &args.topic))?;
        pending.push_back(delivery);
        if pending.len() >= DELIVERIES_PENDING_MAX {
            let oldest = pending.pop_front().expect("pending is not empty");
            oldest
                .await
                .map_err(|error| CliError::from_client(error, &args.topic))?;
        }
    }
    await_all(pending, line_count, &args.topic).await
}

/// Reads the next line of stdin into `line`, without its `\n`; `false` at the end.
/// Reads at most a few bytes past `bytes_max`, so an endless line cannot exhaust memory.
async fn read_line(
    stdin: &mut (impl AsyncBufRead + Unpin),
    line: &mut Vec<u8>,
    line_number: u64,
    bytes_max: usize,
) -> Result<bool, CliError> {
    line.clear();
    // One byte over the limit, plus the newline.
    let limit = u64::try_from(bytes_max)
        .unwrap_or(u64::MAX)
        .saturating_add(2);
    let read = stdin
        .take(limit)
        .read_until(b'\n', line)
        .await
        .map_err(CliError::Stdin)?;
    if read == 0 {
        return Ok(false);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    if line.len() > bytes_max {
        return Err(CliError::LineTooLong {
            line: line_number,
            bytes_max,
        });
    }
    Ok(true)
}

fn record(args: &ProduceArgs, line: &[u8]) -> ProducerRecord {
    let (key, value) = match &args.key_separator {
        Some(separator) => split_key(line, separator.as_bytes()),
        None => (None, line),
    };
    let mut record = ProducerRecord::new(args.topic.clone(), value.to_vec());
    if let Some(key) = key {
        record = record.key(key.to_vec());
    }
    if let Some(partition) = args.partition {
        record = record.partition(partition);
    }
    record
}

/// Waits for every delivery; fails with the count of failures and the first one.
async fn await_all(
    pending: VecDeque<DeliveryFuture>,
    total: u64,
    topic: &str,
) -> Result<(), CliError> {
    let mut failed = 0;
    let mut first = None;
    for delivery in pending {
        if let Err(error) = delivery.await {
            failed += 1;
            first.get_or_insert(error);
        }
    }
    match first {
        None => Ok(()),
        Some(error) => Err(CliError::Undelivered {
            failed,
            total,
            first: Box::new(CliError::from_client(error, topic)),
        }),
    }
}

/// Splits `line` at the first `separator`: `(Some(key), value)`, or `(None, line)` if
/// the separator does not occur.
fn split_key<'a>(line: &'a [u8], separator: &[u8]) -> (Option<&'a [u8]>, &'a [u8]) {
    assert!(!separator.is_empty(), "clap rejects an empty separator");
    match line
        .windows(separator.len())
        .position(|window| window == separator)
    {
        Some(at) => (Some(&line[..at]), &line[at + separator.len()..]),
        None => (None, line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_lose_their_newline_and_long_lines_are_refused() {
        let mut input: &[u8] = b"one\n\nlast-without-newline";
        let mut line = Vec::new();
        let mut lines = Vec::new();
        while read_line(&mut input, &mut line, 1, 100)
            .await
            .expect("in memory")
        {
            lines.push(String::from_utf8(line.clone()).expect("utf-8"));
        }
        assert_eq!(lines, ["one", "", "last-without-newline"]);

        for long in [&b"12345\n"[..], b"123456", b"1234567\nrest"] {
            let mut input = long;
            let error = read_line(&mut input, &mut line, 7, 4).await.unwrap_err();
            assert!(matches!(
                error,
                CliError::LineTooLong {
                    line: 7,
                    bytes_max: 4
                }
            ));
        }
        let mut input: &[u8] = b"1234\n";
        assert!(read_line(&mut input, &mut line, 1, 4).await.expect("fits"));
        assert_eq!(line, b"1234");
    }

    #[test]
    fn keys_split_at_the_first_separator_only() {
        assert_eq!(
            split_key(b"k1::v::1", b"::"),
            (Some(&b"k1"[..]), &b"v::1"[..])
        );
        assert_eq!(split_key(b"::v", b"::"), (Some(&b""[..]), &b"v"[..]));
        assert_eq!(split_key(b"no key", b"::"), (None, &b"no key"[..]));
        assert_eq!(split_key(b"", b"\t"), (None, &b""[..]));
    }
}
