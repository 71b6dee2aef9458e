//! Writing to and reading from one partition of a [`Cluster`] whose leader may move at
//! any time (a failover, a reassignment, a late heartbeat that fences a broker on this
//! loaded machine), as a real client does: every batch goes to the current leader and is
//! sent again while the answer is a retriable error.

use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_protocol::ErrorCode;
use strata_protocol::messages::{Acks, ProducePartitionResponse};

use super::Cluster;
use crate::{Client, WAIT, idempotent_batch_of, values};

/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(50);

/// An idempotent producer of partition 0 of `topic`: the retry of a batch already
/// written is deduplicated, so the acknowledged values are exactly what the log must
/// hold.
#[derive(Debug)]
pub struct Writer {
    topic: String,
    /// The producer id and epoch.
    pub id: (i64, i16),
    sequence: i32,
    /// The values acknowledged so far, in order.
    pub acknowledged: Vec<String>,
}

impl Writer {
    /// A producer with a new id, from a running broker.
    pub async fn new(cluster: &Cluster, topic: &str) -> Self {
        let mut client = Client::connect(&cluster.address(cluster.running()[0])).await;
        Self {
            topic: topic.to_owned(),
            id: client.init_producer_id().await,
            sequence: 0,
            acknowledged: Vec::new(),
        }
    }

    /// Writes `rounds` batches of 5 records with `acks = all`, each acknowledged.
    ///
    /// # Panics
    /// If a batch is refused for good, or not acknowledged within [`WAIT`].
    pub async fn write(&mut self, cluster: &Cluster, prefix: &str, rounds: usize) {
        for round in 0..rounds {
            let batch_prefix = format!("{prefix}{round}");
            let batch = idempotent_batch_of(&batch_prefix, 5, self.id, self.sequence);
            let written = produce_retrying(cluster, &self.topic, batch).await;
            assert_eq!(written.error_code, ErrorCode::None, "{batch_prefix}");
            self.sequence += 5;
            self.acknowledged
                .extend((0..5).map(|index| format!("{batch_prefix}-{index}")));
        }
    }
}

/// The leader of `topic`-0 as a running broker sees it, if it has one.
pub async fn current_leader(cluster: &Cluster, topic: &str) -> Option<u32> {
    let view = cluster.partition_on(cluster.running()[0], topic, 0).await;
    u32::try_from(view.leader_id).ok()
}

/// Produces `batch` with `acks = all` to `topic`-0's current leader, again while the
/// answer is a retriable error, until [`WAIT`] passes; returns the last answer.
///
/// # Panics
/// If the partition has no leader for [`WAIT`].
pub async fn produce_retrying(
    cluster: &Cluster,
    topic: &str,
    batch: Bytes,
) -> ProducePartitionResponse {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(leader) = current_leader(cluster, topic).await {
            let mut client = Client::connect(&cluster.address(leader)).await;
            let written = client.produce(topic, 0, Acks::All, batch.clone()).await;
            if !written.error_code.is_retriable() || Instant::now() > deadline {
                return written;
            }
        }
        assert!(Instant::now() < deadline, "{topic}-0 has no leader");
        tokio::time::sleep(POLL).await;
    }
}

/// Every value broker `id` serves in `topic`-0, once its high watermark covers at least
/// `count` records (a new leader's rises as its followers fetch), or what it serves
/// after [`WAIT`].
pub async fn read_at_least(cluster: &Cluster, id: u32, topic: &str, count: usize) -> Vec<String> {
    let mut reader = Client::connect(&cluster.address(id)).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let all = values(&reader.read_all(topic, 0, 0).await);
        if all.len() >= count || Instant::now() > deadline {
            return all;
        }
        tokio::time::sleep(POLL).await;
    }
}
