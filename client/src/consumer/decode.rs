//! Decoding a fetched answer into records: small answers in the fetch task, big ones in
//! a task of their own, then into the buffer in fetch order. Each batch's CRC is checked;
//! keys, values and header values are slices of the answer's buffer.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::FutureExt;
use strata_protocol::batch::{self, Batches};
use tokio::task::{JoinError, JoinHandle};

use super::{Consumer, record_bytes};
use crate::error::{Error, Result};
use crate::record::{ConsumerRecord, Header, TopicPartition};

/// Answers up to this size are decoded in the fetch task: a task of their own would
/// cost more in wake-ups (tens of microseconds) than it saves.
const DECODE_INLINE_BYTES_MAX: usize = 64 << 10;

/// The decode of one answer: done in the fetch task (small answers) or running in a task
/// of its own.
#[derive(Debug)]
pub(super) enum Decode {
    Done(Option<Result<Vec<ConsumerRecord>>>),
    Running(JoinHandle<Result<Vec<ConsumerRecord>>>),
}

impl Decode {
    pub(super) fn start(
        topic: Arc<str>,
        partition: u32,
        fetch_offset: u64,
        records: Bytes,
    ) -> Self {
        if records.len() <= DECODE_INLINE_BYTES_MAX {
            return Self::Done(Some(decode_records(
                &topic,
                partition,
                fetch_offset,
                &records,
            )));
        }
        Self::Running(tokio::spawn(async move {
            decode_records(&topic, partition, fetch_offset, &records)
        }))
    }

    /// The records, once; `None` while the decode runs.
    fn try_take(&mut self) -> Option<Result<Vec<ConsumerRecord>>> {
        match self {
            Self::Done(done) => Some(done.take().expect("taken once")),
            Self::Running(task) => task.now_or_never().map(finished),
        }
    }

    /// The records, once the decode is done; cancel-safe.
    async fn take(&mut self) -> Result<Vec<ConsumerRecord>> {
        match self {
            Self::Done(done) => done.take().expect("taken once"),
            Self::Running(task) => finished(task.await),
        }
    }
}

impl Drop for Decode {
    /// A decode nobody will read (the partition was sought, reset or taken away) stops.
    fn drop(&mut self) {
        if let Self::Running(task) = self {
            task.abort();
        }
    }
}

fn finished(
    joined: std::result::Result<Result<Vec<ConsumerRecord>>, JoinError>,
) -> Result<Vec<ConsumerRecord>> {
    joined.expect("decode tasks do not panic")
}

/// Records of one fetched partition on their way to the buffer.
#[derive(Debug)]
pub(super) struct Decoding {
    pub(super) tp: TopicPartition,
    pub(super) epoch: u64,
    pub(super) fetch_offset: u64,
    /// Counted against `prefetch_bytes_max` until decoded.
    pub(super) bytes: usize,
    pub(super) records: Decode,
}

impl Consumer {
    /// Drops (and stops) the decodes of partitions no longer fetched at their epoch.
    pub(super) fn drop_stale_decodes(&mut self) {
        let partitions = &self.partitions;
        self.decoding.retain(|decoding| {
            partitions
                .get(&decoding.tp)
                .is_some_and(|state| state.epoch == decoding.epoch)
        });
    }

    /// Moves the records of finished decodes into the buffer, in fetch order: it stops
    /// at the first decode still running.
    pub(super) fn take_decoded(&mut self) {
        while let Some(decoding) = self.decoding.front_mut() {
            let Some(decoded) = decoding.records.try_take() else {
                return;
            };
            let decoding = self.decoding.pop_front().expect("looked at the first");
            self.buffer_decoded(&decoding, decoded);
        }
    }

    /// Buffers a partition's decoded records, unless the partition was sought or
    /// unassigned meanwhile. A corrupt answer sends the partition back to fetch from
    /// where that answer started, under a new epoch, so that fetches and decodes
    /// already past it are dropped.
    pub(super) fn buffer_decoded(
        &mut self,
        decoding: &Decoding,
        decoded: Result<Vec<ConsumerRecord>>,
    ) {
        let Some(state) = self.partitions.get_mut(&decoding.tp) else {
            return;
        };
        if state.epoch != decoding.epoch {
            return;
        }
        match decoded {
            Ok(records) => {
                self.buffered_bytes += records.iter().map(record_bytes).sum::<usize>();
                if !records.is_empty() {
                    self.buffer.push_back(records.into_iter());
                }
            }
            Err(error) => {
                self.epochs += 1;
                state.epoch = self.epochs;
                state.fetch_offset = decoding.fetch_offset;
                state.last_fetched_epoch = None;
                self.drop_stale_decodes();
                self.on_partition_error(&decoding.tp, error);
            }
        }
    }
}

/// The first decode in `decoding`; it must not be empty.
pub(super) async fn next_decoded(decoding: &mut VecDeque<Decoding>) -> Result<Vec<ConsumerRecord>> {
    let first = decoding.front_mut().expect("awaited only when not empty");
    first.records.take().await
}

fn corrupt_answer(topic: &str, partition: u32, reason: impl std::fmt::Display) -> Error {
    Error::Protocol {
        address: String::new(),
        reason: format!("{topic}-{partition}: {reason}"),
    }
}

/// Where the fetch after this answer starts: past its last batch, read from the batch
/// headers alone (their CRCs are checked by the decode that follows), and that batch's
/// leader epoch (`None` for an answer without batches). An answer that claims to end
/// past the broker's high watermark is corrupt.
pub(super) fn next_fetch_offset(
    topic: &str,
    partition: u32,
    fetch_offset: u64,
    high_watermark: u64,
    records: &[u8],
) -> Result<(u64, Option<u32>)> {
    let (next, last_epoch) =
        Batches::new(records).try_fold((fetch_offset, None), |(next, last_epoch), view| {
            let view = view.map_err(|error| corrupt_answer(topic, partition, error))?;
            let end = view.header.next_offset();
            Ok::<_, Error>(if end >= next {
                (end, Some(view.header.leader_epoch))
            } else {
                (next, last_epoch)
            })
        })?;
    if next > high_watermark.max(fetch_offset) {
        return Err(corrupt_answer(
            topic,
            partition,
            format!("batches end at offset {next}, past the high watermark {high_watermark}"),
        ));
    }
    Ok((next, last_epoch))
}

/// Decodes whole batches into records at or after `fetch_offset`, checking each CRC.
/// Keys, values and header values are slices of `records`.
fn decode_records(
    topic: &Arc<str>,
    partition: u32,
    fetch_offset: u64,
    records: &Bytes,
) -> Result<Vec<ConsumerRecord>> {
    let corrupt = |reason: String| corrupt_answer(topic, partition, reason);
    let mut out = Vec::new();
    for view in Batches::new(records) {
        let view = view.map_err(|error| corrupt(error.to_string()))?;
        batch::verify_crc(view.bytes).map_err(|error| corrupt(error.to_string()))?;
        // The next fetch started past `last_offset_delta`; the records must end there.
        if u64::from(view.header.last_offset_delta) + 1 != u64::from(view.header.record_count) {
            return Err(corrupt(format!(
                "batch at offset {} has {} records but a last offset delta of {}",
                view.header.base_offset, view.header.record_count, view.header.last_offset_delta
            )));
        }
        if view.header.last_offset() < fetch_offset {
            continue;
        }
        // The count is checked against the bytes: a record takes at least 7 of them.
        out.reserve((view.header.record_count as usize).min(view.bytes.len() / 7));
        for record in view.records() {
            let record = record.map_err(|error| corrupt(error.to_string()))?;
            if record.offset < fetch_offset {
                continue;
            }
            out.push(ConsumerRecord {
                topic: Arc::clone(topic),
                partition,
                offset: record.offset,
                timestamp: record.timestamp,
                key: record.key.map(|key| records.slice_ref(key)),
                value: record.value.map(|value| records.slice_ref(value)),
                headers: record
                    .headers
                    .map(|header| Header {
                        key: header.key.to_owned(),
                        value: header.value.map(|value| records.slice_ref(value)),
                    })
                    .collect(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use strata_protocol::batch::{BatchBuilder, Header as WireHeader, stamp};

    use super::*;
    use crate::consumer::tests::{batch_at, batch_of_epoch};

    #[test]
    fn decoded_records_share_the_fetch_buffer_and_skip_below_fetch_offset() {
        let mut builder = BatchBuilder::new();
        for index in 0..4u8 {
            builder.push(
                1_000 + i64::from(index),
                Some(&[index]),
                Some(b"value"),
                &[WireHeader {
                    key: "h",
                    value: Some(b"v"),
                }],
            );
        }
        let mut batch = builder.finish().to_vec();
        stamp(&mut batch, 10, 0);
        let records = Bytes::from(batch);
        let topic: Arc<str> = Arc::from("t");
        let decoded = decode_records(&topic, 0, 12, &records).unwrap();
        let offsets: Vec<u64> = decoded.iter().map(|record| record.offset).collect();
        assert_eq!(offsets, [12, 13]);
        let value = decoded[0].value.as_ref().unwrap();
        assert_eq!(&value[..], b"value");
        let range = records.as_ptr_range();
        assert!(
            range.contains(&value.as_ptr()),
            "the value is a slice of the fetch buffer"
        );
        assert_eq!(decoded[1].headers, vec![Header::new("h", "v")]);
        assert_eq!(decoded[1].timestamp, 1_003);
    }

    #[test]
    fn the_next_fetch_starts_past_the_last_batch_header_with_its_epoch() {
        let mut answer = batch_of_epoch(10, 4, 2);
        answer.extend(batch_of_epoch(14, 2, 3));
        assert_eq!(
            next_fetch_offset("t", 0, 12, 16, &answer).unwrap(),
            (16, Some(3))
        );
        assert_eq!(
            next_fetch_offset("t", 0, 12, 16, &[]).unwrap(),
            (12, None),
            "empty answer"
        );
        assert_eq!(
            next_fetch_offset("t", 0, 20, 20, &batch_at(10, 4)).unwrap(),
            (20, None),
            "an answer wholly below the fetch offset does not move it back"
        );
        let truncated = &answer[..answer.len() - 1];
        let error = next_fetch_offset("t", 0, 12, 16, truncated).unwrap_err();
        assert!(error.to_string().contains("t-0"), "{error}");
        let error = next_fetch_offset("t", 0, 12, 15, &answer).unwrap_err();
        assert!(error.to_string().contains("high watermark 15"), "{error}");
    }

    #[test]
    fn records_must_end_where_the_header_says() {
        let mut batch = batch_at(0, 4);
        batch[23..27].copy_from_slice(&5u32.to_be_bytes());
        // Re-sealed with a valid CRC: only the delta disagrees with the record count.
        batch::stamp_producer(
            &mut batch,
            batch::NO_PRODUCER_ID,
            batch::NO_PRODUCER_EPOCH,
            batch::NO_SEQUENCE,
        );
        let error = decode_records(&Arc::from("t"), 0, 0, &Bytes::from(batch)).unwrap_err();
        assert!(
            error.to_string().contains("last offset delta of 5"),
            "{error}"
        );
    }

    #[test]
    fn a_flipped_bit_fails_the_crc_check() {
        let mut builder = BatchBuilder::new();
        builder.push(0, None, Some(b"value"), &[]);
        let mut batch = builder.finish().to_vec();
        let last = batch.len() - 1;
        batch[last] ^= 1;
        let error = decode_records(&Arc::from("t"), 0, 0, &Bytes::from(batch)).unwrap_err();
        assert!(error.to_string().contains("CRC"), "{error}");
    }
}
