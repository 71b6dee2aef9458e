//! A partition's batches: the open one collecting records, the sealed ones waiting to be
//! sent, and a sealed batch's encoding, which can be renumbered until it is sent.

use std::collections::{BTreeSet, VecDeque};

use bytes::{Bytes, BytesMut};
use strata_protocol::batch::{self, BatchBuilder, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE};
use tokio::time::Instant;

use super::ProducerIdentity;
use crate::delivery::BatchResolver;
use crate::error::Error;

/// A sealed batch's encoding. It stays in its builder until the request that first
/// carries it is built, so numbering it costs no copy until then. The builder takes its
/// records into the CRC as they are pushed; finishing adds the header's bytes.
#[derive(Debug)]
enum Encoding {
    Built(BatchBuilder),
    Finished(Bytes),
}

/// A sealed batch: its encoding plus who to tell about its records.
#[derive(Debug)]
pub(crate) struct ProducerBatch {
    encoding: Encoding,
    pub(crate) resolver: BatchResolver,
    /// Records in the batch.
    pub(crate) records: u32,
    /// Records sent without a future (fire and forget): a failure is logged for them.
    pub(crate) forgotten: u32,
    /// Buffer memory to release once the batch is resolved.
    pub(crate) reserved_bytes: usize,
    /// Failed attempts so far.
    pub(crate) attempts: u32,
    /// Index of its first record among the records appended to its partition.
    pub(crate) first_record: u64,
    /// Whether it carries a sequence number (idempotence).
    pub(crate) numbered: bool,
    /// Whether an earlier batch of its partition was unresolved when it was last drained:
    /// the leader may then see it before that batch (the earlier one's request failed
    /// before reaching the wire and is retried), and answer OutOfOrderSequence.
    pub(crate) drained_behind: bool,
    /// The error of the first attempt that may have written the batch (its answer was
    /// lost, or came after the append): it is then sent again only under its own number,
    /// which the leader deduplicates, and a renumbering fails it instead.
    pub(crate) maybe_written: Option<Error>,
}

impl ProducerBatch {
    /// A batch already encoded as `bytes`, with nothing to resolve.
    #[cfg(test)]
    pub(crate) fn encoded(bytes: Bytes, records: u32, reserved_bytes: usize) -> Self {
        Self {
            encoding: Encoding::Finished(bytes),
            resolver: BatchResolver::default(),
            records,
            forgotten: 0,
            reserved_bytes,
            attempts: 0,
            first_record: 0,
            numbered: false,
            drained_behind: false,
            maybe_written: None,
        }
    }

    /// The batch's size in bytes.
    pub(crate) fn len(&self) -> usize {
        match &self.encoding {
            Encoding::Built(builder) => builder.len(),
            Encoding::Finished(bytes) => bytes.len(),
        }
    }

    /// The encoded batch, finished (header and CRC written) on the first call.
    pub(crate) fn bytes(&mut self) -> Bytes {
        let bytes = match std::mem::replace(&mut self.encoding, Encoding::Finished(Bytes::new())) {
            Encoding::Built(builder) => builder.finish(),
            Encoding::Finished(bytes) => bytes,
        };
        self.encoding = Encoding::Finished(bytes.clone());
        bytes
    }

    /// Sets the producer fields of the batch to `identity` and `sequence`, or to none,
    /// for batches sealed before the producer had its current id and epoch: in the
    /// builder, or by rewriting the fields and CRC of a finished batch (one copy).
    pub(super) fn renumber(&mut self, number: Option<(ProducerIdentity, i32)>) {
        let (id, epoch, sequence) = number.map_or(
            (NO_PRODUCER_ID, NO_PRODUCER_EPOCH, NO_SEQUENCE),
            |(identity, sequence)| (identity.id, identity.epoch, sequence),
        );
        match &mut self.encoding {
            Encoding::Built(builder) => {
                builder.producer(id, epoch, sequence);
            }
            Encoding::Finished(bytes) => {
                let mut copy = BytesMut::from(&bytes[..]);
                batch::stamp_producer(&mut copy, id, epoch, sequence);
                *bytes = copy.freeze();
            }
        }
        self.numbered = number.is_some();
    }
}

#[derive(Debug)]
pub(super) struct OpenBatch {
    pub(super) builder: BatchBuilder,
    pub(super) created: Instant,
    pub(super) resolver: BatchResolver,
    pub(super) forgotten: u32,
    pub(super) reserved_bytes: usize,
    pub(super) first_record: u64,
}

#[derive(Debug, Default)]
pub(super) struct PartitionQueue {
    pub(super) open: Option<OpenBatch>,
    /// In seal order (ascending `first_record`).
    pub(super) sealed: VecDeque<ProducerBatch>,
    /// Requests in flight.
    pub(super) in_flight: usize,
    pub(super) retry_at: Option<Instant>,
    pub(super) appended: u64,
    /// `first_record` of every batch not yet resolved, the open one included.
    pub(super) unresolved: BTreeSet<u64>,
    /// The sequence number of the next batch sealed under the current identity.
    pub(super) next_sequence: i32,
}

impl PartitionQueue {
    pub(super) fn is_idle(&self) -> bool {
        self.open.is_none() && self.sealed.is_empty() && self.in_flight == 0
    }

    /// Seals the open batch, if any, numbering it under `identity`.
    pub(super) fn seal_open(&mut self, identity: Option<ProducerIdentity>) -> bool {
        let Some(mut open) = self.open.take() else {
            return false;
        };
        if let Some(identity) = identity {
            open.builder
                .producer(identity.id, identity.epoch, self.next_sequence);
            self.next_sequence =
                batch::sequence_after(self.next_sequence, open.builder.record_count());
        }
        self.sealed.push_back(ProducerBatch {
            records: open.builder.record_count(),
            encoding: Encoding::Built(open.builder),
            resolver: open.resolver,
            forgotten: open.forgotten,
            reserved_bytes: open.reserved_bytes,
            attempts: 0,
            first_record: open.first_record,
            numbered: identity.is_some(),
            drained_behind: false,
            maybe_written: None,
        });
        true
    }
}
