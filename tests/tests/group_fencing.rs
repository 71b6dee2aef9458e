//! A bystander who reads a member's ids from DescribeGroups cannot act as the member:
//! its leave, commit, heartbeat and rejoin are refused, and the member keeps its
//! partitions. A real broker process, the raw protocol.

use strata_protocol::messages::*;
use strata_protocol::{ErrorCode, Request};
use strata_tests::group::*;
use strata_tests::*;

/// The whole-request error code of `request`.
async fn refusal(client: &mut Client, request: impl Into<Request>) -> ErrorCode {
    match client.try_call(request).await {
        Err((code, _)) => code,
        Ok(response) => panic!("accepted: {response:?}"),
    }
}

#[tokio::test]
async fn a_bystander_with_the_members_ids_cannot_leave_commit_or_rejoin_as_it() {
    bounded(async {
        let dir = data_dir();
        let broker = BrokerProcess::start(dir.path(), &[]);
        let mut admin = Client::connect(&broker.address).await;
        admin.create_topic("t", 4, &[]).await;
        let mut member = Member::join(&broker.address, "g", &["t"], None).await;
        member.sync().await;
        assert_eq!(member.owned, partitions_of("t", 0..4));
        assert_eq!(member.commit("t", 0, 3).await.unwrap(), ErrorCode::None);

        let mut bystander = Client::connect(&broker.address).await;
        let group = bystander.describe_group("g").await;
        let [seen] = group.members.as_slice() else {
            panic!("one member: {group:?}");
        };
        let member_id = seen.member_id.clone();
        assert_eq!(member_id, member.member_id);
        let owned = member.owned.clone();
        // Every epoch but the member's own (and the one before it) is refused.
        let wrong_epochs = [0, member.epoch + 1, member.epoch + 1_000];

        for leave in [LEAVE_EPOCH, STATIC_LEAVE_EPOCH] {
            for leaving_epoch in wrong_epochs {
                let request = ConsumerGroupHeartbeatRequest {
                    leaving_epoch,
                    ..heartbeat_request("g", &member_id, leave, &[], &owned)
                };
                assert_eq!(
                    refusal(&mut bystander, request).await,
                    ErrorCode::FencedMemberEpoch,
                    "leave at {leaving_epoch}"
                );
            }
        }
        for epoch in wrong_epochs.into_iter().skip(1) {
            let commit = commit_request("g", &member_id, epoch, ("t", 0), 1_000);
            assert_eq!(
                refusal(&mut bystander, commit).await,
                ErrorCode::FencedMemberEpoch
            );
            let heartbeat = heartbeat_request("g", &member_id, epoch, &[], &owned);
            assert_eq!(
                refusal(&mut bystander, heartbeat).await,
                ErrorCode::FencedMemberEpoch
            );
        }
        let rejoin = heartbeat_request("g", &member_id, JOIN_EPOCH, &["t".to_owned()], &owned);
        assert_eq!(
            refusal(&mut bystander, rejoin).await,
            ErrorCode::UnknownMemberId
        );

        assert_eq!(
            member.sync().await,
            owned,
            "the member keeps its partitions"
        );
        let group = admin.describe_group("g").await;
        assert_eq!(group.members.len(), 1, "{group:?}");
        assert_eq!(group.members[0].member_id, member_id);
        assert_eq!(admin.committed("g", "t", 1).await, [3], "no forged commit");
        assert_eq!(member.commit("t", 0, 4).await.unwrap(), ErrorCode::None);

        // The member itself still leaves with its epoch, and its partitions are free.
        member.leave(LEAVE_EPOCH).await;
        assert!(admin.describe_group("g").await.members.is_empty());
        let next = Member::join(&broker.address, "g", &["t"], None).await;
        assert_eq!(next.owned, partitions_of("t", 0..4));
    })
    .await;
}
