//! Metadata: this broker, and the requested topics with their partitions.

use strata_protocol::ErrorCode;
use strata_protocol::messages::{
    BrokerMetadata, MetadataRequest, MetadataResponse, PartitionMetadata, TopicMetadata,
};

use crate::broker::Broker;
use crate::topics::Topic;

pub fn handle(broker: &Broker, request: MetadataRequest) -> MetadataResponse {
    let node_id = broker.config.node_id;
    let describe = |topic: &Topic| TopicMetadata {
        error_code: ErrorCode::None,
        name: topic.name.clone(),
        partitions: topic
            .partitions
            .iter()
            .map(|partition| PartitionMetadata {
                error_code: partition
                    .check_online()
                    .map_or_else(|error| error.code(), |()| ErrorCode::None),
                partition: partition.index(),
                leader_id: node_id as i32,
                leader_epoch: partition.leader_epoch(),
                replicas: vec![node_id],
                in_sync_replicas: vec![node_id],
            })
            .collect(),
    };
    let topics = match request.topics {
        None => broker
            .topics
            .all()
            .iter()
            .map(|topic| describe(topic))
            .collect(),
        Some(names) => names
            .into_iter()
            .map(|name| match broker.topics.get(&name) {
                Some(topic) => describe(&topic),
                None => TopicMetadata {
                    error_code: ErrorCode::UnknownTopicOrPartition,
                    name,
                    partitions: Vec::new(),
                },
            })
            .collect(),
    };
    let (host, port) = broker.config.advertised();
    MetadataResponse {
        cluster_id: broker.cluster_id.clone(),
        controller_id: node_id as i32,
        brokers: vec![BrokerMetadata {
            node_id,
            host,
            port,
        }],
        topics,
    }
}
