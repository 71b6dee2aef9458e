//! DescribeTopics: each topic's effective config and each partition's placement, offsets
//! and size on disk.

use strata_protocol::ErrorCode;
use strata_protocol::messages::{
    DescribeTopicsRequest, DescribeTopicsResponse, DescribedPartition, DescribedTopic,
};

use crate::broker::Broker;
use crate::topics::Topic;

fn describe(broker: &Broker, topic: &Topic) -> DescribedTopic {
    let node_id = broker.config.node_id;
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
    DescribedTopic {
        error_code: ErrorCode::None,
        error_message: None,
        name: topic.name.clone(),
        configs,
        overridden_keys,
        partitions: topic
            .partitions
            .iter()
            .map(|partition| DescribedPartition {
                error_code: partition
                    .check_online()
                    .map_or_else(|error| error.code(), |()| ErrorCode::None),
                error_message: partition.offline_reason().map(str::to_owned),
                partition: partition.index(),
                leader_id: node_id as i32,
                leader_epoch: partition.leader_epoch(),
                replicas: vec![node_id],
                in_sync_replicas: vec![node_id],
                log_start_offset: partition.log_start_offset(),
                high_watermark: partition.high_watermark(),
                log_end_offset: partition.log_end_offset(),
                size_bytes: partition.size_bytes(),
            })
            .collect(),
    }
}

pub fn handle(broker: &Broker, request: DescribeTopicsRequest) -> DescribeTopicsResponse {
    let topics = match request.names {
        None => broker
            .topics
            .all()
            .iter()
            .map(|topic| describe(broker, topic))
            .collect(),
        Some(names) => names
            .into_iter()
            .map(|name| match broker.topics.get(&name) {
                Some(topic) => describe(broker, &topic),
                None => DescribedTopic {
                    error_code: ErrorCode::UnknownTopicOrPartition,
                    error_message: Some(format!("topic '{name}' does not exist")),
                    name,
                    configs: Vec::new(),
                    overridden_keys: Vec::new(),
                    partitions: Vec::new(),
                },
            })
            .collect(),
    };
    DescribeTopicsResponse { topics }
}
