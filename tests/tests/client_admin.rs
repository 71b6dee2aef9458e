//! The client's Admin against a real broker: topic create, describe, list, grow and
//! delete with typed per-topic errors; cluster metadata; a clear error for an
//! unreachable broker.

use std::time::Duration;

use strata_client::protocol::ErrorCode;
use strata_client::{Admin, ClientConfig, NewTopic};
use strata_tests::{BrokerProcess, data_dir, unreachable_address};

/// Every test here finishes well within this.
const TEST_TIME_MAX: Duration = Duration::from_secs(60);

#[tokio::test]
async fn topics_are_created_described_grown_listed_and_deleted() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let admin = Admin::new(ClientConfig::new(&broker.address)).unwrap();
    tokio::time::timeout(TEST_TIME_MAX, async {
        admin
            .create_topic(NewTopic::new("orders", 3))
            .await
            .unwrap();
        let duplicate = admin
            .create_topic(NewTopic::new("orders", 3))
            .await
            .unwrap_err();
        assert_eq!(
            duplicate.code(),
            Some(ErrorCode::TopicAlreadyExists),
            "{duplicate}"
        );
        assert!(!duplicate.is_retriable());
        let invalid = admin
            .create_topic(NewTopic::new("bad/name", 1))
            .await
            .unwrap_err();
        assert_eq!(invalid.code(), Some(ErrorCode::InvalidTopic), "{invalid}");

        let results = admin
            .create_topics(&[NewTopic::new("payments", 1), NewTopic::new("orders", 1)])
            .await
            .unwrap();
        assert!(results[0].1.is_ok());
        assert_eq!(
            results[1].1.as_ref().unwrap_err().code(),
            Some(ErrorCode::TopicAlreadyExists)
        );

        let described = admin.describe_topic("orders").await.unwrap();
        assert_eq!(described.partitions.len(), 3);
        assert!(
            described
                .partitions
                .iter()
                .enumerate()
                .all(|(index, p)| p.partition == index as u32 && p.leader.is_some())
        );

        admin.add_partitions("orders", 5).await.unwrap();
        assert_eq!(
            admin
                .describe_topic("orders")
                .await
                .unwrap()
                .partitions
                .len(),
            5
        );
        let shrink = admin.add_partitions("orders", 2).await.unwrap_err();
        assert_eq!(
            shrink.code(),
            Some(ErrorCode::InvalidPartitions),
            "{shrink}"
        );

        assert_eq!(admin.list_topics().await.unwrap(), ["orders", "payments"]);
        let metadata = admin.cluster_metadata().await.unwrap();
        assert_eq!(metadata.brokers.len(), 1);
        assert_eq!(metadata.brokers[0].address, broker.address);

        admin.delete_topic("orders").await.unwrap();
        let gone = admin.describe_topic("orders").await.unwrap_err();
        assert_eq!(
            gone.code(),
            Some(ErrorCode::UnknownTopicOrPartition),
            "{gone}"
        );
        assert_eq!(admin.list_topics().await.unwrap(), ["payments"]);
    })
    .await
    .expect("test time limit");
}

#[tokio::test]
async fn an_unreachable_broker_is_reported_plainly() {
    let address = unreachable_address();
    let admin = Admin::new(ClientConfig {
        connect_timeout_ms: 2_000,
        ..ClientConfig::new(&address)
    })
    .unwrap();
    let error = tokio::time::timeout(TEST_TIME_MAX, admin.list_topics())
        .await
        .expect("test time limit")
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("cannot reach broker at {address}: connection refused")
    );
    assert!(error.is_retriable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_on_one_connection_get_their_own_answers() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    // A small in-flight bound, so requests also queue for a slot.
    let admin = Admin::new(ClientConfig {
        in_flight_requests_max: 4,
        ..ClientConfig::new(&broker.address)
    })
    .unwrap();
    tokio::time::timeout(TEST_TIME_MAX, async {
        let topics: Vec<NewTopic> = (1..=8)
            .map(|count| NewTopic::new(format!("t{count}"), count))
            .collect();
        for (name, result) in admin.create_topics(&topics).await.unwrap() {
            result.unwrap_or_else(|error| panic!("{name}: {error}"));
        }
        let lookups: Vec<_> = (0..200u32)
            .map(|index| {
                let admin = admin.clone();
                let count = index % 8 + 1;
                tokio::spawn(async move {
                    (
                        count,
                        admin.describe_topic(&format!("t{count}")).await.unwrap(),
                    )
                })
            })
            .collect();
        for lookup in lookups {
            let (count, description) = lookup.await.unwrap();
            assert_eq!(description.name, format!("t{count}"));
            assert_eq!(
                description.partitions.len(),
                count as usize,
                "answer matched to its request"
            );
        }
    })
    .await
    .expect("test time limit");
}
