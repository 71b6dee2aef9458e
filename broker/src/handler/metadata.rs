//! Metadata: the brokers that are alive, and the requested topics with each partition's
//! leader, replicas and in-sync replicas, from the cluster metadata this broker applied.
//!
//! A topic named more than once is answered once. The response is sized from its topics'
//! partitions before it is built, and refused with `LimitExceeded` if it would not fit
//! `frame_bytes_max`.

use strata_protocol::ErrorCode;
use strata_protocol::frame::RESPONSE_HEADER_BYTES;
use strata_protocol::messages::{
    BrokerMetadata, MetadataRequest, MetadataResponse, PartitionMetadata, TopicMetadata,
};
use strata_protocol::wire::encoded_bytes;

use super::{Reply, limits};
use crate::broker::Broker;
use crate::cluster::metadata::{BrokerState, TopicRecord};
use crate::group::store::OFFSETS_LOG;
use crate::topics::checks::existing;

pub fn handle(broker: &Broker, request: MetadataRequest) -> Reply {
    let image = broker.cluster.image();
    let wanted: Vec<(TopicMetadata, Option<&TopicRecord>)> = match request.topics {
        None => image
            .topics
            .iter()
            .filter(|(name, _)| *name != OFFSETS_LOG)
            .map(|(name, record)| (entry(ErrorCode::None, name.clone()), Some(record.as_ref())))
            .collect(),
        Some(names) => {
            if let Err(refusal) = limits::check_topic_count(&broker.config, names.len()) {
                return refusal;
            }
            limits::distinct(names)
                .into_iter()
                .map(|name| match existing(&image, &name) {
                    Ok(record) => (entry(ErrorCode::None, name), Some(record)),
                    Err(_) => (entry(ErrorCode::UnknownTopicOrPartition, name), None),
                })
                .collect()
        }
    };
    let brokers = image
        .brokers
        .values()
        .filter(|record| record.state == BrokerState::Alive)
        .filter_map(|record| {
            let (host, port) = record.address.rsplit_once(':')?;
            Some(BrokerMetadata {
                node_id: record.id,
                host: host.to_owned(),
                port: port.parse().ok()?,
            })
        })
        .collect();
    let controller_id = broker
        .cluster
        .quorum_status()
        .leader
        .map_or(-1, |leader| leader as i32);
    let mut response = MetadataResponse {
        cluster_id: broker.cluster_id.clone(),
        controller_id,
        brokers,
        topics: Vec::new(),
    };
    let sizes = wanted.iter().map(|(entry, record)| {
        let bytes = record.map_or(0, |record| {
            record
                .partitions
                .iter()
                .map(|partition| {
                    PartitionMetadata::encoded_bytes(partition.replicas.len(), partition.isr.len())
                })
                .sum()
        });
        (entry, bytes)
    });
    let bytes = response_bytes(&response, sizes);
    if let Err(refusal) = limits::check_response_frame(&broker.config, bytes) {
        return refusal;
    }
    response.topics = wanted
        .into_iter()
        .map(|(mut entry, record)| {
            if let Some(record) = record {
                entry.partitions = partitions(broker, &entry.name, record);
            }
            entry
        })
        .collect();
    response.into()
}

fn partitions(broker: &Broker, name: &str, record: &TopicRecord) -> Vec<PartitionMetadata> {
    record
        .partitions
        .iter()
        .enumerate()
        .map(|(index, partition)| {
            let offline = broker
                .topics
                .partition(name, index as u32)
                .and_then(|local| local.check_online().err());
            let error_code = match (offline, partition.leader) {
                (Some(error), _) => error.code(),
                (None, None) => ErrorCode::LeaderNotAvailable,
                (None, Some(_)) => ErrorCode::None,
            };
            PartitionMetadata {
                error_code,
                partition: index as u32,
                leader_id: partition.leader.map_or(-1, |leader| leader as i32),
                leader_epoch: partition.leader_epoch,
                replicas: partition.replicas.clone(),
                in_sync_replicas: partition.isr.clone(),
            }
        })
        .collect()
}

fn entry(error_code: ErrorCode, name: String) -> TopicMetadata {
    TopicMetadata {
        error_code,
        name,
        partitions: Vec::new(),
    }
}

/// The response payload's bytes once `topics` (each an entry without partitions, and the
/// bytes its partitions will take) fill `response`: the header, the response and entries
/// as they are now, and the partitions.
fn response_bytes<'a>(
    response: &MetadataResponse,
    topics: impl Iterator<Item = (&'a TopicMetadata, usize)>,
) -> usize {
    topics.fold(
        RESPONSE_HEADER_BYTES + encoded_bytes(response),
        |bytes, (entry, partitions)| bytes + encoded_bytes(entry) + partitions,
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
            let each = PartitionMetadata::encoded_bytes(replicas, replicas);
            let sizes = topics
                .iter()
                .map(|(entry, count)| (entry, *count as usize * each));
            let estimate = response_bytes(&response, sizes);
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
            let payload =
                encode_response(&mut encoded, 1, 0, &Response::Metadata(response.clone()));
            assert_eq!(estimate, payload, "{replicas} replicas");
            response.topics.clear();
        }
    }
}
