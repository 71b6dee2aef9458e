//! Partition replication on three real brokers: `acks = all` writes reach every
//! in-sync replica, so `kill -9` of the leader loses none of them; the new leader takes
//! writes at once with the remaining in-sync set; the killed broker comes back as a
//! follower, catches up and rejoins the in-sync set; below `min_insync_replicas` an
//! `acks = all` write is refused with nothing written, while `acks = leader` works; and
//! an idempotent producer's retry after a failover is recognised by the new leader.

use strata_protocol::ErrorCode;
use strata_protocol::messages::Acks;
use strata_tests::cluster::{Cluster, ClusterOptions};
use strata_tests::{Client, batch_of, bounded, idempotent_batch_of, values};

/// Produces `rounds` batches of 5 records with `acks = all` to `leader`, asserting
/// each is acknowledged; returns their values in order.
async fn produce_acknowledged(
    cluster: &Cluster,
    leader: u32,
    topic: &str,
    prefix: &str,
    rounds: usize,
) -> Vec<String> {
    let mut producer = Client::connect(&cluster.address(leader)).await;
    let mut acknowledged = Vec::new();
    for round in 0..rounds {
        let batch_prefix = format!("{prefix}{round}");
        let written = producer
            .produce(topic, 0, Acks::All, batch_of(&batch_prefix, 5))
            .await;
        assert_eq!(
            written.error_code,
            ErrorCode::None,
            "round {round} to broker {leader}"
        );
        acknowledged.extend((0..5).map(|index| format!("{batch_prefix}-{index}")));
    }
    acknowledged
}

/// The leader of `topic`-0 once broker `asked` shows one other than `not`.
async fn new_leader(cluster: &Cluster, asked: u32, topic: &str, not: u32) -> u32 {
    let view = cluster
        .wait_partition(
            asked,
            (topic, 0),
            |view| view.leader_id >= 0 && view.leader_id as u32 != not,
            "led by another broker",
        )
        .await;
    view.leader_id as u32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9_of_the_leader() {
    bounded(async {
        let mut cluster = Cluster::start().await;
        let mut admin = Client::connect(&cluster.address(1)).await;
        admin.create_replicated_topic("events", 1, 3, &[]).await;
        let first = cluster.wait_serving("events").await[0];
        cluster
            .wait_partition(
                first,
                ("events", 0),
                |view| view.in_sync_replicas.len() == 3,
                "three in sync",
            )
            .await;
        let mut acknowledged = produce_acknowledged(&cluster, first, "events", "a", 20).await;

        cluster.kill_9(first);
        let survivor = cluster.running()[0];
        let second = new_leader(&cluster, survivor, "events", first).await;
        cluster.wait_serving("events").await;
        let mut reader = Client::connect(&cluster.address(second)).await;
        assert_eq!(
            values(&reader.read_all("events", 0, 0).await),
            acknowledged,
            "the new leader {second} has every acknowledged record, once, in order"
        );
        // Two of three in sync meets min_insync_replicas = 2: writes go on.
        acknowledged.extend(produce_acknowledged(&cluster, second, "events", "b", 10).await);

        // The old leader returns as a follower, catches up and rejoins the set.
        cluster.restart(first);
        cluster
            .wait_partition(
                second,
                ("events", 0),
                |view| view.in_sync_replicas.len() == 3,
                "three in sync again",
            )
            .await;
        acknowledged.extend(produce_acknowledged(&cluster, second, "events", "c", 5).await);

        // Now the second leader dies: the first, caught up, may take over.
        cluster.kill_9(second);
        let survivor = cluster.running()[0];
        let third = new_leader(&cluster, survivor, "events", second).await;
        cluster.wait_serving("events").await;
        let mut reader = Client::connect(&cluster.address(third)).await;
        assert_eq!(
            values(&reader.read_all("events", 0, 0).await),
            acknowledged,
            "the third leader {third} has every acknowledged record"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_all_is_refused_below_min_insync_replicas() {
    bounded(async {
        let mut cluster = Cluster::start().await;
        let mut admin = Client::connect(&cluster.address(1)).await;
        admin
            .create_replicated_topic("orders", 1, 2, &[("min_insync_replicas", "2")])
            .await;
        let leader = cluster.wait_serving("orders").await[0];
        let view = cluster
            .wait_partition(
                leader,
                ("orders", 0),
                |view| view.in_sync_replicas.len() == 2,
                "two in sync",
            )
            .await;
        let follower = *view
            .replicas
            .iter()
            .find(|&&replica| replica != leader)
            .expect("a follower");
        produce_acknowledged(&cluster, leader, "orders", "a", 3).await;

        cluster.kill_9(follower);
        cluster
            .wait_partition(
                leader,
                ("orders", 0),
                |view| view.in_sync_replicas == [leader],
                "the leader alone in sync",
            )
            .await;
        let mut producer = Client::connect(&cluster.address(leader)).await;
        let refused = producer
            .produce("orders", 0, Acks::All, batch_of("refused", 5))
            .await;
        assert_eq!(refused.error_code, ErrorCode::NotEnoughReplicas);
        let mut reader = Client::connect(&cluster.address(leader)).await;
        let before = reader.read_all("orders", 0, 0).await;
        let written = producer
            .produce("orders", 0, Acks::Leader, batch_of("leader-only", 5))
            .await;
        assert_eq!(written.error_code, ErrorCode::None);
        assert_eq!(
            values(&before).len(),
            15,
            "the refused write added nothing, and the high watermark stays below min ISR"
        );

        cluster.restart(follower);
        cluster
            .wait_partition(
                leader,
                ("orders", 0),
                |view| view.in_sync_replicas.len() == 2,
                "two in sync again",
            )
            .await;
        produce_acknowledged(&cluster, leader, "orders", "b", 3).await;
        let all = values(&reader.read_all("orders", 0, 0).await);
        assert_eq!(all.len(), 35, "{all:?}");
        assert!(!all.iter().any(|value| value.starts_with("refused")));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_failover_is_deduplicated_by_the_new_leader() {
    bounded(async {
        let mut cluster = Cluster::start().await;
        let mut admin = Client::connect(&cluster.address(1)).await;
        admin.create_replicated_topic("payments", 1, 3, &[]).await;
        let first = cluster.wait_serving("payments").await[0];
        cluster
            .wait_partition(
                first,
                ("payments", 0),
                |view| view.in_sync_replicas.len() == 3,
                "three in sync",
            )
            .await;
        let mut producer = Client::connect(&cluster.address(first)).await;
        let id = producer.init_producer_id().await;
        let batch = |sequence: i32| idempotent_batch_of(&format!("s{sequence}"), 5, id, sequence);
        for sequence in [0, 5] {
            let written = producer
                .produce("payments", 0, Acks::All, batch(sequence))
                .await;
            assert_eq!(written.error_code, ErrorCode::None);
            assert_eq!(written.base_offset, sequence as u64);
        }

        // The leader dies after acknowledging the second batch; the producer, not
        // having seen the answer, sends it again to the new leader.
        cluster.kill_9(first);
        let survivor = cluster.running()[0];
        let second = new_leader(&cluster, survivor, "payments", first).await;
        cluster.wait_serving("payments").await;
        let mut producer = Client::connect(&cluster.address(second)).await;
        let retried = producer.produce("payments", 0, Acks::All, batch(5)).await;
        assert_eq!(retried.error_code, ErrorCode::None);
        assert_eq!(retried.base_offset, 5, "the original batch's offsets");
        let next = producer.produce("payments", 0, Acks::All, batch(10)).await;
        assert_eq!(next.error_code, ErrorCode::None);
        assert_eq!(next.base_offset, 10, "no duplicate in between");
        let all = values(&producer.read_all("payments", 0, 0).await);
        assert_eq!(all.len(), 15, "{all:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_cut_off_from_its_leader_leaves_the_isr_and_rejoins_after_the_heal() {
    bounded(async {
        let cluster = Cluster::start_with(ClusterOptions {
            proxied: true,
            settings: vec!["replica_lag_max_ms=1000".to_owned()],
            ..ClusterOptions::default()
        })
        .await;
        let mut admin = Client::connect(&cluster.address(1)).await;
        admin.create_replicated_topic("clicks", 1, 3, &[]).await;
        let leader = cluster.wait_serving("clicks").await[0];
        let view = cluster
            .wait_partition(
                leader,
                ("clicks", 0),
                |view| view.in_sync_replicas.len() == 3,
                "three in sync",
            )
            .await;
        let follower = *view
            .replicas
            .iter()
            .find(|&&replica| replica != leader)
            .expect("a follower");
        produce_acknowledged(&cluster, leader, "clicks", "a", 3).await;

        // The follower cannot fetch: after replica_lag_max_ms it leaves the set, and
        // acks=all goes on with the two left.
        cluster.cut_between(leader, follower);
        cluster
            .wait_partition(
                leader,
                ("clicks", 0),
                |view| view.in_sync_replicas.len() == 2 && !view.in_sync_replicas.contains(&follower),
                "the cut follower out of the set",
            )
            .await;
        let mut acknowledged = produce_acknowledged(&cluster, leader, "clicks", "b", 3).await;

        cluster.heal_between(leader, follower);
        cluster
            .wait_partition(
                leader,
                ("clicks", 0),
                |view| view.in_sync_replicas.len() == 3,
                "the follower back in the set",
            )
            .await;
        acknowledged.extend(produce_acknowledged(&cluster, leader, "clicks", "c", 3).await);
        let mut reader = Client::connect(&cluster.address(leader)).await;
        let all = values(&reader.read_all("clicks", 0, 0).await);
        assert_eq!(all[15..], acknowledged[..]);
    })
    .await;
}
