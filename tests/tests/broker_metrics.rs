//! `/metrics` can be trusted: an error inside a response is counted like a whole-request
//! error, a deleted topic's series leave with it (and a failed creation leaves none), and
//! every family has its `# HELP`, `strata_build_info` and the standard `process_*` ones
//! among them.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use strata_protocol::batch;
use strata_protocol::messages::{
    Acks, CreatableTopic, CreateTopicsRequest, InitProducerIdRequest, ProducePartition,
    ProduceRequest, ProduceTopic,
};
use strata_protocol::{ErrorCode, Response};
use strata_tests::*;

/// Produces one batch to each of `partitions` of `topic` in one request; returns each
/// partition's error code.
async fn produce_to(client: &mut Client, topic: &str, partitions: &[u32]) -> Vec<ErrorCode> {
    let request = ProduceRequest {
        acks: Acks::Leader,
        timeout_ms: 10_000,
        topics: vec![ProduceTopic {
            name: topic.into(),
            partitions: partitions
                .iter()
                .map(|partition| ProducePartition {
                    partition: *partition,
                    records: batch_of("v", 2).into(),
                })
                .collect(),
        }],
    };
    let Response::Produce(response) = client.call(request).await else {
        panic!("wrong response type")
    };
    response.topics[0]
        .partitions
        .iter()
        .map(|partition| partition.error_code)
        .collect()
}

/// Creates `name` and returns the topic's error code.
async fn create(client: &mut Client, name: &str, partition_count: u32) -> ErrorCode {
    let request = CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: name.into(),
            partition_count,
            replication_factor: 1,
            configs: Vec::new(),
        }],
        timeout_ms: 10_000,
        validate_only: false,
    };
    let Response::CreateTopics(response) = client.call(request).await else {
        panic!("wrong response type")
    };
    response.topics[0].error_code
}

#[tokio::test]
async fn errors_inside_a_response_are_counted_per_partition_and_per_topic() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let mut client = Client::connect(&broker.address).await;
    client.create_topic("counted", 1, &[]).await;
    let codes = produce_to(&mut client, "counted", &[0, 3, 4]).await;
    let unknown = ErrorCode::UnknownTopicOrPartition;
    assert_eq!(codes, [ErrorCode::None, unknown, unknown]);
    assert_eq!(
        create(&mut client, "counted", 1).await,
        ErrorCode::TopicAlreadyExists
    );
    // Errors are counted before the response is written, so they are in by now.
    let text = scrape_metrics(&broker.metrics_address).await;
    for expected in [
        "strata_errors_total{code=\"UnknownTopicOrPartition\"} 2",
        "strata_errors_total{code=\"TopicAlreadyExists\"} 1",
        "strata_records_in_total{topic=\"counted\"} 2",
    ] {
        assert!(
            text.lines().any(|line| line == expected),
            "missing {expected} in\n{text}"
        );
    }
}

#[tokio::test]
async fn a_deleted_topics_series_leave_and_a_failed_creation_leaves_none() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let mut client = Client::connect(&broker.address).await;
    client.create_topic("doomed", 2, &[]).await;
    assert_eq!(
        produce_to(&mut client, "doomed", &[1]).await,
        [ErrorCode::None]
    );
    assert_eq!(client.read_all("doomed", 1, 0).await.len(), 2);
    // A file where the second partition's directory goes: partition 0 opens, then the
    // creation fails.
    std::fs::write(dir.path().join("broken-1"), b"in the way").unwrap();
    assert_ne!(create(&mut client, "broken", 2).await, ErrorCode::None);
    let before = scrape_metrics(&broker.metrics_address).await;
    for expected in [
        "strata_bytes_in_total{topic=\"doomed\"}",
        "strata_records_out_total{topic=\"doomed\"} 2",
        "strata_log_end_offset{topic=\"doomed\",partition=\"1\"} 2",
    ] {
        assert!(before.contains(expected), "missing {expected} in\n{before}");
    }
    assert!(!before.contains("topic=\"broken\""), "{before}");

    client.delete_topic("doomed").await;
    let after = scrape_metrics(&broker.metrics_address).await;
    assert!(!after.contains("topic=\"doomed\""), "{after}");
    assert!(!after.contains("topic=\"broken\""), "{after}");
}

#[tokio::test]
async fn a_retried_idempotent_batch_is_counted_as_a_duplicate_of_its_topic() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let mut client = Client::connect(&broker.address).await;
    client.create_topic("retried", 1, &[]).await;
    let request = InitProducerIdRequest {
        producer_id: -1,
        producer_epoch: -1,
    };
    let Response::InitProducerId(producer) = client.call(request).await else {
        panic!("wrong response type")
    };
    let mut stamped = batch_of("r", 3).to_vec();
    batch::stamp_producer(
        &mut stamped,
        producer.producer_id,
        producer.producer_epoch,
        0,
    );
    let stamped = Bytes::from(stamped);
    for _ in 0..2 {
        let response = client
            .produce("retried", 0, Acks::Leader, stamped.clone())
            .await;
        assert_eq!(
            (response.error_code, response.base_offset),
            (ErrorCode::None, 0)
        );
    }
    let text = scrape_metrics(&broker.metrics_address).await;
    for expected in [
        "strata_produce_duplicate_batches_total{topic=\"retried\"} 1",
        "strata_records_in_total{topic=\"retried\"} 3",
    ] {
        assert!(
            text.lines().any(|line| line == expected),
            "missing {expected} in\n{text}"
        );
    }
}

/// The metric families of a scrape: each `# TYPE` line's name and type, and each
/// `# HELP` line's name, failing on a family declared twice.
fn families(text: &str) -> (BTreeMap<&str, &str>, BTreeSet<&str>) {
    let mut types = BTreeMap::new();
    let mut helps = BTreeSet::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next(), words.next()) {
            (Some("#"), Some("TYPE"), Some(name), Some(kind)) => {
                assert!(types.insert(name, kind).is_none(), "{name} typed twice");
            }
            (Some("#"), Some("HELP"), Some(name), Some(_)) => {
                assert!(helps.insert(name), "{name} described twice");
            }
            _ => {}
        }
    }
    (types, helps)
}

#[tokio::test]
async fn every_family_has_help_and_build_info_and_process_metrics_are_there() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let mut client = Client::connect(&broker.address).await;
    client.create_topic("described", 1, &[]).await;
    produce_to(&mut client, "described", &[0, 9]).await;
    client.read_all("described", 0, 0).await;
    let scrape = scrape_metrics(&broker.metrics_address).await;
    let text = scrape.split_once("\r\n\r\n").expect("an HTTP body").1;
    let (types, helps) = families(text);
    for line in text
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
    {
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|suffix| name.strip_suffix(suffix))
            .find(|base| matches!(types.get(base), Some(&("histogram" | "summary"))))
            .unwrap_or(name);
        assert!(types.contains_key(family), "{name} has no # TYPE:\n{text}");
        assert!(helps.contains(family), "{family} has no # HELP:\n{text}");
    }
    for family in [
        "strata_errors_total",
        "strata_request_duration_seconds",
        "strata_connections_active",
        "strata_bytes_in_total",
        "strata_log_end_offset",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(types.contains_key(family), "no {family} in\n{text}");
    }
    let build_info = text
        .lines()
        .find(|line| line.starts_with("strata_build_info{"))
        .unwrap_or_else(|| panic!("no strata_build_info in\n{text}"));
    let version = format!("version=\"{}\"", env!("CARGO_PKG_VERSION"));
    assert!(build_info.contains(&version), "{build_info}");
    assert!(build_info.contains("revision=\""), "{build_info}");
    assert!(!build_info.contains("revision=\"\""), "{build_info}");
    assert!(build_info.ends_with("} 1"), "{build_info}");
}
