//! A broker-wide budget of bytes held at once: request frames being read and run
//! (`request_memory_bytes_max`), or replies queued for writers (`response_memory_bytes_max`).
//!
//! A budget is a fair semaphore of bytes with a gauge. Waiters are served in order, so a
//! large reservation is not starved by small ones. A reservation larger than the whole
//! budget is clamped to it, so it can still go alone.
//!
//! A reservation may also be taken at once, past the budget ([`MemoryBudget::overdraw`]),
//! when waiting could deadlock: what it takes beyond the free bytes is a debt, paid out
//! of the next bytes given back before any waiter gets them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Semaphore;

use crate::metrics;

/// A budget of bytes, named by its gauge. Clones share one budget. Thread-safe.
#[derive(Debug, Clone)]
pub(super) struct MemoryBudget(Arc<Budget>);

#[derive(Debug)]
struct Budget {
    permits: Semaphore,
    /// Bytes overdrawn and not yet paid back.
    debt: AtomicUsize,
    bytes_max: usize,
    /// The gauge of bytes reserved, such as `strata_request_memory_bytes`.
    gauge: &'static str,
}

impl MemoryBudget {
    /// A budget of `bytes_max` bytes whose reservations `gauge` shows.
    pub(super) fn new(bytes_max: usize, gauge: &'static str) -> Self {
        // A semaphore holds at most 2^61 permits on 64-bit targets: a budget above that is
        // no limit at all anyway.
        let bytes_max = bytes_max.min(Semaphore::MAX_PERMITS);
        Self(Arc::new(Budget {
            permits: Semaphore::new(bytes_max),
            debt: AtomicUsize::new(0),
            bytes_max,
            gauge,
        }))
    }

    /// Waits until `length` bytes of the budget (at most all of it) are free, then
    /// reserves them.
    ///
    /// # Cancel safety
    /// Cancel safe: a cancelled wait reserves nothing.
    pub(super) async fn reserve(&self, length: usize) -> Reservation {
        let bytes = self.clamp(length);
        if bytes > 0 {
            let count = u32::try_from(bytes).expect("clamped to u32::MAX");
            self.0
                .permits
                .acquire_many(count)
                .await
                .expect("a memory budget is never closed")
                .forget();
        }
        self.reserved(bytes)
    }

    /// `length`, at most the whole budget, and at most what a semaphore takes at once
    /// (a frame's length prefix caps every reservation below that anyway).
    fn clamp(&self, length: usize) -> usize {
        length.min(self.0.bytes_max).min(u32::MAX as usize)
    }

    /// Reserves `length` bytes (at most the whole budget) at once, past the budget if it
    /// must: what is not free is paid back out of the next bytes released.
    pub(super) fn overdraw(&self, length: usize) -> Reservation {
        let bytes = self.clamp(length);
        let taken = self.0.permits.forget_permits(bytes);
        self.0.debt.fetch_add(bytes - taken, Ordering::AcqRel);
        self.reserved(bytes)
    }

    fn reserved(&self, bytes: usize) -> Reservation {
        metrics::memory_reserved(self.0.gauge, bytes);
        Reservation {
            budget: self.clone(),
            bytes,
        }
    }

    /// Bytes of the budget not reserved now.
    #[cfg(test)]
    pub(super) fn bytes_free(&self) -> usize {
        self.0.permits.available_permits()
    }
}

/// A share of a [`MemoryBudget`], given back when dropped.
#[derive(Debug)]
pub(super) struct Reservation {
    budget: MemoryBudget,
    bytes: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let budget = &self.budget.0;
        let mut paid = 0;
        let _ = budget
            .debt
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |debt| {
                paid = debt.min(self.bytes);
                Some(debt - paid)
            });
        budget.permits.add_permits(self.bytes - paid);
        metrics::memory_released(budget.gauge, self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_overdraft_is_paid_back_before_a_waiter_is_served() {
        let budget = MemoryBudget::new(100, "test_memory_bytes");
        let held = budget.reserve(60).await;
        let overdrawn = budget.overdraw(70);
        assert_eq!(budget.bytes_free(), 0);
        let waiter = tokio::spawn({
            let budget = budget.clone();
            async move { budget.reserve(50).await }
        });
        // 60 back pays the 30 overdrawn first: 30 free, too few for the waiter (which
        // holds them until the rest come).
        drop(held);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiter.is_finished());
        drop(overdrawn);
        let reserved = waiter.await.unwrap();
        assert_eq!(budget.bytes_free(), 50);
        drop(reserved);
        assert_eq!(budget.bytes_free(), 100);
    }

    #[tokio::test]
    async fn a_reservation_larger_than_the_budget_takes_all_of_it() {
        let budget = MemoryBudget::new(100, "test_memory_bytes");
        let whole = budget.reserve(1000).await;
        assert_eq!(budget.bytes_free(), 0);
        drop(whole);
        let none = budget.reserve(0).await;
        assert_eq!(budget.bytes_free(), 100);
        drop(none);
        drop(budget.overdraw(1000));
        assert_eq!(budget.bytes_free(), 100);
    }
}
