//! [`Flusher`]: one `std::thread` that fsyncs many logs, so a broker with thousands of
//! partitions does not need a thread per partition. Never runs on an async runtime.
//!
//! Logs ask for a flush ([`Flusher::request`]) after an append under
//! `Durability::EveryBatch` and after a roll; logs under `Durability::IntervalMs` are
//! also flushed when their interval elapses. A flush snapshots the log end offset, then
//! fsyncs: every append that finished before the snapshot is covered, and appends that
//! arrive during the fsync are covered by the next one (group commit).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Something the flusher can flush: a log. Called on the flusher thread.
pub(crate) trait Flushable: Send + Sync {
    /// fsyncs what is dirty and publishes the new durable offset. Errors poison the log
    /// inside; the flusher just moves on.
    fn flush_for_flusher(&self);
}

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
    next_id: u64,
    shutdown: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Handle {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.wake.notify_all();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        // The last handle can be dropped on the flusher thread itself (a log it was
        // flushing was dropped meanwhile); joining would deadlock, and it exits anyway.
        if let Some(thread) = thread
            && thread.thread().id() != thread::current().id()
        {
            let _ = thread.join();
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
    /// Starts the flusher thread.
    ///
    /// # Errors
    /// If the thread cannot be spawned.
    pub fn start() -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let thread_shared = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name("strata-flusher".to_owned())
            .spawn(move || run(&thread_shared))?;
        Ok(Self {
            handle: Arc::new(Handle {
                shared,
                thread: Mutex::new(Some(thread)),
            }),
        })
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

    /// Forgets a log.
    pub(crate) fn deregister(&self, id: u64) {
        self.handle.shared.lock().logs.remove(&id);
    }

    /// Asks for a flush of log `id` as soon as possible.
    pub(crate) fn request(&self, id: u64) {
        let mut state = self.handle.shared.lock();
        let Some(registration) = state.logs.get_mut(&id) else {
            return;
        };
        if registration.queued {
            return;
        }
        registration.queued = true;
        state.urgent.push(id);
        drop(state);
        self.handle.shared.wake.notify_all();
    }
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
        let due = take_due(&mut state, now);
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

fn take_due(state: &mut State, now: Instant) -> Vec<Arc<dyn Flushable>> {
    let mut ids: Vec<u64> = std::mem::take(&mut state.urgent);
    for (id, registration) in &mut state.logs {
        registration.queued = false;
        if let Some(interval) = registration.interval
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
