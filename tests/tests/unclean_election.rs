//! `strata partition elect --unclean` on three real brokers: a partition whose only
//! in-sync replica died, while its other replica was cut off and out of sync, has no
//! leader, and stays so (unclean election is off); the CLI refuses to elect without
//! `--yes`, saying what may be lost, and with it makes the out-of-sync replica the leader,
//! which then takes writes.

use std::time::{Duration, Instant};

use strata_protocol::ErrorCode;
use strata_protocol::messages::Acks;
use strata_tests::cluster::{Cluster, ClusterOptions};
use strata_tests::{Client, WAIT, batch_of, bounded};

const PARTITIONS: u32 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unclean_election_needs_yes_and_brings_back_a_leaderless_partition() {
    bounded(async {
        let mut cluster = Cluster::start_with(ClusterOptions {
            proxied: true,
            settings: vec!["replica_lag_max_ms=1000".to_owned()],
            ..ClusterOptions::default()
        })
        .await;
        let mut admin = Client::connect(&cluster.address(1)).await;
        admin
            .create_replicated_topic("ledger", PARTITIONS, 2, &[("min_insync_replicas", "1")])
            .await;
        cluster.wait_serving("ledger").await;
        // A partition whose two replicas both differ from the controller, so cutting
        // them apart leaves each in touch with it.
        let controller = cluster.leader().await;
        let mut chosen = None;
        for partition in 0..PARTITIONS {
            let view = cluster.partition_on(controller, "ledger", partition).await;
            if !view.replicas.contains(&controller) {
                chosen = Some((partition, view));
            }
        }
        let (partition, view) = chosen.expect("a partition off the controller");
        let leader = u32::try_from(view.leader_id).expect("a leader");
        let other = *view
            .replicas
            .iter()
            .find(|&&replica| replica != leader)
            .expect("a second replica");
        cluster
            .wait_partition(
                controller,
                ("ledger", partition),
                |view| view.in_sync_replicas.len() == 2,
                "two in sync",
            )
            .await;

        cluster.cut_between(leader, other);
        cluster
            .wait_partition(
                controller,
                ("ledger", partition),
                |view| view.in_sync_replicas == [leader],
                "the leader alone in sync",
            )
            .await;
        cluster.kill_9(leader);
        cluster.heal_between(leader, other);
        cluster
            .wait_partition(
                controller,
                ("ledger", partition),
                |view| view.leader_id < 0,
                "without a leader",
            )
            .await;

        let index = partition.to_string();
        let refused = cluster
            .cli(
                controller,
                &["partition", "elect", "--unclean", "ledger", &index],
            )
            .await;
        assert_eq!(refused.code, Some(1), "{refused:?}");
        assert!(
            refused.stderr.contains(&other.to_string()),
            "names the replica it would elect: {refused:?}"
        );
        let still = cluster.partition_on(controller, "ledger", partition).await;
        assert!(
            still.leader_id < 0,
            "nothing changed without --yes: {still:?}"
        );

        let elected = cluster
            .cli(
                controller,
                &["partition", "elect", "--unclean", "ledger", &index, "--yes"],
            )
            .await;
        assert_eq!(elected.code, Some(0), "{elected:?}");
        let view = cluster
            .wait_partition(
                controller,
                ("ledger", partition),
                |view| view.leader_id == i32::try_from(other).unwrap_or(-1),
                "led by the out-of-sync replica",
            )
            .await;
        assert_eq!(view.in_sync_replicas, [other]);
        let deadline = Instant::now() + WAIT;
        loop {
            let mut client = Client::connect(&cluster.address(other)).await;
            let written = client
                .produce("ledger", partition, Acks::All, batch_of("after", 3))
                .await;
            if written.error_code == ErrorCode::None {
                break;
            }
            assert!(
                written.error_code.is_retriable() && Instant::now() < deadline,
                "{:?}",
                written.error_code
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}
