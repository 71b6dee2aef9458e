//! Records as applications see them.

use std::sync::Arc;

use bytes::Bytes;
pub use strata_protocol::TopicPartition;

/// One record header: a name and an optional value.
///
/// # Example
/// ```
/// use strata_client::Header;
///
/// let header = Header::new("trace-id", "a1b2");
/// assert_eq!(header.value.as_deref(), Some(&b"a1b2"[..]));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The header's name.
    pub key: String,
    /// The value, or `None` for null.
    pub value: Option<Bytes>,
}

impl Header {
    /// A header with a value.
    pub fn new(key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        Self {
            key: key.into(),
            value: Some(value.into()),
        }
    }
}

/// A record to produce. Owns its topic (`Arc<str>`), key, value and headers (`Bytes`), so
/// cloning is cheap, and records of one topic can share one topic name.
///
/// # Example
/// ```
/// use strata_client::ProducerRecord;
///
/// let record = ProducerRecord::new("orders", "order #1")
///     .key("customer-7")
///     .header("source", "web");
/// assert_eq!(record.partition, None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerRecord {
    /// The topic. A clone of one `Arc<str>` per record costs no allocation.
    pub topic: Arc<str>,
    /// An explicit partition; `None` lets the partitioner choose.
    pub partition: Option<u32>,
    /// The key; records with the same key go to the same partition.
    pub key: Option<Bytes>,
    /// The value.
    pub value: Option<Bytes>,
    /// Headers.
    pub headers: Vec<Header>,
    /// Milliseconds since the Unix epoch; `None` means the time of `send`.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    /// A keyless record with a value.
    pub fn new(topic: impl Into<Arc<str>>, value: impl Into<Bytes>) -> Self {
        Self {
            topic: topic.into(),
            partition: None,
            key: None,
            value: Some(value.into()),
            headers: Vec::new(),
            timestamp: None,
        }
    }

    /// Sets the key.
    #[must_use]
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sends to this partition, bypassing the partitioner.
    #[must_use]
    pub fn partition(mut self, partition: u32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Adds a header.
    #[must_use]
    pub fn header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push(Header::new(key, value));
        self
    }

    /// Sets the timestamp (ms since the Unix epoch).
    #[must_use]
    pub fn timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = Some(timestamp);
        self
    }

    /// An upper bound of the record's encoded size inside a batch.
    pub(crate) fn encoded_bytes_max(&self) -> usize {
        const VARINT: usize = 5;
        const VARLONG: usize = 10;
        let nullable = |bytes: &Option<Bytes>| VARINT + bytes.as_ref().map_or(0, Bytes::len);
        let headers: usize = self
            .headers
            .iter()
            .map(|header| VARINT + header.key.len() + nullable(&header.value))
            .sum();
        VARINT
            + 1
            + VARLONG
            + VARINT
            + nullable(&self.key)
            + nullable(&self.value)
            + VARINT
            + headers
    }
}

/// Where a produced record landed.
///
/// # Example
/// ```no_run
/// # async fn example(producer: strata_client::Producer) -> strata_client::Result<()> {
/// use strata_client::ProducerRecord;
///
/// let metadata = producer.send(ProducerRecord::new("orders", "hello")).await?.await?;
/// println!("partition {} offset {:?}", metadata.partition, metadata.offset);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// The partition.
    pub partition: u32,
    /// The record's offset; `None` with `Acks::None`, where the broker does not answer.
    pub offset: Option<u64>,
    /// The record's timestamp (ms since the Unix epoch).
    pub timestamp: i64,
}

/// A fetched record. Key, value and header values are `Bytes` slices of the fetch
/// response buffer: nothing is copied, and the buffer lives as long as any record of it.
///
/// # Example
/// ```no_run
/// # async fn example(mut consumer: strata_client::Consumer) -> strata_client::Result<()> {
/// use std::time::Duration;
///
/// for record in consumer.poll(Duration::from_secs(1)).await? {
///     println!("{}-{}@{}: {:?}", record.topic, record.partition, record.offset, record.value);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// The topic (shared by every record of the topic).
    pub topic: Arc<str>,
    /// The partition.
    pub partition: u32,
    /// The record's offset.
    pub offset: u64,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// The key, or `None` for null.
    pub key: Option<Bytes>,
    /// The value, or `None` for null.
    pub value: Option<Bytes>,
    /// Headers.
    pub headers: Vec<Header>,
}
