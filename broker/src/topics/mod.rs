//! The topic registry: which topics exist, their configs and partitions, persisted in
//! `<data_dir>/topics/<name>.toml` so a restart brings everything back.
//!
//! Reads (every produce and fetch) take a short read lock on a map of `Arc<Topic>`;
//! admin changes are serialised by their own mutex and replace a topic's `Arc`
//! copy-on-write, so a request never sees a half-changed topic. Admin methods do blocking
//! file I/O: call them from `spawn_blocking`.
//!
//! A create or grow that fails removes the partition directories it made, and startup
//! removes the ones a crash left behind (`orphans`).

mod orphans;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use strata_protocol::ErrorCode;
use strata_protocol::limits::{
    TopicNameError, check_topic_name, message_fits_frame, topic_collision_key,
};

use crate::config::{Config, TopicConfig};
use crate::data_dir::{create_private_dir, create_private_file};
use crate::metrics::TopicTraffic;
use crate::partition::{Partition, PartitionError, Storage};

const TOPICS_DIR: &str = "topics";
/// The temporary file a metadata file is written to before its rename. One fixed short
/// name (admin changes are serialised) keeps it within the 255-byte file-name limit for
/// the longest topic name, and it cannot be taken for a topic's `.toml`.
const TEMPORARY_FILE: &str = "write.tmp";

/// A topic and its partitions. Immutable: a change makes a new `Topic`.
#[derive(Debug)]
pub struct Topic {
    /// The name.
    pub name: String,
    /// The effective config.
    pub config: TopicConfig,
    /// Partitions by index.
    pub partitions: Vec<Arc<Partition>>,
    /// Traffic counters, shared by every version of the topic, so that its series in
    /// `/metrics` live exactly as long as the topic.
    pub traffic: Arc<TopicTraffic>,
}

/// What is written to the topic's metadata file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicRecord {
    partition_count: u32,
    config: TopicConfig,
}

/// A failed admin operation: a wire code and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminError {
    /// The code.
    pub code: ErrorCode,
    /// What went wrong.
    pub message: String,
}

impl AdminError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<PartitionError> for AdminError {
    fn from(error: PartitionError) -> Self {
        Self::new(error.code(), error.to_string())
    }
}

impl From<TopicNameError> for AdminError {
    fn from(error: TopicNameError) -> Self {
        Self::new(ErrorCode::InvalidTopic, error.to_string())
    }
}

fn io_error(context: &str, path: &Path, error: &std::io::Error) -> AdminError {
    tracing::error!(path = %path.display(), %error, "{context}");
    let code = if error.raw_os_error() == Some(libc::ENOSPC) {
        ErrorCode::StorageFull
    } else {
        ErrorCode::StorageError
    };
    AdminError::new(code, format!("{context} {}: {error}", path.display()))
}

/// Why the topics could not be opened at startup.
#[derive(Debug, thiserror::Error)]
pub enum TopicsOpenError {
    /// The `topics` directory could not be created.
    #[error("cannot create {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The `topics` directory could not be listed.
    #[error("cannot list {path}: {source}")]
    List {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A topic's metadata file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A topic's metadata file is not what this broker writes.
    #[error("corrupt {path}: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where and why parsing stopped.
        source: toml::de::Error,
    },
    /// A partition's log could not be opened or recovered.
    #[error("cannot open topic '{topic}': {source}")]
    Partition {
        /// The topic.
        topic: String,
        /// Why.
        source: PartitionError,
    },
}

/// All topics of this broker. Thread-safe.
#[derive(Debug)]
pub struct TopicRegistry {
    config: Arc<Config>,
    storage: Storage,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    admin: Mutex<()>,
}

impl TopicRegistry {
    /// Opens every topic found under `config.data_dir`, recovering their logs.
    ///
    /// # Errors
    /// [`TopicsOpenError`] if the directory cannot be listed or a topic cannot be read back.
    pub fn open(config: Arc<Config>, storage: Storage) -> Result<Self, TopicsOpenError> {
        let topics_dir = config.data_dir.join(TOPICS_DIR);
        create_private_dir(&topics_dir).map_err(|source| TopicsOpenError::CreateDir {
            path: topics_dir.clone(),
            source,
        })?;
        let list_error = |source| TopicsOpenError::List {
            path: topics_dir.clone(),
            source,
        };
        let mut topics = BTreeMap::new();
        for entry in std::fs::read_dir(&topics_dir).map_err(list_error)? {
            let path = entry.map_err(list_error)?.path();
            let Some(name) = path
                .file_name()
                .and_then(|name| name.to_str())
                .and_then(|name| name.strip_suffix(".toml"))
            else {
                continue;
            };
            let topic = open_topic(&config.data_dir, name, &path, &storage)?;
            topics.insert(name.to_owned(), Arc::new(topic));
        }
        orphans::remove_orphans(&config.data_dir, &topics)?;
        Ok(Self {
            config,
            storage,
            topics: RwLock::new(topics),
            admin: Mutex::new(()),
        })
    }

    /// The topic, if it exists.
    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().expect("topics lock").get(name).cloned()
    }

    /// The partition, if it exists.
    pub fn partition(&self, topic: &str, index: u32) -> Option<Arc<Partition>> {
        self.get(topic)?.partitions.get(index as usize).cloned()
    }

    /// Every topic, by name.
    pub fn all(&self) -> Vec<Arc<Topic>> {
        self.topics
            .read()
            .expect("topics lock")
            .values()
            .cloned()
            .collect()
    }

    fn partition_total(&self) -> u64 {
        self.topics
            .read()
            .expect("topics lock")
            .values()
            .map(|topic| topic.partitions.len() as u64)
            .sum()
    }

    fn check_partition_budget(
        &self,
        topic: &str,
        count: u32,
        adding: u32,
    ) -> Result<(), AdminError> {
        let limit = self.config.topic_partitions_max;
        if count == 0 || count > limit {
            return Err(AdminError::new(
                ErrorCode::InvalidPartitions,
                format!(
                    "topic '{topic}' would have {count} partitions; allowed are 1 to topic_partitions_max = {limit}"
                ),
            ));
        }
        let total = self.partition_total() + u64::from(adding);
        if total > u64::from(self.config.partitions_max) {
            return Err(AdminError::new(
                ErrorCode::InvalidPartitions,
                format!(
                    "the broker would host {total} partitions, above partitions_max = {}",
                    self.config.partitions_max
                ),
            ));
        }
        Ok(())
    }

    /// Creates a topic (or only checks that it could be created).
    ///
    /// # Errors
    /// `InvalidTopic`, `TopicAlreadyExists`, `InvalidPartitions`,
    /// `InvalidReplicationFactor`, `InvalidConfig`, or a storage error.
    pub fn create(
        &self,
        name: &str,
        partition_count: u32,
        replication_factor: u16,
        overrides: &[strata_protocol::messages::ConfigEntry],
        validate_only: bool,
    ) -> Result<(), AdminError> {
        check_topic_name(name)?;
        let _admin = self.admin.lock().expect("admin lock");
        self.check_new_name(name)?;
        self.check_partition_budget(name, partition_count, partition_count)?;
        if replication_factor != 1 {
            return Err(AdminError::new(
                ErrorCode::InvalidReplicationFactor,
                format!(
                    "replication factor {replication_factor} is not possible: this cluster has 1 broker"
                ),
            ));
        }
        let config = self.checked_config(&self.config.topic_defaults, overrides)?;
        if validate_only {
            return Ok(());
        }
        let mut partitions = Vec::new();
        let record = TopicRecord {
            partition_count,
            config: config.clone(),
        };
        if let Err(error) = self
            .open_partitions(name, 0..partition_count, &config, &mut partitions)
            .and_then(|()| self.write_record(name, &record))
        {
            self.discard(name, &partitions, partitions.len() as u32..partition_count);
            let path = self.record_path(name);
            if let Err(remove_error) = std::fs::remove_file(&path)
                && remove_error.kind() != std::io::ErrorKind::NotFound
            {
                io_error("cannot remove", &path, &remove_error);
            }
            return Err(error);
        }
        let topic = Arc::new(Topic {
            name: name.to_owned(),
            config,
            partitions,
            traffic: Arc::default(),
        });
        self.topics
            .write()
            .expect("topics lock")
            .insert(name.to_owned(), topic);
        tracing::info!(topic = name, partitions = partition_count, "created topic");
        Ok(())
    }

    /// Deletes a topic and all its data.
    ///
    /// # Errors
    /// `UnknownTopicOrPartition`, or a storage error.
    pub fn delete(&self, name: &str) -> Result<(), AdminError> {
        let _admin = self.admin.lock().expect("admin lock");
        let topic = self
            .topics
            .write()
            .expect("topics lock")
            .remove(name)
            .ok_or_else(|| unknown_topic(name))?;
        // The metadata file goes first: once it is gone the topic is gone, even if the
        // broker dies before the partition directories are removed.
        let path = self.record_path(name);
        std::fs::remove_file(&path).map_err(|error| io_error("cannot delete", &path, &error))?;
        sync_dir(&self.topics_dir())?;
        for partition in &topic.partitions {
            partition.delete()?;
        }
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }

    /// Grows a topic to `partition_count` partitions.
    ///
    /// # Errors
    /// `UnknownTopicOrPartition`, `InvalidPartitions`, or a storage error.
    pub fn add_partitions(
        &self,
        name: &str,
        partition_count: u32,
        validate_only: bool,
    ) -> Result<(), AdminError> {
        let _admin = self.admin.lock().expect("admin lock");
        let topic = self.get(name).ok_or_else(|| unknown_topic(name))?;
        let current = topic.partitions.len() as u32;
        if partition_count <= current {
            return Err(AdminError::new(
                ErrorCode::InvalidPartitions,
                format!(
                    "topic '{name}' has {current} partitions; the new count {partition_count} must be larger"
                ),
            ));
        }
        self.check_partition_budget(name, partition_count, partition_count - current)?;
        if validate_only {
            return Ok(());
        }
        let mut added = Vec::new();
        let record = TopicRecord {
            partition_count,
            config: topic.config.clone(),
        };
        if let Err(error) = self
            .open_partitions(name, current..partition_count, &topic.config, &mut added)
            .and_then(|()| self.write_record(name, &record))
        {
            self.discard(name, &added, current + added.len() as u32..partition_count);
            return Err(error);
        }
        let mut partitions = topic.partitions.clone();
        partitions.extend(added);
        let grown = Arc::new(Topic {
            name: name.to_owned(),
            config: topic.config.clone(),
            partitions,
            traffic: topic.traffic.clone(),
        });
        self.topics
            .write()
            .expect("topics lock")
            .insert(name.to_owned(), grown);
        tracing::info!(
            topic = name,
            from = current,
            to = partition_count,
            "added partitions"
        );
        Ok(())
    }

    /// Sets some of a topic's configs on the live topic and persists them. Keys not
    /// listed keep their values.
    ///
    /// # Errors
    /// `UnknownTopicOrPartition`, `InvalidConfig`, or a storage error.
    pub fn alter_config(
        &self,
        name: &str,
        entries: &[strata_protocol::messages::ConfigEntry],
        validate_only: bool,
    ) -> Result<(), AdminError> {
        let _admin = self.admin.lock().expect("admin lock");
        let topic = self.get(name).ok_or_else(|| unknown_topic(name))?;
        let config = self.checked_config(&topic.config, entries)?;
        if validate_only {
            return Ok(());
        }
        self.write_record(
            name,
            &TopicRecord {
                partition_count: topic.partitions.len() as u32,
                config: config.clone(),
            },
        )?;
        for partition in &topic.partitions {
            partition.set_config(&config)?;
        }
        let altered = Arc::new(Topic {
            name: name.to_owned(),
            config,
            partitions: topic.partitions.clone(),
            traffic: topic.traffic.clone(),
        });
        self.topics
            .write()
            .expect("topics lock")
            .insert(name.to_owned(), altered);
        tracing::info!(
            topic = name,
            changed = entries.len(),
            "altered topic config"
        );
        Ok(())
    }

    /// Refuses a name that an existing topic has, or collides with: the same but for
    /// case, or `.` versus `_`. Call it holding the admin lock.
    fn check_new_name(&self, name: &str) -> Result<(), AdminError> {
        if self.get(name).is_some() {
            return Err(AdminError::new(
                ErrorCode::TopicAlreadyExists,
                format!("topic '{name}' already exists"),
            ));
        }
        let key = topic_collision_key(name);
        let topics = self.topics.read().expect("topics lock");
        match topics
            .keys()
            .find(|existing| topic_collision_key(existing) == key)
        {
            Some(existing) => Err(AdminError::new(
                ErrorCode::InvalidTopic,
                format!(
                    "topic '{name}' collides with existing topic '{existing}': names that differ only in case or in '.' versus '_' share a directory on some file systems and a metric name"
                ),
            )),
            None => Ok(()),
        }
    }

    /// Opens (creating) partitions `indexes` of a new or growing topic into `opened`,
    /// first removing any directory an earlier topic of the name left. Stops at the
    /// first failure, leaving in `opened` those that did open.
    fn open_partitions(
        &self,
        name: &str,
        indexes: std::ops::Range<u32>,
        config: &TopicConfig,
        opened: &mut Vec<Arc<Partition>>,
    ) -> Result<(), AdminError> {
        let data_dir = &self.config.data_dir;
        for index in indexes {
            Partition::remove_files(data_dir, name, index)?;
            let partition = Partition::open(data_dir, name, index, config, &self.storage)?;
            opened.push(Arc::new(partition));
        }
        Ok(())
    }

    /// Undoes a failed create or grow: deletes the partitions it opened and whatever
    /// it may have begun of the partitions `unopened`. Failures are logged: startup
    /// removes what is left.
    fn discard(&self, name: &str, opened: &[Arc<Partition>], unopened: std::ops::Range<u32>) {
        for partition in opened {
            if let Err(error) = partition.delete() {
                tracing::error!(topic = name, partition = partition.index(), %error, "cannot remove a partition of a failed create");
            }
        }
        for index in unopened {
            if let Err(error) = Partition::remove_files(&self.config.data_dir, name, index) {
                tracing::error!(topic = name, partition = index, %error, "cannot remove a partition of a failed create");
            }
        }
    }

    /// `base` with `entries` applied, checked against the broker's limits.
    fn checked_config(
        &self,
        base: &TopicConfig,
        entries: &[strata_protocol::messages::ConfigEntry],
    ) -> Result<TopicConfig, AdminError> {
        let config = base
            .with_overrides(entries)
            .map_err(|error| AdminError::new(ErrorCode::InvalidConfig, error.to_string()))?;
        if !message_fits_frame(config.max_message_bytes, self.config.frame_bytes_max) {
            return Err(AdminError::new(
                ErrorCode::InvalidConfig,
                format!(
                    "max_message_bytes {} must be at least 1 KiB below the broker's frame_bytes_max {}",
                    config.max_message_bytes, self.config.frame_bytes_max
                ),
            ));
        }
        Ok(config)
    }

    /// How many partitions are offline because their data failed its checks at startup.
    pub fn offline_count(&self) -> usize {
        self.all()
            .iter()
            .flat_map(|topic| &topic.partitions)
            .filter(|partition| partition.offline_reason().is_some())
            .count()
    }

    /// Applies retention to every partition.
    pub fn apply_retention(&self, now_ms: i64) {
        for topic in self.all() {
            for partition in &topic.partitions {
                partition.apply_retention(now_ms);
            }
        }
    }

    /// Flushes and closes every partition so the next start skips recovery.
    pub fn close(&self) {
        for topic in self.all() {
            for partition in &topic.partitions {
                partition.close();
            }
        }
    }

    fn topics_dir(&self) -> PathBuf {
        self.config.data_dir.join(TOPICS_DIR)
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.topics_dir().join(format!("{name}.toml"))
    }

    /// Writes the metadata file atomically: a temporary file, fsync, rename, fsync dir.
    fn write_record(&self, name: &str, record: &TopicRecord) -> Result<(), AdminError> {
        let path = self.record_path(name);
        let temporary = self.topics_dir().join(TEMPORARY_FILE);
        let text = toml::to_string(record).expect("topic record serializes");
        let write = || -> std::io::Result<()> {
            let mut file = create_private_file(&temporary)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&temporary, &path)
        };
        write().map_err(|error| {
            // Best effort: the next write truncates it anyway.
            let _ = std::fs::remove_file(&temporary);
            io_error("cannot write", &path, &error)
        })?;
        sync_dir(&self.topics_dir())
    }
}

/// Reads a topic's metadata file at `path` and recovers its partitions; one whose data
/// fails its checks opens offline.
fn open_topic(
    data_dir: &Path,
    name: &str,
    path: &Path,
    storage: &Storage,
) -> Result<Topic, TopicsOpenError> {
    let text = std::fs::read_to_string(path).map_err(|source| TopicsOpenError::Read {
        path: path.to_owned(),
        source,
    })?;
    let record: TopicRecord = toml::from_str(&text).map_err(|source| TopicsOpenError::Corrupt {
        path: path.to_owned(),
        source,
    })?;
    let partitions = (0..record.partition_count)
        .map(|index| {
            Partition::open_or_offline(data_dir, name, index, &record.config, storage).map(Arc::new)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TopicsOpenError::Partition {
            topic: name.to_owned(),
            source,
        })?;
    tracing::info!(
        topic = name,
        partitions = record.partition_count,
        "opened topic"
    );
    Ok(Topic {
        name: name.to_owned(),
        config: record.config,
        partitions,
        traffic: Arc::default(),
    })
}

fn unknown_topic(name: &str) -> AdminError {
    AdminError::new(
        ErrorCode::UnknownTopicOrPartition,
        format!("topic '{}' does not exist", strata_protocol::shown(name)),
    )
}

fn sync_dir(dir: &Path) -> Result<(), AdminError> {
    std::fs::File::open(dir)
        .and_then(|file| file.sync_all())
        .map_err(|error| io_error("cannot fsync", dir, &error))
}
