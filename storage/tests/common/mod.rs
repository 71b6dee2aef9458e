//! Shared test helpers: a fault-injecting [`Io`], batch builders, seeds.
#![allow(dead_code)]

use std::io::{self, IoSlice};
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use bytes::Bytes;
use strata_protocol::batch::BatchBuilder;
use strata_storage::io::{Io, IoFile, RealIo};
use strata_storage::{Durability, LogConfig};

/// Faults to inject, shared by every file a [`FaultyIo`] opens.
#[derive(Debug)]
pub struct Faults {
    /// Bytes the "device" still accepts; a write beyond gets as far as it can, then the
    /// next call fails with ENOSPC.
    pub space_left_bytes: AtomicU64,
    /// Largest number of bytes one `writev` accepts (0 = no limit): short writes.
    pub write_bytes_max: AtomicUsize,
    /// Creates of files whose path contains the string fail with the `errno`: no space
    /// (`ENOSPC`) or no descriptor (`EMFILE`) for new files only.
    pub fail_creates: Mutex<Option<(&'static str, i32)>>,
    /// Every directory fsync fails with this `errno` (0: none); `EMFILE` stands for the
    /// directory's open failing.
    pub dir_sync_errno: AtomicI32,
    /// Every fsync fails with EIO.
    pub fail_sync: AtomicBool,
    /// Every write-back ahead of an fsync (`IoFile::write_back`) fails with EIO.
    pub fail_write_back: AtomicBool,
    /// The ranges (offset, length) of the write-backs that succeeded, in order.
    pub write_backs: Mutex<Vec<(u64, u64)>>,
    /// fsyncs of files (not directories) that succeeded.
    pub syncs: AtomicU64,
    /// fsyncs of directories that succeeded.
    pub dir_syncs: AtomicU64,
    /// The clock.
    pub now_ms: AtomicI64,
    gate: Mutex<Gate>,
    gate_changed: Condvar,
    write_back_gate: Mutex<Gate>,
    write_back_gate_changed: Condvar,
}

#[derive(Debug, Default)]
struct Gate {
    closed: bool,
    /// Callers a closed gate still lets through, one each.
    permits: usize,
    waiting: usize,
}

impl Gate {
    fn pass(gate: &Mutex<Self>, changed: &Condvar) {
        let mut state = gate.lock().unwrap();
        state.waiting += 1;
        changed.notify_all();
        while state.closed && state.permits == 0 {
            state = changed.wait(state).unwrap();
        }
        if state.closed {
            state.permits -= 1;
        }
        state.waiting -= 1;
    }

    fn set_closed(gate: &Mutex<Self>, changed: &Condvar, closed: bool) {
        let mut state = gate.lock().unwrap();
        state.closed = closed;
        state.permits = 0;
        changed.notify_all();
    }

    fn let_one_through(gate: &Mutex<Self>, changed: &Condvar) {
        gate.lock().unwrap().permits += 1;
        changed.notify_all();
    }

    /// Panics after 10 s: what a test waits for there did not happen.
    fn wait_held(gate: &Mutex<Self>, changed: &Condvar, count: usize) {
        let state = gate.lock().unwrap();
        let (state, _) = changed
            .wait_timeout_while(state, Duration::from_secs(10), |state| {
                state.waiting < count
            })
            .unwrap();
        assert!(
            state.waiting >= count,
            "{} held, not {count}",
            state.waiting
        );
    }
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            space_left_bytes: AtomicU64::new(u64::MAX),
            write_bytes_max: AtomicUsize::new(0),
            fail_creates: Mutex::new(None),
            dir_sync_errno: AtomicI32::new(0),
            fail_sync: AtomicBool::new(false),
            fail_write_back: AtomicBool::new(false),
            write_backs: Mutex::new(Vec::new()),
            syncs: AtomicU64::new(0),
            dir_syncs: AtomicU64::new(0),
            now_ms: AtomicI64::new(1_000_000),
            gate: Mutex::new(Gate::default()),
            gate_changed: Condvar::new(),
            write_back_gate: Mutex::new(Gate::default()),
            write_back_gate_changed: Condvar::new(),
        }
    }
}

impl Faults {
    /// From now on file fsyncs block until [`release_syncs`](Self::release_syncs).
    pub fn hold_syncs(&self) {
        Gate::set_closed(&self.gate, &self.gate_changed, true);
    }

    /// Unblocks held fsyncs.
    pub fn release_syncs(&self) {
        Gate::set_closed(&self.gate, &self.gate_changed, false);
    }

    /// Blocks until at least `count` fsyncs are held at the gate; panics after 10 s.
    pub fn wait_held(&self, count: usize) {
        Gate::wait_held(&self.gate, &self.gate_changed, count);
    }

    /// From now on write-backs block until
    /// [`release_write_backs`](Self::release_write_backs).
    pub fn hold_write_backs(&self) {
        Gate::set_closed(&self.write_back_gate, &self.write_back_gate_changed, true);
    }

    /// Unblocks held write-backs.
    pub fn release_write_backs(&self) {
        Gate::set_closed(&self.write_back_gate, &self.write_back_gate_changed, false);
    }

    /// Lets one held (or the next) write-back through, and holds the rest.
    pub fn let_one_write_back_through(&self) {
        Gate::let_one_through(&self.write_back_gate, &self.write_back_gate_changed);
    }

    /// Blocks until at least `count` write-backs are held at their gate; panics after
    /// 10 s.
    pub fn wait_write_backs_held(&self, count: usize) {
        Gate::wait_held(&self.write_back_gate, &self.write_back_gate_changed, count);
    }
}

/// An [`Io`] over the real file system that injects [`Faults`].
#[derive(Debug, Clone, Default)]
pub struct FaultyIo {
    pub faults: Arc<Faults>,
}

#[derive(Debug)]
struct FaultyFile {
    inner: Arc<dyn IoFile>,
    faults: Arc<Faults>,
}

impl IoFile for FaultyFile {
    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let space = self.faults.space_left_bytes.load(Ordering::SeqCst);
        if space == 0 {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        let cap = match self.faults.write_bytes_max.load(Ordering::SeqCst) {
            0 => usize::MAX,
            cap => cap,
        };
        let mut allowed = cap.min(usize::try_from(space).unwrap_or(usize::MAX));
        let mut limited = Vec::new();
        for buf in bufs {
            if allowed == 0 {
                break;
            }
            let take = buf.len().min(allowed);
            limited.push(IoSlice::new(&buf[..take]));
            allowed -= take;
        }
        let written = self.inner.write_vectored(&limited)?;
        if space != u64::MAX {
            self.faults
                .space_left_bytes
                .fetch_sub(written as u64, Ordering::SeqCst);
        }
        Ok(written)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }

    fn write_back(&self, offset: u64, len: u64) -> io::Result<()> {
        Gate::pass(
            &self.faults.write_back_gate,
            &self.faults.write_back_gate_changed,
        );
        if self.faults.fail_write_back.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.inner.write_back(offset, len)?;
        self.faults.write_backs.lock().unwrap().push((offset, len));
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        Gate::pass(&self.faults.gate, &self.faults.gate_changed);
        if self.faults.fail_sync.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.inner.sync_data()?;
        self.faults.syncs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl Io for FaultyIo {
    fn create(&self, path: &Path) -> io::Result<Arc<dyn IoFile>> {
        if let Some((name, errno)) = *self.faults.fail_creates.lock().unwrap()
            && path.to_string_lossy().contains(name)
        {
            return Err(io::Error::from_raw_os_error(errno));
        }
        let inner = RealIo.create(path)?;
        Ok(Arc::new(FaultyFile {
            inner,
            faults: Arc::clone(&self.faults),
        }))
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn IoFile>> {
        let inner = RealIo.open(path)?;
        Ok(Arc::new(FaultyFile {
            inner,
            faults: Arc::clone(&self.faults),
        }))
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        Gate::pass(&self.faults.gate, &self.faults.gate_changed);
        if self.faults.fail_sync.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        match self.faults.dir_sync_errno.load(Ordering::SeqCst) {
            0 => {}
            errno => return Err(io::Error::from_raw_os_error(errno)),
        }
        RealIo.sync_dir(path)?;
        self.faults.dir_syncs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn now_ms(&self) -> i64 {
        self.faults.now_ms.load(Ordering::SeqCst)
    }
}

/// Opens a log on the real file system.
pub fn open(
    dir: &Path,
    config: LogConfig,
    flusher: &strata_storage::Flusher,
) -> Result<strata_storage::Log, strata_storage::StorageError> {
    strata_storage::Log::open(dir, config, flusher.clone(), Arc::new(RealIo))
}

/// A batch of `records` records with `value_bytes`-byte values; record `i` has timestamp
/// `timestamp + i` and a value derived from `seed`.
pub fn batch(records: usize, value_bytes: usize, timestamp: i64, seed: u64) -> Bytes {
    let mut builder = BatchBuilder::with_capacity(64 + records * (value_bytes + 16));
    for index in 0..records {
        let value: Vec<u8> = (0..value_bytes)
            .map(|at| {
                (seed as usize)
                    .wrapping_mul(31)
                    .wrapping_add(at * 7 + index) as u8
            })
            .collect();
        builder.push(timestamp + index as i64, None, Some(&value), &[]);
    }
    builder.finish()
}

/// A config with small segments and a dense index, so tests roll and index a lot.
pub fn small_config(durability: Durability) -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        retention_ms: None,
        retention_bytes: None,
        durability,
        ..LogConfig::default()
    }
}

/// The seed for randomized tests: `STRATA_TEST_SEED` or a fixed default, printed so a
/// failure can be replayed.
pub fn seed(name: &str) -> u64 {
    let seed = std::env::var("STRATA_TEST_SEED")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(0x05EE_D0F5_7A7A);
    eprintln!("{name}: seed {seed} (replay with STRATA_TEST_SEED={seed})");
    seed
}

/// Every byte of the log from its start to its end, read in chunks of `max_bytes`,
/// checking each read's contract on the way.
pub fn read_all(log: &strata_storage::Log, max_bytes: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    let end = log.log_end_offset();
    while offset < end {
        let result = log.read(offset, max_bytes, u64::MAX).expect("read");
        assert!(
            !result.bytes.is_empty(),
            "read at {offset} below end {end} returned nothing"
        );
        assert!(result.next_offset > offset);
        out.extend_from_slice(&result.bytes);
        offset = result.next_offset;
    }
    assert_eq!(offset, end);
    out
}

/// The leader-epoch entries the log's batches call for, read from the batches themselves:
/// `(epoch, base offset)` of every batch whose epoch differs from the one before.
pub fn epochs_of_batches(log: &strata_storage::Log) -> Vec<(u32, u64)> {
    let bytes = read_all(log, 1 << 20);
    let mut entries: Vec<(u32, u64)> = Vec::new();
    let mut rest = bytes.as_slice();
    while !rest.is_empty() {
        let header = strata_protocol::batch::BatchHeader::parse(rest).expect("batch header");
        if entries
            .last()
            .is_none_or(|&(epoch, _)| epoch != header.leader_epoch)
        {
            entries.push((header.leader_epoch, header.base_offset));
        }
        rest = &rest[header.total_len()..];
    }
    entries
}
