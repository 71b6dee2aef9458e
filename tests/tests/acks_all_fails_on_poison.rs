//! An `acks = all` produce waiting for durability is answered `StorageError` as soon as a
//! failed fsync poisons the partition's log, not at its request timeout: the durable
//! offset will never move again, so waiting longer can only mislead the producer.

use std::io::IoSlice;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use strata_broker::config::{Config, DurabilityPolicy, TopicConfig};
use strata_broker::partition::Storage;
use strata_broker::server::Server;
use strata_protocol::messages::{Acks, ProducePartition, ProduceRequest, ProduceTopic};
use strata_protocol::{ErrorCode, Response};
use strata_storage::{Io, IoFile, RealIo};
use strata_tests::{Client, batch_of, bounded, data_dir};

/// Fails every fsync of the `doomed` topic's files while `failing` is set.
#[derive(Debug)]
struct FailingSyncIo {
    failing: Arc<AtomicBool>,
}

#[derive(Debug)]
struct FailingSyncFile {
    inner: Arc<dyn IoFile>,
    doomed: bool,
    failing: Arc<AtomicBool>,
}

impl IoFile for FailingSyncFile {
    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
        self.inner.write_vectored(bufs)
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> std::io::Result<()> {
        if self.doomed && self.failing.load(Ordering::SeqCst) {
            return Err(std::io::Error::from_raw_os_error(libc::EIO));
        }
        self.inner.sync_data()
    }

    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl FailingSyncIo {
    fn wrap(&self, path: &Path, inner: Arc<dyn IoFile>) -> Arc<dyn IoFile> {
        Arc::new(FailingSyncFile {
            inner,
            doomed: path.to_string_lossy().contains("doomed-0"),
            failing: self.failing.clone(),
        })
    }
}

impl Io for FailingSyncIo {
    fn create(&self, path: &Path) -> std::io::Result<Arc<dyn IoFile>> {
        Ok(self.wrap(path, RealIo.create(path)?))
    }

    fn open(&self, path: &Path) -> std::io::Result<Arc<dyn IoFile>> {
        Ok(self.wrap(path, RealIo.open(path)?))
    }

    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        RealIo.sync_dir(path)
    }

    fn now_ms(&self) -> i64 {
        RealIo.now_ms()
    }
}

/// Far below the produce's timeout, which is `produce_timeout_ms_max`'s default (60 s).
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_answers_the_waiting_produce_at_once() {
    bounded(async {
        let dir = data_dir();
        let failing = Arc::new(AtomicBool::new(false));
        let storage = Storage::with_io(Arc::new(FailingSyncIo {
            failing: failing.clone(),
        }))
        .unwrap();
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            metrics_listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_owned(),
            topic_defaults: TopicConfig {
                durability: DurabilityPolicy::EveryBatch,
                ..TopicConfig::default()
            },
            ..Config::default()
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
