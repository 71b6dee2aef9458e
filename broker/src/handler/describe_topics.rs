//! DescribeTopics: each topic's effective config and each partition's placement, offsets
//! and size on disk.
//!
//! Placement (leader, replicas, in-sync replicas, leader epoch) comes from the cluster
//! metadata; offsets and size from this broker's copy of each partition, and are 0 for a
//! partition this broker does not hold. A topic named more than once is described once.
//! The response is sized from its topics' partitions before they are described, and
//! refused with `LimitExceeded` if it would not fit `frame_bytes_max`.

use std::sync::Arc;

use strata_protocol::ErrorCode;
use strata_protocol::frame::RESPONSE_HEADER_BYTES;
use strata_protocol::messages::{
    DescribeTopicsRequest, DescribeTopicsResponse, DescribedPartition, DescribedTopic,
};
use strata_protocol::wire::encoded_bytes;

use super::{Reply, limits};
use crate::broker::Broker;
use crate::cluster::metadata::{PartitionRecord, TopicRecord};
use crate::group::store::OFFSETS_LOG;
use crate::partition::Partition;
use crate::topics::checks::existing;

/// One requested topic, described but for its partitions.
struct Wanted<'a> {
    /// The entry without its partitions.
    entry: DescribedTopic,
    /// The topic's metadata and this broker's copy of each partition, if it exists.
    topic: Option<(&'a TopicRecord, Vec<Option<Arc<Partition>>>)>,
}

/// A topic's entry with its configs and no partitions yet.
fn found<'a>(broker: &Broker, name: String, record: &'a TopicRecord) -> Wanted<'a> {
    let configs = record.config.entries();
    // A topic stores its effective values, not which were given at create or alter
    // time: its own values are those that differ from the broker's defaults (it keeps
    // them when the defaults change later).
    let defaults = broker.config.topic_defaults.entries();
    let overridden_keys = configs
        .iter()
        .filter(|entry| !defaults.contains(entry))
        .map(|entry| entry.key.clone())
        .collect();
    let local = (0..record.partitions.len() as u32)
        .map(|index| broker.topics.partition(&name, index))
        .collect();
    Wanted {
        entry: DescribedTopic {
            error_code: ErrorCode::None,
            error_message: None,
            name,
            configs,
            overridden_keys,
            partitions: Vec::new(),
        },
        topic: Some((record, local)),
    }
}

fn unknown(name: String, message: String) -> Wanted<'static> {
    Wanted {
        entry: DescribedTopic {
            error_code: ErrorCode::UnknownTopicOrPartition,
            error_message: Some(message),
            name,
            configs: Vec::new(),
            overridden_keys: Vec::new(),
            partitions: Vec::new(),
        },
        topic: None,
    }
}

/// Why a partition cannot be used, if it cannot: it has no leader, or this broker's copy
/// failed its checks.
fn problem(record: &PartitionRecord, local: Option<&Partition>) -> (ErrorCode, Option<String>) {
    if let Some(reason) = local.and_then(Partition::offline_reason) {
        return (ErrorCode::PartitionOffline, Some(reason.to_owned()));
    }
    match record.leader {
        Some(_) => (ErrorCode::None, None),
        None => (
            ErrorCode::LeaderNotAvailable,
            Some(format!(
                "no leader: its replicas (brokers {:?}) are fenced or shutting down",
                record.replicas
            )),
        ),
    }
}

fn partition_bytes(record: &TopicRecord, local: &[Option<Arc<Partition>>]) -> usize {
    record
        .partitions
        .iter()
        .zip(local)
        .map(|(partition, local)| {
            let (_, message) = problem(partition, local.as_deref());
            DescribedPartition::encoded_bytes(
                partition.replicas.len(),
                partition.isr.len(),
                message.as_deref().map(str::len),
            )
        })
        .sum()
}

fn partitions(record: &TopicRecord, local: &[Option<Arc<Partition>>]) -> Vec<DescribedPartition> {
    record
        .partitions
        .iter()
        .zip(local)
        .enumerate()
        .map(|(index, (partition, local))| {
            let (error_code, error_message) = problem(partition, local.as_deref());
            let offsets = local.as_ref().map_or((0, 0, 0, 0), |local| {
                (
                    local.log_start_offset(),
                    local.high_watermark(),
                    local.log_end_offset(),
                    local.size_bytes(),
                )
            });
            DescribedPartition {
                error_code,
                error_message,
                partition: index as u32,
                leader_id: partition.leader.map_or(-1, |leader| leader as i32),
                leader_epoch: partition.leader_epoch,
                replicas: partition.replicas.clone(),
                in_sync_replicas: partition.isr.clone(),
                log_start_offset: offsets.0,
                high_watermark: offsets.1,
                log_end_offset: offsets.2,
                size_bytes: offsets.3,
            }
        })
        .collect()
}

pub fn handle(broker: &Broker, request: DescribeTopicsRequest) -> Reply {
    let image = broker.cluster.image();
    let wanted: Vec<Wanted> = match request.names {
        None => image
            .topics
            .iter()
            .filter(|(name, _)| *name != OFFSETS_LOG)
            .map(|(name, record)| found(broker, name.clone(), record))
            .collect(),
        Some(names) => {
            if let Err(refusal) = limits::check_topic_count(&broker.config, names.len()) {
                return refusal;
            }
            limits::distinct(names)
                .into_iter()
                .map(|name| match existing(&image, &name) {
                    Ok(record) => found(broker, name, record),
                    Err(error) => unknown(name, error.message),
                })
                .collect()
        }
    };
    let sizes = wanted.iter().map(|Wanted { entry, topic }| {
        let bytes = topic
            .as_ref()
            .map_or(0, |(record, local)| partition_bytes(record, local));
        (entry, bytes)
    });
    let bytes = response_bytes(sizes);
    if let Err(refusal) = limits::check_response_frame(&broker.config, bytes) {
        return refusal;
    }
    let topics = wanted
        .into_iter()
        .map(|Wanted { mut entry, topic }| {
            if let Some((record, local)) = topic {
                entry.partitions = partitions(record, &local);
            }
            entry
        })
        .collect();
    DescribeTopicsResponse { topics }.into()
}

/// The response payload's bytes with `topics` (each an entry without partitions, and the
/// bytes its partitions will take): the header, the topic array's count, the entries as
/// they are now, and the partitions.
fn response_bytes<'a>(topics: impl Iterator<Item = (&'a DescribedTopic, usize)>) -> usize {
    let empty = encoded_bytes(&DescribeTopicsResponse { topics: Vec::new() });
    topics.fold(
        RESPONSE_HEADER_BYTES + empty,
        |bytes, (entry, partitions)| bytes + encoded_bytes(entry) + partitions,
    )
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use strata_protocol::Response;
    use strata_protocol::frame::encode_response;
    use strata_protocol::messages::ConfigEntry;

    use super::*;

    fn entry(name: &str, error_message: Option<String>) -> DescribedTopic {
        DescribedTopic {
            error_code: ErrorCode::None,
            error_message,
            name: name.into(),
            configs: vec![ConfigEntry {
                key: "retention_ms".into(),
                value: "604800000".into(),
            }],
            overridden_keys: vec!["retention_ms".into()],
            partitions: Vec::new(),
        }
    }

    #[test]
    fn the_size_of_a_response_is_known_before_it_is_built() {
        let long_name = "n".repeat(70_000);
        for replicas in [0u32, 1, 3] {
            let topics = [
                (entry("orders", None), 4096u32),
                (entry(&long_name, Some(long_name.clone())), 0),
                (entry("t", None), 1),
            ];
            let offline = "segment 00000000000000000000.log: crc mismatch at 4096";
            let sizes = topics.iter().map(|(entry, count)| {
                let each =
                    DescribedPartition::encoded_bytes(replicas as usize, replicas as usize, None);
                (
                    entry,
                    *count as usize * each + offline.len() * usize::from(*count > 1),
                )
            });
            let estimate = response_bytes(sizes);
            let nodes: Vec<u32> = (0..replicas).collect();
            let response = DescribeTopicsResponse {
                topics: topics
                    .into_iter()
                    .map(|(mut entry, count)| {
                        entry.partitions = (0..count)
                            .map(|partition| DescribedPartition {
                                error_code: ErrorCode::None,
                                error_message: (count > 1 && partition == 7)
                                    .then(|| offline.to_owned()),
                                partition,
                                leader_id: 0,
                                leader_epoch: 1,
                                replicas: nodes.clone(),
                                in_sync_replicas: nodes.clone(),
                                log_start_offset: 5,
                                high_watermark: 9,
                                log_end_offset: 9,
                                size_bytes: 1 << 30,
                            })
                            .collect();
                        entry
                    })
                    .collect(),
            };
            let mut encoded = BytesMut::new();
            let payload = encode_response(&mut encoded, 1, 0, &Response::DescribeTopics(response));
            assert_eq!(estimate, payload, "{replicas} replicas");
        }
    }
}
