//! The Strata partition log on disk. Synchronous and tokio-free: the broker calls it from
//! blocking threads or through a thin adapter, and fsyncs run on a [`Flusher`] thread.
//!
//! A [`Log`] is one partition directory of segments named by their 20-digit base offset:
//! `<base>.log` holds record batches (the format of `strata_protocol::batch`) end to end,
//! `<base>.index` and `<base>.timeindex` are sparse indexes. Appends are `writev`s into the
//! page cache; reads return `Bytes` that share an `mmap` of the segment, with no copy.
//! `docs/storage.md` specifies every file byte by byte, the recovery algorithm and what
//! each [`Durability`] policy guarantees.
//!
//! # Layout
//! - [`log`](crate::Log): the public [`Log`] API: append, read, roll, truncate, retention.
//! - `segment`: one segment file, its mapping (and the SIGBUS rule) and its indexes.
//! - `index`: the in-memory sparse offset and time indexes and their file format.
//! - `scan`: the batch walk shared by recovery, index rebuilds and truncation.
//! - `producer`: idempotent producer state and its snapshot files.
//! - `recovery`: opening a directory after a clean shutdown or a crash.
//! - `checkpoint`: the recovery point and clean shutdown files.
//! - `epochs`: the leader-epoch cache and its checkpoint file.
//! - [`flusher`](crate::Flusher): the shared fsync thread and group commit.
//! - [`io`]: the I/O seam ([`io::Io`], [`io::IoFile`]): every file-system operation.
//! - [`sim`]: a simulated disk that loses what was not fsync'd at a power loss, for tests.
//! - [`config`](crate::LogConfig) and [`error`](crate::StorageError).

mod checkpoint;
mod config;
mod epochs;
mod error;
mod flusher;
mod index;
pub mod io;
mod log;
mod producer;
mod recovery;
mod scan;
mod segment;
pub mod sim;
mod unmap;

pub use config::{
    Durability, FLUSH_INTERVAL_MS_DEFAULT, INDEX_INTERVAL_BYTES_DEFAULT, LogConfig,
    PRODUCER_EXPIRATION_MS_DEFAULT, PRODUCERS_MAX_DEFAULT, RETENTION_MS_DEFAULT,
    SEGMENT_BYTES_DEFAULT, SEGMENT_BYTES_MAX, SEGMENT_MS_DEFAULT,
};
pub use error::{Result, StorageError};
pub use flusher::Flusher;
pub use io::{DirLock, Io, IoFile, RealFile, RealIo};
pub use log::{AppendInfo, Log, ReadResult, RetentionOutcome};
pub use segment::FileRange;
