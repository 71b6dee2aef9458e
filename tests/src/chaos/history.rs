//! What a chaos run did and saw, as the checker needs it: every producer attempt with its
//! outcome, every record a consumer session read, every acknowledged commit, the final
//! drain and the fault windows. Times are microseconds since the run started.
//!
//! [`Recorder`] is the thread-safe handle the workload and the nemesis write through;
//! [`History`] is the plain value the checker reads, so tests build one by hand. It
//! serializes to JSON (`strata-chaos --history FILE`) for a look at what broke.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use serde::Serialize;

/// How one producer attempt ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteOutcome {
    /// The broker acknowledged the record at this offset.
    Acked {
        /// The offset the acknowledgement named.
        offset: u64,
    },
    /// The client gave up with this error. The record may or may not have been written:
    /// a timeout or a lost connection leaves that open, so the checker never counts a
    /// failed write as absent.
    Failed {
        /// The client's error.
        error: String,
    },
    /// No outcome before the run ended.
    Unknown,
}

/// One record a producer tried to write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WriteAttempt {
    /// The partition it was sent to.
    pub partition: u32,
    /// Its value, unique over the run (producer id plus counter).
    pub value: String,
    /// When `send` was called.
    pub sent_us: u64,
    /// When the outcome arrived; `None` while it is [`WriteOutcome::Unknown`].
    pub done_us: Option<u64>,
    /// The outcome.
    pub outcome: WriteOutcome,
}

/// Where one reader read one partition without a break: a consumer's ownership of a
/// partition from `on_assigned` to its revocation, or the final drain of a partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Session {
    /// Who read (a consumer's name, or `drain`).
    pub reader: String,
    /// The partition.
    pub partition: u32,
    /// When the session began.
    pub started_us: u64,
    /// Whether the session starts from the group's committed offset (a consumer group
    /// member) rather than from the log start (the drain).
    pub resumes_from_commit: bool,
}

/// One record a session read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Read {
    /// The index of its session in [`History::sessions`].
    pub session: usize,
    /// The offset it was read at.
    pub offset: u64,
    /// Its value.
    pub value: String,
}

/// One acknowledged commit of the consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Commit {
    /// The partition.
    pub partition: u32,
    /// The committed offset (the next one to read).
    pub offset: u64,
    /// When the acknowledgement arrived.
    pub acked_us: u64,
    /// Whether an administrator reset the group's offsets: the one way a committed
    /// offset may go backward.
    pub admin_reset: bool,
}

/// One fault: injected, then healed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaultWindow {
    /// What the nemesis did.
    pub what: String,
    /// The broker it went to and why that one (`broker 2, leader of chaos/1`), and what
    /// its steps came to, for the faults of more than one step.
    pub target: String,
    /// When it was injected.
    pub injected_us: u64,
    /// When it was healed.
    pub healed_us: u64,
}

/// Everything a run recorded. Commits are in the order they were acknowledged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct History {
    /// Whether the producers were idempotent: only then is a duplicate a violation.
    pub idempotent: bool,
    /// Whether the scenario accepts a partition that stays unavailable to the end (the
    /// last replica standing lost its power): then a partition the drain cannot read is
    /// reported as unavailable, and its acknowledged writes as unverifiable, not lost.
    pub unavailable_allowed: bool,
    /// Every producer attempt.
    pub writes: Vec<WriteAttempt>,
    /// Every read session, the drain's included.
    pub sessions: Vec<Session>,
    /// Every record read.
    pub reads: Vec<Read>,
    /// Every acknowledged commit, in acknowledgement order.
    pub commits: Vec<Commit>,
    /// The group's committed offsets read back after the run.
    pub final_commits: BTreeMap<u32, u64>,
    /// Whether they could be read back (only a run that allows unavailability goes on
    /// without them).
    pub final_commits_read: bool,
    /// The partitions the final drain read from log start to high watermark.
    pub drained: Vec<u32>,
    /// Every fault, in order.
    pub faults: Vec<FaultWindow>,
    /// When the producers started and stopped: the window unavailability is measured in.
    pub production_us: (u64, u64),
}

impl History {
    /// Opens a read session; returns its index for [`Read::session`].
    pub fn open_session(&mut self, session: Session) -> usize {
        self.sessions.push(session);
        self.sessions.len() - 1
    }
}

/// The shared, thread-safe recorder of a run's [`History`], with the run's clock.
/// Cloning shares it.
#[derive(Debug, Clone)]
pub struct Recorder {
    started: Instant,
    history: Arc<Mutex<History>>,
}

impl Recorder {
    /// A recorder whose clock starts now.
    pub fn new(idempotent: bool, unavailable_allowed: bool) -> Self {
        Self {
            started: Instant::now(),
            history: Arc::new(Mutex::new(History {
                idempotent,
                unavailable_allowed,
                ..History::default()
            })),
        }
    }

    /// Microseconds since the run started.
    pub fn now_us(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// The instant `offset` after the run started.
    pub fn instant_at(&self, offset: std::time::Duration) -> Instant {
        self.started + offset
    }

    /// Runs `change` on the history under its lock.
    pub fn with<T>(&self, change: impl FnOnce(&mut History) -> T) -> T {
        change(&mut self.history.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Records a `send`; returns the attempt's index for [`finish_write`](Self::finish_write).
    pub fn start_write(&self, partition: u32, value: String) -> usize {
        let sent_us = self.now_us();
        self.with(|history| {
            history.writes.push(WriteAttempt {
                partition,
                value,
                sent_us,
                done_us: None,
                outcome: WriteOutcome::Unknown,
            });
            history.writes.len() - 1
        })
    }

    /// Records the outcome of attempt `index`.
    pub fn finish_write(&self, index: usize, outcome: WriteOutcome) {
        let done_us = self.now_us();
        self.with(|history| {
            let write = history.writes.get_mut(index).expect("a recorded attempt");
            write.done_us = Some(done_us);
            write.outcome = outcome;
        });
    }

    /// A copy of the history so far.
    pub fn snapshot(&self) -> History {
        self.with(|history| history.clone())
    }
}
