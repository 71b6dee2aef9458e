//! The consumer: manual partition assignment, or a subscription to a consumer group.
//!
//! - this module: the public API, the partitions' state and the buffer `poll` takes
//!   records from;
//! - `position`: seeks, offset lookups and resets by `auto_offset_reset`;
//! - `fetcher`: fetch requests, one task per leader, and their answers;
//! - `decode`: an answer's batches into records, in the fetch task or a task of its own;
//! - `truncation`: what the consumer does when a leader's log no longer has records it
//!   read (KIP-320);
//! - `subscription`: the consumer group side.

mod decode;
mod fetcher;
mod position;
mod subscription;
mod truncation;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use std::vec;

use bytes::Bytes;
use futures_util::Stream;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::cluster::Cluster;
use crate::config::ConsumerConfig;
use crate::error::{Error, Result};
use crate::record::{ConsumerRecord, TopicPartition};
use decode::{Decoding, next_decoded};
use fetcher::FetchOutcome;

pub use subscription::CommitHandle;
use subscription::{GroupState, Listener};
pub use truncation::LogTruncation;

/// How long [`Consumer::recv`] waits per round before looking again.
const RECV_ROUND: Duration = Duration::from_secs(3_600);

/// Reads records from partitions the application assigns ([`assign`](Self::assign)) or
/// a consumer group gives it ([`subscribe`](Self::subscribe)). Owned by one task
/// (methods take `&mut self`); `Send`, so it can move between tasks.
///
/// Fetches run in background tasks, one per leader broker. The next fetch of a
/// partition starts as soon as the previous answer's batch headers are read, so the
/// network works while that answer is decoded (in a task of its own) and while the
/// application processes records (prefetch, bounded by `prefetch_bytes_max`).
/// A fetch long-polls the broker for up to `fetch_wait_ms_max`. Each batch's CRC is
/// checked, and records below the requested offset (a fetch returns whole batches) are
/// skipped.
///
/// # Example
/// ```no_run
/// use std::time::Duration;
/// use strata_client::{AutoOffsetReset, Consumer, ConsumerConfig, TopicPartition};
///
/// # async fn example() -> strata_client::Result<()> {
/// let mut consumer = Consumer::new(ConsumerConfig {
///     auto_offset_reset: AutoOffsetReset::Earliest,
///     ..ConsumerConfig::new("127.0.0.1:9400")
/// })?;
/// consumer.assign(&[TopicPartition::new("orders", 0), TopicPartition::new("orders", 1)]);
/// consumer.seek(&TopicPartition::new("orders", 1), 42)?;
/// loop {
///     for record in consumer.poll(Duration::from_millis(500)).await? {
///         println!("{}-{}@{}", record.topic, record.partition, record.offset);
///     }
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Consumer {
    cluster: Arc<Cluster>,
    config: ConsumerConfig,
    partitions: BTreeMap<TopicPartition, PartitionState>,
    /// Fetched records not yet returned, in fetch order (per partition, offset order):
    /// one partition's decoded answer per entry, never empty. Records move from the
    /// decoder to the caller once, and a poll that takes a whole entry takes its vector.
    buffer: VecDeque<vec::IntoIter<ConsumerRecord>>,
    buffered_bytes: usize,
    fetches: JoinSet<FetchOutcome>,
    /// Fetched partitions whose records are still being decoded, in fetch order. Their
    /// next fetch is already allowed, so decoding overlaps the next round trip.
    decoding: VecDeque<Decoding>,
    /// Errors to report from the next `poll`.
    errors: VecDeque<Error>,
    /// Log truncations detected and not yet taken by the application, oldest first; at
    /// most `truncation::TRUNCATIONS_KEPT_MAX`.
    truncations: VecDeque<LogTruncation>,
    topic_names: HashMap<String, Arc<str>>,
    /// Source of fresh partition epochs; never reused, even across unassign/assign.
    epochs: u64,
    /// The group membership while subscribed; then `partitions` holds exactly the
    /// partitions the consumer owns in the group.
    group: Option<GroupState>,
    listener: Listener,
}

#[derive(Debug)]
struct PartitionState {
    /// Next offset to return to the application; `None` until reset or seek.
    position: Option<u64>,
    /// Next offset to fetch: the position plus what is buffered or being decoded.
    fetch_offset: u64,
    /// The leader epoch of the batch that ends at `fetch_offset`, sent with the fetch
    /// so the leader can tell whether its log still has what was read (KIP-320);
    /// `None` after a seek or reset, when it is not known.
    last_fetched_epoch: Option<u32>,
    /// Fresh on every assign, seek and reset, so results of fetches issued before it
    /// are dropped.
    epoch: u64,
    /// The epoch of the fetch in flight, if any. Only the answer of that fetch frees
    /// the slot, so a fetch issued before a seek (or before the partition was revoked
    /// and assigned again) can never run alongside a newer one.
    fetch_in_flight: Option<u64>,
    retry_at: Option<Instant>,
    /// Consecutive failed fetches or committed-offset lookups: the backoff's step.
    failures: u32,
    /// Set when `auto_offset_reset` is `Error` and the position is invalid: the
    /// partition is paused until the application seeks.
    paused: bool,
    /// A partition the group just assigned: its position comes from the group's
    /// committed offset, which is still to be looked up (`auto_offset_reset` applies
    /// only if there is none).
    committed_pending: bool,
}

impl PartitionState {
    fn new(epoch: u64) -> Self {
        Self {
            position: None,
            fetch_offset: 0,
            last_fetched_epoch: None,
            epoch,
            fetch_in_flight: None,
            retry_at: None,
            failures: 0,
            paused: false,
            committed_pending: false,
        }
    }

    /// Counts a failure and waits out its backoff before the partition's next attempt.
    fn back_off(&mut self, backoff: Backoff, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        self.retry_at = Some(now + backoff.delay(self.failures));
    }
}

impl Consumer {
    /// A consumer with nothing assigned. Connects lazily.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`], or [`Error::InvalidBootstrap`] for a bootstrap address
    /// that is not `host:port`.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn new(config: ConsumerConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            cluster: Cluster::new(config.client.clone())?,
            config,
            partitions: BTreeMap::new(),
            buffer: VecDeque::new(),
            buffered_bytes: 0,
            fetches: JoinSet::new(),
            decoding: VecDeque::new(),
            errors: VecDeque::new(),
            truncations: VecDeque::new(),
            topic_names: HashMap::new(),
            epochs: 0,
            group: None,
            listener: Listener::default(),
        })
    }

    /// Replaces the assignment. Partitions kept keep their positions; new ones start per
    /// `auto_offset_reset` unless sought. Manual assignment and a group subscription
    /// exclude each other: `assign(&[])` before [`subscribe`](Self::subscribe), and
    /// [`unsubscribe`](Self::unsubscribe) before `assign`.
    ///
    /// # Panics
    /// While subscribed to a group, whose coordinator decides the assignment.
    pub fn assign(&mut self, partitions: &[TopicPartition]) {
        assert!(
            self.group.is_none(),
            "assign on a consumer subscribed to a group; unsubscribe first"
        );
        self.partitions.retain(|tp, _| partitions.contains(tp));
        for tp in partitions {
            if !self.partitions.contains_key(tp) {
                self.epochs += 1;
                self.partitions
                    .insert(tp.clone(), PartitionState::new(self.epochs));
            }
        }
        let assigned = &self.partitions;
        retain_buffered(&mut self.buffer, |record| {
            assigned
                .keys()
                .any(|tp| tp.partition == record.partition && *tp.topic == *record.topic)
        });
        self.recount_buffer();
    }

    /// The assigned partitions, sorted. While subscribed: the partitions the consumer
    /// owns in the group now, which changes inside `poll` as the group rebalances.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.partitions.keys().cloned().collect()
    }

    /// Returns buffered records at once, or waits up to `timeout` for some. An empty
    /// vector means nothing arrived in time. At most `poll_records_max` records; within a
    /// partition, in offset order.
    ///
    /// While subscribed, `poll` also applies what the group decided, before it returns
    /// anything: partitions taken away stop being fetched and their buffered records are
    /// dropped, their positions are committed (with auto-commit) and
    /// [`RebalanceListener::on_revoked`](crate::RebalanceListener::on_revoked) runs, then
    /// the coordinator is told at once; new partitions start from the group's committed
    /// offsets after [`on_assigned`](crate::RebalanceListener::on_assigned). With
    /// auto-commit, every `auto_commit_interval_ms` it commits (in the background) the
    /// positions after the records returned by earlier polls.
    ///
    /// # Errors
    /// [`Error::OffsetOutOfRange`] / [`Error::NoPosition`] with `auto_offset_reset =
    /// Error` (the partition stays paused until a seek; others keep going); a
    /// non-retriable fetch error; a non-retriable group error (the heartbeat was
    /// rejected, e.g. `GroupMaxSizeReached`; membership keeps retrying). Retriable
    /// errors (leader moves, broker restarts, a moving coordinator) are retried
    /// internally and not returned.
    ///
    /// # Cancel safety
    /// Cancel-safe: no record is lost if the future is dropped; fetches in flight keep
    /// running and their records are returned by the next call. Every await (offset
    /// lookups, commits, metadata) happens before records are taken from the buffer,
    /// and taking them (which moves the positions that are committed) is the last step
    /// before returning. A revocation interrupted by the drop is finished by the next
    /// call.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        let max = self.config.poll_records_max;
        self.poll_records(timeout, max).await
    }

    /// Waits for the next record, however long it takes.
    ///
    /// # Errors
    /// As for [`poll`](Self::poll).
    ///
    /// # Cancel safety
    /// Cancel-safe, as [`poll`](Self::poll).
    pub async fn recv(&mut self) -> Result<ConsumerRecord> {
        loop {
            if let Some(record) = self.poll_records(RECV_ROUND, 1).await?.pop() {
                return Ok(record);
            }
        }
    }

    /// The records as an endless `Stream`, one [`recv`](Self::recv) per item.
    ///
    /// # Example
    /// ```no_run
    /// use futures_util::StreamExt;
    /// # async fn example(mut consumer: strata_client::Consumer) -> strata_client::Result<()> {
    /// let mut records = std::pin::pin!(consumer.stream());
    /// while let Some(record) = records.next().await {
    ///     let record = record?;
    ///     println!("{}@{}", record.partition, record.offset);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn stream(&mut self) -> impl Stream<Item = Result<ConsumerRecord>> + '_ {
        futures_util::stream::unfold(self, |consumer| async move {
            let next = consumer.recv().await;
            Some((next, consumer))
        })
    }

    async fn poll_records(&mut self, timeout: Duration, max: usize) -> Result<Vec<ConsumerRecord>> {
        let deadline = Instant::now() + timeout;
        let group = self.group.as_ref().map(GroupState::shared);
        loop {
            self.reconcile_group().await;
            self.maybe_auto_commit();
            if let Some(error) = self.errors.pop_front() {
                return Err(error);
            }
            // Prefetch: the next fetches run while the caller works on what this call
            // returns. They start before any record is taken, because taking moves the
            // positions: no await may come between taking records and returning them,
            // or a dropped `poll` would lose them (and a commit would skip them).
            let returning_bytes = self.buffered().take(max).map(record_bytes).sum();
            self.absorb_finished();
            self.start_fetches(returning_bytes).await;
            self.take_decoded();
            if !self.buffer.is_empty() {
                return Ok(self.take_buffered(max));
            }
            if !self.errors.is_empty() {
                continue;
            }
            let wake_at = self
                .earliest_retry()
                .map_or(deadline, |at| at.min(deadline));
            tokio::select! {
                Some(joined) = self.fetches.join_next(), if !self.fetches.is_empty() => {
                    let outcome = joined.expect("fetch tasks do not panic");
                    self.absorb(outcome);
                }
                decoded = next_decoded(&mut self.decoding), if !self.decoding.is_empty() => {
                    let decoding = self.decoding.pop_front().expect("awaited the first");
                    self.buffer_decoded(&decoding, decoded);
                }
                () = subscription::changed(group.as_deref()) => {}
                () = tokio::time::sleep_until(wake_at) => {
                    if Instant::now() >= deadline {
                        return Ok(Vec::new());
                    }
                }
            }
        }
    }

    fn take_buffered(&mut self, max: usize) -> Vec<ConsumerRecord> {
        let mut records = Vec::new();
        while let Some(first) = self.buffer.front_mut() {
            let wanted = max - records.len();
            if first.len() > wanted {
                records.extend(first.take(wanted));
                self.move_past(records.last());
                break;
            }
            let first = self.buffer.pop_front().expect("looked at the first");
            if records.is_empty() {
                // Reuses the decoded vector: no record moves.
                records = first.collect();
            } else {
                records.extend(first);
            }
            self.move_past(records.last());
        }
        let taken: usize = records.iter().map(record_bytes).sum();
        self.buffered_bytes = self.buffered_bytes.saturating_sub(taken);
        records
    }

    /// Moves the position of `last`'s partition past it. Each buffered vector holds one
    /// partition's records in offset order, so its last record taken is the one to move
    /// past.
    fn move_past(&mut self, last: Option<&ConsumerRecord>) {
        let Some(last) = last else { return };
        let tp = TopicPartition::new(&*last.topic, last.partition);
        if let Some(state) = self.partitions.get_mut(&tp) {
            state.position = Some(last.offset + 1);
        }
    }

    /// The buffered records, in the order `poll` returns them.
    fn buffered(&self) -> impl Iterator<Item = &ConsumerRecord> {
        self.buffer.iter().flat_map(|records| records.as_slice())
    }

    /// Recounts the buffer after records were dropped from it, and drops the decodes of
    /// partitions no longer fetched at the same epoch (unassigned, sought, revoked).
    fn recount_buffer(&mut self) {
        self.buffered_bytes = self.buffered().map(record_bytes).sum();
        self.drop_stale_decodes();
    }
}

/// Keeps the buffered records of the partitions `keep` says yes to. An entry holds one
/// partition's records, so `keep` is asked about its first.
fn retain_buffered(
    buffer: &mut VecDeque<vec::IntoIter<ConsumerRecord>>,
    keep: impl Fn(&ConsumerRecord) -> bool,
) {
    buffer.retain(|records| records.as_slice().first().is_some_and(&keep));
}

fn record_bytes(record: &ConsumerRecord) -> usize {
    record.key.as_ref().map_or(0, Bytes::len) + record.value.as_ref().map_or(0, Bytes::len)
}

fn not_assigned(tp: &TopicPartition) -> Error {
    Error::NotAssigned {
        topic: tp.topic.clone(),
        partition: tp.partition,
    }
}

fn no_position(tp: &TopicPartition) -> Error {
    Error::NoPosition {
        topic: tp.topic.clone(),
        partition: tp.partition,
    }
}

#[cfg(test)]
mod tests {
    use strata_protocol::batch::{BatchBuilder, stamp};

    use super::*;

    /// One batch of `count` one-byte records at `base`, as a broker would answer it;
    /// shared with `fetcher`'s and `decode`'s tests.
    pub(super) fn batch_at(base: u64, count: u8) -> Vec<u8> {
        batch_of_epoch(base, count, 0)
    }

    /// As [`batch_at`], stamped with leader epoch `leader_epoch`.
    pub(super) fn batch_of_epoch(base: u64, count: u8, leader_epoch: u32) -> Vec<u8> {
        let mut builder = BatchBuilder::new();
        for index in 0..count {
            builder.push(0, None, Some(&[index]), &[]);
        }
        let mut batch = builder.finish().to_vec();
        stamp(&mut batch, base, leader_epoch);
        batch
    }

    /// A one-byte record of topic `t`; shared with `fetcher`'s and `subscription`'s tests.
    pub(super) fn record(partition: u32, offset: u64) -> ConsumerRecord {
        ConsumerRecord {
            topic: Arc::from("t"),
            partition,
            offset,
            timestamp: 0,
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: Vec::new(),
        }
    }

    #[tokio::test]
    async fn polls_take_buffered_records_across_answers_in_order() {
        let mut consumer = Consumer::new(ConsumerConfig::new("127.0.0.1:1")).unwrap();
        let (first, second) = (TopicPartition::new("t", 0), TopicPartition::new("t", 1));
        consumer.assign(&[first.clone(), second.clone()]);
        consumer
            .buffer
            .push_back(vec![record(0, 5), record(0, 6), record(0, 7)].into_iter());
        consumer.buffer.push_back(vec![record(1, 3)].into_iter());
        consumer.recount_buffer();
        assert_eq!(consumer.buffered_bytes, 4);
        let offsets = |records: Vec<ConsumerRecord>| -> Vec<(u32, u64)> {
            records
                .iter()
                .map(|record| (record.partition, record.offset))
                .collect()
        };

        assert_eq!(offsets(consumer.take_buffered(2)), [(0, 5), (0, 6)]);
        assert_eq!(consumer.partitions[&first].position, Some(7));
        assert_eq!(consumer.buffered_bytes, 2);
        assert_eq!(offsets(consumer.take_buffered(5)), [(0, 7), (1, 3)]);
        assert_eq!(consumer.partitions[&first].position, Some(8));
        assert_eq!(consumer.partitions[&second].position, Some(4));
        assert!(consumer.buffer.is_empty());
        assert_eq!(consumer.buffered_bytes, 0);
    }

    #[tokio::test]
    async fn a_poll_dropped_at_its_first_pending_loses_no_record() {
        // Every lookup hangs.
        let address = crate::test_support::hung_broker().await;
        let mut consumer = Consumer::new(ConsumerConfig::new(&address)).unwrap();
        let (fetched, unpositioned) = (TopicPartition::new("t", 0), TopicPartition::new("t", 1));
        consumer.assign(&[fetched.clone(), unpositioned]);
        consumer.seek(&fetched, 5).unwrap();
        // As if a fetch had answered: three records buffered, the position still 5.
        consumer.partitions.get_mut(&fetched).unwrap().fetch_offset = 8;
        consumer
            .buffer
            .push_back(vec![record(0, 5), record(0, 6), record(0, 7)].into_iter());
        consumer.recount_buffer();

        // The poll has records to return, but first looks up the other partition's
        // offset, which hangs: the future is dropped at that first `Pending`.
        let dropped =
            tokio::time::timeout(Duration::ZERO, consumer.poll(Duration::from_secs(5))).await;
        assert!(dropped.is_err(), "the lookup cannot have finished");
        let offsets: Vec<u64> = consumer.buffered().map(|record| record.offset).collect();
        assert_eq!(
            offsets,
            [5, 6, 7],
            "no record was taken by the dropped poll"
        );
        assert_eq!(consumer.partitions[&fetched].position, Some(5));

        // Without the hanging partition, the records come back at once, in order.
        consumer.assign(std::slice::from_ref(&fetched));
        consumer
            .partitions
            .get_mut(&fetched)
            .unwrap()
            .fetch_in_flight = Some(0);
        let records = consumer.poll(Duration::from_secs(5)).await.unwrap();
        let offsets: Vec<u64> = records.iter().map(|record| record.offset).collect();
        assert_eq!(offsets, [5, 6, 7]);
        assert_eq!(consumer.partitions[&fetched].position, Some(8));
    }
}
