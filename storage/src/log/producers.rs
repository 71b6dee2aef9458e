//! Idempotent producer state of a log: rebuilt from the newest snapshot plus the batches
//! after it, and the snapshot files themselves.

use super::{AppendState, LogInner};
use crate::error::{Result, StorageError};
use crate::io::{remove_if_exists, write_file_atomically};
use crate::producer::{self, ProducerStates};
use crate::scan::{Check, scan};
use crate::segment::Locate;

impl LogInner {
    /// The producer state at `end` (a batch boundary): the newest readable snapshot at or
    /// below `end` and not below the log start, plus the batches after it; the whole log
    /// if there is none. Replayed batches count as appended now, by the broker's clock:
    /// their append times were not kept, and a client's timestamps must not stand in for
    /// them. Snapshots above `end` describe batches that are gone: they are
    /// deleted, durably before new batches can take their offsets, or a power loss would
    /// bring one back inside them.
    pub(super) fn rebuild_producers(&self, end: u64) -> Result<ProducerStates> {
        let segments = self.segments();
        let start = segments.first().map_or(0, |segment| segment.base_offset());
        if self.remove_snapshots(|offset| offset > end)? {
            self.sync_dir()?;
        }
        let now_ms = self.io.now_ms();
        let mut loaded = None;
        for offset in producer::list_snapshots(self.io.as_ref(), &self.dir)?
            .into_iter()
            .rev()
        {
            if offset < start {
                break;
            }
            let path = producer::snapshot_path(&self.dir, offset);
            let bytes = self.io.read(&path).map_err(StorageError::at(&path))?;
            if let Some((states, at)) = ProducerStates::decode(&bytes, now_ms)
                && at == offset
            {
                loaded = Some((states, offset));
                break;
            }
        }
        let (mut states, from) = loaded.unwrap_or_else(|| (ProducerStates::default(), start));
        let producers_max = self.config().producers_max;
        let first = segments
            .partition_point(|segment| segment.base_offset() <= from)
            .saturating_sub(1);
        for segment in segments.get(first..).unwrap_or_default() {
            if segment.base_offset() >= end {
                break;
            }
            let (position, offset) = if from > segment.base_offset() {
                match segment.locate(from)? {
                    Locate::Boundary(position) => (position, from),
                    Locate::Inside(batch_base_offset) => {
                        let path = producer::snapshot_path(&self.dir, from);
                        let reason = format!("inside the batch at {batch_base_offset}");
                        return Err(StorageError::corrupt(&path, reason));
                    }
                }
            } else {
                (0, segment.base_offset())
            };
            let Some(map) = segment.mapping()? else {
                continue;
            };
            let position = usize::try_from(position).expect("mapped positions fit usize");
            scan(&map, position, offset, Check::HeadersOnly, |_, header| {
                if header.base_offset < end {
                    states.apply(header, now_ms, producers_max);
                }
            });
        }
        Ok(states)
    }

    /// After the log was cut at `offset`: forget snapshots above it and rebuild the state.
    pub(super) fn reset_producers(&self, state: &mut AppendState, offset: u64) -> Result<()> {
        state.snapshots.retain(|&(at, _)| at <= offset);
        state.producers = self.rebuild_producers(offset)?;
        Ok(())
    }

    /// Deletes the snapshot files whose offset matches `doomed`; whether there were any.
    /// Durable once the caller fsyncs the directory.
    pub(super) fn remove_snapshots(&self, doomed: impl Fn(u64) -> bool) -> Result<bool> {
        let mut removed = false;
        for offset in producer::list_snapshots(self.io.as_ref(), &self.dir)? {
            if doomed(offset) {
                let path = producer::snapshot_path(&self.dir, offset);
                remove_if_exists(self.io.as_ref(), &path)?;
                removed = true;
            }
        }
        Ok(removed)
    }

    pub(super) fn write_snapshots(&self, snapshots: &[(u64, Vec<u8>)]) -> Result<()> {
        for (offset, bytes) in snapshots {
            let path = producer::snapshot_path(&self.dir, *offset);
            write_file_atomically(self.io.as_ref(), &path, bytes)?;
        }
        Ok(())
    }
}
