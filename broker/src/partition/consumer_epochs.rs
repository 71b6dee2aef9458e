//! The leader-epoch checks of a consumer's fetch (KIP-320).
//!
//! A consumer names the leader epoch its metadata gave it, and the epoch of the last
//! batch it read. The first tells a stale leader (`UnknownLeaderEpoch`: the consumer
//! knows a newer one) from a stale consumer (`FencedLeaderEpoch`: its metadata is old);
//! both refresh their metadata and retry. The second lets the leader find where the
//! records the consumer read stop agreeing with its own log: after an unclean election,
//! or a write acknowledged by fewer than all in-sync replicas, a new leader may not have
//! what the old one served. The leader answers with where its log diverges, instead of
//! records, so the consumer goes back there rather than silently skip or re-read.
//!
//! The comparison is the replica fetch's (`replication::engine::divergence`), against the
//! log's leader-epoch cache.

use super::{Partition, PartitionError};
use crate::replication::engine::{self, Diverging};

/// What a consumer's fetch learns of the leader's epochs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerEpochs {
    /// The epoch this broker serves the partition at.
    pub leader_epoch: u32,
    /// Where the records the consumer read diverge from the log, if they do.
    pub diverging: Option<Diverging>,
}

impl Partition {
    /// Where the batches of `epoch` end in the log: the largest epoch at or below it and
    /// the offset after its last batch (see `strata_storage::Log::end_offset_for_epoch`).
    /// `None` if the log has no epoch at or below it, has none newer, or is offline.
    pub fn end_offset_for_epoch(&self, epoch: u32) -> Option<(u32, u64)> {
        self.log.as_ref().ok()?.end_offset_for_epoch(epoch)
    }

    /// Checks a consumer's fetch at `fetch_offset` against this partition's leader
    /// epoch and log: `current_leader_epoch` is the epoch the consumer's metadata names,
    /// `last_fetched_epoch` that of the last batch it read (each `None` if not given).
    ///
    /// # Errors
    /// [`PartitionError::FencedLeaderEpoch`] if the consumer names an older epoch than
    /// this broker's, [`PartitionError::UnknownLeaderEpoch`] if it names a newer one or
    /// read a batch of a newer one; both are retriable after a metadata refresh.
    pub fn check_consumer_epochs(
        &self,
        current_leader_epoch: Option<u32>,
        last_fetched_epoch: Option<u32>,
        fetch_offset: u64,
    ) -> Result<ConsumerEpochs, PartitionError> {
        let current = self.leader_epoch();
        // Batches may carry a newer epoch than the metadata's if the log outlived a
        // wiped metadata log (see `stamp_epoch`).
        let newest = current.max(self.stamp_epoch());
        let too_new = current_leader_epoch
            .filter(|given| *given > current)
            .or(last_fetched_epoch.filter(|given| *given > newest));
        if let Some(given) = too_new {
            return Err(PartitionError::UnknownLeaderEpoch {
                topic: self.topic.clone(),
                partition: self.index,
                given,
                current,
            });
        }
        if let Some(given) = current_leader_epoch.filter(|given| *given < current) {
            return Err(PartitionError::FencedLeaderEpoch {
                topic: self.topic.clone(),
                partition: self.index,
                given,
                current,
            });
        }
        let end_for_epoch = last_fetched_epoch.and_then(|epoch| self.end_offset_for_epoch(epoch));
        Ok(ConsumerEpochs {
            leader_epoch: current,
            diverging: consumer_divergence(
                last_fetched_epoch,
                fetch_offset,
                end_for_epoch,
                self.log_start_offset(),
            ),
        })
    }
}

/// Where a consumer's records diverge from the leader's log: as for a follower
/// (`engine::divergence`), except when the leader keeps no epoch at or below the
/// consumer's. Then the leader's log from its start on is all of newer epochs, so what
/// the consumer read from `log_start_offset` on is not in it; what it read below is gone
/// from the log anyway, and a fetch there is out of range as usual.
fn consumer_divergence(
    last_fetched_epoch: Option<u32>,
    fetch_offset: u64,
    end_for_epoch: Option<(u32, u64)>,
    log_start_offset: u64,
) -> Option<Diverging> {
    let diverging = engine::divergence(last_fetched_epoch, fetch_offset, end_for_epoch)?;
    match diverging.epoch {
        Some(_) => Some(diverging),
        None if fetch_offset > log_start_offset => Some(Diverging {
            epoch: None,
            end_offset: log_start_offset,
        }),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consumer_whose_epoch_reaches_its_position_has_not_diverged() {
        assert_eq!(consumer_divergence(Some(3), 20, Some((3, 30)), 0), None);
        assert_eq!(consumer_divergence(Some(3), 30, Some((3, 30)), 0), None);
        assert_eq!(
            consumer_divergence(None, 20, None, 0),
            None,
            "nothing read yet"
        );
    }

    #[test]
    fn a_consumer_past_the_end_of_its_epoch_goes_back_to_that_end() {
        assert_eq!(
            consumer_divergence(Some(3), 25, Some((3, 20)), 0),
            Some(Diverging {
                epoch: Some(3),
                end_offset: 20
            })
        );
        // The leader never had epoch 4: its epoch 2 ends at 15.
        assert_eq!(
            consumer_divergence(Some(4), 25, Some((2, 15)), 0),
            Some(Diverging {
                epoch: Some(2),
                end_offset: 15
            })
        );
    }

    #[test]
    fn with_no_epoch_at_or_below_the_consumers_it_diverges_at_the_log_start() {
        let at_start = Some(Diverging {
            epoch: None,
            end_offset: 10,
        });
        assert_eq!(consumer_divergence(Some(1), 25, None, 10), at_start);
        // Everything it read is below the log start: nothing to compare.
        assert_eq!(consumer_divergence(Some(1), 10, None, 10), None);
        assert_eq!(consumer_divergence(Some(1), 4, None, 10), None);
    }
}
