//! `nats-bench`: the NATS JetStream side of Strata's baseline (issue 8,
//! `benches/run-baseline.sh`). It drives a JetStream stream the way `strata bench` drives
//! a topic and prints the same JSON fields as `strata bench --output json`, so the script
//! can put both in one table. It is a load tool only; nothing in the broker depends on it.
//!
//! - `produce`: `--producers` connections publish `--message-bytes` values with
//!   JetStream acks, each keeping up to `--acks-pending-max` acks outstanding; latency is
//!   from the publish call to its ack. Partitions map to subjects `STREAM.0 ..
//!   STREAM.<n-1>` of one stream (JetStream has no partitions; a stream is its unit of
//!   ordering and storage), dealt round-robin.
//! - `consume`: one pull consumer (`AckPolicy::None`, like a Strata consumer that commits
//!   nothing) reads `--messages` from the stream start.
//! - `e2e`: a pull consumer takes its position at the stream end, then producers publish
//!   at `--rate`; latency is from the publisher's clock stamp (the first 8 bytes of each
//!   value, µs since the epoch) to receipt. Unlike `strata bench e2e` (1 ms resolution)
//!   this has µs resolution.
//!
//! # Layout
//! One file: arguments, the three modes, and filling in the report
//! (`strata_bench_report::Report`, shared with `strata bench`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, consumer, stream};
use bytes::{Bytes, BytesMut};
use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use strata_bench_report::Report;
use tokio::time::Instant;

/// Largest latency recorded, in µs (one hour); longer ones saturate.
const LATENCY_US_MAX: u64 = 3_600_000_000;
/// Producers or partitions of one run.
const WORKERS_MAX: u32 = 256;
/// Messages a pull request asks for at once.
const PULL_BATCH_MESSAGES: usize = 1_000;
/// A consumer that receives nothing for this long ends the run with an error.
const IDLE_LIMIT: Duration = Duration::from_secs(10);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Parser)]
#[command(about = "JetStream load tool; prints strata bench's JSON fields")]
struct Cli {
    /// The NATS server.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    url: String,
    /// The stream; subjects are `STREAM.<partition>`.
    #[arg(long, default_value = "BENCH")]
    stream: String,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Publish with acks; throughput and publish-to-ack latency.
    Produce(ProduceArgs),
    /// Read the stream from its start.
    Consume {
        /// Messages to read.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        messages: u64,
    },
    /// Publish and consume at once; latency from publish to receipt.
    E2e(ProduceArgs),
}

#[derive(Debug, Clone, clap::Args)]
struct ProduceArgs {
    /// Messages in total over all producers.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    messages: u64,
    /// Bytes of each message's payload.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(8..=1_000_000))]
    message_bytes: u32,
    /// Concurrent producers, each with its own connection.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(WORKERS_MAX)))]
    producers: u32,
    /// Subjects of the stream, dealt round-robin over the messages.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(WORKERS_MAX)))]
    partitions: u32,
    /// Publish acks one producer awaits at once before it waits.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    acks_pending_max: u32,
    /// Messages per second over all producers [default: as fast as possible].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    rate: Option<u64>,
}

/// What a run measured.
#[derive(Debug)]
struct Outcome {
    records: u64,
    bytes: u64,
    elapsed: Duration,
    latency: Option<(Histogram<u64>, &'static str)>,
    /// Paced runs: how late each publish went out against the schedule, in µs.
    send_delay: Option<Histogram<u64>>,
}

fn main() -> Result<(), BoxError> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> Result<(), BoxError> {
    let (mode, outcome) = match &cli.mode {
        Mode::Produce(args) => {
            ensure_stream(&cli).await?;
            ("produce", produce(&cli, args).await?)
        }
        Mode::Consume { messages } => ("consume", consume(&cli, *messages).await?),
        Mode::E2e(args) => {
            ensure_stream(&cli).await?;
            ("e2e", e2e(&cli, args).await?)
        }
    };
    let report = report(mode, &cli.stream, &outcome);
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// Creates the stream on the file store if it does not exist.
async fn ensure_stream(cli: &Cli) -> Result<(), BoxError> {
    let context = jetstream::new(async_nats::connect(&cli.url).await?);
    context
        .get_or_create_stream(stream::Config {
            name: cli.stream.clone(),
            subjects: vec![format!("{}.>", cli.stream)],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await?;
    Ok(())
}

fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds")
}

async fn produce(cli: &Cli, args: &ProduceArgs) -> Result<Outcome, BoxError> {
    let start = Instant::now();
    let published = run_producers(cli, args).await?;
    Ok(Outcome {
        records: args.messages,
        bytes: args.messages * u64::from(args.message_bytes),
        elapsed: start.elapsed(),
        latency: Some((published.acks, "publish to ack")),
        send_delay: published.send_delay,
    })
}

/// What the producers measured.
#[derive(Debug)]
struct Published {
    /// Publish to ack, in µs.
    acks: Histogram<u64>,
    /// Paced runs: how late each publish went out against the schedule, in µs, as
    /// `strata bench` reports it (the schedule starts once the first message is out).
    send_delay: Option<Histogram<u64>>,
}

/// Runs the producers; every message is acknowledged or the run fails.
async fn run_producers(cli: &Cli, args: &ProduceArgs) -> Result<Published, BoxError> {
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..args.producers {
        let context = jetstream::new(async_nats::connect(&cli.url).await?);
        let share = args.messages / u64::from(args.producers)
            + u64::from(u64::from(index) < args.messages % u64::from(args.producers));
        let worker = Producer {
            stream: cli.stream.clone(),
            args: args.clone(),
            index,
            messages: share,
        };
        tasks.spawn(worker.run(context));
    }
    let mut published = Published {
        acks: latency_histogram(),
        send_delay: args.rate.map(|_| latency_histogram()),
    };
    while let Some(joined) = tasks.join_next().await {
        let worker = joined??;
        published.acks.add(worker.acks)?;
        if let (Some(total), Some(delay)) = (&mut published.send_delay, worker.send_delay) {
            total.add(delay)?;
        }
    }
    Ok(published)
}

/// One producer: its share of the messages and where it publishes them.
#[derive(Debug)]
struct Producer {
    stream: String,
    args: ProduceArgs,
    index: u32,
    messages: u64,
}

impl Producer {
    async fn run(self, context: jetstream::Context) -> Result<Published, BoxError> {
        let subjects: Vec<String> = (0..self.args.partitions)
            .map(|partition| format!("{}.{partition}", self.stream))
            .collect();
        let template = payload(self.args.message_bytes as usize);
        let rate = self
            .args
            .rate
            .map(|rate| rate as f64 / f64::from(self.args.producers));
        let pending_max = self.args.acks_pending_max as usize;
        let mut histogram = latency_histogram();
        let mut send_delay = rate.map(|_| latency_histogram());
        let mut schedule_start = None;
        let mut pending = FuturesUnordered::new();
        for sent in 0..self.messages {
            let due = rate
                .zip(schedule_start)
                .map(|(rate, start): (f64, Instant)| {
                    start + Duration::from_secs_f64(sent as f64 / rate)
                });
            if let Some(due) = due {
                tokio::time::sleep_until(due).await;
            }
            while pending.len() >= pending_max {
                record_ack(&mut pending, &mut histogram).await?;
            }
            let subject_index = (sent + u64::from(self.index)) % subjects.len() as u64;
            let subject = subjects
                .get(subject_index as usize)
                .expect("index below the subject count")
                .clone();
            let sent_at = Instant::now();
            if let (Some(due), Some(delay)) = (due, &mut send_delay) {
                delay.saturating_record(micros(sent_at.saturating_duration_since(due)).max(1));
            }
            let ack = context.publish(subject, stamped(&template)).await?;
            pending.push(async move { (sent_at, ack.await) });
            schedule_start.get_or_insert_with(Instant::now);
        }
        while !pending.is_empty() {
            record_ack(&mut pending, &mut histogram).await?;
        }
        Ok(Published {
            acks: histogram,
            send_delay,
        })
    }
}

/// Awaits the next publish ack and records its latency.
async fn record_ack<F>(
    pending: &mut FuturesUnordered<F>,
    histogram: &mut Histogram<u64>,
) -> Result<(), BoxError>
where
    F: Future<
        Output = (
            Instant,
            Result<jetstream::publish::PublishAck, jetstream::context::PublishError>,
        ),
    >,
{
    if let Some((sent_at, ack)) = pending.next().await {
        ack?;
        histogram.saturating_record(elapsed_us(sent_at).max(1));
    }
    Ok(())
}

fn elapsed_us(since: Instant) -> u64 {
    micros(since.elapsed())
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// A value of `bytes` bytes, printable and varied, as `strata bench` sends.
fn payload(bytes: usize) -> Vec<u8> {
    (0..bytes).map(|index| b'a' + (index % 26) as u8).collect()
}

/// The template with its first 8 bytes replaced by the wall clock in µs (little endian).
/// The copy per message is what a real producer pays to build a payload anyway.
fn stamped(template: &[u8]) -> Bytes {
    let mut value = BytesMut::from(template);
    if let Some(head) = value.get_mut(..8) {
        head.copy_from_slice(&now_us().to_le_bytes());
    }
    value.freeze()
}

fn now_us() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    u64::try_from(since_epoch.as_micros()).unwrap_or(u64::MAX)
}

/// A pull consumer with no acks, starting at `deliver_policy`.
async fn pull_consumer(
    cli: &Cli,
    deliver_policy: consumer::DeliverPolicy,
) -> Result<consumer::PullConsumer, BoxError> {
    let context = jetstream::new(async_nats::connect(&cli.url).await?);
    let stream = context.get_stream(&cli.stream).await?;
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            deliver_policy,
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await?;
    Ok(consumer)
}

async fn consume(cli: &Cli, messages: u64) -> Result<Outcome, BoxError> {
    let consumer = pull_consumer(cli, consumer::DeliverPolicy::All).await?;
    let start = Instant::now();
    let received = receive(consumer, messages, false).await?;
    Ok(Outcome {
        records: received.records,
        bytes: received.bytes,
        elapsed: received.last_at.saturating_duration_since(start),
        latency: None,
        send_delay: None,
    })
}

async fn e2e(cli: &Cli, args: &ProduceArgs) -> Result<Outcome, BoxError> {
    let consumer = pull_consumer(cli, consumer::DeliverPolicy::New).await?;
    let start = Instant::now();
    let receiving = tokio::spawn(receive(consumer, args.messages, true));
    let published = run_producers(cli, args).await?;
    let received = receiving.await??;
    Ok(Outcome {
        records: received.records,
        bytes: received.bytes,
        elapsed: received.last_at.saturating_duration_since(start),
        latency: Some((received.histogram, "publish to receipt, µs resolution")),
        send_delay: published.send_delay,
    })
}

/// What a consumer received.
#[derive(Debug)]
struct Received {
    records: u64,
    bytes: u64,
    histogram: Histogram<u64>,
    last_at: Instant,
}

/// Reads `messages` messages; with `latency`, records each one's age from its stamp.
async fn receive(
    consumer: consumer::PullConsumer,
    messages: u64,
    latency: bool,
) -> Result<Received, BoxError> {
    let mut stream = consumer
        .stream()
        .max_messages_per_batch(PULL_BATCH_MESSAGES)
        .messages()
        .await?;
    let mut received = Received {
        records: 0,
        bytes: 0,
        histogram: latency_histogram(),
        last_at: Instant::now(),
    };
    while received.records < messages {
        let next = tokio::time::timeout(IDLE_LIMIT, stream.next()).await;
        let message = match next {
            Ok(Some(message)) => message?,
            Ok(None) => break,
            Err(_) => {
                return Err(format!(
                    "received {} of {messages} messages, then none for {} s",
                    received.records,
                    IDLE_LIMIT.as_secs()
                )
                .into());
            }
        };
        if latency && let Some(stamp) = message.payload.get(..8) {
            let stamp = u64::from_le_bytes(stamp.try_into().expect("8 bytes"));
            received
                .histogram
                .saturating_record(now_us().saturating_sub(stamp).max(1));
        }
        received.records += 1;
        received.bytes += message.payload.len() as u64;
        received.last_at = Instant::now();
    }
    Ok(received)
}

fn report(mode: &'static str, topic: &str, outcome: &Outcome) -> Report {
    let mut report = Report::new(mode, topic, outcome.records, outcome.bytes, outcome.elapsed);
    if let Some((histogram, measured)) = &outcome.latency {
        report = report.with_latency(measured, &|q| quantile(histogram, q));
    }
    if let Some(histogram) = &outcome.send_delay {
        report = report.with_send_delay(&|q| quantile(histogram, q));
    }
    report
}

/// The `q` quantile of `histogram`, `None` if it is empty: the top of its bucket, where
/// `strata bench` reports the bottom (under 0.1 % apart at 3 significant digits).
fn quantile(histogram: &Histogram<u64>, q: f64) -> Option<u64> {
    (!histogram.is_empty()).then(|| histogram.value_at_quantile(q))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_overwrite_only_the_first_eight_bytes() {
        let template = payload(16);
        let value = stamped(&template);
        assert_eq!(value.len(), 16);
        assert_eq!(value.get(8..), template.get(8..));
        let stamp = u64::from_le_bytes(value.get(..8).unwrap().try_into().unwrap());
        assert!(now_us() >= stamp);
    }

    #[test]
    fn reports_carry_strata_bench_fields() {
        let outcome = Outcome {
            records: 10,
            bytes: 20_000_000,
            elapsed: Duration::from_secs(2),
            latency: None,
            send_delay: None,
        };
        let json = serde_json::to_value(report("consume", "S", &outcome)).unwrap();
        assert_eq!(json["records_per_second"], 5.0);
        assert_eq!(json["megabytes_per_second"], 10.0);
        assert!(json.get("latency_us_p50").is_none());
        assert!(json.get("send_delay_us_p99").is_none());
        let mut delay = latency_histogram();
        delay.record(7).unwrap();
        let paced = Outcome {
            send_delay: Some(delay),
            ..outcome
        };
        let json = serde_json::to_value(report("produce", "S", &paced)).unwrap();
        assert_eq!(json["send_delay_us_max"], 7);
    }
}
