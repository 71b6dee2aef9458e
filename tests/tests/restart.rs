//! Topics, configs and data survive a clean shutdown and a `kill -9`: acks=leader data is
//! in the page cache before the ack, so killing the process loses none of it.

use strata_protocol::ErrorCode;
use strata_protocol::messages::*;
use strata_tests::*;

async fn topic_names(client: &mut Client) -> Vec<(String, usize)> {
    let strata_protocol::Response::Metadata(metadata) =
        client.call(MetadataRequest { topics: None }).await
    else {
        panic!()
    };
    metadata
        .topics
        .into_iter()
        .map(|topic| (topic.name, topic.partitions.len()))
        .collect()
}

#[tokio::test]
async fn sigterm_shuts_down_cleanly_and_everything_comes_back() {
    let dir = data_dir();
    let mut broker = BrokerProcess::start(dir.path(), &[]);
    let mut client = Client::connect(&broker.address).await;
    client
        .create_topic(
            "kept",
            2,
            &[("retention_ms", "123456"), ("durability", "every_batch")],
        )
        .await;
    for partition in 0..2 {
        client
            .produce(
                "kept",
                partition,
                Acks::All,
                batch_of(&format!("p{partition}"), 5),
            )
            .await;
    }
    let strata_protocol::Response::CreatePartitions(grown) = client
        .call(CreatePartitionsRequest {
            topics: vec![PartitionCountChange {
                name: "kept".into(),
                partition_count: 3,
            }],
            timeout_ms: 1000,
            validate_only: false,
        })
        .await
    else {
        panic!()
    };
    assert_eq!(grown.topics[0].error_code, ErrorCode::None);
    drop(client);
    assert_eq!(broker.terminate(), Some(0), "graceful exit code");

    broker.restart();
    let mut client = Client::connect(&broker.address).await;
    assert_eq!(topic_names(&mut client).await, [("kept".to_owned(), 3)]);
    for partition in 0..2 {
        let expected: Vec<String> = (0..5).map(|i| format!("p{partition}-{i}")).collect();
        assert_eq!(
            values(&client.read_all("kept", partition, 0).await),
            expected
        );
    }
    assert!(client.read_all("kept", 2, 0).await.is_empty());
    let response = client
        .produce("kept", 0, Acks::Leader, batch_of("after", 1))
        .await;
    assert_eq!(response.base_offset, 5, "appends continue at the log end");
}

#[tokio::test]
async fn acks_leader_data_survives_kill_9() {
    let dir = data_dir();
    let mut broker = BrokerProcess::start(dir.path(), &[]);
    let mut client = Client::connect(&broker.address).await;
    client.create_topic("crashy", 1, &[]).await;
    let mut acknowledged = Vec::new();
    for round in 0..50 {
        let response = client
            .produce("crashy", 0, Acks::Leader, batch_of(&format!("r{round}"), 4))
            .await;
        assert_eq!(response.error_code, ErrorCode::None);
        acknowledged.extend((0..4).map(|i| format!("r{round}-{i}")));
    }
    drop(client);
    broker.kill_9();
    broker.restart();
    let mut client = Client::connect(&broker.address).await;
    assert_eq!(topic_names(&mut client).await, [("crashy".to_owned(), 1)]);
    assert_eq!(values(&client.read_all("crashy", 0, 0).await), acknowledged);
    let response = client
        .produce("crashy", 0, Acks::Leader, batch_of("again", 1))
        .await;
    assert_eq!(response.base_offset, 200);
}

#[tokio::test]
async fn deleted_topics_stay_deleted_and_names_can_be_reused() {
    let dir = data_dir();
    let mut broker = BrokerProcess::start(dir.path(), &[]);
    let mut client = Client::connect(&broker.address).await;
    client.create_topic("temp", 1, &[]).await;
    client
        .produce("temp", 0, Acks::Leader, batch_of("old", 3))
        .await;
    let strata_protocol::Response::DeleteTopics(deleted) = client
        .call(DeleteTopicsRequest {
            names: vec!["temp".into(), "never".into()],
            timeout_ms: 1000,
        })
        .await
    else {
        panic!()
    };
    assert_eq!(deleted.topics[0].error_code, ErrorCode::None);
    assert_eq!(
        deleted.topics[1].error_code,
        ErrorCode::UnknownTopicOrPartition
    );
    drop(client);
    broker.kill_9();
    broker.restart();
    let mut client = Client::connect(&broker.address).await;
    assert!(topic_names(&mut client).await.is_empty());
    client.create_topic("temp", 1, &[]).await;
    assert!(
        client.read_all("temp", 0, 0).await.is_empty(),
        "a re-created topic starts empty"
    );
}
