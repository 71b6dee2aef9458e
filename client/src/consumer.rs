//! The consumer: manual partition assignment, or a subscription to a consumer group
//! (in `subscription`).

mod subscription;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use std::vec;

use bytes::Bytes;
use futures_util::{FutureExt, Stream};
use strata_protocol::batch::{self, Batches};
use strata_protocol::messages::{
    EARLIEST_TIMESTAMP, FetchPartition, FetchRequest, FetchTopic, LATEST_TIMESTAMP,
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
};
use strata_protocol::{ErrorCode, Request, Response};
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::cluster::{Cluster, unexpected};
use crate::config::{AutoOffsetReset, ConsumerConfig};
use crate::error::{Error, Result};
use crate::record::{ConsumerRecord, Header, TopicPartition};

pub use subscription::CommitHandle;
use subscription::{GroupState, Listener};

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
///         println!("{}/{}@{}", record.topic, record.partition, record.offset);
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
    /// Fresh on every assign, seek and reset, so results of fetches issued before it
    /// are dropped.
    epoch: u64,
    /// The epoch of the fetch in flight, if any. Only the answer of that fetch frees
    /// the slot, so a fetch issued before a seek (or before the partition was revoked
    /// and assigned again) can never run alongside a newer one.
    fetch_in_flight: Option<u64>,
    retry_at: Option<Instant>,
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
            epoch,
            fetch_in_flight: None,
            retry_at: None,
            paused: false,
            committed_pending: false,
        }
    }
}

#[derive(Debug)]
struct FetchedPartition {
    tp: TopicPartition,
    epoch: u64,
    fetch_offset: u64,
    result: Result<Fetched>,
}

/// A partition's answer, read up to its batch headers: where the next fetch starts, and
/// the decode of its records (CRC checks included).
#[derive(Debug)]
struct Fetched {
    next_offset: u64,
    bytes: usize,
    records: Decode,
}

/// Answers up to this size are decoded in the fetch task: a task of their own would
/// cost more in wake-ups (tens of microseconds) than it saves.
const DECODE_INLINE_BYTES_MAX: usize = 64 << 10;

/// The decode of one answer: done in the fetch task (small answers) or running in a task
/// of its own.
#[derive(Debug)]
enum Decode {
    Done(Option<Result<Vec<ConsumerRecord>>>),
    Running(JoinHandle<Result<Vec<ConsumerRecord>>>),
}

impl Decode {
    fn start(topic: Arc<str>, partition: u32, fetch_offset: u64, records: Bytes) -> Self {
        if records.len() <= DECODE_INLINE_BYTES_MAX {
            return Self::Done(Some(decode_records(
                &topic,
                partition,
                fetch_offset,
                &records,
            )));
        }
        Self::Running(tokio::spawn(async move {
            decode_records(&topic, partition, fetch_offset, &records)
        }))
    }

    /// The records, once; `None` while the decode runs.
    fn try_take(&mut self) -> Option<Result<Vec<ConsumerRecord>>> {
        match self {
            Self::Done(done) => Some(done.take().expect("taken once")),
            Self::Running(task) => task.now_or_never().map(finished),
        }
    }

    /// The records, once the decode is done; cancel-safe.
    async fn take(&mut self) -> Result<Vec<ConsumerRecord>> {
        match self {
            Self::Done(done) => done.take().expect("taken once"),
            Self::Running(task) => finished(task.await),
        }
    }
}

impl Drop for Decode {
    /// A decode nobody will read (the partition was sought, reset or taken away) stops.
    fn drop(&mut self) {
        if let Self::Running(task) = self {
            task.abort();
        }
    }
}

fn finished(
    joined: std::result::Result<Result<Vec<ConsumerRecord>>, JoinError>,
) -> Result<Vec<ConsumerRecord>> {
    joined.expect("decode tasks do not panic")
}

/// Records of one fetched partition on their way to the buffer.
#[derive(Debug)]
struct Decoding {
    tp: TopicPartition,
    epoch: u64,
    fetch_offset: u64,
    /// Counted against `prefetch_bytes_max` until decoded.
    bytes: usize,
    records: Decode,
}

/// A partition and the epoch of the fetch that covered it.
type EpochPartition = (TopicPartition, u64);

#[derive(Debug)]
struct FetchOutcome {
    /// Per partition, or the error of the whole request with the partitions (and their
    /// epochs) it covered.
    result: Result<Vec<FetchedPartition>, (Error, Vec<EpochPartition>)>,
}

impl Consumer {
    /// A consumer with nothing assigned. Connects lazily.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`].
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

    /// The next record `poll` returns for `tp` will be at `offset` (or the first after
    /// it). Drops what was buffered for `tp`. An offset outside the log is handled by
    /// `auto_offset_reset` on the next fetch.
    ///
    /// # Errors
    /// [`Error::NotAssigned`].
    pub fn seek(&mut self, tp: &TopicPartition, offset: u64) -> Result<()> {
        let state = self
            .partitions
            .get_mut(tp)
            .ok_or_else(|| not_assigned(tp))?;
        self.epochs += 1;
        state.position = Some(offset);
        state.fetch_offset = offset;
        state.epoch = self.epochs;
        state.paused = false;
        state.retry_at = None;
        state.committed_pending = false;
        retain_buffered(&mut self.buffer, |record| {
            !(record.partition == tp.partition && *record.topic == *tp.topic)
        });
        self.recount_buffer();
        Ok(())
    }

    /// Seeks each partition to its log start offset.
    ///
    /// # Errors
    /// [`Error::NotAssigned`]; errors of the ListOffsets lookup.
    ///
    /// # Cancel safety
    /// Cancel-safe: positions change only once the lookup succeeded.
    pub async fn seek_to_beginning(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        self.seek_to_timestamp(partitions, EARLIEST_TIMESTAMP).await
    }

    /// Seeks each partition to its high watermark: only records produced afterwards are
    /// returned.
    ///
    /// # Errors
    /// As for [`seek_to_beginning`](Self::seek_to_beginning).
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub async fn seek_to_end(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        self.seek_to_timestamp(partitions, LATEST_TIMESTAMP).await
    }

    async fn seek_to_timestamp(
        &mut self,
        partitions: &[TopicPartition],
        timestamp: i64,
    ) -> Result<()> {
        if let Some(tp) = partitions
            .iter()
            .find(|tp| !self.partitions.contains_key(*tp))
        {
            return Err(not_assigned(tp));
        }
        let offsets = list_offsets(&self.cluster, partitions, timestamp).await;
        for (tp, offset) in offsets {
            self.seek(&tp, offset?)?;
        }
        Ok(())
    }

    /// Each partition's log start offset. The partitions need not be assigned.
    ///
    /// # Errors
    /// The first lookup error (unknown topic, unreachable leader, ...).
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub async fn beginning_offsets(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, u64)>> {
        collect_offsets(list_offsets(&self.cluster, partitions, EARLIEST_TIMESTAMP).await)
    }

    /// Each partition's high watermark: the offset the next record will get. The
    /// partitions need not be assigned.
    ///
    /// # Errors
    /// As for [`beginning_offsets`](Self::beginning_offsets).
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub async fn end_offsets(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, u64)>> {
        collect_offsets(list_offsets(&self.cluster, partitions, LATEST_TIMESTAMP).await)
    }

    /// Seeks each partition to its first record with a timestamp at or after
    /// `timestamp_ms`, or to its high watermark if there is none.
    ///
    /// # Errors
    /// [`Error::NotAssigned`]; lookup errors.
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub async fn seek_to_timestamp_ms(
        &mut self,
        partitions: &[TopicPartition],
        timestamp_ms: i64,
    ) -> Result<()> {
        if timestamp_ms < 0 {
            return Err(Error::InvalidConfig(format!(
                "timestamp {timestamp_ms} is before the Unix epoch"
            )));
        }
        if let Some(tp) = partitions
            .iter()
            .find(|tp| !self.partitions.contains_key(*tp))
        {
            return Err(not_assigned(tp));
        }
        let found = list_offsets(&self.cluster, partitions, timestamp_ms).await;
        let mut missing = Vec::new();
        let mut targets = Vec::new();
        for (tp, offset) in found {
            match offset {
                Ok(offset) => targets.push((tp, offset)),
                Err(Error::NoOffsetFound) => missing.push(tp),
                Err(error) => return Err(error),
            }
        }
        let ends = collect_offsets(list_offsets(&self.cluster, &missing, LATEST_TIMESTAMP).await)?;
        for (tp, offset) in targets.into_iter().chain(ends) {
            self.seek(&tp, offset)?;
        }
        Ok(())
    }

    /// The offset of the next record `poll` returns for `tp`, resolving a missing
    /// position by `auto_offset_reset` first.
    ///
    /// # Errors
    /// [`Error::NotAssigned`]; [`Error::NoPosition`] with `auto_offset_reset = Error`;
    /// lookup errors.
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub async fn position(&mut self, tp: &TopicPartition) -> Result<u64> {
        let pending = self
            .partitions
            .get(tp)
            .is_some_and(|state| state.committed_pending);
        if pending {
            self.lookup_committed().await;
            if let Some(error) = self.errors.pop_front() {
                return Err(error);
            }
        }
        let state = self.partitions.get(tp).ok_or_else(|| not_assigned(tp))?;
        if let Some(position) = state.position {
            return Ok(position);
        }
        let timestamp = match self.config.auto_offset_reset {
            AutoOffsetReset::Earliest => EARLIEST_TIMESTAMP,
            AutoOffsetReset::Latest => LATEST_TIMESTAMP,
            AutoOffsetReset::Error => return Err(no_position(tp)),
        };
        self.seek_to_timestamp(std::slice::from_ref(tp), timestamp)
            .await?;
        Ok(self.partitions[tp].position.expect("just sought"))
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

    /// Drops (and stops) the decodes of partitions no longer fetched at their epoch.
    fn drop_stale_decodes(&mut self) {
        let partitions = &self.partitions;
        self.decoding.retain(|decoding| {
            partitions
                .get(&decoding.tp)
                .is_some_and(|state| state.epoch == decoding.epoch)
        });
    }

    /// Moves the records of finished decodes into the buffer, in fetch order: it stops
    /// at the first decode still running.
    fn take_decoded(&mut self) {
        while let Some(decoding) = self.decoding.front_mut() {
            let Some(decoded) = decoding.records.try_take() else {
                return;
            };
            let decoding = self.decoding.pop_front().expect("looked at the first");
            self.buffer_decoded(&decoding, decoded);
        }
    }

    /// Buffers a partition's decoded records, unless the partition was sought or
    /// unassigned meanwhile. A corrupt answer sends the partition back to fetch from
    /// where that answer started, under a new epoch, so that fetches and decodes
    /// already past it are dropped.
    fn buffer_decoded(&mut self, decoding: &Decoding, decoded: Result<Vec<ConsumerRecord>>) {
        let Some(state) = self.partitions.get_mut(&decoding.tp) else {
            return;
        };
        if state.epoch != decoding.epoch {
            return;
        }
        match decoded {
            Ok(records) => {
                self.buffered_bytes += records.iter().map(record_bytes).sum::<usize>();
                if !records.is_empty() {
                    self.buffer.push_back(records.into_iter());
                }
            }
            Err(error) => {
                self.epochs += 1;
                state.epoch = self.epochs;
                state.fetch_offset = decoding.fetch_offset;
                self.drop_stale_decodes();
                self.on_partition_error(&decoding.tp, error);
            }
        }
    }

    fn earliest_retry(&self) -> Option<Instant> {
        self.partitions
            .values()
            .filter_map(|state| state.retry_at)
            .min()
    }

    /// Resolves missing positions, then starts a fetch per leader for every partition
    /// that is ready: assigned, positioned, not paused, not fetching, not backing off.
    /// `returning_bytes` of the buffer are about to be returned and do not count
    /// against `prefetch_bytes_max`; answers still being decoded do.
    ///
    /// # Cancel safety
    /// Cancel-safe: positions change only after a lookup's await, and a fetch's slot is
    /// taken only when its task is spawned.
    async fn start_fetches(&mut self, returning_bytes: usize) {
        self.lookup_committed().await;
        self.reset_positions().await;
        let decoding_bytes: usize = self.decoding.iter().map(|decoding| decoding.bytes).sum();
        if (self.buffered_bytes + decoding_bytes).saturating_sub(returning_bytes)
            >= self.config.prefetch_bytes_max
        {
            return;
        }
        let now = Instant::now();
        let ready: Vec<TopicPartition> = self
            .partitions
            .iter()
            .filter(|(_, state)| {
                state.position.is_some()
                    && state.fetch_in_flight.is_none()
                    && !state.paused
                    && state.retry_at.is_none_or(|at| at <= now)
            })
            .map(|(tp, _)| tp.clone())
            .collect();
        let mut by_leader: BTreeMap<u32, Vec<(TopicPartition, u64, u64)>> = BTreeMap::new();
        for tp in ready {
            match self.cluster.leader(&tp.topic, tp.partition).await {
                Ok(leader) => {
                    let state = self
                        .partitions
                        .get_mut(&tp)
                        .expect("ready partitions are assigned");
                    state.retry_at = None;
                    by_leader.entry(leader).or_default().push((
                        tp,
                        state.fetch_offset,
                        state.epoch,
                    ));
                }
                Err(error) => self.on_partition_error(&tp, error),
            }
        }
        for (leader, partitions) in by_leader {
            for (tp, _, epoch) in &partitions {
                self.partitions
                    .get_mut(tp)
                    .expect("assigned")
                    .fetch_in_flight = Some(*epoch);
            }
            let names = partitions
                .iter()
                .map(|(tp, _, _)| (tp.topic.clone(), self.topic_name(&tp.topic)))
                .collect();
            self.fetches.spawn(fetch(
                Arc::clone(&self.cluster),
                self.config.clone(),
                leader,
                partitions,
                names,
            ));
        }
    }

    fn topic_name(&mut self, topic: &str) -> Arc<str> {
        Arc::clone(
            self.topic_names
                .entry(topic.to_owned())
                .or_insert_with(|| Arc::from(topic)),
        )
    }

    /// Gives every unpositioned partition a position per `auto_offset_reset`.
    async fn reset_positions(&mut self) {
        let unpositioned: Vec<TopicPartition> = self
            .partitions
            .iter()
            .filter(|(_, state)| {
                state.position.is_none() && !state.paused && !state.committed_pending
            })
            .map(|(tp, _)| tp.clone())
            .collect();
        if unpositioned.is_empty() {
            return;
        }
        let timestamp = match self.config.auto_offset_reset {
            AutoOffsetReset::Earliest => EARLIEST_TIMESTAMP,
            AutoOffsetReset::Latest => LATEST_TIMESTAMP,
            AutoOffsetReset::Error => {
                for tp in unpositioned {
                    self.partitions.get_mut(&tp).expect("assigned").paused = true;
                    self.errors.push_back(no_position(&tp));
                }
                return;
            }
        };
        for (tp, offset) in list_offsets(&self.cluster, &unpositioned, timestamp).await {
            match offset {
                // A seek in the meantime would have set a position; this does not race
                // with one because we hold `&mut self`.
                Ok(offset) => {
                    let state = self.partitions.get_mut(&tp).expect("assigned");
                    self.epochs += 1;
                    state.position = Some(offset);
                    state.fetch_offset = offset;
                    state.epoch = self.epochs;
                }
                Err(error) => self.on_partition_error(&tp, error),
            }
        }
        self.drop_stale_decodes();
    }

    /// A retriable error backs the partition off (and refreshes metadata if that can
    /// help); anything else is also reported to the application.
    fn on_partition_error(&mut self, tp: &TopicPartition, error: Error) {
        if let Some(state) = self.partitions.get_mut(tp) {
            state.retry_at =
                Some(Instant::now() + Duration::from_millis(self.config.retry_backoff_ms));
        }
        if error.needs_metadata_refresh() {
            let cluster = Arc::clone(&self.cluster);
            let topic = tp.topic.clone();
            let seen_at = cluster.refreshed_at();
            tokio::spawn(async move { cluster.refresh_after_error(&topic, seen_at).await });
        }
        if !error.is_retriable() {
            self.errors.push_back(error);
        } else {
            tracing::debug!(%tp, %error, "fetch will be retried");
        }
    }

    /// Absorbs the fetches that already finished, so each partition's next fetch starts
    /// now rather than once the buffer has drained.
    fn absorb_finished(&mut self) {
        while let Some(joined) = self.fetches.try_join_next() {
            self.absorb(joined.expect("fetch tasks do not panic"));
        }
    }

    fn absorb(&mut self, outcome: FetchOutcome) {
        let fetched = match outcome.result {
            Ok(fetched) => fetched,
            Err((error, partitions)) => {
                for (tp, epoch) in &partitions {
                    let Some(state) = self.partitions.get_mut(tp) else {
                        continue; // unassigned meanwhile
                    };
                    if state.fetch_in_flight == Some(*epoch) {
                        state.fetch_in_flight = None;
                    }
                    self.on_partition_error(tp, error.clone());
                }
                return;
            }
        };
        for partition in fetched {
            let Some(state) = self.partitions.get_mut(&partition.tp) else {
                continue; // unassigned meanwhile
            };
            if state.fetch_in_flight == Some(partition.epoch) {
                state.fetch_in_flight = None;
            }
            if state.epoch != partition.epoch {
                continue; // sought meanwhile
            }
            match partition.result {
                Ok(fetched) => {
                    state.fetch_offset = fetched.next_offset;
                    self.decoding.push_back(Decoding {
                        tp: partition.tp,
                        epoch: partition.epoch,
                        fetch_offset: partition.fetch_offset,
                        bytes: fetched.bytes,
                        records: fetched.records,
                    });
                }
                Err(error) if error.code() == Some(ErrorCode::OffsetOutOfRange) => {
                    let behind_a_decode = self.decoding.iter().any(|decoding| {
                        decoding.tp == partition.tp && decoding.epoch == partition.epoch
                    });
                    if behind_a_decode {
                        // This fetch started where an answer still being decoded says it
                        // ends. If that answer turns out corrupt, the offset was made up;
                        // so ask again after a back-off rather than reset the position.
                        state.retry_at = Some(
                            Instant::now() + Duration::from_millis(self.config.retry_backoff_ms),
                        );
                    } else {
                        self.out_of_range(&partition.tp, partition.fetch_offset);
                    }
                }
                Err(error) => self.on_partition_error(&partition.tp, error),
            }
        }
    }

    fn out_of_range(&mut self, tp: &TopicPartition, offset: u64) {
        let state = self.partitions.get_mut(tp).expect("checked by the caller");
        tracing::debug!(%tp, offset, reset = ?self.config.auto_offset_reset, "offset out of range");
        state.position = None;
        if self.config.auto_offset_reset == AutoOffsetReset::Error {
            state.paused = true;
            self.errors.push_back(Error::OffsetOutOfRange {
                topic: tp.topic.clone(),
                partition: tp.partition,
                offset,
            });
        }
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

fn collect_offsets(
    results: Vec<(TopicPartition, Result<u64>)>,
) -> Result<Vec<(TopicPartition, u64)>> {
    results
        .into_iter()
        .map(|(tp, offset)| offset.map(|offset| (tp, offset)))
        .collect()
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

/// One fetch request to one broker, decoded into records off the caller's task.
async fn fetch(
    cluster: Arc<Cluster>,
    config: ConsumerConfig,
    leader: u32,
    partitions: Vec<(TopicPartition, u64, u64)>,
    names: HashMap<String, Arc<str>>,
) -> FetchOutcome {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for (tp, offset, _) in &partitions {
        let partition = FetchPartition {
            partition: tp.partition,
            fetch_offset: *offset,
            partition_max_bytes: config.partition_fetch_bytes_max,
        };
        match topics.iter_mut().find(|topic| topic.name == tp.topic) {
            Some(topic) => topic.partitions.push(partition),
            None => topics.push(FetchTopic {
                name: tp.topic.clone(),
                partitions: vec![partition],
            }),
        }
    }
    let request = Request::Fetch(FetchRequest {
        max_wait_ms: config.fetch_wait_ms_max,
        min_bytes: config.fetch_bytes_min,
        max_bytes: config.fetch_bytes_max,
        topics,
    });
    let wait = Duration::from_millis(u64::from(config.fetch_wait_ms_max));
    let response = async {
        let connection = cluster.broker_connection(leader).await?;
        match connection.call(&request, wait).await? {
            Response::Fetch(response) => Ok(response),
            other => Err(unexpected(&other)),
        }
    }
    .await;
    let response = match response {
        Ok(response) => response,
        Err(error) => {
            let tps = partitions
                .into_iter()
                .map(|(tp, _, epoch)| (tp, epoch))
                .collect();
            return FetchOutcome {
                result: Err((error, tps)),
            };
        }
    };
    let mut answers = HashMap::new();
    for topic in response.topics {
        for partition in topic.partitions {
            answers.insert((topic.name.clone(), partition.partition), partition);
        }
    }
    let fetched = partitions
        .into_iter()
        .map(|(tp, fetch_offset, epoch)| {
            let result = match answers.remove(&(tp.topic.clone(), tp.partition)) {
                None => Err(Error::Protocol {
                    address: String::new(),
                    reason: format!("fetch response lacks {tp}"),
                }),
                Some(answer) if !answer.error_code.is_ok() => {
                    Err(Error::broker(answer.error_code, None))
                }
                Some(answer) => {
                    let topic = Arc::clone(&names[&tp.topic]);
                    let high_watermark = answer.high_watermark;
                    next_fetch_offset(
                        &topic,
                        tp.partition,
                        fetch_offset,
                        high_watermark,
                        &answer.records,
                    )
                    .map(|next_offset| Fetched {
                        next_offset,
                        bytes: answer.records.len(),
                        records: Decode::start(topic, tp.partition, fetch_offset, answer.records),
                    })
                }
            };
            FetchedPartition {
                tp,
                epoch,
                fetch_offset,
                result,
            }
        })
        .collect();
    FetchOutcome {
        result: Ok(fetched),
    }
}

/// The first decode in `decoding`; it must not be empty.
async fn next_decoded(decoding: &mut VecDeque<Decoding>) -> Result<Vec<ConsumerRecord>> {
    let first = decoding.front_mut().expect("awaited only when not empty");
    first.records.take().await
}

fn corrupt_answer(topic: &str, partition: u32, reason: impl std::fmt::Display) -> Error {
    Error::Protocol {
        address: String::new(),
        reason: format!("{topic}/{partition}: {reason}"),
    }
}

/// Where the fetch after this answer starts: past its last batch, read from the batch
/// headers alone (their CRCs are checked by the decode that follows). An answer that
/// claims to end past the broker's high watermark is corrupt.
fn next_fetch_offset(
    topic: &str,
    partition: u32,
    fetch_offset: u64,
    high_watermark: u64,
    records: &[u8],
) -> Result<u64> {
    let next = Batches::new(records).try_fold(fetch_offset, |next, view| {
        let view = view.map_err(|error| corrupt_answer(topic, partition, error))?;
        Ok(next.max(view.header.next_offset()))
    })?;
    if next > high_watermark.max(fetch_offset) {
        return Err(corrupt_answer(
            topic,
            partition,
            format!("batches end at offset {next}, past the high watermark {high_watermark}"),
        ));
    }
    Ok(next)
}

/// Decodes whole batches into records at or after `fetch_offset`, checking each CRC.
/// Keys, values and header values are slices of `records`.
fn decode_records(
    topic: &Arc<str>,
    partition: u32,
    fetch_offset: u64,
    records: &Bytes,
) -> Result<Vec<ConsumerRecord>> {
    let corrupt = |reason: String| corrupt_answer(topic, partition, reason);
    let mut out = Vec::new();
    for view in Batches::new(records) {
        let view = view.map_err(|error| corrupt(error.to_string()))?;
        batch::verify_crc(view.bytes).map_err(|error| corrupt(error.to_string()))?;
        // The next fetch started past `last_offset_delta`; the records must end there.
        if u64::from(view.header.last_offset_delta) + 1 != u64::from(view.header.record_count) {
            return Err(corrupt(format!(
                "batch at offset {} has {} records but a last offset delta of {}",
                view.header.base_offset, view.header.record_count, view.header.last_offset_delta
            )));
        }
        if view.header.last_offset() < fetch_offset {
            continue;
        }
        // The count is checked against the bytes: a record takes at least 7 of them.
        out.reserve((view.header.record_count as usize).min(view.bytes.len() / 7));
        for record in view.records() {
            let record = record.map_err(|error| corrupt(error.to_string()))?;
            if record.offset < fetch_offset {
                continue;
            }
            out.push(ConsumerRecord {
                topic: Arc::clone(topic),
                partition,
                offset: record.offset,
                timestamp: record.timestamp,
                key: record.key.map(|key| records.slice_ref(key)),
                value: record.value.map(|value| records.slice_ref(value)),
                headers: record
                    .headers
                    .map(|header| Header {
                        key: header.key.to_owned(),
                        value: header.value.map(|value| records.slice_ref(value)),
                    })
                    .collect(),
            });
        }
    }
    Ok(out)
}

/// Looks offsets up by time (or [`EARLIEST_TIMESTAMP`] / [`LATEST_TIMESTAMP`]), one
/// request per leader.
pub(crate) async fn list_offsets(
    cluster: &Cluster,
    partitions: &[TopicPartition],
    timestamp: i64,
) -> Vec<(TopicPartition, Result<u64>)> {
    let mut results = Vec::new();
    let mut by_leader: BTreeMap<u32, Vec<TopicPartition>> = BTreeMap::new();
    for tp in partitions {
        match cluster.leader(&tp.topic, tp.partition).await {
            Ok(leader) => by_leader.entry(leader).or_default().push(tp.clone()),
            Err(error) => results.push((tp.clone(), Err(error))),
        }
    }
    for (leader, tps) in by_leader {
        let mut topics: Vec<ListOffsetsTopic> = Vec::new();
        for tp in &tps {
            let partition = ListOffsetsPartition {
                partition: tp.partition,
                timestamp,
            };
            match topics.iter_mut().find(|topic| topic.name == tp.topic) {
                Some(topic) => topic.partitions.push(partition),
                None => topics.push(ListOffsetsTopic {
                    name: tp.topic.clone(),
                    partitions: vec![partition],
                }),
            }
        }
        let request = Request::ListOffsets(ListOffsetsRequest { topics });
        let response = async {
            let connection = cluster.broker_connection(leader).await?;
            match connection.call(&request, Duration::ZERO).await? {
                Response::ListOffsets(response) => Ok(response),
                other => Err(unexpected(&other)),
            }
        }
        .await;
        let response = match response {
            Ok(response) => response,
            Err(error) => {
                results.extend(tps.into_iter().map(|tp| (tp, Err(error.clone()))));
                continue;
            }
        };
        let mut answers = HashMap::new();
        for topic in response.topics {
            for partition in topic.partitions {
                answers.insert((topic.name.clone(), partition.partition), partition);
            }
        }
        for tp in tps {
            let result = match answers.remove(&(tp.topic.clone(), tp.partition)) {
                Some(answer) if answer.error_code.is_ok() => {
                    u64::try_from(answer.offset).map_err(|_| Error::NoOffsetFound)
                }
                Some(answer) => Err(Error::broker(answer.error_code, None)),
                None => Err(Error::Protocol {
                    address: String::new(),
                    reason: format!("ListOffsets response lacks {tp}"),
                }),
            };
            results.push((tp, result));
        }
    }
    results
}

#[cfg(test)]
mod tests {
    use strata_protocol::batch::{BatchBuilder, Header as WireHeader, stamp};

    use super::*;

    #[test]
    fn decoded_records_share_the_fetch_buffer_and_skip_below_fetch_offset() {
        let mut builder = BatchBuilder::new();
        for index in 0..4u8 {
            builder.push(
                1_000 + i64::from(index),
                Some(&[index]),
                Some(b"value"),
                &[WireHeader {
                    key: "h",
                    value: Some(b"v"),
                }],
            );
        }
        let mut batch = builder.finish().to_vec();
        stamp(&mut batch, 10, 0);
        let records = Bytes::from(batch);
        let topic: Arc<str> = Arc::from("t");
        let decoded = decode_records(&topic, 0, 12, &records).unwrap();
        let offsets: Vec<u64> = decoded.iter().map(|record| record.offset).collect();
        assert_eq!(offsets, [12, 13]);
        let value = decoded[0].value.as_ref().unwrap();
        assert_eq!(&value[..], b"value");
        let range = records.as_ptr_range();
        assert!(
            range.contains(&value.as_ptr()),
            "the value is a slice of the fetch buffer"
        );
        assert_eq!(decoded[1].headers, vec![Header::new("h", "v")]);
        assert_eq!(decoded[1].timestamp, 1_003);
    }

    /// A one-byte record of topic `t`; shared with `subscription`'s tests.
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
        // A broker that accepts connections and never answers: every lookup hangs.
        let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = hung.local_addr().unwrap().to_string();
        let _accepted = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = hung.accept().await {
                held.push(socket);
            }
        });
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

    /// One batch of `count` one-byte records at `base`, as a broker would answer it.
    fn batch_at(base: u64, count: u8) -> Vec<u8> {
        let mut builder = BatchBuilder::new();
        for index in 0..count {
            builder.push(0, None, Some(&[index]), &[]);
        }
        let mut batch = builder.finish().to_vec();
        stamp(&mut batch, base, 0);
        batch
    }

    #[test]
    fn the_next_fetch_starts_past_the_last_batch_header() {
        let mut answer = batch_at(10, 4);
        answer.extend(batch_at(14, 2));
        assert_eq!(next_fetch_offset("t", 0, 12, 16, &answer).unwrap(), 16);
        assert_eq!(
            next_fetch_offset("t", 0, 12, 16, &[]).unwrap(),
            12,
            "empty answer"
        );
        assert_eq!(
            next_fetch_offset("t", 0, 20, 20, &batch_at(10, 4)).unwrap(),
            20,
            "an answer wholly below the fetch offset does not move it back"
        );
        let truncated = &answer[..answer.len() - 1];
        let error = next_fetch_offset("t", 0, 12, 16, truncated).unwrap_err();
        assert!(error.to_string().contains("t/0"), "{error}");
        let error = next_fetch_offset("t", 0, 12, 15, &answer).unwrap_err();
        assert!(error.to_string().contains("high watermark 15"), "{error}");
    }

    /// What a fetch task returns for one partition's answer.
    fn answered(
        tp: &TopicPartition,
        epoch: u64,
        fetch_offset: u64,
        answer: Vec<u8>,
    ) -> FetchOutcome {
        let answer = Bytes::from(answer);
        let next_offset =
            next_fetch_offset(&tp.topic, tp.partition, fetch_offset, u64::MAX, &answer).unwrap();
        FetchOutcome {
            result: Ok(vec![FetchedPartition {
                tp: tp.clone(),
                epoch,
                fetch_offset,
                result: Ok(Fetched {
                    next_offset,
                    bytes: answer.len(),
                    records: Decode::start(
                        Arc::from(&*tp.topic),
                        tp.partition,
                        fetch_offset,
                        answer,
                    ),
                }),
            }]),
        }
    }

    /// A consumer assigned `t/0` and sought to offset 0 (no broker behind it), with the
    /// partition's epoch.
    fn consumer_at_zero() -> (Consumer, TopicPartition, u64) {
        let mut consumer = Consumer::new(ConsumerConfig::new("127.0.0.1:1")).unwrap();
        let tp = TopicPartition::new("t", 0);
        consumer.assign(std::slice::from_ref(&tp));
        consumer.seek(&tp, 0).unwrap();
        let epoch = consumer.partitions[&tp].epoch;
        (consumer, tp, epoch)
    }

    #[tokio::test]
    async fn a_poll_with_records_buffered_absorbs_a_finished_fetch() {
        let (mut consumer, tp, epoch) = consumer_at_zero();
        // Records of an earlier answer are buffered, and the fetch after them has finished.
        consumer
            .buffer
            .push_back(vec![record(0, 0), record(0, 1)].into_iter());
        consumer.recount_buffer();
        let state = consumer.partitions.get_mut(&tp).unwrap();
        state.fetch_offset = 2;
        state.fetch_in_flight = Some(epoch);
        let outcome = answered(&tp, epoch, 2, batch_at(2, 4));
        let (finished, finishing) = tokio::sync::oneshot::channel();
        consumer.fetches.spawn(async move {
            let _ = finished.send(());
            outcome
        });
        // One thread: the task returns in the same poll that wakes this one.
        finishing.await.unwrap();
        let records = tokio::time::timeout(Duration::from_secs(5), consumer.poll(Duration::ZERO))
            .await
            .expect("buffered records come back at once")
            .unwrap();
        // The poll took the finished fetch in (and its decode), so the next fetch can start
        // from past it.
        let offsets: Vec<u64> = records.iter().map(|record| record.offset).collect();
        assert_eq!(offsets, [0, 1, 2, 3, 4, 5]);
        let state = &consumer.partitions[&tp];
        assert_eq!(state.fetch_offset, 6);
        assert_eq!(state.fetch_in_flight, None);
    }

    #[tokio::test]
    async fn a_corrupt_answer_refetches_from_its_start_and_drops_what_was_fetched_past_it() {
        let (mut consumer, tp, epoch) = consumer_at_zero();
        let mut corrupt = batch_at(4, 4);
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1;
        // Three answers in a row, each absorbed before the one before it is decoded: the
        // next fetch offset comes from the headers, so it moves past the corrupt batch.
        for (fetch_offset, answer) in [(0, batch_at(0, 4)), (4, corrupt), (8, batch_at(8, 4))] {
            consumer.partitions.get_mut(&tp).unwrap().fetch_in_flight = Some(epoch);
            consumer.absorb(answered(&tp, epoch, fetch_offset, answer));
        }
        assert_eq!(consumer.partitions[&tp].fetch_offset, 12);
        assert_eq!(consumer.decoding.len(), 3);

        consumer.take_decoded();
        let offsets: Vec<u64> = consumer.buffered().map(|record| record.offset).collect();
        assert_eq!(
            offsets,
            [0, 1, 2, 3],
            "only records before the corrupt batch"
        );
        let state = &consumer.partitions[&tp];
        assert_eq!(
            state.fetch_offset, 4,
            "fetched again from the corrupt answer"
        );
        assert_ne!(state.epoch, epoch, "fetches issued past it are dropped");
        assert!(state.retry_at.is_some(), "backs off before fetching again");
        assert!(
            consumer.decoding.is_empty(),
            "the answer after it is dropped"
        );
        let error = consumer
            .errors
            .pop_front()
            .expect("the corruption is reported");
        assert!(error.to_string().contains("CRC"), "{error}");
    }

    #[tokio::test]
    async fn out_of_range_behind_a_decode_backs_off_instead_of_resetting() {
        let (mut consumer, tp, epoch) = consumer_at_zero();
        // The answer's headers claim offsets up to 1003; its CRC will say otherwise.
        let mut corrupt = batch_at(0, 4);
        corrupt[23..27].copy_from_slice(&1_003u32.to_be_bytes());
        consumer.partitions.get_mut(&tp).unwrap().fetch_in_flight = Some(epoch);
        consumer.absorb(answered(&tp, epoch, 0, corrupt));
        assert_eq!(consumer.partitions[&tp].fetch_offset, 1_004);

        // The fetch from that made-up offset is refused before the decode is looked at.
        consumer.partitions.get_mut(&tp).unwrap().fetch_in_flight = Some(epoch);
        consumer.absorb(FetchOutcome {
            result: Ok(vec![FetchedPartition {
                tp: tp.clone(),
                epoch,
                fetch_offset: 1_004,
                result: Err(Error::broker(ErrorCode::OffsetOutOfRange, None)),
            }]),
        });
        let state = &consumer.partitions[&tp];
        assert_eq!(state.position, Some(0), "the position is not reset");
        assert!(state.retry_at.is_some() && state.fetch_in_flight.is_none());
        assert!(consumer.errors.is_empty(), "no out-of-range error reported");

        consumer.take_decoded();
        let state = &consumer.partitions[&tp];
        assert_eq!(
            state.fetch_offset, 0,
            "fetched again from the corrupt answer"
        );
        assert_ne!(state.epoch, epoch);
        let error = consumer
            .errors
            .pop_front()
            .expect("the corruption is reported");
        assert!(error.to_string().contains("CRC"), "{error}");
    }

    #[test]
    fn records_must_end_where_the_header_says() {
        let mut batch = batch_at(0, 4);
        batch[23..27].copy_from_slice(&5u32.to_be_bytes());
        // Re-sealed with a valid CRC: only the delta disagrees with the record count.
        batch::stamp_producer(
            &mut batch,
            batch::NO_PRODUCER_ID,
            batch::NO_PRODUCER_EPOCH,
            batch::NO_SEQUENCE,
        );
        let error = decode_records(&Arc::from("t"), 0, 0, &Bytes::from(batch)).unwrap_err();
        assert!(
            error.to_string().contains("last offset delta of 5"),
            "{error}"
        );
    }

    #[test]
    fn a_flipped_bit_fails_the_crc_check() {
        let mut builder = BatchBuilder::new();
        builder.push(0, None, Some(b"value"), &[]);
        let mut batch = builder.finish().to_vec();
        let last = batch.len() - 1;
        batch[last] ^= 1;
        let error = decode_records(&Arc::from("t"), 0, 0, &Bytes::from(batch)).unwrap_err();
        assert!(error.to_string().contains("CRC"), "{error}");
    }
}
