//! With `durability = every_batch`, an `acks = all` produce is answered only after an
//! fsync that covers the batch has completed. Checked through the storage I/O seam: a
//! recording `Io` logs, for every completed fsync of a segment file, the file length it
//! covered, and every acknowledgement is compared against that log.

use std::sync::Arc;

use strata_broker::config::{Config, DurabilityPolicy, TopicConfig};
use strata_broker::partition::Storage;
use strata_broker::server::Server;
use strata_protocol::ErrorCode;
use strata_protocol::messages::Acks;
use strata_tests::io::{RecordingIo, fsync_covered, in_process_config};
use strata_tests::{Client, batch_of, data_dir};

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
