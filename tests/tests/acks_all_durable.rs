//! With `durability = every_batch`, an `acks = all` produce is answered only after an
//! fsync that covers the batch has completed. Checked through the storage I/O seam: a
//! recording `Io` logs, for every completed fsync of a segment file, the file length it
//! covered, and every acknowledgement is compared against that log. A produce waiting
//! for an fsync is answered once its topic turns to `durability = never`, and a topic
//! turned from `never` to `every_batch` fsyncs what it already holds.

use std::path::Path;
use std::sync::Arc;

use strata_broker::config::{Config, DurabilityPolicy, TopicConfig};
use strata_broker::partition::Storage;
use strata_broker::server::Server;
use strata_protocol::messages::{
    Acks, AlterTopicConfigsRequest, ConfigEntry, ProducePartition, ProduceRequest, ProduceTopic,
    TopicConfigChange,
};
use strata_protocol::{ApiKey, ErrorCode, Response};
use strata_tests::io::{RecordingIo, fsync_covered, in_process_config};
use strata_tests::{Client, batch_of, data_dir, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_all_is_answered_only_after_an_fsync_covers_the_batch() {
    let dir = data_dir();
    let io = RecordingIo::default();
    let synced = Arc::clone(&io.synced);
    let storage = Storage::with_io(Arc::new(io)).unwrap();
    let config = Config {
        topic_defaults: TopicConfig {
            durability: DurabilityPolicy::EveryBatch,
            ..TopicConfig::default()
        },
        ..in_process_config(dir.path())
    };
    let server = Server::start_with(config, storage).await.unwrap();
    let mut client = Client::connect(&server.address.to_string()).await;
    client.create_topic("durable", 1, &[]).await;
    let segment = dir.path().join("durable-0").join(format!("{:020}.log", 0));

    let mut end = 0u64;
    for round in 0..20 {
        let batch = batch_of(&format!("d{round}"), 3);
        end += batch.len() as u64;
        let response = client.produce("durable", 0, Acks::All, batch).await;
        assert_eq!(
            response.error_code,
            ErrorCode::None,
            "{:?}",
            response.error_message
        );
        let covered = fsync_covered(&synced, &segment);
        assert!(
            covered.is_some_and(|covered| covered >= end),
            "round {round}: acked with {end} bytes written, fsync covered {covered:?}"
        );
    }
    server.shutdown().await;
}

/// A broker in this process over `io`, with the default topic settings, and a client.
async fn start(dir: &Path, io: RecordingIo) -> (Server, Client) {
    let storage = Storage::with_io(Arc::new(io)).unwrap();
    let server = Server::start_with(in_process_config(dir), storage)
        .await
        .unwrap();
    let client = Client::connect(&server.address.to_string()).await;
    (server, client)
}

/// An AlterTopicConfigs request setting `topic`'s durability to `policy`.
fn set_durability(topic: &str, policy: &str) -> AlterTopicConfigsRequest {
    AlterTopicConfigsRequest {
        topics: vec![TopicConfigChange {
            name: topic.into(),
            configs: vec![ConfigEntry {
                key: "durability".into(),
                value: policy.into(),
            }],
        }],
        validate_only: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_acks_all_produce_is_answered_when_its_topic_turns_to_never() {
    let dir = data_dir();
    let (server, mut client) = start(dir.path(), RecordingIo::default()).await;
    // An fsync every ten minutes: the produce below waits for one, far past its timeout.
    let interval = [("durability", "interval"), ("flush_interval_ms", "600000")];
    client.create_topic("slow", 1, &interval).await;
    // Pipelined on one connection, whose requests run in order: the produce is appended,
    // and waiting, before the change runs.
    let produce = ProduceRequest {
        acks: Acks::All,
        timeout_ms: 10_000,
        topics: vec![ProduceTopic {
            name: "slow".into(),
            partitions: vec![ProducePartition {
                partition: 0,
                records: batch_of("w", 3).into(),
            }],
        }],
    };
    client.send(produce.into()).await;
    client.send(set_durability("slow", "never").into()).await;
    // Answered as `never` answers it, not `RequestTimedOut` at the produce's timeout.
    let (_, produced) = client.receive(ApiKey::Produce).await;
    let Ok(Response::Produce(produced)) = produced else {
        panic!("{produced:?}")
    };
    let partition = &produced.topics[0].partitions[0];
    assert_eq!(
        partition.error_code,
        ErrorCode::None,
        "{:?}",
        partition.error_message
    );
    let (_, altered) = client.receive(ApiKey::AlterTopicConfigs).await;
    let Ok(Response::AlterTopicConfigs(altered)) = altered else {
        panic!("{altered:?}")
    };
    assert_eq!(altered.topics[0].error_code, ErrorCode::None);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turning_a_topic_from_never_to_every_batch_fsyncs_what_it_holds() {
    let dir = data_dir();
    let io = RecordingIo::default();
    let synced = Arc::clone(&io.synced);
    let (server, mut client) = start(dir.path(), io).await;
    client
        .create_topic("late", 1, &[("durability", "never")])
        .await;
    let batch = batch_of("n", 3);
    let written = batch.len() as u64;
    let response = client.produce("late", 0, Acks::Leader, batch).await;
    assert_eq!(response.error_code, ErrorCode::None);
    let alter = set_durability("late", "every_batch");
    let Response::AlterTopicConfigs(altered) = client.call(alter).await else {
        panic!("wrong response type")
    };
    assert_eq!(altered.topics[0].error_code, ErrorCode::None);
    // No append follows: the change itself brings the fsync.
    let segment = dir.path().join("late-0").join(format!("{:020}.log", 0));
    wait_until(
        || fsync_covered(&synced, &segment).is_some_and(|covered| covered >= written),
        "an fsync covering what was written under never",
    )
    .await;
    server.shutdown().await;
}
