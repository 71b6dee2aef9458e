//! The offsets log is replicated, so the group coordinator survives its broker: on three
//! real brokers, a group commits offsets, each acknowledged once every in-sync replica
//! of the group's offsets partition has it; the coordinator's broker is killed with
//! `kill -9`; FindCoordinator names another broker within the session timeout (and a
//! margin), and OffsetFetch there returns every acknowledged offset. The killed broker
//! restarts, follows the partition again, catches up, and takes its preferred
//! leadership back: it coordinates the group again, with the commits made while it was
//! down.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use strata_protocol::messages::{
    ADMIN_COMMIT_EPOCH, FindCoordinatorRequest, OffsetCommitRequest, OffsetFetchRequest,
    TopicPartitions,
};
use strata_protocol::{ErrorCode, Response};
use strata_tests::cluster::Cluster;
use strata_tests::group::commit_request;
use strata_tests::{Client, WAIT, bounded};

const GROUP: &str = "billing";
const TOPIC: &str = "events";
const PARTITIONS: u32 = 2;
/// `broker_session_timeout_ms` in the fixture's timings.
const SESSION_TIMEOUT: Duration = Duration::from_millis(3000);
/// Beyond the session timeout: the controller's next check, the election, and each
/// broker applying it, on a loaded two-core machine running debug builds.
const FAILOVER_MARGIN: Duration = Duration::from_secs(4);
const POLL: Duration = Duration::from_millis(50);

/// The group's coordinator as broker `asked` answers, once it answers one.
async fn coordinator(cluster: &Cluster, asked: u32) -> u32 {
    let mut client = Client::connect(&cluster.address(asked)).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let request = FindCoordinatorRequest {
            group_id: GROUP.into(),
        };
        match client.try_call(request).await {
            Ok(Response::FindCoordinator(found)) => return found.node_id,
            Ok(other) => panic!("not a find coordinator response: {other:?}"),
            // The offsets log may not be placed yet, or its partition has no leader.
            Err((code, message)) => assert!(code.is_retriable(), "{code:?}: {message}"),
        }
        assert!(Instant::now() < deadline, "no coordinator within {WAIT:?}");
        tokio::time::sleep(POLL).await;
    }
}

/// Broker `asked`'s answer to FindCoordinator once it names a broker other than `not`.
async fn coordinator_other_than(cluster: &Cluster, asked: u32, not: u32) -> u32 {
    let deadline = Instant::now() + WAIT;
    loop {
        let found = coordinator(cluster, asked).await;
        if found != not {
            return found;
        }
        assert!(Instant::now() < deadline, "the coordinator is still {not}");
        tokio::time::sleep(POLL).await;
    }
}

/// Commits `offset` for `partition` as an administrator, retrying while the broker
/// answers a retriable error (its coordinator is still loading the group); returns once
/// the commit is acknowledged.
async fn commit(client: &mut Client, partition: u32, offset: u64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let request: OffsetCommitRequest =
            commit_request(GROUP, "", ADMIN_COMMIT_EPOCH, (TOPIC, partition), offset);
        match client.try_call(request).await {
            Ok(Response::OffsetCommit(reply)) => {
                let code = reply.topics[0].partitions[0].error_code;
                assert_eq!(code, ErrorCode::None, "commit of {offset}");
                return;
            }
            Ok(other) => panic!("not an offset commit response: {other:?}"),
            Err((code, message)) => assert!(code.is_retriable(), "{code:?}: {message}"),
        }
        assert!(Instant::now() < deadline, "commit of {offset} not taken");
        tokio::time::sleep(POLL).await;
    }
}

/// Commits `rounds` offsets at `coordinator`, alternating partitions, each one
/// acknowledged; records the last acknowledged offset of each partition.
async fn commit_rounds(
    cluster: &Cluster,
    coordinator: u32,
    first_offset: u64,
    rounds: u64,
    acknowledged: &mut BTreeMap<u32, i64>,
) {
    let mut client = Client::connect(&cluster.address(coordinator)).await;
    for round in 0..rounds {
        let partition = (round % u64::from(PARTITIONS)) as u32;
        let offset = first_offset + round;
        commit(&mut client, partition, offset).await;
        acknowledged.insert(partition, offset as i64);
    }
}

/// The group's committed offsets as broker `at` answers, once it serves the group (a
/// new coordinator answers `NotCoordinator` until it has loaded it).
async fn committed_at(cluster: &Cluster, at: u32) -> BTreeMap<u32, i64> {
    let mut client = Client::connect(&cluster.address(at)).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let request = OffsetFetchRequest {
            group_id: GROUP.into(),
            topics: Some(vec![TopicPartitions {
                topic: TOPIC.into(),
                partitions: (0..PARTITIONS).collect(),
            }]),
        };
        match client.try_call(request).await {
            Ok(Response::OffsetFetch(reply)) => {
                return reply.topics[0]
                    .partitions
                    .iter()
                    .map(|partition| (partition.partition, partition.offset))
                    .collect();
            }
            Ok(other) => panic!("not an offset fetch response: {other:?}"),
            Err((code, message)) => {
                assert_eq!(code, ErrorCode::NotCoordinator, "{message}");
            }
        }
        assert!(
            Instant::now() < deadline,
            "broker {at} does not serve the group within {WAIT:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_commits_survive_kill_9_of_the_coordinator() {
    bounded(async {
        let mut cluster = Cluster::start().await;
        let mut admin = Client::connect(&cluster.address(1)).await;
        admin
            .create_replicated_topic(TOPIC, PARTITIONS, 3, &[])
            .await;
        cluster.wait_serving(TOPIC).await;

        let first = coordinator(&cluster, 1).await;
        let mut acknowledged = BTreeMap::new();
        commit_rounds(&cluster, first, 100, 20, &mut acknowledged).await;
        assert_eq!(committed_at(&cluster, first).await, acknowledged);

        cluster.kill_9(first);
        let killed_at = Instant::now();
        let survivor = cluster.running()[0];
        let second = coordinator_other_than(&cluster, survivor, first).await;
        let moved_after = killed_at.elapsed();
        assert!(
            moved_after < SESSION_TIMEOUT + FAILOVER_MARGIN,
            "the coordinator moved {moved_after:?} after the kill"
        );
        assert_eq!(
            committed_at(&cluster, second).await,
            acknowledged,
            "the new coordinator {second} has every acknowledged commit"
        );
        // Two of three replicas in sync meets min_insync_replicas = 2: commits go on.
        commit_rounds(&cluster, second, 200, 10, &mut acknowledged).await;

        // The killed broker follows the partition again, catches up, rejoins the
        // in-sync set, and then the controller gives it its preferred leadership back.
        cluster.restart(first);
        let deadline = Instant::now() + WAIT;
        while coordinator(&cluster, second).await != first {
            assert!(
                Instant::now() < deadline,
                "broker {first} did not coordinate the group again within {WAIT:?}"
            );
            tokio::time::sleep(POLL).await;
        }
        assert_eq!(
            committed_at(&cluster, first).await,
            acknowledged,
            "back on broker {first}, with the commits made while it was down"
        );
        commit_rounds(&cluster, first, 300, 4, &mut acknowledged).await;
        assert_eq!(committed_at(&cluster, first).await, acknowledged);
    })
    .await;
}
