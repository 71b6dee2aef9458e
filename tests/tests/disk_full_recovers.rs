//! A broker whose disk fills up (every create and write fails with `ENOSPC`) keeps
//! running: produces fail with the retriable `StorageFull`, consumers still read what
//! was acknowledged, retention still deletes old segments, and once space is freed an
//! `acks = all` produce succeeds on the same process, without a restart. Index files
//! that cannot be created do not poison a partition either, and an `acks = all` produce
//! whose fsync a lack of descriptors holds back is answered `StorageFull` at once; the
//! idempotent producer's retry of it succeeds once descriptors are free.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use strata_broker::config::{Config, DurabilityPolicy, TopicConfig};
use strata_broker::partition::Storage;
use strata_broker::server::Server;
use strata_protocol::messages::{
    Acks, AlterTopicConfigsRequest, ConfigEntry, InitProducerIdRequest, MetadataRequest,
    TopicConfigChange,
};
use strata_protocol::{ErrorCode, Response};
use strata_storage::Io;
use strata_tests::io::{Fault, FaultyIo, in_process_config};
use strata_tests::{
    Client, batch_of, bounded, data_dir, idempotent_batch_of, scrape_metrics, values, wait_until,
};

/// Records per batch: about 6 KB, so a 16 KiB segment rolls every third batch.
const RECORDS: usize = 200;

/// Small segments, so produces roll them and the flusher writes index files; no
/// retention until a test asks for it; every batch fsync'd.
fn config(dir: &Path) -> Config {
    Config {
        retention_check_interval_ms: 20,
        topic_defaults: TopicConfig {
            segment_bytes: 1 << 14,
            max_message_bytes: 1 << 14,
            retention_ms: -1,
            retention_bytes: -1,
            durability: DurabilityPolicy::EveryBatch,
            ..TopicConfig::default()
        },
        ..in_process_config(dir)
    }
}

/// A broker over `io`, with topic `t` of one partition, and a client to it.
async fn start(dir: &Path, io: FaultyIo) -> (Server, Client, Arc<AtomicBool>) {
    let failing = Arc::clone(&io.failing);
    let storage = Storage::with_io(Arc::new(io) as Arc<dyn Io>).unwrap();
    let server = Server::start_with(config(dir), storage).await.unwrap();
    let mut client = Client::connect(&server.address.to_string()).await;
    client.create_topic("t", 1, &[]).await;
    (server, client, failing)
}

/// Produces `batch` with `acks = all`; its values when acknowledged, or the error.
async fn produce(client: &mut Client, batch: &str) -> Result<Vec<String>, ErrorCode> {
    let response = client
        .produce("t", 0, Acks::All, batch_of(batch, RECORDS))
        .await;
    match response.error_code {
        ErrorCode::None => Ok((0..RECORDS)
            .map(|index| format!("{batch}-{index}"))
            .collect()),
        code => Err(code),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_resumes_on_the_same_process_once_a_full_disk_has_space_again() {
    bounded(async {
        let dir = data_dir();
        let io = FaultyIo::new("", Fault::CreateOrWrite(libc::ENOSPC));
        let (server, mut client, full) = start(dir.path(), io).await;
        let mut acknowledged = Vec::new();
        for index in 0..7 {
            acknowledged.extend(
                produce(&mut client, &format!("before{index}"))
                    .await
                    .unwrap(),
            );
        }

        full.store(true, Ordering::SeqCst);
        for index in 0..3 {
            let error = produce(&mut client, &format!("full{index}"))
                .await
                .unwrap_err();
            assert_eq!(error, ErrorCode::StorageFull);
            assert!(error.is_retriable());
        }
        // The process is alive and serves what was acknowledged.
        let Response::Metadata(metadata) = client.call(MetadataRequest { topics: None }).await
        else {
            panic!("wrong response type")
        };
        assert_eq!(metadata.topics.len(), 1);
        assert_eq!(values(&client.read_all("t", 0, 0).await), acknowledged);

        full.store(false, Ordering::SeqCst);
        for index in 0..4 {
            acknowledged.extend(
                produce(&mut client, &format!("after{index}"))
                    .await
                    .unwrap(),
            );
        }
        assert_eq!(values(&client.read_all("t", 0, 0).await), acknowledged);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_runs_while_the_disk_is_full_and_frees_the_space() {
    bounded(async {
        let dir = data_dir();
        let io = FaultyIo::new("", Fault::CreateOrWrite(libc::ENOSPC));
        let (server, mut client, full) = start(dir.path(), io).await;
        for index in 0..7 {
            produce(&mut client, &format!("old{index}")).await.unwrap();
        }
        full.store(true, Ordering::SeqCst);
        let error = produce(&mut client, "full").await.unwrap_err();
        assert_eq!(error, ErrorCode::StorageFull);

        // The operator lowers retention; the broker deletes old segments on its own.
        let alter = AlterTopicConfigsRequest {
            topics: vec![TopicConfigChange {
                name: "t".into(),
                configs: vec![ConfigEntry {
                    key: "retention_bytes".into(),
                    value: "1".into(),
                }],
            }],
            validate_only: false,
        };
        let Response::AlterTopicConfigs(altered) = client.call(alter).await else {
            panic!("wrong response type")
        };
        assert_eq!(altered.topics[0].error_code, ErrorCode::None);
        let first_segment = dir.path().join("t-0").join(format!("{:020}.log", 0));
        wait_until(
            || !first_segment.exists(),
            "retention deletes the oldest segment",
        )
        .await;

        // Deleting it freed the space: produce goes on, on the same process.
        full.store(false, Ordering::SeqCst);
        let after = batch_of("after", RECORDS);
        let produced = client.produce("t", 0, Acks::All, after.clone()).await;
        assert_eq!(produced.error_code, ErrorCode::None);
        let read = client.read_all("t", 0, produced.base_offset).await;
        assert_eq!(values(&read), values(&strata_tests::decode_records(&after)));
        server.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_files_that_cannot_be_created_do_not_stop_produce() {
    bounded(async {
        let dir = data_dir();
        // New index files (`.index`, `.timeindex`) cannot be created or written; segments can.
        let io = FaultyIo::new("index", Fault::CreateOrWrite(libc::ENOSPC));
        let (server, mut client, full) = start(dir.path(), io).await;
        full.store(true, Ordering::SeqCst);
        let mut acknowledged = Vec::new();
        for index in 0..10 {
            acknowledged.extend(produce(&mut client, &format!("b{index}")).await.unwrap());
        }
        let metrics = scrape_metrics(&server.metrics_address.to_string()).await;
        let failures = metrics
            .lines()
            .find_map(|line| line.strip_prefix("strata_storage_write_failures_total "))
            .and_then(|count| count.parse::<u64>().ok());
        assert!(failures.is_some_and(|count| count >= 1), "{metrics}");

        full.store(false, Ordering::SeqCst);
        acknowledged.extend(produce(&mut client, "healed").await.unwrap());
        assert_eq!(values(&client.read_all("t", 0, 0).await), acknowledged);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acks_all_produce_held_back_by_too_few_descriptors_is_answered_at_once() {
    bounded(async {
        let dir = data_dir();
        // The partition directory cannot be opened for the fsync a roll needs.
        let io = FaultyIo::new("t-0", Fault::DirSync(libc::EMFILE));
        let (server, mut client, no_descriptors) = start(dir.path(), io).await;
        no_descriptors.store(true, Ordering::SeqCst);
        let mut acknowledged = Vec::new();
        let mut held = None;
        for index in 0..10 {
            match produce(&mut client, &format!("b{index}")).await {
                Ok(values) => acknowledged.extend(values),
                Err(code) => {
                    held = Some(code);
                    break;
                }
            }
        }
        // Not `RequestTimedOut` at the produce's 10 s timeout: the flush's failure woke it.
        assert_eq!(held, Some(ErrorCode::StorageFull), "a roll came and went");

        no_descriptors.store(false, Ordering::SeqCst);
        acknowledged.extend(produce(&mut client, "healed").await.unwrap());
        let read = values(&client.read_all("t", 0, 0).await);
        let mut rest = read.iter();
        for value in &acknowledged {
            assert!(rest.any(|read| read == value), "{value} lost: {read:?}");
        }
        server.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_retry_of_a_held_back_produce_succeeds_once_descriptors_are_free() {
    bounded(async {
        let dir = data_dir();
        let io = FaultyIo::new("t-0", Fault::DirSync(libc::EMFILE));
        let (server, mut client, no_descriptors) = start(dir.path(), io).await;
        let Response::InitProducerId(producer) = client
            .call(InitProducerIdRequest {
                producer_id: -1,
                producer_epoch: -1,
            })
            .await
        else {
            panic!("wrong response type")
        };
        let id = (producer.producer_id, producer.producer_epoch);
        no_descriptors.store(true, Ordering::SeqCst);
        let mut held = None;
        for index in 0..10 {
            let prefix = format!("b{index}");
            let sequence = i32::try_from(index * RECORDS).unwrap();
            let batch = idempotent_batch_of(&prefix, RECORDS, id, sequence);
            let response = client.produce("t", 0, Acks::All, batch.clone()).await;
            match response.error_code {
                ErrorCode::None => {}
                ErrorCode::StorageFull => {
                    held = Some((prefix, batch));
                    break;
                }
                other => panic!("{other:?}: {:?}", response.error_message),
            }
        }
        let (prefix, batch) = held.expect("a roll came and went");

        // The retry is a duplicate, which appends nothing: it must still bring a new
        // flush, and wait for it rather than fail on the one that was held back.
        no_descriptors.store(false, Ordering::SeqCst);
        let retried = client.produce("t", 0, Acks::All, batch).await;
        assert_eq!(
            retried.error_code,
            ErrorCode::None,
            "{:?}",
            retried.error_message
        );
        let read = values(&client.read_all("t", 0, 0).await);
        let last = format!("{prefix}-{}", RECORDS - 1);
        assert!(read.contains(&last), "{last} is not visible: {read:?}");
        server.shutdown().await;
    })
    .await;
}
