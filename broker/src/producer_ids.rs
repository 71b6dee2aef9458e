//! Producer ids for idempotent producers: unique in the cluster for the life of the data
//! directory.
//!
//! An id is `node_id << 31 | local`: the broker's node id above a 31-bit counter of its
//! own, so brokers never hand out the same id and every id is a non-negative `i64`.
//! Ids are handed out from blocks of [`BLOCK`]. Before the first id of a block is given,
//! the block's end is written to `<data_dir>/producer-ids` (temporary file, fsync, rename,
//! fsync dir), so a restart continues after every id that may have been given, and only
//! one write in `BLOCK` ids touches the disk. The file holds the magic `SPID`, a version
//! (`u16` = 1), the reserved end (`i64`) and a CRC32 of the bytes before it, big-endian.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use strata_protocol::batch::NO_PRODUCER_ID;

/// Ids reserved by one write of the file.
pub const BLOCK: i64 = 1000;
/// Bits of the per-broker counter; the node id sits above them.
const LOCAL_BITS: u32 = 31;
const FILE: &str = "producer-ids";
const MAGIC: &[u8; 4] = b"SPID";
const VERSION: u16 = 1;

/// Why no producer id or epoch was given.
#[derive(Debug, thiserror::Error)]
pub enum ProducerIdError {
    /// The request named an id this broker never gave, or a negative epoch.
    #[error("producer id {producer_id} with epoch {producer_epoch} was never given out here")]
    Unknown {
        /// The requested id.
        producer_id: i64,
        /// The requested epoch.
        producer_epoch: i16,
    },
    /// This broker gave out all of its 2^31 ids.
    #[error("this broker has given out all of its producer ids")]
    Exhausted,
    /// The reservation could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Why the reservation file could not be read back at startup. Either way no id can be
/// given safely: one given before the restart might be given again.
#[derive(Debug, thiserror::Error)]
pub enum ProducerIdsOpenError {
    /// The file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file's magic, version, length or CRC is wrong.
    #[error("{path} is damaged; it must not be lost")]
    Damaged {
        /// The file.
        path: PathBuf,
    },
}

#[derive(Debug)]
struct Block {
    next: i64,
    end: i64,
}

/// The allocator; one per broker.
#[derive(Debug)]
pub struct ProducerIds {
    path: PathBuf,
    /// `node_id << 31`.
    base: i64,
    block: Mutex<Block>,
}

impl ProducerIds {
    /// Reads the reservation file of `data_dir`, if any, for broker `node_id`.
    ///
    /// # Errors
    /// [`ProducerIdsOpenError`] if the file exists but cannot be read or is damaged.
    pub fn open(data_dir: &Path, node_id: u32) -> Result<Self, ProducerIdsOpenError> {
        let path = data_dir.join(FILE);
        let end = match std::fs::read(&path) {
            Ok(bytes) => match decode(&bytes) {
                Some(end) => end,
                None => return Err(ProducerIdsOpenError::Damaged { path }),
            },
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => 0,
            Err(source) => return Err(ProducerIdsOpenError::Read { path, source }),
        };
        Ok(Self {
            path,
            base: i64::from(node_id) << LOCAL_BITS,
            block: Mutex::new(Block { next: end, end }),
        })
    }

    /// A new id with epoch 0 when `producer_id` is -1; otherwise the next epoch of that
    /// id (given here or by another broker), or a new id if its epochs are used up.
    /// Writes the file once per [`BLOCK`] new ids (a blocking fsync).
    ///
    /// # Errors
    /// [`ProducerIdError::Unknown`] for a negative id or epoch, or an id of this broker
    /// it never gave; [`ProducerIdError::Exhausted`]; [`ProducerIdError::Io`] if a block
    /// cannot be reserved.
    pub fn init(
        &self,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Result<(i64, i16), ProducerIdError> {
        let mut block = self
            .block
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if producer_id != NO_PRODUCER_ID {
            let given_here = producer_id >> LOCAL_BITS == self.base >> LOCAL_BITS;
            let never_given = given_here && producer_id - self.base >= block.next;
            if producer_id < 0 || producer_epoch < 0 || never_given {
                return Err(ProducerIdError::Unknown {
                    producer_id,
                    producer_epoch,
                });
            }
            if producer_epoch < i16::MAX {
                return Ok((producer_id, producer_epoch + 1));
            }
        }
        if block.next == block.end {
            let end = block.end + BLOCK;
            if end > 1 << LOCAL_BITS {
                return Err(ProducerIdError::Exhausted);
            }
            self.write(end).map_err(|source| ProducerIdError::Io {
                path: self.path.clone(),
                source,
            })?;
            block.end = end;
        }
        let id = self.base | block.next;
        block.next += 1;
        Ok((id, 0))
    }

    fn write(&self, end: i64) -> std::io::Result<()> {
        let temporary = self.path.with_extension("tmp");
        let mut file = crate::data_dir::create_private_file(&temporary)?;
        file.write_all(&encode(end))?;
        file.sync_all()?;
        std::fs::rename(&temporary, &self.path)?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::File::open(dir)?.sync_all()
    }
}

fn encode(end: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(18);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&end.to_be_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

fn decode(bytes: &[u8]) -> Option<i64> {
    let (body, crc) = bytes.split_at_checked(14)?;
    if crc.len() != 4 || crc32fast::hash(body).to_be_bytes() != crc {
        return None;
    }
    let (magic, rest) = body.split_first_chunk::<4>()?;
    let (version, end) = rest.split_first_chunk::<2>()?;
    if magic != MAGIC || u16::from_be_bytes(*version) != VERSION {
        return None;
    }
    let end = i64::from_be_bytes(end.try_into().ok()?);
    (end >= 0).then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_across_restarts_and_epochs_bump() {
        let dir = tempfile::tempdir().unwrap();
        let ids = ProducerIds::open(dir.path(), 0).unwrap();
        assert_eq!(ids.init(-1, -1).unwrap(), (0, 0));
        assert_eq!(ids.init(-1, -1).unwrap(), (1, 0));
        assert_eq!(ids.init(1, 0).unwrap(), (1, 1));
        assert!(ids.init(2, 0).is_err());
        assert!(ids.init(0, -1).is_err());
        assert_eq!(ids.init(0, i16::MAX).unwrap(), (2, 0));
        drop(ids);
        // A restart continues after the whole reserved block.
        let ids = ProducerIds::open(dir.path(), 0).unwrap();
        assert_eq!(ids.init(-1, -1).unwrap(), (BLOCK, 0));
        for _ in 0..BLOCK {
            ids.init(-1, -1).unwrap();
        }
        drop(ids);
        let ids = ProducerIds::open(dir.path(), 0).unwrap();
        assert_eq!(ids.init(-1, -1).unwrap(), (3 * BLOCK, 0));
    }

    #[test]
    fn brokers_give_disjoint_ids_and_bump_each_others() {
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let one = ProducerIds::open(one.path(), 1).unwrap();
        let two = ProducerIds::open(two.path(), u32::MAX).unwrap();
        let (first, _) = one.init(-1, -1).unwrap();
        let (second, _) = two.init(-1, -1).unwrap();
        assert_eq!(first, 1 << 31);
        assert_eq!(second, i64::from(u32::MAX) << 31);
        assert!(second > 0);
        // A producer may ask any broker for its next epoch.
        assert_eq!(two.init(first, 3).unwrap(), (first, 4));
        assert!(one.init(first + 1, 0).is_err(), "never given by broker 1");
    }

    #[test]
    fn a_damaged_file_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"garbage").unwrap();
        assert!(ProducerIds::open(dir.path(), 0).is_err());
        assert_eq!(decode(&encode(77)), Some(77));
    }
}
