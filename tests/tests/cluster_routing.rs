//! Clients that know one broker of three reach every partition: a producer bootstrapped
//! on broker 1 writes to partitions led by each broker, a consumer bootstrapped on
//! broker 2 reads them all back, a broker that does not lead a partition answers
//! `NotLeader` naming the one that does, and a consumer group whose coordinator is another
//! broker than its bootstrap one commits and resumes from its offsets. One cluster
//! serves every check.

use std::collections::BTreeMap;
use std::time::Duration;

use strata_client::{
    Admin, AutoOffsetReset, ClientConfig, Consumer, ConsumerConfig, NewTopic, Producer,
    ProducerConfig, ProducerRecord, TopicPartition,
};
use strata_protocol::messages::{Acks, FindCoordinatorRequest};
use strata_protocol::{ErrorCode, Response};
use strata_tests::cluster::Cluster;
use strata_tests::{Client, WAIT, assert_polls_nothing, batch_of, bounded, read_records};

const PARTITIONS: u32 = 6;
const PER_PARTITION: u32 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_reach_partitions_on_every_broker() {
    bounded(async {
        let cluster = Cluster::start().await;
        produce_and_consume_reach_every_partition(&cluster).await;
        a_group_coordinated_elsewhere_commits_and_resumes(&cluster).await;
    })
    .await;
}

async fn produce_and_consume_reach_every_partition(cluster: &Cluster) {
    let admin = Admin::new(ClientConfig::new(&cluster.address(1))).expect("admin");
    admin
        .create_topic(NewTopic::new("routed", PARTITIONS))
        .await
        .expect("create routed");
    let leaders: Vec<Option<u32>> = cluster
        .wait_serving("routed")
        .await
        .into_iter()
        .map(Some)
        .collect();
    for id in cluster.ids() {
        assert!(
            leaders.contains(&Some(id)),
            "broker {id} leads a partition: {leaders:?}"
        );
    }

    let records = (0..PER_PARTITION).flat_map(|index| {
        (0..PARTITIONS).map(move |partition| {
            ProducerRecord::new("routed", format!("{partition}-{index}")).partition(partition)
        })
    });
    send_all(&cluster.address(1), records).await;

    // Each partition's records are on its leader, read there directly.
    for partition in 0..PARTITIONS {
        let leader = leaders[partition as usize].expect("a leader");
        let mut client = Client::connect(&cluster.address(leader)).await;
        let records = client.read_all("routed", partition, 0).await;
        let expected: Vec<String> = (0..PER_PARTITION)
            .map(|index| format!("{partition}-{index}"))
            .collect();
        assert_eq!(
            strata_tests::values(&records),
            expected,
            "partition {partition} on broker {leader}"
        );
    }

    let mut consumer = Consumer::new(ConsumerConfig {
        auto_offset_reset: AutoOffsetReset::Earliest,
        ..ConsumerConfig::new(&cluster.address(2))
    })
    .expect("consumer");
    let partitions: Vec<TopicPartition> = (0..PARTITIONS)
        .map(|partition| TopicPartition::new("routed", partition))
        .collect();
    consumer.assign(&partitions);
    let records = tokio::time::timeout(
        WAIT,
        read_records(&mut consumer, (PARTITIONS * PER_PARTITION) as usize),
    )
    .await
    .expect("every record read in time");
    let mut by_partition: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for record in &records {
        let value =
            String::from_utf8(record.value.clone().unwrap_or_default().to_vec()).expect("utf-8");
        by_partition
            .entry(record.partition)
            .or_default()
            .push(value);
    }
    for partition in 0..PARTITIONS {
        let expected: Vec<String> = (0..PER_PARTITION)
            .map(|index| format!("{partition}-{index}"))
            .collect();
        assert_eq!(
            by_partition.get(&partition),
            Some(&expected),
            "partition {partition}"
        );
    }
    assert_polls_nothing(&mut consumer, "every record was read once").await;

    // An admin that knows one broker describes every partition with its leader's
    // figures, not the zeros that broker has for partitions it does not hold.
    let mut described = admin
        .describe_topics(Some(&["routed"]))
        .await
        .expect("describe routed");
    let (_, details) = described.pop().expect("one topic");
    for partition in &details.expect("routed described").partitions {
        assert_eq!(
            partition.high_watermark,
            u64::from(PER_PARTITION),
            "partition {} led by {:?}",
            partition.partition,
            partition.leader
        );
        assert!(partition.size_bytes > 0, "{partition:?}");
    }

    // A broker that does not lead a partition says so, naming the leader.
    for (partition, leader) in leaders.iter().enumerate() {
        let leader = leader.expect("a leader");
        let other = cluster
            .ids()
            .into_iter()
            .find(|&id| id != leader)
            .expect("another broker");
        let mut client = Client::connect(&cluster.address(other)).await;
        let refused = client
            .produce(
                "routed",
                partition as u32,
                Acks::All,
                batch_of("misrouted", 1),
            )
            .await;
        assert_eq!(
            refused.error_code,
            ErrorCode::NotLeader,
            "partition {partition} on {other}"
        );
        let hint = refused.error_message.unwrap_or_default();
        assert!(
            hint.contains(&cluster.address(leader)),
            "the leader's address in {hint:?}"
        );
        let fetched = client.fetch("routed", partition as u32, 0, 0, 0).await;
        assert_eq!(
            fetched.error_code,
            ErrorCode::NotLeader,
            "fetch {partition} on {other}"
        );
    }
}

async fn a_group_coordinated_elsewhere_commits_and_resumes(cluster: &Cluster) {
    let bootstrap = cluster.address(1);
    let group = group_coordinated_away_from(cluster, 1).await;
    let admin = Admin::new(ClientConfig::new(&bootstrap)).expect("admin");
    admin
        .create_topic(NewTopic::new("grouped", 3))
        .await
        .expect("create grouped");
    produce(&bootstrap, "grouped", "first", 9).await;

    let group_consumer = || {
        let mut consumer = Consumer::new(ConsumerConfig {
            auto_offset_reset: AutoOffsetReset::Earliest,
            enable_auto_commit: false,
            ..ConsumerConfig::new(&bootstrap)
        })
        .expect("consumer");
        consumer.subscribe(["grouped"], &group).expect("subscribe");
        consumer
    };
    let mut first = group_consumer();
    let records = tokio::time::timeout(WAIT, read_records(&mut first, 9))
        .await
        .expect("the first nine in time");
    assert_eq!(records.len(), 9, "{records:?}");
    tokio::time::timeout(WAIT, first.commit_sync())
        .await
        .expect("commit in time")
        .expect("commit");
    tokio::time::timeout(WAIT, first.close())
        .await
        .expect("close in time")
        .expect("close");

    produce(&bootstrap, "grouped", "second", 6).await;
    let mut second = group_consumer();
    let records = tokio::time::timeout(WAIT, read_records(&mut second, 6))
        .await
        .expect("the next six in time");
    let mut values: Vec<String> = records
        .iter()
        .map(|record| {
            String::from_utf8(record.value.clone().unwrap_or_default().to_vec()).expect("utf-8")
        })
        .collect();
    values.sort();
    let mut expected: Vec<String> = (0..6).map(|index| format!("second-{index}")).collect();
    expected.sort();
    assert_eq!(
        values, expected,
        "the group resumed from its committed offsets"
    );
    assert_polls_nothing(
        &mut second,
        "nothing before the committed offsets is read again",
    )
    .await;
    second.commit_sync().await.expect("commit");

    let described = tokio::time::timeout(WAIT, admin.describe_group(&group))
        .await
        .expect("describe in time")
        .expect("describe the group");
    let committed: u64 = described
        .offsets
        .iter()
        .filter_map(|offset| offset.committed)
        .sum();
    assert_eq!(committed, 15, "{described:?}");
    tokio::time::timeout(WAIT, second.close())
        .await
        .expect("close in time")
        .expect("close");
}

/// A group id whose coordinator, as broker `bootstrap` answers, is another broker.
async fn group_coordinated_away_from(cluster: &Cluster, bootstrap: u32) -> String {
    let mut client = Client::connect(&cluster.address(bootstrap)).await;
    let deadline = std::time::Instant::now() + WAIT;
    let mut index = 0;
    loop {
        index += 1;
        let group_id = format!("billing-{index}");
        let request = FindCoordinatorRequest {
            group_id: group_id.clone(),
        };
        match client.try_call(request).await {
            Ok(Response::FindCoordinator(found)) if found.node_id != bootstrap => {
                assert_eq!(
                    format!("{}:{}", found.host, found.port),
                    cluster.address(found.node_id),
                    "the coordinator's address"
                );
                return group_id;
            }
            Ok(Response::FindCoordinator(_)) => {}
            // The offsets log may not be placed yet: ask again.
            Ok(other) => panic!("not a find coordinator response: {other:?}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no coordinator found within {WAIT:?}"
        );
    }
}

async fn produce(bootstrap: &str, topic: &str, prefix: &str, count: u32) {
    let records = (0..count)
        .map(|index| ProducerRecord::new(topic, format!("{prefix}-{index}")).partition(index % 3));
    send_all(bootstrap, records).await;
}

/// Sends `records` through a producer bootstrapped at `bootstrap` and waits until every
/// one is delivered.
async fn send_all(bootstrap: &str, records: impl Iterator<Item = ProducerRecord>) {
    let producer = Producer::new(ProducerConfig::new(bootstrap)).expect("producer");
    let mut acks = Vec::new();
    for record in records {
        acks.push(producer.send(record).await.expect("queue a record"));
    }
    for ack in acks {
        tokio::time::timeout(WAIT, ack)
            .await
            .expect("delivered in time")
            .expect("delivered");
    }
    producer.close().await;
}
