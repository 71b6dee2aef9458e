//! Idempotent producer state of one partition: for each producer id, its epoch and its
//! latest batches, so the leader can tell a retry (answered with the original offsets)
//! from the next batch and from a gap (rejected).
//!
//! The state is a function of the log: [`ProducerStates::apply`] folds each batch in, in
//! offset order. It is saved as a snapshot when a segment rolls and on `close`, and an
//! open loads the newest snapshot and replays the batches after it. A snapshot file:
//!
//! ```text
//!  0  4  magic "SPRD"
//!  4  2  version = 2
//!  6  8  offset: the state covers every batch below it (u64)
//! 14  4  producer count (u32), then per producer:
//!          producer id (i64), epoch (i16), last append time (i64), batch count (u8),
//!          per batch, oldest first: first sequence (i32), last sequence (i32),
//!          base offset (u64), last offset (u64), max timestamp (i64)
//!  .  4  crc32 of every byte before it
//! ```
//! Integers are big-endian. A damaged snapshot is ignored: the open replays from an older
//! one, or from the log start.
//!
//! Expiry and eviction go by the broker, never by timestamps a client wrote: a producer's
//! last append time is the broker's clock ([`Io::now_ms`]) when its newest batch was
//! appended (or replayed at open), and eviction drops the producer whose newest batch has
//! the lowest offset. Version 1 snapshots held the newest batch's max timestamp in place of
//! the append time; they are still read, as if every producer had appended at the open.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use strata_protocol::batch::{
    BatchHeader, IDEMPOTENT_BATCHES_IN_FLIGHT_MAX, NO_PRODUCER_ID, sequence_after,
};

use crate::error::{Result, StorageError};
use crate::io::Io;

const MAGIC: &[u8; 4] = b"SPRD";
const VERSION: u16 = 2;
/// Snapshots whose per-producer time is a client timestamp.
const VERSION_CLIENT_TIME: u16 = 1;
const SUFFIX: &str = ".snapshot";

/// One remembered batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchMeta {
    first_sequence: i32,
    last_sequence: i32,
    base_offset: u64,
    last_offset: u64,
    max_timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Producer {
    epoch: i16,
    /// Newest last, at most [`IDEMPOTENT_BATCHES_IN_FLIGHT_MAX`].
    batches: VecDeque<BatchMeta>,
    /// The broker's clock when the newest batch was appended: what expiry goes by.
    last_append_ms: i64,
}

impl Producer {
    /// The newest batch's last offset: eviction drops the producer where it is lowest.
    fn last_offset(&self) -> u64 {
        self.batches.back().map_or(0, |batch| batch.last_offset)
    }
}

/// What to do with an idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Append it.
    Append,
    /// A retry of a batch already in the log: `(base offset, last offset, max timestamp)`.
    Duplicate(u64, u64, i64),
}

/// Producer state of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProducerStates {
    producers: HashMap<i64, Producer>,
}

impl ProducerStates {
    /// Decides about a batch before it is appended. Batches without a producer id always
    /// append. An unknown producer may start at any sequence: its state expired, was
    /// evicted, or lies in segments that retention deleted.
    ///
    /// # Errors
    /// [`StorageError::ProducerFenced`] for an epoch older than the producer's current
    /// one; [`StorageError::OutOfOrderSequence`] for a sequence that neither continues the
    /// producer's last batch nor repeats one of its remembered batches, or a new epoch that
    /// does not start at sequence 0.
    pub(crate) fn check(&self, header: &BatchHeader) -> Result<Verdict> {
        if header.producer_id == NO_PRODUCER_ID {
            return Ok(Verdict::Append);
        }
        let Some(producer) = self.producers.get(&header.producer_id) else {
            return Ok(Verdict::Append);
        };
        let out_of_order = |expected| StorageError::OutOfOrderSequence {
            producer_id: header.producer_id,
            expected,
            received: header.base_sequence,
        };
        if header.producer_epoch < producer.epoch {
            return Err(StorageError::ProducerFenced {
                producer_id: header.producer_id,
                epoch: header.producer_epoch,
                current_epoch: producer.epoch,
            });
        }
        if header.producer_epoch > producer.epoch {
            return match header.base_sequence {
                0 => Ok(Verdict::Append),
                _ => Err(out_of_order(0)),
            };
        }
        let last_sequence = sequence_after(header.base_sequence, header.last_offset_delta);
        if let Some(batch) = producer.batches.iter().find(|batch| {
            batch.first_sequence == header.base_sequence && batch.last_sequence == last_sequence
        }) {
            return Ok(Verdict::Duplicate(
                batch.base_offset,
                batch.last_offset,
                batch.max_timestamp,
            ));
        }
        let expected = producer
            .batches
            .back()
            .map_or(0, |batch| sequence_after(batch.last_sequence, 1));
        if header.base_sequence == expected {
            Ok(Verdict::Append)
        } else {
            Err(out_of_order(expected))
        }
    }

    /// Folds in a batch that is in the log, with its offsets stamped, appended (or
    /// replayed) at broker time `append_ms`. Keeps at most `producers_max` producers,
    /// evicting the one whose newest batch is oldest in the log.
    pub(crate) fn apply(&mut self, header: &BatchHeader, append_ms: i64, producers_max: usize) {
        if header.producer_id == NO_PRODUCER_ID {
            return;
        }
        if !self.producers.contains_key(&header.producer_id)
            && self.producers.len() >= producers_max
        {
            let oldest = self
                .producers
                .iter()
                .min_by_key(|(_, producer)| producer.last_offset())
                .map(|(&id, _)| id);
            if let Some(oldest) = oldest {
                self.producers.remove(&oldest);
            }
        }
        let producer = self
            .producers
            .entry(header.producer_id)
            .or_insert_with(|| Producer {
                epoch: header.producer_epoch,
                batches: VecDeque::new(),
                last_append_ms: append_ms,
            });
        if header.producer_epoch != producer.epoch {
            producer.epoch = header.producer_epoch;
            producer.batches.clear();
        }
        if producer.batches.len() == IDEMPOTENT_BATCHES_IN_FLIGHT_MAX {
            producer.batches.pop_front();
        }
        producer.batches.push_back(BatchMeta {
            first_sequence: header.base_sequence,
            last_sequence: sequence_after(header.base_sequence, header.last_offset_delta),
            base_offset: header.base_offset,
            last_offset: header.last_offset(),
            max_timestamp: header.max_timestamp,
        });
        producer.last_append_ms = producer.last_append_ms.max(append_ms);
    }

    /// Forgets producers that appended nothing for `expiration_ms` before broker time
    /// `now_ms`.
    pub(crate) fn expire(&mut self, now_ms: i64, expiration_ms: u64) {
        let expiration_ms = i64::try_from(expiration_ms).unwrap_or(i64::MAX);
        let cutoff = now_ms.saturating_sub(expiration_ms);
        self.producers
            .retain(|_, producer| producer.last_append_ms >= cutoff);
    }

    /// How many producers are remembered.
    pub(crate) fn len(&self) -> usize {
        self.producers.len()
    }

    /// The snapshot file for the state at `offset` (see the module docs).
    pub(crate) fn encode(&self, offset: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(22 + self.producers.len() * 64);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&offset.to_be_bytes());
        let count = u32::try_from(self.producers.len()).expect("producers_max fits u32");
        out.extend_from_slice(&count.to_be_bytes());
        let mut ids: Vec<_> = self.producers.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let producer = &self.producers[&id];
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&producer.epoch.to_be_bytes());
            out.extend_from_slice(&producer.last_append_ms.to_be_bytes());
            let batches = u8::try_from(producer.batches.len()).expect("at most a few batches");
            out.push(batches);
            for batch in &producer.batches {
                out.extend_from_slice(&batch.first_sequence.to_be_bytes());
                out.extend_from_slice(&batch.last_sequence.to_be_bytes());
                out.extend_from_slice(&batch.base_offset.to_be_bytes());
                out.extend_from_slice(&batch.last_offset.to_be_bytes());
                out.extend_from_slice(&batch.max_timestamp.to_be_bytes());
            }
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// The state and offset in a snapshot file, or `None` if it is damaged. A version 1
    /// snapshot's client timestamps are replaced by `open_ms`, the broker's clock now.
    pub(crate) fn decode(bytes: &[u8], open_ms: i64) -> Option<(Self, u64)> {
        let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
        if crc32fast::hash(body).to_be_bytes() != crc {
            return None;
        }
        let mut reader = Reader(body);
        if reader.take::<4>()? != *MAGIC {
            return None;
        }
        let client_time = match u16::from_be_bytes(reader.take()?) {
            VERSION => false,
            VERSION_CLIENT_TIME => true,
            _ => return None,
        };
        let offset = u64::from_be_bytes(reader.take()?);
        let count = u32::from_be_bytes(reader.take()?);
        let mut producers = HashMap::new();
        for _ in 0..count {
            let id = i64::from_be_bytes(reader.take()?);
            let epoch = i16::from_be_bytes(reader.take()?);
            let stored_ms = i64::from_be_bytes(reader.take()?);
            let last_append_ms = if client_time { open_ms } else { stored_ms };
            let [batch_count] = reader.take()?;
            if usize::from(batch_count) > IDEMPOTENT_BATCHES_IN_FLIGHT_MAX {
                return None;
            }
            let mut batches = VecDeque::with_capacity(usize::from(batch_count));
            for _ in 0..batch_count {
                batches.push_back(BatchMeta {
                    first_sequence: i32::from_be_bytes(reader.take()?),
                    last_sequence: i32::from_be_bytes(reader.take()?),
                    base_offset: u64::from_be_bytes(reader.take()?),
                    last_offset: u64::from_be_bytes(reader.take()?),
                    max_timestamp: i64::from_be_bytes(reader.take()?),
                });
            }
            let producer = Producer {
                epoch,
                batches,
                last_append_ms,
            };
            producers.insert(id, producer);
        }
        reader.0.is_empty().then_some((Self { producers }, offset))
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
}

/// `<dir>/<offset, 20 digits>.snapshot`.
pub(crate) fn snapshot_path(dir: &Path, offset: u64) -> PathBuf {
    dir.join(format!("{offset:020}{SUFFIX}"))
}

/// The offsets of the snapshot files in `dir`, ascending.
///
/// # Errors
/// The I/O error listing the directory.
pub(crate) fn list_snapshots(io: &dyn Io, dir: &Path) -> Result<Vec<u64>> {
    let mut offsets = Vec::new();
    for name in io.read_dir(dir).map_err(StorageError::at(dir))? {
        let Some(stem) = name.to_str().and_then(|name| name.strip_suffix(SUFFIX)) else {
            continue;
        };
        if stem.len() == 20
            && stem.bytes().all(|byte| byte.is_ascii_digit())
            && let Ok(offset) = stem.parse::<u64>()
        {
            offsets.push(offset);
        }
    }
    offsets.sort_unstable();
    Ok(offsets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(producer_id: i64, epoch: i16, sequence: i32, count: u32, base: u64) -> BatchHeader {
        BatchHeader {
            base_offset: base,
            batch_length: 0,
            leader_epoch: 0,
            magic: strata_protocol::batch::MAGIC,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            first_timestamp: 10,
            max_timestamp: 10 + i64::from(sequence),
            producer_id,
            producer_epoch: epoch,
            base_sequence: sequence,
            record_count: count,
        }
    }

    #[test]
    fn continues_dedups_and_rejects_gaps() {
        let mut states = ProducerStates::default();
        assert_eq!(
            states.check(&header(7, 0, 5, 3, 0)).unwrap(),
            Verdict::Append
        );
        states.apply(&header(7, 0, 5, 3, 0), 1000, 10);
        assert_eq!(
            states.check(&header(7, 0, 8, 2, 3)).unwrap(),
            Verdict::Append
        );
        states.apply(&header(7, 0, 8, 2, 3), 1000, 10);
        assert_eq!(
            states.check(&header(7, 0, 5, 3, 99)).unwrap(),
            Verdict::Duplicate(0, 2, 15)
        );
        assert!(matches!(
            states.check(&header(7, 0, 11, 1, 5)),
            Err(StorageError::OutOfOrderSequence {
                expected: 10,
                received: 11,
                ..
            })
        ));
        // Same first sequence, different length: not the same batch.
        assert!(states.check(&header(7, 0, 5, 2, 5)).is_err());
        assert!(matches!(
            states.check(&header(7, 0, 10, 1, 5)),
            Ok(Verdict::Append)
        ));
    }

    #[test]
    fn epochs_fence_and_restart_sequences() {
        let mut states = ProducerStates::default();
        states.apply(&header(1, 3, 0, 1, 0), 1000, 10);
        assert!(matches!(
            states.check(&header(1, 2, 1, 1, 1)),
            Err(StorageError::ProducerFenced {
                epoch: 2,
                current_epoch: 3,
                ..
            })
        ));
        assert!(states.check(&header(1, 4, 1, 1, 1)).is_err());
        assert_eq!(
            states.check(&header(1, 4, 0, 1, 1)).unwrap(),
            Verdict::Append
        );
        states.apply(&header(1, 4, 0, 1, 1), 1000, 10);
        assert_eq!(
            states.check(&header(1, 4, 0, 1, 9)).unwrap(),
            Verdict::Duplicate(1, 1, 10)
        );
    }

    #[test]
    fn remembers_the_last_batches_only_and_wraps_sequences() {
        let mut states = ProducerStates::default();
        let start = i32::MAX - 2;
        let mut sequence = start;
        for base in 0..7 {
            states.apply(&header(2, 0, sequence, 2, base * 2), 1000, 10);
            sequence = sequence_after(sequence, 2);
        }
        assert_eq!(sequence, 11);
        // The two oldest batches are forgotten: their retry is a gap, not a duplicate.
        assert!(states.check(&header(2, 0, start, 2, 99)).is_err());
        assert!(matches!(
            states.check(&header(2, 0, 1, 2, 99)),
            Ok(Verdict::Duplicate(4, 5, _))
        ));
        assert_eq!(
            states.check(&header(2, 0, 11, 1, 14)).unwrap(),
            Verdict::Append
        );
    }

    #[test]
    fn evicts_the_oldest_producer_and_expires() {
        let mut states = ProducerStates::default();
        // Client timestamps (from the sequence) play no part: producer 1 stamps the far
        // future, yet its batch is oldest in the log, so it is evicted first.
        let mut future = header(1, 0, 0, 1, 0);
        future.max_timestamp = i64::MAX;
        states.apply(&future, 1000, 2);
        states.apply(&header(2, 0, 5, 1, 1), 1000, 2);
        states.apply(&header(3, 0, 9, 1, 2), 1010, 2);
        assert_eq!(states.len(), 2);
        assert!(!states.producers.contains_key(&1));
        // Expiry goes by broker append time: 2 appended at 1000, 3 at 1010.
        states.expire(1005 + 1000, 1000);
        assert_eq!(states.producers.keys().collect::<Vec<_>>(), vec![&3]);
    }

    #[test]
    fn snapshots_round_trip_and_reject_damage() {
        let mut states = ProducerStates::default();
        for id in 0..4 {
            for sequence in 0..(id * 3) {
                states.apply(&header(id.into(), 1, sequence, 1, 0), 1000, 100);
            }
        }
        let bytes = states.encode(42);
        assert_eq!(
            ProducerStates::decode(&bytes, 7),
            Some((states.clone(), 42))
        );
        for cut in 0..bytes.len() {
            assert_eq!(ProducerStates::decode(&bytes[..cut], 7), None);
        }
        let mut flipped = bytes.clone();
        flipped[20] ^= 1;
        assert_eq!(ProducerStates::decode(&flipped, 7), None);
    }

    #[test]
    fn version_1_snapshots_load_with_the_open_time() {
        let mut states = ProducerStates::default();
        states.apply(&header(5, 0, 0, 1, 0), i64::MAX, 10);
        let mut bytes = states.encode(1);
        bytes[4..6].copy_from_slice(&VERSION_CLIENT_TIME.to_be_bytes());
        let body = bytes.len() - 4;
        let crc = crc32fast::hash(&bytes[..body]);
        bytes[body..].copy_from_slice(&crc.to_be_bytes());
        let (loaded, _) = ProducerStates::decode(&bytes, 77).unwrap();
        assert_eq!(loaded.producers[&5].last_append_ms, 77);
        bytes[5] = 3;
        assert_eq!(ProducerStates::decode(&bytes, 77), None, "unknown version");
    }
}
