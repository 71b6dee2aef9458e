//! The send-time stamp of `bench e2e` values: the wall clock in µs in each value's first
//! bytes, written by the producer and read back by the consumer that receives it.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};

/// Bytes of the send-time stamp at the start of each `bench e2e` value.
pub const STAMP_BYTES: usize = 8;

/// Values stamped with their send time, cut from slabs of [`STAMP_SLAB_VALUES`] values:
/// one allocation per slab, freed once the producer has copied its last value into a
/// batch.
pub struct Stamper {
    payload: Bytes,
    slab: BytesMut,
}

/// Values per [`Stamper`] slab.
const STAMP_SLAB_VALUES: usize = 64;

impl Stamper {
    /// Stamps copies of `payload`.
    pub fn new(payload: &Bytes) -> Self {
        Self {
            payload: payload.clone(),
            slab: BytesMut::new(),
        }
    }

    /// The payload with its first [`STAMP_BYTES`] replaced by the wall clock in µs since
    /// the Unix epoch (little-endian), as `nats-bench` stamps its messages: record
    /// timestamps are whole milliseconds, too coarse for latency. The copy per record is
    /// what a producer pays to build a value anyway, and the consumer reads the stamp
    /// from the value it already holds.
    pub fn stamped(&mut self) -> Bytes {
        if self.slab.capacity() < self.payload.len() {
            self.slab = BytesMut::with_capacity(self.payload.len() * STAMP_SLAB_VALUES);
        }
        self.slab.extend_from_slice(&self.payload);
        if let Some(head) = self.slab.get_mut(..STAMP_BYTES) {
            head.copy_from_slice(&now_us().to_le_bytes());
        }
        self.slab.split().freeze()
    }
}

/// The send time [`Stamper::stamped`] into a value, if it is long enough to hold one.
pub fn sent_us(value: &[u8]) -> Option<u64> {
    let stamp = value.get(..STAMP_BYTES)?;
    Some(u64::from_le_bytes(stamp.try_into().ok()?))
}

/// The wall clock in µs since the Unix epoch: comparable between the producer and the
/// consumer, which run in one process.
pub fn now_us() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    u64::try_from(since_epoch.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_overwrite_only_the_first_eight_bytes() {
        let payload = Bytes::from((0..30u8).collect::<Vec<u8>>());
        let mut stamper = Stamper::new(&payload);
        let before = now_us();
        let first = stamper.stamped();
        let first_stamped = now_us();
        // The later values must carry a later stamp: wait for the clock to move on.
        while now_us() <= first_stamped {
            std::hint::spin_loop();
        }
        // More than a slab's worth: values of a new slab are stamped the same way, and
        // stamping them leaves the first value's stamp as it was.
        let later: Vec<Bytes> = (0..STAMP_SLAB_VALUES + 2)
            .map(|_| stamper.stamped())
            .collect();
        let after = now_us();
        let first_stamp = sent_us(&first).unwrap();
        assert!(before <= first_stamp && first_stamp <= first_stamped);
        for value in std::iter::once(&first).chain(&later) {
            assert_eq!(value.len(), 30);
            assert_eq!(&value[STAMP_BYTES..], &payload[STAMP_BYTES..]);
        }
        for value in &later {
            let stamp = sent_us(value).unwrap();
            assert!(first_stamped < stamp && stamp <= after);
        }
        assert_eq!(sent_us(b"short"), None);
    }
}
