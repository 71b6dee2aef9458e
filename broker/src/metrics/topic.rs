//! Per-topic series, rendered at scrape time from the topics that exist then.
//!
//! The `metrics` facade cannot forget a series, so a deleted topic's counters would stay
//! in `/metrics` forever, and so would the gauges of a topic whose creation failed after
//! some partitions opened. Instead each topic owns its counters ([`TopicTraffic`]) and the
//! log end offsets are read from the partitions themselves: a topic that is not in the
//! registry has no series.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::topics::Topic;

/// A topic's traffic counters. Thread-safe. Shared by every version of a topic (a change
/// makes a new `Topic`) and dropped with the last one.
#[derive(Debug, Default)]
pub struct TopicTraffic {
    bytes_in: AtomicU64,
    records_in: AtomicU64,
    duplicate_batches: AtomicU64,
    bytes_out: AtomicU64,
    records_out: AtomicU64,
}

impl TopicTraffic {
    /// Counts appended bytes and records, and retried idempotent batches that were
    /// already in the log.
    pub fn record_produce(&self, bytes: usize, records: u64, duplicate_batches: u64) {
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
        self.records_in.fetch_add(records, Ordering::Relaxed);
        self.duplicate_batches
            .fetch_add(duplicate_batches, Ordering::Relaxed);
    }

    /// Counts fetched bytes and records.
    pub fn record_fetch(&self, bytes: usize, records: u64) {
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
        self.records_out.fetch_add(records, Ordering::Relaxed);
    }
}

/// One per-topic counter family: its name, help text and field.
type Family = (&'static str, &'static str, fn(&TopicTraffic) -> &AtomicU64);

const FAMILIES: [Family; 5] = [
    (
        "strata_bytes_in_total",
        "Batch bytes appended to the topic.",
        |traffic| &traffic.bytes_in,
    ),
    (
        "strata_records_in_total",
        "Records appended to the topic.",
        |traffic| &traffic.records_in,
    ),
    (
        "strata_produce_duplicate_batches_total",
        "Idempotent batches that were retries of a batch already in the log, answered with its offsets and not written again.",
        |traffic| &traffic.duplicate_batches,
    ),
    (
        "strata_bytes_out_total",
        "Batch bytes sent to consumers.",
        |traffic| &traffic.bytes_out,
    ),
    (
        "strata_records_out_total",
        "Records sent to consumers.",
        |traffic| &traffic.records_out,
    ),
];

/// The per-topic families in Prometheus text format, for `topics` as they are now.
/// Topic names are `[A-Za-z0-9._-]`, so they need no escaping as label values.
pub fn render(topics: &[Arc<Topic>]) -> String {
    let mut text = String::new();
    if topics.is_empty() {
        return text;
    }
    for (name, help, field) in FAMILIES {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} counter");
        for topic in topics {
            let value = field(&topic.traffic).load(Ordering::Relaxed);
            let _ = writeln!(text, "{name}{{topic=\"{}\"}} {value}", topic.name);
        }
    }
    text.push_str(
        "# HELP strata_log_end_offset The offset the next record appended to the partition gets.\n# TYPE strata_log_end_offset gauge\n",
    );
    for topic in topics {
        for partition in topic.local() {
            let _ = writeln!(
                text,
                "strata_log_end_offset{{topic=\"{}\",partition=\"{}\"}} {}",
                topic.name,
                partition.index(),
                partition.log_end_offset()
            );
        }
    }
    text
}

/// `strata_partitions_offline`: partitions (of topics and of the offsets log) whose data
/// failed its checks when the broker opened them, so they answer `PartitionOffline`.
pub fn render_offline(count: usize) -> String {
    format!(
        "# HELP strata_partitions_offline Partitions whose data failed its checks at startup; they answer PartitionOffline until repaired or deleted.\n# TYPE strata_partitions_offline gauge\nstrata_partitions_offline {count}\n"
    )
}
