//! Encoding records into a batch, with its CRC taken as the records are pushed.

use bytes::{BufMut, Bytes, BytesMut};

use super::header::CRC_AT;
use super::{
    CRC_START, Compression, HEADER_BYTES, Header, LOG_OVERHEAD_BYTES, MAGIC, NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID, NO_SEQUENCE,
};
use crate::wire::{Sink, varint};

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
    /// its 1 MiB was written (docs/benchmarks.md#d-crc-in-steps).
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
    use crate::batch::verify_crc;

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
}
