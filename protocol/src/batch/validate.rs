//! Checking a batch: its CRC alone when reading back from disk, everything when a
//! producer sends it.

use super::header::{COMPRESSION_MASK, RESERVED_ATTRIBUTE_BITS};
use super::{
    BatchHeader, BatchView, CRC_START, Compression, HEADER_BYTES, LOG_OVERHEAD_BYTES, MAGIC,
    NO_PRODUCER_ID, RECORD_BYTES_MIN, total_len,
};
use crate::error::BatchError;

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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::batch::Batches;
    use crate::batch::header::{
        ATTRIBUTES_AT, CRC_AT, LAST_OFFSET_DELTA_AT, MAGIC_AT, MAX_TIMESTAMP_AT, RECORD_COUNT_AT,
    };
    use crate::batch::samples::{build, record_strategy, sample};

    proptest! {
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
}
