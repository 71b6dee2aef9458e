//! What the consumer does when a leader's log no longer has records it read (KIP-320).
//!
//! Every fetch names the leader epoch of the last batch the consumer fetched. If the
//! leader's log does not have that epoch up to the fetch offset, its log diverged from
//! what the consumer read: after an unclean election, or when a write acknowledged by
//! fewer than all in-sync replicas was lost. The leader then answers with the end
//! offset of the largest epoch it shares, instead of records.
//!
//! The consumer must neither skip the leader's records past that point nor hand the
//! application records twice without saying so. As Kafka's consumer does, it goes back
//! to the smaller of that offset and its position. If the application had already been
//! given records past it, the loss is logged as a warning and kept as a
//! [`LogTruncation`] for [`Consumer::take_truncations`]; with `auto_offset_reset =
//! error`, `poll` also reports it as [`Error::LogTruncated`] and the partition waits
//! for a seek. Records only fetched, not yet returned, are dropped and fetched again.

use super::Consumer;
use crate::config::AutoOffsetReset;
use crate::error::Error;
use crate::record::TopicPartition;

/// Truncations kept for [`Consumer::take_truncations`]; older ones are dropped first.
pub(super) const TRUNCATIONS_KEPT_MAX: usize = 1_024;

/// Records of a partition the application was given and the leader's log no longer
/// has: the offsets from `diverging_end_offset` up to `position` may now hold other
/// records (or none yet). The consumer went back to `diverging_end_offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTruncation {
    /// The partition.
    pub partition: TopicPartition,
    /// The consumer's position when the truncation was found.
    pub position: u64,
    /// Where the leader's log diverges from what the consumer read.
    pub diverging_end_offset: u64,
}

impl Consumer {
    /// The log truncations detected since the last call, oldest first (at most the
    /// last 1024). Each names records the application was given that are no longer in
    /// the partition's log; the consumer already reads on from where it diverged.
    pub fn take_truncations(&mut self) -> Vec<LogTruncation> {
        self.truncations.drain(..).collect()
    }

    /// Takes a fetch answer saying that `tp`'s log diverges from what was fetched: the
    /// leader's epoch `diverging_epoch` ends at `diverging_end_offset`.
    pub(super) fn diverged(
        &mut self,
        tp: &TopicPartition,
        diverging_epoch: u32,
        diverging_end_offset: u64,
    ) {
        let Some(position) = self.partitions.get(tp).and_then(|state| state.position) else {
            return;
        };
        let target = diverging_end_offset.min(position);
        self.seek(tp, target)
            .expect("the caller checked it is assigned");
        let state = self.partitions.get_mut(tp).expect("assigned");
        // At the divergence point, the leader's log has `diverging_epoch` up to it.
        state.last_fetched_epoch = (target == diverging_end_offset).then_some(diverging_epoch);
        if diverging_end_offset >= position {
            tracing::info!(
                %tp,
                position,
                diverging_end_offset,
                "records fetched but not yet returned are no longer in the leader's log; fetching again"
            );
            return;
        }
        tracing::warn!(
            %tp,
            position,
            diverging_end_offset,
            diverging_epoch,
            "log truncation: the leader no longer has records this consumer returned, from offset {diverging_end_offset} up to {position}; reading on from {diverging_end_offset}"
        );
        if self.truncations.len() == TRUNCATIONS_KEPT_MAX {
            self.truncations.pop_front();
        }
        self.truncations.push_back(LogTruncation {
            partition: tp.clone(),
            position,
            diverging_end_offset,
        });
        if self.config.auto_offset_reset == AutoOffsetReset::Error {
            state.paused = true;
            self.errors.push_back(Error::LogTruncated {
                topic: tp.topic.clone(),
                partition: tp.partition,
                position,
                diverging_end_offset,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::ConsumerConfig;
    use crate::consumer::tests::record;

    use super::*;

    fn consumer_at(position: u64, reset: AutoOffsetReset) -> (Consumer, TopicPartition) {
        let mut consumer = Consumer::new(ConsumerConfig {
            auto_offset_reset: reset,
            ..ConsumerConfig::new("127.0.0.1:1")
        })
        .unwrap();
        let tp = TopicPartition::new("t", 0);
        consumer.assign(std::slice::from_ref(&tp));
        consumer.seek(&tp, position).unwrap();
        (consumer, tp)
    }

    #[tokio::test]
    async fn records_returned_past_the_divergence_are_reported_and_read_again_from_it() {
        let (mut consumer, tp) = consumer_at(10, AutoOffsetReset::Earliest);
        let state = consumer.partitions.get_mut(&tp).unwrap();
        state.fetch_offset = 14;
        state.last_fetched_epoch = Some(4);
        let epoch = state.epoch;
        consumer
            .buffer
            .push_back(vec![record(0, 10), record(0, 11)].into_iter());
        consumer.recount_buffer();

        consumer.diverged(&tp, 3, 7);
        let state = &consumer.partitions[&tp];
        assert_eq!((state.position, state.fetch_offset), (Some(7), 7));
        assert_eq!(state.last_fetched_epoch, Some(3));
        assert_ne!(state.epoch, epoch, "fetches issued before are dropped");
        assert!(!state.paused);
        assert_eq!(consumer.buffered().count(), 0, "buffered records dropped");
        assert!(consumer.errors.is_empty(), "reset by policy, not an error");
        assert_eq!(
            consumer.take_truncations(),
            [LogTruncation {
                partition: tp,
                position: 10,
                diverging_end_offset: 7,
            }]
        );
        assert!(consumer.take_truncations().is_empty(), "taken once");
    }

    #[tokio::test]
    async fn a_divergence_past_the_position_refetches_without_reporting() {
        let (mut consumer, tp) = consumer_at(10, AutoOffsetReset::Earliest);
        let state = consumer.partitions.get_mut(&tp).unwrap();
        state.fetch_offset = 14;
        state.last_fetched_epoch = Some(4);

        consumer.diverged(&tp, 3, 12);
        let state = &consumer.partitions[&tp];
        assert_eq!((state.position, state.fetch_offset), (Some(10), 10));
        assert_eq!(
            state.last_fetched_epoch, None,
            "the epoch before the position is not known"
        );
        assert!(consumer.take_truncations().is_empty());
        assert!(consumer.errors.is_empty());

        // At the position exactly, the leader's epoch there is known.
        consumer.diverged(&tp, 3, 10);
        assert_eq!(consumer.partitions[&tp].last_fetched_epoch, Some(3));
        assert!(consumer.take_truncations().is_empty());
    }

    #[tokio::test]
    async fn with_auto_offset_reset_error_poll_reports_it_and_the_partition_waits_for_a_seek() {
        let (mut consumer, tp) = consumer_at(10, AutoOffsetReset::Error);
        consumer.diverged(&tp, 3, 7);
        assert!(consumer.partitions[&tp].paused);
        let error = consumer.errors.pop_front().expect("reported");
        assert!(
            matches!(
                error,
                Error::LogTruncated {
                    position: 10,
                    diverging_end_offset: 7,
                    ..
                }
            ),
            "{error}"
        );
        assert_eq!(consumer.take_truncations().len(), 1);
        consumer.seek(&tp, 7).unwrap();
        assert!(!consumer.partitions[&tp].paused);
    }

    #[tokio::test]
    async fn only_the_latest_truncations_are_kept() {
        let (mut consumer, tp) = consumer_at(0, AutoOffsetReset::Earliest);
        for position in 1..=TRUNCATIONS_KEPT_MAX as u64 + 5 {
            consumer.seek(&tp, position).unwrap();
            consumer.diverged(&tp, 1, position - 1);
        }
        let kept = consumer.take_truncations();
        assert_eq!(kept.len(), TRUNCATIONS_KEPT_MAX);
        assert_eq!(kept[0].position, 6);
    }
}
