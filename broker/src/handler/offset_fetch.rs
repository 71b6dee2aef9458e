//! OffsetFetch: a group's committed offsets. A group that never committed has none.

use strata_protocol::ErrorCode;
use strata_protocol::messages::{
    NO_OFFSET, OffsetFetchPartition, OffsetFetchRequest, OffsetFetchResponse, OffsetFetchTopic,
    TopicPartitions,
};

use super::Reply;
use super::groups::{check_group_id, to_topic_partitions};
use crate::broker::Broker;
use crate::group::engine::TopicPartition;

pub fn handle(broker: &Broker, request: &OffsetFetchRequest) -> Reply {
    if let Err(reply) = check_group_id(&request.group_id) {
        return reply;
    }
    let committed = broker.groups.committed(&request.group_id);
    let wanted: Vec<TopicPartitions> = match &request.topics {
        Some(topics) => topics.clone(),
        None => to_topic_partitions(committed.keys()),
    };
    OffsetFetchResponse {
        topics: wanted
            .into_iter()
            .map(|topic| OffsetFetchTopic {
                partitions: topic
                    .partitions
                    .iter()
                    .map(|&partition| {
                        let found = committed.get(&TopicPartition::new(&topic.topic, partition));
                        OffsetFetchPartition {
                            partition,
                            offset: found.map_or(NO_OFFSET, |(offset, _)| *offset as i64),
                            metadata: found.and_then(|(_, metadata)| metadata.clone()),
                            error_code: ErrorCode::None,
                        }
                    })
                    .collect(),
                name: topic.topic,
            })
            .collect(),
    }
    .into()
}
