//! The broker's shared state: configuration, identity, topics and groups. One per process,
//! shared by every connection through an `Arc`. Thread-safe.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::data_dir::{DataDirLock, load_or_create_cluster_id};
use crate::group::service::Groups;
use crate::partition::Storage;
use crate::producer_ids::ProducerIds;
use crate::startup::StartupError;
use crate::topics::TopicRegistry;

/// Everything a request handler can reach.
#[derive(Debug)]
pub struct Broker {
    /// The configuration in force.
    pub config: Arc<Config>,
    /// The topics.
    pub topics: TopicRegistry,
    /// The consumer group coordinator.
    pub groups: Arc<Groups>,
    /// A stable id generated when the data directory was first used.
    pub cluster_id: String,
    /// Ids for idempotent producers.
    pub producer_ids: ProducerIds,
    /// Fires when a graceful shutdown starts; long waits (fetch) end early on it.
    pub shutdown: CancellationToken,
    /// Keeps other brokers off the data directory until [`close`](Self::close).
    lock: DataDirLock,
}

impl Broker {
    /// Opens the data directory: creates and locks it, and recovers every topic, the
    /// consumer groups and the producer-id reservation.
    ///
    /// # Errors
    /// [`StartupError`] naming what could not be locked, read or created.
    pub fn open(config: Config, storage: Storage) -> Result<Self, StartupError> {
        let config = Arc::new(config);
        let lock = DataDirLock::acquire(&config.data_dir)?;
        let cluster_id = load_or_create_cluster_id(&config.data_dir)?;
        let groups = Arc::new(Groups::open(&config, &storage)?);
        let topics = TopicRegistry::open(config.clone(), storage)?;
        let producer_ids = ProducerIds::open(&config.data_dir, config.node_id)?;
        Ok(Self {
            config,
            topics,
            groups,
            cluster_id,
            producer_ids,
            shutdown: CancellationToken::new(),
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
