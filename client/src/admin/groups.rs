//! Consumer group administration: listing, describing (members, offsets, lag),
//! deleting, and resetting committed offsets.

use std::collections::BTreeMap;
use std::time::Duration;

use strata_protocol::messages::{
    ADMIN_COMMIT_EPOCH, DeleteGroupsRequest, DescribeGroupsRequest, DescribedGroup,
    EARLIEST_TIMESTAMP, LATEST_TIMESTAMP, ListGroupsRequest, TopicPartitions,
};
use strata_protocol::{Request, Response};

use super::Admin;
use crate::cluster::unexpected;
use crate::coordinator::{Coordinator, from_wire};
use crate::error::{Error, Result};
use crate::record::TopicPartition;

/// One group, as [`Admin::list_groups`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// The group id.
    pub group_id: String,
    /// `empty`, `reconciling` or `stable` (see [`GroupDescription::state`]).
    pub state: String,
    /// How many members it has.
    pub member_count: u32,
}

/// A group's state, members and offsets, from [`Admin::describe_group`].
///
/// # Example
/// ```no_run
/// # async fn example(admin: strata_client::Admin) -> strata_client::Result<()> {
/// let group = admin.describe_group("billing").await?;
/// println!("{} is {} with {} members", group.group_id, group.state, group.members.len());
/// for offset in &group.offsets {
///     println!("{}-{} lag {:?} owner {:?}", offset.topic, offset.partition, offset.lag, offset.owner);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// The group id.
    pub group_id: String,
    /// `empty` (no members), `reconciling` (members are moving towards the target
    /// assignment: some partitions await their revocation or their new owner) or
    /// `stable`.
    pub state: String,
    /// Bumped whenever membership, subscriptions or subscribed topics change.
    pub group_epoch: i32,
    /// The group epoch the target assignment was computed for.
    pub assignment_epoch: i32,
    /// `uniform` or `range`.
    pub assignor: String,
    /// The members, sorted by member id.
    pub members: Vec<GroupMemberDescription>,
    /// Committed offsets and lag of every partition the group committed, owns or
    /// subscribes to, sorted by topic and partition.
    pub offsets: Vec<GroupPartitionOffset>,
}

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMemberDescription {
    /// The member id.
    pub member_id: String,
    /// The static instance id, if any.
    pub instance_id: Option<String>,
    /// The client id the member's requests carry.
    pub client_id: String,
    /// The address the member connects from.
    pub client_host: String,
    /// The member's epoch.
    pub member_epoch: i32,
    /// The topics it subscribes to.
    pub subscribed_topics: Vec<String>,
    /// The partitions it owns, sorted.
    pub assignment: Vec<TopicPartition>,
    /// Owned partitions it was asked to give up and has not confirmed yet, sorted.
    pub pending_revocation: Vec<TopicPartition>,
    /// The partitions the target assignment gives it, sorted.
    pub target_assignment: Vec<TopicPartition>,
}

/// One partition's committed offset and lag in a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPartitionOffset {
    /// The topic.
    pub topic: String,
    /// The partition index.
    pub partition: u32,
    /// The committed offset (the next record the group reads), if any.
    pub committed: Option<u64>,
    /// The partition's high watermark, or `None` if it no longer exists.
    pub high_watermark: Option<u64>,
    /// `high_watermark - committed`, or `None` when either is missing.
    pub lag: Option<u64>,
    /// The member id of the partition's owner, if any.
    pub owner: Option<String>,
}

impl GroupDescription {
    fn from_wire(group: DescribedGroup) -> Result<Self> {
        if !group.error_code.is_ok() {
            return Err(Error::group(&group.group_id, group.error_code, None));
        }
        let sorted = |topics: &[TopicPartitions]| from_wire(topics).into_iter().collect::<Vec<_>>();
        let members = group
            .members
            .into_iter()
            .map(|member| GroupMemberDescription {
                assignment: sorted(&member.assignment),
                pending_revocation: sorted(&member.pending_revocation),
                target_assignment: sorted(&member.target_assignment),
                member_id: member.member_id,
                instance_id: member.instance_id,
                client_id: member.client_id,
                client_host: member.client_host,
                member_epoch: member.member_epoch,
                subscribed_topics: member.subscribed_topics,
            })
            .collect();
        let mut offsets: Vec<GroupPartitionOffset> = group
            .offsets
            .into_iter()
            .flat_map(|topic| {
                let name = topic.name;
                topic
                    .partitions
                    .into_iter()
                    .map(move |partition| GroupPartitionOffset {
                        topic: name.clone(),
                        partition: partition.partition,
                        committed: u64::try_from(partition.committed_offset).ok(),
                        high_watermark: u64::try_from(partition.high_watermark).ok(),
                        lag: u64::try_from(partition.lag).ok(),
                        owner: partition.owner,
                    })
            })
            .collect();
        offsets.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(Self {
            group_id: group.group_id,
            state: group.state,
            group_epoch: group.group_epoch,
            assignment_epoch: group.assignment_epoch,
            assignor: group.assignor,
            members,
            offsets,
        })
    }
}

/// Which offset [`Admin::list_offsets`] looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The high watermark: the offset the next record will get.
    Latest,
    /// The first record with a timestamp at or after this many ms since the Unix epoch.
    Timestamp(i64),
}

impl Admin {
    fn coordinator(&self, group_id: &str) -> Result<Coordinator> {
        Coordinator::new(group_id, self.backoff)
    }

    /// Every consumer group, sorted by id. Each broker lists the groups it
    /// coordinates, so every live broker is asked.
    ///
    /// # Errors
    /// Connection errors; the first broker's error.
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>> {
        let metadata = self.cluster.fetch_metadata(Some(Vec::new())).await?;
        let request = Request::ListGroups(ListGroupsRequest {
            states_filter: Vec::new(),
        });
        let mut groups = BTreeMap::new();
        for broker in &metadata.brokers {
            let connection = self
                .cluster
                .connection(&format!("{}:{}", broker.host, broker.port))
                .await?;
            let response = match connection.call(&request, Duration::ZERO).await? {
                Response::ListGroups(response) => response,
                other => return Err(unexpected(&other)),
            };
            for group in response.groups {
                groups.insert(
                    group.group_id.clone(),
                    GroupListing {
                        group_id: group.group_id,
                        state: group.state,
                        member_count: group.member_count,
                    },
                );
            }
        }
        Ok(groups.into_values().collect())
    }

    /// Describes groups; each succeeds or fails on its own.
    ///
    /// # Errors
    /// Per group: [`Error::UnknownGroup`], an invalid id, connection errors.
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub async fn describe_groups(
        &self,
        group_ids: &[&str],
    ) -> Vec<(String, Result<GroupDescription>)> {
        let mut results = Vec::new();
        for group_id in group_ids {
            results.push(((*group_id).to_owned(), self.describe_group(group_id).await));
        }
        results
    }

    /// Describes one group: state, epochs, members with their assignments, and per
    /// partition the committed offset, high watermark, lag and owner.
    ///
    /// # Errors
    /// [`Error::UnknownGroup`]; [`Error::InvalidConfig`] for an invalid id; connection
    /// errors.
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub async fn describe_group(&self, group_id: &str) -> Result<GroupDescription> {
        let coordinator = self.coordinator(group_id)?;
        let request = Request::DescribeGroups(DescribeGroupsRequest {
            group_ids: vec![group_id.to_owned()],
        });
        let response = match coordinator.call(&self.cluster, &request).await {
            Ok(Response::DescribeGroups(response)) => response,
            Ok(other) => return Err(unexpected(&other)),
            Err(error) => return Err(coordinator.error(error)),
        };
        match response.groups.into_iter().next() {
            Some(group) => GroupDescription::from_wire(group),
            None => Err(Error::Protocol {
                address: String::new(),
                reason: format!("DescribeGroups answered without group '{group_id}'"),
            }),
        }
    }

    /// Deletes groups without members, with their committed offsets; each succeeds or
    /// fails on its own.
    ///
    /// # Errors
    /// Per group: [`Error::NonEmptyGroup`] while it has members,
    /// [`Error::UnknownGroup`], connection errors.
    ///
    /// # Cancel safety
    /// Not cancel-safe: a group may be deleted even if the future is dropped.
    pub async fn delete_groups(&self, group_ids: &[&str]) -> Vec<(String, Result<()>)> {
        let mut results = Vec::new();
        for group_id in group_ids {
            results.push(((*group_id).to_owned(), self.delete_group(group_id).await));
        }
        results
    }

    /// Deletes one group without members, with its committed offsets.
    ///
    /// # Errors
    /// As for [`delete_groups`](Self::delete_groups).
    ///
    /// # Cancel safety
    /// Not cancel-safe.
    pub async fn delete_group(&self, group_id: &str) -> Result<()> {
        let coordinator = self.coordinator(group_id)?;
        let request = Request::DeleteGroups(DeleteGroupsRequest {
            group_ids: vec![group_id.to_owned()],
        });
        let response = match coordinator.call(&self.cluster, &request).await {
            Ok(Response::DeleteGroups(response)) => response,
            Ok(other) => return Err(unexpected(&other)),
            Err(error) => return Err(coordinator.error(error)),
        };
        match response.groups.into_iter().next() {
            Some(result) if result.error_code.is_ok() => Ok(()),
            Some(result) => Err(Error::group(
                group_id,
                result.error_code,
                result.error_message,
            )),
            None => Err(Error::Protocol {
                address: String::new(),
                reason: format!("DeleteGroups answered without group '{group_id}'"),
            }),
        }
    }

    /// The group's committed offsets, sorted by partition. A group that never
    /// committed has none.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an invalid id; connection errors.
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub async fn group_offsets(&self, group_id: &str) -> Result<Vec<(TopicPartition, u64)>> {
        let coordinator = self.coordinator(group_id)?;
        let offsets = coordinator.fetch_offsets(&self.cluster, None).await?;
        Ok(offsets.into_iter().collect())
    }

    /// Sets the group's committed offsets, for a group without live members (its
    /// consumers then start from these offsets). Partitions not listed keep theirs.
    ///
    /// # Errors
    /// [`Error::NonEmptyGroup`] while the group has members; a partition's error;
    /// connection errors.
    ///
    /// # Cancel safety
    /// Not cancel-safe: the offsets may be committed even if the future is dropped.
    pub async fn reset_group_offsets(
        &self,
        group_id: &str,
        offsets: &[(TopicPartition, u64)],
    ) -> Result<()> {
        let coordinator = self.coordinator(group_id)?;
        let offsets: BTreeMap<TopicPartition, u64> = offsets.iter().cloned().collect();
        coordinator
            .commit(&self.cluster, "", ADMIN_COMMIT_EPOCH, &offsets)
            .await
    }

    /// Looks up an offset of each partition: its log start, its high watermark, or
    /// the first offset at or after a time (`None` if no record is that recent).
    ///
    /// # Errors
    /// The first partition's error (unknown topic or partition, no leader, ...).
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub async fn list_offsets(
        &self,
        partitions: &[TopicPartition],
        spec: OffsetSpec,
    ) -> Result<Vec<(TopicPartition, Option<u64>)>> {
        let timestamp = match spec {
            OffsetSpec::Earliest => EARLIEST_TIMESTAMP,
            OffsetSpec::Latest => LATEST_TIMESTAMP,
            OffsetSpec::Timestamp(timestamp) if timestamp < 0 => {
                return Err(Error::InvalidConfig(format!(
                    "timestamp {timestamp} is before the Unix epoch"
                )));
            }
            OffsetSpec::Timestamp(timestamp) => timestamp,
        };
        let mut found = Vec::new();
        for (tp, offset) in self
            .cluster
            .list_offsets(partitions, timestamp, self.backoff)
            .await
        {
            match offset {
                Ok(offset) => found.push((tp, Some(offset))),
                Err(Error::NoOffsetFound) => found.push((tp, None)),
                Err(error) => return Err(error),
            }
        }
        found.sort();
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use strata_protocol::ErrorCode;
    use strata_protocol::messages::{
        GroupMember, GroupOffsetPartition, GroupOffsetTopic, NO_OFFSET,
    };

    use super::*;

    #[test]
    fn a_described_group_turns_missing_offsets_into_none() {
        let group = DescribedGroup {
            group_id: "g".into(),
            error_code: ErrorCode::None,
            state: "stable".into(),
            group_epoch: 4,
            assignment_epoch: 4,
            assignor: "uniform".into(),
            members: vec![GroupMember {
                member_id: "m1".into(),
                instance_id: None,
                client_id: "c".into(),
                client_host: "127.0.0.1".into(),
                member_epoch: 4,
                subscribed_topics: vec!["t".into()],
                assignment: vec![TopicPartitions {
                    topic: "t".into(),
                    partitions: vec![1, 0],
                }],
                pending_revocation: Vec::new(),
                target_assignment: Vec::new(),
            }],
            offsets: vec![GroupOffsetTopic {
                name: "t".into(),
                partitions: vec![
                    GroupOffsetPartition {
                        partition: 1,
                        committed_offset: NO_OFFSET,
                        high_watermark: 9,
                        lag: NO_OFFSET,
                        owner: None,
                    },
                    GroupOffsetPartition {
                        partition: 0,
                        committed_offset: 5,
                        high_watermark: 9,
                        lag: 4,
                        owner: Some("m1".into()),
                    },
                ],
            }],
        };
        let description = GroupDescription::from_wire(group).unwrap();
        assert_eq!(
            description.members[0].assignment,
            [TopicPartition::new("t", 0), TopicPartition::new("t", 1)]
        );
        let first = &description.offsets[0];
        assert_eq!(
            (first.partition, first.committed, first.lag),
            (0, Some(5), Some(4))
        );
        let second = &description.offsets[1];
        assert_eq!(
            (second.committed, second.high_watermark, second.lag),
            (None, Some(9), None)
        );
    }

    #[test]
    fn group_errors_get_their_own_variants() {
        let missing = DescribedGroup {
            group_id: "g".into(),
            error_code: ErrorCode::GroupIdNotFound,
            state: String::new(),
            group_epoch: 0,
            assignment_epoch: 0,
            assignor: String::new(),
            members: Vec::new(),
            offsets: Vec::new(),
        };
        let error = GroupDescription::from_wire(missing).unwrap_err();
        assert_eq!(error.to_string(), "consumer group 'g' does not exist");
        let busy = Error::group("g", ErrorCode::NonEmptyGroup, None);
        assert_eq!(
            busy.to_string(),
            "group 'g' has live members; stop its consumers first"
        );
        assert_eq!(busy.code(), Some(ErrorCode::NonEmptyGroup));
    }
}
