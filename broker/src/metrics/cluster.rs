//! The cluster's gauges, rendered from the metadata this broker applied and its view of
//! the quorum at each scrape: brokers alive, the controller, how far this broker's
//! applied metadata is behind the committed log, and partitions without a leader.

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
    let controller = status.leader.map_or(-1, |leader| leader as i64);
    let lag = status.committed.saturating_sub(status.applied);
    let mut text = String::new();
    let gauges: [(&str, &str, i64); 5] = [
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
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(
            text,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    }
    text
}
