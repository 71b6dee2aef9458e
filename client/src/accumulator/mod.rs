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
//!   every request in flight is back and a new epoch renumbers what is left from 0,
//!   except batches an attempt may have written, which are failed (not written twice).
//!
//! Each batch knows the index of its first record among the records appended to its
//! partition. A partition keeps the indices of batches not yet resolved (acknowledged or
//! failed for good), so "the first n records are done" is "no unresolved batch starts
//! below n", whatever order requests complete in: that is how `flush` waits.
//!
//! - this module: appending records to batches, draining them for requests, and
//!   tracking what is resolved;
//! - `routing`: which partition a record goes to (explicit, by key, or sticky);
//! - `batch`: a partition's open and sealed batches and their encoding;
//! - `idempotence`: the producer id, sequence numbers and renumbering;
//! - `clock`: record timestamps.

mod batch;
mod clock;
mod idempotence;
mod routing;

use std::collections::BTreeMap;
use std::time::Duration;

use strata_protocol::batch::{BatchBuilder, Header as WireHeader};
use tokio::time::Instant;

use crate::delivery::{BatchResolver, DeliveryFuture};
use crate::record::{ProducerRecord, TopicPartition};
use batch::{OpenBatch, PartitionQueue};
use clock::WallClock;
use idempotence::Idempotence;
use routing::TopicQueues;

pub(crate) use batch::ProducerBatch;
pub(crate) use idempotence::ProducerIdentity;
pub(crate) use routing::{PartitionCount, Unrouted};

/// What [`Accumulator::append`] did, so the caller knows whether to wake the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Appended {
    /// A new open batch started (the sender needs its linger deadline).
    pub(crate) opened: bool,
    /// A batch was sealed and can be sent.
    pub(crate) sealed: bool,
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
            idempotence: idempotent_in_flight_max.map(Idempotence::new),
        }
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
    /// forget). The record goes to the partition [`TopicQueues::route`] chooses, and
    /// carries its own timestamp or one from the clock at `now`. The topic is looked up
    /// once, for its partition count and its queues. Allocates nothing but the batch's
    /// own growth once the partition has a queue.
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
        let partition = topic.route(record, partition_count)?;
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

    pub(super) fn record(value: &str) -> ProducerRecord {
        ProducerRecord::new("t", value.to_owned())
    }

    /// Appends `record` to `partition` of topic "t", of 8 partitions, with a future.
    pub(super) fn append_to(
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

    pub(super) fn values(batch: &mut ProducerBatch) -> Vec<String> {
        let bytes = batch.bytes();
        let view = Batches::new(&bytes).next().unwrap().unwrap();
        batch::verify_crc(view.bytes).unwrap();
        view.records()
            .map(|record| String::from_utf8(record.unwrap().value.unwrap().to_vec()).unwrap())
            .collect()
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
}
