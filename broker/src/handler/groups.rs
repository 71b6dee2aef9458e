//! FindCoordinator, ConsumerGroupHeartbeat, OffsetCommit and OffsetFetch: checks at the
//! edge, then the group coordinator. ListGroups, DescribeGroups and DeleteGroups go to
//! the coordinator directly.

use strata_protocol::ErrorCode;
use strata_protocol::limits::GROUP_ID_BYTES_MAX;
use strata_protocol::messages::{
    ConsumerGroupHeartbeatRequest, FindCoordinatorRequest, FindCoordinatorResponse,
    OffsetCommitRequest, OffsetFetchRequest,
};

use super::{Client, Reply, Started};
use crate::broker::Broker;

fn check_group_id(group_id: &str) -> Result<(), Reply> {
    if group_id.is_empty() || group_id.len() > GROUP_ID_BYTES_MAX {
        return Err(Reply::Error(
            ErrorCode::InvalidGroupId,
            format!(
                "group id of {} bytes: group ids are 1 to {GROUP_ID_BYTES_MAX} bytes",
                group_id.len()
            ),
        ));
    }
    Ok(())
}

/// Every group is coordinated by this broker while it runs alone.
pub fn find_coordinator(broker: &Broker, request: &FindCoordinatorRequest) -> Started {
    if let Err(reply) = check_group_id(&request.group_id) {
        return reply.into();
    }
    let (host, port) = broker.config.advertised();
    FindCoordinatorResponse {
        node_id: broker.config.node_id,
        host,
        port,
    }
    .into()
}

pub fn heartbeat(
    broker: &Broker,
    request: ConsumerGroupHeartbeatRequest,
    client: &Client<'_>,
) -> Reply {
    if let Err(reply) = check_group_id(&request.group_id) {
        return reply;
    }
    match broker
        .groups
        .heartbeat(request, client.id, client.address, &broker.topics)
    {
        Ok(response) => response.into(),
        Err((code, message)) => Reply::Error(code, message),
    }
}

pub fn commit(broker: &Broker, request: &OffsetCommitRequest) -> Reply {
    if let Err(reply) = check_group_id(&request.group_id) {
        return reply;
    }
    match broker.groups.commit(request, &broker.topics) {
        Ok(response) => response.into(),
        Err((code, message)) => Reply::Error(code, message),
    }
}

pub fn fetch_offsets(broker: &Broker, request: &OffsetFetchRequest) -> Reply {
    if let Err(reply) = check_group_id(&request.group_id) {
        return reply;
    }
    broker.groups.fetch_offsets(request).into()
}
