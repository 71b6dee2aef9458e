//! AlterPartitionReassignments: an operator moves partitions to other replicas
//! (`strata partition reassign`, Kafka's KIP-455). Each move is a metadata command,
//! applied (or refused) the same way on every broker; the answer comes once it is
//! recorded and this broker's logs follow it, and the move itself finishes when the new
//! replicas have caught up (`cluster::metadata::apply::reassign`).
//!
//! The offsets log is not moved: its partitions are the group coordinator's, opened on
//! the brokers placement chose.

use std::sync::Arc;

use strata_protocol::ErrorCode;
use strata_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, ReassignablePartition,
    ReassignablePartitionResponse, ReassignableTopicResponse,
};

use super::{Reply, limits};
use crate::broker::Broker;
use crate::cluster::metadata::Command;
use crate::group::store::OFFSETS_LOG;

pub async fn handle(broker: Arc<Broker>, request: AlterPartitionReassignmentsRequest) -> Reply {
    // Each partition is a proposal, one after the other: the limits bound the wait.
    if let Err(refusal) = limits::check_topic_partitions(&broker.config, &request.topics) {
        return refusal;
    }
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for partition in topic.partitions {
            partitions.push(reassign(&broker, &topic.name, partition).await);
        }
        topics.push(ReassignableTopicResponse {
            name: topic.name,
            partitions,
        });
    }
    AlterPartitionReassignmentsResponse { topics }.into()
}

async fn reassign(
    broker: &Broker,
    topic: &str,
    wanted: ReassignablePartition,
) -> ReassignablePartitionResponse {
    let mut response = ReassignablePartitionResponse {
        partition: wanted.partition,
        error_code: ErrorCode::None,
        error_message: None,
    };
    let index = wanted.partition;
    let topic_id = broker
        .cluster
        .image()
        .topics
        .get(topic)
        .filter(|record| topic != OFFSETS_LOG && (index as usize) < record.partitions.len())
        .map(|record| record.id);
    let Some(topic_id) = topic_id else {
        response.error_code = ErrorCode::UnknownTopicOrPartition;
        response.error_message = Some(format!("topic '{topic}' has no partition {index}"));
        return response;
    };
    let command = Command::ReassignPartition {
        topic: topic.to_owned(),
        topic_id,
        partition: index,
        replicas: wanted.replicas,
    };
    if let Err(error) = broker.cluster.change(&command).await {
        response.error_code = error.code;
        response.error_message = Some(error.message);
    }
    response
}
