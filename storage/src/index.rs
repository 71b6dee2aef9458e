//! The sparse offset index and the time index of one segment, held in memory and written
//! to `.index` / `.timeindex` files when the segment is sealed or the log is closed.
//!
//! Offset index entry (8 bytes, big-endian): `relative_offset: u32`, `position: u32`,
//! strictly increasing in both fields. Time index entry (12 bytes): `timestamp: i64`,
//! `relative_offset: u32`, strictly increasing in both fields. No entry means "start at
//! position 0"; see `docs/storage.md`.

/// Bytes of one offset index entry.
pub const OFFSET_ENTRY_BYTES: usize = 8;
/// Bytes of one time index entry.
pub const TIME_ENTRY_BYTES: usize = 12;

/// A batch start: its offset relative to the segment base, and its byte position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    /// Base offset of the batch minus the segment's base offset.
    pub relative_offset: u32,
    /// Byte position of the batch in the segment file.
    pub position: u32,
}

/// "Every record before the batch at `relative_offset` (exclusive of later batches) has a
/// timestamp at most `timestamp`": the largest timestamp seen so far in the segment and the
/// batch that carried it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    /// Largest timestamp in the segment up to and including the batch.
    pub timestamp: i64,
    /// Base offset, relative to the segment, of the batch that carried it.
    pub relative_offset: u32,
}

/// The in-memory indexes of one segment plus the running state needed to extend them.
/// Not thread-safe by itself; the segment wraps it in a `RwLock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentIndex {
    interval_bytes: u64,
    offsets: Vec<OffsetEntry>,
    times: Vec<TimeEntry>,
    bytes_since_entry: u64,
    max_timestamp: i64,
    max_timestamp_relative_offset: u32,
}

impl SegmentIndex {
    /// An empty index adding an entry every `interval_bytes` of batches.
    pub fn new(interval_bytes: u32) -> Self {
        Self {
            interval_bytes: u64::from(interval_bytes),
            offsets: Vec::new(),
            times: Vec::new(),
            bytes_since_entry: 0,
            max_timestamp: i64::MIN,
            max_timestamp_relative_offset: 0,
        }
    }

    /// Records an appended batch: adds index entries pointing at it when at least
    /// `interval_bytes` were written since the previous entry.
    pub fn on_batch(
        &mut self,
        relative_offset: u32,
        position: u32,
        length: u32,
        max_timestamp: i64,
    ) {
        if self.bytes_since_entry >= self.interval_bytes {
            self.push_offset(OffsetEntry {
                relative_offset,
                position,
            });
            self.push_time_if_newer();
            self.bytes_since_entry = 0;
        }
        self.observe(relative_offset, length, max_timestamp);
    }

    /// Accounts for a batch without adding entries (batches after the last loaded entry).
    pub fn observe(&mut self, relative_offset: u32, length: u32, max_timestamp: i64) {
        self.bytes_since_entry += u64::from(length);
        if max_timestamp > self.max_timestamp {
            self.max_timestamp = max_timestamp;
            self.max_timestamp_relative_offset = relative_offset;
        }
    }

    /// Adds the final time entry so the file records the segment's largest timestamp.
    pub fn seal(&mut self) {
        self.push_time_if_newer();
    }

    fn push_offset(&mut self, entry: OffsetEntry) {
        if let Some(last) = self.offsets.last() {
            // Pair assertion with `decode`: entries are strictly increasing.
            assert!(
                entry.relative_offset > last.relative_offset && entry.position > last.position,
                "offset index entry {entry:?} does not follow {last:?}"
            );
        }
        self.offsets.push(entry);
    }

    fn push_time_if_newer(&mut self) {
        if self.max_timestamp == i64::MIN {
            return;
        }
        let entry = TimeEntry {
            timestamp: self.max_timestamp,
            relative_offset: self.max_timestamp_relative_offset,
        };
        match self.times.last() {
            Some(last) if last.timestamp >= entry.timestamp => {}
            Some(last) => {
                assert!(
                    entry.relative_offset > last.relative_offset,
                    "time index not monotonic"
                );
                self.times.push(entry);
            }
            None => self.times.push(entry),
        }
    }

    /// The largest timestamp of any batch in the segment, `i64::MIN` if none.
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    /// The last entry at or below `relative_offset` whose position is below `length`
    /// (the caller's view of the file), or position 0.
    pub fn lookup(&self, relative_offset: u32, length: u64) -> OffsetEntry {
        let end = self
            .offsets
            .partition_point(|entry| entry.relative_offset <= relative_offset);
        self.offsets
            .get(..end)
            .unwrap_or_default()
            .iter()
            .rev()
            .find(|entry| u64::from(entry.position) < length)
            .copied()
            .unwrap_or(OffsetEntry {
                relative_offset: 0,
                position: 0,
            })
    }

    /// Relative offset of a batch at or before the first batch whose max timestamp is at
    /// least `timestamp`: scanning from there finds it.
    pub fn time_lookup(&self, timestamp: i64) -> u32 {
        let below = self
            .times
            .partition_point(|entry| entry.timestamp < timestamp);
        below
            .checked_sub(1)
            .and_then(|last_below| self.times.get(last_below))
            .map_or(0, |entry| entry.relative_offset)
    }

    /// The last offset entry, if any.
    pub fn last_offset_entry(&self) -> Option<OffsetEntry> {
        self.offsets.last().copied()
    }

    /// The last time entry, if any.
    pub fn last_time_entry(&self) -> Option<TimeEntry> {
        self.times.last().copied()
    }

    /// The offset index file's bytes.
    pub fn encode_offsets(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.offsets.len() * OFFSET_ENTRY_BYTES);
        for entry in &self.offsets {
            out.extend_from_slice(&entry.relative_offset.to_be_bytes());
            out.extend_from_slice(&entry.position.to_be_bytes());
        }
        out
    }

    /// The time index file's bytes.
    pub fn encode_times(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.times.len() * TIME_ENTRY_BYTES);
        for entry in &self.times {
            out.extend_from_slice(&entry.timestamp.to_be_bytes());
            out.extend_from_slice(&entry.relative_offset.to_be_bytes());
        }
        out
    }

    /// Loads both files, checking that entries are whole, strictly increasing, and point
    /// inside a segment file of `file_bytes` bytes. The running state (bytes since the last
    /// entry, largest timestamp) resumes from the last entries; the caller then feeds the
    /// batches after the last offset entry to [`observe`](Self::observe).
    ///
    /// # Errors
    /// A static reason when either file is malformed; the caller rebuilds the index.
    pub fn decode(
        offsets: &[u8],
        times: &[u8],
        file_bytes: u64,
        interval_bytes: u32,
    ) -> Result<Self, &'static str> {
        let mut index = Self::new(interval_bytes);
        index.offsets = decode_offsets(offsets, file_bytes)?;
        index.times = decode_times(times)?;
        if let Some(last) = index.times.last() {
            index.max_timestamp = last.timestamp;
            index.max_timestamp_relative_offset = last.relative_offset;
        }
        Ok(index)
    }
}

fn decode_offsets(bytes: &[u8], file_bytes: u64) -> Result<Vec<OffsetEntry>, &'static str> {
    if !bytes.len().is_multiple_of(OFFSET_ENTRY_BYTES) {
        return Err("offset index length is not a whole number of entries");
    }
    let mut entries: Vec<OffsetEntry> = Vec::with_capacity(bytes.len() / OFFSET_ENTRY_BYTES);
    for chunk in bytes.chunks_exact(OFFSET_ENTRY_BYTES) {
        let (relative, position) = chunk.split_at(4);
        let entry = OffsetEntry {
            relative_offset: u32::from_be_bytes(relative.try_into().map_err(|_| "entry")?),
            position: u32::from_be_bytes(position.try_into().map_err(|_| "entry")?),
        };
        if u64::from(entry.position) >= file_bytes {
            return Err("offset index entry points past the end of the segment");
        }
        if let Some(last) = entries.last()
            && (entry.relative_offset <= last.relative_offset || entry.position <= last.position)
        {
            return Err("offset index entries are not strictly increasing");
        }
        entries.push(entry);
    }
    Ok(entries)
}

fn decode_times(bytes: &[u8]) -> Result<Vec<TimeEntry>, &'static str> {
    if !bytes.len().is_multiple_of(TIME_ENTRY_BYTES) {
        return Err("time index length is not a whole number of entries");
    }
    let mut entries: Vec<TimeEntry> = Vec::with_capacity(bytes.len() / TIME_ENTRY_BYTES);
    for chunk in bytes.chunks_exact(TIME_ENTRY_BYTES) {
        let (timestamp, relative) = chunk.split_at(8);
        let entry = TimeEntry {
            timestamp: i64::from_be_bytes(timestamp.try_into().map_err(|_| "entry")?),
            relative_offset: u32::from_be_bytes(relative.try_into().map_err(|_| "entry")?),
        };
        if let Some(last) = entries.last()
            && (entry.timestamp <= last.timestamp || entry.relative_offset <= last.relative_offset)
        {
            return Err("time index entries are not strictly increasing");
        }
        entries.push(entry);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SegmentIndex {
        let mut index = SegmentIndex::new(100);
        // 10 batches of 60 bytes, 3 records each, timestamps wobbling upwards.
        for batch in 0..10u32 {
            let timestamp = i64::from(batch * 10) - i64::from(batch % 3) * 15;
            index.on_batch(batch * 3, batch * 60, 60, timestamp);
        }
        index.seal();
        index
    }

    #[test]
    fn entries_are_sparse_and_monotonic() {
        let index = sample();
        // An entry once at least 100 bytes passed: every second batch from batch 2 on.
        let positions: Vec<u32> = index.offsets.iter().map(|entry| entry.position).collect();
        assert_eq!(positions, [120, 240, 360, 480]);
        assert_eq!(index.max_timestamp(), 90);
        assert_eq!(
            index.last_time_entry().map(|entry| entry.timestamp),
            Some(90)
        );
    }

    #[test]
    fn lookup_finds_the_floor_entry_inside_the_visible_length() {
        let index = sample();
        assert_eq!(index.lookup(0, 600).position, 0);
        assert_eq!(index.lookup(7, 600).position, 120);
        assert_eq!(index.lookup(27, 600).position, 480);
        // An entry past the caller's view of the file is skipped.
        assert_eq!(index.lookup(27, 400).position, 360);
    }

    #[test]
    fn time_lookup_starts_at_or_before_the_first_match() {
        let index = sample();
        assert_eq!(index.time_lookup(i64::MIN), 0);
        let start = index.time_lookup(60);
        assert!(
            index
                .times
                .iter()
                .all(|entry| entry.relative_offset > start || entry.timestamp < 60)
        );
    }

    #[test]
    fn encode_decode_round_trips() {
        let index = sample();
        let decoded =
            SegmentIndex::decode(&index.encode_offsets(), &index.encode_times(), 600, 100).unwrap();
        assert_eq!(decoded.offsets, index.offsets);
        assert_eq!(decoded.times, index.times);
        assert_eq!(decoded.max_timestamp(), 90);
    }

    #[test]
    fn decode_rejects_damaged_files() {
        let index = sample();
        let offsets = index.encode_offsets();
        let times = index.encode_times();
        let torn = &offsets[..offsets.len() - 3];
        assert!(
            SegmentIndex::decode(torn, &times, 600, 100).is_err(),
            "torn entry"
        );
        assert!(
            SegmentIndex::decode(&offsets, &times, 480, 100).is_err(),
            "past the end"
        );
        let mut swapped = offsets.clone();
        swapped.rotate_left(OFFSET_ENTRY_BYTES);
        assert!(
            SegmentIndex::decode(&swapped, &times, 600, 100).is_err(),
            "not monotonic"
        );
        let torn_times = &times[..times.len() - 1];
        assert!(
            SegmentIndex::decode(&offsets, torn_times, 600, 100).is_err(),
            "torn time entry"
        );
    }
}
