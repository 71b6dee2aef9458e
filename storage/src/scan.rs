//! Walking the batches laid end to end in a segment: the one loop that recovery, index
//! rebuilds and truncation share. Pure: works on a byte slice (a mapping of the file).

use strata_protocol::batch::{self, BatchHeader, HEADER_BYTES, RECORD_BYTES_MIN};

/// How much of the scanned range holds valid, contiguous batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Position just after the last valid batch.
    pub end_position: usize,
    /// Offset the next batch must have.
    pub next_offset: u64,
    /// Why scanning stopped before the end of the data (at `end_position`), if it did.
    pub stopped: Option<String>,
}

/// Whether to recompute each batch's CRC (recovery) or trust headers only (bytes this
/// process wrote and already validated, e.g. when truncating).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Verify CRCs.
    Crc,
    /// Headers and lengths only.
    HeadersOnly,
}

/// Walks `data[start..]`, expecting the first batch at `expected_offset`, and calls
/// `on_batch(position, header)` for each batch that is whole, valid and contiguous.
/// Stops at the first that is not, or at the end of `data`.
pub fn scan(
    data: &[u8],
    start: usize,
    expected_offset: u64,
    check: Check,
    mut on_batch: impl FnMut(usize, &BatchHeader),
) -> Scan {
    let mut position = start;
    let mut next_offset = expected_offset;
    while position < data.len() {
        let rest = data.get(position..).unwrap_or_default();
        match next_batch(rest, next_offset, check) {
            Ok(header) => {
                on_batch(position, &header);
                position += header.total_len();
                next_offset = header.next_offset();
            }
            Err(reason) => {
                return Scan {
                    end_position: position,
                    next_offset,
                    stopped: Some(reason),
                };
            }
        }
    }
    Scan {
        end_position: position,
        next_offset,
        stopped: None,
    }
}

/// The header of the valid batch at the start of `rest`.
fn next_batch(rest: &[u8], expected_offset: u64, check: Check) -> Result<BatchHeader, String> {
    let length = batch::total_len(rest).ok_or("torn batch header")?;
    if length < HEADER_BYTES + RECORD_BYTES_MIN {
        return Err(format!("batch length {length} is below the minimum"));
    }
    let bytes = rest.get(..length).ok_or("torn batch")?;
    let header = match check {
        Check::Crc => batch::verify_crc(bytes).map_err(|error| error.to_string())?,
        Check::HeadersOnly => BatchHeader::parse(bytes).map_err(|error| error.to_string())?,
    };
    if header.base_offset != expected_offset {
        return Err(format!(
            "batch base offset {} is not the expected {expected_offset}",
            header.base_offset
        ));
    }
    if header.record_count == 0 || header.last_offset_delta != header.record_count - 1 {
        return Err("record count disagrees with last offset delta".to_owned());
    }
    if header
        .base_offset
        .checked_add(u64::from(header.record_count))
        .is_none()
    {
        return Err("offsets overflow".to_owned());
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_protocol::batch::{BatchBuilder, stamp};

    fn segment(bases: &[u64]) -> Vec<u8> {
        let mut out = Vec::new();
        for &base in bases {
            let mut builder = BatchBuilder::new();
            builder.push(10, None, Some(b"a"), &[]);
            builder.push(11, None, Some(b"b"), &[]);
            let mut bytes = builder.finish().to_vec();
            stamp(&mut bytes, base, 3);
            out.extend_from_slice(&bytes);
        }
        out
    }

    #[test]
    fn scans_contiguous_batches() {
        let data = segment(&[5, 7, 9]);
        let mut seen = Vec::new();
        let scan = scan(&data, 0, 5, Check::Crc, |position, header| {
            seen.push((position, header.base_offset));
        });
        assert_eq!(scan.stopped, None);
        assert_eq!(scan.end_position, data.len());
        assert_eq!(scan.next_offset, 11);
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn stops_at_an_offset_gap() {
        let data = segment(&[5, 8]);
        let scan = scan(&data, 0, 5, Check::HeadersOnly, |_, _| {});
        assert_eq!(scan.end_position, data.len() / 2);
        assert_eq!(scan.next_offset, 7);
        assert!(scan.stopped.is_some());
    }

    #[test]
    fn stops_at_a_torn_tail_and_a_flipped_payload_bit() {
        let data = segment(&[0, 2]);
        let half = data.len() / 2;
        for cut in half..data.len() {
            let scan = scan(&data[..cut], 0, 0, Check::Crc, |_, _| {});
            assert_eq!(scan.end_position, half, "cut {cut}");
        }
        let mut flipped = data.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(
            scan(&flipped, 0, 0, Check::Crc, |_, _| {}).end_position,
            half
        );
        assert_eq!(
            scan(&flipped, 0, 0, Check::HeadersOnly, |_, _| {}).end_position,
            data.len()
        );
    }
}
