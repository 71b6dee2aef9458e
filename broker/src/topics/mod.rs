//! The topic registry: this broker's copies of the topics placed on it, their configs
//! and partition logs, recorded in `<data_dir>/topics/<name>.toml` so a restart opens
//! and recovers them before the metadata is read back.
//!
//! The cluster metadata (`crate::cluster`) is the truth about which topics exist; the
//! registry follows it (`cluster::reconcile` creates, grows, reconfigures and deletes
//! local copies, and deletes the partitions moved off this broker: `remove`), and [`checks`] holds what an admin change must pass before it is
//! proposed.
//!
//! Reads (every produce and fetch) take a short read lock on a map of `Arc<Topic>`;
//! changes are serialised by their own mutex and replace a topic's `Arc` copy-on-write,
//! so a request never sees a half-changed topic. Changes do blocking file I/O: call them
//! from `spawn_blocking`.
//!
//! A create or grow that fails removes the partition directories it made, and startup
//! removes the ones a crash left behind (`orphans`).

pub mod checks;
mod orphans;
mod remove;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use strata_protocol::ErrorCode;
use strata_protocol::limits::TopicNameError;

use crate::config::{Config, TopicConfig};
use crate::data_dir::{create_private_dir, create_private_file};
use crate::metrics::TopicTraffic;
use crate::partition::{Partition, PartitionError, Storage};

const TOPICS_DIR: &str = "topics";
/// The temporary file a metadata file is written to before its rename. One fixed short
/// name (admin changes are serialised) keeps it within the 255-byte file-name limit for
/// the longest topic name, and it cannot be taken for a topic's `.toml`.
const TEMPORARY_FILE: &str = "write.tmp";

/// This broker's copy of a topic: its config and the partitions placed here. Immutable:
/// a change makes a new `Topic`.
#[derive(Debug)]
pub struct Topic {
    /// The name.
    pub name: String,
    /// The metadata's id for the topic (the log index of its create), or `None` for a
    /// topic of an older single node not yet entered into the metadata.
    pub id: Option<u64>,
    /// The metadata log `id` belongs to (its `log_id`); `None` with `id`.
    pub log_id: Option<String>,
    /// The effective config.
    pub config: TopicConfig,
    /// Every partition by index: `Some` for those placed on this broker.
    pub partitions: Vec<Option<Arc<Partition>>>,
    /// Traffic counters, shared by every version of the topic, so that its series in
    /// `/metrics` live exactly as long as the topic.
    pub traffic: Arc<TopicTraffic>,
}

impl Topic {
    /// Whether this is the local copy of topic `id` of the metadata log `log_id`.
    pub fn is_copy_of(&self, log_id: &str, id: u64) -> bool {
        self.id == Some(id) && self.log_id.as_deref() == Some(log_id)
    }

    /// Whether the metadata log `log_id` made this copy; if not, it comes from an older
    /// single node's data directory or from a metadata log since wiped.
    pub fn is_of(&self, log_id: &str) -> bool {
        self.id.is_some() && self.log_id.as_deref() == Some(log_id)
    }

    /// The partitions placed on this broker.
    pub fn local(&self) -> impl Iterator<Item = &Arc<Partition>> {
        self.partitions.iter().flatten()
    }

    /// The indexes of the partitions placed on this broker.
    pub fn hosted(&self) -> Vec<u32> {
        self.local().map(|partition| partition.index()).collect()
    }
}

/// What is written to the topic's local metadata file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicRecord {
    /// `None` in files an older single node wrote.
    #[serde(default)]
    id: Option<u64>,
    /// The metadata log the id belongs to.
    #[serde(default)]
    log_id: Option<String>,
    partition_count: u32,
    /// The partitions on this broker; `None` (older files) for all of them.
    #[serde(default)]
    hosted: Option<Vec<u32>>,
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
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
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

    /// The partition, if this broker has it.
    pub fn partition(&self, topic: &str, index: u32) -> Option<Arc<Partition>> {
        self.get(topic)?.partitions.get(index as usize)?.clone()
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

    /// Creates the local copy of topic `id` named `name`, with the partitions `hosted` of
    /// its `count`, placed here by the metadata. Directories a crash or an earlier topic of
    /// the name left are removed first.
    ///
    /// # Errors
    /// A storage error; what was created is removed again.
    pub fn create_local(
        &self,
        name: &str,
        (log_id, id): (&str, u64),
        count: u32,
        hosted: &[u32],
        config: &TopicConfig,
    ) -> Result<(), AdminError> {
        let _admin = self.admin.lock().expect("admin lock");
        let mut partitions = vec![None; count as usize];
        let record = TopicRecord {
            id: Some(id),
            log_id: Some(log_id.to_owned()),
            partition_count: count,
            hosted: Some(hosted.to_vec()),
            config: config.clone(),
        };
        if let Err(error) = self
            .open_partitions(name, hosted, config, &mut partitions)
            .and_then(|()| self.write_record(name, &record))
        {
            self.discard(name, &partitions, hosted);
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
            id: Some(id),
            log_id: Some(log_id.to_owned()),
            config: config.clone(),
            partitions,
            traffic: Arc::default(),
        });
        self.topics
            .write()
            .expect("topics lock")
            .insert(name.to_owned(), topic);
        tracing::info!(
            topic = name,
            partitions = count,
            hosted = hosted.len(),
            "created topic"
        );
        Ok(())
    }

    /// Deletes a topic's local copy and all its data.
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
        for partition in topic.local() {
            partition.delete()?;
        }
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }

    /// Grows the local copy to `count` partitions, of which this broker hosts `hosted`.
    ///
    /// # Errors
    /// `UnknownTopicOrPartition`, or a storage error.
    pub fn grow_local(&self, name: &str, count: u32, hosted: &[u32]) -> Result<(), AdminError> {
        let _admin = self.admin.lock().expect("admin lock");
        let topic = self.get(name).ok_or_else(|| unknown_topic(name))?;
        let mut partitions = topic.partitions.clone();
        partitions.resize(count.max(partitions.len() as u32) as usize, None);
        let adding: Vec<u32> = hosted
            .iter()
            .copied()
            .filter(|&index| partitions[index as usize].is_none())
            .collect();
        let before = partitions.clone();
        let record = TopicRecord {
            id: topic.id,
            log_id: topic.log_id.clone(),
            partition_count: partitions.len() as u32,
            hosted: Some(hosted.to_vec()),
            config: topic.config.clone(),
        };
        if let Err(error) = self
            .open_partitions(name, &adding, &topic.config, &mut partitions)
            .and_then(|()| self.write_record(name, &record))
        {
            let opened: Vec<Option<Arc<Partition>>> = partitions
                .iter()
                .zip(&before)
                .map(|(now, was)| if was.is_none() { now.clone() } else { None })
                .collect();
            self.discard(name, &opened, &adding);
            return Err(error);
        }
        let grown = Arc::new(Topic {
            name: name.to_owned(),
            id: topic.id,
            log_id: topic.log_id.clone(),
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
            partitions = count,
            added = adding.len(),
            "added partitions"
        );
        Ok(())
    }

    /// Sets the local copy's config on its live partitions and persists it.
    ///
    /// # Errors
    /// `UnknownTopicOrPartition`, or a storage error.
    pub fn set_config(&self, name: &str, config: &TopicConfig) -> Result<(), AdminError> {
        let _admin = self.admin.lock().expect("admin lock");
        let topic = self.get(name).ok_or_else(|| unknown_topic(name))?;
        self.write_record(
            name,
            &TopicRecord {
                id: topic.id,
                log_id: topic.log_id.clone(),
                partition_count: topic.partitions.len() as u32,
                hosted: Some(topic.hosted()),
                config: config.clone(),
            },
        )?;
        for partition in topic.local() {
            partition.set_config(config)?;
        }
        self.replace(Topic {
            name: name.to_owned(),
            id: topic.id,
            log_id: topic.log_id.clone(),
            config: config.clone(),
            partitions: topic.partitions.clone(),
            traffic: topic.traffic.clone(),
        });
        tracing::info!(topic = name, "altered topic config");
        Ok(())
    }

    /// Marks a topic of an older single node's data directory as the copy of metadata
    /// topic `id`, which was created from it.
    ///
    /// # Errors
    /// `UnknownTopicOrPartition`, or a storage error.
    pub fn adopt(&self, name: &str, (log_id, id): (&str, u64)) -> Result<(), AdminError> {
        let _admin = self.admin.lock().expect("admin lock");
        let topic = self.get(name).ok_or_else(|| unknown_topic(name))?;
        self.write_record(
            name,
            &TopicRecord {
                id: Some(id),
                log_id: Some(log_id.to_owned()),
                partition_count: topic.partitions.len() as u32,
                hosted: Some(topic.hosted()),
                config: topic.config.clone(),
            },
        )?;
        self.replace(Topic {
            name: name.to_owned(),
            id: Some(id),
            log_id: Some(log_id.to_owned()),
            config: topic.config.clone(),
            partitions: topic.partitions.clone(),
            traffic: topic.traffic.clone(),
        });
        tracing::info!(
            topic = name,
            id,
            "adopted the topic into the cluster metadata"
        );
        Ok(())
    }

    fn replace(&self, topic: Topic) {
        self.topics
            .write()
            .expect("topics lock")
            .insert(topic.name.clone(), Arc::new(topic));
    }

    /// Opens (creating) partitions `indexes` of a new or growing topic into their slots
    /// of `opened`, first removing any directory an earlier topic of the name left. Stops
    /// at the first failure, leaving in `opened` those that did open.
    fn open_partitions(
        &self,
        name: &str,
        indexes: &[u32],
        config: &TopicConfig,
        opened: &mut [Option<Arc<Partition>>],
    ) -> Result<(), AdminError> {
        let data_dir = &self.config.data_dir;
        for &index in indexes {
            Partition::remove_files(data_dir, name, index)?;
            let partition = Partition::open(data_dir, name, index, config, &self.storage)?;
            opened[index as usize] = Some(Arc::new(partition));
        }
        Ok(())
    }

    /// Undoes a failed create or grow: deletes the partitions it opened and whatever it
    /// may have begun of the rest of `indexes`. Failures are logged: startup removes what
    /// is left.
    fn discard(&self, name: &str, opened: &[Option<Arc<Partition>>], indexes: &[u32]) {
        for &index in indexes {
            let outcome = match opened.get(index as usize).and_then(Option::as_ref) {
                Some(partition) => partition.delete(),
                None => Partition::remove_files(&self.config.data_dir, name, index),
            };
            if let Err(error) = outcome {
                tracing::error!(topic = name, partition = index, %error, "cannot remove a partition of a failed create");
            }
        }
    }

    /// How many partitions are offline because their data failed its checks at startup.
    pub fn offline_count(&self) -> usize {
        self.all()
            .iter()
            .flat_map(|topic| topic.local().cloned().collect::<Vec<_>>())
            .filter(|partition| partition.offline_reason().is_some())
            .count()
    }

    /// Applies retention to every partition.
    pub fn apply_retention(&self, now_ms: i64) {
        for topic in self.all() {
            for partition in topic.local() {
                partition.apply_retention(now_ms);
            }
        }
    }

    /// Flushes and closes every partition so the next start skips recovery.
    pub fn close(&self) {
        for topic in self.all() {
            for partition in topic.local() {
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
    let hosted = record
        .hosted
        .clone()
        .unwrap_or_else(|| (0..record.partition_count).collect());
    let partitions = (0..record.partition_count)
        .map(|index| {
            if !hosted.contains(&index) {
                return Ok(None);
            }
            Partition::open_or_offline(data_dir, name, index, &record.config, storage)
                .map(|partition| Some(Arc::new(partition)))
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
        id: record.id,
        log_id: record.log_id,
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
