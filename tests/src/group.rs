//! Consumer group requests built by hand, for tests that play a group member or an
//! administrator over the raw protocol.

use std::collections::BTreeSet;

use strata_protocol::messages::*;
use strata_protocol::{ErrorCode, Response};

use crate::Client;

/// The partitions a member owns, as (topic, partition).
pub type Owned = BTreeSet<(String, u32)>;

fn flatten(topics: &[TopicPartitions]) -> Owned {
    topics
        .iter()
        .flat_map(|topic| topic.partitions.iter().map(|p| (topic.topic.clone(), *p)))
        .collect()
}

fn unflatten(owned: &Owned) -> Vec<TopicPartitions> {
    let mut out: Vec<TopicPartitions> = Vec::new();
    for (topic, partition) in owned {
        match out.last_mut() {
            Some(last) if &last.topic == topic => last.partitions.push(*partition),
            _ => out.push(TopicPartitions {
                topic: topic.clone(),
                partitions: vec![*partition],
            }),
        }
    }
    out
}

/// `topic`'s partitions in `range`.
pub fn partitions_of(topic: &str, range: std::ops::Range<u32>) -> Owned {
    range.map(|p| (topic.to_owned(), p)).collect()
}

/// A heartbeat reporting `owned`. It names `topics` only at [`JOIN_EPOCH`], as a
/// client does; a test that wants a malformed one changes fields of this.
pub fn heartbeat_request(
    group: &str,
    member_id: &str,
    member_epoch: i32,
    topics: &[String],
    owned: &Owned,
) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest {
        group_id: group.into(),
        member_id: member_id.into(),
        member_epoch,
        instance_id: None,
        subscribed_topics: (member_epoch == JOIN_EPOCH).then(|| topics.to_vec()),
        assignor: None,
        owned_partitions: Some(unflatten(owned)),
        leaving_epoch: 0,
    }
}

/// A commit of one partition's `offset`; [`ADMIN_COMMIT_EPOCH`] with an empty
/// `member_id` makes it an administrator's.
pub fn commit_request(
    group: &str,
    member_id: &str,
    member_epoch: i32,
    (topic, partition): (&str, u32),
    offset: u64,
) -> OffsetCommitRequest {
    OffsetCommitRequest {
        group_id: group.into(),
        member_id: member_id.into(),
        member_epoch,
        topics: vec![OffsetCommitTopic {
            name: topic.into(),
            partitions: vec![OffsetCommitPartition {
                partition,
                offset,
                metadata: None,
            }],
        }],
    }
}

/// One group member speaking the heartbeat protocol by hand, on its own connection.
#[derive(Debug)]
pub struct Member {
    /// Its connection (replace it after a broker restart).
    pub client: Client,
    group: String,
    topics: Vec<String>,
    instance_id: Option<String>,
    /// Its id, given by the coordinator at the join.
    pub member_id: String,
    /// The epoch its next heartbeat and commit carry.
    pub epoch: i32,
    /// What its next heartbeat reports it owns.
    pub owned: Owned,
}

impl Member {
    /// Connects and joins `group` subscribed to `topics`, as a static member if
    /// `instance_id`; `owned` is the first assignment.
    ///
    /// # Panics
    /// If the join fails.
    pub async fn join(
        address: &str,
        group: &str,
        topics: &[&str],
        instance_id: Option<&str>,
    ) -> Self {
        let mut member = Self {
            client: Client::connect(address).await,
            group: group.into(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            instance_id: instance_id.map(str::to_owned),
            member_id: String::new(),
            epoch: JOIN_EPOCH,
            owned: Owned::new(),
        };
        let assignment = member.heartbeat().await.expect("join");
        member.owned = assignment;
        member
    }

    fn request(&self, epoch: i32) -> ConsumerGroupHeartbeatRequest {
        ConsumerGroupHeartbeatRequest {
            instance_id: self.instance_id.clone(),
            ..heartbeat_request(
                &self.group,
                &self.member_id,
                epoch,
                &self.topics,
                &self.owned,
            )
        }
    }

    /// Heartbeats reporting `self.owned`; returns the assignment without adopting it.
    ///
    /// # Errors
    /// The whole-request error the coordinator answered with.
    pub async fn heartbeat(&mut self) -> Result<Owned, (ErrorCode, String)> {
        let request = self.request(self.epoch);
        match self.client.try_call(request).await? {
            Response::ConsumerGroupHeartbeat(reply) => {
                self.member_id = reply.member_id;
                self.epoch = reply.member_epoch;
                Ok(flatten(&reply.assignment.expect("full assignment")))
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Heartbeats and adopts whatever the reply says the member may own (confirming any
    /// revocation on the next call).
    ///
    /// # Panics
    /// If the heartbeat fails.
    pub async fn sync(&mut self) -> Owned {
        let assignment = self.heartbeat().await.expect("heartbeat");
        self.owned = assignment.clone();
        assignment
    }

    /// Leaves with `epoch` ([`LEAVE_EPOCH`], or [`STATIC_LEAVE_EPOCH`] for a static
    /// member that will be back), carrying the member's epoch.
    ///
    /// # Panics
    /// If the leave fails.
    pub async fn leave(&mut self, epoch: i32) {
        self.try_leave(epoch).await.expect("leave");
    }

    /// Leaves with `epoch` as [`leave`](Self::leave) does.
    ///
    /// # Errors
    /// The whole-request error the coordinator answered with.
    pub async fn try_leave(&mut self, epoch: i32) -> Result<(), (ErrorCode, String)> {
        let request = ConsumerGroupHeartbeatRequest {
            leaving_epoch: self.epoch,
            ..self.request(epoch)
        };
        self.client.try_call(request).await.map(drop)
    }

    /// Commits one partition's `offset` as this member; returns the partition's code.
    ///
    /// # Errors
    /// The whole-request error the coordinator answered with.
    pub async fn commit(
        &mut self,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> Result<ErrorCode, (ErrorCode, String)> {
        let request = commit_request(
            &self.group,
            &self.member_id,
            self.epoch,
            (topic, partition),
            offset,
        );
        match self.client.try_call(request).await? {
            Response::OffsetCommit(reply) => Ok(reply.topics[0].partitions[0].error_code),
            other => panic!("unexpected {other:?}"),
        }
    }
}

impl Client {
    /// `group`'s committed offsets of `topic`'s first `partitions` partitions.
    ///
    /// # Panics
    /// If the request fails as a whole.
    pub async fn committed(&mut self, group: &str, topic: &str, partitions: u32) -> Vec<i64> {
        let Response::OffsetFetch(reply) = self
            .call(OffsetFetchRequest {
                group_id: group.into(),
                topics: Some(vec![TopicPartitions {
                    topic: topic.into(),
                    partitions: (0..partitions).collect(),
                }]),
            })
            .await
        else {
            panic!("wrong response type")
        };
        reply.topics[0]
            .partitions
            .iter()
            .map(|p| p.offset)
            .collect()
    }

    /// Describes `group`.
    ///
    /// # Panics
    /// If the request fails as a whole.
    pub async fn describe_group(&mut self, group: &str) -> DescribedGroup {
        let Response::DescribeGroups(mut reply) = self
            .call(DescribeGroupsRequest {
                group_ids: vec![group.into()],
            })
            .await
        else {
            panic!("wrong response type")
        };
        reply.groups.remove(0)
    }
}
