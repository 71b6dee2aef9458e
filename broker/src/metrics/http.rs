//! The metrics listener: a small HTTP/1.1 responder for `GET /metrics`, `/healthz` and
//! `/readyz`, one request per connection.
//!
//! It serves from the moment the ports are bound, before recovery, so a supervisor can
//! tell a broker that is up but still recovering (`/healthz` 200, `/readyz` 503) from one
//! that is gone, and it keeps serving through a graceful shutdown, where `/readyz` turns
//! 503 before the broker stops reading requests. A request head is read up to
//! [`HTTP_REQUEST_BYTES_MAX`] and a connection lives at most [`HTTP_TIMEOUT`].

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Largest HTTP request head the endpoint reads.
const HTTP_REQUEST_BYTES_MAX: usize = 8 * 1024;
/// Longest one HTTP connection may take, from accept to the last byte written.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// Renders metrics computed at scrape time, appended after the recorded ones.
pub type Extra = Arc<dyn Fn() -> String + Send + Sync>;

const RECOVERING: u8 = 0;
const READY: u8 = 1;
const STOPPING: u8 = 2;

/// What the metrics listener serves: the recorded metrics, the scrape-time ones once the
/// broker is open, and whether the broker is ready. Thread-safe.
pub struct Endpoint {
    handle: PrometheusHandle,
    extra: OnceLock<Extra>,
    state: AtomicU8,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Endpoint")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// An endpoint that is not ready yet: the broker is recovering.
    pub fn new(handle: PrometheusHandle) -> Self {
        Self {
            handle,
            extra: OnceLock::new(),
            state: AtomicU8::new(RECOVERING),
        }
    }

    /// Recovery is done: `/readyz` answers 200 and `/metrics` includes `extra`.
    pub fn ready(&self, extra: Extra) {
        let _ = self.extra.set(extra);
        self.state.store(READY, Ordering::Release);
    }

    /// A graceful shutdown started: `/readyz` answers 503 from now on.
    pub fn stopping(&self) {
        self.state.store(STOPPING, Ordering::Release);
    }

    /// Every metric in Prometheus text format.
    fn render(&self) -> String {
        let mut text = self.handle.render();
        text.push_str(&super::process::render());
        if let Some(extra) = self.extra.get() {
            text.push_str(&extra());
        }
        text
    }

    /// `/readyz`'s status and body.
    fn readiness(&self) -> (&'static str, &'static str) {
        match self.state.load(Ordering::Acquire) {
            READY => ("200 OK", "ready\n"),
            RECOVERING => (
                "503 Service Unavailable",
                "not ready: recovering the data directory\n",
            ),
            _ => ("503 Service Unavailable", "not ready: shutting down\n"),
        }
    }
}

/// Serves the endpoint on `listener` until `stop` fires.
pub async fn serve(listener: TcpListener, endpoint: Arc<Endpoint>, stop: CancellationToken) {
    loop {
        let stream = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "metrics accept failed");
                    continue;
                }
            },
        };
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            if let Err(error) = tokio::time::timeout(HTTP_TIMEOUT, answer(stream, endpoint))
                .await
                .unwrap_or(Ok(()))
            {
                tracing::debug!(%error, "metrics request failed");
            }
        });
    }
}

async fn answer(mut stream: TcpStream, endpoint: Arc<Endpoint>) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        let read = stream.read(&mut buf).await?;
        if read == 0 || head.len() + read > HTTP_REQUEST_BYTES_MAX {
            return Ok(());
        }
        head.extend_from_slice(&buf[..read]);
    }
    let (status, body) = match route(&head) {
        Route::Metrics => {
            // Reading /proc and walking every topic is blocking work.
            let rendered = tokio::task::spawn_blocking(move || endpoint.render()).await;
            ("200 OK", rendered.map_err(std::io::Error::other)?)
        }
        Route::Health => ("200 OK", "ok\n".to_owned()),
        Route::Ready => {
            let (status, body) = endpoint.readiness();
            (status, body.to_owned())
        }
        Route::NotFound => (
            "404 Not Found",
            "not found; this port serves /metrics, /healthz and /readyz\n".to_owned(),
        ),
        Route::NotGet => (
            "405 Method Not Allowed",
            "only GET is served here\n".to_owned(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    Health,
    Ready,
    NotFound,
    NotGet,
}

/// Routes a request by its first line, `GET <path>[?query] HTTP/1.1`.
fn route(head: &[u8]) -> Route {
    let line = head.split(|byte| *byte == b'\r').next().unwrap_or_default();
    let mut words = line.split(|byte| *byte == b' ');
    if words.next() != Some(b"GET") {
        return Route::NotGet;
    }
    let target = words.next().unwrap_or_default();
    let path = target
        .split(|byte| *byte == b'?')
        .next()
        .unwrap_or_default();
    match path {
        b"/metrics" => Route::Metrics,
        b"/healthz" => Route::Health,
        b"/readyz" => Route::Ready,
        _ => Route::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_routed_by_method_and_path_without_the_query() {
        let cases: [(&[u8], Route); 6] = [
            (b"GET /metrics HTTP/1.1\r\n\r\n", Route::Metrics),
            (b"GET /metrics?name[]=x HTTP/1.1\r\n\r\n", Route::Metrics),
            (b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n", Route::Health),
            (b"GET /readyz HTTP/1.0\r\n\r\n", Route::Ready),
            (b"GET /metricsx HTTP/1.1\r\n\r\n", Route::NotFound),
            (b"POST /metrics HTTP/1.1\r\n\r\n", Route::NotGet),
        ];
        for (head, expected) in cases {
            assert_eq!(route(head), expected, "{}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn readiness_follows_recovery_then_shutdown() {
        let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
            .build_recorder()
            .handle();
        let endpoint = Endpoint::new(handle);
        let unavailable = "503 Service Unavailable";
        assert_eq!(endpoint.readiness().0, unavailable);
        endpoint.ready(Arc::new(|| "strata_extra 1\n".to_owned()));
        assert_eq!(endpoint.readiness(), ("200 OK", "ready\n"));
        assert!(endpoint.render().contains("strata_extra 1\n"));
        endpoint.stopping();
        assert_eq!(
            endpoint.readiness(),
            (unavailable, "not ready: shutting down\n")
        );
    }
}
