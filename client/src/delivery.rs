//! Delivery outcomes: one [`BatchOutcome`] per batch, shared by the [`DeliveryFuture`] of
//! every record in it, as Kafka's `ProduceRequestResult` is. A record costs its future a
//! reference count and an index, not a channel of its own: the batch is resolved once,
//! and each record's metadata is derived from the batch's base offset when polled.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};

use crate::error::{Error, Result};
use crate::record::RecordMetadata;

/// The outcome of one batch: its base offset (`None` with `Acks::None`, where the broker
/// does not answer) or the error it failed with for good.
#[derive(Debug, Default)]
pub(crate) struct BatchOutcome {
    result: OnceLock<Result<Option<u64>>>,
    /// Tasks polling a future of the batch before it was resolved.
    waiters: Mutex<Vec<Waker>>,
}

impl BatchOutcome {
    /// Resolves the batch and wakes every waiting future. Only the first call counts.
    fn resolve(&self, result: Result<Option<u64>>) {
        if self.result.set(result).is_err() {
            return;
        }
        // Set before the lock: a poll that registers after this sees the result.
        let waiters = std::mem::take(&mut *self.waiters.lock().expect("waiters lock"));
        for waiter in waiters {
            waiter.wake();
        }
    }
}

/// The producer's side of a batch's outcome. Dropped unresolved (the producer's task
/// ended with its runtime), it fails the batch's records with [`Error::ProducerClosed`]
/// instead of leaving their futures pending forever.
#[derive(Debug, Default)]
pub(crate) struct BatchResolver(Arc<BatchOutcome>);

impl BatchResolver {
    /// The future of the batch's record number `index`.
    pub(crate) fn future(&self, index: u32, partition: u32, timestamp: i64) -> DeliveryFuture {
        DeliveryFuture {
            batch: Arc::clone(&self.0),
            index,
            partition,
            timestamp,
            waiter: None,
        }
    }

    /// Resolves every record of the batch: offsets are dense from `base_offset`.
    pub(crate) fn succeed(&self, base_offset: Option<u64>) {
        self.0.resolve(Ok(base_offset));
    }

    /// Fails every record of the batch with `error`.
    pub(crate) fn fail(&self, error: &Error) {
        self.0.resolve(Err(error.clone()));
    }
}

impl Drop for BatchResolver {
    fn drop(&mut self) {
        self.0.resolve(Err(Error::ProducerClosed));
    }
}

/// Resolves to a record's [`RecordMetadata`] once its batch is acknowledged, or to the
/// error it failed with for good. Dropping it does not cancel the send.
///
/// # Example
/// ```no_run
/// # async fn example(producer: strata_client::Producer) -> strata_client::Result<()> {
/// use strata_client::ProducerRecord;
///
/// let delivery = producer.send(ProducerRecord::new("orders", "hello")).await?;
/// let metadata = delivery.await?;
/// assert!(metadata.offset.is_some());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct DeliveryFuture {
    batch: Arc<BatchOutcome>,
    /// The record's index in its batch.
    index: u32,
    partition: u32,
    timestamp: i64,
    /// This future's slot in the batch's waiters, once it waited.
    waiter: Option<usize>,
}

impl DeliveryFuture {
    /// The partition the record was appended to.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    fn metadata(&self, result: &Result<Option<u64>>) -> Result<RecordMetadata> {
        match result {
            Ok(base_offset) => Ok(RecordMetadata {
                partition: self.partition,
                offset: base_offset.map(|base| base + u64::from(self.index)),
                timestamp: self.timestamp,
            }),
            Err(error) => Err(error.clone()),
        }
    }
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(result) = this.batch.result.get() {
            return Poll::Ready(this.metadata(result));
        }
        let mut waiters = this.batch.waiters.lock().expect("waiters lock");
        // Checked again under the lock: `resolve` sets the result before taking it.
        if let Some(result) = this.batch.result.get() {
            return Poll::Ready(this.metadata(result));
        }
        match this.waiter {
            Some(slot) => {
                if !waiters[slot].will_wake(cx.waker()) {
                    waiters[slot].clone_from(cx.waker());
                }
            }
            None => {
                this.waiter = Some(waiters.len());
                waiters.push(cx.waker().clone());
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use super::*;

    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll(
        future: &mut DeliveryFuture,
        waker: &Arc<CountingWaker>,
    ) -> Poll<Result<RecordMetadata>> {
        let waker = Waker::from(Arc::clone(waker));
        Pin::new(future).poll(&mut Context::from_waker(&waker))
    }

    #[test]
    fn every_record_of_a_batch_gets_its_offset_and_each_waiting_task_is_woken_once() {
        let batch = BatchResolver::default();
        let mut first = batch.future(0, 3, 10);
        let mut second = batch.future(1, 3, 11);
        let waker = Arc::new(CountingWaker(AtomicUsize::new(0)));
        assert!(poll(&mut first, &waker).is_pending());
        // Polled again with the same waker: one slot, not two.
        assert!(poll(&mut first, &waker).is_pending());
        assert!(poll(&mut second, &waker).is_pending());
        batch.succeed(Some(100));
        assert_eq!(waker.0.load(Ordering::SeqCst), 2);
        let Poll::Ready(Ok(metadata)) = poll(&mut second, &waker) else {
            panic!("resolved");
        };
        assert_eq!(
            metadata,
            RecordMetadata {
                partition: 3,
                offset: Some(101),
                timestamp: 11
            }
        );
        assert!(matches!(
            poll(&mut first, &waker),
            Poll::Ready(Ok(RecordMetadata {
                offset: Some(100),
                ..
            }))
        ));
        // A second resolution changes nothing.
        batch.fail(&Error::ProducerClosed);
        assert!(matches!(poll(&mut first, &waker), Poll::Ready(Ok(_))));
    }

    #[test]
    fn a_failed_batch_fails_every_record_and_acks_none_has_no_offsets() {
        let failed = BatchResolver::default();
        let mut record = failed.future(5, 0, 0);
        failed.fail(&Error::ProducerClosed);
        let waker = Arc::new(CountingWaker(AtomicUsize::new(0)));
        assert!(matches!(
            poll(&mut record, &waker),
            Poll::Ready(Err(Error::ProducerClosed))
        ));
        let unanswered = BatchResolver::default();
        let mut record = unanswered.future(5, 0, 0);
        unanswered.succeed(None);
        assert!(matches!(
            poll(&mut record, &waker),
            Poll::Ready(Ok(RecordMetadata { offset: None, .. }))
        ));
    }

    #[test]
    fn a_waker_replaced_between_polls_is_the_one_woken() {
        let batch = BatchResolver::default();
        let mut record = batch.future(0, 0, 0);
        let old = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let new = Arc::new(CountingWaker(AtomicUsize::new(0)));
        assert!(poll(&mut record, &old).is_pending());
        assert!(poll(&mut record, &new).is_pending());
        batch.succeed(Some(0));
        assert_eq!(old.0.load(Ordering::SeqCst), 0);
        assert_eq!(new.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_batch_dropped_unresolved_fails_its_records_with_producer_closed() {
        let batch = BatchResolver::default();
        let mut record = batch.future(0, 0, 0);
        let waker = Arc::new(CountingWaker(AtomicUsize::new(0)));
        assert!(poll(&mut record, &waker).is_pending());
        drop(batch);
        assert_eq!(waker.0.load(Ordering::SeqCst), 1);
        assert!(matches!(
            poll(&mut record, &waker),
            Poll::Ready(Err(Error::ProducerClosed))
        ));
    }
}
