//! The broker's shared state: configuration, identity, topics and groups. One per process,
//! shared by every connection through an `Arc`. Thread-safe.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::config::Config;
use crate::data_dir::{DataDirLock, load_or_create_cluster_id, rebooted_since_last_start};
use crate::group::service::Groups;
use crate::partition::Storage;
use crate::producer_ids::ProducerIds;
use crate::replication::Replication;
use crate::startup::StartupError;
use crate::topics::TopicRegistry;

/// Everything a request handler can reach.
#[derive(Debug)]
pub struct Broker {
    /// The configuration in force.
    pub config: Arc<Config>,
    /// This broker's copies of the topics placed on it.
    pub topics: TopicRegistry,
    /// The cluster: its metadata, and this broker's part in it.
    pub cluster: Arc<Cluster>,
    /// The consumer group coordinator.
    pub groups: Arc<Groups>,
    /// A stable id generated when the data directory was first used.
    pub cluster_id: String,
    /// Ids for idempotent producers.
    pub producer_ids: ProducerIds,
    /// Partition replication: the fetchers of the partitions this broker follows.
    pub replication: Replication,
    /// The machine rebooted since the last run, which did not close every log cleanly:
    /// writes only in the page cache may be lost, so this broker registers as unclean
    /// and is never elected as the last in-sync replica on what it holds (KIP-966).
    pub unclean_start: bool,
    /// Fires when a graceful shutdown starts; long waits (fetch) end early on it.
    pub shutdown: CancellationToken,
    /// Keeps other brokers off the data directory until [`close`](Self::close).
    lock: DataDirLock,
}

impl Broker {
    /// Opens the data directory: recovers every local topic, the consumer groups and
    /// the legacy producer-id reservation. `lock` keeps other brokers off the directory.
    ///
    /// # Errors
    /// [`StartupError`] naming what could not be read or created.
    pub fn open(
        config: Arc<Config>,
        storage: Storage,
        cluster: Arc<Cluster>,
        lock: DataDirLock,
    ) -> Result<Self, StartupError> {
        let cluster_id = load_or_create_cluster_id(&config.data_dir)?;
        let groups = Arc::new(Groups::open(&config, &storage)?);
        let topics = TopicRegistry::open(config.clone(), storage)?;
        let rebooted = rebooted_since_last_start(&config.data_dir, &config.boot_id_file)?;
        let unclean_start = rebooted
            && (groups.opened_unclean()
                || topics
                    .all()
                    .iter()
                    .flat_map(|topic| topic.local())
                    .any(|partition| !partition.opened_clean()));
        if unclean_start {
            tracing::warn!(
                "the machine rebooted since this broker last ran, and it did not shut down cleanly: it registers as unclean, so it is not elected on data a power loss may have cut"
            );
        }
        let producer_ids = ProducerIds::open(
            &config.data_dir,
            config.node_id,
            cluster.subscribe(),
            !cluster.is_multi_node(),
        )?;
        let shutdown = CancellationToken::new();
        let throttle = config.replica_reassignment_throttle_bytes_per_second;
        Ok(Self {
            config,
            topics,
            cluster,
            groups,
            cluster_id,
            producer_ids,
            replication: Replication::new(shutdown.child_token(), throttle),
            unclean_start,
            shutdown,
            lock,
        })
    }

    /// Flushes and closes every log, then unlocks the data directory. The flusher thread
    /// stops when the last log is dropped.
    pub fn close(&self) {
        self.topics.close();
        self.groups.close();
        self.lock.release();
    }
}
