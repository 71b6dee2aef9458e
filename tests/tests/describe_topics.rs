//! DescribeTopics reports each topic's effective configs and each partition's offsets and
//! size on disk, and names a missing topic as unknown.

use strata_client::{Admin, ClientConfig, NewTopic, TopicDetails};
use strata_protocol::ErrorCode;
use strata_protocol::messages::Acks;
use strata_tests::*;

/// The effective value of config `key`, if described.
fn config_value(details: &TopicDetails, key: &str) -> Option<String> {
    details
        .configs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, value)| value.clone())
}

#[tokio::test]
async fn describe_reports_configs_offsets_and_sizes() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &["retention_bytes=1000000"]);
    let admin = Admin::new(ClientConfig::new(&broker.address)).unwrap();
    admin
        .create_topic(NewTopic::new("described", 2).config("retention_ms", "3600000"))
        .await
        .unwrap();
    let mut client = Client::connect(&broker.address).await;
    let batch = batch_of("x", 7);
    let bytes = batch.len() as u64;
    assert_eq!(
        client
            .produce("described", 1, Acks::Leader, batch)
            .await
            .error_code,
        ErrorCode::None
    );

    let mut described = admin
        .describe_topics(Some(&["described", "missing"]))
        .await
        .unwrap();
    assert_eq!(described.len(), 2);
    let (missing_name, missing) = described.pop().unwrap();
    assert_eq!(missing_name, "missing");
    assert_eq!(
        missing.unwrap_err().code(),
        Some(ErrorCode::UnknownTopicOrPartition)
    );
    let details = described.pop().unwrap().1.unwrap();
    let config = |key| config_value(&details, key);
    assert_eq!(
        config("retention_ms").as_deref(),
        Some("3600000"),
        "the override"
    );
    assert_eq!(
        config("retention_bytes").as_deref(),
        Some("1000000"),
        "the broker default"
    );
    assert_eq!(config("durability").as_deref(), Some("never"));
    let [empty, written] = &details.partitions[..] else {
        panic!("two partitions: {details:?}")
    };
    assert_eq!(
        (
            empty.log_start_offset,
            empty.high_watermark,
            empty.log_end_offset,
            empty.size_bytes
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(
        (
            written.log_start_offset,
            written.high_watermark,
            written.log_end_offset
        ),
        (0, 7, 7)
    );
    assert_eq!(written.size_bytes, bytes);
    assert_eq!(written.leader, Some(0));

    let all = admin.describe_topics(None).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>(),
        ["described"]
    );
}

#[tokio::test]
async fn altered_configs_apply_at_once_and_survive_a_restart() {
    let dir = data_dir();
    let mut broker = BrokerProcess::start(dir.path(), &[]);
    let admin = Admin::new(ClientConfig::new(&broker.address)).unwrap();
    admin.create_topic(NewTopic::new("tuned", 1)).await.unwrap();
    let mut client = Client::connect(&broker.address).await;
    let big = batch_of(&"v".repeat(3000), 1);
    assert_eq!(
        client
            .produce("tuned", 0, Acks::Leader, big.clone())
            .await
            .error_code,
        ErrorCode::None
    );

    admin
        .alter_topic_configs(
            "tuned",
            &[("max_message_bytes", "2000"), ("retention_ms", "60000")],
        )
        .await
        .unwrap();
    let rejected = client.produce("tuned", 0, Acks::Leader, big).await;
    assert_eq!(
        rejected.error_code,
        ErrorCode::MessageTooLarge,
        "the new limit applies at once"
    );

    let error = admin
        .alter_topic_configs("tuned", &[("retention_ms", "soon")])
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::InvalidConfig));
    let error = admin
        .alter_topic_configs("absent", &[("retention_ms", "1")])
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::UnknownTopicOrPartition));

    drop(client);
    broker.kill_9();
    broker.restart();
    let admin = Admin::new(ClientConfig::new(&broker.address)).unwrap();
    let details = admin
        .describe_topics(Some(&["tuned"]))
        .await
        .unwrap()
        .remove(0)
        .1
        .unwrap();
    let config = |key| config_value(&details, key);
    assert_eq!(config("max_message_bytes").as_deref(), Some("2000"));
    assert_eq!(config("retention_ms").as_deref(), Some("60000"));
    assert_eq!(details.partitions[0].log_end_offset, 1, "data kept");
}
