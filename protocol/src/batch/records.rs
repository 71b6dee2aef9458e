//! Reading batches laid end to end and the records inside one, lazily and without
//! copying: every record a broker accepts and a consumer returns is decoded here.

use super::{BatchHeader, HEADER_BYTES};
use crate::error::BatchError;
use crate::wire::varint;

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
    pub(super) fn validate_records(&self) -> Result<i64, BatchError> {
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::batch::header::CRC_AT;
    use crate::batch::samples::{build, record_strategy, sample};
    use crate::batch::{CRC_START, stamp, validate};

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
