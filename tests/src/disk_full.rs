//! A disk that fills up: [`SmallDisk`] mounts a small tmpfs for a broker's data directory,
//! and [`fill`](SmallDisk::fill) takes all of its free space with a filler file, which
//! [`free`](SmallDisk::free) deletes again.
//!
//! It models a full disk as the broker meets it: every write that needs a new page fails
//! with `ENOSPC`, and reads, fsyncs and truncations keep working. Limits: tmpfs counts
//! whole pages, so a write that fits in the last page a file already has still succeeds
//! (write more than a page to see the failure); it keeps no journal, so nothing is
//! refused for metadata alone; and a tmpfs lives in memory, so it is not a power-loss
//! disk (see [`crate::power_loss`]).
//!
//! Mounting needs `CAP_SYS_ADMIN` (root). Without it the mount fails with `EPERM`, and a
//! test may skip, saying why; any other failure is a failure.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// A tmpfs of a fixed size mounted on a fresh temporary directory, and the filler file
/// that fills it. Unmounted when dropped, even during a panic: lazily if a process still
/// has files open on it. Not thread-safe to fill and free concurrently (`&mut self`).
#[derive(Debug)]
pub struct SmallDisk {
    mount_point: TempDir,
    filler: PathBuf,
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))
}

impl SmallDisk {
    /// Mounts a tmpfs of `bytes` (rounded up to whole pages) on a new temporary directory.
    ///
    /// # Errors
    /// The mount's error: `EPERM` without the privilege to mount.
    pub fn mount(bytes: u64) -> io::Result<Self> {
        let mount_point = tempfile::Builder::new()
            .prefix("strata-small-disk-")
            .tempdir()?;
        let target = c_path(mount_point.path())?;
        let options = CString::new(format!("size={bytes},mode=0700")).expect("no NUL");
        // SAFETY: every pointer is a NUL-terminated string that outlives the call.
        let mounted = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                options.as_ptr().cast(),
            )
        };
        if mounted != 0 {
            return Err(io::Error::last_os_error());
        }
        let filler = mount_point.path().join("filler");
        Ok(Self {
            mount_point,
            filler,
        })
    }

    /// Where the disk is mounted: put the data directory below it.
    pub fn path(&self) -> &Path {
        self.mount_point.path()
    }

    /// Bytes free for an unprivileged writer (`statvfs`).
    ///
    /// # Errors
    /// The `statvfs` error.
    pub fn free_bytes(&self) -> io::Result<u64> {
        let path = c_path(self.path())?;
        // SAFETY: an all-zero `statvfs` is a valid value of this plain C struct.
        let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `path` is NUL-terminated and `stats` is a valid place to write.
        if unsafe { libc::statvfs(path.as_ptr(), &mut stats) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stats.f_bavail * stats.f_frsize)
    }

    /// Takes every free byte with the filler file (growing it if it exists); returns the
    /// bytes it took.
    ///
    /// # Errors
    /// A failure other than `ENOSPC`, which ends the filling.
    pub fn fill(&mut self) -> io::Result<u64> {
        let mut filler = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.filler)?;
        let chunk = vec![0xF1_u8; 64 << 10];
        let mut taken = 0;
        // Big writes first, then page-sized ones, so the last partial chunk is taken too.
        for size in [chunk.len(), 4096, 1] {
            taken += write_until_full(&mut filler, &chunk[..size])?;
        }
        Ok(taken)
    }

    /// Deletes the filler file: the space it took is free again.
    ///
    /// # Errors
    /// The removal's error, other than `NotFound` (nothing to free).
    pub fn free(&mut self) -> io::Result<()> {
        match fs::remove_file(&self.filler) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }
}

/// Writes `chunk` to `file` until the disk is full; returns the bytes written.
fn write_until_full(file: &mut File, chunk: &[u8]) -> io::Result<u64> {
    let mut written = 0;
    loop {
        match file.write(chunk) {
            Ok(0) => return Ok(written),
            Ok(count) => written += count as u64,
            Err(error) if error.raw_os_error() == Some(libc::ENOSPC) => return Ok(written),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let Ok(target) = c_path(self.path()) else {
            return;
        };
        // A process that still holds a file there gets the mount detached (`MNT_DETACH`):
        // it is freed when the process lets go.
        let unmounted = [0, libc::MNT_DETACH].into_iter().any(|flags| {
            // SAFETY: `target` is a NUL-terminated path that outlives the call.
            unsafe { libc::umount2(target.as_ptr(), flags) == 0 }
        });
        if !unmounted {
            eprintln!(
                "cannot unmount the small disk at {}: {}",
                self.path().display(),
                io::Error::last_os_error()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_takes_every_free_byte_and_free_gives_them_back() {
        let mut disk = match SmallDisk::mount(1 << 20) {
            Ok(disk) => disk,
            Err(error) if error.raw_os_error() == Some(libc::EPERM) => {
                println!("skipped: mounting a tmpfs is not permitted here: {error}");
                return;
            }
            Err(error) => panic!("mount a tmpfs: {error}"),
        };
        let mount_point = disk.path().to_owned();
        let taken = disk.fill().unwrap();
        assert!(taken >= (1 << 20) - 4096, "took {taken}");
        assert_eq!(disk.free_bytes().unwrap(), 0);
        let error = fs::write(mount_point.join("more"), [0; 4096]).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ENOSPC));
        disk.free().unwrap();
        assert!(disk.free_bytes().unwrap() >= (1 << 20) - 4096);
        fs::write(mount_point.join("more"), [0; 4096]).unwrap();
        let _busy = File::open(mount_point.join("more")).unwrap();
        drop(disk);
        assert!(!mount_point.exists(), "unmounted (lazily) and removed");
    }
}
