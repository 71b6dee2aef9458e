//! The producer's record accumulator: per-partition batching, with no I/O.
//!
//! Each partition has at most one *open* batch collecting records, a queue of *sealed*
//! batches waiting to be sent, and an `in_flight` flag. A batch is sealed when the next
//! record would push it past `batch_bytes_max`, when it has waited `linger`, or on
//! flush. [`Accumulator::drain`] hands out the sealed batches of partitions that have no
//! request in flight, which is what keeps per-partition order under retries: a failed
//! request's batches go back to the *front* of the queue ([`Accumulator::requeue`]) and
//! nothing later can overtake them, because nothing else of that partition is sent
//! until they are resolved.
//!
//! Records are counted per partition as appended and as completed (acknowledged or
//! failed for good). Completion within a partition is in append order, so
//! `completed >= n` means "the first n records are done": that is how `flush` waits.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use strata_protocol::batch::{BatchBuilder, Header as WireHeader};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::error::Result;
use crate::record::{ProducerRecord, RecordMetadata, TopicPartition};

/// Where one record's outcome goes. `reply` is `None` for fire-and-forget sends.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub(crate) reply: Option<oneshot::Sender<Result<RecordMetadata>>>,
    pub(crate) timestamp: i64,
}

/// A sealed batch: encoded bytes plus who to tell about each record.
#[derive(Debug)]
pub(crate) struct ProducerBatch {
    pub(crate) bytes: Bytes,
    pub(crate) deliveries: Vec<Delivery>,
    /// Buffer memory to release once the batch is resolved.
    pub(crate) reserved_bytes: usize,
    /// Failed attempts so far.
    pub(crate) attempts: u32,
}

#[derive(Debug)]
struct OpenBatch {
    builder: BatchBuilder,
    created: Instant,
    deliveries: Vec<Delivery>,
    reserved_bytes: usize,
}

impl OpenBatch {
    fn seal(self) -> ProducerBatch {
        ProducerBatch {
            bytes: self.builder.finish(),
            deliveries: self.deliveries,
            reserved_bytes: self.reserved_bytes,
            attempts: 0,
        }
    }
}

#[derive(Debug, Default)]
struct PartitionQueue {
    open: Option<OpenBatch>,
    sealed: VecDeque<ProducerBatch>,
    in_flight: bool,
    retry_at: Option<Instant>,
    appended: u64,
    completed: u64,
}

impl PartitionQueue {
    fn is_idle(&self) -> bool {
        self.open.is_none() && self.sealed.is_empty() && !self.in_flight
    }
}

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
    /// without building a key.
    partitions: BTreeMap<String, BTreeMap<u32, PartitionQueue>>,
    /// Per topic: the sticky partition for keyless records and the count it was chosen
    /// from.
    sticky: HashMap<String, (u32, u32)>,
    clock: WallClock,
}

/// Record timestamps from one clock read per record: the wall clock is read at most every
/// [`WallClock::RESYNC`] and advanced by the monotonic clock in between, so a step of the
/// wall clock shows within that time.
#[derive(Debug)]
struct WallClock {
    anchor: Instant,
    anchor_ms: i64,
}

impl WallClock {
    const RESYNC: Duration = Duration::from_secs(1);

    fn new(now: Instant) -> Self {
        Self {
            anchor: now,
            anchor_ms: unix_ms(),
        }
    }

    fn now_ms(&mut self, now: Instant) -> i64 {
        let elapsed = now.saturating_duration_since(self.anchor);
        if elapsed >= Self::RESYNC {
            *self = Self::new(now);
            return self.anchor_ms;
        }
        // Below RESYNC, so the milliseconds fit.
        self.anchor_ms + elapsed.as_millis() as i64
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
    pub(crate) fn new(
        batch_bytes_max: usize,
        request_partition_bytes_max: usize,
        linger: Duration,
    ) -> Self {
        Self {
            batch_bytes_max,
            request_partition_bytes_max,
            linger,
            partitions: BTreeMap::new(),
            sticky: HashMap::new(),
            clock: WallClock::new(Instant::now()),
        }
    }

    /// The wall-clock time in milliseconds since the Unix epoch, for a record stamped at
    /// `now`.
    pub(crate) fn timestamp_ms(&mut self, now: Instant) -> i64 {
        self.clock.now_ms(now)
    }

    /// The sticky partition for a keyless record of `topic`.
    pub(crate) fn sticky_partition(&mut self, topic: &str, partition_count: u32) -> u32 {
        assert!(partition_count > 0);
        if !self.sticky.contains_key(topic) {
            self.sticky.insert(topic.to_owned(), (0, partition_count));
        }
        let entry = self.sticky.get_mut(topic).expect("inserted above");
        if entry.1 != partition_count || entry.0 >= partition_count {
            *entry = (entry.0 % partition_count, partition_count);
        }
        entry.0
    }

    /// Moves the sticky partition on when its batch is sealed.
    fn on_sealed(&mut self, topic: &str, sealed: u32) {
        if let Some((partition, count)) = self.sticky.get_mut(topic)
            && *partition == sealed
        {
            *partition = (*partition + 1) % *count;
        }
    }

    fn queue(&self, tp: &TopicPartition) -> Option<&PartitionQueue> {
        self.partitions.get(&tp.topic)?.get(&tp.partition)
    }

    fn queue_mut(&mut self, tp: &TopicPartition) -> Option<&mut PartitionQueue> {
        self.partitions.get_mut(&tp.topic)?.get_mut(&tp.partition)
    }

    fn queues(&self) -> impl Iterator<Item = (TopicPartition, &PartitionQueue)> {
        self.partitions.iter().flat_map(|(topic, queues)| {
            queues
                .iter()
                .map(|(partition, queue)| (TopicPartition::new(topic.clone(), *partition), queue))
        })
    }

    fn queues_mut(&mut self) -> impl Iterator<Item = (TopicPartition, &mut PartitionQueue)> {
        self.partitions.iter_mut().flat_map(|(topic, queues)| {
            queues
                .iter_mut()
                .map(|(partition, queue)| (TopicPartition::new(topic.clone(), *partition), queue))
        })
    }

    /// Appends a record of `record.topic` whose memory (`reserved_bytes`) is already
    /// reserved. Allocates nothing but the batch's own growth once the partition has a
    /// queue.
    pub(crate) fn append(
        &mut self,
        partition: u32,
        record: &ProducerRecord,
        timestamp: i64,
        delivery: Delivery,
        reserved_bytes: usize,
        now: Instant,
    ) -> Appended {
        let headers: Vec<WireHeader<'_>> = record
            .headers
            .iter()
            .map(|header| WireHeader {
                key: &header.key,
                value: header.value.as_deref(),
            })
            .collect();
        let (key, value) = (record.key.as_deref(), record.value.as_deref());
        let batch_bytes_max = self.batch_bytes_max;
        if !self.partitions.contains_key(&record.topic) {
            self.partitions
                .insert(record.topic.clone(), BTreeMap::new());
        }
        let queue = self
            .partitions
            .get_mut(&record.topic)
            .expect("inserted above")
            .entry(partition)
            .or_default();
        let mut appended = Appended {
            opened: false,
            sealed: false,
        };
        if let Some(open) = &queue.open {
            let record_len = open.builder.record_len(timestamp, key, value, &headers);
            if open.builder.len() + record_len > batch_bytes_max {
                let full = queue.open.take().expect("checked above");
                queue.sealed.push_back(full.seal());
                appended.sealed = true;
            }
        }
        let open = queue.open.get_or_insert_with(|| {
            appended.opened = true;
            OpenBatch {
                builder: BatchBuilder::with_capacity(batch_bytes_max.min(64 << 10)),
                created: now,
                deliveries: Vec::new(),
                reserved_bytes: 0,
            }
        });
        open.builder.push(timestamp, key, value, &headers);
        open.deliveries.push(delivery);
        open.reserved_bytes += reserved_bytes;
        queue.appended += 1;
        if open.builder.len() >= batch_bytes_max {
            let full = queue.open.take().expect("just filled");
            queue.sealed.push_back(full.seal());
            appended.sealed = true;
        }
        if appended.sealed {
            self.on_sealed(&record.topic, partition);
        }
        appended
    }

    /// Seals every open batch (flush and close: linger no longer applies to them).
    pub(crate) fn seal_all(&mut self) {
        let mut sealed = Vec::new();
        for (tp, queue) in self.queues_mut() {
            if let Some(open) = queue.open.take() {
                queue.sealed.push_back(open.seal());
                sealed.push(tp);
            }
        }
        for tp in &sealed {
            self.on_sealed(&tp.topic, tp.partition);
        }
    }

    /// Takes the batches ready to send: for each partition with no request in flight and
    /// no retry backoff pending, its sealed batches up to `request_partition_bytes_max`
    /// (at least one), after sealing an open batch whose linger expired. Marks those
    /// partitions in flight.
    pub(crate) fn drain(&mut self, now: Instant) -> Vec<(TopicPartition, Vec<ProducerBatch>)> {
        let mut ready = Vec::new();
        let mut lingered = Vec::new();
        let (linger, request_partition_bytes_max) = (self.linger, self.request_partition_bytes_max);
        for (tp, queue) in self.queues_mut() {
            if queue.in_flight || queue.retry_at.is_some_and(|at| at > now) {
                continue;
            }
            queue.retry_at = None;
            if queue
                .open
                .as_ref()
                .is_some_and(|open| now >= open.created + linger)
            {
                let open = queue.open.take().expect("checked above");
                queue.sealed.push_back(open.seal());
                lingered.push(tp.clone());
            }
            let mut batches = Vec::new();
            let mut bytes = 0;
            while let Some(batch) = queue.sealed.front() {
                if !batches.is_empty() && bytes + batch.bytes.len() > request_partition_bytes_max {
                    break;
                }
                bytes += batch.bytes.len();
                batches.push(queue.sealed.pop_front().expect("front exists"));
            }
            if !batches.is_empty() {
                queue.in_flight = true;
                ready.push((tp, batches));
            }
        }
        for tp in &lingered {
            self.on_sealed(&tp.topic, tp.partition);
        }
        ready
    }

    /// When [`drain`](Self::drain) will next have something to do, if ever without new
    /// records: the earliest linger expiry or retry time of a partition not in flight.
    pub(crate) fn next_deadline(&self, now: Instant) -> Option<Instant> {
        self.partitions
            .values()
            .flat_map(BTreeMap::values)
            .filter(|queue| !queue.in_flight)
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

    /// A request for `tp` finished: `records` more records are resolved.
    pub(crate) fn complete(&mut self, tp: &TopicPartition, records: u64) {
        let queue = self.queue_mut(tp).expect("completed partition exists");
        assert!(queue.in_flight, "completing {tp} with nothing in flight");
        queue.in_flight = false;
        queue.completed += records;
        assert!(
            queue.completed <= queue.appended,
            "completed more than appended"
        );
    }

    /// A request for `tp` failed retriably: its batches go back to the front, in order,
    /// and the partition waits until `retry_at`.
    pub(crate) fn requeue(
        &mut self,
        tp: &TopicPartition,
        batches: Vec<ProducerBatch>,
        retry_at: Instant,
    ) {
        let queue = self.queue_mut(tp).expect("requeued partition exists");
        assert!(queue.in_flight, "requeueing {tp} with nothing in flight");
        queue.in_flight = false;
        queue.retry_at = Some(retry_at);
        for batch in batches.into_iter().rev() {
            queue.sealed.push_front(batch);
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
        self.queue(tp).is_none_or(|queue| queue.completed >= target)
    }

    /// Whether nothing is buffered or in flight.
    pub(crate) fn is_idle(&self) -> bool {
        self.partitions
            .values()
            .flat_map(BTreeMap::values)
            .all(PartitionQueue::is_idle)
    }
}

#[cfg(test)]
mod tests {
    use strata_protocol::batch::{self, Batches};

    use super::*;

    fn delivery() -> (Delivery, oneshot::Receiver<Result<RecordMetadata>>) {
        let (reply, receiver) = oneshot::channel();
        (
            Delivery {
                reply: Some(reply),
                timestamp: 0,
            },
            receiver,
        )
    }

    fn record(value: &str) -> ProducerRecord {
        ProducerRecord::new("t", value.to_owned())
    }

    fn values(batch: &ProducerBatch) -> Vec<String> {
        let view = Batches::new(&batch.bytes).next().unwrap().unwrap();
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
        let mut accumulator = Accumulator::new(200, 1 << 20, Duration::from_secs(60));
        let tp = TopicPartition::new("t", 0);
        let mut sealed_count = 0;
        for index in 0..20 {
            let (delivery, _) = delivery();
            let appended = accumulator.append(
                tp.partition,
                &record(&format!("value-{index:02}")),
                0,
                delivery,
                10,
                now,
            );
            sealed_count += usize::from(appended.sealed);
        }
        assert!(
            sealed_count >= 2,
            "200-byte batches must seal: {sealed_count}"
        );
        // Linger has not expired: only sealed batches go, all in one request.
        let ready = accumulator.drain(now);
        assert_eq!(ready.len(), 1);
        let batches = &ready[0].1;
        assert_eq!(batches.len(), sealed_count);
        assert!(batches.iter().all(|batch| batch.bytes.len() <= 200));
        let mut all: Vec<String> = batches.iter().flat_map(values).collect();
        // The rest is still open; flush seals it.
        accumulator.complete(&tp, all.len() as u64);
        accumulator.seal_all();
        let rest = accumulator.drain(now);
        all.extend(rest[0].1.iter().flat_map(values));
        let expected: Vec<String> = (0..20).map(|index| format!("value-{index:02}")).collect();
        assert_eq!(all, expected);
    }

    #[test]
    fn open_batch_waits_for_linger_then_drains() {
        let start = Instant::now();
        let linger = Duration::from_millis(10);
        let mut accumulator = Accumulator::new(1 << 20, 1 << 20, linger);
        let tp = TopicPartition::new("t", 0);
        let (delivery, _) = delivery();
        let appended = accumulator.append(tp.partition, &record("a"), 0, delivery, 10, start);
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
        accumulator.complete(&tp, 1);
        assert!(accumulator.is_idle());
    }

    #[test]
    fn one_request_in_flight_per_partition_and_retries_go_first() {
        let now = Instant::now();
        let mut accumulator = Accumulator::new(1 << 20, 1 << 20, Duration::ZERO);
        let tp = TopicPartition::new("t", 0);
        let (first, _) = delivery();
        accumulator.append(tp.partition, &record("first"), 0, first, 10, now);
        let in_flight = accumulator.drain(now).pop().unwrap().1;
        let (second, _) = delivery();
        accumulator.append(tp.partition, &record("second"), 0, second, 10, now);
        assert!(
            accumulator.drain(now).is_empty(),
            "a second request would overtake"
        );
        let retry_at = now + Duration::from_millis(50);
        accumulator.requeue(&tp, in_flight, retry_at);
        assert!(accumulator.drain(now).is_empty(), "backoff respected");
        assert_eq!(accumulator.next_deadline(now), Some(retry_at));
        let ready = accumulator.drain(retry_at).pop().unwrap().1;
        let order: Vec<String> = ready.iter().flat_map(values).collect();
        assert_eq!(order, ["first", "second"]);
        assert!(!accumulator.is_completed(&tp, 2));
        accumulator.complete(&tp, 2);
        assert!(accumulator.is_completed(&tp, 2));
    }

    #[test]
    fn sticky_partition_moves_on_when_its_batch_seals() {
        let now = Instant::now();
        let mut accumulator = Accumulator::new(150, 1 << 20, Duration::from_secs(60));
        let mut partitions = Vec::new();
        for _ in 0..12 {
            let partition = accumulator.sticky_partition("t", 3);
            partitions.push(partition);
            let (delivery, _) = delivery();
            accumulator.append(
                partition,
                &record("0123456789012345678901234567890123456789"),
                0,
                delivery,
                10,
                now,
            );
        }
        // Several records in a row share a partition, and all partitions get used.
        assert!(partitions.windows(2).any(|pair| pair[0] == pair[1]));
        for partition in 0..3 {
            assert!(partitions.contains(&partition), "{partitions:?}");
        }
    }
}
