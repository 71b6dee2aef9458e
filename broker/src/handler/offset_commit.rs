//! OffsetCommit: a member's (or an administrator's) committed offsets, with one outcome
//! per requested partition.
//!
//! The commit is validated, appended and applied in request order; the reply then waits
//! (on a notification from the flusher, never blocking a thread) until the offsets log's
//! durability policy covers it, as an `acks = all` produce does.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_protocol::ErrorCode;
use strata_protocol::messages::{
    ADMIN_COMMIT_EPOCH, OffsetCommitRequest, OffsetCommitResponse, OffsetCommitTopicResponse,
    PartitionResult,
};

use super::groups::{check_coordinator, check_group_id, error_reply};
use super::{Reply, Started, limits};
use crate::broker::Broker;
use crate::config::COMMIT_DURABLE_WAIT_MS_MAX;
use crate::group::engine::{CommitOutcome, Committer, TopicPartition};
use crate::group::service::OffsetCommit;

pub fn handle(broker: &Arc<Broker>, request: OffsetCommitRequest) -> Started {
    if let Err(reply) = check_group_id(&request.group_id) {
        return reply.into();
    }
    if let Err(reply) = check_coordinator(broker, &request.group_id) {
        return reply.into();
    }
    // Before `to_commit`, which copies the topic name into every partition's entry: with
    // at most `request_partitions_max` names of at most 249 bytes.
    if let Err(refusal) = limits::check_topic_partitions(&broker.config, &request.topics) {
        return refusal.into();
    }
    let commit = match to_commit(&request) {
        Ok(commit) => commit,
        Err(reply) => return reply.into(),
    };
    let pending = match broker.groups.commit(&commit, &broker.cluster.image()) {
        Ok(pending) => pending,
        Err(error) => return error_reply(&error).into(),
    };
    let deadline = Instant::now() + Duration::from_millis(COMMIT_DURABLE_WAIT_MS_MAX);
    Started::Waiting(Box::pin(async move {
        match pending.durable(deadline).await {
            Ok(outcomes) => response(&request, &outcomes),
            Err(error) => error_reply(&error),
        }
    }))
}

fn response(
    request: &OffsetCommitRequest,
    outcomes: &BTreeMap<TopicPartition, CommitOutcome>,
) -> Reply {
    OffsetCommitResponse {
        topics: request
            .topics
            .iter()
            .map(|topic| OffsetCommitTopicResponse {
                name: topic.name.clone(),
                partitions: topic
                    .partitions
                    .iter()
                    .map(|partition| PartitionResult {
                        partition: partition.partition,
                        error_code: outcomes
                            .get(&TopicPartition::new(&topic.name, partition.partition))
                            .map_or(ErrorCode::Unknown, |outcome| code(*outcome)),
                    })
                    .collect(),
            })
            .collect(),
    }
    .into()
}

/// An empty member id is an administrator's commit, which must carry
/// [`ADMIN_COMMIT_EPOCH`].
fn to_commit(request: &OffsetCommitRequest) -> Result<OffsetCommit, Reply> {
    let committer = if request.member_id.is_empty() {
        if request.member_epoch != ADMIN_COMMIT_EPOCH {
            return Err(Reply::Error(
                ErrorCode::InvalidRequest,
                format!(
                    "a commit without a member id must use epoch {ADMIN_COMMIT_EPOCH}, not {}",
                    request.member_epoch
                ),
            ));
        }
        Committer::Admin
    } else {
        Committer::Member {
            member_id: request.member_id.clone(),
            member_epoch: request.member_epoch,
        }
    };
    let offsets = request
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|partition| {
                (
                    TopicPartition::new(&topic.name, partition.partition),
                    partition.offset,
                    partition.metadata.clone(),
                )
            })
        })
        .collect();
    Ok(OffsetCommit {
        group_id: request.group_id.clone(),
        committer,
        offsets,
    })
}

fn code(outcome: CommitOutcome) -> ErrorCode {
    match outcome {
        CommitOutcome::Committed => ErrorCode::None,
        CommitOutcome::NotAssigned => ErrorCode::PartitionNotAssigned,
        CommitOutcome::MetadataTooLong => ErrorCode::LimitExceeded,
        CommitOutcome::OffsetOutOfRange => ErrorCode::OffsetOutOfRange,
        CommitOutcome::UnknownPartition => ErrorCode::UnknownTopicOrPartition,
    }
}

#[cfg(test)]
mod tests {
    use strata_protocol::messages::{OffsetCommitPartition, OffsetCommitTopic};

    use super::*;

    fn request(member_id: &str, member_epoch: i32) -> OffsetCommitRequest {
        OffsetCommitRequest {
            group_id: "g".into(),
            member_id: member_id.into(),
            member_epoch,
            topics: vec![OffsetCommitTopic {
                name: "t".into(),
                partitions: vec![OffsetCommitPartition {
                    partition: 0,
                    offset: 3,
                    metadata: None,
                }],
            }],
        }
    }

    #[test]
    fn an_admin_commit_needs_the_admin_epoch() {
        let Err(Reply::Error(code, _)) = to_commit(&request("", 4)) else {
            panic!("accepted");
        };
        assert_eq!(code, ErrorCode::InvalidRequest);
        let admin = to_commit(&request("", ADMIN_COMMIT_EPOCH)).expect("accepted");
        assert_eq!(admin.committer, Committer::Admin);
        assert_eq!(admin.offsets, [(TopicPartition::new("t", 0), 3, None)]);
        let member = to_commit(&request("m", 4)).expect("accepted");
        assert_eq!(
            member.committer,
            Committer::Member {
                member_id: "m".into(),
                member_epoch: 4
            }
        );
    }

    #[test]
    fn each_outcome_keeps_its_wire_code() {
        assert_eq!(code(CommitOutcome::Committed), ErrorCode::None);
        assert_eq!(
            code(CommitOutcome::NotAssigned),
            ErrorCode::PartitionNotAssigned
        );
        assert_eq!(
            code(CommitOutcome::MetadataTooLong),
            ErrorCode::LimitExceeded
        );
        assert_eq!(
            code(CommitOutcome::OffsetOutOfRange),
            ErrorCode::OffsetOutOfRange
        );
        assert_eq!(
            code(CommitOutcome::UnknownPartition),
            ErrorCode::UnknownTopicOrPartition
        );
    }
}
