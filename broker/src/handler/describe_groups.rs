//! DescribeGroups: members, assignment, committed offsets and lag against each
//! partition's high watermark. A group named more than once is described once.

use strata_protocol::ErrorCode;
use strata_protocol::messages::{
    DescribeGroupsRequest, DescribeGroupsResponse, DescribedGroup, GroupMember,
    GroupOffsetPartition, GroupOffsetTopic, NO_OFFSET,
};

use super::groups::{not_coordinated, to_topic_partitions};
use super::{Reply, limits};
use crate::broker::Broker;
use crate::group::engine::MemberDescription;
use crate::group::service::{GroupReport, PartitionLag};

pub fn handle(broker: &Broker, request: DescribeGroupsRequest) -> Reply {
    if let Err(refusal) =
        limits::check_group_count(&broker.config, request.group_ids.len(), "group ids")
    {
        return refusal;
    }
    let group_ids = limits::distinct(request.group_ids);
    let reports = broker.groups.describe(&group_ids, &broker.topics);
    let groups = group_ids
        .iter()
        .zip(reports)
        .map(
            |(group_id, report)| match (not_coordinated(broker, group_id), report) {
                (Some(_), _) => refused(group_id, ErrorCode::NotCoordinator),
                (None, Some(report)) => described(group_id, report),
                (None, None) => refused(group_id, ErrorCode::GroupIdNotFound),
            },
        )
        .collect();
    DescribeGroupsResponse { groups }.into()
}

fn refused(group_id: &str, error_code: ErrorCode) -> DescribedGroup {
    DescribedGroup {
        group_id: group_id.to_owned(),
        error_code,
        state: String::new(),
        group_epoch: 0,
        assignment_epoch: 0,
        assignor: String::new(),
        members: Vec::new(),
        offsets: Vec::new(),
    }
}

fn described(group_id: &str, report: GroupReport) -> DescribedGroup {
    let group = report.group;
    DescribedGroup {
        group_id: group_id.to_owned(),
        error_code: ErrorCode::None,
        state: group.state.name().to_owned(),
        group_epoch: group.group_epoch,
        assignment_epoch: group.assignment_epoch,
        assignor: group.assignor.name().to_owned(),
        members: group.members.iter().map(member).collect(),
        offsets: group_by_topic(report.partitions),
    }
}

fn member(member: &MemberDescription) -> GroupMember {
    GroupMember {
        member_id: member.member_id.clone(),
        instance_id: member.instance_id.clone(),
        client_id: member.client_id.clone(),
        client_host: member.client_host.clone(),
        member_epoch: member.member_epoch,
        subscribed_topics: member.subscribed_topics.clone(),
        assignment: to_topic_partitions(member.assigned.iter()),
        pending_revocation: to_topic_partitions(member.pending_revocation.iter()),
        target_assignment: to_topic_partitions(member.target.iter()),
    }
}

/// Sorted partitions as one entry per run of the same topic.
fn group_by_topic(partitions: Vec<PartitionLag>) -> Vec<GroupOffsetTopic> {
    let mut out: Vec<GroupOffsetTopic> = Vec::new();
    for lag in partitions {
        let partition = GroupOffsetPartition {
            partition: lag.tp.partition,
            committed_offset: or_no_offset(lag.committed_offset),
            high_watermark: or_no_offset(lag.high_watermark),
            lag: or_no_offset(lag.lag),
            owner: lag.owner,
        };
        match out.last_mut() {
            Some(last) if last.name == lag.tp.topic => last.partitions.push(partition),
            _ => out.push(GroupOffsetTopic {
                name: lag.tp.topic,
                partitions: vec![partition],
            }),
        }
    }
    out
}

fn or_no_offset(offset: Option<u64>) -> i64 {
    offset.map_or(NO_OFFSET, |offset| offset as i64)
}
