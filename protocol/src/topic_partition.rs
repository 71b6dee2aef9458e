//! [`TopicPartition`]: the one name for a partition that client, broker and tools share.

use std::fmt;

use crate::error::DecodeError;
use crate::wire::{Reader, Sink, Wire};

/// One partition of one topic. Orders by topic, then partition. Prints as
/// `<topic>-<partition>`, as Kafka does and as the partition's directory is named.
///
/// # Example
/// ```
/// use strata_protocol::TopicPartition;
///
/// let tp = TopicPartition::new("orders", 3);
/// assert_eq!(tp.to_string(), "orders-3");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    /// The topic name.
    pub topic: String,
    /// The partition index.
    pub partition: u32,
}

impl TopicPartition {
    /// A partition of `topic`.
    pub fn new(topic: impl Into<String>, partition: u32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// The topic as a string, then the partition as a `u32`.
impl Wire for TopicPartition {
    fn encode<S: Sink + ?Sized>(&self, out: &mut S) {
        self.topic.encode(out);
        self.partition.encode(out);
    }

    fn decode(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            topic: String::decode(reader)?,
            partition: u32::decode(reader)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};

    use super::*;

    #[test]
    fn encodes_as_a_string_then_a_u32_and_decodes_back() {
        let tp = TopicPartition::new("t", 3);
        let mut out = BytesMut::new();
        tp.encode(&mut out);
        assert_eq!(&out[..], [0, 1, b't', 0, 0, 0, 3]);
        let bytes = Bytes::from(out);
        let mut reader = Reader::new(&bytes);
        assert_eq!(TopicPartition::decode(&mut reader), Ok(tp));
        assert_eq!(reader.finish(), Ok(()));
    }
}
