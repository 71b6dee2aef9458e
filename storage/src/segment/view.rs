//! Views of a segment's mapping: the bytes committed when each was taken, shared with the
//! `Bytes` and [`FileRange`]s handed to readers, and the slot that remaps a growing
//! segment and remembers which views may still be alive (the mapping rule is in the
//! parent module's docs).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::Path;
use std::sync::{Arc, Weak};

use crate::error::{Result, StorageError};
use crate::io::{IoFile, Mmap};
use crate::unmap::Mapping;

/// A segment that outgrew its mapping is mapped again at least this long, and at a power
/// of two: one that grows to 1 GiB is mapped 6 times (its first length, then 64, 128, 256,
/// 512 MiB and 1 GiB), not once per append.
const MAP_BYTES_MIN: u64 = 64 << 20;
/// [`MapSlot`] forgets dropped views once it tracks at least this many.
const VIEWS_PRUNE_MIN: usize = 16;

/// Maps the first `length` bytes of `file`; `None` for an empty range (mmap rejects it).
/// The range may extend past the end of the file (see the module docs): only bytes
/// within the file's length are touched through it, because the callers here read a
/// file whose length they know and segments hand out `View`s of committed bytes only.
///
/// # Errors
/// The `mmap` error, with `path`.
pub fn map_file(file: &dyn IoFile, length: u64, path: &Path) -> Result<Option<Mmap>> {
    if length == 0 {
        return Ok(None);
    }
    let length = usize::try_from(length).map_err(|_| StorageError::corrupt(path, "too large"))?;
    file.map(length).map(Some).map_err(StorageError::at(path))
}

/// The bytes of a segment committed when the view was taken, through a shared mapping
/// that may extend past them and past the end of the file. Dereferences to those bytes
/// only. Clones share one entry in the segment's list of live views.
#[derive(Debug, Clone)]
pub struct View(Arc<ViewOf>);

#[derive(Debug)]
struct ViewOf {
    map: Arc<Mapping>,
    /// The file the mapping maps, kept open for [`FileRange::file`].
    file: Arc<dyn IoFile>,
    len: usize,
}

impl std::ops::Deref for View {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0.map[..self.0.len]
    }
}

/// Owner of a view inside a `Bytes`: the mapping lives until the last `Bytes` drops.
#[derive(Debug)]
pub(super) struct SharedMap(pub(super) View);

impl AsRef<[u8]> for SharedMap {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Where a read's bytes lie in their segment file, so a broker can send them with
/// `sendfile` instead of copying them out of the mapping. While it lives, bytes
/// `position..position + len` of the file ([`AsFd`]) are [`FileRange::bytes`]: appends
/// never rewrite written bytes, and the view it holds keeps any truncation from shrinking
/// this inode below them (see the module docs).
#[derive(Debug, Clone)]
pub struct FileRange {
    pub(super) view: View,
    pub(super) position: usize,
    pub(super) len: usize,
}

impl AsFd for FileRange {
    /// The segment file, to `sendfile` from.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.view.0.file.as_fd()
    }
}

impl AsRawFd for FileRange {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

impl FileRange {
    /// Where the range starts in the file.
    pub fn position(&self) -> u64 {
        self.position as u64
    }

    /// The range's bytes through the mapping: the very memory the read's `Bytes` points
    /// at, so `std::ptr::eq` tells whether a `Bytes` is this range.
    pub fn bytes(&self) -> &[u8] {
        &self.view[self.position..self.position + self.len]
    }
}

/// The current mapping, and every view handed out that may still be alive (a `Bytes` in
/// a socket queue can hold one, and its mapping, long after a remap).
#[derive(Debug, Default)]
pub(super) struct MapSlot {
    pub(super) current: Option<Arc<Mapping>>,
    views: Vec<Weak<ViewOf>>,
    /// `views` drops its dead entries when it reaches this length.
    prune_at: usize,
}

impl MapSlot {
    /// A view of the first `committed` bytes, through the current mapping if it is long
    /// enough. A first mapping is exact; a segment that outgrew its mapping is growing, so
    /// the next one has room to grow.
    pub(super) fn view(
        &mut self,
        file: &Arc<dyn IoFile>,
        committed: u64,
        path: &Path,
    ) -> Result<Option<View>> {
        if committed == 0 {
            return Ok(None);
        }
        let len =
            usize::try_from(committed).map_err(|_| StorageError::corrupt(path, "too large"))?;
        let map = match &self.current {
            Some(map) if map.len() >= len => Arc::clone(map),
            current => {
                let length = match current {
                    Some(_) => committed.max(MAP_BYTES_MIN).next_power_of_two(),
                    None => committed,
                };
                let map = map_file(file.as_ref(), length, path)?.expect("length is not 0");
                let map = Arc::new(Mapping::new(map));
                self.current = Some(Arc::clone(&map));
                map
            }
        };
        let view = View(Arc::new(ViewOf {
            map,
            file: Arc::clone(file),
            len,
        }));
        if self.views.len() >= self.prune_at {
            self.views.retain(|view| view.strong_count() > 0);
            self.prune_at = (2 * self.views.len()).max(VIEWS_PRUNE_MIN);
        }
        self.views.push(Arc::downgrade(&view.0));
        Ok(Some(view))
    }

    /// Whether some live view reaches bytes at or after `position`.
    pub(super) fn live_beyond(&self, position: u64) -> bool {
        self.views
            .iter()
            .filter_map(Weak::upgrade)
            .any(|view| view.len as u64 > position)
    }
}
