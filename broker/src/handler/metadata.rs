//! Metadata: this broker, and the requested topics with their partitions.
//!
//! A topic named more than once is answered once. The response is sized from its topics'
//! partition counts before it is built, and refused with `LimitExceeded` if it would not
//! fit `frame_bytes_max`.

use std::sync::Arc;

use strata_protocol::ErrorCode;
use strata_protocol::frame::RESPONSE_HEADER_BYTES;
use strata_protocol::messages::{
    BrokerMetadata, MetadataRequest, MetadataResponse, PartitionMetadata, TopicMetadata,
};
use strata_protocol::wire::encoded_bytes;

use super::{Reply, limits};
use crate::broker::Broker;
use crate::topics::Topic;

/// One requested topic, before its partitions are described.
struct Wanted {
    /// The entry without its partitions.
    entry: TopicMetadata,
    /// The topic, if it exists.
    topic: Option<Arc<Topic>>,
}

pub fn handle(broker: &Broker, request: MetadataRequest) -> Reply {
    let wanted: Vec<Wanted> = match request.topics {
        None => broker
            .topics
            .all()
            .into_iter()
            .map(|topic| found(topic.name.clone(), topic))
            .collect(),
        Some(names) => {
            if let Err(refusal) = limits::check_topic_count(&broker.config, names.len()) {
                return refusal;
            }
            limits::distinct(names)
                .into_iter()
                .map(|name| match broker.topics.get(&name) {
                    Some(topic) => found(name, topic),
                    None => Wanted {
                        entry: entry(ErrorCode::UnknownTopicOrPartition, name),
                        topic: None,
                    },
                })
                .collect()
        }
    };
    let node_id = broker.config.node_id;
    let (host, port) = broker.config.advertised();
    let mut response = MetadataResponse {
        cluster_id: broker.cluster_id.clone(),
        controller_id: node_id as i32,
        brokers: vec![BrokerMetadata {
            node_id,
            host,
            port,
        }],
        topics: Vec::new(),
    };
    let replicas = vec![node_id];
    let sizes = wanted.iter().map(|Wanted { entry, topic }| {
        (
            entry,
            topic.as_ref().map_or(0, |topic| topic.partitions.len()),
        )
    });
    let bytes = response_bytes(&response, sizes, replicas.len());
    if let Err(refusal) = limits::check_response_frame(&broker.config, bytes) {
        return refusal;
    }
    response.topics = wanted
        .into_iter()
        .map(|Wanted { mut entry, topic }| {
            if let Some(topic) = topic {
                entry.partitions = topic
                    .partitions
                    .iter()
                    .map(|partition| PartitionMetadata {
                        error_code: partition
                            .check_online()
                            .map_or_else(|error| error.code(), |()| ErrorCode::None),
                        partition: partition.index(),
                        leader_id: node_id as i32,
                        leader_epoch: partition.leader_epoch(),
                        replicas: replicas.clone(),
                        in_sync_replicas: replicas.clone(),
                    })
                    .collect();
            }
            entry
        })
        .collect();
    response.into()
}

fn entry(error_code: ErrorCode, name: String) -> TopicMetadata {
    TopicMetadata {
        error_code,
        name,
        partitions: Vec::new(),
    }
}

fn found(name: String, topic: Arc<Topic>) -> Wanted {
    Wanted {
        entry: entry(ErrorCode::None, name),
        topic: Some(topic),
    }
}

/// The response payload's bytes once `topics` (each an entry without partitions, and
/// how many it will have) fill `response`, each partition with `replicas` replicas, all
/// in sync: the header, the response and entries as they are now, and each partition by
/// its formula.
fn response_bytes<'a>(
    response: &MetadataResponse,
    topics: impl Iterator<Item = (&'a TopicMetadata, usize)>,
    replicas: usize,
) -> usize {
    let partition_bytes = PartitionMetadata::encoded_bytes(replicas, replicas);
    topics.fold(
        RESPONSE_HEADER_BYTES + encoded_bytes(response),
        |bytes, (entry, partitions)| bytes + encoded_bytes(entry) + partitions * partition_bytes,
    )
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use strata_protocol::Response;
    use strata_protocol::frame::encode_response;

    use super::*;

    #[test]
    fn the_size_of_a_response_is_known_before_it_is_built() {
        let long_name = "n".repeat(70_000);
        let mut response = MetadataResponse {
            cluster_id: "cluster".into(),
            controller_id: 0,
            brokers: vec![BrokerMetadata {
                node_id: 0,
                host: "localhost".into(),
                port: 9400,
            }],
            topics: Vec::new(),
        };
        for replicas in [0, 1, 3] {
            let topics = [
                (entry(ErrorCode::None, "orders".into()), 4096u32),
                (
                    entry(ErrorCode::UnknownTopicOrPartition, long_name.clone()),
                    0,
                ),
                (entry(ErrorCode::None, "t".into()), 1),
            ];
            let sizes = topics.iter().map(|(entry, count)| (entry, *count as usize));
            let estimate = response_bytes(&response, sizes, replicas);
            response.topics = topics
                .into_iter()
                .map(|(mut entry, count)| {
                    entry.partitions = (0..count)
                        .map(|partition| PartitionMetadata {
                            error_code: ErrorCode::None,
                            partition,
                            leader_id: 0,
                            leader_epoch: 3,
                            replicas: (0..replicas as u32).collect(),
                            in_sync_replicas: (0..replicas as u32).collect(),
                        })
                        .collect();
                    entry
                })
                .collect();
            let mut encoded = BytesMut::new();
            let payload = encode_response(&mut encoded, 1, &Response::Metadata(response.clone()));
            assert_eq!(estimate, payload, "{replicas} replicas");
            response.topics.clear();
        }
    }
}
