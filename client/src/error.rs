//! The client's error type.

use std::sync::Arc;

use strata_protocol::ErrorCode;

/// Everything that can go wrong in the client. Cheap to clone (one failed batch fails
/// every record in it), and [`Error::is_retriable`] says whether trying again can help.
///
/// # Example
/// ```
/// use strata_client::Error;
/// use strata_client::protocol::ErrorCode;
///
/// let error = Error::Broker { code: ErrorCode::NotLeader, message: String::new() };
/// assert!(error.is_retriable());
/// assert!(error.to_string().starts_with("broker error NotLeader"));
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The TCP connection could not be opened.
    #[error("cannot reach broker at {address}: {}", .source.kind())]
    Connect {
        /// The address tried.
        address: String,
        /// The socket error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The host of a broker address did not resolve to any IP address. Retriable, as
    /// a [`Error::Connect`] is: the name may resolve later.
    #[error("cannot resolve '{host}' (broker address {address}): {reason}")]
    Resolve {
        /// The address tried.
        address: String,
        /// Its host part.
        host: String,
        /// What the resolver said.
        reason: String,
    },
    /// A bootstrap address is not `host:port`.
    #[error("bootstrap address '{address}' {problem}; use host:port")]
    InvalidBootstrap {
        /// The address as given.
        address: String,
        /// What is wrong with it, e.g. "has no port".
        problem: String,
    },
    /// Opening the connection took longer than `connect_timeout_ms`.
    #[error("cannot reach broker at {address}: no answer within {timeout_ms} ms")]
    ConnectTimeout {
        /// The address tried.
        address: String,
        /// The limit that expired.
        timeout_ms: u64,
    },
    /// The connection broke (or was closed) before the response arrived. The request may
    /// or may not have been applied.
    #[error("connection to {address} lost: {reason}")]
    Disconnected {
        /// The broker's address.
        address: String,
        /// Why, as far as the client knows.
        reason: String,
    },
    /// No response within `request_timeout_ms`. The request may or may not have been
    /// applied.
    #[error("{api} request to {address} timed out after {timeout_ms} ms")]
    RequestTimedOut {
        /// The broker's address.
        address: String,
        /// The API's name.
        api: &'static str,
        /// The limit that expired.
        timeout_ms: u64,
    },
    /// The broker answered with an error code.
    #[error("broker error {}: {}{}{message}", .code.name(), .code.message(), if .message.is_empty() { "" } else { ": " })]
    Broker {
        /// The broker's code.
        code: ErrorCode,
        /// The broker's message beyond the code's own, or empty.
        message: String,
    },
    /// The broker sent bytes the client cannot decode, or a batch failed its CRC.
    #[error("protocol error from {address}: {reason}")]
    Protocol {
        /// The broker's address.
        address: String,
        /// What was wrong.
        reason: String,
    },
    /// The broker supports no version of an API this client speaks.
    #[error("broker at {address} supports no version of {api} that this client speaks")]
    UnsupportedApi {
        /// The broker's address.
        address: String,
        /// The API's name.
        api: &'static str,
    },
    /// No broker in the bootstrap list or metadata could be reached.
    #[error("no broker reachable; last error: {last}")]
    NoBrokerAvailable {
        /// The last connection error.
        last: Box<Error>,
    },
    /// The partition's leader is unknown (right after creation, or during an election).
    #[error("no leader known for {topic}-{partition}")]
    LeaderNotAvailable {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
    },
    /// The producer's buffer stayed full: with `OnBufferFull::Error` at once, with
    /// `OnBufferFull::Wait` after `buffer_wait_ms_max`.
    #[error("producer buffer full: {buffer_bytes_max} bytes buffered awaiting delivery")]
    BufferFull {
        /// The configured limit.
        buffer_bytes_max: usize,
    },
    /// A record is larger than a limit and can never be sent.
    #[error("record of {bytes} bytes exceeds {limit} of {max} bytes")]
    RecordTooLarge {
        /// The record's encoded size.
        bytes: usize,
        /// The limit's name.
        limit: &'static str,
        /// The limit's value.
        max: usize,
    },
    /// An idempotent producer's batch was not sent again after an attempt that may have
    /// written it (a timeout, a connection lost after sending, an append whose
    /// replication the leader could not confirm): the producer had to start a new epoch,
    /// which renumbers its unacknowledged batches, and a leader would take this one,
    /// renumbered, as new records. The records may be in the log, once; they are not
    /// written twice. Not retriable: sending them again may duplicate them.
    #[error(
        "{topic}-{partition}: outcome unknown: the records may have been written once (an attempt failed with: {cause}); they were not sent again under the producer's new epoch, which would have written them twice"
    )]
    OutcomeUnknown {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The error of the first attempt that may have written the records.
        cause: Box<Error>,
    },
    /// The producer was closed; nothing more can be sent.
    #[error("the producer is closed")]
    ProducerClosed,
    /// A partition index at or above the topic's partition count.
    #[error("topic {topic} has {partition_count} partitions; there is no partition {partition}")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: u32,
        /// How many the topic has.
        partition_count: u32,
    },
    /// The consumer's position is outside the log and `auto_offset_reset` is `Error`.
    #[error(
        "offset {offset} is out of range for {topic}-{partition} and auto_offset_reset is error; seek to recover"
    )]
    OffsetOutOfRange {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The offset that was out of range.
        offset: u64,
    },
    /// The partition's leader no longer has records this consumer read (its log was
    /// truncated after an unclean election, or a write acknowledged by fewer than all
    /// in-sync replicas was lost), and `auto_offset_reset` is `Error`. The partition is
    /// paused until the application seeks; see `Consumer::take_truncations`.
    #[error(
        "{topic}-{partition}: the log no longer has the records this consumer read from offset {diverging_end_offset} up to its position {position} (log truncation); auto_offset_reset is error, so seek to recover ({diverging_end_offset} reads on from where the log diverged)"
    )]
    LogTruncated {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The consumer's position when the truncation was found.
        position: u64,
        /// Where the leader's log diverges from what the consumer read.
        diverging_end_offset: u64,
    },
    /// The partition has no position and `auto_offset_reset` is `Error`.
    #[error("{topic}-{partition} has no position and auto_offset_reset is error; seek first")]
    NoPosition {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
    },
    /// No record is at or after the timestamp looked up (internal to time lookups).
    #[error("no record at or after the timestamp")]
    NoOffsetFound,
    /// The operation names a partition this consumer is not assigned.
    #[error("{topic}-{partition} is not assigned to this consumer")]
    NotAssigned {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
    },
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A group operation on a consumer that is not subscribed to a group.
    #[error("this consumer is not subscribed to a group; call subscribe first")]
    NotSubscribed,
    /// `subscribe` on a consumer with manually assigned partitions, or to a second group.
    #[error("cannot subscribe: {reason}")]
    SubscribeConflict {
        /// What is in the way.
        reason: String,
    },
    /// The consumer group does not exist (`GroupIdNotFound`).
    #[error("consumer group '{group_id}' does not exist")]
    UnknownGroup {
        /// The group id.
        group_id: String,
    },
    /// The operation needs a group without members (`NonEmptyGroup`): offset resets and
    /// deletes are refused while consumers are in the group.
    #[error("group '{group_id}' has live members; stop its consumers first")]
    NonEmptyGroup {
        /// The group id.
        group_id: String,
    },
    /// The member lost its partitions (`FencedMemberEpoch` or `UnknownMemberId`): its
    /// session expired or a newer member replaced it. The consumer rejoins by itself;
    /// the commit that reported this was not applied.
    #[error("group '{group_id}': the member was fenced and lost its partitions ({}); it rejoins", .code.name())]
    MemberFenced {
        /// The group id.
        group_id: String,
        /// `FencedMemberEpoch` or `UnknownMemberId`.
        code: ErrorCode,
    },
}

impl Error {
    /// Whether the same operation may succeed if tried again later.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Connect { .. }
            | Error::Resolve { .. }
            | Error::ConnectTimeout { .. }
            | Error::Disconnected { .. }
            | Error::RequestTimedOut { .. }
            | Error::NoBrokerAvailable { .. }
            | Error::LeaderNotAvailable { .. }
            | Error::BufferFull { .. } => true,
            Error::Broker { code, .. } => code.is_retriable(),
            _ => false,
        }
    }

    /// The broker's error code, if the broker reported this error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Broker { code, .. } | Error::MemberFenced { code, .. } => Some(*code),
            Error::UnknownGroup { .. } => Some(ErrorCode::GroupIdNotFound),
            Error::NonEmptyGroup { .. } => Some(ErrorCode::NonEmptyGroup),
            _ => None,
        }
    }

    /// Whether cached metadata may be stale: a fresh leader lookup can fix this error.
    pub(crate) fn needs_metadata_refresh(&self) -> bool {
        matches!(
            self.code(),
            Some(
                ErrorCode::NotLeader
                    | ErrorCode::UnknownTopicOrPartition
                    | ErrorCode::LeaderNotAvailable
                    | ErrorCode::FencedLeaderEpoch
                    | ErrorCode::UnknownLeaderEpoch
            )
        ) || matches!(
            self,
            Error::LeaderNotAvailable { .. }
                | Error::Connect { .. }
                | Error::Resolve { .. }
                | Error::ConnectTimeout { .. }
                | Error::Disconnected { .. }
        )
    }

    /// A broker error about a group, with the group-specific codes turned into their
    /// own variants.
    pub(crate) fn group(group_id: &str, code: ErrorCode, message: Option<String>) -> Self {
        let group_id = group_id.to_owned();
        match code {
            ErrorCode::GroupIdNotFound => Error::UnknownGroup { group_id },
            ErrorCode::NonEmptyGroup => Error::NonEmptyGroup { group_id },
            ErrorCode::FencedMemberEpoch | ErrorCode::UnknownMemberId => {
                Error::MemberFenced { group_id, code }
            }
            code => Error::broker(code, message),
        }
    }

    /// Whether the member lost its partitions and must rejoin.
    pub(crate) fn is_fenced(&self) -> bool {
        matches!(
            self.code(),
            Some(ErrorCode::FencedMemberEpoch | ErrorCode::UnknownMemberId)
        )
    }

    /// Whether the group's coordinator may have moved or be unreachable: look it up
    /// again before the next request.
    pub(crate) fn needs_coordinator_lookup(&self) -> bool {
        matches!(
            self.code(),
            Some(ErrorCode::NotCoordinator | ErrorCode::BrokerShuttingDown)
        ) || matches!(
            self,
            Error::Connect { .. }
                | Error::Resolve { .. }
                | Error::ConnectTimeout { .. }
                | Error::Disconnected { .. }
                | Error::RequestTimedOut { .. }
        )
    }

    pub(crate) fn broker(code: ErrorCode, message: Option<String>) -> Self {
        Error::Broker {
            code,
            message: message.unwrap_or_default(),
        }
    }
}

/// The client's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
