//! The fixed header at the start of every batch: where each field sits, and reading it.

use super::{CRC_START, HEADER_BYTES, LOG_OVERHEAD_BYTES, STAMPED_PREFIX_BYTES, TimestampType};
use crate::error::BatchError;

pub(super) const BASE_OFFSET_AT: usize = 0;
pub(super) const BATCH_LENGTH_AT: usize = 8;
pub(super) const LEADER_EPOCH_AT: usize = 12;
pub(super) const MAGIC_AT: usize = 16;
pub(super) const CRC_AT: usize = 17;
pub(super) const ATTRIBUTES_AT: usize = 21;
pub(super) const LAST_OFFSET_DELTA_AT: usize = 23;
pub(super) const FIRST_TIMESTAMP_AT: usize = 27;
pub(super) const MAX_TIMESTAMP_AT: usize = 35;
pub(super) const PRODUCER_ID_AT: usize = 43;
pub(super) const PRODUCER_EPOCH_AT: usize = 51;
pub(super) const BASE_SEQUENCE_AT: usize = 53;
pub(super) const RECORD_COUNT_AT: usize = 57;

const _: () = assert!(RECORD_COUNT_AT + 4 == HEADER_BYTES);
const _: () = assert!(CRC_AT + 4 == CRC_START && ATTRIBUTES_AT == CRC_START);
const _: () = assert!(LEADER_EPOCH_AT + 4 == STAMPED_PREFIX_BYTES);

pub(super) const COMPRESSION_MASK: u16 = 0b0111;
pub(super) const TIMESTAMP_TYPE_BIT: u16 = 0b1000;
pub(super) const RESERVED_ATTRIBUTE_BITS: u16 = !(COMPRESSION_MASK | TIMESTAMP_TYPE_BIT);

fn read_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

fn read_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

fn read_u64(buf: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

/// The total size of the batch at the start of `buf`, read from its length field, or
/// `None` if fewer than [`LOG_OVERHEAD_BYTES`] bytes are present.
pub fn total_len(buf: &[u8]) -> Option<usize> {
    let length = buf.get(BATCH_LENGTH_AT..LOG_OVERHEAD_BYTES)?;
    let length = u32::from_be_bytes(length.try_into().ok()?);
    Some(LOG_OVERHEAD_BYTES + length as usize)
}

/// The decoded fixed header of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: u64,
    /// Bytes after the `batch_length` field.
    pub batch_length: u32,
    /// Epoch of the leader that appended the batch.
    pub leader_epoch: u32,
    /// Format version.
    pub magic: u8,
    /// CRC32 of bytes [`CRC_START`]`..`.
    pub crc: u32,
    /// Compression and timestamp type bits.
    pub attributes: u16,
    /// `record_count - 1`.
    pub last_offset_delta: u32,
    /// Timestamp of the first record.
    pub first_timestamp: i64,
    /// Largest record timestamp.
    pub max_timestamp: i64,
    /// Idempotent producer id, or [`NO_PRODUCER_ID`](super::NO_PRODUCER_ID).
    pub producer_id: i64,
    /// Idempotent producer epoch, or [`NO_PRODUCER_EPOCH`](super::NO_PRODUCER_EPOCH).
    pub producer_epoch: i16,
    /// Sequence number of the first record, or [`NO_SEQUENCE`](super::NO_SEQUENCE).
    pub base_sequence: i32,
    /// Records in the batch.
    pub record_count: u32,
}

impl BatchHeader {
    /// Reads the fixed header at the start of `buf`. Checks only that the header is
    /// complete; see [`validate`](super::validate) and [`verify_crc`](super::verify_crc) for the checks that matter.
    ///
    /// # Errors
    /// [`BatchError::Truncated`] if `buf` is shorter than [`HEADER_BYTES`].
    pub fn parse(buf: &[u8]) -> Result<Self, BatchError> {
        if buf.len() < HEADER_BYTES {
            return Err(BatchError::Truncated {
                need: HEADER_BYTES,
                have: buf.len(),
            });
        }
        Ok(Self {
            base_offset: read_u64(buf, BASE_OFFSET_AT),
            batch_length: read_u32(buf, BATCH_LENGTH_AT),
            leader_epoch: read_u32(buf, LEADER_EPOCH_AT),
            magic: buf[MAGIC_AT],
            crc: read_u32(buf, CRC_AT),
            attributes: read_u16(buf, ATTRIBUTES_AT),
            last_offset_delta: read_u32(buf, LAST_OFFSET_DELTA_AT),
            first_timestamp: read_u64(buf, FIRST_TIMESTAMP_AT) as i64,
            max_timestamp: read_u64(buf, MAX_TIMESTAMP_AT) as i64,
            producer_id: read_u64(buf, PRODUCER_ID_AT) as i64,
            producer_epoch: read_u16(buf, PRODUCER_EPOCH_AT) as i16,
            base_sequence: read_u32(buf, BASE_SEQUENCE_AT) as i32,
            record_count: read_u32(buf, RECORD_COUNT_AT),
        })
    }

    /// Total bytes of the batch, header included.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD_BYTES + self.batch_length as usize
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> u64 {
        self.base_offset
            .saturating_add(u64::from(self.last_offset_delta))
    }

    /// Offset after the last record.
    pub fn next_offset(&self) -> u64 {
        self.last_offset().saturating_add(1)
    }

    /// The timestamp type bit.
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_BIT == 0 {
            TimestampType::CreateTime
        } else {
            TimestampType::LogAppendTime
        }
    }
}
