//! The internal offsets log: `group_offsets_partitions` partitions of the
//! `__consumer_offsets` log, holding every committed offset and the persisted state of
//! every group and member as [`Record`]s.
//!
//! A group lives in partition `fnv1a(group_id) % partitions`, so all of its records are
//! in one log, in order, and its coordinator is that partition's leader. The log is
//! replicated like any topic: only the leader appends, and a broker loads a partition's
//! groups (reads it whole; the last record for a key wins and a record without a value
//! deletes its key) when it starts leading it. Every partition is read once at startup
//! too, to check every batch before the broker serves: a damaged one is taken offline,
//! and what was read is kept for the first load if the log has not moved by then.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use strata_protocol::batch::{self, BatchBuilder, Batches};

use crate::config::{Config, TopicConfig};
use crate::group::open_error::GroupOpenError;
use crate::group::records::Record;
use crate::partition::{Partition, PartitionError, Storage, now_ms, partition_dir};

/// The internal log's name. Topic names starting with `__` are reserved, so no topic can
/// collide with its directories.
pub const OFFSETS_LOG: &str = "__consumer_offsets";

/// Largest batch of records one operation may append. One operation's records for one
/// partition go in one batch, so a crash keeps all of them or none.
const BATCH_BYTES_MAX: u32 = 32 << 20;
/// Bytes read per step while loading.
const LOAD_READ_BYTES: usize = 4 << 20;

/// The offsets log's partitions. Thread-safe.
#[derive(Debug)]
pub struct OffsetsLog {
    partitions: Vec<Arc<Partition>>,
    /// Each partition's records as read at startup: the first load takes them instead of
    /// reading the log again, if the log has not moved since. Dropped at that load, or
    /// when the partition is followed.
    read_at_open: Mutex<Vec<Option<ReadAtOpen>>>,
}

/// One partition's records as read at startup, and the log they were read from.
#[derive(Debug)]
struct ReadAtOpen {
    log_start_offset: u64,
    log_end_offset: u64,
    records: Vec<Record>,
}

/// Settings of the offsets log: the broker's defaults, but never deleted by retention
/// (it is not compacted yet, so retention would lose live offsets), with 64 MiB segments,
/// batches up to [`BATCH_BYTES_MAX`] and `group_offsets_durability`.
fn log_config(config: &Config) -> TopicConfig {
    TopicConfig {
        retention_ms: -1,
        retention_bytes: -1,
        segment_bytes: 64 << 20,
        max_message_bytes: BATCH_BYTES_MAX,
        durability: config.group_offsets_durability,
        ..config.topic_defaults.clone()
    }
}

impl OffsetsLog {
    /// Opens (recovering if needed) or creates the partitions and reads every record,
    /// partition by partition, in log order, keeping them for the first
    /// [`load`](Self::load). A partition whose data fails its checks, at recovery or while
    /// its batches are read here, is offline: the groups that live in it are refused (see
    /// [`check_group`](Self::check_group)) and every other group works.
    ///
    /// # Errors
    /// [`GroupOpenError`] if a partition cannot be opened or holds a record that is not a
    /// group record, or if the directory holds a different number of partitions than
    /// `group_offsets_partitions`.
    pub fn open(config: &Config, storage: &Storage) -> Result<Self, GroupOpenError> {
        let count = config.group_offsets_partitions;
        let existing = existing_partitions(&config.data_dir);
        if existing != 0 && existing != count {
            return Err(GroupOpenError::PartitionCountChanged {
                data_dir: config.data_dir.clone(),
                existing,
                configured: count,
            });
        }
        let topic_config = log_config(config);
        let mut partitions = Vec::with_capacity(count as usize);
        let mut read_at_open = Vec::with_capacity(count as usize);
        for index in 0..count {
            let partition = Partition::open_or_offline(
                &config.data_dir,
                OFFSETS_LOG,
                index,
                &topic_config,
                storage,
            )
            .map_err(|source| GroupOpenError::Open {
                partition: index,
                source,
            })?;
            let partition = match load_partition(&partition) {
                Ok(records) => {
                    read_at_open.push(Some(ReadAtOpen {
                        log_start_offset: partition.log_start_offset(),
                        log_end_offset: partition.log_end_offset(),
                        records,
                    }));
                    partition
                }
                Err(error) if error.is_damage() => {
                    let path = partition.segment_path(error.offset());
                    tracing::error!(
                        topic = OFFSETS_LOG,
                        partition = index,
                        path = %path.display(),
                        %error,
                        "partition is offline: its data failed its checks; groups in the other partitions are served"
                    );
                    read_at_open.push(None);
                    partition.into_offline(format!("corrupt {}: {error}", path.display()))
                }
                Err(error) => return Err(error),
            };
            partitions.push(Arc::new(partition));
        }
        Ok(Self {
            partitions,
            read_at_open: Mutex::new(read_at_open),
        })
    }

    /// The partitions, by index.
    pub fn partitions(&self) -> &[Arc<Partition>] {
        &self.partitions
    }

    /// How many partitions the log has here.
    pub fn partition_count(&self) -> u32 {
        self.partitions.len() as u32
    }

    /// The partition a group's records live in.
    pub fn partition_of(&self, group_id: &str) -> usize {
        offsets_partition(group_id, self.partitions.len() as u32) as usize
    }

    /// `Ok` unless the group's partition is offline. Its records were not loaded, so
    /// serving the group would start it afresh and contradict the log once repaired.
    ///
    /// # Errors
    /// [`PartitionError::Offline`].
    pub fn check_group(&self, group_id: &str) -> Result<(), PartitionError> {
        self.partitions[self.partition_of(group_id)].check_online()
    }

    /// `Ok` unless the group's partition has fewer in-sync replicas than its minimum: a
    /// commit is then refused before anything is appended (KIP-966).
    ///
    /// # Errors
    /// [`PartitionError::NotEnoughReplicas`].
    pub fn check_replicas(&self, group_id: &str) -> Result<(), PartitionError> {
        self.partitions[self.partition_of(group_id)].check_acks_all()
    }

    /// Whether a partition was not closed cleanly at the last stop: it may have lost
    /// what was only in the page cache if the machine lost power.
    pub fn opened_unclean(&self) -> bool {
        self.partitions
            .iter()
            .any(|partition| partition.offline_reason().is_none() && !partition.opened_clean())
    }

    /// How many partitions are offline.
    pub fn offline_count(&self) -> usize {
        self.partitions
            .iter()
            .filter(|partition| partition.offline_reason().is_some())
            .count()
    }

    /// Appends records, each to its group's partition, in order: one batch per partition,
    /// so a crash keeps all of one call's records for a partition or none of them.
    /// Returns once they are in the log (the page cache), which survives the broker being
    /// killed, with what to wait on for them to meet the log's durability policy.
    ///
    /// # Errors
    /// A storage error (a full disk, a failed log), or `MessageTooLarge` when one call's
    /// records pass 32 MiB. Batches for other partitions may have been appended.
    pub fn append(&self, records: &[Record]) -> Result<Appended, PartitionError> {
        let mut batches: BTreeMap<usize, BatchBuilder> = BTreeMap::new();
        let timestamp = now_ms();
        for record in records {
            let key = record.key();
            let value = record.value();
            batches
                .entry(self.partition_of(record.group()))
                .or_default()
                .push(timestamp, Some(&key), value.as_deref(), &[]);
        }
        let mut appended = Appended::default();
        for (partition, builder) in batches {
            let partition = &self.partitions[partition];
            // Stamped with the broker's own clock just above.
            let result = partition.append(&builder.finish(), i64::MAX)?;
            appended
                .ends
                .push((partition.clone(), (result.next_offset, result.leader_epoch)));
        }
        Ok(appended)
    }

    /// Every record of partition `index`, in log order: what was read at startup if the
    /// log has not moved since, else read now.
    ///
    /// # Errors
    /// [`GroupOpenError`] naming the partition and offset of an unreadable record.
    pub fn load(&self, index: u32) -> Result<Vec<Record>, GroupOpenError> {
        let partition = &self.partitions[index as usize];
        let read = self.take_read_at_open(index).filter(|read| {
            read.log_start_offset == partition.log_start_offset()
                && read.log_end_offset == partition.log_end_offset()
        });
        match read {
            Some(read) => Ok(read.records),
            None => load_partition(partition),
        }
    }

    /// Drops what startup read of partition `index`: its log will move (it is followed),
    /// or it is never loaded here.
    pub fn forget_read_at_open(&self, index: u32) {
        drop(self.take_read_at_open(index));
    }

    fn take_read_at_open(&self, index: u32) -> Option<ReadAtOpen> {
        self.read_at_open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(index as usize)?
            .take()
    }

    /// Flushes and closes the partitions.
    pub fn close(&self) {
        for partition in &self.partitions {
            partition.close();
        }
    }
}

/// Every record of one partition, in log order.
fn load_partition(partition: &Partition) -> Result<Vec<Record>, GroupOpenError> {
    let index = partition.index();
    let mut records = Vec::new();
    let mut offset = partition.log_start_offset();
    while offset < partition.log_end_offset() {
        let bytes: Bytes = partition
            .read_written(offset, LOAD_READ_BYTES)
            .map_err(|source| GroupOpenError::Read {
                partition: index,
                offset,
                source,
            })?
            .bytes;
        if bytes.is_empty() {
            break;
        }
        let batch_error = |offset, source| GroupOpenError::Batch {
            partition: index,
            offset,
            source,
        };
        for view in Batches::new(&bytes) {
            // The whole log is read here anyway: check every CRC, so a flipped bit in a
            // committed offset takes the partition offline instead of rewinding a group.
            let view = view
                .and_then(|view| batch::verify_crc(view.bytes).map(|_| view))
                .map_err(|source| batch_error(offset, source))?;
            for record in view.records() {
                let record = record.map_err(|source| batch_error(offset, source))?;
                offset = record.offset + 1;
                let key = record.key.ok_or(GroupOpenError::MissingKey {
                    partition: index,
                    offset: record.offset,
                })?;
                records.push(Record::decode(key, record.value).map_err(|source| {
                    GroupOpenError::Record {
                        partition: index,
                        offset: record.offset,
                        source,
                    }
                })?);
            }
        }
    }
    Ok(records)
}

/// A partition appended to, the offset after what was appended, and the leader epoch it
/// was appended under.
type AppendedEnd = (Arc<Partition>, (u64, Option<u32>));

/// Records in the offsets log, not yet known to meet its durability policy: each
/// partition written and the offset after its last record.
#[derive(Debug, Default)]
pub struct Appended {
    ends: Vec<AppendedEnd>,
}

impl Appended {
    /// Waits until the durability policy covers every record, on a notification from the
    /// flusher (never blocking a thread on an fsync), or `deadline` passes. A log poisoned
    /// by a failed fsync ends the wait at once.
    ///
    /// # Errors
    /// `Timeout` at the deadline; the storage error of a poisoned log.
    ///
    /// # Cancel safety
    /// Cancel safe: it only waits.
    pub async fn wait_durable(&self, deadline: Instant) -> Result<(), PartitionError> {
        for (partition, (end, epoch)) in &self.ends {
            partition.wait_committed(*end, *epoch, deadline).await?;
        }
        Ok(())
    }
}

/// How many `__consumer_offsets-N` directories exist.
fn existing_partitions(data_dir: &Path) -> u32 {
    let mut count = 0;
    while partition_dir(data_dir, OFFSETS_LOG, count).is_dir() {
        count += 1;
    }
    count
}

/// The partition of a log of `partitions` partitions that `group_id`'s records live in;
/// its leader coordinates the group.
pub fn offsets_partition(group_id: &str, partitions: u32) -> u32 {
    (fnv1a(group_id.as_bytes()) % u64::from(partitions.max(1))) as u32
}

/// 64-bit FNV-1a: stable across versions and platforms, unlike `std`'s hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
