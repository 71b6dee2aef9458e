//! Fetch: long-poll reads up to the high watermark.
//!
//! The handler subscribes to every requested partition's high watermark before reading,
//! so an append between the read and the wait still wakes it. It answers as soon as
//! `min_bytes` are available, a partition reports an error, or `max_wait_ms` passes.
//! Records are `Bytes` slices of the log's mmap, and the reply carries their segment file
//! ranges too, so large ones reach the socket by `sendfile` (see `crate::send`).
//!
//! A version 1 fetch names leader epochs (KIP-320): the partition checks them
//! (`Partition::check_consumer_epochs`) before it reads, and a consumer whose records
//! diverge from the leader's log is told where instead of given records. Every answer
//! names the leader's epoch.
//!
//! A parked fetch holds a watch and a response entry per partition for up to
//! `fetch_wait_ms_max`, so what it may watch is bounded: a fetch that may wait
//! (`max_wait_ms` above 0) naming more than `fetch_wait_partitions_max` partitions is
//! refused `LimitExceeded`, and one that would take its connection's parked fetches past
//! `connection_fetch_wait_partitions_max` partitions, or the broker's past
//! `fetch_wait_partitions_total_max`, is answered at once with what there is, as if its
//! `max_wait_ms` were 0. A topic that names no partition counts as one.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::select_all;
use strata_protocol::messages::{
    FetchPartition, FetchPartitionResponse, FetchRequest, FetchResponse, FetchTopicResponse,
    NO_EPOCH,
};
use strata_protocol::{ErrorCode, Response};
use strata_storage::FileRange;
use tokio::sync::watch;

use super::{Reply, limits};
use crate::broker::Broker;
use crate::metrics;
use crate::partition::{Partition, PartitionError};

struct Pass {
    response: FetchResponse,
    /// Where the response's record bytes lie in segment files.
    files: Vec<FileRange>,
    bytes: usize,
    /// A partition reports an error or a divergence: waiting would not change it.
    answer_now: bool,
}

impl Pass {
    fn into_reply(self, broker: &Broker) -> Reply {
        record_fetch_metrics(broker, &self.response);
        Reply::Records(Response::Fetch(self.response), self.files)
    }
}

fn read_all(broker: &Broker, request: &FetchRequest, max_bytes: usize) -> Pass {
    let mut pass = Pass {
        response: FetchResponse {
            topics: Vec::with_capacity(request.topics.len()),
        },
        files: Vec::new(),
        bytes: 0,
        answer_now: false,
    };
    for topic in &request.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for wanted in &topic.partitions {
            let mut response = FetchPartitionResponse {
                partition: wanted.partition,
                error_code: ErrorCode::None,
                leader_epoch: NO_EPOCH,
                high_watermark: 0,
                log_start_offset: 0,
                diverging_epoch: NO_EPOCH,
                diverging_end_offset: 0,
                records: Bytes::new(),
            };
            match broker
                .cluster
                .route(&broker.topics, &topic.name, wanted.partition)
            {
                Err(error) => response.error_code = error.code(),
                Ok(partition) => {
                    let budget = (wanted.partition_max_bytes as usize)
                        .min(max_bytes.saturating_sub(pass.bytes));
                    // Once something is in the response, a partition gets data only within the
                    // budget; the first batch of a response may exceed it so nobody stalls.
                    let budget = (budget > 0 || pass.bytes == 0).then_some(budget);
                    match read_partition(&partition, wanted, budget, &mut response) {
                        Ok(file) => pass.files.extend(file),
                        Err(error) => response.error_code = error.code(),
                    }
                    // Read after the records, so the records never end past it (an append
                    // may move it between the two reads).
                    response.high_watermark = partition.high_watermark();
                    response.log_start_offset = partition.log_start_offset();
                }
            }
            pass.answer_now |= !response.error_code.is_ok() || response.diverging_epoch != NO_EPOCH;
            pass.bytes += response.records.len();
            partitions.push(response);
        }
        pass.response.topics.push(FetchTopicResponse {
            name: topic.name.clone(),
            partitions,
        });
    }
    pass
}

/// Fills `response` for one partition: its leader epoch, then, unless the request's
/// epochs are refused or the consumer's records diverge from the log, up to `budget`
/// bytes of records (none if `None`). Returns the segment file range of the records.
fn read_partition(
    partition: &Partition,
    wanted: &FetchPartition,
    budget: Option<usize>,
    response: &mut FetchPartitionResponse,
) -> Result<Option<FileRange>, PartitionError> {
    response.leader_epoch = partition.leader_epoch();
    let epochs = partition.check_consumer_epochs(
        given(wanted.current_leader_epoch),
        given(wanted.last_fetched_epoch),
        wanted.fetch_offset,
    )?;
    response.leader_epoch = epochs.leader_epoch;
    if let Some(diverging) = epochs.diverging {
        // No epoch at or below the consumer's: 0, as a replica fetch says it.
        response.diverging_epoch = diverging.epoch.unwrap_or(0);
        response.diverging_end_offset = diverging.end_offset;
        return Ok(None);
    }
    let Some(budget) = budget else {
        return Ok(None);
    };
    let read = partition.read(wanted.fetch_offset, budget)?;
    response.records = read.bytes;
    Ok(read.file)
}

/// An epoch field's value, `None` for [`NO_EPOCH`].
fn given(epoch: u32) -> Option<u32> {
    (epoch != NO_EPOCH).then_some(epoch)
}

fn subscribe(broker: &Broker, request: &FetchRequest) -> Vec<watch::Receiver<u64>> {
    request
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().filter_map(|wanted| {
                broker
                    .cluster
                    .route(&broker.topics, &topic.name, wanted.partition)
                    .ok()
            })
        })
        .map(|partition| partition.subscribe())
        .collect()
}

/// An allowance of partitions that parked fetches may watch: the broker's
/// (`fetch_wait_partitions_total_max`), or one connection's
/// (`connection_fetch_wait_partitions_max`) within the broker's. Shared with the fetch
/// tasks that draw on it. Thread-safe.
#[derive(Debug)]
pub struct FetchWatches {
    free: AtomicUsize,
    /// The allowance this one is part of, which a take draws on too.
    within: Option<Arc<FetchWatches>>,
}

impl FetchWatches {
    /// The broker's allowance of `partitions_max` watched partitions.
    pub fn new(partitions_max: usize) -> Arc<Self> {
        Arc::new(Self {
            free: AtomicUsize::new(partitions_max),
            within: None,
        })
    }

    /// A connection's allowance of `partitions_max`, drawn from `broker`'s as well.
    pub fn within(partitions_max: usize, broker: &Arc<Self>) -> Arc<Self> {
        Arc::new(Self {
            free: AtomicUsize::new(partitions_max),
            within: Some(Arc::clone(broker)),
        })
    }

    /// Takes `partitions` from this allowance and the one it is within until the
    /// returned guard drops, if both have that many free.
    fn take(self: &Arc<Self>, partitions: usize) -> Option<Watching> {
        let within = match &self.within {
            Some(outer) => Some(Box::new(outer.take(partitions)?)),
            None => None,
        };
        // If this allowance is short, `within` drops here and gives the outer one back.
        self.free
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |free| {
                free.checked_sub(partitions)
            })
            .ok()?;
        Some(Watching {
            watches: Arc::clone(self),
            partitions,
            _within: within,
        })
    }
}

/// Partitions taken from a [`FetchWatches`] (and the one it is within) by one parked
/// fetch, given back when dropped.
struct Watching {
    watches: Arc<FetchWatches>,
    partitions: usize,
    /// The same partitions taken from the outer allowance.
    _within: Option<Box<Watching>>,
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.watches
            .free
            .fetch_add(self.partitions, Ordering::AcqRel);
    }
}

/// The partitions a fetch names, a topic naming none counted as one: what it holds while
/// parked.
fn watched_partitions(request: &FetchRequest) -> usize {
    request
        .topics
        .iter()
        .map(|topic| topic.partitions.len().max(1))
        .sum()
}

/// Answers a fetch; `watches` is its connection's allowance for parked fetches (within
/// the broker's).
pub async fn handle(broker: &Broker, request: FetchRequest, watches: Arc<FetchWatches>) -> Reply {
    if let Err(refusal) = limits::check_topic_partitions(&broker.config, &request.topics) {
        return refusal;
    }
    let watched = watched_partitions(&request);
    let watched_max = broker.config.fetch_wait_partitions_max;
    if request.max_wait_ms > 0 && watched > watched_max {
        return Reply::Error(
            ErrorCode::LimitExceeded,
            format!(
                "a fetch with max_wait_ms above 0 names {watched} partitions, more than fetch_wait_partitions_max = {watched_max}"
            ),
        );
    }
    let mut watching = None;
    let max_wait =
        Duration::from_millis(u64::from(request.max_wait_ms).min(broker.config.fetch_wait_ms_max));
    let deadline = tokio::time::Instant::from_std(Instant::now() + max_wait);
    let max_bytes = (request.max_bytes as usize).min(broker.config.fetch_response_bytes_max);
    let min_bytes = (request.min_bytes as usize).min(max_bytes);
    loop {
        let mut changes = subscribe(broker, &request);
        let pass = read_all(broker, &request, max_bytes);
        let done = pass.bytes >= min_bytes.max(1)
            || pass.answer_now
            || changes.is_empty()
            || tokio::time::Instant::now() >= deadline;
        if done {
            return pass.into_reply(broker);
        }
        // Past the connection's or the broker's allowance, answer now rather than park.
        if watching.is_none() {
            let Some(taken) = watches.take(watched) else {
                return pass.into_reply(broker);
            };
            watching = Some(taken);
        }
        // Subscribed before the read, so an append from here on wakes it.
        let _waiting = metrics::FetchWaiting::start();
        let changed = select_all(changes.iter_mut().map(|watch| Box::pin(watch.changed())));
        let woken = tokio::select! {
            _ = changed => true,
            () = tokio::time::sleep_until(deadline) => false,
            () = broker.shutdown.cancelled() => false,
        };
        if !woken {
            return read_all(broker, &request, max_bytes).into_reply(broker);
        }
    }
}

fn record_fetch_metrics(broker: &Broker, response: &FetchResponse) {
    for topic in &response.topics {
        let bytes: usize = topic
            .partitions
            .iter()
            .map(|partition| partition.records.len())
            .sum();
        if bytes == 0 {
            continue;
        }
        // A topic deleted since the read has no series left to count in.
        let Some(found) = broker.topics.get(&topic.name) else {
            continue;
        };
        let records = topic
            .partitions
            .iter()
            .map(|partition| count_records(&partition.records))
            .sum();
        found.traffic.record_fetch(bytes, records);
    }
}

fn count_records(records: &[u8]) -> u64 {
    strata_protocol::batch::Batches::new(records)
        .filter_map(Result::ok)
        .map(|batch| u64::from(batch.header.record_count))
        .sum()
}

#[cfg(test)]
mod tests {
    use strata_protocol::messages::FetchTopic;

    use super::*;

    #[test]
    fn parked_fetches_share_their_connection_allowance_until_they_end() {
        let broker = FetchWatches::new(100);
        let watches = FetchWatches::within(10, &broker);
        let first = watches.take(6).expect("6 of 10 free");
        assert!(watches.take(5).is_none());
        let second = watches.take(4).expect("4 of 4 free");
        assert!(watches.take(1).is_none());
        drop(first);
        assert!(watches.take(7).is_none());
        let third = watches.take(6).expect("6 of 6 free");
        drop((second, third));
        assert!(watches.take(10).is_some());
        assert_eq!(broker.free.load(Ordering::Acquire), 100);
    }

    #[test]
    fn connections_share_the_broker_allowance_and_a_refused_take_keeps_nothing() {
        let broker = FetchWatches::new(10);
        let first = FetchWatches::within(8, &broker);
        let second = FetchWatches::within(8, &broker);
        let taken = first.take(6).expect("6 of 8 and of 10 free");
        // The connection has 8 free, the broker only 4.
        assert!(second.take(5).is_none());
        assert_eq!(second.free.load(Ordering::Acquire), 8);
        let rest = second.take(4).expect("4 of 8 and of 4 free");
        drop(taken);
        assert!(second.take(5).is_none(), "the second connection has 4 left");
        assert!(first.take(6).is_some());
        drop(rest);
        assert_eq!(broker.free.load(Ordering::Acquire), 10);
    }

    #[test]
    fn a_topic_naming_no_partition_counts_as_one_watched() {
        let partition = |partition| FetchPartition {
            partition,
            current_leader_epoch: NO_EPOCH,
            fetch_offset: 0,
            last_fetched_epoch: NO_EPOCH,
            partition_max_bytes: 1,
        };
        let topic = |partitions| FetchTopic {
            name: "t".into(),
            partitions,
        };
        let request = FetchRequest {
            max_wait_ms: 1,
            min_bytes: 1,
            max_bytes: 1,
            topics: vec![
                topic(vec![]),
                topic(vec![partition(0), partition(0), partition(1)]),
            ],
        };
        assert_eq!(watched_partitions(&request), 4);
    }
}
