//! Three real brokers share one metadata log: `strata cluster status` shows the quorum
//! and the brokers, a topic created through any broker is visible on all of them,
//! partitions' leaders spread over every broker with each log on its leader's disk (added
//! partitions too), and
//! `strata topic delete` removes the data on every broker. One cluster serves every check,
//! in order.

use std::collections::BTreeMap;
use std::time::Duration;

use strata_client::{Admin, ClientConfig};
use strata_tests::cluster::{Cluster, ClusterStatus};
use strata_tests::{Client, WAIT, bounded};

/// Log entries a voter or broker may be behind in a quiet cluster: heartbeats and
/// registrations still in flight.
const LAG_SMALL: u64 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_brokers_share_one_metadata() {
    bounded(async {
        let cluster = Cluster::start().await;
        status_shows_the_quorum_and_the_brokers(&cluster).await;
        a_topic_created_on_any_broker_is_visible_on_all(&cluster).await;
        partitions_spread_over_every_broker(&cluster).await;
        delete_removes_the_data_on_every_broker(&cluster).await;
    })
    .await;
}

async fn status_shows_the_quorum_and_the_brokers(cluster: &Cluster) {
    let leader = cluster.leader().await;
    // Only the controller leader knows the voters' lags.
    let settled = |status: &ClusterStatus| {
        status
            .controller
            .voters
            .iter()
            .all(|voter| voter.lag.is_some_and(|lag| lag <= LAG_SMALL))
            && status
                .brokers
                .iter()
                .all(|broker| broker.applied_lag.is_none_or(|lag| lag <= LAG_SMALL))
    };
    let status = cluster
        .wait_for_from(leader, settled, WAIT, "small lags on the leader")
        .await;
    assert_eq!(status.controller.leader, Some(leader), "{status:#?}");
    assert!(status.controller.term >= 1, "{status:#?}");
    let voters: Vec<u32> = status
        .controller
        .voters
        .iter()
        .map(|voter| voter.id)
        .collect();
    assert_eq!(voters, [1, 2, 3], "{status:#?}");
    for id in cluster.ids() {
        let broker = status
            .broker(id)
            .unwrap_or_else(|| panic!("broker {id}: {status:#?}"));
        assert_eq!(broker.state, "alive", "{status:#?}");
        assert_eq!(broker.address, cluster.address(id), "{status:#?}");
        assert_eq!(broker.incarnation, 1, "a first start: {status:#?}");
    }
    assert_eq!(status.brokers.len(), 3, "{status:#?}");
    assert_eq!(status.partitions.offline, 0, "{status:#?}");
    assert_eq!(status.partitions.under_replicated, 0, "{status:#?}");

    // Every broker knows the same leader and term.
    for id in cluster.ids() {
        let other = cluster.status_from(id).await;
        assert_eq!(
            other.controller.leader,
            Some(leader),
            "broker {id}: {other:#?}"
        );
        assert_eq!(other.brokers.len(), 3, "broker {id}: {other:#?}");
    }

    let run = cluster.cli(leader, &["cluster", "status"]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let text = &run.stdout;
    assert!(
        text.starts_with(&format!("controller: leader {leader}, term ")),
        "{text}"
    );
    for id in cluster.ids() {
        let line = text
            .lines()
            .find(|line| line.contains(&cluster.address(id)))
            .unwrap_or_else(|| panic!("broker {id} in\n{text}"));
        assert!(line.starts_with(&id.to_string()), "{line}");
        assert!(line.contains("alive"), "{line}");
    }
    assert!(text.contains(", 0 offline, 0 under-replicated"), "{text}");
}

async fn a_topic_created_on_any_broker_is_visible_on_all(cluster: &Cluster) {
    let names: Vec<String> = cluster
        .ids()
        .iter()
        .map(|id| format!("made-on-{id}"))
        .collect();
    for (id, name) in cluster.ids().into_iter().zip(&names) {
        // A raw connection to this broker alone: the create goes through it.
        let mut client = Client::connect(&cluster.address(id)).await;
        client.create_topic(name, 2, &[]).await;
        let on_creator = cluster.topics_on(id).await;
        assert_eq!(
            on_creator.get(name).map(Vec::len),
            Some(2),
            "the creating broker knows the topic once the create is answered: {on_creator:?}"
        );
    }
    cluster
        .wait_for_topics(
            &cluster.ids(),
            |topics| {
                names.iter().all(|name| {
                    topics.get(name).is_some_and(|leaders| {
                        leaders.len() == 2 && leaders.iter().all(Option::is_some)
                    })
                })
            },
            "every made-on topic with a leader per partition",
        )
        .await;
    // The same leaders everywhere.
    let views: Vec<BTreeMap<String, Vec<Option<u32>>>> = {
        let mut views = Vec::new();
        for id in cluster.ids() {
            views.push(cluster.topics_on(id).await);
        }
        views
    };
    for name in &names {
        assert_eq!(views[0][name], views[1][name], "{name}");
        assert_eq!(views[0][name], views[2][name], "{name}");
    }
    // DescribeTopics through each broker, as the client sends it.
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    for id in cluster.ids() {
        let admin = Admin::new(ClientConfig::new(&cluster.address(id))).expect("admin");
        let described = tokio::time::timeout(WAIT, admin.describe_topics(Some(&names)))
            .await
            .expect("describe in time")
            .expect("describe");
        assert_eq!(described.len(), 3, "{described:?}");
        for (name, details) in described {
            let details = details.unwrap_or_else(|error| panic!("{name} on {id}: {error}"));
            assert_eq!(details.partitions.len(), 2, "{name} on {id}: {details:?}");
        }
    }
}

async fn partitions_spread_over_every_broker(cluster: &Cluster) {
    let mut client = Client::connect(&cluster.address(1)).await;
    client.create_topic("spread", 6, &[]).await;
    cluster
        .wait_for_topics(
            &cluster.ids(),
            |topics| {
                topics.get("spread").is_some_and(|leaders| {
                    leaders.len() == 6 && leaders.iter().all(Option::is_some)
                })
            },
            "spread with a leader per partition",
        )
        .await;
    let leaders = cluster.topics_on(1).await["spread"].clone();
    for id in cluster.ids() {
        let led: Vec<u32> = (0..6u32)
            .filter(|&partition| leaders[partition as usize] == Some(id))
            .collect();
        assert_eq!(led.len(), 2, "broker {id} leads two of six: {leaders:?}");
        // Each partition's log is on its leader's disk, and only there.
        wait_dirs(cluster, id, "spread", &led).await;
    }

    // Added partitions keep the spread: three of nine each.
    let run = cluster
        .cli(3, &["topic", "alter", "spread", "--partitions", "9"])
        .await;
    assert_eq!(run.code, Some(0), "{run:?}");
    cluster
        .wait_for_topics(
            &cluster.ids(),
            |topics| {
                topics
                    .get("spread")
                    .is_some_and(|leaders| leaders.len() == 9)
            },
            "spread with nine partitions",
        )
        .await;
    let leaders = cluster.wait_serving("spread").await;
    assert_eq!(leaders.len(), 9, "{leaders:?}");
    for id in cluster.ids() {
        let led: Vec<u32> = (0..9u32)
            .filter(|&partition| leaders[partition as usize] == id)
            .collect();
        assert_eq!(led.len(), 3, "broker {id} leads three of nine: {leaders:?}");
        wait_dirs(cluster, id, "spread", &led).await;
    }
}

async fn delete_removes_the_data_on_every_broker(cluster: &Cluster) {
    let run = cluster.cli(2, &["topic", "delete", "spread"]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    for id in cluster.ids() {
        wait_dirs(cluster, id, "spread", &[]).await;
    }
    cluster
        .wait_for_topics(
            &cluster.ids(),
            |topics| !topics.contains_key("spread") && topics.contains_key("made-on-1"),
            "spread gone, the other topics kept",
        )
        .await;
}

/// Waits until broker `id`'s data directory holds exactly the logs of `topic`'s
/// `partitions`.
async fn wait_dirs(cluster: &Cluster, id: u32, topic: &str, partitions: &[u32]) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let found = cluster.partition_dirs(id, topic);
        if found == partitions {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "broker {id} holds {topic} partitions {found:?}, expected {partitions:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
