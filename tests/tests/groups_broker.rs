//! The group coordinator over the raw protocol, against a real broker process:
//! cooperative hand-off (a partition reaches its new owner only after the old owner
//! confirms), fencing of commits, static membership, session expiry, admin rules, lag,
//! and committed offsets plus group state surviving `kill -9`.

use strata_protocol::messages::*;
use strata_protocol::{ErrorCode, Response};
use strata_tests::group::*;
use strata_tests::*;

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
        let group = admin.describe_group("g").await;
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
        let epoch_before = admin.describe_group("g").await.group_epoch;
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
        let group = admin.describe_group("g").await;
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
        assert_eq!(admin.describe_group("g").await.members.len(), 1);
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
        let before = admin.describe_group("durable").await;
        broker.kill_9();
        broker.restart();

        let mut admin = Client::connect(&broker.address).await;
        assert_eq!(admin.committed("durable", "d", 3).await, vec![10, 11, 12]);
        let after = admin.describe_group("durable").await;
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

        let reset = commit_request("lagging", "", ADMIN_COMMIT_EPOCH, ("l", 0), 0);
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

        let group = admin.describe_group("lagging").await;
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
        assert_eq!(admin.committed("lagging", "l", 1).await, vec![0]);
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
        assert_eq!(admin.committed("lagging", "l", 1).await, vec![NO_OFFSET]);
        assert_eq!(
            admin.describe_group("lagging").await.error_code,
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
            let member_id = if member_epoch == JOIN_EPOCH {
                ""
            } else {
                "nobody"
            };
            ConsumerGroupHeartbeatRequest {
                subscribed_topics,
                assignor: assignor.map(str::to_owned),
                owned_partitions: None,
                ..heartbeat_request("g", member_id, member_epoch, &[], &Owned::new())
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
