//! ConsumerGroupHeartbeat: join, stay in, or leave a group. The wire's member epoch
//! doubles as the request to join or leave; here it becomes a [`MemberEpoch`].

use strata_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, JOIN_EPOCH, LEAVE_EPOCH,
    STATIC_LEAVE_EPOCH,
};

use super::groups::{check_coordinator, check_group_id, error_reply, to_set, to_topic_partitions};
use super::{Client, Reply, limits};
use crate::broker::Broker;
use crate::group::engine::{Heartbeat, HeartbeatReply, MemberEpoch};

pub fn handle(
    broker: &Broker,
    request: ConsumerGroupHeartbeatRequest,
    client: &Client<'_>,
) -> Reply {
    if let Err(reply) = check_group_id(&request.group_id) {
        return reply;
    }
    if let Err(reply) = check_coordinator(broker, &request.group_id) {
        return reply;
    }
    if let Err(refusal) = check_fan_out(broker, &request) {
        return refusal;
    }
    match broker
        .groups
        .heartbeat(to_heartbeat(request, client), &broker.cluster.image())
    {
        Ok(reply) => to_response(reply).into(),
        Err(error) => error_reply(&error),
    }
}

/// The subscription and the owned partitions within the request limits, before
/// [`to_heartbeat`] copies each owned partition's topic name.
fn check_fan_out(broker: &Broker, request: &ConsumerGroupHeartbeatRequest) -> Result<(), Reply> {
    if let Some(topics) = &request.subscribed_topics {
        limits::check_topic_count(&broker.config, topics.len())?;
    }
    if let Some(owned) = &request.owned_partitions {
        limits::check_topic_partitions(&broker.config, owned)?;
    }
    Ok(())
}

fn to_heartbeat(request: ConsumerGroupHeartbeatRequest, client: &Client<'_>) -> Heartbeat {
    Heartbeat {
        group_id: request.group_id,
        member_id: request.member_id,
        member_epoch: from_wire(request.member_epoch),
        leaving_epoch: request.leaving_epoch,
        instance_id: request.instance_id,
        subscribed_topics: request.subscribed_topics,
        assignor: request.assignor,
        owned: request.owned_partitions.map(|owned| to_set(&owned)),
        client_id: client.id.to_owned(),
        client_host: client.address.to_owned(),
        new_member_id: String::new(),
    }
}

fn to_response(reply: HeartbeatReply) -> ConsumerGroupHeartbeatResponse {
    ConsumerGroupHeartbeatResponse {
        member_id: reply.member_id,
        member_epoch: to_wire(reply.member_epoch),
        heartbeat_interval_ms: reply.heartbeat_interval_ms,
        assignment: Some(to_topic_partitions(reply.assignment.iter())),
    }
}

/// Any other negative epoch stays a [`MemberEpoch::Current`] for the coordinator to
/// refuse, so a request with several faults gets the same error as always.
fn from_wire(member_epoch: i32) -> MemberEpoch {
    match member_epoch {
        JOIN_EPOCH => MemberEpoch::Join,
        LEAVE_EPOCH => MemberEpoch::Leave,
        STATIC_LEAVE_EPOCH => MemberEpoch::StaticLeave,
        epoch => MemberEpoch::Current(epoch),
    }
}

fn to_wire(member_epoch: MemberEpoch) -> i32 {
    match member_epoch {
        MemberEpoch::Join => JOIN_EPOCH,
        MemberEpoch::Leave => LEAVE_EPOCH,
        MemberEpoch::StaticLeave => STATIC_LEAVE_EPOCH,
        MemberEpoch::Current(epoch) => epoch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_epochs_keep_their_wire_values() {
        for epoch in [JOIN_EPOCH, LEAVE_EPOCH, STATIC_LEAVE_EPOCH, 1, 7, -5] {
            assert_eq!(to_wire(from_wire(epoch)), epoch);
        }
        assert_eq!(from_wire(JOIN_EPOCH), MemberEpoch::Join);
        assert_eq!(from_wire(LEAVE_EPOCH), MemberEpoch::Leave);
        assert_eq!(from_wire(STATIC_LEAVE_EPOCH), MemberEpoch::StaticLeave);
        assert_eq!(from_wire(-5), MemberEpoch::Current(-5));
    }
}
