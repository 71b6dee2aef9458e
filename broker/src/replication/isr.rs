//! The leader's side of the in-sync set: every partition this broker leads is checked
//! against the engine's rules, and a change is asked of the controller as an
//! `AlterPartition` command, a compare-and-set on the partition epoch. The metadata
//! applies it (or refuses a stale one), and the leader takes the committed set from the
//! image like every other broker, so the set a leader computes its high watermark over
//! is always one the controller committed.
//!
//! The check runs every quarter of `replica_lag_max_ms` (at most every half second), and
//! at once when a follower out of sync reaches the log end.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::cluster::metadata::{BrokerState, Command, Outcome};
use crate::group::store::OFFSETS_LOG;
use crate::partition::IsrRequest;

/// How long a change may wait for the quorum.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Checks the in-sync sets until `stop` fires.
pub(super) async fn run(broker: Arc<Broker>, wake: Arc<Notify>, stop: CancellationToken) {
    let lag_max_ms = broker.config.replica_lag_max_ms;
    let interval = Duration::from_millis(lag_max_ms / 4)
        .clamp(Duration::from_millis(10), Duration::from_millis(500));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(interval) => {}
        }
        if broker.cluster.is_ready() {
            check(&broker, lag_max_ms).await;
        }
    }
}

/// Asks for every in-sync set change the partitions this broker leads want.
async fn check(broker: &Broker, lag_max_ms: u64) {
    let me = broker.cluster.node_id();
    let image = broker.cluster.image();
    let eligible = |id: u32, incarnation: u64| {
        image.brokers.get(&id).is_some_and(|registered| {
            registered.state == BrokerState::Alive && registered.incarnation == incarnation
        })
    };
    let offsets_log = image.topics.get(OFFSETS_LOG).map(|record| {
        (
            OFFSETS_LOG.to_owned(),
            record.id,
            broker.groups.partitions().to_vec(),
        )
    });
    let topics = broker.topics.all().into_iter().filter_map(|topic| {
        let topic_id = topic.id.filter(|_| topic.is_of(&image.log_id))?;
        Some((
            topic.name.clone(),
            topic_id,
            topic.local().cloned().collect::<Vec<_>>(),
        ))
    });
    for (name, topic_id, partitions) in topics.chain(offsets_log) {
        for partition in partitions {
            let Some(IsrRequest {
                leader_epoch,
                partition_epoch,
                isr,
                incarnations,
            }) = partition.wanted_isr(lag_max_ms, eligible)
            else {
                continue;
            };
            let command = Command::AlterPartition {
                topic: name.clone(),
                topic_id,
                partition: partition.index(),
                leader: me,
                leader_epoch,
                partition_epoch,
                isr: isr.clone(),
                incarnations,
            };
            match broker
                .cluster
                .commit_within(&command, PROPOSE_TIMEOUT)
                .await
            {
                Ok(Outcome::Refused { message, .. }) => {
                    partition.isr_change_failed(leader_epoch);
                    tracing::debug!(topic = %name, partition = partition.index(), %message, "in-sync set change refused");
                }
                Ok(_) => {
                    tracing::info!(topic = %name, partition = partition.index(), ?isr, "in-sync set changed");
                }
                // Not known to be committed or not: the members stay counted until the
                // metadata says either way.
                Err(error) => {
                    tracing::debug!(topic = %name, partition = partition.index(), %error.message, "in-sync set change not committed");
                }
            }
        }
    }
}
