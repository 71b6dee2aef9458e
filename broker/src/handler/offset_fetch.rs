//! OffsetFetch: a group's committed offsets. A group that never committed has none.
//! Commits past `i64::MAX` are refused; one stored before that check is answered as no
//! offset, never as a negative one.

use strata_protocol::ErrorCode;
use strata_protocol::messages::{
    NO_OFFSET, OffsetFetchPartition, OffsetFetchRequest, OffsetFetchResponse, OffsetFetchTopic,
    TopicPartitions,
};

use super::groups::{check_coordinator, check_group_id, error_reply, to_topic_partitions};
use super::{Reply, limits};
use crate::broker::Broker;
use crate::group::engine::TopicPartition;

pub fn handle(broker: &Broker, request: &OffsetFetchRequest) -> Reply {
    if let Err(reply) = check_group_id(&request.group_id) {
        return reply;
    }
    if let Err(reply) = check_coordinator(broker, &request.group_id) {
        return reply;
    }
    if let Some(topics) = &request.topics
        && let Err(refusal) = limits::check_topic_partitions(&broker.config, topics)
    {
        return refusal;
    }
    let committed = match broker.groups.committed(&request.group_id) {
        Ok(committed) => committed,
        Err(error) => return error_reply(&error),
    };
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
                            offset: found
                                .and_then(|(offset, _)| i64::try_from(*offset).ok())
                                .unwrap_or(NO_OFFSET),
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
