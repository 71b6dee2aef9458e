//! Moving a partition to other replicas on three real brokers (KIP-455): a partition on
//! brokers a and b is moved to c and b while an idempotent `acks = all` producer writes.
//! Every record acknowledged before and during the move is on c afterwards, read from
//! c once it leads; a's copy of the partition is deleted; and `strata partition
//! reassign` refuses wrong targets with the broker's reason. Under a reassignment
//! throttle the copy takes at least as long as the throttle makes it, and still finishes.

use std::time::{Duration, Instant};

use strata_protocol::ErrorCode;
use strata_protocol::messages::Acks;
use strata_tests::assert_fails;
use strata_tests::cluster::writer::{Writer, read_at_least};
use strata_tests::cluster::{Cluster, ClusterOptions};
use strata_tests::{Client, WAIT, batch_of, bounded};

/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(50);

const TOPIC: &str = "moving";

/// Creates `TOPIC` with one partition on two brokers and waits until both are in sync;
/// returns the replicas.
async fn two_in_sync(cluster: &Cluster) -> Vec<u32> {
    let mut admin = Client::connect(&cluster.address(1)).await;
    admin.create_replicated_topic(TOPIC, 1, 2, &[]).await;
    cluster.wait_serving(TOPIC).await;
    cluster
        .wait_partition(
            1,
            (TOPIC, 0),
            |view| view.in_sync_replicas.len() == 2,
            "two in sync",
        )
        .await
        .replicas
}

/// Waits until broker `id` holds no directory of `TOPIC`'s partitions.
async fn wait_no_copy(cluster: &Cluster, id: u32) {
    let deadline = Instant::now() + WAIT;
    while !cluster.partition_dirs(id, TOPIC).is_empty() {
        assert!(
            Instant::now() < deadline,
            "broker {id} still holds {:?} of {TOPIC}",
            cluster.partition_dirs(id, TOPIC)
        );
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_partition_keeps_every_acknowledged_record_and_leaves_its_old_broker() {
    bounded(async {
        let cluster = Cluster::start().await;
        let mut admin = Client::connect(&cluster.address(1)).await;
        admin.create_replicated_topic(TOPIC, 1, 2, &[]).await;
        cluster.wait_serving(TOPIC).await;
        let view = cluster
            .wait_partition(
                1,
                (TOPIC, 0),
                |view| view.in_sync_replicas.len() == 2,
                "two in sync",
            )
            .await;
        let (a, b) = (view.replicas[0], view.replicas[1]);
        let c = (1..=3)
            .find(|id| !view.replicas.contains(id))
            .expect("a third broker");
        assert_eq!(cluster.partition_dirs(c, TOPIC), Vec::<u32>::new());
        let mut writer = Writer::new(&cluster, TOPIC).await;
        writer.write(&cluster, "before", 10).await;

        // c first: it leads once the move is done and a preferred election ran.
        let target = format!("{c},{b}");
        let run = cluster
            .cli(
                a,
                &[
                    "partition",
                    "reassign",
                    TOPIC,
                    "0",
                    "--replicas",
                    &target,
                    "--no-wait",
                ],
            )
            .await;
        assert_eq!(run.code, Some(0), "{run:?}");
        writer.write(&cluster, "during", 10).await;
        let run = cluster
            .cli(
                b,
                &[
                    "partition",
                    "reassign",
                    TOPIC,
                    "0",
                    "--replicas",
                    &target,
                    "--timeout-ms",
                    "12000",
                ],
            )
            .await;
        assert_eq!(run.code, Some(0), "{run:?}");
        assert_eq!(
            run.stdout.trim(),
            format!("partition 0 of topic '{TOPIC}' is on replicas {target}")
        );
        let view = cluster
            .wait_partition(c, (TOPIC, 0), |view| view.replicas == [c, b], "moved")
            .await;
        assert!(view.in_sync_replicas.contains(&c), "{view:?}");
        wait_no_copy(&cluster, a).await;
        assert_eq!(cluster.partition_dirs(c, TOPIC), vec![0]);

        let run = cluster.cli(c, &["partition", "elect", TOPIC, "0"]).await;
        assert_eq!(run.code, Some(0), "{run:?}");
        cluster
            .wait_partition(
                a,
                (TOPIC, 0),
                |view| view.leader_id == i32::try_from(c).expect("an id"),
                "led by c",
            )
            .await;
        writer.write(&cluster, "after", 2).await;
        assert_eq!(
            read_at_least(&cluster, c, TOPIC, writer.acknowledged.len()).await,
            writer.acknowledged,
            "broker {c} has every acknowledged record, once, in order"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_targets_are_refused_with_the_reason() {
    bounded(async {
        let cluster = Cluster::start().await;
        let mut admin = Client::connect(&cluster.address(1)).await;
        admin.create_replicated_topic(TOPIC, 1, 2, &[]).await;
        cluster.wait_serving(TOPIC).await;
        for (replicas, reason) in [
            ("1,1", "name a broker twice (InvalidReplicaAssignment)"),
            (
                "2,9",
                "name broker 9, which is not registered (InvalidReplicaAssignment)",
            ),
        ] {
            let run = cluster
                .cli(
                    1,
                    &["partition", "reassign", TOPIC, "0", "--replicas", replicas],
                )
                .await;
            assert_fails(&run, 1, reason);
        }
        let run = cluster
            .cli(1, &["partition", "reassign", TOPIC, "3", "--replicas", "1"])
            .await;
        assert_fails(&run, 1, "has 1 partitions; there is no partition 3");
        let run = cluster
            .cli(
                1,
                &["partition", "reassign", "absent", "0", "--replicas", "1"],
            )
            .await;
        assert_fails(&run, 1, "topic 'absent' does not exist");
        let run = cluster
            .cli(1, &["partition", "reassign", TOPIC, "0", "--replicas", "x"])
            .await;
        assert_eq!(run.code, Some(2), "{run:?}");
    })
    .await;
}

/// Bytes per second of the throttled test.
const THROTTLE_BYTES_PER_SECOND: u64 = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_copy_is_slowed_to_the_rate_and_still_finishes() {
    bounded(async {
        let cluster = Cluster::start_with(ClusterOptions {
            settings: vec![format!(
                "replica_reassignment_throttle_bytes_per_second={THROTTLE_BYTES_PER_SECOND}"
            )],
            ..ClusterOptions::default()
        })
        .await;
        let replicas = two_in_sync(&cluster).await;
        let c = (1..=3)
            .find(|id| !replicas.contains(id))
            .expect("a third broker");
        let leader = cluster.wait_serving(TOPIC).await[0];
        // 20 batches of 5 records of about 4 KiB: about 400 KB, four seconds of throttle
        // once its first second of bytes is spent.
        let mut producer = Client::connect(&cluster.address(leader)).await;
        let prefix = "x".repeat(4_000);
        let (mut size, mut largest) = (0, 0);
        for round in 0..20 {
            let batch = batch_of(&format!("{prefix}{round}"), 5);
            size += batch.len();
            largest = largest.max(batch.len());
            let written = producer.produce(TOPIC, 0, Acks::All, batch).await;
            assert_eq!(written.error_code, ErrorCode::None, "batch {round}");
        }
        let started = Instant::now();
        let target = format!("{c},{}", replicas[1]);
        let run = cluster
            .cli(
                replicas[1],
                &[
                    "partition",
                    "reassign",
                    TOPIC,
                    "0",
                    "--replicas",
                    &target,
                    "--timeout-ms",
                    "13000",
                ],
            )
            .await;
        assert_eq!(run.code, Some(0), "{run:?}");
        let elapsed = started.elapsed();
        // The bucket starts with a second of bytes, and the last batch may go on credit.
        let free = THROTTLE_BYTES_PER_SECOND as f64 + largest as f64;
        let least =
            Duration::from_secs_f64((size as f64 - free) / THROTTLE_BYTES_PER_SECOND as f64);
        assert!(
            elapsed >= least,
            "{size} bytes copied in {elapsed:?}, under {least:?}"
        );
        let run = cluster.cli(c, &["partition", "elect", TOPIC, "0"]).await;
        assert_eq!(run.code, Some(0), "{run:?}");
        cluster
            .wait_partition(
                c,
                (TOPIC, 0),
                |view| view.leader_id == i32::try_from(c).expect("an id"),
                "led by c",
            )
            .await;
        assert_eq!(read_at_least(&cluster, c, TOPIC, 100).await.len(), 100);
    })
    .await;
}
