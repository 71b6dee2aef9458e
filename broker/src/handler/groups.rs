//! What the group handlers share: the group-id check at the edge, the wire codes of the
//! coordinator's errors, and partition lists in their wire shape.

use std::collections::BTreeSet;

use strata_protocol::ErrorCode;
use strata_protocol::limits::GROUP_ID_BYTES_MAX;
use strata_protocol::messages::TopicPartitions;

use super::Reply;
use crate::broker::Broker;
use crate::group::engine::{GroupError, TopicPartition};
use crate::group::service::CoordinatorError;
use crate::group::store::{OFFSETS_LOG, offsets_partition};

/// Refuses a group id the coordinator would never accept, before it reaches the
/// coordinator.
pub fn check_group_id(group_id: &str) -> Result<(), Reply> {
    match invalid_group_id(group_id) {
        Some(message) => Err(Reply::Error(ErrorCode::InvalidGroupId, message)),
        None => Ok(()),
    }
}

/// The broker that coordinates `group_id`: the leader of the group's partition of the
/// offsets log.
///
/// # Errors
/// Why no broker coordinates it now: the offsets log is not created yet, or the
/// partition has no leader.
pub fn coordinator(broker: &Broker, group_id: &str) -> Result<u32, String> {
    let image = broker.cluster.image();
    // The count the offsets log was created with, not this broker's config: brokers
    // configured apart must still agree on every group's coordinator.
    let count = image
        .topic(OFFSETS_LOG)
        .map(|log| log.partitions.len() as u32)
        .ok_or_else(|| "the offsets log is not created yet".to_owned())?;
    let index = offsets_partition(group_id, count);
    let partition = image
        .partition(OFFSETS_LOG, index)
        .ok_or_else(|| "the offsets log is not created yet".to_owned())?;
    partition.leader.ok_or_else(|| {
        format!(
            "partition {index} of the offsets log, which holds this group, has no leader: broker {:?} is fenced or shutting down",
            partition.replicas
        )
    })
}

/// Refuses a group this broker does not coordinate, with `NotCoordinator` (retriable:
/// the client finds the coordinator again).
pub fn check_coordinator(broker: &Broker, group_id: &str) -> Result<(), Reply> {
    match not_coordinated(broker, group_id) {
        Some(why) => Err(Reply::Error(ErrorCode::NotCoordinator, why)),
        None => Ok(()),
    }
}

/// Why this broker does not coordinate `group_id`, if it does not: the metadata names
/// another broker, or this broker has not loaded the group's partition of the offsets
/// log yet (it took the lead a moment ago, or has not followed the metadata that gave
/// it).
pub fn not_coordinated(broker: &Broker, group_id: &str) -> Option<String> {
    match coordinator(broker, group_id) {
        Ok(node) if node == broker.config.node_id => broker.groups.not_loaded(group_id),
        Ok(node) => Some(format!(
            "broker {node} coordinates this group, not this broker"
        )),
        Err(why) => Some(why),
    }
}

/// Why no group can have this id, if none can. The message gives the id's length, not
/// the id.
pub fn invalid_group_id(group_id: &str) -> Option<String> {
    (group_id.is_empty() || group_id.len() > GROUP_ID_BYTES_MAX).then(|| {
        format!(
            "group id of {} bytes: group ids are 1 to {GROUP_ID_BYTES_MAX} bytes",
            group_id.len()
        )
    })
}

/// The wire code a client sees for each of the engine's refusals.
pub fn group_error_code(error: &GroupError) -> ErrorCode {
    match error {
        GroupError::InvalidGroupId { .. } => ErrorCode::InvalidGroupId,
        GroupError::MemberIdTooLong { .. }
        | GroupError::SubscriptionMissing
        | GroupError::InvalidEpoch { .. } => ErrorCode::InvalidRequest,
        GroupError::UnsupportedAssignor(_) => ErrorCode::UnsupportedAssignor,
        GroupError::TooManySubscribedTopics { .. } | GroupError::EpochExhausted { .. } => {
            ErrorCode::LimitExceeded
        }
        GroupError::InvalidSubscribedTopic { .. } => ErrorCode::InvalidTopic,
        GroupError::GroupFull { .. } => ErrorCode::GroupMaxSizeReached,
        GroupError::UnknownMember { .. } => ErrorCode::UnknownMemberId,
        GroupError::FencedEpoch { .. } => ErrorCode::FencedMemberEpoch,
        GroupError::ResetWithMembers { .. } | GroupError::GroupNotEmpty { .. } => {
            ErrorCode::NonEmptyGroup
        }
        GroupError::GroupNotFound { .. } => ErrorCode::GroupIdNotFound,
    }
}

/// The wire code of a whole-request failure of the coordinator.
pub fn error_code(error: &CoordinatorError) -> ErrorCode {
    match error {
        CoordinatorError::Refused(error) => group_error_code(error),
        CoordinatorError::Storage { source } => source.code(),
        CoordinatorError::NotCoordinator { .. } => ErrorCode::NotCoordinator,
    }
}

/// A whole-request failure of the coordinator, as the reply.
pub fn error_reply(error: &CoordinatorError) -> Reply {
    Reply::Error(error_code(error), error.to_string())
}

/// Partitions from their wire shape.
pub fn to_set(topics: &[TopicPartitions]) -> BTreeSet<TopicPartition> {
    topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|&partition| TopicPartition {
                topic: topic.topic.clone(),
                partition,
            })
        })
        .collect()
}

/// Sorted partitions in their wire shape: one entry per run of the same topic.
pub fn to_topic_partitions<'a>(
    tps: impl Iterator<Item = &'a TopicPartition>,
) -> Vec<TopicPartitions> {
    let mut out: Vec<TopicPartitions> = Vec::new();
    for tp in tps {
        match out.last_mut() {
            Some(last) if last.topic == tp.topic => last.partitions.push(tp.partition),
            _ => out.push(TopicPartitions {
                topic: tp.topic.clone(),
                partitions: vec![tp.partition],
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::assignor::UnknownAssignor;

    #[test]
    fn each_refusal_keeps_its_wire_code() {
        let group_id = String::from("g");
        let member_id = String::from("m");
        let cases = [
            (
                GroupError::InvalidGroupId { length: 0 },
                ErrorCode::InvalidGroupId,
            ),
            (
                GroupError::MemberIdTooLong { length: 256 },
                ErrorCode::InvalidRequest,
            ),
            (GroupError::SubscriptionMissing, ErrorCode::InvalidRequest),
            (
                GroupError::InvalidEpoch { epoch: -5 },
                ErrorCode::InvalidRequest,
            ),
            (
                GroupError::UnsupportedAssignor(UnknownAssignor("sticky".into())),
                ErrorCode::UnsupportedAssignor,
            ),
            (
                GroupError::TooManySubscribedTopics { count: 1_001 },
                ErrorCode::LimitExceeded,
            ),
            (
                GroupError::EpochExhausted {
                    group_id: group_id.clone(),
                },
                ErrorCode::LimitExceeded,
            ),
            (
                GroupError::InvalidSubscribedTopic { length: 0 },
                ErrorCode::InvalidTopic,
            ),
            (
                GroupError::GroupFull {
                    group_id: group_id.clone(),
                    member_count: 6,
                },
                ErrorCode::GroupMaxSizeReached,
            ),
            (
                GroupError::UnknownMember {
                    group_id: group_id.clone(),
                    member_id: member_id.clone(),
                },
                ErrorCode::UnknownMemberId,
            ),
            (
                GroupError::FencedEpoch {
                    member_id,
                    sent: 3,
                    current: 4,
                },
                ErrorCode::FencedMemberEpoch,
            ),
            (
                GroupError::ResetWithMembers {
                    group_id: group_id.clone(),
                    member_count: 1,
                },
                ErrorCode::NonEmptyGroup,
            ),
            (
                GroupError::GroupNotEmpty {
                    group_id: group_id.clone(),
                    member_count: 1,
                },
                ErrorCode::NonEmptyGroup,
            ),
            (
                GroupError::GroupNotFound { group_id },
                ErrorCode::GroupIdNotFound,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(group_error_code(&error), code, "{error}");
            let reply = error_reply(&CoordinatorError::Refused(error.clone()));
            let Reply::Error(sent, message) = reply else {
                panic!("{reply:?}");
            };
            assert_eq!((sent, message), (code, error.to_string()));
        }
    }

    #[test]
    fn partitions_round_trip_through_their_wire_shape() {
        let tps = BTreeSet::from([
            TopicPartition::new("a", 0),
            TopicPartition::new("a", 2),
            TopicPartition::new("b", 1),
        ]);
        let wire = to_topic_partitions(tps.iter());
        assert_eq!(wire.len(), 2);
        assert_eq!(wire[0].partitions, [0, 2]);
        assert_eq!(to_set(&wire), tps);
    }
}
