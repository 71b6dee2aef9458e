//! [`MetadataStateMachine`]: the image the Raft adapter applies committed entries to, and
//! the byte encoding of commands, outcomes and snapshots (JSON: small, rare, and readable
//! when an operator has to look at a snapshot).

use std::sync::Arc;

use strata_protocol::ErrorCode;
use tokio::sync::watch;

use super::{Command, Image, Outcome};

/// Holds the current [`Image`] and publishes each new version on a watch channel, so
/// that the rest of the broker reads metadata without a lock. Owned by the Raft adapter's
/// apply task, which calls it one entry at a time; not shared.
#[derive(Debug)]
pub struct MetadataStateMachine {
    image: Arc<Image>,
    published: watch::Sender<Arc<Image>>,
}

impl MetadataStateMachine {
    /// An empty image, published at once on `published`.
    pub fn new(published: watch::Sender<Arc<Image>>) -> Self {
        let image = Arc::new(Image::default());
        published.send_replace(Arc::clone(&image));
        Self { image, published }
    }

    /// The current image.
    pub fn image(&self) -> &Arc<Image> {
        &self.image
    }

    /// Decodes the committed command at `index`, applies it, publishes the new image and
    /// returns the encoded [`Outcome`]. Bytes that are no command are refused with
    /// `InvalidRequest` (and still count as applied), never a panic: every broker
    /// refuses them alike.
    ///
    /// # Panics
    /// If `index` does not follow the last applied one (see [`Image::apply`]).
    pub fn apply_bytes(&mut self, index: u64, command: &[u8]) -> Vec<u8> {
        let image = Arc::make_mut(&mut self.image);
        let outcome = match decode_command(command) {
            Ok(command) => image.apply(index, &command),
            Err(error) => {
                image.skip(index);
                Outcome::refused(ErrorCode::InvalidRequest, error)
            }
        };
        self.publish();
        encode_outcome(&outcome)
    }

    /// Records an entry with no command at `index` and publishes the new image.
    ///
    /// # Panics
    /// If `index` does not follow the last applied one.
    pub fn skip(&mut self, index: u64) {
        Arc::make_mut(&mut self.image).skip(index);
        self.publish();
    }

    /// The index of the last entry applied (0 when none).
    pub fn applied(&self) -> u64 {
        self.image.applied
    }

    /// The whole image, `applied` included, as bytes.
    pub fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(&*self.image).expect("an image always serializes")
    }

    /// Replaces the image with a snapshot's and publishes it.
    ///
    /// # Errors
    /// The bytes do not decode to an image, or the image breaks a rule of [`Image::check`];
    /// the current image is kept.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        let image: Image = serde_json::from_slice(bytes)
            .map_err(|error| format!("the metadata snapshot does not decode: {error}"))?;
        image
            .check()
            .map_err(|rule| format!("the metadata snapshot is inconsistent: {rule}"))?;
        self.image = Arc::new(image);
        self.publish();
        Ok(())
    }

    fn publish(&self) {
        self.published.send_replace(Arc::clone(&self.image));
    }
}

/// A command as the bytes the quorum replicates.
pub fn encode_command(command: &Command) -> Vec<u8> {
    serde_json::to_vec(command).expect("a command always serializes")
}

/// A command from the bytes the quorum replicated.
///
/// # Errors
/// The bytes are no command; the message says where decoding stopped.
pub fn decode_command(bytes: &[u8]) -> Result<Command, String> {
    serde_json::from_slice(bytes).map_err(|error| format!("undecodable metadata command: {error}"))
}

/// An outcome as the bytes returned to the proposer.
pub fn encode_outcome(outcome: &Outcome) -> Vec<u8> {
    serde_json::to_vec(outcome).expect("an outcome always serializes")
}

/// An outcome from the bytes returned to the proposer.
///
/// # Errors
/// The bytes are no outcome; the message says where decoding stopped.
pub fn decode_outcome(bytes: &[u8]) -> Result<Outcome, String> {
    serde_json::from_slice(bytes).map_err(|error| format!("undecodable metadata outcome: {error}"))
}
