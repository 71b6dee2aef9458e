//! DescribeTopics: each topic's effective config and each partition's placement, offsets
//! and size on disk.
//!
//! A topic named more than once is described once. The response is sized from its
//! topics' partition counts before the partitions are described, and refused with
//! `LimitExceeded` if it would not fit `frame_bytes_max`.

use std::sync::Arc;

use strata_protocol::frame::RESPONSE_HEADER_BYTES;
use strata_protocol::messages::{
    DescribeTopicsRequest, DescribeTopicsResponse, DescribedPartition, DescribedTopic,
};
use strata_protocol::wire::encoded_bytes;
use strata_protocol::{ErrorCode, shown};

use super::{Reply, limits};
use crate::broker::Broker;
use crate::topics::Topic;

/// One requested topic, described but for its partitions.
struct Wanted {
    /// The entry without its partitions.
    entry: DescribedTopic,
    /// The topic, if it exists.
    topic: Option<Arc<Topic>>,
}

/// A topic's entry with its configs and no partitions yet.
fn found(broker: &Broker, topic: Arc<Topic>) -> Wanted {
    let configs = topic.config.entries();
    // A topic stores its effective values, not which were given at create or alter
    // time: its own values are those that differ from the broker's defaults (it keeps
    // them when the defaults change later).
    let defaults = broker.config.topic_defaults.entries();
    let overridden_keys = configs
        .iter()
        .filter(|entry| !defaults.contains(entry))
        .map(|entry| entry.key.clone())
        .collect();
    Wanted {
        entry: DescribedTopic {
            error_code: ErrorCode::None,
            error_message: None,
            name: topic.name.clone(),
            configs,
            overridden_keys,
            partitions: Vec::new(),
        },
        topic: Some(topic),
    }
}

fn unknown(name: String) -> Wanted {
    Wanted {
        entry: DescribedTopic {
            error_code: ErrorCode::UnknownTopicOrPartition,
            error_message: Some(format!("topic '{}' does not exist", shown(&name))),
            name,
            configs: Vec::new(),
            overridden_keys: Vec::new(),
            partitions: Vec::new(),
        },
        topic: None,
    }
}

fn partitions(topic: &Topic, replicas: &[u32]) -> Vec<DescribedPartition> {
    topic
        .partitions
        .iter()
        .map(|partition| DescribedPartition {
            error_code: partition
                .check_online()
                .map_or_else(|error| error.code(), |()| ErrorCode::None),
            error_message: partition.offline_reason().map(str::to_owned),
            partition: partition.index(),
            leader_id: replicas.first().map_or(-1, |&leader| leader as i32),
            leader_epoch: partition.leader_epoch(),
            replicas: replicas.to_vec(),
            in_sync_replicas: replicas.to_vec(),
            log_start_offset: partition.log_start_offset(),
            high_watermark: partition.high_watermark(),
            log_end_offset: partition.log_end_offset(),
            size_bytes: partition.size_bytes(),
        })
        .collect()
}

pub fn handle(broker: &Broker, request: DescribeTopicsRequest) -> Reply {
    let wanted: Vec<Wanted> = match request.names {
        None => broker
            .topics
            .all()
            .into_iter()
            .map(|topic| found(broker, topic))
            .collect(),
        Some(names) => {
            if let Err(refusal) = limits::check_topic_count(&broker.config, names.len()) {
                return refusal;
            }
            limits::distinct(names)
                .into_iter()
                .map(|name| match broker.topics.get(&name) {
                    Some(topic) => found(broker, topic),
                    None => unknown(name),
                })
                .collect()
        }
    };
    let replicas = [broker.config.node_id];
    let sizes = wanted.iter().map(|Wanted { entry, topic }| {
        let (partitions, messages) = topic.as_ref().map_or((0, 0), |topic| {
            let messages = topic
                .partitions
                .iter()
                .filter_map(|partition| partition.offline_reason().map(str::len))
                .sum();
            (topic.partitions.len(), messages)
        });
        (entry, partitions, messages)
    });
    let bytes = response_bytes(sizes, replicas.len());
    if let Err(refusal) = limits::check_response_frame(&broker.config, bytes) {
        return refusal;
    }
    let topics = wanted
        .into_iter()
        .map(|Wanted { mut entry, topic }| {
            if let Some(topic) = topic {
                entry.partitions = partitions(&topic, &replicas);
            }
            entry
        })
        .collect();
    DescribeTopicsResponse { topics }.into()
}

/// The response payload's bytes with `topics` (each an entry without partitions, how many
/// it will have, and the bytes of their error messages together), each partition with
/// `replicas` replicas, all in sync: the header, the topic array's count, the entries as
/// they are now, and each partition by its formula.
fn response_bytes<'a>(
    topics: impl Iterator<Item = (&'a DescribedTopic, usize, usize)>,
    replicas: usize,
) -> usize {
    let partition_bytes = DescribedPartition::encoded_bytes(replicas, replicas, None);
    let empty = encoded_bytes(&DescribeTopicsResponse { topics: Vec::new() });
    topics.fold(
        RESPONSE_HEADER_BYTES + empty,
        |bytes, (entry, partitions, messages)| {
            bytes + encoded_bytes(entry) + partitions * partition_bytes + messages
        },
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
                (
                    entry,
                    *count as usize,
                    offline.len() * usize::from(*count > 1),
                )
            });
            let estimate = response_bytes(sizes, replicas as usize);
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
            let payload = encode_response(&mut encoded, 1, &Response::DescribeTopics(response));
            assert_eq!(estimate, payload, "{replicas} replicas");
        }
    }
}
