//! The Raft log, vote and committed index on disk: openraft's `RaftLogStorage`.
//!
//! Two files in the quorum's directory:
//! - `log`: one [`record`](super::record) per entry, its body the entry as JSON, in index
//!   order. Appends are fsynced before openraft hears they are durable; a truncate cuts
//!   the file at the first removed entry and fsyncs; a purge rewrites the file without the
//!   purged entries (a new file renamed over the old one).
//! - `state`: one record, `{"vote", "committed", "purged"}` as JSON, replaced atomically
//!   on every change. `purged` is written before the log is rewritten, so entries at or
//!   below it that a crash left in `log` are skipped when it is read back.
//!
//! The entries not purged are also kept in memory: snapshots every
//! [`SNAPSHOT_INTERVAL_ENTRIES`](super::SNAPSHOT_INTERVAL_ENTRIES) keep the log short, and
//! replication reads never touch the disk. Disk work runs on the blocking pool.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::File;
use std::io::{self, Write};
use std::ops::RangeBounds;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, RaftLogReader};
use serde::{Deserialize, Serialize};

use super::QuorumError;
use super::record::{self, HEADER_BYTES};
use super::types::{Entry, LogId, StorageError, TypeConfig, Vote};

/// The log file's name in the quorum directory.
pub(crate) const LOG_FILE: &str = "log";
/// The vote, committed and purged file's name in the quorum directory.
pub(crate) const STATE_FILE: &str = "state";

/// What the `state` file holds.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct DurableState {
    vote: Option<Vote>,
    committed: Option<LogId>,
    purged: Option<LogId>,
}

/// The entries not purged, by index; shared with the log readers.
type Entries = Arc<RwLock<BTreeMap<u64, Entry>>>;

/// The log store openraft drives. Not shared: openraft owns it and serialises its writes.
pub(crate) struct LogStore {
    entries: Entries,
    state: DurableState,
    disk: Arc<Mutex<LogDisk>>,
    committed_index: Arc<AtomicU64>,
}

/// Reads entries for replication; cheap to clone, thread-safe.
#[derive(Clone)]
pub(crate) struct LogReader {
    entries: Entries,
}

/// The log and state files; used only on the blocking pool, one operation at a time.
struct LogDisk {
    dir: PathBuf,
    file: File,
    /// Each entry's byte offset in `log`.
    offsets: BTreeMap<u64, u64>,
    /// The length of `log`.
    log_bytes: u64,
}

impl LogStore {
    /// Opens the log in `dir`, cutting a torn tail.
    ///
    /// # Errors
    /// I/O failures, and damage that is not a torn tail, with the file they concern.
    pub(crate) fn open(dir: &Path) -> Result<Self, QuorumError> {
        let state_path = dir.join(STATE_FILE);
        let state = match record::read_single(&state_path)? {
            None => DurableState::default(),
            Some(body) => serde_json::from_slice(&body)
                .map_err(|error| record::corrupt(&state_path, HEADER_BYTES, error.to_string()))?,
        };
        let (disk, entries) = LogDisk::open(dir, state.purged.map(|purged| purged.index))?;
        let committed = state.committed.map_or(0, |committed| committed.index);
        Ok(LogStore {
            entries: Arc::new(RwLock::new(entries)),
            state,
            disk: Arc::new(Mutex::new(disk)),
            committed_index: Arc::new(AtomicU64::new(committed)),
        })
    }

    /// The committed index as last saved; updated with each commit.
    pub(crate) fn committed_index(&self) -> Arc<AtomicU64> {
        self.committed_index.clone()
    }

    /// Runs `operation` on the disk files on the blocking pool.
    async fn on_disk<T: Send + 'static>(
        &self,
        operation: impl FnOnce(&mut LogDisk) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let disk = self.disk.clone();
        tokio::task::spawn_blocking(move || operation(&mut disk.lock().expect("log disk lock")))
            .await
            .map_err(io::Error::other)?
    }

    /// Writes the state file with the current vote, committed and purged.
    async fn save_state(&self, subject: ErrorSubject<u64>) -> Result<(), StorageError> {
        let body = serde_json::to_vec(&self.state).map_err(io::Error::other);
        let body = body.map_err(|error| storage_error(subject.clone(), error))?;
        self.on_disk(move |disk| disk.write_state(&body))
            .await
            .map_err(|error| storage_error(subject, error))
    }
}

impl LogDisk {
    /// Opens `log` in `dir`; returns the disk and the entries above `purged`.
    fn open(dir: &Path, purged: Option<u64>) -> Result<(Self, BTreeMap<u64, Entry>), QuorumError> {
        let path = dir.join(LOG_FILE);
        let file = record::open_append(&path)?;
        let bytes = std::fs::read(&path).map_err(record::io_error(&path))?;
        let scan = record::scan(&path, &bytes)?;
        if scan.valid_bytes < bytes.len() as u64 {
            tracing::warn!(
                path = %path.display(),
                valid_bytes = scan.valid_bytes,
                file_bytes = bytes.len(),
                "cutting the torn tail of the metadata log"
            );
            file.set_len(scan.valid_bytes)
                .map_err(record::io_error(&path))?;
            file.sync_all().map_err(record::io_error(&path))?;
        }
        let mut entries = BTreeMap::new();
        let mut offsets = BTreeMap::new();
        let mut expected = purged.map_or(0, |purged| purged + 1);
        for (offset, body) in scan.records {
            let at = offset as usize + HEADER_BYTES;
            let entry: Entry = serde_json::from_slice(body).map_err(|error| {
                record::corrupt(&path, at, format!("an undecodable entry: {error}"))
            })?;
            let index = entry.log_id.index;
            if purged.is_some_and(|purged| index <= purged) {
                continue; // purged, but a crash came before the log was rewritten
            }
            if index != expected {
                let reason = format!("entry {index} where entry {expected} belongs");
                return Err(record::corrupt(&path, at, reason));
            }
            expected = index + 1;
            offsets.insert(index, offset);
            entries.insert(index, entry);
        }
        let disk = LogDisk {
            dir: dir.to_path_buf(),
            file,
            offsets,
            log_bytes: scan.valid_bytes,
        };
        Ok((disk, entries))
    }

    /// Appends `records` (index and encoded entry) and fsyncs.
    fn append(&mut self, records: Vec<(u64, Vec<u8>)>) -> io::Result<()> {
        let mut bytes = Vec::new();
        let mut offsets = Vec::with_capacity(records.len());
        for (index, body) in records {
            offsets.push((index, self.log_bytes + bytes.len() as u64));
            record::encode(&body, &mut bytes)?;
        }
        self.file.write_all(&bytes)?;
        self.file.sync_data()?;
        self.offsets.extend(offsets);
        self.log_bytes += bytes.len() as u64;
        Ok(())
    }

    /// Removes the entries from `index` on, and fsyncs.
    fn truncate(&mut self, index: u64) -> io::Result<()> {
        let Some(&offset) = self.offsets.get(&index) else {
            return Ok(());
        };
        self.file.set_len(offset)?;
        self.file.sync_all()?;
        self.offsets.split_off(&index);
        self.log_bytes = offset;
        Ok(())
    }

    /// Rewrites `log` without the entries up to `index`.
    fn purge(&mut self, index: u64) -> io::Result<()> {
        let kept_from = self
            .offsets
            .range(index + 1..)
            .next()
            .map(|(_, &offset)| offset);
        let kept_from = kept_from.unwrap_or(self.log_bytes);
        let mut kept =
            vec![0; usize::try_from(self.log_bytes - kept_from).map_err(io::Error::other)?];
        self.file.read_exact_at(&mut kept, kept_from)?;
        let path = self.dir.join(LOG_FILE);
        record::replace_file(&path, &kept).map_err(io::Error::other)?;
        self.file = record::open_append(&path).map_err(io::Error::other)?;
        self.offsets = self
            .offsets
            .split_off(&(index + 1))
            .into_iter()
            .map(|(index, offset)| (index, offset - kept_from))
            .collect();
        self.log_bytes = kept.len() as u64;
        Ok(())
    }

    /// Replaces the state file with `body`.
    fn write_state(&mut self, body: &[u8]) -> io::Result<()> {
        record::write_single(&self.dir.join(STATE_FILE), body).map_err(io::Error::other)
    }
}

/// A storage error about `subject`, for openraft.
fn storage_error(subject: ErrorSubject<u64>, error: io::Error) -> StorageError {
    StorageError::from_io_error(subject, ErrorVerb::Write, error)
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let entries = self.entries.read().expect("log entries lock");
        Ok(entries
            .range(range)
            .map(|(_, entry)| entry.clone())
            .collect())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        LogReader {
            entries: self.entries.clone(),
        }
        .try_get_log_entries(range)
        .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let entries = self.entries.read().expect("log entries lock");
        let last = entries.last_key_value().map(|(_, entry)| entry.log_id);
        Ok(LogState {
            last_purged_log_id: self.state.purged,
            last_log_id: last.or(self.state.purged),
        })
    }

    async fn get_log_reader(&mut self) -> LogReader {
        LogReader {
            entries: self.entries.clone(),
        }
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.state.vote = Some(*vote);
        self.save_state(ErrorSubject::Vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.state.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.state.committed = committed;
        self.save_state(ErrorSubject::Store).await?;
        let index = committed.map_or(0, |committed| committed.index);
        self.committed_index.store(index, Ordering::Release);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.state.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut records = Vec::new();
        {
            let mut memory = self.entries.write().expect("log entries lock");
            for entry in entries {
                let body = serde_json::to_vec(&entry)
                    .map_err(|error| storage_error(ErrorSubject::Logs, io::Error::other(error)))?;
                records.push((entry.log_id.index, body));
                memory.insert(entry.log_id.index, entry);
            }
        }
        match self.on_disk(move |disk| disk.append(records)).await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(error) => {
                callback.log_io_completed(Err(io::Error::new(error.kind(), error.to_string())));
                Err(storage_error(ErrorSubject::Logs, error))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.entries
            .write()
            .expect("log entries lock")
            .split_off(&log_id.index);
        self.on_disk(move |disk| disk.truncate(log_id.index))
            .await
            .map_err(|error| storage_error(ErrorSubject::Logs, error))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.state.purged = Some(log_id);
        self.save_state(ErrorSubject::Logs).await?;
        {
            let mut memory = self.entries.write().expect("log entries lock");
            *memory = memory.split_off(&(log_id.index + 1));
        }
        self.on_disk(move |disk| disk.purge(log_id.index))
            .await
            .map_err(|error| storage_error(ErrorSubject::Logs, error))
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::cluster::raft::types::Payload;

    pub(super) fn entry(index: u64) -> (u64, Vec<u8>) {
        let log_id = LogId::new(CommittedLeaderId::new(1, 1), index);
        let entry = Entry {
            log_id,
            payload: EntryPayload::Normal(Payload(vec![index as u8])),
        };
        (index, serde_json::to_vec(&entry).unwrap())
    }

    fn reopen(dir: &Path, purged: Option<u64>) -> (LogDisk, Vec<u64>) {
        let (disk, entries) = LogDisk::open(dir, purged).unwrap();
        (disk, entries.into_keys().collect())
    }

    #[test]
    fn truncate_purge_and_append_keep_offsets_right_across_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let (mut disk, _) = reopen(dir.path(), None);
        disk.append((0..10).map(entry).collect()).unwrap();
        disk.truncate(7).unwrap();
        let (mut disk, indexes) = reopen(dir.path(), None);
        assert_eq!(indexes, (0..7).collect::<Vec<_>>());
        disk.purge(3).unwrap();
        disk.append((7..10).map(entry).collect()).unwrap();
        let (mut disk, indexes) = reopen(dir.path(), Some(3));
        assert_eq!(indexes, (4..10).collect::<Vec<_>>());
        disk.truncate(8).unwrap();
        disk.purge(5).unwrap();
        let (_, indexes) = reopen(dir.path(), Some(5));
        assert_eq!(indexes, vec![6, 7]);
    }

    #[test]
    fn entries_a_crash_left_below_purged_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let (mut disk, _) = reopen(dir.path(), None);
        disk.append((0..5).map(entry).collect()).unwrap();
        let (_, indexes) = reopen(dir.path(), Some(2));
        assert_eq!(indexes, vec![3, 4]);
    }

    #[test]
    fn a_gap_in_the_log_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let (mut disk, _) = reopen(dir.path(), None);
        disk.append(vec![entry(0), entry(1), entry(3)]).unwrap();
        let Err(error) = LogDisk::open(dir.path(), None) else {
            panic!("a gap must not open");
        };
        assert!(
            error.to_string().contains("entry 3 where entry 2 belongs"),
            "{error}"
        );
    }
}

/// The log's files against a model: appends, truncates, purges, torn tails and reopens.
#[cfg(test)]
mod model_tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::tests::entry;
    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Append(u64),
        Truncate(u64),
        Purge(u64),
        TearTail(Vec<u8>),
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (1u64..5).prop_map(Op::Append),
            1 => any::<u64>().prop_map(Op::Truncate),
            1 => any::<u64>().prop_map(Op::Purge),
            1 => proptest::collection::vec(any::<u8>(), 1..12).prop_map(Op::TearTail),
            1 => Just(Op::Reopen),
        ]
    }

    /// Applies `ops` to the disk and to a set of indexes, checking them against each other
    /// after every reopen.
    fn run(ops: &[Op]) {
        let dir = tempfile::tempdir().unwrap();
        let (mut disk, _) = LogDisk::open(dir.path(), None).unwrap();
        let mut model = BTreeSet::new();
        let mut purged: Option<u64> = None;
        for op in ops {
            let pick = |pick: u64| {
                let kept: Vec<u64> = model.iter().copied().collect();
                (!kept.is_empty()).then(|| kept[(pick % kept.len() as u64) as usize])
            };
            match op {
                Op::Append(count) => {
                    let next = model
                        .last()
                        .map_or(purged.map_or(0, |purged| purged + 1), |last| last + 1);
                    disk.append((next..next + count).map(entry).collect())
                        .unwrap();
                    model.extend(next..next + count);
                }
                Op::Truncate(pick_at) => {
                    if let Some(index) = pick(*pick_at) {
                        disk.truncate(index).unwrap();
                        model.split_off(&index);
                    }
                }
                Op::Purge(pick_at) => {
                    if let Some(index) = pick(*pick_at) {
                        purged = Some(index);
                        disk.purge(index).unwrap();
                        model = model.split_off(&(index + 1));
                    }
                }
                Op::TearTail(garbage) => {
                    // A partial header, or a header promising more bytes than follow.
                    let mut torn = 1000u32.to_le_bytes().to_vec();
                    torn.extend_from_slice(garbage);
                    torn.truncate(garbage.len());
                    disk.file.write_all(&torn).unwrap();
                    disk = LogDisk::open(dir.path(), purged).unwrap().0;
                }
                Op::Reopen => {
                    let (reopened, entries) = LogDisk::open(dir.path(), purged).unwrap();
                    assert_eq!(entries.into_keys().collect::<BTreeSet<_>>(), model);
                    disk = reopened;
                }
            }
        }
        let (_, entries) = LogDisk::open(dir.path(), purged).unwrap();
        assert_eq!(entries.into_keys().collect::<BTreeSet<_>>(), model);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
        #[test]
        fn the_log_reopens_to_the_model(ops in proptest::collection::vec(op(), 1..30)) {
            run(&ops);
        }
    }
}
