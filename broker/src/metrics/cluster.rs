//! The cluster's gauges, rendered from the metadata this broker applied and its view of
//! the quorum at each scrape: brokers alive, the controller, how far this broker's
//! applied metadata is behind the committed log, partitions without a leader, and the
//! partitions this broker leads that are under-replicated or below their min ISR.

use std::fmt::Write;

use crate::cluster::Cluster;
use crate::cluster::metadata::BrokerState;
use crate::group::store::OFFSETS_LOG;

/// The cluster's gauges in the Prometheus text format.
pub fn render(cluster: &Cluster) -> String {
    let image = cluster.image();
    let status = cluster.quorum_status();
    let alive = image
        .brokers
        .values()
        .filter(|broker| broker.state == BrokerState::Alive)
        .count();
    let leaderless = image
        .topics
        .iter()
        .filter(|(name, _)| *name != OFFSETS_LOG)
        .flat_map(|(_, topic)| &topic.partitions)
        .filter(|partition| partition.leader.is_none())
        .count();
    // Kafka's UnderReplicatedPartitions and UnderMinIsrPartitionCount: counted by each
    // partition's leader, so summing over brokers counts each partition once.
    let me = cluster.node_id();
    let led: Vec<_> = image
        .topics
        .values()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(move |partition| (topic, partition))
        })
        .filter(|(_, partition)| partition.leader == Some(me))
        .collect();
    let under_replicated = led
        .iter()
        .filter(|(_, partition)| partition.is_under_replicated())
        .count();
    let under_min_isr = led
        .iter()
        .filter(|(topic, partition)| partition.isr.len() < partition.min_isr(&topic.config))
        .count();
    let controller = status.leader.map_or(-1, |leader| leader as i64);
    let lag = status.committed.saturating_sub(status.applied);
    let mut text = String::new();
    let gauges: [(&str, &str, i64); 7] = [
        (
            "strata_cluster_brokers_alive",
            "Brokers registered and not fenced, as this broker's metadata says.",
            alive as i64,
        ),
        (
            "strata_cluster_controller",
            "The node id of the metadata quorum's leader as this broker knows it; -1 for none.",
            controller,
        ),
        (
            "strata_metadata_applied_offset",
            "The metadata log offset this broker has applied.",
            status.applied as i64,
        ),
        (
            "strata_metadata_applied_lag",
            "Committed metadata log entries this broker has not applied yet.",
            lag as i64,
        ),
        (
            "strata_partitions_without_leader",
            "Partitions of topics with no leader: offline while their replicas are fenced.",
            leaderless as i64,
        ),
        (
            "strata_partitions_under_replicated",
            "Partitions this broker leads with fewer replicas in sync than replicas.",
            under_replicated as i64,
        ),
        (
            "strata_partitions_under_min_isr",
            "Partitions this broker leads with fewer replicas in sync than min_insync_replicas: acks=all writes to them are refused.",
            under_min_isr as i64,
        ),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(
            text,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    }
    text
}
