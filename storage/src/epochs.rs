//! The leader-epoch cache of a partition log and its checkpoint file (Kafka's
//! `LeaderEpochFileCache`): which leader epoch wrote which range of offsets. A follower
//! finds where its log diverges from the leader's by asking for the end offset of its last
//! epoch (KIP-101/279), and the leader answers from here.
//!
//! [`LeaderEpochs`] holds `(epoch, start_offset)` entries, strictly increasing in both: the
//! batches from `start_offset` up to the next entry's start (or the log end) carry `epoch`.
//! The cache is a function of the log, so the checkpoint file only saves a walk over every
//! batch header at open: when it is missing or damaged, [`recover`] rebuilds it that way.
//!
//! ```text
//! leader-epoch-checkpoint (14 + 12 * count bytes)
//!  0  4  magic "SLEP"
//!  4  2  version = 1
//!  6  4  entry count (u32)
//! 10 12  per entry: epoch (u32), start offset (u64)
//!  .  4  crc32 of every byte before it
//! ```
//! Integers are big-endian. The file is replaced atomically (temporary file, fsync,
//! rename, fsync dir) through the [`Io`] seam. When it is written, and why a crash at any
//! point leaves it describing the recovered log, is in `docs/storage.md`.

use std::path::Path;
use std::sync::Arc;

use crate::error::{Result, StorageError};
use crate::io::{Io, read_if_exists, write_file_atomically};
use crate::scan::{Check, scan};
use crate::segment::{Segment, log_path};

/// File name of the leader-epoch checkpoint.
pub const LEADER_EPOCH_CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";

const MAGIC: &[u8; 4] = b"SLEP";
const VERSION: u16 = 1;
const HEAD_BYTES: usize = 10;
const ENTRY_BYTES: usize = 12;
const CRC_BYTES: usize = 4;

/// `(epoch, start_offset)` entries, strictly increasing in both. Not thread-safe on its
/// own: the log keeps it under a lock, and changes it only under its append lock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochs {
    entries: Vec<(u32, u64)>,
}

impl LeaderEpochs {
    /// The entries, oldest first.
    pub fn entries(&self) -> &[(u32, u64)] {
        &self.entries
    }

    /// The epoch of the newest entry; `None` without entries.
    pub fn latest(&self) -> Option<u32> {
        self.entries.last().map(|&(epoch, _)| epoch)
    }

    /// `Ok` if a batch of `epoch` may be appended: no entry, or `epoch >= latest`.
    ///
    /// # Errors
    /// [`StorageError::StaleLeaderEpoch`] when `epoch` is older than the latest.
    pub fn check(latest: Option<u32>, epoch: u32) -> Result<()> {
        match latest {
            Some(latest) if epoch < latest => Err(StorageError::StaleLeaderEpoch { epoch, latest }),
            _ => Ok(()),
        }
    }

    /// Adds `(epoch, start_offset)` for the first batch of a new epoch, appended at
    /// `start_offset`.
    ///
    /// # Panics
    /// If the entry does not come after the newest one in both epoch and offset: the
    /// caller checked the epoch, and no entry starts at or past the log end.
    pub fn assign(&mut self, epoch: u32, start_offset: u64) {
        if let Some(&(latest, start)) = self.entries.last() {
            assert!(
                epoch > latest && start_offset > start,
                "epoch entry ({epoch}, {start_offset}) does not follow ({latest}, {start})"
            );
        }
        self.entries.push((epoch, start_offset));
    }

    /// Takes in the epoch of the batch at `offset`, the next one in a walk of the log:
    /// a new epoch gets an entry. A batch older than the latest epoch breaks the rule that
    /// appends enforce; as Kafka does, the entries it conflicts with (a newer or equal
    /// epoch, or a start at or past it) give way to it, so the batches on disk win.
    fn observe(&mut self, epoch: u32, offset: u64) {
        match self.latest() {
            Some(latest) if latest == epoch => {}
            Some(latest) if latest > epoch => {
                self.entries
                    .retain(|&(entry_epoch, start)| entry_epoch < epoch && start < offset);
                self.entries.push((epoch, offset));
            }
            _ => self.entries.push((epoch, offset)),
        }
    }

    /// Drops the entries starting at or after `end` (the log was cut there).
    pub fn truncate_from_end(&mut self, end: u64) {
        let kept = self.entries.partition_point(|&(_, start)| start < end);
        self.entries.truncate(kept);
    }

    /// The log now starts at `start`: drops the entries wholly below it, keeping the last
    /// one that starts at or below it, moved to `start`.
    pub fn truncate_from_start(&mut self, start: u64) {
        let at_or_below = self.entries.partition_point(|&(_, offset)| offset <= start);
        let Some(last) = at_or_below.checked_sub(1) else {
            return;
        };
        self.entries.drain(..last);
        if let Some(first) = self.entries.first_mut() {
            first.1 = start;
        }
    }

    /// Drops every entry.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// KIP-279's answer to a follower whose last batch has `epoch`: for the latest epoch
    /// or a newer one, `(latest, log_end_offset)` (a leader that has not written in its
    /// own epoch yet holds nothing past its log end that the follower may keep); else the
    /// largest entry epoch at or below `epoch` and the start offset of the entry after it.
    /// `None` without an entry at or below `epoch`.
    pub fn end_offset_for(&self, epoch: u32, log_end_offset: u64) -> Option<(u32, u64)> {
        let latest = self.latest()?;
        if epoch >= latest {
            return Some((latest, log_end_offset));
        }
        let after = self.entries.partition_point(|&(entry, _)| entry <= epoch);
        let &(floor, _) = self.entries.get(after.checked_sub(1)?)?;
        let &(_, next_start) = self.entries.get(after)?;
        Some((floor, next_start))
    }

    /// The epoch of the entry with the largest start offset at or below `offset`.
    pub fn epoch_for(&self, offset: u64) -> Option<u32> {
        let after = self.entries.partition_point(|&(_, start)| start <= offset);
        let &(epoch, _) = self.entries.get(after.checked_sub(1)?)?;
        Some(epoch)
    }

    /// The checkpoint file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let count = u32::try_from(self.entries.len()).expect("at most one entry per u32 epoch");
        let mut out = Vec::with_capacity(HEAD_BYTES + self.entries.len() * ENTRY_BYTES + 4);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&count.to_be_bytes());
        for &(epoch, start) in &self.entries {
            out.extend_from_slice(&epoch.to_be_bytes());
            out.extend_from_slice(&start.to_be_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Decodes a checkpoint file; `None` if it is damaged: a wrong magic, version, length
    /// or CRC, or entries that do not strictly increase.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let body_bytes = bytes.len().checked_sub(CRC_BYTES)?;
        let (body, crc) = bytes.split_at(body_bytes);
        if crc32fast::hash(body) != u32::from_be_bytes(crc.try_into().ok()?)
            || body.get(..4)? != MAGIC
            || u16::from_be_bytes(body.get(4..6)?.try_into().ok()?) != VERSION
        {
            return None;
        }
        let count = u32::from_be_bytes(body.get(6..HEAD_BYTES)?.try_into().ok()?);
        let entries_bytes = body.get(HEAD_BYTES..)?;
        if entries_bytes.len() != usize::try_from(count).ok()?.checked_mul(ENTRY_BYTES)? {
            return None;
        }
        let mut epochs = Self::default();
        for entry in entries_bytes.chunks_exact(ENTRY_BYTES) {
            let epoch = u32::from_be_bytes(entry.get(..4)?.try_into().ok()?);
            let start = u64::from_be_bytes(entry.get(4..)?.try_into().ok()?);
            if epochs
                .entries
                .last()
                .is_some_and(|&(last, last_start)| epoch <= last || start <= last_start)
            {
                return None;
            }
            epochs.entries.push((epoch, start));
        }
        Some(epochs)
    }
}

/// The checkpoint of `dir`; `None` when it is missing or damaged.
///
/// # Errors
/// An I/O error other than "not found".
pub fn read(io: &dyn Io, dir: &Path) -> Result<Option<LeaderEpochs>> {
    let bytes = read_if_exists(io, &dir.join(LEADER_EPOCH_CHECKPOINT_FILE))?;
    Ok(bytes.and_then(|bytes| LeaderEpochs::decode(&bytes)))
}

/// Replaces the checkpoint of `dir` with `epochs`, atomically.
///
/// # Errors
/// Any I/O error of the atomic replace; one that is
/// [`out_of_resources`](StorageError::out_of_resources) changed nothing durable.
pub fn write(io: &dyn Io, dir: &Path, epochs: &LeaderEpochs) -> Result<()> {
    let path = dir.join(LEADER_EPOCH_CHECKPOINT_FILE);
    write_file_atomically(io, &path, &epochs.encode())
}

/// The entries of a recovered log, and whether they differ from the checkpoint on disk
/// (which must then be written before the recovery point moves).
#[derive(Debug)]
pub struct RecoveredEpochs {
    /// The entries, exactly the epochs of the recovered batches.
    pub epochs: LeaderEpochs,
    /// Whether the checkpoint file does not hold them.
    pub changed: bool,
}

/// The entries of the recovered `segments` (oldest first, contiguous). The batches below
/// `trusted_below` (a segment base offset, or the log end) were trusted by recovery, and
/// the checkpoint covers them: every flush that moves the recovery point, and every clean
/// close, writes it first. Its entries from `trusted_below` on are dropped and rebuilt by
/// walking the headers of the batches there (which recovery just read). Without a
/// readable checkpoint, every batch header is walked.
///
/// # Errors
/// The mapping error, or [`StorageError::CorruptBelowRecoveryPoint`] if a trusted
/// segment's batches do not walk to its end.
pub fn recover(
    io: &dyn Io,
    dir: &Path,
    segments: &[Arc<Segment>],
    trusted_below: u64,
) -> Result<RecoveredEpochs> {
    let log_start = segments.first().map_or(0, |segment| segment.base_offset());
    let log_end = segments.last().map_or(0, |segment| segment.next_offset());
    let stored = read(io, dir)?;
    let (mut epochs, walk_from) = match &stored {
        Some(stored) => {
            let mut epochs = stored.clone();
            epochs.truncate_from_end(trusted_below);
            (epochs, trusted_below)
        }
        None => (LeaderEpochs::default(), log_start),
    };
    for segment in segments {
        if segment.base_offset() >= walk_from {
            walk(dir, segment, |epoch, offset| epochs.observe(epoch, offset))?;
        }
    }
    epochs.truncate_from_start(log_start);
    epochs.truncate_from_end(log_end);
    let changed = stored.map_or(!epochs.entries.is_empty(), |stored| stored != epochs);
    Ok(RecoveredEpochs { epochs, changed })
}

/// Calls `on_batch(leader_epoch, base_offset)` for each batch of `segment`, reading only
/// the headers.
fn walk(dir: &Path, segment: &Segment, mut on_batch: impl FnMut(u32, u64)) -> Result<()> {
    let Some(map) = segment.mapping()? else {
        return Ok(());
    };
    let base = segment.base_offset();
    let walked = scan(&map, 0, base, Check::HeadersOnly, |_, header| {
        on_batch(header.leader_epoch, header.base_offset);
    });
    if walked.stopped.is_some() || walked.next_offset != segment.next_offset() {
        let reason = walked.stopped.unwrap_or_else(|| {
            format!(
                "the batches end at offset {} but the segment at {}",
                walked.next_offset,
                segment.next_offset()
            )
        });
        return Err(StorageError::CorruptBelowRecoveryPoint {
            path: log_path(dir, base),
            position: walked.end_position as u64,
            offset: walked.next_offset,
            reason: format!("walking the batch headers for the leader epochs: {reason}"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epochs(entries: &[(u32, u64)]) -> LeaderEpochs {
        LeaderEpochs {
            entries: entries.to_vec(),
        }
    }

    #[test]
    fn an_older_epoch_is_stale_and_a_newer_one_gets_an_entry() {
        assert!(LeaderEpochs::check(None, 0).is_ok());
        assert!(LeaderEpochs::check(Some(3), 3).is_ok());
        assert!(LeaderEpochs::check(Some(3), 4).is_ok());
        let stale = LeaderEpochs::check(Some(3), 2).unwrap_err();
        assert!(
            matches!(
                stale,
                StorageError::StaleLeaderEpoch {
                    epoch: 2,
                    latest: 3
                }
            ),
            "{stale}"
        );
        let mut cache = LeaderEpochs::default();
        cache.assign(0, 0);
        cache.assign(4, 10);
        assert_eq!(cache.entries(), &[(0, 0), (4, 10)]);
        assert_eq!(cache.latest(), Some(4));
    }

    #[test]
    #[should_panic(expected = "does not follow")]
    fn an_entry_at_the_same_offset_is_a_bug() {
        let mut cache = epochs(&[(1, 5)]);
        cache.assign(2, 5);
    }

    #[test]
    fn truncation_from_the_end_drops_entries_at_or_past_it() {
        let mut cache = epochs(&[(1, 0), (3, 10), (5, 20)]);
        cache.truncate_from_end(21);
        assert_eq!(cache.entries(), &[(1, 0), (3, 10), (5, 20)]);
        cache.truncate_from_end(20);
        assert_eq!(cache.entries(), &[(1, 0), (3, 10)]);
        cache.truncate_from_end(0);
        assert_eq!(cache.entries(), &[]);
    }

    #[test]
    fn truncation_from_the_start_moves_the_entry_covering_it() {
        let mut cache = epochs(&[(1, 0), (3, 10), (5, 20)]);
        cache.truncate_from_start(0);
        assert_eq!(cache.entries(), &[(1, 0), (3, 10), (5, 20)]);
        cache.truncate_from_start(15);
        assert_eq!(cache.entries(), &[(3, 15), (5, 20)]);
        cache.truncate_from_start(20);
        assert_eq!(cache.entries(), &[(5, 20)]);
        cache.truncate_from_start(99);
        assert_eq!(cache.entries(), &[(5, 99)]);
        let mut later = epochs(&[(2, 50)]);
        later.truncate_from_start(10);
        assert_eq!(later.entries(), &[(2, 50)], "nothing below the start");
    }

    #[test]
    fn end_offset_for_an_epoch_follows_kip_279() {
        let cache = epochs(&[(1, 0), (3, 10), (5, 20)]);
        let log_end = 30;
        assert_eq!(cache.end_offset_for(5, log_end), Some((5, 30)), "latest");
        assert_eq!(cache.end_offset_for(3, log_end), Some((3, 20)));
        assert_eq!(
            cache.end_offset_for(4, log_end),
            Some((3, 20)),
            "unknown epoch"
        );
        assert_eq!(cache.end_offset_for(1, log_end), Some((1, 10)));
        assert_eq!(cache.end_offset_for(2, log_end), Some((1, 10)));
        assert_eq!(
            cache.end_offset_for(6, log_end),
            Some((5, 30)),
            "newer than any: the log end"
        );
        let later = epochs(&[(2, 50), (4, 60)]);
        assert_eq!(later.end_offset_for(1, log_end), None, "older than any");
        assert_eq!(LeaderEpochs::default().end_offset_for(0, 0), None);
    }

    #[test]
    fn epoch_for_an_offset_is_the_covering_entry() {
        let cache = epochs(&[(1, 5), (3, 10)]);
        assert_eq!(cache.epoch_for(4), None);
        assert_eq!(cache.epoch_for(5), Some(1));
        assert_eq!(cache.epoch_for(9), Some(1));
        assert_eq!(cache.epoch_for(10), Some(3));
        assert_eq!(cache.epoch_for(u64::MAX), Some(3));
    }

    #[test]
    fn walking_batches_adds_new_epochs_and_lets_an_older_one_win_a_conflict() {
        let mut cache = LeaderEpochs::default();
        for (epoch, offset) in [(0, 0), (0, 3), (2, 5), (2, 8), (7, 9)] {
            cache.observe(epoch, offset);
        }
        assert_eq!(cache.entries(), &[(0, 0), (2, 5), (7, 9)]);
        cache.observe(2, 12);
        assert_eq!(cache.entries(), &[(0, 0), (2, 12)]);
    }

    #[test]
    fn the_checkpoint_round_trips_and_any_damage_is_rejected() {
        let cache = epochs(&[(0, 0), (7, 1 << 40), (u32::MAX - 1, u64::MAX)]);
        let bytes = cache.encode();
        assert_eq!(bytes.len(), HEAD_BYTES + 3 * ENTRY_BYTES + CRC_BYTES);
        assert_eq!(LeaderEpochs::decode(&bytes), Some(cache));
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(LeaderEpochs::decode(&flipped), None, "bit {bit}");
        }
        for cut in 0..bytes.len() {
            assert_eq!(LeaderEpochs::decode(&bytes[..cut]), None, "cut {cut}");
        }
        let empty = LeaderEpochs::default().encode();
        assert_eq!(empty.len(), HEAD_BYTES + CRC_BYTES);
        assert_eq!(LeaderEpochs::decode(&empty), Some(LeaderEpochs::default()));
    }

    #[test]
    fn a_checkpoint_whose_entries_do_not_increase_is_damaged() {
        for entries in [[(3, 0), (3, 10)], [(3, 10), (4, 10)], [(4, 0), (3, 10)]] {
            let bytes = epochs(&entries).encode();
            assert_eq!(LeaderEpochs::decode(&bytes), None, "{entries:?}");
        }
    }
}
