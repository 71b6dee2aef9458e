//! A partition as the broker sees it: the `strata-storage` log plus what requests wait
//! on. This is the thin adapter between async handlers and the synchronous log.
//!
//! - Appends run on the request's task: a `write` into the page cache is microseconds.
//!   fsync never happens here; it runs on the storage flusher thread.
//! - The high watermark is published through a `watch` channel that long-poll fetches
//!   and `acks = all` produces wait on. It follows the partition's role in replication
//!   (`replica`): alone, it is the log end offset under `durability = never` and the
//!   durable offset under a policy that fsyncs, so consumers read only what a power loss
//!   cannot take back; led with followers, it is what every in-sync replica covers.
//! - The durable offset is published by the flusher's callback into another `watch`
//!   channel. Poisoning the log, or a flush that runs out of space, pokes it, so that
//!   `acks = all` waiters fail at once instead of at their timeout.
//!
//! # Layout
//! - this file: opening, appending as the leader, reads, retention, close.
//! - `replica`: the role and the high watermark.
//! - `replication`: what the leader and the follower do to the log (replica fetches,
//!   follower appends and truncation, `acks = all` waits).
//! - `consumer_epochs`: the leader-epoch checks of a consumer's fetch (KIP-320).
//!
//! Thread-safe; shared as `Arc<Partition>`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use strata_protocol::batch::{self, BatchHeader, NO_PRODUCER_ID, TimestampType};
use strata_storage::{Durability, FileRange, Flusher, Io, Log, LogConfig, RealIo, StorageError};
use tokio::sync::watch;

use crate::config::{DurabilityPolicy, TopicConfig};
use crate::metrics;
use crate::producer_ids::ProducerIds;

mod consumer_epochs;
mod error;
mod replica;
mod replication;

pub use consumer_epochs::ConsumerEpochs;
pub use error::PartitionError;
pub use replica::{Leadership, Leading, Role};
pub use replication::{IsrRequest, ReplicaRead, ReplicaUpdate};

use crate::replication::engine::Coverage;
use replica::Replica;

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// What every log shares: the flusher thread and the I/O implementation. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Storage {
    flusher: Flusher,
    io: Arc<dyn Io>,
}

impl Storage {
    /// Real files and a new flusher thread.
    ///
    /// # Errors
    /// If the flusher thread cannot start.
    pub fn start() -> std::io::Result<Self> {
        Self::with_io(Arc::new(RealIo))
    }

    /// A custom I/O implementation (tests inject faults or record fsyncs through it).
    ///
    /// # Errors
    /// If the flusher thread cannot start.
    pub fn with_io(io: Arc<dyn Io>) -> std::io::Result<Self> {
        Ok(Self {
            flusher: Flusher::start()?,
            io,
        })
    }
}

/// Where a produce landed.
#[derive(Debug, Clone, Copy)]
pub struct AppendResult {
    /// Offset of the first appended record.
    pub base_offset: u64,
    /// Offset after the last appended record.
    pub next_offset: u64,
    /// Records appended (retried batches that were already in the log not counted).
    pub record_count: u64,
    /// Retried idempotent batches that were already in the log, so not appended again.
    pub duplicate_batches: u64,
    /// The leader epoch it was appended under (`None` for a partition alone): an
    /// `acks = all` wait fails if the partition is led at another epoch since.
    pub leader_epoch: Option<u32>,
}

/// Whole batches read from a partition.
#[derive(Debug, Default)]
pub struct Read {
    /// The batches, sharing the log's mmap; empty if none.
    pub bytes: Bytes,
    /// The same bytes as a range of their segment file, for `sendfile`; `None` if empty.
    pub file: Option<FileRange>,
}

/// The topic settings the partition checks on each request.
#[derive(Debug, Clone, Copy)]
struct Settings {
    max_message_bytes: u32,
    durability: DurabilityPolicy,
}

impl Settings {
    fn of(config: &TopicConfig) -> Self {
        Self {
            max_message_bytes: config.max_message_bytes,
            durability: config.durability,
        }
    }
}

/// What counts toward the high watermark under `durability`.
fn coverage(durability: DurabilityPolicy) -> Coverage {
    match durability {
        DurabilityPolicy::Never => Coverage::LogEnd,
        DurabilityPolicy::Interval | DurabilityPolicy::EveryBatch => Coverage::Durable,
    }
}

/// One partition of a topic, led by this broker.
#[derive(Debug)]
pub struct Partition {
    topic: String,
    index: u32,
    dir: PathBuf,
    /// The log, or why recovery refused it: an offline partition answers every request
    /// with [`PartitionError::Offline`] and reports empty offsets.
    log: Result<Log, String>,
    /// The topic settings the broker applies itself; swapped whole by `set_config`.
    settings: RwLock<Settings>,
    /// The role in replication and the high watermark.
    replica: Arc<Replica>,
    durable_offset: watch::Sender<u64>,
}

/// The directory of a partition's log.
pub fn partition_dir(data_dir: &Path, topic: &str, index: u32) -> PathBuf {
    data_dir.join(format!("{topic}-{index}"))
}

fn log_config(config: &TopicConfig) -> LogConfig {
    LogConfig {
        segment_bytes: config.segment_bytes,
        segment_ms: config.segment_ms,
        retention_ms: u64::try_from(config.retention_ms).ok(),
        retention_bytes: u64::try_from(config.retention_bytes).ok(),
        durability: match config.durability {
            DurabilityPolicy::EveryBatch => Durability::EveryBatch,
            DurabilityPolicy::Interval => Durability::IntervalMs(config.flush_interval_ms),
            DurabilityPolicy::Never => Durability::Never,
        },
        ..LogConfig::default()
    }
}

impl Partition {
    /// Opens (recovering if needed) or creates the partition's log.
    ///
    /// # Errors
    /// A storage error if the log cannot be opened.
    pub fn open(
        data_dir: &Path,
        topic: &str,
        index: u32,
        config: &TopicConfig,
        storage: &Storage,
    ) -> Result<Self, PartitionError> {
        let dir = partition_dir(data_dir, topic, index);
        let log = Log::open(
            &dir,
            log_config(config),
            storage.flusher.clone(),
            storage.io.clone(),
        )?;
        Ok(Self::online(topic, index, dir, log, config))
    }

    /// As [`open`](Self::open), at startup: a log whose data fails its checks (damage
    /// below the recovery point) gives an offline partition instead of an error, logged
    /// with the file and the reason, so the broker serves every other partition. Its files
    /// stay as they are, for an operator to inspect, restore or delete with the topic.
    ///
    /// # Errors
    /// Any other storage error (a failing device, a lock held elsewhere).
    pub fn open_or_offline(
        data_dir: &Path,
        topic: &str,
        index: u32,
        config: &TopicConfig,
        storage: &Storage,
    ) -> Result<Self, PartitionError> {
        match Self::open(data_dir, topic, index, config, storage) {
            Err(PartitionError::Storage(error)) if error.is_corruption() => {
                tracing::error!(
                    topic,
                    partition = index,
                    %error,
                    "partition is offline: its data failed its checks; the broker serves the other partitions"
                );
                let dir = partition_dir(data_dir, topic, index);
                Ok(Self::offline(topic, index, dir, error.to_string(), config))
            }
            opened => opened,
        }
    }

    fn online(topic: &str, index: u32, dir: PathBuf, log: Log, config: &TopicConfig) -> Self {
        let replica = Arc::new(Replica::new(
            log.log_end_offset(),
            log.durable_offset(),
            coverage(config.durability),
            log.latest_epoch().unwrap_or(0),
        ));
        let (durable_offset, _) = watch::channel(log.durable_offset());
        let (durable, visible) = (durable_offset.clone(), replica.clone());
        log.on_durable(Box::new(move |offset, elapsed| {
            // Visible before acknowledged: a producer that reads its write back finds it.
            visible.on_durable(offset);
            durable.send_replace(offset);
            metrics::record_fsync(elapsed);
        }));
        log.on_write_back(metrics::record_write_back);
        let durable = durable_offset.clone();
        // The durable offset will not move again: wake the waiters to see the poison.
        log.on_poisoned(move || durable.send_modify(|_| ()));
        let durable = durable_offset.clone();
        let (name, partition, failing) = (topic.to_owned(), index, AtomicBool::new(false));
        log.on_write_failure(move |error| match error {
            Some(error) => {
                // Each retry fails until space or descriptors are freed: report the first.
                if !failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(topic = %name, partition, %error, "storage writes are failing for lack of disk space or file descriptors; retrying on each flush");
                    metrics::record_storage_write_failure();
                }
                // The waiters whose data this holds back fail now, with StorageFull.
                durable.send_modify(|_| ());
            }
            None => {
                failing.store(false, Ordering::Relaxed);
                tracing::info!(topic = %name, partition, "storage writes succeed again");
            }
        });
        Self {
            topic: topic.to_owned(),
            index,
            dir,
            log: Ok(log),
            settings: RwLock::new(Settings::of(config)),
            replica,
            durable_offset,
        }
    }

    fn offline(
        topic: &str,
        index: u32,
        dir: PathBuf,
        reason: String,
        config: &TopicConfig,
    ) -> Self {
        Self {
            topic: topic.to_owned(),
            index,
            dir,
            log: Err(reason),
            settings: RwLock::new(Settings::of(config)),
            replica: Arc::new(Replica::new(0, 0, coverage(config.durability), 0)),
            durable_offset: watch::channel(0).0,
        }
    }

    /// This partition taken offline after it opened, because a check beyond recovery
    /// found its data damaged (the offsets log reads every batch at startup). The log is
    /// closed cleanly, having had nothing appended: the next start trusts the same bytes
    /// and finds the same damage, rather than cutting the active segment as a torn tail.
    pub fn into_offline(self, reason: String) -> Self {
        self.close();
        let settings = self.settings();
        Self {
            log: Err(reason),
            settings: RwLock::new(settings),
            replica: Arc::new(Replica::new(0, 0, coverage(settings.durability), 0)),
            durable_offset: watch::channel(0).0,
            ..self
        }
    }

    /// The segment file holding `offset`, to name in an error; the directory when
    /// offline.
    pub fn segment_path(&self, offset: u64) -> PathBuf {
        match &self.log {
            Ok(log) => log.segment_path(offset),
            Err(_) => self.dir.clone(),
        }
    }

    /// The log, or [`PartitionError::Offline`].
    fn log(&self) -> Result<&Log, PartitionError> {
        self.log.as_ref().map_err(|reason| PartitionError::Offline {
            topic: self.topic.clone(),
            partition: self.index,
            reason: reason.clone(),
        })
    }

    /// Whether the log was last closed cleanly (an offline partition was not).
    pub fn opened_clean(&self) -> bool {
        self.log.as_ref().is_ok_and(Log::opened_clean)
    }

    /// Why the partition is offline (the file and the damage recovery found), if it is.
    pub fn offline_reason(&self) -> Option<&str> {
        self.log.as_ref().err().map(String::as_str)
    }

    /// `Ok` unless the partition is offline.
    ///
    /// # Errors
    /// [`PartitionError::Offline`].
    pub fn check_online(&self) -> Result<(), PartitionError> {
        self.log().map(drop)
    }

    /// Deletes a partition directory left behind by an earlier topic of the same name.
    ///
    /// # Errors
    /// A storage error if it cannot be removed.
    pub fn remove_files(data_dir: &Path, topic: &str, index: u32) -> Result<(), PartitionError> {
        Self::remove_dir(&partition_dir(data_dir, topic, index))
    }

    fn remove_dir(dir: &Path) -> Result<(), PartitionError> {
        match std::fs::remove_dir_all(dir) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                Err(PartitionError::Storage(StorageError::Io {
                    path: dir.to_owned(),
                    source: error,
                }))
            }
            _ => Ok(()),
        }
    }

    fn settings(&self) -> Settings {
        *self
            .settings
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies a changed topic config to the open partition.
    ///
    /// # Errors
    /// A storage error if the log refuses the config.
    pub fn set_config(&self, config: &TopicConfig) -> Result<(), PartitionError> {
        // An offline partition keeps the topic's config for when it is repaired.
        if let Ok(log) = &self.log {
            log.set_config(log_config(config))?;
        }
        *self
            .settings
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Settings::of(config);
        // `acks = all` produces waiting for an fsync that `never` no longer makes are
        // answered now, as `never` answers them.
        self.replica.set_coverage(coverage(config.durability));
        Ok(())
    }

    /// The partition index.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The leader epoch this broker leads or follows the partition at.
    pub fn leader_epoch(&self) -> u32 {
        self.replica.leader_epoch()
    }

    /// The epoch batches appended now are stamped with: the leader epoch, unless the log
    /// already holds a newer one.
    pub fn stamp_epoch(&self) -> u32 {
        self.replica.stamp_epoch()
    }

    /// Offsets below this are visible to consumers.
    pub fn high_watermark(&self) -> u64 {
        *self.replica.high_watermark.borrow()
    }

    /// The first offset in the log; 0 when offline.
    pub fn log_start_offset(&self) -> u64 {
        self.log.as_ref().map_or(0, Log::log_start_offset)
    }

    /// The offset the next appended record gets; 0 when offline.
    pub fn log_end_offset(&self) -> u64 {
        self.log.as_ref().map_or(0, Log::log_end_offset)
    }

    /// Bytes of the partition's segments on disk; 0 when offline.
    pub fn size_bytes(&self) -> u64 {
        self.log.as_ref().map_or(0, Log::size_bytes)
    }

    /// A receiver that changes whenever the high watermark moves.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.replica.high_watermark.subscribe()
    }

    /// Validates every batch in `records`, then appends them in order. Nothing is
    /// appended if any batch is invalid. A batch whose max timestamp is past
    /// `latest_timestamp_ms` is invalid.
    ///
    /// # Errors
    /// [`PartitionError`] for an invalid, oversized, unsupported or future-stamped batch,
    /// a storage failure (a full disk, a poisoned log), or an offline partition.
    pub fn append(
        &self,
        records: &Bytes,
        latest_timestamp_ms: i64,
    ) -> Result<AppendResult, PartitionError> {
        self.check_online()?;
        let batches = self.validate(records, latest_timestamp_ms)?;
        self.append_valid(&batches)
    }

    /// As [`append`](Self::append), for a client's produce: an idempotent batch must also
    /// carry a producer id and epoch that `producer_ids` gave out, or nothing is appended
    /// (so made-up ids never reach the partition's producer state).
    ///
    /// # Errors
    /// As [`append`](Self::append), and [`PartitionError::ProducerId`].
    pub fn append_from_client(
        &self,
        records: &Bytes,
        latest_timestamp_ms: i64,
        producer_ids: &ProducerIds,
    ) -> Result<AppendResult, PartitionError> {
        self.check_online()?;
        self.check_leader()?;
        let batches = self.validate(records, latest_timestamp_ms)?;
        for (index, (_, header)) in batches.iter().enumerate() {
            if header.producer_id != NO_PRODUCER_ID {
                producer_ids
                    .check(header.producer_id, header.producer_epoch)
                    .map_err(|source| PartitionError::ProducerId { index, source })?;
            }
        }
        self.append_valid(&batches)
    }

    fn append_valid(
        &self,
        batches: &[(&[u8], BatchHeader)],
    ) -> Result<AppendResult, PartitionError> {
        let log = self.log()?;
        let mut result: Option<AppendResult> = None;
        for (bytes, header) in batches {
            // The role is checked and the batch stamped and written under the role's
            // lock: a leadership that moves meanwhile waits for the write, and no batch
            // of this broker ever carries another leader's epoch.
            let (appended, leader_epoch) = {
                let role = self.replica.role();
                let (stamp, leader_epoch) = match &*role {
                    Role::Leader(leading) => (leading.stamp, Some(leading.epoch)),
                    Role::Alone => (self.replica.base_epoch(), None),
                    Role::Follower { .. } => {
                        return Err(self.not_leading("this broker no longer leads it"));
                    }
                };
                (log.append(bytes, stamp)?, leader_epoch)
            };
            let next_offset = appended.last_offset + 1;
            let (record_count, duplicate_batches) = if appended.duplicate {
                (0, 1)
            } else {
                // Under a policy that fsyncs, records become visible once durable (the
                // flusher's callback moves the high watermark): a power loss can then
                // take back no record a consumer has read.
                self.replica.on_log_end(appended.log_end_offset, false);
                (u64::from(header.record_count), 0)
            };
            result = Some(match result {
                None => AppendResult {
                    base_offset: appended.base_offset,
                    next_offset,
                    record_count,
                    duplicate_batches,
                    leader_epoch,
                },
                Some(so_far) => AppendResult {
                    next_offset,
                    record_count: so_far.record_count + record_count,
                    duplicate_batches: so_far.duplicate_batches + duplicate_batches,
                    ..so_far
                },
            });
        }
        Ok(result.expect("validate returns at least one batch"))
    }

    fn validate<'a>(
        &self,
        records: &'a [u8],
        latest_timestamp_ms: i64,
    ) -> Result<Vec<(&'a [u8], BatchHeader)>, PartitionError> {
        let max = self.settings().max_message_bytes;
        let mut batches: Vec<(&[u8], BatchHeader)> = Vec::new();
        let mut rest = records;
        while !rest.is_empty() {
            let index = batches.len();
            let invalid = |source| PartitionError::InvalidBatch { index, source };
            let length =
                batch::total_len(rest).ok_or(invalid(strata_protocol::BatchError::Truncated {
                    need: batch::LOG_OVERHEAD_BYTES,
                    have: rest.len(),
                }))?;
            if length > max as usize {
                return Err(PartitionError::MessageTooLarge { bytes: length, max });
            }
            let bytes =
                rest.get(..length)
                    .ok_or(invalid(strata_protocol::BatchError::Truncated {
                        need: length,
                        have: rest.len(),
                    }))?;
            let header = batch::validate(bytes, max as usize).map_err(invalid)?;
            if header.timestamp_type() == TimestampType::LogAppendTime {
                return Err(PartitionError::UnsupportedBatch {
                    index,
                    reason: "log-append-time batches are not supported; send create-time timestamps",
                });
            }
            if header.max_timestamp > latest_timestamp_ms {
                return Err(PartitionError::TimestampTooFarAhead {
                    index,
                    max_timestamp: header.max_timestamp,
                    latest_ms: latest_timestamp_ms,
                });
            }
            let idempotent = |header: &BatchHeader| header.producer_id != NO_PRODUCER_ID;
            if index > 0 && (idempotent(&header) || idempotent(&batches[0].1)) {
                // One batch, so a retry answers with that batch's own offsets.
                return Err(PartitionError::UnsupportedBatch {
                    index,
                    reason: "an idempotent producer sends one batch per partition per request",
                });
            }
            batches.push((bytes, header));
            rest = &rest[length..];
        }
        if batches.is_empty() {
            return Err(PartitionError::Empty);
        }
        Ok(batches)
    }

    /// Whole batches from `offset`, at most about `max_bytes` (at least one batch if any is
    /// there), never at or past the high watermark: what consumers may read. Empty from
    /// the high watermark up to the log end offset. The bytes share the log's mmap.
    ///
    /// # Errors
    /// `OffsetOutOfRange` outside `[log_start_offset, log_end_offset]`; `Offline`.
    pub fn read(&self, offset: u64, max_bytes: usize) -> Result<Read, PartitionError> {
        self.read_below(offset, max_bytes, self.high_watermark())
    }

    /// As [`read`](Self::read), up to the log end offset: also records that are not yet
    /// visible to consumers. For the partition's own writer, the group coordinator, which
    /// replays the offsets log it wrote.
    ///
    /// # Errors
    /// As [`read`](Self::read).
    pub fn read_written(&self, offset: u64, max_bytes: usize) -> Result<Read, PartitionError> {
        self.read_below(offset, max_bytes, self.log_end_offset())
    }

    fn read_below(&self, offset: u64, max_bytes: usize, end: u64) -> Result<Read, PartitionError> {
        let log = self.log()?;
        let log_end_offset = log.log_end_offset();
        if offset > log_end_offset {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset(),
                log_end_offset,
            }
            .into());
        }
        if offset >= end {
            return Ok(Read::default());
        }
        let read = log.read(offset, max_bytes, end)?;
        Ok(Read {
            bytes: read.bytes,
            file: read.file,
        })
    }

    /// The first record at or after `timestamp`: its offset and timestamp; `None` when
    /// there is none (or the lookup failed, which is logged).
    ///
    /// # Errors
    /// `Offline`.
    pub fn offset_for_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<(u64, i64)>, PartitionError> {
        match self.log()?.offset_for_timestamp(timestamp) {
            Ok(found) => Ok(found),
            Err(error) => {
                tracing::warn!(topic = %self.topic, partition = self.index, %error, "time index lookup failed");
                Ok(None)
            }
        }
    }

    /// Deletes expired segments; nothing for an offline partition.
    pub fn apply_retention(&self, now_ms: i64) {
        let Ok(log) = &self.log else { return };
        if let Err(error) = log.apply_retention(now_ms) {
            tracing::warn!(topic = %self.topic, partition = self.index, %error, "retention failed");
        }
    }

    /// Flushes and closes the log cleanly; an offline partition's files stay as they are.
    pub fn close(&self) {
        let Ok(log) = &self.log else { return };
        if let Err(error) = log.close() {
            tracing::error!(topic = %self.topic, partition = self.index, %error, "closing the log failed");
        }
    }

    /// Closes the log and deletes its directory, an offline partition's damaged files
    /// included.
    ///
    /// # Errors
    /// A storage error if the files cannot be removed.
    pub fn delete(&self) -> Result<(), PartitionError> {
        match &self.log {
            Ok(log) => log.delete()?,
            Err(_) => Self::remove_dir(&self.dir)?,
        }
        tracing::debug!(dir = %self.dir.display(), "deleted partition");
        Ok(())
    }
}
