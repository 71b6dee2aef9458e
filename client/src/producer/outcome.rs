//! Whether a failed produce attempt may have written its batch.
//!
//! A batch retried under its own producer id, epoch and sequence is safe whatever its
//! earlier attempts did: the leader answers a batch it already has with the original
//! offsets. A batch renumbered under a new epoch is not: the leader takes it as new
//! records. So the sender marks a batch once an attempt of it may have been written
//! (Kafka's rule, KIP-360), and a renumbering fails a marked batch with
//! [`Error::OutcomeUnknown`](crate::Error::OutcomeUnknown) instead of sending it again.
//! Only batches never sent, or whose every attempt was refused in a way that proves
//! nothing was written, are renumbered. When in doubt an attempt counts as written: a
//! needless `OutcomeUnknown` costs a resend the application decides on, a wrong "not
//! written" costs a duplicate.
//!
//! | How the attempt failed | Written | Why |
//! |---|---|---|
//! | no leader known; no connection (`Connect`, `Resolve`, `ConnectTimeout`, `NoBrokerAvailable`); the request not encodable (`UnsupportedApi`, `Protocol`); `Disconnected` or `RequestTimedOut` before the request was handed to the connection's writer (closed connection, no in-flight slot in time) | no | never sent |
//! | `Disconnected`, `RequestTimedOut`, an undecodable answer or one of another API, after the request was handed to the writer | maybe | the leader may have appended it and the answer was lost |
//! | an answer without the partition | maybe | the client cannot tell |
//! | `NotLeader`, `UnknownTopicOrPartition`, `PartitionOffline`, `NotEnoughReplicas` (`acks = all` refused up front, KIP-966), `FencedLeaderEpoch`, `OutOfOrderSequence`, `ProducerFenced`, `UnknownProducerId`, `InvalidProducerEpoch`, `CorruptBatch`, `InvalidBatch`, `MessageTooLarge`, `InvalidTimestamp`, `UnsupportedCompression`, `InvalidRequest`, `LimitExceeded`, `UnsupportedVersion`, `UnknownApiKey`, `FrameTooLarge` | no | the leader checks these before it appends, and a request of an idempotent producer carries one batch |
//! | `LeaderNotAvailable`, `StorageFull`, with `acks = leader` | no | refused before the append; an append that runs out of space or descriptors writes nothing |
//! | `LeaderNotAvailable`, `StorageFull`, with `acks = all` | maybe | also the answer, after the append, when leadership moves or an fsync is held back while the leader waits for its in-sync replicas |
//! | `RequestTimedOut`, `NotEnoughReplicasAfterAppend` | maybe | appended; only the wait for the in-sync replicas failed |
//! | `StorageError`, `Unknown`, any other code | maybe | the write or its fsync failed midway, or the code says nothing about the append |

use strata_protocol::ErrorCode;
use strata_protocol::messages::Acks;

/// Whether a failed attempt may have put its batch in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Written {
    /// Never sent, or refused before the append: not in the log from this attempt.
    No,
    /// Perhaps appended: the attempt's outcome is unknown.
    Maybe,
}

impl Written {
    /// An attempt that got no answer: `queued` if the request was handed to the
    /// connection's writer (from then on it may reach the broker).
    pub(super) fn unanswered(queued: bool) -> Self {
        if queued { Written::Maybe } else { Written::No }
    }

    /// An attempt the leader answered with `code` for the batch's partition, under
    /// `acks`.
    pub(super) fn answered(code: ErrorCode, acks: Acks) -> Self {
        match code {
            ErrorCode::NotLeader
            | ErrorCode::UnknownTopicOrPartition
            | ErrorCode::PartitionOffline
            | ErrorCode::NotEnoughReplicas
            | ErrorCode::FencedLeaderEpoch
            | ErrorCode::OutOfOrderSequence
            | ErrorCode::ProducerFenced
            | ErrorCode::UnknownProducerId
            | ErrorCode::InvalidProducerEpoch
            | ErrorCode::CorruptBatch
            | ErrorCode::InvalidBatch
            | ErrorCode::MessageTooLarge
            | ErrorCode::InvalidTimestamp
            | ErrorCode::UnsupportedCompression
            | ErrorCode::InvalidRequest
            | ErrorCode::LimitExceeded
            | ErrorCode::UnsupportedVersion
            | ErrorCode::UnknownApiKey
            | ErrorCode::FrameTooLarge => Written::No,
            ErrorCode::LeaderNotAvailable | ErrorCode::StorageFull if acks != Acks::All => {
                Written::No
            }
            _ => Written::Maybe,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_before_the_append_are_not_written() {
        for code in [
            ErrorCode::NotLeader,
            ErrorCode::NotEnoughReplicas,
            ErrorCode::OutOfOrderSequence,
            ErrorCode::UnknownTopicOrPartition,
            ErrorCode::InvalidBatch,
        ] {
            for acks in [Acks::Leader, Acks::All] {
                assert_eq!(
                    Written::answered(code, acks),
                    Written::No,
                    "{code} {acks:?}"
                );
            }
        }
    }

    #[test]
    fn a_failed_wait_for_the_replicas_may_have_written() {
        for code in [
            ErrorCode::RequestTimedOut,
            ErrorCode::NotEnoughReplicasAfterAppend,
            ErrorCode::StorageError,
            ErrorCode::Unknown,
        ] {
            for acks in [Acks::Leader, Acks::All] {
                assert_eq!(
                    Written::answered(code, acks),
                    Written::Maybe,
                    "{code} {acks:?}"
                );
            }
        }
    }

    #[test]
    fn leader_not_available_and_storage_full_may_follow_the_append_only_with_acks_all() {
        for code in [ErrorCode::LeaderNotAvailable, ErrorCode::StorageFull] {
            assert_eq!(Written::answered(code, Acks::Leader), Written::No);
            assert_eq!(Written::answered(code, Acks::All), Written::Maybe);
        }
    }

    #[test]
    fn no_answer_may_have_written_once_the_request_was_queued() {
        assert_eq!(Written::unanswered(false), Written::No);
        assert_eq!(Written::unanswered(true), Written::Maybe);
    }
}
