//! Prometheus metrics through the `metrics` facade, and the metrics listener that serves
//! them with `/healthz` and `/readyz`.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `strata_build_info` | gauge, always 1 | version, revision |
//! | `strata_bytes_in_total` | counter, at scrape time | topic |
//! | `strata_records_in_total` | counter, at scrape time | topic |
//! | `strata_produce_duplicate_batches_total` | counter, at scrape time | topic |
//! | `strata_bytes_out_total` | counter, at scrape time | topic |
//! | `strata_records_out_total` | counter, at scrape time | topic |
//! | `strata_log_end_offset` | gauge, at scrape time | topic, partition |
//! | `strata_sendfile_bytes_total` | counter | |
//! | `strata_request_duration_seconds` | histogram | api |
//! | `strata_errors_total` | counter | code |
//! | `strata_connections_active` | gauge | |
//! | `strata_connections_rejected_total` | counter | |
//! | `strata_fetches_waiting` | gauge | |
//! | `strata_request_memory_bytes` | gauge | |
//! | `strata_response_memory_bytes` | gauge | |
//! | `strata_fsync_duration_seconds` | histogram | |
//! | `strata_writeback_bytes_total` | counter | |
//! | `strata_writeback_duration_seconds` | histogram | |
//! | `strata_storage_write_failures_total` | counter | |
//! | `strata_group_lag` | gauge, computed at scrape time | group, topic, partition |
//! | `strata_partitions_offline` | gauge, computed at scrape time | |
//! | `process_*` | the Prometheus client libraries' standard set, from `/proc` | |
//!
//! Per-topic series are rendered at scrape time from the topics that exist ([`topic`]),
//! so they leave with a deleted topic; the rest go through the facade, each described
//! once in [`install`] so every family has its `# HELP`.
//!
//! # Layout
//! - This file: the recorder, the recording functions, every family's help text.
//! - `http`: the listener for `/metrics`, `/healthz` and `/readyz`.
//! - [`topic`]: per-topic counters and their rendering.
//! - `process`: `process_*` from `/proc/self`.
//! - `response_errors`: the per-partition, per-topic and per-group errors of a response.

pub mod cluster;
mod http;
mod process;
mod response_errors;
pub mod topic;

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use strata_protocol::{ApiKey, ErrorCode, Response};

pub use http::{Endpoint, Extra, serve};
pub use topic::TopicTraffic;

const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The git commit this binary was built from, or `unknown` (see `broker/build.rs`).
const REVISION: &str = env!("STRATA_REVISION");

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once, describes every family, sets
/// `strata_build_info`, and returns the recorder's handle.
///
/// # Panics
/// If another recorder was installed by something else first.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("seconds".into()), LATENCY_BUCKETS_SECONDS)
                .expect("non-empty buckets")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            describe();
            metrics::gauge!(
                "strata_build_info",
                "version" => env!("CARGO_PKG_VERSION"),
                "revision" => REVISION
            )
            .set(1.0);
            handle
        })
        .clone()
}

/// Gives every family recorded through the facade its `# HELP` text.
fn describe() {
    describe_gauge!(
        "strata_build_info",
        "The broker's version and the git revision it was built from; always 1."
    );
    describe_counter!(
        "strata_sendfile_bytes_total",
        "Record bytes sent straight from segment files with sendfile rather than copied."
    );
    describe_histogram!(
        "strata_request_duration_seconds",
        "Time from reading a request's last byte to its reply being ready, by API."
    );
    describe_counter!(
        "strata_errors_total",
        "Errors sent to clients by error code: whole-request errors and every per-partition, per-topic and per-group error in a response."
    );
    describe_gauge!("strata_connections_active", "Open client connections.");
    describe_counter!(
        "strata_connections_rejected_total",
        "Connections refused at connections_max."
    );
    describe_gauge!(
        "strata_fetches_waiting",
        "Long-poll fetches waiting for data or for their max_wait_ms to pass."
    );
    describe_gauge!(
        "strata_request_memory_bytes",
        "Request frame bytes reserved from request_memory_bytes_max: frames being read and requests not yet done with their bytes."
    );
    describe_gauge!(
        "strata_response_memory_bytes",
        "Reply bytes reserved from response_memory_bytes_max: replies queued for connection writers and not yet written."
    );
    describe_histogram!(
        "strata_fsync_duration_seconds",
        "Duration of each fsync by the flusher."
    );
    describe_counter!(
        "strata_writeback_bytes_total",
        "Bytes of sealed segments written back after rolls, ahead of their fsync."
    );
    describe_histogram!(
        "strata_writeback_duration_seconds",
        "Time to write one sealed segment back after a roll."
    );
    describe_counter!(
        "strata_storage_write_failures_total",
        "Times a partition's flush started failing for lack of disk space or file descriptors; the broker retries on its own."
    );
}

/// Counts record bytes sent from segment files with `sendfile` rather than copied.
pub fn record_sendfile(bytes: usize) {
    metrics::counter!("strata_sendfile_bytes_total").increment(bytes as u64);
}

/// Records how long a request took from receipt to reply.
pub fn record_request(api: ApiKey, elapsed: Duration) {
    metrics::histogram!("strata_request_duration_seconds", "api" => api.name())
        .record(elapsed.as_secs_f64());
}

/// Counts an error sent to a client as a whole-request error.
pub fn record_error(code: ErrorCode) {
    metrics::counter!("strata_errors_total", "code" => code.name()).increment(1);
}

/// Counts the errors inside a response body: per partition, per topic and per group.
pub fn record_response_errors(response: &Response) {
    response_errors::for_each_error(response, record_error);
}

/// Tracks open connections.
pub fn connection_opened() {
    metrics::gauge!("strata_connections_active").increment(1.0);
}

/// Tracks open connections.
pub fn connection_closed() {
    metrics::gauge!("strata_connections_active").decrement(1.0);
}

/// Counts connections refused at `connections_max`.
pub fn connection_rejected() {
    metrics::counter!("strata_connections_rejected_total").increment(1);
}

/// Counts a long-poll fetch as waiting for data while it lives. Dropped when the fetch
/// stops waiting, also when its connection closes and cancels it, so the gauge never
/// keeps a fetch that is gone.
#[derive(Debug)]
pub struct FetchWaiting(());

impl FetchWaiting {
    /// Counts one more waiting fetch.
    pub fn start() -> Self {
        metrics::gauge!("strata_fetches_waiting").increment(1.0);
        Self(())
    }
}

impl Drop for FetchWaiting {
    fn drop(&mut self) {
        metrics::gauge!("strata_fetches_waiting").decrement(1.0);
    }
}

/// Counts `bytes` more reserved from the memory budget that `gauge` shows
/// (`strata_request_memory_bytes`, `strata_response_memory_bytes`).
pub fn memory_reserved(gauge: &'static str, bytes: usize) {
    metrics::gauge!(gauge).increment(bytes as f64);
}

/// Counts `bytes` given back to the memory budget that `gauge` shows.
pub fn memory_released(gauge: &'static str, bytes: usize) {
    metrics::gauge!(gauge).decrement(bytes as f64);
}

/// Records one fsync's duration.
pub fn record_fsync(elapsed: Duration) {
    metrics::histogram!("strata_fsync_duration_seconds").record(elapsed.as_secs_f64());
}

/// Counts a partition's flush starting to fail for lack of disk space or descriptors.
pub fn record_storage_write_failure() {
    metrics::counter!("strata_storage_write_failures_total").increment(1);
}

/// Records the write-back of one sealed segment after a roll: its bytes and duration.
pub fn record_write_back(bytes: u64, elapsed: Duration) {
    metrics::counter!("strata_writeback_bytes_total").increment(bytes);
    metrics::histogram!("strata_writeback_duration_seconds").record(elapsed.as_secs_f64());
}
