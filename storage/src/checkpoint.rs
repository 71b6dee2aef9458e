//! The two small checkpoint files of a partition directory. Both end in a CRC32 of the
//! bytes before it and are replaced atomically (temporary file, fsync, rename, fsync dir).
//!
//! ```text
//! recovery-point (18 bytes)          clean-shutdown (34 bytes)
//!  0  4  magic "SRPT"                  0  4  magic "SCLN"
//!  4  2  version = 1                   4  2  version = 1
//!  6  8  recovery point (u64)          6  8  log end offset (u64)
//! 14  4  crc32 of bytes 0..14         14  8  active segment base offset (u64)
//!                                     22  8  active segment file bytes (u64)
//!                                     30  4  crc32 of bytes 0..30
//! ```
//! Integers are big-endian.

use std::path::Path;

use crate::error::{Result, StorageError};
use crate::io::{Io, read_if_exists, write_file_atomically};

/// File name of the recovery point checkpoint.
pub const RECOVERY_POINT_FILE: &str = "recovery-point";
/// File name of the clean shutdown marker.
pub const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";

const VERSION: u16 = 1;
const RECOVERY_POINT_MAGIC: &[u8; 4] = b"SRPT";
const CLEAN_SHUTDOWN_MAGIC: &[u8; 4] = b"SCLN";
const RECOVERY_POINT_BYTES: usize = 18;
const CLEAN_SHUTDOWN_BYTES: usize = 34;

/// What `close` proved: everything up to `log_end_offset` is fsync'd, every index file is
/// written, and the active segment had exactly `active_bytes` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanShutdown {
    /// The log end offset at close.
    pub log_end_offset: u64,
    /// Base offset of the last segment.
    pub active_base_offset: u64,
    /// Size of the last segment's `.log` file.
    pub active_bytes: u64,
}

fn encode(magic: &[u8; 4], fields: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(6 + fields.len() * 8 + 4);
    out.extend_from_slice(magic);
    out.extend_from_slice(&VERSION.to_be_bytes());
    for field in fields {
        out.extend_from_slice(&field.to_be_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// The `u64` fields of a checkpoint, or `None` if it is damaged.
fn decode<const N: usize>(bytes: &[u8], magic: &[u8; 4], total: usize) -> Option<[u64; N]> {
    if bytes.len() != total || bytes.get(..4)? != magic {
        return None;
    }
    let (body, crc) = bytes.split_at(total - 4);
    if crc32fast::hash(body) != u32::from_be_bytes(crc.try_into().ok()?) {
        return None;
    }
    if u16::from_be_bytes(body.get(4..6)?.try_into().ok()?) != VERSION {
        return None;
    }
    let mut fields = [0u64; N];
    for (index, field) in fields.iter_mut().enumerate() {
        let at = 6 + index * 8;
        *field = u64::from_be_bytes(body.get(at..at + 8)?.try_into().ok()?);
    }
    Some(fields)
}

/// Encodes a recovery point.
pub fn encode_recovery_point(recovery_point: u64) -> Vec<u8> {
    encode(RECOVERY_POINT_MAGIC, &[recovery_point])
}

/// Decodes a recovery point; `None` if damaged.
pub fn decode_recovery_point(bytes: &[u8]) -> Option<u64> {
    decode::<1>(bytes, RECOVERY_POINT_MAGIC, RECOVERY_POINT_BYTES).map(|[offset]| offset)
}

/// Encodes a clean shutdown marker.
pub fn encode_clean_shutdown(clean: &CleanShutdown) -> Vec<u8> {
    encode(
        CLEAN_SHUTDOWN_MAGIC,
        &[
            clean.log_end_offset,
            clean.active_base_offset,
            clean.active_bytes,
        ],
    )
}

/// Decodes a clean shutdown marker; `None` if damaged.
pub fn decode_clean_shutdown(bytes: &[u8]) -> Option<CleanShutdown> {
    decode::<3>(bytes, CLEAN_SHUTDOWN_MAGIC, CLEAN_SHUTDOWN_BYTES).map(
        |[log_end_offset, active_base_offset, active_bytes]| CleanShutdown {
            log_end_offset,
            active_base_offset,
            active_bytes,
        },
    )
}

/// The recovery point of `dir`: 0 (recover everything) when missing or damaged.
///
/// # Errors
/// An I/O error other than "not found".
pub fn read_recovery_point(io: &dyn Io, dir: &Path) -> Result<u64> {
    let bytes = read_if_exists(io, &dir.join(RECOVERY_POINT_FILE))?;
    Ok(bytes
        .and_then(|bytes| decode_recovery_point(&bytes))
        .unwrap_or(0))
}

/// Replaces the recovery point of `dir`.
///
/// # Errors
/// Any I/O error of the atomic replace.
pub fn write_recovery_point(io: &dyn Io, dir: &Path, recovery_point: u64) -> Result<()> {
    let path = dir.join(RECOVERY_POINT_FILE);
    write_file_atomically(io, &path, &encode_recovery_point(recovery_point))
}

/// Reads and deletes the clean shutdown marker, so a crash after this open is never
/// mistaken for a clean shutdown. A damaged marker counts as absent.
///
/// # Errors
/// An I/O error reading or deleting it.
pub fn take_clean_shutdown(io: &dyn Io, dir: &Path) -> Result<Option<CleanShutdown>> {
    let path = dir.join(CLEAN_SHUTDOWN_FILE);
    let Some(bytes) = read_if_exists(io, &path)? else {
        return Ok(None);
    };
    io.remove_file(&path).map_err(StorageError::at(&path))?;
    io.sync_dir(dir).map_err(StorageError::at(dir))?;
    Ok(decode_clean_shutdown(&bytes))
}

/// Writes the clean shutdown marker.
///
/// # Errors
/// Any I/O error of the atomic replace.
pub fn write_clean_shutdown(io: &dyn Io, dir: &Path, clean: &CleanShutdown) -> Result<()> {
    let path = dir.join(CLEAN_SHUTDOWN_FILE);
    write_file_atomically(io, &path, &encode_clean_shutdown(clean))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_any_damage() {
        let clean = CleanShutdown {
            log_end_offset: 1 << 40,
            active_base_offset: 77,
            active_bytes: 4096,
        };
        let bytes = encode_clean_shutdown(&clean);
        assert_eq!(bytes.len(), CLEAN_SHUTDOWN_BYTES);
        assert_eq!(decode_clean_shutdown(&bytes), Some(clean));
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(decode_clean_shutdown(&flipped), None, "bit {bit}");
        }
        let point = encode_recovery_point(42);
        assert_eq!(point.len(), RECOVERY_POINT_BYTES);
        assert_eq!(decode_recovery_point(&point), Some(42));
        assert_eq!(decode_recovery_point(&point[..17]), None);
        assert_eq!(decode_recovery_point(&bytes), None, "wrong magic");
    }
}
