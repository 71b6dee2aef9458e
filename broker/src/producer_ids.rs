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
//!
//! Produce accepts only what was given ([`ProducerIds::check`]): an id of this broker below
//! the next one to give (so ids given before a restart stay valid), at an epoch no newer
//! than the one given. Epochs are remembered in memory only for ids that this process
//! bumped, at most [`BUMPED_TRACKED_MAX`]; an id given by this process and never bumped is
//! at epoch 0. Past the limit a bump gives a new id at epoch 0 instead, which needs no
//! memory. Epochs given before a restart are not known, so an id given before the start
//! is accepted at any epoch until this process bumps it.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use strata_protocol::ErrorCode;
use strata_protocol::batch::NO_PRODUCER_ID;

/// Ids reserved by one write of the file.
pub const BLOCK: i64 = 1000;
/// Producer ids whose bumped epoch is remembered (about 40 bytes each in memory).
pub const BUMPED_TRACKED_MAX: usize = 100_000;
/// Bits of the per-broker counter; the node id sits above them.
const LOCAL_BITS: u32 = 31;
const FILE: &str = "producer-ids";
const MAGIC: &[u8; 4] = b"SPID";
const VERSION: u16 = 1;

/// Why no producer id or epoch was given.
#[derive(Debug, thiserror::Error)]
pub enum ProducerIdError {
    /// The request named an id this broker never gave (another broker's included), or a
    /// negative epoch.
    #[error("producer id {producer_id} with epoch {producer_epoch} was never given out here")]
    Unknown {
        /// The requested id.
        producer_id: i64,
        /// The requested epoch.
        producer_epoch: i16,
    },
    /// The request or batch carries an epoch newer than the one given for its id.
    #[error("producer id {producer_id} was given epoch {given_epoch}, not {producer_epoch}")]
    EpochNotGiven {
        /// The id.
        producer_id: i64,
        /// The epoch the request or batch carries.
        producer_epoch: i16,
        /// The newest epoch given for the id.
        given_epoch: i16,
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

impl ProducerIdError {
    /// The wire code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Unknown { .. } => ErrorCode::UnknownProducerId,
            Self::EpochNotGiven { .. } => ErrorCode::InvalidProducerEpoch,
            Self::Exhausted | Self::Io { .. } => ErrorCode::StorageError,
        }
    }
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
    /// Local part of the first id this process gave (or will give).
    start: i64,
    next: i64,
    end: i64,
    /// Local id -> epoch given, for the ids this process bumped.
    bumped: HashMap<i64, i16>,
}

impl Block {
    /// The local part of `producer_id` if this broker gave it, else
    /// [`ProducerIdError::Unknown`] (also for a negative epoch).
    fn given(
        &self,
        base: i64,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Result<i64, ProducerIdError> {
        // Same node part as `base` (which is non-negative): the id is non-negative and
        // the difference is its counter, in 0..2^31.
        let ours = producer_id >> LOCAL_BITS == base >> LOCAL_BITS;
        let local = producer_id.wrapping_sub(base);
        if !ours || local >= self.next || producer_epoch < 0 {
            return Err(ProducerIdError::Unknown {
                producer_id,
                producer_epoch,
            });
        }
        Ok(local)
    }

    /// The epoch given for local id `local`, if this process knows it.
    fn epoch(&self, local: i64) -> Option<i16> {
        match self.bumped.get(&local) {
            Some(&epoch) => Some(epoch),
            None => (local >= self.start).then_some(0),
        }
    }
}

/// The allocator and the record of what it gave; one per broker. Thread-safe (a mutex).
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
            block: Mutex::new(Block {
                start: end,
                next: end,
                end,
                bumped: HashMap::new(),
            }),
        })
    }

    /// A new id with epoch 0 when `producer_id` is -1; otherwise the next epoch of that
    /// id, or a new id if its epochs are used up or [`BUMPED_TRACKED_MAX`] ids are bumped
    /// already. An epoch older than the one given gets the next epoch too: the producer
    /// retried a request whose answer it lost. Writes the file once per [`BLOCK`] new ids
    /// (a blocking fsync).
    ///
    /// # Errors
    /// [`ProducerIdError::Unknown`] for a negative id or epoch, or an id this broker never
    /// gave; [`ProducerIdError::EpochNotGiven`] for an epoch newer than the one given;
    /// [`ProducerIdError::Exhausted`]; [`ProducerIdError::Io`] if a block cannot be
    /// reserved.
    pub fn init(
        &self,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Result<(i64, i16), ProducerIdError> {
        let mut block = self.lock();
        if producer_id != NO_PRODUCER_ID {
            let local = block.given(self.base, producer_id, producer_epoch)?;
            let given_epoch = block.epoch(local);
            if let Some(given_epoch) = given_epoch
                && producer_epoch > given_epoch
            {
                return Err(ProducerIdError::EpochNotGiven {
                    producer_id,
                    producer_epoch,
                    given_epoch,
                });
            }
            let current = given_epoch.unwrap_or(producer_epoch);
            let room = block.bumped.contains_key(&local) || block.bumped.len() < BUMPED_TRACKED_MAX;
            if current < i16::MAX && room {
                block.bumped.insert(local, current + 1);
                return Ok((producer_id, current + 1));
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

    /// Whether a batch may carry `producer_id` at `producer_epoch`: the id was given here
    /// and the epoch is not newer than the one given (see the module docs).
    ///
    /// # Errors
    /// [`ProducerIdError::Unknown`] or [`ProducerIdError::EpochNotGiven`].
    pub fn check(&self, producer_id: i64, producer_epoch: i16) -> Result<(), ProducerIdError> {
        let block = self.lock();
        let local = block.given(self.base, producer_id, producer_epoch)?;
        match block.epoch(local) {
            Some(given_epoch) if producer_epoch > given_epoch => {
                Err(ProducerIdError::EpochNotGiven {
                    producer_id,
                    producer_epoch,
                    given_epoch,
                })
            }
            _ => Ok(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Block> {
        self.block
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
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
        ids.lock().bumped.insert(0, i16::MAX);
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
    fn brokers_give_disjoint_ids_and_refuse_each_others() {
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let one = ProducerIds::open(one.path(), 1).unwrap();
        let two = ProducerIds::open(two.path(), u32::MAX).unwrap();
        let (first, _) = one.init(-1, -1).unwrap();
        let (second, _) = two.init(-1, -1).unwrap();
        assert_eq!(first, 1 << 31);
        assert_eq!(second, i64::from(u32::MAX) << 31);
        assert!(second > 0);
        assert!(two.init(first, 0).is_err(), "given by broker 1");
        assert!(two.check(first, 0).is_err());
        assert!(one.check(first + 1, 0).is_err(), "never given by broker 1");
        assert!(one.check(first, 0).is_ok());
    }

    #[test]
    fn produce_is_checked_against_the_ids_and_epochs_given() {
        let dir = tempfile::tempdir().unwrap();
        let ids = ProducerIds::open(dir.path(), 0).unwrap();
        let (id, epoch) = ids.init(-1, -1).unwrap();
        assert!(ids.check(id, epoch).is_ok());
        assert!(matches!(
            ids.check(id, 1),
            Err(ProducerIdError::EpochNotGiven { given_epoch: 0, .. })
        ));
        assert!(matches!(
            ids.check(id + 1, 0),
            Err(ProducerIdError::Unknown { .. })
        ));
        assert!(ids.check(-7, 0).is_err());
        assert!(ids.check(i64::MIN, 0).is_err());
        assert!(ids.check(i64::MAX, 0).is_err());
        assert!(ids.check(id, -1).is_err());
        // A bump moves the epoch given; a lost answer's retry bumps again; a made-up
        // epoch is refused.
        assert_eq!(ids.init(id, 0).unwrap(), (id, 1));
        assert!(ids.check(id, 1).is_ok());
        assert!(ids.check(id, 2).is_err());
        assert_eq!(ids.init(id, 0).unwrap(), (id, 2));
        assert!(matches!(
            ids.init(id, 5),
            Err(ProducerIdError::EpochNotGiven { given_epoch: 2, .. })
        ));
        drop(ids);
        // After a restart the id is still given; its epochs were not kept, so any is
        // accepted until this process bumps it.
        let ids = ProducerIds::open(dir.path(), 0).unwrap();
        assert!(ids.check(id, 2).is_ok());
        assert!(ids.check(id + 1, 0).is_ok(), "below the reserved end");
        assert!(ids.check(BLOCK, 0).is_err(), "the next id to give");
        assert_eq!(ids.init(id, 2).unwrap(), (id, 3));
        assert!(ids.check(id, 4).is_err());
    }

    #[test]
    fn bumps_past_the_tracking_limit_give_new_ids() {
        let dir = tempfile::tempdir().unwrap();
        let ids = ProducerIds::open(dir.path(), 0).unwrap();
        ids.lock()
            .bumped
            .extend((0..BUMPED_TRACKED_MAX as i64).map(|id| (id + 10 * BLOCK, 1)));
        let (id, _) = ids.init(-1, -1).unwrap();
        let (bumped, epoch) = ids.init(id, 0).unwrap();
        assert_ne!(bumped, id);
        assert_eq!(epoch, 0);
        assert!(ids.check(id, 1).is_err());
    }

    #[test]
    fn a_damaged_file_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"garbage").unwrap();
        assert!(ProducerIds::open(dir.path(), 0).is_err());
        assert_eq!(decode(&encode(77)), Some(77));
    }
}
