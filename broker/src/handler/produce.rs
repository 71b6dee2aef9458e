//! Produce: validate and append each partition's batches, then acknowledge per `acks`.
//!
//! A partition's batches are all validated before any is appended, so a bad batch (one
//! stamped more than `message_timestamp_after_ms_max` ahead of the broker's clock, or
//! one with a producer id or epoch the broker never gave out, included) appends nothing
//! for that partition. `acks = all` is refused, with nothing appended, while fewer
//! replicas are in sync than `min_insync_replicas` (KIP-966); otherwise the reply waits
//! (on a notification, never a sleep) until every in-sync replica covers the appended
//! offsets under the topic's durability policy, or the request's timeout passes.
//!
//! A request over `request_topics_max` or `request_partitions_max`, or naming a topic or
//! a partition twice, appends nothing (see `super::limits`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use strata_protocol::messages::{
    Acks, ProducePartition, ProducePartitionResponse, ProduceRequest, ProduceResponse,
    ProduceTopicResponse,
};
use strata_protocol::{ErrorCode, shown};

use super::{Reply, Started, limits};
use crate::broker::Broker;
use crate::partition::{AppendResult, Partition, PartitionError, now_ms};

fn failure(partition: u32, error: &PartitionError) -> ProducePartitionResponse {
    ProducePartitionResponse {
        partition,
        error_code: error.code(),
        error_message: Some(error.to_string()),
        base_offset: 0,
        log_append_time: -1,
        log_start_offset: 0,
    }
}

fn append(
    broker: &Broker,
    name: &str,
    request: &ProducePartition,
    (latest_timestamp_ms, acks): (i64, Acks),
) -> Result<(Arc<Partition>, AppendResult), PartitionError> {
    let partition = broker
        .cluster
        .route(&broker.topics, name, request.partition)?;
    if acks == Acks::All {
        partition.check_acks_all()?;
    }
    let appended = partition.append_from_client(
        &request.records.to_bytes(),
        latest_timestamp_ms,
        &broker.producer_ids,
    )?;
    if let Some(topic) = broker.topics.get(name) {
        topic.traffic.record_produce(
            request.records.len(),
            appended.record_count,
            appended.duplicate_batches,
        );
    }
    Ok((partition, appended))
}

/// Appends every partition's batches now; with `acks = all`, returns the wait for
/// durability as the part that runs later.
pub fn handle(broker: &Arc<Broker>, request: &ProduceRequest) -> Started {
    if let Err(refusal) = limits::check_topic_partitions(&broker.config, &request.topics) {
        // An `acks = none` client reads no response, so it gets none, refusal or not.
        if request.acks == Acks::None {
            tracing::debug!(?refusal, "acks = none produce refused");
            return Started::Ready(Reply::Nothing);
        }
        return refusal.into();
    }
    let timeout = Duration::from_millis(
        u64::from(request.timeout_ms).min(broker.config.produce_timeout_ms_max),
    );
    let deadline = Instant::now() + timeout;
    let timestamp_after_ms_max =
        i64::try_from(broker.config.message_timestamp_after_ms_max).unwrap_or(i64::MAX);
    let latest_timestamp_ms = now_ms().saturating_add(timestamp_after_ms_max);
    let mut waits = Vec::new();
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for partition_request in &topic.partitions {
            let limits = (latest_timestamp_ms, request.acks);
            let response = match append(broker, &topic.name, partition_request, limits) {
                Ok((partition, appended)) => {
                    if request.acks == Acks::All {
                        waits.push((
                            topics.len(),
                            partitions.len(),
                            partition.clone(),
                            (appended.next_offset, appended.leader_epoch),
                        ));
                    }
                    ProducePartitionResponse {
                        partition: partition_request.partition,
                        error_code: ErrorCode::None,
                        error_message: None,
                        base_offset: appended.base_offset,
                        log_append_time: -1,
                        log_start_offset: partition.log_start_offset(),
                    }
                }
                Err(error) => {
                    tracing::debug!(topic = %shown(&topic.name), partition = partition_request.partition, %error, "produce failed");
                    failure(partition_request.partition, &error)
                }
            };
            partitions.push(response);
        }
        topics.push(ProduceTopicResponse {
            name: topic.name.clone(),
            partitions,
        });
    }
    match request.acks {
        Acks::None => Started::Ready(Reply::Nothing),
        Acks::Leader => ProduceResponse { topics }.into(),
        Acks::All => Started::Waiting(Box::pin(wait_committed(topics, waits, deadline))),
    }
}

type Wait = (usize, usize, Arc<Partition>, (u64, Option<u32>));

async fn wait_committed(
    mut topics: Vec<ProduceTopicResponse>,
    waits: Vec<Wait>,
    deadline: Instant,
) -> Reply {
    let outcomes = join_all(waits.iter().map(|(_, _, partition, (offset, epoch))| {
        partition.wait_committed(*offset, *epoch, deadline)
    }))
    .await;
    for ((topic, index, _, _), outcome) in waits.iter().zip(outcomes) {
        if let Err(error) = outcome {
            let response = &mut topics[*topic].partitions[*index];
            *response = failure(response.partition, &error);
        }
    }
    ProduceResponse { topics }.into()
}
