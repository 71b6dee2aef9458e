//! InitProducerId (key 17): an idempotent producer asks for its producer id and epoch
//! before its first batch, and for a new epoch when it must restart its sequences.

use crate::error::ErrorCode;
use crate::wire::wire_struct;

wire_struct! {
    /// Asks for a producer id, or a new epoch of one.
    pub struct InitProducerIdRequest {
        /// -1 ([`NO_PRODUCER_ID`](crate::batch::NO_PRODUCER_ID)) for a new producer; the
        /// producer's own id to get the next epoch of it.
        pub producer_id: i64,
        /// -1 with a new producer; otherwise the producer's current epoch.
        pub producer_epoch: i16,
    }
}

wire_struct! {
    /// The producer id and epoch to stamp on every batch.
    pub struct InitProducerIdResponse {
        /// `None`, or why no id was given.
        pub error_code: ErrorCode,
        /// A human-readable explanation when `error_code` is not `None`.
        pub error_message: Option<String>,
        /// The producer id; -1 on error.
        pub producer_id: i64,
        /// The epoch; -1 on error.
        pub producer_epoch: i16,
    }
}
