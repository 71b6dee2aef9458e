//! An `acks = all` produce waiting for durability is answered `StorageError` as soon as a
//! failed fsync poisons the partition's log, not at its request timeout: the durable
//! offset will never move again, so waiting longer can only mislead the producer.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use strata_broker::config::{Config, DurabilityPolicy, TopicConfig};
use strata_broker::partition::Storage;
use strata_broker::server::Server;
use strata_protocol::messages::{Acks, ProducePartition, ProduceRequest, ProduceTopic};
use strata_protocol::{ErrorCode, Response};
use strata_tests::io::{Fault, FaultyIo, in_process_config};
use strata_tests::{Client, batch_of, bounded, data_dir};

/// Far below the produce's timeout, which is `produce_timeout_ms_max`'s default (60 s).
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_answers_the_waiting_produce_at_once() {
    bounded(async {
        let dir = data_dir();
        let io = FaultyIo::new("doomed-0", Fault::Sync(libc::EIO));
        let failing = Arc::clone(&io.failing);
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
        client.create_topic("doomed", 1, &[]).await;
        let durable = client
            .produce("doomed", 0, Acks::All, batch_of("a", 2))
            .await;
        assert_eq!(
            durable.error_code,
            ErrorCode::None,
            "{:?}",
            durable.error_message
        );

        failing.store(true, Ordering::SeqCst);
        let request = ProduceRequest {
            acks: Acks::All,
            timeout_ms: 60_000,
            topics: vec![ProduceTopic {
                name: "doomed".into(),
                partitions: vec![ProducePartition {
                    partition: 0,
                    records: batch_of("b", 2).into(),
                }],
            }],
        };
        let answered = tokio::time::timeout(ANSWER_WITHIN, client.call(request))
            .await
            .expect("the produce waited for its timeout after the log was poisoned");
        let Response::Produce(response) = answered else {
            panic!("wrong response type")
        };
        let partition = &response.topics[0].partitions[0];
        assert_eq!(
            partition.error_code,
            ErrorCode::StorageError,
            "{:?}",
            partition.error_message
        );
        let message = partition.error_message.as_deref().unwrap_or_default();
        assert!(message.contains("poisoned"), "{message}");
        server.shutdown().await;
    })
    .await;
}
