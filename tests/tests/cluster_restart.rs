//! Restarts of every voter: one at a time (the first stopped by `SIGTERM`, which leaves it
//! shutting down, the others by `kill -9`; each alive again in a new incarnation, while
//! the other two take a create), then all three at once. The cluster comes back with the
//! same topics, partitions and leaders, and every record.

use std::collections::BTreeMap;

use strata_protocol::ErrorCode;
use strata_protocol::messages::Acks;
use strata_tests::cluster::Cluster;
use strata_tests::{Client, WAIT, batch_of, bounded, values};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_voter_restarts_one_at_a_time_and_all_at_once() {
    bounded(async {
        let mut cluster = Cluster::start().await;
        let mut client = Client::connect(&cluster.address(1)).await;
        client.create_topic("kept", 6, &[]).await;
        client.create_topic("small", 1, &[]).await;
        let layout = wait_layout(&cluster, &["kept", "small"]).await;
        for (topic, leaders) in &layout {
            for (partition, leader) in leaders.iter().enumerate() {
                let mut on_leader = Client::connect(&cluster.address(*leader)).await;
                let written = on_leader
                    .produce(
                        topic,
                        partition as u32,
                        Acks::All,
                        batch_of(&format!("{topic}-{partition}"), 4),
                    )
                    .await;
                assert_eq!(written.error_code, ErrorCode::None, "{topic}-{partition}");
            }
        }

        for id in cluster.ids() {
            let incarnation = cluster.status().await.incarnation(id);
            if id == 1 {
                // A graceful stop: the broker says so before it goes.
                assert_eq!(cluster.terminate(id), Some(0), "a clean exit on SIGTERM");
                cluster
                    .wait_for(
                        |status| status.is(id, "shutting_down"),
                        WAIT,
                        "the stopped broker shutting down",
                    )
                    .await;
            } else {
                cluster.kill_9(id);
            }
            // The two others still form a quorum.
            let survivor = cluster.running()[0];
            let mut on_survivor = Client::connect(&cluster.address(survivor)).await;
            on_survivor
                .create_topic(&format!("while-{id}-was-down"), 1, &[])
                .await;
            cluster.restart(id);
            cluster
                .wait_for(
                    |status| {
                        status.is(id, "alive")
                            && status.incarnation(id) > incarnation
                            && status.partitions.offline == 0
                    },
                    WAIT,
                    &format!("broker {id} alive again in a new incarnation"),
                )
                .await;
            check_records(&cluster, &layout).await;
        }
        let created_meanwhile: Vec<String> = cluster
            .ids()
            .iter()
            .map(|id| format!("while-{id}-was-down"))
            .collect();
        cluster
            .wait_for_topics(
                &cluster.ids(),
                |topics| {
                    created_meanwhile
                        .iter()
                        .all(|name| topics.contains_key(name))
                },
                "the topics created while a broker was down",
            )
            .await;
        let before = everything_with_leaders(&cluster).await;

        for id in cluster.ids() {
            cluster.kill_9(id);
        }
        cluster.restart_all(&cluster.ids());
        cluster
            .wait_for(
                |status| {
                    status.has_leader()
                        && status.alive().len() == 3
                        && status.partitions.offline == 0
                },
                WAIT,
                "every broker alive after restarting all at once",
            )
            .await;
        let after = everything_with_leaders(&cluster).await;
        assert_eq!(after, before, "the same topics, partitions and leaders");
        for id in cluster.ids() {
            assert_eq!(cluster.topics_on(id).await, before, "broker {id}'s view");
        }
        check_records(&cluster, &layout).await;
    })
    .await;
}

/// Every topic's partition leaders once each has one, as broker 1 sees them.
async fn everything_with_leaders(cluster: &Cluster) -> BTreeMap<String, Vec<Option<u32>>> {
    cluster
        .wait_for_topics(
            &cluster.ids(),
            |topics| topics.values().flatten().all(Option::is_some),
            "a leader for every partition",
        )
        .await;
    cluster.topics_on(1).await
}

/// Waits until `topics` are served by their leaders; returns the leaders.
async fn wait_layout(cluster: &Cluster, topics: &[&str]) -> BTreeMap<String, Vec<u32>> {
    let mut layout = BTreeMap::new();
    for topic in topics {
        layout.insert((*topic).to_owned(), cluster.wait_serving(topic).await);
    }
    layout
}

/// Every partition of `layout` holds its four records, read from its leader.
async fn check_records(cluster: &Cluster, layout: &BTreeMap<String, Vec<u32>>) {
    for (topic, leaders) in layout {
        assert_eq!(
            &cluster.wait_serving(topic).await,
            leaders,
            "{topic} keeps its leaders"
        );
        for (partition, leader) in leaders.iter().enumerate() {
            let mut on_leader = Client::connect(&cluster.address(*leader)).await;
            let records =
                tokio::time::timeout(WAIT, on_leader.read_all(topic, partition as u32, 0))
                    .await
                    .expect("read in time");
            let expected: Vec<String> = (0..4)
                .map(|index| format!("{topic}-{partition}-{index}"))
                .collect();
            assert_eq!(
                values(&records),
                expected,
                "{topic}-{partition} on broker {leader}"
            );
        }
    }
}
