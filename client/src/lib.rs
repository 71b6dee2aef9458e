//! Async Rust client for Strata: [`Producer`], [`Consumer`] (manual assignment or
//! consumer groups) and [`Admin`], on tokio.
//!
//! ```no_run
//! use std::time::Duration;
//! use strata_client::*;
//!
//! # async fn example() -> Result<()> {
//! let admin = Admin::new(ClientConfig::new("127.0.0.1:9400"))?;
//! admin.create_topic(NewTopic::new("orders", 3)).await?;
//!
//! let producer = Producer::new(ProducerConfig::new("127.0.0.1:9400"))?;
//! let delivered = producer.send(ProducerRecord::new("orders", "hello").key("customer-7")).await?.await?;
//!
//! let mut consumer = Consumer::new(ConsumerConfig::new("127.0.0.1:9400"))?;
//! let tp = TopicPartition::new("orders", delivered.partition);
//! consumer.assign(std::slice::from_ref(&tp));
//! consumer.seek(&tp, delivered.offset.expect("acks = leader"))?;
//! let records = consumer.poll(Duration::from_secs(5)).await?;
//! assert_eq!(records[0].value.as_deref(), Some(&b"hello"[..]));
//! producer.close().await;
//!
//! // In a group: the coordinator spreads the partitions over the group's consumers.
//! let mut member = Consumer::new(ConsumerConfig::new("127.0.0.1:9400"))?;
//! member.subscribe(["orders"], "billing")?;
//! for record in member.poll(Duration::from_secs(5)).await? {
//!     println!("{}-{}@{}", record.topic, record.partition, record.offset);
//! }
//! member.close().await?; // commits what poll returned, then leaves the group
//! # Ok(()) }
//! ```
//!
//! # Goals and non-goals
//! - Goals: correct ordering and delivery under retries and broker restarts; bounded
//!   memory everywhere; zero-copy record access on the consumer; plain async Rust with
//!   no background threads of its own (only tokio tasks), and no callbacks but the
//!   rebalance listener's, which run on the application's task.
//! - Not yet: transactions (so group delivery is at-least-once), compression, TLS/SASL.
//!
//! # Design decisions
//! - **Connections.** One connection per broker address, shared by every request of a
//!   client (`Producer`, `Consumer` and `Admin` each own one `cluster` of connections).
//!   A connection has a writer task (queued frames are coalesced into one flush) and a
//!   reader task that completes a `correlation_id → oneshot` map, so requests are
//!   pipelined up to `in_flight_requests_max`. The ApiVersions v0 handshake runs first
//!   and every later request uses the highest version both sides support. Each request
//!   has a timeout (`request_timeout_ms`, plus a fetch's long-poll wait); a late
//!   response finds no slot and is dropped. A produce with `acks = none` gets no
//!   response, so it takes no slot: it completes once written to the socket.
//! - **Reconnects.** A connection whose socket fails is replaced on next use; pending
//!   requests fail with the retriable [`Error::Disconnected`]. After a failed connect
//!   the next attempt waits `reconnect_backoff_ms`, doubling up to
//!   `reconnect_backoff_ms_max`, reset on success. A bootstrap address without a port
//!   is refused when the client is built ([`Error::InvalidBootstrap`]), and a host name
//!   that does not resolve fails its connect with [`Error::Resolve`].
//! - **Backoff.** Every retry and reconnect waits as Kafka's do since KIP-580: the
//!   initial value doubling per consecutive failure up to its `_max`, each wait
//!   jittered by ±20 %, so that clients cut off together (a broker restart) come back
//!   spread out instead of in lockstep. The defaults are Kafka's: reconnects 50 ms to
//!   1 s, retries 100 ms to 1 s.
//! - **Metadata.** Cached per topic; fetched on first use, refreshed every
//!   `metadata_refresh_ms` by a background task, and on `NotLeader`,
//!   `UnknownTopicOrPartition`, `LeaderNotAvailable` and connection errors, with
//!   concurrent refreshes collapsed into one.
//! - **Producer ordering.** With idempotence (the default) a partition has up to
//!   `partition_in_flight_batches_max` requests in flight, one numbered batch each, and
//!   the leader writes them in sequence order only (see [`Producer`]). Without it, at
//!   most one produce request is in flight per partition, and
//!   a retried request's batches go back to the front of the partition's queue, so no
//!   later batch can overtake a failed one: acknowledged records of a partition always
//!   appear in the log in `send` order. While one request is in flight, new records
//!   fill further batches, and the next request carries every sealed batch of the
//!   partition (up to `request_partition_bytes_max`), so throughput does not suffer
//!   from the single in-flight request. Requests to one broker carry all its ready
//!   partitions, split at `request_bytes_max`. With `acks = none` there is no answer
//!   to wait for: a request counts as done once written, and order then rests on the
//!   broker applying one connection's requests in order.
//! - **Batching.** A partition's open batch is sealed when full (`batch_bytes_max`),
//!   after `linger_ms`, or by [`Producer::flush`] / [`Producer::close`]. Keyed records
//!   are partitioned by Kafka's murmur2 ([`partitioner`]), keyless ones stick to one
//!   partition until its batch seals.
//! - **Backpressure.** Every queued record holds its encoded size of
//!   `buffer_bytes_max` until it is acknowledged or failed. When the buffer is full,
//!   `send` waits (up to `buffer_wait_ms_max`) or fails at once with
//!   [`Error::BufferFull`], per [`OnBufferFull`].
//! - **Retries.** Retriable errors ([`Error::is_retriable`]) are retried up to
//!   `retries_max` times with the backoff from `retry_backoff_ms` to
//!   `retry_backoff_ms_max`; then the record's [`DeliveryFuture`] fails.
//! - **Consumer.** `&mut self` methods: one owner, no locks. Fetches run as tasks, one
//!   per leader; when `poll` returns records, the next fetch of each partition is
//!   already started (prefetch), bounded by `prefetch_bytes_max` of buffered data.
//!   Records are decoded in the fetch task; keys, values and header values are
//!   `Bytes::slice_ref`s of the response buffer, after the batch CRC is verified.
//!   Every assign, seek and offset reset gives the partition a fresh epoch, so the
//!   result of a fetch issued before it is discarded. Seeks by time use ListOffsets.
//! - **Consumer groups.** Coordination is the broker's (KIP-848 style): no join/sync
//!   barrier, no client-side assignor. [`Consumer::subscribe`] starts a background
//!   task that finds the coordinator, joins, heartbeats on the interval the
//!   coordinator asks for (so the session lives however rarely the application
//!   polls), retries with backoff when the coordinator moves or is unreachable, and
//!   rejoins from scratch after a fencing. The task and the consumer share one small
//!   state (a std mutex plus two `Notify`s): the task writes the member id, epoch and
//!   assignment; the consumer writes the partitions it owns.
//! - **Reconciliation on the application's task.** Everything that touches fetch
//!   state happens inside `poll` / `recv`, before records are returned, so rebalance
//!   callbacks ([`RebalanceListener`]) run between polls and never concurrently with
//!   the application. A revoked partition stops at once (its buffered records are
//!   dropped, never returned); with auto-commit its position is committed; then
//!   `on_revoked` runs and the consumer publishes what it owns, which wakes the task
//!   to heartbeat at once: that heartbeat confirms the revocation, and only then does
//!   the coordinator hand the partition on, so a partition never has two owners. The
//!   heartbeat reports as owned every partition the consumer owns or may still start
//!   from the last assignment it received (or is reconciling against), so a heartbeat
//!   whose reply was lost cannot confirm a revocation the consumer has not applied. A
//!   granted partition gets `on_assigned` and starts at the group's committed offset
//!   (`auto_offset_reset` where there is none). A fencing (`FencedMemberEpoch`,
//!   `UnknownMemberId`) drops every partition without committing and calls `on_lost`.
//!   A waiting `poll` is woken when the assignment changes. The steps survive a
//!   dropped `poll` future: the next call finishes a half-done revocation, and every
//!   await of `poll` (lookups, commits) comes before records are taken from the buffer,
//!   so a dropped `poll` never loses records or moves positions past them.
//! - **Commits.** Positions (the offset after the last record `poll` returned) are
//!   what gets committed, fenced by the member epoch, and only for partitions owned
//!   under the member id and epoch the commit carries: a commit after a fencing the
//!   consumer has not applied yet drops the lost partitions first (`on_lost`). One
//!   consumer's commits apply in order: each commit first waits for the background
//!   commit (auto-commit, `commit_async`) started before it, at most
//!   `request_timeout_ms`, then abandons it. With `enable_auto_commit` (the
//!   default), a background commit runs every `auto_commit_interval_ms` from inside
//!   `poll`, revoked partitions are committed before the revocation is confirmed, and
//!   [`Consumer::close`] commits before leaving, so a moved partition is re-delivered
//!   only from the last `poll`. Without it, [`Consumer::commit_sync`],
//!   [`Consumer::commit_async`] (a [`CommitHandle`] to await or drop) and
//!   [`Consumer::commit_offsets`] are the only commits; nothing is committed on
//!   revocation. [`Consumer::assign`] and [`Consumer::subscribe`] exclude each other.
//! - **Leaving.** [`Consumer::close`] / [`Consumer::unsubscribe`] commit (auto-commit),
//!   call `on_revoked`, and send the leave heartbeat: epoch -1, or -2 for a static
//!   member (`group_instance_id`), whose partitions the coordinator then keeps until
//!   its session times out so that a restart with the same id takes them back. The
//!   whole of it is bounded by `request_timeout_ms`: against a hung coordinator the
//!   commit fails with [`Error::RequestTimedOut`] and the leave is abandoned (logged).
//!   Dropping a subscribed consumer stops its task without leaving.
//! - **Group admin.** [`Admin`] lists, describes (members, per-partition committed
//!   offset, high watermark, lag and owner) and deletes groups, and resets a group's
//!   offsets with an administrator's commit, which the broker refuses with
//!   [`Error::NonEmptyGroup`] while the group has members.
//! - **Growing topics.** A partition index beyond the cached partition count triggers
//!   one metadata refresh before it is reported as [`Error::UnknownPartition`].
//! - **Errors.** One [`Error`] enum; [`Error::is_retriable`] says whether trying again
//!   can help, and broker errors carry the [`protocol::ErrorCode`] and message.
//!
//! # Layout
//! - [`config`](ClientConfig): every setting and limit with its default.
//! - `connection`: one multiplexed broker connection (writer and reader tasks).
//! - `cluster`: metadata cache and connection pool, and the ListOffsets lookup that
//!   the consumer and admin share.
//! - `backoff`: the exponential, jittered wait before every retry and reconnect.
//! - `accumulator`: per-partition batching, pure and unit-tested; `routing` picks a
//!   record's partition, `batch` holds a partition's open and sealed batches,
//!   `idempotence` numbers them, `clock` stamps records.
//! - [`partitioner`]: murmur2 and key → partition.
//! - `delivery`: the futures of sent records, resolved once per batch.
//! - `producer`: the public API; `producer::sender` is the background task that sends
//!   the batches and handles the answers.
//! - `consumer`: the public API and buffer; `consumer::position` (seeks, resets),
//!   `consumer::fetcher` (fetch requests, one task per leader), `consumer::decode`
//!   (batches into records) and `consumer::subscription` (its consumer group part).
//! - `admin`: topics and metadata; `admin::groups` holds its consumer group part,
//!   `admin::elections` partition leader elections.
//! - `group`: group membership (the heartbeat task) and the pure reconciliation;
//!   `coordinator`: finding a group's coordinator, OffsetFetch and OffsetCommit.
//! - `record`, `error`: public data types.

mod accumulator;
mod admin;
mod backoff;
mod cluster;
mod config;
mod connection;
mod consumer;
mod coordinator;
mod delivery;
mod error;
mod group;
pub mod partitioner;
mod producer;
mod record;
#[cfg(test)]
mod test_support;

pub use strata_protocol as protocol;
pub use strata_protocol::messages::Acks;

pub use admin::{
    Admin, BrokerDescription, BrokerState, ClusterDescription, ControllerDescription, ElectResult,
    GroupDescription, GroupListing, GroupMemberDescription, GroupPartitionOffset, NewTopic,
    OffsetSpec, PartitionCounts, PartitionDetails, TopicDescription, TopicDetails,
    VoterDescription,
};
pub use cluster::{BrokerInfo, ClusterMetadata, PartitionInfo, TopicInfo};
pub use config::{AutoOffsetReset, ClientConfig, ConsumerConfig, OnBufferFull, ProducerConfig};
pub use consumer::{CommitHandle, Consumer, LogTruncation};
pub use delivery::DeliveryFuture;
pub use error::{Error, Result};
pub use group::{GroupMetadata, RebalanceListener};
pub use producer::Producer;
pub use record::{ConsumerRecord, Header, ProducerRecord, RecordMetadata, TopicPartition};

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}

    #[test]
    fn handles_can_cross_threads() {
        send_sync::<Producer>();
        send_sync::<Admin>();
        send_sync::<Error>();
        send_sync::<DeliveryFuture>();
        send::<Consumer>();
    }
}
