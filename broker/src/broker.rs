//! The broker's shared state: configuration, identity, topics and groups. One per process,
//! shared by every connection through an `Arc`. Thread-safe.

use std::io::Write;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::group::service::Groups;
use crate::partition::Storage;
use crate::producer_ids::ProducerIds;
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
}

impl Broker {
    /// Opens the data directory: creates it if needed and recovers every topic.
    ///
    /// # Errors
    /// A message naming what could not be read or created.
    pub fn open(config: Config, storage: Storage) -> Result<Self, String> {
        let config = Arc::new(config);
        std::fs::create_dir_all(&config.data_dir).map_err(|error| {
            format!(
                "cannot create data_dir {}: {error}",
                config.data_dir.display()
            )
        })?;
        let cluster_id = load_or_create_cluster_id(&config)?;
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
        })
    }

    /// Flushes and closes every log. The flusher thread stops when the last log is dropped.
    pub fn close(&self) {
        self.topics.close();
        self.groups.close();
    }
}

fn load_or_create_cluster_id(config: &Config) -> Result<String, String> {
    let path = config.data_dir.join("cluster_id");
    match std::fs::read_to_string(&path) {
        Ok(id) => return Ok(id.trim().to_owned()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(format!("cannot read {}: {error}", path.display())),
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let id = format!("strata-{:016x}{:08x}", nanos as u64, std::process::id());
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&path)?;
        file.write_all(id.as_bytes())?;
        file.sync_all()?;
        std::fs::File::open(&config.data_dir)?.sync_all()
    };
    write().map_err(|error| format!("cannot write {}: {error}", path.display()))?;
    Ok(id)
}
