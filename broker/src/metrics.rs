//! Prometheus metrics through the `metrics` facade, and the `/metrics` HTTP endpoint.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `strata_bytes_in_total` | counter | topic |
//! | `strata_records_in_total` | counter | topic |
//! | `strata_produce_duplicate_batches_total` | counter | topic |
//! | `strata_bytes_out_total` | counter | topic |
//! | `strata_records_out_total` | counter | topic |
//! | `strata_sendfile_bytes_total` | counter | |
//! | `strata_request_duration_seconds` | histogram | api |
//! | `strata_errors_total` | counter | code |
//! | `strata_connections_active` | gauge | |
//! | `strata_connections_rejected_total` | counter | |
//! | `strata_fetches_waiting` | gauge | |
//! | `strata_log_end_offset` | gauge | topic, partition |
//! | `strata_fsync_duration_seconds` | histogram | |
//! | `strata_writeback_bytes_total` | counter | |
//! | `strata_writeback_duration_seconds` | histogram | |
//! | `strata_group_lag` | gauge, computed at scrape time | group, topic, partition |

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use strata_protocol::{ApiKey, ErrorCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Largest HTTP request head the metrics endpoint reads.
const HTTP_REQUEST_BYTES_MAX: usize = 8 * 1024;
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once and returns its handle.
///
/// # Panics
/// If another recorder was installed by something else first.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("seconds".into()), LATENCY_BUCKETS_SECONDS)
                .expect("non-empty buckets")
                .install_recorder()
                .expect("no other metrics recorder is installed")
        })
        .clone()
}

/// Counts appended bytes and records.
pub fn record_produce(topic: &str, bytes: usize, records: u64) {
    metrics::counter!("strata_bytes_in_total", "topic" => topic.to_owned()).increment(bytes as u64);
    metrics::counter!("strata_records_in_total", "topic" => topic.to_owned()).increment(records);
}

/// Counts a retried idempotent batch that was already in the log.
pub fn record_duplicate_batch(topic: &str) {
    metrics::counter!("strata_produce_duplicate_batches_total", "topic" => topic.to_owned())
        .increment(1);
}

/// Counts fetched bytes and records.
pub fn record_fetch(topic: &str, bytes: usize, records: u64) {
    metrics::counter!("strata_bytes_out_total", "topic" => topic.to_owned())
        .increment(bytes as u64);
    metrics::counter!("strata_records_out_total", "topic" => topic.to_owned()).increment(records);
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

/// Counts an error sent to a client.
pub fn record_error(code: ErrorCode) {
    metrics::counter!("strata_errors_total", "code" => code.name()).increment(1);
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

/// Publishes a partition's log end offset.
pub fn set_log_end_offset(topic: &str, partition: u32, offset: u64) {
    metrics::gauge!("strata_log_end_offset", "topic" => topic.to_owned(), "partition" => partition.to_string()).set(offset as f64);
}

/// Records one fsync's duration.
pub fn record_fsync(elapsed: Duration) {
    metrics::histogram!("strata_fsync_duration_seconds").record(elapsed.as_secs_f64());
}

/// Records the write-back of one sealed segment after a roll: its bytes and duration.
pub fn record_write_back(bytes: u64, elapsed: Duration) {
    metrics::counter!("strata_writeback_bytes_total").increment(bytes);
    metrics::histogram!("strata_writeback_duration_seconds").record(elapsed.as_secs_f64());
}

/// Renders metrics computed at scrape time, appended after the recorded ones.
pub type Extra = Arc<dyn Fn() -> String + Send + Sync>;

/// Serves `GET /metrics` until `shutdown` fires. Any other path gets 404.
pub async fn serve(
    listener: TcpListener,
    handle: PrometheusHandle,
    extra: Extra,
    shutdown: CancellationToken,
) {
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "metrics accept failed");
                    continue;
                }
            },
        };
        let (handle, extra) = (handle.clone(), extra.clone());
        tokio::spawn(async move {
            if let Err(error) = tokio::time::timeout(HTTP_TIMEOUT, answer(stream, &handle, &extra))
                .await
                .unwrap_or(Ok(()))
            {
                tracing::debug!(%error, "metrics request failed");
            }
        });
    }
}

async fn answer(
    mut stream: TcpStream,
    handle: &PrometheusHandle,
    extra: &Extra,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        let read = stream.read(&mut buf).await?;
        if read == 0 || head.len() + read > HTTP_REQUEST_BYTES_MAX {
            return Ok(());
        }
        head.extend_from_slice(&buf[..read]);
    }
    let (status, body) = if head.starts_with(b"GET /metrics ") || head.starts_with(b"GET /metrics?")
    {
        ("200 OK", handle.render() + &extra())
    } else {
        (
            "404 Not Found",
            "not found; metrics are at /metrics\n".to_owned(),
        )
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
