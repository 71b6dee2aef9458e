//! The engine driven like the broker drives it, checked after every call; the unit tests
//! beside each part of the engine use it. The property tests, one file per invariant,
//! drive it from random operations ([`model`]).

mod converges;
mod model;
mod no_two_owners;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::*;
use crate::group::records::{GroupValue, MemberValue, OffsetValue};

/// Asserts that `$result` is an error matching `$pattern`.
macro_rules! assert_refused {
    ($result:expr, $pattern:pat) => {
        match $result {
            Err($pattern) => {}
            other => panic!("expected {}, got {other:?}", stringify!($pattern)),
        }
    };
}
pub(super) use assert_refused;

/// The epoch a reply gives a member that stays in the group.
pub(super) fn epoch(reply: &HeartbeatReply) -> i32 {
    match reply.member_epoch {
        MemberEpoch::Current(epoch) => epoch,
        other => panic!("{} left the group: {other:?}", reply.member_id),
    }
}

pub(super) const SESSION: Duration = Duration::from_secs(10);
pub(super) const REBALANCE: Duration = Duration::from_secs(20);
pub(super) const MEMBERS_MAX: usize = 6;
pub(super) const GROUP: &str = "g";

pub(super) fn config() -> GroupConfig {
    GroupConfig {
        session_timeout: SESSION,
        heartbeat_interval: Duration::from_secs(1),
        rebalance_timeout: REBALANCE,
        members_max: MEMBERS_MAX,
    }
}

pub(super) fn tp(topic: &str, partition: u32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

type Persisted = BTreeMap<
    String,
    (
        GroupValue,
        BTreeMap<String, MemberValue>,
        BTreeMap<TopicPartition, OffsetValue>,
    ),
>;

/// Everything that records persist, to compare a coordinator with its replay.
fn persisted(coordinator: &Coordinator) -> Persisted {
    coordinator
        .groups
        .iter()
        .map(|(group_id, group)| {
            let members = group
                .members
                .iter()
                .map(|(member_id, member)| (member_id.clone(), member.value.clone()))
                .collect();
            (
                group_id.clone(),
                (group.value.clone(), members, group.offsets.clone()),
            )
        })
        .collect()
}

/// Drives one coordinator like the broker does, keeping every record it emitted, and
/// checks the invariants after every call.
pub(super) struct Harness {
    pub(super) coordinator: Coordinator,
    pub(super) records: Vec<Record>,
    pub(super) now: Instant,
    pub(super) topics: BTreeMap<String, u32>,
    minted: u32,
}

impl Harness {
    pub(super) fn new(topics: &[(&str, u32)]) -> Self {
        Self {
            coordinator: Coordinator::new(config()),
            records: Vec::new(),
            now: Instant::now(),
            topics: topics
                .iter()
                .map(|(topic, count)| ((*topic).to_owned(), *count))
                .collect(),
            minted: 0,
        }
    }

    pub(super) fn request(&mut self, member_id: &str, member_epoch: MemberEpoch) -> Heartbeat {
        self.minted += 1;
        Heartbeat {
            group_id: GROUP.to_owned(),
            member_id: member_id.to_owned(),
            member_epoch,
            leaving_epoch: 0,
            instance_id: None,
            subscribed_topics: None,
            assignor: None,
            owned: None,
            client_id: "client".to_owned(),
            client_host: "127.0.0.1".to_owned(),
            new_member_id: format!("m{:03}", self.minted),
        }
    }

    pub(super) fn send(&mut self, request: Heartbeat) -> Result<HeartbeatReply, GroupError> {
        let topics = self.topics.clone();
        let lookup = move |topic: &str| topics.get(topic).copied();
        let reply = self
            .coordinator
            .heartbeat(request, &lookup, self.now, &mut self.records);
        if let Ok(reply) = &reply {
            self.check_reply(reply);
        }
        self.check();
        reply
    }

    pub(super) fn join_with(
        &mut self,
        instance_id: Option<&str>,
        topics: &[&str],
    ) -> Result<HeartbeatReply, GroupError> {
        let mut request = self.request("", MemberEpoch::Join);
        request.instance_id = instance_id.map(str::to_owned);
        request.subscribed_topics = Some(topics.iter().map(|t| (*t).to_owned()).collect());
        self.send(request)
    }

    pub(super) fn join(&mut self, topics: &[&str]) -> HeartbeatReply {
        self.join_with(None, topics).expect("joins")
    }

    /// A heartbeat that reports owning exactly what the last reply gave.
    pub(super) fn ack(&mut self, last: &HeartbeatReply) -> HeartbeatReply {
        let mut request = self.request(&last.member_id, last.member_epoch);
        request.owned = Some(last.assignment.clone());
        self.send(request).expect("an accepted heartbeat")
    }

    /// A leave at the member's current epoch.
    pub(super) fn leave(&mut self, member_id: &str, epoch: MemberEpoch) -> HeartbeatReply {
        let mut request = self.request(member_id, epoch);
        request.leaving_epoch = self.member(member_id).member_epoch;
        self.send(request).expect("leaves")
    }

    /// A member's commit at `member_epoch`.
    pub(super) fn commit(
        &mut self,
        group_id: &str,
        member_id: &str,
        member_epoch: i32,
        offsets: &[(TopicPartition, u64)],
    ) -> Result<Vec<(TopicPartition, CommitOutcome)>, GroupError> {
        let committer = Committer::Member {
            member_id: member_id.to_owned(),
            member_epoch,
        };
        self.commit_as(group_id, &committer, offsets)
    }

    /// An administrator's commit.
    pub(super) fn admin_commit(
        &mut self,
        group_id: &str,
        offsets: &[(TopicPartition, u64)],
    ) -> Result<Vec<(TopicPartition, CommitOutcome)>, GroupError> {
        self.commit_as(group_id, &Committer::Admin, offsets)
    }

    fn commit_as(
        &mut self,
        group_id: &str,
        committer: &Committer,
        offsets: &[(TopicPartition, u64)],
    ) -> Result<Vec<(TopicPartition, CommitOutcome)>, GroupError> {
        let offsets: Vec<_> = offsets
            .iter()
            .map(|(tp, offset)| (tp.clone(), *offset, None))
            .collect();
        let mut records = Vec::new();
        let result = self
            .coordinator
            .commit(group_id, committer, &offsets, 1_000, &mut records);
        assert!(
            result.is_ok() || records.is_empty(),
            "no records on failure"
        );
        for record in records {
            self.records.push(record.clone());
            self.coordinator.replay(record, self.now);
        }
        self.check();
        result
    }

    pub(super) fn advance(&mut self, by: Duration) {
        self.now += by;
        self.coordinator.expire(self.now, &mut self.records);
        assert!(
            self.coordinator
                .next_deadline()
                .is_none_or(|deadline| deadline > self.now),
            "expire leaves nothing due"
        );
        self.check();
    }

    pub(super) fn describe(&self) -> GroupDescription {
        self.coordinator.describe(GROUP).expect("the group exists")
    }

    pub(super) fn member(&self, member_id: &str) -> MemberDescription {
        self.describe()
            .members
            .into_iter()
            .find(|member| member.member_id == member_id)
            .expect("a member")
    }

    /// A reply never hands out a partition that another member owns.
    fn check_reply(&self, reply: &HeartbeatReply) {
        if let Some(group) = self.coordinator.describe(GROUP) {
            for tp in &reply.assignment {
                let owner = group.owner(tp);
                assert_eq!(
                    owner,
                    Some(reply.member_id.as_str()),
                    "{tp} is owned by {owner:?}"
                );
            }
        }
    }

    /// No partition has two owners, and replaying every record (through its bytes)
    /// rebuilds the same persisted state.
    pub(super) fn check(&self) {
        for group in self.coordinator.groups.values() {
            assert!(group.owners_are_unique());
        }
        let mut replayed = Coordinator::new(config());
        for record in &self.records {
            let value = record.value();
            let decoded = Record::decode(&record.key(), value.as_deref()).expect("decodes");
            assert_eq!(&decoded, record);
            replayed.replay(decoded, self.now);
        }
        assert_eq!(persisted(&replayed), persisted(&self.coordinator));
        assert_eq!(replayed.list_groups(), self.coordinator.list_groups());
        for summary in self.coordinator.list_groups() {
            assert_eq!(
                replayed.describe(&summary.group_id),
                self.coordinator.describe(&summary.group_id)
            );
        }
    }

    /// Acks every reply until nothing changes; returns the final replies.
    pub(super) fn settle(&mut self, replies: Vec<HeartbeatReply>) -> Vec<HeartbeatReply> {
        let mut replies = replies;
        for _ in 0..10 {
            replies = replies.iter().map(|reply| self.ack(reply)).collect();
        }
        replies
    }
}

pub(super) fn loads(group: &GroupDescription) -> Vec<usize> {
    group
        .members
        .iter()
        .map(|member| member.assigned.len())
        .collect()
}

pub(super) fn assert_stable(group: &GroupDescription) {
    assert_eq!(group.state, GroupState::Stable, "{group:#?}");
    for member in &group.members {
        assert_eq!(member.assigned, member.target);
        assert!(member.pending_revocation.is_empty());
        assert_eq!(member.member_epoch, group.assignment_epoch);
    }
}
