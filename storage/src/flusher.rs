//! [`Flusher`]: one `std::thread` that fsyncs many logs, so a broker with thousands of
//! partitions does not need a thread per partition, and one that writes sealed segments
//! back to the device ahead of their fsync. Never runs on an async runtime.
//!
//! Logs ask for a flush ([`Flusher::request`]) after an append under
//! `Durability::EveryBatch`; logs under `Durability::IntervalMs` are also flushed when
//! their interval elapses. A flush snapshots the log end offset, then fsyncs: every append
//! that finished before the snapshot is covered, and appends that arrive during the fsync
//! are covered by the next one (group commit).
//!
//! After a roll, a log under `Durability::Never` (its sealed segment all dirty) asks
//! for a write-back instead ([`Flusher::write_back`]): the
//! write-back thread writes its sealed segments back one step at a time, pausing after
//! each step for as long as the step took (less while other logs wait), then asks for the
//! flush that fsyncs them. Up to 2 GiB of a sealed segment are written back without
//! holding up the fsyncs of other logs, at no more than about half the device's time
//! (docs/benchmarks.md#d-writeback-thread).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Something the flusher can flush: a log. Called on the flusher thread.
pub(crate) trait Flushable: Send + Sync {
    /// fsyncs what is dirty and publishes the new durable offset. A failed fsync poisons
    /// the log inside; running out of space or descriptors leaves the work to the next
    /// flush. The flusher just moves on.
    fn flush_for_flusher(&self);

    /// Writes the sealed segments not yet fsync'd back to the device, calling
    /// `between_steps` with each step's duration; it pauses, and says whether to go on.
    /// Returns whether they were all written back. Errors poison the log inside. Called
    /// on the write-back thread.
    fn write_back_for_flusher(&self, between_steps: &mut dyn FnMut(Duration) -> bool) -> bool;
}

/// Rounds of [`Flusher::run_pending`]: each flush or write-back asks for at most one more.
const RUN_PENDING_ROUNDS_MAX: usize = 1000;

struct Registration {
    log: Weak<dyn Flushable>,
    interval: Option<Duration>,
    next_due: Instant,
    queued: bool,
}

#[derive(Default)]
struct State {
    logs: HashMap<u64, Registration>,
    urgent: Vec<u64>,
    /// Logs waiting for the write-back thread, oldest first; each at most once.
    write_backs: VecDeque<u64>,
    next_id: u64,
    shutdown: bool,
    /// Pauses that began waiting, so a test can act during one.
    #[cfg(test)]
    pauses_begun: usize,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the flusher thread.
    wake: Condvar,
    /// Wakes the write-back thread, from its wait for work or from a pause.
    write_back_wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Handle {
    shared: Arc<Shared>,
    /// The flusher thread and the write-back thread.
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.wake.notify_all();
        self.shared.write_back_wake.notify_all();
        let threads =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        // The last handle can be dropped on one of the threads itself (a log it was
        // working on was dropped meanwhile); joining it would deadlock, and it exits anyway.
        for thread in threads {
            if thread.thread().id() != thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

/// A handle to the flusher thread. Cheap to clone; thread-safe. The thread stops when the
/// last handle (each open log holds one) is dropped.
#[derive(Clone)]
pub struct Flusher {
    handle: Arc<Handle>,
}

impl fmt::Debug for Flusher {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let logs = self.handle.shared.lock().logs.len();
        formatter
            .debug_struct("Flusher")
            .field("logs", &logs)
            .finish()
    }
}

impl Flusher {
    /// Starts the flusher thread and the write-back thread.
    ///
    /// # Errors
    /// If a thread cannot be spawned.
    pub fn start() -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            write_back_wake: Condvar::new(),
        });
        // If a spawn below fails, dropping `handle` stops and joins the thread started.
        let handle = Arc::new(Handle {
            shared: Arc::clone(&shared),
            threads: Mutex::new(Vec::new()),
        });
        let flusher_shared = Arc::clone(&shared);
        let flusher = thread::Builder::new()
            .name("strata-flusher".to_owned())
            .spawn(move || run(&flusher_shared))?;
        lock_threads(&handle).push(flusher);
        let write_back = thread::Builder::new()
            .name("strata-writeback".to_owned())
            .spawn(move || run_write_backs(&shared))?;
        lock_threads(&handle).push(write_back);
        Ok(Self { handle })
    }

    /// A flusher without threads, for deterministic tests and simulation: requested
    /// flushes and write-backs wait for [`run_pending`](Self::run_pending), and
    /// `Durability::IntervalMs` intervals never elapse.
    pub fn manual() -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            write_back_wake: Condvar::new(),
        });
        let handle = Arc::new(Handle {
            shared,
            threads: Mutex::new(Vec::new()),
        });
        Self { handle }
    }

    /// Runs the write-backs and flushes requested so far, and those they request in turn,
    /// on the calling thread, without pauses. Meant for a [`manual`](Self::manual) flusher,
    /// whose work happens only here.
    ///
    /// # Panics
    /// If the logs keep asking for work after `RUN_PENDING_ROUNDS_MAX` rounds.
    pub fn run_pending(&self) {
        let shared = &self.handle.shared;
        for _ in 0..RUN_PENDING_ROUNDS_MAX {
            let write_back = pop_write_back(&mut shared.lock());
            if let Some((id, log)) = write_back {
                if log.write_back_for_flusher(&mut |_| true) {
                    request(shared, id);
                }
                continue;
            }
            let due = take_due(&mut shared.lock(), None);
            if due.is_empty() {
                return;
            }
            for log in due {
                log.flush_for_flusher();
            }
        }
        panic!("logs still ask for flushes after {RUN_PENDING_ROUNDS_MAX} rounds");
    }

    /// Registers a log; returns its id.
    pub(crate) fn register(&self, log: Weak<dyn Flushable>, interval: Option<Duration>) -> u64 {
        let mut state = self.handle.shared.lock();
        let id = state.next_id;
        state.next_id += 1;
        let next_due = Instant::now() + interval.unwrap_or_default();
        let registration = Registration {
            log,
            interval,
            next_due,
            queued: false,
        };
        state.logs.insert(id, registration);
        drop(state);
        // A new interval changes the earliest deadline.
        self.handle.shared.wake.notify_all();
        id
    }

    /// Changes how often log `id` is flushed on its own (`None`: only on request).
    pub(crate) fn set_interval(&self, id: u64, interval: Option<Duration>) {
        let mut state = self.handle.shared.lock();
        if let Some(registration) = state.logs.get_mut(&id) {
            registration.interval = interval;
            registration.next_due = Instant::now() + interval.unwrap_or_default();
        }
        drop(state);
        // The earliest deadline may have moved.
        self.handle.shared.wake.notify_all();
    }

    /// Forgets a log. A write-back of it stops at its next step.
    pub(crate) fn deregister(&self, id: u64) {
        deregister(&self.handle.shared, id);
    }

    /// Asks for a flush of log `id` as soon as possible.
    pub(crate) fn request(&self, id: u64) {
        request(&self.handle.shared, id);
    }

    /// Asks the write-back thread to write log `id`'s sealed segments back, then to ask
    /// for the flush that fsyncs them.
    pub(crate) fn write_back(&self, id: u64) {
        let mut state = self.handle.shared.lock();
        if !state.logs.contains_key(&id) || state.write_backs.contains(&id) {
            return;
        }
        state.write_backs.push_back(id);
        drop(state);
        self.handle.shared.write_back_wake.notify_all();
    }
}

fn lock_threads(handle: &Handle) -> MutexGuard<'_, Vec<JoinHandle<()>>> {
    handle
        .threads
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

fn deregister(shared: &Shared, id: u64) {
    shared.lock().logs.remove(&id);
    // Ends a pause in its write-back.
    shared.write_back_wake.notify_all();
}

fn request(shared: &Shared, id: u64) {
    let mut state = shared.lock();
    let Some(registration) = state.logs.get_mut(&id) else {
        return;
    };
    if registration.queued {
        return;
    }
    registration.queued = true;
    state.urgent.push(id);
    drop(state);
    shared.wake.notify_all();
}

fn run_write_backs(shared: &Shared) {
    while let Some((id, log)) = next_write_back(shared) {
        let mut between_steps = |step: Duration| pause(shared, id, step);
        if log.write_back_for_flusher(&mut between_steps) {
            request(shared, id);
        }
    }
}

/// Blocks until some log waits for a write-back; `None` on shutdown.
fn next_write_back(shared: &Shared) -> Option<(u64, Arc<dyn Flushable>)> {
    let mut state = shared.lock();
    loop {
        if state.shutdown {
            return None;
        }
        if let Some(next) = pop_write_back(&mut state) {
            return Some(next);
        }
        state = shared
            .write_back_wake
            .wait(state)
            .unwrap_or_else(PoisonError::into_inner);
    }
}

/// The next log waiting for a write-back that is still open.
fn pop_write_back(state: &mut State) -> Option<(u64, Arc<dyn Flushable>)> {
    while let Some(id) = state.write_backs.pop_front() {
        let log = state
            .logs
            .get(&id)
            .and_then(|registration| registration.log.upgrade());
        if let Some(log) = log {
            return Some((id, log));
        }
    }
    None
}

/// Between two write-back steps of log `id`: pauses as long as the step took, divided by
/// one more than the number of logs waiting for a write-back (this one again included,
/// if it rolled meanwhile), so a backlog is written faster. A request that arrives during
/// the pause ends it. Returns whether to go on: not on shutdown or once the log is
/// closed.
fn pause(shared: &Shared, id: u64, step: Duration) -> bool {
    #[cfg_attr(not(test), expect(unused_mut))]
    let mut state = shared.lock();
    let go_on = |state: &State| !state.shutdown && state.logs.contains_key(&id);
    if !go_on(&state) {
        return false;
    }
    #[cfg(test)]
    {
        state.pauses_begun += 1;
    }
    let waiting = state.write_backs.len();
    let (state, _) = shared
        .write_back_wake
        .wait_timeout_while(state, pause_length(step, waiting), |state| {
            go_on(state) && state.write_backs.len() <= waiting
        })
        .unwrap_or_else(PoisonError::into_inner);
    go_on(&state)
}

/// How long [`pause`] waits after a step that took `step`, with `waiting` logs queued.
fn pause_length(step: Duration, waiting: usize) -> Duration {
    step / u32::try_from(waiting.saturating_add(1)).unwrap_or(u32::MAX)
}

fn run(shared: &Shared) {
    while let Some(logs) = next_work(shared) {
        for log in logs {
            log.flush_for_flusher();
        }
    }
}

/// Blocks until some log needs a flush; `None` on shutdown.
fn next_work(shared: &Shared) -> Option<Vec<Arc<dyn Flushable>>> {
    let mut state = shared.lock();
    loop {
        if state.shutdown {
            return None;
        }
        let now = Instant::now();
        let due = take_due(&mut state, Some(now));
        if !due.is_empty() {
            return Some(due);
        }
        let earliest = state
            .logs
            .values()
            .filter(|registration| registration.interval.is_some())
            .map(|registration| registration.next_due)
            .min();
        state = match earliest {
            Some(deadline) => {
                let wait = deadline.saturating_duration_since(now);
                shared
                    .wake
                    .wait_timeout(state, wait)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
            None => shared
                .wake
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner),
        };
    }
}

/// The logs asked for, and with `now` those whose interval has elapsed.
fn take_due(state: &mut State, now: Option<Instant>) -> Vec<Arc<dyn Flushable>> {
    let mut ids: Vec<u64> = std::mem::take(&mut state.urgent);
    for (id, registration) in &mut state.logs {
        registration.queued = false;
        if let Some(interval) = registration.interval
            && let Some(now) = now
            && registration.next_due <= now
        {
            registration.next_due = now + interval;
            ids.push(*id);
        }
    }
    ids.sort_unstable();
    ids.dedup();
    let mut due = Vec::with_capacity(ids.len());
    for id in ids {
        match state
            .logs
            .get(&id)
            .map(|registration| registration.log.upgrade())
        {
            Some(Some(log)) => due.push(log),
            Some(None) => {
                state.logs.remove(&id);
            }
            None => {}
        }
    }
    due
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Idle;

    impl Flushable for Idle {
        fn flush_for_flusher(&self) {}

        fn write_back_for_flusher(&self, _: &mut dyn FnMut(Duration) -> bool) -> bool {
            true
        }
    }

    /// Shared state with log 1 registered (for as long as `log` lives).
    fn shared_with_log(log: &Arc<dyn Flushable>) -> Arc<Shared> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            write_back_wake: Condvar::new(),
        });
        shared.lock().logs.insert(
            1,
            Registration {
                log: Arc::downgrade(log),
                interval: None,
                next_due: Instant::now(),
                queued: false,
            },
        );
        shared
    }

    #[test]
    fn a_pause_lasts_as_long_as_the_step_while_no_other_log_waits() {
        let log: Arc<dyn Flushable> = Arc::new(Idle);
        let shared = shared_with_log(&log);
        let step = Duration::from_millis(30);
        let started = Instant::now();
        assert!(pause(&shared, 1, step));
        assert!(started.elapsed() >= step);
    }

    #[test]
    fn a_backlog_shortens_the_pause() {
        let step = Duration::from_millis(12);
        assert_eq!(pause_length(step, 0), step);
        assert_eq!(pause_length(step, 1), Duration::from_millis(6));
        assert_eq!(pause_length(step, 3), Duration::from_millis(3));
        assert_eq!(pause_length(step, usize::MAX), Duration::ZERO);
    }

    /// Runs `action` on another thread once the next pause is waiting: a pause counts
    /// itself under the lock it then waits on, so once the count moves, it waits.
    fn during_next_pause(
        shared: &Arc<Shared>,
        action: impl FnOnce(&Shared) + Send + 'static,
    ) -> JoinHandle<()> {
        let shared = Arc::clone(shared);
        let begun = shared.lock().pauses_begun;
        thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(10);
            while shared.lock().pauses_begun == begun {
                assert!(Instant::now() < deadline, "no pause began");
                thread::yield_now();
            }
            action(&shared);
        })
    }

    #[test]
    fn a_pause_ends_when_another_log_asks_and_stops_the_write_back_on_close() {
        let log: Arc<dyn Flushable> = Arc::new(Idle);
        let shared = shared_with_log(&log);
        // A step this long would make a full pause fail the test.
        let long = Duration::from_secs(20);
        let short_pause = |shared: &Shared| {
            let started = Instant::now();
            let go_on = pause(shared, 1, long);
            assert!(
                started.elapsed() < long / 2,
                "paused {:?}",
                started.elapsed()
            );
            go_on
        };
        // Another log asks for a write-back during the pause: it ends, and goes on.
        let asker = during_next_pause(&shared, |shared| {
            shared.lock().write_backs.push_back(2);
            shared.write_back_wake.notify_all();
        });
        assert!(short_pause(&shared));
        asker.join().unwrap();
        // Closing (deregistering) the log during a pause ends it, and the write-back.
        shared.lock().write_backs.clear();
        let closer = during_next_pause(&shared, |shared| deregister(shared, 1));
        assert!(!short_pause(&shared));
        closer.join().unwrap();
        // And every write-back stops on shutdown.
        let other: Arc<dyn Flushable> = Arc::new(Idle);
        let shared = shared_with_log(&other);
        shared.lock().shutdown = true;
        assert!(!short_pause(&shared));
    }
}
