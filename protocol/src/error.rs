//! Errors: the stable wire [`ErrorCode`]s a broker returns, and the [`DecodeError`]s and
//! [`BatchError`]s this crate reports for malformed input.

use crate::wire::{Reader, Sink, Wire};

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $name:ident = $code:literal, retriable: $retriable:literal, $message:literal; )*) => {
        /// A stable numeric error code carried in responses.
        ///
        /// Codes are never renumbered and a retired code is never reused. A client that
        /// receives a code it does not know decodes it as [`ErrorCode::Unknown`].
        #[repr(u16)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $( $(#[$doc])* $name = $code, )*
        }

        impl ErrorCode {
            /// Every code, in numeric order.
            pub const ALL: &'static [ErrorCode] = &[$( ErrorCode::$name ),*];

            /// The code for a wire value, if it is one this version knows.
            pub fn from_u16(code: u16) -> Option<Self> {
                match code {
                    $( $code => Some(ErrorCode::$name), )*
                    _ => None,
                }
            }

            /// The code's name as documented in `docs/protocol.md`.
            pub fn name(self) -> &'static str {
                match self { $( ErrorCode::$name => stringify!($name), )* }
            }

            /// What went wrong and what the caller can do about it.
            pub fn message(self) -> &'static str {
                match self { $( ErrorCode::$name => $message, )* }
            }

            /// Whether the same request may succeed if retried (possibly after refreshing
            /// metadata).
            pub fn is_retriable(self) -> bool {
                match self { $( ErrorCode::$name => $retriable, )* }
            }
        }
    };
}

error_codes! {
    /// Success.
    None = 0, retriable: false, "no error";
    /// The broker hit an unexpected condition; the broker log has details.
    Unknown = 1, retriable: false, "the broker hit an unexpected error; check the broker log";
    /// A record batch failed its CRC check.
    CorruptBatch = 2, retriable: true, "a record batch failed its CRC32 check; it was corrupted in transit or by the client";
    /// A record batch is structurally invalid.
    InvalidBatch = 3, retriable: false, "a record batch is malformed (bad length, magic, attributes, record count or offsets)";
    /// The topic or partition does not exist.
    UnknownTopicOrPartition = 4, retriable: true, "the topic or partition does not exist on this broker";
    /// The request's frame could not be parsed.
    InvalidRequest = 5, retriable: false, "the request could not be parsed; the client and broker disagree on the wire format";
    /// The API key is not one the broker knows.
    UnknownApiKey = 6, retriable: false, "the broker does not implement this API; negotiate versions with ApiVersions first";
    /// The API exists but not at the requested version.
    UnsupportedVersion = 7, retriable: false, "the broker does not support this API version; negotiate versions with ApiVersions first";
    /// The frame is longer than the broker's `frame_bytes_max`.
    FrameTooLarge = 8, retriable: false, "the request frame is larger than the broker's frame_bytes_max";
    /// A record batch is longer than the topic's `max_message_bytes`.
    MessageTooLarge = 9, retriable: false, "a record batch is larger than the topic's max_message_bytes; send smaller batches";
    /// A topic with that name already exists.
    TopicAlreadyExists = 10, retriable: false, "a topic with this name already exists";
    /// The topic name is empty, too long or has characters outside [A-Za-z0-9._-].
    InvalidTopic = 11, retriable: false, "topic names are 1 to 249 characters from [A-Za-z0-9._-], not '.' or '..', and not starting with '__'";
    /// The partition count is zero, over the limit, or would shrink the topic.
    InvalidPartitions = 12, retriable: false, "the partition count must be at least 1, within partitions_max, and can only grow";
    /// The replication factor is zero or larger than the number of brokers.
    InvalidReplicationFactor = 13, retriable: false, "the replication factor must be between 1 and the number of live brokers";
    /// A topic configuration key is unknown or its value is out of range.
    InvalidConfig = 14, retriable: false, "a topic configuration key is unknown or its value is invalid";
    /// The requested offset is outside the partition's log.
    OffsetOutOfRange = 15, retriable: false, "the offset is before the log start offset or after the log end offset";
    /// This broker does not lead the partition.
    NotLeader = 16, retriable: true, "this broker is not the partition's leader; refresh metadata and retry";
    /// The partition has no leader at the moment.
    LeaderNotAvailable = 17, retriable: true, "the partition has no leader right now; retry after a metadata refresh";
    /// The request did not complete within its timeout.
    RequestTimedOut = 18, retriable: true, "the request did not complete within its timeout";
    /// Fewer in-sync replicas than `min_insync_replicas`.
    NotEnoughReplicas = 19, retriable: true, "fewer in-sync replicas than min_insync_replicas; the write was not accepted";
    /// The partition's storage failed (an fsync or write error poisoned it).
    StorageError = 20, retriable: false, "the partition's storage failed and refuses writes until the broker is restarted; check the broker log";
    /// The broker's disk is full, or it ran out of file descriptors. An append that fails
    /// with it wrote nothing; an `acks = all` write whose fsync it held back may be in the
    /// log.
    StorageFull = 21, retriable: true, "the broker ran out of disk space or file descriptors; retry once they are freed";
    /// The batch uses a compression codec this broker does not support.
    UnsupportedCompression = 22, retriable: false, "the batch uses a compression codec this broker does not support";
    /// The broker is shutting down.
    BrokerShuttingDown = 23, retriable: true, "the broker is shutting down; retry against another broker or after it restarts";
    /// A limit on the request was exceeded (too many topics, partitions or records).
    LimitExceeded = 24, retriable: false, "the request exceeds a broker limit; see docs/operations.md for the limits";
    /// A timestamp in the request is out of range.
    InvalidTimestamp = 25, retriable: false, "a timestamp is out of range";
    /// The consumer group does not exist.
    GroupIdNotFound = 26, retriable: false, "the consumer group does not exist";
    /// The group id is empty or longer than 255 bytes.
    InvalidGroupId = 27, retriable: false, "group ids are 1 to 255 bytes";
    /// The member id is not in the group (its session expired or it left).
    UnknownMemberId = 28, retriable: false, "the member is not in the group (its session expired or it left); rejoin with epoch 0";
    /// The member epoch is not the member's current epoch.
    FencedMemberEpoch = 29, retriable: false, "the member epoch is stale; the member lost its partitions and must rejoin with epoch 0";
    /// The member does not own the partition it committed.
    PartitionNotAssigned = 30, retriable: false, "the member does not own this partition, so it cannot commit it";
    /// The operation needs a group with no members.
    NonEmptyGroup = 31, retriable: false, "the group has live members; stop its consumers first";
    /// This broker does not coordinate the group.
    NotCoordinator = 32, retriable: true, "this broker does not coordinate the group; find the coordinator and retry";
    /// The assignor name is not `uniform` or `range`.
    UnsupportedAssignor = 33, retriable: false, "the assignor must be 'uniform' or 'range'";
    /// The group has `group_members_max` members.
    GroupMaxSizeReached = 34, retriable: false, "the group has reached group_members_max members";
    /// An idempotent producer's batch does not continue its sequence.
    OutOfOrderSequence = 35, retriable: false, "the batch's sequence number does not follow the producer's last batch on this partition; an earlier batch is missing";
    /// An idempotent producer's epoch is older than the producer's current one.
    ProducerFenced = 36, retriable: false, "a newer epoch of this producer id has written to the partition; this producer instance is fenced";
    /// An idempotent batch names a producer id the broker never gave out.
    UnknownProducerId = 37, retriable: false, "the batch's producer id was never given out in the cluster; ask InitProducerId for one";
    /// An idempotent batch carries an epoch newer than the broker gave for its producer id.
    InvalidProducerEpoch = 38, retriable: false, "the batch's producer epoch is newer than the one InitProducerId gave for its producer id";
    /// The partition's data failed its checks when the broker opened it, so it is offline.
    PartitionOffline = 39, retriable: false, "the partition is offline: its data on the broker's disk failed its checks at startup; the error message and the broker log name the file (see docs/storage.md for recovery)";
    /// The request's leader epoch is older than the partition's current one (KIP-320).
    FencedLeaderEpoch = 40, retriable: true, "the leader epoch in the request is older than the partition's current one; refresh metadata and retry";
    /// The request's leader epoch is newer than this broker knows of yet.
    UnknownLeaderEpoch = 41, retriable: true, "the leader epoch in the request is newer than this broker knows of; retry once its metadata catches up";
    /// A new leader's high watermark is still below the offset asked for (KIP-207).
    OffsetNotAvailable = 42, retriable: true, "the new leader's high watermark has not reached this offset yet; retry shortly";
    /// The write was appended, but the in-sync set shrank below the minimum before every member had it.
    NotEnoughReplicasAfterAppend = 43, retriable: true, "the write was appended but the in-sync replicas fell below min_insync_replicas before it was replicated; retry (an idempotent producer's retry is deduplicated)";
    /// A partition change was based on a partition epoch that is no longer current.
    InvalidUpdateVersion = 44, retriable: true, "the partition changed since this update was prepared; it is retried against the current state";
    /// A replica may not join the in-sync set or lead: it is not alive at its current incarnation, or not caught up (KIP-903).
    IneligibleReplica = 45, retriable: true, "the replica is not eligible to join the in-sync set or lead yet";
    /// The preferred replica already leads the partition.
    ElectionNotNeeded = 46, retriable: false, "the partition already has the leader this election would choose";
    /// No replica is eligible to lead: none in the in-sync set or eligible leader set is alive.
    EligibleLeadersNotAvailable = 47, retriable: true, "no in-sync or eligible replica is alive to lead; wait for one to return, or force an unclean election (which may lose acknowledged records)";
    /// A reassignment's replica list is empty, names a broker twice, or names a broker
    /// that is not registered, or not alive where it would get a new copy.
    InvalidReplicaAssignment = 48, retriable: false, "the replica list is empty, names a broker twice, or names a broker that is not registered (or, for a new replica, not alive)";
    /// The partition is being moved to other replicas already.
    ReassignmentInProgress = 49, retriable: false, "the partition is being moved to other replicas; wait for the move to finish, or cancel it by asking for its original replicas";
}

impl ErrorCode {
    /// The wire value.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// Whether this is [`ErrorCode::None`].
    pub fn is_ok(self) -> bool {
        self == ErrorCode::None
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.name(), self.code(), self.message())
    }
}

impl Wire for ErrorCode {
    fn encode<S: Sink + ?Sized>(&self, out: &mut S) {
        self.code().encode(out);
    }

    fn decode(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ErrorCode::from_u16(u16::decode(reader)?).unwrap_or(ErrorCode::Unknown))
    }
}

/// Why bytes could not be decoded. Carries the byte offset (within the buffer being
/// decoded) where decoding failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended early.
    #[error("unexpected end of input at byte {offset}: need {need} bytes, have {have}")]
    UnexpectedEof {
        /// Where the read started.
        offset: usize,
        /// Bytes the read needed.
        need: usize,
        /// Bytes that were left.
        have: usize,
    },
    /// A string was not UTF-8.
    #[error("string at byte {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// Where the string's bytes start.
        offset: usize,
    },
    /// A null marker where the field is not nullable.
    #[error("{field} at byte {offset} is null but may not be")]
    UnexpectedNull {
        /// The field's kind.
        field: &'static str,
        /// Where the field starts.
        offset: usize,
    },
    /// A length or count larger than what is left of the input.
    #[error("{field} at byte {offset} is {length}, but only {remaining} bytes remain")]
    InvalidLength {
        /// The field's name.
        field: &'static str,
        /// Where the field starts.
        offset: usize,
        /// The value read.
        length: u64,
        /// Bytes left in the input.
        remaining: usize,
    },
    /// A field holds a value outside its domain.
    #[error("{field} at byte {offset} has invalid value {value}")]
    InvalidValue {
        /// The field's name.
        field: &'static str,
        /// Where the field starts.
        offset: usize,
        /// The value read.
        value: i64,
    },
    /// Bytes were left after the message ended.
    #[error("{count} unexpected bytes after the message ends at byte {offset}")]
    TrailingBytes {
        /// Where the message ended.
        offset: usize,
        /// Bytes left over.
        count: usize,
    },
    /// The decoded values would take more memory than the reader's budget (see
    /// [`crate::limits::request_decoded_bytes_max`]).
    #[error(
        "decoding the message would take more than {budget} bytes of memory (stopped at byte {offset})"
    )]
    MemoryBudget {
        /// Where decoding stopped.
        offset: usize,
        /// The budget.
        budget: usize,
    },
    /// The API key is unknown.
    #[error("unknown API key {api_key}")]
    UnknownApiKey {
        /// The key read.
        api_key: u16,
    },
    /// The API is known but not at this version.
    #[error("API {api_key} has no version {api_version}")]
    UnsupportedVersion {
        /// The key read.
        api_key: u16,
        /// The version read.
        api_version: u16,
    },
}

impl DecodeError {
    /// The error code a broker answers with when a request fails to decode this way.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            DecodeError::UnknownApiKey { .. } => ErrorCode::UnknownApiKey,
            DecodeError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            DecodeError::MemoryBudget { .. } => ErrorCode::LimitExceeded,
            _ => ErrorCode::InvalidRequest,
        }
    }
}

/// Why a record batch is invalid. Offsets are relative to the start of the batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than the batch header or than the batch length says.
    #[error("batch truncated: need {need} bytes, have {have}")]
    Truncated {
        /// Bytes the batch needs.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// The batch length field is below the header size or above the limit.
    #[error("batch length {length} is outside [{min}, {max}]")]
    InvalidLength {
        /// The total batch size the header claims.
        length: u64,
        /// The smallest valid size.
        min: usize,
        /// The largest size allowed here.
        max: usize,
    },
    /// An unknown batch format version.
    #[error("batch magic {magic} is not {expected}")]
    InvalidMagic {
        /// The magic byte read.
        magic: u8,
        /// The only supported magic.
        expected: u8,
    },
    /// The stored CRC does not match the bytes.
    #[error("batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// The CRC in the header.
        stored: u32,
        /// The CRC of the bytes.
        computed: u32,
    },
    /// Reserved attribute bits are set.
    #[error("batch attributes {attributes:#06x} set reserved bits")]
    InvalidAttributes {
        /// The attributes read.
        attributes: u16,
    },
    /// The compression codec is not supported.
    #[error("batch compression codec {codec} is not supported")]
    UnsupportedCompression {
        /// The codec id read.
        codec: u8,
    },
    /// The header's counts disagree with each other or with the records.
    #[error("batch header inconsistent: {reason}")]
    Inconsistent {
        /// What disagrees.
        reason: &'static str,
    },
    /// A record inside the batch is malformed.
    #[error("record {index} malformed at batch byte {offset}: {reason}")]
    InvalidRecord {
        /// The record's position in the batch.
        index: u32,
        /// Where decoding failed.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
}

impl BatchError {
    /// The error code a broker answers with for this batch.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            BatchError::CrcMismatch { .. } => ErrorCode::CorruptBatch,
            BatchError::UnsupportedCompression { .. } => ErrorCode::UnsupportedCompression,
            _ => ErrorCode::InvalidBatch,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_dense_and_round_trip() {
        for (index, code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(usize::from(code.code()), index, "{code:?} out of order");
            assert_eq!(ErrorCode::from_u16(code.code()), Some(*code));
            assert!(!code.message().is_empty());
        }
        assert_eq!(ErrorCode::from_u16(ErrorCode::ALL.len() as u16), None);
    }
}
