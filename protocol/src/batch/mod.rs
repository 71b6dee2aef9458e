//! The record batch: the unit of produce, storage, fetch and replication.
//!
//! ```text
//!  byte  size  field               covered by CRC
//!     0     8  base_offset          no   written by the leader on append
//!     8     4  batch_length         no   bytes after this field (total = 12 + batch_length)
//!    12     4  leader_epoch         no   written by the leader on append
//!    16     1  magic = 1            no
//!    17     4  crc                  no   CRC32 (IEEE, crc32fast) of bytes 21..end
//!    21     2  attributes           yes  bits 0-2 compression, bit 3 timestamp type
//!    23     4  last_offset_delta    yes  record_count - 1
//!    27     8  first_timestamp      yes  ms since the Unix epoch
//!    35     8  max_timestamp        yes
//!    43     8  producer_id          yes  -1 without an idempotent producer
//!    51     2  producer_epoch       yes  -1 without an idempotent producer
//!    53     4  base_sequence        yes  -1 without an idempotent producer
//!    57     4  record_count         yes  at least 1
//!    61     …  records              yes
//! ```
//!
//! Integers in the header are big-endian. Each record is a zigzag varint length followed
//! by `attributes: u8 = 0`, `timestamp_delta: varlong`, `offset_delta: varint`,
//! `key_length: varint (-1 = null)`, key, `value_length: varint (-1 = null)`, value,
//! `header_count: varint`, then per header `key_length: varint`, UTF-8 key,
//! `value_length: varint (-1 = null)`, value.
//!
//! The fields the broker assigns (base offset, leader epoch) sit before the CRC-covered
//! range, so the broker stamps them without re-encoding or re-checksumming, and the same
//! bytes go to disk, to consumers and to followers.
//!
//! # Layout
//! - `header`: the fixed header's field offsets and [`BatchHeader`].
//! - `validate`: [`verify_crc`] for reads from disk, [`validate`] for a producer's batch.
//! - `stamp`: rewriting the broker's and the producer's fields of a finished batch.
//! - `records`: [`Batches`] end to end in a buffer and the [`Records`] of one batch.
//! - `builder`: [`BatchBuilder`], which encodes records into a batch.

mod builder;
mod header;
mod records;
#[cfg(test)]
mod samples;
mod stamp;
mod validate;

pub use builder::BatchBuilder;
pub use header::{BatchHeader, total_len};
pub use records::{BatchView, Batches, Header, Headers, Record, Records};
pub use stamp::{stamp, stamp_producer, stamped_prefix};
pub use validate::{validate, verify_crc};

/// The only batch format version.
pub const MAGIC: u8 = 1;
/// Bytes of the fixed batch header.
pub const HEADER_BYTES: usize = 61;
/// Bytes before `batch_length`'s count starts: base offset and the length itself.
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// Bytes at the start of a batch that the broker rewrites on append.
pub const STAMPED_PREFIX_BYTES: usize = 16;
/// Where the CRC-covered bytes start.
pub const CRC_START: usize = 21;
/// The smallest encoded record: every varint one byte, no key, value or headers.
pub const RECORD_BYTES_MIN: usize = 7;

/// No producer id: the batch is not from an idempotent producer.
pub const NO_PRODUCER_ID: i64 = -1;
/// No producer epoch.
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// No sequence number.
pub const NO_SEQUENCE: i32 = -1;
/// How many of an idempotent producer's latest batches the leader remembers per
/// partition, to recognise a retry and answer with the original offsets. A producer never
/// has more than this many batches of one partition in flight.
pub const IDEMPOTENT_BATCHES_IN_FLIGHT_MAX: usize = 5;

/// The sequence number `count` records after `sequence`. Sequences run from 0 to
/// `i32::MAX` and then wrap to 0.
pub fn sequence_after(sequence: i32, count: u32) -> i32 {
    let next = (i64::from(sequence) + i64::from(count)) % (i64::from(i32::MAX) + 1);
    i32::try_from(next).expect("below i32::MAX + 1")
}

/// The compression codec in a batch's attributes. Only `None` is implemented; the other
/// ids are reserved so that they keep their meaning when support is added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Compression {
    /// Records are stored as they are.
    None = 0,
}

/// What a batch's timestamps mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// Set by the producer when it created the record.
    CreateTime,
    /// Set by the broker when it appended the batch.
    LogAppendTime,
}
