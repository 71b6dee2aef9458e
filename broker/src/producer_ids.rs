//! Producer ids for idempotent producers: unique in the cluster for the life of its
//! metadata, and checked on every idempotent produce.
//!
//! Ids are handed out in blocks of [`BLOCK`] by the cluster metadata: when its block is
//! used up, a broker proposes [`AllocateProducerIds`] (the InitProducerId handler does,
//! asking for one block at a time) and the quorum gives it the next `BLOCK` ids of the
//! cluster's counter ([`Image::next_producer_id`]). An id is the plain counter value,
//! so no two brokers give the same id, a restart continues above every id given before
//! it (the block's record is in the fsynced Raft log before the first id of it is given),
//! and only one id in `BLOCK` costs a metadata write.
//!
//! A data directory from before the cluster has the file `<data_dir>/producer-ids`,
//! which reserved this broker's ids under the old scheme: `node_id << 31 | local`, with
//! `local` below the reserved end the file holds (magic `SPID`, a version `u16` = 1, the
//! end `i64` and a CRC32 of the bytes before it, big-endian). It is read at every start
//! and never written: every block is asked for at least `(node_id << 31) + end`, so new
//! ids are above every id given under the old scheme, and ids below it stay accepted.
//! The file stays in the directory because it is the only record of that bound until
//! the metadata holds a block above it.
//!
//! Produce accepts only ids that may have been given ([`ProducerIds::check`]):
//! - an id this process gave, at an epoch no newer than the one it gave. Epochs are
//!   remembered in memory only for ids that this process bumped, at most
//!   [`BUMPED_TRACKED_MAX`]; an id given by this process and never bumped is at epoch 0.
//!   Past the limit a bump gives a new id at epoch 0 instead, which needs no memory.
//! - any other id below the cluster's next id (some broker was handed a block holding
//!   it: another broker, or this one before a restart), at any epoch until this process
//!   bumps it. The ids of this process's current block that it has not given yet are
//!   refused.
//!
//! With other brokers in the cluster, another broker may have bumped an id this process
//! knows at an older epoch (a producer re-initialises through whichever broker it
//! reaches), so there an epoch newer than the one known here is accepted. And an id
//! above the next one this broker has applied may come from a block another broker was
//! just given: it is refused with a retriable error, since this broker learns of the
//! block within a metadata round trip.
//!
//! [`AllocateProducerIds`]: crate::cluster::metadata::Command::AllocateProducerIds

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use strata_protocol::ErrorCode;
use strata_protocol::batch::NO_PRODUCER_ID;
use tokio::sync::watch;

use crate::cluster::metadata::Image;
use crate::topics::AdminError;

/// Ids in one block handed out by the cluster metadata.
pub const BLOCK: i64 = 1000;
/// Producer ids whose bumped epoch is remembered (about 40 bytes each in memory).
pub const BUMPED_TRACKED_MAX: usize = 100_000;
/// Bits of the per-broker counter under the old scheme; the node id sat above them.
const LEGACY_LOCAL_BITS: u32 = 31;
const LEGACY_FILE: &str = "producer-ids";
const MAGIC: &[u8; 4] = b"SPID";
const VERSION: u16 = 1;

/// Why no producer id or epoch was given.
#[derive(Debug, thiserror::Error)]
pub enum ProducerIdError {
    /// The request named an id no broker was handed, or one of this broker's current
    /// block that it has not given yet, or a negative epoch.
    #[error("producer id {producer_id} with epoch {producer_epoch} was never given out")]
    Unknown {
        /// The requested id.
        producer_id: i64,
        /// The requested epoch.
        producer_epoch: i16,
    },
    /// The id is not below the next id of the metadata this broker has applied, and
    /// other brokers give ids too: one may just have been handed the block holding it.
    #[error(
        "producer id {producer_id} is not below {next}, the next producer id this broker knows to be handed out; if another broker just gave it, this broker learns of it within a metadata round trip: retry"
    )]
    NotYetKnown {
        /// The requested id.
        producer_id: i64,
        /// The next id of the metadata this broker has applied.
        next: i64,
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
    /// The cluster metadata did not hand this broker a block of ids.
    #[error("no block of producer ids from the cluster metadata: {}", .0.message)]
    Metadata(AdminError),
}

impl ProducerIdError {
    /// The wire code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Unknown { .. } => ErrorCode::UnknownProducerId,
            // Retriable, and the client refreshes its metadata, which is what the
            // broker waits for.
            Self::NotYetKnown { .. } => ErrorCode::LeaderNotAvailable,
            Self::EpochNotGiven { .. } => ErrorCode::InvalidProducerEpoch,
            Self::Metadata(error) => error.code,
        }
    }
}

/// Why the legacy reservation file could not be read back at startup. Either way no id
/// can be given safely: one given under the old scheme might be given again.
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

#[derive(Debug, Default)]
struct State {
    /// The ids this process gave before its current block, ascending, adjacent ranges
    /// merged.
    earlier: Vec<Range<i64>>,
    /// The current block: `start..next` given, `next..end` not yet.
    start: i64,
    next: i64,
    end: i64,
    /// Id -> epoch given, for the ids this process bumped.
    bumped: HashMap<i64, i16>,
    /// Every id below it was handed to some broker: the legacy bound, or the next id of
    /// the newest image looked at.
    known_next: i64,
}

impl State {
    /// Whether this process gave `producer_id`.
    fn gave(&self, producer_id: i64) -> bool {
        if (self.start..self.next).contains(&producer_id) {
            return true;
        }
        let index = self
            .earlier
            .partition_point(|range| range.end <= producer_id);
        self.earlier
            .get(index)
            .is_some_and(|range| range.contains(&producer_id))
    }
}

/// The allocator and the record of what it gave; one per broker. Thread-safe (a mutex).
#[derive(Debug)]
pub struct ProducerIds {
    /// The applied metadata, for the cluster's next id.
    image: watch::Receiver<Arc<Image>>,
    /// Whether this broker is the only one that gives ids and epochs (a one-node
    /// cluster): then the applied metadata is complete, and an epoch newer than the one
    /// given here was made up.
    sole_giver: bool,
    /// The lowest id a block may start at: above every id of the old scheme.
    at_least: i64,
    state: Mutex<State>,
    /// Held while a block is asked for, so that one request at a time asks.
    refill: tokio::sync::Mutex<()>,
}

impl ProducerIds {
    /// Reads the legacy reservation file of `data_dir`, if any, for broker `node_id`.
    /// `image` follows the applied metadata; `sole_giver` says whether this broker is
    /// the cluster's only one.
    ///
    /// # Errors
    /// [`ProducerIdsOpenError`] if the file exists but cannot be read or is damaged.
    pub fn open(
        data_dir: &Path,
        node_id: u32,
        image: watch::Receiver<Arc<Image>>,
        sole_giver: bool,
    ) -> Result<Self, ProducerIdsOpenError> {
        let path = data_dir.join(LEGACY_FILE);
        let at_least = match std::fs::read(&path) {
            Ok(bytes) => match decode(&bytes) {
                Some(end) => (i64::from(node_id) << LEGACY_LOCAL_BITS).saturating_add(end),
                None => return Err(ProducerIdsOpenError::Damaged { path }),
            },
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => 0,
            Err(source) => return Err(ProducerIdsOpenError::Read { path, source }),
        };
        let known_next = at_least.max(image.borrow().next_producer_id);
        Ok(Self {
            image,
            sole_giver,
            at_least,
            state: Mutex::new(State {
                known_next,
                ..State::default()
            }),
            refill: tokio::sync::Mutex::new(()),
        })
    }

    /// A new id with epoch 0 when `producer_id` is -1; otherwise the next epoch of that
    /// id, or a new id if its epochs are used up or [`BUMPED_TRACKED_MAX`] ids are bumped
    /// already. An epoch older than the one given gets the next epoch too: the producer
    /// retried a request whose answer it lost. `None` when a new id is due and the block
    /// is used up: ask the metadata for one ([`add_block`](Self::add_block)) and call
    /// again. No I/O.
    ///
    /// # Errors
    /// [`ProducerIdError::Unknown`] for a negative id or epoch, or an id never given;
    /// [`ProducerIdError::NotYetKnown`] for an id above those this broker knows of, in a
    /// cluster of several brokers; [`ProducerIdError::EpochNotGiven`] for an epoch newer
    /// than the one given.
    pub fn init(
        &self,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Result<Option<(i64, i16)>, ProducerIdError> {
        let mut state = self.lock();
        if producer_id != NO_PRODUCER_ID {
            let known = self.known_epoch(&mut state, producer_id, producer_epoch)?;
            let current = match known {
                Some(given_epoch) if producer_epoch > given_epoch => {
                    self.newer_epoch(producer_id, producer_epoch, given_epoch)?
                }
                Some(given_epoch) => given_epoch,
                None => producer_epoch,
            };
            let room =
                state.bumped.contains_key(&producer_id) || state.bumped.len() < BUMPED_TRACKED_MAX;
            if current < i16::MAX && room {
                state.bumped.insert(producer_id, current + 1);
                return Ok(Some((producer_id, current + 1)));
            }
        }
        if state.next == state.end {
            return Ok(None);
        }
        let id = state.next;
        state.next += 1;
        Ok(Some((id, 0)))
    }

    /// Whether a batch may carry `producer_id` at `producer_epoch` (see the module
    /// docs). One lock, no allocation.
    ///
    /// # Errors
    /// [`ProducerIdError::Unknown`], [`ProducerIdError::NotYetKnown`] or
    /// [`ProducerIdError::EpochNotGiven`].
    pub fn check(&self, producer_id: i64, producer_epoch: i16) -> Result<(), ProducerIdError> {
        let mut state = self.lock();
        match self.known_epoch(&mut state, producer_id, producer_epoch)? {
            Some(given_epoch) if producer_epoch > given_epoch => self
                .newer_epoch(producer_id, producer_epoch, given_epoch)
                .map(drop),
            _ => Ok(()),
        }
    }

    /// Whether the current block is used up, so a new id needs a block from the
    /// metadata.
    pub fn needs_block(&self) -> bool {
        let state = self.lock();
        state.next == state.end
    }

    /// The lowest id a block for this broker may start at: the `at_least` of its
    /// `AllocateProducerIds` commands.
    pub fn at_least(&self) -> i64 {
        self.at_least
    }

    /// Waits until no other request is asking for a block; the guard lets this one ask.
    pub async fn refilling(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.refill.lock().await
    }

    /// Makes `start..end`, handed to this broker by the metadata, the current block. The
    /// ids of the old block not given yet are never given.
    ///
    /// # Errors
    /// [`ProducerIdError::Metadata`] if the block is empty or not above the current one
    /// (the metadata's counter only grows, so it never is).
    pub fn add_block(&self, start: i64, end: i64) -> Result<(), ProducerIdError> {
        let mut state = self.lock();
        if start < state.end.max(self.at_least) || end <= start {
            return Err(ProducerIdError::Metadata(AdminError::new(
                ErrorCode::Unknown,
                format!(
                    "the metadata handed producer ids {start}..{end}, not above this broker's block {}..{}",
                    state.start, state.end
                ),
            )));
        }
        let given = state.start..state.next;
        if !given.is_empty() {
            match state.earlier.last_mut() {
                Some(last) if last.end == given.start => last.end = given.end,
                _ => state.earlier.push(given),
            }
        }
        state.start = start;
        state.next = start;
        state.end = end;
        state.known_next = state.known_next.max(end);
        Ok(())
    }

    /// The epoch given for `producer_id` if this process knows it, `None` if some broker
    /// was handed the id but its epoch is not known here.
    fn known_epoch(
        &self,
        state: &mut State,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Result<Option<i16>, ProducerIdError> {
        if producer_id < 0 || producer_epoch < 0 {
            return Err(ProducerIdError::Unknown {
                producer_id,
                producer_epoch,
            });
        }
        if let Some(&epoch) = state.bumped.get(&producer_id) {
            return Ok(Some(epoch));
        }
        if state.gave(producer_id) {
            return Ok(Some(0));
        }
        if (state.next..state.end).contains(&producer_id) {
            return Err(ProducerIdError::Unknown {
                producer_id,
                producer_epoch,
            });
        }
        if producer_id >= state.known_next {
            state.known_next = state.known_next.max(self.image.borrow().next_producer_id);
        }
        if producer_id < state.known_next {
            Ok(None)
        } else if self.sole_giver {
            Err(ProducerIdError::Unknown {
                producer_id,
                producer_epoch,
            })
        } else {
            Err(ProducerIdError::NotYetKnown {
                producer_id,
                next: state.known_next,
            })
        }
    }

    /// What an epoch newer than the one this process gave means: a made-up one if this
    /// broker alone gives epochs, else possibly one another broker gave, taken as the
    /// current epoch.
    fn newer_epoch(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        given_epoch: i16,
    ) -> Result<i16, ProducerIdError> {
        if self.sole_giver {
            return Err(ProducerIdError::EpochNotGiven {
                producer_id,
                producer_epoch,
                given_epoch,
            });
        }
        Ok(producer_epoch)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// The reserved end of a legacy `producer-ids` file, if the bytes are one.
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
    use crate::cluster::metadata::{Command, Outcome};

    /// The cluster metadata, as far as producer ids go.
    struct Metadata {
        image: Image,
        published: watch::Sender<Arc<Image>>,
    }

    impl Metadata {
        fn new() -> Self {
            Self {
                image: Image::default(),
                published: watch::Sender::new(Arc::new(Image::default())),
            }
        }

        /// Hands `node_id` a block, as the InitProducerId handler asks for it.
        fn allocate(&mut self, ids: &ProducerIds, node_id: u32) {
            let command = Command::AllocateProducerIds {
                broker: node_id,
                count: BLOCK,
                at_least: ids.at_least(),
            };
            let index = self.image.applied + 1;
            let Outcome::ProducerIds { start, end } = self.image.apply(index, &command) else {
                panic!("no block")
            };
            self.published.send_replace(Arc::new(self.image.clone()));
            ids.add_block(start, end).unwrap();
        }

        fn open(&self, dir: &Path, node_id: u32, sole_giver: bool) -> ProducerIds {
            ProducerIds::open(dir, node_id, self.published.subscribe(), sole_giver).unwrap()
        }

        /// A new id from `ids`, asking for a block when it needs one.
        fn give(&mut self, ids: &ProducerIds, node_id: u32) -> i64 {
            if let Some((id, 0)) = ids.init(-1, -1).unwrap() {
                return id;
            }
            assert!(ids.needs_block());
            self.allocate(ids, node_id);
            ids.init(-1, -1).unwrap().unwrap().0
        }
    }

    fn legacy_file(end: i64) -> Vec<u8> {
        let mut out = Vec::with_capacity(18);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&end.to_be_bytes());
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    #[test]
    fn ids_come_from_metadata_blocks_and_stay_unique_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let mut metadata = Metadata::new();
        let ids = metadata.open(dir.path(), 0, true);
        assert_eq!(ids.init(-1, -1).unwrap(), None, "no block yet");
        assert_eq!(metadata.give(&ids, 0), 0);
        assert_eq!(metadata.give(&ids, 0), 1);
        assert_eq!(ids.init(1, 0).unwrap(), Some((1, 1)));
        assert!(ids.init(2, 0).is_err(), "not given yet");
        assert!(ids.init(0, -1).is_err());
        ids.lock().bumped.insert(0, i16::MAX);
        assert_eq!(ids.init(0, i16::MAX).unwrap(), Some((2, 0)));
        for expected in 3..BLOCK + 5 {
            assert_eq!(metadata.give(&ids, 0), expected);
        }
        assert!(ids.check(BLOCK - 1, 0).is_ok(), "in an earlier block");
        assert_eq!(metadata.image.next_producer_id, 2 * BLOCK);
        drop(ids);
        // A restart continues above every block handed out.
        let ids = metadata.open(dir.path(), 0, true);
        assert!(ids.check(BLOCK + 4, 0).is_ok(), "given before the restart");
        assert_eq!(metadata.give(&ids, 0), 2 * BLOCK);
        assert!(ids.check(2 * BLOCK + 1, 0).is_err(), "the next id to give");
    }

    #[test]
    fn brokers_give_disjoint_ids_and_accept_each_others() {
        let (one_dir, two_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut metadata = Metadata::new();
        let one = metadata.open(one_dir.path(), 1, false);
        let two = metadata.open(two_dir.path(), 2, false);
        let first = metadata.give(&one, 1);
        let second = metadata.give(&two, 2);
        assert_eq!((first, second), (0, BLOCK));
        assert!(two.check(first, 0).is_ok(), "given by broker 1");
        assert!(two.check(first, 5).is_ok(), "its epoch is not known here");
        assert!(
            two.check(second + 1, 0).is_err(),
            "in its own block, not given"
        );
        assert!(one.check(first + 1, 0).is_err());
        assert!(one.check(second, 0).is_ok());
        assert!(matches!(
            one.check(2 * BLOCK, 0),
            Err(ProducerIdError::NotYetKnown { next, .. }) if next == 2 * BLOCK
        ));
        assert!(one.check(first, -1).is_err());
        // A producer re-initialising through the other broker gets the next epoch there,
        // and its own broker then accepts that epoch.
        assert_eq!(two.init(first, 0).unwrap(), Some((first, 1)));
        assert!(two.check(first, 1).is_ok());
        assert!(
            two.check(first, 0).is_ok(),
            "older: the partition fences it"
        );
        assert!(one.check(first, 1).is_ok());
        assert_eq!(one.init(first, 1).unwrap(), Some((first, 2)));
        assert_eq!(
            one.init(first, 0).unwrap(),
            Some((first, 3)),
            "a lost answer's retry"
        );
    }

    #[test]
    fn a_sole_broker_checks_produce_against_the_ids_and_epochs_given() {
        let dir = tempfile::tempdir().unwrap();
        let mut metadata = Metadata::new();
        let ids = metadata.open(dir.path(), 0, true);
        let id = metadata.give(&ids, 0);
        assert!(ids.check(id, 0).is_ok());
        assert!(matches!(
            ids.check(id, 1),
            Err(ProducerIdError::EpochNotGiven { given_epoch: 0, .. })
        ));
        assert!(matches!(
            ids.check(id + 1, 0),
            Err(ProducerIdError::Unknown { .. })
        ));
        assert!(matches!(
            ids.check(BLOCK, 0),
            Err(ProducerIdError::Unknown { .. })
        ));
        assert!(ids.check(-7, 0).is_err());
        assert!(ids.check(i64::MIN, 0).is_err());
        assert!(ids.check(i64::MAX, 0).is_err());
        assert!(ids.check(id, -1).is_err());
        // A bump moves the epoch given; a lost answer's retry bumps again; a made-up
        // epoch is refused.
        assert_eq!(ids.init(id, 0).unwrap(), Some((id, 1)));
        assert!(ids.check(id, 1).is_ok());
        assert!(ids.check(id, 2).is_err());
        assert_eq!(ids.init(id, 0).unwrap(), Some((id, 2)));
        assert!(matches!(
            ids.init(id, 5),
            Err(ProducerIdError::EpochNotGiven { given_epoch: 2, .. })
        ));
        drop(ids);
        // After a restart the id is still given; its epochs were not kept, so any is
        // accepted until this process bumps it.
        let ids = metadata.open(dir.path(), 0, true);
        assert!(ids.check(id, 2).is_ok());
        assert!(ids.check(id + 1, 0).is_ok(), "in a block handed out before");
        assert!(ids.check(BLOCK, 0).is_err(), "in no block");
        assert_eq!(ids.init(id, 2).unwrap(), Some((id, 3)));
        assert!(ids.check(id, 4).is_err());
    }

    #[test]
    fn bumps_past_the_tracking_limit_give_new_ids() {
        let dir = tempfile::tempdir().unwrap();
        let mut metadata = Metadata::new();
        let ids = metadata.open(dir.path(), 0, true);
        ids.lock()
            .bumped
            .extend((0..BUMPED_TRACKED_MAX as i64).map(|id| (id + 10 * BLOCK, 1)));
        let id = metadata.give(&ids, 0);
        let (bumped, epoch) = ids.init(id, 0).unwrap().unwrap();
        assert_ne!(bumped, id);
        assert_eq!(epoch, 0);
        assert!(ids.check(id, 1).is_err());
    }

    #[test]
    fn blocks_start_above_the_legacy_reservation() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LEGACY_FILE), legacy_file(2 * BLOCK)).unwrap();
        let mut metadata = Metadata::new();
        let ids = metadata.open(dir.path(), 3, true);
        let legacy_end = (3 << 31) + 2 * BLOCK;
        assert_eq!(ids.at_least(), legacy_end);
        // Ids of the old scheme stay accepted before any block is handed out.
        assert!(ids.check((3 << 31) + 5, 7).is_ok());
        assert!(ids.check(legacy_end, 0).is_err());
        assert_eq!(metadata.give(&ids, 3), legacy_end);
        assert!(ids.check((3 << 31) + 5, 7).is_ok());
        assert!(
            ids.add_block(0, BLOCK).is_err(),
            "a block below the legacy ids"
        );
    }

    #[test]
    fn a_damaged_legacy_file_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LEGACY_FILE), b"garbage").unwrap();
        let metadata = Metadata::new();
        assert!(ProducerIds::open(dir.path(), 0, metadata.published.subscribe(), true).is_err());
        assert_eq!(decode(&legacy_file(77)), Some(77));
        assert_eq!(decode(&legacy_file(-1)), None);
    }
}
