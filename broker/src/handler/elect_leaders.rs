//! ElectLeaders: an operator asks for leader elections (`strata partition elect`). A
//! clean election makes the preferred replica the leader if it is alive and in sync; an
//! unclean one gives a partition without a leader any alive replica, at the risk of
//! losing acknowledged records only the missing replicas hold. Each election is a
//! metadata command, applied (or refused) the same way on every broker.

use std::sync::Arc;

use strata_protocol::ErrorCode;
use strata_protocol::messages::{
    ElectLeadersPartitionResponse, ElectLeadersRequest, ElectLeadersResponse,
    ElectLeadersTopicResponse, NO_ELECTED_LEADER,
};

use super::Reply;
use crate::broker::Broker;
use crate::cluster::metadata::Command;
use crate::group::store::OFFSETS_LOG;

pub async fn handle(broker: Arc<Broker>, request: ElectLeadersRequest) -> Reply {
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for partition in topic.partitions {
            partitions.push(elect(&broker, &topic.name, partition, request.unclean).await);
        }
        topics.push(ElectLeadersTopicResponse {
            name: topic.name,
            partitions,
        });
    }
    ElectLeadersResponse { topics }.into()
}

async fn elect(
    broker: &Broker,
    topic: &str,
    partition: u32,
    unclean: bool,
) -> ElectLeadersPartitionResponse {
    let mut response = ElectLeadersPartitionResponse {
        partition,
        error_code: ErrorCode::None,
        error_message: None,
        leader: NO_ELECTED_LEADER,
        leader_epoch: 0,
    };
    let topic_id = broker
        .cluster
        .image()
        .topics
        .get(topic)
        .filter(|record| topic != OFFSETS_LOG && (partition as usize) < record.partitions.len())
        .map(|record| record.id);
    let Some(topic_id) = topic_id else {
        response.error_code = ErrorCode::UnknownTopicOrPartition;
        response.error_message = Some(format!("topic '{topic}' has no partition {partition}"));
        return response;
    };
    let command = Command::ElectLeader {
        topic: topic.to_owned(),
        topic_id,
        partition,
        unclean,
    };
    if let Err(error) = broker.cluster.change(&command).await {
        response.error_code = error.code;
        response.error_message = Some(error.message);
    }
    if let Some(placed) = broker.cluster.image().partition(topic, partition) {
        response.leader = placed.leader.unwrap_or(NO_ELECTED_LEADER);
        response.leader_epoch = placed.leader_epoch;
    }
    response
}
