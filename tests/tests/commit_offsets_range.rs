//! Committed offsets stay within the i64 range: a commit at 2^63 or above is refused with
//! `OffsetOutOfRange` for that partition, keeps what was committed before, and
//! OffsetFetch never answers a negative offset for it.

use strata_protocol::messages::{ADMIN_COMMIT_EPOCH, Acks, NO_OFFSET};
use strata_protocol::{ErrorCode, Response};
use strata_tests::group::{Member, commit_request};
use strata_tests::{BrokerProcess, Client, batch_of, bounded, data_dir};

const TOO_LARGE: [u64; 3] = [1 << 63, (1 << 63) + 1, u64::MAX];

#[tokio::test]
async fn a_member_commit_past_i64_max_is_refused_and_the_last_commit_stays() {
    bounded(async {
        let dir = data_dir();
        let broker = BrokerProcess::start(dir.path(), &[]);
        let mut admin = Client::connect(&broker.address).await;
        admin.create_topic("t", 1, &[]).await;
        admin.produce("t", 0, Acks::Leader, batch_of("r", 5)).await;
        let mut member = Member::join(&broker.address, "g", &["t"], None).await;
        assert_eq!(member.commit("t", 0, 3).await.unwrap(), ErrorCode::None);
        for offset in TOO_LARGE {
            assert_eq!(
                member.commit("t", 0, offset).await.unwrap(),
                ErrorCode::OffsetOutOfRange,
                "commit at {offset}"
            );
            assert_eq!(admin.committed("g", "t", 1).await, [3]);
        }
        let largest = i64::MAX as u64;
        assert_eq!(
            member.commit("t", 0, largest).await.unwrap(),
            ErrorCode::None
        );
        assert_eq!(admin.committed("g", "t", 1).await, [i64::MAX]);
    })
    .await;
}

#[tokio::test]
async fn an_admin_commit_past_i64_max_is_refused() {
    bounded(async {
        let dir = data_dir();
        let broker = BrokerProcess::start(dir.path(), &[]);
        let mut admin = Client::connect(&broker.address).await;
        admin.create_topic("t", 1, &[]).await;
        for offset in TOO_LARGE {
            let request = commit_request("reset", "", ADMIN_COMMIT_EPOCH, ("t", 0), offset);
            let Response::OffsetCommit(reply) = admin.call(request).await else {
                panic!("wrong response type")
            };
            assert_eq!(
                reply.topics[0].partitions[0].error_code,
                ErrorCode::OffsetOutOfRange,
                "commit at {offset}"
            );
        }
        let fetched = admin.committed("reset", "t", 1).await;
        assert!(
            fetched.iter().all(|offset| *offset == NO_OFFSET),
            "no offset: {fetched:?}"
        );
    })
    .await;
}
