//! The producer's record accumulator: per-partition batching, with no I/O.
//!
//! Each partition has at most one *open* batch collecting records, a queue of *sealed*
//! batches waiting to be sent (in seal order), and a count of requests in flight. A batch
//! is sealed when the next record would push it past `batch_bytes_max`, when it has
//! waited `linger`, or on flush. [`Accumulator::drain`] hands out sealed batches of
//! partitions below their in-flight limit; a failed request's batches go back into the
//! queue in seal order ([`Accumulator::requeue`]), so a retry is never overtaken by a
//! batch sealed after it.
//!
//! - Without idempotence a partition has one request in flight, carrying sealed batches
//!   up to `request_partition_bytes_max`: nothing of the partition is sent until it is
//!   resolved, which keeps order under retries.
//! - With idempotence a partition has up to `in_flight_max` requests in flight, one batch
//!   each, every batch numbered with the producer's id, epoch and the partition's next
//!   sequence. The leader writes a partition's batches in sequence order only, and answers
//!   a retry of a batch it already wrote with the original offsets, so several requests in
//!   flight neither reorder nor duplicate records. Batches sealed before the producer has
//!   an id are numbered when it gets one. When a numbered batch fails for good its
//!   partition's sequence has a gap the leader will not accept; nothing is sent until
//!   every request in flight is back and a new epoch renumbers what is left from 0.
//!
//! Each batch knows the index of its first record among the records appended to its
//! partition. A partition keeps the indices of batches not yet resolved (acknowledged or
//! failed for good), so "the first n records are done" is "no unresolved batch starts
//! below n", whatever order requests complete in: that is how `flush` waits.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use strata_protocol::batch::{
    self, BatchBuilder, Header as WireHeader, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
};
use tokio::time::Instant;

use crate::delivery::{BatchResolver, DeliveryFuture};
use crate::partitioner::partition_for_key;
use crate::record::{ProducerRecord, TopicPartition};

/// An idempotent producer's id and epoch, given by the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerIdentity {
    pub(crate) id: i64,
    pub(crate) epoch: i16,
}

/// A sealed batch's encoding. It stays in its builder until the request that first
/// carries it is built, so numbering it costs no copy until then. The builder takes its
/// records into the CRC as they are pushed; finishing adds the header's bytes.
#[derive(Debug)]
enum Encoding {
    Built(BatchBuilder),
    Finished(Bytes),
}

/// A sealed batch: its encoding plus who to tell about its records.
#[derive(Debug)]
pub(crate) struct ProducerBatch {
    encoding: Encoding,
    pub(crate) resolver: BatchResolver,
    /// Records in the batch.
    pub(crate) records: u32,
    /// Records sent without a future (fire and forget): a failure is logged for them.
    pub(crate) forgotten: u32,
    /// Buffer memory to release once the batch is resolved.
    pub(crate) reserved_bytes: usize,
    /// Failed attempts so far.
    pub(crate) attempts: u32,
    /// Index of its first record among the records appended to its partition.
    pub(crate) first_record: u64,
    /// Whether it carries a sequence number (idempotence).
    pub(crate) numbered: bool,
    /// Whether an earlier batch of its partition was unresolved when it was last drained:
    /// the leader may then see it before that batch (the earlier one's request failed
    /// before reaching the wire and is retried), and answer OutOfOrderSequence.
    pub(crate) drained_behind: bool,
}

impl ProducerBatch {
    /// A batch already encoded as `bytes`, with nothing to resolve.
    #[cfg(test)]
    pub(crate) fn encoded(bytes: Bytes, records: u32, reserved_bytes: usize) -> Self {
        Self {
            encoding: Encoding::Finished(bytes),
            resolver: BatchResolver::default(),
            records,
            forgotten: 0,
            reserved_bytes,
            attempts: 0,
            first_record: 0,
            numbered: false,
            drained_behind: false,
        }
    }

    /// The batch's size in bytes.
    pub(crate) fn len(&self) -> usize {
        match &self.encoding {
            Encoding::Built(builder) => builder.len(),
            Encoding::Finished(bytes) => bytes.len(),
        }
    }

    /// The encoded batch, finished (header and CRC written) on the first call.
    pub(crate) fn bytes(&mut self) -> Bytes {
        let bytes = match std::mem::replace(&mut self.encoding, Encoding::Finished(Bytes::new())) {
            Encoding::Built(builder) => builder.finish(),
            Encoding::Finished(bytes) => bytes,
        };
        self.encoding = Encoding::Finished(bytes.clone());
        bytes
    }

    /// Sets the producer fields of the batch to `identity` and `sequence`, or to none,
    /// for batches sealed before the producer had its current id and epoch: in the
    /// builder, or by rewriting the fields and CRC of a finished batch (one copy).
    fn renumber(&mut self, number: Option<(ProducerIdentity, i32)>) {
        let (id, epoch, sequence) = number.map_or(
            (NO_PRODUCER_ID, NO_PRODUCER_EPOCH, NO_SEQUENCE),
            |(identity, sequence)| (identity.id, identity.epoch, sequence),
        );
        match &mut self.encoding {
            Encoding::Built(builder) => {
                builder.producer(id, epoch, sequence);
            }
            Encoding::Finished(bytes) => {
                let mut copy = BytesMut::from(&bytes[..]);
                batch::stamp_producer(&mut copy, id, epoch, sequence);
                *bytes = copy.freeze();
            }
        }
        self.numbered = number.is_some();
    }
}

#[derive(Debug)]
struct OpenBatch {
    builder: BatchBuilder,
    created: Instant,
    resolver: BatchResolver,
    forgotten: u32,
    reserved_bytes: usize,
    first_record: u64,
}

#[derive(Debug, Default)]
struct PartitionQueue {
    open: Option<OpenBatch>,
    /// In seal order (ascending `first_record`).
    sealed: VecDeque<ProducerBatch>,
    /// Requests in flight.
    in_flight: usize,
    retry_at: Option<Instant>,
    appended: u64,
    /// `first_record` of every batch not yet resolved, the open one included.
    unresolved: BTreeSet<u64>,
    /// The sequence number of the next batch sealed under the current identity.
    next_sequence: i32,
}

impl PartitionQueue {
    fn is_idle(&self) -> bool {
        self.open.is_none() && self.sealed.is_empty() && self.in_flight == 0
    }

    /// Seals the open batch, if any, numbering it under `identity`.
    fn seal_open(&mut self, identity: Option<ProducerIdentity>) -> bool {
        let Some(mut open) = self.open.take() else {
            return false;
        };
        if let Some(identity) = identity {
            open.builder
                .producer(identity.id, identity.epoch, self.next_sequence);
            self.next_sequence =
                batch::sequence_after(self.next_sequence, open.builder.record_count());
        }
        self.sealed.push_back(ProducerBatch {
            records: open.builder.record_count(),
            encoding: Encoding::Built(open.builder),
            resolver: open.resolver,
            forgotten: open.forgotten,
            reserved_bytes: open.reserved_bytes,
            attempts: 0,
            first_record: open.first_record,
            numbered: identity.is_some(),
            drained_behind: false,
        });
        true
    }
}

/// The idempotent producer's state.
#[derive(Debug)]
struct Idempotence {
    in_flight_max: usize,
    identity: Option<ProducerIdentity>,
    /// A numbered batch failed for good, leaving a gap in its partition's sequence:
    /// nothing is sent until a new epoch renumbers the batches left.
    renumber_pending: bool,
}

/// What [`Accumulator::append`] did, so the caller knows whether to wake the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Appended {
    /// A new open batch started (the sender needs its linger deadline).
    pub(crate) opened: bool,
    /// A batch was sealed and can be sent.
    pub(crate) sealed: bool,
}

/// How [`Accumulator::append`] knows the topic's partition count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PartitionCount {
    /// The count kept with the topic's queues, if it was looked up at this metadata
    /// generation.
    Kept { generation: u64 },
    /// Just looked up at `generation`: used, and kept for the next records.
    Fresh { count: u32, generation: u64 },
}

/// [`Accumulator::append`] has no partition count for the record's topic from
/// the current metadata, or the record's explicit partition is beyond it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unrouted;

/// One topic's partition queues, its sticky partition and its partition count.
#[derive(Debug, Default)]
struct TopicQueues {
    queues: BTreeMap<u32, PartitionQueue>,
    /// The sticky partition for keyless records and the count it was chosen from.
    sticky: Option<(u32, u32)>,
    /// The topic's partition count and the metadata generation it was looked up at.
    partition_count: Option<(u32, u64)>,
}

impl TopicQueues {
    fn sticky_partition(&mut self, partition_count: u32) -> u32 {
        assert!(partition_count > 0);
        let (partition, count) = self.sticky.get_or_insert((0, partition_count));
        if *count != partition_count || *partition >= partition_count {
            (*partition, *count) = (*partition % partition_count, partition_count);
        }
        *partition
    }

    /// Moves the sticky partition on when its batch is sealed.
    fn on_sealed(&mut self, sealed: u32) {
        if let Some((partition, count)) = &mut self.sticky
            && *partition == sealed
        {
            *partition = (*partition + 1) % *count;
        }
    }
}

/// Batches by partition. Not thread-safe on its own: the producer keeps it behind a
/// mutex that is never held across an await.
#[derive(Debug)]
pub(crate) struct Accumulator {
    batch_bytes_max: usize,
    request_partition_bytes_max: usize,
    linger: Duration,
    /// Queues by topic, then partition: a record is filed under its topic's `&str`
    /// without building a key, with one lookup of its topic.
    topics: BTreeMap<String, TopicQueues>,
    clock: WallClock,
    /// `None` without idempotence.
    idempotence: Option<Idempotence>,
}

/// Record timestamps from one clock read per record: the wall clock is read at most every
/// [`WallClock::RESYNC`] and advanced by the monotonic clock in between, so a step of the
/// wall clock shows within that time. Records stamped within one millisecond cost a
/// comparison: the arithmetic is done once per millisecond.
#[derive(Debug)]
struct WallClock {
    anchor: Instant,
    anchor_ms: i64,
    /// The last timestamp given, and when the millisecond after it starts.
    last_ms: i64,
    next_tick: Instant,
}

impl WallClock {
    const RESYNC: Duration = Duration::from_secs(1);
    const TICK: Duration = Duration::from_millis(1);

    fn new(now: Instant) -> Self {
        let anchor_ms = unix_ms();
        Self {
            anchor: now,
            anchor_ms,
            last_ms: anchor_ms,
            next_tick: now + Self::TICK,
        }
    }

    fn now_ms(&mut self, now: Instant) -> i64 {
        if now < self.next_tick {
            return self.last_ms;
        }
        let elapsed = now.saturating_duration_since(self.anchor);
        if elapsed >= Self::RESYNC {
            *self = Self::new(now);
            return self.anchor_ms;
        }
        // Below RESYNC, so the milliseconds fit.
        let elapsed_ms = elapsed.as_millis() as u32;
        self.last_ms = self.anchor_ms + i64::from(elapsed_ms);
        self.next_tick = self.anchor + Self::TICK * (elapsed_ms + 1);
        self.last_ms
    }
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

impl Accumulator {
    /// An accumulator; `idempotent_in_flight_max` is the in-flight batch limit per
    /// partition of an idempotent producer, `None` without idempotence.
    pub(crate) fn new(
        batch_bytes_max: usize,
        request_partition_bytes_max: usize,
        linger: Duration,
        idempotent_in_flight_max: Option<usize>,
    ) -> Self {
        Self {
            batch_bytes_max,
            request_partition_bytes_max,
            linger,
            topics: BTreeMap::new(),
            clock: WallClock::new(Instant::now()),
            idempotence: idempotent_in_flight_max.map(|in_flight_max| Idempotence {
                in_flight_max,
                identity: None,
                renumber_pending: false,
            }),
        }
    }

    /// Moves the sticky partition of `topic` on when its batch is sealed.
    fn on_sealed(&mut self, topic: &str, sealed: u32) {
        if let Some(topic) = self.topics.get_mut(topic) {
            topic.on_sealed(sealed);
        }
    }

    /// The identity batches are numbered under when sealed: none before the producer
    /// has one, or while a renumbering is pending (it renumbers them anyway).
    fn numbering(&self) -> Option<ProducerIdentity> {
        self.idempotence
            .as_ref()
            .filter(|idempotence| !idempotence.renumber_pending)
            .and_then(|idempotence| idempotence.identity)
    }

    fn queue(&self, tp: &TopicPartition) -> Option<&PartitionQueue> {
        self.topics.get(&tp.topic)?.queues.get(&tp.partition)
    }

    fn queue_mut(&mut self, tp: &TopicPartition) -> Option<&mut PartitionQueue> {
        self.topics
            .get_mut(&tp.topic)?
            .queues
            .get_mut(&tp.partition)
    }

    fn queues(&self) -> impl Iterator<Item = (TopicPartition, &PartitionQueue)> {
        self.topics.iter().flat_map(|(topic, queues)| {
            queues
                .queues
                .iter()
                .map(|(partition, queue)| (TopicPartition::new(topic.clone(), *partition), queue))
        })
    }

    fn queues_mut(&mut self) -> impl Iterator<Item = (TopicPartition, &mut PartitionQueue)> {
        self.topics.iter_mut().flat_map(|(topic, queues)| {
            queues
                .queues
                .iter_mut()
                .map(|(partition, queue)| (TopicPartition::new(topic.clone(), *partition), queue))
        })
    }

    /// Every partition's queue.
    fn all_queues(&self) -> impl Iterator<Item = &PartitionQueue> {
        self.topics.values().flat_map(|topic| topic.queues.values())
    }

    /// Appends a record of `record.topic` whose memory (`reserved_bytes`) is already
    /// reserved, and returns the future of its outcome if `future` (not for fire and
    /// forget). The record goes to its explicit partition, its key's, or the topic's
    /// sticky one, and carries its own timestamp or one from the clock at `now`. The topic
    /// is looked up once, for its partition count and its queues. Allocates nothing but
    /// the batch's own growth once the partition has a queue.
    ///
    /// # Errors
    /// [`Unrouted`] if the count is not [`Fresh`](PartitionCount::Fresh) and the topic
    /// has none kept from this metadata generation, or if the record's explicit partition
    /// is beyond it. Nothing is appended then.
    pub(crate) fn append(
        &mut self,
        record: &ProducerRecord,
        partition_count: PartitionCount,
        future: bool,
        reserved_bytes: usize,
        now: Instant,
    ) -> Result<(Appended, Option<DeliveryFuture>), Unrouted> {
        let timestamp = record.timestamp.unwrap_or_else(|| self.clock.now_ms(now));
        let (batch_bytes_max, numbering) = (self.batch_bytes_max, self.numbering());
        // A topic gets queues only with a fresh count: a name that turns out not to exist
        // leaves nothing behind.
        let topic = match (self.topics.get_mut(&*record.topic), partition_count) {
            (Some(topic), _) => topic,
            (None, PartitionCount::Fresh { .. }) => {
                self.topics.entry(record.topic.to_string()).or_default()
            }
            (None, PartitionCount::Kept { .. }) => return Err(Unrouted),
        };
        let count = match partition_count {
            PartitionCount::Fresh { count, generation } => {
                topic.partition_count = Some((count, generation));
                count
            }
            PartitionCount::Kept { generation } => match topic.partition_count {
                Some((count, kept_at)) if kept_at == generation => count,
                _ => return Err(Unrouted),
            },
        };
        if record.partition.is_some_and(|partition| partition >= count) {
            return Err(Unrouted);
        }
        let partition = match (record.partition, &record.key) {
            (Some(partition), _) => partition,
            (None, Some(key)) => partition_for_key(key, count),
            (None, None) => topic.sticky_partition(count),
        };
        let headers: Vec<WireHeader<'_>> = record
            .headers
            .iter()
            .map(|header| WireHeader {
                key: &header.key,
                value: header.value.as_deref(),
            })
            .collect();
        let (key, value) = (record.key.as_deref(), record.value.as_deref());
        let queue = topic.queues.entry(partition).or_default();
        let mut appended = Appended {
            opened: false,
            sealed: false,
        };
        let pushed = queue.open.as_mut().is_some_and(|open| {
            open.builder
                .push_within(batch_bytes_max, timestamp, key, value, &headers)
        });
        if !pushed && queue.open.is_some() {
            appended.sealed = queue.seal_open(numbering);
        }
        if queue.open.is_none() {
            appended.opened = true;
            queue.unresolved.insert(queue.appended);
            queue.open = Some(OpenBatch {
                builder: BatchBuilder::with_capacity(batch_bytes_max.min(64 << 10)),
                created: now,
                resolver: BatchResolver::default(),
                forgotten: 0,
                reserved_bytes: 0,
                first_record: queue.appended,
            });
        }
        let open = queue.open.as_mut().expect("opened above");
        if !pushed {
            // A record bigger than a whole batch still gets a batch of its own.
            open.builder.push(timestamp, key, value, &headers);
        }
        let delivery = if future {
            let index = open.builder.record_count() - 1;
            Some(open.resolver.future(index, partition, timestamp))
        } else {
            open.forgotten += 1;
            None
        };
        open.reserved_bytes += reserved_bytes;
        queue.appended += 1;
        if open.builder.len() >= batch_bytes_max {
            appended.sealed = queue.seal_open(numbering);
        }
        if appended.sealed {
            topic.on_sealed(partition);
        }
        Ok((appended, delivery))
    }

    /// Seals every open batch (flush and close: linger no longer applies to them).
    pub(crate) fn seal_all(&mut self) {
        let numbering = self.numbering();
        let mut sealed = Vec::new();
        for (tp, queue) in self.queues_mut() {
            if queue.seal_open(numbering) {
                sealed.push(tp);
            }
        }
        for tp in &sealed {
            self.on_sealed(&tp.topic, tp.partition);
        }
    }

    /// Per partition, how many requests may be in flight and how many batches one takes:
    /// `None` while an idempotent producer waits for an id or a renumbering.
    fn send_limits(&self) -> Option<(usize, Option<usize>)> {
        match &self.idempotence {
            None => Some((1, None)),
            Some(idempotence) if idempotence.identity.is_none() || idempotence.renumber_pending => {
                None
            }
            Some(idempotence) => Some((idempotence.in_flight_max, Some(1))),
        }
    }

    /// Takes the batches ready to send: for each partition below its in-flight limit and
    /// with no retry backoff pending, after sealing an open batch whose linger expired,
    /// its first sealed batch (idempotent) or its sealed batches up to
    /// `request_partition_bytes_max` (at least one). Counts a request in flight for each.
    pub(crate) fn drain(&mut self, now: Instant) -> Vec<(TopicPartition, Vec<ProducerBatch>)> {
        let Some((in_flight_max, batches_max)) = self.send_limits() else {
            return Vec::new();
        };
        let numbering = self.numbering();
        let mut ready = Vec::new();
        let mut lingered = Vec::new();
        let (linger, request_partition_bytes_max) = (self.linger, self.request_partition_bytes_max);
        for (tp, queue) in self.queues_mut() {
            if queue.in_flight >= in_flight_max || queue.retry_at.is_some_and(|at| at > now) {
                continue;
            }
            queue.retry_at = None;
            if queue
                .open
                .as_ref()
                .is_some_and(|open| now >= open.created + linger)
            {
                queue.seal_open(numbering);
                lingered.push(tp.clone());
            }
            let mut batches = Vec::new();
            let mut bytes = 0;
            while let Some(batch) = queue.sealed.front() {
                let full = batches_max.is_some_and(|max| batches.len() >= max)
                    || !batches.is_empty() && bytes + batch.len() > request_partition_bytes_max;
                if full {
                    break;
                }
                bytes += batch.len();
                let mut batch = queue.sealed.pop_front().expect("front exists");
                batch.drained_behind = queue
                    .unresolved
                    .first()
                    .is_some_and(|first| *first < batch.first_record);
                batches.push(batch);
            }
            if !batches.is_empty() {
                queue.in_flight += 1;
                ready.push((tp, batches));
            }
        }
        for tp in &lingered {
            self.on_sealed(&tp.topic, tp.partition);
        }
        ready
    }

    /// Takes every buffered batch, sealing open ones, as if drained: for failing them
    /// when the producer cannot get an id.
    pub(crate) fn drain_all(&mut self) -> Vec<(TopicPartition, Vec<ProducerBatch>)> {
        self.seal_all();
        let mut taken = Vec::new();
        for (tp, queue) in self.queues_mut() {
            if !queue.sealed.is_empty() {
                queue.in_flight += 1;
                taken.push((tp, queue.sealed.drain(..).collect()));
            }
        }
        taken
    }

    /// When [`drain`](Self::drain) will next have something to do, if ever without new
    /// records: the earliest linger expiry or retry time of a partition below its
    /// in-flight limit.
    pub(crate) fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let (in_flight_max, _) = self.send_limits()?;
        self.all_queues()
            .filter(|queue| queue.in_flight < in_flight_max)
            .filter_map(|queue| {
                let linger = queue.open.as_ref().map(|open| open.created + self.linger);
                let sealed = (!queue.sealed.is_empty()).then_some(now);
                let earliest = sealed.or(linger)?;
                // In backoff, nothing of the partition goes before retry_at.
                Some(
                    queue
                        .retry_at
                        .map_or(earliest, |retry_at| earliest.max(retry_at)),
                )
            })
            .min()
    }

    /// What an idempotent producer must ask InitProducerId for before it can send its
    /// buffered records: a new id (`None`), or the next epoch of its current identity once
    /// a renumbering is pending and nothing is in flight. `Some` only when such a call is
    /// due.
    pub(crate) fn identity_due(&self) -> Option<Option<ProducerIdentity>> {
        let idempotence = self.idempotence.as_ref()?;
        let buffered = self
            .all_queues()
            .any(|queue| queue.open.is_some() || !queue.sealed.is_empty());
        if !buffered {
            return None;
        }
        match idempotence.identity {
            None => Some(None),
            Some(identity) if idempotence.renumber_pending && self.in_flight() == 0 => {
                Some(Some(identity))
            }
            Some(_) => None,
        }
    }

    fn in_flight(&self) -> usize {
        self.all_queues().map(|queue| queue.in_flight).sum()
    }

    /// Installs the identity InitProducerId gave (`None`: the cluster does not support
    /// idempotence, so the producer goes on without it) and renumbers every sealed batch
    /// under it, each partition's sequence from 0. Nothing may be in flight.
    pub(crate) fn set_identity(&mut self, identity: Option<ProducerIdentity>) {
        assert_eq!(self.in_flight(), 0, "renumbering with batches in flight");
        match identity {
            Some(identity) => {
                let idempotence = self.idempotence.as_mut().expect("idempotent producer");
                idempotence.identity = Some(identity);
                idempotence.renumber_pending = false;
            }
            None => self.idempotence = None,
        }
        for (_, queue) in self.queues_mut() {
            queue.next_sequence = 0;
            for batch in &mut queue.sealed {
                match identity {
                    Some(identity) => {
                        batch.renumber(Some((identity, queue.next_sequence)));
                        queue.next_sequence =
                            batch::sequence_after(queue.next_sequence, batch.records);
                    }
                    None if batch.numbered => batch.renumber(None),
                    None => {}
                }
            }
        }
    }

    /// A numbered batch failed for good: its partition's sequence now has a gap.
    pub(crate) fn renumber_later(&mut self) {
        if let Some(idempotence) = &mut self.idempotence {
            idempotence.renumber_pending = true;
        }
    }

    /// Whether the leader's OutOfOrderSequence for `batch` of `tp` is explained by the
    /// producer's own state, so the batch can be retried: an earlier batch of the
    /// partition is still unresolved (the leader has not seen it yet), or was when
    /// `batch` was sent (the leader saw `batch` first; the earlier one was written and
    /// acknowledged since, perhaps before this answer is handled), or a renumbering is
    /// pending.
    pub(crate) fn out_of_order_is_expected(
        &self,
        tp: &TopicPartition,
        batch: &ProducerBatch,
    ) -> bool {
        let renumbering = self
            .idempotence
            .as_ref()
            .is_some_and(|idempotence| idempotence.renumber_pending);
        let earlier_unresolved = self
            .queue(tp)
            .and_then(|queue| queue.unresolved.first())
            .is_some_and(|first| *first < batch.first_record);
        renumbering || earlier_unresolved || batch.drained_behind
    }

    /// A request for `tp` finished: `batches` (their first record indices) are resolved.
    pub(crate) fn complete(&mut self, tp: &TopicPartition, batches: &[u64]) {
        let queue = self.queue_mut(tp).expect("completed partition exists");
        assert!(
            queue.in_flight > 0,
            "completing {tp} with nothing in flight"
        );
        queue.in_flight -= 1;
        for first_record in batches {
            assert!(
                queue.unresolved.remove(first_record),
                "{tp}: batch at {first_record} resolved twice"
            );
        }
    }

    /// A request for `tp` failed retriably: its batches go back into the queue in seal
    /// order, and the partition waits until `retry_at`.
    pub(crate) fn requeue(
        &mut self,
        tp: &TopicPartition,
        batches: Vec<ProducerBatch>,
        retry_at: Instant,
    ) {
        let queue = self.queue_mut(tp).expect("requeued partition exists");
        assert!(
            queue.in_flight > 0,
            "requeueing {tp} with nothing in flight"
        );
        queue.in_flight -= 1;
        queue.retry_at = Some(queue.retry_at.map_or(retry_at, |at| at.max(retry_at)));
        for batch in batches {
            let at = queue
                .sealed
                .partition_point(|sealed| sealed.first_record < batch.first_record);
            queue.sealed.insert(at, batch);
        }
    }

    /// Records appended so far, per partition: the targets a flush waits for.
    pub(crate) fn appended(&self) -> Vec<(TopicPartition, u64)> {
        self.queues()
            .map(|(tp, queue)| (tp, queue.appended))
            .collect()
    }

    /// Whether the first `target` records of `tp` are resolved.
    pub(crate) fn is_completed(&self, tp: &TopicPartition, target: u64) -> bool {
        self.queue(tp)
            .and_then(|queue| queue.unresolved.first())
            .is_none_or(|first| *first >= target)
    }

    /// Whether nothing is buffered or in flight.
    pub(crate) fn is_idle(&self) -> bool {
        self.all_queues().all(PartitionQueue::is_idle)
    }
}

#[cfg(test)]
mod tests {
    use strata_protocol::batch::{self, Batches};

    use super::*;

    fn record(value: &str) -> ProducerRecord {
        ProducerRecord::new("t", value.to_owned())
    }

    /// Appends `record` to `partition` of topic "t", of 8 partitions, with a future.
    fn append_to(
        accumulator: &mut Accumulator,
        partition: u32,
        record: &ProducerRecord,
        now: Instant,
    ) -> (Appended, Option<DeliveryFuture>) {
        let mut record = record.clone();
        record.partition = Some(partition);
        record.timestamp = Some(0);
        let count = PartitionCount::Fresh {
            count: 8,
            generation: 0,
        };
        accumulator.append(&record, count, true, 10, now).unwrap()
    }

    fn values(batch: &mut ProducerBatch) -> Vec<String> {
        let bytes = batch.bytes();
        let view = Batches::new(&bytes).next().unwrap().unwrap();
        batch::verify_crc(view.bytes).unwrap();
        view.records()
            .map(|record| String::from_utf8(record.unwrap().value.unwrap().to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn wall_clock_advances_with_the_monotonic_clock_and_resyncs_every_second() {
        let start = Instant::now();
        let mut clock = WallClock::new(start);
        let anchor_ms = clock.anchor_ms;
        assert!((unix_ms() - anchor_ms).abs() < 1_000);
        assert_eq!(clock.now_ms(start), anchor_ms);
        // Within one millisecond, the same timestamp.
        assert_eq!(clock.now_ms(start + Duration::from_micros(999)), anchor_ms);
        assert_eq!(
            clock.now_ms(start + Duration::from_micros(2_500)),
            anchor_ms + 2
        );
        assert_eq!(
            clock.now_ms(start + Duration::from_micros(2_999)),
            anchor_ms + 2
        );
        assert_eq!(
            clock.now_ms(start + Duration::from_millis(999)),
            anchor_ms + 999
        );
        // Past RESYNC the wall clock is read again: a fresh anchor, not the extrapolation.
        let later = start + Duration::from_millis(1_500);
        let before = unix_ms();
        let resynced = clock.now_ms(later);
        assert!(resynced >= before && resynced <= unix_ms(), "{resynced}");
        assert_eq!(clock.anchor, later);
    }

    #[test]
    fn batches_seal_at_batch_bytes_max_and_keep_record_order() {
        let now = Instant::now();
        let mut accumulator = Accumulator::new(200, 1 << 20, Duration::from_secs(60), None);
        let tp = TopicPartition::new("t", 0);
        let mut sealed_count = 0;
        for index in 0..20 {
            let (appended, _) = append_to(
                &mut accumulator,
                tp.partition,
                &record(&format!("value-{index:02}")),
                now,
            );
            sealed_count += usize::from(appended.sealed);
        }
        assert!(
            sealed_count >= 2,
            "200-byte batches must seal: {sealed_count}"
        );
        // Linger has not expired: only sealed batches go, all in one request.
        let mut ready = accumulator.drain(now);
        assert_eq!(ready.len(), 1);
        let batches = &mut ready[0].1;
        assert_eq!(batches.len(), sealed_count);
        assert!(batches.iter().all(|batch| batch.len() <= 200));
        let mut all: Vec<String> = batches.iter_mut().flat_map(values).collect();
        let first_records: Vec<u64> = batches.iter().map(|batch| batch.first_record).collect();
        // The rest is still open; flush seals it.
        accumulator.complete(&tp, &first_records);
        accumulator.seal_all();
        let mut rest = accumulator.drain(now);
        all.extend(rest[0].1.iter_mut().flat_map(values));
        let expected: Vec<String> = (0..20).map(|index| format!("value-{index:02}")).collect();
        assert_eq!(all, expected);
    }

    #[test]
    fn open_batch_waits_for_linger_then_drains() {
        let start = Instant::now();
        let linger = Duration::from_millis(10);
        let mut accumulator = Accumulator::new(1 << 20, 1 << 20, linger, None);
        let tp = TopicPartition::new("t", 0);
        let (appended, _) = append_to(&mut accumulator, tp.partition, &record("a"), start);
        assert_eq!(
            appended,
            Appended {
                opened: true,
                sealed: false
            }
        );
        assert!(accumulator.drain(start).is_empty());
        assert_eq!(accumulator.next_deadline(start), Some(start + linger));
        let ready = accumulator.drain(start + linger);
        assert_eq!(ready.len(), 1);
        assert_eq!(accumulator.next_deadline(start + linger), None);
        assert!(!accumulator.is_idle());
        accumulator.complete(&tp, &[0]);
        assert!(accumulator.is_idle());
    }

    #[test]
    fn one_request_in_flight_per_partition_and_retries_go_first() {
        let now = Instant::now();
        let mut accumulator = Accumulator::new(1 << 20, 1 << 20, Duration::ZERO, None);
        let tp = TopicPartition::new("t", 0);
        append_to(&mut accumulator, tp.partition, &record("first"), now);
        let in_flight = accumulator.drain(now).pop().unwrap().1;
        append_to(&mut accumulator, tp.partition, &record("second"), now);
        assert!(
            accumulator.drain(now).is_empty(),
            "a second request would overtake"
        );
        let retry_at = now + Duration::from_millis(50);
        accumulator.requeue(&tp, in_flight, retry_at);
        assert!(accumulator.drain(now).is_empty(), "backoff respected");
        assert_eq!(accumulator.next_deadline(now), Some(retry_at));
        let mut ready = accumulator.drain(retry_at).pop().unwrap().1;
        let order: Vec<String> = ready.iter_mut().flat_map(values).collect();
        assert_eq!(order, ["first", "second"]);
        assert!(!accumulator.is_completed(&tp, 2));
        accumulator.complete(&tp, &[0, 1]);
        assert!(accumulator.is_completed(&tp, 2));
    }

    /// (producer id, epoch, base sequence, first value) of each batch.
    fn numbers(batches: &mut [ProducerBatch]) -> Vec<(i64, i16, i32, String)> {
        batches
            .iter_mut()
            .map(|batch| {
                let header = batch::verify_crc(&batch.bytes()).unwrap();
                let first = values(batch).remove(0);
                (
                    header.producer_id,
                    header.producer_epoch,
                    header.base_sequence,
                    first,
                )
            })
            .collect()
    }

    /// An idempotent accumulator with three 2-record batches of partition 0 sealed.
    fn idempotent_with_three_batches(now: Instant) -> Accumulator {
        // Room for two of these records per batch.
        let mut accumulator = Accumulator::new(150, 1 << 20, Duration::from_secs(60), Some(2));
        for index in 0..6 {
            append_to(
                &mut accumulator,
                0,
                &record(&format!("value-{index}-{}", "x".repeat(20))),
                now,
            );
        }
        accumulator.seal_all();
        accumulator
    }

    fn drain_one(accumulator: &mut Accumulator, now: Instant) -> ProducerBatch {
        let mut ready = accumulator.drain(now);
        assert_eq!(ready.len(), 1);
        let (_, mut batches) = ready.pop().unwrap();
        assert_eq!(batches.len(), 1, "an idempotent request carries one batch");
        batches.pop().unwrap()
    }

    #[test]
    fn idempotent_batches_wait_for_an_id_then_are_numbered_and_pipelined() {
        let now = Instant::now();
        let mut accumulator = idempotent_with_three_batches(now);
        let tp = TopicPartition::new("t", 0);
        assert!(
            accumulator.drain(now).is_empty(),
            "nothing goes before the id"
        );
        assert_eq!(accumulator.next_deadline(now), None);
        assert_eq!(accumulator.identity_due(), Some(None));
        let identity = ProducerIdentity { id: 7, epoch: 0 };
        accumulator.set_identity(Some(identity));
        assert_eq!(accumulator.identity_due(), None);
        // Two in flight at most, one batch each, in sequence order.
        let first = drain_one(&mut accumulator, now);
        let second = drain_one(&mut accumulator, now);
        assert!(accumulator.drain(now).is_empty(), "in-flight limit");
        // Sealed after the id: numbered at seal, continuing the sequence.
        append_to(&mut accumulator, 0, &record("late"), now);
        accumulator.seal_all();
        accumulator.complete(&tp, &[second.first_record]);
        let third = drain_one(&mut accumulator, now);
        accumulator.complete(&tp, &[first.first_record]);
        let fourth = drain_one(&mut accumulator, now);
        assert_eq!(
            numbers(&mut [first, second, third, fourth]),
            [
                (7, 0, 0, format!("value-0-{}", "x".repeat(20))),
                (7, 0, 2, format!("value-2-{}", "x".repeat(20))),
                (7, 0, 4, format!("value-4-{}", "x".repeat(20))),
                (7, 0, 6, "late".to_owned()),
            ]
        );
    }

    #[test]
    fn out_of_order_completion_keeps_flush_waiting_and_retries_keep_seal_order() {
        let now = Instant::now();
        let mut accumulator = idempotent_with_three_batches(now);
        let tp = TopicPartition::new("t", 0);
        accumulator.set_identity(Some(ProducerIdentity { id: 1, epoch: 0 }));
        let first = drain_one(&mut accumulator, now);
        let second = drain_one(&mut accumulator, now);
        // The second is acknowledged first (the first timed out but was written).
        accumulator.complete(&tp, &[second.first_record]);
        assert!(
            !accumulator.is_completed(&tp, 4),
            "the first batch is unresolved"
        );
        assert!(accumulator.out_of_order_is_expected(&tp, &second));
        let retry_at = now + Duration::from_millis(10);
        accumulator.requeue(&tp, vec![first], retry_at);
        assert!(accumulator.drain(now).is_empty(), "backoff");
        // The retry goes before the third batch, with its original number.
        let mut sent = [
            drain_one(&mut accumulator, retry_at),
            drain_one(&mut accumulator, retry_at),
        ];
        assert_eq!(
            numbers(&mut sent)
                .iter()
                .map(|number| number.2)
                .collect::<Vec<_>>(),
            [0, 4]
        );
        let [_, third] = sent;
        accumulator.complete(&tp, &[0]);
        assert!(accumulator.is_completed(&tp, 4));
        assert!(!accumulator.is_completed(&tp, 6));
        // The third went out behind the retry, so the leader may have seen it first and
        // refused it; the retry's acknowledgement may be handled before that refusal.
        assert!(accumulator.out_of_order_is_expected(&tp, &third));
        accumulator.requeue(&tp, vec![third], retry_at);
        let third = drain_one(&mut accumulator, retry_at);
        // Sent again with nothing earlier unresolved: a refusal now is a real gap.
        assert!(!accumulator.out_of_order_is_expected(&tp, &third));
        accumulator.complete(&tp, &[4]);
        assert!(accumulator.is_completed(&tp, 6));
        assert!(accumulator.is_idle());
    }

    #[test]
    fn a_failed_numbered_batch_stops_sending_until_a_new_epoch_renumbers_from_zero() {
        let now = Instant::now();
        let mut accumulator = idempotent_with_three_batches(now);
        let tp = TopicPartition::new("t", 0);
        let identity = ProducerIdentity { id: 3, epoch: 4 };
        accumulator.set_identity(Some(identity));
        let first = drain_one(&mut accumulator, now);
        let mut second = drain_one(&mut accumulator, now);
        // Sent, so finished: its renumbering rewrites the encoded batch, where the third
        // batch's, never sent, happens in its builder.
        second.bytes();
        // The first fails for good: the leader will refuse sequence 2 onwards.
        accumulator.complete(&tp, &[first.first_record]);
        accumulator.renumber_later();
        assert!(accumulator.drain(now).is_empty());
        assert!(accumulator.out_of_order_is_expected(&tp, &second));
        assert_eq!(
            accumulator.identity_due(),
            None,
            "a batch is still in flight"
        );
        accumulator.requeue(&tp, vec![second], now);
        assert_eq!(accumulator.identity_due(), Some(Some(identity)));
        accumulator.set_identity(Some(ProducerIdentity { id: 3, epoch: 5 }));
        let mut renumbered = [
            drain_one(&mut accumulator, now),
            drain_one(&mut accumulator, now),
        ];
        assert_eq!(
            numbers(&mut renumbered)
                .iter()
                .map(|number| (number.1, number.2))
                .collect::<Vec<_>>(),
            [(5, 0), (5, 2)]
        );
    }

    #[test]
    fn without_an_id_from_the_cluster_the_producer_goes_on_unnumbered() {
        let now = Instant::now();
        let mut accumulator = idempotent_with_three_batches(now);
        accumulator.set_identity(None);
        let mut ready = accumulator.drain(now);
        let batches = &mut ready[0].1;
        assert_eq!(batches.len(), 3, "one request with every sealed batch");
        assert!(
            numbers(batches)
                .iter()
                .all(|number| number.0 == -1 && number.2 == -1)
        );
        assert_eq!(accumulator.identity_due(), None);
    }

    #[test]
    fn sticky_partition_moves_on_when_its_batch_seals() {
        let now = Instant::now();
        let mut accumulator = Accumulator::new(150, 1 << 20, Duration::from_secs(60), None);
        let mut partitions = Vec::new();
        for _ in 0..12 {
            let (_, delivery) = accumulator
                .append(
                    &record("0123456789012345678901234567890123456789"),
                    PartitionCount::Fresh {
                        count: 3,
                        generation: 0,
                    },
                    true,
                    10,
                    now,
                )
                .unwrap();
            partitions.push(delivery.unwrap().partition());
        }
        // Several records in a row share a partition, and all partitions get used.
        assert!(partitions.windows(2).any(|pair| pair[0] == pair[1]));
        for partition in 0..3 {
            assert!(partitions.contains(&partition), "{partitions:?}");
        }
    }

    #[test]
    fn a_kept_partition_count_routes_records_until_the_metadata_changes() {
        let now = Instant::now();
        let mut accumulator = Accumulator::new(1 << 20, 1 << 20, Duration::from_secs(60), None);
        let kept = |generation| PartitionCount::Kept { generation };
        let keyed = record("v").key("user-7");
        // Nothing kept for the topic yet, and nothing kept of it after the refusal.
        assert_eq!(
            accumulator.append(&keyed, kept(4), true, 10, now).err(),
            Some(Unrouted)
        );
        assert!(accumulator.topics.is_empty());
        let fresh = PartitionCount::Fresh {
            count: 12,
            generation: 4,
        };
        let (_, first) = accumulator.append(&keyed, fresh, true, 10, now).unwrap();
        let (_, second) = accumulator.append(&keyed, kept(4), true, 10, now).unwrap();
        let expected = partition_for_key(b"user-7", 12);
        assert_eq!(first.unwrap().partition(), expected);
        assert_eq!(second.unwrap().partition(), expected);
        // The metadata changed since: the count must be looked up again.
        assert_eq!(
            accumulator.append(&keyed, kept(5), true, 10, now).err(),
            Some(Unrouted)
        );
        // An explicit partition beyond the count is refused, fresh or kept.
        let beyond = record("v").partition(12);
        assert_eq!(
            accumulator.append(&beyond, fresh, true, 10, now).err(),
            Some(Unrouted)
        );
        assert_eq!(
            accumulator.append(&beyond, kept(4), true, 10, now).err(),
            Some(Unrouted)
        );
        // Refused records were not appended: two records in one batch.
        accumulator.seal_all();
        let ready = accumulator.drain(now);
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].0, TopicPartition::new("t", expected));
        assert_eq!(ready[0].1.iter().map(|batch| batch.records).sum::<u32>(), 2);
    }
}
