//! Partition log benchmarks, each against a plain baseline measured in the same run.
//!
//! - `storage_append`: 16 KiB batches appended with `Durability::Never` vs a plain
//!   `File::write_all` loop of the same bytes. Both write into fresh files that are
//!   replaced every `APPEND_FILE_BYTES`, outside the timed region.
//! - `storage_read`: a sequential read of `READ_LOG_BYTES` through `Log::read` (mmap,
//!   1 MiB per read), copying every returned `Bytes` into a buffer as a socket write
//!   would, vs a plain memcpy of the same bytes from a heap buffer.
//! - `storage_lookup`: `Log::read` of one batch at a random offset (index lookup, header
//!   scan, `Bytes` creation) and `offset_for_timestamp`, in ns/op.
//! - `storage_open`: open of a `OPEN_LOG_BYTES` partition after a clean shutdown and
//!   after a crash (drop without close). `STRATA_BENCH_OPEN_BYTES` overrides the size
//!   (e.g. 1073741824 for the 1 GiB figure in docs/benchmarks-journal.md, "Storage").

use std::fs::File;
use std::hint::black_box;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use strata_protocol::batch::BatchBuilder;
use strata_storage::{Durability, Flusher, Log, LogConfig, RealIo};

const BATCH_BYTES: usize = 16 * 1024;
const APPEND_FILE_BYTES: usize = 256 << 20;
const READ_LOG_BYTES: usize = 64 << 20;
const READ_BYTES_MAX: usize = 1 << 20;
const LOOKUP_BATCH_BYTES: usize = 1024;
const LOOKUP_LOG_BYTES: usize = 64 << 20;
const OPEN_LOG_BYTES: usize = 256 << 20;

/// One batch of about `bytes` bytes: 100-byte records.
fn batch(bytes: usize, timestamp: i64) -> Bytes {
    let value = [0xA5u8; 100];
    let mut builder = BatchBuilder::with_capacity(bytes + 256);
    let mut index = 0;
    while builder.len() + 110 < bytes {
        builder.push(timestamp + index, None, Some(&value), &[]);
        index += 1;
    }
    builder.finish()
}

fn config(durability: Durability) -> LogConfig {
    LogConfig {
        durability,
        retention_ms: None,
        ..LogConfig::default()
    }
}

fn open(dir: &Path, config: LogConfig, flusher: &Flusher) -> Log {
    Log::open(dir, config, flusher.clone(), Arc::new(RealIo)).expect("open")
}

/// Times `iters` appends through `append`, starting a fresh file through `fresh` every
/// `APPEND_FILE_BYTES` (untimed).
fn time_appends<T>(
    iters: u64,
    mut fresh: impl FnMut() -> T,
    mut append: impl FnMut(&T),
) -> Duration {
    let per_file = (APPEND_FILE_BYTES / BATCH_BYTES) as u64;
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let target = fresh();
        let count = per_file.min(iters - done);
        let start = Instant::now();
        for _ in 0..count {
            append(&target);
        }
        total += start.elapsed();
        done += count;
    }
    total
}

fn append(c: &mut Criterion) {
    let payload = batch(BATCH_BYTES, 1_700_000_000_000);
    let flusher = Flusher::start().expect("flusher");
    let mut group = c.benchmark_group("storage_append");
    group.throughput(Throughput::Bytes(payload.len() as u64));
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("log_append_16k_never", |b| {
        b.iter_custom(|iters| {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut generation = 0;
            time_appends(
                iters,
                || {
                    generation += 1;
                    open(
                        &dir.path().join(generation.to_string()),
                        config(Durability::Never),
                        &flusher,
                    )
                },
                |log| {
                    black_box(log.append(&payload, 1).expect("append"));
                },
            )
        });
    });
    group.bench_function("file_write_all_16k", |b| {
        b.iter_custom(|iters| {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut generation = 0;
            time_appends(
                iters,
                || {
                    generation += 1;
                    File::create(dir.path().join(generation.to_string())).expect("create")
                },
                |file| {
                    let mut file: &File = file;
                    file.write_all(&payload).expect("write");
                },
            )
        });
    });
    group.finish();
}

fn read(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let flusher = Flusher::start().expect("flusher");
    let log = open(dir.path(), config(Durability::Never), &flusher);
    let payload = batch(BATCH_BYTES, 1_700_000_000_000);
    while (log.size_bytes() as usize) < READ_LOG_BYTES {
        log.append(&payload, 1).expect("append");
    }
    let end = log.log_end_offset();
    let size = log.size_bytes() as usize;
    let heap: Vec<u8> = vec![0x5A; size];
    let mut sink = vec![0u8; READ_BYTES_MAX + BATCH_BYTES];
    let mut group = c.benchmark_group("storage_read");
    group.throughput(Throughput::Bytes(size as u64));
    group.bench_function("log_read_mmap", |b| {
        b.iter(|| {
            let mut offset = 0;
            while offset < end {
                let result = log.read(offset, READ_BYTES_MAX, u64::MAX).expect("read");
                sink[..result.bytes.len()].copy_from_slice(&result.bytes);
                offset = result.next_offset;
            }
            black_box(&sink);
        });
    });
    group.bench_function("memcpy", |b| {
        b.iter(|| {
            for chunk in heap.chunks(READ_BYTES_MAX) {
                sink[..chunk.len()].copy_from_slice(black_box(chunk));
            }
            black_box(&sink);
        });
    });
    group.finish();
}

fn lookup(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let flusher = Flusher::start().expect("flusher");
    let log = open(dir.path(), config(Durability::Never), &flusher);
    let mut timestamp = 1_700_000_000_000;
    while (log.size_bytes() as usize) < LOOKUP_LOG_BYTES {
        let info = log
            .append(&batch(LOOKUP_BATCH_BYTES, timestamp), 1)
            .expect("append");
        timestamp = info.max_timestamp + 1;
    }
    let end = log.log_end_offset();
    let first_timestamp = 1_700_000_000_000;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut group = c.benchmark_group("storage_lookup");
    group.bench_function("read_one_batch_at_random_offset", |b| {
        b.iter(|| black_box(log.read(next() % end, 1, u64::MAX).expect("read")));
    });
    let span = (timestamp - first_timestamp) as u64;
    group.bench_function("offset_for_timestamp", |b| {
        b.iter(|| {
            let target = first_timestamp + (next() % span) as i64;
            black_box(log.offset_for_timestamp(target).expect("lookup"))
        });
    });
    group.finish();
}

fn open_after(c: &mut Criterion) {
    let bytes = std::env::var("STRATA_BENCH_OPEN_BYTES")
        .ok()
        .and_then(|bytes| bytes.parse().ok())
        .unwrap_or(OPEN_LOG_BYTES);
    let dir = tempfile::tempdir().expect("tempdir");
    let flusher = Flusher::start().expect("flusher");
    {
        let log = open(dir.path(), config(Durability::Never), &flusher);
        let payload = batch(BATCH_BYTES, 1_700_000_000_000);
        while (log.size_bytes() as usize) < bytes {
            log.append(&payload, 1).expect("append");
        }
        log.close().expect("close");
    }
    let mut group = c.benchmark_group(format!("storage_open_{}mib", bytes >> 20));
    group.sample_size(10);
    group.bench_function("after_clean_shutdown", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let log = open(dir.path(), config(Durability::Never), &flusher);
                total += start.elapsed();
                assert!(log.opened_clean());
                log.close().expect("close");
            }
            total
        });
    });
    // Leave the directory as a crash does: no clean shutdown marker.
    drop(open(dir.path(), config(Durability::Never), &flusher));
    group.bench_function("after_crash", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let log = open(dir.path(), config(Durability::Never), &flusher);
                total += start.elapsed();
                assert!(!log.opened_clean());
                drop(log);
            }
            total
        });
    });
    group.finish();
}

criterion_group!(benches, append, read, lookup, open_after);
criterion_main!(benches);
