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

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::BatchError;
use crate::wire::{Sink, varint};

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

const BASE_OFFSET_AT: usize = 0;
const BATCH_LENGTH_AT: usize = 8;
const LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const FIRST_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
const RECORD_COUNT_AT: usize = 57;

const _: () = assert!(RECORD_COUNT_AT + 4 == HEADER_BYTES);
const _: () = assert!(CRC_AT + 4 == CRC_START && ATTRIBUTES_AT == CRC_START);
const _: () = assert!(LEADER_EPOCH_AT + 4 == STAMPED_PREFIX_BYTES);

const COMPRESSION_MASK: u16 = 0b0111;
const TIMESTAMP_TYPE_BIT: u16 = 0b1000;
const RESERVED_ATTRIBUTE_BITS: u16 = !(COMPRESSION_MASK | TIMESTAMP_TYPE_BIT);

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
    /// Idempotent producer id, or [`NO_PRODUCER_ID`].
    pub producer_id: i64,
    /// Idempotent producer epoch, or [`NO_PRODUCER_EPOCH`].
    pub producer_epoch: i16,
    /// Sequence number of the first record, or [`NO_SEQUENCE`].
    pub base_sequence: i32,
    /// Records in the batch.
    pub record_count: u32,
}

impl BatchHeader {
    /// Reads the fixed header at the start of `buf`. Checks only that the header is
    /// complete; see [`validate`] and [`verify_crc`] for the checks that matter.
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

/// Checks the CRC of the single batch that makes up `batch`: the cheap check used when
/// reading back from disk.
///
/// # Errors
/// [`BatchError::Truncated`], [`BatchError::InvalidLength`] if `batch` is not exactly one
/// batch long, [`BatchError::InvalidMagic`], or [`BatchError::CrcMismatch`].
pub fn verify_crc(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(batch)?;
    if header.total_len() != batch.len() {
        return Err(BatchError::InvalidLength {
            length: header.total_len() as u64,
            min: batch.len(),
            max: batch.len(),
        });
    }
    if header.magic != MAGIC {
        return Err(BatchError::InvalidMagic {
            magic: header.magic,
            expected: MAGIC,
        });
    }
    let computed = crc32fast::hash(&batch[CRC_START..]);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    Ok(header)
}

/// Fully validates one batch from a producer: length within `batch_bytes_max`, magic,
/// CRC, attributes, header counts, and every record (dense offset deltas, lengths, UTF-8
/// header keys, timestamps agreeing with `max_timestamp`).
///
/// # Errors
/// The first [`BatchError`] found.
pub fn validate(batch: &[u8], batch_bytes_max: usize) -> Result<BatchHeader, BatchError> {
    let claimed = total_len(batch).ok_or(BatchError::Truncated {
        need: LOG_OVERHEAD_BYTES,
        have: batch.len(),
    })?;
    let min = HEADER_BYTES + RECORD_BYTES_MIN;
    if claimed < min || claimed > batch_bytes_max {
        return Err(BatchError::InvalidLength {
            length: claimed as u64,
            min,
            max: batch_bytes_max,
        });
    }
    if claimed > batch.len() {
        return Err(BatchError::Truncated {
            need: claimed,
            have: batch.len(),
        });
    }
    let header = verify_crc(batch)?;
    check_attributes(header.attributes)?;
    if header.record_count == 0 {
        return Err(BatchError::Inconsistent {
            reason: "record_count is zero",
        });
    }
    if header.last_offset_delta != header.record_count - 1 {
        return Err(BatchError::Inconsistent {
            reason: "last_offset_delta is not record_count - 1",
        });
    }
    if header.producer_id != NO_PRODUCER_ID
        && (header.producer_id < 0 || header.producer_epoch < 0 || header.base_sequence < 0)
    {
        return Err(BatchError::Inconsistent {
            reason: "an idempotent batch needs a producer id, epoch and base sequence >= 0",
        });
    }
    let max_timestamp = BatchView {
        header,
        bytes: batch,
    }
    .validate_records()?;
    if max_timestamp != header.max_timestamp {
        return Err(BatchError::Inconsistent {
            reason: "max_timestamp is not the largest record timestamp",
        });
    }
    Ok(header)
}

fn check_attributes(attributes: u16) -> Result<(), BatchError> {
    if attributes & RESERVED_ATTRIBUTE_BITS != 0 {
        return Err(BatchError::InvalidAttributes { attributes });
    }
    match (attributes & COMPRESSION_MASK) as u8 {
        codec if codec == Compression::None as u8 => Ok(()),
        codec => Err(BatchError::UnsupportedCompression { codec }),
    }
}

/// The first [`STAMPED_PREFIX_BYTES`] of `batch` with the base offset and leader epoch
/// replaced. Writing this prefix followed by `batch[STAMPED_PREFIX_BYTES..]` stores the
/// stamped batch without copying or re-checksumming the rest.
///
/// # Panics
/// If `batch` is shorter than [`STAMPED_PREFIX_BYTES`]; callers validate first.
pub fn stamped_prefix(
    batch: &[u8],
    base_offset: u64,
    leader_epoch: u32,
) -> [u8; STAMPED_PREFIX_BYTES] {
    let mut prefix = [0u8; STAMPED_PREFIX_BYTES];
    prefix.copy_from_slice(&batch[..STAMPED_PREFIX_BYTES]);
    prefix[BASE_OFFSET_AT..BATCH_LENGTH_AT].copy_from_slice(&base_offset.to_be_bytes());
    prefix[LEADER_EPOCH_AT..STAMPED_PREFIX_BYTES].copy_from_slice(&leader_epoch.to_be_bytes());
    prefix
}

/// Overwrites the base offset and leader epoch of a batch in place.
///
/// # Panics
/// If `batch` is shorter than [`STAMPED_PREFIX_BYTES`].
pub fn stamp(batch: &mut [u8], base_offset: u64, leader_epoch: u32) {
    let prefix = stamped_prefix(batch, base_offset, leader_epoch);
    batch[..STAMPED_PREFIX_BYTES].copy_from_slice(&prefix);
}

/// Rewrites the producer id, epoch and base sequence of a finished batch and its CRC:
/// how a producer numbers a batch it sealed before it had an id, or renumbers one under a
/// new epoch.
///
/// # Panics
/// If `batch` is shorter than [`HEADER_BYTES`].
pub fn stamp_producer(batch: &mut [u8], producer_id: i64, producer_epoch: i16, base_sequence: i32) {
    batch[PRODUCER_ID_AT..PRODUCER_EPOCH_AT].copy_from_slice(&producer_id.to_be_bytes());
    batch[PRODUCER_EPOCH_AT..BASE_SEQUENCE_AT].copy_from_slice(&producer_epoch.to_be_bytes());
    batch[BASE_SEQUENCE_AT..RECORD_COUNT_AT].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = crc32fast::hash(&batch[CRC_START..]);
    batch[CRC_AT..CRC_START].copy_from_slice(&crc.to_be_bytes());
}

/// One batch inside a buffer, with its parsed header.
#[derive(Debug, Clone, Copy)]
pub struct BatchView<'a> {
    /// The parsed header.
    pub header: BatchHeader,
    /// The whole batch, header included.
    pub bytes: &'a [u8],
}

impl<'a> BatchView<'a> {
    /// A lazy iterator over the batch's records. Keys, values and headers borrow from the
    /// batch; nothing is copied or allocated.
    pub fn records(&self) -> Records<'a> {
        Records {
            header: self.header,
            buf: self.bytes,
            rest: &self.bytes[HEADER_BYTES..],
            index: 0,
        }
    }

    /// Walks every record, returning the largest timestamp.
    fn validate_records(&self) -> Result<i64, BatchError> {
        let mut records = self.records();
        let mut max_timestamp = i64::MIN;
        for record in records.by_ref() {
            let record = record?;
            if record.offset == self.header.base_offset
                && record.timestamp != self.header.first_timestamp
            {
                return Err(BatchError::Inconsistent {
                    reason: "first_timestamp is not the first record's timestamp",
                });
            }
            max_timestamp = max_timestamp.max(record.timestamp);
        }
        if !records.rest.is_empty() {
            return Err(BatchError::InvalidRecord {
                index: self.header.record_count,
                offset: self.bytes.len() - records.rest.len(),
                reason: "bytes after the last record",
            });
        }
        Ok(max_timestamp)
    }
}

/// Iterates over the batches laid end to end in a buffer (a fetch response, a segment).
/// Checks lengths and headers only, not CRCs; a partial batch at the end is an error.
#[derive(Debug, Clone)]
pub struct Batches<'a> {
    buf: &'a [u8],
}

impl<'a> Batches<'a> {
    /// Batches in `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }
}

impl<'a> Iterator for Batches<'a> {
    type Item = Result<BatchView<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        let result = BatchHeader::parse(self.buf).and_then(|header| {
            let length = header.total_len();
            if length < HEADER_BYTES {
                return Err(BatchError::InvalidLength {
                    length: length as u64,
                    min: HEADER_BYTES,
                    max: usize::MAX,
                });
            }
            let bytes = self.buf.get(..length).ok_or(BatchError::Truncated {
                need: length,
                have: self.buf.len(),
            })?;
            Ok(BatchView { header, bytes })
        });
        match &result {
            Ok(view) => self.buf = &self.buf[view.bytes.len()..],
            Err(_) => self.buf = &[],
        }
        Some(result)
    }
}

/// One record, borrowed from its batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// The record's offset: the batch's base offset plus its offset delta.
    pub offset: u64,
    /// The record's timestamp in ms: the batch's first timestamp plus its delta.
    pub timestamp: i64,
    /// The key, or `None` for a null key.
    pub key: Option<&'a [u8]>,
    /// The value, or `None` for a null value.
    pub value: Option<&'a [u8]>,
    /// The headers, decoded lazily.
    pub headers: Headers<'a>,
}

/// One record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// The header's name.
    pub key: &'a str,
    /// The header's value, or `None` for null.
    pub value: Option<&'a [u8]>,
}

/// Iterates over a record's headers. Created only over headers already checked by
/// [`Records`], so it yields plain values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headers<'a> {
    buf: &'a [u8],
    remaining: usize,
}

impl<'a> Iterator for Headers<'a> {
    type Item = Header<'a>;

    fn next(&mut self) -> Option<Header<'a>> {
        if self.remaining == 0 {
            return None;
        }
        let mut cursor = Cursor::new(self.buf, self.buf, 0);
        let header = cursor.header()?;
        self.buf = cursor.rest;
        self.remaining -= 1;
        Some(header)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for Headers<'_> {}

/// Iterates over the records of a batch, checking each as it goes.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    header: BatchHeader,
    /// The whole batch.
    buf: &'a [u8],
    /// The records not yet read.
    rest: &'a [u8],
    index: u32,
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.index >= self.header.record_count {
            return None;
        }
        let mut cursor = Cursor::new(self.buf, self.rest, self.index);
        let result = cursor.record(&self.header);
        match result {
            Ok(_) => {
                self.rest = cursor.rest;
                self.index += 1;
            }
            Err(_) => self.index = self.header.record_count,
        }
        Some(result)
    }
}

/// Bounds-checked reading of a batch's records. Every record a broker accepts and a
/// consumer returns goes through here, so the field readers return `Option` (two
/// registers) and leave the reason of a failure in `failure`: a `Result` with the error
/// inline is returned through memory, field by field. Fields are read off the front of
/// `rest`, a slice of `buf`, so a read checks only the length left.
struct Cursor<'a> {
    /// The whole batch (or header run); error offsets count from its start.
    buf: &'a [u8],
    /// What is left to read: the current record's unread bytes while inside one.
    rest: &'a [u8],
    index: u32,
    /// Why reading failed, and where.
    failure: (&'static str, usize),
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8], rest: &'a [u8], index: u32) -> Self {
        Self {
            buf,
            rest,
            index,
            failure: ("", 0),
        }
    }

    /// Where the next read starts, from the start of `buf`.
    fn position(&self) -> usize {
        self.rest.as_ptr().addr() - self.buf.as_ptr().addr()
    }

    /// Records why reading failed; returns `None` for `?`.
    #[cold]
    fn fail<T>(&mut self, reason: &'static str) -> Option<T> {
        self.failure = (reason, self.position());
        None
    }

    /// The error of the failure recorded last.
    fn error(&self) -> BatchError {
        BatchError::InvalidRecord {
            index: self.index,
            offset: self.failure.1,
            reason: self.failure.0,
        }
    }

    #[inline]
    fn varint(&mut self) -> Option<i64> {
        match varint::take(&mut self.rest) {
            Some(value) => Some(value),
            None => self.fail("truncated or overlong varint"),
        }
    }

    /// A length, or `Some(None)` for -1 if `nullable`.
    #[inline]
    fn length(&mut self, nullable: bool) -> Option<Option<usize>> {
        match self.varint()? {
            -1 if nullable => Some(None),
            length if length >= 0 => Some(Some(length as usize)),
            _ => self.fail("negative length"),
        }
    }

    #[inline]
    fn take(&mut self, count: usize) -> Option<&'a [u8]> {
        let Some((bytes, rest)) = self.rest.split_at_checked(count) else {
            return self.fail("field runs past the record");
        };
        self.rest = rest;
        Some(bytes)
    }

    #[inline]
    fn nullable_bytes(&mut self) -> Option<Option<&'a [u8]>> {
        match self.length(true)? {
            None => Some(None),
            Some(length) => self.take(length).map(Some),
        }
    }

    fn header(&mut self) -> Option<Header<'a>> {
        let key_length = self.length(false)?.unwrap_or_default();
        let key = self.take(key_length)?;
        let Ok(key) = std::str::from_utf8(key) else {
            return self.fail("header key is not UTF-8");
        };
        let value = self.nullable_bytes()?;
        Some(Header { key, value })
    }

    fn record(&mut self, batch: &BatchHeader) -> Result<Record<'a>, BatchError> {
        self.record_within(batch).ok_or_else(|| self.error())
    }

    fn record_within(&mut self, batch: &BatchHeader) -> Option<Record<'a>> {
        let length = self.length(false)?.unwrap_or_default();
        let Some((record, after)) = self.rest.split_at_checked(length) else {
            return self.fail("record length runs past the batch");
        };
        // Parse within the record's own bounds so a field cannot read into the next one.
        self.rest = record;
        let record = self.record_body(batch)?;
        if !self.rest.is_empty() {
            return self.fail("record length disagrees with its fields");
        }
        self.rest = after;
        Some(record)
    }

    #[inline]
    fn record_body(&mut self, batch: &BatchHeader) -> Option<Record<'a>> {
        if self.take(1)? != [0] {
            return self.fail("record attributes are not zero");
        }
        let timestamp_delta = self.varint()?;
        let Some(timestamp) = batch.first_timestamp.checked_add(timestamp_delta) else {
            return self.fail("timestamp overflows");
        };
        if self.varint()? != i64::from(self.index) {
            return self.fail("offset delta is not the record's index");
        }
        let key = self.nullable_bytes()?;
        let value = self.nullable_bytes()?;
        let header_count = self.length(false)?.unwrap_or_default();
        let headers_start = self.rest;
        for _ in 0..header_count {
            self.header()?;
        }
        let headers = Headers {
            buf: &headers_start[..headers_start.len() - self.rest.len()],
            remaining: header_count,
        };
        Some(Record {
            offset: batch.base_offset.wrapping_add(u64::from(self.index)),
            timestamp,
            key,
            value,
            headers,
        })
    }
}

/// Encodes records into one batch. Owns its buffer; not thread-safe.
///
/// ```
/// use strata_protocol::batch::{self, BatchBuilder, Header};
///
/// let mut builder = BatchBuilder::new();
/// builder.push(1_700_000_000_000, Some(b"user-7"), Some(b"clicked"), &[Header { key: "trace", value: Some(b"a1") }]);
/// builder.push(1_700_000_000_003, None, Some(b"viewed"), &[]);
/// let bytes = builder.finish();
/// let header = batch::validate(&bytes, 1 << 20).unwrap();
/// assert_eq!(header.record_count, 2);
/// ```
#[derive(Debug)]
pub struct BatchBuilder {
    buf: BytesMut,
    /// The CRC of the records in `buf[HEADER_BYTES..hashed_to]`, taken a step at a time
    /// as they are pushed, by the thread that just wrote them and while they are still in
    /// its cache. A producer finishes a batch on another thread, long after the first of
    /// its 1 MiB was written (benchmarks.md, "Thirteenth round").
    records_crc: crc32fast::Hasher,
    hashed_to: usize,
    record_count: u32,
    first_timestamp: i64,
    max_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchBuilder {
    /// An empty batch without producer id.
    pub fn new() -> Self {
        Self::with_capacity(HEADER_BYTES + 256)
    }

    /// An empty batch whose buffer can hold `capacity` bytes before growing.
    pub fn with_capacity(capacity: usize) -> Self {
        let mut buf = BytesMut::with_capacity(capacity.max(HEADER_BYTES));
        buf.put_bytes(0, HEADER_BYTES);
        Self {
            buf,
            records_crc: crc32fast::Hasher::new(),
            hashed_to: HEADER_BYTES,
            record_count: 0,
            first_timestamp: 0,
            max_timestamp: i64::MIN,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
        }
    }

    /// Stamps the batch with an idempotent producer's id, epoch and first sequence.
    pub fn producer(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
    ) -> &mut Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Records pushed so far.
    pub fn record_count(&self) -> u32 {
        self.record_count
    }

    /// Whether no record was pushed.
    pub fn is_empty(&self) -> bool {
        self.record_count == 0
    }

    /// The batch's size in bytes if finished now.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// How many bytes [`push`](Self::push) would add for this record.
    pub fn record_len(
        &self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header<'_>],
    ) -> usize {
        self.encode_fields(timestamp, key, value, headers)
            .record_len
    }

    fn timestamp_delta(&self, timestamp: i64) -> i64 {
        if self.record_count == 0 {
            0
        } else {
            timestamp
                .checked_sub(self.first_timestamp)
                .expect("record timestamps within i64 range of each other")
        }
    }

    /// Encodes the record's varints up to its value length, and sizes the record.
    #[inline]
    fn encode_fields(
        &self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header<'_>],
    ) -> RecordFields {
        fn payload_len(bytes: Option<&[u8]>) -> usize {
            bytes.map_or(0, <[u8]>::len)
        }
        let mut fields = Fields::new();
        fields.put_byte(0);
        varint::put(&mut fields, self.timestamp_delta(timestamp));
        varint::put(&mut fields, i64::from(self.record_count));
        fields.put_nullable_len(key);
        let key_at = fields.len;
        fields.put_nullable_len(value);
        let headers_len = if headers.is_empty() {
            1
        } else {
            headers_len(headers)
        };
        let body_len =
            fields.len - Fields::BODY_START + payload_len(key) + payload_len(value) + headers_len;
        let start = fields.put_length(body_len);
        RecordFields {
            record_len: Fields::BODY_START - start + body_len,
            fields,
            start,
            key_at,
        }
    }

    /// Appends one record.
    ///
    /// # Panics
    /// If the batch already holds `u32::MAX` records, or `timestamp` is more than the
    /// `i64` range away from the first record's.
    pub fn push(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header<'_>],
    ) {
        let fields = self.encode_fields(timestamp, key, value, headers);
        self.push_encoded(&fields, timestamp, key, value, headers);
    }

    /// Appends one record if the batch stays within `len_max` bytes ([`len`](Self::len)
    /// afterwards); returns whether it did. Sizes the record once, where
    /// [`record_len`](Self::record_len) and then `push` would size it twice.
    ///
    /// # Panics
    /// As [`push`](Self::push).
    pub fn push_within(
        &mut self,
        len_max: usize,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header<'_>],
    ) -> bool {
        let fields = self.encode_fields(timestamp, key, value, headers);
        if self.buf.len() + fields.record_len > len_max {
            return false;
        }
        self.push_encoded(&fields, timestamp, key, value, headers);
        true
    }

    /// Copies the record into the batch: its varints from the stack in one piece (two
    /// with a key, which sits between them), not a capacity check per byte.
    fn push_encoded(
        &mut self,
        fields: &RecordFields,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header<'_>],
    ) {
        assert!(self.record_count < u32::MAX, "batch record count overflow");
        let out = &mut self.buf;
        out.reserve(fields.record_len);
        let encoded = &fields.fields.bytes;
        match key {
            None => out.extend_from_slice(&encoded[fields.start..fields.fields.len]),
            Some(key) => {
                out.extend_from_slice(&encoded[fields.start..fields.key_at]);
                out.extend_from_slice(key);
                out.extend_from_slice(&encoded[fields.key_at..fields.fields.len]);
            }
        }
        if let Some(value) = value {
            out.extend_from_slice(value);
        }
        varint::put(out, headers.len() as i64);
        for header in headers {
            varint::put(out, header.key.len() as i64);
            out.extend_from_slice(header.key.as_bytes());
            varint::put(out, header.value.map_or(-1, |value| value.len() as i64));
            if let Some(value) = header.value {
                out.extend_from_slice(value);
            }
        }
        if self.record_count == 0 {
            self.first_timestamp = timestamp;
        }
        self.max_timestamp = self.max_timestamp.max(timestamp);
        self.record_count += 1;
        if self.buf.len() - self.hashed_to >= CRC_STEP_BYTES {
            self.records_crc.update(&self.buf[self.hashed_to..]);
            self.hashed_to = self.buf.len();
        }
    }

    /// Writes the header and CRC and returns the batch, with base offset 0 and leader
    /// epoch 0 (the broker stamps both).
    ///
    /// # Panics
    /// If no record was pushed, or the batch exceeds 4 GiB.
    pub fn finish(self) -> Bytes {
        assert!(self.record_count > 0, "a batch needs at least one record");
        let mut buf = self.buf;
        let batch_length =
            u32::try_from(buf.len() - LOG_OVERHEAD_BYTES).expect("batch under 4 GiB");
        let mut header = &mut buf[..HEADER_BYTES];
        header.put_u64(0);
        header.put_u32(batch_length);
        header.put_u32(0);
        header.put_u8(MAGIC);
        header.put_u32(0);
        header.put_u16(Compression::None as u16);
        header.put_u32(self.record_count - 1);
        header.put_i64(self.first_timestamp);
        header.put_i64(self.max_timestamp);
        header.put_i64(self.producer_id);
        header.put_i16(self.producer_epoch);
        header.put_i32(self.base_sequence);
        header.put_u32(self.record_count);
        let mut records_crc = self.records_crc;
        records_crc.update(&buf[self.hashed_to..]);
        let mut crc = crc32fast::Hasher::new();
        crc.update(&buf[CRC_START..HEADER_BYTES]);
        crc.combine(&records_crc);
        buf[CRC_AT..CRC_START].copy_from_slice(&crc.finalize().to_be_bytes());
        buf.freeze()
    }
}

/// Records a [`BatchBuilder`] takes into its CRC at a time: small enough to still be in
/// the first-level cache when hashed, large enough for the CRC's vector loop.
const CRC_STEP_BYTES: usize = 16 << 10;

/// Bytes a record's headers take, their count included.
fn headers_len(headers: &[Header<'_>]) -> usize {
    let nullable_len = |bytes: Option<&[u8]>| {
        bytes.map_or(1, |bytes| {
            varint::encoded_len(bytes.len() as i64) + bytes.len()
        })
    };
    varint::encoded_len(headers.len() as i64)
        + headers
            .iter()
            .map(|header| {
                varint::encoded_len(header.key.len() as i64)
                    + header.key.len()
                    + nullable_len(header.value)
            })
            .sum::<usize>()
}

/// A record's varints up to its value length, encoded on the stack, and its size.
#[derive(Debug)]
struct RecordFields {
    fields: Fields,
    /// Where the record's length starts in `fields`.
    start: usize,
    /// Where the value's length starts: the key's bytes go before it.
    key_at: usize,
    /// Bytes the whole record takes in the batch.
    record_len: usize,
}

/// A small stack buffer for varints.
#[derive(Debug)]
struct Fields {
    bytes: [u8; Fields::CAPACITY],
    len: usize,
}

impl Fields {
    /// Room for the record's length, which is encoded last, before the body's fields.
    const BODY_START: usize = varint::VARLONG_BYTES_MAX;
    /// The length, then the attributes byte and four varints.
    const CAPACITY: usize = Self::BODY_START + 1 + 4 * varint::VARLONG_BYTES_MAX;

    /// Empty, with room for the length before the body.
    fn new() -> Self {
        Self {
            bytes: [0; Self::CAPACITY],
            len: Self::BODY_START,
        }
    }

    /// Appends a key's or value's length, or -1 for null.
    fn put_nullable_len(&mut self, bytes: Option<&[u8]>) {
        varint::put(self, bytes.map_or(-1, |bytes| bytes.len() as i64));
    }

    /// Encodes the body's length just before [`BODY_START`](Self::BODY_START); returns
    /// where it starts.
    fn put_length(&mut self, body_len: usize) -> usize {
        let end = self.len;
        let start = Self::BODY_START - varint::encoded_len(body_len as i64);
        self.len = start;
        varint::put(self, body_len as i64);
        debug_assert_eq!(self.len, Self::BODY_START);
        self.len = end;
        start
    }
}

impl Sink for Fields {
    fn put_slice(&mut self, bytes: &[u8]) {
        self.bytes[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    fn put_byte(&mut self, byte: u8) {
        self.bytes[self.len] = byte;
        self.len += 1;
    }

    fn written(&self) -> usize {
        self.len
    }

    fn patch_u32(&mut self, position: usize, value: u32) {
        self.bytes[position..position + 4].copy_from_slice(&value.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn stamp_producer_renumbers_and_keeps_the_batch_valid() {
        let mut builder = BatchBuilder::new();
        builder.push(5, None, Some(b"v"), &[]);
        builder.push(6, None, Some(b"w"), &[]);
        let mut bytes = builder.finish().to_vec();
        stamp_producer(&mut bytes, 7, 2, 40);
        let header = validate(&bytes, 1 << 20).unwrap();
        assert_eq!(
            (
                header.producer_id,
                header.producer_epoch,
                header.base_sequence
            ),
            (7, 2, 40)
        );
        assert_eq!(header.record_count, 2);
    }

    #[derive(Debug, Clone)]
    struct TestRecord {
        timestamp: i64,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        headers: Vec<(String, Option<Vec<u8>>)>,
    }

    fn bytes_strategy() -> impl Strategy<Value = Option<Vec<u8>>> {
        prop_oneof![
            Just(None),
            Just(Some(Vec::new())),
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(Some),
            proptest::collection::vec(any::<u8>(), 1000..5000).prop_map(Some),
        ]
    }

    fn record_strategy() -> impl Strategy<Value = TestRecord> {
        (
            -1_000_000i64..4_000_000_000_000,
            bytes_strategy(),
            bytes_strategy(),
            proptest::collection::vec(("[a-z\u{e9}]{0,8}", bytes_strategy()), 0..4),
        )
            .prop_map(|(timestamp, key, value, headers)| TestRecord {
                timestamp,
                key,
                value,
                headers,
            })
    }

    fn build(records: &[TestRecord]) -> Bytes {
        let mut builder = BatchBuilder::new();
        for record in records {
            let headers: Vec<Header<'_>> = record
                .headers
                .iter()
                .map(|(key, value)| Header {
                    key,
                    value: value.as_deref(),
                })
                .collect();
            let before = builder.len();
            let expected = builder.record_len(
                record.timestamp,
                record.key.as_deref(),
                record.value.as_deref(),
                &headers,
            );
            let (timestamp, key, value) = (
                record.timestamp,
                record.key.as_deref(),
                record.value.as_deref(),
            );
            if builder.record_count().is_multiple_of(2) {
                builder.push(timestamp, key, value, &headers);
            } else {
                let just_short = before + expected - 1;
                assert!(!builder.push_within(just_short, timestamp, key, value, &headers));
                assert_eq!(
                    builder.len(),
                    before,
                    "a record that does not fit adds nothing"
                );
                assert!(builder.push_within(before + expected, timestamp, key, value, &headers));
            }
            assert_eq!(builder.len() - before, expected);
        }
        builder.finish()
    }

    proptest! {
        #[test]
        fn batches_round_trip(records in proptest::collection::vec(record_strategy(), 1..20), base in 0u64..1 << 60, epoch: u32) {
            let mut bytes = build(&records).to_vec();
            stamp(&mut bytes, base, epoch);
            let header = validate(&bytes, usize::MAX).unwrap();
            prop_assert_eq!(header.base_offset, base);
            prop_assert_eq!(header.leader_epoch, epoch);
            prop_assert_eq!(header.record_count as usize, records.len());
            prop_assert_eq!(header.max_timestamp, records.iter().map(|r| r.timestamp).max().unwrap());
            let view = BatchView { header, bytes: &bytes };
            let decoded: Vec<Record<'_>> = view.records().collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(decoded.len(), records.len());
            for (index, (record, expected)) in decoded.iter().zip(&records).enumerate() {
                prop_assert_eq!(record.offset, base + index as u64);
                prop_assert_eq!(record.timestamp, expected.timestamp);
                prop_assert_eq!(record.key, expected.key.as_deref());
                prop_assert_eq!(record.value, expected.value.as_deref());
                let headers: Vec<(String, Option<Vec<u8>>)> =
                    record.headers.map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec))).collect();
                prop_assert_eq!(&headers, &expected.headers);
            }
        }

        #[test]
        fn any_bit_flip_in_crc_covered_bytes_fails(records in proptest::collection::vec(record_strategy(), 1..4), seed: u64) {
            let bytes = build(&records);
            let covered_bits = (bytes.len() - CRC_START) * 8;
            let bit = CRC_START * 8 + (seed as usize % covered_bits);
            let mut flipped = bytes.to_vec();
            flipped[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(verify_crc(&flipped).is_err());
            prop_assert!(validate(&flipped, usize::MAX).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = validate(&bytes, usize::MAX);
            for view in Batches::new(&bytes).flatten() {
                for record in view.records().flatten() {
                    record.headers.for_each(drop);
                }
            }
        }

        #[test]
        fn corrupted_records_with_fixed_crc_never_panic(records in proptest::collection::vec(record_strategy(), 1..4), position: usize, byte: u8) {
            // Corrupt a record byte and recompute the CRC, so the record walk itself must
            // catch (or tolerate) the damage.
            let mut bytes = build(&records).to_vec();
            let at = HEADER_BYTES + position % (bytes.len() - HEADER_BYTES);
            bytes[at] = byte;
            let crc = crc32fast::hash(&bytes[CRC_START..]);
            bytes[CRC_AT..CRC_START].copy_from_slice(&crc.to_be_bytes());
            let _ = validate(&bytes, usize::MAX);
        }
    }

    fn sample() -> Vec<u8> {
        build(&[
            TestRecord {
                timestamp: 10,
                key: Some(b"k".to_vec()),
                value: Some(b"v".to_vec()),
                headers: vec![],
            },
            TestRecord {
                timestamp: 12,
                key: None,
                value: Some(b"w".to_vec()),
                headers: vec![],
            },
        ])
        .to_vec()
    }

    #[test]
    fn every_bit_of_a_small_batch_is_protected() {
        let bytes = sample();
        for bit in CRC_START * 8..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(
                matches!(verify_crc(&flipped), Err(BatchError::CrcMismatch { .. })),
                "bit {bit}"
            );
        }
    }

    #[test]
    fn a_batch_hashed_in_steps_has_the_crc_of_its_bytes() {
        // Records of 1000 to 1999 bytes: each step ends with a record, at no fixed place,
        // and the batch's last records are taken only by `finish`.
        let mut builder = BatchBuilder::new();
        let mut pushed = 0;
        while builder.len() < 5 * CRC_STEP_BYTES + 100 {
            let value = vec![pushed as u8; 1000 + (pushed * 337) % 1000];
            builder.push(1000 + pushed as i64, None, Some(&value), &[]);
            pushed += 1;
        }
        builder.producer(7, 1, 40);
        let bytes = builder.finish();
        let header = verify_crc(&bytes).expect("the CRC matches");
        assert_eq!(header.crc, crc32fast::hash(&bytes[CRC_START..]));
        assert_eq!(header.record_count as usize, pushed);
        assert_eq!(header.producer_id, 7);
    }

    #[test]
    fn the_worked_example_in_protocol_md_is_exact() {
        let mut builder = BatchBuilder::new();
        builder.push(1000, Some(b"k"), Some(b"v"), &[]);
        // The hexdump of docs/protocol.md section 6.6, verbatim.
        let expected = "00 00 00 00 00 00 00 00 00 00 00 3a 00 00 00 00
                        01 dd e4 6a 3f 00 00 00 00 00 00 00 00 00 00 00
                        00 03 e8 00 00 00 00 00 00 03 e8 ff ff ff ff ff
                        ff ff ff ff ff ff ff ff ff 00 00 00 01 10 00 00
                        00 02 6b 02 76 00";
        let hex: String = builder
            .finish()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        assert_eq!(hex, expected.split_whitespace().collect::<String>());
    }

    #[test]
    fn stamping_keeps_the_crc_valid() {
        let mut bytes = sample();
        stamp(&mut bytes, 1 << 40, 7);
        let header = verify_crc(&bytes).unwrap();
        assert_eq!((header.base_offset, header.leader_epoch), (1 << 40, 7));
    }

    #[test]
    fn every_truncation_is_rejected() {
        let bytes = sample();
        for length in 0..bytes.len() {
            assert!(
                validate(&bytes[..length], usize::MAX).is_err(),
                "length {length}"
            );
        }
    }

    #[test]
    fn oversized_batches_are_rejected() {
        let bytes = sample();
        assert!(matches!(
            validate(&bytes, bytes.len() - 1),
            Err(BatchError::InvalidLength { .. })
        ));
        assert!(validate(&bytes, bytes.len()).is_ok());
    }

    #[test]
    fn header_inconsistencies_are_named() {
        fn rewrite(mut bytes: Vec<u8>, at: usize, value: &[u8]) -> Vec<u8> {
            bytes[at..at + value.len()].copy_from_slice(value);
            let crc = crc32fast::hash(&bytes[CRC_START..]);
            bytes[CRC_AT..CRC_START].copy_from_slice(&crc.to_be_bytes());
            bytes
        }
        let bytes = sample();
        let cases: [(usize, &[u8], &str); 5] = [
            (RECORD_COUNT_AT, &0u32.to_be_bytes(), "zero records"),
            (RECORD_COUNT_AT, &3u32.to_be_bytes(), "count above records"),
            (
                LAST_OFFSET_DELTA_AT,
                &5u32.to_be_bytes(),
                "bad last offset delta",
            ),
            (MAX_TIMESTAMP_AT, &99i64.to_be_bytes(), "bad max timestamp"),
            (
                ATTRIBUTES_AT,
                &0x10u16.to_be_bytes(),
                "reserved attribute bit",
            ),
        ];
        for (at, value, name) in cases {
            assert!(
                validate(&rewrite(bytes.clone(), at, value), usize::MAX).is_err(),
                "{name}"
            );
        }
        let lz4 = rewrite(bytes.clone(), ATTRIBUTES_AT, &3u16.to_be_bytes());
        assert_eq!(
            validate(&lz4, usize::MAX),
            Err(BatchError::UnsupportedCompression { codec: 3 })
        );
        let mut wrong_magic = bytes;
        wrong_magic[MAGIC_AT] = 9;
        assert_eq!(
            validate(&wrong_magic, usize::MAX),
            Err(BatchError::InvalidMagic {
                magic: 9,
                expected: MAGIC
            })
        );
    }

    #[test]
    fn record_errors_name_the_record_the_reason_and_the_offset() {
        // The first record: length, attributes, timestamp delta, offset delta, key
        // length 1, "k", value length 1, "v", header count.
        let first = HEADER_BYTES;
        let cases = [
            (first + 1, 1, first + 2, "record attributes are not zero"),
            (
                first + 3,
                2,
                first + 4,
                "offset delta is not the record's index",
            ),
            (first + 4, 3, first + 5, "negative length"),
            (first, 0x7E, first + 1, "record length runs past the batch"),
        ];
        for (at, byte, offset, reason) in cases {
            let mut bytes = sample();
            bytes[at] = byte;
            let crc = crc32fast::hash(&bytes[CRC_START..]);
            bytes[CRC_AT..CRC_START].copy_from_slice(&crc.to_be_bytes());
            assert_eq!(
                validate(&bytes, usize::MAX),
                Err(BatchError::InvalidRecord {
                    index: 0,
                    offset,
                    reason
                }),
                "{reason}"
            );
        }
    }

    #[test]
    fn batches_iterates_back_to_back_batches() {
        let mut log = Vec::new();
        for base in [0u64, 2, 4] {
            let mut batch = sample();
            stamp(&mut batch, base, 1);
            log.extend_from_slice(&batch);
        }
        let bases: Vec<u64> = Batches::new(&log)
            .map(|batch| batch.unwrap().header.base_offset)
            .collect();
        assert_eq!(bases, [0, 2, 4]);
        let partial = &log[..log.len() - 1];
        assert!(Batches::new(partial).last().unwrap().is_err());
    }
}
