//! `kill -9` of a broker that is not the controller: `strata cluster status` shows it
//! fenced and its partitions offline, a produce to one of them gets a retriable
//! `LeaderNotAvailable` while the other partitions serve, and after a restart it is alive
//! in a new incarnation and serves its partitions again, data intact. The metrics count
//! the alive brokers and the partitions without a leader, and a topic deleted while the
//! broker was down leaves no data on it once it is back.

use strata_protocol::ErrorCode;
use strata_protocol::messages::Acks;
use strata_tests::cluster::Cluster;
use strata_tests::{Client, WAIT, batch_of, bounded, values, wait_for_metrics};

const PARTITIONS: u32 = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_broker_is_fenced_and_comes_back() {
    bounded(async {
        let mut cluster = Cluster::start().await;
        let mut client = Client::connect(&cluster.address(1)).await;
        client.create_topic("orders", PARTITIONS, &[]).await;
        let leaders = cluster.wait_serving("orders").await;
        for (partition, &leader) in leaders.iter().enumerate() {
            let mut client = Client::connect(&cluster.address(leader)).await;
            let written = client
                .produce(
                    "orders",
                    partition as u32,
                    Acks::All,
                    batch_of(&format!("before-{partition}"), 3),
                )
                .await;
            assert_eq!(written.error_code, ErrorCode::None, "partition {partition}");
        }

        let controller = cluster.leader().await;
        let victim = cluster
            .ids()
            .into_iter()
            .find(|&id| id != controller)
            .expect("a non-controller");
        let survivor = cluster
            .ids()
            .into_iter()
            .find(|&id| id != victim)
            .expect("a survivor");
        // A topic with a partition on every broker, deleted while the victim is down.
        client.create_topic("doomed", 3, &[]).await;
        let doomed = cluster.wait_serving("doomed").await;
        assert!(
            doomed.contains(&victim),
            "a doomed partition on {victim}: {doomed:?}"
        );
        // Every partition the victim leads, of every topic (the offsets log's included).
        let everything = cluster.topics_on(survivor).await;
        let led_by_victim: usize = everything
            .values()
            .flatten()
            .filter(|leader| **leader == Some(victim))
            .count();
        let total: usize = everything.values().map(Vec::len).sum();
        let before = cluster.status_from(survivor).await;
        assert_eq!(
            before.partitions.total as usize, total,
            "status counts what metadata lists: {before:#?}"
        );
        let incarnation = before.incarnation(victim);

        cluster.kill_9(victim);
        let status = cluster
            .wait_for_from(
                survivor,
                |status| {
                    status.is(victim, "fenced")
                        && status.partitions.offline as usize == led_by_victim
                },
                WAIT,
                "the killed broker fenced, its partitions offline",
            )
            .await;
        assert_eq!(status.alive().len(), 2, "{status:#?}");
        wait_for_metrics(
            &cluster.metrics_address(survivor),
            &[
                "strata_cluster_brokers_alive 2",
                &format!("strata_partitions_without_leader {led_by_victim}"),
            ],
        )
        .await;
        Client::connect(&cluster.address(survivor))
            .await
            .delete_topic("doomed")
            .await;
        assert!(
            !cluster.partition_dirs(victim, "doomed").is_empty(),
            "the victim, down, still holds its doomed partition"
        );

        // Its partitions answer a retriable error through a live broker; the others serve.
        let mut client = Client::connect(&cluster.address(survivor)).await;
        for (partition, &leader) in leaders.iter().enumerate() {
            let partition = partition as u32;
            if leader == victim {
                let refused = client
                    .produce("orders", partition, Acks::All, batch_of("refused", 1))
                    .await;
                assert_eq!(
                    refused.error_code,
                    ErrorCode::LeaderNotAvailable,
                    "partition {partition}"
                );
                assert!(refused.error_code.is_retriable());
            } else {
                let mut on_leader = Client::connect(&cluster.address(leader)).await;
                let written = on_leader
                    .produce(
                        "orders",
                        partition,
                        Acks::All,
                        batch_of(&format!("during-{partition}"), 1),
                    )
                    .await;
                assert_eq!(
                    written.error_code,
                    ErrorCode::None,
                    "partition {partition} on {leader}"
                );
            }
        }

        cluster.restart(victim);
        let status = cluster
            .wait_for_from(
                survivor,
                |status| status.is(victim, "alive") && status.partitions.offline == 0,
                WAIT,
                "the restarted broker alive, nothing offline",
            )
            .await;
        assert!(
            status.incarnation(victim) > incarnation,
            "a new incarnation after the restart: {incarnation} before, {status:#?}"
        );
        cluster
            .wait_for_topics(
                &cluster.ids(),
                |topics| {
                    topics
                        .get("orders")
                        .is_some_and(|now| now.iter().all(Option::is_some))
                },
                "orders with a leader per partition again",
            )
            .await;
        let deadline = std::time::Instant::now() + WAIT;
        while !cluster.partition_dirs(victim, "doomed").is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the restarted broker still holds the deleted topic's log"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let now: Vec<Option<u32>> = cluster.topics_on(victim).await["orders"].clone();
        for (partition, &leader) in leaders.iter().enumerate() {
            assert_eq!(
                now[partition],
                Some(leader),
                "partition {partition} keeps its broker"
            );
            let mut on_leader = Client::connect(&cluster.address(leader)).await;
            let mut expected: Vec<String> = (0..3)
                .map(|index| format!("before-{partition}-{index}"))
                .collect();
            if leader != victim {
                expected.push(format!("during-{partition}-0"));
            }
            let records =
                tokio::time::timeout(WAIT, on_leader.read_all("orders", partition as u32, 0))
                    .await
                    .expect("read in time");
            assert_eq!(
                values(&records),
                expected,
                "partition {partition} on broker {leader}"
            );
            let written = on_leader
                .produce("orders", partition as u32, Acks::All, batch_of("after", 1))
                .await;
            assert_eq!(
                written.error_code,
                ErrorCode::None,
                "partition {partition} serves again"
            );
        }
    })
    .await;
}
