//! `strata produce`: one record per line of stdin, like `kafka-console-producer.sh`.
//!
//! Lines are read by a task of their own, so the command keeps waiting on deliveries and
//! on the broker while stdin is quiet. Deliveries are awaited in line order; the first
//! that fails for good, or waits longer than `--delivery-timeout-ms`, ends the run with a
//! count of the lines delivered and the first that was not.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use clap::{Args, ValueEnum};
use strata_client::protocol::batch::HEADER_BYTES;
use strata_client::protocol::limits::{MESSAGE_BYTES_MAX_DEFAULT, PRODUCE_OVERHEAD_BYTES_MAX};
use strata_client::{Acks, DeliveryFuture, Producer, ProducerConfig, ProducerRecord};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::consume::broker_watch::{BrokerWatch, CHECK_EVERY};
use crate::error::CliError;

/// Records awaiting their acknowledgement before reading more of stdin. Bounds the
/// memory held by delivery handles; the producer's own buffer bounds the record bytes.
const DELIVERIES_PENDING_MAX: usize = 4096;
/// Lines read ahead of the producer.
const LINES_QUEUED_MAX: usize = 64;
/// Bytes of a line quoted when it was not delivered.
const PREVIEW_BYTES_MAX: usize = 40;
/// Pause before sending a line again after the client could not queue it (no metadata).
const SEND_RETRY_PAUSE: Duration = Duration::from_millis(250);
/// The most a record's encoding adds to its key and value bytes inside a batch: length,
/// attributes, timestamp and offset deltas, key and value lengths, header count, as
/// varints at their widest (the client's `ProducerRecord` size bound).
const RECORD_OVERHEAD_BYTES_MAX: usize = 36;

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
    /// The topic to write to. A line may be as long as the topic's max_message_bytes
    /// allows, less about 100 bytes of batch and record framing.
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
    /// Give up once a line has waited this long for its acknowledgement: print how many
    /// lines were delivered and the first that was not, and exit 1. At the start the
    /// broker gets as long to answer. While it cannot be reached, a line on stderr says
    /// so every few seconds.
    #[arg(long, value_name = "MS", default_value_t = 30_000,
        value_parser = clap::value_parser!(u64).range(1..))]
    delivery_timeout_ms: u64,
}

/// Reads stdin to its end, producing a record per line; prints nothing on success.
///
/// # Errors
/// An unknown topic or partition, a line too long for the topic, a stdin read error, a
/// broker unreachable for `--delivery-timeout-ms`, [`CliError::GaveUp`].
pub async fn run(bootstrap: &str, args: ProduceArgs) -> Result<(), CliError> {
    let timeout = Duration::from_millis(args.delivery_timeout_ms);
    let mut watch = BrokerWatch::new(bootstrap, &args.topic)?;
    let details = watch.wait_for_topic(Some(Instant::now() + timeout)).await?;
    let partition_count = u32::try_from(details.partitions.len()).unwrap_or(u32::MAX);
    if let Some(partition) = args
        .partition
        .filter(|partition| *partition >= partition_count)
    {
        return Err(CliError::UnknownPartition {
            topic: args.topic.clone(),
            partition,
            partition_count,
        });
    }
    // A broker that does not report the limit applies its default.
    let max_message_bytes = details
        .configs
        .iter()
        .find(|(key, _)| key == "max_message_bytes")
        .and_then(|(_, value)| value.parse::<u64>().ok())
        .unwrap_or(u64::from(MESSAGE_BYTES_MAX_DEFAULT));
    let config = producer_config(bootstrap, args.acks.into(), max_message_bytes);
    let line_limit = LineLimit {
        bytes_max: config
            .record_bytes_max
            .saturating_sub(RECORD_OVERHEAD_BYTES_MAX),
        topic: args.topic.clone(),
        max_message_bytes,
    };
    let producer = Producer::new(config)?;
    let (lines, receiver) = mpsc::channel(LINES_QUEUED_MAX);
    tokio::spawn(read_lines(lines, line_limit));
    let stall = Arc::new(Stall::default());
    let mut watchdog = tokio::spawn(watch_stalls(watch, Arc::clone(&stall)));
    let mut run = ProduceRun {
        producer: &producer,
        args: &args,
        timeout,
        stall: &stall,
        pending: VecDeque::new(),
        read: 0,
        delivered: 0,
    };
    let result = tokio::select! {
        result = run.produce(receiver) => result,
        joined = &mut watchdog => {
            let cause = joined.expect("the watchdog does not panic");
            Err(match run.pending.front() {
                Some(first) => {
                    let (line, preview) = (first.line, first.preview.clone());
                    run.give_up(line, preview, cause)
                }
                None => cause,
            })
        }
    };
    watchdog.abort();
    // After giving up, what is still pending is not waited for.
    if !matches!(result, Err(CliError::GaveUp { .. })) {
        producer.close().await;
    }
    result
}

/// A producer whose largest record is the largest line the topic takes. The request and
/// buffer limits grow with it where the topic allows records above their defaults.
fn producer_config(bootstrap: &str, acks: Acks, max_message_bytes: u64) -> ProducerConfig {
    let defaults = ProducerConfig::new(bootstrap);
    let max_message_bytes = usize::try_from(max_message_bytes).unwrap_or(usize::MAX);
    let record_bytes_max = max_message_bytes.saturating_sub(HEADER_BYTES).max(1);
    let request_bytes_max = defaults.request_bytes_max.max(max_message_bytes);
    let mut config = ProducerConfig {
        acks,
        // A batch of several records stays within the topic's limit too.
        batch_bytes_max: defaults.batch_bytes_max.min(max_message_bytes),
        record_bytes_max,
        buffer_bytes_max: defaults.buffer_bytes_max.max(record_bytes_max),
        request_partition_bytes_max: defaults.request_partition_bytes_max.max(max_message_bytes),
        request_bytes_max,
        ..defaults
    };
    config.client.frame_bytes_max = config
        .client
        .frame_bytes_max
        .max(request_bytes_max.saturating_add(PRODUCE_OVERHEAD_BYTES_MAX));
    config
}

/// How long a line may be, and why.
#[derive(Debug, Clone)]
struct LineLimit {
    bytes_max: usize,
    topic: String,
    max_message_bytes: u64,
}

/// Whether the run waits on the broker, and how far it got: the watchdog checks the
/// broker when the run waits and nothing moved for a while.
#[derive(Debug, Default)]
struct Stall {
    waiting: AtomicBool,
    progress: AtomicU64,
}

/// Checks the broker while the run waits on it without progress; returns only the error
/// that ends the run (the topic was deleted).
async fn watch_stalls(mut watch: BrokerWatch, stall: Arc<Stall>) -> CliError {
    let mut seen = stall.progress.load(Ordering::Relaxed);
    let mut ticks = tokio::time::interval(CHECK_EVERY);
    loop {
        ticks.tick().await;
        let progress = stall.progress.load(Ordering::Relaxed);
        if stall.waiting.load(Ordering::Relaxed)
            && progress == seen
            && let Err(error) = watch.check_still_there().await
        {
            return error;
        }
        seen = progress;
    }
}

/// A line sent and not yet acknowledged.
struct Pending {
    delivery: DeliveryFuture,
    line: u64,
    preview: String,
    sent_at: Instant,
}

/// One run's sending and counting.
struct ProduceRun<'a> {
    producer: &'a Producer,
    args: &'a ProduceArgs,
    timeout: Duration,
    stall: &'a Stall,
    pending: VecDeque<Pending>,
    read: u64,
    delivered: u64,
}

impl ProduceRun<'_> {
    /// Sends every line and awaits every acknowledgement, in line order.
    async fn produce(
        &mut self,
        mut lines: mpsc::Receiver<Result<Vec<u8>, CliError>>,
    ) -> Result<(), CliError> {
        let mut stdin_done = false;
        // A bad line ends the reading; the lines before it are still delivered.
        let mut stdin_error = None;
        while !(stdin_done && self.pending.is_empty()) {
            self.stall
                .waiting
                .store(!self.pending.is_empty(), Ordering::Relaxed);
            let oldest_due = self
                .pending
                .front()
                .map(|oldest| oldest.sent_at + self.timeout);
            let room = self.pending.len() < DELIVERIES_PENDING_MAX;
            tokio::select! {
                biased;
                delivered = async { (&mut self.pending.front_mut().expect("pending").delivery).await },
                    if oldest_due.is_some() =>
                {
                    let oldest = self.pending.pop_front().expect("awaited the oldest");
                    if let Err(error) = delivered {
                        let cause = CliError::from_client(error, &self.args.topic);
                        return Err(self.give_up(oldest.line, oldest.preview, cause));
                    }
                    self.delivered += 1;
                    self.stall.progress.fetch_add(1, Ordering::Relaxed);
                }
                () = tokio::time::sleep_until(oldest_due.unwrap_or_else(Instant::now)),
                    if oldest_due.is_some() =>
                {
                    let oldest = self.pending.pop_front().expect("the oldest timed out");
                    let cause = self.timed_out();
                    return Err(self.give_up(oldest.line, oldest.preview, cause));
                }
                line = lines.recv(), if !stdin_done && room => match line {
                    None => stdin_done = true,
                    Some(Ok(line)) => self.send(&line).await?,
                    Some(Err(error)) => {
                        stdin_done = true;
                        stdin_error = Some(error);
                    }
                },
            }
        }
        stdin_error.map_or(Ok(()), Err)
    }

    /// Sends one line; retries while the client cannot queue it for a reason that may
    /// pass (no metadata while the broker is down), up to `--delivery-timeout-ms`.
    async fn send(&mut self, line: &[u8]) -> Result<(), CliError> {
        self.read += 1;
        let record = record(self.args, line);
        let sent_at = Instant::now();
        let due = sent_at + self.timeout;
        self.stall.waiting.store(true, Ordering::Relaxed);
        let cause = loop {
            match tokio::time::timeout_at(due, self.producer.send(record.clone())).await {
                Ok(Ok(delivery)) => {
                    self.pending.push_back(Pending {
                        delivery,
                        line: self.read,
                        preview: preview(line),
                        sent_at,
                    });
                    return Ok(());
                }
                Ok(Err(error))
                    if error.is_retriable() && Instant::now() + SEND_RETRY_PAUSE < due =>
                {
                    tokio::time::sleep(SEND_RETRY_PAUSE).await;
                }
                Ok(Err(error)) => break CliError::from_client(error, &self.args.topic),
                Err(_) => break self.timed_out(),
            }
        };
        Err(self.give_up(self.read, preview(line), cause))
    }

    fn timed_out(&self) -> CliError {
        CliError::NotAcknowledged {
            timeout_ms: self.args.delivery_timeout_ms,
        }
    }

    /// Ends the run at `line`, the first not delivered, counting the later lines that
    /// were delivered already.
    fn give_up(&mut self, line: u64, preview: String, cause: CliError) -> CliError {
        let mut context = Context::from_waker(Waker::noop());
        let mut delivered_later: u64 = 0;
        for pending in &mut self.pending {
            if let Poll::Ready(Ok(_)) = Pin::new(&mut pending.delivery).poll(&mut context) {
                delivered_later += 1;
            }
        }
        CliError::GaveUp {
            delivered: self.delivered + delivered_later,
            read: self.read,
            line,
            preview,
            cause: Box::new(match cause {
                // It existed when the run started.
                CliError::UnknownTopic(topic) => CliError::TopicDeleted(topic),
                cause => cause,
            }),
        }
    }
}

/// The start of a line, quoted, with bytes that are not UTF-8 escaped.
fn preview(line: &[u8]) -> String {
    let shown = &line[..line.len().min(PREVIEW_BYTES_MAX)];
    let mut text = format!("{:?}", String::from_utf8_lossy(shown));
    if shown.len() < line.len() {
        text.push_str("...");
    }
    text
}

/// Reads stdin line by line into `lines`, until its end, a read error or a line that is
/// too long (sent as the last item).
async fn read_lines(lines: mpsc::Sender<Result<Vec<u8>, CliError>>, limit: LineLimit) {
    let mut stdin = BufReader::new(tokio::io::stdin());
    let mut line_number: u64 = 0;
    loop {
        let mut line = Vec::new();
        line_number += 1;
        let read = read_line(&mut stdin, &mut line, line_number, &limit).await;
        let last = !matches!(read, Ok(true));
        let item = match read {
            Ok(true) => Ok(line),
            Ok(false) => return,
            Err(error) => Err(error),
        };
        if lines.send(item).await.is_err() || last {
            return;
        }
    }
}

/// Reads the next line of stdin into `line`, without its `\n`; `false` at the end.
/// Reads at most a few bytes past the limit, so an endless line cannot exhaust memory.
async fn read_line(
    stdin: &mut (impl AsyncBufRead + Unpin),
    line: &mut Vec<u8>,
    line_number: u64,
    limit: &LineLimit,
) -> Result<bool, CliError> {
    line.clear();
    // One byte over the limit, plus the newline.
    let bytes_limit = u64::try_from(limit.bytes_max)
        .unwrap_or(u64::MAX)
        .saturating_add(2);
    let read = stdin
        .take(bytes_limit)
        .read_until(b'\n', line)
        .await
        .map_err(CliError::Stdin)?;
    if read == 0 {
        return Ok(false);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    if line.len() > limit.bytes_max {
        return Err(CliError::LineTooLong {
            line: line_number,
            bytes_max: limit.bytes_max,
            topic: limit.topic.clone(),
            max_message_bytes: limit.max_message_bytes,
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
        let limit = |bytes_max| LineLimit {
            bytes_max,
            topic: "t".into(),
            max_message_bytes: 1_000,
        };
        let mut input: &[u8] = b"one\n\nlast-without-newline";
        let mut line = Vec::new();
        let mut lines = Vec::new();
        while read_line(&mut input, &mut line, 1, &limit(100))
            .await
            .expect("in memory")
        {
            lines.push(String::from_utf8(line.clone()).expect("utf-8"));
        }
        assert_eq!(lines, ["one", "", "last-without-newline"]);

        for long in [&b"12345\n"[..], b"123456", b"1234567\nrest"] {
            let mut input = long;
            let error = read_line(&mut input, &mut line, 7, &limit(4))
                .await
                .unwrap_err();
            assert!(matches!(
                error,
                CliError::LineTooLong {
                    line: 7,
                    bytes_max: 4,
                    ..
                }
            ));
        }
        let mut input: &[u8] = b"1234\n";
        assert!(
            read_line(&mut input, &mut line, 1, &limit(4))
                .await
                .expect("fits")
        );
        assert_eq!(line, b"1234");
    }

    #[tokio::test]
    async fn the_producer_takes_the_largest_record_the_topic_allows() {
        for max_message_bytes in [200, 1 << 20, 15 << 20, 200 << 20] {
            let config = producer_config("127.0.0.1:1", Acks::All, max_message_bytes);
            assert_eq!(
                config.record_bytes_max as u64,
                max_message_bytes - HEADER_BYTES as u64
            );
            Producer::new(config).expect("a valid config");
        }
    }

    #[test]
    fn previews_are_short_and_quoted() {
        assert_eq!(preview(b"order 7"), "\"order 7\"");
        assert_eq!(preview(&[b'x'; 50]), format!("\"{}\"...", "x".repeat(40)));
        assert_eq!(preview(b"\xff"), "\"\u{fffd}\"");
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
