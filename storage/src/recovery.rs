//! Opening a partition directory: find the segments, trust what the checkpoints prove,
//! validate the rest, cut a torn or corrupt tail, rebuild missing or bad indexes.
//! The algorithm is described step by step in `docs/storage.md`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::checkpoint::{self, CleanShutdown};
use crate::config::LogConfig;
use crate::epochs::{self, RecoveredEpochs};
use crate::error::{Result, StorageError};
use crate::index::SegmentIndex;
use crate::io::{Io, IoFile, read_if_exists, remove_if_exists, sync_parent};
use crate::scan::{Check, scan};
use crate::segment::{Segment, copy_to_new_file, index_path, log_path, map_file, time_index_path};

/// What recovery found.
#[derive(Debug)]
pub struct Recovered {
    /// The segments, oldest first; the last is the active one.
    pub segments: Vec<Arc<Segment>>,
    /// Whether the clean shutdown marker was present and matched, and no segment needed
    /// a scan (so no data bytes were read beyond each segment's tail).
    pub clean: bool,
    /// The recovery point read from disk.
    pub recovery_point: u64,
    /// The leader-epoch entries of the recovered batches.
    pub epochs: RecoveredEpochs,
}

/// How one segment was recovered.
struct SegmentOutcome {
    segment: Segment,
    /// Whether its tail was cut (later segments must go).
    cut: bool,
    /// Whether every batch was read (the indexes could not be trusted).
    scanned: bool,
}

/// One segment file on disk.
struct OnDisk {
    base_offset: u64,
    file: Arc<dyn IoFile>,
    file_bytes: u64,
    path: PathBuf,
}

/// Recovers `dir` (which must exist and be locked by the caller).
///
/// # Errors
/// I/O errors, or [`StorageError::CorruptBelowRecoveryPoint`] when data below the
/// recovery point (or any data of a cleanly closed log) is damaged: a batch fails its CRC
/// or header checks, a file ends inside a batch, or segments are missing in between.
pub fn recover(io: &dyn Io, dir: &Path, config: &LogConfig) -> Result<Recovered> {
    let taken = checkpoint::take_clean_shutdown(io, dir)?;
    recover_segments(io, dir, config, taken).map_err(|mut error| {
        // Trusted data is never cut, so failing on damage to it changed no data: put the
        // marker back, so the next open trusts the same bytes and reports the same damage
        // instead of cutting a cleanly closed active segment as if its tail were torn.
        // Failing to put it back must not hide the damage (the broker takes a damaged
        // partition offline, but refuses to start on an I/O error): it is told instead.
        if let (StorageError::CorruptBelowRecoveryPoint { reason, .. }, Some(marker)) =
            (&mut error, taken)
            && let Err(put_back) = checkpoint::write_clean_shutdown(io, dir, &marker)
        {
            reason.push_str(&format!(
                "; the clean-shutdown marker could not be put back ({put_back}), so the next start will cut a damaged active segment as a torn tail: copy the directory aside first"
            ));
        }
        error
    })
}

/// The body of [`recover`], once the clean shutdown marker (`clean`) is taken.
fn recover_segments(
    io: &dyn Io,
    dir: &Path,
    config: &LogConfig,
    clean: Option<CleanShutdown>,
) -> Result<Recovered> {
    let recovery_point = checkpoint::read_recovery_point(io, dir)?;
    let bases = list_segments(io, dir)?;
    let Some(&last_base) = bases.last() else {
        // A new log starts at 0. A crash inside `truncate_fully` after it unlinked every
        // segment restarts at the new start, to which it lowered the recovery point first.
        let interval = config.index_interval_bytes;
        let segments = vec![Arc::new(Segment::create(
            io,
            dir,
            recovery_point,
            interval,
        )?)];
        let epochs = epochs::recover(io, dir, &segments, recovery_point)?;
        return Ok(Recovered {
            segments,
            clean: false,
            recovery_point,
            epochs,
        });
    };
    let last_bytes = open_segment(io, dir, last_base)?.file_bytes;
    let marker = clean.filter(|marker| matches_marker(marker, last_base, last_bytes));
    let clean = marker.is_some();
    let mut scanned_any = false;
    // The base of the first segment recovery did not trust: the batches from there on
    // were all read, and the leader-epoch checkpoint may not know them yet.
    let mut untrusted_from = None;
    let mut segments: Vec<Arc<Segment>> = Vec::with_capacity(bases.len());
    for (position, &base_offset) in bases.iter().enumerate() {
        let is_last = position + 1 == bases.len();
        let trusted = clean || (!is_last && base_offset < recovery_point);
        if let Some(previous) = segments.last()
            && previous.next_offset() != base_offset
        {
            // Offsets missing below the recovery point were acknowledged as durable.
            if clean || previous.next_offset() < recovery_point {
                return Err(gap_error(dir, previous.next_offset(), base_offset));
            }
            remove_segments(io, dir, bases.get(position..).unwrap_or_default())?;
            break;
        }
        if !trusted {
            untrusted_from.get_or_insert(base_offset);
        }
        let on_disk = open_segment(io, dir, base_offset)?;
        // After a clean shutdown the last segment must also end where the marker says.
        let expected_end = marker
            .filter(|_| is_last)
            .map(|marker| marker.log_end_offset);
        let outcome = recover_segment(io, dir, config, &on_disk, trusted, expected_end, is_last)?;
        scanned_any |= outcome.scanned;
        segments.push(Arc::new(outcome.segment));
        if outcome.cut {
            remove_segments(io, dir, bases.get(position + 1..).unwrap_or_default())?;
            break;
        }
    }
    let log_end = segments.last().map_or(0, |segment| segment.next_offset());
    let epochs = epochs::recover(io, dir, &segments, untrusted_from.unwrap_or(log_end))?;
    Ok(Recovered {
        segments,
        clean: clean && !scanned_any,
        recovery_point,
        epochs,
    })
}

/// The error for segments missing from the middle of trusted data: the one before ends
/// at `expected` but the next starts at `base_offset`.
fn gap_error(dir: &Path, expected: u64, base_offset: u64) -> StorageError {
    let reason = if base_offset > expected {
        format!(
            "offsets {expected} to {} are missing: the segment before ends at {expected} (a segment file was deleted or truncated)",
            base_offset - 1
        )
    } else {
        format!(
            "the segment before already holds offsets up to {expected}, past this segment's base offset"
        )
    };
    StorageError::CorruptBelowRecoveryPoint {
        path: log_path(dir, base_offset),
        position: 0,
        offset: expected,
        reason,
    }
}

fn matches_marker(marker: &CleanShutdown, last_base: u64, last_bytes: u64) -> bool {
    marker.active_base_offset == last_base && marker.active_bytes == last_bytes
}

fn open_segment(io: &dyn Io, dir: &Path, base_offset: u64) -> Result<OnDisk> {
    let path = log_path(dir, base_offset);
    let file = io.open(&path).map_err(StorageError::at(&path))?;
    let file_bytes = file.file_bytes().map_err(StorageError::at(&path))?;
    Ok(OnDisk {
        base_offset,
        file,
        file_bytes,
        path,
    })
}

/// Recovers one segment: trusted ones from their index files and tail, the rest (and
/// trusted ones that fail their checks) by a full scan.
fn recover_segment(
    io: &dyn Io,
    dir: &Path,
    config: &LogConfig,
    on_disk: &OnDisk,
    trusted: bool,
    expected_end: Option<u64>,
    is_last: bool,
) -> Result<SegmentOutcome> {
    let interval = config.index_interval_bytes;
    if trusted
        && let Some(segment) = load_trusted(io, dir, on_disk, interval)?
        && expected_end.is_none_or(|end| end == segment.next_offset())
    {
        return Ok(SegmentOutcome {
            segment,
            cut: false,
            scanned: false,
        });
    }
    // Trusted data (below the recovery point, or all of a cleanly closed log) can only
    // have its index repaired: it was fsync'd and acknowledged as durable, so damage to it
    // is reported, never silently cut. Only an untrusted tail may be torn.
    let (segment, cut) = load_scanned(io, dir, on_disk, interval, !trusted)?;
    if !is_last {
        segment.seal_index();
        segment.persist_index(io)?;
        segment.sync()?;
    }
    Ok(SegmentOutcome {
        segment,
        cut,
        scanned: true,
    })
}

/// Loads the index files and checks them and the batches after the last offset entry.
/// `None` if anything disagrees: the caller rebuilds by scanning the whole segment.
fn load_trusted(
    io: &dyn Io,
    dir: &Path,
    on_disk: &OnDisk,
    interval: u32,
) -> Result<Option<Segment>> {
    let base = on_disk.base_offset;
    let offsets = read_if_exists(io, &index_path(dir, base))?;
    let times = read_if_exists(io, &time_index_path(dir, base))?;
    let (Some(offsets), Some(times)) = (offsets, times) else {
        return Ok(None);
    };
    let Ok(mut index) = SegmentIndex::decode(&offsets, &times, on_disk.file_bytes, interval) else {
        return Ok(None);
    };
    let map = map_file(on_disk.file.as_ref(), on_disk.file_bytes, &on_disk.path)?;
    let data: &[u8] = map.as_deref().map_or(&[], |map| map);
    let (start, expected) = index.last_offset_entry().map_or((0, base), |entry| {
        (
            entry.position as usize,
            base + u64::from(entry.relative_offset),
        )
    });
    let mut relative_overflow = false;
    let scanned = scan(
        data,
        start,
        expected,
        Check::Crc,
        |_, header| match u32::try_from(header.last_offset() - base) {
            Ok(_) => {
                let relative = (header.base_offset - base) as u32;
                index.observe(relative, header.total_len() as u32, header.max_timestamp);
            }
            Err(_) => relative_overflow = true,
        },
    );
    let time_past_end = index
        .last_time_entry()
        .is_some_and(|entry| base + u64::from(entry.relative_offset) >= scanned.next_offset);
    if scanned.stopped.is_some() || relative_overflow || time_past_end {
        return Ok(None);
    }
    drop(map);
    let file = Arc::clone(&on_disk.file);
    let segment = Segment::from_parts(
        dir,
        base,
        file,
        on_disk.file_bytes,
        scanned.next_offset,
        index,
    );
    Ok(Some(segment))
}

/// Validates every batch (CRC, offsets) and rebuilds the indexes. A bad batch ends the
/// segment: the valid prefix is copied to a new file renamed over the old one, so any
/// mapping of the old file stays valid.
fn load_scanned(
    io: &dyn Io,
    dir: &Path,
    on_disk: &OnDisk,
    interval: u32,
    may_cut: bool,
) -> Result<(Segment, bool)> {
    let base = on_disk.base_offset;
    let map = map_file(on_disk.file.as_ref(), on_disk.file_bytes, &on_disk.path)?;
    let data: &[u8] = map.as_deref().map_or(&[], |map| map);
    let mut index = SegmentIndex::new(interval);
    let mut relative_overflow_at = None;
    let scanned = scan(data, 0, base, Check::Crc, |position, header| {
        if relative_overflow_at.is_some() {
            return;
        }
        match u32::try_from(header.last_offset() - base) {
            Ok(_) => {
                let relative = (header.base_offset - base) as u32;
                index.on_batch(
                    relative,
                    position as u32,
                    header.total_len() as u32,
                    header.max_timestamp,
                );
            }
            Err(_) => relative_overflow_at = Some((position, header.base_offset)),
        }
    });
    let (end, next_offset) =
        relative_overflow_at.unwrap_or((scanned.end_position, scanned.next_offset));
    let cut = end < data.len();
    if cut && !may_cut {
        let reason = scanned.stopped.unwrap_or_else(|| {
            format!("the batch at offset {next_offset} is more than 2^32 offsets past the segment's base offset {base}")
        });
        return Err(StorageError::CorruptBelowRecoveryPoint {
            path: on_disk.path.clone(),
            position: end as u64,
            offset: next_offset,
            reason,
        });
    }
    let file = if cut {
        copy_to_new_file(io, &on_disk.path, data.get(..end).unwrap_or_default())?
    } else {
        Arc::clone(&on_disk.file)
    };
    drop(map);
    let segment = Segment::from_parts(dir, base, file, end as u64, next_offset, index);
    Ok((segment, cut))
}

/// Base offsets of the `.log` files in `dir`, sorted; removes leftover temporary files.
fn list_segments(io: &dyn Io, dir: &Path) -> Result<Vec<u64>> {
    let mut bases = Vec::new();
    for name in io.read_dir(dir).map_err(StorageError::at(dir))? {
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".tmp") || name.ends_with(".truncating") {
            remove_if_exists(io, &dir.join(name))?;
            continue;
        }
        let Some(stem) = name.strip_suffix(".log") else {
            continue;
        };
        if stem.len() == 20
            && stem.bytes().all(|byte| byte.is_ascii_digit())
            && let Ok(base) = stem.parse::<u64>()
        {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// Deletes segments that can no longer continue the log (after a cut or a gap).
fn remove_segments(io: &dyn Io, dir: &Path, bases: &[u64]) -> Result<()> {
    for &base in bases {
        remove_if_exists(io, &log_path(dir, base))?;
        remove_if_exists(io, &index_path(dir, base))?;
        remove_if_exists(io, &time_index_path(dir, base))?;
    }
    if bases.is_empty() {
        return Ok(());
    }
    sync_parent(io, &log_path(dir, 0))
}
