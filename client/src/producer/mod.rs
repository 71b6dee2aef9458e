//! The producer: batching, backpressure, ordered retries, idempotence.
//!
//! - this module: the public API, and a record's way into the accumulator (buffer
//!   memory, partition count);
//! - `sender`: the background task that sends ready batches and handles the answers;
//! - `outcome`: whether a failed attempt may have written its batch, which decides
//!   whether a new epoch may renumber it.

mod outcome;
mod sender;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, TryAcquireError};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::accumulator::{Accumulator, PartitionCount, Unrouted};
use crate::cluster::Cluster;
use crate::config::{OnBufferFull, ProducerConfig};
use crate::delivery::DeliveryFuture;
use crate::error::{Error, Result};
use crate::record::ProducerRecord;
use sender::{Turns, run_sender};

/// Publishes records. Cheap to clone: clones share one buffer, one background sender
/// task and one set of connections, and are `Send + Sync`.
///
/// Records are appended to per-partition batches; a background task sends a batch when
/// it is full (`batch_bytes_max`) or has waited `linger_ms`. By default the producer is
/// idempotent: it gets a producer id from the cluster, numbers its batches, and keeps up
/// to `partition_in_flight_batches_max` batches of a partition in flight; the leader
/// writes them in order and recognises retries, so records are neither reordered nor
/// duplicated by retries. Without idempotence a partition has one request in flight,
/// which keeps order but not the no-duplicates guarantee. Buffered bytes are bounded by
/// `buffer_bytes_max`.
///
/// Dropping the last clone without [`close`](Self::close) still delivers what was sent,
/// in the background, as long as the runtime runs.
///
/// # Example
/// ```no_run
/// use strata_client::{Producer, ProducerConfig, ProducerRecord};
///
/// # async fn example() -> strata_client::Result<()> {
/// let producer = Producer::new(ProducerConfig::new("127.0.0.1:9400"))?;
/// // Wait for the acknowledgement:
/// let delivered = producer.send(ProducerRecord::new("orders", "order #1").key("customer-7")).await?.await?;
/// println!("stored at {}/{:?}", delivered.partition, delivered.offset);
/// // Or fire and forget, then flush:
/// producer.send_forget(ProducerRecord::new("orders", "order #2")).await?;
/// producer.close().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Producer {
    handle: Arc<Handle>,
}

/// Shuts the sender task down (after it drained everything) when the last clone goes.
#[derive(Debug)]
struct Handle {
    shared: Arc<Shared>,
    sender: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.begin_shutdown();
    }
}

#[derive(Debug)]
struct Shared {
    config: ProducerConfig,
    cluster: Arc<Cluster>,
    accumulator: Mutex<Accumulator>,
    /// Free buffer memory, in bytes.
    memory: Semaphore,
    /// Wakes the sender task: new batch, sealed batch, completion, shutdown.
    wake_sender: Notify,
    /// Wakes `flush` callers after completions.
    completed: Notify,
    /// No more sends accepted.
    closed: AtomicBool,
    /// The sender task exits once the accumulator is idle.
    shutdown: AtomicBool,
    /// Produce requests retried for a partition, since the start.
    retries: AtomicU64,
    /// Per broker: the order its produce requests were dispatched in.
    turns: Mutex<HashMap<u32, Turns>>,
}

impl Shared {
    fn begin_shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        self.shutdown.store(true, Ordering::Release);
        self.accumulator
            .lock()
            .expect("accumulator lock")
            .seal_all();
        self.wake_sender.notify_one();
    }
}

impl Producer {
    /// A producer. Connects lazily, on the first send.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an inconsistent config, [`Error::InvalidBootstrap`]
    /// for a bootstrap address that is not `host:port`.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn new(config: ProducerConfig) -> Result<Self> {
        config.validate()?;
        let cluster = Cluster::new(config.client.clone())?;
        let accumulator = Accumulator::new(
            config.batch_bytes_max,
            config.request_partition_bytes_max,
            Duration::from_millis(config.linger_ms),
            config
                .is_idempotent()
                .then_some(config.partition_in_flight_batches_max),
        );
        let shared = Arc::new(Shared {
            memory: Semaphore::new(config.buffer_bytes_max),
            config,
            cluster,
            accumulator: Mutex::new(accumulator),
            wake_sender: Notify::new(),
            completed: Notify::new(),
            closed: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            retries: AtomicU64::new(0),
            turns: Mutex::new(HashMap::new()),
        });
        let sender = tokio::spawn(run_sender(Arc::clone(&shared)));
        Ok(Self {
            handle: Arc::new(Handle {
                shared,
                sender: Mutex::new(Some(sender)),
            }),
        })
    }

    /// Queues a record and returns a [`DeliveryFuture`] for its outcome. Waits only for
    /// topic metadata (first send to a topic) and for buffer space.
    ///
    /// # Errors
    /// [`Error::BufferFull`] when the buffer stays full (see `on_buffer_full`);
    /// [`Error::RecordTooLarge`]; [`Error::ProducerClosed`] after [`close`](Self::close);
    /// [`Error::UnknownPartition`] for an explicit partition the topic lacks; a metadata
    /// error such as `UnknownTopicOrPartition`. Delivery errors come from the future.
    ///
    /// # Cancel safety
    /// Cancel-safe: if the call is dropped before it returns, the record was not queued.
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture> {
        let delivery = self.enqueue(record, true).await?;
        Ok(delivery.expect("a future was asked for"))
    }

    /// Queues a record without a handle on its outcome (fire and forget). A record that
    /// fails for good is logged at `warn` level through `tracing`.
    ///
    /// # Errors
    /// As for [`send`](Self::send), for the queueing only.
    ///
    /// # Cancel safety
    /// As for [`send`](Self::send).
    pub async fn send_forget(&self, record: ProducerRecord) -> Result<()> {
        self.enqueue(record, false).await.map(drop)
    }

    /// Queues a record; returns its future if `future`.
    async fn enqueue(
        &self,
        record: ProducerRecord,
        future: bool,
    ) -> Result<Option<DeliveryFuture>> {
        let shared = &self.handle.shared;
        let config = &shared.config;
        if shared.closed.load(Ordering::Acquire) {
            return Err(Error::ProducerClosed);
        }
        let bytes = record.encoded_bytes_max();
        if bytes > config.record_bytes_max {
            return Err(Error::RecordTooLarge {
                bytes,
                limit: "record_bytes_max",
                max: config.record_bytes_max,
            });
        }
        // Nearly every record finds its buffer memory free and its topic's partition count
        // kept by the accumulator: that path awaits nothing and builds no future.
        let generation = shared.cluster.generation();
        if self.try_reserve(bytes) {
            match self.append(&record, PartitionCount::Kept { generation }, future, bytes) {
                Ok(delivery) => return Ok(delivery),
                Err(Unrouted) => self.release(bytes),
            }
        }
        let count = self.partition_count(&record).await?;
        if !self.try_reserve(bytes) {
            self.reserve_when_full(bytes).await?;
        }
        let fresh = PartitionCount::Fresh { count, generation };
        self.append(&record, fresh, future, bytes)
            .map_err(|Unrouted| {
                self.release(bytes);
                Error::UnknownPartition {
                    topic: record.topic.to_string(),
                    partition: record.partition.unwrap_or_default(),
                    partition_count: count,
                }
            })
    }

    /// Appends a record whose memory is reserved, and wakes the sender if it has a new
    /// batch to time or a sealed one to send.
    fn append(
        &self,
        record: &ProducerRecord,
        partition_count: PartitionCount,
        future: bool,
        bytes: usize,
    ) -> std::result::Result<Option<DeliveryFuture>, Unrouted> {
        let shared = &self.handle.shared;
        // Read before the mutex is taken, not while it is held.
        let now = Instant::now();
        let (appended, delivery) = shared
            .accumulator
            .lock()
            .expect("accumulator lock")
            .append(record, partition_count, future, bytes, now)?;
        if appended.opened || appended.sealed {
            shared.wake_sender.notify_one();
        }
        Ok(delivery)
    }

    /// The topic's partition count. An explicit partition beyond the cached count makes
    /// one metadata refresh first: the topic may have grown since it was cached.
    async fn partition_count(&self, record: &ProducerRecord) -> Result<u32> {
        let cluster = &self.handle.shared.cluster;
        let mut partition_count = cluster.topic(&record.topic).await?.partition_count();
        let Some(partition) = record.partition else {
            return Ok(partition_count);
        };
        if partition >= partition_count {
            cluster.refresh(Some(&[record.topic.to_string()])).await?;
            partition_count = cluster.topic(&record.topic).await?.partition_count();
        }
        if partition >= partition_count {
            return Err(Error::UnknownPartition {
                topic: record.topic.to_string(),
                partition,
                partition_count,
            });
        }
        Ok(partition_count)
    }

    /// Takes `bytes` of buffer memory if they are free now; released when the record's
    /// batch is resolved.
    fn try_reserve(&self, bytes: usize) -> bool {
        match self.handle.shared.memory.try_acquire_many(permits(bytes)) {
            // Returned by hand with add_permits when the batch completes.
            Ok(permit) => {
                permit.forget();
                true
            }
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => false,
        }
    }

    /// Gives back the memory of a record that was not queued.
    fn release(&self, bytes: usize) {
        self.handle.shared.memory.add_permits(bytes);
    }

    /// [`try_reserve`](Self::try_reserve) found the buffer full: fails, or waits up to
    /// `buffer_wait_ms_max` for the memory, per `on_buffer_full`. The timer is armed only
    /// here: arming one costs more than the send.
    async fn reserve_when_full(&self, bytes: usize) -> Result<()> {
        let shared = &self.handle.shared;
        let full = || Error::BufferFull {
            buffer_bytes_max: shared.config.buffer_bytes_max,
        };
        if shared.config.on_buffer_full == OnBufferFull::Error {
            return Err(full());
        }
        let wait = Duration::from_millis(shared.config.buffer_wait_ms_max);
        tokio::time::timeout(wait, shared.memory.acquire_many(permits(bytes)))
            .await
            .map_err(|_| full())?
            .expect("the memory semaphore is never closed")
            // Returned by hand with add_permits when the batch completes.
            .forget();
        Ok(())
    }

    /// Sends every record queued before this call, ignoring linger, and waits until each
    /// is acknowledged or failed for good. Records sent concurrently may or may not be
    /// included.
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the future stops the waiting, not the sending.
    pub async fn flush(&self) {
        let shared = &self.handle.shared;
        let targets = {
            let mut accumulator = shared.accumulator.lock().expect("accumulator lock");
            accumulator.seal_all();
            accumulator.appended()
        };
        shared.wake_sender.notify_one();
        loop {
            let notified = shared.completed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let done = {
                let accumulator = shared.accumulator.lock().expect("accumulator lock");
                targets
                    .iter()
                    .all(|(tp, target)| accumulator.is_completed(tp, *target))
            };
            if done {
                return;
            }
            notified.await;
        }
    }

    /// Stops accepting records, delivers everything sent before, and stops the
    /// background task. Later sends fail with [`Error::ProducerClosed`]. Closing twice
    /// is harmless.
    ///
    /// # Cancel safety
    /// Cancel-safe: records keep being delivered in the background.
    pub async fn close(&self) {
        self.handle.shared.closed.store(true, Ordering::Release);
        self.flush().await;
        self.handle.shared.begin_shutdown();
        let sender = self.handle.sender.lock().expect("sender lock").take();
        if let Some(sender) = sender {
            let _ = sender.await;
        }
    }

    /// How many times a partition's batches were retried since the producer started
    /// (for monitoring: a growing count means an unhealthy broker or network).
    pub fn retry_count(&self) -> u64 {
        self.handle.shared.retries.load(Ordering::Relaxed)
    }

    /// Bytes of buffer memory free right now (for monitoring).
    pub fn buffer_bytes_free(&self) -> usize {
        self.handle.shared.memory.available_permits()
    }
}

/// The buffer-memory permits for `bytes`.
fn permits(bytes: usize) -> u32 {
    u32::try_from(bytes).expect("record_bytes_max below buffer_bytes_max < 4 GiB")
}
