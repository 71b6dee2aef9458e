//! The tasks of a bench run: producers that pace and time their sends, consumers that
//! count (and for e2e, time) what they receive.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use strata_client::{
    AutoOffsetReset, Consumer, ConsumerConfig, DeliveryFuture, Producer, ProducerConfig,
    ProducerRecord, TopicPartition,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use strata_bench_report::CpuUse;

use super::cpu::{CpuCounters, use_since};
use super::report::{Outcome, Progress, latency_histogram};
use super::stamp::{STAMP_BYTES, Stamper, now_us, sent_us};
use super::{Budget, CommonArgs, ConsumerArgs, ProducerArgs};
use crate::error::CliError;

/// Deliveries one producer has queued for its recorder; beyond it the producer waits.
const DELIVERIES_PENDING_MAX: usize = 65_536;
/// A producer hands its deliveries to the recorder in chunks of up to this many: one
/// channel operation per chunk rather than per record. A chunk fills in well under a
/// millisecond, the most it adds to a record's measured latency, and a paced producer
/// hands over what it holds before it waits for the pace.
const DELIVERIES_CHUNK: usize = 64;

/// Deliveries in send order, each with its send time.
type Deliveries = Vec<(Instant, DeliveryFuture)>;
/// A run whose consumers receive nothing for this long ends with an error.
const IDLE_LIMIT: Duration = Duration::from_secs(10);
/// How long one consumer poll waits; only the pace of the stop checks.
const POLL_WAIT: Duration = Duration::from_millis(100);

/// Runs `bench produce`.
///
/// # Errors
/// A producer that cannot be built; records that cannot be queued are counted as failed.
pub async fn produce(
    config: &ProducerConfig,
    topic: &str,
    args: &ProducerArgs,
    budget: Budget,
) -> Result<Outcome, CliError> {
    let acked = Arc::new(AtomicU64::new(0));
    let total = match budget {
        Budget::Messages(messages) => Some(messages),
        Budget::Duration(_) => None,
    };
    let progress = Progress::start("produce", total, Arc::clone(&acked));
    let cpu_start = CpuCounters::read();
    let sent = run_producers(config, topic, args, budget, acked, false).await?;
    let cpu = use_since(cpu_start);
    drop(progress);
    Ok(Outcome {
        mode: "produce",
        records: sent.delivered,
        bytes: sent.delivered * u64::from(args.message_bytes),
        elapsed: sent.elapsed,
        latency: Some((sent.histogram, "send to ack")),
        send_delay: sent.send_delay,
        failed: sent.failed,
        first_error: sent
            .first_error
            .map(|error| CliError::from_client(error, topic)),
        acknowledgements: Some(sent.acknowledgements),
        cpu,
    })
}

/// Runs `bench consume`: reads from the log start until it has `--messages` records, or
/// all the topic held when the run began, or `--duration` passed.
///
/// # Errors
/// An empty topic, or one holding fewer than `--messages` records; consumer errors;
/// no record for [`IDLE_LIMIT`].
pub async fn consume(
    bootstrap: &str,
    common: &CommonArgs,
    args: &ConsumerArgs,
    partitions: u32,
) -> Result<Outcome, CliError> {
    let topic = common.topic.as_str();
    let consumers = consumers(bootstrap, topic, args.consumers, partitions).await?;
    let available = available_records(&consumers, topic).await?;
    let target = match (common.messages, common.duration) {
        (Some(messages), _) if messages > available => {
            return Err(CliError::Bench(format!(
                "topic '{topic}' holds {available} records, fewer than --messages {messages}; \
                 write more first: strata bench produce --topic {topic} --messages {messages}"
            )));
        }
        (Some(messages), _) => messages,
        (None, _) if available == 0 => {
            return Err(CliError::Bench(format!(
                "topic '{topic}' is empty; write records first: strata bench produce --topic {topic}"
            )));
        }
        (None, _) => available,
    };
    let deadline = common.duration.map(|duration| Instant::now() + duration);
    let shared = Shared::new(Some(target));
    let progress = Progress::start("consume", Some(target), Arc::clone(&shared.received));
    let cpu_start = CpuCounters::read();
    let start = Instant::now();
    let received = run_consumers(consumers, &shared, deadline, false).await?;
    let cpu = shared.cpu_since(cpu_start);
    drop(progress);
    if deadline.is_none() && received.records < target {
        return Err(idle_error(topic, received.records, target));
    }
    Ok(Outcome {
        mode: "consume",
        records: received.records,
        bytes: received.bytes,
        elapsed: received.last_at.saturating_duration_since(start),
        latency: None,
        send_delay: None,
        failed: 0,
        first_error: None,
        acknowledgements: None,
        cpu,
    })
}

/// Refuses `bench e2e` records too short to carry the send-time stamp.
///
/// # Errors
/// [`CliError::Bench`] below [`STAMP_BYTES`].
pub fn check_stampable(producer: &ProducerArgs) -> Result<(), CliError> {
    if (producer.message_bytes as usize) < STAMP_BYTES {
        return Err(CliError::Bench(format!(
            "bench e2e stamps each record's send time into its first {STAMP_BYTES} bytes: \
             --message-bytes must be at least {STAMP_BYTES}"
        )));
    }
    Ok(())
}

/// Runs `bench e2e`: consumers take their positions at the log end, then producers
/// write; the run ends when every delivered record was received.
///
/// # Errors
/// As for [`produce`] and [`consume`]; records delivered but never received.
pub async fn e2e(
    config: &ProducerConfig,
    common: &CommonArgs,
    producer: &ProducerArgs,
    consumer: &ConsumerArgs,
    partitions: u32,
) -> Result<Outcome, CliError> {
    let topic = common.topic.as_str();
    let bootstrap = config.client.bootstrap.join(",");
    let mut consumers = consumers(&bootstrap, topic, consumer.consumers, partitions).await?;
    // Positions are taken before any record is sent, so every record is received.
    for consumer in &mut consumers {
        let assigned = consumer.assignment();
        consumer
            .seek_to_end(&assigned)
            .await
            .map_err(|error| CliError::from_client(error, topic))?;
    }
    // The target is unknown until the producers finish.
    let shared = Shared::new(None);
    let total = match common.budget() {
        Budget::Messages(messages) => Some(messages),
        Budget::Duration(_) => None,
    };
    let progress = Progress::start("e2e", total, Arc::clone(&shared.received));
    let cpu_start = CpuCounters::read();
    let start = Instant::now();
    let receiving = {
        let shared = shared.clone();
        tokio::spawn(async move { run_consumers(consumers, &shared, None, true).await })
    };
    let sent = run_producers(
        config,
        topic,
        producer,
        common.budget(),
        Arc::new(AtomicU64::new(0)),
        true,
    )
    .await;
    let delivered = sent.as_ref().map_or(0, |sent| sent.delivered);
    shared.target.store(delivered, Ordering::Release);
    // The consumers may have received every record already.
    shared.note_if_done();
    let received = receiving.await.expect("consumer tasks do not panic");
    let cpu = shared.cpu_since(cpu_start);
    drop(progress);
    let (sent, received) = (sent?, received?);
    if received.records < delivered {
        return Err(idle_error(topic, received.records, delivered));
    }
    Ok(Outcome {
        mode: "e2e",
        records: received.records,
        bytes: received.bytes,
        elapsed: received.last_at.saturating_duration_since(start),
        latency: Some((received.histogram, "send to receipt")),
        send_delay: sent.send_delay,
        failed: sent.failed,
        first_error: sent
            .first_error
            .map(|error| CliError::from_client(error, topic)),
        acknowledgements: Some(sent.acknowledgements),
        cpu,
    })
}

fn idle_error(topic: &str, received: u64, expected: u64) -> CliError {
    CliError::Bench(format!(
        "received {received} of {expected} records from topic '{topic}', then none for {} s",
        IDLE_LIMIT.as_secs()
    ))
}

/// What the producers of a run achieved.
#[derive(Debug)]
struct Sent {
    delivered: u64,
    failed: u64,
    first_error: Option<strata_client::Error>,
    histogram: Histogram<u64>,
    /// Paced runs: how late each send was against the schedule.
    send_delay: Option<Histogram<u64>>,
    /// From the first send to the last acknowledgement.
    elapsed: Duration,
    /// The longest gap in any one producer's acknowledgements, and the failures that
    /// were not retriable.
    acknowledgements: Acknowledgements,
}

async fn run_producers(
    config: &ProducerConfig,
    topic: &str,
    args: &ProducerArgs,
    budget: Budget,
    acked: Arc<AtomicU64>,
    stamp_sent: bool,
) -> Result<Sent, CliError> {
    // Leaked once per run: a static value is cloned into each record without a reference
    // count, as a Java producer reuses one byte array.
    let payload = Bytes::from_static(payload(args.message_bytes as usize).leak());
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..args.producers {
        let producer = Producer::new(config.clone())?;
        let worker = ProducerWorker {
            topic: Arc::from(topic),
            payload: payload.clone(),
            budget: worker_budget(budget, index, args.producers, start),
            rate: args
                .rate
                .map(|rate| rate as f64 / f64::from(args.producers)),
            stamp_sent,
        };
        tasks.spawn(worker.run(producer, Arc::clone(&acked)));
    }
    let mut sent = Sent {
        delivered: 0,
        failed: 0,
        first_error: None,
        histogram: latency_histogram(),
        send_delay: args.rate.map(|_| latency_histogram()),
        elapsed: Duration::ZERO,
        acknowledgements: Acknowledgements::default(),
    };
    while let Some(joined) = tasks.join_next().await {
        let worker = joined.expect("producer tasks do not panic");
        sent.delivered += worker.delivered;
        sent.failed += worker.failed;
        sent.acknowledgements.add(&worker.acknowledgements);
        if sent.first_error.is_none() {
            sent.first_error = worker.first_error;
        }
        sent.histogram
            .add(&worker.histogram)
            .expect("histograms share bounds");
        if let (Some(total), Some(delay)) = (&mut sent.send_delay, &worker.send_delay) {
            total.add(delay).expect("histograms share bounds");
        }
    }
    sent.elapsed = start.elapsed();
    Ok(sent)
}

/// Where one producer stops.
#[derive(Debug, Clone, Copy)]
enum WorkerBudget {
    Messages(u64),
    Until(Instant),
}

/// Splits the run's budget: `messages` as evenly as possible over the producers.
fn worker_budget(budget: Budget, index: u32, workers: u32, start: Instant) -> WorkerBudget {
    match budget {
        Budget::Messages(messages) => {
            let (share, rest) = (messages / u64::from(workers), messages % u64::from(workers));
            WorkerBudget::Messages(share + u64::from(u64::from(index) < rest))
        }
        Budget::Duration(duration) => WorkerBudget::Until(start + duration),
    }
}

/// A value of `bytes` bytes: printable, varied, and never compressed by the client.
fn payload(bytes: usize) -> Vec<u8> {
    (0..bytes).map(|index| b'a' + (index % 26) as u8).collect()
}

struct ProducerWorker {
    topic: Arc<str>,
    payload: Bytes,
    budget: WorkerBudget,
    /// Records per second for this producer; `None` is unpaced.
    rate: Option<f64>,
    /// Put the send time in the first bytes of each value ([`Stamper`]), for e2e latency.
    stamp_sent: bool,
}

/// What one producer achieved.
struct WorkerSent {
    delivered: u64,
    failed: u64,
    first_error: Option<strata_client::Error>,
    histogram: Histogram<u64>,
    send_delay: Option<Histogram<u64>>,
    acknowledgements: Acknowledgements,
    /// When the last acknowledgement was seen, or the first send before any was.
    last_acknowledged: Option<Instant>,
}

/// How steadily a run's producers were answered: the figures a failover is judged by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Acknowledgements {
    /// The longest time one producer went without an acknowledgement, from its first
    /// send to its last acknowledgement. The producers of a run are compared, not
    /// merged: one producer stalled while another is answered is still a stall.
    pub gap_max: Duration,
    /// Records that failed with an error no retry could fix ([`strata_client::Error::is_retriable`]);
    /// the other failures ran out of retries.
    pub failed_non_retriable: u64,
}

impl Acknowledgements {
    /// Takes in another producer's figures.
    fn add(&mut self, other: &Acknowledgements) {
        self.gap_max = self.gap_max.max(other.gap_max);
        self.failed_non_retriable += other.failed_non_retriable;
    }
}

impl ProducerWorker {
    async fn run(self, producer: Producer, acked: Arc<AtomicU64>) -> WorkerSent {
        let (deliveries, pending) = mpsc::channel(DELIVERIES_PENDING_MAX / DELIVERIES_CHUNK);
        let mut chunk = Vec::with_capacity(DELIVERIES_CHUNK);
        let recorder = tokio::spawn(record_deliveries(pending, acked));
        let mut values = self.stamp_sent.then(|| Stamper::new(&self.payload));
        let mut sent: u64 = 0;
        let mut send_error = None;
        let mut sent_at = Instant::now();
        // How late each paced send goes out against the schedule (the OpenMessaging
        // Benchmark's publish delay). Latency is timed from the actual send, so a
        // producer that falls behind leaves its backlog out of it; this shows it. The
        // schedule starts once the first record is queued, after the producer's start
        // (metadata, producer id).
        let mut send_delay = self.rate.map(|_| latency_histogram());
        let mut schedule_start = None;
        while self.has_budget(sent) {
            let due = self
                .rate
                .zip(schedule_start)
                .map(|(rate, start): (f64, Instant)| {
                    start + Duration::from_secs_f64(sent as f64 / rate)
                });
            // An unpaced chunk's records are timed from its first send: the later ones
            // went out after it, so their latency is over-stated by the microseconds a
            // chunk takes to send, never under-stated. A paced record is timed from its
            // own send.
            if let Some(due) = due {
                sent_at = Instant::now();
                if sent_at < due {
                    // The recorder gets the chunk before the wait, so no delivery is
                    // timed late for the pace.
                    if !chunk.is_empty() && !hand_over(&mut chunk, &deliveries).await {
                        break;
                    }
                    tokio::time::sleep_until(due).await;
                    sent_at = Instant::now();
                }
                if let Some(delay) = &mut send_delay {
                    delay.saturating_record(micros(sent_at.saturating_duration_since(due)).max(1));
                }
            } else if chunk.is_empty() {
                sent_at = Instant::now();
            }
            let value = match &mut values {
                Some(values) => values.stamped(),
                None => self.payload.clone(),
            };
            let record = ProducerRecord::new(Arc::clone(&self.topic), value);
            match producer.send(record).await {
                Ok(delivery) => {
                    chunk.push((sent_at, delivery));
                    if chunk.len() == DELIVERIES_CHUNK && !hand_over(&mut chunk, &deliveries).await
                    {
                        break;
                    }
                }
                Err(error) => {
                    send_error = Some(error);
                    break;
                }
            }
            sent += 1;
            schedule_start.get_or_insert_with(Instant::now);
        }
        if !chunk.is_empty() {
            // The recorder ends only after this channel closes, so the send succeeds.
            let _ = deliveries.send(chunk).await;
        }
        drop(deliveries);
        producer.close().await;
        let mut outcome = recorder.await.expect("the recorder does not panic");
        outcome.send_delay = send_delay;
        if let Some(error) = send_error {
            outcome.fail(error);
        }
        outcome
    }

    fn has_budget(&self, sent: u64) -> bool {
        match self.budget {
            WorkerBudget::Messages(messages) => sent < messages,
            WorkerBudget::Until(end) => Instant::now() < end,
        }
    }
}

/// Hands `chunk` to the recorder; `false` if the recorder is gone.
async fn hand_over(chunk: &mut Deliveries, deliveries: &mpsc::Sender<Deliveries>) -> bool {
    let full = std::mem::replace(chunk, Vec::with_capacity(DELIVERIES_CHUNK));
    deliveries.send(full).await.is_ok()
}

/// Awaits deliveries in send order, timing each from its send to its acknowledgement.
///
/// A partition's records are acknowledged in send order and the records of a batch all
/// at once, so awaiting in order costs a wake-up per batch rather than per record. A
/// record acknowledged before an earlier one of another partition is timed when the
/// earlier one is: its latency is over-stated, never under-stated. So is that of a record
/// found acknowledged already: it is timed at the next clock reading, which comes
/// before the next wait or at the end of its chunk, so the clock is read about once per
/// batch and chunk rather than once per record.
async fn record_deliveries(
    mut deliveries: mpsc::Receiver<Deliveries>,
    acked: Arc<AtomicU64>,
) -> WorkerSent {
    let mut outcome = WorkerSent::new();
    // Send times of records acknowledged but not yet timed.
    let mut untimed = Vec::with_capacity(DELIVERIES_CHUNK);
    while let Some(chunk) = deliveries.recv().await {
        let delivered_before = outcome.delivered;
        for (sent_at, delivery) in chunk {
            // Until the first acknowledgement, the wait counts from the first send.
            outcome.last_acknowledged.get_or_insert(sent_at);
            let mut delivery = pin!(delivery);
            let result = match poll_fn(|cx| Poll::Ready(delivery.as_mut().poll(cx))).await {
                Poll::Ready(result) => {
                    if result.is_ok() {
                        untimed.push(sent_at);
                    }
                    result
                }
                Poll::Pending => {
                    outcome.time(untimed.drain(..), Instant::now());
                    let result = delivery.await;
                    if result.is_ok() {
                        outcome.time([sent_at], Instant::now());
                    }
                    result
                }
            };
            match result {
                Ok(_) => outcome.delivered += 1,
                Err(error) => outcome.fail(error),
            }
        }
        outcome.time(untimed.drain(..), Instant::now());
        acked.fetch_add(outcome.delivered - delivered_before, Ordering::Relaxed);
    }
    outcome
}

impl WorkerSent {
    fn new() -> Self {
        Self {
            delivered: 0,
            failed: 0,
            first_error: None,
            histogram: latency_histogram(),
            send_delay: None,
            acknowledgements: Acknowledgements::default(),
            last_acknowledged: None,
        }
    }

    /// Counts a record that failed for good.
    fn fail(&mut self, error: strata_client::Error) {
        self.failed += 1;
        if !error.is_retriable() {
            self.acknowledgements.failed_non_retriable += 1;
        }
        self.first_error.get_or_insert(error);
    }

    /// Records the latency of each of `sent` (send times) as acknowledged by `now`: once
    /// for each run of equal send times (an unpaced chunk shares one). They also end the
    /// wait since the previous acknowledgement.
    fn time(&mut self, sent: impl IntoIterator<Item = Instant>, now: Instant) {
        let mut sent = sent.into_iter().peekable();
        if sent.peek().is_some() {
            self.acknowledged_at(now);
        }
        while let Some(sent_at) = sent.next() {
            let mut count = 1;
            while sent.next_if_eq(&sent_at).is_some() {
                count += 1;
            }
            let latency_us = micros(now.duration_since(sent_at));
            self.histogram.saturating_record_n(latency_us.max(1), count);
        }
    }

    /// Notes an acknowledgement seen at `now`, and the wait since the one before (or
    /// since the first send).
    fn acknowledged_at(&mut self, now: Instant) {
        if let Some(last) = self.last_acknowledged {
            let gap = now.saturating_duration_since(last);
            self.acknowledgements.gap_max = self.acknowledgements.gap_max.max(gap);
        }
        self.last_acknowledged = Some(now);
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// State the consumers of a run share.
#[derive(Debug, Clone)]
struct Shared {
    /// Records received by all consumers.
    received: Arc<AtomicU64>,
    /// Records to receive in total; `u64::MAX` until known.
    target: Arc<AtomicU64>,
    /// The CPU counters when the target was first seen reached: the end of the run's
    /// window. The other consumers stop at their next poll, up to [`POLL_WAIT`] later,
    /// idle time that would dilute a short run's figures.
    cpu_end: Arc<OnceLock<Option<CpuCounters>>>,
}

impl Shared {
    fn new(target: Option<u64>) -> Self {
        Self {
            received: Arc::new(AtomicU64::new(0)),
            target: Arc::new(AtomicU64::new(target.unwrap_or(u64::MAX))),
            cpu_end: Arc::new(OnceLock::new()),
        }
    }

    fn done(&self) -> bool {
        self.received.load(Ordering::Acquire) >= self.target.load(Ordering::Acquire)
    }

    /// Reads the CPU counters once the target is reached, the first time.
    fn note_if_done(&self) {
        if self.done() {
            self.cpu_end.get_or_init(CpuCounters::read);
        }
    }

    /// Where the CPU went from `start` to the target's end, or to now if the run
    /// stopped short of it (a deadline, an idle limit).
    fn cpu_since(&self, start: Option<CpuCounters>) -> Option<CpuUse> {
        match self.cpu_end.get() {
            Some(end) => end.as_ref()?.since(&start?),
            None => use_since(start),
        }
    }
}

/// `count` consumers with the topic's partitions dealt round-robin; without a seek they
/// start at the log start.
async fn consumers(
    bootstrap: &str,
    topic: &str,
    count: u32,
    partitions: u32,
) -> Result<Vec<Consumer>, CliError> {
    if count > partitions {
        return Err(CliError::Bench(format!(
            "--consumers {count} exceeds the {partitions} partitions of topic '{topic}'"
        )));
    }
    let mut consumers = Vec::new();
    for index in 0..count {
        let assigned: Vec<TopicPartition> = (index..partitions)
            .step_by(count as usize)
            .map(|partition| TopicPartition::new(topic, partition))
            .collect();
        let mut consumer = Consumer::new(ConsumerConfig {
            auto_offset_reset: AutoOffsetReset::Earliest,
            ..ConsumerConfig::new(bootstrap)
        })?;
        consumer.assign(&assigned);
        consumers.push(consumer);
    }
    Ok(consumers)
}

/// Records between the log start and the high watermark of every partition.
async fn available_records(consumers: &[Consumer], topic: &str) -> Result<u64, CliError> {
    let mut available = 0;
    for consumer in consumers {
        let assigned = consumer.assignment();
        let starts = consumer.beginning_offsets(&assigned).await;
        let ends = consumer.end_offsets(&assigned).await;
        let (starts, ends) = starts
            .and_then(|starts| Ok((starts, ends?)))
            .map_err(|error| CliError::from_client(error, topic))?;
        for ((_, start), (_, end)) in starts.iter().zip(&ends) {
            available += end.saturating_sub(*start);
        }
    }
    Ok(available)
}

/// What the consumers of a run received.
#[derive(Debug)]
struct Received {
    records: u64,
    bytes: u64,
    histogram: Histogram<u64>,
    /// When the last record arrived.
    last_at: Instant,
}

/// Polls every consumer until the target is reached, the deadline passes, or nothing
/// arrives for [`IDLE_LIMIT`]. With `latency`, records' ages at receipt are recorded.
async fn run_consumers(
    consumers: Vec<Consumer>,
    shared: &Shared,
    deadline: Option<Instant>,
    latency: bool,
) -> Result<Received, CliError> {
    let mut tasks = tokio::task::JoinSet::new();
    for consumer in consumers {
        tasks.spawn(consume_until_done(
            consumer,
            shared.clone(),
            deadline,
            latency,
        ));
    }
    let mut received = Received {
        records: 0,
        bytes: 0,
        histogram: latency_histogram(),
        last_at: Instant::now(),
    };
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("consumer tasks do not panic") {
            Ok(part) => {
                received.records += part.records;
                received.bytes += part.bytes;
                received
                    .histogram
                    .add(&part.histogram)
                    .expect("same bounds");
                received.last_at = received.last_at.max(part.last_at);
            }
            Err(error) => first_error = first_error.or(Some(error)),
        }
    }
    match first_error {
        Some(error) => Err(CliError::Client(error)),
        None => Ok(received),
    }
}

async fn consume_until_done(
    mut consumer: Consumer,
    shared: Shared,
    deadline: Option<Instant>,
    latency: bool,
) -> strata_client::Result<Received> {
    let mut received = Received {
        records: 0,
        bytes: 0,
        histogram: latency_histogram(),
        last_at: Instant::now(),
    };
    // Idleness is judged on the shared count: a consumer whose partitions got no
    // records keeps waiting while the others make progress.
    let mut seen = (shared.received.load(Ordering::Acquire), Instant::now());
    while !shared.done() && deadline.is_none_or(|deadline| Instant::now() < deadline) {
        let records = consumer.poll(POLL_WAIT).await?;
        let now_us = now_us();
        for record in &records {
            received.bytes += record.key.as_ref().map_or(0, Bytes::len) as u64
                + record.value.as_ref().map_or(0, Bytes::len) as u64;
            if latency && let Some(sent_us) = record.value.as_deref().and_then(sent_us) {
                received
                    .histogram
                    .saturating_record(now_us.saturating_sub(sent_us).max(1));
            }
        }
        if !records.is_empty() {
            received.records += records.len() as u64;
            received.last_at = Instant::now();
            shared
                .received
                .fetch_add(records.len() as u64, Ordering::AcqRel);
            shared.note_if_done();
        }
        let total = shared.received.load(Ordering::Acquire);
        if total != seen.0 {
            seen = (total, Instant::now());
        } else if seen.1.elapsed() >= IDLE_LIMIT {
            break;
        }
    }
    Ok(received)
}

#[cfg(test)]
mod tests {
    use strata_client::protocol::ErrorCode;

    use super::*;

    #[test]
    fn message_budgets_split_evenly() {
        let start = Instant::now();
        let shares: Vec<u64> = (0..3)
            .map(
                |index| match worker_budget(Budget::Messages(10), index, 3, start) {
                    WorkerBudget::Messages(messages) => messages,
                    WorkerBudget::Until(_) => unreachable!("a message budget"),
                },
            )
            .collect();
        assert_eq!(shares, [4, 3, 3]);
    }

    #[test]
    fn every_record_is_timed_once_from_its_own_send_time() {
        let early = Instant::now();
        let late = early + Duration::from_millis(4);
        let mut sent = WorkerSent::new();
        sent.time(
            [early, early, early, late, early],
            early + Duration::from_millis(5),
        );
        let histogram = &sent.histogram;
        assert_eq!(histogram.len(), 5);
        assert_eq!(histogram.count_between(4_990, 5_010), 4);
        assert_eq!(histogram.count_between(990, 1_010), 1);
    }

    #[test]
    fn the_longest_wait_runs_from_the_first_send_or_an_acknowledgement_to_the_next() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut sent = WorkerSent::new();
        sent.last_acknowledged = Some(start);
        sent.time([start], at(2));
        // A clock reading with nothing acknowledged does not end the wait.
        sent.time([], at(1_000));
        sent.time([at(3), at(3)], at(3_502));
        sent.time([at(3_503)], at(3_510));
        assert_eq!(sent.acknowledgements.gap_max, Duration::from_millis(3_500));

        let mut first = WorkerSent::new();
        first.last_acknowledged = Some(start);
        first.time([start], at(40));
        assert_eq!(first.acknowledgements.gap_max, Duration::from_millis(40));
    }

    #[test]
    fn failures_that_no_retry_could_fix_are_counted_apart() {
        let mut sent = WorkerSent::new();
        sent.fail(strata_client::Error::RequestTimedOut {
            address: "127.0.0.1:1".into(),
            api: "Produce",
            timeout_ms: 30_000,
        });
        sent.fail(strata_client::Error::Broker {
            code: ErrorCode::MessageTooLarge,
            message: String::new(),
        });
        sent.fail(strata_client::Error::Broker {
            code: ErrorCode::NotLeader,
            message: String::new(),
        });
        assert_eq!(sent.failed, 3);
        assert_eq!(sent.acknowledgements.failed_non_retriable, 1);
        assert!(matches!(
            sent.first_error,
            Some(strata_client::Error::RequestTimedOut { .. })
        ));
    }

    #[test]
    fn producers_figures_combine_as_the_longest_wait_and_the_sum_of_failures() {
        let mut run = Acknowledgements::default();
        run.add(&Acknowledgements {
            gap_max: Duration::from_millis(900),
            failed_non_retriable: 1,
        });
        run.add(&Acknowledgements {
            gap_max: Duration::from_millis(300),
            failed_non_retriable: 2,
        });
        assert_eq!(
            run,
            Acknowledgements {
                gap_max: Duration::from_millis(900),
                failed_non_retriable: 3,
            }
        );
    }

    #[test]
    fn payloads_have_the_requested_size() {
        assert_eq!(payload(3), b"abc");
        assert_eq!(payload(1000).len(), 1000);
    }
}
