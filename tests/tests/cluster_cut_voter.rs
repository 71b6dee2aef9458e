//! One voter cut off from the other two by the fault harness's proxies (every
//! voter→voter link goes through one): the majority keeps creating topics, and after the
//! heal the cut voter catches up and shows them. First a follower is cut, then the
//! controller leader, whose place the majority fills with a new election. Last, a voter
//! cut off for longer than its session is fenced, its partitions offline, and after the
//! heal it is alive again in the same incarnation and serves them.

use strata_tests::cluster::{Cluster, ClusterOptions};
use strata_tests::{Client, WAIT, bounded};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_majority_serves_metadata_and_a_cut_voter_catches_up() {
    bounded(async {
        let cluster = Cluster::start_with(ClusterOptions {
            proxied: true,
            ..ClusterOptions::default()
        })
        .await;
        let leader = cluster.leader().await;
        let follower = cluster
            .ids()
            .into_iter()
            .find(|&id| id != leader)
            .expect("a follower");
        cut_create_heal(&cluster, follower, "follower").await;

        let leader = cluster.leader().await;
        cut_create_heal(&cluster, leader, "leader").await;

        fenced_by_a_long_cut(&cluster).await;
    })
    .await;
}

/// Cuts a voter off until the controller fences it, then heals.
async fn fenced_by_a_long_cut(cluster: &Cluster) {
    let mut client = Client::connect(&cluster.address(1)).await;
    client.create_topic("served", 3, &[]).await;
    let leaders = cluster.wait_serving("served").await;
    let controller = cluster.leader().await;
    let cut = cluster
        .ids()
        .into_iter()
        .find(|&id| id != controller)
        .expect("a follower");
    let incarnation = cluster.status_from(controller).await.incarnation(cut);
    // Every partition it leads, of every topic so far.
    let led = cluster
        .topics_on(controller)
        .await
        .values()
        .flatten()
        .filter(|&&leader| leader == Some(cut))
        .count() as u32;
    cluster.cut_off(cut);
    cluster
        .wait_for_from(
            controller,
            |status| status.is(cut, "fenced") && status.partitions.offline == led,
            WAIT,
            "the cut voter fenced, its partitions offline",
        )
        .await;
    cluster.heal(cut);
    let status = cluster
        .wait_for_from(
            controller,
            |status| status.is(cut, "alive") && status.partitions.offline == 0,
            WAIT,
            "the healed voter alive, nothing offline",
        )
        .await;
    assert_eq!(
        status.incarnation(cut),
        incarnation,
        "not restarted, the same incarnation: {status:#?}"
    );
    assert_eq!(cluster.wait_serving("served").await, leaders);
}

/// Cuts `cut` off, creates topics on the other two, heals, and waits for `cut` to show
/// them.
async fn cut_create_heal(cluster: &Cluster, cut: u32, role: &str) {
    let majority: Vec<u32> = cluster.ids().into_iter().filter(|&id| id != cut).collect();
    cluster.cut_off(cut);
    let status = cluster
        .wait_for_from(
            majority[0],
            |status| status.controller.leader.is_some_and(|leader| leader != cut),
            WAIT,
            "a controller leader in the majority",
        )
        .await;
    eprintln!("the {role} {cut} cut off: {status:?}");
    let names: Vec<String> = majority
        .iter()
        .map(|id| format!("without-{role}-via-{id}"))
        .collect();
    for (id, name) in majority.iter().zip(&names) {
        let mut client = Client::connect(&cluster.address(*id)).await;
        client.create_topic(name, 1, &[]).await;
    }
    cluster
        .wait_for_topics(
            &majority,
            |topics| names.iter().all(|name| topics.contains_key(name)),
            "the new topics",
        )
        .await;
    let on_cut = cluster.topics_on(cut).await;
    for name in &names {
        assert!(
            !on_cut.contains_key(name),
            "the cut voter cannot know {name} yet: {on_cut:?}"
        );
    }

    cluster.heal(cut);
    cluster
        .wait_for_topics(
            &[cut],
            |topics| names.iter().all(|name| topics.contains_key(name)),
            "the topics created during the cut",
        )
        .await;
    cluster
        .wait_for(
            |status| status.has_leader() && status.alive().len() == 3,
            WAIT,
            "every broker alive after the heal",
        )
        .await;
}
