//! The group coordinator over the raw protocol, against a real broker process:
//! cooperative hand-off (a partition reaches its new owner only after the old owner
//! confirms), fencing of commits, static membership, session expiry, admin rules, lag,
//! and committed offsets plus group state surviving `kill -9`.

use std::collections::BTreeSet;

use strata_protocol::messages::*;
use strata_protocol::{ErrorCode, Response};
use strata_tests::*;

type Owned = BTreeSet<(String, u32)>;

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

/// One group member speaking the heartbeat protocol by hand.
struct Member {
    client: Client,
    group: String,
    topics: Vec<String>,
    instance_id: Option<String>,
    member_id: String,
    epoch: i32,
    owned: Owned,
}

impl Member {
    async fn join(address: &str, group: &str, topics: &[&str], instance_id: Option<&str>) -> Self {
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
            group_id: self.group.clone(),
            member_id: self.member_id.clone(),
            member_epoch: epoch,
            instance_id: self.instance_id.clone(),
            subscribed_topics: (epoch == JOIN_EPOCH).then(|| self.topics.clone()),
            assignor: None,
            owned_partitions: Some(unflatten(&self.owned)),
        }
    }

    /// Heartbeats reporting `self.owned`; returns the assignment without adopting it.
    async fn heartbeat(&mut self) -> Result<Owned, (ErrorCode, String)> {
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
    async fn sync(&mut self) -> Owned {
        let assignment = self.heartbeat().await.expect("heartbeat");
        self.owned = assignment.clone();
        assignment
    }

    async fn leave(&mut self, epoch: i32) {
        let request = self.request(epoch);
        self.client.try_call(request).await.expect("leave");
    }

    async fn commit(
        &mut self,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> Result<ErrorCode, (ErrorCode, String)> {
        let request = OffsetCommitRequest {
            group_id: self.group.clone(),
            member_id: self.member_id.clone(),
            member_epoch: self.epoch,
            topics: vec![OffsetCommitTopic {
                name: topic.into(),
                partitions: vec![OffsetCommitPartition {
                    partition,
                    offset,
                    metadata: None,
                }],
            }],
        };
        match self.client.try_call(request).await? {
            Response::OffsetCommit(reply) => Ok(reply.topics[0].partitions[0].error_code),
            other => panic!("unexpected {other:?}"),
        }
    }
}

async fn committed(client: &mut Client, group: &str, topic: &str, partitions: u32) -> Vec<i64> {
    let Response::OffsetFetch(reply) = client
        .call(OffsetFetchRequest {
            group_id: group.into(),
            topics: Some(vec![TopicPartitions {
                topic: topic.into(),
                partitions: (0..partitions).collect(),
            }]),
        })
        .await
    else {
        panic!()
    };
    reply.topics[0]
        .partitions
        .iter()
        .map(|p| p.offset)
        .collect()
}

async fn describe(client: &mut Client, group: &str) -> DescribedGroup {
    let Response::DescribeGroups(mut reply) = client
        .call(DescribeGroupsRequest {
            group_ids: vec![group.into()],
        })
        .await
    else {
        panic!()
    };
    reply.groups.remove(0)
}

fn partitions_of(topic: &str, range: std::ops::Range<u32>) -> Owned {
    range.map(|p| (topic.to_owned(), p)).collect()
}

#[tokio::test]
async fn a_moved_partition_reaches_its_new_owner_only_after_the_old_owner_confirms() {
    bounded(async {
        let dir = data_dir();
        let broker = BrokerProcess::start(dir.path(), &[]);
        let mut admin = Client::connect(&broker.address).await;
        admin.create_topic("handoff", 4, &[]).await;

        let mut first = Member::join(&broker.address, "g", &["handoff"], None).await;
        assert_eq!(
            first.owned,
            partitions_of("handoff", 0..4),
            "a lone member gets all"
        );

        let mut second = Member::join(&broker.address, "g", &["handoff"], None).await;
        assert!(
            second.owned.is_empty(),
            "nothing is free while the first member owns all"
        );

        // The first member learns it must give up two partitions, but has not confirmed.
        let kept = first.heartbeat().await.unwrap();
        assert_eq!(kept.len(), 2);
        let revoked: Owned = first.owned.difference(&kept).cloned().collect();
        for _ in 0..3 {
            assert!(
                second.sync().await.is_empty(),
                "granted before the revocation was confirmed"
            );
        }
        // The old owner may still commit what it processed while the revocation is pending.
        let (topic, partition) = revoked.iter().next().unwrap().clone();
        assert_eq!(
            first.commit(&topic, partition, 0).await.unwrap(),
            ErrorCode::None
        );

        first.owned = kept.clone();
        first.sync().await;
        assert_eq!(second.sync().await, revoked, "granted once confirmed");
        assert!(first.owned.is_disjoint(&second.owned));

        // Now the old owner may no longer commit it.
        assert_eq!(
            first.commit(&topic, partition, 1).await.unwrap(),
            ErrorCode::PartitionNotAssigned
        );
        let group = describe(&mut admin, "g").await;
        assert_eq!(group.state, "stable");
        assert_eq!(group.members.len(), 2);
    })
    .await;
}

#[tokio::test]
async fn leaving_moves_only_the_leavers_partitions_and_stale_epochs_are_fenced() {
    bounded(async {
        let dir = data_dir();
        let broker = BrokerProcess::start(dir.path(), &[]);
        let mut admin = Client::connect(&broker.address).await;
        admin.create_topic("t", 6, &[]).await;
        let mut members = Vec::new();
        for _ in 0..3 {
            members.push(Member::join(&broker.address, "g", &["t"], None).await);
        }
        // Converge: everyone heartbeats and adopts until stable.
        for _ in 0..4 {
            for member in &mut members {
                member.sync().await;
            }
        }
        let before: Vec<Owned> = members.iter().map(|m| m.owned.clone()).collect();
        assert!(before.iter().all(|owned| owned.len() == 2), "{before:?}");

        let mut leaver = members.pop().unwrap();
        let stale_epoch = leaver.epoch;
        leaver.leave(LEAVE_EPOCH).await;
        for _ in 0..2 {
            for member in &mut members {
                member.sync().await;
            }
        }
        for (member, old) in members.iter().zip(&before) {
            assert!(
                old.is_subset(&member.owned),
                "a staying member lost a partition"
            );
            assert_eq!(member.owned.len(), 3);
        }

        // The member that left can no longer commit or heartbeat with its old epoch.
        leaver.epoch = stale_epoch;
        let error = leaver.commit("t", 0, 5).await.unwrap_err();
        assert_eq!(error.0, ErrorCode::UnknownMemberId);
        let error = leaver.heartbeat().await.unwrap_err();
        assert_eq!(error.0, ErrorCode::UnknownMemberId);

        // A live member with a wrong epoch is fenced.
        let member = &mut members[0];
        member.epoch += 7;
        let error = member.commit("t", 0, 5).await.unwrap_err();
        assert_eq!(error.0, ErrorCode::FencedMemberEpoch);
    })
    .await;
}

#[tokio::test]
async fn a_static_member_that_restarts_keeps_its_partitions_and_moves_nobody() {
    bounded(async {
        let dir = data_dir();
        let broker = BrokerProcess::start(dir.path(), &[]);
        let mut admin = Client::connect(&broker.address).await;
        admin.create_topic("s", 4, &[]).await;
        let mut stat = Member::join(&broker.address, "g", &["s"], Some("instance-1")).await;
        let mut other = Member::join(&broker.address, "g", &["s"], None).await;
        for _ in 0..4 {
            stat.sync().await;
            other.sync().await;
        }
        assert_eq!(stat.owned.len(), 2);
        let epoch_before = describe(&mut admin, "g").await.group_epoch;
        let (stat_owned, other_owned) = (stat.owned.clone(), other.owned.clone());

        stat.leave(STATIC_LEAVE_EPOCH).await;
        drop(stat);
        other.sync().await;
        assert_eq!(other.owned, other_owned, "a static leave moves nothing");

        let restarted = Member::join(&broker.address, "g", &["s"], Some("instance-1")).await;
        assert_eq!(
            restarted.owned, stat_owned,
            "the restarted instance gets its partitions back"
        );
        assert_eq!(other.sync().await, other_owned);
        let group = describe(&mut admin, "g").await;
        assert_eq!(group.group_epoch, epoch_before, "no rebalance");
        assert_eq!(group.members.len(), 2);
    })
    .await;
}

#[tokio::test]
async fn an_expired_session_hands_its_partitions_over() {
    bounded(async {
        let dir = data_dir();
        let broker = BrokerProcess::start(
            dir.path(),
            &[
                "group_session_timeout_ms=1500",
                "group_heartbeat_interval_ms=100",
            ],
        );
        let mut admin = Client::connect(&broker.address).await;
        admin.create_topic("x", 2, &[]).await;
        let mut silent = Member::join(&broker.address, "g", &["x"], None).await;
        let mut alive = Member::join(&broker.address, "g", &["x"], None).await;
        silent.sync().await;
        silent.sync().await;
        alive.sync().await;
        assert_eq!(alive.owned.len(), 1);
        // `silent` stops heartbeating; `alive` keeps going and receives everything.
        let deadline = tokio::time::Instant::now() + WAIT;
        while alive.owned.len() < 2 {
            assert!(tokio::time::Instant::now() < deadline, "never handed over");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            alive.sync().await;
        }
        assert_eq!(
            silent.heartbeat().await.unwrap_err().0,
            ErrorCode::UnknownMemberId
        );
        assert_eq!(describe(&mut admin, "g").await.members.len(), 1);
    })
    .await;
}

#[tokio::test]
async fn committed_offsets_and_group_state_survive_kill_9() {
    bounded(async {
        let dir = data_dir();
        let mut broker = BrokerProcess::start(dir.path(), &[]);
        let mut admin = Client::connect(&broker.address).await;
        admin.create_topic("d", 3, &[]).await;
        let mut member = Member::join(&broker.address, "durable", &["d"], None).await;
        for partition in 0..3 {
            assert_eq!(
                member
                    .commit("d", partition, 10 + u64::from(partition))
                    .await
                    .unwrap(),
                ErrorCode::None
            );
        }
        let before = describe(&mut admin, "durable").await;
        broker.kill_9();
        broker.restart();

        let mut admin = Client::connect(&broker.address).await;
        assert_eq!(
            committed(&mut admin, "durable", "d", 3).await,
            vec![10, 11, 12]
        );
        let after = describe(&mut admin, "durable").await;
        assert_eq!(
            after.members, before.members,
            "members, epochs and assignment come back"
        );
        assert_eq!(after.group_epoch, before.group_epoch);
        // The member carries on with its epoch as if nothing happened.
        member.client = Client::connect(&broker.address).await;
        assert_eq!(member.sync().await, partitions_of("d", 0..3));
        assert_eq!(member.commit("d", 0, 20).await.unwrap(), ErrorCode::None);
    })
    .await;
}

#[tokio::test]
async fn admin_resets_and_deletes_need_an_empty_group_and_lag_is_exported() {
    bounded(async {
        let dir = data_dir();
        let broker = BrokerProcess::start(dir.path(), &[]);
        let mut admin = Client::connect(&broker.address).await;
        admin.create_topic("l", 1, &[]).await;
        admin.produce("l", 0, Acks::Leader, batch_of("r", 10)).await;
        let mut member = Member::join(&broker.address, "lagging", &["l"], None).await;
        assert_eq!(member.commit("l", 0, 4).await.unwrap(), ErrorCode::None);

        let reset = OffsetCommitRequest {
            group_id: "lagging".into(),
            member_id: String::new(),
            member_epoch: ADMIN_COMMIT_EPOCH,
            topics: vec![OffsetCommitTopic {
                name: "l".into(),
                partitions: vec![OffsetCommitPartition {
                    partition: 0,
                    offset: 0,
                    metadata: None,
                }],
            }],
        };
        let error = admin.try_call(reset.clone()).await.unwrap_err();
        assert_eq!(error.0, ErrorCode::NonEmptyGroup);
        let Response::DeleteGroups(deleted) = admin
            .call(DeleteGroupsRequest {
                group_ids: vec!["lagging".into()],
            })
            .await
        else {
            panic!()
        };
        assert_eq!(deleted.groups[0].error_code, ErrorCode::NonEmptyGroup);

        let group = describe(&mut admin, "lagging").await;
        let offset = &group.offsets[0].partitions[0];
        assert_eq!(
            (offset.committed_offset, offset.high_watermark, offset.lag),
            (4, 10, 6)
        );
        assert_eq!(offset.owner.as_deref(), Some(member.member_id.as_str()));
        let metrics = scrape_metrics(&broker.metrics_address).await;
        assert!(
            metrics.contains("strata_group_lag{group=\"lagging\",topic=\"l\",partition=\"0\"} 6"),
            "{metrics}"
        );

        member.leave(LEAVE_EPOCH).await;
        let Response::ListGroups(listed) = admin
            .call(ListGroupsRequest {
                states_filter: vec![],
            })
            .await
        else {
            panic!()
        };
        assert_eq!(listed.groups[0].state, "empty");
        admin.call(reset).await;
        assert_eq!(committed(&mut admin, "lagging", "l", 1).await, vec![0]);
        let Response::DeleteGroups(deleted) = admin
            .call(DeleteGroupsRequest {
                group_ids: vec!["lagging".into(), "never-existed".into()],
            })
            .await
        else {
            panic!()
        };
        assert_eq!(deleted.groups[0].error_code, ErrorCode::None);
        assert_eq!(deleted.groups[1].error_code, ErrorCode::GroupIdNotFound);
        assert_eq!(
            committed(&mut admin, "lagging", "l", 1).await,
            vec![NO_OFFSET]
        );
        assert_eq!(
            describe(&mut admin, "lagging").await.error_code,
            ErrorCode::GroupIdNotFound
        );
    })
    .await;
}

#[tokio::test]
async fn bad_group_requests_get_clear_errors() {
    bounded(async {
        let dir = data_dir();
        let broker = BrokerProcess::start(dir.path(), &[]);
        let mut admin = Client::connect(&broker.address).await;
        let long = "g".repeat(300);
        for group_id in [String::new(), long] {
            let error = admin
                .try_call(FindCoordinatorRequest {
                    group_id: group_id.clone(),
                })
                .await
                .unwrap_err();
            assert_eq!(error.0, ErrorCode::InvalidGroupId);
            let error = admin
                .try_call(OffsetFetchRequest {
                    group_id,
                    topics: None,
                })
                .await
                .unwrap_err();
            assert_eq!(error.0, ErrorCode::InvalidGroupId);
        }
        let heartbeat = |member_epoch, subscribed_topics, assignor: Option<&str>| {
            ConsumerGroupHeartbeatRequest {
                group_id: "g".into(),
                member_id: if member_epoch == JOIN_EPOCH {
                    String::new()
                } else {
                    "nobody".into()
                },
                member_epoch,
                instance_id: None,
                subscribed_topics,
                assignor: assignor.map(str::to_owned),
                owned_partitions: None,
            }
        };
        let cases = [
            (heartbeat(JOIN_EPOCH, None, None), ErrorCode::InvalidRequest),
            (
                heartbeat(JOIN_EPOCH, Some(vec!["t".into()]), Some("roundrobin")),
                ErrorCode::UnsupportedAssignor,
            ),
            (heartbeat(3, None, None), ErrorCode::UnknownMemberId),
            (
                heartbeat(LEAVE_EPOCH, None, None),
                ErrorCode::UnknownMemberId,
            ),
        ];
        for (request, code) in cases {
            let error = admin.try_call(request).await.unwrap_err();
            assert_eq!(error.0, code, "{}", error.1);
        }
        let Response::FindCoordinator(found) = admin
            .call(FindCoordinatorRequest {
                group_id: "g".into(),
            })
            .await
        else {
            panic!()
        };
        assert_eq!(format!("{}:{}", found.host, found.port), broker.address);
        // Internal log names are reserved.
        let Response::CreateTopics(created) = admin
            .call(CreateTopicsRequest {
                topics: vec![CreatableTopic {
                    name: "__consumer_offsets".into(),
                    partition_count: 1,
                    replication_factor: 1,
                    configs: vec![],
                }],
                timeout_ms: 1000,
                validate_only: false,
            })
            .await
        else {
            panic!()
        };
        assert_eq!(created.topics[0].error_code, ErrorCode::InvalidTopic);
    })
    .await;
}
