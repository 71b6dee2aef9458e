//! Rewriting the fields of a finished batch: the broker's base offset and leader epoch,
//! which sit outside the CRC, and a producer's id, epoch and sequence, which do not.

use super::header::{
    BASE_OFFSET_AT, BASE_SEQUENCE_AT, BATCH_LENGTH_AT, CRC_AT, LEADER_EPOCH_AT, PRODUCER_EPOCH_AT,
    PRODUCER_ID_AT, RECORD_COUNT_AT,
};
use super::{CRC_START, STAMPED_PREFIX_BYTES};

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
/// If `batch` is shorter than [`HEADER_BYTES`](super::HEADER_BYTES).
pub fn stamp_producer(batch: &mut [u8], producer_id: i64, producer_epoch: i16, base_sequence: i32) {
    batch[PRODUCER_ID_AT..PRODUCER_EPOCH_AT].copy_from_slice(&producer_id.to_be_bytes());
    batch[PRODUCER_EPOCH_AT..BASE_SEQUENCE_AT].copy_from_slice(&producer_epoch.to_be_bytes());
    batch[BASE_SEQUENCE_AT..RECORD_COUNT_AT].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = crc32fast::hash(&batch[CRC_START..]);
    batch[CRC_AT..CRC_START].copy_from_slice(&crc.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::samples::sample;
    use crate::batch::{BatchBuilder, validate, verify_crc};

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

    #[test]
    fn stamping_keeps_the_crc_valid() {
        let mut bytes = sample();
        stamp(&mut bytes, 1 << 40, 7);
        let header = verify_crc(&bytes).unwrap();
        assert_eq!((header.base_offset, header.leader_epoch), (1 << 40, 7));
    }
}
