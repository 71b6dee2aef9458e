//! ReplicaFetch: a follower pulls batches from the partitions this broker leads. Served
//! only on the cluster listener.
//!
//! Each partition's fetch is checked and recorded by the partition
//! (`Partition::serve_replica`): the follower's epoch, where its log diverges, and its
//! progress, which moves the high watermark and so answers `acks = all` producers. The
//! batches go out as stored, by `sendfile` when large, as for Fetch.
//!
//! With nothing to send, the fetch parks on the partitions' log-end channels until one
//! of them is appended to, `max_wait_ms` passes (at most `fetch_wait_ms_max`), or the
//! broker stops: replication adds the time to wake a task, not a poll interval.
//!
//! A replica that a reassignment is adding gets its catch-up copy through the broker's
//! reassignment throttle (`replication::throttle`): fewer bytes, none while the bucket
//! is empty, and a parked fetch wakes when the bucket has bytes again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::select_all;
use strata_protocol::messages::{
    NO_EPOCH, ReplicaFetchPartitionResponse, ReplicaFetchRequest, ReplicaFetchResponse,
    ReplicaFetchTopicResponse,
};
use strata_protocol::{ErrorCode, Response};
use strata_storage::FileRange;
use tokio::sync::watch;

use super::Reply;
use crate::broker::Broker;
use crate::group::store::OFFSETS_LOG;
use crate::partition::{Partition, PartitionError, ReplicaUpdate};

/// One pass over the request's partitions.
struct Pass {
    response: ReplicaFetchResponse,
    files: Vec<FileRange>,
    /// Something to send at once: records, a divergence or an error.
    answered: bool,
    /// The throttle held back records of a partition.
    withheld: bool,
}

/// The local copy of `topic`'s partition `index`, if it is the metadata's topic `id`.
/// The offsets log's partitions are the group coordinator's.
fn local(broker: &Broker, topic: &str, id: u64, index: u32) -> Option<Arc<Partition>> {
    let image = broker.cluster.image();
    if topic == OFFSETS_LOG {
        return image
            .topics
            .get(OFFSETS_LOG)
            .filter(|record| record.id == id)
            .and_then(|_| broker.groups.partitions().get(index as usize).cloned());
    }
    let log_id = image.log_id.clone();
    broker
        .topics
        .get(topic)
        .filter(|local| local.is_copy_of(&log_id, id))
        .and_then(|local| local.partitions.get(index as usize)?.clone())
}

fn read_all(broker: &Broker, request: &ReplicaFetchRequest) -> Pass {
    let mut pass = Pass {
        response: ReplicaFetchResponse {
            topics: Vec::with_capacity(request.topics.len()),
        },
        files: Vec::new(),
        answered: false,
        withheld: false,
    };
    let image = broker.cluster.image();
    let throttle = &broker.replication.throttle;
    let now = Instant::now();
    let mut budget = (request.max_bytes as usize).min(broker.config.fetch_response_bytes_max);
    for topic in &request.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for wanted in &topic.partitions {
            let mut response = ReplicaFetchPartitionResponse {
                partition: wanted.partition,
                error_code: ErrorCode::None,
                leader_epoch: 0,
                high_watermark: 0,
                log_start_offset: 0,
                log_end_offset: 0,
                diverging_epoch: NO_EPOCH,
                diverging_end_offset: 0,
                records: Bytes::new(),
            };
            let throttled = throttle.is_limited()
                && image
                    .partition(&topic.name, wanted.partition)
                    .is_some_and(|placed| placed.adding.contains(&request.replica_id));
            let served = local(broker, &topic.name, topic.topic_id, wanted.partition)
                .ok_or_else(|| PartitionError::UnknownPartition {
                    topic: topic.name.clone(),
                    partition: wanted.partition,
                })
                .and_then(|partition| {
                    let update = ReplicaUpdate {
                        replica: request.replica_id,
                        incarnation: request.replica_incarnation,
                        current_leader_epoch: wanted.current_leader_epoch,
                        fetch_offset: wanted.fetch_offset,
                        last_fetched_epoch: (wanted.last_fetched_epoch != NO_EPOCH)
                            .then_some(wanted.last_fetched_epoch),
                        durable_offset: wanted.durable_offset,
                    };
                    // Past the budget a partition still gets its first batch: the bytes
                    // are mapped, not copied, and a follower must never stall. A
                    // throttled one gets what the throttle allows (nothing: 0).
                    let max = (wanted.partition_max_bytes as usize).min(budget).max(1);
                    let max = if throttled {
                        max.min(throttle.allowance(now))
                    } else {
                        max
                    };
                    let read = partition.serve_replica(update, max)?;
                    if throttled {
                        throttle.spend(read.read.bytes.len(), now);
                        pass.withheld |=
                            read.read.bytes.is_empty() && wanted.fetch_offset < read.log_end_offset;
                    }
                    if read.may_join {
                        broker.replication.isr_may_change();
                    }
                    Ok(read)
                });
            match served {
                Ok(read) => {
                    response.leader_epoch = read.leader_epoch;
                    response.high_watermark = read.high_watermark;
                    response.log_start_offset = read.log_start_offset;
                    response.log_end_offset = read.log_end_offset;
                    if let Some(diverging) = read.diverging {
                        // No epoch at or below the follower's: its whole log may differ,
                        // and epoch 0 ending at 0 truncates all of it.
                        response.diverging_epoch = diverging.epoch.unwrap_or(0);
                        response.diverging_end_offset = diverging.end_offset;
                        pass.answered = true;
                    }
                    budget = budget.saturating_sub(read.read.bytes.len());
                    pass.answered |= !read.read.bytes.is_empty();
                    response.records = read.read.bytes;
                    pass.files.extend(read.read.file);
                }
                Err(error) => {
                    if let PartitionError::Storage(storage) = &error {
                        response.log_start_offset = storage_offsets(storage).0;
                        response.log_end_offset = storage_offsets(storage).1;
                    }
                    response.error_code = error.code();
                    pass.answered = true;
                }
            }
            partitions.push(response);
        }
        pass.response.topics.push(ReplicaFetchTopicResponse {
            name: topic.name.clone(),
            partitions,
        });
    }
    pass
}

/// The leader's log start and end offsets an out-of-range error carries.
fn storage_offsets(error: &strata_storage::StorageError) -> (u64, u64) {
    match error {
        strata_storage::StorageError::OffsetOutOfRange {
            log_start_offset,
            log_end_offset,
            ..
        } => (*log_start_offset, *log_end_offset),
        _ => (0, 0),
    }
}

fn subscribe(broker: &Broker, request: &ReplicaFetchRequest) -> Vec<watch::Receiver<u64>> {
    request
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().filter_map(|wanted| {
                local(broker, &topic.name, topic.topic_id, wanted.partition)
                    .map(|partition| partition.subscribe_log_end())
            })
        })
        .collect()
}

impl Pass {
    fn into_reply(self) -> Reply {
        Reply::Records(Response::ReplicaFetch(self.response), self.files)
    }
}

/// Answers a replica fetch.
pub async fn handle(broker: &Broker, request: ReplicaFetchRequest) -> Reply {
    let current = broker
        .cluster
        .image()
        .brokers
        .get(&request.replica_id)
        .map(|registered| registered.incarnation);
    if current != Some(request.replica_incarnation) {
        return Reply::Error(
            ErrorCode::IneligibleReplica,
            format!(
                "broker {} incarnation {} is not the one this broker's metadata has ({current:?})",
                request.replica_id, request.replica_incarnation
            ),
        );
    }
    let max_wait =
        Duration::from_millis(u64::from(request.max_wait_ms).min(broker.config.fetch_wait_ms_max));
    let deadline = tokio::time::Instant::now() + max_wait;
    loop {
        let mut changes = subscribe(broker, &request);
        let pass = read_all(broker, &request);
        if pass.answered || changes.is_empty() || tokio::time::Instant::now() >= deadline {
            return pass.into_reply();
        }
        // Subscribed before the read, so an append from here on wakes it; records the
        // throttle held back, once it has bytes again.
        let wake = if pass.withheld {
            let refill = broker.replication.throttle.refill_in(Instant::now());
            deadline.min(tokio::time::Instant::now() + refill)
        } else {
            deadline
        };
        let changed = select_all(changes.iter_mut().map(|watch| Box::pin(watch.changed())));
        let woken = tokio::select! {
            _ = changed => true,
            () = tokio::time::sleep_until(wake) => wake < deadline,
            () = broker.shutdown.cancelled() => false,
        };
        if !woken {
            return read_all(broker, &request).into_reply();
        }
    }
}
