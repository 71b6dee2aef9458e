//! A partition as the broker sees it: the `strata-storage` log plus what requests wait
//! on. This is the thin adapter between async handlers and the synchronous log.
//!
//! - Appends run on the request's task: a `write` into the page cache is microseconds.
//!   fsync never happens here; it runs on the storage flusher thread.
//! - The high watermark is published through a `watch` channel that long-poll fetches
//!   subscribe to. On a single node it equals the log end offset.
//! - The durable offset is published by the flusher's callback into another `watch`
//!   channel that `acks = all` produces wait on. Poisoning the log pokes it too, so they
//!   fail at once instead of at their timeout.
//!
//! Thread-safe; shared as `Arc<Partition>`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use bytes::Bytes;
use strata_protocol::ErrorCode;
use strata_protocol::batch::{self, BatchHeader, NO_PRODUCER_ID, TimestampType};
use strata_storage::{Durability, FileRange, Flusher, Io, Log, LogConfig, RealIo, StorageError};
use tokio::sync::watch;

use crate::config::{DurabilityPolicy, TopicConfig};
use crate::metrics;
use crate::producer_ids::{ProducerIdError, ProducerIds};

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

/// Why a partition operation failed; each maps to a wire error code.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    /// No such topic or partition.
    #[error("topic '{topic}' has no partition {partition}")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
    },
    /// A batch failed validation.
    #[error("batch {index} of the request is invalid: {source}")]
    InvalidBatch {
        /// The batch's position in the request.
        index: usize,
        /// Why.
        source: strata_protocol::BatchError,
    },
    /// A batch uses a feature this broker does not implement.
    #[error("batch {index}: {reason}")]
    UnsupportedBatch {
        /// The batch's position in the request.
        index: usize,
        /// What is unsupported.
        reason: &'static str,
    },
    /// A batch's max timestamp is further ahead of the broker's clock than
    /// `message_timestamp_after_ms_max`.
    #[error(
        "batch {index}: its max timestamp {max_timestamp} is more than message_timestamp_after_ms_max ahead of the broker's clock (the latest accepted now is {latest_ms})"
    )]
    TimestampTooFarAhead {
        /// The batch's position in the request.
        index: usize,
        /// The batch's max timestamp.
        max_timestamp: i64,
        /// The latest max timestamp accepted now.
        latest_ms: i64,
    },
    /// A batch's producer id or epoch was never given out by this broker.
    #[error("batch {index}: {source}")]
    ProducerId {
        /// The batch's position in the request.
        index: usize,
        /// Why.
        source: ProducerIdError,
    },
    /// The request carried no batch.
    #[error("the request carries no record batch for this partition")]
    Empty,
    /// A batch is larger than the topic's `max_message_bytes`.
    #[error("batch of {bytes} bytes exceeds the topic's max_message_bytes {max}")]
    MessageTooLarge {
        /// The batch size.
        bytes: usize,
        /// The limit.
        max: u32,
    },
    /// `acks = all` did not become durable within the request timeout.
    #[error("the write was appended but not confirmed durable within the request timeout")]
    Timeout,
    /// The storage layer failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl PartitionError {
    /// The wire code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            PartitionError::UnknownPartition { .. } => ErrorCode::UnknownTopicOrPartition,
            PartitionError::InvalidBatch { source, .. } => source.error_code(),
            PartitionError::UnsupportedBatch { .. } | PartitionError::Empty => {
                ErrorCode::InvalidBatch
            }
            PartitionError::MessageTooLarge { .. } => ErrorCode::MessageTooLarge,
            PartitionError::TimestampTooFarAhead { .. } => ErrorCode::InvalidTimestamp,
            PartitionError::ProducerId { source, .. } => source.code(),
            PartitionError::Timeout => ErrorCode::RequestTimedOut,
            PartitionError::Storage(error) => match error {
                StorageError::NoSpace { .. } => ErrorCode::StorageFull,
                StorageError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
                StorageError::OutOfOrderSequence { .. } => ErrorCode::OutOfOrderSequence,
                StorageError::ProducerFenced { .. } => ErrorCode::ProducerFenced,
                _ => ErrorCode::StorageError,
            },
        }
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

/// One partition of a topic, led by this broker.
#[derive(Debug)]
pub struct Partition {
    topic: String,
    index: u32,
    dir: PathBuf,
    log: Log,
    leader_epoch: u32,
    /// The topic settings the broker applies itself; swapped whole by `set_config`.
    settings: RwLock<Settings>,
    high_watermark: watch::Sender<u64>,
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
        let log_end_offset = log.log_end_offset();
        let (high_watermark, _) = watch::channel(log_end_offset);
        let (durable_offset, _) = watch::channel(log.durable_offset());
        let durable = durable_offset.clone();
        log.on_durable(Box::new(move |offset, elapsed| {
            durable.send_replace(offset);
            metrics::record_fsync(elapsed);
        }));
        log.on_write_back(metrics::record_write_back);
        let durable = durable_offset.clone();
        // The durable offset will not move again: wake the waiters to see the poison.
        log.on_poisoned(move || durable.send_modify(|_| ()));
        Ok(Self {
            topic: topic.to_owned(),
            index,
            dir,
            log,
            leader_epoch: 0,
            settings: RwLock::new(Settings::of(config)),
            high_watermark,
            durable_offset,
        })
    }

    /// Deletes a partition directory left behind by an earlier topic of the same name.
    ///
    /// # Errors
    /// A storage error if it cannot be removed.
    pub fn remove_files(data_dir: &Path, topic: &str, index: u32) -> Result<(), PartitionError> {
        let dir = partition_dir(data_dir, topic, index);
        match std::fs::remove_dir_all(&dir) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                Err(PartitionError::Storage(StorageError::Io {
                    path: dir,
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
        self.log.set_config(log_config(config))?;
        *self
            .settings
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Settings::of(config);
        Ok(())
    }

    /// The partition index.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The leader epoch batches are stamped with.
    pub fn leader_epoch(&self) -> u32 {
        self.leader_epoch
    }

    /// Offsets below this are visible to consumers.
    pub fn high_watermark(&self) -> u64 {
        *self.high_watermark.borrow()
    }

    /// The first offset in the log.
    pub fn log_start_offset(&self) -> u64 {
        self.log.log_start_offset()
    }

    /// The offset the next appended record gets.
    pub fn log_end_offset(&self) -> u64 {
        self.log.log_end_offset()
    }

    /// Bytes of the partition's segments on disk.
    pub fn size_bytes(&self) -> u64 {
        self.log.size_bytes()
    }

    /// A receiver that changes whenever the high watermark moves.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.high_watermark.subscribe()
    }

    /// Validates every batch in `records`, then appends them in order. Nothing is
    /// appended if any batch is invalid. A batch whose max timestamp is past
    /// `latest_timestamp_ms` is invalid.
    ///
    /// # Errors
    /// [`PartitionError`] for an invalid, oversized, unsupported or future-stamped batch,
    /// or a storage failure (a full disk, a poisoned log).
    pub fn append(
        &self,
        records: &Bytes,
        latest_timestamp_ms: i64,
    ) -> Result<AppendResult, PartitionError> {
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
        let mut result: Option<AppendResult> = None;
        for (bytes, header) in batches {
            let appended = self.log.append(bytes, self.leader_epoch)?;
            let next_offset = appended.last_offset + 1;
            let (record_count, duplicate_batches) = if appended.duplicate {
                (0, 1)
            } else {
                // Appends of concurrent requests finish out of order: the later one's
                // end must not pull the high watermark back below records already read.
                self.high_watermark.send_if_modified(|high_watermark| {
                    let advanced = next_offset > *high_watermark;
                    *high_watermark = (*high_watermark).max(next_offset);
                    advanced
                });
                (u64::from(header.record_count), 0)
            };
            result = Some(match result {
                None => AppendResult {
                    base_offset: appended.base_offset,
                    next_offset,
                    record_count,
                    duplicate_batches,
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

    /// Waits until everything below `offset` is covered by the topic's durability policy,
    /// or `deadline` passes.
    ///
    /// # Errors
    /// [`PartitionError::Timeout`] at the deadline; a storage error if the log is poisoned.
    ///
    /// # Cancel safety
    /// Cancel safe: it only waits.
    pub async fn wait_durable(&self, offset: u64, deadline: Instant) -> Result<(), PartitionError> {
        if self.settings().durability == DurabilityPolicy::Never {
            return Ok(());
        }
        let mut durable = self.durable_offset.subscribe();
        let reached = tokio::time::timeout_at(
            deadline.into(),
            durable.wait_for(|durable| *durable >= offset || self.log.poisoned().is_some()),
        )
        .await;
        match reached {
            Ok(Ok(durable)) if *durable >= offset => Ok(()),
            _ => match self.log.check_poisoned() {
                Err(error) => Err(error.into()),
                Ok(()) => Err(PartitionError::Timeout),
            },
        }
    }

    /// Whole batches from `offset`, at most about `max_bytes` (at least one batch if any is
    /// there), never at or past the high watermark. The bytes share the log's mmap.
    ///
    /// # Errors
    /// `OffsetOutOfRange` outside `[log_start_offset, high_watermark]`.
    pub fn read(&self, offset: u64, max_bytes: usize) -> Result<Read, PartitionError> {
        let high_watermark = self.high_watermark();
        if offset > high_watermark {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset(),
                log_end_offset: high_watermark,
            }
            .into());
        }
        if offset == high_watermark {
            return Ok(Read::default());
        }
        let read = self.log.read(offset, max_bytes, high_watermark)?;
        Ok(Read {
            bytes: read.bytes,
            file: read.file,
        })
    }

    /// The first record at or after `timestamp`: its offset and timestamp.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Option<(u64, i64)> {
        match self.log.offset_for_timestamp(timestamp) {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(topic = %self.topic, partition = self.index, %error, "time index lookup failed");
                None
            }
        }
    }

    /// Deletes expired segments.
    pub fn apply_retention(&self, now_ms: i64) {
        if let Err(error) = self.log.apply_retention(now_ms) {
            tracing::warn!(topic = %self.topic, partition = self.index, %error, "retention failed");
        }
    }

    /// Flushes and closes the log cleanly.
    pub fn close(&self) {
        if let Err(error) = self.log.close() {
            tracing::error!(topic = %self.topic, partition = self.index, %error, "closing the log failed");
        }
    }

    /// Closes the log and deletes its directory.
    ///
    /// # Errors
    /// A storage error if the files cannot be removed.
    pub fn delete(&self) -> Result<(), PartitionError> {
        self.log.delete()?;
        tracing::debug!(dir = %self.dir.display(), "deleted partition");
        Ok(())
    }
}
