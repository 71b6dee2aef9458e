//! The checked record format of every quorum file, and how files are replaced atomically.
//!
//! ```text
//! record := body_bytes: u32 LE | crc32(body): u32 LE | body
//! ```
//!
//! The log is a sequence of records; the state and snapshot files hold one record each and
//! are replaced whole (write a `.tmp`, fsync it, rename it over, fsync the directory), so a
//! crash leaves either the old file or the new one. Only the log can have a torn tail: a
//! last record cut short, or whose checksum fails with nothing after it. Damage anywhere
//! else is corruption and is reported with the file and byte offset.

use crate::data_dir::{DIR_MODE, FILE_MODE, create_private_file};
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::QuorumError;

/// The bytes of a record header: length and checksum.
pub(crate) const HEADER_BYTES: usize = 8;
/// The largest record body accepted on disk (and frame on the wire).
pub(crate) const RECORD_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Appends one record holding `body` to `out`.
///
/// # Errors
/// `body` is over [`RECORD_BYTES_MAX`].
pub(crate) fn encode(body: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    let length = u32::try_from(body.len())
        .ok()
        .filter(|&length| length as usize <= RECORD_BYTES_MAX)
        .ok_or_else(|| {
            let message = format!(
                "a record of {} bytes, over the {RECORD_BYTES_MAX} maximum",
                body.len()
            );
            io::Error::new(io::ErrorKind::InvalidInput, message)
        })?;
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(body);
    Ok(())
}

/// The records found in a file's bytes.
#[derive(Debug)]
pub(crate) struct Scan<'a> {
    /// Each record's byte offset and body.
    pub records: Vec<(u64, &'a [u8])>,
    /// The bytes that hold whole, valid records; anything after is a torn tail.
    pub valid_bytes: u64,
}

/// Splits `bytes` into records. A last record that is cut short, or fails its checksum with
/// nothing after it, or zeros to the end, are a torn tail: left out of `records` and
/// beyond `valid_bytes`.
///
/// # Errors
/// A record longer than the maximum, or one that fails its checksum with bytes after it.
pub(crate) fn scan<'a>(path: &Path, bytes: &'a [u8]) -> Result<Scan<'a>, QuorumError> {
    let mut records = Vec::new();
    let mut offset = 0usize;
    while let Some(header) = bytes.get(offset..offset + HEADER_BYTES) {
        let (length, crc) = header.split_at(4);
        let length = u32::from_le_bytes(length.try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
        if length == 0 && crc == 0 && bytes[offset..].iter().all(|&byte| byte == 0) {
            // No record is empty: zeros to the end are space a crash left allocated but
            // never written (as etcd's log treats zeroed sectors), a torn tail.
            break;
        }
        if length == 0 {
            let reason = "an empty record, which the log never writes".to_string();
            return Err(corrupt(path, offset, reason));
        }
        if length > RECORD_BYTES_MAX {
            // A torn write leaves a short record, never a length past the maximum.
            let reason = format!("a record of {length} bytes, over the {RECORD_BYTES_MAX} maximum");
            return Err(corrupt(path, offset, reason));
        }
        let body_start = offset + HEADER_BYTES;
        let Some(body) = bytes.get(body_start..body_start + length) else {
            break; // cut short: a torn tail
        };
        let end = body_start + length;
        if crc32fast::hash(body) != crc {
            if end == bytes.len() {
                break; // the last record was being written: a torn tail
            }
            let reason = "a record's checksum does not match".to_string();
            return Err(corrupt(path, offset, reason));
        }
        records.push((offset as u64, body));
        offset = end;
    }
    Ok(Scan {
        records,
        valid_bytes: offset as u64,
    })
}

/// A [`QuorumError::Corrupt`] for `path` at `offset`.
pub(crate) fn corrupt(path: &Path, offset: usize, reason: String) -> QuorumError {
    QuorumError::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason,
    }
}

/// A [`QuorumError::Io`] for `path`.
pub(crate) fn io_error(path: &Path) -> impl FnOnce(io::Error) -> QuorumError + '_ {
    move |source| QuorumError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads the single record of a state or snapshot file; `None` when the file does not exist.
///
/// # Errors
/// The file cannot be read, or does not hold exactly one valid record.
pub(crate) fn read_single(path: &Path) -> Result<Option<Vec<u8>>, QuorumError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error(path)(error)),
    };
    let scan = scan(path, &bytes)?;
    match scan.records.as_slice() {
        [(_, body)] if scan.valid_bytes == bytes.len() as u64 => Ok(Some(body.to_vec())),
        _ => Err(corrupt(path, 0, "not exactly one whole record".to_string())),
    }
}

/// Replaces `path` with one record holding `body`: written to `<path>.tmp`, fsynced,
/// renamed over `path`, and the directory fsynced so the rename survives a crash.
///
/// # Errors
/// Any I/O failure, with the file it happened on.
pub(crate) fn write_single(path: &Path, body: &[u8]) -> Result<(), QuorumError> {
    let mut bytes = Vec::with_capacity(HEADER_BYTES + body.len());
    encode(body, &mut bytes).map_err(io_error(path))?;
    replace_file(path, &bytes)
}

/// Replaces `path` with `bytes`, atomically and durably (see [`write_single`]).
///
/// # Errors
/// Any I/O failure, with the file it happened on.
pub(crate) fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), QuorumError> {
    let temporary = temporary_path(path);
    let mut file = create_private_file(&temporary).map_err(io_error(&temporary))?;
    file.write_all(bytes).map_err(io_error(&temporary))?;
    file.sync_all().map_err(io_error(&temporary))?;
    fs::rename(&temporary, path).map_err(io_error(path))?;
    sync_parent(path)
}

/// Opens `path` for appending, creating it (and fsyncing its directory) if needed.
///
/// # Errors
/// Any I/O failure, with the file it happened on.
pub(crate) fn open_append(path: &Path) -> Result<File, QuorumError> {
    let existed = path.exists();
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(io_error(path))?;
    if !existed {
        sync_parent(path)?;
    }
    Ok(file)
}

/// Creates `dir` and its parents, fsyncing each directory that got a new entry.
///
/// # Errors
/// Any I/O failure, with the directory it happened on.
pub(crate) fn create_dir(dir: &Path) -> Result<(), QuorumError> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        create_dir(parent)?;
    }
    match DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => sync_parent(dir),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(io_error(dir)(error)),
    }
}

/// Fsyncs the directory holding `path`, so that a create or rename in it is durable.
fn sync_parent(path: &Path) -> Result<(), QuorumError> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(parent)
        .and_then(|dir| dir.sync_all())
        .map_err(io_error(parent))
}

/// Where [`replace_file`] writes before renaming.
fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(bodies: &[&[u8]]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for body in bodies {
            encode(body, &mut bytes).unwrap();
        }
        bytes
    }

    #[test]
    fn a_cut_at_every_byte_of_the_last_record_is_a_torn_tail() {
        let bytes = records(&[b"first", b"second record"]);
        let first_end = (HEADER_BYTES + 5) as u64;
        for cut in first_end as usize..bytes.len() {
            let scan = scan(Path::new("log"), &bytes[..cut]).expect("torn tail, not corruption");
            assert_eq!(scan.records.len(), 1, "cut at {cut}");
            assert_eq!(scan.valid_bytes, first_end, "cut at {cut}");
        }
        let whole = scan(Path::new("log"), &bytes).expect("whole");
        assert_eq!(whole.records.len(), 2);
    }

    #[test]
    fn a_last_record_with_a_flipped_bit_is_a_torn_tail() {
        let mut bytes = records(&[b"first", b"second"]);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let scan = scan(Path::new("log"), &bytes).expect("torn tail");
        assert_eq!(scan.records.len(), 1);
    }

    #[test]
    fn a_flipped_bit_in_a_middle_record_is_corruption_naming_the_file_and_offset() {
        let mut bytes = records(&[b"first", b"second"]);
        bytes[HEADER_BYTES] ^= 1;
        let error = scan(Path::new("dir/log"), &bytes).expect_err("corrupt");
        let message = error.to_string();
        assert!(
            message.contains("dir/log") && message.contains("byte 0"),
            "{message}"
        );
    }

    #[test]
    fn a_length_over_the_maximum_is_corruption_even_at_the_tail() {
        let mut bytes = records(&[b"first", b"second"]);
        bytes[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            scan(Path::new("log"), &bytes),
            Err(QuorumError::Corrupt { offset: 0, .. })
        ));
    }

    #[test]
    fn zeros_to_the_end_are_a_torn_tail_and_zeros_before_data_are_corruption() {
        let mut bytes = records(&[b"first", b"second"]);
        let whole = bytes.len() as u64;
        bytes.extend([0u8; 4096]);
        let scan_zeros = scan(Path::new("log"), &bytes).expect("zero-filled tail");
        assert_eq!(scan_zeros.records.len(), 2);
        assert_eq!(scan_zeros.valid_bytes, whole);
        bytes.extend(records(&[b"after"]));
        assert!(matches!(
            scan(Path::new("log"), &bytes),
            Err(QuorumError::Corrupt { .. })
        ));
    }
}
