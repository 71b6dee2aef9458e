//! Unmapping large mappings off the thread that drops them.
//!
//! `munmap` of a mapping whose pages were faulted in clears every page-table entry and
//! flushes the TLB of every core: 22 ms for a 512 MiB segment mapping on the 2-core VM of
//! docs/benchmarks.md#d-unmap-off-thread. The last `Bytes` sharing a mapping is often dropped
//! on an async runtime worker, after its socket write, and a worker must not stall that
//! long. So large mappings go to one background thread to be unmapped.

use std::ops::Deref;
use std::sync::OnceLock;
use std::sync::mpsc::{self, SyncSender};

use memmap2::Mmap;

/// Mappings at least this long are unmapped on the background thread.
const BACKGROUND_BYTES_MIN: usize = 16 << 20;
/// Mappings waiting for the background thread; beyond, one is unmapped where it drops.
const QUEUED_MAX: usize = 64;

/// A read-only mapping, unmapped on a background thread when large.
#[derive(Debug)]
pub(crate) struct Mapping(Option<Mmap>);

impl Mapping {
    pub(crate) fn new(map: Mmap) -> Self {
        Self(Some(map))
    }
}

impl Deref for Mapping {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.0
            .as_deref()
            .expect("a mapping is present until dropped")
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        let Some(map) = self.0.take() else {
            return;
        };
        if map.len() >= BACKGROUND_BYTES_MIN
            && let Some(unmapper) = unmapper()
        {
            // With the queue full or the thread gone, the error carries the mapping back
            // and it is unmapped here instead.
            let _ = unmapper.try_send(map);
        }
    }
}

/// The background thread's queue, started on first use; `None` if it cannot be spawned
/// (mappings are then unmapped where they drop).
fn unmapper() -> Option<&'static SyncSender<Mmap>> {
    static UNMAPPER: OnceLock<Option<SyncSender<Mmap>>> = OnceLock::new();
    UNMAPPER
        .get_or_init(|| {
            let (sender, receiver) = mpsc::sync_channel::<Mmap>(QUEUED_MAX);
            std::thread::Builder::new()
                .name("strata-unmap".to_owned())
                .spawn(move || receiver.into_iter().for_each(drop))
                .ok()?;
            Some(sender)
        })
        .as_ref()
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::io::{IoFile, RealFile};
    use crate::segment::map_file;

    /// Whether this process has a mapping of exactly `len` bytes at `address` (so a later,
    /// unrelated mapping at a reused address does not count).
    fn mapped(address: usize, len: usize) -> bool {
        let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps");
        let range = format!("{address:x}-{:x} ", address + len);
        maps.lines().any(|line| line.starts_with(&range))
    }

    fn mapping_of(bytes: u64) -> Mapping {
        let file = RealFile::new(tempfile::tempfile().unwrap());
        file.set_len(bytes).unwrap();
        Mapping::new(map_file(&file, bytes, Path::new("test")).unwrap().unwrap())
    }

    #[test]
    fn large_mappings_are_unmapped_on_the_background_thread() {
        let large = mapping_of(BACKGROUND_BYTES_MIN as u64);
        let (address, len) = (large.as_ptr() as usize, large.len());
        assert!(mapped(address, len));
        assert!(large.iter().all(|&byte| byte == 0), "readable");
        drop(large);
        let deadline = Instant::now() + Duration::from_secs(10);
        while mapped(address, len) {
            assert!(Instant::now() < deadline, "still mapped after 10 s");
            std::thread::sleep(Duration::from_millis(1));
        }
        let threads = std::fs::read_dir("/proc/self/task").unwrap();
        let names: Vec<String> = threads
            .map(|task| std::fs::read_to_string(task.unwrap().path().join("comm")).unwrap())
            .collect();
        assert!(names.iter().any(|name| name.trim() == "strata-unmap"));
    }

    #[test]
    fn small_mappings_are_unmapped_where_they_drop() {
        let small = mapping_of(4096);
        let (address, len) = (small.as_ptr() as usize, small.len());
        assert!(mapped(address, len));
        drop(small);
        assert!(!mapped(address, len));
    }
}
