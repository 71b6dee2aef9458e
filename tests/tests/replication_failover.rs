//! Partition replication on three real brokers: `acks = all` writes reach every
//! in-sync replica, so `kill -9` of the leader loses none of them; the new leader takes
//! writes at once with the remaining in-sync set; the killed broker comes back as a
//! follower, catches up and rejoins the in-sync set; below `min_insync_replicas` an
//! `acks = all` write is refused with nothing written, while `acks = leader` works; and
//! an idempotent producer's retry after a failover is recognised by the new leader.

use strata_protocol::ErrorCode;
use strata_protocol::messages::Acks;
use strata_tests::cluster::writer::{Writer, current_leader, produce_retrying, read_at_least};
use strata_tests::cluster::{Cluster, ClusterOptions};

use strata_tests::{Client, batch_of, bounded, idempotent_batch_of, values, wait_for_metrics};

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
        cluster.wait_serving("events").await;
        wait_in_sync(&cluster, "events", 3).await;
        let mut writer = Writer::new(&cluster, "events").await;
        writer.write(&cluster, "a", 20).await;

        let first = current_leader(&cluster, "events").await.expect("a leader");
        cluster.kill_9(first);
        let second = new_leader(&cluster, cluster.running()[0], "events", first).await;
        assert_eq!(
            read_at_least(&cluster, second, "events", writer.acknowledged.len()).await,
            writer.acknowledged,
            "the new leader {second} has every acknowledged record, once, in order"
        );
        // Two of three in sync meets min_insync_replicas = 2: writes go on.
        writer.write(&cluster, "b", 10).await;

        // The old leader returns as a follower, catches up and rejoins the set.
        cluster.restart(first);
        wait_in_sync(&cluster, "events", 3).await;
        writer.write(&cluster, "c", 5).await;

        // Now the leader dies again: a caught-up replica takes over.
        let leader = current_leader(&cluster, "events").await.expect("a leader");
        cluster.kill_9(leader);
        let next = new_leader(&cluster, cluster.running()[0], "events", leader).await;
        assert_eq!(
            read_at_least(&cluster, next, "events", writer.acknowledged.len()).await,
            writer.acknowledged,
            "the leader after {leader}, {next}, has every acknowledged record"
        );
    })
    .await;
}

/// Waits until a running broker shows `count` replicas of `topic`-0 in sync.
async fn wait_in_sync(cluster: &Cluster, topic: &str, count: usize) {
    cluster
        .wait_partition(
            cluster.running()[0],
            (topic, 0),
            |view| view.in_sync_replicas.len() == count,
            &format!("{count} in sync"),
        )
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
        let mut writer = Writer::new(&cluster, "orders").await;
        writer.write(&cluster, "a", 3).await;

        cluster.kill_9(follower);
        cluster
            .wait_partition(
                leader,
                ("orders", 0),
                |view| view.in_sync_replicas == [leader],
                "the leader alone in sync",
            )
            .await;
        // The offsets log's partitions may be under-replicated too, but with 3 replicas
        // none is below its minimum: only `orders` is.
        wait_for_metrics(
            &cluster.metrics_address(leader),
            &["strata_partitions_under_min_isr 1"],
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
        writer.write(&cluster, "b", 3).await;
        let all = read_at_least(&cluster, leader, "orders", 35).await;
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
        cluster.wait_serving("payments").await;
        wait_in_sync(&cluster, "payments", 3).await;
        let mut writer = Writer::new(&cluster, "payments").await;
        writer.write(&cluster, "s", 2).await;

        // The leader dies after acknowledging the second batch; the producer, not
        // having seen the answer, sends it again to the new leader.
        let first = current_leader(&cluster, "payments")
            .await
            .expect("a leader");
        cluster.kill_9(first);
        new_leader(&cluster, cluster.running()[0], "payments", first).await;
        let again = idempotent_batch_of("s1", 5, writer.id, 5);
        let retried = produce_retrying(&cluster, "payments", again).await;
        assert_eq!(retried.error_code, ErrorCode::None);
        assert_eq!(retried.base_offset, 5, "the original batch's offsets");
        writer.write(&cluster, "t", 1).await;
        let leader = current_leader(&cluster, "payments")
            .await
            .expect("a leader");
        let all = read_at_least(&cluster, leader, "payments", 15).await;
        assert_eq!(all, writer.acknowledged, "no duplicate");
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
        // The controller stays in touch with both, so the leader's request to drop
        // the follower reaches it, and the follower is not fenced.
        let controller = cluster.leader().await;
        let follower = *view
            .replicas
            .iter()
            .find(|&&replica| replica != leader && replica != controller)
            .expect("a follower that is not the controller");
        let mut writer = Writer::new(&cluster, "clicks").await;
        writer.write(&cluster, "a", 3).await;

        // The follower cannot fetch: after replica_lag_max_ms it leaves the set, and
        // acks=all goes on with the two left.
        cluster.cut_between(leader, follower);
        cluster
            .wait_partition(
                leader,
                ("clicks", 0),
                |view| {
                    view.in_sync_replicas.len() == 2 && !view.in_sync_replicas.contains(&follower)
                },
                "the cut follower out of the set",
            )
            .await;
        writer.write(&cluster, "b", 3).await;

        cluster.heal_between(leader, follower);
        cluster
            .wait_partition(
                leader,
                ("clicks", 0),
                |view| view.in_sync_replicas.len() == 3,
                "the follower back in the set",
            )
            .await;
        writer.write(&cluster, "c", 3).await;
        let leader = current_leader(&cluster, "clicks").await.expect("a leader");
        let all = read_at_least(&cluster, leader, "clicks", 45).await;
        assert_eq!(all, writer.acknowledged);
    })
    .await;
}
