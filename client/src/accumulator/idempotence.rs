//! The idempotent producer's side of the accumulator: its id and epoch, the sequence
//! numbers of its batches, and the renumbering after a numbered batch failed for good.
//!
//! A renumbering starts a new epoch, so the leader takes every renumbered batch as new
//! records. A batch an attempt may already have written (its `maybe_written`, set by the
//! sender; see `producer::outcome` for which failures count) is therefore never
//! renumbered: it is handed back to be failed with `Error::OutcomeUnknown`, and only
//! batches never sent or provably refused are renumbered. Retries under the same epoch
//! and sequence need no such care: the leader deduplicates them.

use strata_protocol::batch;

use super::{Accumulator, ProducerBatch};
use crate::record::TopicPartition;

/// An idempotent producer's id and epoch, given by the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerIdentity {
    pub(crate) id: i64,
    pub(crate) epoch: i16,
}

/// The idempotent producer's state.
#[derive(Debug)]
pub(super) struct Idempotence {
    in_flight_max: usize,
    identity: Option<ProducerIdentity>,
    /// A numbered batch failed for good, leaving a gap in its partition's sequence:
    /// nothing is sent until a new epoch renumbers the batches left.
    renumber_pending: bool,
}

impl Idempotence {
    /// Without an id yet: nothing is sent until InitProducerId gives one.
    pub(super) fn new(in_flight_max: usize) -> Self {
        Self {
            in_flight_max,
            identity: None,
            renumber_pending: false,
        }
    }
}

impl Accumulator {
    /// The identity batches are numbered under when sealed: none before the producer
    /// has one, or while a renumbering is pending (it renumbers them anyway).
    pub(super) fn numbering(&self) -> Option<ProducerIdentity> {
        self.idempotence
            .as_ref()
            .filter(|idempotence| !idempotence.renumber_pending)
            .and_then(|idempotence| idempotence.identity)
    }

    /// Per partition, how many requests may be in flight and how many batches one takes:
    /// `None` while an idempotent producer waits for an id or a renumbering.
    pub(super) fn send_limits(&self) -> Option<(usize, Option<usize>)> {
        match &self.idempotence {
            None => Some((1, None)),
            Some(idempotence) if idempotence.identity.is_none() || idempotence.renumber_pending => {
                None
            }
            Some(idempotence) => Some((idempotence.in_flight_max, Some(1))),
        }
    }

    /// What an idempotent producer must ask InitProducerId for before it can send its
    /// buffered records: a new id (`None`), or the next epoch of its current identity once
    /// a renumbering is pending and nothing is in flight. `Some` only when such a call is
    /// due.
    pub(crate) fn identity_due(&self) -> Option<Option<ProducerIdentity>> {
        let idempotence = self.idempotence.as_ref()?;
        let buffered = self
            .all_queues()
            .any(|queue| queue.open.is_some() || !queue.sealed.is_empty());
        if !buffered {
            return None;
        }
        match idempotence.identity {
            None => Some(None),
            Some(identity) if idempotence.renumber_pending && self.in_flight() == 0 => {
                Some(Some(identity))
            }
            Some(_) => None,
        }
    }

    fn in_flight(&self) -> usize {
        self.all_queues().map(|queue| queue.in_flight).sum()
    }

    /// Installs the identity InitProducerId gave (`None`: the cluster does not support
    /// idempotence, so the producer goes on without it) and renumbers every sealed batch
    /// under it, each partition's sequence from 0. Nothing may be in flight.
    ///
    /// A batch an attempt may have written is not renumbered: the leader would take it,
    /// under a new epoch or none, as new records, and write them twice. Such batches are
    /// returned instead, taken out of their queues and counted in flight as by
    /// [`drain_all`](Self::drain_all), for the caller to fail; the sequences of the
    /// batches left stay contiguous.
    pub(crate) fn set_identity(
        &mut self,
        identity: Option<ProducerIdentity>,
    ) -> Vec<(TopicPartition, Vec<ProducerBatch>)> {
        assert_eq!(self.in_flight(), 0, "renumbering with batches in flight");
        match identity {
            Some(identity) => {
                let idempotence = self.idempotence.as_mut().expect("idempotent producer");
                idempotence.identity = Some(identity);
                idempotence.renumber_pending = false;
            }
            None => self.idempotence = None,
        }
        let mut maybe_written = Vec::new();
        for (tp, queue) in self.queues_mut() {
            let (sendable, written): (Vec<_>, Vec<_>) = queue
                .sealed
                .drain(..)
                .partition(|batch| batch.maybe_written.is_none());
            queue.sealed = sendable.into();
            if !written.is_empty() {
                queue.in_flight += 1;
                maybe_written.push((tp, written));
            }
            queue.next_sequence = 0;
            for batch in &mut queue.sealed {
                match identity {
                    Some(identity) => {
                        batch.renumber(Some((identity, queue.next_sequence)));
                        queue.next_sequence =
                            batch::sequence_after(queue.next_sequence, batch.records);
                    }
                    None if batch.numbered => batch.renumber(None),
                    None => {}
                }
            }
        }
        maybe_written
    }

    /// A numbered batch failed for good: its partition's sequence now has a gap.
    pub(crate) fn renumber_later(&mut self) {
        if let Some(idempotence) = &mut self.idempotence {
            idempotence.renumber_pending = true;
        }
    }

    /// Whether the leader's OutOfOrderSequence for `batch` of `tp` is explained by the
    /// producer's own state, so the batch can be retried: an earlier batch of the
    /// partition is still unresolved (the leader has not seen it yet), or was when
    /// `batch` was sent (the leader saw `batch` first; the earlier one was written and
    /// acknowledged since, perhaps before this answer is handled), or a renumbering is
    /// pending.
    pub(crate) fn out_of_order_is_expected(
        &self,
        tp: &TopicPartition,
        batch: &ProducerBatch,
    ) -> bool {
        let renumbering = self
            .idempotence
            .as_ref()
            .is_some_and(|idempotence| idempotence.renumber_pending);
        let earlier_unresolved = self
            .queue(tp)
            .and_then(|queue| queue.unresolved.first())
            .is_some_and(|first| *first < batch.first_record);
        renumbering || earlier_unresolved || batch.drained_behind
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use strata_protocol::ErrorCode;
    use tokio::time::Instant;

    use super::*;
    use crate::accumulator::tests::{append_to, record, values};
    use crate::error::Error;

    /// (producer id, epoch, base sequence, first value) of each batch.
    fn numbers(batches: &mut [ProducerBatch]) -> Vec<(i64, i16, i32, String)> {
        batches
            .iter_mut()
            .map(|batch| {
                let header = batch::verify_crc(&batch.bytes()).unwrap();
                let first = values(batch).remove(0);
                (
                    header.producer_id,
                    header.producer_epoch,
                    header.base_sequence,
                    first,
                )
            })
            .collect()
    }

    /// An idempotent accumulator with three 2-record batches of partition 0 sealed.
    fn idempotent_with_three_batches(now: Instant) -> Accumulator {
        idempotent_with_batches(now, 3, 2)
    }

    /// An idempotent accumulator with `batch_count` 2-record batches of partition 0
    /// sealed, and `in_flight_max` of them in flight at most.
    fn idempotent_with_batches(
        now: Instant,
        batch_count: usize,
        in_flight_max: usize,
    ) -> Accumulator {
        // Room for two of these records per batch.
        let mut accumulator =
            Accumulator::new(150, 1 << 20, Duration::from_secs(60), Some(in_flight_max));
        for index in 0..2 * batch_count {
            append_to(
                &mut accumulator,
                0,
                &record(&format!("value-{index}-{}", "x".repeat(20))),
                now,
            );
        }
        accumulator.seal_all();
        accumulator
    }

    fn drain_one(accumulator: &mut Accumulator, now: Instant) -> ProducerBatch {
        let mut ready = accumulator.drain(now);
        assert_eq!(ready.len(), 1);
        let (_, mut batches) = ready.pop().unwrap();
        assert_eq!(batches.len(), 1, "an idempotent request carries one batch");
        batches.pop().unwrap()
    }

    #[test]
    fn idempotent_batches_wait_for_an_id_then_are_numbered_and_pipelined() {
        let now = Instant::now();
        let mut accumulator = idempotent_with_three_batches(now);
        let tp = TopicPartition::new("t", 0);
        assert!(
            accumulator.drain(now).is_empty(),
            "nothing goes before the id"
        );
        assert_eq!(accumulator.next_deadline(now), None);
        assert_eq!(accumulator.identity_due(), Some(None));
        let identity = ProducerIdentity { id: 7, epoch: 0 };
        accumulator.set_identity(Some(identity));
        assert_eq!(accumulator.identity_due(), None);
        // Two in flight at most, one batch each, in sequence order.
        let first = drain_one(&mut accumulator, now);
        let second = drain_one(&mut accumulator, now);
        assert!(accumulator.drain(now).is_empty(), "in-flight limit");
        // Sealed after the id: numbered at seal, continuing the sequence.
        append_to(&mut accumulator, 0, &record("late"), now);
        accumulator.seal_all();
        accumulator.complete(&tp, &[second.first_record]);
        let third = drain_one(&mut accumulator, now);
        accumulator.complete(&tp, &[first.first_record]);
        let fourth = drain_one(&mut accumulator, now);
        assert_eq!(
            numbers(&mut [first, second, third, fourth]),
            [
                (7, 0, 0, format!("value-0-{}", "x".repeat(20))),
                (7, 0, 2, format!("value-2-{}", "x".repeat(20))),
                (7, 0, 4, format!("value-4-{}", "x".repeat(20))),
                (7, 0, 6, "late".to_owned()),
            ]
        );
    }

    #[test]
    fn out_of_order_completion_keeps_flush_waiting_and_retries_keep_seal_order() {
        let now = Instant::now();
        let mut accumulator = idempotent_with_three_batches(now);
        let tp = TopicPartition::new("t", 0);
        accumulator.set_identity(Some(ProducerIdentity { id: 1, epoch: 0 }));
        let first = drain_one(&mut accumulator, now);
        let second = drain_one(&mut accumulator, now);
        // The second is acknowledged first (the first timed out but was written).
        accumulator.complete(&tp, &[second.first_record]);
        assert!(
            !accumulator.is_completed(&tp, 4),
            "the first batch is unresolved"
        );
        assert!(accumulator.out_of_order_is_expected(&tp, &second));
        let retry_at = now + Duration::from_millis(10);
        accumulator.requeue(&tp, vec![first], retry_at);
        assert!(accumulator.drain(now).is_empty(), "backoff");
        // The retry goes before the third batch, with its original number.
        let mut sent = [
            drain_one(&mut accumulator, retry_at),
            drain_one(&mut accumulator, retry_at),
        ];
        assert_eq!(
            numbers(&mut sent)
                .iter()
                .map(|number| number.2)
                .collect::<Vec<_>>(),
            [0, 4]
        );
        let [_, third] = sent;
        accumulator.complete(&tp, &[0]);
        assert!(accumulator.is_completed(&tp, 4));
        assert!(!accumulator.is_completed(&tp, 6));
        // The third went out behind the retry, so the leader may have seen it first and
        // refused it; the retry's acknowledgement may be handled before that refusal.
        assert!(accumulator.out_of_order_is_expected(&tp, &third));
        accumulator.requeue(&tp, vec![third], retry_at);
        let third = drain_one(&mut accumulator, retry_at);
        // Sent again with nothing earlier unresolved: a refusal now is a real gap.
        assert!(!accumulator.out_of_order_is_expected(&tp, &third));
        accumulator.complete(&tp, &[4]);
        assert!(accumulator.is_completed(&tp, 6));
        assert!(accumulator.is_idle());
    }

    #[test]
    fn a_failed_numbered_batch_stops_sending_until_a_new_epoch_renumbers_from_zero() {
        let now = Instant::now();
        let mut accumulator = idempotent_with_three_batches(now);
        let tp = TopicPartition::new("t", 0);
        let identity = ProducerIdentity { id: 3, epoch: 4 };
        accumulator.set_identity(Some(identity));
        let first = drain_one(&mut accumulator, now);
        let mut second = drain_one(&mut accumulator, now);
        // Sent, so finished: its renumbering rewrites the encoded batch, where the third
        // batch's, never sent, happens in its builder.
        second.bytes();
        // The first fails for good: the leader will refuse sequence 2 onwards.
        accumulator.complete(&tp, &[first.first_record]);
        accumulator.renumber_later();
        assert!(accumulator.drain(now).is_empty());
        assert!(accumulator.out_of_order_is_expected(&tp, &second));
        assert_eq!(
            accumulator.identity_due(),
            None,
            "a batch is still in flight"
        );
        accumulator.requeue(&tp, vec![second], now);
        assert_eq!(accumulator.identity_due(), Some(Some(identity)));
        accumulator.set_identity(Some(ProducerIdentity { id: 3, epoch: 5 }));
        let mut renumbered = [
            drain_one(&mut accumulator, now),
            drain_one(&mut accumulator, now),
        ];
        assert_eq!(
            numbers(&mut renumbered)
                .iter()
                .map(|number| (number.1, number.2))
                .collect::<Vec<_>>(),
            [(5, 0), (5, 2)]
        );
    }

    #[test]
    fn a_new_epoch_fails_a_batch_that_may_have_been_written_and_renumbers_a_refused_one() {
        let now = Instant::now();
        let mut accumulator = idempotent_with_batches(now, 4, 5);
        let tp = TopicPartition::new("t", 0);
        accumulator.set_identity(Some(ProducerIdentity { id: 3, epoch: 4 }));
        let first = drain_one(&mut accumulator, now);
        let refused = drain_one(&mut accumulator, now);
        let mut timed_out = drain_one(&mut accumulator, now);
        // The first fails for good; the second was refused before the append
        // (NotLeader); the third's acks wait timed out after the leader appended it.
        accumulator.complete(&tp, &[first.first_record]);
        accumulator.renumber_later();
        accumulator.requeue(&tp, vec![refused], now);
        timed_out.maybe_written = Some(Error::broker(ErrorCode::RequestTimedOut, None));
        accumulator.requeue(&tp, vec![timed_out], now);
        assert!(accumulator.identity_due().is_some());
        let mut left_out = accumulator.set_identity(Some(ProducerIdentity { id: 3, epoch: 5 }));
        assert_eq!(left_out.len(), 1);
        let (left_tp, mut batches) = left_out.pop().unwrap();
        assert_eq!(left_tp, tp);
        assert_eq!(
            numbers(&mut batches),
            [(3, 4, 4, format!("value-4-{}", "x".repeat(20)))],
            "the batch that may be in the log keeps its old number and is not sent"
        );
        // The refused batch and the one never sent are renumbered, contiguous from 0.
        let mut renumbered = [
            drain_one(&mut accumulator, now),
            drain_one(&mut accumulator, now),
        ];
        assert!(accumulator.drain(now).is_empty());
        assert_eq!(
            numbers(&mut renumbered),
            [
                (3, 5, 0, format!("value-2-{}", "x".repeat(20))),
                (3, 5, 2, format!("value-6-{}", "x".repeat(20))),
            ]
        );
        let [second, fourth] = renumbered;
        accumulator.complete(&tp, &[second.first_record]);
        accumulator.complete(&tp, &[fourth.first_record]);
        // Unresolved and counted in flight until the caller fails it: flush waits for it.
        assert!(!accumulator.is_completed(&tp, 8));
        assert!(!accumulator.is_idle());
        accumulator.complete(&tp, &[batches[0].first_record]);
        assert!(accumulator.is_completed(&tp, 8));
        assert!(accumulator.is_idle());
    }

    #[test]
    fn without_an_id_from_the_cluster_the_producer_goes_on_unnumbered() {
        let now = Instant::now();
        let mut accumulator = idempotent_with_three_batches(now);
        accumulator.set_identity(None);
        let mut ready = accumulator.drain(now);
        let batches = &mut ready[0].1;
        assert_eq!(batches.len(), 3, "one request with every sealed batch");
        assert!(
            numbers(batches)
                .iter()
                .all(|number| number.0 == -1 && number.2 == -1)
        );
        assert_eq!(accumulator.identity_due(), None);
    }
}
