//! Produce (key 5): appends record batches to partitions.
//!
//! With `acks = none` the broker sends no response at all (fire and forget); the client
//! must not wait for one.

use bytes::Bytes;

use crate::error::{DecodeError, ErrorCode};
use crate::wire::{Reader, Sink, Wire, wire_struct};

/// When the broker acknowledges a produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Acks {
    /// No acknowledgement: the broker sends no response.
    None = 0,
    /// After the leader appended the batch to its log (page cache).
    Leader = 1,
    /// After every in-sync replica has the batch and the durability policy is met.
    All = 2,
}

impl Wire for Acks {
    fn encode<S: Sink + ?Sized>(&self, out: &mut S) {
        (*self as u8).encode(out);
    }

    fn decode(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let offset = reader.position();
        match u8::decode(reader)? {
            0 => Ok(Acks::None),
            1 => Ok(Acks::Leader),
            2 => Ok(Acks::All),
            value => Err(DecodeError::InvalidValue {
                field: "acks",
                offset,
                value: value.into(),
            }),
        }
    }
}

/// One or more record batches laid end to end (see [`crate::batch`]), held as one or
/// more chunks. On the wire it is a single length-prefixed blob, whatever the chunking:
/// a sender passes batches it holds separately without joining them (they are written
/// with vectored I/O), and a decoder yields one chunk that shares the frame. Equality
/// compares the bytes, not the chunking.
#[derive(Debug, Clone, Default)]
pub struct RecordBatches {
    chunks: Vec<Bytes>,
}

impl RecordBatches {
    /// The batches in `chunks`, in order.
    pub fn new(chunks: Vec<Bytes>) -> Self {
        Self { chunks }
    }

    /// Total length in bytes.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.chunks.iter().all(Bytes::is_empty)
    }

    /// The chunks, in order.
    pub fn chunks(&self) -> &[Bytes] {
        &self.chunks
    }

    /// The bytes as one buffer: shared, not copied, when there is one chunk (always so
    /// after decoding); joined otherwise.
    pub fn to_bytes(&self) -> Bytes {
        match self.chunks.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => many.concat().into(),
        }
    }
}

impl From<Bytes> for RecordBatches {
    fn from(bytes: Bytes) -> Self {
        Self::new(vec![bytes])
    }
}

impl PartialEq for RecordBatches {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self
                .chunks
                .iter()
                .flatten()
                .eq(other.chunks.iter().flatten())
    }
}

impl Eq for RecordBatches {}

impl Wire for RecordBatches {
    /// # Panics
    /// If the batches reach 4 GiB; frames are far smaller.
    fn encode<S: Sink + ?Sized>(&self, out: &mut S) {
        let length = u32::try_from(self.len()).expect("batches shorter than a frame");
        length.encode(out);
        for chunk in &self.chunks {
            out.put_shared(chunk);
        }
    }

    fn decode(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        // The one chunk's place in `chunks`.
        reader.charge(size_of::<Bytes>())?;
        Bytes::decode(reader).map(Self::from)
    }
}

wire_struct! {
    /// Batches for one partition.
    pub struct ProducePartition {
        /// The partition index.
        pub partition: u32,
        /// One or more record batches laid end to end; see [`crate::batch`].
        pub records: RecordBatches,
    }
}

wire_struct! {
    /// Batches for one topic.
    pub struct ProduceTopic {
        /// The topic name.
        pub name: String,
        /// Per-partition batches.
        pub partitions: Vec<ProducePartition>,
    }
}

wire_struct! {
    /// Appends batches.
    pub struct ProduceRequest {
        /// The acknowledgement level.
        pub acks: Acks,
        /// How long the broker may wait for `acks = all` before answering
        /// `RequestTimedOut`.
        pub timeout_ms: u32,
        /// Per-topic batches.
        pub topics: Vec<ProduceTopic>,
    }
}

wire_struct! {
    /// The outcome for one partition.
    pub struct ProducePartitionResponse {
        /// The partition index.
        pub partition: u32,
        /// `None` on success.
        pub error_code: ErrorCode,
        /// Details beyond the code's own message.
        pub error_message: Option<String>,
        /// Offset assigned to the first record of the first batch.
        pub base_offset: u64,
        /// The broker's append time if the topic uses log-append time, else -1.
        pub log_append_time: i64,
        /// The partition's log start offset.
        pub log_start_offset: u64,
    }
}

wire_struct! {
    /// Outcomes for one topic.
    pub struct ProduceTopicResponse {
        /// The topic name.
        pub name: String,
        /// Per-partition outcomes.
        pub partitions: Vec<ProducePartitionResponse>,
    }
}

wire_struct! {
    /// Outcomes of a produce.
    pub struct ProduceResponse {
        /// Per-topic outcomes.
        pub topics: Vec<ProduceTopicResponse>,
    }
}
