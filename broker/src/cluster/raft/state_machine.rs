//! Drives the [`StateMachine`] for openraft, and keeps its last snapshot on disk.
//!
//! The state machine lives in memory; what makes it durable is the snapshot file plus the
//! log after it. At start the last snapshot is restored and openraft applies the log
//! entries after it again, so each entry reaches the (fresh) state machine once.
//!
//! `snapshot` holds one [`record`](super::record) whose body is
//! `meta_bytes: u32 LE | meta (openraft's SnapshotMeta as JSON) | the state machine's bytes`,
//! replaced atomically each time a snapshot is built or installed from the leader.

use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder};

use super::record::{self, HEADER_BYTES};
use super::types::{
    Entry, LogId, Payload, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use super::{QuorumError, StateMachine};

/// The snapshot file's name in the quorum directory.
pub(crate) const SNAPSHOT_FILE: &str = "snapshot";

/// A snapshot as kept in memory and on disk.
#[derive(Clone)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// The state machine and what openraft needs to know about it.
struct Applied<M> {
    machine: M,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    snapshot: Option<StoredSnapshot>,
    snapshots_built: u64,
}

/// openraft's state machine store over a [`StateMachine`]; clones share it (thread-safe).
pub(crate) struct StateMachineStore<M> {
    applied: Arc<Mutex<Applied<M>>>,
    dir: PathBuf,
    writes: SnapshotWrites,
}

/// Held while a snapshot is written; `true` once the quorum has shut down. openraft does
/// not wait for a snapshot being built when it stops, so shutdown closes this instead: no
/// file changes after [`Quorum::shutdown`](super::Quorum::shutdown) returns.
pub(crate) type SnapshotWrites = Arc<tokio::sync::Mutex<bool>>;

impl<M> Clone for StateMachineStore<M> {
    fn clone(&self) -> Self {
        StateMachineStore {
            applied: self.applied.clone(),
            dir: self.dir.clone(),
            writes: self.writes.clone(),
        }
    }
}

impl<M: StateMachine> StateMachineStore<M> {
    /// Restores `machine` (which starts empty) from the snapshot in `dir`, if there is one.
    ///
    /// # Errors
    /// The snapshot file cannot be read, is damaged, or the state machine refuses it.
    pub(crate) fn open(dir: &Path, machine: M) -> Result<Self, QuorumError> {
        let path = dir.join(SNAPSHOT_FILE);
        let snapshot = match record::read_single(&path)? {
            None => None,
            Some(body) => Some(decode_snapshot(&path, &body)?),
        };
        let mut applied = Applied {
            machine,
            last_applied: None,
            membership: StoredMembership::default(),
            snapshot: None,
            snapshots_built: 0,
        };
        if let Some(snapshot) = snapshot {
            applied.machine.restore(&snapshot.data).map_err(|reason| {
                let reason = format!("the state machine refused the snapshot: {reason}");
                record::corrupt(&path, HEADER_BYTES, reason)
            })?;
            applied.last_applied = snapshot.meta.last_log_id;
            applied.membership = snapshot.meta.last_membership.clone();
            applied.snapshot = Some(snapshot);
        }
        Ok(StateMachineStore {
            applied: Arc::new(Mutex::new(applied)),
            dir: dir.to_path_buf(),
            writes: SnapshotWrites::default(),
        })
    }

    /// The gate that shutdown closes.
    pub(crate) fn writes(&self) -> SnapshotWrites {
        self.writes.clone()
    }

    /// Writes `snapshot` to disk on the blocking pool and makes it the current one.
    async fn keep(&self, snapshot: StoredSnapshot) -> Result<(), StorageError> {
        let path = self.dir.join(SNAPSHOT_FILE);
        let signature = snapshot.meta.signature();
        let closed = self.writes.lock().await;
        if *closed {
            let error = io::Error::other("the metadata quorum has shut down");
            let subject = ErrorSubject::Snapshot(Some(signature));
            return Err(StorageError::from_io_error(
                subject,
                ErrorVerb::Write,
                error,
            ));
        }
        // A build runs beside an install: a snapshot built from an older state must not
        // replace a newer one installed meanwhile (the log behind that one is purged).
        let superseded = self
            .applied
            .lock()
            .expect("state machine lock")
            .snapshot
            .as_ref()
            .is_some_and(|kept| kept.meta.last_log_id >= snapshot.meta.last_log_id);
        if superseded {
            return Ok(());
        }
        let written = tokio::task::spawn_blocking(move || {
            let body = encode_snapshot(&snapshot)?;
            record::write_single(&path, &body).map_err(io::Error::other)?;
            Ok(snapshot)
        })
        .await
        .map_err(io::Error::other)
        .and_then(|written| written);
        let snapshot = written.map_err(|error| {
            StorageError::from_io_error(
                ErrorSubject::Snapshot(Some(signature)),
                ErrorVerb::Write,
                error,
            )
        })?;
        self.applied.lock().expect("state machine lock").snapshot = Some(snapshot);
        Ok(())
    }
}

/// The snapshot file's body for `snapshot`.
fn encode_snapshot(snapshot: &StoredSnapshot) -> io::Result<Vec<u8>> {
    let meta = serde_json::to_vec(&snapshot.meta)?;
    let meta_bytes = u32::try_from(meta.len()).map_err(io::Error::other)?;
    let mut body = Vec::with_capacity(4 + meta.len() + snapshot.data.len());
    body.extend_from_slice(&meta_bytes.to_le_bytes());
    body.extend_from_slice(&meta);
    body.extend_from_slice(&snapshot.data);
    Ok(body)
}

/// Reads a snapshot file's body back.
fn decode_snapshot(path: &Path, body: &[u8]) -> Result<StoredSnapshot, QuorumError> {
    let damaged = |reason: String| record::corrupt(path, HEADER_BYTES, reason);
    let (length, rest) = body
        .split_first_chunk::<4>()
        .ok_or_else(|| damaged("no metadata length".to_string()))?;
    let length = u32::from_le_bytes(*length) as usize;
    let meta = rest
        .get(..length)
        .ok_or_else(|| damaged("metadata cut short".to_string()))?;
    let meta: SnapshotMeta = serde_json::from_slice(meta)
        .map_err(|error| damaged(format!("undecodable metadata: {error}")))?;
    Ok(StoredSnapshot {
        meta,
        data: rest[length..].to_vec(),
    })
}

impl<M: StateMachine> RaftSnapshotBuilder<TypeConfig> for StateMachineStore<M> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let snapshot = {
            let mut applied = self.applied.lock().expect("state machine lock");
            applied.snapshots_built += 1;
            let index = applied.last_applied.map_or(0, |last| last.index);
            StoredSnapshot {
                meta: SnapshotMeta {
                    last_log_id: applied.last_applied,
                    last_membership: applied.membership.clone(),
                    snapshot_id: format!("{index}-{}", applied.snapshots_built),
                },
                data: applied.machine.snapshot(),
            }
        };
        self.keep(snapshot.clone()).await?;
        Ok(Snapshot {
            meta: snapshot.meta,
            snapshot: Box::new(Cursor::new(snapshot.data)),
        })
    }
}

impl<M: StateMachine> RaftStateMachine<TypeConfig> for StateMachineStore<M> {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let applied = self.applied.lock().expect("state machine lock");
        Ok((applied.last_applied, applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<u8>>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut applied = self.applied.lock().expect("state machine lock");
        let mut outcomes = Vec::new();
        for entry in entries {
            let index = entry.log_id.index;
            applied.last_applied = Some(entry.log_id);
            let outcome = match entry.payload {
                EntryPayload::Normal(Payload(command)) => applied.machine.apply(index, &command),
                EntryPayload::Blank => {
                    applied.machine.skip(index);
                    Vec::new()
                }
                EntryPayload::Membership(membership) => {
                    applied.membership = StoredMembership::new(Some(entry.log_id), membership);
                    applied.machine.skip(index);
                    Vec::new()
                }
            };
            debug_assert_eq!(
                applied.machine.applied(),
                index,
                "the state machine's applied index"
            );
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        {
            let mut applied = self.applied.lock().expect("state machine lock");
            applied.machine.restore(&data).map_err(|reason| {
                let subject = ErrorSubject::Snapshot(Some(meta.signature()));
                StorageError::from_io_error(subject, ErrorVerb::Read, io::Error::other(reason))
            })?;
            applied.last_applied = meta.last_log_id;
            applied.membership = meta.last_membership.clone();
        }
        self.keep(StoredSnapshot {
            meta: meta.clone(),
            data,
        })
        .await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let applied = self.applied.lock().expect("state machine lock");
        Ok(applied.snapshot.clone().map(|snapshot| Snapshot {
            meta: snapshot.meta,
            snapshot: Box::new(Cursor::new(snapshot.data)),
        }))
    }
}
