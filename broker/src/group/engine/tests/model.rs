//! A model of consumer processes driving one group through random joins, heartbeats
//! (acked, quiet, lost, zombie), leaves, resubscriptions, commits, time and topic growth.
//! Each invariant it proves has its own file.

use std::collections::BTreeSet;
use std::time::Duration;

use proptest::prelude::*;

use super::super::*;
use super::{GROUP, Harness, SESSION, assert_stable, epoch, loads, tp};

pub(super) const TOPICS: [&str; 2] = ["a", "b"];
pub(super) const PARTITIONS_MAX: u32 = 9;

#[derive(Debug, Clone)]
pub(super) enum Op {
    Join {
        instance: Option<u8>,
        topics: u8,
    },
    Ack {
        client: usize,
    },
    Quiet {
        client: usize,
    },
    Lost {
        client: usize,
    },
    Zombie {
        client: usize,
    },
    Leave {
        client: usize,
    },
    StaticLeave {
        client: usize,
    },
    Resubscribe {
        client: usize,
        topics: u8,
    },
    Commit {
        client: usize,
        partition: u32,
        offset: u64,
    },
    AdminCommit {
        offset: u64,
    },
    Advance {
        ms: u64,
    },
    Grow {
        topic: usize,
    },
}

pub(super) fn op() -> impl Strategy<Value = Op> {
    let client = 0usize..8;
    prop_oneof![
        3 => (proptest::option::of(0u8..3), 1u8..4)
            .prop_map(|(instance, topics)| Op::Join { instance, topics }),
        8 => client.clone().prop_map(|client| Op::Ack { client }),
        2 => client.clone().prop_map(|client| Op::Quiet { client }),
        2 => client.clone().prop_map(|client| Op::Lost { client }),
        1 => client.clone().prop_map(|client| Op::Zombie { client }),
        1 => client.clone().prop_map(|client| Op::Leave { client }),
        1 => client.clone().prop_map(|client| Op::StaticLeave { client }),
        1 => (client.clone(), 1u8..4)
            .prop_map(|(client, topics)| Op::Resubscribe { client, topics }),
        2 => (client, 0u32..PARTITIONS_MAX, 0u64..100)
            .prop_map(|(client, partition, offset)| Op::Commit { client, partition, offset }),
        1 => (0u64..100).prop_map(|offset| Op::AdminCommit { offset }),
        2 => (0u64..12_000).prop_map(|ms| Op::Advance { ms }),
        1 => (0usize..2).prop_map(|topic| Op::Grow { topic }),
    ]
}

/// What a consumer process believes: its id, epoch and the partitions it consumes.
#[derive(Debug, Clone)]
struct Client {
    last: HeartbeatReply,
    instance_id: Option<String>,
}

pub(super) struct Model {
    h: Harness,
    clients: Vec<Client>,
    /// Every subscription is both topics, so targets must end balanced.
    homogeneous: bool,
}

impl Model {
    pub(super) fn new(homogeneous: bool, partitions: (u32, u32)) -> Self {
        Self {
            h: Harness::new(&[("a", partitions.0), ("b", partitions.1)]),
            clients: Vec::new(),
            homogeneous,
        }
    }

    fn topics(&self, mask: u8) -> Vec<&'static str> {
        let mask = if self.homogeneous { 3 } else { mask };
        TOPICS
            .iter()
            .enumerate()
            .filter(|(index, _)| mask & (1 << index) != 0)
            .map(|(_, topic)| *topic)
            .collect()
    }

    fn client(&self, index: usize) -> Option<usize> {
        (!self.clients.is_empty()).then(|| index % self.clients.len())
    }

    /// Applies a reply the client received, or forgets the client if it was removed.
    fn received(&mut self, index: usize, reply: Result<HeartbeatReply, GroupError>) {
        match reply {
            Ok(reply) if matches!(reply.member_epoch, MemberEpoch::Current(_)) => {
                self.clients[index].last = reply;
            }
            Ok(_) => {
                self.clients.remove(index);
            }
            Err(error) => {
                assert!(
                    matches!(
                        error,
                        GroupError::UnknownMember { .. } | GroupError::FencedEpoch { .. }
                    ),
                    "{error}"
                );
                self.clients.remove(index);
            }
        }
    }

    fn heartbeat(&mut self, index: usize, owned: bool, apply: bool) {
        let last = self.clients[index].last.clone();
        let mut request = self.h.request(&last.member_id, last.member_epoch);
        request.owned = owned.then(|| last.assignment.clone());
        let reply = self.h.send(request);
        if apply || reply.is_err() {
            self.received(index, reply);
        }
    }

    pub(super) fn apply(&mut self, op: &Op) {
        match *op {
            Op::Join { instance, topics } => {
                let instance_id = instance.map(|instance| format!("instance-{instance}"));
                let topics = self.topics(topics);
                match self.h.join_with(instance_id.as_deref(), &topics) {
                    Ok(last) => {
                        // A process with the same instance id is replaced: it
                        // crashed, or it is a zombie the coordinator now fences.
                        self.clients.retain(|client| {
                            instance_id.is_none() || client.instance_id != instance_id
                        });
                        self.clients.push(Client { last, instance_id });
                    }
                    Err(error) => assert!(matches!(error, GroupError::GroupFull { .. }), "{error}"),
                }
            }
            Op::Ack { client } => {
                if let Some(index) = self.client(client) {
                    self.heartbeat(index, true, true);
                }
            }
            Op::Quiet { client } => {
                if let Some(index) = self.client(client) {
                    self.heartbeat(index, false, true);
                }
            }
            Op::Lost { client } => {
                if let Some(index) = self.client(client) {
                    self.heartbeat(index, true, false);
                }
            }
            Op::Zombie { client } => {
                if let Some(index) = self.client(client) {
                    let last = self.clients[index].last.clone();
                    let zombie = MemberEpoch::Current(epoch(&last) + 1_000);
                    let request = self.h.request(&last.member_id, zombie);
                    let error = self.h.send(request).expect_err("fenced");
                    assert!(matches!(error, GroupError::FencedEpoch { .. }), "{error}");
                    self.clients.remove(index);
                }
            }
            Op::Leave { client } | Op::StaticLeave { client } => {
                if let Some(index) = self.client(client) {
                    let epoch = if matches!(op, Op::Leave { .. }) {
                        MemberEpoch::Leave
                    } else {
                        MemberEpoch::StaticLeave
                    };
                    let member_id = self.clients[index].last.member_id.clone();
                    self.h.leave(&member_id, epoch);
                    self.clients.remove(index);
                }
            }
            Op::Resubscribe { client, topics } => {
                if let Some(index) = self.client(client) {
                    let last = self.clients[index].last.clone();
                    let mut request = self.h.request(&last.member_id, last.member_epoch);
                    request.owned = Some(last.assignment.clone());
                    request.subscribed_topics =
                        Some(self.topics(topics).into_iter().map(Into::into).collect());
                    let reply = self.h.send(request);
                    self.received(index, reply);
                }
            }
            Op::Commit {
                client,
                partition,
                offset,
            } => self.commit(client, partition, offset),
            Op::AdminCommit { offset } => {
                let members = self
                    .h
                    .coordinator
                    .describe(GROUP)
                    .map_or(0, |g| g.members.len());
                match self.h.admin_commit(GROUP, &[(tp("a", 0), offset)]) {
                    Ok(_) => assert_eq!(members, 0),
                    Err(error) => {
                        assert!(
                            matches!(error, GroupError::ResetWithMembers { .. }),
                            "{error}"
                        );
                    }
                }
            }
            Op::Advance { ms } => {
                self.h.advance(Duration::from_millis(ms));
                self.forget_removed();
            }
            Op::Grow { topic } => {
                let count = self.h.topics.get_mut(TOPICS[topic]).expect("a topic");
                *count = (*count + 1).min(PARTITIONS_MAX);
            }
        }
    }

    fn commit(&mut self, client: usize, partition: u32, offset: u64) {
        let Some(index) = self.client(client) else {
            return;
        };
        let last = self.clients[index].last.clone();
        let tp = tp(TOPICS[partition as usize % 2], partition / 2);
        let group = self.h.describe();
        let member = group
            .members
            .iter()
            .find(|member| member.member_id == last.member_id)
            .expect("a live client is a member");
        let current = [member.member_epoch, member.previous_epoch].contains(&epoch(&last));
        let owned = member.assigned.contains(&tp);
        let outcome = self.h.commit(
            GROUP,
            &last.member_id,
            epoch(&last),
            &[(tp.clone(), offset)],
        );
        match outcome {
            // Two lost replies in a row leave a client behind by two epochs.
            Err(error) => {
                assert!(!current, "{error}");
                assert!(matches!(error, GroupError::FencedEpoch { .. }), "{error}");
            }
            Ok(outcome) => {
                assert!(current);
                let expected = if owned {
                    CommitOutcome::Committed
                } else {
                    CommitOutcome::NotAssigned
                };
                assert_eq!(outcome, [(tp, expected)]);
            }
        }
    }

    fn forget_removed(&mut self) {
        let members: BTreeSet<String> = self
            .h
            .coordinator
            .describe(GROUP)
            .map(|group| group.members.into_iter().map(|m| m.member_id).collect())
            .unwrap_or_default();
        self.clients
            .retain(|client| members.contains(&client.last.member_id));
    }

    /// Every live client consumes only partitions the coordinator has it own.
    pub(super) fn check(&self) {
        let Some(group) = self.h.coordinator.describe(GROUP) else {
            assert!(self.clients.is_empty());
            return;
        };
        for client in &self.clients {
            for tp in &client.last.assignment {
                assert_eq!(
                    group.owner(tp),
                    Some(client.last.member_id.as_str()),
                    "{tp} is consumed by a member that does not own it"
                );
            }
        }
    }

    /// Everyone heartbeats, acking, until the group must be stable.
    pub(super) fn converge(&mut self) {
        for _ in 0..(SESSION.as_secs() + 10) {
            self.h.advance(Duration::from_secs(1));
            self.forget_removed();
            // A client two lost replies behind is fenced, and drops out here.
            let mut index = 0;
            while index < self.clients.len() {
                let clients = self.clients.len();
                self.heartbeat(index, true, true);
                index += usize::from(self.clients.len() == clients);
            }
            self.check();
        }
        let Some(group) = self.h.coordinator.describe(GROUP) else {
            return;
        };
        assert_eq!(group.members.len(), self.clients.len());
        if group.members.is_empty() {
            assert_eq!(group.state, GroupState::Empty);
            return;
        }
        assert_stable(&group);
        let identical = group
            .members
            .windows(2)
            .all(|pair| pair[0].subscribed_topics == pair[1].subscribed_topics);
        if identical {
            let loads = loads(&group);
            let (min, max) = (loads.iter().min(), loads.iter().max());
            assert!(
                max.zip(min).is_some_and(|(max, min)| max - min <= 1),
                "{loads:?}"
            );
        }
        for client in &self.clients {
            let member = group
                .members
                .iter()
                .find(|m| m.member_id == client.last.member_id)
                .expect("a member");
            assert_eq!(client.last.assignment, member.assigned);
        }
    }
}
